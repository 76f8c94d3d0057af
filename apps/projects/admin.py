"""The admin where projects are set up: schema, guidelines, batches, gates, error types, members, task imports."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _, gettext_lazy, ngettext
from guardian.admin import (AdminGroupObjectPermissionsForm, AdminUserObjectPermissionsForm,
                            ReinforcedGuardedModelAdminMixin)
from guardian.shortcuts import get_group_perms, get_user_perms, remove_perm

from apps.core.admin_base import HistoryAdmin, ProjectListFilter, ProjectScopedAdminMixin, ReadOnlyAdminMixin
from apps.core.errors import ApplicationError, PayloadTooLargeError, ValidationError
from apps.core.permissions import MANAGE, has_project_perm
from apps.quality.admin import SanityRuleInline, sanity_report_urls
from apps.quality.models import ErrorType

from . import services
from .forms import BatchOverrideForm, ProjectForm, TaskImportForm
from .models import ROLE_PERMISSIONS, Batch, Guideline, Membership, Project, QualityGate

PROGRESS_ANNOTATIONS = {
    "tasks_total": Count("tasks", filter=~Q(tasks__status="cancelled")),
    "tasks_accepted": Count("tasks", filter=Q(tasks__status="accepted")),
}


def progress_display(obj):
    """'accepted / total (pct %)' from the counts the admin's queryset annotated."""
    total, accepted = getattr(obj, "tasks_total", None), getattr(obj, "tasks_accepted", None)
    if total is None:
        return "-"
    if not total:
        return "0 / 0"
    return f"{accepted} / {total} ({100 * accepted / total:.0f}%)"


def memberships_permissions_sync(project, user_ids):
    """Bring the guardian permissions of these users on `project` in line with their memberships."""
    for user in get_user_model().objects.filter(pk__in=set(user_ids)):
        services.membership_permissions_sync(project=project, user=user)


def _parent_object_id(request):
    match = request.resolver_match
    return unquote(match.kwargs["object_id"]) if match and "object_id" in match.kwargs else None


# --- inlines on the project page ----------------------------------------------------------------------------


class GuidelineInline(admin.StackedInline):
    """Guideline versions: the existing ones are read-only; a new one is appended through guideline_add."""

    model = Guideline
    extra = 0
    fields = ["version", "is_current", "text", "created_by", "created_at"]
    readonly_fields = ["version", "is_current", "created_by", "created_at"]
    verbose_name = gettext_lazy("guideline version")
    verbose_name_plural = gettext_lazy("guideline versions (append a new one; versions are never edited)")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("project", "created_by")

    @admin.display(description=gettext_lazy("current"), boolean=True)
    def is_current(self, obj):
        return bool(obj.pk) and obj.project.current_guideline_id == obj.pk

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class BatchInline(admin.TabularInline):
    model = Batch
    extra = 0
    fields = ["name", "priority", "due_date", "status"]
    readonly_fields = ["status"]
    show_change_link = True


class QualityGateInline(admin.TabularInline):
    model = QualityGate
    extra = 0
    fields = ["metric", "comparator", "threshold", "min_samples", "batch", "is_active", "state", "last_value",
              "evaluated_at"]
    readonly_fields = ["state", "last_value", "evaluated_at"]
    show_change_link = True

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "batch":
            project_id = _parent_object_id(request)
            kwargs["queryset"] = Batch.objects.filter(project_id=project_id) if project_id else Batch.objects.none()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ErrorTypeInline(admin.TabularInline):
    """The error taxonomy; entries are retired with is_active, not deleted, so past reviews keep their meaning."""

    model = ErrorType
    extra = 0
    fields = ["code", "name", "description", "is_active"]

    def has_delete_permission(self, request, obj=None):
        return False


