"""The review queue under real concurrency (PostgreSQL): reviewers on their own connections take work and decide
it as fast as they can until the queue is empty. No annotation may ever be given to two reviewers.

tests/api/test_review_queue.py checks the same rule one reviewer after another; this runs them at once.
"""

import threading
from collections import Counter

import pytest
from django.db import close_old_connections, connection

from apps.core.errors import TransitionError
from apps.projects.models import Membership, Project
from apps.quality.models import Review
from apps.tasks import services
from apps.tasks.models import Annotation, Assignment, Task
from apps.tasks.review_queue import review_next
from tests import factories

REVIEWERS = 12
TASKS = 60


@pytest.fixture(autouse=True)
def _no_progress_figures(monkeypatch):
    """Each transition recomputes the project's progress after commit (eagerly in tests), and those recomputations
    queue up on one snapshot row: they are not under test here, and would make these tests slow."""
    monkeypatch.setattr(services, "_after_commit_refresh", lambda project_id: None)


def run_at_once(reviewers, work):
    """Run `work(reviewer)` in one thread per reviewer, all released together; return the errors they raised."""
    barrier = threading.Barrier(len(reviewers))
    errors = []

    def run(reviewer):
        try:
            barrier.wait()
            work(reviewer)
        except Exception as error:  # noqa: BLE001 - reported by the caller's assertions
            errors.append(repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(reviewer,)) for reviewer in reviewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    close_old_connections()
    assert not any(thread.is_alive() for thread in threads), "a reviewer thread hung"
    return errors


def given_a_full_queue():
    admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
    project = factories.project(actor=admin, slug="busy", review_mode="all", overlap=1)
    annotators = [factories.member(project, Membership.Role.ANNOTATOR, f"ann{i}") for i in range(4)]
    reviewers = [factories.member(project, Membership.Role.REVIEWER, f"rev{i}") for i in range(REVIEWERS)]
    for i, task in enumerate(factories.tasks(factories.batch(project), TASKS)):
        annotator = annotators[i % len(annotators)]
        assignment = services.assignment_assign(task=task, annotator=annotator)
        services.assignment_submit(assignment=assignment, actor=annotator, result={"label": "cat"})
    return project, reviewers


@pytest.mark.postgres
def test_reviewers_draining_the_queue_at_once_never_get_the_same_annotation(transactional_db):
    # given sixty submissions waiting and twelve reviewers
    project, reviewers = given_a_full_queue()
    lock = threading.Lock()
    given = []  # (reviewer, annotation) for every annotation review_next answered

    def drain(reviewer):
        for _ in range(TASKS):
            annotation = review_next(project=Project.objects.get(pk=project.pk), reviewer=reviewer)
            if annotation is None:
                return
            with lock:
                given.append((reviewer.pk, annotation.pk))
            services.review_approve(annotation=annotation, reviewer=reviewer)

    # when they all take and approve work at once until each is told the queue is empty
    errors = run_at_once(reviewers, drain)

    # then nobody failed: no decision was refused because someone else had the annotation
    assert errors == []
    # every annotation was given exactly once, and decided once, by the reviewer who got it
    per_annotation = Counter(annotation for _reviewer, annotation in given)
    assert len(per_annotation) == TASKS and set(per_annotation.values()) == {1}
    assert sorted(Review.objects.values_list("reviewer_id", "annotation_id")) == sorted(given)
    assert not Review.objects.filter(decided_at__isnull=True).exists()
    assert set(Annotation.objects.values_list("status", flat=True)) == {"approved"}
    assert set(Assignment.objects.values_list("status", flat=True)) == {"approved"}
    assert set(Task.objects.values_list("status", flat=True)) == {"accepted"}
    # and the work was shared out
    assert len({reviewer for reviewer, _annotation in given}) > 1


