"""Reads of the people dashboards: snapshots the workers wrote (quality engine kind "annotators", people_trends) and
a few rows of the person's own feedback and questions. A fixed number of queries each, whatever the project's size.

Nothing here decides who may see what: the views check the role first, and the my-stats reads return only the
caller's own figures and the team's anonymised distribution.
"""

import statistics

from datetime import datetime

from rest_framework.fields import DateTimeField

from apps.annotators.models import Team
from apps.projects.models import Membership
from apps.quality.engine import ANNOTATORS, DISTRIBUTION_FIGURES
from apps.quality.models import Review
from apps.quality.selectors import snapshot_latest
from apps.tasks.models import Clarification

from .people_trends import KIND as TRENDS_KIND
from .people_trends import TREND_FIGURES, feedback_items, feedback_reviews

FEEDBACK_LIMIT = 30  # people_trends.FEEDBACK_PER_ANNOTATOR keeps as many
CLARIFICATION_LIMIT = 30
# The columns of the annotator table, in the API's names (GET /projects/{id}/annotators/).
TABLE_FIGURES = ("submitted", "median_lead_time_seconds", "difficulty_adjusted_speed", "acceptance_rate",
                 "rework_rate", "gold_accuracy", "agreement")


def api_datetime(value):
    """A datetime as the API writes it (DRF's ISO 8601), so that the pages' JSON equals the API's."""
    return DateTimeField().to_representation(value) if value else None


def annotators_figures(*, project):
    """The figures of `GET /projects/{id}/annotators/` (managers): every annotator's row, the reviewers, the team
    distribution and when they were computed. One query."""
    snapshot = snapshot_latest(project=project, kind=ANNOTATORS)
    values = snapshot.values if snapshot else {}
    return {"annotators": values.get("annotators", []), "reviewers": values.get("reviewers", []),
            "distribution": values.get("distribution", {}),
            "computed_at": api_datetime(snapshot and snapshot.computed_at)}


def my_figures(*, project, user):
    """The figures of `GET /me/metrics/?project=` : the caller's own row and the team's anonymised distribution. One
    query."""
    snapshot = snapshot_latest(project=project, kind=ANNOTATORS)
    rows = snapshot.values.get("annotators", []) if snapshot else []
    mine = next((row for row in rows if row.get("annotator_id") == user.pk), None)
    return {"me": mine, "team": snapshot.values.get("distribution", {}) if snapshot else {},
            "computed_at": api_datetime(snapshot and snapshot.computed_at)}


def trends_snapshot(*, project):
    """The people_trends snapshot (values and time), or None before the first worker pass. One query."""
    return snapshot_latest(project=project, kind=TRENDS_KIND)


def trends_empty():
    return {"weeks": [], "figures": list(TREND_FIGURES), "annotators": {}, "team": {}, "hardest": {},
            "gold_misses": {}}


def trends_of(values, annotator_id):
    """One annotator's weekly series with the team's anonymised distribution per week (nobody else's series)."""
    return {"weeks": values.get("weeks", []), "mine": values.get("annotators", {}).get(str(annotator_id)),
            "team": values.get("team", {})}


def team_medians(rows, distribution):
    """The team's median of each figure: the snapshot's distribution, or (below its minimum team size, which only
    managers get to see) the median of the rows themselves."""
    medians = {}
    for name in DISTRIBUTION_FIGURES:
        median = (distribution.get(name) or {}).get("median")
        if median is None:
            values = [row.get(name) for row in rows if row.get(name) is not None]
            median = statistics.median(values) if values else None
        medians[name] = median
    return medians


def _pooled(rows, rate, weight):
    total = sum(row.get(weight) or 0 for row in rows if row.get(rate) is not None)
    if not total:
        return None
    return sum(row[rate] * (row.get(weight) or 0) for row in rows if row.get(rate) is not None) / total


def _median(rows, name):
    values = [row[name] for row in rows if row.get(name) is not None]
    return statistics.median(values) if values else None


