"""Escalation: a reviewer hands a hard case up; it only reaches senior and lead reviewers (AnnotatorProfile
seniority), ahead of everything else in their queue, and only they can decide it."""

import pytest

from apps.annotators.models import AnnotatorProfile
from apps.projects.models import Membership
from apps.tasks.review_queue import review_queue
from tests import factories

from .world import Desk, browser_client, client, event_types, fresh, snapshot, submit

pytestmark = pytest.mark.django_db


def review_next(user, desk):
    return client(user).post(f"/api/v1/projects/{desk.project.pk}/review/next/")


def decide(user, annotation, **body):
    return client(user).post(f"/api/v1/annotations/{annotation.pk}/review/", body, format="json")


def test_escalated_work_reaches_only_senior_and_lead_reviewers_first_and_only_they_decide_it():
    # given two submissions; the junior reviewer takes the oldest and escalates it
    desk = Desk(n_tasks=2)
    hard = submit(desk.tasks[0], desk.annotators[0])
    plain = submit(desk.tasks[1], desk.annotators[1])
    assert review_next(desk.junior, desk).json()["annotation"]["id"] == hard.pk
    refused = decide(desk.junior, hard, decision="escalate", comment="  ")
    assert refused.status_code == 400 and "comment" in refused.json()["errors"]
    escalated = decide(desk.junior, hard, decision="escalate", comment="Is a wolf a dog?")
    assert escalated.status_code == 201
    assert (fresh(hard).status, hard.needs_review, fresh(desk.tasks[0]).status) == ("escalated", True, "in_review")

    # then the junior never gets it back, not even when it is all that is left for them
    assert review_next(desk.junior, desk).json()["annotation"]["id"] == plain.pk
    assert hard not in review_queue(project=desk.project, reviewer=desk.junior)
    assert decide(desk.junior, plain, decision="approve").status_code == 201
    assert review_next(desk.junior, desk).status_code == 204

    # and a reviewer whose profile says junior is no senior
    explicit_junior = factories.member(desk.project, Membership.Role.REVIEWER, "junior2")
    AnnotatorProfile.objects.create(user=explicit_junior, seniority=AnnotatorProfile.Seniority.JUNIOR)
    assert review_next(explicit_junior, desk).status_code == 204

    # when a junior tries to decide it anyway, it is refused and nothing changes
    before = snapshot()
    for user in (desk.junior, explicit_junior):
        for body in ({"decision": "approve"}, {"decision": "reject", "error_types": ["wrong_label"]},
                     {"decision": "fix", "corrected_result": {"label": "dog"}}):
            response = decide(user, hard, **body)
            assert response.status_code == 403, response.json()
            assert "senior" in response.json()["detail"]
    assert snapshot() == before

    # then the lead decides it; the task is accepted
    assert decide(desk.lead, hard, decision="reject", error_types=["guideline_not_followed"],
                  comment="Wolves are not dogs").status_code == 201
    assert fresh(hard).status == "rejected" and fresh(desk.tasks[0]).status == "rework"
    assert event_types(desk.tasks[0]) == ["assigned", "submitted", "review_started", "escalated",
                                          "review_started", "rejected"]


def test_escalations_rank_first_for_senior_and_lead_reviewers():
    # given three older plain submissions and, last, one that was escalated
    desk = Desk(n_tasks=4)
    plains = [submit(task, desk.annotators[i % 3]) for i, task in enumerate(desk.tasks[:3])]
    hard = submit(desk.tasks[3], desk.annotators[0])
    assert decide(desk.junior, hard, decision="escalate", comment="Unsure").status_code == 201

    # then both the senior's and the lead's queue start with the escalation, the others oldest first
    for reviewer in (desk.senior, desk.lead):
        assert list(review_queue(project=desk.project, reviewer=reviewer)) == [hard, *plains]
    assert list(review_queue(project=desk.project, reviewer=desk.junior)) == plains
    # and the first senior to ask gets it; the other gets the oldest plain submission
    assert review_next(desk.senior, desk).json()["annotation"]["id"] == hard.pk
    assert review_next(desk.lead, desk).json()["annotation"]["id"] == plains[0].pk

    # the senior's decision stands
    assert decide(desk.senior, hard, decision="approve").status_code == 201
    assert fresh(desk.tasks[3]).status == "accepted"


def test_the_review_page_tells_a_senior_they_take_escalations():
    desk = Desk(n_tasks=1)
    hard = submit(desk.task, desk.annotators[0])
    decide(desk.junior, hard, decision="escalate", comment="Unsure")

    senior_page = browser_client(desk.senior).get(f"/projects/{desk.project.pk}/review/")
    junior_page = browser_client(desk.junior).get(f"/projects/{desk.project.pk}/review/")

    assert "you take escalations" in senior_page.content.decode()
    assert senior_page.context["stats"]["length"] == 1
    assert "you take escalations" not in junior_page.content.decode()
    assert junior_page.context["stats"]["length"] == 0
