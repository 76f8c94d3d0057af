"""The permission matrix: every endpoint under /api/v1/, every method it allows, called by every kind of caller.

The endpoints are read from the URL conf, so a new endpoint without an expectation below fails the test.
Path parameters are filled with objects of "this project" (see ApiWorld). Every call runs inside a savepoint that
is rolled back, so a mutation by one caller never changes what the next caller meets.

The statuses follow API.md: 401 without credentials, 404 for objects outside the caller's projects (or, for an
annotator, tasks and work they were never given), 403 for a member lacking the role, 2xx when allowed — and never
500. Then the bodies an annotator and a reviewer received are searched for what they must never see.
"""

import json
import re

import pytest
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver

from apps.tasks.models import Task
from tests.api.conftest import CONFIDENTIAL_MARKER, GOLD_MARKER, PEER_MARKER, ROLES, ApiWorld, body_of, client_for

pytestmark = pytest.mark.django_db

API_PREFIX = "api/v1/"
METHODS = ("get", "post", "put", "patch", "delete")

# Which object of the world fills each path parameter (an entry may override it for its endpoint).
PATH_OBJECTS = {
    "project_id": "project",
    "user_id": "annotator_b",
    "batch_id": "batch",
    "task_id": "task",
    "clarification_id": "clarification",
    "assignment_id": "assignment",
    "annotation_id": "annotation",
    "alert_id": "alert",
}

ANON, OUT, ANN, REV, MAN, ADM = ROLES


def allowed(anonymous=401, outsider=404, annotator=200, reviewer=200, manager=200, admin=200):
    return dict(zip(ROLES, (anonymous, outsider, annotator, reviewer, manager, admin)))


def managers(ok=200):
    """Managers and admins only; other members are refused (403), strangers don't see the project (404)."""
    return allowed(annotator=403, reviewer=403, manager=ok, admin=ok)


def staff(ok=200):
    """Reviewers, managers and admins."""
    return allowed(annotator=403, reviewer=ok, manager=ok, admin=ok)


def own_assignment(ok=200):
    """Only the assignment's annotator; reviewers, managers and admins see the task but not to act on it."""
    return allowed(annotator=ok, reviewer=403, manager=403, admin=403)


