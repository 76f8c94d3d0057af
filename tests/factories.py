"""factory_boy factories and a ready-made team, for given/when/then tests."""

from types import SimpleNamespace

import factory
from django.contrib.auth import get_user_model

from apps.projects import services as project_services
from apps.projects.models import Batch, Membership
from apps.tasks.models import Task

CLASSIFICATION_SCHEMA = {"labels": [{"value": "cat"}, {"value": "dog"}, {"value": "bird"}]}
SPAN_SCHEMA = {"labels": [{"value": "PER"}, {"value": "ORG"}, {"value": "LOC"}]}
BOX_SCHEMA = {"labels": [{"value": "car"}, {"value": "person"}]}


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.django.Password("pw-Secret-1")


def project(*, actor=None, task_type="classification", schema=None, slug=None, **options):
    actor = actor or UserFactory(username="admin", is_staff=True, is_superuser=True)
    schema = schema or {"classification": CLASSIFICATION_SCHEMA, "multilabel": CLASSIFICATION_SCHEMA,
                        "text_spans": SPAN_SCHEMA, "bounding_boxes": BOX_SCHEMA}[task_type]
    slug = slug or f"p-{UserFactory._meta.model.objects.count()}-{task_type}-{len(options)}"
    from apps.projects.models import Project

    while Project.objects.filter(slug=slug).exists():
        slug += "x"
    return project_services.project_create(actor=actor, name=slug.title(), slug=slug, task_type=task_type,
                                           label_schema=schema, guideline_text="Label what you see.", **options)


def member(project, role, username=None):
    user = UserFactory(username=username) if username else UserFactory()
    project_services.membership_add(project=project, user=user, role=role)
    return user


def batch(project, *, name=None, active=True, priority=0):
    created = Batch.objects.create(project=project, name=name or f"Batch {project.batches.count() + 1}",
                                   priority=priority)
    if active:
        project_services.batch_activate(batch=created, actor=None)
        created.refresh_from_db()
    return created


def tasks(batch, n=1, *, data=None, **fields):
    status = Task.Status.OPEN if batch.status == Batch.Status.ACTIVE else Task.Status.NEW
    created = [Task(project=batch.project, batch=batch, data=data or {"text": f"item {i}"}, status=status, **fields)
               for i in range(n)]
    return Task.objects.bulk_create(created)


class Team:
    """A project with its people: admin, manager, reviewer, three annotators, an outsider of another project."""

    def __init__(self, **options):
        self.admin = UserFactory(username="admin", is_staff=True, is_superuser=True)
        self.project = project(actor=self.admin, **options)
        self.manager = member(self.project, Membership.Role.MANAGER, "manager")
        self.reviewer = member(self.project, Membership.Role.REVIEWER, "reviewer")
        self.annotators = [member(self.project, Membership.Role.ANNOTATOR, f"annotator{i}") for i in range(3)]
        self.other_project = project(actor=self.admin, slug="other-project")
        self.outsider = member(self.other_project, Membership.Role.ANNOTATOR, "outsider")
        self.batch = batch(self.project)
        self.task = tasks(self.batch, 1)[0]


def team(**options):
    return Team(**options)


def crew(*, slug, annotators=4, **options):
    """A project an admin made (`options` as for `project`), its annotators ann0, ann1, … and an empty active
    batch "Main": the next-task engine's usual scene."""
    admin = UserFactory(username="admin", is_staff=True, is_superuser=True)
    made = project(actor=admin, slug=slug, **options)
    people = [member(made, Membership.Role.ANNOTATOR, f"ann{i}") for i in range(annotators)]
    return SimpleNamespace(project=made, annotators=people, batch=batch(made, name="Main"))
