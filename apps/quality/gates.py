"""Quality gates and alerts, evaluated by workers after each recompute (METRICS.md "Gates", DESIGN.md "Quality").

A gate reads its figure from the latest quality snapshot of its scope (the project, or its batch): below
`min_samples` it is pending, otherwise passing or breached. A breach raises one live alert per gate for as long as
it lasts (the database's `alert_one_live_per_gate` refuses a second one), announced once by e-mail to the project's
managers and by the webhook event `alert.raised`; when the gate passes again the alert is resolved. A batch in
review guarded by a breached gate is blocked. Throughput dips and outlier annotators raise alerts the same way,
one live alert per (project, kind, subject).

An alert's `message` is stored in English (webhooks and logs read it); its `details` hold the message's parameters,
from which apps.quality.alerts renders it in each reader's language (the portal, the API, each manager's e-mail).
"""

import logging
import re
from datetime import datetime, time, timedelta, timezone as dt_timezone

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.db.models.functions import TruncDay
from django.template.loader import render_to_string
from django.utils import timezone, translation

from apps.core.errors import TransitionError
from apps.projects.models import Batch, Membership, QualityGate
from apps.tasks.models import TaskEvent

from .alerts import alert_portal_url, alert_text
from .engine import ANNOTATORS, QUALITY, SCOPE, project_lock, snapshot_latest
from .models import Alert, MetricSnapshot

logger = logging.getLogger(__name__)

LIVE = (Alert.State.OPEN, Alert.State.ACKNOWLEDGED)
SUBMISSION_EVENTS = (TaskEvent.Type.SUBMITTED, TaskEvent.Type.RESUBMITTED)
_OUTLIER_SUBJECT = re.compile(r"^Annotator #(\d+) ")


def throughput_dip_ratio():
    """A dip is a last complete day below this share of the trailing 7-day mean (METRICS.md: 50 %)."""
    return float(getattr(settings, "QUALITY_THROUGHPUT_DIP_RATIO", 0.5))


# --- announcing -----------------------------------------------------------------------------------------------------

def _alert_payload(alert):
    return {"alert": alert.pk, "kind": alert.kind, "severity": alert.severity, "project": alert.project_id,
            "batch": alert.batch_id, "gate": alert.gate_id, "task": alert.task_id, "message": alert.message,
            "details": alert.details, "state": alert.state}


def recipient_language(user):
    """The language a person's e-mail is written in. Users have no language of their own yet (the portal's language
    lives in a cookie, the annotator profile's languages are those they label in): the site's language."""
    return settings.LANGUAGE_CODE


def _alert_emails(alert, recipients):
    """One e-mail per manager, subject and body rendered in that manager's language."""
    project = alert.project
    emails = []
    for user in recipients:
        with translation.override(recipient_language(user)):
            context = {"alert": alert, "project": project, "text": alert_text(alert), "url": alert_portal_url(alert),
                       "kind": alert.get_kind_display(), "severity": alert.get_severity_display(), "user": user}
            subject = render_to_string("quality/email/alert_subject.txt", context)
            body = render_to_string("quality/email/alert.txt", context)
        emails.append(EmailMessage(" ".join(subject.split()), body, settings.DEFAULT_FROM_EMAIL, [user.email]))
    return emails


def _alert_managers(project_id):
    """The active managers of the project who have an e-mail address, each once."""
    from django.contrib.auth import get_user_model

    users = (get_user_model().objects.filter(memberships__project_id=project_id,
                                             memberships__role=Membership.Role.MANAGER, is_active=True)
             .exclude(email="").distinct().order_by("email", "pk"))
    managers, addresses = [], set()
    for user in users:  # one e-mail per address, even when two accounts share one
        if user.email not in addresses:
            addresses.add(user.email)
            managers.append(user)
    return managers


# Low-agreement tasks come by the hundred when a threshold is set on a big project, and routing already acts on each:
# they reach managers through the bell, the alerts page and webhooks, not as one e-mail each.
NOT_EMAILED = {Alert.Kind.LOW_AGREEMENT_TASK}


