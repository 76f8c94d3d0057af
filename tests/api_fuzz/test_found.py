"""Requests Schemathesis found answering 500, kept as plain regression tests."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.projects.models import QualityGate
from apps.tasks.models import Task

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager_client(team):
    client = APIClient()
    client.force_authenticate(team.manager)
    return client


def test_a_gate_without_a_comparator_takes_the_default(team, manager_client):
    # POST /projects/{id}/gates/ {"metric": "agreement", "threshold": 0.0} was a TypeError in gate_create()
    response = manager_client.post(reverse("api:gate-list", args=[team.project.pk]),
                                   {"metric": "agreement", "threshold": 0.0}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["comparator"] == "gte"
    assert QualityGate.objects.get(project=team.project).comparator == "gte"


@pytest.mark.parametrize("content_type", ["text/csv", "application/x-ndjson"])
def test_an_empty_csv_or_jsonl_body_is_a_400(team, manager_client, content_type):
    # POST /projects/{id}/import/ with Content-Type text/csv and no body: '_EmptyStream' had no readline
    tasks = Task.objects.count()

    response = manager_client.generic("POST", reverse("api:import", args=[team.project.pk]), b"",
                                      content_type=content_type)

    assert response.status_code == 400, response.content
    assert response.json()["detail"]
    assert Task.objects.count() == tasks
