"""What the project dashboard shows, read from the snapshots the workers write (never computed over tasks here).

A fixed handful of queries whatever the size of the project: the latest progress and quality snapshots, one
query for the day-by-day history of both (the last snapshot of each day, only the JSON keys drawn), the gates,
the live alerts, the batches of the filter and the error-type names. `dashboard_tables` turns the figures into the
tables the page shows under its charts and offers as CSV.
"""

from datetime import UTC, date, datetime, time, timedelta

from django import forms
from django.db.models import Max, Q, Subquery
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from apps.projects.models import Batch, QualityGate
from apps.quality.alerts import alert_text
from apps.quality.models import Alert, ErrorType, MetricSnapshot
from apps.quality.services import metrics_payload
from apps.tasks.models import Task

SCOPE = MetricSnapshot.Scope
DEFAULT_DAYS = 30
MAX_DAYS = 366
ALERTS_SHOWN = 50
QUALITY_SERIES = ("agreement", "gold_accuracy", "acceptance_rate", "rework_rate")
UNFINISHED = [s for s in Task.Status.values if s not in (Task.Status.ACCEPTED, Task.Status.CANCELLED)]


# Dates outside this range are typing mistakes (and day arithmetic near year 1 or 9999 overflows).
EARLIEST_DAY = date(2000, 1, 1)


class DashboardFilterForm(forms.Form):
    """The GET filters: a batch of the project and a date range (at most MAX_DAYS days, not in the future)."""

    batch = forms.ModelChoiceField(queryset=Batch.objects.none(), required=False,
                                   empty_label=gettext_lazy("All batches"), label=gettext_lazy("Batch"))
    date_from = forms.DateField(required=False, label=gettext_lazy("From"),
                                widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label=gettext_lazy("To"), widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, data, *, project, today):
        super().__init__(data)
        self.today = today
        # Only this project's batches: an id of another project's batch is "not one of the choices", never shown.
        self.fields["batch"].queryset = Batch.objects.filter(project=project).order_by("-priority", "name", "pk")

    def clean(self):
        cleaned = super().clean()
        for field in ("date_from", "date_to"):
            day = cleaned.get(field)
            if day is not None and not EARLIEST_DAY <= day <= self.today:
                self.add_error(field, _("Choose a day between %(first)s and today.") % {"first": EARLIEST_DAY})
        if "date_to" in self.errors or "date_from" in self.errors:
            return cleaned
        date_to = cleaned.get("date_to") or self.today
        date_from = cleaned.get("date_from") or date_to - timedelta(days=DEFAULT_DAYS - 1)
        if date_from > date_to:
            self.add_error("date_from", _("The start date must be on or before the end date."))
        elif (date_to - date_from).days + 1 > MAX_DAYS:
            self.add_error("date_from", _("Choose at most %(days)d days.") % {"days": MAX_DAYS})
        cleaned["date_from"], cleaned["date_to"] = date_from, date_to
        return cleaned

    def errors_as_dict(self):
        return {field: [str(message) for message in messages] for field, messages in self.errors.items()}


def _daily_history(project, batch, date_from, date_to):
    """The last progress and quality snapshot of each UTC day in the range, only the figures the charts draw, in
    two queries: the last time of each day per kind (a UNION of two index-only range scans of snapshot_lookup:
    project, scope, kind, computed_at), then those rows by time. The cost follows the days shown, not the size of
    the project or the length of its history."""
    start = datetime.combine(date_from, time.min, tzinfo=UTC)
    end = datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=UTC)

    def last_of_day(**lookup):
        return (MetricSnapshot.objects.filter(project=project, computed_at__gte=start, computed_at__lt=end, **lookup)
                .annotate(day=TruncDate("computed_at")).values("day").annotate(last=Max("computed_at"))
                .values_list("last", flat=True).order_by())

    progress_lookup = {"scope": SCOPE.PROJECT, "kind": "progress"}
    quality_lookup = ({"scope": SCOPE.BATCH, "kind": "quality", "batch_id": batch.pk} if batch
                      else {"scope": SCOPE.PROJECT, "kind": "quality"})
    times = list(last_of_day(**progress_lookup).union(last_of_day(**quality_lookup), all=True))
    wanted = Q(**progress_lookup) | Q(**quality_lookup)
    # A batch's counts: the whole by_batch object, its key picked here (a numeric key in a JSON path is an array
    # index on SQLite, so `by_batch__<pk>` would read nothing there).
    status_path = "values__by_batch" if batch else "values__by_status"
    rows = (MetricSnapshot.objects.filter(wanted, project=project, computed_at__in=times).order_by("computed_at")
            .values("kind", "computed_at", status_path, "values__review__backlog",
                    "values__eta__remaining_annotations", "values__agreement__value",
                    *(f"values__{name}" for name in QUALITY_SERIES[1:])))
    progress, quality = [], []
    for row in rows:
        day = row["computed_at"].date().isoformat()
        if row["kind"] == "progress":
            by_status = ((row[status_path] or {}).get(str(batch.pk)) if batch else row[status_path]) or {}
            progress.append({
                "date": day,
                "remaining_tasks": sum(by_status.get(s, 0) for s in UNFINISHED),
                "accepted": by_status.get(Task.Status.ACCEPTED, 0),
                "in_review": by_status.get(Task.Status.IN_REVIEW, 0),
                "review_backlog": row["values__review__backlog"],
                "remaining_annotations": row["values__eta__remaining_annotations"],
            })
        else:
            quality.append({"date": day, "agreement": row["values__agreement__value"],
                            **{name: row[f"values__{name}"] for name in QUALITY_SERIES[1:]}})
    return progress, quality


