"""Review latency and workload: each Review row records when the reviewer took the annotation (started_at) and
when they decided (decided_at); the review page shows how many wait for the reviewer and how old the oldest is;
the home page shows managers and reviewers the review backlog of each of their projects."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.projects.models import Membership
from apps.quality.models import Review
from apps.tasks.models import Annotation
from tests import factories

from .world import Desk, browser_client, client, submit, text_of

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("body", [
    {"decision": "approve"},
    {"decision": "reject", "error_types": ["wrong_label"], "comment": "A dog"},
    {"decision": "fix", "corrected_result": {"label": "dog"}},
    {"decision": "escalate", "comment": "Unsure"},
])
def test_a_review_records_when_it_was_taken_and_when_it_was_decided(body):
    # given a submission
    desk = Desk(n_tasks=1)
    annotation = submit(desk.task, desk.annotators[0])

    # when the reviewer takes it from the queue, an open review records the start
    before_claim = timezone.now()
    assert client(desk.junior).post(f"/api/v1/projects/{desk.project.pk}/review/next/").status_code == 200
    after_claim = timezone.now()
    [review] = Review.objects.filter(annotation=annotation)
    assert before_claim <= review.started_at <= after_claim
    assert (review.reviewer, review.decision, review.decided_at) == (desk.junior, "", None)
    # (the reviewer takes seven minutes to look at it)
    Review.objects.filter(pk=review.pk).update(started_at=review.started_at - timedelta(minutes=7))

    # when they decide, the same review records the decision time
    before_decision = timezone.now()
    response = client(desk.junior).post(f"/api/v1/annotations/{annotation.pk}/review/", body, format="json")
    after_decision = timezone.now()

    assert response.status_code == 201, response.json()
    [review] = Review.objects.filter(annotation=annotation)
    assert review.decision == body["decision"]
    assert before_decision <= review.decided_at <= after_decision
    assert timedelta(minutes=7) <= review.decided_at - review.started_at < timedelta(minutes=8)
    # and the API shows both times
    shown = response.json()
    assert shown["started_at"] and shown["decided_at"] and shown["id"] == review.pk


@pytest.mark.parametrize("how", ["decision", "pairwise"])
def test_a_decision_without_taking_it_from_the_queue_first_is_not_decided_before_it_started(how):
    desk = Desk(n_tasks=1, overlap=2 if how == "pairwise" else 1)
    annotations = [submit(desk.task, annotator) for annotator in desk.annotators[:2 if how == "pairwise" else 1]]

    if how == "pairwise":
        client(desk.junior).post(f"/api/v1/tasks/{desk.task.pk}/review/pairwise/",
                                 {"annotation": annotations[0].pk}, format="json")
    else:
        client(desk.junior).post(f"/api/v1/annotations/{annotations[0].pk}/review/", {"decision": "approve"},
                                 format="json")

    reviews = Review.objects.filter(annotation__in=annotations)
    assert reviews.count() == len(annotations)
    for review in reviews:
        assert review.started_at <= review.decided_at


def backdate(annotation, **delta):
    Annotation.objects.filter(pk=annotation.pk).update(submitted_at=timezone.now() - timedelta(**delta))


def test_the_review_page_shows_the_reviewer_s_queue_length_and_the_oldest_waiting_age():
    # given three submissions waiting, the oldest two hours old, and one escalated (for seniors only)
    desk = Desk(n_tasks=4)
    waiting = [submit(task, desk.annotators[i % 3]) for i, task in enumerate(desk.tasks)]
    backdate(waiting[0], hours=2, seconds=5)
    backdate(waiting[1], minutes=30)
    backdate(waiting[3], hours=5, seconds=5)
    client(desk.lead).post(f"/api/v1/annotations/{waiting[3].pk}/review/",
                           {"decision": "escalate", "comment": "Unsure"}, format="json")

    junior = browser_client(desk.junior).get(f"/projects/{desk.project.pk}/review/")
    senior = browser_client(desk.senior).get(f"/projects/{desk.project.pk}/review/")

    assert junior.status_code == 200
    assert text_of(junior.content, "queue") == "3 waiting, oldest 2 hours"
    assert text_of(senior.content, "queue") == "4 waiting, oldest 5 hours · you take escalations"


def test_the_review_page_of_an_empty_queue_says_none_are_waiting():
    desk = Desk(n_tasks=1)

    page = browser_client(desk.junior).get(f"/projects/{desk.project.pk}/review/")

    assert text_of(page.content, "queue") == "0 waiting"


def test_the_home_page_shows_managers_the_review_backlog_per_project():
    # given two projects the manager manages: three submissions wait in one (the oldest for a day), one in the
    # other, and a third project where nothing waits
    desk = Desk(n_tasks=3)
    for i, task in enumerate(desk.tasks):
        annotation = submit(task, desk.annotators[i])
    backdate(annotation, days=1, seconds=5)
    second = factories.project(actor=desk.admin, slug="second")
    factories.member(second, Membership.Role.MANAGER, "manager")
    other_annotator = factories.member(second, Membership.Role.ANNOTATOR, "other")
    submit(factories.tasks(factories.batch(second), 1)[0], other_annotator)
    quiet = factories.project(actor=desk.admin, slug="quiet")
    factories.member(quiet, Membership.Role.MANAGER, "manager")

    home = browser_client(desk.manager).get("/")

    assert "Review backlog 3 oldest 1 day" in text_of(home.content, f"p{desk.project.pk}", "aria-labelledby")
    assert "Review backlog 1 oldest" in text_of(home.content, f"p{second.pk}", "aria-labelledby")
    assert "Review backlog 0" in text_of(home.content, f"p{quiet.pk}", "aria-labelledby")
    # an annotator of the project is not shown the backlog
    annotator_home = browser_client(desk.annotators[0]).get("/")
    assert "Review backlog" not in annotator_home.content.decode()
