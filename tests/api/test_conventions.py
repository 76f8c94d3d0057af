"""API.md "Conventions": authentication (token, session with CSRF), the token page, error bodies, pagination,
timestamps, filters that cannot reach across relations, HTML kept as data, and no 500 on any input."""

import json

import pytest
from django.db import transaction
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.projects.models import Guideline, Project
from apps.tasks import services as task_services
from apps.tasks.models import Task
from tests import factories
from tests.api.conftest import assert_error, body_of, client_for

pytestmark = pytest.mark.django_db

PASSWORD = "pw-Secret-1"  # tests.factories.UserFactory
XSS = "<script>alert(1)</script>"


# --- authentication ------------------------------------------------------------------------------------------


def test_anonymous_gets_401_with_a_token_challenge_not_403(world):
    response = APIClient().get("/api/v1/projects/")

    body = assert_error(response, 401)
    assert response["WWW-Authenticate"] == 'Token'
    assert "credentials" in body["detail"].lower()


@pytest.mark.parametrize("header", ["Token not-a-real-key", "Token ", "Bearer abc", "Token a b"])
def test_a_bad_or_malformed_token_gets_401(world, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get("/api/v1/projects/")

    assert_error(response, 401)  # "Bearer": not our scheme, as if no credentials were sent - still 401, not 403
    assert response["WWW-Authenticate"] == "Token"


def test_the_token_of_a_deactivated_user_stops_working(world):
    client = client_for(world.annotator)
    assert client.get("/api/v1/projects/").status_code == 200
    world.annotator.is_active = False
    world.annotator.save()

    assert_error(client.get("/api/v1/projects/"), 401)


def test_token_auth_needs_no_csrf_token():
    user = factories.UserFactory(username="staffer", is_staff=True, is_superuser=True)
    token = Token.objects.create(user=user)
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    response = client.post("/api/v1/projects/", {"name": "T", "slug": "t", "task_type": "classification",
                                                 "label_schema": {"labels": ["a", "b"]}}, format="json")

    assert response.status_code == 201, response.content


def test_session_auth_refuses_a_post_without_the_csrf_token_and_accepts_it_with_one(world):
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="manager", password=PASSWORD)
    url = f"/api/v1/projects/{world.project.pk}/guidelines/"
    versions = Guideline.objects.filter(project=world.project).count()

    assert client.get(url).status_code == 200  # reading needs no CSRF token
    refused = client.post(url, {"text": "Version two."}, format="json")
    body = assert_error(refused, 403)
    assert "CSRF" in body["detail"]
    assert Guideline.objects.filter(project=world.project).count() == versions

    client.get(reverse("profile"))  # any page with a form hands out the CSRF cookie
    csrf = client.cookies["csrftoken"].value
    accepted = client.post(url, {"text": "Version two."}, format="json", HTTP_X_CSRFTOKEN=csrf)

    assert accepted.status_code == 201, accepted.content
    assert Guideline.objects.filter(project=world.project).count() == versions + 1


def test_the_profile_page_creates_then_rotates_the_token_and_the_old_one_stops_working(world):
    browser = APIClient(enforce_csrf_checks=True)
    assert browser.login(username="annotator_a", password=PASSWORD)
    page = browser.get(reverse("profile"))
    assert page.status_code == 200
    assert not Token.objects.filter(user=world.annotator).exists()
    csrf = browser.cookies["csrftoken"].value

    assert browser.post(reverse("profile")).status_code == 403  # the form needs its CSRF token too
    assert not Token.objects.filter(user=world.annotator).exists()

    created = browser.post(reverse("profile"), {"csrfmiddlewaretoken": csrf})
    assert created.status_code == 302
    first = Token.objects.get(user=world.annotator).key
    assert first in browser.get(reverse("profile")).content.decode()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert api.get("/api/v1/projects/").status_code == 200

    rotated = browser.post(reverse("profile"), {"csrfmiddlewaretoken": csrf})
    assert rotated.status_code == 302
    second = Token.objects.get(user=world.annotator).key
    assert second != first
    assert_error(api.get("/api/v1/projects/"), 401)
    api.credentials(HTTP_AUTHORIZATION=f"Token {second}")
    assert api.get("/api/v1/projects/").status_code == 200


def test_the_profile_page_needs_a_signed_in_user():
    response = APIClient().get(reverse("profile"))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


# --- error bodies and input that must never give a 500 ------------------------------------------------------------


