"""The next-task engine's cheap reads: each candidate read compiled once per shape answers what its queryset answers,
the annotator's state read in one statement gives the models the view shows, and a next costs a pinned number of
reads. The rules themselves are tested in tests/api/test_next_task.py and tests/tasks/test_next_task_routing.py."""

import contextlib
import random
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.annotators.models import AnnotatorProfile
from apps.core.errors import TransitionError
from apps.core.permissions import ANNOTATE, require_project_perm
from apps.projects.models import Membership, Project
from apps.tasks import next_task, services
from apps.tasks.models import Assignment, Task
from apps.tasks.next_task import next_task_assign
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def crew(db):
    """An overlap-2 classification project without review, four annotators, an active batch of 60 tasks at two
    priorities: six started (submitted) by the first two annotators, two of them by the third as well, and the
    first of those routed to two more annotators."""
    crew = factories.crew(slug="fast", review_mode="none", overlap=2)
    crew.tasks = factories.tasks(crew.batch, 40, data={"text": "x", "language": "en"}) + factories.tasks(
        crew.batch, 20, priority=3, prediction={"label": "cat"}, prediction_score=0.5)
    for i, task in enumerate(crew.tasks[:6]):
        services.assignment_assign(task=task, annotator=crew.annotators[i % 2])
    for task in crew.tasks[:2]:
        services.assignment_assign(task=task, annotator=crew.annotators[2])
    Assignment.objects.update(status=Assignment.Status.SUBMITTED)
    Task.objects.filter(pk=crew.tasks[0].pk).update(extra_annotations=2)
    return crew


def compiled_and_queryset_rows(read, shape, values):
    """What the compiled read answers, and what its queryset built with the same values answers."""
    compiled = next_task._compiled(read, *shape).rows(values)
    queryset = read(lambda name: values[name], *shape)
    expected = [row if isinstance(row, tuple) else (row,) for row in queryset]
    return [tuple(row) for row in compiled], expected


STATUS_GROUPS = [next_task.STARTED, (Task.Status.OPEN,)]
ORDERINGS = ["sequential", "uncertainty", "random_from_start", "random_before_start"]


@pytest.mark.parametrize("statuses", STATUS_GROUPS)
@pytest.mark.parametrize("overlap_one", [False, True])
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("passed", [(), (7,), "three of the batch"])
def test_every_compiled_candidate_read_answers_what_its_queryset_answers(crew, statuses, overlap_one, ordering,
                                                                          passed):
    if passed == "three of the batch":
        passed = (crew.tasks[1].pk, crew.tasks[10].pk, crew.tasks[45].pk)
    for annotator in crew.annotators:
        values = {"batch": crew.batch.pk, "annotator": annotator.pk, "overlap": 1 if overlap_one else 2,
                  "level": 0, "start": 0.5, **next_task._passed_values(passed)}
        shape = (statuses, overlap_one, len(passed), ordering)

        page, expected = compiled_and_queryset_rows(next_task._page_read, shape, values)
        assert page == expected
        with transaction.atomic():  # it locks on PostgreSQL
            first, expected_first = compiled_and_queryset_rows(next_task._first_free_read, shape, values)
        assert first == expected_first == [row[:1] for row in expected[:1]]
        for below_level in (False, True):
            level_shape = (statuses, overlap_one, len(passed), below_level)
            levels, expected_levels = compiled_and_queryset_rows(next_task._priority_level_read, level_shape,
                                                                 {**values, "level": 3})
            assert levels == expected_levels


