"""Celery tasks of the dashboards: take ids, call the computation, no business logic here."""

from celery import shared_task
from django.core.cache import cache

from apps.projects.models import Project

from . import people_trends


@shared_task(acks_late=True)
def people_trends_recompute(project_id):
    """One project's learning curves and coaching material (people_trends snapshot). Idempotent."""
    snapshot = people_trends.people_trends_recompute(project_id)
    return snapshot.pk if snapshot is not None else None


@shared_task(acks_late=True)
def people_trends_recompute_all():
    """The periodic pass (beat): every project's learning curves."""
    for project_id in Project.objects.values_list("pk", flat=True):
        people_trends_recompute.delay(project_id)


def people_trends_recompute_soon(project_id):
    """A page found the snapshot missing or stale: have it recomputed, at most once per STALE_SECONDS per process
    (the cache holds the window). Eager (no REDIS_URL, `make run`) it runs at once."""
    if cache.add(f"people-trends-due:{project_id}", True, timeout=people_trends.STALE_SECONDS):
        people_trends_recompute.delay(project_id)
