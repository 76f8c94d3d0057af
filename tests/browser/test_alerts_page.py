"""The managers' bell and alerts page in headless Chromium: the bell counts the unread alerts of the manager's
project, opens the alerts page (which marks them read), and the manager acknowledges and resolves alerts there; an
annotator sees no bell. Screenshot: docs/screenshots/alerts.png."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.projects import services as project_services
from apps.projects.models import Membership
from apps.quality.models import Alert
from tests import factories
from tests.browser.conftest import login

pytestmark = pytest.mark.django_db(transaction=True)

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


class Floor:
    """Project "Street scenes" (manager boss, annotator ann) with three live alerts, and another project's alert."""

    def __init__(self):
        self.project = factories.project(slug="street-scenes")
        self.boss = factories.member(self.project, Membership.Role.MANAGER, "boss")
        self.annotator = factories.member(self.project, Membership.Role.ANNOTATOR, "ann")
        batch = factories.batch(self.project, name="Night shots")
        task = factories.tasks(batch, 1, external_id="img-031")[0]
        gate = project_services.gate_create(project=self.project, actor=None, metric="agreement", comparator="gte",
                                            threshold=0.6, min_samples=20, batch=batch)
        now = timezone.now()
        self.gate_alert = self.alert(now - timedelta(hours=3), kind="gate_breach", severity="critical", batch=batch,
                                     gate=gate, details={"metric": "agreement", "comparator": "gte",
                                                         "threshold": 0.6, "value": 0.412, "n": 57,
                                                         "batch": "Night shots"})
        self.dip_alert = self.alert(now - timedelta(hours=2), kind="throughput_dip", severity="warning",
                                    details={"day": "2026-11-19", "submitted": 9, "trailing_mean": 20.0,
                                             "ratio": 0.5})
        self.task_alert = self.alert(now - timedelta(hours=1), kind="low_agreement_task", severity="info", task=task,
                                     details={"task_id": task.pk, "external_id": "img-031", "agreement": 0.25,
                                              "threshold": 0.6, "routing": "senior_review"})
        other = factories.project(slug="elsewhere")
        self.other_alert = Alert.objects.create(project=other, kind="throughput_dip", message="Elsewhere.")

    def alert(self, at, **fields):
        alert = Alert.objects.create(project=self.project, message="Stored English text.", **fields)
        Alert.objects.filter(pk=alert.pk).update(created_at=at)
        return alert


def test_the_bell_leads_a_manager_to_the_alerts_they_acknowledge_and_resolve(page):
    floor = Floor()
    login(page, "boss")
    page.goto("/")
    bell = page.locator("#alert-bell")
    expect(bell.locator(".bell-count")).to_have_text("3")

    bell.click()
    page.wait_for_url("**/alerts/")
    cards = page.locator("#alerts > li")
    expect(cards).to_have_count(3)
    # newest first, each in words, with its project, batch or task
    expect(cards.nth(0)).to_contain_text("Task #%d (“img-031”) has low agreement: 0.250" % floor.task_alert.task_id)
    expect(cards.nth(0)).to_contain_text("It goes to a senior reviewer.")
    expect(cards.nth(1)).to_contain_text("Throughput dip: 9 submissions on 2026-11-19 (UTC)")
    expect(cards.nth(2)).to_contain_text("Quality gate breached on batch “Night shots”: Agreement is 0.412")
    expect(cards.nth(2)).to_contain_text("batch “Night shots”")
    expect(page.locator(".badge.new")).to_have_count(3)
    expect(page.locator("#alert-bell .bell-count")).to_have_count(0)  # shown, so read
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "alerts.png"), full_page=True)

    # acknowledge the gate breach
    gate_card = page.locator(f"#alert-{floor.gate_alert.pk}")
    gate_card.get_by_role("button", name="Acknowledge").click()
    expect(page.locator(".message")).to_contain_text(f"Alert #{floor.gate_alert.pk} acknowledged.")
    gate_card = page.locator(f"#alert-{floor.gate_alert.pk}")
    expect(gate_card).to_contain_text("Acknowledged by boss on")
    expect(gate_card.get_by_role("button", name="Acknowledge")).to_have_count(0)
    # resolve the throughput dip
    page.locator(f"#alert-{floor.dip_alert.pk}").get_by_role("button", name="Resolve").click()
    expect(page.locator(".message")).to_contain_text(f"Alert #{floor.dip_alert.pk} resolved.")
    expect(page.locator(f"#alert-{floor.dip_alert.pk}")).to_contain_text("Resolved by boss on")
    expect(page.locator(".badge.new")).to_have_count(0)

    # only what is still live: the gate breach (acknowledged) and the task
    page.select_option("#filter-state", "live")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/alerts/?*state=live*")
    expect(cards).to_have_count(2)
    expect(page.locator(f"#alert-{floor.dip_alert.pk}")).to_have_count(0)

    floor.gate_alert.refresh_from_db()
    floor.dip_alert.refresh_from_db()
    assert (floor.gate_alert.state, floor.gate_alert.acknowledged_by) == ("acknowledged", floor.boss)
    assert (floor.dip_alert.state, floor.dip_alert.resolved_by) == ("resolved", floor.boss)
    floor.other_alert.refresh_from_db()
    assert floor.other_alert.state == "open"
    assert page.js_errors == []


def test_an_annotator_sees_no_bell_and_no_alerts_page(page):
    Floor()
    login(page, "ann")
    page.goto("/")
    expect(page.locator("header.topbar")).to_be_visible()
    expect(page.locator("#alert-bell")).to_have_count(0)
    response = page.goto("/alerts/")
    assert response.status == 403
