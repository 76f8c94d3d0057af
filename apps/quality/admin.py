"""The admin of quality data: error types, reviews (read-only), figures, alerts and webhooks."""

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy, ngettext

from apps.core.admin_base import (
    BatchListFilter,
    HistoryAdmin,
    ProjectListFilter,
    ProjectScopedAdminMixin,
    ReadOnlyAdminMixin,
    project_list_filter,
)
from apps.core.errors import TransitionError

from . import services as quality_services
from .forms import WebhookForm
from .models import Alert, ErrorType, MetricSnapshot, Review, Webhook, WebhookDelivery


def alerts_acknowledge(*, alerts, actor):
    """Acknowledge the open ones among `alerts` through the service; returns how many changed."""
    acknowledged = 0
    for alert in alerts.filter(state=Alert.State.OPEN).order_by("pk"):
        try:
            quality_services.alert_acknowledge(alert=alert, actor=actor)
        except TransitionError:
            continue  # someone acknowledged it meanwhile
        acknowledged += 1
    return acknowledged


@admin.register(ErrorType)
class ErrorTypeAdmin(ProjectScopedAdminMixin, HistoryAdmin):
    """A project's error taxonomy; retire an entry with 'active' off so past reviews keep their meaning."""

    list_display = ["name", "code", "project", "is_active"]
    list_filter = ["is_active", ProjectListFilter]
    list_select_related = ["project"]
    search_fields = ["name", "code", "project__name"]
    history_list_display = ["name", "is_active"]

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        return readonly + ["project", "code"] if obj is not None else readonly


@admin.register(Review)
class ReviewAdmin(ProjectScopedAdminMixin, ReadOnlyAdminMixin, HistoryAdmin):
    """Reviewer decisions, read-only: they are written by the review services."""

    project_path = "annotation__task__project"
    list_display = ["id", "annotation", "reviewer", "decision", "started_at", "decided_at"]
    list_filter = ["decision", project_list_filter("annotation__task__project")]
    list_select_related = ["annotation", "reviewer"]
    search_fields = ["reviewer__username", "comment"]
    raw_id_fields = ["annotation", "corrected_annotation", "reviewer"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    history_list_display = ["decision"]


@admin.register(MetricSnapshot)
class MetricSnapshotAdmin(ProjectScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Figures computed by the workers; read-only."""

    list_display = ["kind", "scope", "project", "batch", "annotator", "task", "computed_at"]
    list_filter = ["scope", "kind", ProjectListFilter]
    list_select_related = ["project", "batch", "annotator", "task"]
    raw_id_fields = ["project", "batch", "annotator", "task"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER


@admin.register(Alert)
class AlertAdmin(ProjectScopedAdminMixin, HistoryAdmin):
    """Alerts are raised by the quality engine; a manager acknowledges them here."""

    list_display = ["kind", "severity", "state", "project", "batch", "message", "created_at", "acknowledged_by",
                    "acknowledged_at"]
    list_filter = ["state", "severity", "kind", ProjectListFilter, BatchListFilter]
    list_select_related = ["project", "batch", "acknowledged_by"]
    search_fields = ["message", "project__name"]
    actions = ["acknowledge_alerts"]
    history_list_display = ["state", "acknowledged_by"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    @admin.action(description=gettext_lazy("Acknowledge"), permissions=["change"])
    def acknowledge_alerts(self, request, queryset):
        count = alerts_acknowledge(alerts=queryset, actor=request.user)
        if count:
            self.message_user(request, ngettext("%(n)d alert acknowledged.", "%(n)d alerts acknowledged.", count)
                              % {"n": count}, messages.SUCCESS)
        else:
            self.message_user(request, gettext_lazy("No open alert was selected."), messages.WARNING)


@admin.register(Webhook)
class WebhookAdmin(ProjectScopedAdminMixin, HistoryAdmin):
    form = WebhookForm
    list_display = ["url", "project", "events", "is_active", "created_at"]
    list_filter = ["is_active", ProjectListFilter]
    list_select_related = ["project"]
    search_fields = ["url", "project__name"]
    fields = ["project", "url", "events", "secret", "is_active"]
    history_list_display = ["url", "is_active"]

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        if getattr(request, "_history_read_only", False):
            fields.remove("secret")  # a past version's page shows fields as text; the secret is never shown
        return fields


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ProjectScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """What was sent to each webhook and how it went; read-only."""

    project_path = "webhook__project"
    list_display = ["event", "webhook", "status", "attempts", "response_status", "created_at", "delivered_at"]
    list_filter = ["status", "event", project_list_filter("webhook__project")]
    list_select_related = ["webhook"]
    search_fields = ["webhook__url", "event"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
