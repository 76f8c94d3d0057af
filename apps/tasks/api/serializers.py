"""Input and output shapes of the task, annotation and review endpoints (API.md "Tasks", "Annotating",
"Reviewing"). Gold answers and final results are only rendered for managers and admins."""

from rest_framework import serializers

from apps.core.api import JSONValueField

from apps.quality.models import Review
from apps.tasks.models import Annotation, Assignment, Clarification, Task, TaskEvent

MANAGER_ONLY_TASK_FIELDS = ("is_gold", "gold_answer")
# What an annotator may not read (blind overlap, gold indistinguishable from other tasks): a task's overall status
# tells whether the other annotators are done, and a gold task's never reaches in_review; `needs_review` is False
# on every gold submission (and says whether a sampled review will look at the work).
STAFF_ONLY_TASK_FIELDS = ("status", "accepted_at", "final_result")
STAFF_ONLY_ANNOTATION_FIELDS = ("needs_review",)


class TaskSerializer(serializers.ModelSerializer):
    """A task; `is_gold`/`gold_answer` are dropped unless the context says the caller may see gold."""

    class Meta:
        model = Task
        fields = ["id", "project", "batch", "external_id", "data", "status", "priority", "is_gold", "gold_answer",
                  "prediction", "prediction_score", "final_result", "created_at", "accepted_at"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not self.context.get("show_gold"):
            for field in MANAGER_ONLY_TASK_FIELDS:
                data.pop(field, None)
        if not self.context.get("show_all"):
            for field in STAFF_ONLY_TASK_FIELDS:  # final_result: a consensus is other annotators' work
                data.pop(field, None)
        return data


class TaskBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Task
        fields = ["id", "data"]


class AssignmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Assignment
        fields = ["id", "task", "status", "assigned_at", "started_at", "lease_expires_at", "submitted_at",
                  "rework_count", "reason"]


class AssignmentBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Assignment
        fields = ["id", "status", "lease_expires_at"]


class ReviewSerializer(serializers.ModelSerializer):
    reviewer = serializers.SlugRelatedField(slug_field="username", read_only=True)
    error_types = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)

    class Meta:
        model = Review
        fields = ["id", "annotation", "reviewer", "decision", "error_types", "comment", "corrected_annotation",
                  "started_at", "decided_at"]


# Plain renderings of the hot paths (next task, submit): what the serializers above and below give for the same
# object, without building a ModelSerializer per request. tests/tasks/test_next_task_routing.py compares them.
_datetime = serializers.DateTimeField()


def task_brief(task):
    """TaskBriefSerializer(task).data"""
    return {"id": task.pk, "data": task.data}


def assignment_brief(assignment):
    """AssignmentBriefSerializer(assignment).data"""
    return {"id": assignment.pk, "status": assignment.status,
            "lease_expires_at": _datetime.to_representation(assignment.lease_expires_at)}


def annotation_body(annotation, *, show_all, fresh=False):
    """AnnotationSerializer(annotation, context={"show_all": show_all}).data; `fresh`: written just now, so without
    reviews (not read)."""
    body = {
        "id": annotation.pk, "task": annotation.task_id, "assignment": annotation.assignment_id,
        "annotator": annotation.annotator.username if annotation.annotator_id else None,
        "author": annotation.author.username if annotation.author_id else None,
        "version": annotation.version, "source": annotation.source, "result": annotation.result,
        "notes": annotation.notes,
        "lead_time_seconds": None if annotation.lead_time_seconds is None else float(annotation.lead_time_seconds),
        "guideline_version": annotation.guideline_version, "status": annotation.status,
        "is_current": annotation.is_current, "needs_review": annotation.needs_review,
        "submitted_at": _datetime.to_representation(annotation.submitted_at),
        "reviews": [],
    }
    reviews = [] if fresh else list(annotation.reviews.select_related("reviewer").prefetch_related("error_types"))
    if reviews:  # a replayed submission that was reviewed meanwhile
        body["reviews"] = ReviewSerializer(reviews, many=True).data
    if not show_all:
        for field in STAFF_ONLY_ANNOTATION_FIELDS:
            body.pop(field, None)
    return body


