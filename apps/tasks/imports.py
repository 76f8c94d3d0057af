"""Importing tasks from JSON, JSONL or CSV: streamed, all-or-nothing, with row-numbered errors.

Rows are read one at a time, validated into plain tuples and written in chunks, so a 100,000-row file never
becomes 100,000 model objects. On PostgreSQL a chunk is written with COPY; elsewhere with bulk_create. Each chunk's
history rows are written by the database (INSERT … SELECT). The whole import runs in one transaction: one bad row
and nothing is created (batches included).
"""

import csv
import json
import math
import os
import re
from dataclasses import dataclass

import ijson
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.core.audit import history_record_queryset, records_actor
from apps.core.errors import PayloadTooLargeError, ValidationError, size_text
from apps.core.permissions import MANAGE, require_project_perm
from apps.projects.label_schema import result_validate, task_data_validate
from apps.projects.models import Batch

from .models import Task, TaskEvent

FORMATS = ("json", "jsonl", "csv")
ROW_KEYS = {"data", "external_id", "batch", "priority", "is_gold", "gold_answer", "prediction"}
CSV_JSON_COLUMNS = {"data", "gold_answer", "prediction"}
CSV_INTEGER_DATA = {"width", "height"}
CHUNK = 2000
IMPORTABLE_BATCH_STATUSES = (Batch.Status.DRAFT, Batch.Status.ACTIVE, Batch.Status.PAUSED)
# A paused batch was released once: its tasks are open, and are handed out again when it resumes.
RELEASED_BATCH_STATUSES = (Batch.Status.ACTIVE, Batch.Status.PAUSED)
# The fields a row sets, in the order of the tuples the importer builds; the others take their defaults.
ROW_FIELDS = ("project_id", "batch_id", "external_id", "data", "status", "priority", "is_gold", "gold_answer",
              "prediction", "prediction_score")
_BOM = b"\xef\xbb\xbf"
# PostgreSQL cannot store U+0000 in text or jsonb; json.dumps writes it as \u0000 (an escaped backslash before
# "u0000" is a literal backslash, which is fine).
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")


@dataclass
class ImportResult:
    created: int
    skipped: int
    batch: Batch | None


class _RowError(Exception):
    pass


def import_format_guess(filename, default="json"):
    extension = os.path.splitext(filename or "")[1].lower().lstrip(".")
    return {"ndjson": "jsonl", "jsonl": "jsonl", "json": "json", "csv": "csv"}.get(extension, default)


def _not_utf8(where):
    return ValidationError(
        _("The file is not UTF-8 text (%(where)s). Save it as UTF-8 and import it again.") % {"where": where},
        errors={"file": [_("Not UTF-8 (%(where)s).") % {"where": where}]},
    )


def _json_constant_refuse(name):
    raise ValueError(_("%(name)s is not a JSON value") % {"name": name})


# json.loads that refuses NaN and Infinity, which are not JSON and which no database column stores.
_json_loads = json.JSONDecoder(parse_constant=_json_constant_refuse).decode


def _json_error_message(error):
    return error.msg if isinstance(error, json.JSONDecodeError) else str(error)


def _lines(stream):
    """The text lines of a binary or text stream, UTF-8 decoded, without a byte order mark.

    Lines end at \\n, \\r\\n or a lone \\r only: codecs' readers and str.splitlines() also break at U+2028, U+0085
    or form feeds, which JSON strings and quoted CSV cells may hold. Line ends are kept (the csv module needs them).
    """
    number = 0
    while True:
        line = stream.readline()
        if not line:
            return
        number += 1
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise _not_utf8(_("line %(n)d, byte %(byte)d") % {"n": number, "byte": error.start + 1}) from error
        elif number == 1:
            line = line.removeprefix("\ufeff")
        if "\r" in line and "\r" in line.rstrip("\r\n"):
            yield from (piece for piece in _LONE_CR.split(line) if piece)
        else:
            yield line


class _JsonSource:
    """What ijson reads: the stream's bytes without a byte order mark; refuses a file that is not a JSON array."""

    def __init__(self, stream):
        self.stream = stream
        head = self._read(64 * 1024).removeprefix(_BOM)
        start = head.lstrip()[:1]
        if start and start != b"[":
            raise ValidationError(
                _('The file must hold a JSON array of tasks: [{"data": {…}}, …]. For one task per line use JSONL.'),
                errors={"file": [_("Not a JSON array.")]},
            )
        self.head, self.empty = head, not start

    def _read(self, size):
        chunk = self.stream.read(size)
        return chunk.encode("utf-8") if isinstance(chunk, str) else chunk

    def read(self, size=-1):
        if size == 0:
            return b""
        if self.head:
            chunk, self.head = self.head, b""
            return chunk
        return self._read(size)


