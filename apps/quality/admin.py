"""The admin of quality data: error types, reviews (read-only), figures, alerts and webhooks; the sanity rules of a
project (an inline on its page, and a list of their own with their history) and their report."""

import functools

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.forms.models import BaseInlineFormSet
from django.http import StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.translation import gettext as _, gettext_lazy, ngettext

from apps.core.admin_base import (
    BatchListFilter,
    HistoryAdmin,
    ProjectListFilter,
    ProjectScopedAdminMixin,
    ReadOnlyAdminMixin,
    project_list_filter,
)
from apps.core.errors import PermissionDeniedError, TransitionError
from apps.core.permissions import MANAGE, has_project_perm

from . import sanity, services as quality_services
from .alerts import alert_text
from .forms import WebhookForm
from .models import Alert, ErrorType, MetricSnapshot, Review, SanityRule, Webhook, WebhookDelivery


def _alerts_apply(alerts, *, states, service, actor):
    """Apply an alert service (acknowledge, resolve) to those of `alerts` in `states`; returns how many changed.
    One that changed meanwhile, or that the user may not manage, is left as it is."""
    changed = 0
    for alert in alerts.filter(state__in=states).order_by("pk"):
        try:
            service(alert=alert, actor=actor)
        except (TransitionError, PermissionDeniedError):
            continue
        changed += 1
    return changed


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
class MetricSnapshotAdmin(ProjectScopedAdminMixin, ReadOnlyAdminMixin, HistoryAdmin):
    """Figures computed by the workers; read-only, with their history (who or which task computed them)."""

    list_display = ["kind", "scope", "project", "batch", "annotator", "task", "computed_at"]
    list_filter = ["scope", "kind", ProjectListFilter]
    list_select_related = ["project", "batch", "annotator", "task"]
    raw_id_fields = ["project", "batch", "annotator", "task"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    history_list_display = ["computed_at"]


@admin.register(Alert)
class AlertAdmin(ProjectScopedAdminMixin, HistoryAdmin):
    """Alerts are raised by the quality engine; a manager acknowledges them here."""

    list_display = ["kind", "severity", "state", "project", "batch", "text", "created_at", "acknowledged_by",
                    "resolved_by", "resolved_at"]
    list_filter = ["state", "severity", "kind", ProjectListFilter, BatchListFilter]
    list_select_related = ["project", "batch", "acknowledged_by", "resolved_by"]
    search_fields = ["message", "project__name"]
    actions = ["acknowledge_alerts", "resolve_alerts"]
    history_list_display = ["state", "acknowledged_by", "resolved_by"]

    @admin.display(description=gettext_lazy("Message"))
    def text(self, alert):
        return alert_text(alert)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    @admin.action(description=gettext_lazy("Acknowledge"), permissions=["change"])
    def acknowledge_alerts(self, request, queryset):
        count = _alerts_apply(queryset, states=[Alert.State.OPEN], service=quality_services.alert_acknowledge,
                              actor=request.user)
        if count:
            self.message_user(request, ngettext("%(n)d alert acknowledged.", "%(n)d alerts acknowledged.", count)
                              % {"n": count}, messages.SUCCESS)
        else:
            self.message_user(request, gettext_lazy("No open alert was selected."), messages.WARNING)

    @admin.action(description=gettext_lazy("Resolve"), permissions=["change"])
    def resolve_alerts(self, request, queryset):
        count = _alerts_apply(queryset, states=[Alert.State.OPEN, Alert.State.ACKNOWLEDGED],
                              service=quality_services.alert_resolve, actor=request.user)
        if count:
            self.message_user(request, ngettext("%(n)d alert resolved.", "%(n)d alerts resolved.", count)
                              % {"n": count}, messages.SUCCESS)
        else:
            self.message_user(request, gettext_lazy("No open or acknowledged alert was selected."), messages.WARNING)


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


# --- sanity rules: an inline on the project page, and their report ---------------------------------------------------


class SanityRuleForm(forms.ModelForm):
    """A rule, checked against the project it belongs to (its task type and label schema, as just edited)."""

    class Meta:
        model = SanityRule
        fields = ["kind", "label", "count", "message", "is_active"]

    def clean(self):
        cleaned = super().clean()
        project = getattr(self, "project", None)
        if project is not None and cleaned.get("kind"):
            problems = sanity.sanity_rule_problems(task_type=project.task_type, schema=project.label_schema,
                                                   kind=cleaned["kind"], label=cleaned.get("label", ""),
                                                   count=cleaned.get("count"))
            for name, field_messages in problems.items():
                for message in field_messages:
                    self.add_error(name, message)
        return cleaned


class SanityRuleFormSet(BaseInlineFormSet):
    """The project's rules together: each knows its project; rules no result could pass together are refused; a
    change has the project's quality figures recomputed (the sanity pass rate follows the rules)."""

    def _construct_form(self, i, **kwargs):
        form = super()._construct_form(i, **kwargs)
        form.project = self.instance  # the project as the page's form left it (its label schema just edited)
        return form

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        # An untouched extra form has no cleaned data; a deleted rule no longer counts.
        kept = [form.instance for form in self.forms
                if getattr(form, "cleaned_data", None) and not form.cleaned_data.get("DELETE")]
        conflicts = sanity.sanity_rules_conflicts(kept)
        if conflicts:
            raise forms.ValidationError(conflicts)

    def save(self, commit=True):
        saved = super().save(commit=commit)
        if commit and (self.new_objects or self.changed_objects or self.deleted_objects):
            sanity.sanity_rules_changed(project_id=self.instance.pk)
        return saved


class SanityRuleInline(admin.TabularInline):
    """The project's own sanity rules (on top of the schema's): refused at submit, counted in the sanity pass
    rate, reported over the existing annotations. Managers of the project edit them once the project exists."""

    model = SanityRule
    form = SanityRuleForm
    formset = SanityRuleFormSet
    extra = 0
    fields = ["kind", "label", "count", "message", "is_active"]
    template = "admin/quality/sanityrule/tabular.html"
    verbose_name = gettext_lazy("sanity rule")
    verbose_name_plural = gettext_lazy("sanity rules (on top of the label schema's)")

    def _manages(self, request, obj):
        # Scoped to the project, not to a model permission: the project page is already limited to the projects
        # the user manages, and a manager's right over its rules comes with the project.
        return obj is not None and has_project_perm(request.user, obj, MANAGE)

    def get_queryset(self, request):
        # Django asks for the view permission here without the project; the formset keeps to the project's rules,
        # and the page is only shown to whom _manages() lets in.
        return SanityRule.objects.all()

    def has_view_permission(self, request, obj=None):
        return self._manages(request, obj)

    def has_add_permission(self, request, obj=None):
        return self._manages(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._manages(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._manages(request, obj)


class SanityRuleAdminForm(SanityRuleForm):
    """A rule on its own page: the same checks as on the project page, against the rule's project and its other
    rules."""

    class Meta(SanityRuleForm.Meta):
        fields = ["project", *SanityRuleForm.Meta.fields]

    def clean(self):
        self.project = self.instance.project if self.instance.project_id else self.cleaned_data.get("project")
        cleaned = super().clean()
        if self.project is not None and not self.errors:
            others = SanityRule.objects.filter(project=self.project).exclude(pk=self.instance.pk)
            rule = SanityRule(project=self.project, **{name: cleaned.get(name) for name in SanityRuleForm.Meta.fields
                                                       if name in cleaned})
            conflicts = sanity.sanity_rules_conflicts([*others, rule])
            if conflicts:
                raise forms.ValidationError(conflicts)
        return cleaned


@admin.register(SanityRule)
class SanityRuleAdmin(ProjectScopedAdminMixin, HistoryAdmin):
    """Every project's sanity rules in one list, each with its history; they are also edited on the project page.
    A change has the project's quality figures recomputed, as there."""

    form = SanityRuleAdminForm
    list_display = ["__str__", "project", "kind", "label", "count", "is_active", "updated_at"]
    list_filter = [ProjectListFilter, "kind", "is_active"]
    list_select_related = ["project"]
    search_fields = ["label", "message", "project__name"]
    history_list_display = ["kind", "label", "count", "is_active"]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        return readonly + ["project"] if obj is not None and "project" not in readonly else readonly

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        sanity.sanity_rules_changed(project_id=obj.project_id)

    def delete_model(self, request, obj):
        project_id = obj.project_id
        super().delete_model(request, obj)
        sanity.sanity_rules_changed(project_id=project_id)

    def delete_queryset(self, request, queryset):
        project_ids = set(queryset.values_list("project_id", flat=True))
        for rule in queryset:
            rule.delete()  # one by one, so each removal leaves a history row
        for project_id in sorted(project_ids):
            sanity.sanity_rules_changed(project_id=project_id)


REPORT_LIMIT = 50  # offenders listed per rule on the page; the CSV has them all


def sanity_report_urls(project_admin):
    """The URL of a project's sanity report, among the project admin's own (ProjectAdmin.get_urls adds it)."""
    view = project_admin.admin_site.admin_view(functools.partial(sanity_report_view, project_admin))
    return [path("<path:object_id>/sanity-report/", view, name="projects_project_sanity_report")]


def sanity_report_view(project_admin, request, object_id):
    """Which current annotations break the project's rules: a count per rule and the first offenders, or every
    offender as CSV (`?format=csv`, streamed). For the project's managers only (404 for anyone else)."""
    project = project_admin.get_object(request, unquote(object_id))
    if project is None:
        return project_admin._get_obj_does_not_exist_redirect(request, project_admin.opts, object_id)
    if not has_project_perm(request.user, project, MANAGE):
        raise PermissionDenied
    if request.GET.get("format") == "csv":
        response = StreamingHttpResponse(sanity.sanity_report_csv(project), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="sanity-report-{project.slug}.csv"'
        return response
    report = sanity.sanity_report(project, limit=REPORT_LIMIT)
    context = {
        **project_admin.admin_site.each_context(request),
        "title": _("Sanity report of %(project)s") % {"project": project},
        "opts": project_admin.opts,
        "original": project,
        "report": report,
        "limit": REPORT_LIMIT,
    }
    return TemplateResponse(request, "admin/quality/sanity_report.html", context)

