"""How a task's status follows from its assignments, annotations and reviews (DESIGN.md, Lifecycle), and the rules
every submission obeys: overlap, review modes, rework, holds, gold, the final result, idempotency, sanity rules."""

import json
import random
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.errors import PermissionDeniedError, TransitionError, ValidationError
from apps.projects import services as project_services
from apps.projects.models import Batch, Membership, Project
from apps.quality import services as quality_services
from apps.quality.models import MetricSnapshot, Review
from apps.tasks import services
from apps.tasks.models import Annotation, Assignment, Task, TaskEvent
from tests import factories

# --- the derivation rule, as a table (no database) -------------------------------------------------------------------


def derive(*specs, overlap=1, gold=False, batch=Batch.Status.ACTIVE, status=Task.Status.OPEN):
    """Derive a task's status from assignment specs such as "submitted", "submitted pending" (its current
    annotation waits for a review) or "in_progress rework" (the assignment was sent back at least once)."""
    task = Task(project=Project(overlap=overlap), batch=Batch(status=batch), status=status, is_gold=gold)
    assignments, pending = [], set()
    for pk, spec in enumerate(specs, start=1):
        assignment_status, *flags = spec.split()
        assignments.append(Assignment(pk=pk, status=assignment_status, rework_count=int("rework" in flags)))
        if "pending" in flags:
            pending.add(pk)
    return services.task_status_derive(task, assignments, pending)


@pytest.mark.parametrize("overlap, specs, expected", [
    (1, [], "open"),
    (1, ["skipped"], "open"),
    (1, ["expired", "skipped"], "open"),
    (1, ["assigned"], "in_progress"),
    (1, ["in_progress"], "in_progress"),
    (2, ["expired", "assigned"], "in_progress"),
    (1, ["on_hold"], "on_hold"),
    (2, ["on_hold"], "on_hold"),
    (2, ["on_hold", "assigned"], "in_progress"),
    (2, ["on_hold", "submitted"], "in_progress"),
    (1, ["submitted"], "accepted"),
    (1, ["submitted pending"], "in_review"),
    (2, ["submitted pending"], "in_progress"),
    (2, ["submitted"], "in_progress"),
    (2, ["submitted pending", "assigned"], "in_progress"),
    (2, ["submitted pending", "submitted"], "in_review"),
    (2, ["submitted pending", "approved"], "in_review"),
    (2, ["approved", "submitted"], "accepted"),
    (2, ["approved", "approved"], "accepted"),
    (3, ["approved", "approved", "skipped"], "in_progress"),
    (1, ["rejected rework"], "rework"),
    (1, ["in_progress rework"], "rework"),
    (1, ["on_hold rework"], "rework"),
    (2, ["rejected rework", "submitted pending"], "rework"),
    (2, ["rejected rework", "approved"], "rework"),
    (1, ["submitted pending rework"], "in_review"),
    (1, ["approved rework"], "accepted"),
])
def test_status_follows_from_the_assignments(overlap, specs, expected):
    assert derive(*specs, overlap=overlap) == expected


@pytest.mark.parametrize("specs, expected", [
    ([], "open"),
    (["assigned"], "in_progress"),
    (["submitted"], "in_progress"),
    (["approved", "approved", "approved"], "in_progress"),
    (["submitted pending"], "in_progress"),
    (["skipped"], "open"),
])
def test_gold_tasks_are_never_closed_by_the_overlap(specs, expected):
    assert derive(*specs, gold=True) == expected


@pytest.mark.parametrize("final", ["accepted", "cancelled"])
def test_accepted_and_cancelled_are_kept_whatever_the_assignments(final):
    assert derive(status=final) == final
    assert derive("assigned", "rejected rework", status=final, overlap=2) == final


def test_a_task_in_a_draft_batch_is_new():
    assert derive(batch=Batch.Status.DRAFT) == "new"


# --- helpers for the flows ---------------------------------------------------------------------------------------------

def status_of(task):
    task.refresh_from_db()
    return task.status


def give(task, annotator):
    return services.assignment_assign(task=task, annotator=annotator)


