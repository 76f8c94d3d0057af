"""Tasks, who works on them (assignments), what they submitted (annotation versions) and the event trail."""

import random

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from apps.core.audit import history
from apps.core.models import TimeStampedModel


def random_key_default():
    return random.random()


class Task(TimeStampedModel):
    """One item to label; its status follows from its assignments, annotations and reviews."""

    class Status(models.TextChoices):
        NEW = "new", _("New")
        OPEN = "open", _("Open")
        IN_PROGRESS = "in_progress", _("In progress")
        IN_REVIEW = "in_review", _("In review")
        REWORK = "rework", _("Rework")
        ON_HOLD = "on_hold", _("On hold")
        ACCEPTED = "accepted", _("Accepted")
        CANCELLED = "cancelled", _("Cancelled")

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="tasks")
    batch = models.ForeignKey("projects.Batch", on_delete=models.PROTECT, related_name="tasks")
    external_id = models.CharField(max_length=255, null=True, blank=True)
    data = models.JSONField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.NEW)
    priority = models.IntegerField(default=0, help_text=_("Higher first."))
    is_gold = models.BooleanField(default=False)
    gold_answer = models.JSONField(null=True, blank=True)
    prediction = models.JSONField(null=True, blank=True)
    prediction_score = models.FloatField(null=True, blank=True)
    final_result = models.JSONField(null=True, blank=True, editable=False)
    accepted_at = models.DateTimeField(null=True, blank=True, editable=False)
    extra_annotations = models.PositiveSmallIntegerField(
        default=0, editable=False, help_text=_("Annotators added beyond the project's overlap by low-agreement routing."))
    routed_at = models.DateTimeField(null=True, blank=True, editable=False,
                                     help_text=_("When low-agreement routing last acted on the task."))
    # A stable random order for 'random' sampling that an index can serve.
    random_key = models.FloatField(default=random_key_default, editable=False)

    history = history()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "external_id"], name="task_external_id_unique_per_project"),
            models.CheckConstraint(condition=Q(is_gold=False) | Q(gold_answer__isnull=False),
                                   name="task_gold_has_answer"),
        ]
        indexes = [
            models.Index(fields=["project", "status"], name="task_project_status"),
            models.Index(fields=["batch", "status", "-priority", "id"], name="task_batch_status_prio"),
            models.Index(fields=["project", "is_gold", "status"], name="task_project_gold_status"),
            models.Index(fields=["batch", "status", "random_key"], name="task_batch_status_random"),
            models.Index(fields=["batch", "status", "prediction_score"], name="task_batch_status_score"),
        ]

    def __str__(self):
        return f"Task {self.pk}" + (f" ({self.external_id})" if self.external_id else "")


class Assignment(TimeStampedModel):
    """One annotator on one task, with a lease; never two for the same annotator and task."""

    class Status(models.TextChoices):
        ASSIGNED = "assigned", _("Assigned")
        IN_PROGRESS = "in_progress", _("In progress")
        ON_HOLD = "on_hold", _("On hold")
        SUBMITTED = "submitted", _("Submitted")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")
        SKIPPED = "skipped", _("Skipped")
        EXPIRED = "expired", _("Expired")

    LIVE = (Status.ASSIGNED, Status.IN_PROGRESS, Status.ON_HOLD)
    DONE = (Status.SUBMITTED, Status.APPROVED, Status.REJECTED)

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="assignments")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ASSIGNED)
    assigned_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    rework_count = models.PositiveIntegerField(default=0, help_text=_("How often a review sent it back."))
    reason = models.TextField(blank=True, help_text=_("Why it was last held or skipped."))

    history = history()

    class Meta:
        ordering = ["-assigned_at"]
        constraints = [
            models.UniqueConstraint(fields=["task", "annotator"], name="assignment_once_per_annotator"),
        ]
        indexes = [
            models.Index(fields=["annotator", "status"], name="assignment_annotator_status"),
            models.Index(fields=["task", "status"], name="assignment_task_status"),
            models.Index(fields=["status", "lease_expires_at"], name="assignment_status_lease"),
        ]

    def __str__(self):
        return f"Assignment {self.pk}: {self.annotator} on task {self.task_id}"


