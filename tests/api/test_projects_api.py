"""API.md "Projects and batches": projects, members, batches and their transitions, gates, guidelines."""

import pytest
from django.contrib.auth import get_user_model

from apps.core.permissions import ANNOTATE, REVIEW, VIEW, has_project_perm
from apps.projects.models import Batch, Guideline, Membership, Project, QualityGate
from apps.tasks.models import Task, TaskEvent
from tests import factories
from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db

PROJECT_FIELDS = {"id", "name", "slug", "description", "task_type", "label_schema", "overlap", "gold_rate",
                  "review_mode", "review_sample_rate", "sampling", "lease_minutes", "guideline", "created_at"}


# --- projects --------------------------------------------------------------------------------------------------


def test_project_list_shows_only_the_caller_s_projects_with_the_contract_s_fields(world, api):
    mine = api(world.annotator).get("/api/v1/projects/").json()
    theirs = api(world.outsider).get("/api/v1/projects/").json()
    everything = api(world.admin).get("/api/v1/projects/").json()

    assert [p["slug"] for p in mine["results"]] == ["this-project"]
    assert [p["slug"] for p in theirs["results"]] == ["other-project"]
    assert {p["slug"] for p in everything["results"]} == {"this-project", "other-project"}
    project = mine["results"][0]
    assert PROJECT_FIELDS <= set(project)
    assert project["guideline"] == {"version": 1, "text": "Label what you see."}
    assert project["overlap"] == 2 and project["review_mode"] == "all" and project["sampling"] == "sequential"


