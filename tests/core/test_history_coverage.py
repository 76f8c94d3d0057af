"""Every domain model keeps its history (django-simple-history): a new model without one fails here.

A model may go without only if it is listed in NO_HISTORY with the reason.
"""

from datetime import timedelta

import pytest
from django.apps import apps
from django.db.models.signals import post_save
from django.utils import timezone
from simple_history.models import HistoricalChanges, HistoricalRecords

from apps.core.audit import AuditedHistoricalRecords
from apps.quality import services as quality_services
from apps.quality.models import MetricSnapshot

DOMAIN_APPS = ["core", "projects", "tasks", "annotators", "quality"]

NO_HISTORY = {
    "tasks.TaskEvent": "the event log itself: append-only (never updated or deleted), refused by a trigger on PG",
    "core.IdempotencyRecord": "a replay cache of API answers keyed by Idempotency-Key, purged after a week; the "
                              "changes the requests made are recorded by the models they changed",
    "quality.AlertRead": "a user's 'seen' mark for the alert bell (interface state, no change to any work)",
    "quality.WebhookDelivery": "the delivery log of webhooks: each row is itself the record of one event sent, "
                               "with its attempts and outcome",
}


def _domain_models():
    for label in DOMAIN_APPS:
        for model in apps.get_app_config(label).get_models(include_auto_created=True):
            if not issubclass(model, HistoricalChanges) and not model._meta.abstract:
                yield model


def _tracked_m2m_through_tables():
    """The auto-created link tables whose rows the owner's history copies (history(m2m_fields=[…]))."""
    tables = set()
    for model in _domain_models():
        history_model = getattr(getattr(model, "history", None), "model", None)
        for field in getattr(history_model, "_history_m2m_fields", []):
            tables.add(field.remote_field.through._meta.db_table)
    return tables


@pytest.mark.parametrize("model", [pytest.param(m, id=m._meta.label) for m in _domain_models()])
def test_every_domain_model_has_history_or_a_stated_reason(model):
    label = model._meta.label
    if model._meta.auto_created:
        # a many-to-many link table: covered when its owner records the field in its history
        assert model._meta.db_table in _tracked_m2m_through_tables(), (
            f"{label} is a many-to-many link whose changes no history records: add the field to the owner's "
            f"history(m2m_fields=[…])")
        return
    if label in NO_HISTORY:
        assert not hasattr(model, "history"), f"{label} has history now: take it off NO_HISTORY"
        return
    assert hasattr(model, "history") and issubclass(model.history.model, HistoricalChanges), (
        f"{label} has no simple-history: add `history = history()` (apps.core.audit) and a migration, or list it "
        f"in NO_HISTORY with the reason")
    # made by apps.core.audit.history(), so that the acting user and a task's change reason are recorded
    assert all(isinstance(records, AuditedHistoricalRecords) for records in _history_records(model)), (
        f"{label}'s history is not made by apps.core.audit.history()")


def _history_records(model):
    """The simple-history records object(s) that write the model's history (its post_save receivers)."""
    sync_receivers, _async = post_save._live_receivers(model)
    records = [getattr(r, "__self__", None) for r in sync_receivers]
    records = [r for r in records if isinstance(r, HistoricalRecords)]
    assert records, f"no simple-history receiver for {model._meta.label}"
    return records


def test_the_exceptions_are_models_that_exist():
    for label in NO_HISTORY:
        assert apps.get_model(label) is not None


def test_a_progress_snapshot_keeps_its_history(team):
    # given a project's progress computed twice within one minute (one snapshot row, updated in place)
    minute = timezone.now().replace(second=0, microsecond=0)
    first = quality_services.progress_snapshot_write(project_id=team.project.pk, now=minute + timedelta(seconds=10))
    second = quality_services.progress_snapshot_write(project_id=team.project.pk, now=minute + timedelta(seconds=20))
    assert first.pk == second.pk

    # then both versions are in the history, the creation and the change, with when they were computed (not the
    # derived values: the snapshot rows are the series, and the engine's state is too large to copy each time)
    rows = MetricSnapshot.history.filter(id=first.pk).order_by("history_id")
    assert [row.history_type for row in rows] == ["+", "~"]
    assert [row.computed_at for row in rows] == [minute + timedelta(seconds=10), minute + timedelta(seconds=20)]
    assert not hasattr(rows[0], "values")
