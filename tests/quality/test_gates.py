"""Quality gates and alerts after a recompute: pending below the sample, passing, breached with one alert that
resolves itself, e-mail and webhook, batches blocked; throughput dips and outlier annotators."""

from datetime import datetime, timedelta, timezone as dt_timezone
from unittest import mock

import pytest
from django.core import mail
from django.utils import timezone

from apps.core.errors import TransitionError
from apps.projects import services as project_services
from apps.projects.models import Batch, Membership, QualityGate
from apps.quality import gates, services as quality_services
from apps.quality.models import Alert, MetricSnapshot, Webhook, WebhookDelivery
from apps.tasks import services
from apps.tasks.models import TaskEvent
from tests import factories

pytestmark = pytest.mark.django_db


class GoldProject:
    """A classification project (overlap 1, no review) with 4 gold tasks (answer: cat), 5 annotators, a manager
    with an e-mail address, a webhook for alert.raised and a gate: gold accuracy ≥ 0.8 over at least 4 answers."""

    def __init__(self):
        self.project = factories.project(slug="gated", review_mode="none")
        self.manager = factories.member(self.project, Membership.Role.MANAGER, "boss")
        self.people = [factories.member(self.project, Membership.Role.ANNOTATOR, f"g{i}") for i in range(5)]
        self.batch = factories.batch(self.project)
        self.gold = factories.tasks(self.batch, 4, is_gold=True, gold_answer={"label": "cat"})
        self.free = [(task, person) for person in self.people for task in self.gold]
        self.webhook = Webhook.objects.create(project=self.project, url="https://hooks.example.org/lp", secret="s3",
                                              events=["alert.raised"])
        self.gate = project_services.gate_create(project=self.project, actor=None, metric="gold_accuracy",
                                                 comparator="gte", threshold=0.8, min_samples=4)

    def answer(self, n, label):
        for _ in range(n):
            task, person = self.free.pop(0)
            assignment = services.assignment_assign(task=task, annotator=person)
            services.assignment_submit(assignment=assignment, actor=person, result={"label": label})


def recompute(project, capture):
    """A full pass as the worker runs it, its on-commit work (e-mail) included; webhook sending left out."""
    with mock.patch("apps.quality.tasks.webhook_deliver.delay"), capture(execute=True):
        quality_services.quality_recompute_full(project_id=project.pk)


def test_gate_goes_pending_passing_breached_passing_with_one_alert(django_capture_on_commit_callbacks):
    world = GoldProject()
    gate = world.gate

    def evaluate():
        recompute(world.project, django_capture_on_commit_callbacks)
        gate.refresh_from_db()
        return gate.state, gate.last_value, gate.last_n

    # no answers, then 2: below the minimum sample, pending (not breached)
    assert evaluate() == ("pending", None, 0)
    world.answer(2, "cat")
    assert evaluate() == ("pending", 1.0, 2)
    # 4 right answers: passing
    world.answer(2, "cat")
    assert evaluate() == ("passing", 1.0, 4)
    assert Alert.objects.count() == 0 and mail.outbox == []
    # 2 wrong ones: 4 of 6, breached; one alert, one e-mail to the manager, one webhook delivery
    world.answer(2, "dog")
    assert evaluate() == ("breached", pytest.approx(4 / 6), 6)
    alert = Alert.objects.get()
    assert (alert.kind, alert.state, alert.gate, alert.severity) == ("gate_breach", "open", gate, "critical")
    assert "Gold accuracy is 0.667" in alert.message
    assert [m.to for m in mail.outbox] == [["boss@example.org"]]
    assert "Quality gate breached" in mail.outbox[0].body and mail.outbox[0].from_email == "labelportal@localhost"
    delivery = WebhookDelivery.objects.get()
    assert delivery.event == "alert.raised" and delivery.payload["data"]["alert"] == alert.pk
    # still breached, acknowledged meanwhile: the same alert, nothing sent again
    quality_services.alert_acknowledge(alert=alert, actor=world.manager)
    world.answer(1, "dog")
    assert evaluate() == ("breached", pytest.approx(4 / 7), 7)
    assert Alert.objects.count() == 1 and len(mail.outbox) == 1 and WebhookDelivery.objects.count() == 1
    # right answers bring it back over 0.8: passing, and the alert resolves itself
    world.answer(9, "cat")
    assert evaluate() == ("passing", pytest.approx(13 / 16), 16)
    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.resolved_at is not None
    assert Alert.objects.count() == 1
    # each verdict change is in the gate's history
    assert list(gate.history.order_by("history_date").values_list("state", flat=True)).count("breached") >= 1