def _in_range(rows, date_from, date_to, key="date"):
    low, high = date_from.isoformat(), date_to.isoformat()
    return [row for row in rows if low <= row[key][:10] <= high]


def project_dashboard(*, project, batch=None, date_from=None, date_to=None, now=None):
    """Every figure of the dashboard, as JSON-ready data. `metrics` is exactly the API's `/metrics/` payload."""
    now = now or timezone.now()
    date_to = date_to or now.date()
    date_from = date_from or date_to - timedelta(days=DEFAULT_DAYS - 1)
    snapshots = MetricSnapshot.objects.filter(project=project, scope=SCOPE.PROJECT).order_by("-computed_at")
    progress = snapshots.filter(kind="progress").first()
    quality = snapshots.filter(kind="quality").first()
    metrics = metrics_payload(progress=progress, quality=quality)
    values = progress.values if progress else {}
    if batch is not None:
        batch_quality = (MetricSnapshot.objects.filter(project=project, scope=SCOPE.BATCH, kind="quality",
                                                       batch=batch).order_by("-computed_at").first())
        batch_values = batch_quality.values if batch_quality else {}
        by_status = values.get("by_batch", {}).get(str(batch.pk), dict.fromkeys(Task.Status.values, 0))
        quality_now = {name: batch_values.get(name) for name in QUALITY_SERIES}
        quality_now["agreement"] = (batch_values.get("agreement") or {}).get("value")
        error_counts = batch_values.get("error_types", {})
    else:
        by_status = metrics["progress"]["by_status"]
        quality_now = {name: metrics["quality"][name] for name in QUALITY_SERIES}
        quality_now["agreement"] = metrics["quality"]["agreement"]["value"]
        error_counts = metrics["quality"]["error_types"]
    total = sum(by_status.values()) if by_status else 0
    countable = total - by_status.get(Task.Status.CANCELLED, 0)
    accepted = by_status.get(Task.Status.ACCEPTED, 0)

    progress_days, quality_days = _daily_history(project, batch, date_from, date_to)
    gates = QualityGate.objects.filter(project=project, is_active=True)
    gates = gates.filter(Q(batch=batch) | Q(batch__isnull=True)) if batch else gates.filter(batch__isnull=True)
    gate_rows = [{"id": g.pk, "metric": g.metric, "metric_name": g.get_metric_display(), "comparator": g.comparator,
                  "threshold": g.threshold, "min_samples": g.min_samples, "state": g.state,
                  "state_name": g.get_state_display(), "last_value": g.last_value, "last_n": g.last_n,
                  "batch": g.batch_id} for g in gates.order_by("metric", "pk")]
    alerts = Alert.objects.filter(project=project, state__in=[Alert.State.OPEN, Alert.State.ACKNOWLEDGED])
    if batch is not None:
        alerts = alerts.filter(Q(batch=batch) | Q(batch__isnull=True))
    alert_rows = [{"id": a.pk, "kind": a.kind, "kind_name": a.get_kind_display(), "severity": a.severity,
                   "state": a.state, "batch": a.batch_id, "message": a.message, "text": alert_text(a),
                   "created_at": a.created_at}
                  for a in alerts.order_by("-created_at", "-pk")[:ALERTS_SHOWN + 1]]
    names = dict(ErrorType.objects.filter(project=project).order_by().values_list("code", "name"))
    by_label = _errors_by_label(metrics["quality"].get("error_types_by_label") or {}, names)
    throughput = metrics["throughput"]
    eta_range = metrics["progress"].get("eta_range") or {}
    review = metrics["review"]
    return {
        "project": {"id": project.pk, "name": project.name, "overlap": project.overlap},
        "filters": {"batch": batch.pk if batch else None, "batch_name": batch.name if batch else None,
                    "date_from": date_from.isoformat(), "date_to": date_to.isoformat()},
        "metrics": metrics,
        "progress": {"total": total, "by_status": by_status, "accepted": accepted,
                     "accepted_pct": round(100 * accepted / countable, 2) if countable else None,
                     "remaining": sum(by_status.get(s, 0) for s in UNFINISHED),
                     "eta": metrics["progress"]["eta"], "eta_detail": metrics["progress"]["eta_detail"],
                     "eta_range": eta_range},
        "throughput": {"per_day": _in_range(throughput.get("per_day", []), date_from, date_to),
                       "per_hour": throughput.get("per_hour", []), "heatmap": throughput.get("heatmap")},
        "burndown": progress_days,
        "quality": {"now": quality_now, "per_day": quality_days, "gates": gate_rows,
                    "error_types": [{"code": code, "name": names.get(code, code), "count": n}
                                    for code, n in sorted(error_counts.items(), key=lambda item: (-item[1], item[0]))],
                    "error_types_by_label": by_label},
        "review": {"backlog": review.get("backlog"), "oldest_seconds": review.get("oldest_seconds"),
                   "latency_per_day": _in_range(review.get("latency_per_day") or [], date_from, date_to)},
        "alerts": {"rows": alert_rows[:ALERTS_SHOWN], "more": len(alert_rows) > ALERTS_SHOWN},
        "computed_at": metrics["computed_at"], "quality_computed_at": metrics["quality"]["computed_at"],
    }