class MembershipInline(admin.TabularInline):
    """Members and roles; ProjectAdmin.save_formset keeps their object permissions in step."""

    model = Membership
    extra = 0
    fields = ["user", "role", "created_at", "paused_at", "pause_reason"]
    readonly_fields = ["created_at", "paused_at", "pause_reason"]
    autocomplete_fields = ["user"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")


# --- the object-permissions page: a person's roles ------------------------------------------------------------

PERMISSION_ROLES = {perm: role for role, perm in ROLE_PERMISSIONS.items()}  # annotate_project → annotator, …
VIEW_PERMISSION = "view_project"


class MemberPermissionsForm(AdminUserObjectPermissionsForm):
    """guardian's per-user permissions form on a project, made to edit the person's memberships instead.

    The permissions chosen are roles: annotate → annotator, review → reviewer, manage → manager (several at once
    are several roles). Saving adds and removes memberships through the membership services (history, the acting
    admin, the managers' group), which then set the person's object permissions to exactly their roles' (view
    comes with any role). View alone is no role and is refused: a person either has a role in the project or no
    access to it. Nothing chosen removes the person from the project. `actor` is the admin saving the form.
    """

    actor = None

    def get_obj_perms_field_choices(self):
        choices = dict(super().get_obj_perms_field_choices())
        return [(perm, choices.get(perm, perm)) for perm in (VIEW_PERMISSION, *PERMISSION_ROLES)]

    def clean_permissions(self):
        chosen = set(self.cleaned_data.get("permissions") or [])
        if chosen and not chosen & set(PERMISSION_ROLES):
            raise forms.ValidationError(_(
                "“View” alone is not a role: every member of the project can view it. Choose annotate, review "
                "or manage (annotator, reviewer, manager), or nothing to take the person out of the project."))
        return sorted(chosen)

    def clean(self):
        cleaned = super().clean()
        if self.actor is not None and not has_project_perm(self.actor, self.obj, MANAGE):
            raise forms.ValidationError(_("Only a manager of the project can change its members."))
        return cleaned

    def roles(self):
        return {PERMISSION_ROLES[perm] for perm in self.cleaned_data["permissions"] if perm in PERMISSION_ROLES}

    def save_obj_perms(self):
        project, user = self.obj, self.user
        wanted = self.roles()
        current = set(Membership.objects.filter(project=project, user=user).values_list("role", flat=True))
        # All or nothing; new roles first and the manager role taken away last, so that a manager editing their
        # own row still manages the project for every change it makes (clean() checked that they do).
        with transaction.atomic():
            for role in sorted(wanted - current):
                services.membership_add(project=project, user=user, role=role, actor=self.actor)
            for role in sorted(current - wanted, key=lambda role: (role == Membership.Role.MANAGER, role)):
                services.membership_remove(project=project, user=user, role=role, actor=self.actor)
            if wanted == current:
                # no membership changed: still make the permissions exactly the roles' (e.g. a stray grant)
                services.membership_permissions_sync(project=project, user=user)
            # and none besides them (add/change/delete granted on this page before it edited roles)
            for codename in set(get_user_perms(user, project)) - {VIEW_PERMISSION, *PERMISSION_ROLES}:
                remove_perm(codename, user, project)


class GroupPermissionsForm(AdminGroupObjectPermissionsForm):
    """Groups get no project permissions: roles are per person (Membership). An old group grant can be removed
    here; a new one is refused with the reason."""

    def clean_permissions(self):
        chosen = set(self.cleaned_data.get("permissions") or [])
        if chosen - set(get_group_perms(self.group, self.obj)):
            raise forms.ValidationError(_(
                "Project roles are given to people, not groups: add each person as a member (annotator, reviewer "
                "or manager). Permissions a group already has can only be removed here."))
        return sorted(chosen)


# --- projects -----------------------------------------------------------------------------------------------


class ProjectAdminForm(ProjectForm):
    """The project form with the automatic routing settings, which a form that does not send them leaves off."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "low_agreement_routing" in self.fields:
            self.fields["low_agreement_routing"].required = False

    def clean_low_agreement_routing(self):
        return self.cleaned_data.get("low_agreement_routing") or Project.Routing.OFF


@admin.register(Project)
class ProjectAdmin(ProjectScopedAdminMixin, ReinforcedGuardedModelAdminMixin, HistoryAdmin):
    form = ProjectAdminForm
    project_path = None
    change_form_template = "admin/projects/project/change_form.html"
    list_display = ["name", "slug", "task_type", "review_mode", "overlap", "progress", "created_at"]
    list_filter = ["task_type", "review_mode", "sampling"]
    search_fields = ["name", "slug"]
    readonly_fields = ["progress", "current_guideline", "created_by", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "description", "task_type"]}),
        (gettext_lazy("Label schema"), {"fields": ["label_schema"]}),
        (gettext_lazy("Work and review policy"), {"fields": [
            "overlap", "gold_rate", "review_mode", "review_sample_rate", "sampling", "lease_minutes"]}),
        (gettext_lazy("Automatic routing"), {"fields": [
            "low_agreement_threshold", "low_agreement_routing", "max_overlap", "pause_low_gold"]}),
        (gettext_lazy("Record"), {"fields": ["progress", "current_guideline", "created_by", "created_at",
                                             "updated_at"]}),
    ]
    inlines = [GuidelineInline, BatchInline, QualityGateInline, ErrorTypeInline, SanityRuleInline, MembershipInline]
    history_list_display = ["task_type", "review_mode", "overlap"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(**PROGRESS_ANNOTATIONS)

    @admin.display(description=gettext_lazy("accepted / total"), ordering="tasks_accepted")
    def progress(self, obj):
        return progress_display(obj)

    def get_obj_perms_manage_user_form(self, request):
        """A person's permissions on the project are their roles: the form edits memberships (see the form)."""
        return type("MemberPermissionsForm", (MemberPermissionsForm,), {"actor": request.user})

    def get_obj_perms_manage_group_form(self, request):
        return GroupPermissionsForm

    def get_prepopulated_fields(self, request, obj=None):
        # Not the `prepopulated_fields` attribute: simple-history's version view reads that one for a form whose
        # fields are all read-only.
        return {"slug": ["name"]} if obj is None else {}

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and "task_type" not in readonly and obj.tasks.exists():
            readonly.append("task_type")  # the tasks' data and results were made for this type
        return readonly

    def get_inlines(self, request, obj):
        if obj is None:
            # A new project gets the default error taxonomy (save_model); it is edited once the project exists.
            return [inline for inline in self.inlines if inline is not ErrorTypeInline]
        return self.inlines

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if not change:
            project = form.instance
            services.error_types_default_create(project=project)
            if not request.user.is_superuser:
                # Whoever creates a project manages it; otherwise it would vanish from their own admin. After the
                # inlines, so a manager row typed into the member inline is not created twice.
                services.membership_add(project=project, user=request.user, role=Membership.Role.MANAGER)

    def save_formset(self, request, form, formset, change):
        if formset.model is Guideline:
            self._guidelines_append(request, form.instance, formset)
        elif formset.model is Membership:
            self._memberships_save(form.instance, formset)
        else:
            super().save_formset(request, form, formset, change)

    def _guidelines_append(self, request, project, formset):
        added = []
        for guideline in formset.save(commit=False):
            if guideline.pk is None:
                added.append(services.guideline_add(project=project, actor=request.user, text=guideline.text))
        formset.new_objects = added
        if added:
            project.current_guideline = added[-1]

    def _memberships_save(self, project, formset):
        touched = set()
        for membership_form in formset.initial_forms:
            if membership_form in formset.deleted_forms or membership_form.has_changed():
                touched.add(membership_form.initial.get("user"))
        formset.save()
        touched.update(m.user_id for m in formset.new_objects)
        touched.update(m.user_id for m, _changed in formset.changed_objects)
        touched.update(m.user_id for m in formset.deleted_objects)
        touched.discard(None)
        memberships_permissions_sync(project, touched)

    # --- task import ---

    def get_urls(self):
        import_url = path("<path:object_id>/import/", self.admin_site.admin_view(self.import_view),
                          name="projects_project_import")
        return [import_url, *sanity_report_urls(self), *super().get_urls()]

    def import_view(self, request, object_id):
        project = self.get_object(request, unquote(object_id))
        if project is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, project):
            raise PermissionDenied
        form = TaskImportForm(request.POST or None, request.FILES or None)
        failure, row_errors = None, []
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                result = services_tasks_import(project=project, actor=request.user, source=upload,
                                               filename=upload.name,
                                               default_batch_name=form.cleaned_data["default_batch_name"] or None)
            except ValidationError as error:
                failure, row_errors = error.message, _row_errors(error.errors)
            except (PayloadTooLargeError, ApplicationError) as error:
                failure = error.message
            else:
                messages.success(request, _import_summary(result))
                return HttpResponseRedirect(reverse("admin:projects_project_change", args=[project.pk]))
        if failure:
            messages.error(request, failure)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Import tasks into %(project)s") % {"project": project},
            "opts": self.opts,
            "original": project,
            "form": form,
            "row_errors": row_errors,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/projects/project/import.html", context)