# (url name, method) → {"statuses": {role: status}, "data": body or query, "path": parameter overrides}
EXPECTED = {
    ("schema", "get"): {"statuses": allowed(anonymous=200, outsider=200)},
    ("docs", "get"): {"statuses": allowed(anonymous=200, outsider=200)},
    ("project-list", "get"): {"statuses": allowed(outsider=200)},
    ("project-list", "post"): {
        "statuses": allowed(outsider=403, annotator=403, reviewer=403, manager=403, admin=201),
        "data": {"name": "Fresh", "slug": "fresh", "task_type": "classification",
                 "label_schema": {"labels": ["a", "b"]}},
    },
    ("project-detail", "get"): {"statuses": allowed()},
    ("project-detail", "patch"): {"statuses": managers(), "data": {"description": "Updated"}},
    ("member-list", "get"): {"statuses": managers()},
    ("member-list", "post"): {"statuses": managers(201), "data": lambda w: {"user": w.annotator_b.pk,
                                                                             "role": "reviewer"}},
    ("member-detail", "delete"): {"statuses": managers(204)},
    # annotator B is not paused: the resume a manager may ask for is refused as a transition (409)
    ("member-resume", "post"): {"statuses": managers(409)},
    ("batch-list", "get"): {"statuses": allowed()},
    ("batch-list", "post"): {"statuses": managers(201), "data": {"name": "Batch two", "priority": 3}},
    ("batch-detail", "get"): {"statuses": allowed()},
    ("batch-detail", "patch"): {"statuses": managers(), "data": {"priority": 7}},
    ("batch-transition", "post"): {"statuses": managers(), "data": {"to": "paused"}},
    ("gate-list", "get"): {"statuses": allowed()},
    ("gate-list", "post"): {"statuses": managers(201),
                            "data": {"metric": "gold_accuracy", "comparator": "gte", "threshold": 0.9}},
    ("guideline-list", "get"): {"statuses": allowed()},
    ("guideline-list", "post"): {"statuses": managers(201), "data": {"text": "Version two."}},
    ("import", "post"): {"statuses": managers(201), "data": [{"data": {"text": "imported"}}]},
    ("export", "get"): {"statuses": managers(), "data": {"format": "json", "status": "all"}},
    ("task-list", "get"): {"statuses": staff()},
    ("task-detail", "get"): {"statuses": allowed()},
    ("task-events", "get"): {"statuses": allowed()},
    ("task-annotations", "get"): {"statuses": allowed()},
    # A reviewer sees the task but does not ask questions about it; managers may.
    ("clarification-create", "post"): {"statuses": allowed(annotator=201, reviewer=403, manager=201, admin=201),
                                       "data": {"question": "Which label for a lynx?"}},
    # The asker sees their question but may not answer it; reviewers never see questions.
    ("clarification-answer", "post"): {"statuses": allowed(annotator=403, reviewer=404),
                                       "data": {"answer": "A cat."}},
    ("next-task", "post"): {"statuses": allowed(reviewer=403, manager=403)},
    ("assignment-start", "post"): {"statuses": own_assignment()},
    ("assignment-hold", "post"): {"statuses": own_assignment(), "data": {"reason": "Lunch"}},
    ("assignment-resume", "post"): {"statuses": own_assignment(), "path": {"assignment_id": "asked_assignment"}},
    ("assignment-skip", "post"): {"statuses": own_assignment(), "data": {"reason": "Unreadable"}},
    ("assignment-submit", "post"): {"statuses": own_assignment(201), "data": {"result": {"label": "cat"}}},
    ("review-next", "post"): {"statuses": allowed(annotator=403, manager=403)},
    # Annotator A works on the same task but may not even learn that B's annotation exists (blind overlap).
    ("annotation-review", "post"): {"statuses": allowed(annotator=404, reviewer=201, manager=403, admin=201),
                                    "data": {"decision": "approve"}},
    # The world's task has one annotation waiting, so those who may review are told the state (409).
    ("review-pairwise", "post"): {"statuses": allowed(annotator=403, reviewer=409, manager=403, admin=409),
                                  "data": {"result": {"label": "cat"}}},
    ("project-metrics", "get"): {"statuses": staff()},
    ("project-annotators", "get"): {"statuses": managers()},
    ("project-agreement", "get"): {"statuses": staff()},
    ("my-metrics", "get"): {"statuses": allowed(reviewer=403, manager=403),
                            "data": lambda w: {"project": w.project.pk}},
    # Lists are scoped rather than refused: a stranger gets an empty page.
    ("alert-list", "get"): {"statuses": allowed(outsider=200)},
    # Alerts are for managers: nobody else can see them, so to them they do not exist.
    ("alert-acknowledge", "post"): {"statuses": allowed(annotator=404, reviewer=404)},
    ("alert-resolve", "post"): {"statuses": allowed(annotator=404, reviewer=404)},
}


def api_endpoints():
    """(url name, route, allowed methods) of every URL pattern under /api/v1/, found by walking the URL conf."""

    def walk(patterns, prefix, namespace):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern),
                                pattern.namespace or namespace)
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern), pattern, namespace

    found = []
    for route, pattern, _namespace in walk(get_resolver().url_patterns, "", None):
        if not route.startswith(API_PREFIX):
            continue
        view = getattr(pattern.callback, "cls", None) or getattr(pattern.callback, "view_class", None)
        methods = [m for m in METHODS if view is not None and hasattr(view, m)]
        assert pattern.name, f"{route} has no URL name: give it one and an expectation here"
        found.append((pattern.name, route, methods))
    return found


def fill(route, world, overrides):
    def value(match):
        name = match.group(1)
        attribute = overrides.get(name) or PATH_OBJECTS.get(name)
        assert attribute, f"no object of the world for path parameter <{name}> in {route}"
        return str(getattr(world, attribute).pk)

    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", value, route)