def given_a_long_queue(n, overlap=1):
    """`n` submissions waiting, written in bulk: a long queue makes each reviewer's query take long enough for
    the others to claim and decide work while it runs."""
    admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
    project = factories.project(actor=admin, slug="backlog", review_mode="all", overlap=overlap)
    annotators = [factories.member(project, Membership.Role.ANNOTATOR, f"ann{i}") for i in range(overlap)]
    reviewers = [factories.member(project, Membership.Role.REVIEWER, f"rev{i}") for i in range(REVIEWERS)]
    tasks = factories.tasks(factories.batch(project), n)
    Task.objects.filter(project=project).update(status=Task.Status.IN_REVIEW)
    assignments = Assignment.objects.bulk_create([Assignment(task=task, annotator=annotator, status="submitted")
                                                  for task in tasks for annotator in annotators])
    Annotation.objects.bulk_create([
        Annotation(task=a.task, assignment=a, annotator=a.annotator, author=a.annotator, version=1,
                   result={"label": "cat"}, status="submitted", needs_review=True) for a in assignments])
    return project, reviewers, tasks


@pytest.mark.postgres
def test_reviewers_working_a_long_queue_at_once_never_get_the_same_annotation(transactional_db):
    # given 2,000 submissions waiting and twelve reviewers, each taking and deciding ten in a row
    project, reviewers, _tasks = given_a_long_queue(2000)
    rounds = 10
    lock = threading.Lock()
    given = []

    def take_and_decide(reviewer):
        for i in range(rounds):
            annotation = review_next(project=Project.objects.get(pk=project.pk), reviewer=reviewer)
            with lock:
                given.append((reviewer.pk, annotation.pk if annotation else None))
            if i % 2:
                services.review_approve(annotation=annotation, reviewer=reviewer)
            else:
                services.review_reject(annotation=annotation, reviewer=reviewer, error_types=["wrong_label"],
                                       comment="Look again.")

    errors = run_at_once(reviewers, take_and_decide)

    # then no decision was refused (nor deadlocked) because another reviewer held the same annotation
    assert errors == []
    annotations = [annotation for _reviewer, annotation in given]
    assert None not in annotations
    assert len(annotations) == len(set(annotations)) == REVIEWERS * rounds
    assert sorted(Review.objects.values_list("reviewer_id", "annotation_id")) == sorted(given)
    assert not Review.objects.filter(decided_at__isnull=True).exists()


@pytest.mark.postgres
def test_taking_work_while_others_resolve_pairs_never_deadlocks(transactional_db):
    # given an overlap-2 project with 1,000 pairs waiting; half the reviewers take work from the queue and approve
    # it, the other half resolve the oldest pairs side by side: the same tasks
    project, reviewers, tasks = given_a_long_queue(1000, overlap=2)
    takers, resolvers = reviewers[::2], reviewers[1::2]
    rounds = 8
    refused = []

    def work(reviewer):
        for i in range(rounds):
            try:
                if reviewer in takers:
                    annotation = review_next(project=Project.objects.get(pk=project.pk), reviewer=reviewer)
                    services.review_approve(annotation=annotation, reviewer=reviewer)
                else:
                    task = tasks[i * len(resolvers) + resolvers.index(reviewer)]
                    services.review_pairwise_resolve(task=task, reviewer=reviewer, result={"label": "dog"})
            except TransitionError as error:  # someone decided it first: a clear refusal, not a failure
                refused.append(error.message)

    errors = run_at_once(reviewers, work)

    # then nobody deadlocked or failed; a refusal only ever says the work was no longer waiting, or that another
    # reviewer holds it (a taker's claim on one side of the pair a resolver wanted)
    assert errors == []
    known = ("is not waiting for a review", "fewer than two annotations waiting", "is accepted; no more work",
             "is claimed by rev")
    assert all(any(reason in message for reason in known) for message in refused), refused
    # and no annotation version was decided twice
    decided = Counter(Review.objects.filter(decided_at__isnull=False).values_list("annotation_id", flat=True))
    assert decided and max(decided.values()) == 1