def _rows_json(stream):
    number, source = 0, _JsonSource(stream)
    if source.empty:
        return  # "holds no tasks" says it better than "premature EOF"
    try:
        for number, row in enumerate(ijson.items(source, "item", use_float=True), start=1):
            yield number, row
    except (ijson.JSONError, UnicodeDecodeError) as error:
        detail = error.args[0] if error.args else str(error)
        detail = (detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)).split("\n")[0]
        where = _("after task %(n)d") % {"n": number} if number else _("before the first task")
        if isinstance(error, UnicodeDecodeError) or "UTF8" in detail:
            raise _not_utf8(where) from error
        raise ValidationError(_("The file is not a valid JSON array (%(where)s): %(error)s")
                              % {"where": where, "error": detail}, errors={"file": [detail]}) from error


def _rows_jsonl(stream):
    number = 0
    for line in _lines(stream):
        if not line.strip():
            continue
        number += 1
        try:
            yield number, _json_loads(line)
        except ValueError as error:
            yield number, _RowError(_("Not valid JSON: %(error)s") % {"error": _json_error_message(error)})


def _csv_row(record):
    """One CSV record as an import row. `prediction` holds the result (or {"result", "score"}); a
    `prediction_score` column sets the score whatever the column order; other columns are task data."""
    row, data, score = {}, {}, None
    for column, value in record.items():
        if column is None:
            raise _RowError(_("The row has more cells than the header."))
        column = column.strip()
        if value is None or value == "":
            continue
        if column in CSV_JSON_COLUMNS:
            try:
                row[column] = _json_loads(value)
            except ValueError as error:
                raise _RowError(_("Column %(column)r is not valid JSON: %(error)s")
                                % {"column": column, "error": _json_error_message(error)}) from error
        elif column in ("external_id", "batch"):
            row[column] = value
        elif column == "priority":
            try:
                row[column] = int(value)
            except ValueError as error:
                raise _RowError(_("'priority' must be a whole number.")) from error
        elif column == "is_gold":
            if value.strip().lower() not in {"true", "false", "1", "0", "yes", "no"}:
                raise _RowError(_("'is_gold' must be true or false."))
            row[column] = value.strip().lower() in {"true", "1", "yes"}
        elif column == "prediction_score":
            try:
                score = float(value)
            except ValueError as error:
                raise _RowError(_("'prediction_score' must be a number.")) from error
        else:
            data[column] = int(value) if column in CSV_INTEGER_DATA and value.strip().isdigit() else value
    if "prediction" in row:
        prediction = row["prediction"]
        if not (isinstance(prediction, dict) and "result" in prediction and set(prediction) <= {"result", "score"}):
            row["prediction"] = {"result": prediction}
    if score is not None:
        row.setdefault("prediction", {})["score"] = score
    if data:
        if not isinstance(row.get("data", {}), dict):
            raise _RowError(_("Column 'data' must hold a JSON object when other data columns are present."))
        row.setdefault("data", {}).update(data)
    return row


def _rows_csv(stream):
    # A long text is one cell; the default limit (128 KiB) would refuse it. The file size is limited anyway.
    csv.field_size_limit(max(csv.field_size_limit(), settings.IMPORT_MAX_BYTES))
    reader = csv.DictReader(_lines(stream))
    try:
        for number, record in enumerate(reader, start=1):
            try:
                yield number, _csv_row(record)
            except _RowError as error:
                yield number, error
    except csv.Error as error:
        raise ValidationError(_("The file is not readable CSV (line %(line)d): %(error)s")
                              % {"line": reader.line_num, "error": error}, errors={"file": [str(error)]}) from error


def _rows(source, fmt):
    if isinstance(source, list):
        return enumerate(source, start=1)
    if fmt not in FORMATS:
        raise ValidationError(_("Unknown format %(fmt)r; use json, jsonl or csv.") % {"fmt": fmt},
                              errors={"format": [_("Unknown format.")]})
    return {"json": _rows_json, "jsonl": _rows_jsonl, "csv": _rows_csv}[fmt](source)


def _json_text(value, problems, label):
    """The JSON text of a value, noting a NUL character, which PostgreSQL cannot store in jsonb."""
    if value is None:
        return None
    text = json.dumps(value)
    if "\\u0000" in text and _JSON_NUL.search(text):
        problems.append(_("%(field)s contains a NUL character (\\u0000).") % {"field": label})
    return text


