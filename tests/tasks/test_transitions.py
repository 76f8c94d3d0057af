"""Every transition of the assignment, review and task state machines (DESIGN.md, Lifecycle), legal and illegal.

A legal transition is checked by the new state, the TaskEvent it wrote (type, actor, payload) and the history row
(history_user = whoever acted). An illegal one must raise TransitionError (409) naming the current state and
change nothing at all: statuses, events, history rows and annotations are compared before and after.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.annotators.models import AnnotatorProfile
from apps.core.errors import PermissionDeniedError, TransitionError, ValidationError
from apps.projects import services as project_services
from apps.projects.models import Membership
from apps.quality.models import Review
from apps.tasks import services
from apps.tasks.models import Annotation, Assignment, Clarification, Task, TaskEvent
from tests import factories

pytestmark = pytest.mark.django_db

FUTURE = timedelta(days=2)  # far past any lease (the default lease is 30 minutes)


# --- helpers ------------------------------------------------------------------------------------------------------


def world():
    """Everything a lifecycle transition could touch: row counts, history counts and every status."""
    from apps.projects.models import Batch

    snapshot = {}
    for model in (Task, Assignment, Annotation, TaskEvent, Clarification, Review, Batch):
        snapshot[model.__name__] = model.objects.count()
        if hasattr(model, "history"):
            snapshot[f"{model.__name__} history"] = model.history.count()
    for model in (Task, Assignment, Annotation, Clarification, Batch):
        snapshot[f"{model.__name__} statuses"] = sorted(model.objects.values_list("pk", "status"))
    snapshot["Annotation current"] = sorted(Annotation.objects.filter(is_current=True).values_list("pk", flat=True))
    snapshot["Review decisions"] = sorted(Review.objects.values_list("pk", "decision"))
    return snapshot


def assert_refused(call, *, obj, current):
    """`call` must raise a 409 TransitionError naming `current`, and leave `obj` and everything else as it was."""
    obj.refresh_from_db()
    status, history_rows, before = obj.status, obj.history.count(), world()

    with pytest.raises(TransitionError) as refused:
        call()

    assert refused.value.status_code == 409
    assert refused.value.current == current
    assert refused.value.message  # a sentence a person can read
    obj.refresh_from_db()
    assert obj.status == status
    assert obj.history.count() == history_rows
    assert world() == before
    return refused.value


def assert_nothing_changed_by(call, error_class):
    before = world()
    with pytest.raises(error_class) as raised:
        call()
    assert world() == before
    return raised.value


def event_mark():
    return TaskEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def events_since(mark):
    return list(TaskEvent.objects.filter(id__gt=mark).order_by("id"))


def latest_history(obj):
    return obj.history.order_by("-history_id").first()


def submit(assignment, label="cat", **kwargs):
    return services.assignment_submit(assignment=assignment, actor=assignment.annotator, result={"label": label},
                                      **kwargs)


def reject(annotation, reviewer, codes=("wrong_label",)):
    return services.review_reject(annotation=annotation, reviewer=reviewer, error_types=list(codes),
                                  comment="Look again.")


# Where each named situation leaves the assignment.
STATE_STATUS = {
    "assigned": "assigned", "in_progress": "in_progress", "on_hold": "on_hold", "submitted": "submitted",
    "approved": "approved", "rejected": "rejected", "rework": "in_progress", "rework_on_hold": "on_hold",
    "resubmitted": "submitted", "skipped": "skipped", "expired": "expired",
}


def given_assignment(state, **options):
    """A team (overlap 1, review all unless `options` say otherwise) whose first annotator's assignment is in
    the named situation; returns (team, assignment)."""
    team = factories.team(**options)
    annotator = team.annotators[0]
    assignment = services.assignment_assign(task=team.task, annotator=annotator)
    if state == "in_progress":
        services.assignment_start(assignment=assignment, actor=annotator)
    elif state == "on_hold":
        services.assignment_hold(assignment=assignment, actor=annotator, reason="Unclear image")
    elif state == "skipped":
        services.assignment_skip(assignment=assignment, actor=annotator, reason="Not my language")
    elif state == "expired":
        services.assignment_expire(assignment=assignment, now=timezone.now() + FUTURE)
    elif state != "assigned":
        annotation = submit(assignment)
        if state == "approved":
            services.review_approve(annotation=annotation, reviewer=team.reviewer)
        elif state != "submitted":
            reject(annotation, team.reviewer)
            if state in ("rework", "rework_on_hold"):
                services.assignment_start(assignment=assignment, actor=annotator)
            if state == "rework_on_hold":
                services.assignment_hold(assignment=assignment, actor=annotator, reason="Asking the lead")
            if state == "resubmitted":
                services.assignment_resubmit(assignment=assignment, actor=annotator, result={"label": "dog"})
    assignment.refresh_from_db()
    assert assignment.status == STATE_STATUS[state]
    return team, assignment


# --- assign ---------------------------------------------------------------------------------------------------------


def test_assign_gives_the_task_with_a_lease_and_records_event_and_history():
    # given an open task and an annotator of the project
    team = factories.team()
    annotator, mark = team.annotators[0], event_mark()
    before = timezone.now()

    # when the annotator is given the task
    assignment = services.assignment_assign(task=team.task, annotator=annotator)

    # then the assignment is assigned with a lease of the project's lease minutes
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.ASSIGNED
    assert before + timedelta(minutes=30) <= assignment.lease_expires_at <= timezone.now() + timedelta(minutes=30)
    # and one 'assigned' event names the annotator
    [event] = events_since(mark)
    assert (event.type, event.actor, event.assignment, event.task) == ("assigned", annotator, assignment, team.task)
    assert event.payload == {"annotator": annotator.pk}
    assert event.batch == team.batch and event.project == team.project
    # and the history shows the annotator created it
    row = latest_history(assignment)
    assert (row.history_type, row.status, row.history_user) == ("+", "assigned", annotator)
    # and the task is in progress, changed by the annotator
    team.task.refresh_from_db()
    assert team.task.status == Task.Status.IN_PROGRESS
    assert latest_history(team.task).history_user == annotator


def test_assign_by_a_manager_names_the_manager_as_actor():
    # given a manager handing a task to an annotator
    team = factories.team()
    mark = event_mark()

    # when the manager assigns it
    assignment = services.assignment_assign(task=team.task, annotator=team.annotators[1], actor=team.manager)

    # then the event and the history name the manager, the payload the annotator
    [event] = events_since(mark)
    assert event.actor == team.manager and event.payload == {"annotator": team.annotators[1].pk}
    assert latest_history(assignment).history_user == team.manager
    assert assignment.annotator == team.annotators[1]


def test_assign_to_someone_without_the_annotate_permission_is_refused_and_changes_nothing():
    # given the annotator of another project and a reviewer of this one
    team = factories.team()

    # when either is given the task, then it is refused and nothing is written
    for user in (team.outsider, team.reviewer):
        assert_nothing_changed_by(lambda u=user: services.assignment_assign(task=team.task, annotator=u),
                                  PermissionDeniedError)


@pytest.mark.parametrize("batch_state", ["draft", "paused", "in_review"])
def test_assign_in_a_batch_that_is_not_active_is_refused(batch_state):
    # given a task in a batch that is not handing out work
    team = factories.team()
    if batch_state == "draft":
        batch = factories.batch(team.project, active=False)
        task = factories.tasks(batch)[0]
    else:
        transition = {"paused": project_services.batch_pause, "in_review": project_services.batch_review}[batch_state]
        transition(batch=team.batch, actor=team.manager)
        task = team.task

    # when it is assigned, then it is refused naming the batch's state
    error = assert_refused(lambda: services.assignment_assign(task=task, annotator=team.annotators[0]),
                           obj=task, current=batch_state)
    assert batch_state in error.message


@pytest.mark.parametrize("task_state", ["in_review", "rework", "accepted", "cancelled"])
def test_assign_a_task_that_takes_no_new_annotator_is_refused(task_state):
    # given a task that is in review, in rework, accepted or cancelled
    team, assignment = given_assignment({"in_review": "submitted", "rework": "rejected",
                                         "accepted": "approved", "cancelled": "assigned"}[task_state])
    if task_state == "cancelled":
        services.task_cancel(task=team.task, actor=team.manager)
    team.task.refresh_from_db()
    assert team.task.status == task_state

    # when another annotator is given it, then it is refused naming the task's state
    assert_refused(lambda: services.assignment_assign(task=team.task, annotator=team.annotators[1]),
                   obj=team.task, current=task_state)


# --- start ----------------------------------------------------------------------------------------------------------


def test_start_moves_an_assigned_assignment_in_progress():
    # given an assigned task
    team, assignment = given_assignment("assigned")
    annotator, mark = team.annotators[0], event_mark()

    # when the annotator opens it
    services.assignment_start(assignment=assignment, actor=annotator)

    # then it is in progress with a start time, a 'started' event (not rework) and a history row by the annotator
    assignment.refresh_from_db()
    assert assignment.status == "in_progress" and assignment.started_at is not None
    [event] = events_since(mark)
    assert (event.type, event.actor, event.payload) == ("started", annotator, {"rework": False})
    row = latest_history(assignment)
    assert (row.status, row.history_user) == ("in_progress", annotator)


def test_start_of_a_rejected_assignment_begins_rework():
    # given an assignment a reviewer rejected
    team, assignment = given_assignment("rejected")
    annotator, mark = team.annotators[0], event_mark()

    # when its annotator starts the rework
    services.assignment_start(assignment=assignment, actor=annotator)

    # then it is in progress again, the event says rework, and the task stays in rework
    assignment.refresh_from_db()
    assert assignment.status == "in_progress" and assignment.rework_count == 1
    [event] = events_since(mark)
    assert (event.type, event.actor, event.payload) == ("started", annotator, {"rework": True})
    assert latest_history(assignment).history_user == annotator
    team.task.refresh_from_db()
    assert team.task.status == "rework"


def test_start_again_after_a_reload_changes_nothing():
    # given an assignment already in progress
    team, assignment = given_assignment("in_progress")
    before = world()

    # when the portal calls start again
    again = services.assignment_start(assignment=assignment, actor=team.annotators[0])

    # then nothing is written
    assert again.status == "in_progress"
    assert world() == before


def test_start_of_another_annotators_assignment_is_refused():
    # given annotator 0's assignment
    team, assignment = given_assignment("assigned")

    # when annotator 1 tries to start it, then it is refused and nothing changes
    assert_nothing_changed_by(lambda: services.assignment_start(assignment=assignment, actor=team.annotators[1]),
                              PermissionDeniedError)


@pytest.mark.parametrize("state", ["on_hold", "submitted", "approved", "skipped", "expired", "rework_on_hold",
                                   "resubmitted"])
def test_start_from_an_illegal_state_is_refused(state):
    team, assignment = given_assignment(state)
    assert_refused(lambda: services.assignment_start(assignment=assignment, actor=team.annotators[0]),
                   obj=assignment, current=STATE_STATUS[state])


# --- hold and resume -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["assigned", "in_progress", "rework"])
def test_hold_puts_work_aside_without_a_lease(state):
    # given an assigned, started or reworked assignment
    team, assignment = given_assignment(state)
    annotator, mark = team.annotators[0], event_mark()

    # when the annotator holds it with a reason
    services.assignment_hold(assignment=assignment, actor=annotator, reason="  The image does not load  ")

    # then it is on hold, its lease is gone and the reason is kept
    assignment.refresh_from_db()
    assert assignment.status == "on_hold" and assignment.lease_expires_at is None
    assert assignment.reason == "The image does not load"
    [event] = events_since(mark)
    assert (event.type, event.actor, event.payload) == ("held", annotator, {"reason": "The image does not load"})
    row = latest_history(assignment)
    assert (row.status, row.history_user) == ("on_hold", annotator)
    # and the task is on hold, or still in rework
    team.task.refresh_from_db()
    assert team.task.status == ("rework" if state == "rework" else "on_hold")


def test_hold_without_a_reason_is_refused_and_changes_nothing():
    team, assignment = given_assignment("in_progress")
    error = assert_nothing_changed_by(
        lambda: services.assignment_hold(assignment=assignment, actor=team.annotators[0], reason="   "),
        ValidationError)
    assert "reason" in error.errors


@pytest.mark.parametrize("state", ["on_hold", "submitted", "approved", "rejected", "skipped", "expired",
                                   "resubmitted"])
def test_hold_from_an_illegal_state_is_refused(state):
    team, assignment = given_assignment(state)
    assert_refused(lambda: services.assignment_hold(assignment=assignment, actor=team.annotators[0], reason="x"),
                   obj=assignment, current=STATE_STATUS[state])


@pytest.mark.parametrize("state", ["on_hold", "rework_on_hold"])
def test_resume_goes_back_to_work_with_a_fresh_lease(state):
    # given a held assignment
    team, assignment = given_assignment(state)
    annotator, mark = team.annotators[0], event_mark()
    before = timezone.now()

    # when its annotator resumes
    services.assignment_resume(assignment=assignment, actor=annotator)

    # then it is in progress with a new lease, a 'resumed' event and a history row by the annotator
    assignment.refresh_from_db()
    assert assignment.status == "in_progress"
    assert assignment.lease_expires_at >= before + timedelta(minutes=30)
    [event] = events_since(mark)
    assert (event.type, event.actor) == ("resumed", annotator)
    row = latest_history(assignment)
    assert (row.status, row.history_user) == ("in_progress", annotator)
    team.task.refresh_from_db()
    assert team.task.status == ("rework" if state == "rework_on_hold" else "in_progress")


@pytest.mark.parametrize("state", ["assigned", "in_progress", "submitted", "approved", "rejected", "skipped",
                                   "expired", "rework"])
def test_resume_from_an_illegal_state_is_refused(state):
    team, assignment = given_assignment(state)
    assert_refused(lambda: services.assignment_resume(assignment=assignment, actor=team.annotators[0]),
                   obj=assignment, current=STATE_STATUS[state])


def test_resume_on_a_cancelled_task_is_refused():
    # given a held assignment whose task a manager then cancelled (which released the assignment)
    team, assignment = given_assignment("on_hold")
    services.task_cancel(task=team.task, actor=team.manager)

    # when the annotator resumes, then it is refused: the assignment is no longer held
    assert_refused(lambda: services.assignment_resume(assignment=assignment, actor=team.annotators[0]),
                   obj=assignment, current="skipped")


# --- skip -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["assigned", "in_progress", "on_hold"])
def test_skip_gives_the_task_back_to_the_pool(state):
    # given a live assignment
    team, assignment = given_assignment(state)
    annotator, mark = team.annotators[0], event_mark()

    # when the annotator skips it
    services.assignment_skip(assignment=assignment, actor=annotator, reason=" Not my language ")

    # then it is skipped, the lease gone, and the task open again
    assignment.refresh_from_db()
    assert (assignment.status, assignment.reason, assignment.lease_expires_at) == ("skipped", "Not my language", None)
    [event] = events_since(mark)
    assert (event.type, event.actor, event.payload) == ("skipped", annotator, {"reason": "Not my language"})
    row = latest_history(assignment)
    assert (row.status, row.history_user) == ("skipped", annotator)
    team.task.refresh_from_db()
    assert team.task.status == "open"


@pytest.mark.parametrize("state", ["submitted", "approved", "rejected", "skipped", "expired", "rework",
                                   "rework_on_hold", "resubmitted"])
def test_skip_from_an_illegal_state_is_refused(state):
    team, assignment = given_assignment(state)
    error = assert_refused(lambda: services.assignment_skip(assignment=assignment, actor=team.annotators[0]),
                           obj=assignment, current=STATE_STATUS[state])
    if state in ("rework", "rework_on_hold"):
        assert "Rework cannot be skipped" in error.message


# --- expire ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["assigned", "in_progress"])
def test_expire_ends_a_lease_that_ran_out(state):
    # given an assignment whose lease ends in 30 minutes
    team, assignment = given_assignment(state)
    lease, mark = assignment.lease_expires_at, event_mark()

    # when it is expired at a time after the lease
    services.assignment_expire(assignment=assignment, now=timezone.now() + FUTURE)

    # then it is expired, the event (no actor: the system) keeps the lease, and the task is open again
    assignment.refresh_from_db()
    assert assignment.status == "expired"
    [event] = events_since(mark)
    assert (event.type, event.actor, event.payload) == ("expired", None, {"lease_expires_at": lease.isoformat()})
    row = latest_history(assignment)
    assert (row.status, row.history_user) == ("expired", None)
    team.task.refresh_from_db()
    assert team.task.status == "open"


def test_expire_before_the_lease_ran_out_is_refused():
    team, assignment = given_assignment("in_progress")
    error = assert_refused(lambda: services.assignment_expire(assignment=assignment, now=timezone.now()),
                           obj=assignment, current="in_progress")
    assert "has not run out" in error.message


@pytest.mark.parametrize("state", ["on_hold", "submitted", "approved", "rejected", "skipped", "expired", "rework",
                                   "rework_on_hold", "resubmitted"])
def test_expire_from_an_illegal_state_is_refused(state):
    team, assignment = given_assignment(state)
    assert_refused(lambda: services.assignment_expire(assignment=assignment, now=timezone.now() + FUTURE),
                   obj=assignment, current=STATE_STATUS[state])


def test_expire_due_expires_only_leases_that_ran_out_and_only_once():
    # given, on a project with overlap 4, assignments in every situation
    team = factories.team(overlap=4)
    a0, a1, a2 = team.annotators
    extra = factories.member(team.project, Membership.Role.ANNOTATOR)
    assigned = services.assignment_assign(task=team.task, annotator=a0)
    started = services.assignment_assign(task=team.task, annotator=a1)
    services.assignment_start(assignment=started, actor=a1)
    held = services.assignment_assign(task=team.task, annotator=a2)
    services.assignment_hold(assignment=held, actor=a2, reason="Question sent")
    submitted = services.assignment_assign(task=team.task, annotator=extra)
    submit(submitted)
    # and an assignment on a second task in rework, and one whose lease runs past the chosen time
    rework_task, later_task = factories.tasks(team.batch, 2)
    rework = services.assignment_assign(task=rework_task, annotator=a0)
    reject(submit(rework), team.reviewer)
    services.assignment_start(assignment=rework, actor=a0)
    later = services.assignment_assign(task=later_task, annotator=a1)
    Assignment.objects.filter(pk=later.pk).update(lease_expires_at=timezone.now() + FUTURE * 2)
    mark = event_mark()

    # when the periodic job runs at a time past the ordinary leases, twice
    now = timezone.now() + FUTURE
    first = services.assignments_expire_due(now=now)
    second = services.assignments_expire_due(now=now)

    # then exactly the assigned and the started one expired, once each, with one 'expired' event each
    assert (first, second) == (2, 0)
    statuses = {a.pk: a.status for a in Assignment.objects.all()}
    assert statuses == {assigned.pk: "expired", started.pk: "expired", held.pk: "on_hold",
                        submitted.pk: "submitted", rework.pk: "in_progress", later.pk: "assigned"}
    assert sorted((e.type, e.assignment_id, e.actor) for e in events_since(mark)) == sorted(
        [("expired", assigned.pk, None), ("expired", started.pk, None)])


def test_expire_due_respects_its_limit():
    # given three assignments whose leases ran out
    team = factories.team()
    for annotator, task in zip(team.annotators, [team.task, *factories.tasks(team.batch, 2)]):
        services.assignment_assign(task=task, annotator=annotator)

    # when the job runs with a limit of two, then two expire now and the last one on the next run
    now = timezone.now() + FUTURE
    assert services.assignments_expire_due(now=now, limit=2) == 2
    assert services.assignments_expire_due(now=now, limit=2) == 1
    assert not Assignment.objects.exclude(status="expired").exists()


# --- submit and resubmit ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["assigned", "in_progress"])
def test_submit_writes_version_one_and_waits_for_review(state):
    # given an assigned or started assignment on a project that reviews everything
    team, assignment = given_assignment(state)
    annotator, mark = team.annotators[0], event_mark()

    # when the annotator submits a valid result
    annotation = submit(assignment, "dog", notes="blurry", lead_time_seconds=12.5)

    # then version 1 is written with its provenance and waits for a review
    assert (annotation.version, annotation.result, annotation.status) == (1, {"label": "dog"}, "submitted")
    assert annotation.needs_review and annotation.is_current
    assert (annotation.author, annotation.annotator, annotation.notes) == (annotator, annotator, "blurry")
    assert annotation.lead_time_seconds == 12.5
    assert annotation.guideline == team.project.guidelines.get(version=1) and annotation.guideline_version == 1
    assignment.refresh_from_db()
    assert assignment.status == "submitted" and assignment.submitted_at and assignment.lease_expires_at is None
    # and one 'submitted' event carries the annotation, the version and the lead time
    [event] = events_since(mark)
    assert (event.type, event.actor) == ("submitted", annotator)
    assert event.payload == {"annotation": annotation.pk, "version": 1, "lead_time_seconds": 12.5}
    # and the history names the annotator for the assignment and the annotation
    assert latest_history(assignment).history_user == annotator
    assert latest_history(annotation).history_user == annotator
    team.task.refresh_from_db()
    assert team.task.status == "in_review"


@pytest.mark.parametrize("lead_time", [-1, "soon", 8 * 24 * 3600])
def test_submit_with_an_impossible_lead_time_is_refused_and_writes_nothing(lead_time):
    team, assignment = given_assignment("in_progress")
    error = assert_nothing_changed_by(lambda: submit(assignment, lead_time_seconds=lead_time), ValidationError)
    assert "lead_time_seconds" in error.errors


def test_submit_of_another_annotators_assignment_is_refused():
    team, assignment = given_assignment("in_progress")
    assert_nothing_changed_by(
        lambda: services.assignment_submit(assignment=assignment, actor=team.annotators[1], result={"label": "cat"}),
        PermissionDeniedError)


@pytest.mark.parametrize("state", ["on_hold", "submitted", "approved", "rejected", "skipped", "expired", "rework",
                                   "resubmitted"])
def test_submit_from_an_illegal_state_is_refused(state):
    team, assignment = given_assignment(state)
    error = assert_refused(lambda: submit(assignment), obj=assignment, current=STATE_STATUS[state])
    if state in ("rejected", "rework", "resubmitted"):
        assert error.message == "This is rework: resubmit it."


@pytest.mark.parametrize("close", ["accept", "cancel"])
def test_submit_on_a_task_a_manager_closed_meanwhile_is_refused(close):
    # given two annotators on a task with overlap 2; the first submitted, the manager closed the task
    team, assignment = given_assignment("submitted", overlap=2)
    second = services.assignment_assign(task=team.task, annotator=team.annotators[1])
    {"accept": services.task_accept, "cancel": services.task_cancel}[close](task=team.task, actor=team.manager)

    # when the second annotator submits, then it is refused: closing the task released their assignment
    assert_refused(lambda: submit(second), obj=second, current="skipped")


@pytest.mark.parametrize("state", ["rejected", "rework"])
def test_resubmit_writes_a_new_version_and_supersedes_the_old(state):
    # given rejected work, started again or not
    team, assignment = given_assignment(state)
    annotator, mark = team.annotators[0], event_mark()
    first = assignment.annotations.get()

    # when the annotator resubmits
    annotation = services.assignment_resubmit(assignment=assignment, actor=annotator, result={"label": "bird"},
                                              lead_time_seconds=3)

    # then version 2 is current and waits for a review, version 1 is superseded and kept
    assert (annotation.version, annotation.status, annotation.needs_review) == (2, "submitted", True)
    first.refresh_from_db()
    assert (first.status, first.is_current, first.result) == ("superseded", False, {"label": "cat"})
    assignment.refresh_from_db()
    assert assignment.status == "submitted" and assignment.rework_count == 1
    [event] = events_since(mark)
    assert (event.type, event.actor) == ("resubmitted", annotator)
    assert event.payload == {"annotation": annotation.pk, "version": 2, "lead_time_seconds": 3.0}
    assert latest_history(assignment).history_user == annotator
    assert latest_history(first).history_user == annotator
    team.task.refresh_from_db()
    assert team.task.status == "in_review"


@pytest.mark.parametrize("state", ["assigned", "in_progress", "on_hold", "submitted", "approved", "skipped",
                                   "expired", "rework_on_hold", "resubmitted"])
def test_resubmit_from_an_illegal_state_is_refused(state):
    team, assignment = given_assignment(state)
    assert_refused(lambda: services.assignment_resubmit(assignment=assignment, actor=team.annotators[0],
                                                        result={"label": "dog"}),
                   obj=assignment, current=STATE_STATUS[state])


# --- reviews --------------------------------------------------------------------------------------------------------


def given_submission(**options):
    team, assignment = given_assignment("submitted", **options)
    return team, assignment, assignment.annotations.get(is_current=True)


def test_review_start_opens_one_review_and_is_safe_to_call_twice():
    # given a submission waiting for review
    team, assignment, annotation = given_submission()
    mark = event_mark()

    # when the reviewer opens it, twice
    review = services.review_start(annotation=annotation, reviewer=team.reviewer)
    again = services.review_start(annotation=annotation, reviewer=team.reviewer)

    # then one open review and one 'review_started' event exist; the annotation still waits
    assert again.pk == review.pk and review.decided_at is None and review.decision == ""
    [event] = events_since(mark)
    assert (event.type, event.actor, event.payload) == (
        "review_started", team.reviewer, {"annotation": annotation.pk, "review": review.pk})
    assert latest_history(review).history_user == team.reviewer
    annotation.refresh_from_db()
    assert annotation.status == "submitted"


def test_approve_accepts_the_task_once_everything_required_is_approved():
    # given a submission whose review was started
    team, assignment, annotation = given_submission()
    services.review_start(annotation=annotation, reviewer=team.reviewer)
    mark = event_mark()

    # when the reviewer approves it
    review = services.review_approve(annotation=annotation, reviewer=team.reviewer, comment="Good")

    # then the review is decided, annotation and assignment are approved
    assert (review.decision, review.comment) == ("approve", "Good") and review.decided_at is not None
    annotation.refresh_from_db()
    assignment.refresh_from_db()
    assert (annotation.status, assignment.status) == ("approved", "approved")
    # and 'approved' then an automatic 'accepted' event are written, by the reviewer
    events = events_since(mark)
    assert [(e.type, e.actor) for e in events] == [("approved", team.reviewer), ("accepted", team.reviewer)]
    assert events[0].payload == {"annotation": annotation.pk, "review": review.pk}
    assert events[1].payload == {"automatic": True}
    for obj in (annotation, assignment, review, team.task):
        assert latest_history(obj).history_user == team.reviewer
    team.task.refresh_from_db()
    assert (team.task.status, team.task.final_result) == ("accepted", {"label": "cat"})
    assert team.task.accepted_at is not None


def test_reject_sends_the_work_back_with_error_types():
    # given a submission
    team, assignment, annotation = given_submission()
    mark = event_mark()

    # when the reviewer rejects it with two error types
    review = reject(annotation, team.reviewer, codes=["wrong_label", "boundary"])

    # then the annotation is rejected, the assignment is rework for its annotator
    assert review.decision == "reject" and sorted(review.error_types.values_list("code", flat=True)) == [
        "boundary", "wrong_label"]
    annotation.refresh_from_db()
    assignment.refresh_from_db()
    assert (annotation.status, assignment.status, assignment.rework_count) == ("rejected", "rejected", 1)
    # and the events are 'review_started' and 'rejected' with the sorted error types
    events = events_since(mark)
    assert [(e.type, e.actor) for e in events] == [("review_started", team.reviewer), ("rejected", team.reviewer)]
    assert events[1].payload == {"annotation": annotation.pk, "review": review.pk,
                                 "error_types": ["boundary", "wrong_label"]}
    row = latest_history(assignment)
    assert (row.status, row.rework_count, row.history_user) == ("rejected", 1, team.reviewer)
    team.task.refresh_from_db()
    assert team.task.status == "rework"


@pytest.mark.parametrize("codes, field", [([], "error_types"), (["no_such_error"], "error_types")])
def test_reject_without_known_error_types_is_refused_and_writes_nothing(codes, field):
    team, assignment, annotation = given_submission()
    error = assert_nothing_changed_by(lambda: reject(annotation, team.reviewer, codes=codes), ValidationError)
    assert field in error.errors


def test_fix_writes_the_reviewers_version_and_accepts_it():
    # given a submission labelled cat
    team, assignment, annotation = given_submission()
    mark = event_mark()

    # when the reviewer fixes it to dog
    review = services.review_fix(annotation=annotation, reviewer=team.reviewer, corrected_result={"label": "dog"},
                                 error_types=["wrong_label"], comment="It barks")

    # then a version 2 written by the reviewer is current and approved; version 1 is kept, superseded
    corrected = review.corrected_annotation
    assert (corrected.version, corrected.author, corrected.annotator) == (2, team.reviewer, team.annotators[0])
    assert (corrected.source, corrected.status, corrected.is_current) == ("review_fix", "approved", True)
    annotation.refresh_from_db()
    assert (annotation.status, annotation.is_current) == ("superseded", False)
    assert review.decision == "fix"
    assignment.refresh_from_db()
    assert assignment.status == "approved"
    # and 'fixed' names both versions; the task is accepted with the fix as its result
    events = events_since(mark)
    assert [e.type for e in events] == ["review_started", "fixed", "accepted"]
    assert events[1].actor == team.reviewer
    assert events[1].payload == {"annotation": annotation.pk, "corrected_annotation": corrected.pk,
                                 "review": review.pk, "error_types": ["wrong_label"]}
    assert latest_history(corrected).history_user == team.reviewer
    assert latest_history(assignment).history_user == team.reviewer
    team.task.refresh_from_db()
    assert (team.task.status, team.task.final_result) == ("accepted", {"label": "dog"})


def test_fix_with_an_invalid_result_is_refused_and_writes_nothing():
    team, assignment, annotation = given_submission()
    error = assert_nothing_changed_by(
        lambda: services.review_fix(annotation=annotation, reviewer=team.reviewer,
                                    corrected_result={"label": "zebra"}),
        ValidationError)
    assert "zebra" in error.message


def test_escalate_keeps_the_work_in_review_for_a_senior_reviewer():
    # given a submission
    team, assignment, annotation = given_submission()
    senior = factories.member(team.project, Membership.Role.REVIEWER, "senior")
    AnnotatorProfile.objects.create(user=senior, seniority=AnnotatorProfile.Seniority.SENIOR)
    mark = event_mark()

    # when the reviewer escalates it
    review = services.review_escalate(annotation=annotation, reviewer=team.reviewer, comment="  Ambiguous  ")

    # then the annotation is escalated and still waits for a review; the task stays in review
    assert (review.decision, review.comment) == ("escalate", "Ambiguous")
    annotation.refresh_from_db()
    assert (annotation.status, annotation.needs_review) == ("escalated", True)
    events = events_since(mark)
    assert [(e.type, e.actor) for e in events] == [("review_started", team.reviewer), ("escalated", team.reviewer)]
    assert events[1].payload == {"annotation": annotation.pk, "review": review.pk}
    assert latest_history(annotation).history_user == team.reviewer
    team.task.refresh_from_db()
    assert team.task.status == "in_review"

    # when the (junior) reviewer tries to decide it, then only a senior may
    with pytest.raises(PermissionDeniedError):
        services.review_approve(annotation=annotation, reviewer=team.reviewer)

    # when the senior reviewer approves the escalated work, then the task is accepted
    services.review_approve(annotation=annotation, reviewer=senior)
    team.task.refresh_from_db()
    assert team.task.status == "accepted"


def test_escalate_without_a_comment_is_refused_and_writes_nothing():
    team, assignment, annotation = given_submission()
    assert_nothing_changed_by(lambda: services.review_escalate(annotation=annotation, reviewer=team.reviewer,
                                                               comment=" "), ValidationError)


def test_escalate_twice_is_refused():
    team, assignment, annotation = given_submission()
    AnnotatorProfile.objects.create(user=team.reviewer, seniority=AnnotatorProfile.Seniority.LEAD)
    services.review_escalate(annotation=annotation, reviewer=team.reviewer, comment="Ambiguous")
    assert_refused(lambda: services.review_escalate(annotation=annotation, reviewer=team.reviewer, comment="again"),
                   obj=annotation, current="escalated")


REVIEW_ACTIONS = {
    "start": lambda a, r: services.review_start(annotation=a, reviewer=r),
    "approve": lambda a, r: services.review_approve(annotation=a, reviewer=r),
    "reject": lambda a, r: reject(a, r),
    "fix": lambda a, r: services.review_fix(annotation=a, reviewer=r, corrected_result={"label": "bird"}),
    "escalate": lambda a, r: services.review_escalate(annotation=a, reviewer=r, comment="Hard"),
}


def given_annotation(state):
    """On an overlap-2 project (so that the task stays open), annotator 0's first annotation in `state`."""
    team, assignment, annotation = given_submission(overlap=2)
    if state == "approved":
        services.review_approve(annotation=annotation, reviewer=team.reviewer)
    elif state == "rejected":
        reject(annotation, team.reviewer)
    elif state == "superseded by a resubmission":
        reject(annotation, team.reviewer)
        services.assignment_resubmit(assignment=assignment, actor=team.annotators[0], result={"label": "dog"})
    elif state == "superseded by a fix":
        services.review_fix(annotation=annotation, reviewer=team.reviewer, corrected_result={"label": "dog"})
    annotation.refresh_from_db()
    return team, annotation


