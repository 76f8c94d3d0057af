"""The managers' bell and alerts page: the unread count (live alerts of the projects they manage without a read
receipt, in one query; nothing asked for anonymous users), who sees the bell, the page (scoped, filtered, paginated,
escaped, marking what it shows as read), acknowledge and resolve from the page and the API with who and when."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.core.errors import PermissionDeniedError, TransitionError
from apps.projects.models import Membership
from apps.quality import alerts as quality_alerts, services
from apps.quality.context_processors import alert_bell_context
from apps.quality.models import Alert, AlertRead
from tests import factories

pytestmark = pytest.mark.django_db


class Desk:
    """Project A (manager ann-boss, reviewer, annotator) and project B (manager bob) with alerts in every state."""

    def __init__(self):
        self.a = factories.project(slug="desk-a")
        self.b = factories.project(slug="desk-b")
        self.boss = factories.member(self.a, Membership.Role.MANAGER, "ann-boss")
        self.reviewer = factories.member(self.a, Membership.Role.REVIEWER, "rev")
        self.annotator = factories.member(self.a, Membership.Role.ANNOTATOR, "worker")
        self.bob = factories.member(self.b, Membership.Role.MANAGER, "bob")
        self.a_open = self.alert(self.a, "open")
        self.a_acknowledged = self.alert(self.a, "acknowledged")
        self.a_resolved = self.alert(self.a, "resolved")
        self.b_open = [self.alert(self.b, "open") for _ in range(3)]

    def alert(self, project, state, **fields):
        fields = {"kind": "throughput_dip", "message": "Stored text.",
                  "details": {"day": "2026-11-19", "submitted": 9, "trailing_mean": 20.0, "ratio": 0.5}, **fields}
        return Alert.objects.create(project=project, state=state, **fields)


@pytest.fixture
def desk():
    return Desk()


def bell_of(user):
    return quality_alerts.alert_bell(user)


def test_the_bell_counts_live_unread_alerts_of_the_managed_projects_only(desk, admin_user):
    assert bell_of(desk.boss) == {"manages": True, "unread": 2}  # open + acknowledged of A, not B's
    assert bell_of(desk.bob) == {"manages": True, "unread": 3}
    AlertRead.objects.create(alert=desk.a_open, user=desk.boss)
    AlertRead.objects.create(alert=desk.a_acknowledged, user=desk.bob)  # bob's receipt says nothing about ann-boss
    assert bell_of(desk.boss) == {"manages": True, "unread": 1}
    # admins manage every project
    assert bell_of(admin_user) == {"manages": True, "unread": 5}
    # reviewers and annotators of A manage nothing: no bell
    assert bell_of(desk.reviewer) == {"manages": False, "unread": 0}
    assert bell_of(desk.annotator) == {"manages": False, "unread": 0}


def test_the_bell_agrees_with_the_alerts_the_user_may_see_group_permissions_included(desk, admin_user):
    from django.contrib.auth.models import Group
    from guardian.shortcuts import assign_perm

    from apps.quality import selectors

    leads = Group.objects.create(name="leads")
    assign_perm("projects.manage_project", leads, desk.b)  # granted in the admin's object permissions
    desk.reviewer.groups.add(leads)
    AlertRead.objects.create(alert=desk.b_open[0], user=desk.reviewer)
    for user in (desk.boss, desk.bob, desk.reviewer, desk.annotator, admin_user):
        seen = selectors.alert_list(user=user).filter(state__in=["open", "acknowledged"]).exclude(
            reads__user=user).count()
        assert bell_of(user)["unread"] == seen
    assert bell_of(desk.reviewer) == {"manages": True, "unread": 2}


def test_a_manager_of_nothing_with_alerts_nowhere_still_gets_a_bell_with_zero(desk):
    quiet = factories.project(slug="quiet")
    lead = factories.member(quiet, Membership.Role.MANAGER, "lead")
    assert bell_of(lead) == {"manages": True, "unread": 0}


def test_the_bell_is_one_query_and_none_for_anonymous_users(desk, rf):
    from django.contrib.auth.models import AnonymousUser

    bell_of(desk.bob)  # guardian looks the permission's content type up once per process
    request = rf.get("/")
    request.user = desk.boss
    context = alert_bell_context(request)
    with CaptureQueriesContext(connection) as queries:
        assert context["alert_bell"]["unread"] == 2 and context["alert_bell"]["manages"] is True
        assert context["alert_bell"]["unread"] == 2  # asked once per request
    assert len(queries) == 1
    sql = queries[0]["sql"]
    assert "quality_alertread" in sql and "quality_alert" in sql
    anonymous = rf.get("/")
    anonymous.user = AnonymousUser()
    with CaptureQueriesContext(connection) as queries:
        assert alert_bell_context(anonymous) == {}
    assert len(queries) == 0


def test_the_bell_shows_in_the_top_bar_for_managers_only(desk, client):
    client.force_login(desk.boss)
    page = client.get(reverse("home")).content.decode()
    assert 'id="alert-bell"' in page and 'data-unread="2"' in page and '<span class="bell-count">2</span>' in page
    client.force_login(desk.annotator)
    assert 'id="alert-bell"' not in client.get(reverse("home")).content.decode()
    client.force_login(desk.reviewer)
    assert 'id="alert-bell"' not in client.get(reverse("home")).content.decode()
    client.logout()
    assert 'id="alert-bell"' not in client.get(reverse("login")).content.decode()


def test_the_home_page_of_an_annotator_asks_nothing_about_alerts(desk, client):
    client.force_login(desk.annotator)
    with CaptureQueriesContext(connection) as queries:
        client.get(reverse("home"))
    alert_queries = [q["sql"] for q in queries if "quality_alert" in q["sql"]]
    assert len(alert_queries) == 1  # the bell's one query, which finds no managed project


# --- the page -------------------------------------------------------------------------------------------------------

def test_the_page_lists_the_managed_projects_alerts_newest_first_and_marks_them_read(desk, client):
    client.force_login(desk.boss)
    response = client.get(reverse("quality:alerts"))
    assert response.status_code == 200
    shown = [alert.pk for alert in response.context["page"]]
    assert shown == [desk.a_resolved.pk, desk.a_acknowledged.pk, desk.a_open.pk]
    body = response.content.decode()
    assert all(f'id="alert-{alert.pk}"' not in body for alert in desk.b_open)
    assert "Throughput dip: 9 submissions on 2026-11-19 (UTC)" in body
    # every alert shown is read now, and the bell on this very page says so
    assert set(AlertRead.objects.filter(user=desk.boss).values_list("alert_id", flat=True)) == set(shown)
    assert 'data-unread="0"' in body
    assert body.count('class="badge new"') == 3
    # a second visit: nothing new, no second receipt
    body = client.get(reverse("quality:alerts")).content.decode()
    assert 'class="badge new"' not in body and AlertRead.objects.filter(user=desk.boss).count() == 3


def test_the_page_filters_by_state_and_project_and_one_alert(desk, client, admin_user):
    client.force_login(admin_user)
    live = client.get(reverse("quality:alerts"), {"state": "live"}).context["page"]
    assert {alert.pk for alert in live} == {desk.a_open.pk, desk.a_acknowledged.pk, *(a.pk for a in desk.b_open)}
    resolved = client.get(reverse("quality:alerts"), {"state": "resolved", "project": desk.a.pk}).context["page"]
    assert [alert.pk for alert in resolved] == [desk.a_resolved.pk]
    of_b = client.get(reverse("quality:alerts"), {"project": desk.b.pk}).context["page"]
    assert [alert.pk for alert in of_b] == [alert.pk for alert in reversed(desk.b_open)]
    one = client.get(reverse("quality:alerts"), {"alert": desk.a_open.pk}).context["page"]
    assert [alert.pk for alert in one] == [desk.a_open.pk]
    assert client.get(reverse("quality:alerts"), {"state": "bogus"}).status_code == 400


def test_the_page_is_refused_outside_the_managed_projects(desk, client):
    client.force_login(desk.boss)
    # B exists but is not ann-boss's: 404, never revealed
    assert client.get(reverse("quality:alerts"), {"project": desk.b.pk}).status_code == 404
    assert client.get(reverse("quality:alerts"), {"project": "nope"}).status_code == 404
    # one alert of B by its id: nothing shown
    page = client.get(reverse("quality:alerts"), {"alert": desk.b_open[0].pk}).context["page"]
    assert list(page) == []
    # the reviewer sees project A but does not manage it: 403; nobody who manages nothing gets the page
    client.force_login(desk.reviewer)
    assert client.get(reverse("quality:alerts")).status_code == 403
    assert client.get(reverse("quality:alerts"), {"project": desk.a.pk}).status_code == 403
    # and with a project they manage elsewhere, A is still refused with 403 (they can see it)
    factories.member(desk.b, Membership.Role.MANAGER, "rev")
    assert client.get(reverse("quality:alerts"), {"project": desk.a.pk}).status_code == 403
    client.force_login(desk.annotator)
    assert client.get(reverse("quality:alerts")).status_code == 403
    assert AlertRead.objects.filter(user__in=[desk.reviewer, desk.annotator]).count() == 0
    client.logout()
    assert client.get(reverse("quality:alerts")).status_code == 302


def test_the_page_escapes_what_people_typed(desk, client):
    desk.alert(desk.a, "open", kind="outlier_annotator",
               details={"annotator_id": 1, "username": "<script>alert(1)</script>", "flags": ["slow"]})
    desk.a.name = "A <b>bold</b> project"
    desk.a.save()
    client.force_login(desk.boss)
    body = client.get(reverse("quality:alerts")).content.decode()
    assert "<script>alert(1)</script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<b>bold</b>" not in body and "A &lt;b&gt;bold&lt;/b&gt; project" in body


def test_the_page_is_paginated_with_its_filters_kept(desk, client):
    for _ in range(30):
        desk.alert(desk.a, "open")
    client.force_login(desk.boss)
    first = client.get(reverse("quality:alerts"), {"state": "open"})
    assert len(first.context["page"]) == 25 and first.context["page"].paginator.count == 31
    assert "?state=open&amp;page=2" in first.content.decode()
    second = client.get(reverse("quality:alerts"), {"state": "open", "page": 2})
    assert len(second.context["page"]) == 6
    assert AlertRead.objects.filter(user=desk.boss).count() == 31


def test_the_page_reads_in_a_fixed_number_of_queries(desk, client):
    for _ in range(10):
        desk.alert(desk.a, "open", batch=factories.batch(desk.a))
    client.force_login(desk.boss)
    client.get(reverse("quality:alerts"))  # the session and the receipts settle

    def queries_for_page():
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse("quality:alerts")).status_code == 200
        return len(queries)

    before = queries_for_page()
    for _ in range(10):
        desk.alert(desk.a, "acknowledged", batch=factories.batch(desk.a), acknowledged_by=desk.bob)
    AlertRead.objects.bulk_create([AlertRead(alert=a, user=desk.boss) for a in Alert.objects.filter(project=desk.a)],
                                  ignore_conflicts=True)
    assert queries_for_page() == before


# --- acknowledge and resolve ----------------------------------------------------------------------------------------

def test_resolve_records_who_and_when_and_refuses_a_second_time(desk):
    alert = services.alert_resolve(alert=desk.a_acknowledged, actor=desk.boss)
    assert (alert.state, alert.resolved_by, alert.resolved_at is not None) == ("resolved", desk.boss, True)
    last = alert.history.latest()
    assert last.history_user == desk.boss and last.state == "resolved"
    with pytest.raises(TransitionError, match="already resolved") as refused:
        services.alert_resolve(alert=alert, actor=desk.boss)
    assert refused.value.status_code == 409 and refused.value.current == "resolved"
    # a manager of another project may not
    with pytest.raises(PermissionDeniedError):
        services.alert_resolve(alert=desk.a_open, actor=desk.bob)
    desk.a_open.refresh_from_db()
    assert desk.a_open.state == "open" and desk.a_open.resolved_by is None


def test_acknowledge_and_resolve_from_the_page(desk, client):
    client.force_login(desk.boss)
    response = client.post(reverse("quality:alert-acknowledge", args=[desk.a_open.pk]) + "?state=live&evil=1")
    assert response.status_code == 302 and response["Location"] == reverse("quality:alerts") + "?state=live"
    desk.a_open.refresh_from_db()
    assert (desk.a_open.state, desk.a_open.acknowledged_by) == ("acknowledged", desk.boss)
    assert desk.a_open.history.latest().history_user == desk.boss
    response = client.post(reverse("quality:alert-resolve", args=[desk.a_open.pk]), follow=True)
    desk.a_open.refresh_from_db()
    assert (desk.a_open.state, desk.a_open.resolved_by) == ("resolved", desk.boss)
    body = response.content.decode()
    assert f"Alert #{desk.a_open.pk} resolved." in body and "Resolved by ann-boss on" in body
    # again: refused with 409, the page says why, nothing changed
    resolved_at = desk.a_open.resolved_at
    response = client.post(reverse("quality:alert-resolve", args=[desk.a_open.pk]))
    assert response.status_code == 409 and "The alert is already resolved." in response.content.decode()
    response = client.post(reverse("quality:alert-acknowledge", args=[desk.a_open.pk]))
    assert response.status_code == 409
    assert "The alert is resolved; only open alerts can be acknowledged." in response.content.decode()
    desk.a_open.refresh_from_db()
    assert desk.a_open.resolved_at == resolved_at and desk.a_open.resolved_by == desk.boss
    # B's alert: 404; a GET: 405; the reviewer of A: 404 (the alert is not theirs to see)
    assert client.post(reverse("quality:alert-resolve", args=[desk.b_open[0].pk])).status_code == 404
    assert client.get(reverse("quality:alert-resolve", args=[desk.a_acknowledged.pk])).status_code == 405
    client.force_login(desk.reviewer)
    assert client.post(reverse("quality:alert-resolve", args=[desk.a_acknowledged.pk])).status_code == 404
    desk.b_open[0].refresh_from_db()
    assert desk.b_open[0].state == "open"


def test_the_page_needs_the_csrf_token(desk):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(desk.boss)
    assert client.post(reverse("quality:alert-resolve", args=[desk.a_open.pk])).status_code == 403
    desk.a_open.refresh_from_db()
    assert desk.a_open.state == "open"


def test_a_gate_that_passes_again_resolves_its_alert_without_a_resolver(desk):
    from apps.quality import gates

    gates._alert_resolve(desk.a_open, desk.a_open.created_at)
    desk.a_open.refresh_from_db()
    assert desk.a_open.state == "resolved" and desk.a_open.resolved_by is None
    assert "Resolved by itself" in _render_page_as(desk.boss)


def _render_page_as(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.get(reverse("quality:alerts")).content.decode()


# --- the API --------------------------------------------------------------------------------------------------------

def test_api_resolve(desk, client):
    client.force_login(desk.boss)
    url = f"/api/v1/alerts/{desk.a_open.pk}/resolve/"
    response = client.post(url)
    assert response.status_code == 200
    data = response.json()
    assert (data["state"], data["resolved_by"], data["message"]) == ("resolved", "ann-boss", "Stored text.")
    assert data["text"].startswith("Throughput dip: 9 submissions")
    again = client.post(url)
    assert again.status_code == 409 and again.json()["detail"] == "The alert is already resolved."
    assert client.post(f"/api/v1/alerts/{desk.b_open[0].pk}/resolve/").status_code == 404
    client.force_login(desk.annotator)
    assert client.post(f"/api/v1/alerts/{desk.a_acknowledged.pk}/resolve/").status_code == 404
    desk.a_acknowledged.refresh_from_db()
    desk.b_open[0].refresh_from_db()
    assert desk.a_acknowledged.state == "acknowledged" and desk.b_open[0].state == "open"


def test_api_list_gives_the_text_in_the_callers_language(desk, client):
    client.force_login(desk.boss)
    english = client.get("/api/v1/alerts/", {"state": "open"}).json()["results"]
    assert [row["id"] for row in english] == [desk.a_open.pk]
    assert english[0]["text"].endswith("(20.0 a day).") and english[0]["message"] == "Stored text."
    spanish = client.get("/api/v1/alerts/", {"state": "open"}, HTTP_ACCEPT_LANGUAGE="es").json()["results"]
    assert "20,0" in spanish[0]["text"] and spanish[0]["message"] == "Stored text."


def test_the_page_speaks_the_readers_language(desk, client):
    from django.conf import settings

    client.force_login(desk.boss)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "es"
    response = client.get(reverse("quality:alerts"))
    assert response.status_code == 200 and '<html lang="es">' in response.content.decode()
    assert "(20,0 " in response.content.decode()  # the throughput figure written the Spanish way


def test_a_manager_removed_while_the_page_was_open_is_refused_with_403(desk, client):
    from unittest import mock

    from apps.quality import selectors

    client.force_login(desk.boss)
    # the alert was on ann-boss's page; by the time of the click the project is no longer theirs to manage
    with mock.patch.object(selectors, "alert_list", return_value=Alert.objects.all()):
        response = client.post(reverse("quality:alert-resolve", args=[desk.b_open[0].pk]))
    assert response.status_code == 403
    desk.b_open[0].refresh_from_db()
    assert desk.b_open[0].state == "open"
