"""The medians kept in windows (lead time, difficulty-adjusted speed, review latency): a median that leaves its
window again and again is rebuilt from exactly what the state holds, so the incremental figures stay equal to a
full recompute however many events come between full passes, and an event written but not applied yet is not
counted twice."""

from datetime import timedelta
from unittest import mock

import pytest
from django.db.models import F
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings, strategies as st

from apps.projects.models import Membership
from apps.quality import engine
from apps.quality.models import MetricSnapshot, Review
from apps.tasks import services
from apps.tasks.models import Annotation
from tests import factories

pytestmark = pytest.mark.django_db


class Team:
    """A classification project (overlap 3, no review) with three annotators, two reviewers and some tasks."""

    def __init__(self, n_tasks=6):
        self.project = factories.project(slug="windows", overlap=3, review_mode="none")
        self.people = [factories.member(self.project, Membership.Role.ANNOTATOR) for _ in range(3)]
        self.reviewers = [factories.member(self.project, Membership.Role.REVIEWER) for _ in range(2)]
        self.tasks = factories.tasks(factories.batch(self.project), n_tasks)
        self.assignments = {}

    def submit(self, task, person, label, lead):
        """A submission, or another version of the same assignment (as a resubmission writes it)."""
        key = (task, person)
        if key not in self.assignments:
            self.assignments[key] = services.assignment_assign(task=self.tasks[task], annotator=self.people[person])
            services.assignment_submit(assignment=self.assignments[key], actor=self.people[person],
                                       result={"label": label}, lead_time_seconds=lead)
            return
        assignment = self.assignments[key]
        Annotation.objects.filter(assignment=assignment, is_current=True).update(is_current=False,
                                                                                status="superseded")
        Annotation.objects.create(task=self.tasks[task], assignment=assignment, annotator=self.people[person],
                                  author=self.people[person], version=assignment.annotations.count() + 1,
                                  result={"label": label}, lead_time_seconds=lead)

    def review(self, task, which, reviewer, latency):
        """A decision on one current annotation of the task, `latency` seconds after its submission."""
        current = list(Annotation.objects.filter(task=self.tasks[task], is_current=True).order_by("id"))
        if current:
            annotation = current[which % len(current)]
            Review.objects.create(annotation=annotation, reviewer=self.reviewers[reviewer], decision="approve",
                                  decided_at=annotation.submitted_at + timedelta(seconds=latency))

    def update(self, *tasks):
        return engine.tasks_quality_update(self.project, [self.tasks[t].pk for t in tasks])

    def assert_equals_full(self):
        annotators = (MetricSnapshot.objects.filter(project=self.project, scope="project", kind="annotators")
                      .order_by("-computed_at").first().values)
        full = engine.project_quality_compute(self.project)
        assert annotators["annotators"] == full["annotators"]["annotators"]
        assert annotators["reviewers"] == full["annotators"]["reviewers"]
        assert annotators["distribution"] == full["annotators"]["distribution"]


@pytest.fixture
def team():
    return Team()


def windows(project):
    state = engine._state_row(project).values
    return ([(a["lead"], a["speed"]) for a in state["annotators"].values()]
            + [(r["latency"],) for r in state["reviewers"].values()])


@pytest.mark.parametrize("band", [0, 2, 1024])
@pytest.mark.parametrize("margin", [0, 3600])
def test_a_median_leaving_its_window_again_and_again_stays_exact(team, margin, band):
    # given every task done by the three annotators and reviewed, a full pass, windows of one value either side
    # (rebuilt windows: four) and the full pass's wide windows of 0, 2 or 1024 (rebuilt from them while the median
    # stays inside, else from the rows)
    for task in range(6):
        for person in range(3):
            team.submit(task, person, "cat", 10.0 + task + person)
        team.review(task, task, task % 2, 60.0 + task)
    with override_settings(QUALITY_COMMIT_MARGIN_SECONDS=margin), mock.patch.object(engine, "WINDOW_HALF", 1), \
            mock.patch.object(engine, "BAND_HALF", band):
        engine.project_quality_recompute(team.project.pk)
        # when one annotator resubmits again and again, ever slower (their lead median and everybody's speed move
        # one way), and a reviewer decides ever later
        for step in range(14):
            task = step % 6
            team.submit(task, 0, "dog" if step % 2 else "cat", 100.0 + 10 * step)
            team.review(task, step, 0, 1000.0 + step)
            team.update(task)
            # then after every update every median is the full pass's, and no window is left unknown
            team.assert_equals_full()
            assert all(window is not None for person in windows(team.project) for window in person)