def test_a_second_live_alert_of_one_gate_is_refused_by_the_database():
    world = GoldProject()
    first = gates._alert_raise(project=world.project, kind="gate_breach", severity="critical", gate=world.gate,
                               message="breach")
    twin = gates._alert_raise(project=world.project, kind="gate_breach", severity="critical", gate=world.gate,
                              message="breach")
    assert first is not None and twin is None
    assert Alert.objects.filter(gate=world.gate).count() == 1


def disagreeing_batch():
    project = factories.project(slug="blocking", overlap=2, review_mode="none")
    manager = factories.member(project, Membership.Role.MANAGER, "lead")
    people = [factories.member(project, Membership.Role.ANNOTATOR, f"b{i}") for i in range(2)]
    batch = factories.batch(project, name="Disputed")
    for task in factories.tasks(batch, 3):
        for person, label in zip(people, ["cat", "dog"]):
            assignment = services.assignment_assign(task=task, annotator=person)
            services.assignment_submit(assignment=assignment, actor=person, result={"label": label})
    project_services.batch_review(batch=batch, actor=manager)
    return project, manager, batch


def test_a_breached_batch_gate_blocks_the_batch_in_review(django_capture_on_commit_callbacks):
    # given a batch in review whose 3 tasks nobody agreed on, and its gate: agreement ≥ 0.6 over 2 tasks
    project, manager, batch = disagreeing_batch()
    gate = project_services.gate_create(project=project, actor=manager, metric="agreement", comparator="gte",
                                        threshold=0.6, min_samples=2, batch=batch)
    # when the figures are computed
    recompute(project, django_capture_on_commit_callbacks)
    # then the gate is breached, the batch blocked (with its event) and there is one alert on the batch
    gate.refresh_from_db()
    batch.refresh_from_db()
    assert gate.state == "breached" and gate.last_n == 3
    assert batch.status == Batch.Status.BLOCKED
    assert TaskEvent.objects.filter(batch=batch, type="batch_blocked", payload__gates=[gate.pk]).count() == 1
    alert = Alert.objects.get(gate=gate)
    assert alert.batch == batch and "batch “Disputed”" in alert.message
    # and it cannot be completed until the gate passes or a manager overrides with a reason
    with pytest.raises(TransitionError, match="quality gate"):
        project_services.batch_complete(batch=batch, actor=manager)
    # a second pass changes nothing
    recompute(project, django_capture_on_commit_callbacks)
    assert Alert.objects.count() == 1
    assert TaskEvent.objects.filter(batch=batch, type="batch_blocked").count() == 1


def test_a_breached_project_gate_blocks_batches_in_review_but_not_active_ones(django_capture_on_commit_callbacks):
    project, manager, batch = disagreeing_batch()
    active = factories.batch(project, name="Still running")
    gate = project_services.gate_create(project=project, actor=manager, metric="agreement", comparator="gte",
                                        threshold=0.6, min_samples=2)
    recompute(project, django_capture_on_commit_callbacks)
    batch.refresh_from_db()
    active.refresh_from_db()
    assert batch.status == Batch.Status.BLOCKED and active.status == Batch.Status.ACTIVE
    assert Alert.objects.get(gate=gate).batch is None


