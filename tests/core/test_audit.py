"""The audit trail: who acted, history rows and events that cannot be changed, and labels kept as versions."""

import inspect
from datetime import timedelta

import pytest
from django.apps import apps
from django.db import connection, transaction
from django.db.utils import DatabaseError, ProgrammingError
from django.utils import timezone
from simple_history.models import HistoricalChanges

from apps.core.audit import acting_as, append_only_tables, current_actor, history_record_queryset, records_actor
from apps.projects import services as project_services
from apps.projects.models import Batch, Project, QualityGate
from apps.quality import services as quality_services
from apps.quality.models import Alert, ErrorType, Review, Webhook
from apps.tasks import services as task_services
from apps.tasks.models import Annotation, Assignment, Task, TaskEvent
from tests import factories

OUR_APPS = {"core", "projects", "tasks", "annotators", "quality"}
SERVICE_MODULES = [project_services, task_services, quality_services]


def history_users(queryset):
    return list(queryset.values_list("history_type", "history_user_id"))


# --- who acted --------------------------------------------------------------------------------------------------


def test_services_record_the_acting_user_in_history(team):
    annotator = team.annotators[0]

    # when the annotator takes and submits a task, and the reviewer approves it
    assignment = task_services.assignment_assign(task=team.task, annotator=annotator)
    annotation = task_services.assignment_submit(assignment=assignment, actor=annotator, result={"label": "cat"})
    task_services.review_approve(annotation=annotation, reviewer=team.reviewer)

    # then each history row names the person who acted
    assert history_users(assignment.history.order_by("history_id")) == [
        ("+", annotator.pk), ("~", annotator.pk), ("~", team.reviewer.pk)]
    assert history_users(annotation.history.order_by("history_id")) == [("+", annotator.pk), ("~", team.reviewer.pk)]
    task_history = Task.history.filter(id=team.task.pk, history_type="~").order_by("history_id")
    assert [user for _type, user in history_users(task_history)] == [annotator.pk, annotator.pk, team.reviewer.pk]
    assert {row.history_user for row in Review.history.all()} == {team.reviewer}


def test_a_bulk_transition_records_the_manager_for_every_task(team):
    # given a draft batch of three tasks
    batch = project_services.batch_create(project=team.project, name="Draft", actor=team.manager)
    tasks = factories.tasks(batch, 3)

    # when the manager activates it (one UPDATE for all tasks)
    project_services.batch_activate(batch=batch, actor=team.manager)

    # then the batch and each task have a history row by the manager
    assert batch.history.latest().history_user == team.manager
    rows = Task.history.filter(id__in=[t.pk for t in tasks], history_type="~")
    assert sorted(rows.values_list("id", "status", "history_user_id", "history_change_reason")) == sorted(
        (t.pk, Task.Status.OPEN, team.manager.pk, "batch activated") for t in tasks)


def test_acting_as_names_the_user_in_a_celery_task_or_command(team):
    # given an assignment whose lease ran out, expired by a periodic task (no request, no actor argument)
    annotator = team.annotators[0]
    assignment = task_services.assignment_assign(task=team.task, annotator=annotator)
    later = timezone.now() + timedelta(days=1)

    # when the job runs as the system user, as a Celery task or a management command would
    with acting_as(team.admin):
        task_services.assignment_expire(assignment=assignment, now=later)
        batch = Batch.objects.create(project=team.project, name="Made by a command")

    # then the history rows name that user, and the context is gone afterwards
    assert assignment.history.latest().history_user == team.admin
    assert assignment.history.latest().status == Assignment.Status.EXPIRED
    assert batch.history.get().history_user == team.admin
    assert current_actor() is None


def test_without_an_actor_or_a_request_no_user_is_recorded(team):
    batch = Batch.objects.create(project=team.project, name="Anonymous")

    assert batch.history.get().history_user is None


def test_acting_as_nests_and_restores_the_outer_user(team):
    with acting_as(team.admin):
        with acting_as(team.manager):
            inner = Batch.objects.create(project=team.project, name="Inner")
        outer = Batch.objects.create(project=team.project, name="Outer")

    assert inner.history.get().history_user == team.manager
    assert outer.history.get().history_user == team.admin


def test_records_actor_resets_the_context_even_when_the_service_fails(team):
    @records_actor
    def failing_service(*, actor):
        assert current_actor() == actor
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        failing_service(actor=team.manager)

    assert current_actor() is None