def submit(assignment, label="cat", **kwargs):
    return services.assignment_submit(assignment=assignment, actor=assignment.annotator, result={"label": label},
                                      **kwargs)


def world():
    return {model.__name__: model.objects.count() for model in (Annotation, Assignment, TaskEvent, Review)} | {
        "Assignment history": Assignment.history.count(), "Annotation history": Annotation.history.count(),
        "Task history": Task.history.count(), "statuses": sorted(Assignment.objects.values_list("pk", "status")),
        "task statuses": sorted(Task.objects.values_list("pk", "status"))}


def accepted_events(task):
    return list(TaskEvent.objects.filter(task=task, type="accepted").values_list("actor", "payload"))


# --- review modes and overlap ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_review_none_overlap_1_accepts_right_after_the_submission():
    # given a project that reviews nothing
    team = factories.team(review_mode="none")
    annotator = team.annotators[0]

    # when the one required annotation is submitted
    annotation = submit(give(team.task, annotator), "dog")

    # then nothing waits for review and the task is accepted automatically with that result
    assert not annotation.needs_review
    assert status_of(team.task) == "accepted"
    assert team.task.final_result == {"label": "dog"}
    assert accepted_events(team.task) == [(annotator.pk, {"automatic": True})]


@pytest.mark.django_db
def test_review_none_overlap_2_waits_for_the_second_annotator():
    # given a project with two annotators per task and no review
    team = factories.team(review_mode="none", overlap=2)
    first, second = team.annotators[:2]

    # when the first submits, then the task is still in progress
    submit(give(team.task, first), "cat")
    assert status_of(team.task) == "in_progress"

    # when a second annotator takes it, it stays in progress; when they submit, it is accepted
    assignment = give(team.task, second)
    assert status_of(team.task) == "in_progress"
    submit(assignment, "cat")
    assert status_of(team.task) == "accepted"
    assert accepted_events(team.task) == [(second.pk, {"automatic": True})]


@pytest.mark.django_db
def test_review_all_goes_through_review_before_acceptance():
    # given a project with overlap 2 that reviews everything
    team = factories.team(review_mode="all", overlap=2)
    first = submit(give(team.task, team.annotators[0]))
    assert status_of(team.task) == "in_progress"

    # when the second submission is in, then the task is in review
    second = submit(give(team.task, team.annotators[1]))
    assert first.needs_review and second.needs_review
    assert status_of(team.task) == "in_review"

    # when one is approved it stays in review; when both are, it is accepted
    services.review_approve(annotation=first, reviewer=team.reviewer)
    assert status_of(team.task) == "in_review"
    services.review_approve(annotation=second, reviewer=team.reviewer)
    assert status_of(team.task) == "accepted"
    assert accepted_events(team.task) == [(team.reviewer.pk, {"automatic": True})]


@pytest.mark.django_db
@pytest.mark.parametrize("draw, reviewed", [(0.0, True), (0.2499, True), (0.25, False), (0.99, False)])
def test_review_sample_reviews_a_submission_when_the_draw_falls_below_the_rate(monkeypatch, draw, reviewed):
    # given a project that reviews a quarter of the submissions, and a fixed draw
    team = factories.team(review_mode="sample", review_sample_rate=0.25)
    monkeypatch.setattr(services.random, "random", lambda: draw)

    # when a submission comes in
    annotation = submit(give(team.task, team.annotators[0]))

    # then it waits for review (task in review) or the task is accepted right away
    assert annotation.needs_review is reviewed
    assert status_of(team.task) == ("in_review" if reviewed else "accepted")


@pytest.mark.django_db
def test_review_sample_always_reviews_a_resubmission(monkeypatch):
    # given a sampled submission that was rejected, on a project reviewing a quarter of the work
    team = factories.team(review_mode="sample", review_sample_rate=0.25)
    monkeypatch.setattr(services.random, "random", lambda: 0.0)
    assignment = give(team.task, team.annotators[0])
    services.review_reject(annotation=submit(assignment), reviewer=team.reviewer, error_types=["wrong_label"],
                           comment="Look again.")

    # when the rework is resubmitted while the draw says "do not sample"
    monkeypatch.setattr(services.random, "random", lambda: 0.99)
    annotation = services.assignment_resubmit(assignment=assignment, actor=team.annotators[0],
                                              result={"label": "dog"})

    # then it is reviewed anyway: the reviewer asked for the change
    assert annotation.needs_review
    assert status_of(team.task) == "in_review"


