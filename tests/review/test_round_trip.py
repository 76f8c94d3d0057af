"""Reject → rework → resubmit → approve, as the annotator's and the reviewer's portals drive it through the API:
every lifecycle event in order, the reviewer's feedback delivered with the rework, and the resubmission back in
the queue marked as one, ahead of first submissions."""

import pytest

from apps.quality.models import Review
from apps.tasks.models import Annotation, Assignment, TaskEvent

from .world import Desk, client, fresh

pytestmark = pytest.mark.django_db


def next_task(annotator, project):
    response = client(annotator).post(f"/api/v1/projects/{project.pk}/next/", {"start": True}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def submit(annotator, assignment_id, label):
    response = client(annotator).post(f"/api/v1/assignments/{assignment_id}/submit/",
                                      {"result": {"label": label}}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def review_next(reviewer, project):
    response = client(reviewer).post(f"/api/v1/projects/{project.pk}/review/next/")
    assert response.status_code == 200, response.content
    return response.json()["annotation"]


def decide(reviewer, annotation_id, **body):
    response = client(reviewer).post(f"/api/v1/annotations/{annotation_id}/review/", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_reject_rework_resubmit_approve_round_trip():
    desk = Desk(n_tasks=2)
    ann, other = desk.annotators[:2]

    # given ann's submission (labelled cat) and, a moment later, another annotator's first submission
    work = next_task(ann, desk.project)
    task_id, assignment_id = work["task"]["id"], work["assignment"]["id"]
    first = submit(ann, assignment_id, "cat")
    submit(other, next_task(other, desk.project)["assignment"]["id"], "dog")

    # when the reviewer takes the oldest submission and rejects it with error types and a comment
    claimed = review_next(desk.junior, desk.project)
    assert (claimed["id"], claimed["version"]) == (first["id"], 1)
    rejection = decide(desk.junior, first["id"], decision="reject", error_types=["wrong_label", "boundary"],
                       comment="It is a dog, look at the ears.")
    assert rejection["decision"] == "reject"

    # then the annotator's next task is the rework, carrying the reviewer's feedback and their previous result
    rework = next_task(ann, desk.project)
    assert (rework["task"]["id"], rework["assignment"]["id"]) == (task_id, assignment_id)
    assert rework["rework"]["comment"] == "It is a dog, look at the ears."
    assert rework["rework"]["reviewer"] == "junior"
    assert sorted(e["code"] for e in rework["rework"]["error_types"]) == ["boundary", "wrong_label"]
    assert rework["rework"]["previous_result"] == {"label": "cat"}
    assert fresh(desk.task).status == "rework"

    # when they resubmit, it is version 2 and the reviewer gets it before the older first submission
    second = submit(ann, assignment_id, "dog")
    assert second["version"] == 2
    again = review_next(desk.junior, desk.project)
    assert (again["id"], again["version"], again["status"]) == (second["id"], 2, "submitted")
    assert fresh(desk.task).status == "in_review"

    # when the reviewer approves it, the task is accepted with the reworked result
    decide(desk.junior, second["id"], decision="approve")
    task = fresh(desk.task)
    assert (task.status, task.final_result) == ("accepted", {"label": "dog"})
    assert fresh(Assignment.objects.get(pk=assignment_id)).status == "approved"
    assert list(Annotation.objects.filter(assignment_id=assignment_id).order_by("version")
                .values_list("version", "status", "is_current", "result")) == [
        (1, "superseded", False, {"label": "cat"}), (2, "approved", True, {"label": "dog"})]

    # and the task's trail, as a manager reads it, has every milestone in order, each by the right person
    events = client(desk.manager).get(f"/api/v1/tasks/{task_id}/events/?page_size=100").json()["results"]
    assert [(e["type"], e["actor"]) for e in events] == [
        ("assigned", "ann0"), ("started", "ann0"), ("submitted", "ann0"),
        ("review_started", "junior"), ("rejected", "junior"),
        ("started", "ann0"), ("resubmitted", "ann0"),
        ("review_started", "junior"), ("approved", "junior"),
        ("accepted", "junior"),
    ]
    by_type = {}
    for event in events:
        by_type.setdefault(event["type"], []).append(event["payload"])
    assert [p["rework"] for p in by_type["started"]] == [False, True]
    assert by_type["rejected"][0]["error_types"] == ["boundary", "wrong_label"]
    assert by_type["resubmitted"][0]["version"] == 2
    assert by_type["accepted"] == [{"automatic": True}]
    # two reviews, one per version, each decided
    assert list(Review.objects.filter(annotation__task_id=task_id).order_by("started_at", "id")
                .values_list("annotation__version", "decision")) == [(1, "reject"), (2, "approve")]
    assert TaskEvent.objects.filter(task_id=task_id).count() == 10
