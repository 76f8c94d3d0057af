"""Celery tasks of the tasks app."""

from celery import shared_task

from . import services


@shared_task(acks_late=True)
def assignments_expire_due():
    """Free the slots of assignments whose lease ran out (runs every minute from beat)."""
    return services.assignments_expire_due()
