"""API.md "Conventions": the same Idempotency-Key and body again returns the first result (200 instead of 201)
and changes nothing; the same key with a different body is refused (409). On next, submit, review and import."""

import json
import tracemalloc

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.core.models import IdempotencyRecord
from apps.quality.models import Review
from apps.tasks import services as task_services
from apps.tasks.models import Annotation, Assignment, Task, TaskEvent
from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db


def rows():
    return {"tasks": Task.objects.count(), "assignments": Assignment.objects.count(),
            "annotations": Annotation.objects.count(), "reviews": Review.objects.count(),
            "events": TaskEvent.objects.count()}


def test_next_replayed_returns_the_first_answer_and_assigns_nothing_more(world, api):
    client = api(world.annotator_b)
    url = f"/api/v1/projects/{world.project.pk}/next/"
    first = client.post(url, HTTP_IDEMPOTENCY_KEY="next-1")
    assert first.status_code == 200
    before = rows()

    replay = client.post(url, HTTP_IDEMPOTENCY_KEY="next-1")

    assert replay.status_code == 200 and replay.json() == first.json()
    assert replay["Idempotent-Replayed"] == "true"
    assert rows() == before


def test_a_204_is_replayed_as_a_204(world, api):
    from tests import factories
    from apps.projects.models import Membership

    idle = factories.member(world.other_project, Membership.Role.ANNOTATOR, "idle")
    Task.objects.filter(project=world.other_project).update(status="cancelled")
    url = f"/api/v1/projects/{world.other_project.pk}/next/"
    assert api(idle).post(url, HTTP_IDEMPOTENCY_KEY="k").status_code == 204
    assert api(idle).post(url, HTTP_IDEMPOTENCY_KEY="k").status_code == 204


def test_submit_replayed_returns_the_annotation_with_200_and_writes_nothing(world, api):
    client = api(world.annotator)
    url = f"/api/v1/assignments/{world.assignment.pk}/submit/"
    body = {"result": {"label": "cat"}, "notes": "sure"}
    first = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="submit-1")
    assert first.status_code == 201
    before = rows()

    replay = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="submit-1")

    assert replay.status_code == 200 and replay.json() == first.json()
    assert rows() == before


def test_submit_with_the_same_key_and_another_body_is_a_409_and_writes_nothing(world, api):
    client = api(world.annotator)
    url = f"/api/v1/assignments/{world.assignment.pk}/submit/"
    client.post(url, {"result": {"label": "cat"}}, format="json", HTTP_IDEMPOTENCY_KEY="submit-1")
    before = rows()

    conflict = client.post(url, {"result": {"label": "dog"}}, format="json", HTTP_IDEMPOTENCY_KEY="submit-1")

    assert_error(conflict, 409, detail_contains="Idempotency-Key")
    assert rows() == before
    assert Annotation.objects.get(assignment=world.assignment).result == {"label": "cat"}


def test_a_refused_request_is_not_remembered_so_a_corrected_retry_with_the_key_works(world, api):
    client = api(world.annotator)
    url = f"/api/v1/assignments/{world.assignment.pk}/submit/"
    assert client.post(url, {"result": {"label": "zebra"}}, format="json",
                       HTTP_IDEMPOTENCY_KEY="k").status_code == 400

    retry = client.post(url, {"result": {"label": "zebra"}}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert retry.status_code == 400  # evaluated again, not replayed
    fixed = client.post(url, {"result": {"label": "cat"}}, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert fixed.status_code == 201


def test_keys_are_per_user_another_user_s_key_is_not_their_answer(world, api):
    url_a = f"/api/v1/assignments/{world.assignment.pk}/submit/"
    first = api(world.annotator).post(url_a, {"result": {"label": "cat"}}, format="json",
                                      HTTP_IDEMPOTENCY_KEY="shared")
    assert first.status_code == 201

    stranger = api(world.annotator_b).post(url_a, {"result": {"label": "cat"}}, format="json",
                                           HTTP_IDEMPOTENCY_KEY="shared")

    assert_error(stranger, 404)  # B has no such assignment: evaluated, not A's replayed answer
    assert "annotator_a" not in stranger.content.decode()


def test_review_replayed_returns_the_first_review_and_decides_nothing_more(world, api):
    client = api(world.reviewer)
    url = f"/api/v1/annotations/{world.annotation.pk}/review/"
    body = {"decision": "reject", "error_types": ["wrong_label"], "comment": "It is a cat."}
    first = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="review-1")
    assert first.status_code == 201
    before = rows()

    replay = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="review-1")
    conflict = client.post(url, {"decision": "approve"}, format="json", HTTP_IDEMPOTENCY_KEY="review-1")

    assert replay.status_code == 200 and replay.json() == first.json()
    assert_error(conflict, 409)
    assert rows() == before
    world.annotation.refresh_from_db()
    assert world.annotation.status == "rejected"


