"""The people dashboards: the team view and an annotator's detail (managers), and my stats (annotators).

Each page reads the quality engine's annotators snapshot and the people_trends snapshot (apps/dashboards/
people_trends.py), plus a few rows of one person's feedback and questions: a fixed number of queries. Each page
answers `?format=json` (its data; the figures as the API's figures endpoints give them) and `?format=csv&table=…`
(each of its tables).

Coaching, not ranking (DESIGN.md "Governance"): an annotator's page carries their own figures and the team's
anonymised distribution only, never another annotator's name, id or figures.
"""


from django.contrib.auth.decorators import login_required
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from apps.core.permissions import ANNOTATE, MANAGE
from apps.quality.engine import DISTRIBUTION_FIGURES
from apps.core.csv_tools import csv_response
from apps.tasks.views import _project_or_404

from . import people_selectors as selectors
from .people_trends import STALE_SECONDS
from .tasks import people_trends_recompute_soon

FIGURE_NAMES = {
    "submitted": gettext_lazy("Submitted"),
    "median_lead_time_seconds": gettext_lazy("Median lead time"),
    "difficulty_adjusted_speed": gettext_lazy("Speed (difficulty-adjusted)"),
    "acceptance_rate": gettext_lazy("Acceptance rate"),
    "rework_rate": gettext_lazy("Rework rate"),
    "gold_accuracy": gettext_lazy("Gold accuracy"),
    "agreement": gettext_lazy("Agreement"),
}
FLAG_NAMES = {
    "slow": gettext_lazy("slow"),
    "fast_and_inaccurate": gettext_lazy("fast and inaccurate"),
    "low_gold": gettext_lazy("low gold accuracy"),
    "low_agreement": gettext_lazy("low agreement"),
}
RATES = {"acceptance_rate", "rework_rate", "gold_accuracy", "agreement"}


def figure_display(name, value):
    """A figure as a person reads it: rates in percent, times in seconds, speed as a factor; "—" for no data."""
    if value is None:
        return "—"
    if name in RATES:
        return f"{number_format(value * 100, 0)} %"
    if name == "median_lead_time_seconds" or name.endswith("_seconds"):
        return f"{number_format(value, 1)} s"
    if name == "difficulty_adjusted_speed" or name == "ratio":
        return f"{number_format(value, 2)}×"
    return number_format(value, 0)


def _cells(row, names=selectors.TABLE_FIGURES):
    return [{"name": name, "value": row.get(name), "display": figure_display(name, row.get(name))} for name in names]


def _flags(row):
    return [str(FLAG_NAMES.get(flag, flag)) for flag in row.get("flags") or []]


def _trends(project):
    """The people_trends values; a missing or stale snapshot is asked of the workers (it shows next time)."""
    snapshot = selectors.trends_snapshot(project=project)
    if snapshot is None or (timezone.now() - snapshot.computed_at).total_seconds() > STALE_SECONDS:
        people_trends_recompute_soon(project.pk)
        if snapshot is None:  # there now when the task ran in this process (eager: `make run`)
            snapshot = selectors.trends_snapshot(project=project)
    values = snapshot.values if snapshot else selectors.trends_empty()
    return values, selectors.api_datetime(snapshot and snapshot.computed_at)


def _respond(request, *, template, context, data, tables, filename):
    """The page, its data as JSON (`?format=json`) or one of its tables as CSV (`?format=csv&table=<name>`)."""
    wanted = request.GET.get("format")
    if wanted == "json":
        return JsonResponse(data, encoder=DjangoJSONEncoder, json_dumps_params={"ensure_ascii": False})
    if wanted == "csv":
        table = request.GET.get("table", "")
        if table not in tables:
            raise Http404(_("No such table."))
        header, rows = tables[table]()
        return csv_response(f"{filename}-{table}.csv", header, rows)
    return render(request, template, {**context, "data": data, "tables": list(tables)})


def _trend_rows(weeks, series_by_person):
    """Long format: one row per person and week."""
    for person, series in series_by_person:
        if not series:
            continue
        for w, week in enumerate(weeks):
            yield [person, week, series["submitted"][w], series["median_lead_time_seconds"][w],
                   series["acceptance_rate"][w], series["reviewed"][w], series["gold_accuracy"][w],
                   series["gold_n"][w]]