@pytest.mark.django_db
def test_review_sample_rate_holds_over_many_submissions(monkeypatch):
    # given 400 tasks of a project reviewing 25 % of submissions, and a seeded (repeatable) draw
    project = factories.project(review_mode="sample", review_sample_rate=0.25, overlap=1)
    annotator = factories.member(project, Membership.Role.ANNOTATOR)
    tasks = factories.tasks(factories.batch(project), 400)
    assignments = Assignment.objects.bulk_create(
        [Assignment(task=task, annotator=annotator, status="in_progress") for task in tasks])
    monkeypatch.setattr(services.random, "random", random.Random(20260101).random)

    # when every task is submitted
    for assignment in assignments:
        submit(assignment)

    # then about a quarter wait for review (3 standard deviations: ± 0.065) and the rest are accepted
    reviewed = Annotation.objects.filter(needs_review=True).count()
    assert 0.185 <= reviewed / 400 <= 0.315
    assert Task.objects.filter(status="in_review").count() == reviewed
    assert Task.objects.filter(status="accepted").count() == 400 - reviewed


# --- rework, holds, gold --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_rework_after_a_rejection_until_it_is_approved():
    # given a submission in review
    team = factories.team()
    annotator = team.annotators[0]
    assignment = give(team.task, annotator)
    annotation = submit(assignment)
    assert status_of(team.task) == "in_review"

    # when it is rejected, the task is rework, also while the annotator works on it again
    services.review_reject(annotation=annotation, reviewer=team.reviewer, error_types=["wrong_label"],
                           comment="Look again.")
    assert status_of(team.task) == "rework"
    services.assignment_start(assignment=assignment, actor=annotator)
    assert status_of(team.task) == "rework"

    # when it is resubmitted it is in review again, and approved it is accepted with the new result
    second = services.assignment_resubmit(assignment=assignment, actor=annotator, result={"label": "dog"})
    assert status_of(team.task) == "in_review"
    services.review_approve(annotation=second, reviewer=team.reviewer)
    assert status_of(team.task) == "accepted"
    assert team.task.final_result == {"label": "dog"}


@pytest.mark.django_db
def test_clarification_puts_the_task_on_hold_until_work_resumes():
    # given a task with overlap 2 and one annotator working on it
    team = factories.team(overlap=2)
    first = give(team.task, team.annotators[0])
    services.assignment_start(assignment=first, actor=team.annotators[0])

    # when they ask a clarification, then the task is on hold
    clarification = services.clarification_ask(task=team.task, actor=team.annotators[0], question="Fox?")
    assert status_of(team.task) == "on_hold"

    # and the free slot can still be given; then someone is working and the task is in progress
    second = give(team.task, team.annotators[1])
    assert status_of(team.task) == "in_progress"
    services.assignment_skip(assignment=second, actor=team.annotators[1])
    assert status_of(team.task) == "on_hold"

    # when the manager answers, the task waits for the annotator; when they resume, it is in progress
    services.clarification_answer(clarification=clarification, actor=team.manager, answer="No")
    assert status_of(team.task) == "on_hold"
    services.assignment_resume(assignment=first, actor=team.annotators[0])
    assert status_of(team.task) == "in_progress"


@pytest.mark.django_db
@pytest.mark.parametrize("review_mode", ["none", "all"])
def test_gold_tasks_are_never_accepted_automatically(review_mode):
    # given a gold task on a project with overlap 1
    team = factories.team(review_mode=review_mode)
    gold = factories.tasks(team.batch, is_gold=True, gold_answer={"label": "cat"})[0]

    # when more annotators than the overlap answer it
    for annotator in team.annotators:
        annotation = submit(give(gold, annotator))
        assert not annotation.needs_review  # gold is scored, not reviewed

    # then it is still in progress, never accepted by the overlap
    assert status_of(gold) == "in_progress"
    assert gold.assignments.count() == 3
    assert not accepted_events(gold)

    # and only a manager accepting it closes it
    services.task_accept(task=gold, actor=team.manager)
    assert status_of(gold) == "accepted"


