"""The quality figures of a project (METRICS.md), computed by workers from the rows and stored as snapshots.

Requests only read what this module writes. Two ways in:

- Full recompute (`project_quality_compute` computes, `project_quality_recompute` stores): a handful of queries
  streamed into numpy arrays (`values_list(...).iterator()` straight into `np.fromiter`), then arrays all the way.
  For classification only the label is read, as an integer code the database derives from the JSON key
  (`result -> 'label'`), never the whole result.
- Incremental (`tasks_quality_update`, `quality_events_apply`): after events, the tasks they touched are
  recomputed alone (their agreement and consensus snapshot, scope task) and the project's and batches'
  agreement are updated by subtracting each task's old contribution and adding its new one.

"Current annotation" (METRICS.md) = the latest annotator-written version of each assignment. A reviewer's fix
(source `review_fix`) or a manager's revert is not the annotator's work: agreement, gold accuracy and the
annotator figures use the annotator's own latest version; the fix is only the task's final result.

How the incremental agreement stays equal to a full recompute
-------------------------------------------------------------
Nominal alpha, per-label alpha, Fleiss' kappa and the mean pairwise score are sums over tasks of per-task terms
(Krippendorff 2011: a task with m values and label counts c adds m to n, c to the label totals and
Σ c(c-1)/(m-1) to the diagonal of the coincidence matrix). The project keeps these sums in one "agreement state"
row (kind `agreement_state`), with the (m-1) denominators kept apart so that every sum is an integer and adding
and subtracting a task is exact. The state is as of a full recompute ("generation") plus the incremental updates
since. To subtract a task's old contribution an update needs what the state holds for the task: the contribution
stored in the task's snapshot when the snapshot is of the current generation, otherwise the contribution of the
task's rows up to the full recompute's watermark (annotation versions are appended, never rewritten, so that is
rebuilt exactly from the rows). The full recompute takes as watermark the last annotation id written before its
commit margin (QUALITY_COMMIT_MARGIN_SECONDS) and stores the contribution it used for the tasks with later rows.
The one thing that can make the state drift: a transaction that keeps an inserted annotation uncommitted for
longer than the margin; the next full recompute (beat, every 10 minutes) corrects it.
"""

import json
import math
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Case, F, FloatField, Func, IntegerField, JSONField, Q, Subquery, Value, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce, Length
from django.utils import timezone

from apps.projects.label_schema import TaskType, label_values, result_validate
from apps.projects.models import Batch, Project
from apps.tasks.models import Annotation, Task

from . import metrics
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
# Below this many annotators with a figure the team distribution is not shown: it would describe individuals.
DISTRIBUTION_MIN_TEAM = 3
DISTRIBUTION_FIGURES = ("submitted", "median_lead_time_seconds", "acceptance_rate", "rework_rate", "gold_accuracy",
                        "agreement", "difficulty_adjusted_speed")
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


def _annotation_rows(project, labels, *, task_ids=None, max_id=None):
    """Every annotator-written version: a structured array (ROW_DTYPE), plus the results (other task types) and the
    text lengths (text spans, for the sanity rules), in the order of the rows.

    Classification reads the label as its code (-1: not a label of the schema, so the sanity rules refuse it);
    the other types need the whole result to score it. A missing lead time reads as -1.
    """
    rows = Annotation.objects.filter(source=Annotation.Source.ANNOTATOR)
    rows = rows.filter(task_id__in=task_ids) if task_ids is not None else rows.filter(task__project_id=project.pk)
    if max_id is not None:
        rows = rows.filter(id__lte=max_id)
    classification = project.task_type == TaskType.CLASSIFICATION
    rows = rows.annotate(lead=Coalesce("lead_time_seconds", Value(-1.0)),
                         code=_label_code("result__label", labels) if classification else Value(-1))
    fields = ["id", "assignment_id", "task_id", "annotator_id", "version", "lead", "task__batch_id", "code"]
    if classification:
        values = rows.values_list(*fields).order_by()
        # A few tasks' rows come in one fetch; a project's are streamed (a server-side cursor on PostgreSQL).
        source = iter(list(values)) if task_ids is not None else values.iterator(chunk_size=STREAM_CHUNK)
        return np.fromiter(source, dtype=ROW_DTYPE), None, None
    spans = project.task_type == TaskType.TEXT_SPANS
    if spans:
        rows = rows.annotate(text_length=Length(KeyTextTransform("text", "task__data")))
    tuples, results, lengths = [], [], []
    values = rows.values_list(*fields, "result", *(["text_length"] if spans else [])).order_by()
    for row in (list(values) if task_ids is not None else values.iterator(chunk_size=STREAM_CHUNK)):
        tuples.append(row[:8])
        results.append(row[8])
        if spans:
            lengths.append(row[9])
    array = np.array(tuples, dtype=ROW_DTYPE) if tuples else np.zeros(0, dtype=ROW_DTYPE)
    return array, results, (lengths if spans else None)


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
                         ("batch", "i8")])