TREND_HEADER = ["week", "submitted", "median_lead_time_seconds", "acceptance_rate", "reviewed", "gold_accuracy",
                "gold_n"]


@login_required
def team(request, project_id):
    """The team view (managers): every annotator's figures, speed against accuracy, teams compared, learning
    curves."""
    project = _project_or_404(request.user, project_id, MANAGE)
    figures = selectors.annotators_figures(project=project)
    rows = figures["annotators"]
    trends, trends_at = _trends(project)
    names = {str(row["annotator_id"]): row["username"] for row in rows}
    data = {
        "project": {"id": project.pk, "name": project.name},
        **figures,
        "medians": selectors.team_medians(rows, figures["distribution"]),
        "teams": selectors.team_comparison(rows=rows),
        "trends": {"weeks": trends.get("weeks", []), "team": trends.get("team", {}),
                   "annotators": {a: {"username": names.get(a, a), **series}
                                  for a, series in trends.get("annotators", {}).items()},
                   "computed_at": trends_at},
    }
    tables = {
        "annotators": lambda: (["annotator_id", "username", *selectors.TABLE_FIGURES, "flags"],
                               ([r["annotator_id"], r["username"], *[r.get(n) for n in selectors.TABLE_FIGURES],
                                 " ".join(r.get("flags") or [])] for r in rows)),
        "teams": lambda: (["team", "annotators", *selectors.TABLE_FIGURES, "flagged"],
                          ([t["name"] or _("Not in a team"), t["annotators"],
                            *[t.get(n) for n in selectors.TABLE_FIGURES], t["flagged"]] for t in data["teams"])),
        "trends": lambda: (["username", *TREND_HEADER],
                           _trend_rows(data["trends"]["weeks"],
                                       [(s["username"], s) for s in data["trends"]["annotators"].values()])),
    }
    context = {
        "project": project, "figure_names": [FIGURE_NAMES[n] for n in selectors.TABLE_FIGURES],
        "rows": [{"row": r, "cells": _cells(r), "flags": _flags(r)} for r in rows],
        "teams": [{"team": t, "cells": _cells(t)} for t in data["teams"]],
        "medians": _cells(data["medians"]),
    }
    return _respond(request, template="dashboards/people/team.html", context=context, data=data, tables=tables,
                    filename=f"{project.slug}-team")


