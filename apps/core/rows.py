"""Hot reads as SQL written once per process: for the few reads on every request of the annotation loop, where
compiling the query through the ORM costs more Python than the database spends running it.

The selected columns and the tables come from the models' `_meta` (`ModelColumns`); the joins and conditions the
callers write name the models' default columns (`id`, `<field>_id`, the field's name). The SQL is built the first
time and kept per connection (`built_once`); rows become model instances as a queryset builds them
(`ModelColumns.instance`). Anything not on the hot path uses the ORM as usual."""

from django.db import connections, router


class ModelColumns:
    """One model's concrete columns in a hand-written SELECT, and the instance built back from them as the ORM builds
    it: the database's and the fields' converters applied, then `Model.from_db`.

    The hot reads (the token, the project, the annotator's assignment, the permission rows) run on every request of
    the annotation loop, and compiling them through the ORM costs more Python than running a fixed SQL string with
    `cursor.execute`. Table and column names come from `_meta`, so a custom `db_table` or `db_column` still works;
    each read builds its SQL and converters once per process and database connection."""

    def __init__(self, model, table, connection):
        quote = connection.ops.quote_name
        fields = model._meta.concrete_fields
        self.model = model
        self.select = ", ".join(f"{quote(table)}.{quote(field.column)}" for field in fields)
        self.attnames = [field.attname for field in fields]
        self.width = len(fields)
        self.converters = []
        for index, field in enumerate(fields):
            column = field.get_col(table)
            converters = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
            if converters:
                self.converters.append((index, column, converters))

    def instance(self, row, start, connection):
        """The model instance from `row[start:start + width]`, as a queryset would have built it."""
        values = list(row[start:start + self.width])
        for index, column, converters in self.converters:
            value = values[index]
            for converter in converters:
                value = converter(value, column, connection)
            values[index] = value
        return self.model.from_db(connection.alias, self.attnames, values)


def primary_key_lookup_value(model, value, connection):
    """`value` as `Model.objects.get(pk=value)` would send it, or None where that lookup matches no row without
    asking the database (no key, or an integer out of the column's range: the ORM answers DoesNotExist there too).
    A value that is no key at all ("abc") raises the ORM's own ValueError."""
    primary_key = model._meta.pk
    value = primary_key.get_prep_value(value)
    if value is None:
        return None
    if isinstance(value, int):
        low, high = connection.ops.integer_field_range(primary_key.get_internal_type())
        if (low is not None and value < low) or (high is not None and value > high):
            return None
    return value


_built = {}


def built_once(key, model, build, *, write=False):
    """(connection, `build(connection)`), built the first time for this key and connection. `write`: the
    connection a write of `model` goes to (reads that lock rows), else the one a read goes to."""
    connection = connections[router.db_for_write(model) if write else router.db_for_read(model)]
    return connection, built_for(connection, key, build)


def built_for(connection, key, build):
    """`build(connection)`, built the first time for this key and this connection."""
    cache_key = (key, connection.alias)
    value = _built.get(cache_key)
    if value is None:
        value = _built[cache_key] = build(connection)
    return value


def instances(model, where, params, *, order_by=None, limit=None):
    """The `model` rows matching `where` (SQL over the alias `m`, with %s placeholders for `params`), ordered by
    `order_by` (SQL over `m`), at most `limit` of them, as model instances."""

    def build(connection):
        columns = ModelColumns(model, "m", connection)
        sql = f"SELECT {columns.select} FROM {connection.ops.quote_name(model._meta.db_table)} m WHERE {where}"
        sql += f" ORDER BY {order_by}" if order_by else ""
        return columns, sql + (f" LIMIT {int(limit)}" if limit else "")

    connection, (columns, sql) = built_once(("instances", model, where, order_by, limit), model, build)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [columns.instance(row, 0, connection) for row in cursor.fetchall()]
