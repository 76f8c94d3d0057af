"""Reads of tasks, assignments, annotations and events, scoped to what the user may see.

Managers, reviewers and admins see every task of their projects; an annotator sees only tasks they were
assigned, only their own annotations (blind overlap), and never gold answers. Whatever someone did in a project,
they see none of it once they hold no role there any more.
"""

from django.db.models import Q

from apps.core.permissions import ANNOTATE, MANAGE, REVIEW, VIEW, has_project_perm, is_admin
from apps.core.rows import ModelColumns, built_once, primary_key_lookup_value
from apps.projects.models import Project
from apps.projects.selectors import project_list

from .models import Annotation, Assignment, Clarification, Task, TaskEvent


def _signed_in(user):
    """Anonymous and deactivated users see nothing (and an AnonymousUser cannot be used in a filter)."""
    return user is not None and user.is_authenticated and user.is_active


def _own_assignments(user):
    """The user's assignments in projects they may still see."""
    return Assignment.objects.filter(annotator=user, task__project__in=project_list(user=user, perm=VIEW).values("pk"))


def task_list(*, user, project=None):
    """Tasks the user may open: all tasks of projects they manage, the non-gold tasks of projects they review,
    and the tasks assigned to them."""
    if not _signed_in(user):
        return Task.objects.none()
    if is_admin(user):
        tasks = Task.objects.all()
    else:
        # Subqueries, not a join on assignments: each task comes once, with no DISTINCT over its JSON columns.
        # Reviewers never review gold, so they never see gold tasks: they would tell them apart by their status.
        managed = project_list(user=user, perm=MANAGE).values("pk")
        reviewed = project_list(user=user, perm=REVIEW).values("pk")
        own = _own_assignments(user).values("task_id")
        tasks = Task.objects.filter(Q(project__in=managed) | Q(project__in=reviewed, is_gold=False) | Q(pk__in=own))
    if project is not None:
        tasks = tasks.filter(project=project)
    return tasks


def task_get(*, user, task_id):
    """The task if the user may see it, else Task.DoesNotExist (a 404)."""
    if not _signed_in(user):
        raise Task.DoesNotExist
    if is_admin(user):
        return Task.objects.select_related("project", "batch").get(pk=task_id)
    task = Task.objects.select_related("project", "batch").get(pk=task_id)
    if has_project_perm(user, task.project, MANAGE):
        return task
    if has_project_perm(user, task.project, REVIEW) and not task.is_gold:
        return task
    if has_project_perm(user, task.project, VIEW) and task.assignments.filter(annotator=user).exists():
        return task
    raise Task.DoesNotExist


def can_see_all_of_project(user, project):
    return has_project_perm(user, project, REVIEW) or has_project_perm(user, project, MANAGE)


def can_see_gold(user, project):
    """Only managers and admins see gold answers and which tasks are gold."""
    return has_project_perm(user, project, MANAGE)


def assignment_list_for_annotator(*, user, project=None, statuses=None):
    if not _signed_in(user):
        return Assignment.objects.none()
    assignments = _own_assignments(user).select_related("task")
    if project is not None:
        assignments = assignments.filter(task__project=project)
    if statuses:
        assignments = assignments.filter(status__in=statuses)
    return assignments


def assignment_get_for_annotator(*, user, assignment_id):
    """The annotator's own assignment in a project where they (still) annotate, else Assignment.DoesNotExist (a
    404). One fetch and `has_project_perm` (permission rows read once per request): the submit hot path.

    The fetch is `Assignment.objects.select_related("task__project").get(pk=…, annotator=user)` compiled by hand
    once per connection into a fixed SQL string: the assignment comes back with its task and the task's project
    attached, as select_related leaves them, for a fraction of the ORM's Python."""
    if not _signed_in(user):
        raise Assignment.DoesNotExist
    connection, (assignment_columns, task_columns, project_columns, sql) = built_once(
        "assignment_get_for_annotator", Assignment, _assignment_read)
    assignment_pk = primary_key_lookup_value(Assignment, assignment_id, connection)
    row = None
    if assignment_pk is not None:
        with connection.cursor() as cursor:
            cursor.execute(sql, [assignment_pk, user.pk])
            row = cursor.fetchone()
    if row is None:
        raise Assignment.DoesNotExist("Assignment matching query does not exist.")
    assignment = assignment_columns.instance(row, 0, connection)
    task = task_columns.instance(row, assignment_columns.width, connection)
    project = project_columns.instance(row, assignment_columns.width + task_columns.width, connection)
    Task._meta.get_field("project").set_cached_value(task, project)
    Assignment._meta.get_field("task").set_cached_value(assignment, task)
    if not has_project_perm(user, project, ANNOTATE):
        raise Assignment.DoesNotExist("Assignment matching query does not exist.")
    return assignment