def test_import_replayed_returns_the_first_counts_and_imports_nothing_more(world, api):
    client = api(world.manager)
    url = f"/api/v1/projects/{world.project.pk}/import/"
    body = [{"data": {"text": "one"}}, {"data": {"text": "two"}}]
    first = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="import-1")
    assert first.status_code == 201
    before = rows()

    replay = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="import-1")
    conflict = client.post(url, [{"data": {"text": "three"}}], format="json", HTTP_IDEMPOTENCY_KEY="import-1")

    assert replay.status_code == 200 and replay.json() == first.json()
    assert_error(conflict, 409)
    assert rows() == before


def test_a_file_import_replayed_with_the_same_file_is_a_200_replay(world, api):
    client = api(world.manager)
    url = f"/api/v1/projects/{world.project.pk}/import/"

    def upload():
        return {"file": SimpleUploadedFile("tasks.jsonl", b'{"data": {"text": "aaa"}}\n')}

    first = client.post(url, upload(), format="multipart", HTTP_IDEMPOTENCY_KEY="file-1")
    assert first.status_code == 201, first.content
    before = rows()

    replay = client.post(url, upload(), format="multipart", HTTP_IDEMPOTENCY_KEY="file-1")

    assert replay.status_code == 200 and replay.json() == first.json()
    assert rows() == before


def test_a_different_file_of_the_same_name_and_size_under_the_same_key_is_a_409_not_a_replay(world, api):
    """The fingerprint of an upload used to be its name and size: another file that happened to match them was
    answered with the first import's counts and silently not imported."""
    client = api(world.manager)
    url = f"/api/v1/projects/{world.project.pk}/import/"
    first = client.post(url, {"file": SimpleUploadedFile("tasks.jsonl", b'{"data": {"text": "aaa"}}\n')},
                        format="multipart", HTTP_IDEMPOTENCY_KEY="file-1")
    assert first.status_code == 201
    before = rows()

    other = client.post(url, {"file": SimpleUploadedFile("tasks.jsonl", b'{"data": {"text": "bbb"}}\n')},
                        format="multipart", HTTP_IDEMPOTENCY_KEY="file-1")

    assert_error(other, 409)
    assert rows() == before


def test_the_same_file_with_another_format_field_under_the_same_key_is_a_409(world, api):
    client = api(world.manager)
    url = f"/api/v1/projects/{world.project.pk}/import/"
    content = b'{"data": {"text": "aaa"}}\n'
    first = client.post(url, {"file": SimpleUploadedFile("tasks.txt", content), "format": "jsonl"},
                        format="multipart", HTTP_IDEMPOTENCY_KEY="file-2")
    assert first.status_code == 201, first.content

    other = client.post(url, {"file": SimpleUploadedFile("tasks.txt", content), "format": "csv"},
                        format="multipart", HTTP_IDEMPOTENCY_KEY="file-2")

    assert_error(other, 409)


def test_a_key_longer_than_128_characters_is_a_400(world, api):
    response = api(world.annotator).post(f"/api/v1/projects/{world.project.pk}/next/",
                                         HTTP_IDEMPOTENCY_KEY="k" * 129)
    assert_error(response, 400, detail_contains="128")
    assert not IdempotencyRecord.objects.exists()


