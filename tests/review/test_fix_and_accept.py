"""Fix-and-accept and task acceptance (DESIGN.md "Lifecycle"): the reviewer's correction is a new version, the
annotator's stays in the history unchanged; once every required annotation is approved or fixed the task is
accepted with its final result stored, and the export record carries that result with its provenance."""

import json

import pytest

from apps.tasks.models import Annotation

from .world import ADA, BABBAGE, LONDON, Desk, client, fresh, submit

pytestmark = pytest.mark.django_db


def export_records(desk, status="accepted"):
    response = client(desk.manager).get(f"/api/v1/projects/{desk.project.pk}/export/?format=json&status={status}")
    assert response.status_code == 200
    return json.loads(b"".join(response.streaming_content))


def fix(reviewer, annotation, corrected, **extra):
    return client(reviewer).post(f"/api/v1/annotations/{annotation.pk}/review/",
                                 {"decision": "fix", "corrected_result": corrected, **extra}, format="json")


def test_fix_and_accept_keeps_the_original_and_accepts_the_fixed_result():
    # given a text-span submission that missed "London" (overlap 1, review everything)
    desk = Desk(task_type="text_spans", n_tasks=1)
    ann = desk.annotators[0]
    original = submit(desk.task, ann, {"spans": [ADA]})

    # when the reviewer fixes it, naming what was wrong
    corrected = {"spans": [ADA, LONDON]}
    response = fix(desk.junior, original, corrected, error_types=["missed_object"], comment="London is a place")
    assert response.status_code == 201, response.json()
    review = response.json()
    assert (review["decision"], review["error_types"], review["reviewer"]) == ("fix", ["missed_object"], "junior")

    # then version 1 is unchanged but for being superseded: same result, same author, nothing rewritten
    v1 = fresh(original)
    assert (v1.version, v1.author, v1.annotator, v1.source, v1.result) == (1, ann, ann, "annotator", {"spans": [ADA]})
    assert (v1.status, v1.is_current) == ("superseded", False)
    # every history row of version 1 holds the annotator's result: it was never rewritten, only retired
    rows = list(v1.history.order_by("history_id").values_list("result", "author_id", "status"))
    assert [row[:2] for row in rows] == [({"spans": [ADA]}, ann.pk)] * len(rows)
    assert [row[2] for row in rows] == ["submitted", "superseded"]
    # and version 2 is the reviewer's, on the annotator's assignment, approved
    v2 = Annotation.objects.get(assignment=original.assignment, version=2)
    assert review["corrected_annotation"] == v2.pk
    assert (v2.author, v2.annotator, v2.source, v2.status, v2.is_current) == (
        desk.junior, ann, "review_fix", "approved", True)
    assert v2.result == corrected
    # and the task is accepted with the fixed result as its final result
    task = fresh(desk.task)
    assert (task.status, task.final_result) == ("accepted", corrected)
    assert fresh(original.assignment).status == "approved"
    # and both versions are listed, with their provenance, to the manager
    listed = client(desk.manager).get(f"/api/v1/tasks/{desk.task.pk}/annotations/").json()["results"]
    assert [(a["version"], a["author"], a["annotator"], a["source"], a["result"]) for a in listed] == [
        (1, "ann0", "ann0", "annotator", {"spans": [ADA]}), (2, "junior", "ann0", "review_fix", corrected)]

    # and the export record carries the fixed result, who wrote it, and the decision with its error type
    [record] = export_records(desk)
    assert (record["id"], record["status"], record["result"]) == (desk.task.pk, "accepted", corrected)
    assert record["accepted_at"] is not None
    [annotation] = record["provenance"]["annotations"]
    assert (annotation["author"], annotation["annotator"], annotation["version"], annotation["source"]) == (
        "junior", "ann0", 2, "review_fix")
    [decision] = record["provenance"]["reviews"]
    assert (decision["decision"], decision["error_types"], decision["reviewer"], decision["version"]) == (
        "fix", ["missed_object"], "junior", 1)


def test_a_task_is_accepted_only_when_every_required_annotation_is_approved_or_fixed():
    # given an overlap-2 text-span task with both submissions waiting
    desk = Desk(task_type="text_spans", n_tasks=1, overlap=2)
    first = submit(desk.task, desk.annotators[0], {"spans": [ADA, BABBAGE]})
    second = submit(desk.task, desk.annotators[1], {"spans": [ADA]})
    assert export_records(desk) == []
    [pending] = export_records(desk, status="in_review")
    assert pending["result"] is None

    # when one is approved, the task still waits for the other; nothing is stored as final yet
    approved = client(desk.junior).post(f"/api/v1/annotations/{first.pk}/review/", {"decision": "approve"},
                                        format="json")
    assert approved.status_code == 201
    task = fresh(desk.task)
    assert (task.status, task.final_result, task.accepted_at) == ("in_review", None, None)

    # when the other is fixed, the task is accepted with the fix as its final result
    assert fix(desk.senior, second, {"spans": [ADA, BABBAGE, LONDON]}).status_code == 201
    task = fresh(desk.task)
    assert task.status == "accepted" and task.accepted_at is not None
    assert task.final_result == {"spans": [ADA, BABBAGE, LONDON]}

    # and the export record carries the stored final result, and both annotators' current versions
    [record] = export_records(desk)
    assert record["result"] == task.final_result
    assert sorted((a["annotator"], a["author"], a["version"], a["status"])
                  for a in record["provenance"]["annotations"]) == [
        ("ann0", "ann0", 1, "approved"), ("ann1", "senior", 2, "approved")]
    assert record["provenance"]["annotators"] == ["ann0", "ann1"]