def test_the_compiled_reads_find_work_where_there_is_some(crew):
    """The comparison above would pass on empty answers too: these shapes do have rows."""
    a = crew.annotators[3]
    values = {"batch": crew.batch.pk, "annotator": a.pk, "overlap": 2, "level": 0, "start": 0.0}
    started = next_task._compiled(next_task._page_read, next_task.STARTED, False, 0, "sequential").rows(values)
    fresh = next_task._compiled(next_task._page_read, (Task.Status.OPEN,), False, 0, "uncertainty").rows(values)
    routed = next_task._compiled(next_task._page_read, next_task.STARTED, True, 0, "sequential").rows(
        {**values, "overlap": 1})

    assert [row[0] for row in started] == [t.pk for t in crew.tasks[:6] if t != crew.tasks[1]]  # [1] is full
    assert len(fresh) == next_task.CANDIDATES and fresh[0][1] == 3  # a page of the 54, priority first
    assert [row[0] for row in routed] == [crew.tasks[0].pk]  # overlap 1: only the routed task has a free slot
    assert started[1][2:] == ("en", None)  # language and skill, as text


@pytest.mark.parametrize("passed", [(), "one"])
def test_the_compiled_gold_read_answers_what_its_queryset_answers(crew, passed):
    gold = factories.tasks(crew.batch, 5, is_gold=True, gold_answer={"label": "cat"})
    services.assignment_assign(task=gold[0], annotator=crew.annotators[0])
    passed = (gold[1].pk,) if passed else ()
    values = {"project": crew.project.pk, "annotator": crew.annotators[0].pk, "start": 0.4,
              **next_task._passed_values(passed)}
    for from_start in (True, False):
        with transaction.atomic():
            rows, expected = compiled_and_queryset_rows(next_task._gold_read, (len(passed), from_start), values)
        assert rows == expected


def test_a_value_the_orm_writes_into_the_sql_is_refused_at_compilation():
    """A value that did not become a parameter cannot be replaced at run time: the compiled read would always run
    with the stand-in. The ORM never does this for the engine's reads; this guards against a future one."""
    with pytest.raises(RuntimeError, match="was not compiled as a parameter"):
        next_task._CompiledRead(lambda value: Task.objects.extra(where=[f"id > {value('floor')}"]).values_list("pk"))


# --- the annotator's state ---------------------------------------------------------------------------------------


def test_held_work_comes_back_as_the_orm_would_read_it(crew):
    a = crew.annotators[3]
    AnnotatorProfile.objects.create(user=a, languages=["en"])
    held = next_task_assign(project=crew.project, annotator=a)
    services.assignment_start(assignment=held, actor=a)

    again = next_task_assign(project=crew.project, annotator=a)

    read = Assignment.objects.select_related("task").get(pk=held.pk)
    for field in Assignment._meta.concrete_fields:
        assert getattr(again, field.attname) == getattr(read, field.attname), field.name
    for field in Task._meta.concrete_fields:
        assert getattr(again.task, field.attname) == getattr(read.task, field.attname), field.name
    assert again.lease_expires_at.tzinfo is not None and isinstance(again.task.data, dict)
    assert again.status == "in_progress" and again.task.data == {"text": "x", "language": "en"}
    assert again._state.db == "default" and not again._state.adding


def test_rework_comes_back_longest_waiting_first_with_its_task(crew):
    a = crew.annotators[0]
    Assignment.objects.filter(annotator=a).update(status=Assignment.Status.REJECTED, rework_count=1)
    oldest = Assignment.objects.filter(annotator=a).order_by("pk").first()
    Assignment.objects.filter(pk=oldest.pk).update(updated_at=timezone.now() - timedelta(hours=1))

    rework = next_task_assign(project=crew.project, annotator=a)

    assert rework.pk == oldest.pk and rework.task.pk == oldest.task_id and rework.status == "rejected"


def test_at_most_twenty_expired_leases_are_freed_per_read_the_latest_assigned_first(crew):
    ids = [services.assignment_assign(task=task, annotator=crew.annotators[3]).pk for task in crew.tasks[6:30]]
    for i, assignment_id in enumerate(ids):  # 24 leases ran out, assigned a second apart
        Assignment.objects.filter(pk=assignment_id).update(
            lease_expires_at=timezone.now() - timedelta(minutes=1), assigned_at=timezone.now() - timedelta(
                seconds=100 - i))

    next_task_assign(project=crew.project, annotator=crew.annotators[0])

    expired = set(Assignment.objects.filter(status=Assignment.Status.EXPIRED).values_list("pk", flat=True))
    assert expired == set(ids[-20:])


