"""Celery tasks of the quality app: take ids, call a service, retry. No business logic here. Each runs as the user
who enqueued it (labelportal.celery.AuditedTask), or as the system when beat did."""

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from apps.projects.models import Project

from . import services


def _same_queue(task):
    """The queue the running task came from (a real worker), so that the work it chains stays there; None when it
    runs eagerly."""
    if task.request.is_eager:
        return None
    return (task.request.delivery_info or {}).get("routing_key") or None


@shared_task(bind=True, acks_late=True)
def progress_recompute(self, project_id):
    """Recompute one project's progress counters into a MetricSnapshot, then have its quality figures follow."""
    if not Project.objects.filter(pk=project_id).exists():
        return None
    pk = services.progress_snapshot_write(project_id=project_id).pk
    quality_refresh.apply_async((project_id,), queue=_same_queue(self))
    return pk


@shared_task(acks_late=True)
def quality_refresh(project_id):
    """After events: incremental quality update and gates, or a full pass when the last is older than the debounce
    (QUALITY_RECOMPUTE_DEBOUNCE_SECONDS)."""
    return services.quality_refresh(project_id=project_id)


@shared_task(acks_late=True)
def quality_recompute(project_id):
    """Full recompute of one project's quality figures, gates and alerts. Idempotent; safe twice at once."""
    snapshot = services.quality_recompute_full(project_id=project_id)
    return snapshot.pk if snapshot is not None else None


@shared_task(acks_late=True)
def quality_recompute_all():
    """The periodic full pass (beat, every 10 minutes): corrects whatever the incremental updates missed."""
    for project_id in Project.objects.values_list("pk", flat=True):
        quality_recompute.delay(project_id)


@shared_task(acks_late=True)
def quality_task_update(task_id):
    """One task's agreement/consensus snapshot and its share of the project's agreement."""
    from .engine import task_quality_update

    return task_quality_update(task_id) is not None


def progress_recompute_soon(project_id):
    """What a transition asks for once it has committed: the project's progress recomputed, at most once per window.

    A recompute aggregates over the whole project (about a second of database time at a million tasks) and every
    transition asks for one. The first request of a window (PROGRESS_RECOMPUTE_WINDOW_SECONDS) enqueues a recompute
    due at the window's end, which therefore covers every transition of the window; the others are dropped. Run
    eagerly (no REDIS_URL) the countdown is not waited for: the recompute runs at once and the window's later
    transitions show from the next one on. The window lives in the cache (the default local-memory cache: one per
    process). A window of 0 recomputes after every transition.
    """
    window = settings.PROGRESS_RECOMPUTE_WINDOW_SECONDS
    if window > 0 and not cache.add(f"progress-recompute-due:{project_id}", True, timeout=window):
        return
    progress_recompute.apply_async((project_id,), countdown=window or None)


@shared_task(acks_late=True)
def progress_recompute_all():
    """The periodic full pass: every project's progress."""
    for project_id in Project.objects.values_list("pk", flat=True):
        progress_recompute.delay(project_id)


@shared_task(bind=True, acks_late=True, max_retries=8)
def webhook_deliver(self, delivery_id):
    """Deliver one webhook event, retrying with exponential back-off (1 s, 2 s, 4 s … 128 s: 8 retries, 9 tries)."""
    try:
        return services.webhook_deliver_once(delivery_id=delivery_id).status
    except services.WebhookRetry as error:
        if self.request.retries >= self.max_retries:
            services.webhook_delivery_fail(delivery_id=delivery_id)
            return "failed"
        countdown = 2 ** self.request.retries
        if self.request.is_eager:
            # Eager runs (development, tests) retry inside apply(); a raised Retry would reach the caller instead
            # (CELERY_TASK_EAGER_PROPAGATES), after the transition it followed had committed.
            return self.retry(exc=error, countdown=countdown, throw=False)
        raise self.retry(exc=error, countdown=countdown)


@shared_task(acks_late=True)
def webhook_deliveries_resend():
    """Send deliveries that never went out (the broker was down when their transition committed)."""
    for delivery_id in services.webhook_deliveries_stuck():
        webhook_deliver.delay(delivery_id)