def _alert_announce(alert):
    """E-mail the project's managers and notify webhooks, once the raising transaction has committed."""
    from .services import webhooks_notify

    webhooks_notify(project_id=alert.project_id, event="alert.raised", payload=_alert_payload(alert))
    if alert.kind in NOT_EMAILED:
        return
    recipients = _alert_managers(alert.project_id)
    if not recipients:
        return
    emails = _alert_emails(alert, recipients)
    # robust: a mail server that is down must not undo the alert (it is in the portal either way).
    transaction.on_commit(lambda: get_connection(fail_silently=False).send_messages(emails), robust=True)


def _alert_raise(*, project, kind, message, severity, batch=None, gate=None, task=None, details=None):
    """Create and announce an alert; None when a live one for the same gate (or task) already exists (a concurrent
    twin). `message` is the English text; `details` holds its parameters, from which each reader's language is
    rendered."""
    try:
        with transaction.atomic():  # a savepoint: the unique constraints may refuse a second live alert
            alert = Alert.objects.create(kind=kind, severity=severity, project=project, batch=batch, gate=gate,
                                         task=task, message=message, details=details or {})
    except IntegrityError:
        return None
    _alert_announce(alert)
    return alert


def _alert_resolve(alert, now):
    alert.state = Alert.State.RESOLVED
    alert.resolved_at = now
    alert.save(update_fields=["state", "resolved_at", "updated_at"])
    return alert


# --- gates ----------------------------------------------------------------------------------------------------------

def gate_state(gate, figure):
    """pending below the minimum sample (or without a value), else passing or breached."""
    value, n = (figure or {}).get("value"), int((figure or {}).get("n") or 0)
    if value is None or n < gate.min_samples:
        return QualityGate.State.PENDING, value, n
    return (QualityGate.State.PASSING if gate.passes(value) else QualityGate.State.BREACHED), value, n


def _gate_details(gate, value, n):
    return {"metric": gate.metric, "comparator": gate.comparator, "threshold": gate.threshold, "value": value, "n": n,
            "batch": gate.batch.name if gate.batch_id else None}


def _gate_message(gate, value, n):
    scope = f"batch “{gate.batch.name}”" if gate.batch_id else "the project"
    with translation.override("en"):  # the stored message is English whatever language the worker runs in
        metric = gate.get_metric_display()
    return (f"Quality gate breached on {scope}: {metric} is {value:.3f}, required "
            f"{gate.get_comparator_display()} {gate.threshold:g} (over {n} samples).")


def gates_evaluate(project, *, now=None):
    """Evaluate every active gate of the project from the latest snapshots; raise, keep or resolve their alerts and
    block the batches in review that a breached gate guards. Returns the gates."""
    now = now or timezone.now()
    with transaction.atomic():
        project_lock(project.pk)
        gates = list(QualityGate.objects.filter(project=project, is_active=True).select_related("batch", "project"))
        if not gates:
            return gates
        figures = _figures_by_scope(project, {gate.batch_id for gate in gates} - {None})
        live_alerts = {alert.gate_id: alert for alert in Alert.objects.filter(gate__in=gates, state__in=LIVE)}
        unchanged = []
        for gate in gates:
            state, value, n = gate_state(gate, figures.get(gate.batch_id, {}).get(gate.metric))
            was_breached = gate.state == QualityGate.State.BREACHED
            if (gate.state, gate.last_value, gate.last_n) != (state, value, n):
                gate.state, gate.last_value, gate.last_n, gate.evaluated_at = state, value, n, now
                gate.save(update_fields=["state", "last_value", "last_n", "evaluated_at", "updated_at"])
            else:  # the same verdict again: note when, without a history row per event
                unchanged.append(gate.pk)
                gate.evaluated_at = now
            live = live_alerts.get(gate.pk)
            # A breach raises one alert when it begins. Still breached with no live alert: a manager resolved it by
            # hand during this breach (automatic resolution happens only on passing), so it is not raised again.
            if state == QualityGate.State.BREACHED and live is None and not was_breached:
                _alert_raise(project=project, kind=Alert.Kind.GATE_BREACH, severity=Alert.Severity.CRITICAL,
                             batch=gate.batch, gate=gate, message=_gate_message(gate, value, n),
                             details=_gate_details(gate, value, n))
            elif state == QualityGate.State.PASSING and live is not None:
                _alert_resolve(live, now)
        QualityGate.objects.filter(pk__in=unchanged).update(evaluated_at=now)
        _batches_block(project, gates)
    return gates