def test_the_service_level_key_also_protects_a_submit_that_raced_past_the_record(world):
    """The annotation itself stores the key: a retry that reaches the service returns the first annotation."""
    first = task_services.assignment_submit(assignment=world.assignment, actor=world.annotator,
                                            result={"label": "cat"}, idempotency_key="svc-1")
    again = task_services.assignment_submit(assignment=world.assignment, actor=world.annotator,
                                            result={"label": "cat"}, idempotency_key="svc-1")
    assert again.pk == first.pk
    assert Annotation.objects.filter(assignment=world.assignment).count() == 1


# --- bodies of any size: fingerprinted in constant memory, never Django's HTML 400 --------------------------------
# The key used to make the wrapper read `request.body`, which Django refuses over DATA_UPLOAD_MAX_MEMORY_SIZE with
# an HTML "Bad Request (400)" page: an import with a key could not be larger than 10 MB, and one larger than the
# import limit got a 400 instead of the 413. The limits are lowered here so the bodies stay small.

SMALL_LIMITS = {"DATA_UPLOAD_MAX_MEMORY_SIZE": 1024, "FILE_UPLOAD_MAX_MEMORY_SIZE": 1024}


def import_rows(n, prefix="big"):
    return [{"data": {"text": f"{prefix} task number {i}, long enough to fill a line"}, "external_id": f"{prefix}-{i}"}
            for i in range(n)]


def encoded(rows_, fmt):
    """(body bytes, content type) of the rows in an import format."""
    if fmt == "json":
        return json.dumps(rows_).encode(), "application/json"
    if fmt == "jsonl":
        return "".join(json.dumps(row) + "\n" for row in rows_).encode(), "application/x-ndjson"
    lines = ["external_id,text"] + [f'{row["external_id"]},"{row["data"]["text"]}"' for row in rows_]
    return ("\r\n".join(lines) + "\r\n").encode(), "text/csv"


def import_url(world):
    return f"/api/v1/projects/{world.project.pk}/import/"


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_an_import_body_over_django_s_memory_limit_imports_with_a_key_and_replays(world, api, settings, fmt):
    for name, value in SMALL_LIMITS.items():
        setattr(settings, name, value)
    body, content_type = encoded(import_rows(40), fmt)
    assert len(body) > 2 * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    client = api(world.manager)

    first = client.post(import_url(world), body, content_type=content_type, HTTP_IDEMPOTENCY_KEY=f"big-{fmt}")

    assert first.status_code == 201, first.content[:300]
    assert first.json()["created"] == 40
    assert Task.objects.filter(project=world.project, external_id__startswith="big-").count() == 40
    before = rows()

    replay = client.post(import_url(world), body, content_type=content_type, HTTP_IDEMPOTENCY_KEY=f"big-{fmt}")

    assert replay.status_code == 200 and replay.json() == first.json()
    assert replay["Idempotent-Replayed"] == "true"
    assert rows() == before


def test_a_large_import_replayed_with_another_body_is_a_409_and_imports_nothing(world, api, settings):
    for name, value in SMALL_LIMITS.items():
        setattr(settings, name, value)
    client = api(world.manager)
    body, content_type = encoded(import_rows(40), "jsonl")
    assert client.post(import_url(world), body, content_type=content_type,
                       HTTP_IDEMPOTENCY_KEY="big").status_code == 201
    before = rows()
    other, _type = encoded(import_rows(40, prefix="other"), "jsonl")

    conflict = client.post(import_url(world), other, content_type=content_type, HTTP_IDEMPOTENCY_KEY="big")

    assert_error(conflict, 409, detail_contains="Idempotency-Key")
    assert rows() == before


@pytest.mark.parametrize("memory_limit", [1024, 1024 * 1024])  # below and above the import limit
def test_an_import_body_over_the_import_limit_with_a_key_is_the_contract_s_413(world, api, settings, memory_limit):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = memory_limit
    settings.IMPORT_MAX_BYTES = 2048
    body, content_type = encoded(import_rows(40), "jsonl")
    assert len(body) > 2048
    before = rows()

    response = api(world.manager).post(import_url(world), body, content_type=content_type,
                                       HTTP_IDEMPOTENCY_KEY="too-big")

    payload = assert_error(response, 413)
    assert payload["errors"] == {}
    assert "limit is 2 KB" in payload["detail"] and " 0 MB" not in payload["detail"]
    assert rows() == before
    assert not IdempotencyRecord.objects.exists()


