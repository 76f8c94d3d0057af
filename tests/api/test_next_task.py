"""The next-task engine (DESIGN.md "Assignment"): held work first, then rework, gold at the gold rate, then open
tasks by batch priority, task priority and sampling, preferring a language/skill match; never the same task twice
to one annotator, never more than the overlap, expired leases freed lazily, None (204) when nothing is left."""

import random
import threading
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from apps.annotators.models import AnnotatorProfile
from apps.projects import services as project_services
from apps.projects.models import Membership, Project
from apps.tasks import services
from apps.tasks.models import Assignment, Task
from apps.tasks.next_task import next_task_assign
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def crew(db):
    """A classification project (overlap 1, no review) with four annotators and an empty active batch."""
    return factories.crew(slug="engine", review_mode="none")


def settings(project, **fields):
    Project.objects.filter(pk=project.pk).update(**fields)
    project.refresh_from_db()


def take(crew, annotator=None):
    """The annotator's next assignment, or None."""
    return next_task_assign(project=crew.project, annotator=annotator or crew.annotators[0])


def finish(assignment):
    """Done with it, as far as the engine is concerned (a submission)."""
    return services.assignment_submit(assignment=assignment, actor=assignment.annotator, result={"label": "cat"})


def drain(crew, annotator=None, limit=500):
    """Every task the annotator is given, in order, submitting each."""
    order = []
    for _ in range(limit):
        assignment = take(crew, annotator)
        if assignment is None:
            return order
        order.append(assignment.task)
        finish(assignment)
    raise AssertionError("the engine never ran dry")


# --- held work and rework come back first ------------------------------------------------------------------------


def test_an_assignment_already_held_comes_back_first(crew):
    first, _second = factories.tasks(crew.batch, 2)
    held = take(crew)
    urgent = factories.tasks(crew.batch, 1, priority=100)[0]

    again = take(crew)

    assert again.pk == held.pk and again.task == first
    assert not Assignment.objects.filter(task=urgent).exists()


def test_rework_comes_back_after_held_work_and_before_new_tasks(crew):
    settings(crew.project, review_mode="all")
    factories.project_services.membership_add(project=crew.project, user=crew.annotators[3], role="reviewer")
    reviewer = crew.annotators[3]
    reworked_task, held_task, *_fresh = factories.tasks(crew.batch, 4)
    rejected = take(crew)
    annotation = finish(rejected)
    held = take(crew)
    assert held.task == held_task
    services.review_reject(annotation=annotation, reviewer=reviewer, error_types=["wrong_label"], comment="Look again.")

    assert take(crew).pk == held.pk  # the live assignment first
    finish(held)
    rework = take(crew)

    assert rework.pk == rejected.pk and rework.task == reworked_task and rework.status == "rejected"
    assert take(crew).pk == rejected.pk  # and it stays their next task until resubmitted


def test_work_on_hold_waits_for_its_answer_while_the_annotator_takes_other_tasks(crew):
    asked, other = factories.tasks(crew.batch, 2)
    assignment = take(crew)
    services.clarification_ask(task=asked, actor=crew.annotators[0], question="Which one?")

    nxt = take(crew)

    assert nxt.task == other and nxt.pk != assignment.pk


# --- gold ----------------------------------------------------------------------------------------------------------


def test_gold_tasks_come_at_the_gold_rate_spread_through_the_work(crew):
    settings(crew.project, gold_rate=0.2)
    factories.tasks(crew.batch, 200)
    factories.tasks(crew.batch, 60, is_gold=True, gold_answer={"label": "cat"})
    annotator = crew.annotators[0]
    gold_flags = []
    for _ in range(200):
        assignment = take(crew)
        gold_flags.append(assignment.task.is_gold)
        Assignment.objects.filter(pk=assignment.pk).update(status="submitted")  # the engine only counts them

    assert sum(gold_flags) == pytest.approx(40, abs=2)
    for start in range(0, 200, 50):  # not bunched: every stretch of 50 has its share
        assert 8 <= sum(gold_flags[start:start + 50]) <= 12
    assert len({a.task_id for a in Assignment.objects.filter(annotator=annotator)}) == 200


def test_gold_rate_zero_never_gives_gold(crew):
    factories.tasks(crew.batch, 3)
    factories.tasks(crew.batch, 3, is_gold=True, gold_answer={"label": "cat"})

    order = drain(crew)

    assert [t.is_gold for t in order] == [False] * 3


def test_a_gold_task_is_given_to_every_annotator_whatever_the_overlap(crew):
    settings(crew.project, gold_rate=1.0)
    gold = factories.tasks(crew.batch, 1, is_gold=True, gold_answer={"label": "cat"})[0]

    given = [take(crew, annotator) for annotator in crew.annotators]

    assert [a.task for a in given] == [gold] * 4


# --- order: batch priority, task priority, sampling ------------------------------------------------------------------