@pytest.mark.django_db
def test_refresh_brings_a_stale_status_in_line_and_records_who_did_it():
    # given a task that is in progress but whose stored status went stale
    team = factories.team()
    give(team.task, team.annotators[0])
    Task.objects.filter(pk=team.task.pk).update(status="open")
    team.task.refresh_from_db()
    history_rows = team.task.history.count()

    # when its status is refreshed by the manager
    status = services.task_status_refresh(task=team.task, actor=team.manager)

    # then it is in progress again, with one history row naming the manager
    assert status == status_of(team.task) == "in_progress"
    assert team.task.history.count() == history_rows + 1
    assert team.task.history.order_by("-history_id").first().history_user == team.manager

    # when refreshed again, nothing is written
    services.task_status_refresh(task=team.task, actor=team.manager)
    assert team.task.history.count() == history_rows + 1


# --- the final result -------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_final_result_is_the_majority():
    # given three annotators, two of whom say cat, on a project without review
    team = factories.team(review_mode="none", overlap=3)
    for annotator, label in zip(team.annotators, ["dog", "cat", "cat"]):
        submit(give(team.task, annotator), label)

    # then the accepted task's result is the majority
    assert status_of(team.task) == "accepted"
    assert team.task.final_result == {"label": "cat"}


def gold_record(team, scores):
    """Gold work for the team's annotators: {annotator: (right, wrong)} answers on as many gold tasks."""
    n = max(right + wrong for right, wrong in scores.values())
    golds = factories.tasks(team.batch, n, is_gold=True, gold_answer={"label": "bird"})
    for annotator, (right, wrong) in scores.items():
        for gold, label in zip(golds, ["bird"] * right + ["cat"] * wrong):
            submit(give(gold, annotator), label)


def approved_tie(team, labels=("dog", "cat")):
    """An overlap-2 task answered with `labels` by annotators 0 and 1 (in that order), both approved."""
    annotations = [submit(give(team.task, annotator), label) for annotator, label in zip(team.annotators, labels)]
    for annotation in annotations:
        services.review_approve(annotation=annotation, reviewer=team.reviewer)
    assert status_of(team.task) == "accepted"
    return team.task.final_result


@pytest.mark.django_db
@pytest.mark.parametrize("accurate, expected", [(1, "cat"), (0, "dog")])
def test_a_tie_goes_to_the_label_of_the_annotator_most_accurate_on_gold(accurate, expected):
    # given annotator 0 says dog and annotator 1 cat on an overlap-2 task, and one of them is better on gold
    team = factories.team(review_mode="all", overlap=2)
    gold_record(team, {team.annotators[accurate]: (3, 0), team.annotators[1 - accurate]: (1, 2)})

    # when both are approved (no quality figures computed yet: the accuracies come from the gold work itself)
    final = approved_tie(team)

    # then the task's result is the more accurate annotator's label, whichever was first or smallest
    assert final == {"label": expected}
    assert services.task_final_result(team.task) == {"label": expected}


@pytest.mark.django_db
def test_a_tie_between_equally_accurate_annotators_goes_to_the_smallest_label():
    # given dog (first) and cat from annotators equally right on gold
    team = factories.team(review_mode="all", overlap=2)
    gold_record(team, {team.annotators[0]: (2, 1), team.annotators[1]: (2, 1)})

    # then the smallest label value wins, not the earliest submission
    assert approved_tie(team) == {"label": "cat"}


@pytest.mark.django_db
def test_a_tie_without_any_gold_work_goes_to_the_smallest_label():
    team = factories.team(review_mode="none", overlap=2)
    for annotator, label in zip(team.annotators, ["dog", "cat"]):
        submit(give(team.task, annotator), label)
    assert status_of(team.task) == "accepted"
    assert team.task.final_result == {"label": "cat"}