def _reviews(project):
    """Decided reviews: reviewer, the reviewed annotation's annotator, decision (index in DECISIONS), seconds from
    the submission to the decision, batch."""
    decision = Case(*[When(decision=d, then=Value(i)) for i, d in enumerate(DECISIONS)], default=Value(-1),
                    output_field=IntegerField())
    reviews = (Review.objects.filter(annotation__task__project_id=project.pk, decided_at__isnull=False)
               .annotate(d=decision, latency=SecondsBetween(F("decided_at"), F("annotation__submitted_at")))
               .values_list("reviewer_id", "annotation__annotator_id", "d", "latency", "annotation__task__batch_id")
               .order_by())
    return np.fromiter(reviews.iterator(chunk_size=STREAM_CHUNK), dtype=REVIEW_DTYPE)


def _error_type_rows(project):
    """(annotator, error code, batch, reviewed result) per error type chosen in a review: few rows."""
    return list(Review.error_types.through.objects.filter(review__annotation__task__project_id=project.pk)
                .values_list("review__annotation__annotator_id", "errortype__code",
                             "review__annotation__task__batch_id", "review__annotation__result").order_by())


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


# --- per task: contribution, agreement, consensus ------------------------------------------------------------------

def _task_values(project, labels, rows, results, gold_accuracy):
    """{task_id: snapshot values} for the current rows of some tasks.

    `gold_accuracy` maps annotator id → accuracy on gold (tie break of the majority vote), or is a function
    returning that map (called only when a vote is tied). Tasks without rows are left out. The task's final result
    (a reviewer's fix, or the vote) is on the task itself (Task.final_result), not repeated here.
    """
    if not len(rows):
        return {}
    task_ids, task_index = np.unique(rows["task"], return_inverse=True)
    batches = np.zeros(len(task_ids), dtype=np.int64)
    batches[task_index] = rows["batch"]
    values = {}
    if project.task_type == TaskType.CLASSIFICATION:
        k = len(labels)
        valid = rows["code"] >= 0
        counts = np.bincount(task_index[valid] * k + rows["code"][valid],
                             minlength=len(task_ids) * k).reshape(len(task_ids), k)
        annotators, annotator_index = np.unique(rows["annotator"], return_inverse=True)
        matrix = np.full((len(task_ids), len(annotators)), np.nan)
        matrix[task_index[valid], annotator_index[valid]] = rows["code"][valid]
        vote = metrics.consensus_majority_vote(matrix)
        if vote["tied"].any():  # ties go to the most accurate annotator on gold: only then are the accuracies read
            accuracy = gold_accuracy() if callable(gold_accuracy) else gold_accuracy
            vote = metrics.consensus_majority_vote(matrix, [accuracy.get(a) for a in annotators.tolist()])
        m = counts.sum(axis=1)
        agree = (counts * (counts - 1)).sum(axis=1)
        for i, task_id in enumerate(task_ids.tolist()):
            label = int(vote["labels"][i])
            values[task_id] = {
                "batch": int(batches[i]), "contribution": {"counts": counts[i].tolist()},
                "agreement": _figure(agree[i] / (m[i] * (m[i] - 1)) if m[i] >= 2 else None, m[i]),
                "consensus": {"method": "majority_vote", "label": labels[label] if label >= 0 else None,
                              "support": _number(vote["support"][i]), "votes": int(vote["votes"][i]),
                              "tied": bool(vote["tied"][i])},
            }
        return values
    cur_results = [results[i] for i in range(len(rows))]
    first, second = metrics._pairs_within_tasks(task_index)
    scores = metrics._pair_scores(project.task_type, cur_results, first, second)
    pairs = np.bincount(task_index[first], minlength=len(task_ids))
    sums = np.bincount(task_index[first], weights=scores, minlength=len(task_ids))
    m = np.bincount(task_index, minlength=len(task_ids))
    for i, task_id in enumerate(task_ids.tolist()):
        values[task_id] = {
            "batch": int(batches[i]), "contribution": {"pairs": int(pairs[i]), "score_sum": float(sums[i])},
            "agreement": _figure(sums[i] / pairs[i] if pairs[i] else None, m[i]), "consensus": None,
        }
    return values


