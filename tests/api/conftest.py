"""A project with one object of every kind the API serves, its people, and clients that speak for each of them.

Markers are strings that must stay private: a gold answer only managers and admins may read, and a second
annotator's work that the first annotator may never see (blind overlap).
"""

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.projects import services as project_services
from apps.projects.models import Membership
from apps.quality.models import Alert, MetricSnapshot
from apps.tasks import services as task_services
from apps.tasks.models import Task
from tests import factories

GOLD_MARKER = "GOLD-ANSWER-7c1e9b"
PEER_MARKER = "PEER-WORK-4d2a61"
CONFIDENTIAL_MARKER = "CONFIDENTIAL-QUESTION-93be"
SCHEMA = {"labels": [{"value": "cat"}, {"value": "dog"}, {"value": "bird"}]}
ROLES = ("anonymous", "outsider", "annotator", "reviewer", "manager", "admin")


def client_for(user):
    """An API client sending the user's token (`Authorization: Token <key>`), or an anonymous one."""
    client = APIClient()
    if user is not None:
        token, _created = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def body_of(response):
    """The full response body as text, streamed or not."""
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode("utf-8", "replace")
    return response.content.decode("utf-8", "replace")


class ApiWorld:
    """Everything the API shows, in one classification project (overlap 2, review everything).

    - `task`: annotator A holds a live assignment on it; annotator B submitted it (notes and an extra result key
      carry PEER_MARKER), so `annotation` (B's) waits for review.
    - `gold`: a gold task whose answer carries GOLD_MARKER; A was given it and submitted an answer.
    - `asked`: A asked a question about it (their assignment went on hold): `clarification`; B asked a
      confidential one too (`confidential_clarification`, carrying CONFIDENTIAL_MARKER).
    - `free`: open tasks nobody has touched.
    - a project gate with an open alert, metric snapshots, and another project with its own annotator.
    """

    def __init__(self):
        self.admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
        self.project = factories.project(actor=self.admin, schema=SCHEMA, slug="this-project", overlap=2,
                                         review_mode="all")
        self.manager = factories.member(self.project, Membership.Role.MANAGER, "manager")
        self.reviewer = factories.member(self.project, Membership.Role.REVIEWER, "reviewer")
        self.annotator = factories.member(self.project, Membership.Role.ANNOTATOR, "annotator_a")
        self.annotator_b = factories.member(self.project, Membership.Role.ANNOTATOR, "annotator_b")
        self.other_project = factories.project(actor=self.admin, slug="other-project")
        self.outsider = factories.member(self.other_project, Membership.Role.ANNOTATOR, "outsider")
        self.other_batch = factories.batch(self.other_project)
        self.other_task = factories.tasks(self.other_batch, 1, data={"text": "elsewhere"})[0]

        self.batch = factories.batch(self.project, name="Batch one")
        self.draft_batch = factories.batch(self.project, name="Draft batch", active=False)
        self.task, self.asked, *self.free = factories.tasks(self.batch, 5, data={"text": "a cat on a mat"})
        self.gold = factories.tasks(self.batch, 1, data={"text": "a gold sample"}, is_gold=True,
                                    gold_answer={"label": "bird", "gold_note": GOLD_MARKER})[0]

        a, b = self.annotator, self.annotator_b
        self.assignment_b = task_services.assignment_assign(task=self.task, annotator=b)
        self.annotation = task_services.assignment_submit(
            assignment=self.assignment_b, actor=b, result={"label": "dog", "peer_note": PEER_MARKER},
            notes=f"my private note {PEER_MARKER}")
        self.assignment = task_services.assignment_assign(task=self.task, annotator=a)
        task_services.assignment_start(assignment=self.assignment, actor=a)
        self.gold_assignment = task_services.assignment_assign(task=self.gold, annotator=a)
        self.gold_annotation = task_services.assignment_submit(assignment=self.gold_assignment, actor=a,
                                                               result={"label": "cat"})
        self.asked_assignment = task_services.assignment_assign(task=self.asked, annotator=a)
        self.clarification = task_services.clarification_ask(task=self.asked, actor=a,
                                                             question="Is a lynx a cat?")
        task_services.assignment_assign(task=self.asked, annotator=b)
        self.confidential_clarification = task_services.clarification_ask(
            task=self.asked, actor=b, question=f"Private: {CONFIDENTIAL_MARKER}", confidential=True)

        self.gate = project_services.gate_create(project=self.project, actor=None, metric="agreement",
                                                 comparator="gte", threshold=0.7, min_samples=10)
        self.alert = Alert.objects.create(kind="gate_breach", project=self.project, gate=self.gate,
                                          message="Agreement 0.41 is below 0.7")
        self.other_gate = project_services.gate_create(project=self.other_project, actor=None,
                                                       metric="agreement", comparator="gte", threshold=0.7)
        self.other_alert = Alert.objects.create(kind="gate_breach", project=self.other_project,
                                                gate=self.other_gate, message="Elsewhere")
        now = timezone.now()
        MetricSnapshot.objects.create(project=self.project, scope="project", kind="progress", computed_at=now,
                                      values={"total": 7, "by_status": {"open": 3}, "accepted_pct": 0.0})
        MetricSnapshot.objects.create(
            project=self.project, scope="project", kind="annotators", computed_at=now,
            values={"annotators": [{"annotator_id": a.pk, "username": a.username, "submitted": 2},
                                   {"annotator_id": b.pk, "username": b.username, "submitted": 2}],
                    "distribution": {"submitted": [2, 2]}})

    def user(self, role):
        return {"anonymous": None, "outsider": self.outsider, "annotator": self.annotator,
                "reviewer": self.reviewer, "manager": self.manager, "admin": self.admin}[role]

    def client(self, role):
        return client_for(self.user(role))


@pytest.fixture
def world(db):
    return ApiWorld()


@pytest.fixture
def api():
    """`api(user)` → an APIClient authenticated with the user's token."""
    return client_for


def assert_error(response, status, *, detail_contains=None, error_keys=None):
    """The contract's error shape: `{"detail": "...", "errors": {...}}` with the given status."""
    assert response.status_code == status, (response.status_code, getattr(response, "data", None))
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("detail"), str) and body["detail"], body
    assert isinstance(body.get("errors"), dict), body
    if detail_contains is not None:
        assert detail_contains in body["detail"], body
    if error_keys is not None:
        assert set(error_keys) <= set(body["errors"]), body
    return body


def task_count(project):
    return Task.objects.filter(project=project).count()
