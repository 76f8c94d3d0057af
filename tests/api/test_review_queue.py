"""The review queue: never one's own work, escalations only to senior and lead reviewers, rework resubmissions
first, then the oldest; a reviewer's open review comes back to them; two reviewers never get the same annotation."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.annotators.models import AnnotatorProfile
from apps.projects import services as project_services
from apps.projects.models import Membership
from apps.quality.models import Review
from apps.tasks import services
from apps.tasks.models import Annotation
from apps.tasks.review_queue import CLAIM_MINUTES, review_next, review_queue
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk(db):
    """A classification project (overlap 1, review everything): five tasks, two annotators, three reviewers."""
    admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
    project = factories.project(actor=admin, slug="desk", review_mode="all")

    class Desk:
        pass

    desk = Desk()
    desk.project = project
    desk.annotators = [factories.member(project, Membership.Role.ANNOTATOR, f"ann{i}") for i in range(2)]
    desk.junior, desk.senior, desk.lead = (factories.member(project, Membership.Role.REVIEWER, name)
                                           for name in ("junior", "senior", "lead"))
    AnnotatorProfile.objects.create(user=desk.senior, seniority="senior")
    AnnotatorProfile.objects.create(user=desk.lead, seniority="lead")
    batch = factories.batch(project)
    desk.tasks = factories.tasks(batch, 5)
    return desk


def submit(desk, task, annotator=None, label="cat"):
    annotator = annotator or desk.annotators[0]
    assignment = services.assignment_assign(task=task, annotator=annotator)
    return services.assignment_submit(assignment=assignment, actor=annotator, result={"label": label})


def decide(annotation, reviewer):
    services.review_approve(annotation=annotation, reviewer=reviewer)


def test_the_oldest_submission_comes_first(desk):
    first = submit(desk, desk.tasks[0])
    second = submit(desk, desk.tasks[1])

    assert review_next(project=desk.project, reviewer=desk.junior) == first
    assert review_next(project=desk.project, reviewer=desk.senior) == second


def test_a_reviewer_never_gets_their_own_work(desk):
    project_services.membership_add(project=desk.project, user=desk.junior, role="annotator")
    own = submit(desk, desk.tasks[0], annotator=desk.junior)

    assert review_next(project=desk.project, reviewer=desk.junior) is None
    assert own not in review_queue(project=desk.project, reviewer=desk.junior)
    assert review_next(project=desk.project, reviewer=desk.senior) == own


def test_escalations_go_only_to_senior_and_lead_reviewers_and_before_anything_else(desk):
    plain = submit(desk, desk.tasks[0])
    hard = submit(desk, desk.tasks[1])
    services.review_escalate(annotation=hard, reviewer=desk.junior, comment="Cannot decide")

    assert hard not in review_queue(project=desk.project, reviewer=desk.junior)
    assert list(review_queue(project=desk.project, reviewer=desk.senior)) == [hard, plain]
    assert review_next(project=desk.project, reviewer=desk.lead) == hard
    assert review_next(project=desk.project, reviewer=desk.junior) == plain


def test_a_junior_never_gets_an_escalation_even_when_it_is_all_that_is_left(desk):
    hard = submit(desk, desk.tasks[0])
    services.review_escalate(annotation=hard, reviewer=desk.senior, comment="Ask the lead")

    assert review_next(project=desk.project, reviewer=desk.junior) is None
    assert review_next(project=desk.project, reviewer=desk.lead) == hard


def test_rework_resubmissions_come_before_first_submissions(desk):
    rejected = submit(desk, desk.tasks[0])
    services.review_reject(annotation=rejected, reviewer=desk.junior, error_types=["wrong_label"],
                           comment="Not a cat")
    waiting = submit(desk, desk.tasks[1])  # submitted before the resubmission below
    resubmitted = services.assignment_resubmit(assignment=rejected.assignment, actor=desk.annotators[0],
                                               result={"label": "dog"})

    assert list(review_queue(project=desk.project, reviewer=desk.junior)) == [resubmitted, waiting]
    assert review_next(project=desk.project, reviewer=desk.junior) == resubmitted


def test_two_reviewers_never_get_the_same_annotation(desk):
    submitted = [submit(desk, task) for task in desk.tasks[:3]]

    given = [review_next(project=desk.project, reviewer=reviewer) for reviewer in (desk.junior, desk.senior,
                                                                                   desk.lead)]

    assert sorted(a.pk for a in given) == sorted(a.pk for a in submitted)
    assert review_next(project=desk.project, reviewer=factories.member(desk.project, "reviewer", "late")) is None


def test_a_reviewer_s_open_review_comes_back_to_them_first(desk):
    first = submit(desk, desk.tasks[0])
    assert review_next(project=desk.project, reviewer=desk.junior) == first
    resubmitted_first = submit(desk, desk.tasks[1])  # would rank higher in the queue if it were a resubmission
    services.review_reject(annotation=resubmitted_first, reviewer=desk.senior, error_types=["wrong_label"],
                           comment="Not a cat")
    resubmitted = services.assignment_resubmit(assignment=resubmitted_first.assignment, actor=desk.annotators[0],
                                               result={"label": "dog"})

    assert review_next(project=desk.project, reviewer=desk.junior) == first
    assert Review.objects.filter(annotation=first).count() == 1  # the same review, not a second one
    assert review_next(project=desk.project, reviewer=desk.senior) == resubmitted


def test_an_abandoned_claim_is_released_after_the_claim_time(desk):
    first = submit(desk, desk.tasks[0])
    review_next(project=desk.project, reviewer=desk.junior)
    assert review_next(project=desk.project, reviewer=desk.senior) is None
    Review.objects.filter(annotation=first).update(
        started_at=timezone.now() - timedelta(minutes=CLAIM_MINUTES + 1))

    assert review_next(project=desk.project, reviewer=desk.senior) == first


def test_decided_accepted_and_cancelled_work_leaves_the_queue(desk):
    approved = submit(desk, desk.tasks[0])
    decide(approved, desk.junior)
    cancelled = submit(desk, desk.tasks[1])
    services.task_cancel(task=desk.tasks[1], actor=desk.project.created_by)

    queue = list(review_queue(project=desk.project, reviewer=desk.senior))

    assert approved not in queue and cancelled not in queue


def test_an_open_review_of_a_task_cancelled_meanwhile_does_not_come_back(desk):
    """The reviewer opened it; a manager cancelled the task. Giving it back would leave the reviewer stuck: every
    decision on it is refused (409) and review/next would answer it again and again."""
    doomed = submit(desk, desk.tasks[0])
    waiting = submit(desk, desk.tasks[1])
    assert review_next(project=desk.project, reviewer=desk.junior) == doomed
    services.task_cancel(task=desk.tasks[0], actor=desk.project.created_by)

    assert review_next(project=desk.project, reviewer=desk.junior) == waiting


def test_gold_submissions_are_never_queued(desk):
    gold = factories.tasks(desk.tasks[0].batch, 1, is_gold=True, gold_answer={"label": "cat"})[0]
    submit(desk, gold)

    assert review_next(project=desk.project, reviewer=desk.lead) is None


def test_only_reviewers_are_served(desk):
    from apps.core.errors import PermissionDeniedError

    submit(desk, desk.tasks[0])
    with pytest.raises(PermissionDeniedError):
        review_next(project=desk.project, reviewer=desk.annotators[1])
    assert not Review.objects.exists()


# --- the API: a queue to choose, the lengths and the guideline in the answer -----------------------------------------


def api(user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    return client


def next_of(desk, user, **body):
    return api(user).post(f"/api/v1/projects/{desk.project.pk}/review/next/", body or None, format="json")


def test_review_next_serves_the_queue_asked_for(desk):
    plain = submit(desk, desk.tasks[0])
    hard = submit(desk, desk.tasks[1], annotator=desk.annotators[1])
    services.review_escalate(annotation=hard, reviewer=desk.junior, comment="Cannot decide")

    review = next_of(desk, desk.senior, queue="review")
    escalation = next_of(desk, desk.senior, queue="escalations")

    assert (review.status_code, review.json()["annotation"]["id"], review.json()["queue"]) == (200, plain.pk, "review")
    assert (escalation.json()["annotation"]["id"], escalation.json()["queue"]) == (hard.pk, "escalations")
    # a junior has no escalations queue: nothing for them there
    assert next_of(desk, desk.junior, queue="escalations").status_code == 204
    # an unknown queue is refused
    refused = next_of(desk, desk.lead, queue="everything")
    assert refused.status_code == 400 and "queue" in refused.json()["errors"]
    assert not Review.objects.filter(reviewer=desk.lead).exists()


def test_review_next_without_a_queue_serves_escalations_first_as_before(desk):
    submit(desk, desk.tasks[0])
    hard = submit(desk, desk.tasks[1], annotator=desk.annotators[1])
    services.review_escalate(annotation=hard, reviewer=desk.junior, comment="Cannot decide")

    answer = next_of(desk, desk.lead)

    assert answer.json()["annotation"]["id"] == hard.pk and answer.json()["queue"] == "escalations"


def test_the_escalating_reviewer_never_gets_it_back_through_the_api(desk):
    hard = submit(desk, desk.tasks[0])
    assert next_of(desk, desk.senior).json()["annotation"]["id"] == hard.pk
    escalated = api(desk.senior).post(f"/api/v1/annotations/{hard.pk}/review/",
                                      {"decision": "escalate", "comment": "Ask the lead"}, format="json")
    assert escalated.status_code == 201

    assert next_of(desk, desk.senior).status_code == 204
    assert next_of(desk, desk.senior, queue="escalations").status_code == 204
    assert next_of(desk, desk.lead, queue="escalations").json()["annotation"]["id"] == hard.pk


def test_review_next_answers_the_queue_lengths_after_each_claim(desk):
    # given four submissions, the oldest an hour old, and one of them escalated
    first, second, third, _fourth = (submit(desk, task) for task in desk.tasks[:4])
    Annotation.objects.filter(pk=first.pk).update(submitted_at=timezone.now() - timedelta(hours=1))
    services.review_escalate(annotation=third, reviewer=desk.junior, comment="Unsure")

    answer = next_of(desk, desk.senior, queue="review").json()

    # the lengths count the annotation just handed out
    assert answer["annotation"]["id"] == first.pk
    assert answer["queues"]["review"]["length"] == 3 and answer["queues"]["escalations"]["length"] == 1
    assert 3600 <= answer["queues"]["review"]["oldest_seconds"] < 3660
    # after the decision, the next answer tells the queue shrank and the oldest is younger
    decide(first, desk.senior)
    answer = next_of(desk, desk.senior, queue="review").json()
    assert answer["annotation"]["id"] == second.pk
    assert answer["queues"]["review"]["length"] == 2 and answer["queues"]["review"]["oldest_seconds"] < 60
    # a junior's answer has no escalations queue
    assert next_of(desk, desk.junior).json()["queues"]["escalations"] is None


def test_review_next_answers_the_guideline_the_annotation_was_made_under(desk):
    # given a submission made under guideline v1, then the guideline rewritten (v2)
    made = submit(desk, desk.tasks[0])
    assert made.guideline_version == 1
    project_services.guideline_add(project=desk.project, actor=desk.project.created_by,
                                   text="Cats only.\n\nDogs are <b>not</b> cats.")

    answer = next_of(desk, desk.junior).json()

    assert answer["annotation"]["guideline_version"] == 1
    assert answer["guideline"] == {"version": 1, "text": "Label what you see."}
    # work submitted now is under v2
    later = submit(desk, desk.tasks[1])
    assert next_of(desk, desk.senior).json()["guideline"] == {"version": 2,
                                                              "text": "Cats only.\n\nDogs are <b>not</b> cats."}
    assert later.guideline_version == 2


def test_an_own_review_another_reviewer_took_over_is_not_served_again_through_the_api(desk):
    # given the junior opened an annotation, left for longer than the claim, and the senior took it since
    first = submit(desk, desk.tasks[0])
    assert next_of(desk, desk.junior).json()["annotation"]["id"] == first.pk
    Review.objects.filter(annotation=first, reviewer=desk.junior).update(
        started_at=timezone.now() - timedelta(minutes=CLAIM_MINUTES + 1))
    assert next_of(desk, desk.senior).json()["annotation"]["id"] == first.pk

    # then the junior's review/next does not serve it again (each decision would be 409 "claimed by senior", and
    # the page reloads after a 409: a loop for the claim's minutes)
    assert next_of(desk, desk.junior).status_code == 204
    refused = api(desk.junior).post(f"/api/v1/annotations/{first.pk}/review/", {"decision": "approve"},
                                    format="json")
    assert refused.status_code == 409 and "claimed by senior" in refused.json()["detail"]


def test_escalated_work_a_junior_had_open_is_served_to_the_seniors_through_the_api(desk):
    # given the junior's open review, then low-agreement routing escalates the task
    first = submit(desk, desk.tasks[0])
    assert next_of(desk, desk.junior).json()["annotation"]["id"] == first.pk
    services.task_escalate_to_senior_review(task=desk.tasks[0], comment="Low agreement")

    # then the escalations queue serves it to a senior at once, as the decision allows
    answer = next_of(desk, desk.senior, queue="escalations")
    assert (answer.status_code, answer.json()["annotation"]["id"]) == (200, first.pk)
    assert answer.json()["queues"]["escalations"]["length"] == 1
