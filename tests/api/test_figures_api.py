"""API.md "Figures" (read from the snapshots the workers write) and alerts."""

import pytest
from django.utils import timezone

from apps.quality.models import Alert, MetricSnapshot
from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db


def test_project_metrics_have_the_contract_s_shape(world, api):
    MetricSnapshot.objects.create(project=world.project, scope="project", kind="quality", computed_at=timezone.now(),
                                  values={"agreement": {"metric": "krippendorff_alpha", "value": 0.71, "n": 40},
                                          "gold_accuracy": 0.9})

    body = api(world.reviewer).get(f"/api/v1/projects/{world.project.pk}/metrics/").json()

    assert {"progress", "throughput", "quality", "computed_at"} <= set(body)
    assert {"total", "by_status", "accepted_pct", "eta"} <= set(body["progress"])
    assert body["progress"]["total"] == 7 and body["progress"]["by_status"] == {"open": 3}
    assert {"per_day", "per_hour"} <= set(body["throughput"])
    assert {"agreement", "gold_accuracy", "acceptance_rate", "rework_rate", "error_types"} <= set(body["quality"])
    assert body["quality"]["agreement"] == {"metric": "krippendorff_alpha", "value": 0.71, "n": 40}
    assert body["quality"]["gold_accuracy"] == 0.9
    assert body["computed_at"].endswith("Z")


def test_metrics_before_any_snapshot_are_empty_not_an_error(db, api):
    from tests import factories

    team = factories.team()
    body = api(team.manager).get(f"/api/v1/projects/{team.project.pk}/metrics/").json()

    assert body["computed_at"] is None
    assert body["progress"]["total"] is None
    assert body["quality"]["agreement"] == {"metric": None, "value": None, "n": 0}
    agreement = api(team.manager).get(f"/api/v1/projects/{team.project.pk}/agreement/").json()
    assert agreement["overall"] == {"metric": None, "value": None, "n": 0}
    annotators = api(team.manager).get(f"/api/v1/projects/{team.project.pk}/annotators/").json()
    assert annotators["results"] == [] and annotators["count"] == 0


def test_per_annotator_figures_are_a_paginated_list_for_managers(world, api):
    url = f"/api/v1/projects/{world.project.pk}/annotators/"

    body = api(world.manager).get(url).json()

    assert {"count", "next", "previous", "results", "computed_at"} <= set(body)
    assert [row["username"] for row in body["results"]] == ["annotator_a", "annotator_b"]
    assert [row["username"] for row in api(world.manager).get(url, {"page_size": 1}).json()["results"]] \
        == ["annotator_a"]
    assert_error(api(world.reviewer).get(url), 403)
    assert_error(api(world.annotator).get(url), 403)


def test_my_metrics_are_my_row_and_the_anonymous_team_distribution(world, api):
    response = api(world.annotator).get("/api/v1/me/metrics/", {"project": world.project.pk})

    body = response.json()
    assert body["me"]["annotator_id"] == world.annotator.pk
    assert body["team"] == {"submitted": [2, 2]}
    assert "annotator_b" not in response.content.decode()


@pytest.mark.parametrize("query", [{}, {"project": "abc"}, {"project": ""}])
def test_my_metrics_need_a_project_id(world, api, query):
    assert_error(api(world.annotator).get("/api/v1/me/metrics/", query), 400, error_keys={"project"})


def test_my_metrics_of_a_project_i_am_not_in(world, api):
    assert_error(api(world.outsider).get("/api/v1/me/metrics/", {"project": world.project.pk}), 404)


