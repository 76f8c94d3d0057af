"""Figures written by workers (progress snapshots) and webhook deliveries."""

import hashlib
import hmac
import ipaddress
import json
import http.client
import socket
import ssl
from datetime import UTC, timedelta
from urllib.parse import quote, urlsplit

import numpy as np
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Avg, BigIntegerField, Count, Min, OuterRef, Subquery
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, ExtractHour, ExtractIsoWeekDay, TruncDay, TruncHour
from django.utils import timezone

from apps.core.audit import records_actor
from apps.core.rows import instances
from apps.projects.models import Project
from apps.tasks.models import Assignment, Task, TaskEvent

from .models import Alert, MetricSnapshot, Review, Webhook, WebhookDelivery

SUBMISSION_EVENTS = [TaskEvent.Type.SUBMITTED, TaskEvent.Type.RESUBMITTED]
DECISION_EVENTS = [TaskEvent.Type.APPROVED, TaskEvent.Type.REJECTED, TaskEvent.Type.FIXED, TaskEvent.Type.ESCALATED]


def _throughput(project, now):
    """Submissions per UTC day (last 30 days) and per UTC hour (last 48 hours), from the event log's index."""
    submissions = TaskEvent.objects.filter(project=project, type__in=SUBMISSION_EVENTS)
    per_day = (submissions.filter(at__gte=now - timedelta(days=30)).annotate(bucket=TruncDay("at"))
               .values("bucket").annotate(n=Count("id")).order_by("bucket"))
    per_hour = (submissions.filter(at__gte=now - timedelta(hours=48)).annotate(bucket=TruncHour("at"))
                .values("bucket").annotate(n=Count("id")).order_by("bucket"))
    return {
        "per_day": [{"date": row["bucket"].date().isoformat(), "submitted": row["n"]} for row in per_day],
        "per_hour": [{"hour": row["bucket"].isoformat(), "submitted": row["n"]} for row in per_hour],
    }


def _eta(project, now, by_status):
    """Remaining required annotations ÷ the last 7 days' throughput, as a date (None without throughput)."""
    open_statuses = [s for s in Task.Status.values if s not in (Task.Status.ACCEPTED, Task.Status.CANCELLED)]
    unfinished = Task.objects.filter(project=project, status__in=open_statuses, is_gold=False)
    required = sum(by_status[s] for s in open_statuses) * project.overlap
    done = Assignment.objects.filter(task__in=unfinished, status__in=[Assignment.Status.SUBMITTED,
                                                                      Assignment.Status.APPROVED]).count()
    remaining = max(required - done, 0)
    recent = TaskEvent.objects.filter(project=project, type__in=SUBMISSION_EVENTS,
                                      at__gte=now - timedelta(days=7)).count()
    if remaining == 0:
        return {"remaining_annotations": 0, "per_day": recent / 7, "date": now.date().isoformat()}
    if recent == 0:
        return {"remaining_annotations": remaining, "per_day": 0.0, "date": None}
    days = remaining / (recent / 7)
    try:
        date = (now + timedelta(days=days)).date().isoformat()
    except OverflowError:
        date = None  # past the year 9999 at this pace (a million tasks, a few submissions): no date to give
    return {"remaining_annotations": remaining, "per_day": round(recent / 7, 2), "date": date}


HEATMAP_DAYS = 28  # the weekday × hour map covers four whole weeks: every weekday counted four times
ETA_WINDOW_DAYS = 28  # the ETA range: the spread of the 7-day pace over this many days


def _throughput_heatmap(project, now):
    """Submissions by ISO weekday (1 = Monday) × UTC hour over the last HEATMAP_DAYS days: a 7 × 24 grid, one
    GROUP BY on the event log's (project, type, at) index."""
    grid = [[0] * 24 for _ in range(7)]
    rows = (TaskEvent.objects.filter(project=project, type__in=SUBMISSION_EVENTS,
                                     at__gte=now - timedelta(days=HEATMAP_DAYS))
            .annotate(weekday=ExtractIsoWeekDay("at", tzinfo=UTC), hour=ExtractHour("at", tzinfo=UTC))
            .values("weekday", "hour").annotate(n=Count("id")).order_by())
    for row in rows:
        grid[row["weekday"] - 1][row["hour"]] = row["n"]
    return {"days": HEATMAP_DAYS, "weekdays": [1, 2, 3, 4, 5, 6, 7], "hours": list(range(24)), "submitted": grid}


