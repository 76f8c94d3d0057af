"""The audit trail: who acted (also outside requests) and append-only history tables.

Who wrote a history row is resolved in this order: the user named by `acting_as` (services name their `actor`
through `records_actor`; Celery tasks run as the user who enqueued them, see `labelportal.celery.AuditedTask`), or
"the system" when `acting_as(None)` says so, even inside a request; only when neither was said, the request's user.
"""

import contextlib
import functools
import contextvars

from django.apps import apps
from django.core.exceptions import EmptyResultSet, ImproperlyConfigured
from django.db import connections, router
from simple_history.models import HistoricalRecords

from .rows import built_for

# "Nobody said": history falls back to the request's user. SYSTEM: `acting_as(None)`, no user, whatever the request.
_NOT_SET = object()
SYSTEM = object()
_acting_user = contextvars.ContextVar("labelportal_acting_user", default=_NOT_SET)
# The change reason of history rows written inside a block that gives none itself (a Celery task names itself).
_change_reason = contextvars.ContextVar("labelportal_change_reason", default=None)

# The Celery message header that carries the id of the user a task acts for (absent or null: the system).
ACTOR_HEADER = "labelportal_actor_id"


@contextlib.contextmanager
def acting_as(user):
    """Record `user` as the author of history rows written inside the block (Celery tasks, commands).

    `acting_as(None)` means the system: rows written inside name no user, even during a request.
    """
    token = _acting_user.set(SYSTEM if user is None else user)
    try:
        yield user
    finally:
        _acting_user.reset(token)


@contextlib.contextmanager
def change_reason(reason):
    """History rows written inside the block that carry no reason of their own get `reason`."""
    token = _change_reason.set(reason or None)
    try:
        yield reason
    finally:
        _change_reason.reset(token)


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
    """The user named by the innermost `acting_as`, or None (none named, or the system)."""
    user = _acting_user.get()
    return None if user is _NOT_SET or user is SYSTEM else user


def history_user_get(request=None, **kwargs):
    """simple-history's `get_user`: the explicit actor (or the system) first, then the request's user."""
    user = _acting_user.get()
    if user is SYSTEM:
        return None
    if user is not _NOT_SET:
        return user
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


def acting_user():
    """The user a history row written here and now would name (None: the system, or nobody known); also whom a
    task enqueued now acts for. The same resolution as `history_user_get`, for the current request."""
    return history_user_get(getattr(HistoricalRecords.context, "request", None))


class AuditedHistoricalRecords(HistoricalRecords):
    """simple-history's records, whose change reason falls back to the block's (`change_reason`)."""

    def get_change_reason_for_object(self, instance, history_type, using):
        reason = super().get_change_reason_for_object(instance, history_type, using)
        return reason if reason else _change_reason.get()


def history(**kwargs):
    """History for a domain model, with the acting user resolved the same way everywhere."""
    return AuditedHistoricalRecords(get_user=history_user_get, **kwargs)


def append_only_tables():
    """Tables whose rows may be inserted but never updated or deleted: all history tables and the event log."""
    tables = []
    for model in apps.get_models():
        if getattr(model, "_append_only", False) or model.__name__.startswith("Historical"):
            if model._meta.app_label in {"core", "projects", "tasks", "annotators", "quality"}:
                tables.append(model._meta.db_table)
    return sorted(set(tables))


# Django's flush (`manage.py flush`, and the test runner between transactional tests) empties every table at once,
# history included, like dropping the database would: its transaction sets this, and the TRUNCATE trigger lets it
# through. Every other TRUNCATE of an append-only table is refused. (The triggers guard against mistakes and code
# paths, not against someone with SQL access to the tables' owner, who could drop them.)
FLUSH_SETTING = "labelportal.flush_all"

