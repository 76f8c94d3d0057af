"""The admin of tasks and the work on them; lifecycle fields are written by services and shown read-only here."""

from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.utils.translation import gettext_lazy, ngettext

from apps.core.admin_base import (
    BatchListFilter,
    HistoryAdmin,
    ProjectListFilter,
    ProjectScopedAdminMixin,
    ReadOnlyAdminMixin,
    ReadOnlyInline,
    project_list_filter,
)
from apps.core.errors import ApplicationError
from apps.quality.models import Review

from . import services
from .forms import ClarificationAnswerForm, TaskForm
from .models import Annotation, Assignment, Clarification, Task, TaskEvent

TaskProjectFilter = project_list_filter("task__project")


# --- read-only tables on the task page -------------------------------------------------------------------------


@admin.display(description=gettext_lazy("assignment"))
def assignment_ref(obj):
    return f"#{obj.assignment_id}" if obj.assignment_id else "-"


class AssignmentInline(ReadOnlyInline):
    model = Assignment
    fields = ["annotator", "status", "assigned_at", "started_at", "submitted_at", "lease_expires_at",
              "rework_count", "reason"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("annotator")


class AnnotationInline(ReadOnlyInline):
    model = Annotation
    fk_name = "task"
    assignment_ref = staticmethod(assignment_ref)
    fields = ["assignment_ref", "version", "annotator", "author", "source", "status", "is_current", "result",
              "notes", "guideline_version", "lead_time_seconds", "submitted_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("annotator", "author").order_by("assignment_id",
                                                                                            "version")


class TaskEventInline(ReadOnlyInline):
    model = TaskEvent
    fk_name = "task"
    fields = ["at", "type", "actor", "assignment_ref", "payload"]
    verbose_name_plural = gettext_lazy("event trail")
    show_change_link = False
    assignment_ref = staticmethod(assignment_ref)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor").order_by("at", "id")


class ClarificationInline(ReadOnlyInline):
    model = Clarification
    fields = ["asked_by", "question", "confidential", "status", "answer", "answered_by", "answered_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("asked_by", "answered_by")


# --- tasks ----------------------------------------------------------------------------------------------------


@admin.register(Task)
class TaskAdmin(ProjectScopedAdminMixin, HistoryAdmin):
    """Tasks arrive by import (project page → Import tasks); their status follows from the work on them."""

    form = TaskForm
    list_display = ["id", "external_id", "project", "batch", "status", "priority", "is_gold", "created_at"]
    list_filter = [ProjectListFilter, BatchListFilter, "status", "is_gold"]
    list_select_related = ["project", "batch"]
    search_fields = ["=external_id"]
    search_help_text = gettext_lazy("Exact external id.")
    show_full_result_count = False  # no second COUNT(*) over a million-row table
    show_facets = admin.ShowFacets.NEVER  # nor a COUNT per filter choice
    autocomplete_fields = ["project", "batch"]
    fields = ["project", "batch", "external_id", "status", "priority", "data", "is_gold", "gold_answer",
              "prediction", "prediction_score", "final_result", "accepted_at", "created_at", "updated_at"]
    readonly_fields = ["project", "batch", "external_id", "status", "final_result", "accepted_at", "created_at",
                       "updated_at"]
    inlines = [AssignmentInline, AnnotationInline, ClarificationInline, TaskEventInline]
    actions = ["cancel_tasks"]
    history_list_display = ["status", "priority"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the event trail keeps tasks; take one out of the work with "Cancel"

    def save_model(self, request, obj, form, change):
        # Write only what the form changed, so a status a service set meanwhile is not overwritten.
        obj._history_user = request.user
        if form.changed_data:
            obj.save(update_fields=[*form.changed_data, "updated_at"])

    @admin.action(description=gettext_lazy("Cancel (take out of the work)"), permissions=["change"])
    def cancel_tasks(self, request, queryset):
        cancelled = 0
        for task in queryset.order_by("pk"):
            try:
                services.task_cancel(task=task, actor=request.user, reason="cancelled in the admin")
            except ApplicationError as error:
                self.message_user(request, error.message, messages.ERROR)
            else:
                cancelled += 1
        if cancelled:
            self.message_user(request, ngettext("%(n)d task cancelled.", "%(n)d tasks cancelled.", cancelled)
                              % {"n": cancelled}, messages.SUCCESS)


@admin.register(Assignment)
class AssignmentAdmin(ProjectScopedAdminMixin, ReadOnlyAdminMixin, HistoryAdmin):
    project_path = "task__project"
    list_display = ["id", "task", "annotator", "status", "assigned_at", "submitted_at", "lease_expires_at",
                    "rework_count"]
    list_filter = ["status", TaskProjectFilter]
    list_select_related = ["task", "annotator"]
    search_fields = ["annotator__username", "=task__external_id"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    raw_id_fields = ["task", "annotator"]
    history_list_display = ["status", "lease_expires_at"]


class ReviewInline(ReadOnlyInline):
    model = Review
    fk_name = "annotation"
    fields = ["reviewer", "decision", "comment", "corrected_annotation", "started_at", "decided_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("reviewer")


@admin.register(Annotation)
class AnnotationAdmin(ProjectScopedAdminMixin, ReadOnlyAdminMixin, HistoryAdmin):
    """Annotation versions are never edited: a fix, resubmission or revert appends a new version."""

    project_path = "task__project"
    list_display = ["id", "task", "annotator", "version", "source", "status", "is_current", "needs_review",
                    "guideline_version", "submitted_at"]
    list_filter = ["status", "source", "is_current", "needs_review", TaskProjectFilter]
    list_select_related = ["task", "annotator"]
    search_fields = ["annotator__username", "=task__external_id"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    raw_id_fields = ["task", "assignment", "annotator", "author", "guideline"]
    inlines = [ReviewInline]
    history_list_display = ["status", "is_current"]


@admin.register(TaskEvent)
class TaskEventAdmin(ProjectScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """The append-only lifecycle log: readable, never added, changed or deleted here."""

    list_display = ["at", "type", "project", "batch", "task", assignment_ref, "actor"]
    list_filter = ["type", ProjectListFilter]
    list_select_related = ["project", "batch", "task", "actor"]
    search_fields = ["=task__external_id", "actor__username"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    raw_id_fields = ["project", "batch", "task", "assignment", "actor"]

    def get_actions(self, request):
        return {}  # not even delete_selected


@admin.register(Clarification)
class ClarificationAdmin(ProjectScopedAdminMixin, HistoryAdmin):
    """Questions from annotators; a manager answers an open one here (through clarification_answer)."""

    form = ClarificationAnswerForm
    project_path = "task__project"
    list_display = ["id", "task", "asked_by", "status", "confidential", "created_at", "answered_by", "answered_at"]
    list_filter = ["status", "confidential", TaskProjectFilter]
    list_select_related = ["task", "asked_by", "answered_by"]
    search_fields = ["question", "asked_by__username", "=task__external_id"]
    raw_id_fields = ["task", "assignment"]
    fields = ["task", "assignment", "asked_by", "question", "confidential", "status", "answer", "answered_by",
              "answered_at", "created_at"]
    history_list_display = ["status"]

    def has_add_permission(self, request):
        return False  # annotators ask in the portal

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        readonly = [name for name in self.fields if name != "answer"]
        if obj is None or obj.status != Clarification.Status.OPEN or getattr(request, "_history_read_only", False):
            readonly.append("answer")
        return readonly

    def save_model(self, request, obj, form, change):
        if "answer" not in form.cleaned_data:
            return
        try:
            services.clarification_answer(clarification=obj, actor=request.user, answer=form.cleaned_data["answer"])
        except ApplicationError as error:
            self.message_user(request, error.message, messages.ERROR)
            request._clarification_refused = True

    def response_change(self, request, obj):
        if getattr(request, "_clarification_refused", False):
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)