def _eta_range(eta, per_day, now):
    """How sure the ETA is: the dates at the 90th and 10th percentile of the 7-day pace (submissions per day, each
    7-day window ending on one of the last ETA_WINDOW_DAYS days), so weekends and slow weeks widen the range.
    Less than 7 days since the first submission: no range (None dates, confidence "none")."""
    today = now.date()
    counts = {row["date"]: row["submitted"] for row in per_day}
    days = [(today - timedelta(days=i)).isoformat() for i in range(ETA_WINDOW_DAYS + 6, -1, -1)]
    daily = np.array([counts.get(day, 0) for day in days], dtype=float)
    first = next((i for i, n in enumerate(daily) if n), None)
    remaining = eta.get("remaining_annotations") or 0
    empty = {"date_early": None, "date_late": None, "per_day_low": None, "per_day_high": None,
             "windows": 0, "confidence": "none"}
    if first is None:
        return empty
    history = daily[first:]
    if len(history) < 7:
        return empty  # less than a week of work: no pace to draw a range from
    windows = np.convolve(history, np.ones(7) / 7, mode="valid")  # 7-day means, oldest first
    low, high = (float(np.percentile(windows, q)) for q in (10, 90))

    def date_at(rate):
        if remaining == 0:
            return today.isoformat()
        if rate <= 0:
            return None
        try:
            return (now + timedelta(days=remaining / rate)).date().isoformat()
        except OverflowError:
            return None

    spread = (high - low) / high if high > 0 else 1.0
    confidence = "high" if len(windows) >= 14 and spread <= 0.25 else "medium" if spread <= 0.6 else "low"
    return {"date_early": date_at(high), "date_late": date_at(low), "per_day_low": round(low, 2),
            "per_day_high": round(high, 2), "windows": int(len(windows)), "confidence": confidence}


def _review_backlog(project, now):
    """What waits for review now (the portal home's definition) and the review latency per UTC day (last 30 days):
    review decisions and their mean seconds from submission to decision.

    Past days do not change (decisions are events, appended at the time they are made): the days before the one
    of the previous progress snapshot are taken from it, and only the decisions since the start of that day are
    read again, so a recompute costs a day's decisions, not a month's."""
    from datetime import datetime, time

    from apps.tasks.models import Annotation

    from .engine import SecondsBetween

    waiting = Annotation.objects.filter(
        task__project=project, is_current=True, needs_review=True,
        status__in=[Annotation.Status.SUBMITTED, Annotation.Status.ESCALATED],
        assignment__status=Assignment.Status.SUBMITTED).aggregate(n=Count("id"), oldest=Min("submitted_at"))
    first_day = (now - timedelta(days=30)).date()
    previous = progress_latest(project)
    known = (previous.values.get("review", {}).get("latency_per_day")
             if previous is not None and previous.computed_at <= now else None)
    since = datetime.combine(previous.computed_at.date(), time.min, tzinfo=UTC) if known is not None else None
    kept = [row for row in known or [] if first_day.isoformat() <= row["date"] < since.date().isoformat()]
    # From the decision events (the (project, type, at) index; reviews themselves have no project column), each
    # with the submission time of the annotation it decided (by primary key, from the event's payload).
    submitted = Annotation.objects.filter(pk=OuterRef("annotation_id")).values("submitted_at")[:1]
    start = max(since, now - timedelta(days=30)) if since else now - timedelta(days=30)
    latency = (TaskEvent.objects.filter(project=project, type__in=DECISION_EVENTS, at__gte=start, at__lte=now,
                                        actor__isnull=False)  # a reviewer's decision, not the system's escalation
               .annotate(annotation_id=Cast(KeyTextTransform("annotation", "payload"), BigIntegerField()))
               .annotate(bucket=TruncDay("at"), submitted=Subquery(submitted))
               .values("bucket").annotate(n=Count("id"), seconds=Avg(SecondsBetween("at", "submitted")))
               .order_by("bucket"))
    return {
        "backlog": waiting["n"],
        "oldest_seconds": (now - waiting["oldest"]).total_seconds() if waiting["oldest"] else None,
        "latency_per_day": kept + [
            {"date": row["bucket"].date().isoformat(), "decided": row["n"],
             "mean_latency_seconds": round(row["seconds"], 1) if row["seconds"] is not None else None}
            for row in latency],
    }