def test_agreement_has_overall_per_label_and_pairwise(world, api):
    MetricSnapshot.objects.create(project=world.project, scope="project", kind="agreement", computed_at=timezone.now(),
                                  values={"overall": {"metric": "krippendorff_alpha", "value": 0.6, "n": 10},
                                          "per_label": {"cat": 0.7},
                                          "pairwise": {"annotators": ["a", "b"], "matrix": [[1, 0.6], [0.6, 1]]},
                                          "consensus": {"method": "dawid_skene", "n": 4, "labels": {"cat": 3}}})

    body = api(world.manager).get(f"/api/v1/projects/{world.project.pk}/agreement/").json()

    assert body["overall"]["value"] == 0.6 and body["per_label"] == {"cat": 0.7}
    assert body["pairwise"]["matrix"] == [[1, 0.6], [0.6, 1]]
    assert body["consensus"] == {"method": "dawid_skene", "n": 4, "labels": {"cat": 3}}


# --- alerts ----------------------------------------------------------------------------------------------------------

ALERT_FIELDS = {"id", "kind", "severity", "project", "batch", "gate", "message", "state", "created_at",
                "acknowledged_by", "acknowledged_at", "resolved_at"}


def test_alerts_of_the_projects_i_manage(world, api):
    mine = api(world.manager).get("/api/v1/alerts/").json()["results"]
    everything = api(world.admin).get("/api/v1/alerts/").json()["results"]

    assert [a["id"] for a in mine] == [world.alert.pk]
    assert ALERT_FIELDS <= set(mine[0])
    assert mine[0]["kind"] == "gate_breach" and mine[0]["gate"] == world.gate.pk and mine[0]["state"] == "open"
    assert {a["id"] for a in everything} == {world.alert.pk, world.other_alert.pk}
    for user in (world.annotator, world.reviewer, world.outsider):
        assert api(user).get("/api/v1/alerts/").json()["results"] == []


def test_alerts_filter_by_project_and_state(world, api):
    resolved = Alert.objects.create(kind="throughput_dip", project=world.project, message="Slow Monday",
                                    state="resolved", resolved_at=timezone.now())
    client = api(world.admin)

    def ids(**query):
        return {a["id"] for a in client.get("/api/v1/alerts/", query).json()["results"]}

    assert ids(project=world.project.pk) == {world.alert.pk, resolved.pk}
    assert ids(project=world.project.pk, state="open") == {world.alert.pk}
    assert ids(state="resolved") == {resolved.pk}
    assert ids(kind="throughput_dip") == {resolved.pk}
    assert ids(project=999999) == set()
    assert api(world.manager).get("/api/v1/alerts/", {"project": world.other_project.pk}).json()["results"] == []


@pytest.mark.parametrize("query, field", [({"state": "closed"}, "state"), ({"project": "abc"}, "project"),
                                          ({"project": "9" * 30}, "project"), ({"kind": "fire"}, "kind")])
def test_an_invalid_alert_filter_is_a_400_naming_it(world, api, query, field):
    assert_error(api(world.manager).get("/api/v1/alerts/", query), 400, error_keys={field})


def test_acknowledging_an_alert_records_who_and_when_and_only_once(world, api):
    url = f"/api/v1/alerts/{world.alert.pk}/acknowledge/"

    response = api(world.manager).post(url)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"] == "acknowledged" and body["acknowledged_by"] == "manager" and body["acknowledged_at"]
    world.alert.refresh_from_db()
    acknowledged_at = world.alert.acknowledged_at
    again = api(world.admin).post(url)
    assert_error(again, 409, detail_contains="acknowledged")
    world.alert.refresh_from_db()
    assert (world.alert.acknowledged_by, world.alert.acknowledged_at) == (world.manager, acknowledged_at)


def test_only_the_project_s_managers_acknowledge(world, api):
    for user in (world.annotator, world.reviewer, world.outsider):
        assert_error(api(user).post(f"/api/v1/alerts/{world.alert.pk}/acknowledge/"), 404)
    assert_error(api(world.manager).post(f"/api/v1/alerts/{world.other_alert.pk}/acknowledge/"), 404)
    world.alert.refresh_from_db()
    world.other_alert.refresh_from_db()
    assert world.alert.state == world.other_alert.state == "open"
