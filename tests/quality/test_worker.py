"""A real Celery worker on Redis: the progress recompute chains the quality pass, which writes the snapshots,
breaches the gate and raises its alert."""

from unittest import mock

import pytest

from apps.projects import services as project_services
from apps.projects.models import Membership
from apps.quality.models import Alert, MetricSnapshot
from apps.quality.tasks import progress_recompute
from apps.tasks import services
from tests import factories
from tests.conftest import wait_for

pytestmark = [pytest.mark.redis]


def test_a_real_worker_computes_the_figures_and_raises_the_alert(celery_worker_process):
    # given 3 tasks on which two annotators never agreed, and a gate: agreement ≥ 0.6 over at least 2 tasks; the
    # transitions' own recomputes are held back, so that the test sends the one the worker must chain from
    with mock.patch("apps.quality.tasks.progress_recompute_soon"):
        project = factories.project(slug="worked", overlap=2, review_mode="none")
        factories.member(project, Membership.Role.MANAGER, "overseer")
        people = [factories.member(project, Membership.Role.ANNOTATOR, f"w{i}") for i in range(2)]
        for task in factories.tasks(factories.batch(project), 3):
            for person, label in zip(people, ["cat", "dog"]):
                assignment = services.assignment_assign(task=task, annotator=person)
                services.assignment_submit(assignment=assignment, actor=person, result={"label": label})
        gate = project_services.gate_create(project=project, actor=None, metric="agreement", comparator="gte",
                                            threshold=0.6, min_samples=2)
    assert not MetricSnapshot.objects.filter(project=project, kind="quality").exists()

    # when the progress recompute goes to the broker
    progress_recompute.apply_async(args=[project.pk], queue=celery_worker_process)

    # then the worker chains the quality pass: snapshots, the gate breached, one alert
    alert = wait_for(lambda: Alert.objects.filter(gate=gate).first(), timeout=90)
    assert alert is not None, "the worker raised no alert within 90 s"
    assert alert.kind == "gate_breach" and alert.state == "open"
    quality = MetricSnapshot.objects.get(project=project, scope="project", kind="quality")
    assert quality.values["agreement"]["metric"] == "krippendorff_alpha"
    assert quality.values["agreement"]["n"] == 3 and quality.values["agreement"]["value"] < 0.6
    assert MetricSnapshot.objects.filter(project=project, scope="project", kind="annotators").exists()
    gate.refresh_from_db()
    assert gate.state == "breached" and gate.last_n == 3
