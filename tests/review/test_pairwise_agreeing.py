"""Pairwise pick and merge on an overlap-3 task where two annotators agree: every annotation equal to the final result
(in any order of its spans) is approved, without the error types; only the ones that differ are fixed with them."""

import pytest

from .world import ADA, BABBAGE, LONDON, Desk, client, fresh, submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk():
    desk = Desk(task_type="text_spans", n_tasks=1, overlap=3)
    desk.a = submit(desk.task, desk.annotators[0], {"spans": [ADA, BABBAGE]})
    desk.b = submit(desk.task, desk.annotators[1], {"spans": [BABBAGE, ADA]})  # the same, listed the other way
    desk.c = submit(desk.task, desk.annotators[2], {"spans": [ADA]})
    return desk


def resolve(desk, body):
    response = client(desk.junior).post(f"/api/v1/tasks/{desk.task.pk}/review/pairwise/", body, format="json")
    assert response.status_code == 200, response.json()
    return {r["annotation"]: (r["decision"], r["error_types"]) for r in response.json()}


def test_a_pick_approves_every_annotation_equal_to_it(desk):
    reviews = resolve(desk, {"annotation": desk.a.pk, "error_types": ["missed_object"]})

    assert reviews == {desk.a.pk: ("approve", []), desk.b.pk: ("approve", []),
                       desk.c.pk: ("fix", ["missed_object"])}
    assert (fresh(desk.b).status, fresh(desk.c).status) == ("approved", "superseded")
    assert fresh(desk.task).status == "accepted"


def test_a_merge_equal_to_two_annotations_approves_both(desk):
    merged = {"spans": [ADA, BABBAGE]}

    reviews = resolve(desk, {"result": merged, "error_types": ["missed_object"]})

    assert reviews == {desk.a.pk: ("approve", []), desk.b.pk: ("approve", []),
                       desk.c.pk: ("fix", ["missed_object"])}
    task = fresh(desk.task)
    assert task.status == "accepted"
    assert sorted(s["start"] for s in task.final_result["spans"]) == [0, 17]