@pytest.mark.parametrize("action", sorted(REVIEW_ACTIONS))
@pytest.mark.parametrize("state, current", [("approved", "approved"), ("rejected", "rejected"),
                                            ("superseded by a resubmission", "superseded"),
                                            ("superseded by a fix", "superseded")])
def test_review_of_an_annotation_not_waiting_for_review_is_refused(action, state, current):
    team, annotation = given_annotation(state)
    assert_refused(lambda: REVIEW_ACTIONS[action](annotation, team.reviewer), obj=annotation, current=current)


@pytest.mark.parametrize("action", sorted(REVIEW_ACTIONS))
@pytest.mark.parametrize("task_state", ["accepted", "cancelled"])
def test_review_on_a_closed_task_is_refused(action, task_state):
    # given a submission whose task a manager accepted or cancelled
    team, assignment, annotation = given_submission()
    close = {"accepted": services.task_accept, "cancelled": services.task_cancel}[task_state]
    close(task=team.task, actor=team.manager)

    # when a reviewer acts on it, then it is refused naming the task's state
    assert_refused(lambda: REVIEW_ACTIONS[action](annotation, team.reviewer), obj=team.task, current=task_state)


@pytest.mark.parametrize("action", sorted(REVIEW_ACTIONS))
def test_nobody_reviews_their_own_work(action):
    # given a reviewer who is also an annotator of the project and submitted on a task
    team = factories.team()
    project_services.membership_add(project=team.project, user=team.reviewer, role=Membership.Role.ANNOTATOR)
    assignment = services.assignment_assign(task=team.task, annotator=team.reviewer)
    annotation = submit(assignment)

    # when they review their own annotation, then it is refused and nothing changes
    error = assert_nothing_changed_by(lambda: REVIEW_ACTIONS[action](annotation, team.reviewer),
                                      PermissionDeniedError)
    assert error.status_code == 403


