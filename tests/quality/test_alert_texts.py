"""What an alert says, in the reader's language: every kind rendered from its details (English here; Spanish keeps
the same figures, written the Spanish way), old alerts without details keep their stored message, the raisers store
details, and the managers' e-mail is rendered from templates in the recipient's language with a portal link."""

from unittest import mock

import pytest
from django.core import mail
from django.test import override_settings
from django.utils import translation

from apps.projects import services as project_services
from apps.projects.models import Membership, Project
from apps.quality import alerts, gates
from apps.quality.api.serializers import AlertSerializer
from apps.quality.models import Alert, MetricSnapshot
from tests import factories

pytestmark = pytest.mark.django_db

GATE = {"metric": "gold_accuracy", "comparator": "gte", "threshold": 0.8, "value": 4 / 6, "n": 6, "batch": None}
DIP = {"day": "2026-11-19", "submitted": 9, "trailing_mean": 20.0, "ratio": 0.5}
OUTLIER = {"annotator_id": 7, "username": "slowpoke", "flags": ["slow", "low_gold"]}
PAUSED = {"annotator_id": 7, "username": "slowpoke", "project": "Cats", "paused": True, "flag": "low_gold",
          "gold_accuracy": 0.42}
LOW_TASK = {"task_id": 31, "external_id": "img-031", "agreement": 0.25, "threshold": 0.6, "routing": "senior_review"}

ENGLISH = [
    ("gate_breach", GATE, "Quality gate breached on the project: Gold accuracy is 0.667, required ≥ 0.8 "
                          "(over 6 samples)."),
    ("gate_breach", {**GATE, "batch": "Disputed", "n": 1}, "Quality gate breached on batch “Disputed”: Gold accuracy "
                                                           "is 0.667, required ≥ 0.8 (over 1 sample)."),
    ("throughput_dip", DIP, "Throughput dip: 9 submissions on 2026-11-19 (UTC), below 50% of the trailing 7-day "
                            "mean (20.0 a day)."),
    ("outlier_annotator", OUTLIER, "Annotator #7 (slowpoke) is far from the team: slow, low gold accuracy (robust "
                                   "z-score beyond 3 over at least 20 tasks)."),
    ("outlier_annotator", PAUSED, "Annotator #7 (slowpoke) was paused on the project “Cats”: their gold accuracy "
                                  "(0.420) is too low."),
    ("outlier_annotator", {**PAUSED, "gold_accuracy": None}, "Annotator #7 (slowpoke) was paused on the project "
                                                              "“Cats”: their gold accuracy is too low."),
    ("low_agreement_task", LOW_TASK, "Task #31 (“img-031”) has low agreement: 0.250, below the project's threshold "
                                     "of 0.6. It goes to a senior reviewer."),
    ("low_agreement_task", {**LOW_TASK, "external_id": "", "routing": "extra_annotator"},
     "Task #31 has low agreement: 0.250, below the project's threshold of 0.6. It gets one more annotator."),
    ("low_agreement_task", {**LOW_TASK, "routing": None}, "Task #31 (“img-031”) has low agreement: 0.250, below the "
                                                          "project's threshold of 0.6."),
]


@pytest.mark.parametrize(("kind", "details", "expected"), ENGLISH)
def test_each_kind_renders_in_english(kind, details, expected):
    with translation.override("en"):
        assert alerts.alert_text_render(kind, details, fallback="stored") == expected


@pytest.mark.parametrize(("kind", "details", "expected"), ENGLISH)
def test_in_spanish_the_same_figures_are_written_the_spanish_way(kind, details, expected):
    # The Spanish catalogue comes later: what is checked is that the text goes through the active language (the
    # figures follow its number format) and says the same thing (the same names and figures), not its wording.
    with translation.override("es"):
        text = alerts.alert_text_render(kind, details, fallback="stored")
    assert text and text != "stored"
    for english_figure in ("0.667", "0.420", "0.250", "20.0"):
        if english_figure in expected:
            assert english_figure.replace(".", ",") in text and english_figure not in text
    for name in ("slowpoke", "Disputed", "Cats", "img-031", "2026-11-19", "#31", "#7"):
        assert (name in text) == (name in expected)


