"""The import's size limit at the API (issue 3, point 3: "a size limit with a clear 413").

`POST /projects/{id}/import/` refuses a body over IMPORT_MAX_BYTES with 413 in the contract's error shape, whatever
the way the tasks are sent (a JSON, JSONL or CSV body, or a `file` upload), with or without an Idempotency-Key,
before anything is written; one byte under the limit is imported. The limit is lowered to 1 MiB here so that the
bodies stay small.
"""

import io
import json
import re

import pytest

from apps.projects.models import Batch
from apps.tasks.models import Task
from tests.api.conftest import assert_error, task_count

pytestmark = pytest.mark.django_db

LIMIT = 2**20


@pytest.fixture
def limit(settings):
    settings.IMPORT_MAX_BYTES = LIMIT
    return LIMIT


def jsonl(size):
    """JSONL of about `size` bytes (at least that many), one task a line."""
    line = json.dumps({"data": {"text": "x" * 200}}) + "\n"
    return (line * (size // len(line) + 1)).encode()


def json_array(size):
    rows = [{"data": {"text": "x" * 200}}] * (size // 215 + 1)
    return json.dumps(rows).encode()


def csv_text(size):
    row = "y" * 200 + "\n"
    return ("text\n" + row * (size // len(row) + 1)).encode()


def nothing_written(world, before):
    assert task_count(world.project) == before["tasks"]
    assert Batch.objects.filter(project=world.project).count() == before["batches"]


def counts(world):
    return {"tasks": task_count(world.project), "batches": Batch.objects.filter(project=world.project).count()}


BODIES = {
    "json": ("application/json", json_array),
    "jsonl": ("application/x-ndjson", jsonl),
    "csv": ("text/csv", csv_text),
}


@pytest.mark.parametrize("fmt", sorted(BODIES))
@pytest.mark.parametrize("idempotency_key", [None, "import-too-big-1"])
def test_a_body_over_the_limit_is_a_413_and_nothing_is_imported(world, api, limit, fmt, idempotency_key):
    content_type, make = BODIES[fmt]
    body = make(limit + 1024)
    before = counts(world)
    headers = {"HTTP_IDEMPOTENCY_KEY": idempotency_key} if idempotency_key else {}

    response = api(world.manager).generic("POST", f"/api/v1/projects/{world.project.pk}/import/", body,
                                          content_type=content_type, **headers)

    body = assert_error(response, 413, detail_contains="limit")
    nothing_written(world, before)
    assert body["errors"] == {}


@pytest.mark.parametrize("idempotency_key", [None, "import-too-big-2"])
def test_a_file_upload_over_the_limit_is_a_413_and_nothing_is_imported(world, api, limit, idempotency_key):
    upload = io.BytesIO(jsonl(limit + 1024))
    upload.name = "tasks.jsonl"
    before = counts(world)
    headers = {"HTTP_IDEMPOTENCY_KEY": idempotency_key} if idempotency_key else {}

    response = api(world.manager).post(f"/api/v1/projects/{world.project.pk}/import/", {"file": upload},
                                       format="multipart", **headers)

    assert_error(response, 413, detail_contains="limit")
    nothing_written(world, before)


def test_a_body_just_under_the_limit_is_imported(world, api, limit):
    line = json.dumps({"data": {"text": "z" * 200}}) + "\n"
    body = (line * (limit // len(line))).encode()
    assert limit - len(line) < len(body) <= limit
    before = counts(world)

    response = api(world.manager).generic("POST", f"/api/v1/projects/{world.project.pk}/import/", body,
                                          content_type="application/x-ndjson")

    assert response.status_code == 201, response.content[:500]
    assert response.json()["created"] == limit // len(line)
    assert task_count(world.project) == before["tasks"] + limit // len(line)


def test_the_refusal_comes_before_anything_is_read_for_those_who_may_not_import(world, api, limit):
    """A member who may not import is refused as such (403), whatever the size: the limit reveals nothing."""
    body = jsonl(limit + 1024)

    response = api(world.annotator).generic("POST", f"/api/v1/projects/{world.project.pk}/import/", body,
                                            content_type="application/x-ndjson")

    assert_error(response, 403)
    assert not Task.objects.filter(data__text="x" * 200).exists()


def sizes_in(detail):
    """The two sizes a 413's detail gives, as (number, unit) pairs: the upload's, then the limit's."""
    return re.findall(r"(\d+(?:[.,]\d+)?)\s*(bytes|KB|MB|GB)", detail)


@pytest.mark.parametrize("idempotency_key", [
    None,
    "import-too-big-3",
])
def test_the_413_says_how_big_the_upload_was_and_what_the_limit_is(world, api, limit, idempotency_key):
    body = jsonl(limit + limit // 2)
    headers = {"HTTP_IDEMPOTENCY_KEY": idempotency_key} if idempotency_key else {}

    response = api(world.manager).generic("POST", f"/api/v1/projects/{world.project.pk}/import/", body,
                                          content_type="application/x-ndjson", **headers)

    detail = assert_error(response, 413)["detail"]
    sizes = sizes_in(detail)
    assert len(sizes) == 2, detail
    assert sizes[0] != sizes[1], f"the upload's size and the limit read the same: {detail!r}"
    assert sizes[1] == ("1", "MB"), detail