def test_malformed_json_is_a_400_with_the_contract_s_body(world, api):
    response = api(world.manager).generic("PATCH", f"/api/v1/projects/{world.project.pk}/", '{"name": ',
                                          content_type="application/json")
    assert_error(response, 400)
    world.project.refresh_from_db()
    assert world.project.name == "This-Project"


def test_an_unsupported_content_type_is_refused_not_crashed(world, api):
    response = api(world.manager).generic("PATCH", f"/api/v1/projects/{world.project.pk}/", "name=x",
                                          content_type="text/plain")
    assert_error(response, 415)


def test_field_errors_are_keyed_by_field(world, api):
    response = api(world.manager).patch(f"/api/v1/projects/{world.project.pk}/",
                                        {"overlap": 0, "gold_rate": "lots"}, format="json")

    body = assert_error(response, 400, error_keys={"overlap", "gold_rate"})
    assert all(isinstance(messages, list) and messages for messages in body["errors"].values())


def test_an_unknown_id_is_404_with_the_contract_s_body(world, api):
    for url in ("/api/v1/projects/999999/", "/api/v1/tasks/999999/", "/api/v1/batches/999999/",
                "/api/v1/tasks/999999/events/"):
        assert_error(api(world.admin).get(url), 404)


def test_a_method_the_endpoint_does_not_have_is_405(world, api):
    assert_error(api(world.manager).delete(f"/api/v1/projects/{world.project.pk}/"), 405)
    world.project.refresh_from_db()


GARBAGE_BODIES = [
    None, [], "text", {"": None}, {"result": "cat"}, {"result": {"label": ["cat"]}}, {"to": ["active"]},
    {"decision": {"x": 1}}, {"name": "x" * 10_000, "priority": 10**30, "user": 10**12, "role": "annotator"},
    {"threshold": 1e308, "metric": "agreement", "comparator": "gte", "batch": "abc"},
    {"question": "\x00", "text": "\x00", "answer": "", "reason": 5, "lead_time_seconds": -1},
    {"corrected_result": {"label": "cat"}, "decision": "fix", "error_types": "wrong_label"},
    [{"data": "x"}, None], [{"batch": {"id": 1}, "data": {"text": "x"}}],
    # PostgreSQL stores no U+0000 in text or jsonb: refused as input, not a database error.
    {"result": {"label": "cat", "x": "\x00"}, "decision": "fix", "corrected_result": {"label": "cat", "x": "\x00"},
     "reason": "ok", "to": "paused", "comment": "ok", "answer": "ok", "question": "ok", "text": "ok"},
    {"label_schema": {"labels": ["a", "b\x00"]}, "name": "n", "slug": "nul", "task_type": "classification"},
    [{"data": {"text": "\x00"}, "external_id": "x\x00"}],
]


def test_no_garbage_body_to_any_writing_endpoint_gives_a_500(world, api):
    """Every POST/PATCH/DELETE endpoint, called by a caller allowed to use it, with bodies of every wrong shape."""
    from tests.api.test_permission_matrix import EXPECTED, api_endpoints, fill

    checked = 0
    for name, route, methods in api_endpoints():
        for method in methods:
            if method == "get":
                continue
            entry = EXPECTED[(name, method)]
            # The first role allowed to use it (a 409 is allowed too: the world's state refuses the transition).
            role = next(r for r in ("annotator", "reviewer", "manager", "admin")
                        if entry["statuses"][r] < 300 or entry["statuses"][r] == 409)
            client = world.client(role)
            url = fill(route, world, entry.get("path", {}))
            for body in GARBAGE_BODIES:
                with transaction.atomic():
                    response = getattr(client, method)(url, json.dumps(body), content_type="application/json")
                    transaction.set_rollback(True)
                assert response.status_code < 500, (name, role, body, response.content[:300])
                if response.status_code >= 400:
                    assert {"detail", "errors"} <= set(response.json()), (name, body, response.content)
                checked += 1
    assert checked > 200


@pytest.mark.parametrize("query", ["page=0", "page=abc", "page=99999", "page_size=-1", "page_size=abc",
                                   "page_size=99999999999999999999", "status=nonsense", "batch=abc",
                                   "is_gold=maybe", "batch=99999999999999999999999"])
def test_odd_query_strings_on_a_list_never_give_a_500(world, api, query):
    response = api(world.manager).get(f"/api/v1/projects/{world.project.pk}/tasks/?{query}")

    assert response.status_code in (200, 400, 404), response.content
    if response.status_code != 200:
        assert_error(response, response.status_code)


# --- pagination and formats --------------------------------------------------------------------------------------