def test_history_record_queryset_takes_the_acting_user(team):
    factories.tasks(team.batch, 2)

    with acting_as(team.manager):
        written = history_record_queryset(Task.objects.filter(batch=team.batch), reason="recount")

    assert written == 3
    rows = Task.history.filter(history_change_reason="recount")
    assert sorted(rows.values_list("history_type", "history_user_id")) == [("~", team.manager.pk)] * 3


def test_history_record_queryset_of_an_empty_queryset_writes_nothing(team):
    assert history_record_queryset(Task.objects.none(), user=team.admin) == 0
    assert history_record_queryset(Task.objects.filter(pk__in=[]), user=team.admin) == 0


def _services_with_an_actor():
    for module in SERVICE_MODULES:
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ != module.__name__ or name.startswith("_") or name == "event_record":
                continue
            parameters = set(inspect.signature(function).parameters)
            if parameters & {"actor", "reviewer", "annotator"}:
                yield pytest.param(function, id=f"{module.__name__.split('.')[1]}.{name}")


@pytest.mark.parametrize("service", list(_services_with_an_actor()))
def test_every_service_with_an_actor_records_it(service):
    assert getattr(service, "__wrapped__", None) is not None, f"{service.__name__} is not wrapped by records_actor"


def test_acknowledging_an_alert_outside_a_request_names_the_manager(team):
    alert = Alert.objects.create(kind=Alert.Kind.THROUGHPUT_DIP, project=team.project, message="Fewer labels")

    quality_services.alert_acknowledge(alert=alert, actor=team.manager)

    assert alert.history.latest().history_user == team.manager


# --- events cannot be changed -----------------------------------------------------------------------------------


def test_a_task_event_cannot_be_saved_again_or_deleted(team):
    event = task_services.event_record(type=TaskEvent.Type.OPENED, project=team.project, task=team.task,
                                       actor=team.admin, payload={"n": 1})

    event.payload = {"n": 2}
    with pytest.raises(PermissionError, match="append-only"):
        event.save()
    with pytest.raises(PermissionError, match="append-only"):
        event.delete()

    event.refresh_from_db()
    assert event.payload == {"n": 1}
    assert TaskEvent.objects.filter(pk=event.pk).exists()


def test_a_new_task_event_is_written(team):
    before = TaskEvent.objects.count()

    TaskEvent(type=TaskEvent.Type.OPENED, project=team.project, task=team.task).save()

    assert TaskEvent.objects.count() == before + 1


def test_append_only_tables_are_every_history_table_and_the_event_log():
    expected = {model._meta.db_table for model in apps.get_models()
                if issubclass(model, HistoricalChanges) and model._meta.app_label in OUR_APPS}
    tracked = {model.history.model._meta.db_table for model in apps.get_models()
               if model._meta.app_label in OUR_APPS and hasattr(model, "history")
               and not issubclass(model, HistoricalChanges)}

    tables = append_only_tables()

    assert set(tables) == expected | {"tasks_taskevent"}
    assert tracked <= set(tables)
    assert {"tasks_historicaltask", "tasks_historicalannotation", "projects_historicalbatch",
            "quality_historicalreview_error_types"} <= set(tables)


# --- on PostgreSQL a trigger refuses UPDATE and DELETE --------------------------------------------------------------


@pytest.fixture
def every_history_table_filled(team):
    """A row in every append-only table: the team, a rejected review (with error types), a gate, an alert, a
    webhook, a clarification, an annotator profile, a team with a member, a sanity rule and a progress snapshot."""
    from apps.annotators.models import AnnotatorProfile, Team
    from apps.quality.models import SanityRule

    annotator = team.annotators[0]
    assignment = task_services.assignment_assign(task=team.task, annotator=annotator)
    annotation = task_services.assignment_submit(assignment=assignment, actor=annotator, result={"label": "cat"})
    task_services.review_reject(annotation=annotation, reviewer=team.reviewer, error_types=["wrong_label"],
                               comment="Not a cat.")
    task_services.clarification_ask(task=team.task, actor=annotator, question="Is a lynx a cat?")
    project_services.gate_create(project=team.project, actor=team.manager, metric=QualityGate.Metric.AGREEMENT,
                                 comparator=QualityGate.Comparator.GTE, threshold=0.8)
    Alert.objects.create(kind=Alert.Kind.THROUGHPUT_DIP, project=team.project, message="Fewer labels today")
    Webhook.objects.create(project=team.project, url="https://example.org/hook", secret="s3cret")
    AnnotatorProfile.objects.create(user=annotator)
    Team.objects.create(name="Morning shift").members.add(annotator)
    SanityRule.objects.create(project=team.project, kind=SanityRule.Kind.LABEL_NEEDS_NOTE, label="cat")
    quality_services.progress_snapshot_write(project_id=team.project.pk)
    return team


