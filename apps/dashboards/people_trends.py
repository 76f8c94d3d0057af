"""The people dashboards' learning curves and coaching material, computed by a worker and stored as one snapshot per
project (kind "people_trends"): requests only read it.

Per annotator and ISO week (Monday 00:00 UTC) of the last TREND_WEEKS weeks: submissions, median lead time,
acceptance rate (reviews decided that week) and gold accuracy (annotator-written versions submitted that week on gold
tasks, scored as METRICS.md scores them), plus the team's anonymised distribution of each figure per week. Per
annotator also the tasks they found hardest (their lead time on their current annotation against the task's median
over everyone who did it), their recent misses on gold tasks and the latest feedback of reviews on their work (the
pages add the reviews written since, by id: an annotator's feedback is never older than the page).

One streamed query over the project's annotator-written versions into numpy (as the quality engine reads them), one
GROUP BY over the reviews (TruncWeek) and one query over the gold versions of the window.
"""

from datetime import UTC, datetime, timedelta

import numpy as np
from django.db import transaction
from django.db.models import Count, F, Min, Q, Value, Window
from django.db.models import DateTimeField as DateTimeOutput
from django.db.models.functions import Coalesce, RowNumber, TruncWeek
from django.utils import timezone

from apps.quality import metrics
from apps.quality.engine import DISTRIBUTION_MIN_TEAM, STREAM_CHUNK, SecondsBetween, _current
from apps.quality.models import MetricSnapshot, Review
from apps.quality.scores import SCORES
from apps.tasks.models import Annotation, Task

KIND = "people_trends"
TREND_WEEKS = 12
HARDEST_PER_ANNOTATOR = 10
GOLD_MISSES_PER_ANNOTATOR = 10
FEEDBACK_PER_ANNOTATOR = 30
TREND_FIGURES = ("submitted", "median_lead_time_seconds", "acceptance_rate", "gold_accuracy")
EPOCH_MONDAY = datetime(1970, 1, 5, tzinfo=UTC)  # week 0 starts on this Monday
WEEK_SECONDS = 7 * 86400
# Beat recomputes every 30 minutes; a snapshot older than this is asked for again by the page that finds it.
STALE_SECONDS = 3600

ROW_DTYPE = np.dtype([("task", "i8"), ("annotator", "i8"), ("assignment", "i8"), ("version", "i8"), ("lead", "f8"),
                      ("at", "f8")])


def week_index(moment):
    """The number of the ISO week (Monday 00:00 UTC) holding `moment`, counted from EPOCH_MONDAY."""
    return int((moment - EPOCH_MONDAY).total_seconds() // WEEK_SECONDS)


def week_start(index):
    return (EPOCH_MONDAY + timedelta(weeks=index)).date()


def _number(value):
    value = float(value)
    return value if np.isfinite(value) else None


def _rows(project):
    """Every annotator-written version of the project: task, annotator, assignment, version, lead time (-1 when
    missing) and seconds since EPOCH_MONDAY of its submission, as a structured array."""
    rows = (Annotation.objects.filter(task__project_id=project.pk, source=Annotation.Source.ANNOTATOR)
            .annotate(lead=Coalesce("lead_time_seconds", Value(-1.0)),
                      at=SecondsBetween(F("submitted_at"), Value(EPOCH_MONDAY, output_field=DateTimeOutput())))
            .values_list("task_id", "annotator_id", "assignment_id", "version", "lead", "at").order_by())
    return np.fromiter(rows.iterator(chunk_size=STREAM_CHUNK), dtype=ROW_DTYPE)


def _team_distribution(matrix):
    """Per week (columns of `matrix`, annotators × weeks, NaN = no figure): how many annotators have the figure and
    their quartiles, withheld (None) below DISTRIBUTION_MIN_TEAM annotators: it would describe individuals."""
    n = np.count_nonzero(~np.isnan(matrix), axis=0) if matrix.size else np.zeros(matrix.shape[1], dtype=int)
    out = {"n": n.tolist(), "p25": [], "median": [], "p75": []}
    for week in range(matrix.shape[1]):
        if n[week] < DISTRIBUTION_MIN_TEAM:
            for key in ("p25", "median", "p75"):
                out[key].append(None)
            continue
        p25, median, p75 = np.nanpercentile(matrix[:, week], [25, 50, 75])
        out["p25"].append(float(p25))
        out["median"].append(float(median))
        out["p75"].append(float(p75))
    return out


def _hardest(rows, annotator_ids):
    """Per annotator index, the current annotations whose lead time is furthest above the task's median lead time
    over all its annotators (tasks with at least two timed annotations): [(task, lead, task median, ratio, n)]."""
    current, _versions = _current(rows)
    cur = rows[current]
    cur = cur[cur["lead"] >= 0]
    if not len(cur):
        return {}
    tasks, task_index = np.unique(cur["task"], return_inverse=True)
    task_n = np.bincount(task_index, minlength=len(tasks))
    task_median = metrics._group_median(task_index, cur["lead"], len(tasks))
    keep = (task_n[task_index] >= 2) & (task_median[task_index] > 0)
    cur, task_index = cur[keep], task_index[keep]
    if not len(cur):
        return {}
    ratio = cur["lead"] / task_median[task_index]
    who = np.searchsorted(annotator_ids, cur["annotator"])
    order = np.lexsort((-ratio, who))
    counts = np.bincount(who, minlength=len(annotator_ids))
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(order)) - starts[who[order]]
    picked = order[rank < HARDEST_PER_ANNOTATOR]
    hardest = {}
    for i in picked.tolist():
        hardest.setdefault(int(who[i]), []).append(
            (int(cur["task"][i]), float(cur["lead"][i]), float(task_median[task_index[i]]), float(ratio[i]),
             int(task_n[task_index[i]])))
    return hardest