def test_every_kind_goes_through_gettext_with_its_english_msgid():
    seen = []

    def fake_gettext(message):
        seen.append(message)
        return message

    def fake_ngettext(singular, plural, n):
        seen.append(singular)
        return singular if n == 1 else plural

    with mock.patch.object(alerts, "_", side_effect=fake_gettext), \
            mock.patch.object(alerts, "ngettext", side_effect=fake_ngettext):
        for kind, details, _expected in ENGLISH:
            alerts.alert_text_render(kind, details)
    assert any(m.startswith("Quality gate breached on the project: %(metric)s") for m in seen)
    assert any(m.startswith("Quality gate breached on batch “%(batch)s”") for m in seen)
    assert any(m.startswith("Throughput dip: %(submitted)d submission on") for m in seen)
    assert any(m.startswith("Annotator #%(id)s (%(username)s) is far from the team") for m in seen)
    assert any(m.startswith("Annotator #%(id)s (%(username)s) was paused") for m in seen)
    assert any(m.startswith("Task #%(task)s (“%(external_id)s”) has low agreement") for m in seen)
    assert {"slow", "low gold accuracy", "It goes to a senior reviewer."} <= set(seen)


def test_an_alert_without_details_keeps_its_stored_message():
    project = factories.project(slug="old-alerts")
    old = Alert.objects.create(project=project, kind="gate_breach", message="Raised before details existed.")
    odd = Alert.objects.create(project=project, kind="gate_breach", message="Odd details.", details={"n": "x"})
    with translation.override("es"):
        assert alerts.alert_text(old) == "Raised before details existed."
        assert alerts.alert_text(odd) == "Odd details."


def test_the_raisers_store_details_and_an_english_message_whatever_the_active_language():
    project = factories.project(slug="raisers")
    batch = factories.batch(project, name="Disputed")
    gate = project_services.gate_create(project=project, actor=None, metric="agreement", comparator="gte",
                                        threshold=0.6, min_samples=2, batch=batch)
    slow = factories.member(project, Membership.Role.ANNOTATOR, "slowpoke")
    MetricSnapshot.objects.create(project=project, scope="project", kind="annotators", computed_at="2026-11-20T12:00Z",
                                  values={"annotators": [{"annotator_id": slow.pk, "username": "slowpoke",
                                                          "flags": ["slow"]}]})
    with mock.patch("apps.quality.tasks.webhook_deliver.delay"), translation.override("es"):
        gates._alert_raise(project=project, kind="gate_breach", severity="critical", batch=batch, gate=gate,
                           message=gates._gate_message(gate, 0.25, 3), details=gates._gate_details(gate, 0.25, 3))
        gates.outlier_alerts_evaluate(project)
    breach = Alert.objects.get(kind="gate_breach")
    assert breach.details == {"metric": "agreement", "comparator": "gte", "threshold": 0.6, "value": 0.25, "n": 3,
                              "batch": "Disputed"}
    assert breach.message == ("Quality gate breached on batch “Disputed”: Agreement is 0.250, required ≥ 0.6 "
                              "(over 3 samples).")
    outlier = Alert.objects.get(kind="outlier_annotator")
    assert outlier.details == {"annotator_id": slow.pk, "username": "slowpoke", "flags": ["slow"]}
    with translation.override("en"):
        assert alerts.alert_text(breach) == breach.message
    # an outlier alert raised before details existed is still found by its message (no second alert)
    Alert.objects.filter(pk=outlier.pk).update(details={})
    gates.outlier_alerts_evaluate(project)
    assert Alert.objects.filter(kind="outlier_annotator").count() == 1
    assert Alert.objects.get(kind="outlier_annotator").details["annotator_id"] == slow.pk


def test_a_pause_alert_is_left_alone_by_the_outlier_evaluator():
    project = factories.project(slug="paused")
    slow = factories.member(project, Membership.Role.ANNOTATOR, "slowpoke")
    with mock.patch("apps.quality.tasks.webhook_deliver.delay"):
        pause = gates._alert_raise(project=project, kind="outlier_annotator", severity="warning",
                                   message="Annotator paused.", details={**PAUSED, "annotator_id": slow.pk})
        gates.outlier_alerts_evaluate(project)  # no flags at all: an outlier alert would be resolved
    pause.refresh_from_db()
    assert pause.state == "open"