def test_every_api_endpoint_and_method_has_an_expectation():
    discovered = {(name, method) for name, _route, methods in api_endpoints() for method in methods}
    assert len(discovered) >= 40
    missing = sorted(discovered - set(EXPECTED))
    stale = sorted(set(EXPECTED) - discovered)
    assert not missing, f"endpoints without an entry in EXPECTED (add one): {missing}"
    assert not stale, f"entries in EXPECTED for endpoints that no longer exist: {stale}"
    for key, entry in EXPECTED.items():
        assert set(entry["statuses"]) == set(ROLES), key


def call_and_roll_back(client, method, url, data):
    """One request whose writes are undone afterwards, so each caller meets the same world."""
    with transaction.atomic():
        if method == "get":
            response = client.get(url, data or {})
        else:
            response = getattr(client, method)(url, data, format="json")
        text = body_of(response)
        transaction.set_rollback(True)
    return response, text


def test_permission_matrix_every_endpoint_every_role(db):
    world = ApiWorld()
    clients = {role: client_for(world.user(role)) for role in ROLES}
    mismatches, bodies = [], {role: [] for role in ROLES}
    for name, route, methods in api_endpoints():
        for method in methods:
            entry = EXPECTED[(name, method)]
            url = fill(route, world, entry.get("path", {}))
            data = entry.get("data")
            data = data(world) if callable(data) else data
            for role in ROLES:
                response, text = call_and_roll_back(clients[role], method, url, data)
                bodies[role].append((name, method, response, text))
                expected = entry["statuses"][role]
                if response.status_code != expected:
                    mismatches.append(f"{method.upper()} {url} ({name}) as {role}: expected {expected}, got "
                                      f"{response.status_code} {text[:200]}")
                assert response.status_code < 500, (name, method, role, text[:500])
                if response.status_code >= 400:
                    body = json.loads(text)
                    assert set(body) >= {"detail", "errors"}, (name, method, role, body)
    assert not mismatches, "\n".join(mismatches)

    # The world is untouched: every call above was rolled back.
    world.assignment.refresh_from_db()
    assert world.assignment.status == "in_progress"

    leaks = []
    for role in ("outsider", "annotator", "reviewer"):
        for name, method, response, text in bodies[role]:
            if GOLD_MARKER in text:
                leaks.append(f"{role} saw the gold answer in {method.upper()} {name}")
            if CONFIDENTIAL_MARKER in text:
                leaks.append(f"{role} saw another annotator's confidential question in {method.upper()} {name}")
            if role != "reviewer" and PEER_MARKER in text:
                leaks.append(f"{role} saw another annotator's work in {method.upper()} {name}")
            if name not in ("schema", "docs") and text.startswith(("{", "[")):
                keys = json_keys(json.loads(text))
                for key in ("is_gold", "gold_answer"):
                    if key in keys:
                        leaks.append(f"{role} got the key {key!r} from {method.upper()} {name}")
    assert not leaks, "\n".join(leaks)

    # The bodies that were allowed to carry them did: the markers are real, not misspelt.
    assert any(GOLD_MARKER in text for _n, _m, _r, text in bodies["manager"])
    assert any(PEER_MARKER in text for _n, _m, _r, text in bodies["reviewer"])


def json_keys(value):
    keys = set()
    if isinstance(value, dict):
        for key, item in value.items():
            keys.add(key)
            keys |= json_keys(item)
    elif isinstance(value, list):
        for item in value:
            keys |= json_keys(item)
    return keys


# --- gold stays hidden and peers' work stays blind, along a whole working session ------------------------------

VARYING = {"id", "task", "assignment", "annotation", "data", "at", "created_at", "submitted_at", "assigned_at",
           "started_at", "lease_expires_at"}