class _BulkCreateWriter:
    """Writes validated rows (tuples in ROW_FIELDS order) with bulk_create; returns their ids."""

    json_as_text = False  # the rows carry JSON values as Python objects

    def existing(self, project_id, external_ids):
        return set(Task.objects.filter(project_id=project_id, external_id__in=external_ids)
                   .values_list("external_id", flat=True))

    def write(self, rows):
        created = Task.objects.bulk_create([Task(**dict(zip(ROW_FIELDS, row))) for row in rows], batch_size=CHUNK)
        return [task.pk for task in created]


class _PostgresCopyWriter:
    """PostgreSQL: reserves ids from the table's sequence and COPYs the rows: no model objects, and no parameter
    quoting in Python (which made bulk_create's share of a 100,000-row import several seconds)."""

    json_as_text = True  # the rows carry JSON values as text, as COPY takes them

    def __init__(self):
        fields = Task._meta.concrete_fields
        by_attname = {f.attname: f for f in fields}
        self.table, self.pk = Task._meta.db_table, Task._meta.pk
        self.now_fields = [f for f in fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)]
        rest = [f for f in fields if f.attname not in ROW_FIELDS and f is not self.pk and f not in self.now_fields]
        self.callable_fields = [f for f in rest if f.has_default() and callable(f.default)]  # random_key
        self.constant_fields = [f for f in rest if f not in self.callable_fields]
        qn = connection.ops.quote_name
        columns = [self.pk, *(by_attname[a] for a in ROW_FIELDS), *self.now_fields, *self.constant_fields,
                   *self.callable_fields]
        self.copy_sql = f"COPY {qn(self.table)} ({', '.join(qn(f.column) for f in columns)}) FROM STDIN"
        self.existing_sql = (f"SELECT {qn(by_attname['external_id'].column)} FROM {qn(self.table)} "
                             f"WHERE {qn(by_attname['project_id'].column)} = %s "
                             f"AND {qn(by_attname['external_id'].column)} = ANY(%s)")

    def _cursor(self):
        # A server-side binding cursor sends the id list as one binary array instead of quoting 2,000 strings
        # into the SQL text (Django's cursors bind on the client). It bypasses Django's execute wrappers.
        import psycopg

        connection.ensure_connection()
        return psycopg.Cursor(connection.connection)

    def existing(self, project_id, external_ids):
        with connection.wrap_database_errors, self._cursor() as cursor:
            cursor.execute(self.existing_sql, [project_id, external_ids])
            return {external_id for (external_id,) in cursor}

    def write(self, rows):
        now = timezone.now()
        fixed = (*(now for _f in self.now_fields), *(self._json_constant(f) for f in self.constant_fields))
        makers = [f.default for f in self.callable_fields]  # the callables themselves: one call per row
        with connection.wrap_database_errors, self._cursor() as cursor:
            cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                           [self.table, self.pk.column, len(rows)])
            ids = [pk for (pk,) in cursor]
            with cursor.copy(self.copy_sql) as copy:
                write = copy.write_row
                if len(makers) == 1:
                    make = makers[0]
                    for pk, row in zip(ids, rows):
                        write((pk, *row, *fixed, make()))
                else:
                    for pk, row in zip(ids, rows):
                        write((pk, *row, *fixed, *[make() for make in makers]))
        return ids

    @staticmethod
    def _json_constant(field):
        value = field.get_default()
        return json.dumps(value) if value is not None and field.get_internal_type() == "JSONField" else value


