"""API.md "Tasks": import over HTTP, the task list and its filters, a task, its events and annotations,
and clarifications."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.projects.models import Batch
from apps.tasks import services as task_services
from apps.tasks.models import Assignment, Clarification, Task, TaskEvent
from tests import factories
from tests.api.conftest import GOLD_MARKER, PEER_MARKER, assert_error

pytestmark = pytest.mark.django_db


def import_url(world):
    return f"/api/v1/projects/{world.project.pk}/import/"


# --- import ------------------------------------------------------------------------------------------------------


def test_importing_a_json_array_creates_tasks_in_a_new_draft_batch(world, api):
    rows = [{"data": {"text": "one"}, "external_id": "e1", "priority": 2},
            {"data": {"text": "two"}, "is_gold": True, "gold_answer": {"label": "cat"}},
            {"data": {"text": "three"}, "prediction": {"result": {"label": "dog"}, "score": 0.42}}]

    response = api(world.manager).post(import_url(world), rows, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"created", "skipped", "batch"}
    assert (body["created"], body["skipped"]) == (3, 0)
    batch = Batch.objects.get(pk=body["batch"])
    assert batch.status == "draft" and batch.name.startswith("Import ")
    tasks = list(Task.objects.filter(batch=batch).order_by("id"))
    assert [t.status for t in tasks] == ["new"] * 3
    assert (tasks[0].external_id, tasks[0].priority) == ("e1", 2)
    assert tasks[1].is_gold and tasks[1].gold_answer == {"label": "cat"}
    assert tasks[2].prediction == {"label": "dog"} and tasks[2].prediction_score == 0.42

    activated = api(world.manager).post(f"/api/v1/batches/{batch.pk}/transition/", {"to": "active"},
                                        format="json")
    assert activated.status_code == 200
    assert set(Task.objects.filter(batch=batch).values_list("status", flat=True)) == {"open"}


def test_rows_name_their_batch_by_name_or_id(world, api):
    rows = [{"data": {"text": "a"}, "batch": "Batch one"}, {"data": {"text": "b"}, "batch": world.draft_batch.pk},
            {"data": {"text": "c"}, "batch": "Brand new"}]

    response = api(world.manager).post(import_url(world), rows, format="json")

    assert response.status_code == 201, response.content
    assert Task.objects.get(data={"text": "a"}).batch == world.batch
    assert Task.objects.get(data={"text": "a"}).status == "open"  # the batch is active
    assert Task.objects.get(data={"text": "b"}).status == "new"
    assert Task.objects.get(data={"text": "c"}).batch.status == "draft"


def test_rows_whose_external_id_exists_are_skipped_and_counted(world, api):
    Task.objects.filter(pk=world.free[0].pk).update(external_id="known")

    response = api(world.manager).post(import_url(world), [{"data": {"text": "x"}, "external_id": "known"},
                                                           {"data": {"text": "y"}, "external_id": "fresh"}],
                                       format="json")

    assert response.status_code == 201
    assert (response.json()["created"], response.json()["skipped"]) == (1, 1)
    assert Task.objects.filter(project=world.project, external_id="known").count() == 1


def test_one_invalid_row_is_a_400_with_1_based_row_numbers_and_creates_nothing(world, api):
    tasks, batches = Task.objects.count(), Batch.objects.count()
    rows = [{"data": {"text": "fine"}}, {"data": {"text": "bad"}, "gold_answer": {"label": "zebra"}},
            {"data": {"text": "also fine"}}, {"data": "not an object"}]

    response = api(world.manager).post(import_url(world), rows, format="json")

    body = assert_error(response, 400, error_keys={"2", "4"})
    assert "1" not in body["errors"] and "3" not in body["errors"]
    assert "zebra" in " ".join(body["errors"]["2"])
    assert (Task.objects.count(), Batch.objects.count()) == (tasks, batches)


@pytest.mark.parametrize("body, content_type", [("", "application/json"), ("{}", "application/json"),
                                                ("[]", "application/json"), ("not json", "application/json")])
def test_an_empty_or_malformed_import_body_is_a_400(world, api, body, content_type):
    count = Task.objects.count()
    response = api(world.manager).generic("POST", import_url(world), body, content_type=content_type)
    assert_error(response, 400)
    assert Task.objects.count() == count


@pytest.mark.parametrize("name, content, content_type", [
    ("tasks.json", b'[{"data": {"text": "j1"}}, {"data": {"text": "j2"}}]', "application/json"),
    ("tasks.jsonl", b'{"data": {"text": "j1"}}\n\n{"data": {"text": "j2"}}\n', "application/x-ndjson"),
    ("tasks.csv", b"text,external_id,priority\nj1,c1,1\nj2,c2,0\n", "text/csv"),
])
def test_a_file_upload_imports_json_jsonl_and_csv(world, api, name, content, content_type):
    upload = SimpleUploadedFile(name, content, content_type=content_type)

    response = api(world.manager).post(import_url(world), {"file": upload}, format="multipart")

    assert response.status_code == 201, response.content
    assert response.json()["created"] == 2
    assert sorted(Task.objects.filter(batch_id=response.json()["batch"]).values_list("data__text", flat=True)) \
        == ["j1", "j2"]


@pytest.mark.parametrize("content_type, body", [
    ("application/x-ndjson", '{"data": {"text": "s1"}}\n{"data": {"text": "s2"}}\n'),
    ("text/csv", "text\ns1\ns2\n"),
])
def test_a_raw_jsonl_or_csv_body_imports(world, api, content_type, body):
    response = api(world.manager).generic("POST", import_url(world), body, content_type=content_type)
    assert response.status_code == 201, response.content
    assert response.json()["created"] == 2


def test_a_multipart_import_without_a_file_is_a_400_naming_it(world, api):
    response = api(world.manager).post(import_url(world), {"format": "json"}, format="multipart")
    assert_error(response, 400, error_keys={"file"})


def test_reviewers_and_annotators_cannot_import(world, api):
    count = Task.objects.count()
    for user in (world.reviewer, world.annotator):
        assert_error(api(user).post(import_url(world), [{"data": {"text": "x"}}], format="json"), 403)
    assert_error(api(world.outsider).post(import_url(world), [{"data": {"text": "x"}}], format="json"), 404)
    assert Task.objects.count() == count


# --- the task list and its filters -------------------------------------------------------------------------------


def test_managers_list_tasks_with_gold_fields(world, api):
    body = api(world.manager).get(f"/api/v1/projects/{world.project.pk}/tasks/", {"page_size": 100}).json()

    by_id = {t["id"]: t for t in body["results"]}
    assert body["count"] == 6 and set(by_id) == {t.pk for t in Task.objects.filter(project=world.project)}
    assert by_id[world.gold.pk]["is_gold"] is True
    assert by_id[world.gold.pk]["gold_answer"]["gold_note"] == GOLD_MARKER
    assert {"id", "project", "batch", "external_id", "data", "status", "priority", "prediction",
            "prediction_score", "created_at"} <= set(by_id[world.task.pk])


def test_reviewers_list_tasks_without_gold_tasks_or_any_gold_field(world, api):
    body = api(world.reviewer).get(f"/api/v1/projects/{world.project.pk}/tasks/", {"page_size": 100}).json()

    # Reviewers never review gold, so gold tasks are not theirs to see: the six tasks less the gold one.
    assert body["count"] == 5
    assert world.gold.pk not in {task["id"] for task in body["results"]}
    for task in body["results"]:
        assert "is_gold" not in task and "gold_answer" not in task
    assert GOLD_MARKER not in json.dumps(body)


def test_the_task_list_filters_by_status_batch_and_gold(world, api):
    other = factories.batch(world.project, name="Second")
    extra = factories.tasks(other, 2)
    url = f"/api/v1/projects/{world.project.pk}/tasks/"
    client = api(world.manager)

    def ids(**query):
        return {t["id"] for t in client.get(url, {**query, "page_size": 100}).json()["results"]}

    assert ids(batch=other.pk) == {t.pk for t in extra}
    assert ids(status="open") == {t.pk for t in Task.objects.filter(project=world.project, status="open")}
    assert ids(status="in_progress", batch=world.batch.pk) == {world.task.pk, world.gold.pk}
    assert ids(is_gold="true") == {world.gold.pk}
    assert world.gold.pk not in ids(is_gold="false")
    assert ids(batch=world.other_batch.pk) == set()  # another project's batch: nothing, not an error


def test_a_reviewer_s_is_gold_filter_is_ignored(world, api):
    url = f"/api/v1/projects/{world.project.pk}/tasks/"
    client = api(world.reviewer)

    everything = client.get(url, {"page_size": 100}).json()
    for value in ("true", "false"):
        assert client.get(url, {"is_gold": value, "page_size": 100}).json() == everything


def test_an_invalid_filter_value_is_a_400_naming_the_filter(world, api):
    url = f"/api/v1/projects/{world.project.pk}/tasks/"
    assert_error(api(world.manager).get(url, {"status": "finished"}), 400, error_keys={"status"})
    assert_error(api(world.manager).get(url, {"batch": "one"}), 400, error_keys={"batch"})


# --- one task, its events and annotations ------------------------------------------------------------------------


def test_an_annotator_sees_a_task_they_were_given_without_gold_fields(world, api):
    for task in (world.task, world.gold):
        response = api(world.annotator).get(f"/api/v1/tasks/{task.pk}/")
        assert response.status_code == 200
        assert "is_gold" not in response.json() and "gold_answer" not in response.json()
        assert "final_result" not in response.json()
    assert GOLD_MARKER not in api(world.annotator).get(f"/api/v1/tasks/{world.gold.pk}/").content.decode()


def test_an_annotator_gets_404_for_a_task_never_given_to_them(world, api):
    assert_error(api(world.annotator).get(f"/api/v1/tasks/{world.free[0].pk}/"), 404)
    assert_error(api(world.annotator).get(f"/api/v1/tasks/{world.free[0].pk}/events/"), 404)
    assert_error(api(world.annotator).get(f"/api/v1/tasks/{world.free[0].pk}/annotations/"), 404)
    assert_error(api(world.annotator).get(f"/api/v1/tasks/{world.other_task.pk}/"), 404)


def test_managers_see_gold_on_one_task(world, api):
    body = api(world.manager).get(f"/api/v1/tasks/{world.gold.pk}/").json()
    assert body["is_gold"] is True and body["gold_answer"]["gold_note"] == GOLD_MARKER


def test_events_are_the_lifecycle_trail(world, api):
    body = api(world.manager).get(f"/api/v1/tasks/{world.task.pk}/events/").json()

    events = body["results"]
    assert {"type", "at", "actor", "assignment", "payload"} <= set(events[0])
    assert [e["type"] for e in events] == ["assigned", "submitted", "assigned", "started"]
    assert events[1]["actor"] == "annotator_b" and events[1]["assignment"] == world.assignment_b.pk


def test_an_annotator_sees_only_the_events_of_their_own_assignment(world, api):
    events = api(world.annotator).get(f"/api/v1/tasks/{world.task.pk}/events/").json()["results"]

    assert [e["type"] for e in events] == ["assigned", "started"]
    assert {e["assignment"] for e in events} == {world.assignment.pk}


def test_annotations_carry_their_provenance(world, api):
    body = api(world.reviewer).get(f"/api/v1/tasks/{world.task.pk}/annotations/").json()

    (annotation,) = body["results"]
    assert {"id", "task", "assignment", "annotator", "version", "result", "notes", "lead_time_seconds",
            "guideline_version", "status", "submitted_at", "reviews"} <= set(annotation)
    assert annotation["annotator"] == "annotator_b" and annotation["version"] == 1
    assert annotation["guideline_version"] == 1 and annotation["status"] == "submitted"
    assert PEER_MARKER in annotation["notes"]


def test_every_version_is_listed_with_its_reviews(world, api):
    world.reviewer.refresh_from_db()
    task_services.review_reject(annotation=world.annotation, reviewer=world.reviewer, error_types=["wrong_label"],
                                comment="It is a cat.")
    task_services.assignment_resubmit(assignment=world.assignment_b, actor=world.annotator_b,
                                      result={"label": "cat"}, notes="fixed")

    annotations = api(world.manager).get(f"/api/v1/tasks/{world.task.pk}/annotations/").json()["results"]

    assert [(a["version"], a["status"]) for a in annotations] == [(1, "superseded"), (2, "submitted")]
    (review,) = annotations[0]["reviews"]
    assert review["decision"] == "reject" and review["error_types"] == ["wrong_label"]
    assert review["reviewer"] == "reviewer" and review["comment"] == "It is a cat."


def test_an_annotator_sees_only_their_own_annotations_blind_overlap(world, api):
    task_services.assignment_submit(assignment=world.assignment, actor=world.annotator, result={"label": "cat"})

    response = api(world.annotator).get(f"/api/v1/tasks/{world.task.pk}/annotations/")

    assert [a["annotator"] for a in response.json()["results"]] == ["annotator_a"]
    assert PEER_MARKER not in response.content.decode()


# --- clarifications ----------------------------------------------------------------------------------------------


def test_asking_a_clarification_puts_the_work_on_hold(world, api):
    response = api(world.annotator).post(f"/api/v1/tasks/{world.task.pk}/clarifications/",
                                         {"question": "Is a lynx a cat?", "confidential": True}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "open" and body["asked_by"] == "annotator_a" and body["confidential"] is True
    assert body["assignment"] == world.assignment.pk
    world.assignment.refresh_from_db()
    assert world.assignment.status == "on_hold"


def test_an_empty_question_is_a_400_and_holds_nothing(world, api):
    response = api(world.annotator).post(f"/api/v1/tasks/{world.task.pk}/clarifications/", {"question": " "},
                                         format="json")
    assert_error(response, 400, error_keys={"question"})
    world.assignment.refresh_from_db()
    assert world.assignment.status == "in_progress"
    assert Clarification.objects.count() == 2


def test_a_manager_answers_once_then_409_naming_the_state(world, api):
    url = f"/api/v1/clarifications/{world.clarification.pk}/answer/"

    answered = api(world.manager).post(url, {"answer": "Yes, a lynx is a cat."}, format="json")

    assert answered.status_code == 200, answered.content
    assert answered.json()["status"] == "answered" and answered.json()["answered_by"] == "manager"
    events = TaskEvent.objects.filter(type="clarification_answered").count()
    again = api(world.manager).post(url, {"answer": "Changed my mind."}, format="json")
    body = assert_error(again, 409)
    assert "answered" in body["detail"]
    world.clarification.refresh_from_db()
    assert world.clarification.answer == "Yes, a lynx is a cat."
    assert TaskEvent.objects.filter(type="clarification_answered").count() == events


def test_the_asker_cannot_answer_and_an_empty_answer_is_a_400(world, api):
    url = f"/api/v1/clarifications/{world.clarification.pk}/answer/"
    assert_error(api(world.annotator).post(url, {"answer": "Yes"}, format="json"), 403)
    assert_error(api(world.manager).post(url, {"answer": ""}, format="json"), 400, error_keys={"answer"})
    world.clarification.refresh_from_db()
    assert world.clarification.status == "open"


def test_after_the_answer_the_annotator_resumes(world, api):
    api(world.manager).post(f"/api/v1/clarifications/{world.clarification.pk}/answer/", {"answer": "Yes"},
                            format="json")

    resumed = api(world.annotator).post(f"/api/v1/assignments/{world.asked_assignment.pk}/resume/")

    assert resumed.status_code == 200
    assert resumed.json()["status"] == "in_progress"
    assert Assignment.objects.get(pk=world.asked_assignment.pk).status == "in_progress"
