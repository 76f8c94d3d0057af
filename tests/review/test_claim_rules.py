"""One claim rule for the queue and the decisions, and what the queue does with claims: an own open review comes back
(its claim re-stamped) unless someone took it over after it lapsed; a junior's open review does not keep escalated
work from the seniors' queue; a task's waiting annotations go to one reviewer (the side-by-side decision is theirs);
what a reviewer leaves behind when they switch queues is released."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.errors import TransitionError
from apps.quality.models import Review
from apps.tasks import services
from apps.tasks.review_queue import CLAIM_MINUTES, ESCALATIONS, REVIEW_QUEUE, review_next

from .world import ADA, BABBAGE, LONDON, Desk, client, fresh, submit

pytestmark = pytest.mark.django_db


def age(annotation, reviewer, minutes=CLAIM_MINUTES + 1):
    """The reviewer's open review of the annotation was started `minutes` ago."""
    Review.objects.filter(annotation=annotation, reviewer=reviewer, decided_at__isnull=True).update(
        started_at=timezone.now() - timedelta(minutes=minutes))


@pytest.fixture
def desk():
    """One submission waiting, which the junior took from the queue."""
    desk = Desk(n_tasks=1)
    desk.annotation = submit(desk.task, desk.annotators[0])
    assert review_next(project=desk.project, reviewer=desk.junior) == desk.annotation
    return desk


def test_an_own_review_taken_over_after_it_lapsed_is_not_handed_back(desk):
    # given the junior left for longer than the claim, and the senior took the annotation since
    age(desk.annotation, desk.junior)
    assert review_next(project=desk.project, reviewer=desk.senior) == desk.annotation

    # then the junior's queue does not hand it back (every decision on it would be refused: a reload loop)
    assert review_next(project=desk.project, reviewer=desk.junior) is None
    # and the senior keeps it
    with pytest.raises(TransitionError):
        services.review_approve(annotation=desk.annotation, reviewer=desk.junior)
    services.review_approve(annotation=desk.annotation, reviewer=desk.senior)
    assert fresh(desk.annotation).status == "approved"


def test_an_own_review_handed_back_has_its_claim_renewed(desk):
    # given the junior has been at work on it for longer than the claim, nobody else took it
    age(desk.annotation, desk.junior)

    # when the queue hands it back to them
    assert review_next(project=desk.project, reviewer=desk.junior) == desk.annotation

    # then their claim runs again from now: the others are refused, the junior decides
    review = Review.objects.get(annotation=desk.annotation, reviewer=desk.junior)
    assert review.started_at > timezone.now() - timedelta(minutes=1)
    # and the renewal is in the review's history, by the junior
    renewed = review.history.order_by("-history_id").first()
    assert (renewed.history_change_reason, renewed.history_user, renewed.started_at) == (
        "claim refreshed", desk.junior, review.started_at)
    assert review_next(project=desk.project, reviewer=desk.senior) is None
    with pytest.raises(TransitionError):
        services.review_start(annotation=desk.annotation, reviewer=desk.senior)
    services.review_approve(annotation=desk.annotation, reviewer=desk.junior)
    assert Review.objects.get(annotation=desk.annotation).decision == "approve"


def test_escalated_work_a_junior_had_open_is_in_the_seniors_queue_at_once(desk):
    # given the junior's open review, then the task sent to senior review (low agreement)
    services.task_escalate_to_senior_review(task=desk.task, comment="Low agreement")

    # then the queue hands it to a senior now, as the decisions allow (one rule for both)
    assert review_next(project=desk.project, reviewer=desk.senior, queue=ESCALATIONS) == desk.annotation
    response = client(desk.senior).post(f"/api/v1/annotations/{desk.annotation.pk}/review/",
                                        {"decision": "approve"}, format="json")
    assert response.status_code == 201, response.json()


@pytest.fixture
def pair():
    """A text-span task (overlap 2) with two different results waiting, and a second task waiting alone."""
    desk = Desk(task_type="text_spans", n_tasks=2, overlap=2)
    desk.first = submit(desk.task, desk.annotators[0], {"spans": [ADA, LONDON]})
    desk.second = submit(desk.task, desk.annotators[1], {"spans": [ADA, BABBAGE]})
    return desk


def test_a_task_s_waiting_annotations_go_to_one_reviewer(pair):
    # when the junior takes the first annotation from the queue
    assert review_next(project=pair.project, reviewer=pair.junior) == pair.first

    # then the second one on the same task is theirs too: the senior is not handed it
    assert Review.objects.filter(annotation=pair.second, reviewer=pair.junior, decided_at__isnull=True).exists()
    assert review_next(project=pair.project, reviewer=pair.senior) is None
    # and the junior's side-by-side decision goes through
    response = client(pair.junior).post(f"/api/v1/tasks/{pair.task.pk}/review/pairwise/",
                                        {"annotation": pair.first.pk}, format="json")
    assert response.status_code == 200, response.json()
    assert fresh(pair.task).status == "accepted"


def test_an_annotation_whose_sibling_someone_else_claimed_is_not_handed_out(pair):
    # given the junior opened the second annotation only (not through the queue)
    services.review_start(annotation=pair.second, reviewer=pair.junior)

    # then the senior is not handed the first one: the task's resolution is the junior's
    assert review_next(project=pair.project, reviewer=pair.senior) is None


def test_switching_queues_releases_the_annotation_left_behind():
    # given a senior shown an annotation from the review queue, and an escalation waiting elsewhere
    desk = Desk(n_tasks=2)
    left = submit(desk.tasks[0], desk.annotators[0])
    escalated = submit(desk.tasks[1], desk.annotators[1])
    services.review_escalate(annotation=escalated, reviewer=desk.junior, comment="Not sure")
    assert review_next(project=desk.project, reviewer=desk.senior, queue=REVIEW_QUEUE) == left

    # when they switch to the escalations
    assert review_next(project=desk.project, reviewer=desk.senior, queue=ESCALATIONS) == escalated

    # then the annotation left behind no longer holds: another reviewer gets it at once
    assert not Review.objects.filter(annotation=left, reviewer=desk.senior).exists()
    assert Review.history.filter(annotation_id=left.pk, reviewer_id=desk.senior.pk).latest(
        "history_id").history_type == "-"  # the release is in the history
    assert review_next(project=desk.project, reviewer=desk.lead, queue=REVIEW_QUEUE) == left


def test_switching_to_an_empty_queue_releases_too():
    desk = Desk(n_tasks=1)
    left = submit(desk.task, desk.annotators[0])
    assert review_next(project=desk.project, reviewer=desk.senior, queue=REVIEW_QUEUE) == left

    assert review_next(project=desk.project, reviewer=desk.senior, queue=ESCALATIONS) is None

    assert review_next(project=desk.project, reviewer=desk.junior) == left