class _Importer:
    """One import: validates each row, resolves batches, and writes full chunks while the file is clean."""

    def __init__(self, project, actor, default_batch_name):
        self.project, self.actor = project, actor
        self.task_type, self.schema = project.task_type, project.label_schema
        self.default_batch_name = default_batch_name
        self.default_batch = None
        self.batches_by_name = {b.name: b for b in project.batches.all()}
        self.batches_by_id = {b.pk: b for b in self.batches_by_name.values()}
        self.seen = set()
        self.errors = {}
        self.created = self.skipped = 0
        self.touched_batches = set()
        self.pending = []  # validated rows waiting for the next chunk write
        self.writer = _PostgresCopyWriter() if connection.vendor == "postgresql" else _BulkCreateWriter()
        self.json_as_text = self.writer.json_as_text
        # Into a project without external ids, no row can duplicate an earlier task: the file's own duplicates are
        # caught by `seen`, and a concurrent import of the same ids by the unique constraint.
        self.check_existing = Task.objects.filter(project=project, external_id__isnull=False).exists()

    def _error(self, number, messages):
        self.errors[str(number)] = messages if isinstance(messages, list) else [messages]
        return len(self.errors) >= settings.IMPORT_MAX_ERRORS

    def _batch(self, value):
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "":
            if self.default_batch is None:
                name, n = self.default_batch_name, 1
                while name in self.batches_by_name:
                    n += 1
                    name = f"{self.default_batch_name} ({n})"
                self.default_batch = self._batch_named(name)
            return self.default_batch
        if isinstance(value, int) and not isinstance(value, bool):
            batch = self.batches_by_id.get(value)
            if batch is None:
                raise _RowError(_("Batch %(id)d does not exist in this project.") % {"id": value})
        elif isinstance(value, str):
            batch = self.batches_by_name.get(value) or self._batch_named(value)
        else:
            raise _RowError(_("'batch' must be a batch id or a batch name."))
        if batch.status not in IMPORTABLE_BATCH_STATUSES:
            raise _RowError(_("Batch “%(name)s” is %(status)s; import into a draft, active or paused batch.")
                            % {"name": batch.name, "status": batch.status})
        return batch

    def _batch_named(self, name):
        if len(name) > 200:
            raise _RowError(_("A batch name has at most 200 characters."))
        if "\x00" in name:
            raise _RowError(_("A batch name cannot contain a NUL character."))
        batch = Batch.objects.create(project=self.project, name=name)
        self.batches_by_name[name], self.batches_by_id[batch.pk] = batch, batch
        return batch

    def _task(self, row):
        """Validate one row into a tuple of ROW_FIELDS values (JSON values as text if the writer wants it);
        raise _RowError with every problem found."""
        if not isinstance(row, dict):
            raise _RowError(_("Each task must be a JSON object."))
        problems = []
        if not row.keys() <= ROW_KEYS:
            unknown = set(row) - ROW_KEYS
            problems.append(_("Unknown field(s): %(fields)s.") % {"fields": ", ".join(sorted(map(str, unknown)))})
        task_type, schema = self.task_type, self.schema
        data = row.get("data")
        problems += task_data_validate(task_type, data)
        external_id = row.get("external_id")
        if external_id is not None:
            if isinstance(external_id, bool) or not isinstance(external_id, (str, int)):
                problems.append(_("'external_id' must be text or a whole number."))
            else:
                external_id = str(external_id).strip() or None
                if external_id and len(external_id) > 255:
                    problems.append(_("'external_id' has at most 255 characters."))
                if external_id and "\x00" in external_id:
                    problems.append(_("'external_id' contains a NUL character."))
        priority = row.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > 2**31 - 1:
            problems.append(_("'priority' must be a whole number."))
        is_gold = row.get("is_gold", False)
        if not isinstance(is_gold, bool):
            problems.append(_("'is_gold' must be true or false."))
        gold_answer = row.get("gold_answer")
        if is_gold is True and gold_answer is None:
            problems.append(_("A gold task needs a 'gold_answer'."))
        if gold_answer is not None and not problems:
            problems += [_("gold_answer: %(msg)s") % {"msg": m} for m in result_validate(task_type, schema, data,
                                                                                          gold_answer)]
        prediction, result, score = row.get("prediction"), None, None
        if prediction is not None:
            if not isinstance(prediction, dict) or not prediction.keys() <= {"result", "score"}:
                problems.append(_("'prediction' must be {\"result\": {...}, \"score\": 0.42}."))
            else:
                result, score = prediction.get("result"), prediction.get("score")
                if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                                          or not math.isfinite(score) or not 0 <= score <= 1):
                    problems.append(_("'prediction.score' must be a number between 0 and 1."))
                if result is not None and not problems:
                    problems += [_("prediction: %(msg)s") % {"msg": m}
                                 for m in result_validate(task_type, schema, data, result)]
        if problems:
            raise _RowError(problems)
        data_json = _json_text(data, problems, "data")
        gold_json = _json_text(gold_answer, problems, "gold_answer") if gold_answer is not None else None
        result_json = _json_text(result, problems, "prediction") if result is not None else None
        if problems:
            raise _RowError(problems)
        batch = self._batch(row.get("batch"))
        status = Task.Status.OPEN if batch.status in RELEASED_BATCH_STATUSES else Task.Status.NEW
        if self.json_as_text:
            data, gold_answer, result = data_json, gold_json, result_json
        return (self.project.pk, batch.pk, external_id, data, status, priority, is_gold, gold_answer, result,
                float(score) if score is not None else None)

    def add(self, number, row):
        if isinstance(row, _RowError):
            return self._error(number, row.args[0])
        try:
            task = self._task(row)
        except _RowError as error:
            return self._error(number, error.args[0])
        external_id = task[2]
        if external_id is not None:
            if external_id in self.seen:
                self.skipped += 1
                return False
            self.seen.add(external_id)
        if self.errors:
            return False  # after the first error nothing more is written; the transaction will be rolled back
        self.pending.append(task)
        if len(self.pending) >= CHUNK:
            self.flush()
        return False

    def flush(self):
        rows, self.pending = self.pending, []
        if not rows or self.errors:
            return
        ids = [row[2] for row in rows if row[2] is not None] if self.check_existing else None
        existing = self.writer.existing(self.project.pk, ids) if ids else set()
        fresh = [row for row in rows if row[2] is None or row[2] not in existing] if existing else rows
        self.skipped += len(rows) - len(fresh)
        if not fresh:
            return
        created = self.writer.write(fresh)
        lowest, highest = min(created), max(created)
        written = Task.objects.filter(pk__range=(lowest, highest)) if highest - lowest + 1 == len(created) \
            else Task.objects.filter(pk__in=created)
        history_record_queryset(written, user=self.actor, reason="imported", history_type="+")
        self.created += len(created)
        self.touched_batches.update(row[1] for row in fresh)