def test_lists_are_paginated_with_count_next_previous_results(world, api):
    client = api(world.manager)
    url = f"/api/v1/projects/{world.project.pk}/tasks/"
    total = Task.objects.filter(project=world.project).count()

    first = client.get(url, {"page_size": 2}).json()
    assert set(first) == {"count", "next", "previous", "results"}
    assert first["count"] == total and len(first["results"]) == 2
    assert first["previous"] is None and "page=2" in first["next"] and "page_size=2" in first["next"]
    second = client.get(first["next"]).json()
    assert second["previous"] is not None
    assert {t["id"] for t in first["results"]}.isdisjoint({t["id"] for t in second["results"]})
    everything = client.get(url, {"page_size": 1000}).json()
    assert everything["next"] is None and len(everything["results"]) == total


def test_page_size_is_capped_at_1000(world, api):
    factories.tasks(world.batch, 1001)

    response = api(world.manager).get(f"/api/v1/projects/{world.project.pk}/tasks/", {"page_size": 5000})

    body = response.json()
    assert body["count"] > 1000
    assert len(body["results"]) == 1000
    assert body["next"] is not None


def test_timestamps_are_iso_8601_utc_and_ids_integers(world, api):
    task = api(world.manager).get(f"/api/v1/tasks/{world.task.pk}/").json()
    project = api(world.manager).get(f"/api/v1/projects/{world.project.pk}/").json()

    assert isinstance(task["id"], int) and isinstance(task["project"], int) and isinstance(task["batch"], int)
    assert task["created_at"].endswith("Z") and "T" in task["created_at"]
    assert project["created_at"].endswith("Z")


# --- filters: only whitelisted fields, never across relations -----------------------------------------------------

SNEAKY_FILTERS = [
    {"annotator__password__startswith": "x"},
    {"project__memberships__user__password": "md5$"},
    {"assignments__annotator__username": "annotator_b", "gold_answer__label": "bird"},
    {"gold_answer__isnull": "false", "acknowledged_by__password__startswith": "m"},
    {"project__created_by__is_superuser": "true", "ordering": "gold_answer", "search": "GOLD"},
]


@pytest.mark.parametrize("role", ["annotator", "reviewer", "manager"])
def test_filters_across_relations_are_ignored_on_every_list_endpoint(world, role):
    """A list answers exactly as if a non-whitelisted filter had not been given: nothing to learn from it."""
    from tests.api.test_permission_matrix import EXPECTED, api_endpoints, fill

    client = world.client(role)
    lists = 0
    for name, route, methods in api_endpoints():
        if "get" not in methods or name in ("schema", "docs", "export"):
            continue
        entry = EXPECTED[(name, "get")]
        url = fill(route, world, entry.get("path", {}))
        params = entry.get("data")
        params = params(world) if callable(params) else (params or {})
        plain = client.get(url, params)
        for sneaky in SNEAKY_FILTERS:
            filtered = client.get(url, {**params, **sneaky})
            assert filtered.status_code == plain.status_code, (name, sneaky)
            assert filtered.status_code < 500
            if plain.status_code == 200 and "results" in plain.json():
                assert filtered.json()["results"] == plain.json()["results"], (name, sneaky)
                assert filtered.json()["count"] == plain.json()["count"]
                lists += 1
    assert lists > 0


# --- HTML and scripts are data in the API, escaped on pages ----------------------------------------------------


def test_html_in_task_data_labels_notes_and_comments_comes_back_unchanged_as_json(db, api):
    admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
    label = "<b>x</b>"
    project = factories.project(actor=admin, slug="xss", schema={"labels": [{"value": "cat", "name": XSS},
                                                                            {"value": "dog"}]})
    from apps.projects.models import Membership

    annotator = factories.member(project, Membership.Role.ANNOTATOR, "ann")
    reviewer = factories.member(project, Membership.Role.REVIEWER, "rev")
    batch = factories.batch(project)
    task = factories.tasks(batch, 1, data={"text": XSS, "html": f'<img src=x onerror="alert(1)">{label}'})[0]

    nxt = api(annotator).post(f"/api/v1/projects/{project.pk}/next/")
    assert nxt["Content-Type"] == "application/json"
    assert nxt.json()["task"]["data"] == task.data
    submitted = api(annotator).post(f"/api/v1/assignments/{nxt.json()['assignment']['id']}/submit/",
                                    {"result": {"label": "cat", "why": XSS}, "notes": XSS}, format="json")
    assert submitted.status_code == 201
    assert submitted.json()["notes"] == XSS and submitted.json()["result"]["why"] == XSS
    api(reviewer).post(f"/api/v1/projects/{project.pk}/review/next/")
    review = api(reviewer).post(f"/api/v1/annotations/{submitted.json()['id']}/review/",
                                {"decision": "reject", "error_types": ["wrong_label"], "comment": XSS},
                                format="json")
    assert review.status_code == 201 and review.json()["comment"] == XSS

    schema = api(annotator).get(f"/api/v1/projects/{project.pk}/").json()["label_schema"]
    assert schema["labels"][0]["name"] == XSS
    annotations = api(reviewer).get(f"/api/v1/tasks/{task.pk}/annotations/")
    assert annotations["Content-Type"] == "application/json"
    assert annotations.json()["results"][0]["reviews"][0]["comment"] == XSS
    assert XSS in annotations.content.decode()  # JSON needs no HTML escaping; the page that shows it does