def _review_rates(project):
    """acceptance_rate and rework_rate (METRICS.md "Annotator", project-wide) and error-type counts."""
    decisions = dict(Review.objects.filter(annotation__task__project=project, decided_at__isnull=False)
                     .values_list("decision").annotate(n=Count("id")).order_by())
    decided = sum(decisions.get(d, 0) for d in ("approve", "reject", "fix"))
    submitted = Assignment.objects.filter(task__project=project, submitted_at__isnull=False)
    reworked = submitted.filter(annotations__version__gt=1, annotations__source="annotator").distinct().count()
    n_submitted = submitted.count()
    error_types = dict(Review.error_types.through.objects.filter(review__annotation__task__project=project)
                       .values_list("errortype__code").annotate(n=Count("id")).order_by())
    return {
        "acceptance_rate": decisions.get("approve", 0) / decided if decided else None,
        "acceptance_n": decided,
        "rework_rate": reworked / n_submitted if n_submitted else None,
        "rework_n": n_submitted,
        "error_types": error_types,
    }


def progress_compute(project, now=None):
    """Progress, throughput, ETA and review rates of a project, by database aggregation (run by workers)."""
    now = now or timezone.now()
    by_status = dict.fromkeys(Task.Status.values, 0)
    by_batch = {}  # batch id (str: JSON keys) -> tasks per status, from the same GROUP BY
    for row in Task.objects.filter(project=project).values("batch_id", "status").annotate(n=Count("id")).order_by():
        by_status[row["status"]] += row["n"]
        by_batch.setdefault(str(row["batch_id"]), dict.fromkeys(Task.Status.values, 0))[row["status"]] = row["n"]
    total = sum(by_status.values())
    countable = total - by_status[Task.Status.CANCELLED]
    live = Assignment.objects.filter(task__project=project, status__in=Assignment.LIVE).count()
    throughput = _throughput(project, now)
    eta = _eta(project, now, by_status)
    return {
        "total": total,
        "by_status": by_status,
        "by_batch": by_batch,
        "accepted_pct": round(100 * by_status[Task.Status.ACCEPTED] / countable, 2) if countable else None,
        "live_assignments": live,
        "eta": eta,
        "eta_range": _eta_range(eta, throughput["per_day"], now),
        "throughput": {**throughput, "heatmap": _throughput_heatmap(project, now)},
        "review": {**_review_rates(project), **_review_backlog(project, now)},
    }


def progress_snapshot_write(*, project_id, now=None):
    """Store the project's progress as a snapshot; one row per project per minute, so series stay small.

    Idempotent: two workers running it at once leave one correct row for the minute.
    """
    now = now or timezone.now()
    project = Project.objects.get(pk=project_id)
    values = progress_compute(project, now)
    minute = now.replace(second=0, microsecond=0)
    with transaction.atomic():
        snapshot = (MetricSnapshot.objects.select_for_update()
                    .filter(project=project, scope=MetricSnapshot.Scope.PROJECT, kind="progress",
                            computed_at__gte=minute, computed_at__lt=minute + timedelta(minutes=1))
                    .order_by("-computed_at").first())
        if snapshot is None:
            snapshot = MetricSnapshot.objects.create(project=project, scope=MetricSnapshot.Scope.PROJECT,
                                                     kind="progress", values=values, computed_at=now)
        else:
            snapshot.values, snapshot.computed_at = values, now
            snapshot.save(update_fields=["values", "computed_at"])
    return snapshot


def progress_latest(project):
    return (MetricSnapshot.objects.filter(project=project, scope=MetricSnapshot.Scope.PROJECT, kind="progress")
            .order_by("-computed_at").first())


