"""The quality figures of a project (METRICS.md), computed by workers from the rows and stored as snapshots.

Requests only read what this module writes. Two ways in:

- Full recompute (`project_quality_compute` computes, `project_quality_recompute` stores): a handful of queries
  streamed into numpy arrays (`values_list(...).iterator()` straight into `np.fromiter`), then arrays all the way.
  For classification only the label is read, as an integer code the database derives from the JSON key
  (`result -> 'label'`), never the whole result.
- Incremental (`tasks_quality_update`, `quality_events_apply`): after events (submissions, review decisions),
  the tasks they touched are recomputed alone (their task snapshot: agreement, consensus, contribution) and every
  figure of the project, of their batches, of the annotators and reviewers involved and of those annotators'
  pairs moves by the difference: each task's old contribution subtracted, its new one added.

"Current annotation" (METRICS.md) = the latest annotator-written version of each assignment. A reviewer's fix
(source `review_fix`) or a manager's revert is not the annotator's work: agreement, gold accuracy and the
annotator figures use the annotator's own latest version; the fix is only the task's final result.

How the incremental figures stay equal to a full recompute
----------------------------------------------------------
Every figure is a function of sums over tasks, which the project keeps in one "state" row (kind
`agreement_state`), written by the full pass and moved by the updates under the project's lock:

- Agreement. Nominal alpha, per-label alpha, Fleiss' kappa and the mean pairwise score are sums over tasks of
  per-task terms (Krippendorff 2011: a task with m values and label counts c adds m to n, c to the label totals
  and Σ c(c-1)/(m-1) to the diagonal of the coincidence matrix), kept with the (m-1) denominators apart so that
  every sum is an integer and adding and subtracting a task is exact.
- Gold accuracy, acceptance, rework, sanity, error types (project, batch, per label) and the annotators' counts
  (submitted, reviewed, gold score, agreeing others ÷ others): sums and counts, ratios taken at the end.
- Cohen's kappa matrix: per pair of annotators the k × k table of their labels on shared tasks (the pair score
  sum and count for the other types); kappa is taken from the table.
- Medians (an annotator's lead time over every version, difficulty-adjusted speed over the current ones, a
  reviewer's latency) are not sums: the state keeps, per person, the sorted values within WINDOW_HALF of the
  median and how many lie below and above (`window_of`). Adding or removing a value outside the window moves a
  count, inside it edits the window; the median is exact as long as it stays inside. When it leaves (or a value
  to remove is not found), the update rebuilds that person's window, wider (REBUILD_WIDEN), from exactly the
  values the state holds (`medians_refresh`): what the full pass saw of their tasks (rows up to its watermark,
  decisions before its time) except for the tasks whose current-generation snapshot records their share, which
  come from those snapshots (the rows may hold events not applied yet: counted from the rows they would be
  counted twice). What the full pass saw comes from wide windows it keeps apart (BAND_HALF values either side,
  one row per person, kind BANDS, read only by a rebuild), the updated tasks' shares moved in and out; only a
  median that has moved beyond that too makes the rebuild read the person's rows. Either way the next rebuild
  of that median comes at least WINDOW_HALF × REBUILD_WIDEN moves later, however long between full passes. Speed
  ratios depend on the task's median lead time, so a task's contribution holds the ratios of its annotators, and
  a change to the task replaces all of them.
- The outlier flags are robust z-scores against the team: recomputed from the per-annotator figures (one row
  each) after every update, as are the team's quartiles.

A task's contribution (stored in its task snapshot) is everything those sums take from it: its label counts
(or pairs and score sum), its current annotations (annotator, label, sane, reworked, gold score, agreeing others,
others, shared), every version's lead time, its speed ratios, its pairs of labels, its decided reviews and their
error types. The state is as of a full recompute ("generation") plus the updates since. To subtract a task's old
contribution an update needs what the state holds for the task: the contribution stored in the task's snapshot
when the snapshot is of the current generation, otherwise the contribution of the task's rows up to the full
recompute's watermark and of its decisions before the watermark's time (annotation versions are appended, never
rewritten, and a decision is made once, so that is rebuilt exactly). The full recompute takes as watermark the
last annotation id written before its commit margin (QUALITY_COMMIT_MARGIN_SECONDS) and stores the contribution it
used for the tasks with later rows or decisions. The one thing that can make the state drift: a transaction that
keeps an inserted annotation or decision uncommitted for longer than the margin; the next full recompute (beat,
every 10 minutes) corrects it.

Dawid–Skene (classification) is fitted by the full pass (EM in metrics.py, at most DAWID_SKENE_MAX_ITER
iterations): the project's summary goes into the agreement snapshot ("consensus") and the fitted model (each
annotator's confusion matrix, the label priors) into the state. A task snapshot's consensus holds the majority
vote ("label", "support", "votes", "tied") and the task's Dawid–Skene label and posterior confidence
("dawid_skene", "confidence"), from one E-step with the model of the last full pass: the matrices do not move with
events (an annotator the model does not know gives no evidence) until the next full pass refits them.
"""

import bisect
import json
import math
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Case, F, FloatField, Func, IntegerField, JSONField, Q, Value, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce, Length
from django.utils import timezone

from apps.projects.label_schema import TaskType, label_values, result_validate
from apps.projects.models import Batch, Project
from apps.tasks.models import Annotation, Task, TaskEvent

from . import metrics, sanity
from .models import MetricSnapshot, Review

SCOPE = MetricSnapshot.Scope
QUALITY, AGREEMENT, ANNOTATORS, STATE = "quality", "agreement", "annotators", "agreement_state"
TASK_AGREEMENT = "agreement"  # scope task: one row per task, updated in place
GATE_METRICS = ("agreement", "gold_accuracy", "acceptance_rate", "rework_rate", "sanity_pass_rate")
DECISIONS = ("approve", "reject", "fix", "escalate")
OVERALL_METRIC = {
    TaskType.CLASSIFICATION: "krippendorff_alpha",
    TaskType.MULTILABEL: "mean_pairwise_jaccard",
    TaskType.TEXT_SPANS: "mean_pairwise_span_f1",
    TaskType.BOUNDING_BOXES: "mean_pairwise_box_f1",
}
# Below this many annotators with a figure the team distribution is not shown: it would describe individuals (with 3
# or 4, the quartiles and one's own value give the others' exact figures).
DISTRIBUTION_MIN_TEAM = 5
DISTRIBUTION_FIGURES = ("submitted", "median_lead_time_seconds", "acceptance_rate", "rework_rate", "gold_accuracy",
                        "agreement", "difficulty_adjusted_speed")
# Each median keeps this many values either side of it (window_of): enough for the events between full passes.
WINDOW_HALF = 32
# The full pass also keeps, apart from the state (one row per person, read only to rebuild a window), each
# median's values as the rows up to its watermark give them, this many either side: a rebuilt window starts there.
BAND_HALF = 1024
BANDS = "median_bands"  # kind of those rows (scope annotator)
# A rebuilt window (its median left it: medians_refresh) keeps WINDOW_HALF × this either side: the next rebuild of
# that person's median comes that many moves of it later at the earliest.
REBUILD_WIDEN = 4
DAWID_SKENE_MAX_ITER = 50
DAWID_SKENE_TOL = 1e-4
DAWID_SKENE_LOW_CONFIDENCE = 0.5
STREAM_CHUNK = 20_000
UPDATE_CHUNK = 500
_LOCK_NAMESPACE = 0x51_4C_50  # "QLP": pg_advisory_xact_lock(namespace, project id) serialises a project's writers


def commit_margin_seconds():
    """Annotations written more than this long ago are taken as committed (see the module docstring)."""
    return float(getattr(settings, "QUALITY_COMMIT_MARGIN_SECONDS", 10))


class SecondsBetween(Func):
    """Seconds from the second datetime to the first, as a float computed in the database."""

    arity = 2
    output_field = FloatField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="EXTRACT(EPOCH FROM (%(expressions)s))::float8",
                           arg_joiner=" - ", **extra)

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="((julianday(%(expressions)s)) * 86400.0)",
                           arg_joiner=") - julianday(", **extra)


def _label_code(path, labels):
    """The index of the JSON string at `path` in `labels`, -1 when it is not one of them (or not a string).

    Compared as JSON (`result -> 'label' = '"cat"'`), so exactly the values result_validate accepts get a code.
    """
    if not labels:
        return Value(-1, output_field=IntegerField())
    return Case(*[When(**{path: value}, then=Value(i)) for i, value in enumerate(labels)],
                default=Value(-1), output_field=IntegerField())


def _code_of(result, labels):
    """What _label_code finds in the database, from a result read: the index of its label among `labels`, -1 when
    it is not one of them (or not a string)."""
    label = result.get("label") if isinstance(result, dict) else None
    return labels.index(label) if isinstance(label, str) and label in labels else -1


