"""Celery tasks run as the user who enqueued them (labelportal.celery.AuditedTask), and as the system when nobody did.

The user travels in the message's header (apps.core.audit.ACTOR_HEADER); history rows a task writes name that user
and, as their change reason, the task. `acting_as(None)` means the system even inside a request.
"""

import contextlib

import pytest
from django.test import RequestFactory
from simple_history.models import HistoricalRecords

from apps.core.audit import ACTOR_HEADER, acting_as, current_actor, history_record_queryset
from apps.projects.models import Batch
from apps.quality.models import MetricSnapshot
from apps.quality.tasks import progress_recompute, progress_recompute_all
from apps.tasks import services as task_services
from apps.tasks.models import Task
from tests import factories
from tests.conftest import wait_for

PROGRESS_REASON = "celery: apps.quality.tasks.progress_recompute"


@contextlib.contextmanager
def request_by(user):
    """What simple-history's HistoryRequestMiddleware does for a request of `user`."""
    request = RequestFactory().post("/somewhere/")
    request.user = user
    HistoricalRecords.context.request = request
    try:
        yield request
    finally:
        del HistoricalRecords.context.request


def progress_history(project, after=0):
    """(history_user, change reason) of the history rows of the project's progress snapshots, oldest first
    (those after the history id `after`)."""
    rows = MetricSnapshot.history.filter(project_id=project.pk, kind="progress", history_id__gt=after)
    rows = rows.order_by("history_id")
    return [(row.history_user, row.history_change_reason) for row in rows]


def last_history_id():
    return MetricSnapshot.history.order_by("-history_id").values_list("history_id", flat=True).first() or 0


# --- acting_as(None) is the system ---------------------------------------------------------------------------------


def test_acting_as_none_names_no_user_even_inside_a_request(team):
    with request_by(team.admin):
        with acting_as(None):
            system = Batch.objects.create(project=team.project, name="By the system")
            history_record_queryset(Task.objects.filter(pk=team.task.pk), reason="recount")
        by_request = Batch.objects.create(project=team.project, name="By the request's user")

    assert system.history.get().history_user is None
    assert Task.history.get(id=team.task.pk, history_change_reason="recount").history_user is None
    assert by_request.history.get().history_user == team.admin
    assert current_actor() is None


# --- eager (no broker: development, tests) -------------------------------------------------------------------------


def test_a_task_enqueued_by_a_service_acts_for_the_services_actor_not_the_requests_user(transactional_db):
    # given a project, and a request by the admin during which a service acts for an annotator (the service's
    # transaction commits inside it, as in production, and its follow-up work is enqueued then)
    team = factories.team()
    annotator = team.annotators[0]
    before = last_history_id()

    with request_by(team.admin):
        task_services.assignment_assign(task=team.task, annotator=annotator)

    # then the progress snapshot the enqueued task wrote names the annotator, and the task as the reason
    assert progress_history(team.project, after=before) == [(annotator, PROGRESS_REASON)]
    # and so does the work that task enqueued in turn (the quality figures)
    rows = set(MetricSnapshot.history.filter(history_id__gt=before)
               .values_list("history_user", "history_change_reason"))
    assert (annotator.pk, "celery: apps.quality.tasks.quality_refresh") in rows
    assert {user for user, _reason in rows} == {annotator.pk}
    assert current_actor() is None


def test_a_task_enqueued_during_a_request_without_an_actor_acts_for_the_requests_user(team):
    with request_by(team.manager):
        progress_recompute.delay(team.project.pk)

    assert progress_history(team.project) == [(team.manager, PROGRESS_REASON)]


def test_a_task_enqueued_as_the_system_runs_as_the_system_inside_a_request(team):
    # when beat's pass (no actor) runs eagerly while a request is being served, and so does a task enqueued under
    # acting_as(None)
    with request_by(team.admin):
        with acting_as(None):
            progress_recompute_all.delay()
        with acting_as(team.manager):
            progress_recompute.apply_async((team.project.pk,), headers={ACTOR_HEADER: None})

    # then the rows name no user, only the task
    assert progress_history(team.project) == [(None, PROGRESS_REASON), (None, PROGRESS_REASON)]


def test_the_header_names_the_actor_and_a_deleted_user_becomes_the_system(team):
    gone = factories.UserFactory(username="gone")
    gone_id = gone.pk
    gone.delete()

    progress_recompute.apply_async((team.project.pk,), headers={ACTOR_HEADER: team.reviewer.pk})
    progress_recompute.apply_async((team.project.pk,), headers={ACTOR_HEADER: gone_id})

    assert progress_history(team.project) == [(team.reviewer, PROGRESS_REASON), (None, PROGRESS_REASON)]


def test_delay_on_commit_keeps_the_actor_of_when_it_was_asked(team, django_capture_on_commit_callbacks):
    from apps.quality.tasks import quality_recompute

    before = last_history_id()
    # when the manager's code asks for a recompute once the transaction commits, and the commit comes later,
    # outside the manager's block
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with acting_as(team.manager):
            quality_recompute.delay_on_commit(team.project.pk)
    assert len(callbacks) == 1

    # then the recompute's history rows name the manager
    rows = set(MetricSnapshot.history.filter(history_id__gt=before)
               .values_list("history_user", "history_change_reason"))
    assert rows and rows == {(team.manager.pk, "celery: apps.quality.tasks.quality_recompute")}


def test_a_task_called_as_a_function_runs_in_its_callers_context(team):
    with acting_as(team.manager):
        progress_recompute(team.project.pk)

    assert progress_history(team.project) == [(team.manager, None)]


# --- a real worker -------------------------------------------------------------------------------------------------


@pytest.mark.redis
def test_a_real_worker_records_the_user_from_the_message_header(celery_worker_process):
    # given a project and its manager
    team = factories.team()
    before = last_history_id()

    # when the manager's code enqueues the recompute to a worker process, and beat (no actor) enqueues another
    with acting_as(team.manager):
        progress_recompute.apply_async((team.project.pk,), queue=celery_worker_process)
    assert wait_for(lambda: progress_history(team.project, after=before), timeout=90), \
        "the worker wrote no progress snapshot within 90 s"
    progress_recompute.apply_async((team.project.pk,), queue=celery_worker_process)

    # then the worker's history rows name the manager for the first, nobody for the second, and the task for both
    assert wait_for(lambda: len(progress_history(team.project, after=before)) == 2, timeout=90)
    assert progress_history(team.project, after=before) == [(team.manager, PROGRESS_REASON),
                                                            (None, PROGRESS_REASON)]