NO_AGREEMENT = {"metric": None, "value": None, "n": 0}


def metrics_payload(*, progress, quality):
    """The figures of `GET /projects/{id}/metrics/` (API.md) from a progress and a quality snapshot (either may be
    None): the API and the project dashboard both answer with this, so their numbers are the same."""
    values = progress.values if progress else {}
    quality_values = quality.values if quality else {}
    # Before the first quality pass the review rates of the progress snapshot stand in.
    review = values.get("review", {})

    def figure(name):
        return quality_values[name] if name in quality_values else review.get(name)

    return {
        "progress": {"total": values.get("total"), "by_status": values.get("by_status", {}),
                     "accepted_pct": values.get("accepted_pct"), "eta": values.get("eta", {}).get("date"),
                     "eta_detail": values.get("eta"), "eta_range": values.get("eta_range")},
        "throughput": values.get("throughput", {"per_day": [], "per_hour": []}),
        "quality": {
            "agreement": quality_values.get("agreement", NO_AGREEMENT),
            "gold_accuracy": quality_values.get("gold_accuracy"),
            "acceptance_rate": figure("acceptance_rate"),
            "rework_rate": figure("rework_rate"),
            "sanity_pass_rate": quality_values.get("sanity_pass_rate"),
            "fleiss_kappa": quality_values.get("fleiss_kappa"),
            "samples": quality_values.get("samples", {}),
            "error_types": figure("error_types") or {},
            "error_types_by_label": quality_values.get("error_types_by_label", {}),
            "computed_at": quality.computed_at if quality else None,
        },
        "review": {name: review.get(name) for name in ("backlog", "oldest_seconds", "latency_per_day")},
        "computed_at": progress.computed_at if progress else None,
    }


# --- quality figures: the engine computes, the gates judge ---------------------------------------------------------


def quality_recompute_full(*, project_id):
    """The full pass of one project: every figure recomputed (apps.quality.engine), then its gates, throughput and
    outlier alerts. Returns the quality snapshot, None for a project that no longer exists."""
    from . import engine, gates, routing

    snapshot = engine.project_quality_recompute(project_id)
    if snapshot is None:
        return None
    gates.project_alerts_evaluate(snapshot.project)
    gates.gates_evaluate(snapshot.project)
    routing.low_agreement_tasks_evaluate(snapshot.project)
    routing.low_gold_pause_evaluate(snapshot.project)
    return snapshot


def quality_refresh(*, project_id, debounce_seconds=None):
    """What follows the events of a project (chained after its progress recompute): the tasks they touched are
    updated incrementally and the gates re-evaluated; a full pass instead when the last one is older than
    QUALITY_RECOMPUTE_DEBOUNCE_SECONDS (or the figures no longer fit the project). Returns "full",
    "incremental", or None for a project that no longer exists."""
    from . import engine, gates, routing

    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    if engine.full_recompute_due(project, debounce_seconds=debounce_seconds):
        quality_recompute_full(project_id=project_id)
        return "full"
    started = timezone.now()  # the task snapshots this update writes are stamped from here on
    engine.quality_events_apply(project)
    gates.gates_evaluate(project)
    routing.low_agreement_tasks_evaluate(project, since=started)
    return "incremental"


@records_actor
def alert_acknowledge(*, alert, actor):
    """A manager has seen the alert: open → acknowledged, with who and when."""
    from django.utils.translation import gettext as _

    from apps.core.errors import TransitionError
    from apps.core.permissions import MANAGE, require_project_perm

    with transaction.atomic():
        alert = Alert.objects.select_for_update().select_related("project").get(pk=alert.pk)
        require_project_perm(actor, alert.project, MANAGE)
        if alert.state != Alert.State.OPEN:
            raise TransitionError(_("The alert is %(state)s; only open alerts can be acknowledged.")
                                  % {"state": alert.get_state_display().lower()}, current=alert.state)
        alert.state = Alert.State.ACKNOWLEDGED
        alert.acknowledged_by = actor
        alert.acknowledged_at = timezone.now()
        alert.save(update_fields=["state", "acknowledged_by", "acknowledged_at", "updated_at"])
    return alert