@pytest.mark.django_db
def test_a_tie_reads_the_gold_accuracies_of_the_quality_engine_s_latest_figures():
    # given the rows make annotator 1 (cat) the better one, but the engine's latest figures say annotator 0 (dog)
    from apps.quality import engine
    from apps.quality.models import MetricSnapshot

    team = factories.team(review_mode="all", overlap=2)
    gold_record(team, {team.annotators[0]: (0, 3), team.annotators[1]: (3, 0)})
    MetricSnapshot.objects.create(
        project=team.project, scope="project", kind=engine.ANNOTATORS, computed_at=timezone.now(),
        values={"annotators": [{"annotator_id": team.annotators[0].pk, "gold_accuracy": 0.9},
                               {"annotator_id": team.annotators[1].pk, "gold_accuracy": 0.4}]})

    # then the tie goes by the engine's figures (dog), not by a recount
    assert approved_tie(team) == {"label": "dog"}


@pytest.mark.django_db
def test_the_engine_s_figures_give_the_same_tie_break_as_the_gold_work():
    # given annotator 1 (cat) is the better one on gold, and the engine's full pass has run
    from apps.quality import services as quality_services

    team = factories.team(review_mode="all", overlap=2)
    gold_record(team, {team.annotators[0]: (1, 2), team.annotators[1]: (3, 0)})
    quality_services.quality_recompute_full(project_id=team.project.pk)

    assert approved_tie(team) == {"label": "cat"}


@pytest.mark.django_db
def test_a_clear_majority_reads_no_gold_figures():
    # given three annotators, two of whom say dog: no tie, so no gold accuracy is looked up
    team = factories.team(review_mode="none", overlap=3)
    for annotator, label in zip(team.annotators[:2], ["dog", "cat"]):
        submit(give(team.task, annotator), label)
    last = give(team.task, team.annotators[2])

    from unittest import mock

    with mock.patch.object(services, "_gold_accuracy_of", side_effect=AssertionError("read on a majority")):
        submit(last, "dog")
    assert status_of(team.task) == "accepted"
    assert team.task.final_result == {"label": "dog"}


@pytest.mark.django_db
def test_a_tie_of_span_results_goes_to_the_more_accurate_annotator_then_the_smallest_canonical_json():
    # given two different span results on an overlap-2 text task; annotator 1 is better on gold
    team = factories.team(task_type="text_spans", review_mode="all", overlap=2)
    ada = {"spans": [{"start": 0, "end": 3, "label": "PER"}]}
    both = {"spans": [{"start": 0, "end": 3, "label": "PER"}, {"start": 7, "end": 11, "label": "LOC"}]}
    golds = factories.tasks(team.batch, 2, is_gold=True, gold_answer=ada, data={"text": "Ada in Rome"})
    for gold in golds:
        submit_result(give(gold, team.annotators[0]), {"spans": []})
        submit_result(give(gold, team.annotators[1]), ada)
    # (the annotators' gold figures, as the quality worker computes them: a span result is not scored on the submit
    # path, where a tie reads the engine's figures)
    quality_services.quality_recompute_full(project_id=team.project.pk)
    task = factories.tasks(team.batch, 1, data={"text": "Ada in Rome"})[0]

    # when annotator 0 gives `both` and annotator 1 `ada`, both approved
    for annotator, result in zip(team.annotators, (both, ada)):
        services.review_approve(annotation=submit_result(give(task, annotator), result), reviewer=team.reviewer)

    # then the more accurate annotator's result wins, though the other's canonical JSON text is the smaller
    canonical = [json.dumps(r, sort_keys=True, separators=(",", ":")) for r in (both, ada)]
    assert canonical == sorted(canonical)
    task.refresh_from_db()
    assert (task.status, task.final_result) == ("accepted", ada)

    # and with no gold figures at all, the smallest canonical JSON text wins
    MetricSnapshot.objects.filter(project=team.project).delete()
    assert services.task_final_result(task) == both


def submit_result(assignment, result):
    return services.assignment_submit(assignment=assignment, actor=assignment.annotator, result=result)


