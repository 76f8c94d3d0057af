"""The portal's permission matrix: every URL of the URL conf outside /api/v1/ (which tests/api/test_permission_matrix.py
walks) and the admin (tests/test_admin.py and the admin tests of each app), called by every kind of caller.

The routes are read from the URL conf, recursively through its includes, so a new page without an entry in EXPECTED
fails `test_every_page_has_an_expectation` until someone states who may open it. Path parameters are filled with
objects of "this project" (PageWorld, the API matrix's world with real figures); every call runs in a savepoint
that is rolled back, so a POST by one caller never changes what the next caller meets.

The portal's convention (apps.tasks.views._project_or_404): anonymous → 302 to the login page with `next`; a user
with no role in the project → 404 (the project is not revealed); a member without the role the page needs → 403;
objects that are not the caller's (an alert of a project they do not manage, another annotator's assignment) → 404.
The dashboards' `?format=json` and every `?format=csv&table=` are walked with their page. The bodies annotators,
reviewers and outsiders got are then searched for what they must never see: a gold answer, another annotator's work
or feedback, a confidential question.
"""

import re
from http.cookies import SimpleCookie
from urllib.parse import quote

import pytest
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from apps.dashboards.people_trends import people_trends_recompute
from apps.quality.models import MetricSnapshot
from apps.quality.services import quality_recompute_full
from apps.tasks import services as task_services
from tests.api.conftest import CONFIDENTIAL_MARKER, GOLD_MARKER, PEER_MARKER, ROLES, ApiWorld, body_of

pytestmark = pytest.mark.django_db

ANON, OUT, ANN, REV, MAN, ADM = ROLES

# Route prefixes the walk leaves to other tests; anything else needs an entry in EXPECTED.
SKIPPED_PREFIXES = {
    "api/v1/": "the API: tests/api/test_permission_matrix.py walks every endpoint and method",
    "admin/": "the Django admin: tests/test_admin.py and the apps' admin tests (staff only, Django's own checks)",
    "static/": "static files (only routed with DEBUG; never in tests)",
    "media/": "uploaded media (only routed with DEBUG; never in tests)",
}

FEEDBACK_TO_B = f"Look again at the whiskers {PEER_MARKER}"

# Which object of the world fills each path parameter (an entry's case may override it).
PATH_OBJECTS = {
    "project_id": "project",
    "user_id": "annotator_b",
    "alert_id": "alert",
    "assignment_id": "asked_assignment",
}
LITERAL_PATH = {"uidb64": "MQ", "token": "set-password"}  # Django's password reset link (an invalid one)

LOGIN = "login"  # 302 to the login page, with ?next= the page asked for


def statuses(anonymous=LOGIN, outsider=404, annotator=200, reviewer=200, manager=200, admin=200):
    return dict(zip(ROLES, (anonymous, outsider, annotator, reviewer, manager, admin)))


def everyone(status, anonymous=None):
    return statuses(anonymous=status if anonymous is None else anonymous, outsider=status, annotator=status,
                    reviewer=status, manager=status, admin=status)


def managers(ok=200):
    """Project pages for managers (and admins): members without the role 403, strangers 404."""
    return statuses(annotator=403, reviewer=403, manager=ok, admin=ok)


def annotators(ok=200):
    """Project pages for annotators (admins may open them too); reviewers and managers do not annotate (403)."""
    return statuses(annotator=ok, reviewer=403, manager=403, admin=ok)


def reviewers(ok=200):
    """The review page: reviewers (and admins); a manager is not a reviewer (403), as in the review API."""
    return statuses(annotator=403, reviewer=ok, manager=403, admin=ok)


def signed_in(ok=200):
    """Pages of one's own account: any signed-in user."""
    return statuses(outsider=ok, annotator=ok, reviewer=ok, manager=ok, admin=ok)


POST_ONLY = everyone(405, anonymous=LOGIN)  # login_required wraps require_POST: strangers are sent to log in first