@records_actor
def alert_resolve(*, alert, actor):
    """A manager has dealt with the alert: open or acknowledged → resolved, with who and when (an alert that
    resolves itself, a gate passing again, has no resolver)."""
    from django.utils.translation import gettext as _

    from apps.core.errors import TransitionError
    from apps.core.permissions import MANAGE, require_project_perm

    with transaction.atomic():
        alert = Alert.objects.select_for_update().select_related("project").get(pk=alert.pk)
        require_project_perm(actor, alert.project, MANAGE)
        if alert.state == Alert.State.RESOLVED:
            raise TransitionError(_("The alert is already resolved."), current=alert.state)
        alert.state = Alert.State.RESOLVED
        alert.resolved_by = actor
        alert.resolved_at = timezone.now()
        alert.save(update_fields=["state", "resolved_by", "resolved_at", "updated_at"])
    return alert


# --- webhooks -----------------------------------------------------------------------------------------------------


def webhook_signature(secret, body):
    """Hex HMAC-SHA256 of the raw body under the webhook's secret (header X-LabelPortal-Signature)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhooks_notify(*, project_id, event, payload):
    """Record a delivery for every active webhook of the project subscribed to `event`; send after commit.

    Called inside the transition's transaction: a refused or rolled-back transition records and sends nothing.
    """
    # On every accepted task, most often finding none: SQL written once (apps.core.rows).
    webhooks = instances(Webhook, "m.project_id = %s AND m.is_active", [project_id], order_by="m.url, m.id")
    deliveries = [
        WebhookDelivery.objects.create(webhook=webhook, event=event, payload={"event": event, "data": payload})
        for webhook in webhooks if event in (webhook.events or [])
    ]
    if deliveries:
        from .tasks import webhook_deliver

        for delivery in deliveries:
            # robust: the transition has committed; a broker hiccup must not turn it into an error for the user
            transaction.on_commit(lambda pk=delivery.pk: webhook_deliver.delay(pk), robust=True)
    return deliveries


_URL_SAFE = "/%:@!$&'()*+,;=-._~?"


class WebhookRefused(Exception):
    """The target may not be contacted: not http(s), no host, a bad port, or an address inside the network."""


def _address_public(address):
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # is_global leaves out loopback, private, link-local (cloud metadata), shared (100.64/10), reserved …
    return ip.is_global and not ip.is_multicast


def _webhook_target(url):
    """(scheme, host, port, path, addresses) of a webhook URL, resolved once: the delivery connects to exactly
    these addresses, so a name that resolves to something else a moment later (DNS rebinding) gains nothing.

    Raises WebhookRefused, or OSError when the name does not resolve now (that may pass: the delivery is retried).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused("only http(s) URLs with a host")
    try:
        port = parts.port
    except ValueError as error:
        raise WebhookRefused(str(error)) from error
    port = port if port is not None else (443 if parts.scheme == "https" else 80)
    if not 0 < port < 65536:
        raise WebhookRefused(f"port {port}")
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (UnicodeError, ValueError) as error:  # not a host name at all (bad IDN label, NUL …)
        raise WebhookRefused(f"invalid host name: {error}") from error
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not getattr(settings, "WEBHOOKS_ALLOW_PRIVATE", False):
        inside = [address for address in addresses if not _address_public(address)]
        if inside or not addresses:
            raise WebhookRefused(f"{parts.hostname} is a loopback, private or reserved address ({inside[0]})"
                                 if inside else f"{parts.hostname} has no address")
    # The request line is ASCII without spaces or control characters: an IRI path is sent percent-encoded.
    path = quote(parts.path or "/", safe=_URL_SAFE) + (f"?{quote(parts.query, safe=_URL_SAFE)}" if parts.query else "")
    return parts.scheme, parts.hostname, port, path, addresses


def webhook_address_allowed(url):
    """Only http(s); private, loopback and link-local targets only when WEBHOOKS_ALLOW_PRIVATE is set."""
    try:
        _webhook_target(url)
    except (WebhookRefused, OSError):
        return False
    return True