def _gold_accuracy_of_annotators(project):
    """Annotator id → gold accuracy, from the last annotators snapshot (the vote's tie break)."""
    snapshot = snapshot_latest(project, ANNOTATORS)
    rows = snapshot.values.get("annotators", []) if snapshot else []
    return {row["annotator_id"]: row.get("gold_accuracy") for row in rows}


# --- the full computation -------------------------------------------------------------------------------------------

def _watermark(now):
    """The last annotation id written before the commit margin: rows up to it are taken as all committed."""
    cutoff = now - timedelta(seconds=commit_margin_seconds())
    return (Annotation.objects.filter(submitted_at__lt=cutoff).order_by("-id").values_list("id", flat=True)
            .first()) or 0


def _percentiles(values):
    values = [v for v in values if v is not None]
    if len(values) < DISTRIBUTION_MIN_TEAM:
        return {"n": len(values), "p25": None, "median": None, "p75": None}
    p25, median, p75 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return {"n": len(values), "p25": float(p25), "median": float(median), "p75": float(p75)}


def _by_index(index, size, weights=None):
    return np.bincount(index, weights=weights, minlength=size)


def project_quality_compute(project, *, now=None):
    """Every quality figure of a project, from its rows; writes nothing.

    Returns {"quality", "agreement", "annotators", "batches": {batch id: quality values}, "state" (the agreement
    sums, see the module docstring), "watermark", "max_id", "recent": {task id: task snapshot values} for the tasks
    with rows after the watermark}.
    """
    now = now or timezone.now()
    task_type = project.task_type
    classification = task_type == TaskType.CLASSIFICATION
    labels = project_labels(project)
    k = len(labels)
    watermark = _watermark(now)
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
    reviews = _reviews(project)
    annotator_ids = np.unique(rows["annotator"])
    n_annotators = len(annotator_ids)
    cur_annotator = np.searchsorted(annotator_ids, cur["annotator"])
    usernames = dict(get_user_model().objects.filter(
        pk__in=set(annotator_ids.tolist()) | set(reviews["reviewer"].tolist())).values_list("pk", "username"))

    # Sanity: submissions refused by the sanity rules are not stored, so the pass rate is that of the current
    # annotations against the rules as they stand now (result_validate at compute time): it moves when the label
    # schema changes under existing work.
    if classification:
        sane = cur["code"] >= 0
    else:
        sane = np.zeros(n_current, dtype=bool)
        for i, result in enumerate(cur_results):
            data = {"text": " " * (text_lengths[current[i]] or 0)} if text_lengths is not None else {}
            sane[i] = not result_validate(task_type, project.label_schema, data, result)

    # Agreement.
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
        coders, coder_index = np.unique(cur["annotator"][valid], return_inverse=True)
        matrix = np.full((len(tasks_u), len(coders)), np.nan)
        matrix[task_index[valid], coder_index] = cur["code"][valid]
        cohen = metrics.agreement_cohen_kappa_matrix(coders.tolist(), matrix)
        pairwise = {"metric": "cohen_kappa", "annotator_ids": coders.tolist(),
                    "annotators": [usernames.get(a, str(a)) for a in coders.tolist()],
                    "matrix": cohen["kappa"], "n": cohen["n"]}
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
        cells = cur_annotator[first] * n_annotators + cur_annotator[second]
        cells = np.concatenate([cells, cur_annotator[second] * n_annotators + cur_annotator[first]])
        cell_sums = _by_index(cells, n_annotators ** 2, np.concatenate([scores, scores])).reshape(
            n_annotators, n_annotators)
        cell_pairs = _by_index(cells, n_annotators ** 2).reshape(n_annotators, n_annotators)
        mean = np.full(cell_sums.shape, np.nan)
        np.divide(cell_sums, cell_pairs, out=mean, where=cell_pairs > 0)
        np.fill_diagonal(mean, np.nan)
        pairwise = {"metric": "mean_pairwise_score", "annotator_ids": annotator_ids.tolist(),
                    "annotators": [usernames.get(a, str(a)) for a in annotator_ids.tolist()],
                    "matrix": [[_number(v) for v in row] for row in mean],
                    "n": np.where(np.eye(n_annotators, dtype=bool), 0, cell_pairs).tolist()}
    agreement = agreement_from_stats(task_type, project_stats, labels, project.overlap)

    # Gold accuracy: current annotations on gold tasks against the gold answer.
    gold_tasks, gold_answers = _gold_answers(project, labels)
    on_gold = np.isin(cur["task"], gold_tasks)
    gold_rows = np.flatnonzero(on_gold)
    if classification:
        gold_code = np.asarray(gold_answers)[np.searchsorted(gold_tasks, cur["task"][gold_rows])]
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
    rework_n = _by_index(cur_annotator, n_annotators)
    rework_yes = _by_index(cur_annotator, n_annotators, reworked)

    # Speed.
    all_annotator = np.searchsorted(annotator_ids, rows["annotator"])
    timed = rows["lead"] >= 0
    median_lead = metrics._group_median(all_annotator[timed], rows["lead"][timed], n_annotators)
    lead = np.where(cur["lead"] >= 0, cur["lead"], np.nan)
    speed = metrics.difficulty_adjusted_speed(cur["task"], cur["annotator"], lead) if n_current else {}

    # Error types, per project, annotator, label and batch (few rows).
    error_rows = _error_type_rows(project)
    error_types, by_annotator, by_label, by_batch = {}, {}, {}, {}
    for annotator, code, batch, result in error_rows:
        error_types[code] = error_types.get(code, 0) + 1
        mine = by_annotator.setdefault(annotator, {})
        mine[code] = mine.get(code, 0) + 1
        in_batch = by_batch.setdefault(batch, {})
        in_batch[code] = in_batch.get(code, 0) + 1
        for label in _result_labels(task_type, result):
            per = by_label.setdefault(label, {})
            per[code] = per.get(code, 0) + 1

    # Per annotator.
    ids = annotator_ids.tolist()
    submitted = _by_index(cur_annotator, n_annotators)
    agreement_by = {a: _figure(annotator_agree[i] / annotator_pairs[i] if annotator_pairs[i] else None,
                               annotator_shared[i]) for i, a in enumerate(ids)}
    gold_by = {a: _figure(gold_sum[i] / gold_n[i] if gold_n[i] else None, gold_n[i]) for i, a in enumerate(ids)}
    flags = metrics.annotator_outlier_flags(speed=speed, gold_accuracy=gold_by, agreement=agreement_by)
    annotator_rows = []
    for i, a in enumerate(ids):
        annotator_rows.append({
            "annotator_id": a, "username": usernames.get(a, str(a)),
            "submitted": int(submitted[i]),
            "median_lead_time_seconds": _number(median_lead[i]),
            "acceptance_rate": _number(accept_yes[i] / accept_n[i]) if accept_n[i] else None,
            "reviewed": int(accept_n[i]),
            "rework_rate": _number(rework_yes[i] / rework_n[i]) if rework_n[i] else None,
            "gold_accuracy": gold_by[a]["value"], "gold_n": gold_by[a]["n"],
            "agreement": agreement_by[a]["value"], "agreement_n": agreement_by[a]["n"],
            "difficulty_adjusted_speed": speed.get(a, {}).get("value"), "speed_n": speed.get(a, {}).get("n", 0),
            "flags": flags.get(a, {}).get("flags", []),
            "z": {name: _number(z) for name, z in flags.get(a, {}).get("z", {}).items()},
            "error_types": by_annotator.get(a, {}),
        })
    annotator_rows.sort(key=lambda row: (row["username"], row["annotator_id"]))
    reviewer_ids, reviewer_index = np.unique(reviews["reviewer"], return_inverse=True)
    latency = metrics._group_median(reviewer_index, reviews["latency"], len(reviewer_ids))
    reviewed = np.bincount(reviewer_index, minlength=len(reviewer_ids))
    reviewer_rows = sorted(({"reviewer_id": r, "username": usernames.get(r, str(r)), "reviewed": int(reviewed[i]),
                             "median_review_latency_seconds": _number(latency[i])}
                            for i, r in enumerate(reviewer_ids.tolist())), key=lambda row: row["username"])

    # Project and batch figures.
    # Sums per batch (the last entry: the whole project), one bincount each.
    gold_batch = cur_batch[gold_rows]

    def per_batch(index, weights=None):
        counts = _by_index(index, n_batches, weights)
        return np.append(counts, counts.sum())

    sums = {"gold": per_batch(gold_batch, gold_scores), "gold_n": per_batch(gold_batch),
            "approved": per_batch(review_batch[approved]), "decided": per_batch(review_batch[decided]),
            "reworked": per_batch(cur_batch, reworked), "sane": per_batch(cur_batch, sane),
            "current": per_batch(cur_batch)}

    def figures(i):
        """The gate figures besides agreement (which is the snapshot's "agreement", kept up to date by events)."""
        return {
            "gold_accuracy": _rate(float(sums["gold"][i]), int(sums["gold_n"][i])),
            "acceptance_rate": _rate(int(sums["approved"][i]), int(sums["decided"][i])),
            "rework_rate": _rate(int(sums["reworked"][i]), int(sums["current"][i])),
            "sanity_pass_rate": _rate(int(sums["sane"][i]), int(sums["current"][i])),
        }

    def quality_values(agreement_figures, figs, errors):
        return {
            "agreement": agreement_figures["overall"], "fleiss_kappa": agreement_figures["fleiss_kappa"],
            **{name: figure["value"] for name, figure in figs.items()},
            "samples": {name: figure["n"] for name, figure in figs.items()},
            "figures": figs, "error_types": errors, "computed": "full", "full_computed_at": now.isoformat(),
        }

    project_figures = figures(n_batches)
    quality = {**quality_values(agreement, project_figures, error_types), "error_types_by_label": by_label,
               "submitted": n_current, "annotators": n_annotators, "tasks_annotated": int(len(tasks_u))}
    batches = {}
    for i, b in enumerate(batch_ids.tolist()):
        batch_agreement = agreement_from_stats(task_type, batch_stats[b], labels, project.overlap)
        batches[b] = quality_values(batch_agreement, figures(i), by_batch.get(b, {}))

    annotators = {
        "annotators": annotator_rows, "reviewers": reviewer_rows,
        "distribution": {name: _percentiles([row[name] for row in annotator_rows]) for name in DISTRIBUTION_FIGURES},
        "full_computed_at": now.isoformat(),
    }
    agreement_values = {"overall": agreement["overall"], "per_label": agreement["per_label"],
                        "fleiss_kappa": agreement["fleiss_kappa"], "pairwise": pairwise,
                        "computed": "full", "full_computed_at": now.isoformat()}

    # Tasks with rows after the watermark: the state holds what this computation saw for them, which the rows up
    # to the watermark would not rebuild; their task snapshots record it.
    recent_tasks = np.unique(rows["task"][rows["id"] > watermark])
    recent = {}
    if len(recent_tasks):
        picked = np.flatnonzero(np.isin(cur["task"], recent_tasks))
        recent = _task_values(project, labels, cur[picked],
                              [cur_results[i] for i in picked.tolist()] if cur_results is not None else None,
                              {row["annotator_id"]: row["gold_accuracy"] for row in annotator_rows})
    state = {"task_type": task_type, "labels": labels, "overlap": project.overlap, "project": project_stats,
             "batches": {str(b): s for b, s in batch_stats.items()}}
    return {"quality": quality, "agreement": agreement_values, "annotators": annotators, "batches": batches,
            "state": state, "watermark": int(watermark), "max_id": int(rows["id"].max()) if len(rows) else 0,
            "recent": recent}


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