# URL name (namespaced) → {method: {"statuses": {role: status or (302, location)}, "query"/"data": …},
#                          "cases": [{"name", "method", "path", "statuses", "query"}], "formats": True}
# `formats`: the page also answers ?format=json and ?format=csv&table=<each table of the page>, with the page's
# statuses (the tables are read from the page's own context, so a new table is walked too).
EXPECTED = {
    "home": {"get": {"statuses": signed_in()}},
    "profile": {
        "get": {"statuses": signed_in()},
        # creates or rotates the caller's API token, then back to the profile
        "post": {"statuses": signed_in((302, "/accounts/profile/"))},
    },
    "tasks:label": {"get": {"statuses": annotators()}},
    "tasks:assignment-resume": {
        "get": {"statuses": POST_ONLY},
        # only the assignment's own annotator; to anyone else it does not exist
        "post": {"statuses": statuses(annotator=(302, "/projects/{project}/label/"), reviewer=404, manager=404,
                                      admin=404)},
        "cases": [{"name": "another annotator's held assignment", "method": "post",
                   "path": {"assignment_id": "b_asked_assignment"},
                   "statuses": statuses(annotator=404, reviewer=404, manager=404, admin=404)}],
    },
    "quality:review": {"get": {"statuses": reviewers()}},
    # Alerts are for managers: a signed-in user who manages nothing is refused (403); an admin manages everything.
    "quality:alerts": {
        "get": {"statuses": statuses(outsider=403, annotator=403, reviewer=403)},
        "post": {"statuses": everyone(405, anonymous=LOGIN)},
        "cases": [
            {"name": "filtered on a project the manager does not manage", "method": "get",
             "query": {"project": "other_project"}, "statuses": statuses(outsider=403, annotator=403, reviewer=403,
                                                                         manager=404)},
            {"name": "one alert, by id (the e-mails link to it)", "method": "get", "query": {"alert": "alert"},
             "statuses": statuses(outsider=403, annotator=403, reviewer=403)},
        ],
    },
    "quality:alert-acknowledge": {
        "get": {"statuses": POST_ONLY},
        "post": {"statuses": statuses(annotator=404, reviewer=404, manager=(302, "/alerts/"),
                                      admin=(302, "/alerts/"))},
        "cases": [{"name": "an alert of a project the manager does not manage", "method": "post",
                   "path": {"alert_id": "other_alert"},
                   "statuses": statuses(annotator=404, reviewer=404, manager=404, admin=(302, "/alerts/"))}],
    },
    "quality:alert-resolve": {
        "get": {"statuses": POST_ONLY},
        "post": {"statuses": statuses(annotator=404, reviewer=404, manager=(302, "/alerts/"),
                                      admin=(302, "/alerts/"))},
        "cases": [{"name": "an alert of a project the manager does not manage", "method": "post",
                   "path": {"alert_id": "other_alert"},
                   "statuses": statuses(annotator=404, reviewer=404, manager=404, admin=(302, "/alerts/"))}],
    },
    "dashboards:project": {"get": {"statuses": managers()}, "formats": True},
    "people:team": {"get": {"statuses": managers()}, "formats": True},
    "people:annotator": {
        "get": {"statuses": managers()},
        "formats": True,
        "cases": [{"name": "a user who is no annotator of the project", "method": "get",
                   "path": {"user_id": "outsider"}, "statuses": managers(404)}],
    },
    "people:my-stats": {"get": {"statuses": annotators()}, "formats": True},
    # Django's: switching the language is for everyone, signed in or not; a GET changes nothing and goes back.
    "set_language": {"get": {"statuses": everyone((302, "/"))},
                     "post": {"statuses": everyone((302, "/")), "data": {"language": "es", "next": "/"}}},
    "javascript-catalog": {"get": {"statuses": everyone(200)}},
    # Django's authentication views (templates/registration and the admin's).
    "login": {"get": {"statuses": everyone(200)}, "post": {"statuses": everyone(200)}},  # empty form: shown again
    "logout": {"get": {"statuses": everyone(405)}, "post": {"statuses": everyone((302, "/accounts/login/"))}},
    "password_change": {"get": {"statuses": signed_in()}, "post": {"statuses": signed_in()}},  # empty form
    "password_change_done": {"get": {"statuses": signed_in()}},
    "password_reset": {"get": {"statuses": everyone(200)}, "post": {"statuses": everyone(200)}},  # empty form
    "password_reset_done": {"get": {"statuses": everyone(200)}},
    "password_reset_confirm": {"get": {"statuses": everyone(200)}},  # an invalid link: the page says so
    "password_reset_complete": {"get": {"statuses": everyone(200)}},
}