def test_the_batches_come_by_batch_priority_then_id(crew):
    low = factories.batch(crew.project, name="Low", priority=-1)
    high_a = factories.batch(crew.project, name="High A", priority=5)
    high_b = factories.batch(crew.project, name="High B", priority=5)

    state = next_task._AnnotatorState(crew.project, crew.annotators[3], timezone.now())

    assert state.batch_ids == [high_a.pk, high_b.pk, crew.batch.pk, low.pk]
    assert state.paused is False and state.gold is None and state.due == []


def test_the_gold_share_is_read_only_for_a_project_with_a_gold_rate(crew):
    gold = factories.tasks(crew.batch, 2, is_gold=True, gold_answer={"label": "cat"})
    services.assignment_assign(task=gold[0], annotator=crew.annotators[0])
    Project.objects.filter(pk=crew.project.pk).update(gold_rate=0.2)
    crew.project.refresh_from_db()

    state = next_task._AnnotatorState(crew.project, crew.annotators[0], timezone.now())

    assert state.gold == (4, 1)  # three started tasks and a gold one
    assert state.gold_due(crew.project) is False  # 1 < 0.2 * 5 is false


# --- searches that lost races: the passed-over tasks are left out of the SQL -----------------------------------------


def racing(refuse=(), busy=()):
    """services.assignment_assign as other requests make it look: the tasks in `refuse` had their last slot taken
    meanwhile, those in `busy` are held by another request and then fill up. Returns the patch and the ids tried."""
    tried = []
    real = services.assignment_assign

    def assign(*, task, annotator, skip_locked=False, **kwargs):
        tried.append(task.pk)
        if task.pk in busy and skip_locked:
            return None
        if task.pk in refuse or task.pk in busy:
            raise TransitionError("Task already has the annotators it needs.", current="in_progress")
        return real(task=task, annotator=annotator, skip_locked=skip_locked, **kwargs)

    real_first_free = services.assignment_assign_first_free

    def assign_first_free(*, task_ids, annotator, **kwargs):  # PostgreSQL: the first candidate nobody holds
        for task_id in task_ids:
            tried.append(task_id)
            if task_id in busy:
                continue  # SKIP LOCKED
            if task_id in refuse:
                return task_id, None
            return real_first_free(task_ids=[task_id], annotator=annotator, **kwargs)
        return None, None

    @contextlib.contextmanager
    def patched():
        with mock.patch.object(services, "assignment_assign", assign), \
                mock.patch.object(services, "assignment_assign_first_free", assign_first_free):
            yield

    return patched(), tried


def test_when_a_whole_page_went_meanwhile_the_next_free_task_after_it_is_taken(crew):
    a = crew.annotators[3]
    open_ids = list(Task.objects.filter(batch=crew.batch, status="open").order_by("-priority", "id")
                    .values_list("pk", flat=True))
    started_ids = [t.pk for t in crew.tasks[:6]]
    patch, tried = racing(refuse={*started_ids, *open_ids[:next_task.CANDIDATES]})

    with patch:
        assignment = next_task_assign(project=crew.project, annotator=a)

    assert assignment.task_id == open_ids[next_task.CANDIDATES]
    assert len(tried) == len(set(tried))  # nothing was tried twice


