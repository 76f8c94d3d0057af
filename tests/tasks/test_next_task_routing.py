"""The next-task engine with low-agreement routing and paused annotators: a task needs the project's overlap plus
its `extra_annotations` annotators; an annotator whose membership is paused gets no new task (a 409 from the API)
but still gets back the work already theirs."""

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.core.errors import TransitionError
from apps.projects.models import Membership, Project
from apps.tasks import services
from apps.tasks.models import Assignment, Task, TaskEvent
from apps.tasks.next_task import AnnotatorPausedError, next_task_assign
from tests import factories

pytestmark = pytest.mark.django_db

PAUSED_MESSAGE = "Your work on this project is paused while a lead reviews your recent results."


@pytest.fixture
def crew(db):
    """A classification project (overlap 2, no review) with five annotators and an empty active batch."""
    return factories.crew(slug="routing", annotators=5, review_mode="none", overlap=2)


def take(crew, annotator):
    return next_task_assign(project=crew.project, annotator=annotator)


def route(task, extra):
    """What low-agreement routing does to the task, as far as the engine is concerned."""
    Task.objects.filter(pk=task.pk).update(extra_annotations=extra, routed_at=timezone.now())


def pause(crew, annotator):
    Membership.objects.filter(project=crew.project, user=annotator, role=Membership.Role.ANNOTATOR).update(
        paused_at=timezone.now(), pause_reason="Low gold accuracy")


def live_or_done(task):
    return Assignment.objects.filter(task=task, status__in=[*Assignment.LIVE, *Assignment.DONE]).count()


# --- the task's overlap: project overlap + extra annotations -------------------------------------------------------


def test_a_routed_task_takes_as_many_annotators_as_its_overlap_plus_extra(crew):
    routed, plain = factories.tasks(crew.batch, 2)
    route(routed, 1)
    a, b, c, d, e = crew.annotators

    assert take(crew, a).task == routed
    assert take(crew, b).task == routed
    assert take(crew, c).task == routed  # the extra slot, before a fresh task
    assert take(crew, d).task == plain
    assert take(crew, e).task == plain
    assert live_or_done(routed) == 3 and live_or_done(plain) == 2


def test_without_extra_annotations_the_project_overlap_still_caps_a_task(crew):
    only = factories.tasks(crew.batch, 1)[0]
    a, b, c, *_ = crew.annotators

    assert take(crew, a).task == only
    assert take(crew, b).task == only
    assert take(crew, c) is None
    assert live_or_done(only) == 2


def test_with_overlap_one_a_started_routed_task_gets_its_extra_annotator_before_fresh_tasks(crew):
    Project.objects.filter(pk=crew.project.pk).update(overlap=1)
    crew.project.refresh_from_db()
    first, second, third = factories.tasks(crew.batch, 3)
    a, b, c, d, _e = crew.annotators
    assert take(crew, a).task == first
    route(first, 1)

    assert take(crew, b).task == first  # its extra slot, although a fresh task comes before it in sequence
    assert take(crew, c).task == second
    assert take(crew, d).task == third
    assert live_or_done(first) == 2 and live_or_done(second) == 1


def test_assigning_beyond_the_task_s_overlap_is_refused_and_changes_nothing(crew):
    task = factories.tasks(crew.batch, 1)[0]
    route(task, 1)
    a, b, c, d, _e = crew.annotators
    for annotator in (a, b, c):
        services.assignment_assign(task=task, annotator=annotator)
    events = TaskEvent.objects.filter(task=task).count()

    with pytest.raises(TransitionError, match="already has the 3 annotators it needs"):
        services.assignment_assign(task=task, annotator=d)

    assert live_or_done(task) == 3 and TaskEvent.objects.filter(task=task).count() == events


def test_a_skip_frees_an_extra_slot_for_someone_else(crew):
    task = factories.tasks(crew.batch, 1)[0]
    route(task, 1)
    a, b, c, d, e = crew.annotators
    taken = [take(crew, annotator) for annotator in (a, b, c)]
    assert take(crew, d) is None
    services.assignment_skip(assignment=taken[2], actor=c)

    assert take(crew, d).task == task
    assert take(crew, e) is None
    assert live_or_done(task) == 3


# --- paused annotators ---------------------------------------------------------------------------------------------


def test_a_paused_annotator_gets_no_new_task_and_nothing_is_written(crew):
    factories.tasks(crew.batch, 3)
    a, b, *_ = crew.annotators
    pause(crew, a)
    before = (Assignment.objects.count(), TaskEvent.objects.count())

    with pytest.raises(AnnotatorPausedError) as refused:
        take(crew, a)

    assert refused.value.message == PAUSED_MESSAGE and refused.value.status_code == 409
    assert (Assignment.objects.count(), TaskEvent.objects.count()) == before
    assert take(crew, b) is not None  # the others keep working


def test_a_paused_annotator_still_gets_back_the_task_already_theirs(crew):
    factories.tasks(crew.batch, 3)
    a = crew.annotators[0]
    held = take(crew, a)
    pause(crew, a)

    again = take(crew, a)

    assert again.pk == held.pk
    services.assignment_submit(assignment=again, actor=a, result={"label": "cat"})  # and may finish it
    with pytest.raises(AnnotatorPausedError):
        take(crew, a)
    assert Assignment.objects.filter(annotator=a).count() == 1


def test_a_paused_annotator_still_gets_their_rework(crew):
    Project.objects.filter(pk=crew.project.pk).update(review_mode="all")
    crew.project.refresh_from_db()
    factories.tasks(crew.batch, 2)
    a, reviewer = crew.annotators[0], crew.annotators[4]
    factories.project_services.membership_add(project=crew.project, user=reviewer, role="reviewer")
    rejected = take(crew, a)
    annotation = services.assignment_submit(assignment=rejected, actor=a, result={"label": "cat"})
    services.review_reject(annotation=annotation, reviewer=reviewer, error_types=["wrong_label"],
                           comment="Look again.")
    pause(crew, a)

    assert take(crew, a).pk == rejected.pk