def _refused(sql):
    with pytest.raises(ProgrammingError) as refused, transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql)
    return refused.value


@pytest.mark.postgres
@pytest.mark.parametrize("table", append_only_tables())
def test_the_database_refuses_update_and_delete_on_append_only_tables(every_history_table_filled, table):
    qn = connection.ops.quote_name
    model = next(m for m in apps.get_models() if m._meta.db_table == table)
    pk = qn(model._meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {qn(table)}")
        rows = cursor.fetchone()[0]
    assert rows > 0, f"the fixture left {table} empty; the trigger would not fire"

    update = _refused(f"UPDATE {qn(table)} SET {pk} = {pk}")
    delete = _refused(f"DELETE FROM {qn(table)}")

    for error in (update, delete):
        # insufficient_privilege (42501): psycopg raises InsufficientPrivilege, which Django maps to
        # ProgrammingError (a DatabaseError)
        assert isinstance(error, DatabaseError)
        assert error.__cause__.sqlstate == "42501"
        assert "append-only" in str(error) and table in str(error)
    assert "UPDATE refused" in str(update) and "DELETE refused" in str(delete)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {qn(table)}")
        assert cursor.fetchone()[0] == rows


@pytest.mark.postgres
def test_every_append_only_table_has_the_triggers(db):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, t.tgtype FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_proc p ON p.oid = t.tgfoid "
            "WHERE NOT t.tgisinternal AND t.tgenabled = 'O' AND p.proname = 'labelportal_refuse_change'"
        )
        triggers = {}
        for table, tgtype in cursor.fetchall():
            triggers.setdefault(table, []).append(tgtype)

    assert set(triggers) == set(append_only_tables())
    # tgtype bits: 1 row-level, 2 before, 4 insert, 8 delete, 16 update, 32 truncate
    row, statement = 1 | 2 | 8 | 16, 2 | 32
    assert all(sorted(types) == sorted([row, statement]) for types in triggers.values()), triggers


@pytest.mark.postgres
@pytest.mark.parametrize("table", append_only_tables())
def test_the_database_refuses_truncate_on_append_only_tables(every_history_table_filled, table):
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {qn(table)}")
        rows = cursor.fetchone()[0]
    assert rows > 0, f"the fixture left {table} empty"
    with connection.cursor() as cursor:
        # the test's own transaction holds deferred foreign-key checks, which PostgreSQL would name instead
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    error = _refused(f"TRUNCATE {qn(table)}")

    assert error.__cause__.sqlstate == "42501"
    assert f"{table} is append-only; TRUNCATE refused" in str(error)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {qn(table)}")
        assert cursor.fetchone()[0] == rows


@pytest.mark.postgres
def test_truncating_a_parent_table_cannot_cascade_into_the_event_log(team):
    task_services.event_record(type=TaskEvent.Type.OPENED, project=team.project, task=team.task)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    error = _refused("TRUNCATE tasks_task CASCADE")

    assert "tasks_taskevent is append-only; TRUNCATE refused" in str(error)
    assert TaskEvent.objects.exists() and Task.objects.filter(pk=team.task.pk).exists()


@pytest.mark.postgres
def test_django_flush_still_empties_every_table(transactional_db):
    """The test runner flushes the database after each transactional test; manage.py flush does the same."""
    from django.core.management import call_command

    team = factories.team()
    task_services.event_record(type=TaskEvent.Type.OPENED, project=team.project, task=team.task)
    assert TaskEvent.objects.exists() and Project.history.exists()

    call_command("flush", interactive=False, verbosity=0)

    assert not TaskEvent.objects.exists() and not Project.history.exists() and not Project.objects.exists()
    with transaction.atomic(), connection.cursor() as cursor:  # and the escape did not outlive the flush
        cursor.execute("SELECT current_setting('labelportal.flush_all', true)")
        assert cursor.fetchone()[0] in (None, "")