@pytest.mark.postgres  # "held by another request" is SKIP LOCKED's answer: SQLite serialises writers instead
def test_a_contended_search_runs_again_without_the_tasks_it_passed_over(crew):
    Task.objects.exclude(pk__in=[crew.tasks[6].pk, crew.tasks[7].pk]).update(status="cancelled")
    first, second = crew.tasks[6], crew.tasks[7]
    patch, tried = racing(refuse={first.pk}, busy={second.pk})

    with patch:
        assignment = next_task_assign(project=crew.project, annotator=crew.annotators[3])

    assert assignment is None
    # first: refused; second: held by another request, then waited for and refused; the second try reads nothing
    assert tried == [first.pk, second.pk, second.pk]


@pytest.mark.parametrize("sampling", ["sequential", "random", "uncertainty"])
def test_each_sampling_gives_a_language_match_of_the_top_priority_first(crew, sampling):
    Project.objects.filter(pk=crew.project.pk).update(sampling=sampling)
    crew.project.refresh_from_db()
    Task.objects.filter(pk__in=[t.pk for t in crew.tasks[:6]]).update(status="cancelled")
    german = factories.tasks(crew.batch, 1, data={"text": "hallo", "language": "de"}, priority=3,
                             prediction_score=0.9)[0]
    Task.objects.filter(pk=german.pk).update(random_key=0.999)  # after the random start point drawn below
    AnnotatorProfile.objects.create(user=crew.annotators[3], languages=["de"])
    random.seed(3)

    assert next_task_assign(project=crew.project, annotator=crew.annotators[3]).task == german
    assert next_task_assign(project=crew.project, annotator=crew.annotators[2]).task.priority == 3


# --- statements per next -------------------------------------------------------------------------------------------


def engine_reads(project, annotator):
    """The reads a next runs outside the assignment and expiry services (whose writes are theirs to count), once
    the annotator's permissions are read (once per request, before the engine runs); savepoints are not reads."""
    require_project_perm(annotator, project, ANNOTATE)
    in_services = set()

    def counted(service):
        def run(**kwargs):
            before = len(queries.captured_queries)
            try:
                return service(**kwargs)
            finally:
                in_services.update(range(before, len(queries.captured_queries)))
        return run

    with (CaptureQueriesContext(connection) as queries,
          mock.patch.object(services, "assignment_assign", counted(services.assignment_assign)),
          mock.patch.object(services, "assignment_assign_first_free", counted(services.assignment_assign_first_free)),
          mock.patch.object(services, "assignment_expire", counted(services.assignment_expire))):
        next_task_assign(project=project, annotator=annotator)
    return sum(1 for i, query in enumerate(queries.captured_queries)
               if i not in in_services and "SAVEPOINT" not in query["sql"][:30])


def test_a_next_reads_the_annotator_s_state_in_one_statement_and_candidates_in_one_or_two(db):
    admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
    project = factories.project(actor=admin, slug="counted", review_mode="none", overlap=2)
    a, b, c = (factories.member(project, Membership.Role.ANNOTATOR, f"ann{i}") for i in range(3))
    batch = factories.batch(project)
    factories.tasks(batch, 3)

    # before: expiry, held work, batches + pause, started candidates, fresh candidates; now the state (held work,
    # batches, pause, leases that ran out, gold share) and the candidate reads
    assert engine_reads(project, a) == 3  # a fresh task: the state, started candidates (none), open ones (was 5)
    assert engine_reads(project, a) == 1  # held work: the state alone (was 2)
    assert engine_reads(project, b) == 2  # a started task's free slot (was 4)
    Assignment.objects.filter(annotator=a).update(lease_expires_at=timezone.now() - timedelta(minutes=1))
    assert engine_reads(project, c) == 2  # a's lease is freed (by the expiry service), c takes the slot (was 4)
    Project.objects.filter(pk=project.pk).update(gold_rate=1.0)
    project.refresh_from_db()
    factories.tasks(batch, 1, is_gold=True, gold_answer={"label": "cat"})
    with mock.patch.object(next_task.random, "random", return_value=0.0):  # no wrap-around read: the count is fixed
        assert engine_reads(project, a) == 2  # the state with the gold share, a gold task (was 5)