def test_the_api_gives_the_text_in_the_callers_language_and_keeps_the_english_message():
    project = factories.project(slug="api-text")
    alert = Alert.objects.create(project=project, kind="throughput_dip", message="Throughput dip (stored).",
                                 details=DIP)
    with translation.override("es"):
        data = AlertSerializer(alert).data
    assert data["message"] == "Throughput dip (stored)."
    assert "20,0" in data["text"] and data["details"] == DIP and data["resolved_by"] is None


@override_settings(PORTAL_URL="https://labels.example.org/", LANGUAGE_CODE="en")
def test_the_email_goes_to_each_manager_only_in_their_language_with_a_link(django_capture_on_commit_callbacks):
    project = factories.project(slug="mailed")
    Project.objects.filter(pk=project.pk).update(name="Cats <&> dogs")
    project.refresh_from_db()
    boss = factories.member(project, Membership.Role.MANAGER, "boss")
    nomail = factories.member(project, Membership.Role.MANAGER, "nomail")
    nomail.email = ""
    nomail.save(update_fields=["email"])
    factories.member(project, Membership.Role.REVIEWER, "reviewer")
    factories.member(project, Membership.Role.ANNOTATOR, "annotator")
    other = factories.project(slug="elsewhere")
    factories.member(other, Membership.Role.MANAGER, "otherboss")
    languages = []

    def language_of(user):
        languages.append(user.username)
        return "en"

    with mock.patch("apps.quality.tasks.webhook_deliver.delay"), django_capture_on_commit_callbacks(execute=True), \
            mock.patch.object(gates, "recipient_language", side_effect=language_of):
        alert = gates._alert_raise(project=project, kind="outlier_annotator", severity="warning",
                                   message="stored", details={**OUTLIER, "username": "<b>slow</b>"})
    assert languages == ["boss"]
    assert [m.to for m in mail.outbox] == [[boss.email]]
    email = mail.outbox[0]
    assert email.subject == "[LabelPortal] Cats <&> dogs: Outlier annotator"
    assert "Annotator #7 (<b>slow</b>) is far from the team: slow, low gold accuracy" in email.body
    assert "Project: Cats <&> dogs" in email.body  # plain text: nothing HTML-escaped
    assert f"https://labels.example.org/alerts/?alert={alert.pk}" in email.body
    assert f"Alert #{alert.pk} (Warning)" in email.body


def test_the_email_is_rendered_in_the_recipients_language(django_capture_on_commit_callbacks):
    project = factories.project(slug="mailed-es")
    factories.member(project, Membership.Role.MANAGER, "jefa")
    with mock.patch("apps.quality.tasks.webhook_deliver.delay"), django_capture_on_commit_callbacks(execute=True), \
            mock.patch.object(gates, "recipient_language", return_value="es"), translation.override("en"):
        gates._alert_raise(project=project, kind="throughput_dip", severity="warning", message="stored",
                           details=DIP)
    # rendered under Spanish: the figures in the Spanish number format, whatever the catalogue says yet
    assert "20,0" in mail.outbox[0].body and "20.0" not in mail.outbox[0].body
    assert translation.get_language() == "en"


def test_low_agreement_tasks_are_not_emailed_one_by_one(django_capture_on_commit_callbacks):
    # given a project with a manager who gets e-mails
    project = factories.project(slug="many-low-tasks")
    factories.member(project, Membership.Role.MANAGER, "busyboss")
    task = factories.tasks(factories.batch(project), 1)[0]
    with mock.patch("apps.quality.tasks.webhook_deliver.delay"), django_capture_on_commit_callbacks(execute=True):
        # when a low-agreement task alert is raised, and then a gate-like one
        low = gates._alert_raise(project=project, kind="low_agreement_task", severity="info", message="stored",
                                 task=task, details={"task_id": task.pk, "external_id": None, "agreement": 0.2,
                                                     "threshold": 0.5})
        gates._alert_raise(project=project, kind="throughput_dip", severity="warning", message="stored",
                           details=DIP)
    # then the low task is in the portal (an alert) but e-mailed to nobody; the other kind is e-mailed
    assert low is not None
    assert len(mail.outbox) == 1 and "Throughput" in mail.outbox[0].subject


def test_managers_language_is_the_sites_by_default():
    user = factories.UserFactory(username="someone")
    with override_settings(LANGUAGE_CODE="es"):
        assert gates.recipient_language(user) == "es"