class PageWorld(ApiWorld):
    """The API matrix's world (tests/api/conftest.py) with what the portal's pages show, computed as the workers
    compute it: the figures snapshots (the world's hand-made one is replaced), the weekly trends, a reviewer's
    rejection of annotator B's work with a comment carrying PEER_MARKER (B's feedback: A must never read it), and
    B's own held assignment (the clarification B asked)."""

    def __init__(self):
        super().__init__()
        MetricSnapshot.objects.filter(project=self.project).delete()
        task = self.free[0]
        assignment = task_services.assignment_assign(task=task, annotator=self.annotator_b)
        self.b_rejected = task_services.assignment_submit(
            assignment=assignment, actor=self.annotator_b, result={"label": "dog", "peer_note": PEER_MARKER})
        task_services.review_reject(annotation=self.b_rejected, reviewer=self.reviewer, error_types=["wrong_label"],
                                    comment=FEEDBACK_TO_B)
        self.b_asked_assignment = self.asked.assignments.get(annotator=self.annotator_b)
        assert self.b_asked_assignment.status == "on_hold"
        quality_recompute_full(project_id=self.project.pk)
        people_trends_recompute(self.project.pk)


def page_routes():
    """(qualified URL name, route) of every URL pattern, found by walking the URL conf through its includes."""

    def walk(patterns, prefix, namespace):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = pattern.namespace
                qualified = f"{namespace}:{inner}" if namespace and inner else (inner or namespace)
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern), qualified)
            elif isinstance(pattern, URLPattern):
                name = pattern.name and (f"{namespace}:{pattern.name}" if namespace else pattern.name)
                yield name, prefix + str(pattern.pattern)

    return list(walk(get_resolver().url_patterns, "", None))


def walked_routes():
    found = []
    for name, route in page_routes():
        if route.startswith(tuple(SKIPPED_PREFIXES)):
            continue
        assert name, f"/{route} has no URL name: give it one and an entry in EXPECTED"
        found.append((name, route))
    return found


def test_every_page_has_an_expectation():
    routes = walked_routes()
    names = [name for name, _route in routes]
    assert len(routes) >= 20
    assert len(names) == len(set(names)), "two routes share a URL name"
    missing = sorted(set(names) - set(EXPECTED))
    stale = sorted(set(EXPECTED) - set(names))
    assert not missing, f"pages without an entry in EXPECTED (state who may open them): {missing}"
    assert not stale, f"entries in EXPECTED for pages that no longer exist: {stale}"
    for name, entry in EXPECTED.items():
        assert "get" in entry, f"{name}: every route is called with GET (state its 405 if it only takes POST)"
        for method in ("get", "post"):
            if method in entry:
                assert set(entry[method]["statuses"]) == set(ROLES), (name, method)
        for case in entry.get("cases", []):
            assert set(case["statuses"]) == set(ROLES), (name, case["name"])
    # The skipped prefixes are really someone else's: the API and the admin are mounted where they say.
    routes = [route for _name, route in page_routes()]
    assert any(route.startswith("api/v1/") for route in routes)
    assert any(route.startswith("admin/") for route in routes)


def fill(route, world, overrides):
    def value(match):
        name = match.group(1)
        if name in LITERAL_PATH:
            return LITERAL_PATH[name]
        attribute = overrides.get(name) or PATH_OBJECTS.get(name)
        assert attribute, f"no object of the world for path parameter <{name}> in {route}"
        return str(getattr(world, attribute).pk)

    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", value, route)


class Caller:
    """One role's test client (CSRF checks off, as the test client does by default). Each call is rolled back and
    the client's cookies put back afterwards, so a logout or a language switch does not change the next call."""

    def __init__(self, user):
        self.client = Client()
        if user is not None:
            self.client.force_login(user)
        self.cookies = SimpleCookie(self.client.cookies.output(header="", sep="\n"))

    def call(self, method, url, data):
        with transaction.atomic():
            response = getattr(self.client, method)(url, data or {})
            text = body_of(response)
            transaction.set_rollback(True)
        self.client.cookies = SimpleCookie(self.cookies.output(header="", sep="\n"))
        return response, text


def check(response, expected, url, world):
    """'' when the response is what the table says, else what differs."""
    location = None
    if expected == LOGIN:
        expected, location = 302, f"/accounts/login/?next={quote(url.split('?')[0])}"
    elif isinstance(expected, tuple):
        expected, location = expected
        location = location.format(project=world.project.pk)
    if response.status_code != expected:
        return f"expected {expected}, got {response.status_code}"
    if location is not None and not response["Location"].startswith(location):
        return f"expected a redirect to {location}, got one to {response['Location']}"
    return ""


