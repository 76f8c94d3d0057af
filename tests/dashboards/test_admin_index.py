"""The admin index: a line per project the admin user may administer, with progress, quality, gates and alerts,
in a fixed number of queries; and the project's change page links to its dashboard."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.projects.models import Membership, QualityGate
from apps.quality import services as quality_services
from apps.quality.models import Alert, MetricSnapshot
from apps.tasks import services as task_services
from tests import factories


def staff_manager(project, username="boss"):
    manager = factories.member(project, Membership.Role.MANAGER, username)
    manager.is_staff = True
    manager.save(update_fields=["is_staff"])
    return manager


def summary_rows(html):
    return dict(re.findall(r'<tr class="lp-project" data-project="(\d+)">(.*?)</tr>', html, re.S))


@pytest.fixture
def two_projects(db):
    team = factories.team(review_mode="none", overlap=1)
    tasks = [team.task, *factories.tasks(team.batch, 3)]
    for task, annotator in zip(tasks[:2], team.annotators):
        assignment = task_services.assignment_assign(task=task, annotator=annotator)
        task_services.assignment_submit(assignment=assignment, actor=annotator, result={"label": "cat"})
    QualityGate.objects.create(project=team.project, metric="agreement", comparator="gte", threshold=0.7,
                               min_samples=1, state="breached")
    QualityGate.objects.create(project=team.project, metric="gold_accuracy", comparator="gte", threshold=0.8,
                               min_samples=1, state="passing")
    Alert.objects.create(project=team.project, kind="gate_breach", severity="critical", message="Agreement low")
    Alert.objects.create(project=team.project, kind="throughput_dip", severity="warning", message="Slow day")
    Alert.objects.create(project=team.project, kind="throughput_dip", severity="warning", message="Old",
                         state="resolved")
    quality_services.progress_snapshot_write(project_id=team.project.pk)
    quality_services.progress_snapshot_write(project_id=team.other_project.pk)
    return team


def test_the_admin_sees_every_project_with_its_progress_quality_gates_and_alerts(two_projects, client):
    team = two_projects
    client.force_login(team.admin)
    html = client.get("/admin/").content.decode()
    rows = summary_rows(html)
    assert set(rows) == {str(team.project.pk), str(team.other_project.pk)}
    row = rows[str(team.project.pk)]
    progress = MetricSnapshot.objects.filter(project=team.project, kind="progress").latest().values
    # 4 tasks, 2 accepted (no review): 50 %, as the progress snapshot says
    assert progress["accepted_pct"] == 50.0
    assert "50.0 %" in row and "(4)" in row and 'style="width: 50.00%"' in row
    assert "1 breached" in row and "1 passing" in row
    assert "1 critical" in row and "1 warning" in row and "2 warning" not in row  # the resolved one is not counted
    assert f'href="/projects/{team.project.pk}/dashboard/"' in row
    # the admin's own index is still there below
    assert 'id="content-main"' in html


def test_a_staff_manager_sees_only_the_projects_they_manage(two_projects, client):
    manager = staff_manager(two_projects.project)
    client.force_login(manager)
    rows = summary_rows(client.get("/admin/").content.decode())
    assert list(rows) == [str(two_projects.project.pk)]


def test_project_names_are_escaped(two_projects, client):
    two_projects.other_project.name = "<script>alert(1)</script>"
    two_projects.other_project.save(update_fields=["name"])
    client.force_login(two_projects.admin)
    html = client.get("/admin/").content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def queries(client):
    client.get("/admin/")
    with CaptureQueriesContext(connection) as context:
        assert client.get("/admin/").status_code == 200
    return len(context)


def test_the_admin_index_runs_a_fixed_number_of_queries_whatever_the_number_of_projects(two_projects, client):
    client.force_login(two_projects.admin)
    before = queries(client)
    # given ten more projects with figures, gates and alerts
    for i in range(10):
        project = factories.project(actor=two_projects.admin, slug=f"more-{i}")
        factories.tasks(factories.batch(project), 3)
        QualityGate.objects.create(project=project, metric="agreement", comparator="gte", threshold=0.7)
        Alert.objects.create(project=project, kind="throughput_dip", message="Slow")
        quality_services.progress_snapshot_write(project_id=project.pk)
    # then the index costs the same
    assert queries(client) == before
    assert len(summary_rows(client.get("/admin/").content.decode())) == 12


def test_the_project_change_page_links_to_the_dashboard(two_projects, client):
    client.force_login(two_projects.admin)
    html = client.get(f"/admin/projects/project/{two_projects.project.pk}/change/").content.decode()
    assert f'href="/projects/{two_projects.project.pk}/dashboard/"' in html