_TRIGGER_FUNCTION = f"""
CREATE OR REPLACE FUNCTION labelportal_refuse_change() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND current_setting('{FLUSH_SETTING}', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'labelportal: % is append-only; % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def append_only_triggers_install(sender=None, using="default", **kwargs):
    """On PostgreSQL, make every append-only table refuse UPDATE and DELETE (a row trigger) and TRUNCATE (a
    statement trigger); runs after each migrate."""
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
            truncate_trigger = conn.ops.quote_name(f"{table}_append_only_truncate")
            cursor.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {quoted}")
            cursor.execute(
                f"CREATE TRIGGER {trigger} BEFORE UPDATE OR DELETE ON {quoted} "
                f"FOR EACH ROW EXECUTE FUNCTION labelportal_refuse_change()"
            )
            cursor.execute(f"DROP TRIGGER IF EXISTS {truncate_trigger} ON {quoted}")
            cursor.execute(
                f"CREATE TRIGGER {truncate_trigger} BEFORE TRUNCATE ON {quoted} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION labelportal_refuse_change()"
            )


def _flush_allowed_install():
    """Have Django's flush on PostgreSQL set FLUSH_SETTING for its own transaction (see above)."""
    try:
        from django.db.backends.postgresql.operations import DatabaseOperations
    except (ImportError, ImproperlyConfigured):  # no PostgreSQL driver: nothing to allow
        return
    if getattr(DatabaseOperations.sql_flush, "_labelportal_flush", False):
        return
    sql_flush = DatabaseOperations.sql_flush

    @functools.wraps(sql_flush)
    def sql_flush_allowed(self, style, tables, **kwargs):
        statements = sql_flush(self, style, tables, **kwargs)
        # execute_sql_flush runs the statements in one transaction: SET LOCAL ends with it.
        return [f"SET LOCAL {FLUSH_SETTING} = 'on';", *statements] if statements else statements

    sql_flush_allowed._labelportal_flush = True
    DatabaseOperations.sql_flush = sql_flush_allowed


_flush_allowed_install()


def history_record_queryset(queryset, *, user=None, reason="", history_type="~"):
    """Write one history row per object of `queryset`, in the database (INSERT … SELECT), for bulk updates.

    `queryset.update()` writes no history in simple-history; this keeps the trail of a bulk change without
    loading the rows into Python. `user` defaults to the acting user, `reason` to the block's (`change_reason`).
    Returns the number of rows written.
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
    user_id = getattr(user or acting_user(), "pk", None)
    reason_length = historical._meta.get_field("history_change_reason").max_length
    with conn.cursor() as cursor:
        now = conn.ops.adapt_datetimefield_value(timezone.now())
        # The outer SELECT's placeholders come before the subquery's in the SQL text.
        reason = reason or _change_reason.get() or ""
        cursor.execute(sql, [now, history_type, user_id, reason[:reason_length] or None, *params])
        return cursor.rowcount


# --- a change, its history row and its events in one statement ---------------------------------------------------

# Stands for the primary key of the row being inserted, in an event written with it (`audited_save(events=...)`).
NEW_ROW = object()


def _tracked(model):
    """The model's fields its history rows copy (simple-history's tracked fields, in the history table's order)."""
    attnames = {field.attname: field for field in model._meta.concrete_fields}
    return [attnames[field.attname] for field in model.history.model._meta.concrete_fields
            if field.attname in attnames]


def _history_cte(model, qn):
    historical = model.history.model
    columns = [qn(field.column) for field in _tracked(model)]
    extra = ["history_date", "history_type", "history_user_id", "history_change_reason"]
    return (f"INSERT INTO {qn(historical._meta.db_table)} ({', '.join(columns + [qn(c) for c in extra])}) "
            f"SELECT {', '.join(columns)}, %s, %s, %s, %s FROM changed")