def _errors_by_label(counts, names):
    """The quality engine's error-type counts per label ({label: {code: reviews}}, the whole project's: the engine
    keeps them per project, not per batch) as {"types": [{code, name}] most frequent first, "rows": [{label, total,
    counts}] with the most errors first}."""
    totals = {}
    for codes in counts.values():
        for code, n in codes.items():
            totals[code] = totals.get(code, 0) + n
    types = [{"code": code, "name": names.get(code, code)}
             for code, _n in sorted(totals.items(), key=lambda item: (-item[1], item[0]))]
    rows = [{"label": label, "total": sum(codes.values()), "counts": dict(codes)} for label, codes in counts.items()]
    rows.sort(key=lambda row: (-row["total"], row["label"]))
    return {"types": types, "rows": rows}


WEEKDAYS = [gettext_lazy("Monday"), gettext_lazy("Tuesday"), gettext_lazy("Wednesday"), gettext_lazy("Thursday"),
            gettext_lazy("Friday"), gettext_lazy("Saturday"), gettext_lazy("Sunday")]


def dashboard_tables(data):
    """The tables of the page (each chart's numbers), as {name: {"title", "columns", "rows"}}: shown under the
    charts and downloadable as CSV (`?format=csv&table=<name>`)."""
    status_names = dict(Task.Status.choices)
    heatmap = data["throughput"]["heatmap"] or {"submitted": [[0] * 24 for _ in range(7)]}
    by_label = data["quality"]["error_types_by_label"]
    tables = {
        "status": (_("Tasks by status"), [_("Status"), _("Tasks")],
                   [[status_names.get(s, s), n] for s, n in data["progress"]["by_status"].items()]),
        "burndown": (_("Remaining work by day"), [_("Date"), _("Remaining tasks"), _("Accepted tasks"),
                                                   _("Remaining annotations")],
                     [[r["date"], r["remaining_tasks"], r["accepted"], r["remaining_annotations"]]
                      for r in data["burndown"]]),
        "throughput_day": (_("Submissions per day"), [_("Date"), _("Submissions")],
                           [[r["date"], r["submitted"]] for r in data["throughput"]["per_day"]]),
        "throughput_hour": (_("Submissions per hour (last 48 hours)"), [_("Hour (UTC)"), _("Submissions")],
                            [[r["hour"], r["submitted"]] for r in data["throughput"]["per_hour"]]),
        "heatmap": (_("Submissions by weekday and hour (UTC, last 28 days)"), [_("Weekday"), _("Hour (UTC)"),
                                                                              _("Submissions")],
                    [[str(WEEKDAYS[d]), h, heatmap["submitted"][d][h]] for d in range(7) for h in range(24)]),
        "review": (_("Reviews per day"), [_("Date"), _("Decided"), _("Mean latency (hours)")],
                   [[r["date"], r["decided"], _hours(r["mean_latency_seconds"])]
                    for r in data["review"]["latency_per_day"]]),
        "quality": (_("Quality by day"), [_("Date"), _("Agreement"), _("Gold accuracy"), _("Acceptance rate"),
                                          _("Rework rate")],
                    [[r["date"], *(_round(r[name]) for name in QUALITY_SERIES)] for r in data["quality"]["per_day"]]),
        "gates": (_("Quality gates"), [_("Metric"), _("Rule"), _("Threshold"), _("State"), _("Last value"),
                                       _("Sample")],
                  [[g["metric_name"], "≥" if g["comparator"] == "gte" else "≤", g["threshold"], g["state_name"],
                    _round(g["last_value"]), g["last_n"]] for g in data["quality"]["gates"]]),
        "error_types": (_("Errors found in review"), [_("Error type"), _("Code"), _("Reviews")],
                        [[e["name"], e["code"], e["count"]] for e in data["quality"]["error_types"]]),
        "error_types_by_label": (_("Errors by label"), [_("Label"), _("All error types"),
                                                         *(t["name"] for t in by_label["types"])],
                                 [[row["label"], row["total"], *(row["counts"].get(t["code"], 0)
                                                                 for t in by_label["types"])]
                                  for row in by_label["rows"]]),
        "alerts": (_("Open alerts"), [_("Raised"), _("Kind"), _("Severity"), _("State"), _("Message")],
                   [[a["created_at"].isoformat(timespec="minutes") if hasattr(a["created_at"], "isoformat")
                     else a["created_at"], a["kind_name"], a["severity"], a["state"], a["text"]]
                    for a in data["alerts"]["rows"]]),
    }
    return {name: {"title": title, "columns": columns, "rows": rows} for name, (title, columns, rows) in tables.items()}


