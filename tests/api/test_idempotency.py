"""API.md "Conventions": the same Idempotency-Key and body again returns the first result (200 instead of 201)
and changes nothing; the same key with a different body is refused (409). On next, submit, review and import."""

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