@pytest.mark.django_db
def test_final_result_is_the_reviewers_fix_even_against_a_majority():
    # given two approved cats and a third submission the reviewer fixes to bird
    team = factories.team(review_mode="all", overlap=3)
    annotations = [submit(give(team.task, annotator), "cat") for annotator in team.annotators]
    services.review_approve(annotation=annotations[0], reviewer=team.reviewer)
    services.review_approve(annotation=annotations[1], reviewer=team.reviewer)

    # when the reviewer fixes the third one
    services.review_fix(annotation=annotations[2], reviewer=team.reviewer, corrected_result={"label": "bird"})

    # then the task is accepted with the fix
    assert status_of(team.task) == "accepted"
    assert team.task.final_result == {"label": "bird"}


@pytest.mark.django_db
def test_final_result_leaves_out_rejected_and_superseded_versions():
    # given an overlap-2 task: one annotation rejected, the other submitted; a manager accepts it
    team = factories.team(overlap=2)
    rejected = submit(give(team.task, team.annotators[0]), "dog")
    submit(give(team.task, team.annotators[1]), "cat")
    services.review_reject(annotation=rejected, reviewer=team.reviewer, error_types=["wrong_label"],
                           comment="Look again.")
    services.task_accept(task=team.task, actor=team.manager)

    # then the result is the one that was not rejected
    assert status_of(team.task) == "accepted"
    assert team.task.final_result == {"label": "cat"}
    assert services.task_final_result(team.task) == {"label": "cat"}


# --- idempotency and sanity ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_same_idempotency_key_twice_writes_one_annotation_and_one_event():
    # given an annotator whose first submit reached the server but whose answer got lost
    team = factories.team()
    assignment = give(team.task, team.annotators[0])
    first = submit(assignment, "cat", idempotency_key="req-1")
    before = world()

    # when the client retries with the same key (even with another body)
    again = submit(assignment, "dog", idempotency_key="req-1")

    # then the first annotation comes back and nothing more is written
    assert again.pk == first.pk and again.result == {"label": "cat"}
    assert world() == before
    assert Annotation.objects.count() == 1
    assert TaskEvent.objects.filter(type="submitted").count() == 1


@pytest.mark.django_db
def test_the_same_idempotency_key_on_a_resubmission_writes_one_version():
    team = factories.team()
    assignment = give(team.task, team.annotators[0])
    services.review_reject(annotation=submit(assignment), reviewer=team.reviewer, error_types=["wrong_label"],
                           comment="Look again.")
    second = services.assignment_resubmit(assignment=assignment, actor=team.annotators[0], result={"label": "dog"},
                                          idempotency_key="req-2")
    before = world()
    again = services.assignment_resubmit(assignment=assignment, actor=team.annotators[0], result={"label": "dog"},
                                         idempotency_key="req-2")
    assert again.pk == second.pk
    assert world() == before
    assert TaskEvent.objects.filter(type="resubmitted").count() == 1


@pytest.mark.django_db
def test_an_idempotency_key_does_not_let_another_user_read_a_submission():
    # given annotator 0 submitted with a key
    team = factories.team()
    assignment = give(team.task, team.annotators[0])
    submit(assignment, "cat", idempotency_key="req-1")
    before = world()

    # when another annotator replays the key on that assignment, then it is refused, not answered
    with pytest.raises(PermissionDeniedError):
        services.assignment_submit(assignment=assignment, actor=team.annotators[1], result={"label": "dog"},
                                   idempotency_key="req-1")
    assert world() == before


