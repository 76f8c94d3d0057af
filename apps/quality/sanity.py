"""Sanity rules: the label schema's own and the ones a project adds in the admin (SanityRule).

The schema's rules (labels in the schema, spans inside the text and apart, boxes inside the image, required
fields) are `label_schema.result_validate`. A project adds its own: at least / at most N items (boxes, spans or
labels; of one label, or of any), a label that needs a note, a label that may not be used. Every rule has one
meaning, used three ways:

- at submit (`submission_check`): a submission, a resubmission or a reviewer's fix that breaks a rule is refused
  with a 400 naming the rule;
- in the quality engine (`annotations_breaking_rules`): the annotations that break an active rule, found by the
  database (JSON lookups on the result, never the results read into Python), for the sanity pass rate;
- in the report (`sanity_report`, `sanity_report_rows`): per rule, the current annotations that break it.

The pure functions (`rule_broken`) and the database expressions (`rule_breach`) say the same thing; the tests hold
them to it. "Current annotation" is METRICS.md's, as the engine reads it: the latest annotator-written version of
each assignment (a reviewer's fix is the task's final result, not the annotator's work).
"""

import heapq
import json
from dataclasses import dataclass, field

import numpy as np
from django.db.models import (
    BooleanField,
    Case,
    Count,
    Exists,
    F,
    Func,
    IntegerField,
    OuterRef,
    Q,
    Value,
    When,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Length
from django.db.models.lookups import GreaterThan, LessThan
from django.utils.translation import gettext as _, gettext_lazy, ngettext_lazy

from apps.core.errors import ValidationError
from apps.core.rows import instances
from apps.projects.label_schema import TaskType, label_values, result_validate
from apps.core.csv_tools import CSVChunks, spreadsheet_safe
from apps.tasks.models import Annotation

from .models import SanityRule

KIND = SanityRule.Kind
COUNT_KINDS = (KIND.MIN_ITEMS, KIND.MAX_ITEMS)
LABEL_KINDS = (KIND.LABEL_NEEDS_NOTE, KIND.LABEL_FORBIDDEN)
# Where a result keeps its items; a classification result has one label and no items.
ITEM_KEYS = {TaskType.MULTILABEL: "labels", TaskType.TEXT_SPANS: "spans", TaskType.BOUNDING_BOXES: "boxes"}
SCHEMA_RULE = "schema"  # the key of the schema's rules in a report (a configurable rule's key is its id)
STREAM_CHUNK = 5_000
BLANK = r"^\s*$"  # notes that say nothing (the database's reading of `not notes.strip()`)

# The standard messages: (any label, one label) per task type and count kind.
_COUNT_MESSAGES = {
    (TaskType.BOUNDING_BOXES, KIND.MIN_ITEMS): (
        ngettext_lazy("Add at least %(n)d box.", "Add at least %(n)d boxes.", "n"),
        ngettext_lazy("Add at least %(n)d “%(label)s” box.", "Add at least %(n)d “%(label)s” boxes.", "n")),
    (TaskType.BOUNDING_BOXES, KIND.MAX_ITEMS): (
        ngettext_lazy("Draw at most %(n)d box.", "Draw at most %(n)d boxes.", "n"),
        ngettext_lazy("Draw at most %(n)d “%(label)s” box.", "Draw at most %(n)d “%(label)s” boxes.", "n")),
    (TaskType.TEXT_SPANS, KIND.MIN_ITEMS): (
        ngettext_lazy("Mark at least %(n)d span.", "Mark at least %(n)d spans.", "n"),
        ngettext_lazy("Mark at least %(n)d “%(label)s” span.", "Mark at least %(n)d “%(label)s” spans.", "n")),
    (TaskType.TEXT_SPANS, KIND.MAX_ITEMS): (
        ngettext_lazy("Mark at most %(n)d span.", "Mark at most %(n)d spans.", "n"),
        ngettext_lazy("Mark at most %(n)d “%(label)s” span.", "Mark at most %(n)d “%(label)s” spans.", "n")),
    (TaskType.MULTILABEL, KIND.MIN_ITEMS): (
        ngettext_lazy("Choose at least %(n)d label.", "Choose at least %(n)d labels.", "n"),
        gettext_lazy("Choose the label “%(label)s”.")),
    (TaskType.MULTILABEL, KIND.MAX_ITEMS): (
        ngettext_lazy("Choose at most %(n)d label.", "Choose at most %(n)d labels.", "n"), None),
}


# --- the rules over one result ------------------------------------------------------------------------------------

def rules_active(project):
    """The project's active rules, in the order they were made."""
    # On every submission: SQL written once (apps.core.rows).
    return instances(SanityRule, "m.project_id = %s AND m.is_active", [project.pk], order_by="m.id")


def _items(task_type, result):
    """The items a count rule counts (boxes, spans, labels); not a list counts as none (the schema refuses it)."""
    items = result.get(ITEM_KEYS[task_type]) if isinstance(result, dict) else None
    return items if isinstance(items, list) else []


def _item_label(task_type, item):
    if task_type == TaskType.MULTILABEL:
        return item
    return item.get("label") if isinstance(item, dict) else None


def result_item_count(task_type, result, label=""):
    """How many items the result has (of `label` only, when given)."""
    items = _items(task_type, result)
    if not label:
        return len(items)
    return sum(1 for item in items if _item_label(task_type, item) == label)


def result_uses_label(task_type, result, label):
    if task_type == TaskType.CLASSIFICATION:
        return isinstance(result, dict) and result.get("label") == label
    return any(_item_label(task_type, item) == label for item in _items(task_type, result))


def rule_broken(rule, task_type, result, notes):
    """Does a result with these notes break the rule?"""
    if rule.kind in COUNT_KINDS:
        if task_type == TaskType.CLASSIFICATION:
            return False  # refused in the admin: a classification result has no items
        count = result_item_count(task_type, result, rule.label)
        return count < rule.count if rule.kind == KIND.MIN_ITEMS else count > rule.count
    used = result_uses_label(task_type, result, rule.label)
    if rule.kind == KIND.LABEL_NEEDS_NOTE:
        return used and not (notes or "").strip()
    return used if rule.kind == KIND.LABEL_FORBIDDEN else False


def _schema_labels(schema):
    # A schema as typed in the admin may not be normalised yet (labels as bare strings) when its form is invalid.
    labels = schema.get("labels") if isinstance(schema, dict) else None
    return [label if isinstance(label, dict) else {"value": label} for label in labels or []
            if isinstance(label, (dict, str))]


def _schema_values(schema):
    return [label.get("value") for label in _schema_labels(schema) if isinstance(label.get("value"), str)]


def label_name(schema, value):
    """A label's display name in the schema (its value when it has none)."""
    for label in _schema_labels(schema):
        if label.get("value") == value:
            return str(label.get("name") or value)
    return value


def rule_message(rule, task_type, schema):
    """What an annotator reads when the rule refuses a submission: the rule's own message, or a standard one."""
    if rule.message.strip():
        return rule.message.strip()
    name = label_name(schema, rule.label)
    if rule.kind == KIND.LABEL_NEEDS_NOTE:
        return _("Label “%(label)s” needs a note.") % {"label": name}
    if rule.kind == KIND.LABEL_FORBIDDEN:
        return _("Label “%(label)s” may not be used.") % {"label": name}
    any_label, one_label = _COUNT_MESSAGES.get((task_type, rule.kind), (None, None))
    template = (one_label or any_label) if rule.label else any_label
    if template is None:
        return str(rule)
    return str(template % {"n": rule.count, "label": name})


def rule_describe(rule, schema):
    """The rule as a manager reads it in the report ("At least 2 “car” items", "Label “Other” needs a note")."""
    name = label_name(schema, rule.label)
    if rule.kind == KIND.MIN_ITEMS:
        return (_("At least %(n)d “%(label)s” items") if rule.label else _("At least %(n)d items")) % {
            "n": rule.count, "label": name}
    if rule.kind == KIND.MAX_ITEMS:
        return (_("At most %(n)d “%(label)s” items") if rule.label else _("At most %(n)d items")) % {
            "n": rule.count, "label": name}
    if rule.kind == KIND.LABEL_NEEDS_NOTE:
        return _("Label “%(label)s” needs a note") % {"label": name}
    return _("Label “%(label)s” may not be used") % {"label": name}


def submission_errors(project, data, result, notes, *, rules=None):
    """Field errors of a submission against the schema's rules and the project's active ones, {} when it passes:
    {"result": [...], "notes": [...]} (a label that needs a note is the notes' fault)."""
    errors = {}
    task_type, schema = project.task_type, project.label_schema
    builtin = result_validate(task_type, schema, data, result)
    if builtin:
        errors["result"] = list(builtin)
    for rule in rules_active(project) if rules is None else rules:
        if rule_broken(rule, task_type, result, notes):
            where = "notes" if rule.kind == KIND.LABEL_NEEDS_NOTE else "result"
            errors.setdefault(where, []).append(rule_message(rule, task_type, schema))
    return errors


def submission_check(project, data, result, notes):
    """Refuse (ValidationError, 400) a result that breaks a sanity rule; the message names the first rule broken."""
    errors = submission_errors(project, data, result, notes)
    if errors:
        first = (errors.get("result") or errors["notes"])[0]
        raise ValidationError(first, errors=errors)


# --- a rule's sense for a project (the admin) -----------------------------------------------------------------------

def sanity_rule_problems(*, task_type, schema, kind, label, count):
    """Field errors of a rule for a project of this task type and label schema; {} when the rule makes sense."""
    errors = {}
    values = _schema_values(schema)
    label = (label or "").strip()
    if kind in LABEL_KINDS and not label:
        errors["label"] = [_("Name the label this rule is about.")]
    elif label and label not in values:
        errors["label"] = [_("“%(label)s” is not a label of the project's schema (its labels: %(labels)s).")
                           % {"label": label, "labels": ", ".join(values) or _("none")}]
    if kind not in COUNT_KINDS:
        return errors
    if task_type == TaskType.CLASSIFICATION:
        errors["kind"] = [_("A classification result is exactly one label: there are no items to count. Use "
                            "“Label X may not be used” or “Label X needs a note” instead.")]
        return errors
    count = count if isinstance(count, int) else 0
    if kind == KIND.MIN_ITEMS and count < 1:
        errors["count"] = [_("“At least 0” is always true: N must be 1 or more.")]
    elif task_type == TaskType.MULTILABEL and label and kind == KIND.MAX_ITEMS:
        errors["kind"] = [_("A label is chosen once at most: to keep “%(label)s” out, use “Label X may not be "
                            "used”.") % {"label": label}]
    elif task_type == TaskType.MULTILABEL and label and count > 1:
        errors["count"] = [_("A label is chosen once at most: “at least N” of one label needs N = 1.")]
    elif task_type == TaskType.MULTILABEL and kind == KIND.MIN_ITEMS and count > len(values):
        errors["count"] = [_("The schema has %(n)d labels: no result could choose %(count)d.")
                           % {"n": len(values), "count": count}]
    return errors


def sanity_rules_conflicts(rules):
    """Messages for active rules that no result could pass together (at least N above at most M of one label)."""
    messages = []
    lows, highs = {}, {}
    for rule in rules:
        if rule.is_active and rule.kind == KIND.MIN_ITEMS:
            lows[rule.label] = max(lows.get(rule.label, 0), rule.count)
        elif rule.is_active and rule.kind == KIND.MAX_ITEMS:
            highs[rule.label] = min(highs.get(rule.label, rule.count), rule.count)
    for label, low in sorted(lows.items()):
        high = highs.get(label)
        if high is not None and low > high:
            template = (_("“At least %(low)d” is more than “at most %(high)d” of “%(label)s”: no result could pass.")
                        if label else _("“At least %(low)d” is more than “at most %(high)d”: no result could pass."))
            messages.append(template % {"low": low, "high": high, "label": label})
    return messages


# --- the same rules in the database ---------------------------------------------------------------------------------

class ResultItemCount(Func):
    """How many items the `result` column holds under `key` (of one label, when given), counted by the database;
    not an array counts 0. PostgreSQL: jsonb_array_length / jsonb_array_elements; SQLite: json_array_length /
    json_each."""

    output_field = IntegerField()

    def __init__(self, task_type, label=""):
        super().__init__(F("result"))
        self.key, self.label, self.scalar = ITEM_KEYS[task_type], label, task_type == TaskType.MULTILABEL

    def as_postgresql(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        array = (f"(CASE WHEN jsonb_typeof({column} -> '{self.key}') = 'array' THEN {column} -> '{self.key}' "
                 f"ELSE '[]'::jsonb END)")
        params = [*params, *params]
        if not self.label:
            return f"jsonb_array_length({array})", params
        item = "item.value" if self.scalar else "item.value -> 'label'"
        return (f"(SELECT count(*) FROM jsonb_array_elements({array}) AS item WHERE {item} = to_jsonb(%s::text))",
                [*params, self.label])

    def as_sqlite(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        path = f"'$.{self.key}'"
        is_array = f"json_type({column}, {path}) = 'array'"
        if not self.label:
            return f"(CASE WHEN {is_array} THEN json_array_length({column}, {path}) ELSE 0 END)", [*params, *params]
        array = f"(CASE WHEN {is_array} THEN json_extract({column}, {path}) ELSE '[]' END)"
        # A string item's value is its text; an object's label is read only from objects (json_extract of a bare
        # text would be malformed JSON), and only a JSON string equals the label.
        match = ("item.type = 'text' AND item.value = %s" if self.scalar else
                 "(CASE WHEN item.type = 'object' AND json_type(item.value, '$.label') = 'text' "
                 "THEN json_extract(item.value, '$.label') END) = %s")
        return (f"(SELECT count(*) FROM json_each({array}) AS item WHERE {match})",
                [*params, *params, self.label])


class ResultHasLabel(Func):
    """Does one of the result's items carry `label`? PostgreSQL: JSON containment (`@>`); SQLite: json_each."""

    output_field = BooleanField()

    def __init__(self, task_type, label):
        super().__init__(F("result"))
        self.task_type, self.label = task_type, label

    def as_postgresql(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        key = ITEM_KEYS[self.task_type]
        probe = [self.label] if self.task_type == TaskType.MULTILABEL else [{"label": self.label}]
        return f"COALESCE(({column} -> '{key}') @> %s::jsonb, false)", [*params, json.dumps(probe)]

    def as_sqlite(self, compiler, connection, **extra):
        count = ResultItemCount(self.task_type, self.label).resolve_expression(compiler.query)
        sql, params = compiler.compile(count)
        return f"({sql} > 0)", params


def label_used(task_type, label):
    """A condition on annotations: the result uses `label`."""
    if task_type == TaskType.CLASSIFICATION:
        return Q(result__label=label)
    return Q(ResultHasLabel(task_type, label))


def rule_breach(rule, task_type):
    """A condition on annotations: the annotation breaks the rule (what `rule_broken` says of one result)."""
    if rule.kind in COUNT_KINDS:
        if task_type == TaskType.CLASSIFICATION:
            return Q(pk__in=[])
        count = ResultItemCount(task_type, rule.label)
        return Q(LessThan(count, rule.count) if rule.kind == KIND.MIN_ITEMS else GreaterThan(count, rule.count))
    if rule.kind == KIND.LABEL_NEEDS_NOTE:
        return label_used(task_type, rule.label) & Q(notes__regex=BLANK)
    if rule.kind == KIND.LABEL_FORBIDDEN:
        return label_used(task_type, rule.label)
    return Q(pk__in=[])


def _any_breach(rules, task_type):
    condition = Q(pk__in=[])
    for rule in rules:
        condition |= rule_breach(rule, task_type)
    return condition


def annotations_breaking_rules(project, *, task_ids=None, rules=None):
    """Ids of the annotator-written annotations of the project (or of these tasks) that break an active rule,
    found by the database and streamed into a sorted numpy array (the engine's sanity pass rate)."""
    rules = rules_active(project) if rules is None else rules
    if not rules:
        return np.zeros(0, dtype=np.int64)
    rows = Annotation.objects.filter(source=Annotation.Source.ANNOTATOR)
    rows = rows.filter(task_id__in=task_ids) if task_ids is not None else rows.filter(task__project_id=project.pk)
    ids = (rows.filter(_any_breach(rules, project.task_type)).values_list("id", flat=True).order_by()
           .iterator(chunk_size=STREAM_CHUNK))
    return np.unique(np.fromiter(ids, dtype=np.int64))


def annotations_current(project):
    """The project's current annotations: the latest annotator-written version of each assignment.

    Said as "current, or no later annotator version": almost every row is current, so the database looks for a
    later version (an index probe) only for the few that are not, and a listing in id order stops early."""
    later = Annotation.objects.filter(assignment_id=OuterRef("assignment_id"), source=Annotation.Source.ANNOTATOR,
                                      version__gt=OuterRef("version"))
    return (Annotation.objects.filter(task__project_id=project.pk, source=Annotation.Source.ANNOTATOR)
            .filter(Q(is_current=True) | ~Exists(later)).order_by("id"))


def _in_schema_classification(project):
    """Classification: the label is one of the schema's (the whole of result_validate for this type)."""
    values = label_values(project.label_schema)
    return Case(When(Q(result__label__in=values), then=Value(True)), default=Value(False),
                output_field=BooleanField()) if values else Value(False)


# --- the report -----------------------------------------------------------------------------------------------------

ROW_FIELDS = ("id", "task_id", "annotator__username", "version")


@dataclass
class SanityFinding:
    """One rule's line in the report: how many current annotations break it, and the first of them."""

    key: str
    title: str
    message: str
    count: int = 0
    rule: SanityRule | None = None
    annotations: list = field(default_factory=list)


def _row(values, detail):
    pk, task, annotator, version = values
    return {"annotation": pk, "task": task, "annotator": annotator, "version": version, "detail": detail}


def _schema_breaches(project, *, limit=None):
    """(annotation id, first message, result, notes) of the current annotations that break the schema's rules.

    Classification: filtered by the database, in id order. Other types: result_validate needs the whole result
    (spans apart, boxes inside), so the current annotations' results are streamed in chunks (in the table's order,
    nothing else read) and checked one by one: memory stays flat."""
    task_type, schema = project.task_type, project.label_schema
    current = annotations_current(project)
    spans = task_type == TaskType.TEXT_SPANS
    if task_type == TaskType.CLASSIFICATION:
        current = current.alias(in_schema=_in_schema_classification(project)).filter(in_schema=False)
    else:
        current = current.order_by()
        if spans:
            current = current.annotate(text_length=Length(KeyTextTransform("text", "task__data")))
    rows = current.values_list("id", "result", "notes", *(["text_length"] if spans else []))
    if limit is not None and task_type == TaskType.CLASSIFICATION:
        rows = rows[:limit]
    for values in rows.iterator(chunk_size=STREAM_CHUNK):
        data = {"text": " " * (values[3] or 0)} if spans else {}
        problems = result_validate(task_type, schema, data, values[1])
        if problems:
            yield values[0], problems[0], values[1], values[2]


def _with_rows(breaches):
    """Report rows (task, annotator, version: one query) of some (id, message, …) breaches, in id order."""
    breaches = sorted(breaches)
    rows = {values[0]: values for values in Annotation.objects.filter(pk__in=[b[0] for b in breaches])
            .values_list(*ROW_FIELDS).order_by()}
    return [(_row(rows[pk], message), result, notes) for pk, message, result, notes in breaches]


def _schema_offenders(project, *, limit=None):
    """(row, result, notes) of the current annotations that break the schema's rules, by id within each chunk."""
    buffer = []
    for breach in _schema_breaches(project, limit=limit):
        buffer.append(breach)
        if len(buffer) >= 1000:
            yield from _with_rows(buffer)
            buffer = []
    yield from _with_rows(buffer)


def _rule_offenders(project, rule, *, limit=None):
    detail = rule_message(rule, project.task_type, project.label_schema)
    rows = annotations_current(project).filter(rule_breach(rule, project.task_type)).values_list(*ROW_FIELDS)
    if limit is not None:
        rows = rows[:limit]
    return (_row(values, detail) for values in rows.iterator(chunk_size=STREAM_CHUNK))


def _findings(project, rules):
    schema = project.label_schema
    yield SanityFinding(key=SCHEMA_RULE, title=_("Schema rules (labels in the schema, spans inside the text and "
                                                 "apart, boxes inside the image, required fields)"),
                        message=_("Breaks the label schema"))
    for rule in rules:
        yield SanityFinding(key=str(rule.pk), title=rule_describe(rule, schema), rule=rule,
                            message=rule_message(rule, project.task_type, schema))


def sanity_report(project, *, limit=50):
    """Which current annotations break the project's rules (the schema's and the active configurable ones).

    Returns {"current": how many current annotations, "breaking": how many break at least one rule,
    "pass_rate": the share that passes (the engine's sanity pass rate, None without annotations), "findings": a
    SanityFinding per rule with its count and its first `limit` annotations (by id)}. The database counts every
    rule and the annotations breaking any in one pass over the current annotations, and lists the first offenders
    of each rule; only the schema's rules of the types other than classification are checked in Python, streamed
    (and the project's rules on the few annotations those break, to count each annotation once).
    """
    rules = rules_active(project)
    task_type = project.task_type
    classification = task_type == TaskType.CLASSIFICATION
    findings = list(_findings(project, rules))
    any_rule = _any_breach(rules, task_type)
    counts = {f"rule_{rule.pk}": Count("id", filter=rule_breach(rule, task_type)) for rule in rules}
    current = annotations_current(project)
    if classification:
        current = current.alias(in_schema=_in_schema_classification(project))
        counts[SCHEMA_RULE] = Count("id", filter=Q(in_schema=False))
        counts["breaking"] = Count("id", filter=Q(in_schema=False) | any_rule)
    else:
        counts["breaking"] = Count("id", filter=any_rule)
    totals = current.aggregate(current=Count("id"), **counts)
    breaking, schema = totals["breaking"], findings[0]
    if classification:
        schema.count = totals[SCHEMA_RULE]
        if schema.count and limit:
            schema.annotations = [row for row, _result, _notes in _schema_offenders(project, limit=limit)]
    else:
        first = []  # a heap of the `limit` smallest ids, negated
        for breach in _schema_breaches(project):
            schema.count += 1
            if limit:
                heapq.heappush(first, (-breach[0], breach[1]))
                if len(first) > limit:
                    heapq.heappop(first)
            if not any(rule_broken(rule, task_type, breach[2], breach[3]) for rule in rules):
                breaking += 1  # not counted by the database with the project's rules
        schema.annotations = [row for row, _result, _notes in _with_rows([(-pk, message, None, None)
                                                                           for pk, message in first])]
    for finding in findings[1:]:
        finding.count = totals[f"rule_{finding.rule.pk}"]
        if finding.count and limit:
            finding.annotations = list(_rule_offenders(project, finding.rule, limit=limit))
    total = totals["current"]
    return {"current": total, "breaking": breaking, "pass_rate": (total - breaking) / total if total else None,
            "findings": findings}


def sanity_report_rows(project):
    """Every (finding, annotation row) of the report, streamed rule by rule (for CSV and JSON exports)."""
    rules = rules_active(project)
    findings = list(_findings(project, rules))
    for row, _result, _notes in _schema_offenders(project):
        yield findings[0], row
    for finding in findings[1:]:
        for row in _rule_offenders(project, finding.rule):
            yield finding, row


CSV_COLUMNS = ["rule", "description", "message", "annotation", "task", "annotator", "version", "detail"]


def sanity_report_csv(project):
    """The report as CSV text chunks: one line per (rule, offending annotation), streamed."""
    chunks = CSVChunks()
    writer, flush = chunks.writer, chunks.flush
    writer.writerow(CSV_COLUMNS)
    for n, (finding, row) in enumerate(sanity_report_rows(project), start=1):
        writer.writerow([finding.key, spreadsheet_safe(finding.title), spreadsheet_safe(finding.message),
                         row["annotation"], row["task"], spreadsheet_safe(row["annotator"]), row["version"],
                         spreadsheet_safe(row["detail"])])
        if n % 1000 == 0:
            yield flush()
    yield flush()


def sanity_report_json(project):
    """The report as JSON text chunks: the summary, then every rule with all its offending annotations, streamed."""
    summary = sanity_report(project, limit=0)
    head = {"project": {"id": project.pk, "slug": project.slug, "name": project.name},
            "current": summary["current"], "breaking": summary["breaking"], "pass_rate": summary["pass_rate"]}
    yield json.dumps(head)[:-1] + ', "rules": ['
    for position, finding in enumerate(summary["findings"]):
        rule = finding.rule
        line = {"rule": finding.key, "description": finding.title, "message": finding.message,
                "kind": rule.kind if rule else None, "label": rule.label if rule else None,
                "count": rule.count if rule and rule.kind in COUNT_KINDS else None, "offending": finding.count}
        yield ("," if position else "") + "\n" + json.dumps(line)[:-1] + ', "annotations": ['
        rows = ((row for row, _result, _notes in _schema_offenders(project)) if rule is None
                else _rule_offenders(project, rule))
        for n, row in enumerate(rows):
            yield ("," if n else "") + "\n  " + json.dumps(row)
        yield "]}"
    yield "\n]}\n"


def sanity_rules_changed(*, project_id):
    """After the rules of a project changed: its figures follow (a full quality pass once the change commits)."""
    from .tasks import quality_recompute

    quality_recompute.delay_on_commit(project_id)