def _insert_sql(model, fields, connection):
    qn = connection.ops.quote_name
    columns = ", ".join(qn(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    returning = ", ".join(qn(field.column) for field in _tracked(model))
    return (f"WITH changed AS (INSERT INTO {qn(model._meta.db_table)} ({columns}) VALUES ({placeholders}) "
            f"RETURNING {returning}), history AS ({_history_cte(model, qn)})")


def _update_sql(model, fields, connection):
    qn = connection.ops.quote_name
    assignments = ", ".join(f"{qn(field.column)} = %s" for field in fields)
    returning = ", ".join(qn(field.column) for field in _tracked(model))
    pk = qn(model._meta.pk.column)
    return (f"WITH changed AS (UPDATE {qn(model._meta.db_table)} SET {assignments} WHERE {pk} = %s "
            f"RETURNING {returning}), history AS ({_history_cte(model, qn)})")


def _event_sql(index, event, new_row_column, connection):
    """One event as a further INSERT of the statement, written only with the change (selected from it: an update
    that found no row writes no event); a field holding NEW_ROW takes the new row's key."""
    qn = connection.ops.quote_name
    fields = [field for field in event._meta.concrete_fields if not field.primary_key]
    values = [f"changed.{qn(new_row_column)}" if getattr(event, field.attname) is NEW_ROW else "%s"
              for field in fields]
    sql = (f", event_{index} AS (INSERT INTO {qn(event._meta.db_table)} "
           f"({', '.join(qn(field.column) for field in fields)}) SELECT {', '.join(values)} FROM changed)")
    return sql, fields


def _values(instance, fields, conn, add):
    """The values to write, as Django's save would: `pre_save` (auto_now, defaults) then the database form."""
    return [field.get_db_prep_save(field.pre_save(instance, add), connection=conn) for field in fields]


def audited_save(instance, *, update_fields=None, events=()):
    """Save `instance` (insert it, or update `update_fields`), write its history row and `events`, as one statement.

    On PostgreSQL the change, the history row (copied from the row as the database returns it) and the events are
    one `WITH … INSERT/UPDATE … RETURNING` statement instead of three or more, with the history row naming the
    user and change reason simple-history's signal would (the acting user, the instance's `_change_reason` or the
    block's; a reason longer than the column is cut). An event field set to NEW_ROW takes the key of the row being
    inserted; the events are written by the statement, the objects passed in stay unsaved (no `pk`). Elsewhere it
    is `instance.save()` (simple-history writes the history row) and one save per event.

    Updates refuse, as Django's `save(update_fields=…)` does, when the row is gone."""
    from django.conf import settings
    from django.db import DatabaseError
    from django.utils import timezone

    model = type(instance)
    alias = router.db_for_write(model, instance=instance)
    conn = connections[alias]
    adding = update_fields is None
    if (conn.vendor != "postgresql" or not getattr(settings, "SIMPLE_HISTORY_ENABLED", True)
            or hasattr(instance, "skip_history_when_saving")):
        instance.save(update_fields=update_fields)
        for event in events:
            for field in event._meta.concrete_fields:
                if getattr(event, field.attname) is NEW_ROW:
                    setattr(event, field.attname, instance.pk)
            event.save()
        return instance
    qn = conn.ops.quote_name
    meta = model._meta
    if adding:
        fields = [field for field in meta.concrete_fields if not field.primary_key or instance.pk is not None]
        sql = built_for(conn, ("audited insert", model, tuple(fields)), functools.partial(_insert_sql, model, fields))
        params = _values(instance, fields, conn, add=True)
    else:
        fields = [meta.get_field(name) for name in update_fields]
        sql = built_for(conn, ("audited update", model, tuple(fields)), functools.partial(_update_sql, model, fields))
        params = _values(instance, fields, conn, add=False) + [instance.pk]
    reason = getattr(instance, "_change_reason", None) or _change_reason.get() or None
    reason_length = built_for(conn, ("history reason length", model), lambda c: model.history.model._meta.get_field(
        "history_change_reason").max_length)  # `model.history` builds a manager class each time it is read
    history_date = getattr(instance, "_history_date", None) or timezone.now()
    history_user = getattr(instance, "_history_user", None) or acting_user()  # simple-history's order
    params += [conn.ops.adapt_datetimefield_value(history_date), "+" if adding else "~",
               getattr(history_user, "pk", None), reason[:reason_length] if reason else None]
    for index, event in enumerate(events):
        event_sql, event_fields = built_for(
            conn, ("audited event", model, index, type(event), tuple(f.attname for f in event._meta.concrete_fields
                                                                     if getattr(event, f.attname) is NEW_ROW)),
            functools.partial(_event_sql, index, event, meta.pk.column))
        sql += event_sql
        params += [field.get_db_prep_save(field.pre_save(event, True), connection=conn)
                   for field in event_fields if getattr(event, field.attname) is not NEW_ROW]
    sql += f" SELECT {qn(meta.pk.column)} FROM changed"
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        raise DatabaseError("Save with update_fields did not affect any rows.")
    if adding:
        instance.pk = row[0]
        instance._state.adding = False
        instance._state.db = alias
    for event in events:
        for field in event._meta.concrete_fields:
            if getattr(event, field.attname) is NEW_ROW:
                setattr(event, field.attname, instance.pk)
    return instance