def shape(value):
    """A response with what legitimately differs between two tasks (ids, times, data) blanked out."""
    if isinstance(value, dict):
        return {key: "…" if key in VARYING else shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return value


def test_a_gold_task_looks_exactly_like_any_other_task_to_its_annotator(db):
    from apps.projects.models import Membership
    from tests import factories

    admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
    project = factories.project(actor=admin, slug="gold-blind", review_mode="all", gold_rate=0.5)
    annotator = factories.member(project, Membership.Role.ANNOTATOR, "ann")
    batch = factories.batch(project)
    factories.tasks(batch, 1, data={"text": "plain"})
    factories.tasks(batch, 1, data={"text": "gold"}, is_gold=True, gold_answer={"label": "cat"})
    client = client_for(annotator)
    seen = {}
    for _ in range(2):
        nxt = client.post(f"/api/v1/projects/{project.pk}/next/").json()
        assignment_id, task_id = nxt["assignment"]["id"], nxt["task"]["id"]
        start = client.post(f"/api/v1/assignments/{assignment_id}/start/").json()
        submit = client.post(f"/api/v1/assignments/{assignment_id}/submit/", {"result": {"label": "dog"}},
                             format="json").json()
        views = [client.get(f"/api/v1/tasks/{task_id}/{part}").json() for part in ("", "events/", "annotations/")]
        seen[nxt["task"]["data"]["text"]] = shape([nxt, start, submit, *views])

    assert set(seen) == {"plain", "gold"}
    assert seen["gold"] == seen["plain"]


def test_an_annotator_s_whole_session_never_shows_gold_or_a_peer_s_work(world):
    """Annotator A works through everything they can reach; every body they get is searched."""
    client = client_for(world.annotator)
    bodies = []

    def get(url, **query):
        response = client.get(url, query)
        bodies.append(body_of(response))
        return response

    def post(url, data=None):
        response = client.post(url, data, format="json")
        bodies.append(body_of(response))
        return response

    for task in Task.objects.filter(project=world.project):
        for part in ("", "events/", "annotations/"):
            get(f"/api/v1/tasks/{task.pk}/{part}")
    post(f"/api/v1/assignments/{world.assignment.pk}/submit/", {"result": {"label": "cat"}})
    post(f"/api/v1/clarifications/{world.confidential_clarification.pk}/answer/", {"answer": "x"})
    post(f"/api/v1/annotations/{world.annotation.pk}/review/", {"decision": "approve"})
    while True:
        response = post(f"/api/v1/projects/{world.project.pk}/next/")
        if response.status_code == 204:
            break
        assignment_id = response.json()["assignment"]["id"]
        post(f"/api/v1/assignments/{assignment_id}/submit/", {"result": {"label": "bird"}})
    for task in Task.objects.filter(project=world.project):
        for part in ("", "events/", "annotations/"):
            get(f"/api/v1/tasks/{task.pk}/{part}")
    for url in ("/api/v1/projects/", f"/api/v1/projects/{world.project.pk}/", "/api/v1/alerts/",
                f"/api/v1/projects/{world.project.pk}/batches/", f"/api/v1/projects/{world.project.pk}/gates/",
                f"/api/v1/projects/{world.project.pk}/guidelines/"):
        get(url)
    get("/api/v1/me/metrics/", project=world.project.pk)

    assert len(bodies) > 40
    for text in bodies:
        assert GOLD_MARKER not in text
        assert PEER_MARKER not in text
        assert CONFIDENTIAL_MARKER not in text
        assert "annotator_b" not in text  # not even the co-annotator's name
        if text.startswith(("{", "[")):
            assert not {"is_gold", "gold_answer", "needs_review", "final_result"} & json_keys(json.loads(text))


def test_a_reviewer_never_gets_gold_fields_anywhere(world):
    client = client_for(world.reviewer)
    texts = [body_of(client.get(f"/api/v1/projects/{world.project.pk}/tasks/", {"page_size": 1000}))]
    for task in Task.objects.filter(project=world.project):
        for part in ("", "events/", "annotations/"):
            texts.append(body_of(client.get(f"/api/v1/tasks/{task.pk}/{part}")))
    texts.append(body_of(client.post(f"/api/v1/projects/{world.project.pk}/review/next/")))

    for text in texts:
        assert GOLD_MARKER not in text
        assert not {"is_gold", "gold_answer"} & json_keys(json.loads(text))