def test_batch_priority_then_task_priority_then_sequence(crew):
    low = factories.batch(crew.project, name="Low", priority=1)
    high = factories.batch(crew.project, name="High", priority=5)
    low_urgent = factories.tasks(low, 1, priority=99)[0]
    high_plain_1, high_plain_2 = factories.tasks(high, 2)
    high_urgent = factories.tasks(high, 1, priority=3)[0]
    main = factories.tasks(crew.batch, 1)[0]  # priority 0 batch

    order = drain(crew)

    assert order == [high_urgent, high_plain_1, high_plain_2, low_urgent, main]


def test_paused_and_draft_batches_are_not_handed_out(crew):
    paused = factories.batch(crew.project, name="Paused", priority=9)
    factories.tasks(paused, 2)
    project_services.batch_pause(batch=paused, actor=None)
    draft = factories.batch(crew.project, name="Draft", active=False, priority=9)
    factories.tasks(draft, 2)
    plain = factories.tasks(crew.batch, 1)[0]

    assert drain(crew) == [plain]


def test_random_sampling_shuffles_within_a_priority_and_keeps_priority_first(crew):
    settings(crew.project, sampling="random")
    random.seed(20240601)
    plain = factories.tasks(crew.batch, 30)
    urgent = factories.tasks(crew.batch, 10, priority=5)

    order = drain(crew)

    assert set(order[:10]) == set(urgent)  # every urgent task before any plain one
    assert set(order[10:]) == set(plain)
    assert [t.pk for t in order[10:]] != sorted(t.pk for t in plain)  # not the sequential order


def test_random_sampling_never_passes_over_a_higher_priority_task(crew):
    """The random start point once split the candidates in two slices, each ordered by priority: a low-priority
    task past the start point came before a high-priority one before it."""
    settings(crew.project, sampling="random")
    urgent = factories.tasks(crew.batch, 1, priority=10)[0]
    plain = factories.tasks(crew.batch, 1)[0]
    Task.objects.filter(pk=urgent.pk).update(random_key=0.01)
    Task.objects.filter(pk=plain.pk).update(random_key=0.99)
    for seed in range(20):  # random start points on both sides of both keys
        random.seed(seed)
        with transaction.atomic():
            assert take(crew).task == urgent, seed
            transaction.set_rollback(True)


def test_uncertainty_sampling_gives_the_lowest_model_confidence_first(crew):
    settings(crew.project, sampling="uncertainty")
    unsure = factories.tasks(crew.batch, 1, prediction={"label": "cat"}, prediction_score=0.12)[0]
    none_1 = factories.tasks(crew.batch, 1)[0]
    sure = factories.tasks(crew.batch, 1, prediction={"label": "cat"}, prediction_score=0.93)[0]
    middling = factories.tasks(crew.batch, 1, prediction={"label": "dog"}, prediction_score=0.5)[0]
    urgent_sure = factories.tasks(crew.batch, 1, prediction={"label": "dog"}, prediction_score=0.99, priority=1)[0]

    order = drain(crew)

    # Priority still comes first; tasks without a prediction come after every scored one, on every database.
    assert order == [urgent_sure, unsure, middling, sure, none_1]


# --- language and skill match ------------------------------------------------------------------------------------


def test_a_task_in_the_annotator_s_language_is_preferred(crew):
    english = factories.tasks(crew.batch, 2, data={"text": "hello", "language": "en"})
    german = factories.tasks(crew.batch, 1, data={"text": "hallo", "language": "de"})[0]
    AnnotatorProfile.objects.create(user=crew.annotators[0], languages=["de", "fr"])

    assert take(crew).task == german
    assert take(crew, crew.annotators[1]).task == english[0]  # no profile: the plain order


def test_a_task_needing_the_annotator_s_skill_is_preferred(crew):
    factories.tasks(crew.batch, 3, data={"text": "x"})
    medical = factories.tasks(crew.batch, 1, data={"text": "dx", "skill": "medical"})[0]
    AnnotatorProfile.objects.create(user=crew.annotators[0], skills={"medical": 4})

    assert take(crew).task == medical


def test_without_a_match_the_annotator_still_gets_work(crew):
    english = factories.tasks(crew.batch, 1, data={"text": "hello", "language": "en"})[0]
    AnnotatorProfile.objects.create(user=crew.annotators[0], languages=["ja"])

    assert take(crew).task == english


def test_a_language_match_does_not_jump_a_higher_task_priority(crew):
    urgent = factories.tasks(crew.batch, 1, data={"text": "hello", "language": "en"}, priority=10)[0]
    factories.tasks(crew.batch, 1, data={"text": "hallo", "language": "de"})
    AnnotatorProfile.objects.create(user=crew.annotators[0], languages=["de"])

    assert take(crew).task == urgent


# --- never twice, never over the overlap, leases ---------------------------------------------------------------------