def calls(world):
    """Every (label, url name, method, url, query or data, statuses) the walk makes."""
    for name, route in walked_routes():
        entry = EXPECTED[name]
        for method in ("get", "post"):
            if method in entry:
                url = fill(route, world, {})
                yield (name, name, method, url, entry[method].get("data") or entry[method].get("query"),
                       entry[method]["statuses"])
        for case in entry.get("cases", []):
            url = fill(route, world, case.get("path", {}))
            query = {key: getattr(world, value).pk for key, value in case.get("query", {}).items()}
            yield f"{name} ({case['name']})", name, case["method"], url, query, case["statuses"]


def test_every_page_every_role(db):
    world = PageWorld()
    callers = {role: Caller(world.user(role)) for role in ROLES}
    mismatches, bodies, tables_of = [], {role: [] for role in ROLES}, {}

    def run(label, method, url, data, expected_statuses):
        for role in ROLES:
            response, text = callers[role].call(method, url, data)
            bodies[role].append((label, text))
            assert response.status_code < 500, (label, role, text[:1000])
            problem = check(response, expected_statuses[role], url, world)
            if problem:
                mismatches.append(f"{method.upper()} {url} {data or ''} ({label}) as {role}: {problem}")
            if response.status_code == 200 and response.context is not None and "tables" in response.context:
                tables_of.setdefault(label, set()).update(response.context["tables"])

    walked = 0
    for label, name, method, url, data, expected_statuses in calls(world):
        run(label, method, url, data, expected_statuses)
        walked += 1
        if EXPECTED[name].get("formats") and label == name and method == "get":
            run(f"{name} as JSON", "get", url, {"format": "json"}, expected_statuses)
            assert tables_of.get(name), f"{name}: no tables found in the page's context"
            for table in sorted(tables_of[name]):
                run(f"{name} table {table} as CSV", "get", url, {"format": "csv", "table": table},
                    expected_statuses)
    assert walked >= 30
    assert not mismatches, "\n".join(mismatches)

    # The world is untouched: every call above was rolled back.
    world.asked_assignment.refresh_from_db()
    world.alert.refresh_from_db()
    assert (world.asked_assignment.status, world.alert.state) == ("on_hold", "open")

    leaks = []
    for role in (OUT, ANN, REV):
        for label, text in bodies[role]:
            if GOLD_MARKER in text:
                leaks.append(f"{role} saw the gold answer in {label}")
            if CONFIDENTIAL_MARKER in text:
                leaks.append(f"{role} saw another annotator's confidential question in {label}")
            if role != REV and PEER_MARKER in text:
                leaks.append(f"{role} saw another annotator's work or feedback in {label}")
            if role != REV and world.annotator_b.username in text:
                leaks.append(f"{role} saw the co-annotator's name in {label}")
    assert not leaks, "\n".join(leaks)

    # The markers are real, not misspelt: the pages that may show them did (a manager reads B's feedback and B's
    # confidential question on B's page). No page shows a gold answer (the admin does), so the gold marker is
    # checked where it is stored.
    manager_bodies = "".join(text for label, text in bodies[MAN] if label.startswith("people:annotator"))
    assert PEER_MARKER in manager_bodies and CONFIDENTIAL_MARKER in manager_bodies
    world.gold.refresh_from_db()
    assert GOLD_MARKER in str(world.gold.gold_answer)


def project_pages():
    return [(name, route) for name, route in page_routes()
            if re.search(r"<(\w+:)?project_id>", route) and not route.startswith(tuple(SKIPPED_PREFIXES))]


@pytest.mark.parametrize("name, route", project_pages())
def test_members_of_one_project_do_not_reach_another_project_s_pages(db, name, route):
    """Every project page, called with the other project's id by this project's members: 404 (it is not theirs
    to know about), and anonymous callers are sent to log in."""
    world = ApiWorld()
    url = fill(route, world, {"project_id": "other_project", "user_id": "outsider"})
    method = "get" if EXPECTED[name]["get"]["statuses"][ANN] != 405 else "post"
    for role in (ANON, ANN, REV, MAN):
        response, _text = Caller(world.user(role)).call(method, url, None)
        problem = check(response, LOGIN if role == ANON else 404, url, world)
        assert not problem, f"{method.upper()} {url} ({name}) as {role}: {problem}"