@pytest.mark.parametrize("action", sorted(REVIEW_ACTIONS))
def test_review_by_someone_without_the_review_permission_is_refused(action):
    team, assignment, annotation = given_submission()
    for user in (team.annotators[1], team.outsider):
        assert_nothing_changed_by(lambda u=user: REVIEW_ACTIONS[action](annotation, u), PermissionDeniedError)


# --- task accept and cancel -----------------------------------------------------------------------------------------


def test_manager_accepts_a_task_with_its_current_results():
    # given a task with overlap 2 and one submission so far
    team, assignment, annotation = given_submission(overlap=2, review_mode="none")
    team.task.refresh_from_db()
    assert team.task.status == "in_progress"
    mark = event_mark()

    # when the manager accepts it
    services.task_accept(task=team.task, actor=team.manager)

    # then it is accepted with that result, by the manager, not automatically
    team.task.refresh_from_db()
    assert (team.task.status, team.task.final_result) == ("accepted", {"label": "cat"})
    [event] = events_since(mark)
    assert (event.type, event.actor, event.payload) == ("accepted", team.manager,
                                                        {"automatic": False, "released_assignments": 0})
    row = latest_history(team.task)
    assert (row.status, row.history_user) == ("accepted", team.manager)


def test_manager_accept_releases_the_work_still_outstanding_on_the_task():
    # given an overlap-3 task: one submission in rework, one annotator still working, one submission in review
    team = factories.team(overlap=3)
    a0, a1, a2 = team.annotators
    rework, working, waiting = (services.assignment_assign(task=team.task, annotator=a) for a in (a0, a1, a2))
    services.assignment_start(assignment=working, actor=a1)
    submit(waiting, "dog")
    reject(submit(rework), team.reviewer)
    mark = event_mark()

    # when the manager accepts the task as it is
    services.task_accept(task=team.task, actor=team.manager)

    # then the rework and the live assignment are released: nobody is left holding work on an accepted task
    for assignment in (rework, working):
        assignment.refresh_from_db()
        assert (assignment.status, assignment.lease_expires_at) == ("skipped", None)
        assert latest_history(assignment).history_user == team.manager
    waiting.refresh_from_db()
    assert waiting.status == "submitted"
    [event] = events_since(mark)
    assert (event.type, event.actor) == ("accepted", team.manager)
    assert event.payload == {"automatic": False, "released_assignments": 2}
    team.task.refresh_from_db()
    assert (team.task.status, team.task.final_result) == ("accepted", {"label": "dog"})
    # and the annotator of the rework can neither start nor resubmit it any more
    assert_refused(lambda: services.assignment_start(assignment=rework, actor=a0), obj=rework, current="skipped")


