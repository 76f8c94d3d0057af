"""Pairwise review of an overlap-2 task with both annotations waiting: the reviewer picks one (approved; the other
fixed to it), merges them (both fixed to the merged result), or rejects each (each goes back as rework). Refused
with fewer than two waiting (409) and when the reviewer wrote one of them (tests/review/test_own_work.py)."""

import pytest

from apps.quality.models import Review
from apps.tasks import services
from apps.tasks.models import Annotation

from .world import ADA, BABBAGE, LONDON, Desk, client, event_types, fresh, give, reject, snapshot, submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk():
    """A text-span task (overlap 2, review everything) with ann0's and ann1's different results waiting."""
    desk = Desk(task_type="text_spans", n_tasks=2, overlap=2)
    desk.first = submit(desk.task, desk.annotators[0], {"spans": [ADA, LONDON]})
    desk.second = submit(desk.task, desk.annotators[1], {"spans": [ADA, BABBAGE]})
    assert fresh(desk.task).status == "in_review"
    return desk


def resolve(desk, body, reviewer=None):
    return client(reviewer or desk.junior).post(f"/api/v1/tasks/{desk.task.pk}/review/pairwise/", body,
                                                format="json")


def current(annotation):
    return Annotation.objects.get(assignment=annotation.assignment, is_current=True)


@pytest.mark.parametrize("picked", ["first", "second"])
def test_pick_one_approves_it_and_fixes_the_other_to_it(desk, picked):
    chosen, other = (desk.first, desk.second) if picked == "first" else (desk.second, desk.first)

    response = resolve(desk, {"annotation": chosen.pk, "comment": "Closer to the guideline"})

    assert response.status_code == 200, response.json()
    reviews = {r["annotation"]: r for r in response.json()}
    assert reviews[chosen.pk]["decision"] == "approve" and reviews[other.pk]["decision"] == "fix"
    # the picked annotation is approved as it stands
    assert (fresh(chosen).status, chosen.is_current, current(chosen).pk) == ("approved", True, chosen.pk)
    # the other annotator's version is kept, and a reviewer's version equal to the pick is current
    assert (fresh(other).status, other.is_current, other.result) == ("superseded", False, other.result)
    fixed = current(other)
    assert (fixed.version, fixed.author, fixed.annotator, fixed.source, fixed.status) == (
        2, desk.junior, other.annotator, "review_fix", "approved")
    assert fixed.result == chosen.result
    assert reviews[other.pk]["corrected_annotation"] == fixed.pk
    # and the task is accepted with the picked result
    task = fresh(desk.task)
    assert (task.status, task.final_result) == ("accepted", chosen.result)
    assert event_types(desk.task)[-1] == "accepted"
    assert sorted(event_types(desk.task)[4:-1]) == ["approved", "fixed", "review_started", "review_started"]


def test_merge_fixes_both_to_the_merged_result(desk):
    merged = {"spans": [ADA, BABBAGE, LONDON]}

    response = resolve(desk, {"result": merged, "error_types": ["missed_object"]})

    assert response.status_code == 200, response.json()
    assert sorted((r["annotation"], r["decision"], tuple(r["error_types"])) for r in response.json()) == [
        (desk.first.pk, "fix", ("missed_object",)), (desk.second.pk, "fix", ("missed_object",))]
    for original in (desk.first, desk.second):
        assert fresh(original).status == "superseded"
        fixed = current(original)
        assert (fixed.version, fixed.author, fixed.source, fixed.result) == (2, desk.junior, "review_fix", merged)
    task = fresh(desk.task)
    assert (task.status, task.final_result) == ("accepted", merged)


def test_reject_each_sends_both_back_as_rework_with_the_feedback(desk):
    for annotation, comment in ((desk.first, "Babbage is a person"), (desk.second, "London is a place")):
        response = client(desk.junior).post(f"/api/v1/annotations/{annotation.pk}/review/", {
            "decision": "reject", "error_types": ["missed_object"], "comment": comment}, format="json")
        assert response.status_code == 201, response.json()

    for annotation, comment in ((desk.first, "Babbage is a person"), (desk.second, "London is a place")):
        assert fresh(annotation).status == "rejected"
        assignment = fresh(annotation.assignment)
        assert (assignment.status, assignment.rework_count) == ("rejected", 1)
        # each annotator's next task is their rework, with the comment meant for them
        work = client(annotation.annotator).post(f"/api/v1/projects/{desk.project.pk}/next/", {"start": True},
                                                 format="json").json()
        assert work["assignment"]["id"] == assignment.pk
        assert work["rework"]["comment"] == comment
    assert fresh(desk.task).status == "rework"
    # and nothing is left to resolve side by side
    assert resolve(desk, {"result": {"spans": [ADA]}}).status_code == 409


@pytest.mark.parametrize("situation", ["one submitted, one still labelling", "the other approved",
                                       "the other rejected"])
def test_refused_with_fewer_than_two_waiting_and_nothing_changes(situation):
    desk = Desk(task_type="text_spans", n_tasks=1, overlap=2)
    first = submit(desk.task, desk.annotators[0], {"spans": [ADA]})
    if situation == "one submitted, one still labelling":
        give(desk.task, desk.annotators[1])
    else:
        second = submit(desk.task, desk.annotators[1], {"spans": [BABBAGE]})
        if situation == "the other approved":
            services.review_approve(annotation=second, reviewer=desk.senior)
        else:
            reject(second, desk.senior)
    before = snapshot()

    response = resolve(desk, {"annotation": first.pk})

    assert response.status_code == 409, response.json()
    assert "fewer than two" in response.json()["detail"]
    assert snapshot() == before


@pytest.mark.parametrize("body, field", [
    ({"annotation": None, "result": None}, "annotation"),
    ({"annotation": 1, "result": {"spans": []}}, "annotation"),
    ({"result": {"spans": [{"start": 0, "end": 99, "label": "PER"}]}}, "result"),
    ({"result": {"spans": [ADA]}, "error_types": ["no_such_type"]}, "error_types"),
    ("another task's annotation", "annotation"),
])
def test_an_invalid_resolution_is_refused_and_changes_nothing(desk, body, field):
    if body == "another task's annotation":
        body = {"annotation": submit(desk.tasks[1], desk.annotators[2], {"spans": [ADA]}).pk}
    before = snapshot()

    response = resolve(desk, body)

    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"]
    assert snapshot() == before


def test_with_an_escalated_annotation_only_a_senior_resolves_the_pair(desk):
    client(desk.junior).post(f"/api/v1/annotations/{desk.second.pk}/review/",
                             {"decision": "escalate", "comment": "Which is right?"}, format="json")
    before = snapshot()

    assert resolve(desk, {"annotation": desk.first.pk}).status_code == 403
    assert snapshot() == before

    assert resolve(desk, {"annotation": desk.first.pk}, reviewer=desk.lead).status_code == 200
    assert fresh(desk.task).final_result == desk.first.result
    assert Review.objects.filter(reviewer=desk.lead, decided_at__isnull=False).count() == 2
