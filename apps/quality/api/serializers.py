"""Shapes of the figures and alert endpoints (API.md "Figures")."""

from rest_framework import serializers

from apps.quality.models import Alert


class AlertSerializer(serializers.ModelSerializer):
    acknowledged_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Alert
        fields = ["id", "kind", "severity", "project", "batch", "gate", "message", "state", "created_at",
                  "acknowledged_by", "acknowledged_at", "resolved_at"]