def test_an_admin_creates_a_project_with_its_first_guideline(world, api):
    response = api(world.admin).post("/api/v1/projects/", {
        "name": "Birds", "slug": "birds", "task_type": "multilabel", "label_schema": {"labels": ["owl", "tit"]},
        "overlap": 3, "gold_rate": 0.1, "review_mode": "sample", "review_sample_rate": 0.3,
        "sampling": "uncertainty", "lease_minutes": 15, "guideline": "Name every bird.",
    }, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert PROJECT_FIELDS <= set(body)
    assert body["guideline"] == {"version": 1, "text": "Name every bird."}
    project = Project.objects.get(slug="birds")
    assert (project.overlap, project.gold_rate, project.review_mode, project.sampling) == (3, 0.1, "sample",
                                                                                          "uncertainty")
    assert [label["value"] for label in body["label_schema"]["labels"]] == ["owl", "tit"]


@pytest.mark.parametrize("change, field", [
    ({"slug": "this-project"}, "slug"),
    ({"task_type": "video"}, "task_type"),
    ({"label_schema": {"labels": ["only-one"]}}, "label_schema"),
    ({"label_schema": "cat,dog"}, "label_schema"),
    ({"overlap": 0}, "overlap"),
    ({"gold_rate": 2}, "gold_rate"),
    ({"name": ""}, "name"),
])
def test_creating_an_invalid_project_is_a_400_naming_the_field_and_creates_nothing(world, api, change, field):
    body = {"name": "New", "slug": "new", "task_type": "classification", "label_schema": {"labels": ["a", "b"]},
            **change}
    count = Project.objects.count()

    response = api(world.admin).post("/api/v1/projects/", body, format="json")

    assert_error(response, 400, error_keys={field})
    assert Project.objects.count() == count


def test_only_admins_create_projects(world, api):
    response = api(world.manager).post("/api/v1/projects/", {"name": "N", "slug": "n", "task_type":
                                                              "classification", "label_schema": ["a", "b"]},
                                       format="json")
    assert_error(response, 403)
    assert not Project.objects.filter(slug="n").exists()


def test_a_manager_patches_the_project_settings(world, api):
    response = api(world.manager).patch(f"/api/v1/projects/{world.project.pk}/",
                                        {"overlap": 3, "gold_rate": 0.25, "sampling": "random",
                                         "description": "Pets"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["overlap"] == 3 and response.json()["sampling"] == "random"
    world.project.refresh_from_db()
    assert (world.project.overlap, world.project.gold_rate, world.project.description) == (3, 0.25, "Pets")


def test_the_slug_and_task_type_cannot_be_patched(world, api):
    response = api(world.manager).patch(f"/api/v1/projects/{world.project.pk}/",
                                        {"slug": "renamed", "task_type": "text_spans"}, format="json")

    assert response.status_code in (200, 400)
    world.project.refresh_from_db()
    assert (world.project.slug, world.project.task_type) == ("this-project", "classification")


def test_an_invalid_patch_is_a_400_and_changes_nothing(world, api):
    response = api(world.manager).patch(f"/api/v1/projects/{world.project.pk}/",
                                        {"description": "changed", "label_schema": {"labels": []}}, format="json")

    assert_error(response, 400, error_keys={"label_schema"})
    world.project.refresh_from_db()
    assert world.project.description == ""
    assert len(world.project.label_schema["labels"]) == 3


def test_a_reviewer_cannot_patch_the_project(world, api):
    assert_error(api(world.reviewer).patch(f"/api/v1/projects/{world.project.pk}/", {"overlap": 5},
                                           format="json"), 403)
    world.project.refresh_from_db()
    assert world.project.overlap == 2


# --- members ---------------------------------------------------------------------------------------------------


def test_members_are_listed_with_their_roles(world, api):
    body = api(world.manager).get(f"/api/v1/projects/{world.project.pk}/members/").json()

    roles = {(m["username"], m["role"]) for m in body["results"]}
    assert roles == {("manager", "manager"), ("reviewer", "reviewer"), ("annotator_a", "annotator"),
                     ("annotator_b", "annotator")}
    assert all(isinstance(m["user"], int) for m in body["results"])


def test_adding_a_member_gives_the_role_s_permissions_and_several_roles_can_be_held(world, api):
    newcomer = factories.UserFactory(username="newcomer")
    url = f"/api/v1/projects/{world.project.pk}/members/"

    first = api(world.manager).post(url, {"user": newcomer.pk, "role": "annotator"}, format="json")
    second = api(world.manager).post(url, {"user": newcomer.pk, "role": "reviewer"}, format="json")

    assert first.status_code == 201 and second.status_code == 201, (first.content, second.content)
    assert first.json()["role"] == "annotator" and first.json()["username"] == "newcomer"
    assert set(Membership.objects.filter(project=world.project, user=newcomer).values_list("role", flat=True)) \
        == {"annotator", "reviewer"}
    newcomer = get_user_model().objects.get(pk=newcomer.pk)
    assert has_project_perm(newcomer, world.project, ANNOTATE) and has_project_perm(newcomer, world.project, REVIEW)
    assert api(newcomer).get(f"/api/v1/projects/{world.project.pk}/").status_code == 200


@pytest.mark.parametrize("body, field", [
    ({"user": 999999, "role": "annotator"}, "user"),
    ({"user": "annotator_b", "role": "annotator"}, "user"),
    ({"role": "annotator"}, "user"),
    ({"user": None, "role": "owner"}, "role"),
])
def test_adding_an_invalid_member_is_a_400_naming_the_field(world, api, body, field):
    count = Membership.objects.count()

    response = api(world.manager).post(f"/api/v1/projects/{world.project.pk}/members/", body, format="json")

    assert_error(response, 400, error_keys={field})
    assert Membership.objects.count() == count


def test_removing_a_member_takes_all_their_roles_and_permissions(world, api):
    user = world.annotator_b
    factories.project_services.membership_add(project=world.project, user=user, role="reviewer")

    response = api(world.manager).delete(f"/api/v1/projects/{world.project.pk}/members/{user.pk}/")

    assert response.status_code == 204, response.content
    assert not Membership.objects.filter(project=world.project, user=user).exists()
    user = get_user_model().objects.get(pk=user.pk)
    assert not has_project_perm(user, world.project, VIEW)
    assert_error(api(user).get(f"/api/v1/projects/{world.project.pk}/"), 404)


def test_removing_one_role_keeps_the_others(world, api):
    user = world.annotator_b
    factories.project_services.membership_add(project=world.project, user=user, role="reviewer")

    response = api(world.manager).delete(f"/api/v1/projects/{world.project.pk}/members/{user.pk}/?role=reviewer")

    assert response.status_code == 204
    assert list(Membership.objects.filter(project=world.project, user=user).values_list("role", flat=True)) \
        == ["annotator"]
    user = get_user_model().objects.get(pk=user.pk)
    assert has_project_perm(user, world.project, ANNOTATE) and not has_project_perm(user, world.project, REVIEW)


def test_removing_someone_who_is_not_a_member_or_an_unknown_role(world, api):
    url = f"/api/v1/projects/{world.project.pk}/members/"
    assert_error(api(world.manager).delete(f"{url}{world.outsider.pk}/"), 404)
    assert_error(api(world.manager).delete(f"{url}{world.annotator_b.pk}/?role=reviewer"), 404)
    assert_error(api(world.manager).delete(f"{url}{world.annotator_b.pk}/?role=owner"), 400, error_keys={"role"})
    assert Membership.objects.filter(project=world.project, user=world.annotator_b).count() == 1


# --- batches and their transitions ------------------------------------------------------------------------------


def test_batches_are_listed_with_progress(world, api):
    body = api(world.annotator).get(f"/api/v1/projects/{world.project.pk}/batches/").json()

    by_name = {b["name"]: b for b in body["results"]}
    assert set(by_name) == {"Batch one", "Draft batch"}
    assert by_name["Batch one"]["status"] == "active" and by_name["Batch one"]["tasks_total"] == 6
    assert by_name["Batch one"]["tasks_accepted"] == 0
    assert by_name["Draft batch"]["status"] == "draft"


def test_a_manager_creates_a_draft_batch_and_patches_it(world, api):
    created = api(world.manager).post(f"/api/v1/projects/{world.project.pk}/batches/",
                                      {"name": "Batch two", "priority": 5, "due_date": "2030-01-31"},
                                      format="json")
    assert created.status_code == 201, created.content
    assert created.json()["status"] == "draft" and created.json()["priority"] == 5
    batch_id = created.json()["id"]

    patched = api(world.manager).patch(f"/api/v1/batches/{batch_id}/", {"priority": 9}, format="json")

    assert patched.status_code == 200
    batch = Batch.objects.get(pk=batch_id)
    assert (batch.name, batch.priority, str(batch.due_date)) == ("Batch two", 9, "2030-01-31")


def test_a_batch_name_is_unique_in_its_project(world, api):
    response = api(world.manager).post(f"/api/v1/projects/{world.project.pk}/batches/", {"name": "Batch one"},
                                       format="json")
    assert_error(response, 400, error_keys={"name"})
    renamed = api(world.manager).patch(f"/api/v1/batches/{world.draft_batch.pk}/", {"name": "Batch one"},
                                       format="json")
    assert_error(renamed, 400)
    assert Batch.objects.filter(project=world.project).count() == 2


def test_activating_a_draft_batch_opens_its_tasks(world, api):
    tasks = factories.tasks(world.draft_batch, 3)
    assert {t.status for t in tasks} == {"new"}

    response = api(world.manager).post(f"/api/v1/batches/{world.draft_batch.pk}/transition/", {"to": "active"},
                                       format="json")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "active"
    assert set(Task.objects.filter(batch=world.draft_batch).values_list("status", flat=True)) == {"open"}
    assert TaskEvent.objects.filter(batch=world.draft_batch, type="batch_activated").exists()


def _batch_state(batch):
    batch.refresh_from_db()
    return (batch.status, batch.override_reason, batch.overridden_by_id, TaskEvent.objects.filter(batch=batch).count(),
            batch.history.count())


@pytest.mark.parametrize("target", ["completed", "delivered", "active"])
def test_an_illegal_batch_transition_is_a_409_naming_the_current_state_and_changes_nothing(world, api, target):
    before = _batch_state(world.batch)

    response = api(world.manager).post(f"/api/v1/batches/{world.batch.pk}/transition/", {"to": target},
                                       format="json")

    body = assert_error(response, 409)
    assert "active" in body["detail"]
    assert _batch_state(world.batch) == before


def test_an_unknown_target_state_is_a_400(world, api):
    for target in ("draft", "blocked", "finished", ""):
        response = api(world.manager).post(f"/api/v1/batches/{world.batch.pk}/transition/", {"to": target},
                                           format="json")
        assert_error(response, 400, error_keys={"to"})
    world.batch.refresh_from_db()
    assert world.batch.status == "active"


def _finished_batch_with_a_breached_gate(world):
    batch = factories.batch(world.project, name="Finished")
    task = factories.tasks(batch, 1)[0]
    Task.objects.filter(pk=task.pk).update(status="accepted")
    factories.project_services.batch_review(batch=batch, actor=world.manager)
    gate = QualityGate.objects.create(project=world.project, batch=batch, metric="agreement", threshold=0.8,
                                      min_samples=1, state="breached", last_value=0.5)
    return batch, gate


def test_completing_a_batch_with_a_breached_gate_is_a_409_naming_the_gate(world, api):
    batch, gate = _finished_batch_with_a_breached_gate(world)
    before = _batch_state(batch)

    response = api(world.manager).post(f"/api/v1/batches/{batch.pk}/transition/", {"to": "completed"},
                                       format="json")

    body = assert_error(response, 409)
    assert "in_review" in body["detail"] and str(gate) in body["detail"]
    assert body["errors"]["gates"] == [gate.pk]
    assert _batch_state(batch) == before


def test_a_batch_whose_only_unfinished_tasks_are_gold_can_be_completed(world, api):
    for task in Task.objects.filter(batch=world.batch, is_gold=False):
        Task.objects.filter(pk=task.pk).update(status="accepted")
    factories.project_services.batch_review(batch=world.batch, actor=world.manager)

    response = api(world.manager).post(f"/api/v1/batches/{world.batch.pk}/transition/", {"to": "completed"},
                                       format="json")

    assert response.status_code == 200, response.json()


def test_a_manager_overrides_a_breached_gate_with_a_written_reason(world, api):
    batch, gate = _finished_batch_with_a_breached_gate(world)

    response = api(world.manager).post(f"/api/v1/batches/{batch.pk}/transition/",
                                       {"to": "completed", "reason": "Customer accepted the lower agreement."},
                                       format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "completed"
    assert body["override_reason"] == "Customer accepted the lower agreement."
    assert body["overridden_by"] == "manager" and body["overridden_at"]
    event = TaskEvent.objects.get(batch=batch, type="batch_overridden")
    assert event.actor == world.manager and event.payload["gates"] == [gate.pk]


def test_a_reviewer_cannot_move_a_batch(world, api):
    assert_error(api(world.reviewer).post(f"/api/v1/batches/{world.batch.pk}/transition/", {"to": "paused"},
                                          format="json"), 403)
    world.batch.refresh_from_db()
    assert world.batch.status == "active"


def test_a_batch_of_another_project_does_not_exist_for_the_caller(world, api):
    assert_error(api(world.manager).get(f"/api/v1/batches/{world.other_batch.pk}/"), 404)
    assert_error(api(world.manager).post(f"/api/v1/batches/{world.other_batch.pk}/transition/", {"to": "paused"},
                                         format="json"), 404)
    world.other_batch.refresh_from_db()
    assert world.other_batch.status == "active"


# --- gates and guidelines -----------------------------------------------------------------------------------------


def test_a_manager_adds_a_gate_for_the_project_or_one_batch(world, api):
    url = f"/api/v1/projects/{world.project.pk}/gates/"
    project_wide = api(world.manager).post(url, {"metric": "gold_accuracy", "comparator": "gte",
                                                 "threshold": 0.9, "min_samples": 20}, format="json")
    one_batch = api(world.manager).post(url, {"metric": "rework_rate", "comparator": "lte", "threshold": 0.1,
                                              "batch": world.batch.pk}, format="json")

    assert project_wide.status_code == 201 and one_batch.status_code == 201, (project_wide.content,
                                                                              one_batch.content)
    assert project_wide.json()["batch"] is None and project_wide.json()["state"] == "pending"
    assert one_batch.json()["batch"] == world.batch.pk
    listed = api(world.reviewer).get(url).json()["results"]
    assert {g["metric"] for g in listed} == {"agreement", "gold_accuracy", "rework_rate"}


@pytest.mark.parametrize("body, field", [
    ({"metric": "speed", "comparator": "gte", "threshold": 0.5}, "metric"),
    ({"metric": "agreement", "comparator": "gt", "threshold": 0.5}, "comparator"),
    ({"metric": "agreement", "comparator": "gte", "threshold": 1.5}, "threshold"),
    ({"metric": "agreement", "comparator": "gte"}, "threshold"),
    ({"metric": "agreement", "comparator": "gte", "threshold": 0.5, "min_samples": -1}, "min_samples"),
    ({"metric": "agreement", "comparator": "gte", "threshold": 0.5, "batch": "other"}, "batch"),
])
def test_an_invalid_gate_is_a_400_naming_the_field(world, api, body, field):
    if body.get("batch") == "other":
        body = {**body, "batch": world.other_batch.pk}
    count = QualityGate.objects.count()

    response = api(world.manager).post(f"/api/v1/projects/{world.project.pk}/gates/", body, format="json")

    assert_error(response, 400, error_keys={field})
    assert QualityGate.objects.count() == count


def test_a_guideline_post_appends_a_version_and_makes_it_current(world, api):
    url = f"/api/v1/projects/{world.project.pk}/guidelines/"

    response = api(world.manager).post(url, {"text": "Lynxes are cats.", "version": 99}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["version"] == 2 and response.json()["created_by"] == "manager"
    listed = api(world.annotator).get(url).json()["results"]
    assert [g["version"] for g in listed] == [2, 1]
    assert listed[1]["text"] == "Label what you see."  # versions are never edited
    project = api(world.annotator).get(f"/api/v1/projects/{world.project.pk}/").json()
    assert project["guideline"] == {"version": 2, "text": "Lynxes are cats."}


def test_an_empty_guideline_is_a_400(world, api):
    response = api(world.manager).post(f"/api/v1/projects/{world.project.pk}/guidelines/", {"text": "  "},
                                       format="json")
    assert_error(response, 400, error_keys={"text"})
    assert Guideline.objects.filter(project=world.project).count() == 1
