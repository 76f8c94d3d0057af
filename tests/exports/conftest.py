"""A project whose tasks went the whole way: imported through the API, released, annotated by two annotators and
reviewed through the services, so that every exported record carries real provenance."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.projects import services as project_services
from apps.projects.models import Membership
from apps.tasks import services
from apps.tasks.models import Task
from tests import factories


class Labelled:
    """Overlap 2, every submission reviewed; `annotators[0]` and `annotators[1]` label, `reviewer` reviews."""

    def __init__(self, task_type, **options):
        options = {"overlap": 2, "review_mode": "all"} | options
        self.admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
        self.project = factories.project(actor=self.admin, task_type=task_type, slug=f"export-{task_type}",
                                         **options)
        self.manager = factories.member(self.project, Membership.Role.MANAGER, "manager")
        self.reviewer = factories.member(self.project, Membership.Role.REVIEWER, "reviewer")
        self.annotators = [factories.member(self.project, Membership.Role.ANNOTATOR, f"annotator{i}")
                           for i in range(2)]
        self.api = APIClient()
        self.api.force_authenticate(self.manager)

    # --- given ----------------------------------------------------------------------------------------------------

    def import_tasks(self, rows, *, activate=True):
        """POST the rows to the import endpoint as the manager; returns the batch they went into, released."""
        response = self.api.post(reverse("api:import", args=[self.project.pk]), rows, format="json")
        assert response.status_code == 201, response.json()
        batch = self.project.batches.get(pk=response.json()["batch"])
        if activate:
            project_services.batch_activate(batch=batch, actor=self.manager)
            batch.refresh_from_db()
        return batch

    def task(self, external_id):
        return Task.objects.get(project=self.project, external_id=external_id)

    def submit(self, task, annotator, result, *, lead_time=10.0):
        assignment = services.assignment_assign(task=task, annotator=annotator)
        return services.assignment_submit(assignment=assignment, actor=annotator, result=result,
                                          notes=f"notes of {annotator.username}", lead_time_seconds=lead_time)

    def label(self, external_id, *results, decisions=None):
        """Each annotator submits their result; the reviewer approves each (or follows `decisions`, a list of
        callables taking (labelled, annotation) per annotator). Returns the task, refreshed."""
        task = self.task(external_id)
        annotations = [self.submit(task, annotator, result) for annotator, result in zip(self.annotators, results)]
        for n, annotation in enumerate(annotations):
            decide = (decisions or {}).get(n, approve)
            decide(self, annotation)
        task.refresh_from_db()
        return task

    def guideline(self, text):
        return project_services.guideline_add(project=self.project, actor=self.manager, text=text)

    # --- when -----------------------------------------------------------------------------------------------------

    def export(self, **query):
        return self.api.get(reverse("api:export", args=[self.project.pk]), query)


def approve(labelled, annotation):
    services.review_approve(annotation=annotation, reviewer=labelled.reviewer, comment="fine")


def reject_then(resubmitted):
    """Reject with an error type; the annotator resubmits `resubmitted`; the reviewer approves the new version."""

    def decide(labelled, annotation):
        services.review_reject(annotation=annotation, reviewer=labelled.reviewer, error_types=["wrong_label"],
                               comment="look again")
        annotation.assignment.refresh_from_db()
        again = services.assignment_resubmit(assignment=annotation.assignment, actor=annotation.annotator,
                                             result=resubmitted, lead_time_seconds=5.0)
        approve(labelled, again)

    return decide


def fix_with(corrected):
    def decide(labelled, annotation):
        services.review_fix(annotation=annotation, reviewer=labelled.reviewer, corrected_result=corrected,
                            error_types=["boundary"], comment="fixed")

    return decide


def body(response):
    """The whole streamed body, decoded."""
    assert response.streaming
    return b"".join(response.streaming_content).decode("utf-8")


@pytest.fixture
def labelled(db):
    return Labelled