def test_accept_by_a_non_manager_is_refused():
    team, assignment, annotation = given_submission(overlap=2)
    for user in (team.reviewer, team.annotators[0], team.outsider):
        assert_nothing_changed_by(lambda u=user: services.task_accept(task=team.task, actor=u),
                                  PermissionDeniedError)


@pytest.mark.parametrize("task_state", ["new", "open", "in_progress without a result", "accepted", "cancelled"])
def test_accept_from_an_illegal_state_is_refused(task_state):
    team = factories.team()
    task = team.task
    if task_state == "new":
        task = factories.tasks(factories.batch(team.project, active=False))[0]
    elif task_state == "in_progress without a result":
        services.assignment_assign(task=task, annotator=team.annotators[0])
    elif task_state == "accepted":
        services.review_approve(annotation=submit(services.assignment_assign(task=task, annotator=team.annotators[0])),
                                reviewer=team.reviewer)
    elif task_state == "cancelled":
        services.task_cancel(task=task, actor=team.manager)
    assert_refused(lambda: services.task_accept(task=task, actor=team.manager), obj=task,
                   current=task_state.split()[0])


@pytest.mark.parametrize("task_state", ["new", "open", "in_progress", "on_hold", "in_review", "rework"])
def test_cancel_takes_the_task_out_and_releases_live_assignments(task_state):
    # given a task in an open state
    team = factories.team(overlap=2)
    task = team.task
    live = []
    if task_state == "new":
        task = factories.tasks(factories.batch(team.project, active=False))[0]
    elif task_state == "in_progress":
        live = [services.assignment_assign(task=task, annotator=a) for a in team.annotators[:2]]
    elif task_state == "on_hold":
        live = [services.assignment_assign(task=task, annotator=team.annotators[0])]
        services.assignment_hold(assignment=live[0], actor=team.annotators[0], reason="Unclear")
    elif task_state in ("in_review", "rework"):
        annotations = [submit(services.assignment_assign(task=task, annotator=a)) for a in team.annotators[:2]]
        if task_state == "rework":
            reject(annotations[0], team.reviewer)  # rework waiting for its annotator is outstanding work too
            live = [annotations[0].assignment]
    task.refresh_from_db()
    assert task.status == task_state
    mark = event_mark()

    # when the manager cancels it with a reason
    services.task_cancel(task=task, actor=team.manager, reason="Duplicate item")

    # then it is cancelled, its outstanding assignments are released (skipped), and one event says how many
    task.refresh_from_db()
    assert task.status == "cancelled"
    for assignment in live:
        assignment.refresh_from_db()
        assert (assignment.status, assignment.lease_expires_at) == ("skipped", None)
        assert latest_history(assignment).history_user == team.manager
    [event] = events_since(mark)
    assert (event.type, event.actor) == ("cancelled", team.manager)
    assert event.payload == {"reason": "Duplicate item", "released_assignments": len(live)}
    assert latest_history(task).history_user == team.manager


