"""The audit trail: who acted (also outside requests) and append-only history tables."""

import contextlib
import functools
import contextvars

from django.apps import apps
from django.core.exceptions import EmptyResultSet
from django.db import connections, router
from simple_history.models import HistoricalRecords

_acting_user = contextvars.ContextVar("labelportal_acting_user", default=None)


@contextlib.contextmanager
def acting_as(user):
    """Record `user` as the author of history rows written inside the block (Celery tasks, commands)."""
    token = _acting_user.set(user)
    try:
        yield user
    finally:
        _acting_user.reset(token)


def records_actor(service):
    """Decorate a service so history rows it writes name its `actor` (or `reviewer`, `annotator`) as the user who acted."""

    @functools.wraps(service)
    def wrapper(*args, **kwargs):
        actor = kwargs.get("actor") or kwargs.get("reviewer") or kwargs.get("annotator")
        if actor is None or not getattr(actor, "is_authenticated", False):
            return service(*args, **kwargs)
        with acting_as(actor):
            return service(*args, **kwargs)

    return wrapper


def current_actor():
    return _acting_user.get()


def history_user_get(request=None, **kwargs):
    """simple-history's `get_user`: the explicit actor first, then the request's user."""
    user = _acting_user.get()
    if user is not None:
        return user
    if request is not None and getattr(request, "user", None) is not None and request.user.is_authenticated:
        return request.user
    return None


def history(**kwargs):
    """History for a domain model, with the acting user resolved the same way everywhere."""
    return HistoricalRecords(get_user=history_user_get, **kwargs)


def append_only_tables():
    """Tables whose rows may be inserted but never updated or deleted: all history tables and the event log."""
    tables = []
    for model in apps.get_models():
        if getattr(model, "_append_only", False) or model.__name__.startswith("Historical"):
            if model._meta.app_label in {"core", "projects", "tasks", "annotators", "quality"}:
                tables.append(model._meta.db_table)
    return sorted(set(tables))


_TRIGGER_FUNCTION = """
CREATE OR REPLACE FUNCTION labelportal_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'labelportal: % is append-only; % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def append_only_triggers_install(sender=None, using="default", **kwargs):
    """On PostgreSQL, make every append-only table refuse UPDATE and DELETE (runs after each migrate)."""
    conn = connections[using]
    if conn.vendor != "postgresql":
        return
    existing = set(conn.introspection.table_names())
    with conn.cursor() as cursor:
        cursor.execute(_TRIGGER_FUNCTION)
        for table in append_only_tables():
            if table not in existing:
                continue
            quoted = conn.ops.quote_name(table)
            trigger = conn.ops.quote_name(f"{table}_append_only")
            cursor.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {quoted}")
            cursor.execute(
                f"CREATE TRIGGER {trigger} BEFORE UPDATE OR DELETE ON {quoted} "
                f"FOR EACH ROW EXECUTE FUNCTION labelportal_refuse_change()"
            )


def history_record_queryset(queryset, *, user=None, reason="", history_type="~"):
    """Write one history row per object of `queryset`, in the database (INSERT … SELECT), for bulk updates.

    `queryset.update()` writes no history in simple-history; this keeps the trail of a bulk change without
    loading the rows into Python. `user` defaults to the acting user. Returns the number of rows written.
    """
    from django.utils import timezone

    model = queryset.model
    historical = model.history.model
    model_attnames = {f.attname for f in model._meta.concrete_fields}
    tracked = [f for f in historical._meta.concrete_fields if f.attname in model_attnames]
    columns = [f.column for f in tracked]
    # One statement reads and writes: it goes to the database the queryset names, else the one for writes.
    alias = queryset._db or router.db_for_write(model)
    conn = connections[alias]
    try:
        select_sql, params = (queryset.order_by().values_list(*[f.attname for f in tracked])
                              .query.get_compiler(using=alias).as_sql())
    except EmptyResultSet:
        return 0
    qn = conn.ops.quote_name
    extra_columns = ["history_date", "history_type", "history_user_id", "history_change_reason"]
    sql = (
        f"INSERT INTO {qn(historical._meta.db_table)} "
        f"({', '.join(qn(c) for c in columns + extra_columns)}) "
        f"SELECT sub.*, %s, %s, %s, %s FROM ({select_sql}) AS sub"
    )
    user_id = getattr(user or current_actor(), "pk", None)
    reason_length = historical._meta.get_field("history_change_reason").max_length
    with conn.cursor() as cursor:
        now = conn.ops.adapt_datetimefield_value(timezone.now())
        # The outer SELECT's placeholders come before the subquery's in the SQL text.
        cursor.execute(sql, [now, history_type, user_id, (reason or "")[:reason_length] or None, *params])
        return cursor.rowcount