@login_required
def annotator(request, project_id, user_id):
    """One annotator, for their manager: figures over time, error types, hardest tasks, questions, feedback."""
    project = _project_or_404(request.user, project_id, MANAGE)
    figures = selectors.annotators_figures(project=project)
    row = next((r for r in figures["annotators"] if r["annotator_id"] == user_id), None)
    membership = selectors.annotator_membership(project=project, user_id=user_id)
    if row is None and membership is None:
        raise Http404(_("No such annotator in this project."))
    person = membership.user if membership else None
    username = row["username"] if row else person.get_username()
    trends, trends_at = _trends(project)
    names = selectors.error_type_names(project=project)
    errors = sorted(((row or {}).get("error_types") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    data = {
        "project": {"id": project.pk, "name": project.name},
        "annotator": {"id": user_id, "username": username},
        "figures": row,
        "medians": selectors.team_medians(figures["annotators"], figures["distribution"]),
        "distribution": figures["distribution"],
        "computed_at": figures["computed_at"],
        "trend": {**selectors.trends_of(trends, user_id), "computed_at": trends_at},
        "error_types": [{"code": code, "name": names.get(code, code), "count": n} for code, n in errors],
        "hardest": trends.get("hardest", {}).get(str(user_id), []),
        "gold_misses": trends.get("gold_misses", {}).get(str(user_id), []),
        "clarifications": selectors.clarification_list(project=project, annotator=user_id),
        "feedback": selectors.feedback_list(project=project, annotator=user_id, trends=trends),
    }
    tables = _person_tables(data, data["trend"])
    tables["hardest"] = lambda: (["task_id", "external_id", "lead_time_seconds", "task_median_seconds", "ratio",
                                  "annotators"],
                                 ([h["task_id"], h["external_id"], h["lead_time_seconds"], h["task_median_seconds"],
                                   h["ratio"], h["annotators"]] for h in data["hardest"]))
    tables["gold_misses"] = lambda: (["task_id", "external_id", "score", "submitted_at"],
                                     ([m["task_id"], m["external_id"], m["score"], m["submitted_at"]]
                                      for m in data["gold_misses"]))
    context = {
        "project": project, "username": username,
        "cards": _cards(row, data["medians"]),
        "hardest": [{**h, "lead": figure_display("lead_time_seconds", h["lead_time_seconds"]),
                     "median": figure_display("task_median_seconds", h["task_median_seconds"]),
                     "times": figure_display("ratio", h["ratio"])} for h in data["hardest"]],
    }
    return _respond(request, template="dashboards/people/annotator.html", context=context, data=data, tables=tables,
                    filename=f"{project.slug}-annotator-{user_id}")


@login_required
def my_stats(request, project_id):
    """My stats (annotators): my figures and weekly trend against the team's anonymised distribution, the feedback
    I received, my open questions."""
    project = _project_or_404(request.user, project_id, ANNOTATE)
    figures = selectors.my_figures(project=project, user=request.user)
    trends, trends_at = _trends(project)
    me = figures["me"]
    errors = sorted(((me or {}).get("error_types") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    names = selectors.error_type_names(project=project) if errors else {}
    data = {
        "project": {"id": project.pk, "name": project.name},
        **figures,
        "trend": {**selectors.trends_of(trends, request.user.pk), "computed_at": trends_at},
        "error_types": [{"code": code, "name": names.get(code, code), "count": n} for code, n in errors],
        "feedback": selectors.feedback_list(project=project, annotator=request.user, trends=trends),
        "clarifications": selectors.clarification_list(project=project, annotator=request.user, open_only=True),
    }
    tables = _person_tables(data, data["trend"])
    tables["figures"] = lambda: (["figure", "you", "team_p25", "team_median", "team_p75", "team_n"],
                                 ([name, (me or {}).get(name), *[(data["team"].get(name) or {}).get(k)
                                                                 for k in ("p25", "median", "p75", "n")]]
                                  for name in DISTRIBUTION_FIGURES))
    team = data["team"]
    context = {
        "project": project,
        "cards": [{"name": FIGURE_NAMES[n], "key": n, "you": figure_display(n, (me or {}).get(n)),
                   "median": figure_display(n, (team.get(n) or {}).get("median")),
                   "p25": figure_display(n, (team.get(n) or {}).get("p25")),
                   "p75": figure_display(n, (team.get(n) or {}).get("p75")),
                   "shown": (team.get(n) or {}).get("median") is not None} for n in DISTRIBUTION_FIGURES],
    }
    return _respond(request, template="dashboards/people/my_stats.html", context=context, data=data, tables=tables,
                    filename=f"{project.slug}-my-stats")


def _cards(row, medians):
    return [{"name": FIGURE_NAMES[n], "key": n, "value": figure_display(n, (row or {}).get(n)),
             "median": figure_display(n, medians.get(n))} for n in DISTRIBUTION_FIGURES]


def _person_tables(data, trend):
    """The tables one person's page shares (the annotator detail and my stats)."""
    return {
        "trend": lambda: (TREND_HEADER, (row[1:] for row in _trend_rows(trend["weeks"], [("", trend["mine"])]))),
        "error_types": lambda: (["code", "name", "count"],
                                ([e["code"], e["name"], e["count"]] for e in data["error_types"])),
        "feedback": lambda: (["decided_at", "task_id", "decision", "error_types", "comment"],
                             ([f["decided_at"], f["task_id"], f["decision"], "; ".join(f["error_types"]),
                               f["comment"]] for f in data["feedback"])),
        "clarifications": lambda: (["asked_at", "task_id", "status", "question", "answer", "answered_at"],
                                   ([c["asked_at"], c["task_id"], c["status"], c["question"], c["answer"],
                                     c["answered_at"]] for c in data["clarifications"])),
    }