def test_an_inactive_gate_is_not_evaluated(django_capture_on_commit_callbacks):
    project, manager, batch = disagreeing_batch()
    gate = project_services.gate_create(project=project, actor=manager, metric="agreement", comparator="gte",
                                        threshold=0.6, min_samples=2)
    QualityGate.objects.filter(pk=gate.pk).update(is_active=False)
    recompute(project, django_capture_on_commit_callbacks)
    gate.refresh_from_db()
    batch.refresh_from_db()
    assert gate.state == "pending" and batch.status == Batch.Status.IN_REVIEW and not Alert.objects.exists()


# --- throughput dips ----------------------------------------------------------------------------------------------

def submissions_on(project, day, n):
    """n submission events at noon (UTC) of `day`."""
    at = datetime.combine(day, datetime.min.time(), tzinfo=dt_timezone.utc) + timedelta(hours=12)
    with mock.patch("django.utils.timezone.now", return_value=at):
        TaskEvent.objects.bulk_create([TaskEvent(project=project, type="submitted") for _ in range(n)])


def test_a_throughput_dip_raises_one_alert_until_the_next_day_is_normal(django_capture_on_commit_callbacks):
    project = factories.project(slug="pace")
    factories.member(project, Membership.Role.MANAGER, "pacer")
    today = datetime(2026, 11, 20, tzinfo=dt_timezone.utc).date()
    for days_ago in range(2, 9):
        submissions_on(project, today - timedelta(days=days_ago), 20)
    submissions_on(project, today - timedelta(days=1), 9)  # below half of 20
    noon = datetime.combine(today, datetime.min.time(), tzinfo=dt_timezone.utc) + timedelta(hours=12)

    assert gates.throughput_dip(project, now=noon) == {"day": "2026-11-19", "submitted": 9, "trailing_mean": 20.0,
                                                       "dip": True}
    with django_capture_on_commit_callbacks(execute=True), mock.patch("apps.quality.tasks.webhook_deliver.delay"):
        gates.throughput_alert_evaluate(project, now=noon)
        gates.throughput_alert_evaluate(project, now=noon + timedelta(hours=1))
    alert = Alert.objects.get()
    assert alert.kind == "throughput_dip" and "9 submissions on 2026-11-19" in alert.message
    assert len(mail.outbox) == 1
    # the next day is back to normal: the alert resolves itself
    submissions_on(project, today, 20)
    gates.throughput_alert_evaluate(project, now=noon + timedelta(days=1))
    alert.refresh_from_db()
    assert alert.state == "resolved"


def test_no_dip_without_throughput_to_fall_from_or_with_no_work_left():
    project = factories.project(slug="quiet")
    today = timezone.now().date()
    assert gates.throughput_dip(project)["dip"] is False  # nothing ever submitted
    for days_ago in range(2, 9):
        submissions_on(project, today - timedelta(days=days_ago), 10)
    assert gates.throughput_dip(project)["dip"] is True
    MetricSnapshot.objects.create(project=project, scope="project", kind="progress", computed_at=timezone.now(),
                                  values={"eta": {"remaining_annotations": 0}})
    gates.throughput_alert_evaluate(project)
    assert not Alert.objects.exists()


# --- outlier annotators -------------------------------------------------------------------------------------------

def annotators_snapshot(project, flags_by_user):
    MetricSnapshot.objects.create(
        project=project, scope="project", kind="annotators", computed_at=timezone.now(),
        values={"annotators": [{"annotator_id": user.pk, "username": user.username, "flags": flags}
                               for user, flags in flags_by_user]})