def feedback_reviews(project):
    """Decided reviews of the project that tell the annotator something (a comment, or anything but a plain
    approval), without who reviewed."""
    return (Review.objects.filter(annotation__task__project_id=project.pk, decided_at__isnull=False)
            .filter(Q(comment__gt="") | ~Q(decision=Review.Decision.APPROVE)))


def feedback_items(reviews):
    """[{"review_id", "annotator_id", "task_id", "decision", "error_types" (names), "comment", "decided_at"}] of a
    queryset of reviews, newest first: two queries."""
    rows = list(reviews.values("pk", "annotation__annotator_id", "annotation__task_id", "decision", "comment",
                               "decided_at"))
    names = {}
    if rows:
        for review_id, name in (Review.error_types.through.objects.filter(review_id__in=[r["pk"] for r in rows])
                                .values_list("review_id", "errortype__name").order_by("errortype__name")):
            names.setdefault(review_id, []).append(name)
    return [{"review_id": r["pk"], "annotator_id": r["annotation__annotator_id"], "task_id": r["annotation__task_id"],
             "decision": r["decision"], "error_types": names.get(r["pk"], []), "comment": r["comment"],
             "decided_at": r["decided_at"]} for r in rows]


def _feedback(project, now):
    """Each annotator's latest FEEDBACK_PER_ANNOTATOR feedback items (picked in the database by a window), and the
    watermark: reviews with a larger id are read live by the pages. Reviews still open (started in the last day)
    keep the watermark below them, so that their decision, when it comes, is read live too."""
    newest = (Review.objects.order_by("-pk").values_list("pk", flat=True).first()) or 0
    open_since = (Review.objects.filter(annotation__task__project_id=project.pk, decided_at__isnull=True,
                                        started_at__gte=now - timedelta(days=1)).aggregate(first=Min("pk"))["first"])
    watermark = min(newest, open_since - 1) if open_since else newest
    ranked = (feedback_reviews(project).filter(pk__lte=watermark)
              .annotate(rank=Window(RowNumber(), partition_by=[F("annotation__annotator_id")], order_by=F("pk").desc()))
              .filter(rank__lte=FEEDBACK_PER_ANNOTATOR).order_by("-pk"))
    by_annotator = {}
    for item in feedback_items(ranked):
        annotator = str(item.pop("annotator_id"))
        by_annotator.setdefault(annotator, []).append({**item, "decided_at": item["decided_at"].isoformat()})
    return by_annotator, watermark