def _round(value, digits=3):
    return round(value, digits) if isinstance(value, (int, float)) else value


def _hours(seconds):
    return round(seconds / 3600, 2) if seconds is not None else None


# --- the admin index: one line per project --------------------------------------------------------------------------

ADMIN_INDEX_PROJECTS = 100


def admin_index_summaries(*, projects, limit=ADMIN_INDEX_PROJECTS):
    """Progress, quality, gate states and open alerts of each project in `projects` (the admin's scoping), in
    four queries whatever their number: the projects with the ids of their latest progress and quality snapshots,
    those snapshots (only the keys shown), gate states and open alerts counted per project. At most `limit`
    projects, by name; `more` says whether some were left out."""
    from django.db.models import Count, OuterRef

    def latest(kind):
        return Subquery(MetricSnapshot.objects.filter(project_id=OuterRef("pk"), scope=SCOPE.PROJECT, kind=kind)
                        .order_by("-computed_at").values("pk")[:1])

    # The latest snapshots' ids come with the projects (one index probe each on snapshot_lookup), then only the
    # keys shown are read from those rows.
    rows = list(projects.order_by("name", "pk").annotate(progress_id=latest("progress"), quality_id=latest("quality"))
                .values("pk", "name", "progress_id", "quality_id")[:limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    ids = [row["pk"] for row in rows]
    snapshots = (MetricSnapshot.objects.filter(pk__in=[row[key] for row in rows for key in ("progress_id", "quality_id")
                                                       if row[key] is not None])
                 .values("project_id", "kind", "computed_at", "values__by_status", "values__accepted_pct",
                         "values__eta__date", "values__agreement__value", "values__gold_accuracy"))
    figures = {}
    for snapshot in snapshots:
        figures.setdefault(snapshot["project_id"], {})[snapshot["kind"]] = snapshot
    gates = {}
    for row in (QualityGate.objects.filter(project_id__in=ids, is_active=True).values("project_id", "state")
                .annotate(n=Count("id")).order_by()):
        gates.setdefault(row["project_id"], {})[row["state"]] = row["n"]
    alerts = {}
    for row in (Alert.objects.filter(project_id__in=ids, state=Alert.State.OPEN).values("project_id", "severity")
                .annotate(n=Count("id")).order_by()):
        alerts.setdefault(row["project_id"], {})[row["severity"]] = row["n"]
    summaries = []
    for row in rows:
        progress = figures.get(row["pk"], {}).get("progress") or {}
        quality = figures.get(row["pk"], {}).get("quality") or {}
        by_status = progress.get("values__by_status") or {}
        total = sum(by_status.values())
        shown = [(status, by_status.get(status, 0)) for status in ("accepted", "in_review", "rework", "in_progress")]
        summaries.append({
            "id": row["pk"], "name": row["name"], "total": total,
            "accepted_pct": progress.get("values__accepted_pct"), "eta": progress.get("values__eta__date"),
            "segments": [{"status": status, "n": n, "pct": round(100 * n / total, 2) if total else 0}
                         for status, n in shown if n],
            "agreement": quality.get("values__agreement__value"), "gold_accuracy": quality.get("values__gold_accuracy"),
            "gates": {state: gates.get(row["pk"], {}).get(state, 0) for state in QualityGate.State.values},
            "alerts": [{"severity": severity, "name": name, "n": alerts[row["pk"]][severity]}
                       for severity, name in reversed(Alert.Severity.choices)
                       if alerts.get(row["pk"], {}).get(severity)],
            "open_alerts": sum(alerts.get(row["pk"], {}).values()),
            "computed_at": progress.get("computed_at"),
        })
    return {"projects": summaries, "more": more}
