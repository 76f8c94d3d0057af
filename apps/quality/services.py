"""Figures written by workers (progress snapshots) and webhook deliveries."""

import hashlib
import hmac
import ipaddress
import json
import socket
import urllib.error
import urllib.request
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Count
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from apps.projects.models import Project
from apps.tasks.models import Assignment, Task, TaskEvent

from .models import Alert, MetricSnapshot, Review, Webhook, WebhookDelivery

SUBMISSION_EVENTS = [TaskEvent.Type.SUBMITTED, TaskEvent.Type.RESUBMITTED]


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
    return {"remaining_annotations": remaining, "per_day": round(recent / 7, 2),
            "date": (now + timedelta(days=days)).date().isoformat()}


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
    for row in Task.objects.filter(project=project).values("status").annotate(n=Count("id")).order_by():
        by_status[row["status"]] = row["n"]
    total = sum(by_status.values())
    countable = total - by_status[Task.Status.CANCELLED]
    live = Assignment.objects.filter(task__project=project, status__in=Assignment.LIVE).count()
    return {
        "total": total,
        "by_status": by_status,
        "accepted_pct": round(100 * by_status[Task.Status.ACCEPTED] / countable, 2) if countable else None,
        "live_assignments": live,
        "eta": _eta(project, now, by_status),
        "throughput": _throughput(project, now),
        "review": _review_rates(project),
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
                            computed_at__gte=minute).order_by("-computed_at").first())
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


def alert_acknowledge(*, alert, actor):
    """A manager has seen the alert: open → acknowledged, with who and when."""
    from apps.core.errors import TransitionError
    from apps.core.permissions import MANAGE, require_project_perm

    with transaction.atomic():
        alert = Alert.objects.select_for_update().select_related("project").get(pk=alert.pk)
        require_project_perm(actor, alert.project, MANAGE)
        if alert.state != Alert.State.OPEN:
            raise TransitionError(f"The alert is {alert.state}; only open alerts can be acknowledged.",
                                  current=alert.state)
        alert.state = Alert.State.ACKNOWLEDGED
        alert.acknowledged_by = actor
        alert.acknowledged_at = timezone.now()
        alert.save(update_fields=["state", "acknowledged_by", "acknowledged_at", "updated_at"])
    return alert


# --- webhooks -----------------------------------------------------------------------------------------------------


def webhook_signature(secret, body):
    """Hex HMAC-SHA256 of the raw body under the webhook's secret (header X-LabelPortal-Signature)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhooks_notify(*, project_id, event, payload):
    """Record a delivery for every active webhook of the project subscribed to `event`; send after commit."""
    webhooks = Webhook.objects.filter(project_id=project_id, is_active=True)
    deliveries = [
        WebhookDelivery.objects.create(webhook=webhook, event=event, payload={"event": event, "data": payload})
        for webhook in webhooks if event in (webhook.events or [])
    ]
    if deliveries:
        from .tasks import webhook_deliver

        for delivery in deliveries:
            transaction.on_commit(lambda pk=delivery.pk: webhook_deliver.delay(pk))
    return deliveries


def webhook_address_allowed(url):
    """Only http(s); private, loopback and link-local targets only when WEBHOOKS_ALLOW_PRIVATE is set."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if getattr(settings, "WEBHOOKS_ALLOW_PRIVATE", False):
        return True
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443)}
    except OSError:
        return False
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast:
            return False
    return True


class WebhookRetry(Exception):
    """The receiver did not take the delivery; try again later."""


def webhook_deliver_once(*, delivery_id, timeout=10):
    """Send one delivery; raise WebhookRetry when it should be tried again. Delivered ones are not sent twice."""
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().select_related("webhook").get(pk=delivery_id)
        if delivery.status in (WebhookDelivery.Status.DELIVERED, WebhookDelivery.Status.REFUSED):
            return delivery
        delivery.attempts += 1
        delivery.save(update_fields=["attempts"])
    webhook = delivery.webhook
    if not webhook_address_allowed(webhook.url):
        delivery.status = WebhookDelivery.Status.REFUSED
        delivery.last_error = "The target address is not allowed (private, loopback or not http(s))."
        delivery.save(update_fields=["status", "last_error"])
        return delivery
    body = json.dumps(delivery.payload, cls=DjangoJSONEncoder, sort_keys=True).encode()
    request = urllib.request.Request(webhook.url, data=body, method="POST", headers={
        "Content-Type": "application/json",
        "User-Agent": "LabelPortal-Webhook/1",
        "X-LabelPortal-Event": delivery.event,
        "X-LabelPortal-Delivery": str(delivery.pk),
        "X-LabelPortal-Signature": f"sha256={webhook_signature(webhook.secret, body)}",
    })
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            delivery.response_status = response.status
    except urllib.error.HTTPError as error:
        delivery.response_status = error.code
        delivery.last_error = f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        delivery.last_error = str(error)[:500]
    if delivery.response_status and 200 <= delivery.response_status < 300:
        delivery.status = WebhookDelivery.Status.DELIVERED
        delivery.delivered_at = timezone.now()
        delivery.last_error = ""
        delivery.save(update_fields=["status", "delivered_at", "last_error", "response_status"])
        return delivery
    delivery.status = WebhookDelivery.Status.PENDING
    delivery.save(update_fields=["status", "last_error", "response_status"])
    raise WebhookRetry(delivery.last_error)


def webhook_delivery_fail(*, delivery_id):
    WebhookDelivery.objects.filter(pk=delivery_id).exclude(status=WebhookDelivery.Status.DELIVERED).update(
        status=WebhookDelivery.Status.FAILED)