def services_tasks_import(**kwargs):
    from apps.tasks.imports import tasks_import

    return tasks_import(**kwargs)


def _row_errors(errors):
    """[(label, [messages])] sorted by row number; keys that are not rows ('file', 'format') come first."""
    def order(key):
        return (1, int(key)) if str(key).isdigit() else (0, 0)

    rows = []
    for key in sorted(errors, key=order):
        if str(key).isdigit():
            label = _("Row %(n)s") % {"n": key}
        else:
            label = {"file": _("File"), "format": _("Format")}.get(str(key), str(key).capitalize())
        messages_ = errors[key] if isinstance(errors[key], (list, tuple)) else [errors[key]]
        rows.append((label, [str(m) for m in messages_]))
    return rows


def _import_summary(result):
    if result.batch is None:
        return _("Imported %(created)d tasks, skipped %(skipped)d duplicates.") % {
            "created": result.created, "skipped": result.skipped}
    return _("Imported %(created)d tasks, skipped %(skipped)d duplicates into batch %(batch)s.") % {
        "created": result.created, "skipped": result.skipped, "batch": result.batch.name}


# --- batches ------------------------------------------------------------------------------------------------


@admin.register(Batch)
class BatchAdmin(ProjectScopedAdminMixin, HistoryAdmin):
    list_display = ["name", "project", "status", "priority", "due_date", "progress", "created_at"]
    list_filter = ["status", ProjectListFilter]
    list_select_related = ["project"]
    search_fields = ["name", "project__name"]
    fields = ["project", "name", "priority", "due_date", "status", "progress", "override_reason", "overridden_by",
              "overridden_at", "created_at", "updated_at"]
    readonly_fields = ["status", "progress", "override_reason", "overridden_by", "overridden_at", "created_at",
                       "updated_at"]
    actions = ["activate_batches", "pause_batches", "review_batches", "complete_batches", "deliver_batches",
               "override_batches"]
    history_list_display = ["status", "priority"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(**PROGRESS_ANNOTATIONS)

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        return readonly + ["project"] if obj is not None and "project" not in readonly else readonly

    @admin.display(description=gettext_lazy("accepted / total"), ordering="tasks_accepted")
    def progress(self, obj):
        return progress_display(obj)

    def _transition(self, request, queryset, to):
        moved = 0
        for batch in queryset.order_by("pk"):
            try:
                services.batch_transition(batch=batch, actor=request.user, to=to)
            except ApplicationError as error:
                self.message_user(request, error.message, messages.ERROR)
            else:
                moved += 1
        if moved:
            label = Batch.Status(to).label
            self.message_user(request, ngettext("%(n)d batch moved to %(status)s.",
                                                "%(n)d batches moved to %(status)s.", moved)
                              % {"n": moved, "status": label}, messages.SUCCESS)

    @admin.action(description=gettext_lazy("Activate (release to annotators)"), permissions=["change"])
    def activate_batches(self, request, queryset):
        self._transition(request, queryset, Batch.Status.ACTIVE)

    @admin.action(description=gettext_lazy("Pause"), permissions=["change"])
    def pause_batches(self, request, queryset):
        self._transition(request, queryset, Batch.Status.PAUSED)

    @admin.action(description=gettext_lazy("Move to review"), permissions=["change"])
    def review_batches(self, request, queryset):
        self._transition(request, queryset, Batch.Status.IN_REVIEW)

    @admin.action(description=gettext_lazy("Complete (all quality gates must pass)"), permissions=["change"])
    def complete_batches(self, request, queryset):
        self._transition(request, queryset, Batch.Status.COMPLETED)

    @admin.action(description=gettext_lazy("Mark delivered"), permissions=["change"])
    def deliver_batches(self, request, queryset):
        self._transition(request, queryset, Batch.Status.DELIVERED)

    @admin.action(description=gettext_lazy("Complete despite breached gates (override with a reason)…"),
                  permissions=["change"])
    def override_batches(self, request, queryset):
        form = BatchOverrideForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            done = 0
            for batch in queryset.order_by("pk"):
                try:
                    services.batch_override(batch=batch, actor=request.user, reason=form.cleaned_data["reason"])
                except ApplicationError as error:
                    self.message_user(request, error.message, messages.ERROR)
                else:
                    done += 1
            if done:
                self.message_user(request, ngettext("%(n)d batch completed by override.",
                                                    "%(n)d batches completed by override.", done) % {"n": done},
                                  messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Override quality gates"),
            "opts": self.opts,
            "batches": queryset.select_related("project"),
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/projects/batch/override.html", context)


# --- gates, members, guidelines on their own ------------------------------------------------------------------


@admin.register(QualityGate)
class QualityGateAdmin(ProjectScopedAdminMixin, HistoryAdmin):
    list_display = ["__str__", "project", "batch", "metric", "comparator", "threshold", "min_samples", "state",
                    "last_value", "last_n", "evaluated_at", "is_active"]
    list_filter = ["state", "metric", "is_active", ProjectListFilter]
    list_select_related = ["project", "batch"]
    search_fields = ["project__name", "batch__name"]
    fields = ["project", "batch", "metric", "comparator", "threshold", "min_samples", "is_active", "state",
              "last_value", "last_n", "evaluated_at"]
    readonly_fields = ["state", "last_value", "last_n", "evaluated_at"]
    history_list_display = ["state", "last_value", "threshold"]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        return readonly + ["project"] if obj is not None and "project" not in readonly else readonly


class PausedListFilter(admin.SimpleListFilter):
    """Paused annotators (automatic pause on low gold accuracy, or a manager's)."""

    title = gettext_lazy("paused")
    parameter_name = "paused"

    def lookups(self, request, model_admin):
        return [("yes", gettext_lazy("Paused")), ("no", gettext_lazy("Not paused"))]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(paused_at__isnull=self.value() == "no")
        return queryset


@admin.register(Membership)
class MembershipAdmin(ProjectScopedAdminMixin, HistoryAdmin):
    """Members across projects; every save or delete re-syncs the member's object permissions."""

    list_display = ["user", "role", "project", "created_at", "paused_at"]
    list_filter = ["role", PausedListFilter, ProjectListFilter]
    list_select_related = ["user", "project"]
    search_fields = ["user__username", "user__email", "project__name"]
    autocomplete_fields = ["user"]
    history_list_display = ["role", "paused_at", "pause_reason"]
    actions = ["resume_memberships"]

    def get_readonly_fields(self, request, obj=None):
        paused = ["paused_at", "pause_reason"]
        return ["user", "project", "created_at", *paused] if obj is not None else ["created_at", *paused]

    @admin.action(description=gettext_lazy("Resume the selected paused annotators"), permissions=["change"])
    def resume_memberships(self, request, queryset):
        resumed = 0
        for membership in queryset.filter(paused_at__isnull=False).order_by("pk"):
            try:
                services.membership_resume(membership=membership, actor=request.user)
            except ApplicationError as error:
                self.message_user(request, error.message, messages.ERROR)
            else:
                resumed += 1
        self.message_user(request, ngettext("%(n)d annotator resumed.", "%(n)d annotators resumed.", resumed)
                          % {"n": resumed}, messages.SUCCESS if resumed else messages.WARNING)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        services.membership_permissions_sync(project=obj.project, user=obj.user)

    def delete_model(self, request, obj):
        project, user = obj.project, obj.user
        super().delete_model(request, obj)
        services.membership_permissions_sync(project=project, user=user)

    def delete_queryset(self, request, queryset):
        pairs = set()
        for membership in queryset.select_related("project", "user"):
            pairs.add((membership.project, membership.user))
            membership.delete()  # one by one, so each removal leaves a history row
        for project, user in pairs:
            services.membership_permissions_sync(project=project, user=user)


@admin.register(Guideline)
class GuidelineAdmin(ProjectScopedAdminMixin, ReadOnlyAdminMixin, HistoryAdmin):
    """Guideline versions, read-only: a new version is added on the project page."""

    list_display = ["__str__", "project", "version", "created_by", "created_at"]
    list_filter = [ProjectListFilter]
    list_select_related = ["project", "created_by"]
    search_fields = ["project__name", "text"]
