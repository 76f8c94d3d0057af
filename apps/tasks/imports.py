"""Importing tasks from JSON, JSONL or CSV: streamed, all-or-nothing, with row-numbered errors.

Rows are read one at a time and written in chunks, so a 100,000-row file never becomes 100,000 model objects at
once. The whole import runs in one transaction: one bad row and nothing is created (batches included).
"""

import codecs
import csv
import io
import json
import math
import os
from dataclasses import dataclass

import ijson
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.core.audit import history_record_queryset, records_actor
from apps.core.errors import PayloadTooLargeError, ValidationError
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


def _rows_json(stream):
    try:
        for number, row in enumerate(ijson.items(stream, "item", use_float=True), start=1):
            yield number, row
    except ijson.JSONError as error:
        raise ValidationError(_("The file is not a valid JSON array: %(error)s") % {"error": error},
                              errors={"file": [str(error)]}) from error


def _text_lines(stream):
    if isinstance(stream, io.TextIOBase):
        return stream
    return codecs.getreader("utf-8-sig")(stream, errors="strict")


def _rows_jsonl(stream):
    number = 0
    try:
        for line in _text_lines(stream):
            if not line.strip():
                continue
            number += 1
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                yield number, _RowError(_("Not valid JSON: %(error)s") % {"error": error.msg})
    except UnicodeDecodeError as error:
        raise ValidationError(_("The file is not UTF-8 text."), errors={"file": [str(error)]}) from error


def _csv_row(record):
    row, data = {}, {}
    for column, value in record.items():
        if column is None:
            raise _RowError(_("The row has more cells than the header."))
        column = column.strip()
        if value is None or value == "":
            continue
        if column in CSV_JSON_COLUMNS:
            try:
                row[column] = json.loads(value)
            except json.JSONDecodeError as error:
                raise _RowError(_("Column %(column)r is not valid JSON: %(error)s")
                                % {"column": column, "error": error.msg}) from error
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
                row.setdefault("prediction", {})["score"] = float(value)
            except (ValueError, TypeError, AttributeError) as error:
                raise _RowError(_("'prediction_score' must be a number.")) from error
        else:
            data[column] = int(value) if column in CSV_INTEGER_DATA and value.strip().isdigit() else value
    if data:
        if not isinstance(row.get("data", {}), dict):
            raise _RowError(_("Column 'data' must hold a JSON object when other data columns are present."))
        row.setdefault("data", {}).update(data)
    return row


def _rows_csv(stream):
    try:
        reader = csv.DictReader(_text_lines(stream))
        for number, record in enumerate(reader, start=1):
            try:
                yield number, _csv_row(record)
            except _RowError as error:
                yield number, error
    except (csv.Error, UnicodeDecodeError) as error:
        raise ValidationError(_("The file is not readable CSV (UTF-8): %(error)s") % {"error": error},
                              errors={"file": [str(error)]}) from error


def _rows(source, fmt):
    if isinstance(source, list):
        return enumerate(source, start=1)
    if fmt not in FORMATS:
        raise ValidationError(_("Unknown format %(fmt)r; use json, jsonl or csv.") % {"fmt": fmt},
                              errors={"format": [_("Unknown format.")]})
    return {"json": _rows_json, "jsonl": _rows_jsonl, "csv": _rows_csv}[fmt](source)