def _gate_figures(values):
    """{metric: {"value", "n"}} of a quality snapshot: its "figures", and its agreement (which events update)."""
    agreement = values.get("agreement") or {}
    return {**values.get("figures", {}), "agreement": {"value": agreement.get("value"), "n": agreement.get("n", 0)}}


def _figures_by_scope(project, batch_ids):
    """{None: the project's gate figures, batch id: that batch's}, from the latest quality snapshots."""
    latest = snapshot_latest(project, QUALITY)
    figures = {None: _gate_figures(latest.values) if latest else {}}
    if batch_ids:
        # A full pass writes every batch's snapshot at once and later ones only follow it: the latest of each batch
        # is at or after the last full pass (an index range, not the batches' whole series).
        since = latest.values.get("full_computed_at") if latest else None
        snapshots = MetricSnapshot.objects.filter(project=project, scope=SCOPE.BATCH, kind=QUALITY,
                                                  batch_id__in=batch_ids)
        if since:
            snapshots = snapshots.filter(computed_at__gte=datetime.fromisoformat(since))
        for snapshot in snapshots.order_by("batch_id", "computed_at", "id"):
            figures[snapshot.batch_id] = _gate_figures(snapshot.values)
    return figures


def _batches_block(project, gates):
    """in_review → blocked for every batch that a breached gate guards (its own gates and the project's)."""
    from apps.projects.services import batch_block

    breached = [gate for gate in gates if gate.state == QualityGate.State.BREACHED]
    if not breached:
        return
    for batch in Batch.objects.filter(project=project, status=Batch.Status.IN_REVIEW):
        guarding = [gate for gate in breached if gate.batch_id in (None, batch.pk)]
        if guarding:
            try:
                batch_block(batch=batch, actor=None, gates=guarding)
            except TransitionError:  # it left review meanwhile (completed, overridden): nothing to block
                logger.info("batch %s left review before it could be blocked", batch.pk)


# --- throughput dips and outlier annotators ------------------------------------------------------------------------

def throughput_dip(project, *, now=None, ratio=None):
    """The last complete UTC day's submissions against the mean of the 7 days before it.

    Returns {"day", "submitted", "trailing_mean", "dip"}: a dip is a day below `ratio` (default 0.5) × the mean,
    when there was throughput to fall from (a mean above 0).
    """
    now = now or timezone.now()
    ratio = throughput_dip_ratio() if ratio is None else ratio
    today = now.astimezone(dt_timezone.utc).date()
    last = today - timedelta(days=1)
    start = datetime.combine(last - timedelta(days=7), time.min, tzinfo=dt_timezone.utc)
    end = datetime.combine(today, time.min, tzinfo=dt_timezone.utc)
    per_day = {row["day"].date(): row["n"] for row in
               TaskEvent.objects.filter(project=project, type__in=SUBMISSION_EVENTS, at__gte=start, at__lt=end)
               .annotate(day=TruncDay("at", tzinfo=dt_timezone.utc)).values("day").annotate(n=Count("id"))
               .order_by()}
    trailing = sum(per_day.get(last - timedelta(days=d), 0) for d in range(1, 8)) / 7
    submitted = per_day.get(last, 0)
    return {"day": last.isoformat(), "submitted": submitted, "trailing_mean": trailing,
            "dip": trailing > 0 and submitted < ratio * trailing}


def _work_remaining(project):
    # A project with nothing left to annotate has no throughput to dip: no alert then.
    progress = snapshot_latest(project, "progress")
    remaining = ((progress.values.get("eta") or {}).get("remaining_annotations") if progress else None)
    return remaining is None or remaining > 0


