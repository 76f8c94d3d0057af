"""What an export selects and what it may do (API.md, Export): `status` (accepted by default), `batch`, delivery of
a batch only when asked and only through its gates, the format matching the task type, who may export, and a
query count that does not grow with the project."""

import csv
import io
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from apps.projects import services as project_services
from apps.projects.models import Batch, QualityGate
from apps.tasks.models import Task, TaskEvent
from tests import factories

from .conftest import body

pytestmark = pytest.mark.django_db


def two_batches(labelled, task_type="classification", **options):
    """Batch A: a1 accepted, a2 in progress, a3 open. Batch B: b1 accepted."""
    given = labelled(task_type, **options)
    given.batch_a = given.import_tasks([{"data": {"text": k}, "external_id": k} for k in ("a1", "a2", "a3")])
    given.batch_b = given.import_tasks([{"data": {"text": "b1"}, "external_id": "b1"}])
    given.label("a1", {"label": "cat"}, {"label": "cat"})
    given.submit(given.task("a2"), given.annotators[0], {"label": "dog"})
    given.label("b1", {"label": "dog"}, {"label": "dog"})
    return given


def exported_ids(response):
    assert response.status_code == 200, response.content
    return [json.loads(line)["external_id"] for line in body(response).splitlines()]


def test_status_defaults_to_accepted(labelled):
    given = two_batches(labelled)

    assert exported_ids(given.export(format="jsonl")) == ["a1", "b1"]


@pytest.mark.parametrize("status, expected", [
    ("accepted", ["a1", "b1"]),
    ("in_progress", ["a2"]),
    ("open", ["a3"]),
    ("in_progress,open", ["a2", "a3"]),
    ("all", ["a1", "a2", "a3", "b1"]),
])
def test_status_selects(labelled, status, expected):
    given = two_batches(labelled)

    assert exported_ids(given.export(format="jsonl", status=status)) == expected


def test_records_that_are_not_accepted_have_no_result_yet(labelled):
    given = two_batches(labelled)

    [record] = [json.loads(line) for line in body(given.export(format="jsonl", status="in_progress")).splitlines()]

    assert (record["result"], record["accepted_at"]) == (None, None)
    assert record["provenance"]["annotators"] == ["annotator0"]
    assert record["provenance"]["reviews"] == []


def test_batch_selects(labelled):
    given = two_batches(labelled)

    assert exported_ids(given.export(format="jsonl", batch=given.batch_a.pk)) == ["a1"]
    assert exported_ids(given.export(format="jsonl", batch=given.batch_b.pk, status="all")) == ["b1"]
    response = given.export(format="jsonl", batch=given.batch_b.pk)
    assert response["Content-Disposition"] == f'attachment; filename="{given.project.slug}-{given.batch_b.pk}.jsonl"'


@pytest.mark.parametrize("query, field", [
    ({"format": "xml"}, "format"),
    ({"format": "coco"}, "format"),   # a classification project has no boxes
    ({"format": "conll"}, "format"),  # nor spans
    ({"status": "finished"}, "status"),
    ({"status": ","}, "status"),
    ({"batch": "week-1"}, "batch"),
    ({"batch": "99999999"}, "batch"),
    ({"batch": str(2**70)}, "batch"),
    ({"deliver": "1"}, "deliver"),  # delivery is of one batch
])
def test_invalid_parameters_are_400_naming_the_field(labelled, query, field):
    given = two_batches(labelled)

    response = given.export(**query)

    assert response.status_code == 400
    assert response.json()["errors"][field]
    assert response.json()["detail"]


@pytest.mark.parametrize("task_type, allowed, refused", [
    ("classification", ["json", "jsonl", "csv"], ["coco", "conll"]),
    ("multilabel", ["json", "jsonl", "csv"], ["coco", "conll"]),
    ("text_spans", ["json", "jsonl", "csv", "conll"], ["coco"]),
    ("bounding_boxes", ["json", "jsonl", "csv", "coco"], ["conll"]),
])
def test_format_must_fit_the_task_type(labelled, task_type, allowed, refused):
    given = labelled(task_type)

    for fmt in allowed:
        assert given.export(format=fmt).status_code == 200, fmt
    for fmt in refused:
        response = given.export(format=fmt)
        assert response.status_code == 400, fmt
        assert "format" in response.json()["errors"]


def test_a_batch_from_another_project_is_not_found(labelled):
    given = two_batches(labelled)
    other = factories.project(actor=given.admin, slug="elsewhere")
    foreign = factories.batch(other)

    response = given.export(format="json", batch=foreign.pk)

    assert response.status_code == 400
    assert "batch" in response.json()["errors"]


def test_who_may_export(labelled):
    given = two_batches(labelled)
    url = reverse("api:export", args=[given.project.pk])
    outsider_project = factories.project(actor=given.admin, slug="outside")
    outsider = factories.member(outsider_project, "manager", "outsider")

    def as_user(user):
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client.get(url, {"format": "json"}).status_code

    assert as_user(None) == 401
    assert as_user(outsider) == 404  # never reveal that the project exists
    assert as_user(given.annotators[0]) == 403
    assert as_user(given.reviewer) == 403
    assert as_user(given.manager) == 200
    assert as_user(given.admin) == 200


# --- delivery -------------------------------------------------------------------------------------------------------


def completed(labelled):
    """Batch A is all accepted (a2 and a3 cancelled) and completed by the manager."""
    given = two_batches(labelled)
    from apps.tasks import services

    for key in ("a2", "a3"):
        services.task_cancel(task=given.task(key), actor=given.manager)
    project_services.batch_review(batch=given.batch_a, actor=given.manager)
    project_services.batch_complete(batch=given.batch_a, actor=given.manager)
    given.batch_a.refresh_from_db()
    assert given.batch_a.status == Batch.Status.COMPLETED
    return given