class _Importer:
    """One import: validates each row, resolves batches, and writes full chunks while the file is clean."""

    def __init__(self, project, actor, default_batch_name):
        self.project, self.actor = project, actor
        self.default_batch_name = default_batch_name
        self.default_batch = None
        self.batches_by_name = {b.name: b for b in project.batches.all()}
        self.batches_by_id = {b.pk: b for b in self.batches_by_name.values()}
        self.seen = set()
        self.errors = {}
        self.created = self.skipped = 0
        self.touched_batches = set()
        self.pending = []  # (row number, Task) waiting for the next chunk write

    def _error(self, number, messages):
        self.errors[str(number)] = messages if isinstance(messages, list) else [messages]
        return len(self.errors) >= settings.IMPORT_MAX_ERRORS

    def _batch(self, value):
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
            batch = self.batches_by_name.get(value.strip()) or self._batch_named(value.strip())
        else:
            raise _RowError(_("'batch' must be a batch id or a batch name."))
        if batch.status not in IMPORTABLE_BATCH_STATUSES:
            raise _RowError(_("Batch “%(name)s” is %(status)s; import into a draft, active or paused batch.")
                            % {"name": batch.name, "status": batch.status})
        return batch

    def _batch_named(self, name):
        if len(name) > 200:
            raise _RowError(_("A batch name has at most 200 characters."))
        batch = Batch.objects.create(project=self.project, name=name)
        self.batches_by_name[name], self.batches_by_id[batch.pk] = batch, batch
        return batch

    def _task(self, row):
        """Validate one row and build its Task (unsaved); raise _RowError with every problem found."""
        if not isinstance(row, dict):
            raise _RowError(_("Each task must be a JSON object."))
        problems = []
        unknown = set(row) - ROW_KEYS
        if unknown:
            problems.append(_("Unknown field(s): %(fields)s.") % {"fields": ", ".join(sorted(map(str, unknown)))})
        task_type, schema = self.project.task_type, self.project.label_schema
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
        prediction, score = row.get("prediction"), None
        if prediction is not None:
            if not isinstance(prediction, dict) or set(prediction) - {"result", "score"}:
                problems.append(_("'prediction' must be {\"result\": {...}, \"score\": 0.42}."))
            else:
                score = prediction.get("score")
                if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                                          or not math.isfinite(score) or not 0 <= score <= 1):
                    problems.append(_("'prediction.score' must be a number between 0 and 1."))
                if "result" in prediction and not problems:
                    problems += [_("prediction: %(msg)s") % {"msg": m}
                                 for m in result_validate(task_type, schema, data, prediction["result"])]
        if problems:
            raise _RowError(problems)
        batch = self._batch(row.get("batch"))
        return Task(
            project=self.project, batch=batch, external_id=external_id or None, data=data,
            status=Task.Status.OPEN if batch.status == Batch.Status.ACTIVE else Task.Status.NEW,
            priority=priority, is_gold=is_gold, gold_answer=gold_answer,
            prediction=prediction.get("result") if prediction else None,
            prediction_score=float(score) if score is not None else None,
        )

    def add(self, number, row):
        if isinstance(row, _RowError):
            return self._error(number, row.args[0])
        try:
            task = self._task(row)
        except _RowError as error:
            return self._error(number, error.args[0])
        if task.external_id is not None:
            if task.external_id in self.seen:
                self.skipped += 1
                return False
            self.seen.add(task.external_id)
        self.pending.append(task)
        if len(self.pending) >= CHUNK:
            self.flush()
        return False

    def flush(self):
        tasks, self.pending = self.pending, []
        if not tasks or self.errors:
            return  # after the first error nothing more is written; the transaction will be rolled back
        ids = [t.external_id for t in tasks if t.external_id is not None]
        existing = set(Task.objects.filter(project=self.project, external_id__in=ids)
                       .values_list("external_id", flat=True)) if ids else set()
        fresh = [t for t in tasks if t.external_id is None or t.external_id not in existing]
        self.skipped += len(tasks) - len(fresh)
        created = Task.objects.bulk_create(fresh)
        history_record_queryset(Task.objects.filter(pk__in=[t.pk for t in created]), user=self.actor,
                                reason="imported", history_type="+")
        self.created += len(created)
        self.touched_batches.update(t.batch_id for t in created)


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
        raise PayloadTooLargeError(_("The file is %(size)d MB; the limit is %(limit)d MB.")
                                   % {"size": size // 2**20, "limit": settings.IMPORT_MAX_BYTES // 2**20})
    fmt = fmt or import_format_guess(filename or getattr(source, "name", ""))
    batch_name = default_batch_name or _("Import %(when)s%(file)s") % {
        "when": timezone.now().strftime("%Y-%m-%d %H:%M:%S"), "file": f" {filename}" if filename else ""}
    with transaction.atomic():
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
            transaction.set_rollback(True)
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
