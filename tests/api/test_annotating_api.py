"""API.md "Annotating" and "Reviewing": next task, the assignment actions, submit, the review queue and
decisions — the happy paths, and every refusal with its status, its message and nothing changed."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.annotators.models import AnnotatorProfile
from apps.projects.models import Membership
from apps.quality.models import Review
from apps.tasks import services as task_services
from apps.tasks.models import Annotation, Assignment, Task, TaskEvent
from tests import factories
from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db


def snapshot():
    """What a refused call must leave as it was."""
    return {
        "assignments": sorted(Assignment.objects.values_list("pk", "status", "lease_expires_at", "rework_count")),
        "annotations": sorted(Annotation.objects.values_list("pk", "status", "is_current")),
        "tasks": sorted(Task.objects.values_list("pk", "status")),
        "reviews": sorted(Review.objects.values_list("pk", "decision", "decided_at")),
        "events": TaskEvent.objects.count(),
        "assignment history": Assignment.history.count(),
    }


def assert_refused(response, status, *, before, names=None):
    body = assert_error(response, status)
    if names:
        assert names in body["detail"], body
    assert snapshot() == before
    return body


@pytest.fixture
def solo(db):
    """A classification project (overlap 1, review everything) with one annotator, two reviewers and 3 tasks."""
    team = factories.team()
    team.tasks = [team.task, *factories.tasks(team.batch, 2)]
    team.reviewer2 = factories.member(team.project, Membership.Role.REVIEWER, "reviewer2")
    return team


def next_url(team):
    return f"/api/v1/projects/{team.project.pk}/next/"


# --- next task ---------------------------------------------------------------------------------------------------


def test_next_gives_an_assignment_with_a_lease_and_the_task(solo, api):
    response = api(solo.annotators[0]).post(next_url(solo))

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"assignment", "task"}
    assert set(body["assignment"]) == {"id", "status", "lease_expires_at"}
    assert set(body["task"]) == {"id", "data"}
    assert body["assignment"]["status"] == "assigned" and body["assignment"]["lease_expires_at"].endswith("Z")
    assert body["task"] == {"id": solo.task.pk, "data": solo.task.data}
    assignment = Assignment.objects.get(pk=body["assignment"]["id"])
    assert assignment.annotator == solo.annotators[0] and assignment.task == solo.task


def test_next_again_gives_the_same_held_assignment(solo, api):
    client = api(solo.annotators[0])
    first = client.post(next_url(solo)).json()
    again = client.post(next_url(solo)).json()

    assert again == first
    assert Assignment.objects.count() == 1


def test_next_is_204_when_nothing_is_left(solo, api):
    client = api(solo.annotators[0])
    for _ in solo.tasks:
        assignment_id = client.post(next_url(solo)).json()["assignment"]["id"]
        assert client.post(f"/api/v1/assignments/{assignment_id}/submit/", {"result": {"label": "cat"}},
                           format="json").status_code == 201

    response = client.post(next_url(solo))

    assert response.status_code == 204
    assert response.content == b""


# --- assignment actions ---------------------------------------------------------------------------------------------


def given_an_assignment(team, annotator=None):
    annotator = annotator or team.annotators[0]
    return task_services.assignment_assign(task=team.task, annotator=annotator)


def test_start_hold_resume_skip_happy_paths(solo, api):
    assignment = given_an_assignment(solo)
    client = api(solo.annotators[0])
    url = f"/api/v1/assignments/{assignment.pk}/"

    started = client.post(url + "start/")
    assert started.status_code == 200
    assert {"id", "task", "status", "assigned_at", "started_at", "lease_expires_at"} <= set(started.json())
    assert started.json()["status"] == "in_progress" and started.json()["started_at"]
    held = client.post(url + "hold/", {"reason": "Need to check the guideline"}, format="json")
    assert held.status_code == 200 and held.json()["status"] == "on_hold"
    assert held.json()["lease_expires_at"] is None
    resumed = client.post(url + "resume/")
    assert resumed.status_code == 200 and resumed.json()["status"] == "in_progress"
    skipped = client.post(url + "skip/", {"reason": "Blurry"}, format="json")
    assert skipped.status_code == 200 and skipped.json()["status"] == "skipped"
    assert [e.type for e in TaskEvent.objects.filter(assignment=assignment).order_by("id")] == [
        "assigned", "started", "held", "resumed", "skipped"]


def test_start_twice_is_harmless(solo, api):
    assignment = given_an_assignment(solo)
    client = api(solo.annotators[0])
    client.post(f"/api/v1/assignments/{assignment.pk}/start/")
    events = TaskEvent.objects.count()

    again = client.post(f"/api/v1/assignments/{assignment.pk}/start/")

    assert again.status_code == 200 and again.json()["status"] == "in_progress"
    assert TaskEvent.objects.count() == events


@pytest.mark.parametrize("action, body", [("resume/", None), ("hold/", {"reason": "x"}), ("skip/", None),
                                          ("start/", None), ("submit/", {"result": {"label": "cat"}})])
def test_an_illegal_assignment_action_is_a_409_naming_the_state_and_changes_nothing(solo, api, action, body):
    assignment = given_an_assignment(solo)
    task_services.assignment_submit(assignment=assignment, actor=solo.annotators[0], result={"label": "dog"})
    before = snapshot()

    response = api(solo.annotators[0]).post(f"/api/v1/assignments/{assignment.pk}/{action}", body,
                                            format="json")

    body = assert_refused(response, 409, before=before, names="submitted")
    assert body["current"] == "submitted"


def test_resume_of_work_that_is_not_on_hold_is_a_409(solo, api):
    assignment = given_an_assignment(solo)
    before = snapshot()
    response = api(solo.annotators[0]).post(f"/api/v1/assignments/{assignment.pk}/resume/")
    assert_refused(response, 409, before=before, names="assigned")


def test_a_hold_needs_a_reason(solo, api):
    assignment = given_an_assignment(solo)
    before = snapshot()
    for body in ({}, {"reason": ""}, {"reason": "   "}):
        response = api(solo.annotators[0]).post(f"/api/v1/assignments/{assignment.pk}/hold/", body,
                                                format="json")
        assert_refused(response, 400, before=before)
        assert "reason" in response.json()["errors"]


def test_another_annotator_s_assignment_does_not_exist_for_them(solo, api):
    assignment = given_an_assignment(solo)
    before = snapshot()
    for action in ("start/", "hold/", "resume/", "skip/", "submit/"):
        response = api(solo.annotators[1]).post(f"/api/v1/assignments/{assignment.pk}/{action}",
                                                {"reason": "x", "result": {"label": "cat"}}, format="json")
        assert_refused(response, 404, before=before)


def test_an_expired_lease_is_a_409_on_start(solo, api):
    assignment = given_an_assignment(solo)
    Assignment.objects.filter(pk=assignment.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=1))
    task_services.assignments_expire_due()
    before = snapshot()

    response = api(solo.annotators[0]).post(f"/api/v1/assignments/{assignment.pk}/start/")

    assert_refused(response, 409, before=before, names="expired")


# --- submit ----------------------------------------------------------------------------------------------------------


def test_submit_from_assigned_is_an_implicit_start_and_returns_the_annotation(solo, api):
    assignment = given_an_assignment(solo)

    response = api(solo.annotators[0]).post(f"/api/v1/assignments/{assignment.pk}/submit/",
                                            {"result": {"label": "cat"}, "notes": "easy", "lead_time_seconds": 12.5},
                                            format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert {"id", "task", "assignment", "annotator", "version", "result", "notes", "lead_time_seconds",
            "guideline_version", "status", "submitted_at", "reviews"} <= set(body)
    assert (body["task"], body["assignment"], body["annotator"]) == (solo.task.pk, assignment.pk, "annotator0")
    assert (body["version"], body["result"], body["notes"]) == (1, {"label": "cat"}, "easy")
    assert (body["lead_time_seconds"], body["guideline_version"], body["status"]) == (12.5, 1, "submitted")
    assert body["reviews"] == []
    assignment.refresh_from_db()
    assert assignment.status == "submitted" and assignment.started_at is not None


@pytest.mark.parametrize("result, rule", [
    ({"label": "zebra"}, "not in the schema"),
    ({}, "Required field 'label'"),
    ({"labels": ["cat"]}, "Required field 'label'"),
])
def test_a_result_breaking_a_sanity_rule_is_a_400_naming_the_rule(solo, api, result, rule):
    assignment = given_an_assignment(solo)
    before = snapshot()

    response = api(solo.annotators[0]).post(f"/api/v1/assignments/{assignment.pk}/submit/", {"result": result},
                                            format="json")

    body = assert_refused(response, 400, before=before, names=rule)
    assert rule in " ".join(body["errors"]["result"])


@pytest.mark.parametrize("body, field", [({}, "result"), ({"result": {"label": "cat"}, "lead_time_seconds": -3},
                                                          "lead_time_seconds"),
                                         ({"result": {"label": "cat"}, "lead_time_seconds": "soon"},
                                          "lead_time_seconds")])
def test_invalid_submit_fields_are_a_400_naming_them(solo, api, body, field):
    assignment = given_an_assignment(solo)
    before = snapshot()
    response = api(solo.annotators[0]).post(f"/api/v1/assignments/{assignment.pk}/submit/", body, format="json")
    body = assert_refused(response, 400, before=before)
    assert field in body["errors"]


def test_rework_is_resubmitted_as_a_new_version(solo, api):
    assignment = given_an_assignment(solo)
    first = task_services.assignment_submit(assignment=assignment, actor=solo.annotators[0],
                                            result={"label": "dog"})
    task_services.review_reject(annotation=first, reviewer=solo.reviewer, error_types=["wrong_label"],
                                comment="Look again.")

    response = api(solo.annotators[0]).post(f"/api/v1/assignments/{assignment.pk}/submit/",
                                            {"result": {"label": "cat"}}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["version"] == 2
    first.refresh_from_db()
    assert first.status == "superseded" and not first.is_current


# --- the review queue ------------------------------------------------------------------------------------------------


def submitted(team, annotator=None, task=None, result=None):
    annotator = annotator or team.annotators[0]
    assignment = task_services.assignment_assign(task=task or team.task, annotator=annotator)
    return task_services.assignment_submit(assignment=assignment, actor=annotator,
                                           result=result or {"label": "cat"})


def review_next_url(team):
    return f"/api/v1/projects/{team.project.pk}/review/next/"


def test_review_next_gives_the_annotation_and_its_task_and_starts_the_review(solo, api):
    annotation = submitted(solo)

    response = api(solo.reviewer).post(review_next_url(solo))

    assert response.status_code == 200, response.content
    body = response.json()
    assert {"annotation", "task"} <= set(body)
    assert body["annotation"]["id"] == annotation.pk and body["task"]["id"] == solo.task.pk
    assert "is_gold" not in body["task"] and "gold_answer" not in body["task"]
    assert Review.objects.get(annotation=annotation).reviewer == solo.reviewer


def test_review_next_is_204_when_the_queue_is_empty(solo, api):
    response = api(solo.reviewer).post(review_next_url(solo))
    assert response.status_code == 204 and response.content == b""


def test_review_next_never_gives_the_reviewer_their_own_work(solo, api):
    factories.project_services.membership_add(project=solo.project, user=solo.reviewer, role="annotator")
    submitted(solo, annotator=solo.reviewer)

    assert api(solo.reviewer).post(review_next_url(solo)).status_code == 204
    assert api(solo.reviewer2).post(review_next_url(solo)).status_code == 200


def test_two_reviewers_do_not_get_the_same_annotation(solo, api):
    first = submitted(solo)
    second = submitted(solo, task=solo.tasks[1])

    a = api(solo.reviewer).post(review_next_url(solo)).json()["annotation"]["id"]
    b = api(solo.reviewer2).post(review_next_url(solo)).json()["annotation"]["id"]

    assert {a, b} == {first.pk, second.pk}


# --- review decisions ----------------------------------------------------------------------------------------------


def review_url(annotation):
    return f"/api/v1/annotations/{annotation.pk}/review/"


def test_approve_accepts_the_task(solo, api):
    annotation = submitted(solo)

    response = api(solo.reviewer).post(review_url(annotation), {"decision": "approve", "comment": "Good"},
                                       format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert {"id", "annotation", "reviewer", "decision", "error_types", "comment", "corrected_annotation",
            "started_at", "decided_at"} <= set(body)
    assert (body["decision"], body["reviewer"], body["comment"]) == ("approve", "reviewer", "Good")
    solo.task.refresh_from_db()
    assert solo.task.status == "accepted" and solo.task.final_result == {"label": "cat"}


def test_reject_sends_the_work_back_as_rework(solo, api):
    annotation = submitted(solo)

    response = api(solo.reviewer).post(review_url(annotation), {"decision": "reject", "error_types":
                                                                ["wrong_label", "boundary"], "comment": "A dog"},
                                       format="json")

    assert response.status_code == 201, response.content
    assert sorted(response.json()["error_types"]) == ["boundary", "wrong_label"]
    assert Assignment.objects.get(pk=annotation.assignment_id).status == "rejected"
    solo.task.refresh_from_db()
    assert solo.task.status == "rework"


def test_fix_writes_the_corrected_version_and_accepts(solo, api):
    annotation = submitted(solo, result={"label": "dog"})

    response = api(solo.reviewer).post(review_url(annotation), {"decision": "fix", "corrected_result":
                                                                {"label": "cat"}, "error_types": ["wrong_label"]},
                                       format="json")

    assert response.status_code == 201, response.content
    corrected = Annotation.objects.get(pk=response.json()["corrected_annotation"])
    assert (corrected.result, corrected.author, corrected.version) == ({"label": "cat"}, solo.reviewer, 2)
    solo.task.refresh_from_db()
    assert solo.task.status == "accepted" and solo.task.final_result == {"label": "cat"}


def test_escalate_leaves_it_for_a_senior(solo, api):
    annotation = submitted(solo)
    AnnotatorProfile.objects.create(user=solo.reviewer2, seniority="senior")

    response = api(solo.reviewer).post(review_url(annotation), {"decision": "escalate", "comment": "Unsure"},
                                       format="json")

    assert response.status_code == 201
    annotation.refresh_from_db()
    assert annotation.status == "escalated"
    assert api(solo.reviewer).post(review_next_url(solo)).status_code == 204
    assert api(solo.reviewer2).post(review_next_url(solo)).json()["annotation"]["id"] == annotation.pk


@pytest.mark.parametrize("body, field", [
    ({"decision": "maybe"}, "decision"),
    ({}, "decision"),
    ({"decision": "fix"}, "corrected_result"),
    ({"decision": "fix", "corrected_result": {"label": "zebra"}}, "result"),
    ({"decision": "reject"}, "error_types"),
    ({"decision": "reject", "error_types": ["no_such_error"]}, "error_types"),
    ({"decision": "escalate"}, "comment"),
])
def test_an_invalid_decision_is_a_400_naming_the_field_and_changes_nothing(solo, api, body, field):
    annotation = submitted(solo)
    before = snapshot()

    response = api(solo.reviewer).post(review_url(annotation), body, format="json")

    body = assert_refused(response, 400, before=before)
    assert field in body["errors"], body


def test_reviewing_a_decided_annotation_is_a_409_naming_its_state(solo, api):
    annotation = submitted(solo)
    task_services.review_reject(annotation=annotation, reviewer=solo.reviewer, error_types=["wrong_label"],
                                comment="Look again.")
    before = snapshot()

    response = api(solo.reviewer2).post(review_url(annotation), {"decision": "approve"}, format="json")

    body = assert_refused(response, 409, before=before, names="rejected")
    assert body["current"] == "rejected"


def test_a_reviewer_cannot_review_their_own_work(solo, api):
    factories.project_services.membership_add(project=solo.project, user=solo.reviewer, role="annotator")
    annotation = submitted(solo, annotator=solo.reviewer)
    before = snapshot()

    response = api(solo.reviewer).post(review_url(annotation), {"decision": "approve"}, format="json")

    assert_refused(response, 403, before=before, names="own work")


def test_an_annotator_cannot_review(solo, api):
    annotation = submitted(solo)
    before = snapshot()
    assert_refused(api(solo.annotators[0]).post(review_url(annotation), {"decision": "approve"}, format="json"),
                   403, before=before)
    assert_refused(api(solo.annotators[1]).post(review_url(annotation), {"decision": "approve"}, format="json"),
                   404, before=before)
