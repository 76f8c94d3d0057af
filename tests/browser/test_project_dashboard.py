"""The project dashboard and the admin index in headless Chromium, on the (small) demo: every chart is drawn by
plotly.js as SVG with its data points, the figures match the API's, and the tables open. Screenshots go to
docs/screenshots/dashboard-project.png and admin-index.png."""

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from apps.core import demo
from apps.projects.models import Project
from tests.browser.conftest import login

pytestmark = pytest.mark.django_db(transaction=True)

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHARTS = ("chart-status", "chart-burndown", "chart-throughput-day", "chart-heatmap", "chart-throughput-hour",
          "chart-review", "chart-quality", "chart-errors")


@pytest.fixture
def seeded(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    call_command("seed_demo", "--small", stdout=io.StringIO())
    return Project.objects.get(slug=demo.SENTIMENT)


def test_the_dashboard_draws_every_chart_with_its_data_and_the_api_s_figures(seeded, page):
    # given the manager of the demo's sentiment project
    login(page, "daniel", "daniel-demo-1")
    api = page.request.get(f"/api/v1/projects/{seeded.pk}/metrics/").json()
    data = page.request.get(f"/projects/{seeded.pk}/dashboard/?format=json").json()
    # when they open its dashboard
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"/projects/{seeded.pk}/dashboard/")
    # then plotly has drawn every chart as SVG
    for chart in CHARTS:
        expect(page.locator(f"#{chart}")).to_have_attribute("data-drawn", "true", timeout=15_000)
        assert page.locator(f"#{chart} svg.main-svg").count() >= 1, chart
    # with one point per figure: a bar per day with submissions, a marker per day of history, a segment per status
    assert page.locator("#chart-throughput-day .barlayer .point").count() == len(data["throughput"]["per_day"]) > 5
    assert page.locator("#chart-burndown .scatterlayer .trace").first.locator(".point").count() == len(
        data["burndown"]) > 5
    statuses = [n for n in api["progress"]["by_status"].values() if n]
    assert page.locator("#chart-status .barlayer .point").count() == len(statuses)
    assert page.locator("#chart-heatmap .heatmaplayer image").count() == 1
    assert page.locator("#chart-quality .scatterlayer .point").count() >= len(data["quality"]["per_day"])
    gates = [g for g in data["quality"]["gates"] if g["metric"] in ("agreement", "gold_accuracy", "acceptance_rate")]
    assert page.locator("#chart-quality .shapelayer path").count() == len(gates) > 0  # the gate thresholds
    assert page.locator("#chart-errors .barlayer .point").count() == len(api["quality"]["error_types"])
    # and the key figures are the API's
    expect(page.locator("#kpi-accepted-pct")).to_have_text(f"{api['progress']['accepted_pct']:.1f} %")
    expect(page.locator("#kpi-eta")).to_have_text(api["progress"]["eta"])
    # a table opens under its chart, with the same numbers
    page.locator("#h-throughput ~ details summary").click()
    rows = page.locator("#h-throughput ~ details table tbody tr")
    expect(rows).to_have_count(len(data["throughput"]["per_day"]))
    page.locator("#h-throughput ~ details summary").click()
    page.screenshot(path=str(SCREENSHOTS / "dashboard-project.png"), full_page=True)


def test_the_admin_index_shows_each_project_at_a_glance(seeded, page):
    login(page, "admin", "admin-demo-1")
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto("/admin/")
    rows = page.locator("#project-summaries tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator(f'#project-summaries tr[data-project="{seeded.pk}"] .lp-bar span.accepted')).to_have_count(1)
    page.locator(f'#project-summaries a[href="/projects/{seeded.pk}/dashboard/"]').first.wait_for()
    page.screenshot(path=str(SCREENSHOTS / "admin-index.png"), full_page=True)
