"""Low-agreement tasks: one alert each, routed once to one more annotator (up to max_overlap) or to senior review,
the alert resolving itself when the task recovers or closes; nothing at all without a threshold."""

import threading
from unittest import mock

import pytest
from django.db import close_old_connections

from apps.annotators.models import AnnotatorProfile
from apps.projects.models import Membership, Project
from apps.quality import routing, services as quality_services
from apps.quality.models import Alert, MetricSnapshot
from apps.tasks import services
from apps.tasks.models import Annotation, Task, TaskEvent
from apps.tasks.review_queue import review_queue
from tests import factories
from tests.api.conftest import client_for

pytestmark = pytest.mark.django_db


class Disagreement:
    """A classification project (overlap 2, review everything, threshold 0.5) whose one task got cat and dog from
    two annotators: agreement 0 over 2 annotations. A third annotator and a reviewer stand by."""

    def __init__(self, routing_mode=Project.Routing.EXTRA_ANNOTATOR, threshold=0.5, **options):
        self.project = factories.project(slug="split", overlap=2, review_mode="all",
                                         low_agreement_threshold=threshold, low_agreement_routing=routing_mode,
                                         **options)
        self.manager = factories.member(self.project, Membership.Role.MANAGER, "lead")
        self.reviewer = factories.member(self.project, Membership.Role.REVIEWER, "checker")
        self.people = [factories.member(self.project, Membership.Role.ANNOTATOR, f"s{i}") for i in range(3)]
        self.batch = factories.batch(self.project)
        self.task = factories.tasks(self.batch, 1)[0]
        self.annotations = [self.submit(person, label) for person, label in zip(self.people, ["cat", "dog"])]
        self.task.refresh_from_db()

    def submit(self, person, label, task=None):
        assignment = services.assignment_assign(task=task or self.task, annotator=person)
        return services.assignment_submit(assignment=assignment, actor=person, result={"label": label})

    def full_pass(self):
        with mock.patch("apps.quality.tasks.webhook_deliver.delay"):
            quality_services.quality_recompute_full(project_id=self.project.pk)
        self.task.refresh_from_db()

    def routed_events(self):
        return list(TaskEvent.objects.filter(task=self.task, type=TaskEvent.Type.ROUTED))


def test_a_low_task_raises_one_alert_and_gets_one_more_annotator_once():
    world = Disagreement()
    assert world.task.status == Task.Status.IN_REVIEW

    world.full_pass()

    task = world.task
    assert (task.extra_annotations, task.status) == (1, Task.Status.IN_PROGRESS)  # in review → in progress again
    assert task.routed_at is not None
    alert = Alert.objects.get(project=world.project)
    assert (alert.kind, alert.state, alert.task_id, alert.severity) == ("low_agreement_task", "open", task.pk, "info")
    assert alert.details == {"task_id": task.pk, "external_id": None, "agreement": 0.0, "n": 2, "threshold": 0.5,
                             "routing": "extra_annotator"}
    assert alert.message == (f"Task #{task.pk} has low agreement: 0.000, below the project's threshold of 0.5. "
                             "It gets one more annotator.")
    [event] = world.routed_events()
    assert event.actor is None
    assert event.payload == {"routing": "extra_annotator", "agreement": 0.0, "threshold": 0.5, "overlap": 2,
                             "extra_annotations": 1}
    record = task.history.filter(history_change_reason="low agreement: one more annotator").get()
    assert (record.extra_annotations, record.history_user) == (1, None)

    # when the worker runs again (and a second time at once, as a retried task would)
    routed_at = task.routed_at
    world.full_pass()
    routing.low_agreement_tasks_evaluate(world.project)

    # then nothing more: the annotator asked for is not in yet
    assert (world.task.extra_annotations, world.task.routed_at) == (1, routed_at)
    assert Alert.objects.filter(project=world.project).count() == 1
    assert len(world.routed_events()) == 1


def test_the_extra_annotator_s_work_completes_the_task_and_max_overlap_holds():
    # given the default maximum, overlap + 1 = 3, and the task routed once
    world = Disagreement()
    world.full_pass()
    # when the third annotator disagrees too (cat, dog, bird: still 0)
    world.submit(world.people[2], "bird")
    world.task.refresh_from_db()
    assert world.task.status == Task.Status.IN_REVIEW  # all 3 in, waiting for review: not accepted early
    world.full_pass()
    # then the task is not routed a second time (3 = max_overlap); the alert stays, one of it
    assert world.task.extra_annotations == 1 and len(world.routed_events()) == 1
    assert Alert.objects.filter(project=world.project, state="open").count() == 1