class _PinnedConnection:
    """Connects to the addresses that were checked, not to whatever the host name resolves to by then."""

    def __init__(self, host, port, *, addresses, timeout, **kwargs):
        super().__init__(host, port, timeout=timeout, **kwargs)
        self.addresses = addresses

    def _socket(self):
        error = None
        for address in self.addresses:
            try:
                return socket.create_connection((address, self.port), self.timeout)
            except OSError as failed:
                error = failed
        raise error or OSError("no address to connect to")


class _PinnedHTTPConnection(_PinnedConnection, http.client.HTTPConnection):
    def connect(self):
        self.sock = self._socket()


class _PinnedHTTPSConnection(_PinnedConnection, http.client.HTTPSConnection):
    def __init__(self, host, port, **kwargs):
        super().__init__(host, port, context=ssl.create_default_context(), **kwargs)

    def connect(self):
        # The certificate is checked against the host name, as a browser would.
        self.sock = self._context.wrap_socket(self._socket(), server_hostname=self.host)


def _webhook_post(target, body, headers, timeout):
    """POST the body; the response status. Redirects are not followed (they could lead inside the network)."""
    scheme, host, port, path, addresses = target
    connection_class = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(host, port, addresses=addresses, timeout=timeout)
    try:
        connection.request("POST", path, body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


class WebhookRetry(Exception):
    """The receiver did not take the delivery; try again later."""


def webhook_deliver_once(*, delivery_id, timeout=10):
    """Send one delivery; raise WebhookRetry when it should be tried again. Delivered ones are not sent twice.

    At least once: a receiver deduplicates on X-LabelPortal-Delivery (the same for every attempt).
    """
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().select_related("webhook").get(pk=delivery_id)
        if delivery.status in (WebhookDelivery.Status.DELIVERED, WebhookDelivery.Status.REFUSED):
            return delivery
        delivery.attempts += 1
        delivery.save(update_fields=["attempts"])
    webhook = delivery.webhook
    delivery.response_status, delivery.last_error = None, ""
    try:
        target = _webhook_target(webhook.url)
    except WebhookRefused as refused:
        delivery.status = WebhookDelivery.Status.REFUSED
        delivery.last_error = f"The target is not allowed: {refused}."
        delivery.save(update_fields=["status", "last_error", "response_status"])
        return delivery
    except OSError as error:  # the name does not resolve (now)
        target, delivery.last_error = None, str(error)[:500]
    if target is not None:
        body = json.dumps(delivery.payload, cls=DjangoJSONEncoder, sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "LabelPortal-Webhook/1",
            "X-LabelPortal-Event": delivery.event,
            "X-LabelPortal-Delivery": str(delivery.pk),
            "X-LabelPortal-Signature": f"sha256={webhook_signature(webhook.secret, body)}",
        }
        try:
            delivery.response_status = _webhook_post(target, body, headers, timeout)
        except (OSError, http.client.HTTPException) as error:
            delivery.last_error = (str(error) or type(error).__name__)[:500]
        else:
            if not 200 <= delivery.response_status < 300:
                delivery.last_error = f"HTTP {delivery.response_status}"
    if delivery.response_status and 200 <= delivery.response_status < 300:
        delivery.status = WebhookDelivery.Status.DELIVERED
        delivery.delivered_at = timezone.now()
        delivery.save(update_fields=["status", "delivered_at", "last_error", "response_status"])
        return delivery
    delivery.status = WebhookDelivery.Status.PENDING
    delivery.save(update_fields=["status", "last_error", "response_status"])
    raise WebhookRetry(delivery.last_error)


def webhook_deliveries_stuck(*, older_than_minutes=10, limit=500):
    """Ids of deliveries never attempted although created a while ago: their enqueue was lost."""
    cutoff = timezone.now() - timedelta(minutes=older_than_minutes)
    return list(WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, attempts=0,
                                               created_at__lt=cutoff).values_list("pk", flat=True)[:limit])


def webhook_delivery_fail(*, delivery_id):
    WebhookDelivery.objects.filter(pk=delivery_id).exclude(status=WebhookDelivery.Status.DELIVERED).update(
        status=WebhookDelivery.Status.FAILED)