class Annotation(models.Model):
    """One version of a submitted result; a resubmission, a reviewer's fix or a revert appends a new version."""

    class Status(models.TextChoices):
        SUBMITTED = "submitted", _("Submitted")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")
        ESCALATED = "escalated", _("Escalated")
        SUPERSEDED = "superseded", _("Superseded")

    class Source(models.TextChoices):
        ANNOTATOR = "annotator", _("Annotator")
        REVIEW_FIX = "review_fix", _("Reviewer's fix")
        REVERT = "revert", _("Revert to an earlier version")

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="annotations")
    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="annotations")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="annotations")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+",
                               help_text=_("Who wrote this version: the annotator, or a reviewer for a fix."))
    version = models.PositiveIntegerField()
    source = models.CharField(max_length=12, choices=Source.choices, default=Source.ANNOTATOR)
    result = models.JSONField()
    notes = models.TextField(blank=True)
    lead_time_seconds = models.FloatField(null=True, blank=True)
    guideline = models.ForeignKey("projects.Guideline", null=True, blank=True, on_delete=models.PROTECT,
                                  related_name="+")
    guideline_version = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.SUBMITTED)
    needs_review = models.BooleanField(default=False)
    is_current = models.BooleanField(default=True)
    idempotency_key = models.CharField(max_length=128, null=True, blank=True)
    submitted_at = models.DateTimeField(auto_now_add=True, db_index=True)

    history = history()

    class Meta:
        ordering = ["task", "assignment", "version"]
        constraints = [
            models.UniqueConstraint(fields=["assignment", "version"], name="annotation_version_unique"),
            models.UniqueConstraint(fields=["assignment"], condition=Q(is_current=True),
                                    name="annotation_one_current_per_assignment"),
            models.UniqueConstraint(fields=["assignment", "idempotency_key"], name="annotation_idempotency_unique"),
            models.CheckConstraint(condition=Q(lead_time_seconds__isnull=True) | Q(lead_time_seconds__gte=0),
                                   name="annotation_lead_time_non_negative"),
        ]
        indexes = [
            models.Index(fields=["task", "is_current"], name="annotation_task_current"),
            models.Index(fields=["annotator", "is_current"], name="annotation_annotator_current"),
            models.Index(fields=["status", "needs_review", "submitted_at"], name="annotation_review_queue"),
        ]

    def __str__(self):
        return f"Annotation {self.pk} v{self.version} on task {self.task_id}"


class TaskEvent(models.Model):
    """An append-only lifecycle event of a task, an assignment or a batch: who did what, when."""

    _append_only = True

    class Type(models.TextChoices):
        IMPORTED = "imported", _("Imported")
        OPENED = "opened", _("Opened")
        ASSIGNED = "assigned", _("Assigned")
        STARTED = "started", _("Started")
        HELD = "held", _("Held")
        RESUMED = "resumed", _("Resumed")
        SKIPPED = "skipped", _("Skipped")
        EXPIRED = "expired", _("Lease expired")
        SUBMITTED = "submitted", _("Submitted")
        RESUBMITTED = "resubmitted", _("Resubmitted")
        REVIEW_STARTED = "review_started", _("Review started")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")
        FIXED = "fixed", _("Fixed by reviewer")
        ESCALATED = "escalated", _("Escalated")
        ROUTED = "routed", _("Routed for low agreement")
        ACCEPTED = "accepted", _("Accepted")
        CANCELLED = "cancelled", _("Cancelled")
        REVERTED = "reverted", _("Reverted")
        CLARIFICATION_ASKED = "clarification_asked", _("Clarification asked")
        CLARIFICATION_ANSWERED = "clarification_answered", _("Clarification answered")
        BATCH_ACTIVATED = "batch_activated", _("Batch activated")
        BATCH_PAUSED = "batch_paused", _("Batch paused")
        BATCH_IN_REVIEW = "batch_in_review", _("Batch in review")
        BATCH_COMPLETED = "batch_completed", _("Batch completed")
        BATCH_BLOCKED = "batch_blocked", _("Batch blocked")
        BATCH_OVERRIDDEN = "batch_overridden", _("Batch gate overridden")
        BATCH_DELIVERED = "batch_delivered", _("Batch delivered")

    project = models.ForeignKey("projects.Project", on_delete=models.PROTECT, related_name="events")
    batch = models.ForeignKey("projects.Batch", null=True, blank=True, on_delete=models.PROTECT, related_name="events")
    task = models.ForeignKey(Task, null=True, blank=True, on_delete=models.PROTECT, related_name="events")
    assignment = models.ForeignKey(Assignment, null=True, blank=True, on_delete=models.PROTECT, related_name="events")
    type = models.CharField(max_length=24, choices=Type.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                              related_name="+")
    at = models.DateTimeField(auto_now_add=True)
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [
            models.Index(fields=["task", "at"], name="event_task_at"),
            models.Index(fields=["project", "type", "at"], name="event_project_type_at"),
            models.Index(fields=["actor", "type", "at"], name="event_actor_type_at"),
            models.Index(fields=["batch", "at"], name="event_batch_at"),
        ]

    def __str__(self):
        return f"{self.get_type_display()} at {self.at:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.get("force_insert"):
            raise PermissionError("Task events are append-only; write a new event instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("Task events are append-only and cannot be deleted.")


class Clarification(TimeStampedModel):
    """A question an annotator asked about a task, and a manager's answer; confidential ones only managers see."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        ANSWERED = "answered", _("Answered")

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="clarifications")
    assignment = models.ForeignKey(Assignment, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="clarifications")
    asked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="clarifications")
    question = models.TextField()
    confidential = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    answer = models.TextField(blank=True)
    answered_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="+")
    answered_at = models.DateTimeField(null=True, blank=True)

    history = history()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["task", "status"], name="clarification_task_status"),
                   models.Index(fields=["asked_by", "status"], name="clarification_asker_status")]

    def __str__(self):
        return f"Clarification {self.pk} on task {self.task_id}"