def _resolved_by_hand(project, kind, **same):
    """Whether the latest alert of `kind` about the same thing (`same`: keys of its details) was resolved by a
    manager: the same situation is then not raised again (a new day's dip, or other flags, are)."""
    latest = (Alert.objects.filter(project=project, kind=kind,
                                   **{f"details__{key}": value for key, value in same.items()})
              .order_by("-created_at", "-pk").values_list("state", "resolved_by_id").first())
    return latest is not None and latest[0] == Alert.State.RESOLVED and latest[1] is not None


def throughput_alert_evaluate(project, *, now=None):
    now = now or timezone.now()
    figure = throughput_dip(project, now=now)
    dip = figure["dip"] and _work_remaining(project)
    live = Alert.objects.filter(project=project, kind=Alert.Kind.THROUGHPUT_DIP, state__in=LIVE).first()
    if dip and live is None and _resolved_by_hand(project, Alert.Kind.THROUGHPUT_DIP, day=figure["day"]):
        return None  # this day's dip was already dealt with by a manager
    if dip and live is None:
        ratio = throughput_dip_ratio()
        return _alert_raise(
            project=project, kind=Alert.Kind.THROUGHPUT_DIP, severity=Alert.Severity.WARNING,
            message=(f"Throughput dip: {figure['submitted']} submissions on {figure['day']} (UTC), below "
                     f"{ratio:.0%} of the trailing 7-day mean ({figure['trailing_mean']:.1f} a day)."),
            details={"day": figure["day"], "submitted": figure["submitted"],
                     "trailing_mean": figure["trailing_mean"], "ratio": ratio})
    if not dip and live is not None:
        _alert_resolve(live, now)
    return live


def outlier_alerts_evaluate(project, *, now=None):
    """One live alert per flagged annotator (from the annotators snapshot); resolved once the flags are gone."""
    now = now or timezone.now()
    snapshot = snapshot_latest(project, ANNOTATORS)
    flagged = {row["annotator_id"]: row for row in (snapshot.values.get("annotators", []) if snapshot else [])
               if row.get("flags")}
    live = {}
    for alert in Alert.objects.filter(project=project, kind=Alert.Kind.OUTLIER_ANNOTATOR, state__in=LIVE):
        if alert.details.get("paused"):  # an automatic pause is said once, not kept in step with the flags
            continue
        match = _OUTLIER_SUBJECT.match(alert.message)  # alerts raised before details existed name them only there
        annotator_id = alert.details.get("annotator_id") or (int(match.group(1)) if match else None)
        if annotator_id is not None:
            live[int(annotator_id)] = alert
    raised = []
    for annotator_id, row in sorted(flagged.items()):
        message = (f"Annotator #{annotator_id} ({row.get('username')}) is far from the team: "
                   f"{', '.join(row['flags'])} (robust z-score beyond 3 over at least 20 tasks).")
        details = {"annotator_id": annotator_id, "username": row.get("username"), "flags": list(row["flags"])}
        alert = live.get(annotator_id)
        if alert is None and _resolved_by_hand(project, Alert.Kind.OUTLIER_ANNOTATOR, annotator_id=annotator_id,
                                               flags=details["flags"]):
            continue  # a manager dealt with these same flags of this annotator
        if alert is None:
            raised.append(_alert_raise(project=project, kind=Alert.Kind.OUTLIER_ANNOTATOR,
                                       severity=Alert.Severity.WARNING, message=message, details=details))
        elif alert.message != message or alert.details != details:  # other flags now: the same live alert says so
            alert.message, alert.details = message, details
            alert.save(update_fields=["message", "details", "updated_at"])
    for annotator_id, alert in live.items():
        if annotator_id not in flagged:
            _alert_resolve(alert, now)
    return raised


def project_alerts_evaluate(project, *, now=None):
    """The alerts of a full recompute besides the gates: throughput dips and outlier annotators."""
    with transaction.atomic():
        project_lock(project.pk)
        throughput_alert_evaluate(project, now=now)
        outlier_alerts_evaluate(project, now=now)