def test_a_higher_max_overlap_routes_again_once_the_extra_annotation_is_in():
    world = Disagreement(max_overlap=4)
    world.full_pass()
    world.full_pass()
    assert world.task.extra_annotations == 1  # the third annotation is not in yet
    world.submit(world.people[2], "bird")
    world.full_pass()
    assert world.task.extra_annotations == 2 and len(world.routed_events()) == 2
    assert world.task.status == Task.Status.IN_PROGRESS


def test_max_overlap_equal_to_the_overlap_alerts_without_routing():
    world = Disagreement(max_overlap=2)
    world.full_pass()
    assert (world.task.extra_annotations, world.task.routed_at, world.task.status) == (0, None, "in_review")
    alert = Alert.objects.get(project=world.project)
    assert (alert.severity, alert.details["routing"]) == ("warning", None)
    assert alert.message.endswith("threshold of 0.5.") and world.routed_events() == []


def test_senior_review_escalates_the_task_s_annotations_once():
    world = Disagreement(routing_mode=Project.Routing.SENIOR_REVIEW)
    senior = factories.member(world.project, Membership.Role.REVIEWER, "senior")
    AnnotatorProfile.objects.create(user=senior, seniority=AnnotatorProfile.Seniority.SENIOR)

    world.full_pass()

    assert world.task.status == Task.Status.IN_REVIEW and world.task.routed_at is not None
    assert world.task.extra_annotations == 0
    escalated = list(Annotation.objects.filter(task=world.task, is_current=True).values_list("status", "needs_review"))
    assert escalated == [("escalated", True), ("escalated", True)]
    events = TaskEvent.objects.filter(task=world.task, type=TaskEvent.Type.ESCALATED)
    assert events.count() == 2 and {e.actor_id for e in events} == {None}
    assert all(e.payload["reason"] == "low_agreement" and "senior review" in e.payload["comment"] for e in events)
    assert [e.payload["routing"] for e in world.routed_events()] == ["senior_review"]
    # only senior (and lead) reviewers get them now
    assert list(review_queue(project=world.project, reviewer=world.reviewer)) == []
    assert {a.pk for a in review_queue(project=world.project, reviewer=senior)} == {a.pk for a in world.annotations}
    alert = Alert.objects.get(project=world.project)
    assert alert.details["routing"] == "senior_review" and alert.message.endswith("It goes to a senior reviewer.")

    # when the worker runs again: routed once
    world.full_pass()
    assert TaskEvent.objects.filter(task=world.task, type=TaskEvent.Type.ESCALATED).count() == 2
    assert len(world.routed_events()) == 1 and Alert.objects.count() == 1


def test_a_reviewer_who_had_opened_the_work_before_it_went_to_senior_review_does_not_get_it_back():
    world = Disagreement(routing_mode=Project.Routing.SENIOR_REVIEW)
    services.review_start(annotation=world.annotations[0], reviewer=world.reviewer)
    world.full_pass()
    from apps.tasks.review_queue import review_next

    assert review_next(project=world.project, reviewer=world.reviewer) is None


def test_the_alert_resolves_itself_when_agreement_recovers():
    # given routing off: alert only
    world = Disagreement(routing_mode=Project.Routing.OFF)
    world.full_pass()
    alert = Alert.objects.get(project=world.project)
    assert alert.state == "open" and world.task.extra_annotations == 0 and world.routed_events() == []
    # when the reviewer rejects the dog and its annotator resubmits cat, and the incremental update runs
    services.review_reject(annotation=world.annotations[1], reviewer=world.reviewer, error_types=["wrong_label"],
                           comment="Look again.")
    services.assignment_resubmit(assignment=world.annotations[1].assignment, actor=world.people[1],
                                 result={"label": "cat"})
    assert quality_services.quality_refresh(project_id=world.project.pk, debounce_seconds=3600) == "incremental"
    # then the task's agreement is 1 and its alert resolved, by nobody
    snapshot = MetricSnapshot.objects.get(scope="task", task=world.task)
    assert snapshot.values["agreement"] == {"value": 1.0, "n": 2}
    alert.refresh_from_db()
    assert (alert.state, alert.resolved_by) == ("resolved", None) and alert.resolved_at is not None


def test_the_alert_resolves_itself_when_the_task_is_cancelled():
    world = Disagreement(routing_mode=Project.Routing.OFF)
    world.full_pass()
    services.task_cancel(task=world.task, actor=world.manager, reason="bad data")
    routing.low_agreement_tasks_evaluate(world.project)
    assert Alert.objects.get(project=world.project).state == "resolved"


def test_removing_the_threshold_resolves_the_live_alerts():
    world = Disagreement(routing_mode=Project.Routing.OFF)
    world.full_pass()
    Project.objects.filter(pk=world.project.pk).update(low_agreement_threshold=None)
    routing.low_agreement_tasks_evaluate(world.project)
    assert Alert.objects.get(project=world.project).state == "resolved"


