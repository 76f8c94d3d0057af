"""What every LabelPortal admin shares: project scoping for staff, read-only history, read-only models, filters.

Superusers see everything. A staff user who is not a superuser sees only objects of projects they manage
(`manage_project`), through the same selector the portal and the API use. Gold answers and everyone's work are
manager material, so `view_project` alone (every member has it) is not enough to open a project in the admin.
"""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from apps.core.permissions import MANAGE
from apps.projects.selectors import project_list


def managed_projects(request):
    """Projects the request's user may administer (all of them for a superuser)."""
    return project_list(user=request.user, perm=MANAGE)


class ProjectScopedAdminMixin:
    """Limit the changelist, the change pages and the project/batch choices to the user's managed projects.

    `project_path` is the lookup from the model to its project ("project", "task__project", …); None for
    Project itself.
    """

    project_path = "project"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        if self.project_path is None:
            return queryset.filter(pk__in=managed_projects(request).values("pk"))
        return queryset.filter(**{f"{self.project_path}__in": managed_projects(request).values("pk")})

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        from apps.projects.models import Batch, Project, QualityGate

        if not request.user.is_superuser:
            projects = managed_projects(request).values("pk")
            if db_field.related_model is Project:
                kwargs["queryset"] = Project.objects.filter(pk__in=projects)
            elif db_field.related_model in (Batch, QualityGate):
                kwargs["queryset"] = db_field.related_model.objects.filter(project__in=projects)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class HistoryAdmin(SimpleHistoryAdmin):
    """simple-history's admin with the history kept read-only: it can be read, never reverted or edited.

    simple-history only hides the Revert button when `revert_disabled` is true; its version view still saves a
    POSTed form. Here the POST is refused outright, every field of a past version is shown read-only, and the
    history pages answer 404 for objects outside the user's projects (simple-history falls back to the history
    table, which is not scoped).
    """

    history_list_display = []

    def revert_disabled(self, request, obj=None):
        return True

    def has_change_history_permission(self, request, obj=None):
        return False

    def _history_object_check(self, request, object_id):
        if request.user.is_superuser:
            return  # superusers may also read the history of deleted objects
        if not self.get_queryset(request).filter(pk=object_id).exists():
            raise Http404(_("No such object."))

    def history_view(self, request, object_id, extra_context=None):
        self._history_object_check(request, object_id)
        return super().history_view(request, object_id, extra_context=extra_context)

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        if request.method != "GET":
            raise PermissionDenied(_("History is read-only; it cannot be reverted or edited."))
        self._history_object_check(request, object_id)
        request._history_read_only = True
        return super().history_form_view(request, object_id, version_id, extra_context=extra_context)

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if getattr(request, "_history_read_only", False):
            readonly += [f.name for f in self.model._meta.fields if f.editable and f.name not in readonly]
            readonly += [f.name for f in self.model._meta.many_to_many if f.name not in readonly]
        return readonly


class ReadOnlyAdminMixin:
    """Objects written only by services (or append-only): they can be looked at, not added, changed or deleted."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    """A read-only table of related rows on a change page."""

    extra = 0
    can_delete = False
    show_change_link = True

    def get_readonly_fields(self, request, obj=None):
        return self.fields or [f.name for f in self.model._meta.fields]


class ProjectListFilter(admin.SimpleListFilter):
    """Filter by project, offering only the projects the user administers (no DISTINCT over a big table)."""

    title = _("project")
    parameter_name = "project"
    project_path = "project"

    def lookups(self, request, model_admin):
        return [(str(pk), name) for pk, name in managed_projects(request).values_list("pk", "name")]

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(**{f"{self.project_path}_id": int(value)})
        return queryset


class BatchListFilter(admin.SimpleListFilter):
    """Filter by batch; once a project is chosen, only that project's batches are offered."""

    title = _("batch")
    parameter_name = "batch"
    batch_path = "batch"

    def lookups(self, request, model_admin):
        from apps.projects.models import Batch

        batches = Batch.objects.filter(project__in=managed_projects(request).values("pk"))
        project = request.GET.get("project", "")
        if project.isdigit():
            batches = batches.filter(project_id=int(project))
        return [(str(pk), f"{project_name} / {name}")
                for pk, name, project_name in batches.values_list("pk", "name", "project__name")]

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(**{f"{self.batch_path}_id": int(value)})
        return queryset


def project_list_filter(path):
    """A ProjectListFilter for a model that reaches its project through `path` (e.g. "task__project")."""
    return type(f"ProjectListFilter_{path}", (ProjectListFilter,), {"project_path": path})
