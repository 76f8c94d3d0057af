"""A real Celery worker on Redis computes a project's progress snapshot."""

import pytest

from apps.quality.models import MetricSnapshot
from apps.quality.tasks import progress_recompute
from tests import factories
from tests.conftest import wait_for

pytestmark = [pytest.mark.redis]


def test_progress_recompute_runs_through_a_real_worker(celery_worker_process):
    # given a project with three open tasks and no snapshot yet
    project = factories.project()
    factories.tasks(factories.batch(project), 3)
    assert not MetricSnapshot.objects.filter(project=project).exists()

    # when the recompute is sent to the broker
    progress_recompute.apply_async(args=[project.pk], queue=celery_worker_process)

    # then the worker writes the snapshot with the real counts
    snapshot = wait_for(lambda: MetricSnapshot.objects.filter(project=project, kind="progress").first(), timeout=90)
    assert snapshot is not None, "the worker did not write a snapshot within 90 s"
    assert snapshot.values["total"] == 3
    assert snapshot.values["by_status"]["open"] == 3
    assert snapshot.values["accepted_pct"] == 0.0
