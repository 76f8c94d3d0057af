"""The two review queues: `review` (everything but escalations) and `escalations` (senior and lead reviewers only),
served apart or together (escalations first); a reviewer never gets back what they escalated; each queue's length
and oldest waiting age; the review page's queue switch."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.tasks import services
from apps.tasks.models import Annotation
from apps.tasks.review_queue import ESCALATIONS, REVIEW_QUEUE, review_next, review_queue, review_queue_stats

from .world import Desk, browser_client, submit, text_of

pytestmark = pytest.mark.django_db


def escalate(annotation, reviewer, comment="Unsure"):
    return services.review_escalate(annotation=annotation, reviewer=reviewer, comment=comment)


def backdate(annotation, **delta):
    Annotation.objects.filter(pk=annotation.pk).update(submitted_at=timezone.now() - timedelta(**delta))


def test_a_senior_who_escalated_never_gets_that_escalation_back():
    # given a senior who escalates a submission, and a plain one waiting
    desk = Desk(n_tasks=2)
    hard = submit(desk.tasks[0], desk.annotators[0])
    plain = submit(desk.tasks[1], desk.annotators[1])
    escalate(hard, desk.senior)

    # then it is in no queue of theirs, not even the escalations, and never handed to them
    assert hard not in review_queue(project=desk.project, reviewer=desk.senior)
    assert list(review_queue(project=desk.project, reviewer=desk.senior, queue=ESCALATIONS)) == []
    assert review_next(project=desk.project, reviewer=desk.senior, queue=ESCALATIONS) is None
    assert review_next(project=desk.project, reviewer=desk.senior) == plain
    # while the lead gets it first
    assert review_next(project=desk.project, reviewer=desk.lead) == hard


def test_each_queue_is_served_apart_and_both_together_escalations_first():
    # given two plain submissions (the oldest first) and an escalation
    desk = Desk(n_tasks=3)
    plains = [submit(task, desk.annotators[i]) for i, task in enumerate(desk.tasks[:2])]
    hard = submit(desk.tasks[2], desk.annotators[2])
    escalate(hard, desk.junior)

    # the review queue holds no escalation, the escalations queue nothing else; together, escalations first
    assert list(review_queue(project=desk.project, reviewer=desk.senior, queue=REVIEW_QUEUE)) == plains
    assert list(review_queue(project=desk.project, reviewer=desk.senior, queue=ESCALATIONS)) == [hard]
    assert list(review_queue(project=desk.project, reviewer=desk.senior)) == [hard, *plains]
    # a junior has no escalations queue
    assert list(review_queue(project=desk.project, reviewer=desk.junior, queue=ESCALATIONS)) == []
    assert review_next(project=desk.project, reviewer=desk.junior, queue=ESCALATIONS) is None

    # when the senior asks for the review queue, they get the oldest plain one, not the escalation
    assert review_next(project=desk.project, reviewer=desk.senior, queue=REVIEW_QUEUE) == plains[0]
    # and their open review (a plain one) does not come back when they ask for the escalations
    assert review_next(project=desk.project, reviewer=desk.senior, queue=ESCALATIONS) == hard
    # both open reviews come back, each in its own queue
    assert review_next(project=desk.project, reviewer=desk.senior, queue=REVIEW_QUEUE) == plains[0]
    assert review_next(project=desk.project, reviewer=desk.senior, queue=ESCALATIONS) == hard


def test_an_unknown_queue_is_refused():
    desk = Desk(n_tasks=1)
    with pytest.raises(ValueError):
        list(review_queue(project=desk.project, reviewer=desk.senior, queue="everything"))


def test_each_queue_s_length_and_oldest_waiting_age():
    # given three plain submissions (the oldest two hours old) and an escalation five hours old
    desk = Desk(n_tasks=4)
    waiting = [submit(task, desk.annotators[i % 3]) for i, task in enumerate(desk.tasks)]
    backdate(waiting[0], hours=2)
    backdate(waiting[3], hours=5)
    escalate(waiting[3], desk.junior)

    senior = review_queue_stats(project=desk.project, reviewer=desk.senior)
    junior = review_queue_stats(project=desk.project, reviewer=desk.junior)

    assert senior[REVIEW_QUEUE]["length"] == 3 and senior[ESCALATIONS]["length"] == 1
    assert 2 * 3600 <= senior[REVIEW_QUEUE]["oldest_seconds"] < 2 * 3600 + 60
    assert 5 * 3600 <= senior[ESCALATIONS]["oldest_seconds"] < 5 * 3600 + 60
    assert junior == {REVIEW_QUEUE: {"length": 3, "oldest_seconds": senior[REVIEW_QUEUE]["oldest_seconds"]},
                      ESCALATIONS: None}
    # an empty queue has no age
    for annotation in waiting[:3]:
        services.review_approve(annotation=annotation, reviewer=desk.junior)
    assert review_queue_stats(project=desk.project, reviewer=desk.lead)[REVIEW_QUEUE] == {
        "length": 0, "oldest_seconds": None}


def test_the_review_page_offers_a_senior_both_queues_with_their_lengths():
    # given two plain submissions and an escalation
    desk = Desk(n_tasks=3)
    for i, task in enumerate(desk.tasks):
        submit(task, desk.annotators[i])
    escalate(Annotation.objects.get(task=desk.tasks[2]), desk.junior)
    url = f"/projects/{desk.project.pk}/review/"

    senior = browser_client(desk.senior).get(url)
    junior = browser_client(desk.junior).get(url)

    # a senior sees the switch, the escalations chosen (they have some), the line counting both queues
    assert text_of(senior.content, "tab-review") == "Review queue (2)"
    assert text_of(senior.content, "tab-escalations") == "Escalations (1)"
    assert senior.context["config"]["queue"] == "escalations"
    assert 'id="tab-escalations" data-queue="escalations" aria-pressed="true"' in senior.content.decode()
    assert text_of(senior.content, "queue-length") == "3 waiting"
    # the address can name the queue
    assert browser_client(desk.senior).get(url + "?queue=review").context["config"]["queue"] == "review"
    # a junior has one queue, no switch
    assert 'id="queue-tabs"' not in junior.content.decode()
    assert junior.context["config"]["queue"] == "review"
    assert browser_client(desk.junior).get(url + "?queue=escalations").context["config"]["queue"] == "review"
    assert text_of(junior.content, "queue-length") == "2 waiting"


def test_a_senior_with_no_escalations_starts_on_the_review_queue():
    desk = Desk(n_tasks=1)
    submit(desk.task, desk.annotators[0])

    page = browser_client(desk.lead).get(f"/projects/{desk.project.pk}/review/")

    assert page.context["config"]["queue"] == "review"
    assert text_of(page.content, "tab-escalations") == "Escalations (0)"