@pytest.mark.postgres
def test_inserts_into_append_only_tables_still_work(team):
    events, history = TaskEvent.objects.count(), Task.history.count()

    task_services.event_record(type=TaskEvent.Type.OPENED, project=team.project, task=team.task)
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO tasks_taskevent (project_id, type, at, payload) VALUES (%s, 'opened', now(), '{}')",
                       [team.project.pk])
    history_record_queryset(Task.objects.filter(pk=team.task.pk), user=team.admin, reason="check")

    assert TaskEvent.objects.count() == events + 2
    assert Task.history.count() == history + 1


@pytest.mark.postgres
def test_the_orm_cannot_bulk_update_or_delete_events_either(team):
    task_services.event_record(type=TaskEvent.Type.OPENED, project=team.project, task=team.task)
    batch_history = Batch.history.count()
    assert batch_history > 0

    with pytest.raises(ProgrammingError, match="append-only"), transaction.atomic():
        TaskEvent.objects.update(payload={"forged": True})
    with pytest.raises(ProgrammingError, match="append-only"), transaction.atomic():
        Batch.history.all().delete()

    assert not TaskEvent.objects.filter(payload={"forged": True}).exists()
    assert Batch.history.count() == batch_history


# --- a label edit is a new version ------------------------------------------------------------------------------


def test_resubmission_and_revert_append_versions_and_keep_the_old_ones(team):
    annotator = team.annotators[0]
    assignment = task_services.assignment_assign(task=team.task, annotator=annotator)
    first = task_services.assignment_submit(assignment=assignment, actor=annotator, result={"label": "cat"},
                                            notes="looks like a cat")
    task_services.review_reject(annotation=first, reviewer=team.reviewer, error_types=["wrong_label"],
                               comment="Not a cat.")

    # when the annotator resubmits a different label
    second = task_services.assignment_resubmit(assignment=assignment, actor=annotator, result={"label": "dog"})

    # then it is version 2, and version 1 is kept with its result, no longer current
    first.refresh_from_db()
    assert (second.version, second.result, second.is_current) == (2, {"label": "dog"}, True)
    assert (first.version, first.result, first.notes, first.is_current) == (1, {"label": "cat"}, "looks like a cat",
                                                                            False)
    assert first.status == Annotation.Status.SUPERSEDED

    # when a manager reverts to version 1
    third = task_services.annotation_revert(annotation=first, actor=team.manager)

    # then version 3 holds version 1's result, written by the manager; versions 1 and 2 are unchanged
    first.refresh_from_db()
    second.refresh_from_db()
    assert (third.version, third.result, third.source, third.author) == (
        3, {"label": "cat"}, Annotation.Source.REVERT, team.manager)
    assert third.is_current and not second.is_current and not first.is_current
    assert (first.result, second.result) == ({"label": "cat"}, {"label": "dog"})
    assert list(assignment.annotations.order_by("version").values_list("version", "result")) == [
        (1, {"label": "cat"}), (2, {"label": "dog"}), (3, {"label": "cat"})]
    # every history row of version 1 still shows its original result
    assert set(map(str, first.history.values_list("result", flat=True))) == {str({"label": "cat"})}
    event = TaskEvent.objects.get(type=TaskEvent.Type.REVERTED)
    assert (event.actor, event.payload) == (team.manager, {"from_version": 1, "new_version": 3})


def test_reverting_to_the_current_version_is_refused(team):
    from apps.core.errors import TransitionError

    annotator = team.annotators[0]
    assignment = task_services.assignment_assign(task=team.task, annotator=annotator)
    only = task_services.assignment_submit(assignment=assignment, actor=annotator, result={"label": "cat"})

    with pytest.raises(TransitionError, match="already the current one"):
        task_services.annotation_revert(annotation=only, actor=team.manager)

    assert assignment.annotations.count() == 1


def test_the_setup_objects_exist_in_our_apps():
    # a guard for the fixtures above: the models they build are the ones the apps define
    assert {Project, ErrorType, Review, Alert, Webhook} <= set(apps.get_models())


def test_a_long_change_reason_is_cut_to_the_column(team):
    history_record_queryset(Task.objects.filter(pk=team.task.pk), user=team.admin, reason="x" * 150)

    assert Task.history.get(id=team.task.pk).history_change_reason == "x" * 100