def test_never_the_same_task_twice_to_one_annotator_even_after_a_skip_or_an_expiry(crew):
    skipped_task, expired_task = factories.tasks(crew.batch, 2)
    first = take(crew)
    services.assignment_skip(assignment=first, actor=crew.annotators[0])
    second = take(crew)
    assert second.task == expired_task
    Assignment.objects.filter(pk=second.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert take(crew) is None
    assert take(crew, crew.annotators[1]).task == skipped_task


def test_the_overlap_is_never_exceeded(crew):
    settings(crew.project, overlap=2)
    task = factories.tasks(crew.batch, 1)[0]
    a, b, c, d = crew.annotators

    assert take(crew, a).task == task
    finish(take(crew, a))  # submitted work counts towards the overlap too
    assert take(crew, b).task == task
    assert take(crew, c) is None
    services.assignment_skip(assignment=Assignment.objects.get(task=task, annotator=b), actor=b)
    assert take(crew, c).task == task  # a skip frees the slot
    assert take(crew, d) is None
    assert Assignment.objects.filter(task=task, status__in=[*Assignment.LIVE, *Assignment.DONE]).count() == 2


def test_with_overlap_started_tasks_are_finished_before_fresh_ones(crew):
    settings(crew.project, overlap=2)
    first, second = factories.tasks(crew.batch, 2)
    Task.objects.filter(pk=first.pk).update(priority=0)
    Task.objects.filter(pk=second.pk).update(priority=0)
    a, b, c, _d = crew.annotators
    assert take(crew, a).task == first
    assert take(crew, b).task == first  # the started task, with its free slot
    assert take(crew, c).task == second


def test_an_expired_lease_is_freed_lazily_on_the_next_request(crew):
    task = factories.tasks(crew.batch, 1)[0]
    a, b = crew.annotators[:2]
    stale = take(crew, a)
    assert take(crew, b) is None
    Assignment.objects.filter(pk=stale.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=1))

    fresh = take(crew, b)

    assert fresh.task == task
    stale.refresh_from_db()
    assert stale.status == "expired"
    assert take(crew, a) is None  # and never back to the one who let it expire


def test_a_lease_that_has_not_run_out_is_not_taken(crew):
    factories.tasks(crew.batch, 1)
    a, b = crew.annotators[:2]
    held = take(crew, a)
    Assignment.objects.filter(pk=held.pk).update(lease_expires_at=timezone.now() + timedelta(seconds=30))

    assert take(crew, b) is None
    held.refresh_from_db()
    assert held.status == "assigned"


def test_an_annotator_s_own_expired_lease_does_not_come_back_as_held(crew):
    first, second = factories.tasks(crew.batch, 2)
    stale = take(crew)
    Assignment.objects.filter(pk=stale.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=1))

    nxt = take(crew)

    assert nxt.task == second
    stale.refresh_from_db()
    assert stale.status == "expired"


def test_nothing_left_is_none_and_only_annotators_are_served(crew):
    assert take(crew) is None
    factories.tasks(crew.batch, 1)
    outsider = factories.UserFactory(username="stranger")
    from apps.core.errors import PermissionDeniedError

    with pytest.raises(PermissionDeniedError):
        next_task_assign(project=crew.project, annotator=outsider)
    assert not Assignment.objects.exists()


def test_cancelled_and_accepted_tasks_are_not_handed_out(crew):
    cancelled, accepted, open_task = factories.tasks(crew.batch, 3)
    Task.objects.filter(pk=cancelled.pk).update(status="cancelled")
    Task.objects.filter(pk=accepted.pk).update(status="accepted")

    assert drain(crew) == [open_task]


# --- concurrency (PostgreSQL: SKIP LOCKED) -------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("overlap, tasks_n", [(1, 3), (2, 4)])
def test_concurrent_requests_never_share_a_slot_nor_miss_a_free_one(overlap, tasks_n):
    """Eight annotators ask at the same moment: every free slot is given exactly once, nobody is told "nothing
    left" while a slot is free, nothing fails. No timing is assumed: a barrier only makes them start together."""
    admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
    project = factories.project(actor=admin, slug="race", review_mode="none", overlap=overlap)
    annotators = [factories.member(project, Membership.Role.ANNOTATOR, f"racer{i}") for i in range(8)]
    batch = factories.batch(project)
    tasks = factories.tasks(batch, tasks_n)
    barrier = threading.Barrier(len(annotators))
    results, errors = {}, []

    def ask(annotator):
        try:
            barrier.wait()
            assignment = next_task_assign(project=Project.objects.get(pk=project.pk), annotator=annotator)
            results[annotator.pk] = assignment.task_id if assignment else None
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=ask, args=(annotator,)) for annotator in annotators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    close_old_connections()

    assert errors == []
    given = sorted(task_id for task_id in results.values() if task_id is not None)
    slots = min(len(annotators), overlap * tasks_n)
    assert len(given) == slots
    for task in tasks:
        assert given.count(task.pk) <= overlap
    assert Assignment.objects.count() == slots
