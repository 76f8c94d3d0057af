"""API.md "Export": streamed records with the final result and its provenance, in each format."""

import csv
import io
import json

import pytest

from apps.projects.models import Batch
from apps.tasks import services as task_services
from tests.api.conftest import assert_error, body_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def accepted(world):
    """`world` with its shared task accepted: both annotators approved."""
    task_services.review_approve(annotation=world.annotation, reviewer=world.reviewer)
    mine = task_services.assignment_submit(assignment=world.assignment, actor=world.annotator,
                                           result={"label": "dog"})
    task_services.review_approve(annotation=mine, reviewer=world.reviewer)
    world.task.refresh_from_db()
    assert world.task.status == "accepted"
    return world


def export(world, api, **query):
    response = api(world.manager).get(f"/api/v1/projects/{world.project.pk}/export/", query)
    return response, body_of(response)


def test_json_export_streams_accepted_tasks_with_provenance(accepted, api):
    response, text = export(accepted, api)

    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("application/json")
    assert 'filename="this-project.json"' in response["Content-Disposition"]
    (record,) = json.loads(text)
    assert record["id"] == accepted.task.pk and record["status"] == "accepted"
    assert record["result"]["label"] == "dog"
    provenance = record["provenance"]
    assert provenance["annotators"] == ["annotator_a", "annotator_b"]
    assert {r["reviewer"] for r in provenance["reviews"]} == {"reviewer"}
    assert provenance["guideline_version"] == 1
    assert provenance["agreement"] == 1.0


def test_jsonl_and_csv_exports(accepted, api):
    response, text = export(accepted, api, format="jsonl", status="all")
    assert response["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in text.splitlines() if line]
    assert len(lines) == 6

    response, text = export(accepted, api, format="csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1
    assert rows[0]["id"] == str(accepted.task.pk) and rows[0]["annotators"] == "annotator_a;annotator_b"
    assert json.loads(rows[0]["result"])["label"] == "dog"


def test_export_filters_by_status_and_batch(accepted, api):
    other = Batch.objects.create(project=accepted.project, name="Empty")

    assert len(json.loads(export(accepted, api, status="open")[1])) == 3
    assert len(json.loads(export(accepted, api, status="open,accepted")[1])) == 4
    assert json.loads(export(accepted, api, status="all", batch=other.pk)[1]) == []


@pytest.mark.parametrize("query, field", [
    ({"format": "xml"}, "format"), ({"format": "coco"}, "format"), ({"format": "conll"}, "format"),
    ({"status": "done"}, "status"), ({"batch": "abc"}, "batch"), ({"batch": "999999"}, "batch"),
    ({"deliver": "1"}, "deliver"),
])
def test_invalid_export_parameters_are_a_400_naming_them(world, api, query, field):
    response, _text = export(world, api, **query)
    assert_error(response, 400, error_keys={field})


def test_a_batch_of_another_project_is_not_exported(world, api):
    response, _text = export(world, api, batch=world.other_batch.pk)
    assert_error(response, 400, error_keys={"batch"})


def test_delivering_a_batch_that_is_not_completed_is_a_409_naming_its_state(world, api):
    response, _text = export(world, api, batch=world.batch.pk, deliver="1")

    body = assert_error(response, 409)
    assert "active" in body["detail"]
    world.batch.refresh_from_db()
    assert world.batch.status == "active"


def test_only_managers_export(world, api):
    for user in (world.annotator, world.reviewer):
        assert_error(api(user).get(f"/api/v1/projects/{world.project.pk}/export/"), 403)
    assert_error(api(world.outsider).get(f"/api/v1/projects/{world.project.pk}/export/"), 404)
