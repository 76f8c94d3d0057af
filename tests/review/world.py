"""A review desk for the review-queue tests: a project, its annotators and reviewers of each seniority, tasks,
API clients speaking for each person, and the few steps (give, submit, decide) the tests repeat."""

from rest_framework.test import APIClient

from apps.annotators.models import AnnotatorProfile
from apps.projects.models import Membership
from apps.tasks import services
from apps.tasks.models import Annotation, TaskEvent
from tests import factories

TEXT = "Ada Lovelace met Charles Babbage in London."
# spans of TEXT
ADA = {"start": 0, "end": 12, "label": "PER"}
BABBAGE = {"start": 17, "end": 32, "label": "PER"}
LONDON = {"start": 36, "end": 42, "label": "LOC"}
SPAN_SCHEMA = {"labels": [{"value": "PER", "hotkey": "1"}, {"value": "ORG", "hotkey": "2"},
                          {"value": "LOC", "hotkey": "3"}]}


class Desk:
    """admin, manager, reviewers `junior` (no profile), `senior` and `lead`, annotators `ann0`…, tasks."""

    def __init__(self, *, task_type="classification", n_tasks=3, n_annotators=3, data=None, schema=None,
                 **options):
        options.setdefault("review_mode", "all")
        self.admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
        self.project = factories.project(actor=self.admin, task_type=task_type, schema=schema, slug="desk",
                                         **options)
        self.manager = factories.member(self.project, Membership.Role.MANAGER, "manager")
        self.junior, self.senior, self.lead = (factories.member(self.project, Membership.Role.REVIEWER, name)
                                               for name in ("junior", "senior", "lead"))
        AnnotatorProfile.objects.create(user=self.senior, seniority=AnnotatorProfile.Seniority.SENIOR)
        AnnotatorProfile.objects.create(user=self.lead, seniority=AnnotatorProfile.Seniority.LEAD)
        self.annotators = [factories.member(self.project, Membership.Role.ANNOTATOR, f"ann{i}")
                           for i in range(n_annotators)]
        self.batch = factories.batch(self.project)
        default = {"text": TEXT} if task_type == "text_spans" else None
        self.tasks = factories.tasks(self.batch, n_tasks, data=data or default)
        self.task = self.tasks[0]


def client(user):
    """An API client signed in as `user`."""
    api = APIClient()
    api.force_authenticate(user)
    return api


def browser_client(user):
    """A Django test client with `user`'s session, for the portal's pages."""
    from django.test import Client

    session = Client()
    session.force_login(user)
    return session


def give(task, annotator):
    return services.assignment_assign(task=task, annotator=annotator)


def submit(task, annotator, result=None):
    """`annotator` takes `task` and submits `result` (a cat by default): version 1."""
    assignment = give(task, annotator)
    return services.assignment_submit(assignment=assignment, actor=annotator, result=result or {"label": "cat"})


def reject(annotation, reviewer, codes=("wrong_label",), comment="Look again."):
    return services.review_reject(annotation=annotation, reviewer=reviewer, error_types=list(codes),
                                  comment=comment)


def fresh(obj):
    obj.refresh_from_db()
    return obj


def event_types(task):
    return list(TaskEvent.objects.filter(task=task).order_by("at", "id").values_list("type", flat=True))


def snapshot():
    """What a refused request must leave as it was."""
    from apps.quality.models import Review
    from apps.tasks.models import Assignment, Task

    return {
        "annotations": sorted(Annotation.objects.values_list("pk", "version", "status", "is_current", "author_id")),
        "assignments": sorted(Assignment.objects.values_list("pk", "status", "rework_count")),
        "tasks": sorted(Task.objects.values_list("pk", "status", "final_result")),
        "reviews": sorted(Review.objects.values_list("pk", "decision", "decided_at")),
        "events": TaskEvent.objects.count(),
    }


def text_of(html, value, attribute="id"):
    """The text inside the element whose `attribute` is `value`, whitespace collapsed (as a person reads it)."""
    from html.parser import HTMLParser

    class Reader(HTMLParser):
        depth, parts = 0, []
        VOID = {"br", "hr", "img", "input", "meta", "link", "wbr", "source"}

        def handle_starttag(self, tag, attrs):
            if self.depth and tag not in self.VOID:
                self.depth += 1
            elif dict(attrs).get(attribute) == value:
                self.depth = 1

        def handle_endtag(self, tag):
            if self.depth and tag not in self.VOID:
                self.depth -= 1

        def handle_data(self, data):
            if self.depth:
                self.parts.append(data)

    reader = Reader()
    reader.parts = []
    reader.feed(html.decode() if isinstance(html, bytes) else html)
    return " ".join("".join(reader.parts).split())