def people_trends_compute(project, *, now=None):
    """The snapshot values (see the module docstring) of one project; writes nothing."""
    now = now or timezone.now()
    last = week_index(now)
    first = last - TREND_WEEKS + 1
    since = EPOCH_MONDAY + timedelta(weeks=first)
    rows = _rows(project)

    # Everyone with a version, a decided review or a gold version: one row each in the arrays below.
    reviews = list(Review.objects.filter(annotation__task__project_id=project.pk, decided_at__gte=since)
                   .annotate(week=TruncWeek("decided_at", tzinfo=UTC))
                   .values("annotation__annotator_id", "week")
                   .annotate(approved=Count("id", filter=Q(decision=Review.Decision.APPROVE)),
                             decided=Count("id", filter=Q(decision__in=[Review.Decision.APPROVE, Review.Decision.REJECT,
                                                                        Review.Decision.FIX])))
                   .order_by())
    gold = list(Annotation.objects.filter(task__project_id=project.pk, source=Annotation.Source.ANNOTATOR,
                                          task__is_gold=True, submitted_at__gte=since)
                .values_list("annotator_id", "task_id", "submitted_at", "result", "task__gold_answer").order_by("id"))
    annotator_ids = np.unique(np.concatenate([
        rows["annotator"], np.array([r["annotation__annotator_id"] for r in reviews], dtype=np.int64),
        np.array([g[0] for g in gold], dtype=np.int64)]))
    n, shape = len(annotator_ids), (len(annotator_ids), TREND_WEEKS)

    # Submissions and median lead time per annotator and week.
    week = np.floor(rows["at"] / WEEK_SECONDS).astype(np.int64) - first
    window = (week >= 0) & (week < TREND_WEEKS)
    cell = np.searchsorted(annotator_ids, rows["annotator"][window]) * TREND_WEEKS + week[window]
    submitted = np.bincount(cell, minlength=n * TREND_WEEKS).reshape(shape)
    timed = rows["lead"][window] >= 0
    median_lead = metrics._group_median(cell[timed], rows["lead"][window][timed], n * TREND_WEEKS).reshape(shape)

    # Acceptance: approve ÷ (approve + reject + fix) of the reviews decided that week.
    approved, decided = np.zeros(shape), np.zeros(shape)
    for row in reviews:
        w = week_index(row["week"]) - first
        if 0 <= w < TREND_WEEKS:
            i = int(np.searchsorted(annotator_ids, row["annotation__annotator_id"]))
            approved[i, w] += row["approved"]
            decided[i, w] += row["decided"]
    acceptance = np.full(shape, np.nan)
    np.divide(approved, decided, out=acceptance, where=decided > 0)

    # Gold accuracy of the versions submitted that week; misses kept for coaching (most recent first).
    gold_sum, gold_n = np.zeros(shape), np.zeros(shape, dtype=np.int64)
    score = SCORES[project.task_type]
    misses = {}
    for annotator, task_id, submitted_at, result, answer in gold:
        w = week_index(submitted_at) - first
        if not 0 <= w < TREND_WEEKS:
            continue
        i = int(np.searchsorted(annotator_ids, annotator))
        value = score(result if isinstance(result, dict) else {}, answer if isinstance(answer, dict) else {})
        gold_sum[i, w] += value
        gold_n[i, w] += 1
        if value < 1:
            misses.setdefault(i, []).append({"task_id": task_id, "score": value, "submitted_at": submitted_at})
    gold_accuracy = np.full(shape, np.nan)
    np.divide(gold_sum, gold_n, out=gold_accuracy, where=gold_n > 0)

    hardest = _hardest(rows, annotator_ids)
    feedback, feedback_watermark = _feedback(project, now)
    shown_tasks = {t[0] for items in hardest.values() for t in items} | {
        m["task_id"] for items in misses.values() for m in items[-GOLD_MISSES_PER_ANNOTATOR:]}
    external = dict(Task.objects.filter(pk__in=shown_tasks).values_list("pk", "external_id")) if shown_tasks else {}

    def series(matrix):
        return [_number(v) for v in matrix]

    annotators = {}
    for i, a in enumerate(annotator_ids.tolist()):
        annotators[str(a)] = {
            "submitted": submitted[i].tolist(), "median_lead_time_seconds": series(median_lead[i]),
            "acceptance_rate": series(acceptance[i]), "reviewed": decided[i].astype(int).tolist(),
            "gold_accuracy": series(gold_accuracy[i]), "gold_n": gold_n[i].tolist(),
        }
    # The team per week: annotators who submitted that week, or have the figure that week.
    active = np.where(submitted > 0, submitted.astype(float), np.nan)
    team = {"submitted": _team_distribution(active), "median_lead_time_seconds": _team_distribution(median_lead),
            "acceptance_rate": _team_distribution(acceptance), "gold_accuracy": _team_distribution(gold_accuracy)}
    return {
        "weeks": [week_start(first + w).isoformat() for w in range(TREND_WEEKS)],
        "figures": list(TREND_FIGURES),
        "annotators": annotators,
        "team": team,
        "hardest": {str(int(annotator_ids[i])): [
            {"task_id": task, "external_id": external.get(task), "lead_time_seconds": lead,
             "task_median_seconds": median, "ratio": ratio, "annotators": count}
            for task, lead, median, ratio, count in items] for i, items in hardest.items()},
        "gold_misses": {str(int(annotator_ids[i])): [
            {**m, "external_id": external.get(m["task_id"]), "submitted_at": m["submitted_at"].isoformat()}
            for m in reversed(items[-GOLD_MISSES_PER_ANNOTATOR:])] for i, items in misses.items()},
        "feedback": feedback,
        "feedback_watermark": feedback_watermark,
        "computed_at": now.isoformat(),
    }


def people_trends_recompute(project_id, *, now=None):
    """Compute and store a project's people_trends snapshot: one row per project, replaced. Idempotent; returns the
    snapshot, or None for a project that no longer exists."""
    from apps.projects.models import Project

    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    now = now or timezone.now()
    values = people_trends_compute(project, now=now)
    with transaction.atomic():
        snapshots = MetricSnapshot.objects.filter(project=project, scope=MetricSnapshot.Scope.PROJECT, kind=KIND)
        snapshot = snapshots.select_for_update().order_by("-computed_at").first()
        if snapshot is None:
            snapshot = MetricSnapshot.objects.create(project=project, scope=MetricSnapshot.Scope.PROJECT, kind=KIND,
                                                     values=values, computed_at=now)
        else:
            snapshot.values, snapshot.computed_at = values, now
            snapshot.save(update_fields=["values", "computed_at"])
        snapshots.exclude(pk=snapshot.pk).delete()  # a second row written by a run at the same time
    return snapshot