def test_nothing_happens_without_a_threshold():
    world = Disagreement(threshold=None)
    world.full_pass()
    assert (world.task.extra_annotations, world.task.routed_at, world.task.status) == (0, None, "in_review")
    assert Alert.objects.filter(project=world.project).count() == 0
    assert world.routed_events() == []
    assert MetricSnapshot.objects.get(scope="task", task=world.task).values["agreement"]["value"] == 0.0


def test_agreeing_tasks_gold_tasks_and_accepted_tasks_are_left_alone():
    world = Disagreement()
    agreed = factories.tasks(world.batch, 1)[0]
    gold = factories.tasks(world.batch, 1, is_gold=True, gold_answer={"label": "cat"})[0]
    for person, label in zip(world.people, ["cat", "cat"]):
        world.submit(person, label, task=agreed)
    for person, label in zip(world.people, ["cat", "dog"]):
        world.submit(person, label, task=gold)
    world.full_pass()
    assert list(Alert.objects.values_list("task_id", flat=True)) == [world.task.pk]
    assert list(Task.objects.filter(extra_annotations__gt=0).values_list("pk", flat=True)) == [world.task.pk]


def test_a_routed_task_is_handed_to_a_third_annotator_by_next():
    world = Disagreement()
    world.full_pass()
    response = client_for(world.people[2]).post(f"/api/v1/projects/{world.project.pk}/next/", {}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["task"]["id"] == world.task.pk
    # and a fourth is not given it: the task has the 3 annotators it needs
    fourth = factories.member(world.project, Membership.Role.ANNOTATOR, "s3")
    response = client_for(fourth).post(f"/api/v1/projects/{world.project.pk}/next/", {}, format="json")
    assert response.status_code == 204


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_route_the_task_once():
    # given the snapshots of a low task, written by a full pass without routing (the transitions' own recomputes,
    # which commit here, are held back)
    with mock.patch("apps.quality.tasks.progress_recompute_soon"):
        world = Disagreement()
        with mock.patch("apps.quality.routing.low_agreement_tasks_evaluate"):
            world.full_pass()
        assert world.task.extra_annotations == 0
        barrier = threading.Barrier(2)
        errors = []

        def worker():
            try:
                barrier.wait()
                routing.low_agreement_tasks_evaluate(world.project)
            except Exception as error:  # reported below
                errors.append(error)
            finally:
                close_old_connections()

        # when two workers route at the same moment
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # then the task is routed once, with one alert
    assert errors == []
    world.task.refresh_from_db()
    assert world.task.extra_annotations == 1
    assert len(world.routed_events()) == 1
    assert Alert.objects.filter(task=world.task).count() == 1


class NoReview(Disagreement):
    """The same split, in a project that reviews nothing: without routing its task would be accepted at once."""

    def __init__(self, **options):
        self.project = factories.project(slug="no-review", overlap=2, review_mode="none", **options)
        self.manager = factories.member(self.project, Membership.Role.MANAGER, "lead")
        self.people = [factories.member(self.project, Membership.Role.ANNOTATOR, f"n{i}") for i in range(3)]
        self.batch = factories.batch(self.project)
        self.task = factories.tasks(self.batch, 1)[0]
        self.annotations = [self.submit(person, label) for person, label in zip(self.people, ["cat", "dog"])]
        self.task.refresh_from_db()


def test_without_review_a_low_task_waits_for_routing_instead_of_being_accepted_at_once():
    world = NoReview(low_agreement_threshold=0.3, low_agreement_routing=Project.Routing.EXTRA_ANNOTATOR)
    assert world.task.status == Task.Status.IN_PROGRESS and world.task.accepted_at is None
    world.full_pass()
    assert (world.task.extra_annotations, world.task.status) == (1, Task.Status.IN_PROGRESS)
    # the third annotator settles it (cat, dog, cat: 1/3 ≥ 0.3); max_overlap reached, the task is accepted
    world.submit(world.people[2], "cat")
    world.task.refresh_from_db()
    assert world.task.status == Task.Status.ACCEPTED and world.task.final_result == {"label": "cat"}
    world.full_pass()
    assert Alert.objects.get(project=world.project).state == "resolved"


def test_without_review_agreeing_or_unrouted_tasks_are_accepted_at_their_last_submission():
    agreeing = NoReview(low_agreement_threshold=0.5, low_agreement_routing=Project.Routing.EXTRA_ANNOTATOR)
    other = factories.tasks(agreeing.batch, 1)[0]
    for person in agreeing.people[:2]:
        agreeing.submit(person, "dog", task=other)
    other.refresh_from_db()
    assert other.status == Task.Status.ACCEPTED
    Project.objects.filter(pk=agreeing.project.pk).update(slug="no-review-1")
    off = NoReview(low_agreement_threshold=0.5, low_agreement_routing=Project.Routing.OFF)
    assert off.task.status == Task.Status.ACCEPTED


def test_without_review_senior_review_sends_the_held_task_to_review():
    world = NoReview(low_agreement_threshold=0.5, low_agreement_routing=Project.Routing.SENIOR_REVIEW)
    assert world.task.status == Task.Status.IN_PROGRESS
    world.full_pass()
    assert world.task.status == Task.Status.IN_REVIEW and world.task.routed_at is not None
    senior = factories.member(world.project, Membership.Role.REVIEWER, "senior")
    AnnotatorProfile.objects.create(user=senior, seniority=AnnotatorProfile.Seniority.LEAD)
    for annotation in world.annotations:
        services.review_approve(annotation=annotation, reviewer=senior)
    world.task.refresh_from_db()
    assert world.task.status == Task.Status.ACCEPTED


def test_a_held_task_is_accepted_by_the_full_pass_once_routing_no_longer_applies():
    world = NoReview(low_agreement_threshold=0.5, low_agreement_routing=Project.Routing.EXTRA_ANNOTATOR)
    assert world.task.status == Task.Status.IN_PROGRESS
    Project.objects.filter(pk=world.project.pk).update(low_agreement_routing=Project.Routing.OFF)
    world.full_pass()
    assert world.task.status == Task.Status.ACCEPTED
    assert world.task.extra_annotations == 0 and world.routed_events() == []
    assert not Alert.objects.filter(project=world.project, state__in=["open", "acknowledged"]).exists()


@pytest.mark.redis
def test_a_real_worker_routes_the_low_task(celery_worker_process):
    from apps.quality.tasks import progress_recompute
    from tests.conftest import wait_for

    # given a split task whose transitions' own recomputes are held back
    with mock.patch("apps.quality.tasks.progress_recompute_soon"):
        world = Disagreement()
    assert world.task.extra_annotations == 0

    # when the progress recompute goes to the broker, the worker chains the quality pass and the routing
    progress_recompute.apply_async(args=[world.project.pk], queue=celery_worker_process)

    alert = wait_for(lambda: Alert.objects.filter(task=world.task).first(), timeout=90)
    assert alert is not None, "the worker raised no low-agreement alert within 90 s"
    world.task.refresh_from_db()
    assert (alert.kind, world.task.extra_annotations, world.task.status) == ("low_agreement_task", 1, "in_progress")


def test_a_low_task_alert_resolved_by_hand_is_not_raised_again():
    world = Disagreement(routing_mode=Project.Routing.OFF)
    world.full_pass()
    alert = Alert.objects.get(project=world.project)
    # when the manager resolves it by hand while the task is still low
    quality_services.alert_resolve(alert=alert, actor=world.manager)
    world.full_pass()
    routing.low_agreement_tasks_evaluate(world.project)
    # then it stays resolved, and no new alert is raised for the task
    assert list(Alert.objects.filter(project=world.project).values_list("state", flat=True)) == ["resolved"]


def test_senior_review_takes_work_a_reviewer_approved_before_the_worker_saw_the_agreement():
    # given the worker has not routed yet when a (junior) reviewer approves both annotations
    with mock.patch.object(routing, "low_agreement_tasks_evaluate"):
        world = Disagreement(routing_mode=Project.Routing.SENIOR_REVIEW)
        for annotation in world.annotations:
            services.review_start(annotation=annotation, reviewer=world.reviewer)
            services.review_approve(annotation=annotation, reviewer=world.reviewer)
    world.task.refresh_from_db()
    assert world.task.status != Task.Status.ACCEPTED  # held while routing can act
    senior = factories.member(world.project, Membership.Role.REVIEWER, "senior")
    AnnotatorProfile.objects.create(user=senior, seniority=AnnotatorProfile.Seniority.SENIOR)

    # when the worker routes it
    world.full_pass()

    # then the approved work goes to the senior, waiting for a decision again, and the task is not accepted
    rows = Annotation.objects.filter(task=world.task, is_current=True)
    assert list(rows.values_list("status", "assignment__status")) == [("escalated", "submitted")] * 2
    assert world.task.status == Task.Status.IN_REVIEW
    assert {a.pk for a in review_queue(project=world.project, reviewer=senior)} == {a.pk for a in world.annotations}
    # and the senior's approvals accept it
    for annotation in world.annotations:
        annotation.refresh_from_db()
        services.review_start(annotation=annotation, reviewer=senior)
        services.review_approve(annotation=annotation, reviewer=senior)
    world.task.refresh_from_db()
    assert world.task.status == Task.Status.ACCEPTED
