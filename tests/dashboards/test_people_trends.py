"""The people_trends snapshot (learning curves, hardest tasks, gold misses): known answers on a small project."""

from datetime import UTC, datetime, timedelta

import pytest

from apps.dashboards.people_trends import KIND, TREND_WEEKS, people_trends_compute, people_trends_recompute
from apps.projects.models import Membership
from apps.quality.models import MetricSnapshot, Review
from apps.tasks import services
from apps.tasks.models import Annotation
from tests import factories

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday: this week began on Monday 23 November
LAST_WEEK = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)
THIS_WEEK = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(weeks=20)


class Trio:
    """Three annotators (a, b, c) on a classification project (overlap 3, review all) and its tasks."""

    def __init__(self):
        self.project = factories.project(slug="trio", overlap=3, review_mode="all")
        self.reviewer = factories.member(self.project, Membership.Role.REVIEWER, "rev")
        self.a, self.b, self.c = (factories.member(self.project, Membership.Role.ANNOTATOR, n) for n in "abc")
        self.batch = factories.batch(self.project)
        self.tasks = factories.tasks(self.batch, 4)
        self.gold = factories.tasks(self.batch, 1, is_gold=True, gold_answer={"label": "cat"})[0]

    def submit(self, person, task, at, lead, label="cat"):
        assignment = services.assignment_assign(task=task, annotator=person)
        annotation = services.assignment_submit(assignment=assignment, actor=person, result={"label": label},
                                                lead_time_seconds=lead)
        Annotation.objects.filter(pk=annotation.pk).update(submitted_at=at)
        return annotation


def series(values, person, name):
    return values["annotators"][str(person.pk)][name]


def test_weeks_are_iso_weeks_ending_with_the_current_one():
    values = people_trends_compute(Trio().project, now=NOW)

    assert len(values["weeks"]) == TREND_WEEKS
    assert values["weeks"][-1] == "2026-11-23" and values["weeks"][-2] == "2026-11-16"
    assert values["weeks"][0] == "2026-09-07"
    assert values["annotators"] == {}


def test_submissions_and_median_lead_time_per_week():
    trio = Trio()
    trio.submit(trio.a, trio.tasks[0], LAST_WEEK, 10)
    trio.submit(trio.a, trio.tasks[1], LAST_WEEK + timedelta(days=2), 30)
    trio.submit(trio.a, trio.tasks[2], THIS_WEEK, 12)
    trio.submit(trio.a, trio.tasks[3], LONG_AGO, 99)  # before the window

    values = people_trends_compute(trio.project, now=NOW)

    assert series(values, trio.a, "submitted")[-2:] == [2, 1]
    assert sum(series(values, trio.a, "submitted")) == 3
    assert series(values, trio.a, "median_lead_time_seconds")[-2:] == [20.0, 12.0]
    assert series(values, trio.a, "median_lead_time_seconds")[0] is None


@pytest.mark.usefixtures("small_team_distribution")
def test_acceptance_per_week_of_the_decision_and_the_team_distribution_from_three():
    trio = Trio()
    work = {person: [trio.submit(person, task, LAST_WEEK, lead) for task in trio.tasks[:2]]
            for person, lead in ((trio.a, 10), (trio.b, 20), (trio.c, 40))}
    services.review_approve(annotation=work[trio.a][0], reviewer=trio.reviewer)
    services.review_reject(annotation=work[trio.a][1], reviewer=trio.reviewer, error_types=["wrong_label"],
                           comment="A dog")
    services.review_approve(annotation=work[trio.b][0], reviewer=trio.reviewer)
    services.review_escalate(annotation=work[trio.c][0], reviewer=trio.reviewer, comment="not sure")
    Review.objects.update(decided_at=THIS_WEEK)

    values = people_trends_compute(trio.project, now=NOW)

    assert series(values, trio.a, "acceptance_rate")[-2:] == [None, 0.5]
    assert series(values, trio.a, "reviewed")[-1] == 2
    assert series(values, trio.b, "acceptance_rate")[-1] == 1.0
    assert series(values, trio.c, "acceptance_rate")[-1] is None  # an escalation is no verdict
    team = values["team"]
    assert team["median_lead_time_seconds"]["median"][-2] == 20.0
    assert team["median_lead_time_seconds"]["n"][-2] == 3
    assert team["submitted"]["median"][-2] == 2.0
    # two annotators with an acceptance rate this week: withheld, it would describe them
    assert team["acceptance_rate"]["n"][-1] == 2 and team["acceptance_rate"]["median"][-1] is None