def test_a_multipart_upload_over_the_memory_limits_imports_with_a_key_and_replays(world, api, settings):
    for name, value in SMALL_LIMITS.items():
        setattr(settings, name, value)
    content, _type = encoded(import_rows(40), "jsonl")
    client = api(world.manager)

    def upload():
        return {"file": SimpleUploadedFile("tasks.jsonl", content), "format": "jsonl"}

    first = client.post(import_url(world), upload(), format="multipart", HTTP_IDEMPOTENCY_KEY="file-big")
    assert first.status_code == 201, first.content[:300]
    assert first.json()["created"] == 40
    before = rows()

    replay = client.post(import_url(world), upload(), format="multipart", HTTP_IDEMPOTENCY_KEY="file-big")

    assert replay.status_code == 200 and replay.json() == first.json()
    assert rows() == before


def test_a_multipart_upload_over_the_import_limit_with_a_key_is_a_413(world, api, settings):
    settings.IMPORT_MAX_BYTES = 2048
    content, _type = encoded(import_rows(40), "jsonl")
    before = rows()

    response = api(world.manager).post(import_url(world), {"file": SimpleUploadedFile("tasks.jsonl", content)},
                                       format="multipart", HTTP_IDEMPOTENCY_KEY="file-too-big")

    assert_error(response, 413, detail_contains="limit is 2 KB")
    assert rows() == before
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize("key", ["submit-big", None])
def test_a_submit_body_over_the_memory_limit_is_a_json_413_with_or_without_a_key(world, api, settings, key):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = {"result": {"label": "cat"}, "notes": "n" * 4000}
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    before = rows()

    response = api(world.annotator).post(f"/api/v1/assignments/{world.assignment.pk}/submit/", body,
                                         format="json", **headers)

    assert_error(response, 413, detail_contains="limit is 1 KB")
    assert rows() == before
    assert not IdempotencyRecord.objects.exists()


def test_the_fingerprint_reads_the_body_in_constant_memory_and_gives_it_back_unread(settings):
    """A 4 MB body is hashed through a spool (64 KB in memory, then a file): the peak of Python allocations stays
    far under the body's size, and the view then reads every byte of it, as it would have from the client."""
    from rest_framework.parsers import BaseParser
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from apps.core.api import _fingerprint

    class PassThrough(BaseParser):
        media_type = "*/*"

    settings.IMPORT_MAX_BYTES = 64 * 2**20
    line = b'{"data": {"text": "%s"}}\n' % (b"x" * 1000)
    payload = line * (4 * 2**20 // len(line))
    request = Request(APIRequestFactory().post("/x/", payload, content_type="application/x-ndjson"),
                      parsers=[PassThrough()])
    tracemalloc.start()
    try:
        fingerprint, spool = _fingerprint(request)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    try:
        assert peak < 1 * 2**20, peak
        assert request.stream.readline() == line
        assert len(line) + len(request.stream.read()) == len(payload)
        again = Request(APIRequestFactory().post("/x/", payload, content_type="application/x-ndjson"),
                        parsers=[PassThrough()])
        assert _fingerprint(again)[0] == fingerprint
    finally:
        spool.close()


@pytest.mark.parametrize(("size", "text"), [
    (0, "0 bytes"), (900, "900 bytes"), (1024, "1 KB"), (1536, "1.5 KB"), (1100, "1 KB"),
    (10 * 2**20, "10 MB"), (512 * 2**20, "512 MB"), (3 * 2**30, "3 GB")])
def test_sizes_read_in_sensible_units(size, text):
    from apps.core.api import size_text

    assert size_text(size) == text


def test_a_refused_size_is_rounded_up_so_it_never_reads_as_its_limit():
    from apps.core.api import body_too_large_message

    assert body_too_large_message(2**20 + 1, 2**20) == "The upload is 1.1 MB; the limit is 1 MB."