@pytest.mark.django_db
@pytest.mark.parametrize("task_type, data, result, message", [
    ("classification", {"text": "a"}, {"label": "zebra"}, "'zebra' is not in the schema"),
    ("classification", {"text": "a"}, {}, "'label' is missing"),
    ("classification", {"text": "a"}, "cat", "must be an object"),
    ("multilabel", {"text": "a"}, {"labels": ["cat", "cat"]}, "listed twice"),
    ("text_spans", {"text": "Ada"}, {"spans": [{"start": 0, "end": 9, "label": "PER"}]}, "outside the text"),
    ("text_spans", {"text": "Ada Lovelace"},
     {"spans": [{"start": 0, "end": 5, "label": "PER"}, {"start": 4, "end": 12, "label": "PER"}]}, "overlap"),
    ("bounding_boxes", {"image": "/i.png", "width": 10, "height": 10},
     {"boxes": [{"x": 0.8, "y": 0, "w": 0.5, "h": 0.1, "label": "car"}]}, "outside the image"),
    ("bounding_boxes", {"image": "/i.png", "width": 10, "height": 10},
     {"boxes": [{"x": 0.1, "y": 0, "w": 0, "h": 0.1, "label": "car"}]}, "must be positive"),
])
def test_a_submission_breaking_a_sanity_rule_is_refused_and_writes_nothing(task_type, data, result, message):
    # given an assignment on a task of the type
    team = factories.team(task_type=task_type)
    task = factories.tasks(team.batch, data=data)[0]
    assignment = give(task, team.annotators[0])
    before = world()

    # when the annotator submits a result that breaks a rule
    with pytest.raises(ValidationError) as refused:
        services.assignment_submit(assignment=assignment, actor=team.annotators[0], result=result)

    # then the message names the rule and nothing is written
    assert message in refused.value.message
    assert refused.value.errors["result"]
    assert world() == before


# --- who may take and review what -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_assign_never_exceeds_the_overlap():
    # given a task with overlap 2, reviewing everything, and four annotators
    team = factories.team(overlap=2)
    fourth = factories.member(team.project, Membership.Role.ANNOTATOR, "annotator3")
    a0, a1, a2 = team.annotators
    give(team.task, a0)
    give(team.task, a1)

    # when a third is given it, then it is refused and nothing is written
    before = world()
    with pytest.raises(TransitionError) as refused:
        give(team.task, a2)
    assert "already has the 2 annotators" in refused.value.message
    assert world() == before

    # when one submits (a submission holds its slot), a third is still refused
    submit(Assignment.objects.get(annotator=a0))
    with pytest.raises(TransitionError):
        give(team.task, a2)

    # when the other skips, the slot is free again, for a new annotator but not for the one who skipped
    services.assignment_skip(assignment=Assignment.objects.get(annotator=a1), actor=a1)
    give(team.task, a2)
    with pytest.raises(TransitionError):
        give(team.task, fourth)
    assert team.task.assignments.filter(status__in=[*Assignment.LIVE, *Assignment.DONE]).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("release", ["skip", "expire"])
def test_a_task_never_goes_twice_to_the_same_annotator(release):
    # given an annotator who had a task and gave it up or let the lease run out
    team = factories.team()
    annotator = team.annotators[0]
    assignment = give(team.task, annotator)
    if release == "skip":
        services.assignment_skip(assignment=assignment, actor=annotator)
    else:
        services.assignments_expire_due(now=timezone.now() + timedelta(hours=1))
    assert status_of(team.task) == "open"

    # when it is given to them again, then it is refused (and nothing is written)
    before = world()
    with pytest.raises(TransitionError) as refused:
        give(team.task, annotator)
    assert "already given to this annotator" in refused.value.message
    assert refused.value.current == "open"
    assert world() == before

    # and it goes to another annotator instead
    give(team.task, team.annotators[1])
    assert status_of(team.task) == "in_progress"


@pytest.mark.django_db
def test_a_reviewer_who_also_annotates_reviews_the_others_but_never_their_own():
    # given a reviewer who is also an annotator on an overlap-2 task
    team = factories.team(overlap=2)
    project_services.membership_add(project=team.project, user=team.reviewer, role=Membership.Role.ANNOTATOR)
    own = submit(give(team.task, team.reviewer))
    other = submit(give(team.task, team.annotators[0]))

    # when they review, then their own is refused and the other one is fine
    with pytest.raises(PermissionDeniedError):
        services.review_approve(annotation=own, reviewer=team.reviewer)
    services.review_approve(annotation=other, reviewer=team.reviewer)
    own.refresh_from_db()
    assert own.status == "submitted"
    assert status_of(team.task) == "in_review"
