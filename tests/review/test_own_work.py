"""Nobody reviews their own work: a reviewer who also annotates never gets their own submissions from the queue,
and every decision on them — approve, reject, fix, escalate, pairwise — is refused and changes nothing."""

import pytest

from apps.projects import services as project_services
from apps.projects.models import Membership
from apps.tasks.review_queue import review_queue

from .world import Desk, browser_client, client, fresh, snapshot, submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk():
    """overlap 2; the lead reviewer annotates too and submitted on task 0 alongside ann0."""
    desk = Desk(n_tasks=2, overlap=2)
    project_services.membership_add(project=desk.project, user=desk.lead, role=Membership.Role.ANNOTATOR)
    desk.own = submit(desk.tasks[0], desk.lead, {"label": "dog"})
    desk.peer = submit(desk.tasks[0], desk.annotators[0], {"label": "cat"})
    return desk


def test_the_queue_never_gives_a_reviewer_their_own_work(desk):
    api = client(desk.lead)

    # the lead gets the other annotator's submission, never their own, however often they ask
    assert list(review_queue(project=desk.project, reviewer=desk.lead)) == [desk.peer]
    first = api.post(f"/api/v1/projects/{desk.project.pk}/review/next/")
    assert first.json()["annotation"]["id"] == desk.peer.pk
    assert api.post(f"/api/v1/annotations/{desk.peer.pk}/review/", {"decision": "approve"},
                    format="json").status_code == 201
    assert api.post(f"/api/v1/projects/{desk.project.pk}/review/next/").status_code == 204
    # while another reviewer gets it; the review page counts it for them, not for its author
    assert client(desk.junior).post(f"/api/v1/projects/{desk.project.pk}/review/next/").json()[
        "annotation"]["id"] == desk.own.pk
    assert browser_client(desk.lead).get(f"/projects/{desk.project.pk}/review/").context["stats"]["length"] == 0


@pytest.mark.parametrize("body", [
    {"decision": "approve"},
    {"decision": "reject", "error_types": ["wrong_label"], "comment": "Mine was wrong"},
    {"decision": "fix", "corrected_result": {"label": "bird"}},
    {"decision": "escalate", "comment": "Not sure of my own"},
])
def test_every_decision_on_ones_own_work_is_refused_and_changes_nothing(desk, body):
    before = snapshot()

    response = client(desk.lead).post(f"/api/v1/annotations/{desk.own.pk}/review/", body, format="json")

    assert response.status_code == 403
    assert response.json()["detail"] == "Nobody reviews their own work."
    assert snapshot() == before


@pytest.mark.parametrize("how", ["merge", "pick own", "pick peer"])
def test_pairwise_resolution_of_a_task_one_annotated_oneself_is_refused_and_changes_nothing(desk, how):
    body = {"merge": {"result": {"label": "cat"}}, "pick own": {"annotation": desk.own.pk},
            "pick peer": {"annotation": desk.peer.pk}}[how]
    before = snapshot()

    response = client(desk.lead).post(f"/api/v1/tasks/{desk.tasks[0].pk}/review/pairwise/", body, format="json")

    assert response.status_code == 403, response.json()
    assert snapshot() == before
    assert fresh(desk.tasks[0]).status == "in_review"