def test_gold_accuracy_per_week_and_the_misses():
    trio = Trio()
    trio.submit(trio.a, trio.gold, LAST_WEEK, 10, label="dog")
    trio.submit(trio.b, trio.gold, LAST_WEEK, 10, label="cat")

    values = people_trends_compute(trio.project, now=NOW)

    assert series(values, trio.a, "gold_accuracy")[-2] == 0.0
    assert series(values, trio.b, "gold_accuracy")[-2] == 1.0
    assert series(values, trio.a, "gold_n")[-2] == 1
    [miss] = values["gold_misses"][str(trio.a.pk)]
    assert miss["task_id"] == trio.gold.pk and miss["score"] == 0.0
    assert str(trio.b.pk) not in values["gold_misses"]


def test_the_hardest_tasks_are_the_slowest_against_the_task_median():
    trio = Trio()
    for task, leads in zip(trio.tasks[:2], [(10, 20, 80), (10, 20, 30)]):
        for person, lead in zip((trio.a, trio.b, trio.c), leads):
            trio.submit(person, task, LONG_AGO, lead)  # outside the weekly window: still counted here
    trio.submit(trio.c, trio.tasks[2], LONG_AGO, 500)  # alone on the task: no median to compare with

    values = people_trends_compute(trio.project, now=NOW)

    hardest = values["hardest"][str(trio.c.pk)]
    assert [(h["task_id"], h["ratio"], h["task_median_seconds"]) for h in hardest] == [
        (trio.tasks[0].pk, 4.0, 20.0), (trio.tasks[1].pk, 1.5, 20.0)]
    assert [h["ratio"] for h in values["hardest"][str(trio.a.pk)]] == [0.5, 0.5]


def test_the_current_version_counts_for_the_hardest_tasks_and_every_version_for_the_week():
    trio = Trio()
    first = trio.submit(trio.a, trio.tasks[0], LAST_WEEK, 90)
    trio.submit(trio.b, trio.tasks[0], LAST_WEEK, 10)
    services.review_reject(annotation=first, reviewer=trio.reviewer, error_types=["wrong_label"], comment="A dog")
    second = services.assignment_resubmit(assignment=first.assignment, actor=trio.a, result={"label": "cat"},
                                          lead_time_seconds=20)
    Annotation.objects.filter(pk=second.pk).update(submitted_at=THIS_WEEK)

    values = people_trends_compute(trio.project, now=NOW)

    assert series(values, trio.a, "submitted")[-2:] == [1, 1]
    assert [h["lead_time_seconds"] for h in values["hardest"][str(trio.a.pk)]] == [20.0]


def test_the_snapshot_is_one_row_per_project_replaced():
    trio = Trio()
    trio.submit(trio.a, trio.tasks[0], THIS_WEEK, 10)

    first = people_trends_recompute(trio.project.pk, now=NOW)
    second = people_trends_recompute(trio.project.pk, now=NOW + timedelta(hours=1))

    rows = MetricSnapshot.objects.filter(project=trio.project, kind=KIND)
    assert rows.count() == 1 and first.pk == second.pk
    assert rows.get().computed_at == NOW + timedelta(hours=1)
    assert people_trends_recompute(999_999) is None


def test_the_latest_feedback_per_annotator_and_the_watermark_below_open_reviews():
    trio = Trio()
    first, second, third = (trio.submit(trio.a, task, LAST_WEEK, 10) for task in trio.tasks[:3])
    services.review_reject(annotation=first, reviewer=trio.reviewer, error_types=["wrong_label"], comment="Ears")
    services.review_approve(annotation=second, reviewer=trio.reviewer)  # a plain approval says nothing
    opened = services.review_start(annotation=third, reviewer=trio.reviewer)

    values = people_trends_compute(trio.project, now=datetime.now(UTC))

    [item] = values["feedback"][str(trio.a.pk)]
    assert (item["comment"], item["error_types"], item["decision"]) == ("Ears", ["Wrong label"], "reject")
    assert values["feedback_watermark"] == opened.pk - 1  # its decision will be read live