def _number(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _figure(value, n):
    return {"value": _number(value), "n": int(n)}


def _rate(numerator, denominator):
    return _figure(numerator / denominator if denominator else None, denominator)


def project_lock(project_id, *, derived_only=False):
    """Serialise the quality writers of one project until the transaction ends (PostgreSQL advisory lock; SQLite
    runs one writing transaction at a time anyway).

    `derived_only`: the transaction writes nothing but figures that the next full pass recomputes, so its commit
    need not wait for the disk (synchronous_commit off: a crash may lose the last moments of figures, never
    data); on a busy disk that is most of an incremental update's time. Only for a transaction of its own: inside
    someone else's it would make their commit asynchronous too.
    """
    if connection.vendor == "postgresql":
        key = f"{_LOCK_NAMESPACE}, {int(project_id) & 0x7FFFFFFF}"
        asynchronous = derived_only and not connection.savepoint_ids
        with connection.cursor() as cursor:
            cursor.execute(("SET LOCAL synchronous_commit TO OFF; " if asynchronous else "")
                           + f"SELECT pg_advisory_xact_lock({key})")


def project_labels(project):
    """Label values in sorted order: label codes index this list (ties of a vote go to the smallest value)."""
    return sorted(label_values(project.label_schema))


# --- reading the rows -----------------------------------------------------------------------------------------------

ROW_DTYPE = np.dtype([("id", "i8"), ("assignment", "i8"), ("task", "i8"), ("annotator", "i8"), ("version", "i8"),
                      ("lead", "f8"), ("batch", "i8"), ("code", "i8")])


def _annotation_rows(project, labels, *, task_ids=None, max_id=None, with_gold=False):
    """Every annotator-written version: a structured array (ROW_DTYPE), plus the results (other task types) and the
    text lengths (text spans, for the sanity rules), in the order of the rows.

    Classification reads the label as its code (-1: not a label of the schema, so the sanity rules refuse it);
    the other types need the whole result to score it. A missing lead time reads as -1. `task_ids` (a list or a
    queryset of ids) limits the read to those tasks; `with_gold` (with task_ids) adds a fourth item, {task id:
    gold answer} of the gold tasks among them.
    """
    rows = Annotation.objects.filter(source=Annotation.Source.ANNOTATOR)
    rows = rows.filter(task_id__in=task_ids) if task_ids is not None else rows.filter(task__project_id=project.pk)
    if max_id is not None:
        rows = rows.filter(id__lte=max_id)
    classification = project.task_type == TaskType.CLASSIFICATION
    # A few tasks' labels are coded here from their results (cheaper than building the CASE of every label).
    code_in_database = classification and not with_gold
    rows = rows.annotate(lead=Coalesce("lead_time_seconds", Value(-1.0)),
                         code=_label_code("result__label", labels) if code_in_database else Value(-1))
    fields = ["id", "assignment_id", "task_id", "annotator_id", "version", "lead", "task__batch_id", "code"]
    gold_fields = ["task__is_gold", "task__gold_answer"] if with_gold else []
    if classification and not with_gold:
        values = rows.values_list(*fields).order_by()
        # A few tasks' rows come in one fetch; a project's are streamed (a server-side cursor on PostgreSQL).
        source = iter(list(values)) if task_ids is not None else values.iterator(chunk_size=STREAM_CHUNK)
        return np.fromiter(source, dtype=ROW_DTYPE), None, None
    spans = project.task_type == TaskType.TEXT_SPANS
    if spans:
        rows = rows.annotate(text_length=Length(KeyTextTransform("text", "task__data")))
    tuples, results, lengths, gold = [], [], [], {}
    extra = ["result"] + (["text_length"] if spans else []) + gold_fields
    values = rows.values_list(*fields, *extra).order_by()
    for row in (list(values) if task_ids is not None else values.iterator(chunk_size=STREAM_CHUNK)):
        tuples.append((*row[:7], _code_of(row[8], labels)) if classification else row[:8])
        if not classification:
            results.append(row[8])
        if spans:
            lengths.append(row[9])
        if with_gold and row[-2]:
            gold[row[2]] = row[-1]
    array = np.array(tuples, dtype=ROW_DTYPE) if tuples else np.zeros(0, dtype=ROW_DTYPE)
    read = (array, None if classification else results, lengths if spans else None)
    return (*read, gold) if with_gold else read


def _current(rows):
    """Indices of the current annotations (latest annotator version per assignment), sorted by assignment, and how
    many annotator versions each of those assignments has."""
    if not len(rows):
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.int64)
    order = np.lexsort((rows["version"], rows["assignment"]))
    assignments = rows["assignment"][order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = assignments[1:] != assignments[:-1]
    ends = np.flatnonzero(last)
    return order[ends], np.diff(np.concatenate([[-1], ends]))


def _gold_answers(project, labels):
    """Gold task ids (sorted) with their answers: codes for classification, results for the others."""
    gold = Task.objects.filter(project=project, is_gold=True).order_by("id")
    if project.task_type == TaskType.CLASSIFICATION:
        array = np.fromiter(gold.annotate(code=_label_code("gold_answer__label", labels))
                            .values_list("id", "code").iterator(chunk_size=STREAM_CHUNK),
                            dtype=np.dtype([("task", "i8"), ("code", "i8")]))
        return array["task"], array["code"]
    pairs = list(gold.values_list("id", "gold_answer"))
    return np.array([p[0] for p in pairs], dtype=np.int64), [p[1] for p in pairs]


REVIEW_DTYPE = np.dtype([("reviewer", "i8"), ("annotator", "i8"), ("decision", "i8"), ("latency", "f8"),
                         ("batch", "i8"), ("task", "i8"), ("decided", "f8")])


def _reviews(project, *, task_ids=None, before=None):
    """Decided reviews: reviewer, the reviewed annotation's annotator, decision (index in DECISIONS), seconds from
    the submission to the decision, batch, task; and (`task_ids` given: a few tasks' reviews) when it was decided,
    as a POSIX timestamp (a project's: -1 when decided before the datetime `before`, else 0)."""
    decision = Case(*[When(decision=d, then=Value(i)) for i, d in enumerate(DECISIONS)], default=Value(-1),
                    output_field=IntegerField())
    reviews = Review.objects.filter(decided_at__isnull=False)
    reviews = (reviews.filter(annotation__task_id__in=task_ids) if task_ids is not None
               else reviews.filter(annotation__task__project_id=project.pk))
    fields = ["reviewer_id", "annotation__annotator_id", "d", "latency", "annotation__task__batch_id",
              "annotation__task_id"]
    reviews = (reviews.annotate(d=decision, latency=SecondsBetween(F("decided_at"), F("annotation__submitted_at")))
               .order_by())
    if task_ids is not None:
        return np.array([(*row[:6], row[6].timestamp()) for row in reviews.values_list(*fields, "decided_at")],
                        dtype=REVIEW_DTYPE)
    earlier = Value(0.0) if before is None else Case(When(decided_at__lt=before, then=Value(-1.0)),
                                                      default=Value(0.0), output_field=FloatField())
    values = reviews.annotate(decided=earlier).values_list(*fields, "decided")
    return np.fromiter(values.iterator(chunk_size=STREAM_CHUNK), dtype=REVIEW_DTYPE)


def _error_type_rows(project):
    """(annotator, error code, batch, reviewed result) per error type chosen in a decided review: few rows."""
    return list(Review.error_types.through.objects.filter(review__annotation__task__project_id=project.pk,
                                                          review__decided_at__isnull=False)
                .values_list("review__annotation__annotator_id", "errortype__code",
                             "review__annotation__task__batch_id", "review__annotation__result").order_by())


def _tasks_read(project, labels, task_ids):
    """What a few tasks' values need, in two queries: (rows, results, lengths, reviews, error-type rows, gold) as
    _annotation_rows, _reviews and _gold_answers give them, the error-type rows as (annotator, code, batch,
    reviewed result, task, decided at as a timestamp) (the gold answers come with the rows, the error types with
    the reviews)."""
    rows, results, lengths, gold_of = _annotation_rows(project, labels, task_ids=task_ids, with_gold=True)
    gold_tasks = np.array(sorted(gold_of), dtype=np.int64)
    if project.task_type == TaskType.CLASSIFICATION:
        # as _label_code: the index of the JSON string in the labels, -1 otherwise
        gold = (gold_tasks, np.array([_code_of(gold_of[t], labels) for t in gold_tasks.tolist()], dtype=np.int64))
    else:
        gold = (gold_tasks, [gold_of[t] for t in gold_tasks.tolist()])
    decision = Case(*[When(decision=d, then=Value(i)) for i, d in enumerate(DECISIONS)], default=Value(-1),
                    output_field=IntegerField())
    found = (Review.objects.filter(decided_at__isnull=False, annotation__task_id__in=task_ids)
             .annotate(d=decision, latency=SecondsBetween(F("decided_at"), F("annotation__submitted_at")))
             .values_list("id", "reviewer_id", "annotation__annotator_id", "d", "latency",
                          "annotation__task__batch_id", "annotation__task_id", "decided_at", "error_types__code",
                          "annotation__result").order_by("id"))
    reviews, errors, seen = [], [], set()
    for pk, reviewer, annotator, d, latency, batch, task, decided_at, code, result in found:
        if pk not in seen:  # one row per error type (or one without): the review once
            seen.add(pk)
            reviews.append((reviewer, annotator, d, latency, batch, task, decided_at.timestamp()))
        if code is not None:
            errors.append((annotator, code, batch, result, task, decided_at.timestamp()))
    return rows, results, lengths, np.array(reviews, dtype=REVIEW_DTYPE), errors, gold


def _result_labels(task_type, result):
    """The labels a result uses (to count errors per label)."""
    result = result if isinstance(result, dict) else {}
    if task_type == TaskType.CLASSIFICATION:
        label = result.get("label")
        return [label] if isinstance(label, str) else []
    if task_type == TaskType.MULTILABEL:
        return sorted({x for x in result.get("labels") or [] if isinstance(x, str)})
    key = "spans" if task_type == TaskType.TEXT_SPANS else "boxes"
    return sorted({x.get("label") for x in result.get(key) or [] if isinstance(x, dict)
                   and isinstance(x.get("label"), str)})


def _sanity_passes(project, cur, cur_results, cur_lengths):
    """Which current annotations pass the sanity rules as they stand now (the schema's, result_validate, and the
    project's active SanityRules, at compute time), as a bool array: submissions the rules refused are not stored,
    so the pass rate moves when the label schema or the rules change under existing work. `cur_lengths`: the
    task's text length per annotation (text spans), else None."""
    if project.task_type == TaskType.CLASSIFICATION:
        sane = cur["code"] >= 0
    else:
        sane = np.zeros(len(cur), dtype=bool)
        for i, result in enumerate(cur_results):
            data = {"text": " " * (cur_lengths[i] or 0)} if cur_lengths is not None else {}
            sane[i] = not result_validate(project.task_type, project.label_schema, data, result)
    # The project's own active rules (SanityRule): the annotations breaking one are found by the database. A few
    # tasks (an incremental update) are looked up by task, a whole project by project.
    task_ids = np.unique(cur["task"]).tolist() if len(cur) <= UPDATE_CHUNK * 10 else None
    return sane & ~np.isin(cur["id"], sanity.annotations_breaking_rules(project, task_ids=task_ids))

# --- agreement sums (the incremental state) -------------------------------------------------------------------------

def stats_empty(task_type, k):
    if task_type == TaskType.CLASSIFICATION:
        return {"units": 0, "n": 0, "diag": {}, "totals": [0] * k, "label_diag": {},
                "fleiss": {"tasks": 0, "sq": 0, "totals": [0] * k}}
    return {"tasks": 0, "pairs": 0, "score_sum": 0.0}


def _canonical(stats):
    """Drop zero entries, so that a state built by additions and one built at once compare equal."""
    if "diag" in stats:
        stats["diag"] = {m: v for m, v in sorted(stats["diag"].items(), key=lambda kv: int(kv[0])) if v}
        stats["label_diag"] = {m: v for m, v in sorted(stats["label_diag"].items(), key=lambda kv: int(kv[0]))
                               if any(v)}
    return stats


def stats_add(stats, contribution, sign, *, overlap):
    """Add (sign 1) or subtract (sign -1) one task's contribution, in place.

    Classification: the contribution is the task's label counts c (m = Σc values); a task with m ≥ 2 adds m to n,
    c to the totals, Σ c(c-1) to the diagonal kept under m (divided by m-1 at the end), and per label the same for
    the label-vs-rest coding; a task with exactly `overlap` values adds to Fleiss' sums. Other types: the task's
    number of pairs and summed pair scores.
    """
    if contribution is None:
        return stats
    if "counts" in contribution:
        counts = [int(x) for x in contribution["counts"]]
        m = sum(counts)
        if m >= 2:
            key = str(m)
            stats["units"] += sign
            stats["n"] += sign * m
            stats["diag"][key] = stats["diag"].get(key, 0) + sign * sum(c * (c - 1) for c in counts)
            label_diag = stats["label_diag"].setdefault(key, [0] * len(counts))
            for j, c in enumerate(counts):
                stats["totals"][j] += sign * c
                label_diag[j] += sign * (c * (c - 1) + (m - c) * (m - c - 1))
        if m == overlap and overlap >= 2:
            fleiss = stats["fleiss"]
            fleiss["tasks"] += sign
            fleiss["sq"] += sign * sum(c * c for c in counts)
            for j, c in enumerate(counts):
                fleiss["totals"][j] += sign * c
        return _canonical(stats)
    if contribution.get("pairs"):
        stats["tasks"] += sign
        stats["pairs"] += sign * int(contribution["pairs"])
        stats["score_sum"] += sign * float(contribution["score_sum"])
        if stats["pairs"] == 0:
            stats["score_sum"] = 0.0  # no float residue once the last pair is gone
    return stats


def stats_from_counts(counts, overlap):
    """The classification sums of many tasks at once: `counts` is tasks × labels (how many chose each label)."""
    counts = np.asarray(counts, dtype=np.int64)
    k = counts.shape[1]
    stats = stats_empty(TaskType.CLASSIFICATION, k)
    m = counts.sum(axis=1)
    pairable = m >= 2
    if pairable.any():
        c, mp = counts[pairable], m[pairable]
        stats["units"], stats["n"] = int(pairable.sum()), int(mp.sum())
        stats["totals"] = c.sum(axis=0).tolist()
        same = (c * (c - 1)).sum(axis=1)
        rest = mp[:, None] - c
        per_label = c * (c - 1) + rest * (rest - 1)
        for value in np.unique(mp).tolist():
            group = mp == value
            stats["diag"][str(value)] = int(same[group].sum())
            stats["label_diag"][str(value)] = per_label[group].sum(axis=0).tolist()
    if overlap >= 2:
        exact = counts[m == overlap]
        stats["fleiss"] = {"tasks": int(len(exact)), "sq": int((exact * exact).sum()),
                           "totals": exact.sum(axis=0).tolist() if len(exact) else [0] * k}
    return _canonical(stats)


def _alpha(n, diagonal, totals_squared):
    # Krippendorff (2011), nominal: alpha = 1 - (n - 1) · (n - Σ_c o_cc) / (n² - Σ_c n_c²).
    expected = n * n - totals_squared
    if n < 2 or expected <= 0:
        return None
    return 1 - (n - 1) * (n - diagonal) / expected


def agreement_from_stats(task_type, stats, labels, overlap):
    """The project (or batch) agreement figures from its sums: overall, per label and Fleiss' kappa."""
    if task_type != TaskType.CLASSIFICATION:
        pairs = stats["pairs"]
        return {"overall": {"metric": OVERALL_METRIC[task_type],
                            **_figure(stats["score_sum"] / pairs if pairs else None, stats["tasks"])},
                "per_label": {}, "fleiss_kappa": None}
    n, units, totals = stats["n"], stats["units"], stats["totals"]
    diagonal = math.fsum(v / (int(m) - 1) for m, v in stats["diag"].items())
    in_use = sum(1 for t in totals if t > 0)
    overall = _alpha(n, diagonal, sum(t * t for t in totals)) if in_use >= 2 else None
    per_label = {}
    for j, label in enumerate(labels):
        t = totals[j] if j < len(totals) else 0
        value = None
        if 0 < t < n:
            label_diagonal = math.fsum(v[j] / (int(m) - 1) for m, v in stats["label_diag"].items())
            value = _alpha(n, label_diagonal, t * t + (n - t) * (n - t))
        per_label[label] = _figure(value, units)
    fleiss = stats["fleiss"]
    kappa = None
    if fleiss["tasks"] and overlap >= 2:
        rated = fleiss["tasks"] * overlap
        observed = (fleiss["sq"] - rated) / (rated * (overlap - 1))
        chance = math.fsum((t / rated) ** 2 for t in fleiss["totals"])
        if chance < 1 - 1e-12:
            kappa = (observed - chance) / (1 - chance)
    return {"overall": {"metric": OVERALL_METRIC[task_type], **_figure(overall, units)}, "per_label": per_label,
            "fleiss_kappa": {**_figure(kappa, fleiss["tasks"]), "overlap": overlap}}


# --- medians kept up to date: a window of the sorted values around the median --------------------------------------

def window_of(sorted_values, half=None):
    """The values around the median of a sorted list, with how many come before and after them: a median that
    stays exact while values are added and removed, as long as it stays inside the window (WINDOW_HALF each
    side)."""
    half = WINDOW_HALF if half is None else half
    n = len(sorted_values)
    low, high = (n - 1) // 2, n // 2
    start, end = (max(0, low - half), min(n, high + half + 1)) if n else (0, 0)
    return {"below": start, "values": [float(v) for v in sorted_values[start:end]], "above": n - end}


def window_move(window, value, sign):
    """Add (sign 1) or remove (sign -1) one value, in place; None when the window can no longer tell its median
    (a value to remove fell inside it and is not there, or it ran empty): then the figure comes from the rows."""
    if window is None:
        return None
    values = window["values"]
    if not values:
        if sign > 0 and window["below"] == window["above"] == 0:
            values.append(float(value))
            return window
        return None
    if values[0] <= value <= values[-1]:
        i = bisect.bisect_left(values, value)
        if sign > 0:
            values.insert(i, float(value))
        elif i < len(values) and values[i] == value:
            del values[i]
        else:
            return None
        return window
    side = "below" if value < values[0] else "above"
    window[side] += sign
    return window if window[side] >= 0 else None


def window_size(window):
    return window["below"] + len(window["values"]) + window["above"]


def window_median(window):
    """(known, median): the median as metrics._group_median computes it, None without values; known False when it
    has left the window."""
    n = window_size(window)
    if n == 0:
        return True, None
    low, high = (n - 1) // 2 - window["below"], n // 2 - window["below"]
    if low < 0 or high >= len(window["values"]):
        return False, None
    return True, (window["values"][low] + window["values"][high]) / 2


def _windows_by_group(groups, values, n_groups, half=None):
    """One window per group index: the groups' values apart (a stable sort of small integers), then in each only
    the values around the median put in order (_window_of_values), not the whole group."""
    half = WINDOW_HALF if half is None else half
    order = np.argsort(np.asarray(groups, dtype=np.int32), kind="stable")
    bounds = np.searchsorted(np.asarray(groups)[order], np.arange(n_groups + 1))
    return [_window_of_values(values[order[bounds[i]:bounds[i + 1]]], half) for i in range(n_groups)]


# --- the sums behind every other figure -----------------------------------------------------------------------------

def sums_empty():
    """A project's or batch's sums: tasks annotated, current annotations, sane ones, reworked assignments, gold
    score sum and count, approvals and decisions, error types."""
    return {"tasks": 0, "current": 0, "sane": 0, "reworked": 0, "gold": 0.0, "gold_n": 0, "approved": 0,
            "decided": 0, "error_types": {}}


def annotator_empty():
    """One annotator's sums, and the windows (and last values) of their two medians."""
    return {"submitted": 0, "coded": 0, "reworked": 0, "gold": 0.0, "gold_n": 0, "agree": 0.0, "others": 0,
            "shared": 0, "approved": 0, "decided": 0, "error_types": {},
            "lead": window_of([]), "median_lead": None, "speed": window_of([]), "speed_value": None, "speed_n": 0}


def reviewer_empty():
    return {"reviewed": 0, "latency": window_of([]), "median_latency": None}


def _count_add(counts, key, sign):
    value = counts.get(key, 0) + sign
    if value:
        counts[key] = value
    else:
        counts.pop(key, None)


def _pair_key(first, second):
    return f"{min(first, second)}:{max(first, second)}"


def contribution_apply(state, values, sign, touched):
    """Add (sign 1) or subtract (sign -1) one task's contribution to every sum of the state, in place; note the
    annotators, reviewers and batches it moved in `touched` (sets under those keys)."""
    contribution, batch = values["contribution"], values.get("batch")
    overlap, task_type = state["overlap"], state["task_type"]
    stats_add(state["project"], contribution, sign, overlap=overlap)
    figures = state["figures"]
    scopes = [figures["project"]]
    if batch is not None:
        batch_stats = state["batches"].setdefault(str(batch), stats_empty(task_type, len(state["labels"])))
        stats_add(batch_stats, contribution, sign, overlap=overlap)
        scopes.append(figures["batches"].setdefault(str(batch), sums_empty()))
        touched["batches"].add(batch)
    current = contribution.get("current", [])
    annotators = state["annotators"]
    for sums in scopes:
        sums["tasks"] += sign * bool(current)
        for annotator, code, sane, reworked, gold, _agree, _others, _shared in current:
            sums["current"] += sign
            sums["sane"] += sign * sane
            sums["reworked"] += sign * reworked
            if gold is not None:
                sums["gold"] += sign * gold
                sums["gold_n"] += sign
        for _reviewer, _annotator, decision, _latency in contribution.get("reviews", []):
            sums["decided"] += sign * (decision in (0, 1, 2))
            sums["approved"] += sign * (decision == 0)
        for _annotator, code, _labels in contribution.get("errors", []):
            _count_add(sums["error_types"], code, sign)
    for annotator, code, sane, reworked, gold, agree, others, shared in current:
        mine = annotators.setdefault(str(annotator), annotator_empty())
        touched["annotators"].add(annotator)
        mine["submitted"] += sign
        mine["coded"] += sign * (code >= 0)
        mine["reworked"] += sign * reworked
        if gold is not None:
            mine["gold"] += sign * gold
            mine["gold_n"] += sign
        mine["agree"] += sign * agree
        mine["others"] += sign * others
        mine["shared"] += sign * shared
    for reviewer, annotator, decision, latency in contribution.get("reviews", []):
        if decision in (0, 1, 2):
            mine = annotators.setdefault(str(annotator), annotator_empty())
            mine["decided"] += sign
            mine["approved"] += sign * (decision == 0)
            touched["annotators"].add(annotator)
        theirs = state["reviewers"].setdefault(str(reviewer), reviewer_empty())
        theirs["reviewed"] += sign
        theirs["latency"] = window_move(theirs["latency"], latency, sign)
        touched["reviewers"].add(reviewer)
    for annotator, code, labels in contribution.get("errors", []):
        _count_add(annotators.setdefault(str(annotator), annotator_empty())["error_types"], code, sign)
        touched["annotators"].add(annotator)
        for label in labels:
            by_label = figures["by_label"].setdefault(label, {})
            _count_add(by_label, code, sign)
            if not by_label:
                del figures["by_label"][label]
    for annotator, lead in contribution.get("leads", []):
        mine = annotators.setdefault(str(annotator), annotator_empty())
        mine["lead"] = window_move(mine["lead"], lead, sign)
        touched["annotators"].add(annotator)
    for annotator, ratio in contribution.get("speed", []):
        mine = annotators.setdefault(str(annotator), annotator_empty())
        mine["speed"] = window_move(mine["speed"], ratio, sign)
        mine["speed_n"] += sign
        touched["annotators"].add(annotator)
    pairs = state["pairs"]
    for cell in contribution.get("cells", []):
        key = _pair_key(cell[0], cell[1])
        if task_type == TaskType.CLASSIFICATION:
            table = pairs.setdefault(key, [0] * len(state["labels"]) ** 2)
            table[cell[2] * len(state["labels"]) + cell[3]] += sign
            if not any(table):
                del pairs[key]
        else:
            total = pairs.setdefault(key, [0, 0.0])
            total[0] += sign
            total[1] = total[1] + sign * cell[2] if total[0] else 0.0
            if not total[0]:
                del pairs[key]


def _median_from_rows(values):
    """The median as metrics._group_median takes it, None without values."""
    if not len(values):
        return None
    ordered = np.sort(np.asarray(values, dtype=float))
    return float((ordered[(len(ordered) - 1) // 2] + ordered[len(ordered) // 2]) / 2)


def _held_contributions(project, state, task_ids, pending, *, person=None, involved="current"):
    """{task id: contribution} of the tasks among `task_ids` (None: all) whose share the state holds as their task
    snapshot recorded it (one of the current generation: the tasks updated since the full pass, and those it recorded),
    with `pending` over them ({task id: contribution, None for no share}: the update under way, not written yet).
    Every other task's share is what the full pass saw: its rows up to the watermark and its decisions before the
    watermark's time (see the module docstring).

    Those snapshots were all written at or after the full pass's time (tasks_quality_update sees to it), so the
    snapshots' time index finds them: as many rows as tasks updated since the full pass, not the project's.
    `person`: only the tasks with them first in an entry of the contribution's `involved` list (an annotator in
    "current", a reviewer in "reviews"), told from that part of the snapshots alone."""
    generation = state["generation"]

    def involves(entries):
        return person is None or any(entry[0] == person for entry in entries or ())

    snapshots = MetricSnapshot.objects.filter(project=project, scope=SCOPE.TASK, kind=TASK_AGREEMENT)
    recent = [t for t, g, entries in snapshots.filter(
        computed_at__gte=datetime.fromisoformat(state["full_computed_at"])).values_list(
        "task_id", "values__generation", f"values__contribution__{involved}").order_by()
        if g == generation and t not in pending and involves(entries)]
    recent = np.asarray(recent, dtype=np.int64)
    mine = (recent if task_ids is None else recent[np.isin(recent, np.asarray(task_ids, dtype=np.int64))]).tolist()
    held = {}
    if mine:
        for task_id, values in snapshots.filter(task_id__in=mine).values_list("task_id", "values").order_by():
            if values.get("generation") == generation and "contribution" in values:
                held[task_id] = values["contribution"]
    held.update({t: contribution or {} for t, contribution in pending.items()
                 if involves((contribution or {}).get(involved))})
    return held


LEAD_DTYPE = np.dtype([("id", "i8"), ("task", "i8"), ("lead", "f8")])
SPEED_DTYPE = np.dtype([("id", "i8"), ("assignment", "i8"), ("task", "i8"), ("annotator", "i8"), ("version", "i8"),
                        ("lead", "f8")])


def _annotator_rows(project, annotator):
    return Annotation.objects.filter(annotator_id=annotator, task__project_id=project.pk,
                                     source=Annotation.Source.ANNOTATOR).order_by()


def _lead_values(project, state, annotator, pending):
    """The lead times the state holds for one annotator: every version of theirs, as _task_values takes them."""
    rows = np.fromiter(_annotator_rows(project, annotator).annotate(lead=Coalesce("lead_time_seconds", Value(-1.0)))
                       .values_list("id", "task_id", "lead"), dtype=LEAD_DTYPE)
    held = _held_contributions(project, state, np.unique(rows["task"]), pending)
    seen = (rows["id"] <= state["watermark"]) & (rows["lead"] >= 0) & ~np.isin(rows["task"], list(held))
    return np.concatenate([rows["lead"][seen], np.array(
        [lead for c in held.values() for a, lead in c.get("leads", []) if a == annotator], dtype=float)])


def _speed_values(project, state, annotator, pending):
    """The speed ratios the state holds for one annotator (each task's median lead time ÷ theirs, over the current
    annotations, as _task_values takes them): from every annotation of their tasks up to the watermark."""
    tasks = _annotator_rows(project, annotator).values("task_id")
    held = _held_contributions(project, state, np.fromiter(tasks.values_list("task_id", flat=True), dtype=np.int64),
                               pending)
    rows = np.fromiter(Annotation.objects.filter(task_id__in=tasks, source=Annotation.Source.ANNOTATOR,
                                                 id__lte=state["watermark"])
                       .annotate(lead=Coalesce("lead_time_seconds", Value(-1.0)))
                       .values_list("id", "assignment_id", "task_id", "annotator_id", "version", "lead").order_by(),
                       dtype=SPEED_DTYPE)
    rows = rows[~np.isin(rows["task"], list(held))]
    cur = rows[_current(rows)[0]]
    task_ids, task_index = np.unique(cur["task"], return_inverse=True)
    timed = np.flatnonzero(cur["lead"] > 0)
    task_median = metrics._group_median(task_index[timed], cur["lead"][timed], len(task_ids))
    mine = timed[cur["annotator"][timed] == annotator]
    return np.concatenate([task_median[task_index[mine]] / cur["lead"][mine], np.array(
        [ratio for c in held.values() for a, ratio in c.get("speed", []) if a == annotator], dtype=float)])


def _latency_values(project, state, reviewer, pending):
    """The review latencies the state holds for one reviewer, as _tasks_read takes them."""
    found = list(Review.objects.filter(reviewer_id=reviewer, decided_at__isnull=False,
                                       annotation__task__project_id=project.pk)
                 .annotate(latency=SecondsBetween(F("decided_at"), F("annotation__submitted_at")))
                 .values_list("annotation__task_id", "latency", "decided_at").order_by())
    tasks = np.array([row[0] for row in found], dtype=np.int64)
    held = _held_contributions(project, state, np.unique(tasks), pending)
    before = datetime.fromisoformat(state["watermark_at"]).timestamp()
    return np.array([latency for task, latency, decided_at in found
                     if task not in held and decided_at.timestamp() < before]
                    + [r[3] for c in held.values() for r in c.get("reviews", []) if r[0] == reviewer], dtype=float)


def _window_of_values(values, half):
    """window_of the values given in any order: only the values around the median put in order (np.partition)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if not n:
        return window_of([])
    start, end = max(0, (n - 1) // 2 - half), min(n, n // 2 + half + 1)
    values = np.partition(values, [start, end - 1])  # the window's ends in place, smaller before, larger after
    return {"below": start, "values": np.sort(values[start:end]).tolist(), "above": n - end}


MEDIAN_VALUES = {  # in a task's contribution: a person's values of each median
    "lead": lambda contribution, person: [v for a, v in contribution.get("leads", []) if a == person],
    "speed": lambda contribution, person: [v for a, v in contribution.get("speed", []) if a == person],
    "latency": lambda contribution, person: [r[3] for r in contribution.get("reviews", []) if r[0] == person],
}


class _Rebuild:
    """What the window rebuilds of one update read: the tasks whose share the state holds from their snapshots,
    the full pass's wide windows (a row per person, read once), a person's values on some tasks as the full pass
    saw them."""

    def __init__(self, project, labels, state, pending):
        self.project, self.labels, self.state, self.pending = project, labels, state, pending
        self._held, self._bands = {}, {}

    def held(self, person, involved):
        """_held_contributions of the tasks involving one person."""
        if (person, involved) not in self._held:
            self._held[person, involved] = _held_contributions(self.project, self.state, None, self.pending,
                                                               person=person, involved=involved)
        return self._held[person, involved]

    def band(self, person, key):
        """The full pass's wide window of one person's median (empty: that pass saw none of theirs), None without
        one of the state's generation (a person new since: their rows are few)."""
        if self.state.get("bands_generation") != self.state["generation"]:
            return None
        if person not in self._bands:
            row = (MetricSnapshot.objects.filter(project=self.project, scope=SCOPE.ANNOTATOR, kind=BANDS,
                                                 annotator_id=person).values_list("values", flat=True).first())
            self._bands[person] = row if row and row.get("generation") == self.state["generation"] else None
        if self._bands[person] is None:
            return None
        window = self._bands[person].get(key) or window_of([])
        return {"below": window["below"], "values": list(window["values"]), "above": window["above"]}

    def seen(self, person, key, task_ids):
        """{task id: values} of one person's median on some tasks, as the full pass saw them (rows up to the
        watermark, decisions before its time), taken as _task_values takes them."""
        seen = {}
        if not task_ids:
            return seen
        if key == "latency":
            before = datetime.fromisoformat(self.state["watermark_at"]).timestamp()
            for task, latency, decided_at in (
                    Review.objects.filter(reviewer_id=person, decided_at__isnull=False,
                                          annotation__task_id__in=task_ids)
                    .annotate(latency=SecondsBetween(F("decided_at"), F("annotation__submitted_at")))
                    .values_list("annotation__task_id", "latency", "decided_at").order_by()):
                if decided_at.timestamp() < before:
                    seen.setdefault(task, []).append(latency)
            return seen
        rows = np.fromiter(Annotation.objects.filter(task_id__in=task_ids, source=Annotation.Source.ANNOTATOR,
                                                     id__lte=self.state["watermark"])
                           .annotate(lead=Coalesce("lead_time_seconds", Value(-1.0)))
                           .values_list("id", "assignment_id", "task_id", "annotator_id", "version", "lead")
                           .order_by(), dtype=SPEED_DTYPE)
        if key == "lead":
            mine = rows[(rows["annotator"] == person) & (rows["lead"] >= 0)]
            for task, lead in mine[["task", "lead"]].tolist():
                seen.setdefault(task, []).append(lead)
            return seen
        cur = rows[_current(rows)[0]]
        tasks, task_index = np.unique(cur["task"], return_inverse=True)
        timed = np.flatnonzero(cur["lead"] > 0)
        task_median = metrics._group_median(task_index[timed], cur["lead"][timed], len(tasks))
        mine = timed[cur["annotator"][timed] == person]
        ratios = task_median[task_index[mine]] / cur["lead"][mine]
        for task, ratio in zip(cur["task"][mine].tolist(), ratios.tolist()):
            seen.setdefault(task, []).append(ratio)
        return seen


def _window_from_band(rebuild, person, key, half):
    """A person's window of one median, as the state holds the values, from the full pass's wide window: the
    tasks whose share the state holds from their snapshots (and the update under way) take their share as the
    full pass saw it out and put theirs in. None when that cannot tell the median (it moved out of the wide
    window, or no wide window): then the rows are read (_lead_values and the others)."""
    window = rebuild.band(person, key)
    if window is None:
        return None
    values_of = MEDIAN_VALUES[key]
    involved = "reviews" if key == "latency" else "current"
    # A person with values in a task, then or now, is in its current annotations (annotators) or decisions
    # (reviewers) now, first in each entry: rows and decisions are only added.
    held = rebuild.held(person, involved)
    seen = rebuild.seen(person, key, sorted(held))
    for task_id, contribution in held.items():
        for value in seen.get(task_id, ()):
            window = window_move(window, value, -1)
        for value in values_of(contribution, person):
            window = window_move(window, value, 1)
        if window is None:
            return None
    known, _median = window_median(window)
    if not known:
        return None
    n, values = window_size(window), window["values"]
    start = max(0, (n - 1) // 2 - window["below"] - half)
    end = min(len(values), n // 2 - window["below"] + half + 1)
    return {"below": window["below"] + start, "values": values[start:end],
            "above": window["above"] + len(values) - end}


def medians_refresh(project, labels, state, touched, pending):
    """The median figures of the touched annotators and reviewers, from their windows. A window that can no longer
    tell its median (it left the window, or a value to remove was not in it) is rebuilt around the median, exactly
    as the state holds the values (`pending`: the contributions of the update under way, {task id: contribution},
    None for none), WINDOW_HALF × REBUILD_WIDEN values either side: from the full pass's wide window of that person
    (_window_from_band: one small read), or when the median has moved out of that too, from their rows. Either way
    the median then moves that many places before the next rebuild."""
    half = WINDOW_HALF * REBUILD_WIDEN
    rebuild = _Rebuild(project, labels, state, pending)
    for group, ids, rebuilds in (("annotators", touched["annotators"], (("lead", "median_lead", _lead_values),
                                                                         ("speed", "speed_value", _speed_values))),
                                 ("reviewers", touched["reviewers"], (("latency", "median_latency",
                                                                       _latency_values),))):
        for person in sorted(ids):
            mine = state[group][str(person)]
            for key, figure, values_of in rebuilds:
                known, value = window_median(mine[key]) if mine[key] is not None else (False, None)
                if not known:
                    mine[key] = _window_from_band(rebuild, person, key, half)
                    if mine[key] is None:
                        mine[key] = _window_of_values(values_of(project, state, person, pending), half)
                    known, value = window_median(mine[key])
                mine[figure] = _number(value)


# --- figures from the sums (the full pass and the incremental updates share these) ----------------------------------

def _gate_figures(sums):
    """The gate figures besides agreement."""
    return {
        "gold_accuracy": _rate(float(sums["gold"]), int(sums["gold_n"])),
        "acceptance_rate": _rate(int(sums["approved"]), int(sums["decided"])),
        "rework_rate": _rate(int(sums["reworked"]), int(sums["current"])),
        "sanity_pass_rate": _rate(int(sums["sane"]), int(sums["current"])),
    }


def _quality_values(agreement, sums):
    """A quality snapshot's figures (project or batch) from its agreement figures and sums."""
    figures = _gate_figures(sums)
    return {
        "agreement": agreement["overall"], "fleiss_kappa": agreement["fleiss_kappa"],
        **{name: figure["value"] for name, figure in figures.items()},
        "samples": {name: figure["n"] for name, figure in figures.items()},
        "figures": figures, "error_types": dict(sorted(sums["error_types"].items())),
    }


def _project_quality_values(state):
    agreement = agreement_from_stats(state["task_type"], state["project"], state["labels"], state["overlap"])
    sums = state["figures"]["project"]
    by_label = {label: dict(sorted(codes.items())) for label, codes in sorted(state["figures"]["by_label"].items())}
    return {**_quality_values(agreement, sums), "error_types_by_label": by_label, "submitted": sums["current"],
            "annotators": sum(1 for a in state["annotators"].values() if a["submitted"] > 0),
            "tasks_annotated": sums["tasks"]}


def _batch_quality_values(state, batch_id):
    stats = state["batches"].get(str(batch_id)) or stats_empty(state["task_type"], len(state["labels"]))
    agreement = agreement_from_stats(state["task_type"], stats, state["labels"], state["overlap"])
    return _quality_values(agreement, state["figures"]["batches"].get(str(batch_id)) or sums_empty())


def _percentiles(values):
    values = [v for v in values if v is not None]
    if len(values) < DISTRIBUTION_MIN_TEAM:
        return {"n": len(values), "p25": None, "median": None, "p75": None}
    p25, median, p75 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return {"n": len(values), "p25": float(p25), "median": float(median), "p75": float(p75)}


def _annotators_values(state):
    """The annotators snapshot (rows, reviewers, team distribution) from the per-person sums: the outlier flags
    are the team's robust z-scores, so they are recomputed over everybody (one row per annotator)."""
    usernames = state["usernames"]
    people = {int(a): s for a, s in state["annotators"].items() if s["submitted"] > 0}
    speed = {a: _figure(s["speed_value"], s["speed_n"]) for a, s in people.items()}
    gold = {a: _figure(s["gold"] / s["gold_n"] if s["gold_n"] else None, s["gold_n"]) for a, s in people.items()}
    agreement = {a: _figure(s["agree"] / s["others"] if s["others"] else None, s["shared"])
                 for a, s in people.items()}
    flags = metrics.annotator_outlier_flags(speed=speed, gold_accuracy=gold, agreement=agreement)
    rows = []
    for a, s in people.items():
        rows.append({
            "annotator_id": a, "username": usernames.get(str(a), str(a)),
            "submitted": s["submitted"],
            "median_lead_time_seconds": _number(s["median_lead"]),
            "acceptance_rate": _number(s["approved"] / s["decided"]) if s["decided"] else None,
            "reviewed": s["decided"],
            "rework_rate": _number(s["reworked"] / s["submitted"]) if s["submitted"] else None,
            "gold_accuracy": gold[a]["value"], "gold_n": gold[a]["n"],
            "agreement": agreement[a]["value"], "agreement_n": agreement[a]["n"],
            "difficulty_adjusted_speed": speed[a]["value"], "speed_n": speed[a]["n"],
            "flags": flags.get(a, {}).get("flags", []),
            "z": {name: _number(z) for name, z in flags.get(a, {}).get("z", {}).items()},
            "error_types": dict(sorted(s["error_types"].items())),
        })
    rows.sort(key=lambda row: (row["username"], row["annotator_id"]))
    reviewers = sorted(({"reviewer_id": int(r), "username": usernames.get(r, r), "reviewed": s["reviewed"],
                         "median_review_latency_seconds": _number(s["median_latency"])}
                        for r, s in state["reviewers"].items() if s["reviewed"] > 0),
                       key=lambda row: (row["username"], row["reviewer_id"]))
    return {"annotators": rows, "reviewers": reviewers,
            "distribution": {name: _percentiles([row[name] for row in rows]) for name in DISTRIBUTION_FIGURES}}


def _cohen_kappa(table, k):
    """Cohen's kappa of a pair's k × k table of shared tasks (as metrics.agreement_cohen_kappa_matrix: None below
    metrics.COHEN_MIN_SHARED tasks or when chance agreement is 1)."""
    table = np.asarray(table, dtype=float).reshape(k, k)
    total = table.sum()
    if total < metrics.COHEN_MIN_SHARED:
        return None
    chance = float((table.sum(axis=1) * table.sum(axis=0)).sum() / total ** 2)
    if chance >= 1 - 1e-12:
        return None
    return _number((np.trace(table) / total - chance) / (1 - chance))


def _pairwise_values(state):
    """The pairwise matrix of the agreement snapshot: Cohen's kappa (classification, annotators with a label of
    the schema) or the mean pair score (other types, every annotator), from the pair sums."""
    usernames, pairs = state["usernames"], state["pairs"]
    classification = state["task_type"] == TaskType.CLASSIFICATION
    ids = sorted(int(a) for a, s in state["annotators"].items()
                 if (s["coded"] if classification else s["submitted"]) > 0)
    k = len(state["labels"])
    matrix = [[None] * len(ids) for _ in ids]
    n = [[0] * len(ids) for _ in ids]
    for i, first in enumerate(ids):
        for j in range(i + 1, len(ids)):
            pair = pairs.get(f"{first}:{ids[j]}")
            if pair is None:
                continue
            if classification:
                value, shared = _cohen_kappa(pair, k), int(sum(pair))
            else:
                value, shared = _number(pair[1] / pair[0]) if pair[0] else None, int(pair[0])
            matrix[i][j] = matrix[j][i] = value
            n[i][j] = n[j][i] = shared
    return {"metric": "cohen_kappa" if classification else "mean_pairwise_score", "annotator_ids": ids,
            "annotators": [usernames.get(str(a), str(a)) for a in ids], "matrix": matrix, "n": n}


# --- per task: contribution, agreement, consensus ------------------------------------------------------------------

def _group_bounds(index, size):
    order = np.argsort(index, kind="stable")
    return order, np.searchsorted(index[order], np.arange(size + 1))


def _task_values(project, labels, rows, results, lengths, *, reviews, errors, gold, accuracy, model=None):
    """{task_id: snapshot values} of some tasks, from all their annotator versions (`rows`, with the results and
    text lengths of the other task types), their decided reviews (REVIEW_DTYPE), error-type rows
    (_error_type_rows) and gold answers ((task ids, answers) as _gold_answers returns them).

    The values hold the task's agreement and consensus, and its `contribution`: everything the project's,
    batches', annotators', reviewers' and pairs' sums take from this task (contribution_apply), so that an update
    subtracts the old and adds the new. `accuracy` maps annotator id → gold accuracy (the vote's tie break), or is
    a function returning that map; `model` is the last full pass's Dawid–Skene fit. Tasks without rows are left
    out; the task's final result (a reviewer's fix, or the vote) is on the task itself (Task.final_result).
    """
    if not len(rows):
        return {}
    task_type = project.task_type
    classification = task_type == TaskType.CLASSIFICATION
    current, versions = _current(rows)
    cur = rows[current]
    cur_results = [results[i] for i in current.tolist()] if results is not None else None
    sane = _sanity_passes(project, cur, cur_results,
                          [lengths[i] for i in current.tolist()] if lengths is not None else None)
    task_ids, task_index = np.unique(cur["task"], return_inverse=True)
    n_tasks = len(task_ids)
    batches = np.zeros(n_tasks, dtype=np.int64)
    batches[task_index] = cur["batch"]

    # Per current annotation: agreeing others (summed pair scores) and others on the task, and the task's pairs.
    valid = cur["code"] >= 0 if classification else np.ones(len(cur), dtype=bool)
    k = len(labels)
    m = np.bincount(task_index[valid], minlength=n_tasks)
    if classification:
        counts = np.bincount(task_index[valid] * k + cur["code"][valid],
                             minlength=n_tasks * k).reshape(n_tasks, k)
        agree = np.where(valid, counts[task_index, np.maximum(cur["code"], 0)] - 1, 0).astype(float)
        others = np.where(valid, m[task_index] - 1, 0)
        first, second = metrics._pairs_within_tasks(np.where(valid, task_index, -1 - np.arange(len(cur))))
        scores = None
    else:
        first, second = metrics._pairs_within_tasks(task_index)
        scores = metrics._pair_scores(task_type, cur_results, first, second)
        both = np.concatenate([first, second])
        agree = np.bincount(both, weights=np.concatenate([scores, scores]), minlength=len(cur))
        others = np.bincount(both, minlength=len(cur))
    shared = valid & (m[task_index] >= 2)

    # Gold scores.
    gold_tasks, gold_answers = gold
    gold_score = np.full(len(cur), np.nan)
    on_gold = np.flatnonzero(np.isin(cur["task"], gold_tasks))
    position = np.searchsorted(gold_tasks, cur["task"][on_gold])
    if classification:
        answer = np.asarray(gold_answers, dtype=np.int64)[position]
        gold_score[on_gold] = ((cur["code"][on_gold] >= 0) & (cur["code"][on_gold] == answer)).astype(float)
    else:
        gold_score[on_gold] = [metrics.SCORES[task_type](cur_results[i] or {}, gold_answers[p] or {})
                               for i, p in zip(on_gold.tolist(), position.tolist())]

    # Speed: each task's median lead time ÷ the annotator's own (timed annotations only, as metrics does).
    timed = np.flatnonzero(cur["lead"] > 0)
    task_median = metrics._group_median(task_index[timed], cur["lead"][timed], n_tasks)
    ratio = np.full(len(cur), np.nan)
    ratio[timed] = task_median[task_index[timed]] / cur["lead"][timed]

    # Consensus.
    if classification:
        annotators, annotator_index = np.unique(cur["annotator"], return_inverse=True)
        matrix = np.full((n_tasks, len(annotators)), np.nan)
        matrix[task_index[valid], annotator_index[valid]] = cur["code"][valid]
        vote = metrics.consensus_majority_vote(matrix)
        if vote["tied"].any():  # ties go to the most accurate annotator on gold: only then are the accuracies read
            accuracy = accuracy() if callable(accuracy) else accuracy
            vote = metrics.consensus_majority_vote(matrix, [accuracy.get(a) for a in annotators.tolist()])
        posterior = _dawid_skene_posterior(model, matrix, annotators, k)

    all_task = np.searchsorted(task_ids, rows["task"])
    all_order, all_bounds = _group_bounds(all_task, n_tasks)
    order, bounds = _group_bounds(task_index, n_tasks)
    pair_order, pair_bounds = _group_bounds(task_index[first], n_tasks)
    review_task = np.searchsorted(task_ids, reviews["task"])
    review_order, review_bounds = _group_bounds(review_task, n_tasks)
    errors_by_task = {}
    for annotator, code, _batch, result, task, _decided in errors:
        errors_by_task.setdefault(task, []).append([int(annotator), code, _result_labels(task_type, result)])
    cur_list = cur[["annotator", "code"]].tolist()
    lead_list = rows[["annotator", "lead"]].tolist()
    values = {}
    for t, task_id in enumerate(task_ids.tolist()):
        mine = order[bounds[t]:bounds[t + 1]].tolist()
        pairs = pair_order[pair_bounds[t]:pair_bounds[t + 1]].tolist()
        contribution = {} if not classification else {"counts": counts[t].tolist()}
        if not classification:
            contribution.update(pairs=len(pairs), score_sum=float(scores[pairs].sum()) if pairs else 0.0)
        contribution["current"] = [
            [cur_list[i][0], cur_list[i][1], int(sane[i]), int(versions[i] >= 2),
             None if np.isnan(gold_score[i]) else float(gold_score[i]), float(agree[i]), int(others[i]),
             int(shared[i])] for i in mine]
        contribution["leads"] = [[lead_list[i][0], lead_list[i][1]] for i in all_order[all_bounds[t]:all_bounds[t + 1]]
                                 if lead_list[i][1] >= 0]
        contribution["speed"] = [[cur_list[i][0], float(ratio[i])] for i in mine if not np.isnan(ratio[i])]
        contribution["cells"] = [
            [cur_list[i][0], cur_list[j][0], cur_list[i][1], cur_list[j][1]] if cur_list[i][0] < cur_list[j][0]
            else [cur_list[j][0], cur_list[i][0], cur_list[j][1], cur_list[i][1]]
            for i, j in zip(first[pairs].tolist(), second[pairs].tolist())] if classification else [
            [min(cur_list[i][0], cur_list[j][0]), max(cur_list[i][0], cur_list[j][0]), float(s)]
            for i, j, s in zip(first[pairs].tolist(), second[pairs].tolist(), scores[pairs].tolist())]
        contribution["reviews"] = [[int(r["reviewer"]), int(r["annotator"]), int(r["decision"]), float(r["latency"])]
                                   for r in reviews[review_order[review_bounds[t]:review_bounds[t + 1]]]]
        contribution["errors"] = sorted(errors_by_task.get(task_id, []), key=lambda e: (e[0], e[1], e[2]))
        entry = {"batch": int(batches[t]), "contribution": contribution}
        if classification:
            n = int(m[t])
            same = int((counts[t] * (counts[t] - 1)).sum())
            label = int(vote["labels"][t])
            entry["agreement"] = _figure(same / (n * (n - 1)) if n >= 2 else None, n)
            entry["consensus"] = {"method": "majority_vote", "label": labels[label] if label >= 0 else None,
                                  "support": _number(vote["support"][t]), "votes": int(vote["votes"][t]),
                                  "tied": bool(vote["tied"][t]),
                                  **_dawid_skene_of_task(posterior, t, labels)}
        else:
            n_pairs = len(pairs)
            entry["agreement"] = _figure(contribution["score_sum"] / n_pairs if n_pairs else None,
                                         bounds[t + 1] - bounds[t])
            entry["consensus"] = None
        values[task_id] = entry
    return values


# --- Dawid–Skene ----------------------------------------------------------------------------------------------------

def _dawid_skene_fit(matrix, annotator_ids, k):
    """The full pass's Dawid–Skene fit of a tasks × annotators label matrix: the model kept in the state (each
    annotator's confusion matrix and the label priors) and the fit's posteriors."""
    fit = metrics.consensus_dawid_skene(matrix, k, max_iter=DAWID_SKENE_MAX_ITER, tol=DAWID_SKENE_TOL)
    model = {"annotator_ids": [int(a) for a in annotator_ids], "confusion": fit["confusion"].tolist(),
             "priors": fit["priors"].tolist(), "iterations": int(fit["iterations"]),
             "converged": bool(fit["converged"])}
    return model, fit


def _dawid_skene_posterior(model, matrix, annotators, k):
    """One E-step with the last full pass's matrices: the posterior of some tasks (tasks × labels), None without a
    model. An annotator the model does not know (no label at that pass) gives no evidence."""
    if not model or not len(matrix) or len(model["priors"]) != k:
        return None
    known = {a: i for i, a in enumerate(model["annotator_ids"])}
    columns = [known.get(a, -1) for a in annotators.tolist()]
    keep = [j for j, c in enumerate(columns) if c >= 0]
    confusion = np.asarray(model["confusion"], dtype=float)[[columns[j] for j in keep]] if keep else \
        np.zeros((0, k, k))
    return metrics.dawid_skene_posterior(matrix[:, keep], confusion, np.asarray(model["priors"], dtype=float))


def _dawid_skene_of_task(posterior, t, labels):
    if posterior is None:
        return {"dawid_skene": None, "confidence": None}
    best = int(posterior[t].argmax())
    return {"dawid_skene": labels[best], "confidence": _number(posterior[t, best])}


def _dawid_skene_summary(model, fit, labels, majority):
    """The project's Dawid–Skene figures (agreement snapshot "consensus"): how many tasks each label gets, the mean
    posterior confidence, tasks below DAWID_SKENE_LOW_CONFIDENCE, tasks where it differs from the majority vote,
    and the fit (iterations, converged)."""
    seen = fit["labels"] >= 0
    chosen = fit["labels"][seen]
    confidence = fit["confidence"][seen]
    return {"method": "dawid_skene", "n": int(seen.sum()),
            "labels": {label: int(c) for label, c in zip(labels, np.bincount(chosen, minlength=len(labels)))},
            "mean_confidence": _number(confidence.mean()) if len(confidence) else None,
            "low_confidence": int((confidence < DAWID_SKENE_LOW_CONFIDENCE).sum()),
            "differs_from_majority": int((chosen != majority[seen]).sum()),
            "iterations": model["iterations"], "converged": model["converged"]}


# --- the full computation -------------------------------------------------------------------------------------------

def _watermark(now):
    """The last annotation id written before the commit margin: rows up to it are taken as all committed."""
    cutoff = now - timedelta(seconds=commit_margin_seconds())
    return (Annotation.objects.filter(submitted_at__lt=cutoff).order_by("-id").values_list("id", flat=True)
            .first()) or 0


def _by_index(index, size, weights=None):
    return np.bincount(index, weights=weights, minlength=size)


def _pair_tables(annotators, first, second, x, y, k):
    """{"a:b": k × k counts (a's label × b's label)} over pairs of annotations (a < b by id), one bincount."""
    swap = annotators[first] > annotators[second]
    low = np.where(swap, annotators[second], annotators[first])
    high = np.where(swap, annotators[first], annotators[second])
    x, y = np.where(swap, y, x), np.where(swap, x, y)
    ids = np.unique(annotators)
    n = len(ids)
    cell = (np.searchsorted(ids, low) * n + np.searchsorted(ids, high)) * k * k + x * k + y
    tables = np.bincount(cell, minlength=n * n * k * k).reshape(n * n, k * k)
    return {f"{ids[p // n]}:{ids[p % n]}": tables[p].tolist() for p in np.flatnonzero(tables.any(axis=1))}


def project_quality_compute(project, *, now=None):
    """Every quality figure of a project, from its rows; writes nothing.

    Returns {"quality", "agreement", "annotators", "batches": {batch id: quality values}, "state" (the sums and
    medians that incremental updates move, see the module docstring), "watermark", "max_id", "recent": {task id:
    task snapshot values} for the tasks with rows or decisions after the watermark}.
    """
    now = now or timezone.now()
    task_type = project.task_type
    classification = task_type == TaskType.CLASSIFICATION
    labels = project_labels(project)
    k = len(labels)
    watermark = _watermark(now)
    watermark_at = now - timedelta(seconds=commit_margin_seconds())
    rows, results, text_lengths = _annotation_rows(project, labels)
    current, versions = _current(rows)
    cur = rows[current]
    cur_results = [results[i] for i in current.tolist()] if results is not None else None
    n_current = len(cur)

    batch_ids = np.array(sorted(set(Batch.objects.filter(project=project).values_list("id", flat=True))
                                | set(rows["batch"].tolist())), dtype=np.int64)
    n_batches = len(batch_ids)
    cur_batch = np.searchsorted(batch_ids, cur["batch"])

    # People: every annotator with a submission, every reviewer with a decision.
    reviews = _reviews(project, before=watermark_at)
    annotator_ids = np.unique(rows["annotator"])
    n_annotators = len(annotator_ids)
    cur_annotator = np.searchsorted(annotator_ids, cur["annotator"])
    usernames = dict(get_user_model().objects.filter(
        pk__in=set(annotator_ids.tolist()) | set(reviews["reviewer"].tolist())).values_list("pk", "username"))

    sane = _sanity_passes(project, cur, cur_results,
                          [text_lengths[i] for i in current.tolist()] if text_lengths is not None else None)

    # Agreement: the sums (module docstring), per annotator, per pair of annotators.
    tasks_u, task_index = np.unique(cur["task"], return_inverse=True)
    task_batch = np.zeros(len(tasks_u), dtype=np.int64)
    task_batch[task_index] = cur_batch
    if classification:
        valid = cur["code"] >= 0
        counts = np.bincount(task_index[valid] * k + cur["code"][valid],
                             minlength=len(tasks_u) * k).reshape(len(tasks_u), k)
        project_stats = stats_from_counts(counts, project.overlap)
        order = np.argsort(task_batch, kind="stable")
        bounds = np.searchsorted(task_batch[order], np.arange(n_batches + 1))
        batch_stats = {int(b): stats_from_counts(counts[order[bounds[i]:bounds[i + 1]]], project.overlap)
                       for i, b in enumerate(batch_ids.tolist())}
        m = counts.sum(axis=1)
        # Per annotation: agreeing others and others on the task; per annotator the pooled pair score.
        agree = np.where(valid, counts[task_index, np.maximum(cur["code"], 0)] - 1, 0)
        others = np.where(valid, m[task_index] - 1, 0)
        shared = valid & (m[task_index] >= 2)
        annotator_agree = _by_index(cur_annotator, n_annotators, agree)
        annotator_pairs = _by_index(cur_annotator, n_annotators, others)
        annotator_shared = _by_index(cur_annotator, n_annotators, shared)
        coded = _by_index(cur_annotator, n_annotators, valid)
        # Pairs of labelled annotations on the same task (an unlabelled one gets a task of its own).
        first, second = metrics._pairs_within_tasks(np.where(valid, task_index, -1 - np.arange(n_current)))
        pairs = _pair_tables(cur["annotator"], first, second, cur["code"][first], cur["code"][second], k)
        coders, coder_index = np.unique(cur["annotator"][valid], return_inverse=True)
        matrix = np.full((len(tasks_u), len(coders)), np.nan)
        matrix[task_index[valid], coder_index] = cur["code"][valid]
    else:
        first, second = metrics._pairs_within_tasks(task_index)
        scores = metrics._pair_scores(task_type, cur_results, first, second)
        pair_task = task_index[first]
        task_pairs = np.bincount(pair_task, minlength=len(tasks_u))
        task_sums = np.bincount(pair_task, weights=scores, minlength=len(tasks_u))
        project_stats = {"tasks": int(np.count_nonzero(task_pairs)), "pairs": int(task_pairs.sum()),
                         "score_sum": float(task_sums.sum())}
        per_batch = [_by_index(task_batch, n_batches, weights) for weights in (task_pairs > 0, task_pairs, task_sums)]
        batch_stats = {int(b): {"tasks": int(per_batch[0][i]), "pairs": int(per_batch[1][i]),
                                "score_sum": float(per_batch[2][i])} for i, b in enumerate(batch_ids.tolist())}
        both = np.concatenate([cur_annotator[first], cur_annotator[second]])
        annotator_agree = _by_index(both, n_annotators, np.concatenate([scores, scores]))
        annotator_pairs = _by_index(both, n_annotators)
        annotations_per_task = np.bincount(task_index, minlength=len(tasks_u))
        annotator_shared = _by_index(cur_annotator, n_annotators, annotations_per_task[task_index] >= 2)
        coded = _by_index(cur_annotator, n_annotators)
        low = np.minimum(cur_annotator[first], cur_annotator[second])
        high = np.maximum(cur_annotator[first], cur_annotator[second])
        cells = low * max(n_annotators, 1) + high
        cell_pairs = _by_index(cells, n_annotators ** 2)
        cell_sums = _by_index(cells, n_annotators ** 2, scores)
        pairs = {f"{annotator_ids[c // n_annotators]}:{annotator_ids[c % n_annotators]}":
                 [int(cell_pairs[c]), float(cell_sums[c])] for c in np.flatnonzero(cell_pairs)}

    # Gold accuracy: current annotations on gold tasks against the gold answer.
    gold_tasks, gold_answers = _gold_answers(project, labels)
    on_gold = np.isin(cur["task"], gold_tasks)
    gold_rows = np.flatnonzero(on_gold)
    if classification:
        gold_code = np.asarray(gold_answers, dtype=np.int64)[np.searchsorted(gold_tasks, cur["task"][gold_rows])]
        gold_scores = ((cur["code"][gold_rows] >= 0) & (cur["code"][gold_rows] == gold_code)).astype(float)
    else:
        position = np.searchsorted(gold_tasks, cur["task"][gold_rows]).tolist()
        gold_scores = np.array([metrics.SCORES[task_type](cur_results[i] or {}, gold_answers[p] or {})
                                for i, p in zip(gold_rows.tolist(), position)], dtype=float)
    gold_sum = _by_index(cur_annotator[gold_rows], n_annotators, gold_scores)
    gold_n = _by_index(cur_annotator[gold_rows], n_annotators)

    # Reviews: acceptance per annotator, latency per reviewer.
    reviewed_annotator = np.searchsorted(annotator_ids, reviews["annotator"])
    known = reviewed_annotator < n_annotators
    known[known] = annotator_ids[reviewed_annotator[known]] == reviews["annotator"][known]
    decided = np.isin(reviews["decision"], [0, 1, 2])
    approved = reviews["decision"] == 0
    accept_n = _by_index(reviewed_annotator[known & decided], n_annotators)
    accept_yes = _by_index(reviewed_annotator[known & approved], n_annotators)
    review_batch = np.searchsorted(batch_ids, reviews["batch"])

    # Rework: assignments resubmitted at least once ÷ assignments submitted.
    reworked = versions >= 2
    rework_yes = _by_index(cur_annotator, n_annotators, reworked)

    # Speed: the median lead time over every version; the difficulty-adjusted speed over the current ones, each
    # task's median lead time ÷ the annotator's own (as metrics.difficulty_adjusted_speed takes it).
    all_annotator = np.searchsorted(annotator_ids, rows["annotator"])
    timed = rows["lead"] >= 0
    lead_windows = _windows_by_group(all_annotator[timed], rows["lead"][timed], n_annotators)
    timed_current = np.flatnonzero(cur["lead"] > 0)
    task_median = metrics._group_median(task_index[timed_current], cur["lead"][timed_current], len(tasks_u))
    ratio = task_median[task_index[timed_current]] / cur["lead"][timed_current]
    speed_windows = _windows_by_group(cur_annotator[timed_current], ratio, n_annotators)

    # The same values as the rows up to the watermark give them (and the decisions before its time), in wide
    # windows kept apart from the state: what a rebuilt window starts from (_window_from_band).
    seen = rows["id"] <= watermark
    lead_bands = _windows_by_group(all_annotator[timed & seen], rows["lead"][timed & seen], n_annotators, BAND_HALF)
    # Speed: the ratios above, except on the (few) tasks with rows past the watermark, which take them again from
    # their rows up to it.
    late = np.unique(rows["task"][~seen])
    kept = ~np.isin(cur["task"][timed_current], late)
    groups, values = [cur_annotator[timed_current][kept]], [ratio[kept]]
    if len(late):
        earlier = rows[np.isin(rows["task"], late) & seen]
        cur_seen = earlier[_current(earlier)[0]]
        seen_tasks, seen_index = np.unique(cur_seen["task"], return_inverse=True)
        seen_timed = np.flatnonzero(cur_seen["lead"] > 0)
        seen_median = metrics._group_median(seen_index[seen_timed], cur_seen["lead"][seen_timed], len(seen_tasks))
        groups.append(np.searchsorted(annotator_ids, cur_seen["annotator"][seen_timed]))
        values.append(seen_median[seen_index[seen_timed]] / cur_seen["lead"][seen_timed])
    speed_bands = _windows_by_group(np.concatenate(groups), np.concatenate(values), n_annotators, BAND_HALF)

    # Error types, per project, annotator, label and batch (few rows).
    error_types, by_annotator, by_label, by_batch = {}, {}, {}, {}
    for annotator, code, batch, result in _error_type_rows(project):
        _count_add(error_types, code, 1)
        _count_add(by_annotator.setdefault(annotator, {}), code, 1)
        _count_add(by_batch.setdefault(batch, {}), code, 1)
        for label in _result_labels(task_type, result):
            _count_add(by_label.setdefault(label, {}), code, 1)

    # The sums: per batch (the last entry: the whole project), one bincount each.
    gold_batch = cur_batch[gold_rows]

    def per_batch(index, weights=None):
        counts = _by_index(index, n_batches, weights)
        return np.append(counts, counts.sum())

    sums = {"tasks": per_batch(task_batch), "current": per_batch(cur_batch), "sane": per_batch(cur_batch, sane),
            "reworked": per_batch(cur_batch, reworked), "gold": per_batch(gold_batch, gold_scores),
            "gold_n": per_batch(gold_batch), "approved": per_batch(review_batch[approved]),
            "decided": per_batch(review_batch[decided])}

    def scope_sums(i, errors):
        return {**{name: (float(values[i]) if name == "gold" else int(values[i])) for name, values in sums.items()},
                "error_types": errors}

    submitted = _by_index(cur_annotator, n_annotators)
    annotators_state = {}
    for i, a in enumerate(annotator_ids.tolist()):
        lead_known, lead_median = window_median(lead_windows[i])
        speed_known, speed_median = window_median(speed_windows[i])
        annotators_state[str(a)] = {
            "submitted": int(submitted[i]),
            "coded": int(coded[i]), "reworked": int(rework_yes[i]), "gold": float(gold_sum[i]),
            "gold_n": int(gold_n[i]), "agree": float(annotator_agree[i]), "others": int(annotator_pairs[i]),
            "shared": int(annotator_shared[i]), "approved": int(accept_yes[i]), "decided": int(accept_n[i]),
            "error_types": by_annotator.get(a, {}), "lead": lead_windows[i], "median_lead": _number(lead_median),
            "speed": speed_windows[i], "speed_value": _number(speed_median),
            "speed_n": window_size(speed_windows[i]),
        }
    reviewer_ids, reviewer_index = np.unique(reviews["reviewer"], return_inverse=True)
    latency_windows = _windows_by_group(reviewer_index, reviews["latency"], len(reviewer_ids))
    decided_before = reviews["decided"] < 0
    latency_bands = _windows_by_group(reviewer_index[decided_before], reviews["latency"][decided_before],
                                      len(reviewer_ids), BAND_HALF)
    bands = {}
    for i, a in enumerate(annotator_ids.tolist()):
        bands[a] = {"lead": lead_bands[i], "speed": speed_bands[i]}
    for i, r in enumerate(reviewer_ids.tolist()):
        bands.setdefault(r, {})["latency"] = latency_bands[i]
    reviewed = np.bincount(reviewer_index, minlength=len(reviewer_ids))
    reviewers_state = {str(r): {"reviewed": int(reviewed[i]), "latency": latency_windows[i],
                                "median_latency": _number(window_median(latency_windows[i])[1])}
                       for i, r in enumerate(reviewer_ids.tolist())}

    # Dawid–Skene (classification): the fit's model is kept for the incremental updates' E-step.
    model, consensus = None, None
    if classification and k and len(tasks_u):
        model, fit = _dawid_skene_fit(matrix, coders, k)
        accuracy = {a: (gold_sum[i] / gold_n[i] if gold_n[i] else None) for i, a in enumerate(annotator_ids.tolist())}
        majority = metrics.consensus_majority_vote(matrix, [accuracy.get(a) for a in coders.tolist()])["labels"]
        consensus = _dawid_skene_summary(model, fit, labels, majority)

    state = {"task_type": task_type, "labels": labels, "overlap": project.overlap, "project": project_stats,
             "batches": {str(b): s for b, s in batch_stats.items()},
             "figures": {"project": scope_sums(n_batches, error_types),
                         "batches": {str(b): scope_sums(i, by_batch.get(b, {}))
                                     for i, b in enumerate(batch_ids.tolist())},
                         "by_label": by_label},
             "annotators": annotators_state, "reviewers": reviewers_state, "pairs": pairs,
             "usernames": {str(pk): name for pk, name in usernames.items()}, "dawid_skene": model,
             "watermark_at": watermark_at.isoformat()}

    stamp = {"computed": "full", "full_computed_at": now.isoformat()}
    quality = {**_project_quality_values(state), **stamp}
    batches = {b: {**_batch_quality_values(state, b), **stamp} for b in batch_ids.tolist()}
    annotators = {**_annotators_values(state), "full_computed_at": now.isoformat()}
    agreement = agreement_from_stats(task_type, project_stats, labels, project.overlap)
    agreement_values = {"overall": agreement["overall"], "per_label": agreement["per_label"],
                        "fleiss_kappa": agreement["fleiss_kappa"], "pairwise": _pairwise_values(state),
                        "consensus": consensus, **stamp}

    # Tasks with rows or decisions after the watermark: the state holds what this computation saw for them, which
    # the rows up to the watermark would not rebuild; their task snapshots record it.
    recent_review_tasks = Review.objects.filter(annotation__task__project_id=project.pk,
                                                decided_at__gte=watermark_at).values_list("annotation__task_id",
                                                                                          flat=True)
    recent_tasks = np.union1d(rows["task"][rows["id"] > watermark],
                              np.fromiter(recent_review_tasks, dtype=np.int64))
    recent = {}
    if len(recent_tasks):
        recent = tasks_values_read(project, labels, recent_tasks.tolist(), state)
    return {"quality": quality, "agreement": agreement_values, "annotators": annotators, "batches": batches,
            "state": state, "watermark": int(watermark), "max_id": int(rows["id"].max()) if len(rows) else 0,
            "recent": recent, "bands": bands}


def tasks_values_read(project, labels, task_ids, state):
    """The task snapshot values of some tasks, read from their rows, with the state's gold accuracies (tie break)
    and Dawid–Skene model."""
    return _task_values_of(project, labels, _tasks_read(project, labels, task_ids), state)


def _task_values_of(project, labels, read, state, *, rebuild=(), max_id=None, decided_before=None):
    """_task_values of what _tasks_read read, and in the same call, under the negated task ids, of the tasks in
    `rebuild` as a full pass with a watermark saw them: their rows up to `max_id` and their decisions before
    `decided_before` (a timestamp)."""
    rows, results, lengths, reviews, errors, gold = read
    if len(rebuild):
        # The earlier view as tasks (and assignments) of their own: negated ids, so one pass computes both.
        kept = np.flatnonzero(np.isin(rows["task"], rebuild) & (rows["id"] <= max_id))
        earlier = rows[kept].copy()
        earlier["task"], earlier["assignment"] = -earlier["task"], -earlier["assignment"]
        rows = np.concatenate([rows, earlier])
        results = results + [results[i] for i in kept.tolist()] if results is not None else None
        lengths = lengths + [lengths[i] for i in kept.tolist()] if lengths is not None else None
        decided = reviews[np.isin(reviews["task"], rebuild) & (reviews["decided"] < decided_before)].copy()
        decided["task"] = -decided["task"]
        reviews = np.concatenate([reviews, decided])
        errors = errors + [(*e[:4], -e[4], e[5]) for e in errors if e[4] in rebuild and e[5] < decided_before]
        gold_tasks, answers = gold
        again = np.flatnonzero(np.isin(gold_tasks, rebuild))
        tasks = np.concatenate([gold_tasks, -gold_tasks[again]])
        order = np.argsort(tasks)
        if isinstance(answers, np.ndarray):
            answers = np.concatenate([answers, answers[again]])[order]
        else:
            answers = answers + [answers[i] for i in again.tolist()]
            answers = [answers[i] for i in order.tolist()]
        gold = (tasks[order], answers)
    accuracy = {int(a): (s["gold"] / s["gold_n"] if s["gold_n"] else None)
                for a, s in state.get("annotators", {}).items()}
    return _task_values(project, labels, rows, results, lengths, reviews=reviews, errors=errors, gold=gold,
                        accuracy=accuracy, model=state.get("dawid_skene"))


# --- snapshots ------------------------------------------------------------------------------------------------------

def snapshot_latest(project, kind, *, scope=SCOPE.PROJECT, batch_id=None):
    snapshots = MetricSnapshot.objects.filter(project=project, scope=scope, kind=kind)
    if batch_id is not None:
        snapshots = snapshots.filter(batch_id=batch_id)
    return snapshots.order_by("-computed_at").first()


def _snapshot_upsert(project, kind, values, now, *, scope=SCOPE.PROJECT, batch_id=None):
    """One row per (project, scope, kind, batch) per minute; a later write in the same minute replaces it (last
    writer wins), so two workers running at once leave one correct row. Call under the project lock."""
    minute = now.replace(second=0, microsecond=0)
    snapshot = (MetricSnapshot.objects.filter(project=project, scope=scope, kind=kind, batch_id=batch_id,
                                              computed_at__gte=minute, computed_at__lt=minute + timedelta(minutes=1))
                .order_by("-computed_at").first())
    if snapshot is None:
        return MetricSnapshot.objects.create(project=project, scope=scope, kind=kind, batch_id=batch_id,
                                             values=values, computed_at=now)
    snapshot.values, snapshot.computed_at = values, now
    snapshot.save(update_fields=["values", "computed_at"])
    return snapshot


def _state_row(project):
    return (MetricSnapshot.objects.filter(project=project, scope=SCOPE.PROJECT, kind=STATE)
            .order_by("-computed_at").first())


def _snapshots_upsert(project, scope, kind, key, values_by_key, generation, now, existing, *, batch_size,
                      fields=lambda values: {}):
    """Write one snapshot of `kind` per key (`key`: the field, task_id or annotator_id) with its values and the
    generation: the existing rows (by key) updated, the others created, in bulk. `fields`: more columns of a new
    row, from its values."""
    changed, created = [], []
    for key_value, values in values_by_key.items():
        values = {**values, "generation": generation}
        snapshot = existing.get(key_value)
        if snapshot is None:
            created.append(MetricSnapshot(project=project, scope=scope, kind=kind, values=values, computed_at=now,
                                          **{key: key_value}, **fields(values)))
        else:
            snapshot.values, snapshot.computed_at = values, now
            changed.append(snapshot)
    MetricSnapshot.objects.bulk_create(created, batch_size=batch_size)
    MetricSnapshot.objects.bulk_update(changed, ["values", "computed_at"], batch_size=batch_size)


def _task_snapshots_write(project, values_by_task, generation, now, *, existing=None):
    """Upsert the task-scope agreement snapshots (one row per task). Call under the project lock. `existing`: the
    tasks' snapshots by task id, when the caller has read them."""
    if not values_by_task:
        return
    if existing is None:
        existing = {s.task_id: s for s in MetricSnapshot.objects.filter(
            project=project, scope=SCOPE.TASK, kind=TASK_AGREEMENT, task_id__in=list(values_by_task))}
    _snapshots_upsert(project, SCOPE.TASK, TASK_AGREEMENT, "task_id", values_by_task, generation, now, existing,
                      batch_size=1000, fields=lambda values: {"batch_id": values.get("batch")})


def _bands_write(project, bands, generation, now):
    """The full pass's wide windows (project_quality_compute "bands"), one row per person, updated in place; a
    person without values this time keeps an older generation's row, which the rebuilds ignore. Call under the
    project lock."""
    existing = {s.annotator_id: s for s in MetricSnapshot.objects.filter(
        project=project, scope=SCOPE.ANNOTATOR, kind=BANDS).only("id", "annotator_id")}
    # small batches: a person's bands are about 110 kB of JSON
    _snapshots_upsert(project, SCOPE.ANNOTATOR, BANDS, "annotator_id", bands, generation, now, existing,
                      batch_size=50)


def project_quality_recompute(project_id, *, now=None):
    """Full recompute of a project's figures, stored as snapshots; then the events since its read are applied.

    Idempotent; two at once are safe (the writes are serialised by the project lock and each replaces the state as
    a whole). Returns the project's quality snapshot, or None for a project that no longer exists.
    """
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    now = now or timezone.now()
    computed = project_quality_compute(project, now=now)
    with transaction.atomic():
        project_lock(project.pk, derived_only=True)
        state_row = _state_row(project)
        generation = (state_row.values.get("generation", 0) if state_row else 0) + 1
        state = {**computed["state"], "generation": generation, "bands_generation": generation,
                 "watermark": computed["watermark"],
                 "seen_id": computed["max_id"], "scanned_at": now.isoformat(), "full_computed_at": now.isoformat()}
        quality = _snapshot_upsert(project, QUALITY, computed["quality"], now)
        # The latest snapshots, which the incremental updates patch in place (the next full pass replaces them and
        # this state together, under the lock).
        state["snapshot_ids"] = {
            QUALITY: quality.pk, AGREEMENT: _snapshot_upsert(project, AGREEMENT, computed["agreement"], now).pk,
            ANNOTATORS: _snapshot_upsert(project, ANNOTATORS, computed["annotators"], now).pk,
            "batches": {str(batch_id): _snapshot_upsert(project, QUALITY, values, now, scope=SCOPE.BATCH,
                                                        batch_id=batch_id).pk
                        for batch_id, values in computed["batches"].items()}}
        if state_row is None:
            MetricSnapshot.objects.create(project=project, scope=SCOPE.PROJECT, kind=STATE, values=state,
                                          computed_at=now)
        else:
            state_row.values, state_row.computed_at = state, now
            state_row.save(update_fields=["values", "computed_at"])
        _task_snapshots_write(project, computed["recent"], generation, now)
        _bands_write(project, computed["bands"], generation, now)
    quality_events_apply(project)
    return quality



# --- incremental ----------------------------------------------------------------------------------------------------

def _state_fits(state, project):
    return (state.get("task_type") == project.task_type and state.get("labels") == project_labels(project)
            and state.get("overlap") == project.overlap and "snapshot_ids" in state)


def _publish(project, state, touched, now):
    """Put the figures of the updated sums into the latest snapshots the full pass wrote (their ids are in the
    state), in place and in one UPDATE: the project's quality, agreement and annotators snapshots and the quality
    snapshots of the batches touched (the Dawid–Skene summary stays as the last full pass left it)."""
    stamp = {"computed": "incremental", "incremental_at": now.isoformat()}
    ids = state["snapshot_ids"]
    agreement = agreement_from_stats(project.task_type, state["project"], state["labels"], state["overlap"])
    patches = {ids[QUALITY]: {**_project_quality_values(state), **stamp},
               ids[AGREEMENT]: {"overall": agreement["overall"], "per_label": agreement["per_label"],
                                "fleiss_kappa": agreement["fleiss_kappa"], "pairwise": _pairwise_values(state),
                                **stamp}}
    if touched["annotators"] or touched["reviewers"]:
        patches[ids[ANNOTATORS]] = {**_annotators_values(state), "incremental_at": now.isoformat()}
    for batch_id in sorted(touched["batches"]):
        if str(batch_id) in ids["batches"]:
            patches[ids["batches"][str(batch_id)]] = {**_batch_quality_values(state, batch_id), **stamp}
    MetricSnapshot.objects.filter(pk__in=list(patches)).update(
        values=Case(*[When(pk=pk, then=JSONKeysSet("values", patch)) for pk, patch in patches.items()],
                    output_field=JSONField()),
        computed_at=now)


class JSONKeysSet(Func):
    """A JSON object column with some top-level keys set to new values, in the database (no read-modify-write)."""

    output_field = JSONField()

    def __init__(self, column, patch):
        self.patch = patch
        super().__init__(F(column))

    def _values(self):
        return [json.dumps(value, cls=DjangoJSONEncoder) for value in self.patch.values()]

    def as_postgresql(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        return f"({column} || %s::jsonb)", [*params, json.dumps(self.patch, cls=DjangoJSONEncoder)]

    def as_sqlite(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        paths = ", ".join(f"'$.\"{key}\"', json(%s)" for key in self.patch)  # keys are this module's constants
        return f"json_set({column}, {paths})", [*params, *self._values()]


def _usernames_add(state, touched):
    """Usernames of people the state has not named yet (a newcomer's first submission or review): one query."""
    missing = {p for p in touched["annotators"] | touched["reviewers"] if str(p) not in state["usernames"]}
    if missing:
        state["usernames"].update({str(pk): name for pk, name in get_user_model().objects.filter(
            pk__in=missing).values_list("pk", "username")})


def tasks_quality_update(project, task_ids, *, now=None, seen_id=None, scanned_at=None):
    """Recompute some tasks' snapshots and move every figure of the project, of their batches, of the annotators
    and reviewers they involve and of those annotators' pairs by the difference (see the module docstring).
    Idempotent.

    Returns {"task_ids": the tasks whose contribution changed, "agreement": {task id: its agreement figure} for
    every task given that has annotations, "batches", "annotators": the ids whose figures moved}; None when there
    is no state of this task type, labels and overlap yet (the next full recompute makes one).
    """
    now = now or timezone.now()
    task_ids = sorted(set(int(t) for t in task_ids))
    if not task_ids and seen_id is None and scanned_at is None:
        return None
    labels = project_labels(project)
    with transaction.atomic():
        project_lock(project.pk, derived_only=True)
        state_row = _state_row(project)
        if state_row is None or not _state_fits(state_row.values, project):
            return None
        state = state_row.values
        generation = state["generation"]
        touched = {"annotators": set(), "reviewers": set(), "batches": set()}
        changed, new = [], {}
        if task_ids:
            # One read of the tasks' rows, reviews, error types and gold answers serves the new and the old values.
            existing = {s.task_id: s for s in MetricSnapshot.objects.filter(
                project=project, scope=SCOPE.TASK, kind=TASK_AGREEMENT, task_id__in=task_ids)}
            snapshots = {t: s.values for t, s in existing.items()}
            old = {t: v for t, v in snapshots.items() if v.get("generation") == generation and "contribution" in v}
            # What the full pass saw of the other tasks: their rows up to its watermark (versions are only
            # appended) and the decisions before its time, computed with the new values in one pass.
            values = _task_values_of(project, labels, _tasks_read(project, labels, task_ids), state,
                                     rebuild=[t for t in task_ids if t not in old], max_id=state["watermark"],
                                     decided_before=datetime.fromisoformat(state["watermark_at"]).timestamp())
            new = {t: v for t, v in values.items() if t > 0}
            old.update({-t: {"batch": v["batch"], "contribution": v["contribution"]}
                        for t, v in values.items() if t < 0})
            for task_id in task_ids:
                before, after = old.get(task_id), new.get(task_id)
                if (before or {}).get("contribution") == (after or {}).get("contribution") \
                        and (before or {}).get("batch") == (after or {}).get("batch"):
                    continue
                changed.append(task_id)
                for values, sign in ((before, -1), (after, 1)):
                    if values is not None:
                        contribution_apply(state, values, sign, touched)
            _usernames_add(state, touched)
            medians_refresh(project, labels, state, touched,
                            {t: new[t]["contribution"] if t in new else None for t in task_ids})
        if seen_id is not None:
            state["seen_id"] = max(state.get("seen_id", 0), int(seen_id))
        if scanned_at is not None:
            state["scanned_at"] = scanned_at.isoformat()
        state_row.values = state
        state_row.save(update_fields=["values"])
        if task_ids:
            # Not earlier than the full pass's time, which finds them by it (_held_contributions), even when `now`
            # was taken before the full pass that this update follows.
            written_at = max(now, datetime.fromisoformat(state["full_computed_at"]))
            _task_snapshots_write(project, {t: v for t, v in new.items()
                                            if snapshots.get(t) != {**v, "generation": generation}}, generation,
                                  written_at, existing=existing)
        if changed:
            _publish(project, state, touched, now)
    return {"task_ids": changed, "agreement": {t: v["agreement"] for t, v in new.items()},
            "batches": sorted(touched["batches"]), "annotators": sorted(touched["annotators"])}


def task_quality_update(task_id, *, now=None):
    """One task's snapshot and its share of every figure (see tasks_quality_update)."""
    task = Task.objects.select_related("project").filter(pk=task_id).first()
    if task is None:
        return None
    return tasks_quality_update(task.project, [task.pk], now=now)


REVIEW_EVENTS = [TaskEvent.Type.APPROVED, TaskEvent.Type.REJECTED, TaskEvent.Type.FIXED, TaskEvent.Type.ESCALATED]


def quality_events_apply(project, *, now=None):
    """Update the tasks that got annotator submissions or review decisions since the last scan (incremental
    figures after events).

    Submissions are found by id past the last one seen, and also by submission time within the commit margin of
    the last scan, since ids are not committed in order; decisions by their task events within the same margin
    (the event log's index by project, type and time). Updating a task twice changes nothing. Returns how many
    tasks were updated, or None without a state.
    """
    now = now or timezone.now()
    state_row = _state_row(project)
    if state_row is None or not _state_fits(state_row.values, project):
        return None
    state = state_row.values
    since = datetime.fromisoformat(state["scanned_at"]) - timedelta(seconds=commit_margin_seconds())
    found = list(Annotation.objects.filter(Q(id__gt=state.get("seen_id", 0)) | Q(submitted_at__gte=since),
                                           task__project_id=project.pk, source=Annotation.Source.ANNOTATOR)
                 .values_list("task_id", "id").order_by())
    decided = TaskEvent.objects.filter(project_id=project.pk, type__in=REVIEW_EVENTS, at__gte=since,
                                       task_id__isnull=False).values_list("task_id", flat=True).order_by()
    task_ids = sorted({task for task, _id in found} | set(decided))
    seen_id = max((pk for _task, pk in found), default=state.get("seen_id", 0))
    for start in range(0, max(len(task_ids), 1), UPDATE_CHUNK):
        chunk = task_ids[start:start + UPDATE_CHUNK]
        last = start + UPDATE_CHUNK >= len(task_ids)
        # The scan's watermark moves only with its last chunk: a failure in between rescans the rest next time.
        tasks_quality_update(project, chunk, now=now, seen_id=seen_id if last else None,
                             scanned_at=now if last else None)
    return len(task_ids)


def full_recompute_due(project, *, now=None, debounce_seconds=None):
    """True when the project's figures were last fully computed more than `debounce_seconds` ago (or never), or its
    state no longer fits the project (task type, labels, overlap changed)."""
    now = now or timezone.now()
    if debounce_seconds is None:
        debounce_seconds = float(getattr(settings, "QUALITY_RECOMPUTE_DEBOUNCE_SECONDS", 60))
    state_row = _state_row(project)
    if state_row is None or not _state_fits(state_row.values, project):
        return True
    return datetime.fromisoformat(state_row.values["full_computed_at"]) <= now - timedelta(seconds=debounce_seconds)
