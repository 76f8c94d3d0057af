"""Input and output shapes of the project endpoints (API.md "Projects and batches")."""

from django.contrib.auth import get_user_model
from rest_framework import serializers

from apps.core.api import JSONValueField

from apps.projects.label_schema import TaskType
from apps.projects.models import Batch, Guideline, Membership, Project, QualityGate


class GuidelineSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Guideline
        fields = ["version", "text", "created_at", "created_by"]
        read_only_fields = ["version", "created_at", "created_by"]


class CurrentGuidelineSerializer(serializers.ModelSerializer):
    class Meta:
        model = Guideline
        fields = ["version", "text"]


class ProjectSerializer(serializers.ModelSerializer):
    guideline = CurrentGuidelineSerializer(source="current_guideline", read_only=True, allow_null=True)

    class Meta:
        model = Project
        fields = ["id", "name", "slug", "description", "task_type", "label_schema", "overlap", "gold_rate",
                  "review_mode", "review_sample_rate", "sampling", "lease_minutes", "guideline", "created_at"]
        read_only_fields = ["id", "guideline", "created_at"]


class ProjectCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    task_type = serializers.ChoiceField(choices=TaskType.choices)
    label_schema = JSONValueField()
    overlap = serializers.IntegerField(min_value=1, max_value=20, required=False)
    gold_rate = serializers.FloatField(min_value=0, max_value=1, required=False)
    review_mode = serializers.ChoiceField(choices=Project.ReviewMode.choices, required=False)
    review_sample_rate = serializers.FloatField(min_value=0, max_value=1, required=False)
    sampling = serializers.ChoiceField(choices=Project.Sampling.choices, required=False)
    lease_minutes = serializers.IntegerField(min_value=1, max_value=24 * 60, required=False)
    guideline = serializers.CharField(required=False, allow_blank=True, default="",
                                      help_text="Text of the first guideline version.")

    def validate_slug(self, value):
        if Project.objects.filter(slug=value).exists():
            raise serializers.ValidationError("A project with this slug already exists.")
        return value

    def validate_label_schema(self, value):
        return _label_schema_shape(value)


def _label_schema_shape(value):
    # The service checks the labels; a schema that is not even an object would come back without a field name.
    if not isinstance(value, dict):
        raise serializers.ValidationError("The label schema must be a JSON object with a 'labels' list.")
    return value


class ProjectUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    label_schema = JSONValueField(required=False)
    overlap = serializers.IntegerField(min_value=1, max_value=20, required=False)
    gold_rate = serializers.FloatField(min_value=0, max_value=1, required=False)
    review_mode = serializers.ChoiceField(choices=Project.ReviewMode.choices, required=False)
    review_sample_rate = serializers.FloatField(min_value=0, max_value=1, required=False)
    sampling = serializers.ChoiceField(choices=Project.Sampling.choices, required=False)
    lease_minutes = serializers.IntegerField(min_value=1, max_value=24 * 60, required=False)

    def validate_label_schema(self, value):
        return _label_schema_shape(value)


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["user", "username", "role", "created_at", "paused_at", "pause_reason"]
        read_only_fields = ["username", "created_at", "paused_at", "pause_reason"]


class MembershipCreateSerializer(serializers.Serializer):
    user = serializers.PrimaryKeyRelatedField(queryset=get_user_model().objects.filter(is_active=True))
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class BatchSerializer(serializers.ModelSerializer):
    overridden_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    tasks_total = serializers.IntegerField(read_only=True, default=None)
    tasks_accepted = serializers.IntegerField(read_only=True, default=None)

    class Meta:
        model = Batch
        fields = ["id", "project", "name", "priority", "due_date", "status", "override_reason", "overridden_by",
                  "overridden_at", "created_at", "tasks_total", "tasks_accepted"]
        read_only_fields = ["id", "project", "status", "override_reason", "overridden_by", "overridden_at",
                            "created_at"]


class BatchWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=True)
    priority = serializers.IntegerField(required=False, default=0, min_value=-(2**31), max_value=2**31 - 1)
    due_date = serializers.DateField(required=False, allow_null=True, default=None)


class BatchTransitionSerializer(serializers.Serializer):
    to = serializers.ChoiceField(choices=[s for s in Batch.Status.choices if s[0] != Batch.Status.DRAFT
                                          and s[0] != Batch.Status.BLOCKED])
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class QualityGateSerializer(serializers.ModelSerializer):
    class Meta:
        model = QualityGate
        fields = ["id", "metric", "comparator", "threshold", "min_samples", "batch", "is_active", "state",
                  "last_value", "last_n", "evaluated_at"]
        read_only_fields = ["id", "is_active", "state", "last_value", "last_n", "evaluated_at"]
        extra_kwargs = {"batch": {"queryset": Batch.objects.all(), "allow_null": True, "required": False},
                        # the model's default; without it an omitted comparator reached gate_create() missing
                        "comparator": {"default": QualityGate.Comparator.GTE}}

    def validate_batch(self, batch):
        project = self.context["project"]
        if batch is not None and batch.project_id != project.pk:
            raise serializers.ValidationError("The batch belongs to another project.")
        return batch

    def validate_threshold(self, value):
        import math

        if not math.isfinite(value):
            raise serializers.ValidationError("The threshold must be a finite number.")
        return value
