"""Projects, their guidelines, batches, quality gates and members."""

from django.conf import settings
from django.core import exceptions
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from apps.core.audit import history
from apps.core.errors import ValidationError
from apps.core.models import TimeStampedModel

from .label_schema import TaskType, label_schema_validate

FRACTION = [MinValueValidator(0.0), MaxValueValidator(1.0)]


class Project(TimeStampedModel):
    """A labeling project: one task type, one label schema, one policy for overlap, gold and review."""

    class ReviewMode(models.TextChoices):
        NONE = "none", _("No review")
        ALL = "all", _("Review everything")
        SAMPLE = "sample", _("Review a sample")

    class Sampling(models.TextChoices):
        SEQUENTIAL = "sequential", _("Sequential")
        RANDOM = "random", _("Random")
        UNCERTAINTY = "uncertainty", _("Lowest model confidence first")

    class Routing(models.TextChoices):
        OFF = "off", _("Do nothing (alert only)")
        EXTRA_ANNOTATOR = "extra_annotator", _("Ask one more annotator")
        SENIOR_REVIEW = "senior_review", _("Send to senior review")

    TaskType = TaskType

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    task_type = models.CharField(max_length=20, choices=TaskType.choices)
    label_schema = models.JSONField(help_text=_('{"labels": [{"value": "cat", "name": "Cat", "hotkey": "1", '
                                                '"color": "#e6194b"}], "options": {}}'))
    overlap = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1), MaxValueValidator(20)],
                                               help_text=_("Annotators needed per task."))
    gold_rate = models.FloatField(default=0.0, validators=FRACTION,
                                  help_text=_("Share of an annotator's tasks that are gold tasks (0-1)."))
    review_mode = models.CharField(max_length=10, choices=ReviewMode.choices, default=ReviewMode.ALL)
    review_sample_rate = models.FloatField(default=0.2, validators=FRACTION,
                                           help_text=_("Share of submissions reviewed when the mode is 'sample'."))
    sampling = models.CharField(max_length=12, choices=Sampling.choices, default=Sampling.SEQUENTIAL)
    lease_minutes = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1), MaxValueValidator(24 * 60)])
    low_agreement_threshold = models.FloatField(
        null=True, blank=True, validators=FRACTION,
        help_text=_("A task whose agreement (mean pairwise score of its annotations, 0-1) falls below this raises "
                    "an alert and is routed as set below. Empty: tasks are not checked."))
    low_agreement_routing = models.CharField(max_length=16, choices=Routing.choices, default=Routing.OFF)
    max_overlap = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text=_("Most annotators a task may get when routing asks for one more. Empty: overlap + 1."))
    pause_low_gold = models.BooleanField(
        default=False, help_text=_("Pause an annotator on this project when the quality engine flags their gold "
                                   "accuracy as low (they are told why; a manager resumes them)."))
    current_guideline = models.ForeignKey("Guideline", null=True, blank=True, on_delete=models.SET_NULL,
                                          related_name="+", editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    history = history()

    class Meta:
        ordering = ["name"]
        permissions = [
            ("annotate_project", "Can annotate tasks of the project"),
            ("review_project", "Can review annotations of the project"),
            ("manage_project", "Can manage the project"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(overlap__gte=1), name="project_overlap_gte_1"),
            models.CheckConstraint(condition=Q(gold_rate__gte=0, gold_rate__lte=1), name="project_gold_rate_fraction"),
            models.CheckConstraint(condition=Q(review_sample_rate__gte=0, review_sample_rate__lte=1),
                                   name="project_review_sample_rate_fraction"),
        ]

    def __str__(self):
        return self.name

    def clean(self):
        try:
            self.label_schema = label_schema_validate(self.task_type, self.label_schema)
        except ValidationError as error:
            raise exceptions.ValidationError({"label_schema": error.errors.get("label_schema") or [error.message]})


class Guideline(models.Model):
    """One version of a project's annotation guideline; versions are appended, never edited."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="guidelines")
    version = models.PositiveIntegerField()
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    history = history()

    class Meta:
        ordering = ["project", "-version"]
        constraints = [models.UniqueConstraint(fields=["project", "version"], name="guideline_version_unique")]

    def __str__(self):
        return f"{self.project} v{self.version}"


class Batch(TimeStampedModel):
    """A slice of a project's tasks released, paused, reviewed and delivered together."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        ACTIVE = "active", _("Active")
        PAUSED = "paused", _("Paused")
        IN_REVIEW = "in_review", _("In review")
        COMPLETED = "completed", _("Completed")
        BLOCKED = "blocked", _("Blocked")
        DELIVERED = "delivered", _("Delivered")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="batches")
    name = models.CharField(max_length=200)
    priority = models.IntegerField(default=0, help_text=_("Higher first."))
    due_date = models.DateField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT, editable=False)
    override_reason = models.TextField(blank=True, editable=False)
    overridden_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+", editable=False)
    overridden_at = models.DateTimeField(null=True, blank=True, editable=False)

    history = history()

    class Meta:
        ordering = ["project", "-priority", "id"]
        verbose_name_plural = "batches"
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="batch_name_unique_per_project")]
        indexes = [models.Index(fields=["project", "status", "priority"], name="batch_project_status_prio")]

    def __str__(self):
        return self.name