def test_one_live_alert_per_outlier_annotator_resolved_when_the_flags_go():
    project = factories.project(slug="outliers")
    slow, fine = (factories.member(project, Membership.Role.ANNOTATOR, name) for name in ("slowpoke", "steady"))
    with mock.patch("apps.quality.tasks.webhook_deliver.delay"):
        annotators_snapshot(project, [(slow, ["slow"]), (fine, [])])
        gates.outlier_alerts_evaluate(project)
        gates.outlier_alerts_evaluate(project)
        alert = Alert.objects.get()
        assert alert.kind == "outlier_annotator" and alert.message.startswith(f"Annotator #{slow.pk} (slowpoke)")
        assert "slow" in alert.message
        # other flags: the same alert says so
        annotators_snapshot(project, [(slow, ["slow", "low_gold"]), (fine, [])])
        gates.outlier_alerts_evaluate(project)
        alert.refresh_from_db()
        assert Alert.objects.count() == 1 and "low_gold" in alert.message
        # no flags any more: resolved
        annotators_snapshot(project, [(slow, []), (fine, [])])
        gates.outlier_alerts_evaluate(project)
    alert.refresh_from_db()
    assert alert.state == "resolved" and Alert.objects.count() == 1


# --- resolved by a manager ----------------------------------------------------------------------------------------


def test_a_breach_resolved_by_hand_is_not_raised_again_until_the_gate_passes_and_breaks_anew(
        django_capture_on_commit_callbacks):
    world = GoldProject()
    world.answer(4, "cat")
    world.answer(2, "dog")
    recompute(world.project, django_capture_on_commit_callbacks)
    alert = Alert.objects.get()
    # when the manager resolves it while the gate is still breached, and more work is counted
    quality_services.alert_resolve(alert=alert, actor=world.manager)
    world.answer(1, "dog")
    recompute(world.project, django_capture_on_commit_callbacks)
    # then no new alert, no new e-mail
    world.gate.refresh_from_db()
    assert world.gate.state == "breached"
    assert Alert.objects.count() == 1 and len(mail.outbox) == 1
    # when the gate passes and breaks again: a new breach, a new alert
    world.answer(9, "cat")
    recompute(world.project, django_capture_on_commit_callbacks)
    world.gate.refresh_from_db()
    assert world.gate.state == "passing"
    world.gate.threshold = 0.95
    world.gate.save()
    recompute(world.project, django_capture_on_commit_callbacks)
    assert Alert.objects.filter(state="open", gate=world.gate).count() == 1 and len(mail.outbox) == 2


def test_a_dip_or_an_outlier_resolved_by_hand_stays_resolved_for_the_same_day_or_flags(
        django_capture_on_commit_callbacks):
    project = factories.project(slug="handled")
    manager = factories.member(project, Membership.Role.MANAGER, "handler")
    slow = factories.member(project, Membership.Role.ANNOTATOR, "slowhand")
    today = datetime(2026, 11, 20, tzinfo=dt_timezone.utc).date()
    for days_ago in range(2, 9):
        submissions_on(project, today - timedelta(days=days_ago), 20)
    submissions_on(project, today - timedelta(days=1), 9)
    noon = datetime.combine(today, datetime.min.time(), tzinfo=dt_timezone.utc) + timedelta(hours=12)
    with django_capture_on_commit_callbacks(execute=True), mock.patch("apps.quality.tasks.webhook_deliver.delay"):
        dip = gates.throughput_alert_evaluate(project, now=noon)
        annotators_snapshot(project, [(slow, ["slow"])])
        [outlier] = gates.outlier_alerts_evaluate(project)
        for alert in (dip, outlier):
            quality_services.alert_resolve(alert=alert, actor=manager)
        # the same dip day and the same flags: nothing raised again
        gates.throughput_alert_evaluate(project, now=noon + timedelta(hours=2))
        assert gates.outlier_alerts_evaluate(project) == []
        assert Alert.objects.filter(state="open").count() == 0
        # other flags: a new alert
        annotators_snapshot(project, [(slow, ["slow", "low_gold"])])
        [again] = gates.outlier_alerts_evaluate(project)
    assert again.details["flags"] == ["slow", "low_gold"] and again.state == "open"