def _task_snapshots_write(project, values_by_task, generation, now):
    """Upsert the task-scope agreement snapshots (one row per task). Call under the project lock."""
    if not values_by_task:
        return
    existing = {s.task_id: s for s in MetricSnapshot.objects.filter(
        project=project, scope=SCOPE.TASK, kind=TASK_AGREEMENT, task_id__in=list(values_by_task))}
    changed, created = [], []
    for task_id, values in values_by_task.items():
        values = {**values, "generation": generation}
        snapshot = existing.get(task_id)
        if snapshot is None:
            created.append(MetricSnapshot(project=project, scope=SCOPE.TASK, kind=TASK_AGREEMENT, task_id=task_id,
                                          batch_id=values.get("batch"), values=values, computed_at=now))
        else:
            snapshot.values, snapshot.computed_at = values, now
            changed.append(snapshot)
    MetricSnapshot.objects.bulk_create(created, batch_size=1000)
    MetricSnapshot.objects.bulk_update(changed, ["values", "computed_at"], batch_size=1000)


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
        state = {**computed["state"], "generation": generation, "watermark": computed["watermark"],
                 "seen_id": computed["max_id"], "scanned_at": now.isoformat(), "full_computed_at": now.isoformat()}
        if state_row is None:
            MetricSnapshot.objects.create(project=project, scope=SCOPE.PROJECT, kind=STATE, values=state,
                                          computed_at=now)
        else:
            state_row.values, state_row.computed_at = state, now
            state_row.save(update_fields=["values", "computed_at"])
        quality = _snapshot_upsert(project, QUALITY, computed["quality"], now)
        _snapshot_upsert(project, AGREEMENT, computed["agreement"], now)
        _snapshot_upsert(project, ANNOTATORS, computed["annotators"], now)
        for batch_id, values in computed["batches"].items():
            _snapshot_upsert(project, QUALITY, values, now, scope=SCOPE.BATCH, batch_id=batch_id)
        _task_snapshots_write(project, computed["recent"], generation, now)
    quality_events_apply(project)
    return quality