class QualityGate(TimeStampedModel):
    """A threshold on a quality metric that must hold before a batch can be completed or delivered."""

    class Metric(models.TextChoices):
        AGREEMENT = "agreement", _("Agreement")
        GOLD_ACCURACY = "gold_accuracy", _("Gold accuracy")
        ACCEPTANCE_RATE = "acceptance_rate", _("Acceptance rate")
        REWORK_RATE = "rework_rate", _("Rework rate")
        SANITY_PASS_RATE = "sanity_pass_rate", _("Sanity pass rate")

    class Comparator(models.TextChoices):
        GTE = "gte", "≥"
        LTE = "lte", "≤"

    class State(models.TextChoices):
        PENDING = "pending", _("Pending (below minimum sample)")
        PASSING = "passing", _("Passing")
        BREACHED = "breached", _("Breached")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="gates")
    batch = models.ForeignKey(Batch, null=True, blank=True, on_delete=models.CASCADE, related_name="gates",
                              help_text=_("Empty: the gate applies to the whole project and to every batch."))
    metric = models.CharField(max_length=20, choices=Metric.choices)
    comparator = models.CharField(max_length=3, choices=Comparator.choices, default=Comparator.GTE)
    threshold = models.FloatField()
    min_samples = models.PositiveIntegerField(default=50)
    is_active = models.BooleanField(default=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, editable=False)
    last_value = models.FloatField(null=True, blank=True, editable=False)
    last_n = models.PositiveIntegerField(null=True, blank=True, editable=False)
    evaluated_at = models.DateTimeField(null=True, blank=True, editable=False)

    history = history()

    class Meta:
        ordering = ["project", "metric"]
        indexes = [models.Index(fields=["project", "state"], name="gate_project_state")]

    def __str__(self):
        scope = self.batch.name if self.batch_id else _("project")
        return f"{self.get_metric_display()} {self.get_comparator_display()} {self.threshold} ({scope})"

    def clean(self):
        if self.batch_id and self.project_id and self.batch.project_id != self.project_id:
            raise exceptions.ValidationError({"batch": _("The batch belongs to another project.")})
        if self.metric != self.Metric.REWORK_RATE and not 0 <= self.threshold <= 1:
            raise exceptions.ValidationError({"threshold": _("This metric is a fraction between 0 and 1.")})

    def passes(self, value):
        return value >= self.threshold if self.comparator == self.Comparator.GTE else value <= self.threshold


class Membership(models.Model):
    """One role of one user in one project; kept in step with the user's object permissions on the project."""

    class Role(models.TextChoices):
        ANNOTATOR = "annotator", _("Annotator")
        REVIEWER = "reviewer", _("Reviewer")
        MANAGER = "manager", _("Manager")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    paused_at = models.DateTimeField(null=True, blank=True, editable=False,
                                     help_text=_("Set while the annotator is paused on this project."))
    pause_reason = models.TextField(blank=True, editable=False)

    history = history()

    class Meta:
        ordering = ["project", "role", "user"]
        constraints = [models.UniqueConstraint(fields=["project", "user", "role"], name="membership_unique_role")]
        indexes = [models.Index(fields=["user", "role"], name="membership_user_role")]

    def __str__(self):
        return f"{self.user} — {self.get_role_display()} of {self.project}"


ROLE_PERMISSIONS = {
    Membership.Role.ANNOTATOR: "annotate_project",
    Membership.Role.REVIEWER: "review_project",
    Membership.Role.MANAGER: "manage_project",
}