def delivered_events(batch):
    return TaskEvent.objects.filter(batch=batch, type=TaskEvent.Type.BATCH_DELIVERED)


def test_export_of_a_batch_does_not_deliver_it_unless_asked(labelled):
    given = completed(labelled)

    assert exported_ids(given.export(format="jsonl", batch=given.batch_a.pk)) == ["a1"]

    given.batch_a.refresh_from_db()
    assert given.batch_a.status == Batch.Status.COMPLETED
    assert not delivered_events(given.batch_a).exists()


def test_deliver_moves_a_completed_batch_to_delivered(labelled):
    given = completed(labelled)

    response = given.export(format="jsonl", batch=given.batch_a.pk, deliver="1")

    assert exported_ids(response) == ["a1"]
    given.batch_a.refresh_from_db()
    assert given.batch_a.status == Batch.Status.DELIVERED
    [event] = delivered_events(given.batch_a)
    assert event.actor == given.manager
    given.batch_b.refresh_from_db()
    assert given.batch_b.status == Batch.Status.ACTIVE  # the other batch is untouched


def test_delivery_happens_only_once_the_whole_file_went_out(labelled):
    # given a completed batch and an export asked to deliver it
    given = completed(labelled)
    response = given.export(format="jsonl", batch=given.batch_a.pk, deliver="1")

    # then before the stream is read the batch is still completed; after the last chunk it is delivered
    given.batch_a.refresh_from_db()
    assert given.batch_a.status == Batch.Status.COMPLETED
    b"".join(response.streaming_content)
    given.batch_a.refresh_from_db()
    assert given.batch_a.status == Batch.Status.DELIVERED


def test_csv_cells_people_typed_cannot_run_as_spreadsheet_formulas(labelled):
    # given an accepted task whose external id looks like a formula
    given = labelled("classification", overlap=1)
    given.import_tasks([{"data": {"text": "x"}, "external_id": "=HYPERLINK(\"http://x\")"}])
    given.label('=HYPERLINK("http://x")', {"label": "cat"})

    rows = list(csv.DictReader(io.StringIO(b"".join(given.export(format="csv").streaming_content).decode())))

    assert rows[0]["external_id"] == "'=HYPERLINK(\"http://x\")"


def test_deliver_is_refused_while_a_gate_is_breached(labelled):
    # given a completed batch whose gate was breached after completion
    given = completed(labelled)
    gate = QualityGate.objects.create(project=given.project, batch=given.batch_a, metric="agreement",
                                      comparator="gte", threshold=0.9, state=QualityGate.State.BREACHED)

    response = given.export(format="jsonl", batch=given.batch_a.pk, deliver="1")

    # then 409 names the current state and the gate, and nothing changed
    assert response.status_code == 409
    assert response.json()["current"] == "completed"
    assert response.json()["errors"]["gates"] == [gate.pk]
    given.batch_a.refresh_from_db()
    assert given.batch_a.status == Batch.Status.COMPLETED
    assert not delivered_events(given.batch_a).exists()


def test_deliver_passes_a_breached_gate_the_manager_overrode(labelled):
    given = two_batches(labelled)
    from apps.tasks import services

    for key in ("a2", "a3"):
        services.task_cancel(task=given.task(key), actor=given.manager)
    QualityGate.objects.create(project=given.project, metric="agreement", comparator="gte", threshold=0.9,
                               state=QualityGate.State.BREACHED)
    project_services.batch_review(batch=given.batch_a, actor=given.manager)
    project_services.batch_transition(batch=given.batch_a, actor=given.manager, to="completed",
                                      reason="Customer accepted the lower agreement in writing.")

    response = given.export(format="jsonl", batch=given.batch_a.pk, deliver="true")

    assert exported_ids(response) == ["a1"]
    given.batch_a.refresh_from_db()
    assert given.batch_a.status == Batch.Status.DELIVERED


@pytest.mark.parametrize("status", ["active", "delivered"])
def test_deliver_is_refused_unless_the_batch_is_completed(labelled, status):
    given = completed(labelled) if status == "delivered" else two_batches(labelled)
    if status == "delivered":
        project_services.batch_deliver(batch=given.batch_a, actor=given.manager)
    events = TaskEvent.objects.count()

    response = given.export(format="jsonl", batch=given.batch_a.pk, deliver="1")

    assert response.status_code == 409
    assert response.json()["current"] == status
    given.batch_a.refresh_from_db()
    assert given.batch_a.status == status
    assert TaskEvent.objects.count() == events


# --- cost ---------------------------------------------------------------------------------------------------------


def test_queries_do_not_grow_with_the_number_of_records(labelled, monkeypatch):
    # given pages of 3 tasks, and 3 then 9 accepted tasks
    from apps.tasks import exports

    monkeypatch.setattr(exports, "PAGE", 3)
    given = labelled("classification", overlap=1)
    given.import_tasks([{"data": {"text": str(n)}, "external_id": str(n)} for n in range(9)])

    def queries(fmt):
        with CaptureQueriesContext(connection) as captured:
            response = given.export(format=fmt)
            assert response.status_code == 200
            body(response)
        return len(captured)

    for n in range(3):
        given.label(str(n), {"label": "cat"})
    three = {fmt: queries(fmt) for fmt in ("json", "csv")}
    for n in range(3, 9):
        given.label(str(n), {"label": "cat"})
    nine = {fmt: queries(fmt) for fmt in ("json", "csv")}

    # then each more page costs the same handful of queries, not one per record
    for fmt in three:
        assert nine[fmt] - three[fmt] <= 2 * 5, (fmt, three, nine)
    assert Task.objects.filter(status="accepted").count() == 9