# --- incremental ----------------------------------------------------------------------------------------------------

def _state_fits(state, project):
    return (state.get("task_type") == project.task_type and state.get("labels") == project_labels(project)
            and state.get("overlap") == project.overlap)


def _publish(project, state, batch_ids, now):
    """Put the agreement of the updated sums into the latest quality and agreement snapshots (project, and the
    batches given), in place: one UPDATE each, the other figures stay as the last full pass left them."""
    labels, overlap = state["labels"], state["overlap"]
    agreement = agreement_from_stats(project.task_type, state["project"], labels, overlap)
    stamp = {"computed": "incremental", "incremental_at": now.isoformat()}
    _snapshot_patch(project, QUALITY, {"agreement": agreement["overall"], "fleiss_kappa": agreement["fleiss_kappa"],
                                       **stamp}, now)
    _snapshot_patch(project, AGREEMENT, {"overall": agreement["overall"], "per_label": agreement["per_label"],
                                         "fleiss_kappa": agreement["fleiss_kappa"], **stamp}, now)
    for batch_id in sorted(batch_ids):
        stats = state["batches"].get(str(batch_id))
        if stats is not None:
            figures = agreement_from_stats(project.task_type, stats, labels, overlap)
            _snapshot_patch(project, QUALITY, {"agreement": figures["overall"],
                                               "fleiss_kappa": figures["fleiss_kappa"], **stamp}, now,
                            scope=SCOPE.BATCH, batch_id=batch_id)


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