@pytest.mark.parametrize("task_state", ["accepted", "cancelled"])
def test_cancel_from_a_final_state_is_refused(task_state):
    # given a task accepted right after its submission (no review), or one a manager cancelled
    if task_state == "accepted":
        team, assignment, annotation = given_submission(review_mode="none")
    else:
        team = factories.team()
        services.task_cancel(task=team.task, actor=team.manager)

    # when the manager cancels it (again), then it is refused naming its state
    assert_refused(lambda: services.task_cancel(task=team.task, actor=team.manager), obj=team.task,
                   current=task_state)


def test_cancel_by_a_non_manager_is_refused():
    team = factories.team()
    assert_nothing_changed_by(lambda: services.task_cancel(task=team.task, actor=team.reviewer),
                              PermissionDeniedError)


# --- annotation revert ----------------------------------------------------------------------------------------------


def test_revert_restores_an_earlier_version_as_a_new_version():
    # given a task accepted with a reviewer's fix (v1 cat by the annotator, v2 dog by the reviewer)
    team, assignment, first = given_submission()
    services.review_fix(annotation=first, reviewer=team.reviewer, corrected_result={"label": "dog"})
    mark = event_mark()

    # when the manager reverts to version 1
    reverted = services.annotation_revert(annotation=first, actor=team.manager)

    # then version 3 carries version 1's result, written by the manager, and is the only current one
    assert (reverted.version, reverted.result, reverted.source) == (3, {"label": "cat"}, "revert")
    assert (reverted.author, reverted.annotator, reverted.status) == (team.manager, team.annotators[0], "approved")
    assert list(assignment.annotations.filter(is_current=True)) == [reverted]
    assert list(assignment.annotations.values_list("version", flat=True)) == [1, 2, 3]
    # and the event names both versions; the history names the manager
    [event] = events_since(mark)
    assert (event.type, event.actor, event.payload) == ("reverted", team.manager,
                                                        {"from_version": 1, "new_version": 3})
    assert latest_history(reverted).history_user == team.manager
    # and the accepted task's result follows the revert
    team.task.refresh_from_db()
    assert team.task.final_result == {"label": "cat"}