def team_comparison(*, rows):
    """The teams (Team, set in the admin) that have annotators in `rows` (the annotators snapshot), each with its
    members' figures: submitted summed, acceptance, gold accuracy and agreement pooled over their samples, the
    medians of the members' lead time, speed and rework; plus the annotators in no team. One query."""
    by_id = {row["annotator_id"]: row for row in rows}
    members = (Team.members.through.objects.filter(user_id__in=list(by_id))
               .values_list("team_id", "team__name", "user_id").order_by("team__name", "team_id"))
    teams, placed = {}, set()
    for team_id, name, user_id in members:
        teams.setdefault(team_id, {"team_id": team_id, "name": name, "rows": []})["rows"].append(by_id[user_id])
        placed.add(user_id)
    unplaced = [row for row in rows if row["annotator_id"] not in placed]
    groups = list(teams.values())
    if unplaced and groups:
        groups.append({"team_id": None, "name": None, "rows": unplaced})
    result = []
    for group in groups:
        members_rows = group.pop("rows")
        result.append({
            **group, "annotators": len(members_rows),
            "submitted": sum(row.get("submitted") or 0 for row in members_rows),
            "median_lead_time_seconds": _median(members_rows, "median_lead_time_seconds"),
            "difficulty_adjusted_speed": _median(members_rows, "difficulty_adjusted_speed"),
            "acceptance_rate": _pooled(members_rows, "acceptance_rate", "reviewed"),
            "rework_rate": _median(members_rows, "rework_rate"),
            "gold_accuracy": _pooled(members_rows, "gold_accuracy", "gold_n"),
            "agreement": _pooled(members_rows, "agreement", "agreement_n"),
            "flagged": sum(1 for row in members_rows if row.get("flags")),
        })
    return result


def annotator_membership(*, project, user_id):
    """The user's annotator membership of the project (with the user), or None. One query."""
    return (Membership.objects.filter(project=project, user_id=user_id, role=Membership.Role.ANNOTATOR)
            .select_related("user").first())


def feedback_list(*, project, annotator, trends, limit=FEEDBACK_LIMIT):
    """Decided reviews of the annotator's work that say something (a comment, or anything but a plain approval),
    newest first, without the reviewer: [{"review_id", "task_id", "decision", "decision_display", "error_types",
    "comment", "decided_at"}].

    The worker keeps each annotator's latest ones in the people_trends snapshot (`trends`, its values) with the
    review id up to which it read; the reviews written since are read here, by a range of the primary key (a
    handful of rows, however many reviews the project has). Two queries, one when there is nothing new.
    """
    annotator_id = getattr(annotator, "pk", annotator)
    live = feedback_reviews(project).filter(annotation__annotator_id=annotator_id)
    watermark = trends.get("feedback_watermark")
    if watermark is not None:
        live = live.filter(pk__gt=watermark)
    items = feedback_items(live.order_by("-pk")[:limit])
    seen = {item["review_id"] for item in items}
    items += [{**item, "decided_at": datetime.fromisoformat(item["decided_at"])}
              for item in trends.get("feedback", {}).get(str(annotator_id), []) if item["review_id"] not in seen]
    labels = dict(Review.Decision.choices)
    return [{"review_id": item["review_id"], "task_id": item["task_id"], "decision": item["decision"],
             "decision_display": str(labels.get(item["decision"], item["decision"])),
             "error_types": item["error_types"], "comment": item["comment"],
             "decided_at": api_datetime(item["decided_at"])}
            for item in sorted(items, key=lambda item: -item["review_id"])[:limit]]


def clarification_list(*, project, annotator, open_only=False, limit=CLARIFICATION_LIMIT):
    """The annotator's clarification requests in the project, newest first, without who answered. One query."""
    questions = Clarification.objects.filter(asked_by=annotator, task__project_id=project.pk)
    if open_only:
        questions = questions.filter(status=Clarification.Status.OPEN)
    return [{"clarification_id": c["pk"], "task_id": c["task_id"], "question": c["question"], "status": c["status"],
             "confidential": c["confidential"], "answer": c["answer"], "asked_at": api_datetime(c["created_at"]),
             "answered_at": api_datetime(c["answered_at"])}
            for c in questions.values("pk", "task_id", "question", "status", "confidential", "answer", "created_at",
                                      "answered_at").order_by("-created_at", "-pk")[:limit]]


def error_type_names(*, project):
    """Error code → name of the project's taxonomy. One query."""
    from apps.quality.models import ErrorType

    return dict(ErrorType.objects.filter(project=project).values_list("code", "name").order_by())