def _snapshot_patch(project, kind, patch, now, *, scope=SCOPE.PROJECT, batch_id=None):
    """Set top-level keys of the latest snapshot of a kind, and its time; nothing before a first full pass.

    In place: the series keeps a row per full pass, the latest row follows the incremental updates."""
    latest = (MetricSnapshot.objects.filter(project=project, scope=scope, kind=kind, batch_id=batch_id)
              .order_by("-computed_at").values("pk")[:1])
    return MetricSnapshot.objects.filter(pk=Subquery(latest)).update(values=JSONKeysSet("values", patch),
                                                                    computed_at=now)


def _rows_values(project, labels, rows, results, gold_accuracy):
    current, _versions = _current(rows)
    return _task_values(project, labels, rows[current],
                        [results[i] for i in current.tolist()] if results is not None else None, gold_accuracy)


def tasks_quality_update(project, task_ids, *, now=None, seen_id=None, scanned_at=None):
    """Recompute some tasks' agreement and consensus snapshots and move the project's and their batches' agreement
    by the difference (see the module docstring). Idempotent.

    Returns the updated state values, or None when there is no state of this task type, labels and overlap yet
    (the next full recompute makes one).
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
        accuracies = []

        def gold_accuracy():
            if not accuracies:
                accuracies.append(_gold_accuracy_of_annotators(project))
            return accuracies[0]

        rows, results, _lengths = _annotation_rows(project, labels, task_ids=task_ids)
        new = _rows_values(project, labels, rows, results, gold_accuracy)
        snapshots = {s.task_id: s.values for s in MetricSnapshot.objects.filter(
            project=project, scope=SCOPE.TASK, kind=TASK_AGREEMENT, task_id__in=task_ids)}
        rebuild = [t for t in task_ids if snapshots.get(t, {}).get("generation") != generation]
        old = {t: v for t, v in snapshots.items() if v.get("generation") == generation}
        if rebuild:
            # What the full pass saw of these tasks: their rows up to its watermark (versions are only appended).
            kept = np.flatnonzero(np.isin(rows["task"], rebuild) & (rows["id"] <= state["watermark"]))
            old.update(_rows_values(project, labels, rows[kept],
                                    [results[i] for i in kept.tolist()] if results is not None else None, {}))
        k = len(labels)
        touched = set()
        for task_id in task_ids:
            before, after = old.get(task_id), new.get(task_id)
            if (before or {}).get("contribution") == (after or {}).get("contribution") \
                    and (before or {}).get("batch") == (after or {}).get("batch"):
                continue
            for values, sign in ((before, -1), (after, 1)):
                if values is None:
                    continue
                stats_add(state["project"], values["contribution"], sign, overlap=state["overlap"])
                batch = values.get("batch")
                if batch is not None:
                    batch_stats = state["batches"].setdefault(str(batch), stats_empty(project.task_type, k))
                    stats_add(batch_stats, values["contribution"], sign, overlap=state["overlap"])
                    touched.add(batch)
        if seen_id is not None:
            state["seen_id"] = max(state.get("seen_id", 0), int(seen_id))
        if scanned_at is not None:
            state["scanned_at"] = scanned_at.isoformat()
        state_row.values = state
        state_row.save(update_fields=["values"])
        _task_snapshots_write(project, {t: v for t, v in new.items()
                                        if snapshots.get(t) != {**v, "generation": generation}}, generation, now)
        if touched:
            _publish(project, state, touched, now)
    return state


def task_quality_update(task_id, *, now=None):
    """One task's agreement/consensus snapshot and its share of the project's agreement (see tasks_quality_update)."""
    task = Task.objects.select_related("project").filter(pk=task_id).first()
    if task is None:
        return None
    return tasks_quality_update(task.project, [task.pk], now=now)


def quality_events_apply(project, *, now=None):
    """Update the tasks that got annotator submissions since the last scan (incremental figures after events).

    Rows are found by id past the last one seen, and also by submission time within the commit margin of the
    last scan, since ids are not committed in order; updating a task twice changes nothing. Returns how many tasks
    were updated, or None without a state.
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
    task_ids = sorted({task for task, _id in found})
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