def test_a_lifted_pause_gives_work_again(crew):
    task = factories.tasks(crew.batch, 1)[0]
    a = crew.annotators[0]
    pause(crew, a)
    with pytest.raises(AnnotatorPausedError):
        take(crew, a)
    Membership.objects.filter(project=crew.project, user=a).update(paused_at=None, pause_reason="")

    assert take(crew, a).task == task


def test_a_pause_in_another_project_does_not_stop_work_here(crew):
    task = factories.tasks(crew.batch, 1)[0]
    a = crew.annotators[0]
    other = factories.project(slug="elsewhere")
    factories.project_services.membership_add(project=other, user=a, role=Membership.Role.ANNOTATOR)
    Membership.objects.filter(project=other, user=a).update(paused_at=timezone.now())

    assert take(crew, a).task == task


# --- the API: 409 with the error body -----------------------------------------------------------------------------


def client_for(user):
    client = APIClient()
    token, _created = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def test_next_answers_409_with_a_polite_message_to_a_paused_annotator(crew):
    factories.tasks(crew.batch, 2)
    a = crew.annotators[0]
    pause(crew, a)

    response = client_for(a).post(f"/api/v1/projects/{crew.project.pk}/next/", {}, format="json")

    assert response.status_code == 409
    assert response.json() == {"detail": PAUSED_MESSAGE, "errors": {}, "current": "paused"}
    assert not Assignment.objects.filter(annotator=a).exists()


def test_next_gives_a_paused_annotator_their_held_task_and_they_may_submit_it(crew):
    factories.tasks(crew.batch, 2)
    a = crew.annotators[0]
    client = client_for(a)
    first = client.post(f"/api/v1/projects/{crew.project.pk}/next/", {}, format="json").json()
    pause(crew, a)

    again = client.post(f"/api/v1/projects/{crew.project.pk}/next/", {}, format="json")
    submitted = client.post(f"/api/v1/assignments/{first['assignment']['id']}/submit/",
                            {"result": {"label": "dog"}}, format="json")
    after = client.post(f"/api/v1/projects/{crew.project.pk}/next/", {}, format="json")

    assert again.status_code == 200 and again.json()["assignment"]["id"] == first["assignment"]["id"]
    assert submitted.status_code == 201
    assert after.status_code == 409 and after.json()["detail"] == PAUSED_MESSAGE


# --- the hot paths' plain renderings equal the serializers' --------------------------------------------------------


@pytest.mark.parametrize("show_all", [False, True])
def test_the_plain_renderings_of_next_and_submit_equal_the_serializers(crew, show_all):
    from apps.tasks.api import serializers as s

    factories.tasks(crew.batch, 1, data={"text": "ünïcode ✓", "language": "de"})
    a = crew.annotators[0]
    assignment = take(crew, a)
    annotation = services.assignment_submit(assignment=assignment, actor=a, result={"label": "dog"}, notes="n",
                                            lead_time_seconds=12)
    assignment.refresh_from_db()

    assert s.assignment_brief(assignment) == s.AssignmentBriefSerializer(assignment).data
    assert s.task_brief(assignment.task) == s.TaskBriefSerializer(assignment.task).data
    assert s.annotation_body(annotation, show_all=show_all) == s.AnnotationSerializer(
        annotation, context={"show_all": show_all}).data
    live = take(crew, crew.annotators[1])
    assert s.assignment_brief(live)["lease_expires_at"] == s.AssignmentBriefSerializer(live).data["lease_expires_at"]
    assert s.assignment_brief(live)["lease_expires_at"].endswith("Z")


def test_a_paused_annotator_is_told_so_even_when_no_batch_is_active(crew):
    factories.tasks(crew.batch, 1)
    crew.batch.status = "paused"
    crew.batch.save(update_fields=["status"])
    a = crew.annotators[0]
    pause(crew, a)

    with pytest.raises(AnnotatorPausedError):
        take(crew, a)


# --- the hot paths stay lean (query counts pinned; timings are in bench/next_task.py) -----------------------------


def test_next_and_submit_over_the_api_take_a_pinned_number_of_queries(crew, django_assert_num_queries):
    factories.tasks(crew.batch, 3)
    a, b = crew.annotators[:2]
    first = client_for(a).post(f"/api/v1/projects/{crew.project.pk}/next/", {}, format="json").json()
    client = client_for(b)
    # On PostgreSQL a change, its history row and its events are one statement (audited_save); elsewhere three.
    one_statement = connection.vendor == "postgresql"

    # token, project, permissions, the annotator's state (held work, batches, pause, expired leases: one
    # statement), started candidates, then the assignment: savepoint, lock, the task's assignments (slots and
    # status), insert + history + event, release
    with django_assert_num_queries(10 if one_statement else 12):
        second = client.post(f"/api/v1/projects/{crew.project.pk}/next/", {}, format="json")
    assert second.json()["task"]["id"] == first["task"]["id"]  # the started task's free slot
    # token, assignment, permissions, savepoint, locks (task, assignment), sanity rules, annotation + history,
    # assignment + history + event, the task's assignments for its status, release (the task stays in progress:
    # the first annotator has not submitted)
    with django_assert_num_queries(11 if one_statement else 14):
        submitted = client.post(f"/api/v1/assignments/{second.json()['assignment']['id']}/submit/",
                                {"result": {"label": "cat"}}, format="json")
    assert submitted.status_code == 201 and submitted.json()["reviews"] == []