def test_revert_to_the_current_version_is_refused():
    team, assignment, annotation = given_submission()
    assert_refused(lambda: services.annotation_revert(annotation=annotation, actor=team.manager), obj=annotation,
                   current="submitted")


def test_revert_by_a_non_manager_is_refused():
    team, assignment, first = given_submission()
    reject(first, team.reviewer)
    services.assignment_resubmit(assignment=assignment, actor=team.annotators[0], result={"label": "dog"})
    for user in (team.reviewer, team.annotators[0]):
        assert_nothing_changed_by(lambda u=user: services.annotation_revert(annotation=first, actor=u),
                                  PermissionDeniedError)


# --- clarifications -------------------------------------------------------------------------------------------------


def test_ask_puts_the_assignment_on_hold_and_answer_lets_the_annotator_resume():
    # given an annotator working on a task
    team, assignment = given_assignment("in_progress")
    annotator, mark = team.annotators[0], event_mark()

    # when they ask a confidential question
    clarification = services.clarification_ask(task=team.task, actor=annotator, question=" Is a fox a dog? ",
                                               confidential=True)

    # then the question is kept, the assignment and the task are on hold, and both events are written
    assert (clarification.question, clarification.confidential, clarification.status) == (
        "Is a fox a dog?", True, "open")
    assert clarification.assignment == assignment
    assignment.refresh_from_db()
    team.task.refresh_from_db()
    assert (assignment.status, team.task.status) == ("on_hold", "on_hold")
    assert f"#{clarification.pk}" in assignment.reason
    events = events_since(mark)
    assert [(e.type, e.actor) for e in events] == [("clarification_asked", annotator), ("held", annotator)]
    assert events[0].payload == {"clarification": clarification.pk}
    assert latest_history(clarification).history_user == annotator

    # when the manager answers
    mark = event_mark()
    services.clarification_answer(clarification=clarification, actor=team.manager, answer=" No. ")

    # then the answer is recorded with its author, and the assignment waits for the annotator to resume
    clarification.refresh_from_db()
    assert (clarification.status, clarification.answer, clarification.answered_by) == (
        "answered", "No.", team.manager)
    [event] = events_since(mark)
    assert (event.type, event.actor, event.payload) == ("clarification_answered", team.manager,
                                                        {"clarification": clarification.pk})
    assert latest_history(clarification).history_user == team.manager
    assignment.refresh_from_db()
    assert assignment.status == "on_hold"
    services.assignment_resume(assignment=assignment, actor=annotator)
    team.task.refresh_from_db()
    assert team.task.status == "in_progress"