@records_actor
def tasks_import(*, project, actor, source, fmt=None, filename="", default_batch_name=None):
    """Import tasks into `project` from an uploaded file (binary), a text stream, or a list of dicts.

    Returns ImportResult(created, skipped, batch). Raises ValidationError with `errors` keyed by 1-based row
    number (nothing is created), or PayloadTooLargeError when the file is over IMPORT_MAX_BYTES.
    """
    if actor is not None:
        require_project_perm(actor, project, MANAGE)
    size = getattr(source, "size", None)
    if size is not None and size > settings.IMPORT_MAX_BYTES:
        raise PayloadTooLargeError(_("The file is %(size)s; the limit is %(limit)s.")
                                   % {"size": size_text(size, round_up=True), "limit": size_text(settings.IMPORT_MAX_BYTES)})
    fmt = fmt or import_format_guess(filename or getattr(source, "name", ""))
    batch_name = default_batch_name or _("Import %(when)s%(file)s") % {
        "when": timezone.now().strftime("%Y-%m-%d %H:%M:%S"), "file": f" {filename}" if filename else ""}
    try:
        with transaction.atomic():
            return _import(project, actor, source, fmt, filename, batch_name)
    except IntegrityError as error:
        # Another import wrote the same external ids (or batch names) between our check and our write.
        message = _("Nothing was imported: another import added the same tasks or batches at the same time. "
                    "Import the file again; tasks already there will be skipped.")
        raise ValidationError(message, errors={"file": [message]}) from error


def _import(project, actor, source, fmt, filename, batch_name):
    importer = _Importer(project, actor, batch_name)
    rows = 0
    for number, row in _rows(source, fmt):
        rows = number
        if importer.add(number, row):
            break
    importer.flush()
    if rows == 0:
        raise ValidationError(_("The file holds no tasks."), errors={"file": [_("No rows found.")]})
    if importer.errors:
        first = next(iter(importer.errors))
        raise ValidationError(
            _("Nothing was imported: %(n)d row(s) have errors (first: row %(row)s: %(msg)s)")
            % {"n": len(importer.errors), "row": first, "msg": importer.errors[first][0]},
            errors=importer.errors,
        )
    if importer.default_batch is not None and importer.default_batch.pk not in importer.touched_batches:
        importer.default_batch.delete()  # every row was a duplicate: leave no empty batch behind
        importer.default_batch = None
    batch = importer.default_batch or (
        importer.batches_by_id.get(next(iter(importer.touched_batches))) if importer.touched_batches else None)
    from .services import _after_commit_refresh, event_record

    event_record(type=TaskEvent.Type.IMPORTED, project=project, batch=batch, actor=actor,
                 payload={"created": importer.created, "skipped": importer.skipped, "format": fmt,
                          "file": filename, "batches": sorted(importer.touched_batches)})
    _after_commit_refresh(project.pk)
    return ImportResult(created=importer.created, skipped=importer.skipped, batch=batch)