@pytest.mark.parametrize("band", [0, 1024])
def test_an_event_not_applied_yet_is_not_counted_twice_by_a_rebuild(team, band):
    # given a full pass with windows of no value either side (any move rebuilds them; from the rows, or from the
    # full pass's wide windows)
    for task in range(6):
        for person in range(3):
            team.submit(task, person, "cat", 10.0 + 3 * task + person)
    # submitted an hour ago: these decisions come before the full pass's time, some as long as later ones (values
    # a rebuild might take out)
    Annotation.objects.update(submitted_at=F("submitted_at") - timedelta(hours=1))
    team.review(0, 0, 0, 30.0)
    for task in (4, 5):
        team.review(task, 0, 0, 7.0)
    with override_settings(QUALITY_COMMIT_MARGIN_SECONDS=0), mock.patch.object(engine, "WINDOW_HALF", 0), \
            mock.patch.object(engine, "BAND_HALF", band):
        engine.project_quality_recompute(team.project.pk)
        # when task 1 gets a new version and a decision that nobody applies yet, and task 2's update rebuilds the
        # windows of the same annotator and reviewer
        team.submit(1, 0, "dog", 500.0)
        team.review(1, 2, 0, 900.0)  # the new version (the last current one)
        team.submit(2, 0, "dog", 1.0)
        team.review(2, 2, 0, 30.0)
        team.update(2)
        team.update(2)  # twice: idempotent
        # then task 1's version and decision are not in the figures yet (and once applied they are there once)
        state = engine._state_row(team.project).values
        assert engine.window_size(state["annotators"][str(team.people[0].pk)]["lead"]) == 6 + 1
        assert engine.window_size(state["reviewers"][str(team.reviewers[0].pk)]["latency"]) == 3 + 1
        # and when task 2 (applied since the full pass) gets another version and decision nobody applies yet while
        # task 3's update rebuilds that reviewer's window, they are not counted either
        team.submit(2, 1, "dog", 2.0)
        team.review(2, 2, 0, 7.0)
        team.submit(3, 1, "cat", 15.0)
        team.review(3, 2, 0, 7.0)
        team.update(3)
        state = engine._state_row(team.project).values
        assert engine.window_size(state["reviewers"][str(team.reviewers[0].pk)]["latency"]) == 3 + 2
        team.update(1, 2)
        team.assert_equals_full()


def test_an_update_that_began_before_the_full_pass_records_its_task_where_a_rebuild_finds_it(team):
    # given a full pass
    for person in range(3):
        team.submit(0, person, "cat", 10.0)
    earlier = timezone.now() - timedelta(minutes=5)
    engine.project_quality_recompute(team.project.pk)
    # when an update whose clock was read before the full pass applies a task
    team.submit(0, 0, "dog", 20.0)
    engine.tasks_quality_update(team.project, [team.tasks[0].pk], now=earlier)
    # then its task snapshot is dated no earlier than the full pass (where _held_contributions looks)
    state = engine._state_row(team.project).values
    snapshot = MetricSnapshot.objects.get(project=team.project, scope="task", task=team.tasks[0])
    assert snapshot.computed_at >= engine.datetime.fromisoformat(state["full_computed_at"])
    assert list(engine._held_contributions(team.project, state, [team.tasks[0].pk], {})) == [team.tasks[0].pk]


EVENT = st.one_of(
    st.tuples(st.just("submit"), st.integers(0, 4), st.integers(0, 2), st.sampled_from(["cat", "dog"]),
              st.sampled_from([None, 1.0, 5.0, 20.0, 40.0, 80.0])),
    st.tuples(st.just("review"), st.integers(0, 4), st.integers(0, 2), st.integers(0, 1),
              st.sampled_from([1.0, 30.0, 600.0])),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(before=st.lists(EVENT, max_size=10),
       after=st.lists(st.tuples(EVENT, st.lists(st.integers(0, 4), max_size=2)), min_size=1, max_size=12),
       margin=st.sampled_from([0, 3600]), half=st.sampled_from([0, 1, 3]), band=st.sampled_from([0, 2, 1024]),
       split=st.floats(0, 1))
def test_updates_that_lag_behind_the_events_still_equal_a_full_recompute(db, before, after, margin, half, band,
                                                                          split):
    # given some events and a full pass with small windows (and wide ones of 0, 2 or 1024 values either side),
    # its watermark (the last row it takes as committed) somewhere among the rows (`split`)
    team = Team(n_tasks=5)

    def apply(event):
        kind, *rest = event
        (team.submit if kind == "submit" else team.review)(*rest)

    for event in before:
        apply(event)
    ids = sorted(Annotation.objects.filter(task__project=team.project).values_list("id", flat=True))
    watermark = ids[int(split * (len(ids) - 1))] if ids else 0
    with override_settings(QUALITY_COMMIT_MARGIN_SECONDS=margin), mock.patch.object(engine, "WINDOW_HALF", half), \
            mock.patch.object(engine, "BAND_HALF", band), mock.patch.object(engine, "_watermark",
                                                                            lambda now: watermark):
        engine.project_quality_recompute(team.project.pk)
        # when events come and the updates lag: each update applies some tasks, not necessarily the event's (the
        # windows rebuilt meanwhile must not count the events not applied yet)
        for event, tasks in after:
            apply(event)
            if tasks:
                team.update(*tasks)
        # and at last every task is applied
        team.update(*range(5))
        # then every figure is the full pass's
        team.assert_equals_full()