class AnnotationSerializer(serializers.ModelSerializer):
    annotator = serializers.SlugRelatedField(slug_field="username", read_only=True)
    author = serializers.SlugRelatedField(slug_field="username", read_only=True)
    reviews = ReviewSerializer(many=True, read_only=True)

    class Meta:
        model = Annotation
        fields = ["id", "task", "assignment", "annotator", "author", "version", "source", "result", "notes",
                  "lead_time_seconds", "guideline_version", "status", "is_current", "needs_review", "submitted_at",
                  "reviews"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not self.context.get("show_all"):
            for field in STAFF_ONLY_ANNOTATION_FIELDS:
                data.pop(field, None)
        return data


class EventSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = TaskEvent
        fields = ["id", "type", "at", "actor", "assignment", "payload"]


class HoldSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)


class SkipSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class SubmitSerializer(serializers.Serializer):
    result = JSONValueField()
    notes = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)
    lead_time_seconds = serializers.FloatField(required=False, allow_null=True, default=None, min_value=0,
                                               max_value=7 * 24 * 3600)


class ClarificationSerializer(serializers.ModelSerializer):
    asked_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    answered_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Clarification
        fields = ["id", "task", "assignment", "asked_by", "question", "confidential", "status", "answer",
                  "answered_by", "answered_at", "created_at"]
        read_only_fields = ["id", "task", "assignment", "asked_by", "status", "answer", "answered_by",
                            "answered_at", "created_at"]


class ClarificationAskSerializer(serializers.Serializer):
    question = serializers.CharField(max_length=5000)
    confidential = serializers.BooleanField(required=False, default=False)


class ClarificationAnswerSerializer(serializers.Serializer):
    answer = serializers.CharField(max_length=10000)


class ReviewDecisionSerializer(serializers.Serializer):
    """A decision; the rules that depend on it (a reject needs error types and a comment, an escalation a comment)
    are the review services' (apps.tasks.services), which answer 400 naming the field."""

    decision = serializers.ChoiceField(choices=Review.Decision.choices)
    error_types = serializers.ListField(child=serializers.CharField(max_length=50), required=False, default=list,
                                        max_length=50, help_text="Error type codes; one or more for 'reject'.")
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000,
                                    help_text="Required for 'reject' (the annotator reads it) and 'escalate'.")
    corrected_result = JSONValueField(required=False, allow_null=True, default=None)

    def validate(self, attrs):
        if attrs["decision"] == Review.Decision.FIX and attrs.get("corrected_result") is None:
            raise serializers.ValidationError({"corrected_result": ["Required when the decision is 'fix'."]})
        return attrs


class ImportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    skipped = serializers.IntegerField()
    batch = serializers.IntegerField(allow_null=True)


class ErrorTypeBriefSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()


class ReworkSerializer(serializers.Serializer):
    """Why work came back: the rejected result (to start from) and the reviewer's feedback."""

    previous_result = serializers.JSONField(allow_null=True)
    notes = serializers.CharField(allow_blank=True)
    version = serializers.IntegerField(allow_null=True)
    comment = serializers.CharField(allow_blank=True)
    reviewer = serializers.CharField(allow_null=True)
    error_types = ErrorTypeBriefSerializer(many=True)
    decided_at = serializers.DateTimeField(allow_null=True)


class NextTaskRequestSerializer(serializers.Serializer):
    start = serializers.BooleanField(required=False, default=False,
                                     help_text="Also start the assignment (the task is being shown now).")


class NextTaskSerializer(serializers.Serializer):
    assignment = AssignmentBriefSerializer()
    task = TaskBriefSerializer()
    rework = ReworkSerializer(required=False, allow_null=True)


class PairwiseResolveSerializer(serializers.Serializer):
    """Pick one of the waiting annotations (`annotation`), or merge them into `result`."""

    annotation = serializers.IntegerField(required=False, allow_null=True, default=None)
    result = serializers.JSONField(required=False, allow_null=True, default=None)
    error_types = serializers.ListField(child=serializers.CharField(max_length=50), required=False, default=list,
                                        max_length=50)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)

    def validate(self, attrs):
        if (attrs["annotation"] is None) == (attrs["result"] is None):
            raise serializers.ValidationError({"annotation": ["Give either the annotation you pick or a merged "
                                                              "result, not both."]})
        return attrs
