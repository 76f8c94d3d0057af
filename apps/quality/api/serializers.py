"""Shapes of the figures and alert endpoints (API.md "Figures")."""

from rest_framework import serializers

from apps.quality.alerts import alert_text
from apps.quality.models import Alert


class AlertSerializer(serializers.ModelSerializer):
    acknowledged_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    resolved_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    text = serializers.SerializerMethodField(help_text="The message in the caller's language (`message` is English).")

    class Meta:
        model = Alert
        fields = ["id", "kind", "severity", "project", "batch", "gate", "task", "message", "text", "details", "state",
                  "created_at", "acknowledged_by", "acknowledged_at", "resolved_by", "resolved_at"]

    def get_text(self, alert) -> str:
        return alert_text(alert)