def test_ask_and_its_hold_are_one_transaction(monkeypatch):
    # given an annotator working on a task, and a hold that fails (as when a submit wins a race for the row)
    team, assignment = given_assignment("in_progress")

    def hold_refused(**kwargs):
        raise TransitionError("This assignment is submitted and cannot be put on hold.", current="submitted")

    monkeypatch.setattr(services, "assignment_hold", hold_refused)

    # when they ask a question, then the refusal undoes the question too: nothing is half-written
    assert_nothing_changed_by(lambda: services.clarification_ask(task=team.task, actor=team.annotators[0],
                                                                 question="Fox?"), TransitionError)


def test_ask_while_already_on_hold_keeps_the_hold():
    team, assignment = given_assignment("on_hold")
    mark = event_mark()
    services.clarification_ask(task=team.task, actor=team.annotators[0], question="Still unclear")
    assert [e.type for e in events_since(mark)] == ["clarification_asked"]
    assignment.refresh_from_db()
    assert assignment.status == "on_hold"


def test_ask_without_a_question_or_by_an_outsider_is_refused():
    team, assignment = given_assignment("in_progress")
    assert_nothing_changed_by(lambda: services.clarification_ask(task=team.task, actor=team.annotators[0],
                                                                 question="  "), ValidationError)
    for user in (team.outsider, team.reviewer):
        assert_nothing_changed_by(lambda u=user: services.clarification_ask(task=team.task, actor=u,
                                                                            question="Why?"),
                                  PermissionDeniedError)


def test_answer_twice_is_refused():
    team, assignment = given_assignment("in_progress")
    clarification = services.clarification_ask(task=team.task, actor=team.annotators[0], question="Fox?")
    services.clarification_answer(clarification=clarification, actor=team.manager, answer="No")
    assert_refused(lambda: services.clarification_answer(clarification=clarification, actor=team.manager,
                                                         answer="Yes"),
                   obj=clarification, current="answered")


def test_answer_by_a_non_manager_or_without_text_is_refused():
    team, assignment = given_assignment("in_progress")
    clarification = services.clarification_ask(task=team.task, actor=team.annotators[0], question="Fox?")
    assert_nothing_changed_by(lambda: services.clarification_answer(clarification=clarification,
                                                                    actor=team.manager, answer=""),
                              ValidationError)
    for user in (team.reviewer, team.annotators[0]):
        assert_nothing_changed_by(lambda u=user: services.clarification_answer(clarification=clarification,
                                                                               actor=u, answer="No"),
                                  PermissionDeniedError)