def _assignment_read(connection):
    """The columns of an assignment, its task and the task's project, and the SELECT joining them by the
    assignment's key and annotator."""
    quote = connection.ops.quote_name
    assignment_table, task_table = Assignment._meta.db_table, Task._meta.db_table
    project_table = Project._meta.db_table
    assignment_columns = ModelColumns(Assignment, assignment_table, connection)
    task_columns = ModelColumns(Task, task_table, connection)
    project_columns = ModelColumns(Project, project_table, connection)
    task_field, project_field = Assignment._meta.get_field("task"), Task._meta.get_field("project")
    annotator_field = Assignment._meta.get_field("annotator")
    sql = (
        f"SELECT {assignment_columns.select}, {task_columns.select}, {project_columns.select} "
        f"FROM {quote(assignment_table)} "
        f"INNER JOIN {quote(task_table)} ON {quote(assignment_table)}.{quote(task_field.column)} = "
        f"{quote(task_table)}.{quote(task_field.target_field.column)} "
        f"INNER JOIN {quote(project_table)} ON {quote(task_table)}.{quote(project_field.column)} = "
        f"{quote(project_table)}.{quote(project_field.target_field.column)} "
        f"WHERE {quote(assignment_table)}.{quote(Assignment._meta.pk.column)} = %s "
        f"AND {quote(assignment_table)}.{quote(annotator_field.column)} = %s"
    )
    return assignment_columns, task_columns, project_columns, sql


def annotation_list(*, user, task):
    """Every version on a task for managers and reviewers; only their own for an annotator."""
    if not _signed_in(user):
        return Annotation.objects.none()
    annotations = Annotation.objects.filter(task=task).select_related("annotator", "author").order_by(
        "assignment_id", "version")
    if user.is_superuser or can_see_all_of_project(user, task.project):
        return annotations
    if not has_project_perm(user, task.project, VIEW):
        return Annotation.objects.none()
    return annotations.filter(annotator=user)


def event_list(*, user, task):
    """The task's lifecycle trail; an annotator sees only the events of their own assignment."""
    if not _signed_in(user):
        return TaskEvent.objects.none()
    events = TaskEvent.objects.filter(task=task).select_related("actor").order_by("at", "id")
    if user.is_superuser or can_see_all_of_project(user, task.project):
        return events
    if not has_project_perm(user, task.project, VIEW):
        return TaskEvent.objects.none()
    return events.filter(assignment__annotator=user)


def clarification_list(*, user, project=None):
    """Managers see all; an annotator sees their own and non-confidential ones on tasks they were given."""
    if not _signed_in(user):
        return Clarification.objects.none()
    clarifications = Clarification.objects.select_related("task", "asked_by")
    if project is not None:
        clarifications = clarifications.filter(task__project=project)
    if user.is_superuser:
        return clarifications
    managed = project_list(user=user, perm=MANAGE).values("pk")
    visible = project_list(user=user, perm=VIEW).values("pk")
    return clarifications.filter(
        Q(task__project__in=managed)
        | Q(task__project__in=visible, asked_by=user)
        | Q(confidential=False, task__in=_own_assignments(user).values("task_id"))
    )


def rework_feedback(*, assignment):
    """What the annotator needs to redo rejected work: the rejected result and notes, and the reviewer's comment
    and error types. None when the assignment is not rework."""
    if not assignment.rework_count:
        return None
    from apps.quality.models import Review

    annotation = assignment.annotations.filter(is_current=True).first()
    review = (Review.objects.filter(annotation__assignment=assignment, decision=Review.Decision.REJECT)
              .select_related("reviewer").prefetch_related("error_types").order_by("-decided_at").first())
    return {
        "previous_result": annotation.result if annotation else None,
        "notes": annotation.notes if annotation else "",
        "version": annotation.version if annotation else None,
        "comment": review.comment if review else "",
        "reviewer": review.reviewer.get_username() if review else None,
        "error_types": [{"code": e.code, "name": e.name} for e in review.error_types.all()] if review else [],
        "decided_at": review.decided_at if review else None,
    }
