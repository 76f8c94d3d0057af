"""Reviews, the error taxonomy, computed figures, alerts and webhooks."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from apps.core.audit import history
from apps.core.models import TimeStampedModel

DEFAULT_ERROR_TYPES = [
    ("wrong_label", "Wrong label"),
    ("missed_object", "Missed object"),
    ("extra_object", "Extra object"),
    ("boundary", "Boundary"),
    ("guideline_not_followed", "Guideline not followed"),
    ("data_problem", "Data problem"),
]


class ErrorType(models.Model):
    """One entry of a project's error taxonomy, chosen by reviewers when they reject or fix."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="error_types")
    code = models.SlugField(max_length=50)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)

    history = history()

    class Meta:
        ordering = ["project", "name"]
        constraints = [models.UniqueConstraint(fields=["project", "code"], name="error_type_code_unique")]

    def __str__(self):
        return self.name


class Review(models.Model):
    """A reviewer's decision on one annotation version: approve, reject, fix or escalate."""

    class Decision(models.TextChoices):
        APPROVE = "approve", _("Approve")
        REJECT = "reject", _("Reject")
        FIX = "fix", _("Fix and accept")
        ESCALATE = "escalate", _("Escalate")

    annotation = models.ForeignKey("tasks.Annotation", on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    decision = models.CharField(max_length=10, choices=Decision.choices, blank=True)
    error_types = models.ManyToManyField(ErrorType, blank=True, related_name="reviews")
    comment = models.TextField(blank=True)
    corrected_annotation = models.ForeignKey("tasks.Annotation", null=True, blank=True, on_delete=models.PROTECT,
                                             related_name="+")
    started_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    history = history(m2m_fields=[error_types])

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(fields=["annotation", "reviewer"], condition=Q(decided_at__isnull=True),
                                    name="review_one_open_per_reviewer"),
        ]
        indexes = [
            models.Index(fields=["reviewer", "decided_at"], name="review_reviewer_decided"),
            models.Index(fields=["annotation", "decision"], name="review_annotation_decision"),
        ]

    def __str__(self):
        return f"{self.get_decision_display() or 'Open review'} by {self.reviewer} on annotation {self.annotation_id}"


class MetricSnapshot(models.Model):
    """A figure computed by a worker (progress, annotator, agreement …) at a point in time; requests only read these."""

    class Scope(models.TextChoices):
        PROJECT = "project", _("Project")
        BATCH = "batch", _("Batch")
        ANNOTATOR = "annotator", _("Annotator")
        TASK = "task", _("Task")

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="snapshots")
    batch = models.ForeignKey("projects.Batch", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="+")
    task = models.ForeignKey("tasks.Task", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    scope = models.CharField(max_length=10, choices=Scope.choices)
    kind = models.CharField(max_length=40, help_text=_("e.g. progress, annotator, agreement"))
    values = models.JSONField(default=dict)
    computed_at = models.DateTimeField(db_index=True)

    # Rows saved one by one (a project's progress, quality and the engine's state) leave a history row: what was
    # computed, for what, and when. Not the values: they are derived, the engine's state (tens of kB) is saved
    # after every few seconds of events, and the snapshots themselves are the series of figures. The task-scope
    # snapshots, written in bulk (bulk_create/bulk_update/update), leave none.
    history = history(excluded_fields=["values"])

    class Meta:
        ordering = ["-computed_at"]
        get_latest_by = "computed_at"
        indexes = [models.Index(fields=["project", "scope", "kind", "-computed_at"], name="snapshot_lookup")]

    def __str__(self):
        return f"{self.kind} of {self.project} at {self.computed_at:%Y-%m-%d %H:%M}"


class Alert(TimeStampedModel):
    """Something a manager should look at: a breached gate, a throughput dip, an outlier annotator, a hard task."""

    class Kind(models.TextChoices):
        GATE_BREACH = "gate_breach", _("Quality gate breached")
        THROUGHPUT_DIP = "throughput_dip", _("Throughput dip")
        OUTLIER_ANNOTATOR = "outlier_annotator", _("Outlier annotator")
        LOW_AGREEMENT_TASK = "low_agreement_task", _("Low-agreement task")

    class Severity(models.TextChoices):
        INFO = "info", _("Info")
        WARNING = "warning", _("Warning")
        CRITICAL = "critical", _("Critical")

    class State(models.TextChoices):
        OPEN = "open", _("Open")
        ACKNOWLEDGED = "acknowledged", _("Acknowledged")
        RESOLVED = "resolved", _("Resolved")

    kind = models.CharField(max_length=20, choices=Kind.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.WARNING)
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="alerts")
    batch = models.ForeignKey("projects.Batch", null=True, blank=True, on_delete=models.CASCADE, related_name="alerts")
    gate = models.ForeignKey("projects.QualityGate", null=True, blank=True, on_delete=models.CASCADE,
                             related_name="alerts")
    task = models.ForeignKey("tasks.Task", null=True, blank=True, on_delete=models.CASCADE, related_name="alerts",
                             help_text=_("The task a low-agreement alert is about."))
    message = models.TextField(help_text=_("The text as raised, in English; shown translated from `details`."))
    details = models.JSONField(default=dict, blank=True,
                               help_text=_("What the message says, as data (figures, names), so that each reader "
                                           "gets it in their own language."))
    state = models.CharField(max_length=12, choices=State.choices, default=State.OPEN)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+", help_text=_("Empty when the alert resolved itself."))

    history = history()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One live alert per gate while the breach lasts: no alert storms.
            models.UniqueConstraint(fields=["gate"], condition=Q(state__in=["open", "acknowledged"]),
                                    name="alert_one_live_per_gate"),
            models.UniqueConstraint(fields=["task"], condition=Q(state__in=["open", "acknowledged"]),
                                    name="alert_one_live_per_task"),
        ]
        indexes = [models.Index(fields=["project", "state", "-created_at"], name="alert_project_state")]

    def __str__(self):
        return f"{self.get_kind_display()}: {self.message[:60]}"


