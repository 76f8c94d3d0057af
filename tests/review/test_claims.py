"""A started review claims its annotation: while it is open and fresh, nobody else — another reviewer, a lead, an
admin — starts or decides it, through `POST /annotations/{id}/review/` or by resolving its task side by side
(409, nothing changed). A stale claim (older than the queue's CLAIM_MINUTES) blocks nobody; on escalated work only
a senior's claim counts."""

from datetime import timedelta

import pytest

from apps.core.errors import TransitionError
from apps.quality.models import Review
from apps.tasks import services
from apps.tasks.review_queue import CLAIM_MINUTES

from .world import ADA, BABBAGE, LONDON, Desk, client, fresh, snapshot, submit

pytestmark = pytest.mark.django_db


DECISIONS = {
    "approve": {"decision": "approve"},
    "reject": {"decision": "reject", "error_types": ["wrong_label"], "comment": "A dog"},
    "fix": {"decision": "fix", "corrected_result": {"label": "dog"}},
    "escalate": {"decision": "escalate", "comment": "Not sure"},
}


def decide(user, annotation, body):
    return client(user).post(f"/api/v1/annotations/{annotation.pk}/review/", body, format="json")


@pytest.fixture
def desk():
    """One submission waiting, which the junior reviewer took from the queue (claimed)."""
    desk = Desk(n_tasks=1)
    desk.annotation = submit(desk.task, desk.annotators[0])
    taken = client(desk.junior).post(f"/api/v1/projects/{desk.project.pk}/review/next/")
    assert taken.status_code == 200 and taken.json()["annotation"]["id"] == desk.annotation.pk
    return desk


@pytest.mark.parametrize("decision", list(DECISIONS))
@pytest.mark.parametrize("who", ["senior", "lead", "admin"])
def test_a_decision_by_anyone_but_the_claimant_is_refused_and_changes_nothing(desk, decision, who):
    # given the junior's open review of the annotation, a few seconds old
    before = snapshot()

    # when someone else decides it
    response = decide(getattr(desk, who), desk.annotation, DECISIONS[decision])

    # then 409 says who holds it and until when; no review, version, status or event was written
    assert response.status_code == 409, response.json()
    body = response.json()
    assert body["current"] == "claimed"
    assert body["detail"].startswith(f"Annotation {desk.annotation.pk} is claimed by junior, who opened its review 0 "
                                     f"min ago: only they decide it, until they do or {CLAIM_MINUTES} minutes")
    assert snapshot() == before


@pytest.mark.parametrize("decision", list(DECISIONS))
def test_the_claimant_decides(desk, decision):
    response = decide(desk.junior, desk.annotation, DECISIONS[decision])

    assert response.status_code == 201, response.json()
    assert Review.objects.get(annotation=desk.annotation).decision == decision


def test_another_reviewer_cannot_start_a_claimed_review_either(desk):
    before = snapshot()

    with pytest.raises(TransitionError) as refused:
        services.review_start(annotation=desk.annotation, reviewer=desk.senior)

    assert refused.value.current == "claimed" and "claimed by junior" in refused.value.message
    assert snapshot() == before


def test_a_stale_claim_blocks_nobody(desk):
    # given the junior opened the review more than CLAIM_MINUTES ago and never decided
    Review.objects.filter(annotation=desk.annotation, reviewer=desk.junior).update(
        started_at=fresh(desk.annotation).submitted_at - timedelta(minutes=CLAIM_MINUTES + 1))

    # then the senior decides it
    response = decide(desk.senior, desk.annotation, DECISIONS["approve"])
    assert response.status_code == 201, response.json()
    assert fresh(desk.annotation).status == "approved"
    # and the junior, coming back, finds it decided
    late = decide(desk.junior, desk.annotation, DECISIONS["approve"])
    assert late.status_code == 409 and "accepted" in late.json()["detail"]


def test_a_claim_taken_over_after_it_went_stale_binds_the_first_claimant(desk):
    # given the junior's claim went stale and the senior opened the annotation since
    Review.objects.filter(annotation=desk.annotation, reviewer=desk.junior).update(
        started_at=fresh(desk.annotation).submitted_at - timedelta(minutes=CLAIM_MINUTES + 1))
    services.review_start(annotation=desk.annotation, reviewer=desk.senior)
    before = snapshot()

    # then the junior may no longer decide it: the senior holds it now
    response = decide(desk.junior, desk.annotation, DECISIONS["reject"])
    assert response.status_code == 409 and "claimed by senior" in response.json()["detail"]
    assert snapshot() == before
    assert decide(desk.senior, desk.annotation, DECISIONS["approve"]).status_code == 201


def test_a_junior_s_claim_does_not_hold_back_work_escalated_to_the_seniors(desk):
    # given the junior's open review, then the task sent to senior review (low agreement routing)
    services.task_escalate_to_senior_review(task=desk.task, comment="Low agreement")
    assert fresh(desk.annotation).status == "escalated"

    # then a senior decides it at once (the junior could not decide escalated work any more)
    assert decide(desk.junior, desk.annotation, DECISIONS["approve"]).status_code == 403
    response = decide(desk.senior, desk.annotation, DECISIONS["approve"])
    assert response.status_code == 201, response.json()


@pytest.fixture
def pair():
    """A text-span task with two annotations waiting (overlap 2); the junior claimed the second one."""
    desk = Desk(task_type="text_spans", n_tasks=1, overlap=2)
    desk.first = submit(desk.task, desk.annotators[0], {"spans": [ADA, LONDON]})
    desk.second = submit(desk.task, desk.annotators[1], {"spans": [ADA, BABBAGE]})
    services.review_start(annotation=desk.second, reviewer=desk.junior)
    return desk


@pytest.mark.parametrize("body", [{"annotation": "first"}, {"result": {"spans": [ADA, BABBAGE, LONDON]}}])
def test_resolving_a_pair_with_a_claimed_sibling_is_refused_and_changes_nothing(pair, body):
    body = {"annotation": pair.first.pk} if body.get("annotation") == "first" else body
    before = snapshot()

    response = client(pair.senior).post(f"/api/v1/tasks/{pair.task.pk}/review/pairwise/", body, format="json")

    assert response.status_code == 409, response.json()
    assert f"Annotation {pair.second.pk} is claimed by junior" in response.json()["detail"]
    assert snapshot() == before
    # the claimant resolves it
    response = client(pair.junior).post(f"/api/v1/tasks/{pair.task.pk}/review/pairwise/", body, format="json")
    assert response.status_code == 200, response.json()
    assert fresh(pair.task).status == "accepted"


def test_rejecting_each_side_stops_at_the_claimed_one(pair):
    # the unclaimed first annotation may be rejected by the senior
    response = decide(pair.senior, pair.first, {"decision": "reject", "error_types": ["missed_object"],
                                                "comment": "Babbage is a person"})
    assert response.status_code == 201, response.json()
    before = snapshot()

    # the junior's one may not
    response = decide(pair.senior, pair.second, {"decision": "reject", "error_types": ["missed_object"],
                                                 "comment": "London is a place"})
    assert response.status_code == 409, response.json()
    assert f"Annotation {pair.second.pk} is claimed by junior" in response.json()["detail"]
    assert snapshot() == before
    assert fresh(pair.second).status == "submitted"
