"""Progress figures after transitions: at most one recompute per project per window, due at the window's end; and an
ETA that stays an answer when the pace is far too slow for the calendar."""

from datetime import datetime, timedelta, timezone as dt_timezone
from unittest import mock

import pytest
from django.core.cache import cache
from django.test import override_settings

from apps.projects.models import Membership
from apps.quality import services as quality_services
from apps.quality.tasks import progress_recompute
from apps.tasks import services
from apps.tasks.models import TaskEvent
from tests import factories

@pytest.fixture
def crew(transactional_db):
    """Committed for real, so that what transitions enqueue on commit runs when it would."""
    project = factories.project(slug="window", review_mode="none", overlap=1)
    annotator = factories.member(project, Membership.Role.ANNOTATOR, "windowed")
    tasks = factories.tasks(factories.batch(project), 3)
    cache.clear()
    yield project, annotator, tasks
    cache.clear()


def assign_and_submit(task, annotator):
    assignment = services.assignment_assign(task=task, annotator=annotator)
    services.assignment_submit(assignment=assignment, actor=annotator, result={"label": "cat"})


@override_settings(PROGRESS_RECOMPUTE_WINDOW_SECONDS=30)
def test_many_transitions_in_a_window_enqueue_one_recompute_due_at_its_end(crew):
    project, annotator, tasks = crew
    # given a window of 30 s: when six transitions commit (three assignments, three submissions)
    with mock.patch.object(progress_recompute, "apply_async") as enqueue:
        for task in tasks:
            assign_and_submit(task, annotator)
    # then one recompute was enqueued, for this project, due when the window closes (it sees all six)
    enqueue.assert_called_once_with((project.pk,), countdown=30)


@override_settings(PROGRESS_RECOMPUTE_WINDOW_SECONDS=30)
def test_eagerly_the_first_transition_of_a_window_recomputes_at_once_and_the_next_window_again(crew):
    project, annotator, tasks = crew
    # given eager Celery (no Redis) and a window of 30 s: the first transition writes the snapshot at once
    services.assignment_assign(task=tasks[0], annotator=annotator)
    # (the latest: activating the batch wrote one too, in another row if the minute changed in between)
    snapshot = quality_services.progress_latest(project)
    assert snapshot.values["by_status"]["in_progress"] == 1
    # when more transitions follow within the window, the snapshot is left alone
    assign_and_submit(tasks[1], annotator)
    snapshot.refresh_from_db()
    assert snapshot.values["by_status"]["accepted"] == 0
    # when the window has passed, the next transition recomputes, and the figures include everything since
    cache.delete(f"progress-recompute-due:{project.pk}")
    services.assignment_assign(task=tasks[2], annotator=annotator)
    snapshot = quality_services.progress_latest(project)
    assert snapshot.values["by_status"] == {**snapshot.values["by_status"], "accepted": 1, "in_progress": 2}


@override_settings(PROGRESS_RECOMPUTE_WINDOW_SECONDS=30)
def test_the_window_is_per_project(crew):
    project, annotator, tasks = crew
    other = factories.project(slug="window-other", review_mode="none")
    other_annotator = factories.member(other, Membership.Role.ANNOTATOR, "other-windowed")
    other_task = factories.tasks(factories.batch(other), 1)[0]
    cache.clear()  # activating its batch opened a window of its own
    with mock.patch.object(progress_recompute, "apply_async") as enqueue:
        services.assignment_assign(task=tasks[0], annotator=annotator)
        services.assignment_assign(task=other_task, annotator=other_annotator)
    assert sorted(call.args[0] for call in enqueue.call_args_list) == [(project.pk,), (other.pk,)]


@override_settings(PROGRESS_RECOMPUTE_WINDOW_SECONDS=0)
def test_a_window_of_zero_recomputes_after_every_transition(crew):
    project, annotator, tasks = crew
    with mock.patch.object(progress_recompute, "apply_async") as enqueue:
        assign_and_submit(tasks[0], annotator)
    assert enqueue.call_args_list == [mock.call((project.pk,), countdown=None)] * 2


def test_an_eta_beyond_the_calendar_has_no_date_instead_of_failing(crew):
    project, annotator, tasks = crew
    # given one submission in the last week, seen from the last weeks of the year 9999
    late = datetime(9999, 12, 25, tzinfo=dt_timezone.utc)
    with mock.patch("django.utils.timezone.now", return_value=late):
        assign_and_submit(tasks[0], annotator)
    assert TaskEvent.objects.filter(type=TaskEvent.Type.SUBMITTED, at=late).exists()
    # when the progress is computed a day later: two annotations left at 1/7 a day is 14 days, past 9999-12-31
    values = quality_services.progress_compute(project, now=late + timedelta(days=1))
    # then the ETA says how much is left and at what pace, without a date
    assert values["eta"] == {"remaining_annotations": 2, "per_day": 0.14, "date": None}