def test_pages_escape_html_the_admin_task_page_and_the_profile(db, client):
    admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True, first_name=XSS)
    project = factories.project(actor=admin, slug="xss-pages")
    Project.objects.filter(pk=project.pk).update(name=XSS)
    from apps.projects.models import Membership

    annotator = factories.member(project, Membership.Role.ANNOTATOR, "ann")
    batch = factories.batch(project)
    task = factories.tasks(batch, 1, data={"text": XSS})[0]
    assignment = task_services.assignment_assign(task=task, annotator=annotator)
    task_services.assignment_submit(assignment=assignment, actor=annotator, result={"label": "cat"}, notes=XSS)
    task_services.clarification_ask(task=task, actor=annotator, question=XSS)
    from apps.projects import services as project_services

    project_services.membership_add(project=Project.objects.get(pk=project.pk), user=admin, role="manager")

    client.force_login(admin)
    page = client.get(reverse("admin:tasks_task_change", args=[task.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    profile = client.get(reverse("profile")).content.decode()
    assert XSS not in profile
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in profile


def test_the_schema_and_docs_are_served_offline(world):
    schema = APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = json.loads(body_of(schema))["paths"]
    assert "/api/v1/projects/{project_id}/next/" in paths
    docs = APIClient().get("/api/v1/docs/")
    assert docs.status_code == 200
    assert "cdn." not in docs.content.decode()  # the sidecar serves Swagger UI itself


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_json_nested_too_deeply_is_a_400_not_a_crash(world, api, depth):
    """A few kilobytes of [[[[… used to exhaust Python's stack in the JSON parser: a 500 (and a huge traceback)."""
    response = api(world.annotator).generic("POST", f"/api/v1/assignments/{world.assignment.pk}/submit/",
                                            "[" * depth, content_type="application/json")

    assert_error(response, 400, detail_contains="nested too deeply")
    world.assignment.refresh_from_db()
    assert world.assignment.status == "in_progress"


def test_a_result_nested_deeper_than_the_limit_is_refused_before_it_is_stored(world, api):
    deep = {"label": "cat", "x": json.loads("[" * 100 + "]" * 100)}

    response = api(world.annotator).post(f"/api/v1/assignments/{world.assignment.pk}/submit/", {"result": deep},
                                         format="json")

    assert_error(response, 400, error_keys={"result"})
    assert not world.assignment.annotations.exists()


@pytest.mark.parametrize("field, body", [
    ("result", {"result": {"label": "cat", "note": "a\x00b"}}),
    ("result", {"result": {"label": "cat", "a\x00b": 1}}),
])
def test_a_nul_character_in_a_json_result_is_refused_as_input(world, api, field, body):
    """PostgreSQL stores no U+0000 in jsonb: it used to surface as a DataError, i.e. a 500."""
    response = api(world.annotator).post(f"/api/v1/assignments/{world.assignment.pk}/submit/", body,
                                         format="json")

    assert_error(response, 400, error_keys={field})
    assert not world.assignment.annotations.exists()


def test_a_nul_character_in_a_label_schema_is_refused_as_input(world, api):
    response = api(world.manager).patch(f"/api/v1/projects/{world.project.pk}/",
                                        {"label_schema": {"labels": [{"value": "a", "name": "A\x00"},
                                                                     {"value": "b"}]}}, format="json")

    assert_error(response, 400, error_keys={"label_schema"})
    world.project.refresh_from_db()
    assert [label["value"] for label in world.project.label_schema["labels"]] == ["cat", "dog", "bird"]


def test_an_idempotency_key_with_control_characters_is_refused(world, api):
    response = api(world.annotator).post(f"/api/v1/projects/{world.project.pk}/next/",
                                         HTTP_IDEMPOTENCY_KEY="abc\x00def")
    assert_error(response, 400, detail_contains="Idempotency-Key")