class AlertRead(models.Model):
    """That a user has seen an alert: the portal's bell counts a manager's live alerts without one."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="reads")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    read_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "alert"], name="alert_read_once")]

    def __str__(self):
        return f"{self.user} read alert {self.alert_id}"


class SanityRule(TimeStampedModel):
    """A project's own check on every submission, on top of the schema rules: refused at submit, reported over
    the existing annotations."""

    class Kind(models.TextChoices):
        MIN_ITEMS = "min_items", _("At least N items (boxes, spans or labels)")
        MAX_ITEMS = "max_items", _("At most N items (boxes, spans or labels)")
        LABEL_NEEDS_NOTE = "label_needs_note", _("Label X needs a note")
        LABEL_FORBIDDEN = "label_forbidden", _("Label X may not be used")

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="sanity_rules")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    label = models.CharField(max_length=100, blank=True,
                             help_text=_("The label value the rule is about (label rules; optional for counts: "
                                         "then items of any label are counted)."))
    count = models.PositiveIntegerField(default=1, help_text=_("N, for the count rules."))
    message = models.CharField(max_length=300, blank=True,
                               help_text=_("Shown to the annotator when the rule refuses a submission. Empty: a "
                                           "standard message."))
    is_active = models.BooleanField(default=True)

    history = history()

    class Meta:
        ordering = ["project", "id"]
        indexes = [models.Index(fields=["project", "is_active"], name="sanity_rule_project_active")]

    def __str__(self):
        return f"{self.get_kind_display()} ({self.project})"


class Webhook(TimeStampedModel):
    """A project's subscription: events are POSTed to `url`, signed with HMAC-SHA256 of the body under `secret`."""

    class Event(models.TextChoices):
        TASK_ACCEPTED = "task.accepted", _("Task accepted")
        BATCH_COMPLETED = "batch.completed", _("Batch completed")
        BATCH_BLOCKED = "batch.blocked", _("Batch blocked")
        ALERT_RAISED = "alert.raised", _("Alert raised")

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500, help_text=_("An http(s) URL."))
    secret = models.CharField(max_length=128, help_text=_("Shared secret for the X-LabelPortal-Signature header."))
    events = models.JSONField(default=list, help_text=_("Event names, e.g. [\"task.accepted\", \"alert.raised\"]."))
    is_active = models.BooleanField(default=True)

    history = history(excluded_fields=["secret"])

    class Meta:
        ordering = ["project", "url"]

    def __str__(self):
        return self.url


class WebhookDelivery(models.Model):
    """One event sent (or being retried) to one webhook, with its outcome."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Failed")
        REFUSED = "refused", _("Refused (address not allowed)")

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["webhook", "status"], name="delivery_webhook_status")]

    def __str__(self):
        return f"{self.event} → {self.webhook} ({self.status})"
