"""Celery tasks of the core app."""

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from .models import IdempotencyRecord

IDEMPOTENCY_KEEP_DAYS = 7


@shared_task(acks_late=True)
def idempotency_records_purge():
    """Forget Idempotency-Key answers older than a week (clients retry within minutes, not days)."""
    cutoff = timezone.now() - timedelta(days=IDEMPOTENCY_KEEP_DAYS)
    return IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()[0]
