"""`audited_save`: a change, its history row and its events in one statement on PostgreSQL — the same rows that
`save()` with simple-history's signal and a separate event write (the path elsewhere) leave behind."""

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.core.audit import NEW_ROW, acting_as, audited_save, change_reason
from apps.projects.models import Membership
from apps.tasks.models import Assignment, Task, TaskEvent
from tests import factories as f

pytestmark = pytest.mark.django_db

# What a history row copies besides the tracked fields.
HISTORY_META = ("history_type", "history_user_id", "history_change_reason")


def _world():
    project = f.project()
    batch = f.batch(project)
    task = f.tasks(batch)[0]
    annotator = f.member(project, Membership.Role.ANNOTATOR)
    return project, task, annotator


def _tracked(record, model):
    names = {field.attname for field in model._meta.concrete_fields}
    return {field.attname: getattr(record, field.attname) for field in record._meta.concrete_fields
            if field.attname in names}


def _statements(queries):
    return [query["sql"] for query in queries.captured_queries if query["sql"] not in ("BEGIN", "COMMIT")]


def test_an_insert_writes_the_row_its_history_and_its_event_naming_the_new_row():
    project, task, annotator = _world()
    assignment = Assignment(task=task, annotator=annotator, status=Assignment.Status.ASSIGNED)
    event = TaskEvent(type=TaskEvent.Type.ASSIGNED, project_id=project.pk, task=task, batch_id=task.batch_id,
                      actor=annotator, payload={"annotator": annotator.pk})
    event.assignment_id = NEW_ROW

    with acting_as(annotator), change_reason("assigned by the engine"), CaptureQueriesContext(connection) as queries:
        audited_save(assignment, events=[event])

    stored = Assignment.objects.get()
    assert assignment.pk == stored.pk and not assignment._state.adding
    assert assignment.created_at == stored.created_at and assignment.updated_at == stored.updated_at
    record = stored.history.get()
    assert (record.history_type, record.history_user_id, record.history_change_reason) == (
        "+", annotator.pk, "assigned by the engine")
    assert _tracked(record, Assignment) == _tracked(stored, Assignment)
    written = TaskEvent.objects.get(type=TaskEvent.Type.ASSIGNED)
    assert written.assignment_id == stored.pk == event.assignment_id
    assert (written.actor_id, written.payload, written.batch_id) == (annotator.pk, {"annotator": annotator.pk},
                                                                     task.batch_id)
    expected = 1 if connection.vendor == "postgresql" else 3  # one statement, or row + history + event
    assert len(_statements(queries)) == expected


def test_an_update_writes_the_named_fields_a_history_row_and_its_event():
    project, task, annotator = _world()
    with acting_as(annotator):
        assignment = audited_save(Assignment(task=task, annotator=annotator, status=Assignment.Status.ASSIGNED))
    assignment.status = Assignment.Status.IN_PROGRESS
    before = assignment.updated_at

    with acting_as(None):  # the system
        audited_save(assignment, update_fields=["status", "updated_at"], events=[TaskEvent(
            type=TaskEvent.Type.STARTED, project_id=project.pk, task=task, assignment=assignment,
            batch_id=task.batch_id)])

    stored = Assignment.objects.get()
    assert stored.status == Assignment.Status.IN_PROGRESS
    assert stored.updated_at > before
    record = stored.history.order_by("-history_id").first()
    assert (record.history_type, record.history_user_id, record.history_change_reason) == ("~", None, None)
    assert _tracked(record, Assignment) == _tracked(stored, Assignment)
    assert TaskEvent.objects.filter(type=TaskEvent.Type.STARTED, assignment=stored).count() == 1


def test_the_history_rows_equal_those_simple_history_writes_on_save():
    project, task, annotator = _world()
    with acting_as(annotator), change_reason("same either way"):
        audited_save(task, update_fields=["status", "updated_at"])
        task.save(update_fields=["status", "updated_at"])
    ours, theirs = task.history.order_by("history_id")  # the tasks were bulk-created: no row before
    for field in ("history_type", "history_user_id", "history_change_reason", *_tracked(ours, Task)):
        if field != "updated_at":
            assert getattr(ours, field) == getattr(theirs, field), field


def test_an_update_of_a_row_that_is_gone_refuses_and_writes_no_history_or_event():
    project, task, annotator = _world()
    with acting_as(annotator):
        assignment = audited_save(Assignment(task=task, annotator=annotator, status=Assignment.Status.ASSIGNED))
    history_rows, events = Assignment.history.count(), TaskEvent.objects.count()
    gone = Assignment(pk=assignment.pk + 1000, task=task, annotator=annotator)

    with pytest.raises(DatabaseError), transaction.atomic():
        audited_save(gone, update_fields=["status"], events=[TaskEvent(
            type=TaskEvent.Type.STARTED, project_id=project.pk, task=task, batch_id=task.batch_id)])

    assert (Assignment.history.count(), TaskEvent.objects.count()) == (history_rows, events)


def test_an_instance_that_skips_history_is_saved_without_a_history_row():
    project, task, annotator = _world()
    rows = task.history.count()
    task.skip_history_when_saving = True
    task.priority = 5
    audited_save(task, update_fields=["priority"])
    assert Task.objects.get().priority == 5 and task.history.count() == rows
