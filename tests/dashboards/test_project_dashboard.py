"""The project dashboard: who may open it, that its numbers are the API's, its downloads, filters and query count."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.html import escape

from apps.projects.models import Batch, Membership, QualityGate
from apps.quality import services as quality_services
from apps.quality.alerts import alert_text
from apps.quality.models import Alert, MetricSnapshot
from apps.tasks import services as task_services
from tests import factories

URL = "/projects/{}/dashboard/"


def submit(task, annotator, label="cat"):
    assignment = task_services.assignment_assign(task=task, annotator=annotator)
    return task_services.assignment_submit(assignment=assignment, actor=annotator, result={"label": label},
                                           lead_time_seconds=12.0)


def history(project, day, *, remaining, accepted, agreement, gold, scope="project", batch=None, hour=18):
    """A progress and a quality snapshot as the workers would have left them at `hour` o'clock on `day`."""
    at = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=hour)
    if scope == "project":
        MetricSnapshot.objects.create(project=project, scope="project", kind="progress", computed_at=at, values={
            "by_status": {"open": remaining, "accepted": accepted}, "review": {"backlog": 3},
            "eta": {"remaining_annotations": remaining}})
    MetricSnapshot.objects.create(project=project, scope=scope, batch=batch, kind="quality", computed_at=at, values={
        "agreement": {"metric": "krippendorff_alpha", "value": agreement, "n": 10}, "gold_accuracy": gold,
        "acceptance_rate": 0.9, "rework_rate": 0.1})


@pytest.fixture
def world(db):
    """A project with work done (submissions, an approval, a rejection), the workers' figures, three days of
    history, a gate and an open alert."""
    team = factories.team(review_mode="all", overlap=1)
    project = team.project
    tasks = [team.task, *factories.tasks(team.batch, 5)]
    annotation = submit(tasks[0], team.annotators[0])
    task_services.review_start(annotation=annotation, reviewer=team.reviewer)
    task_services.review_approve(annotation=annotation, reviewer=team.reviewer)
    annotation = submit(tasks[1], team.annotators[1], "dog")
    task_services.review_start(annotation=annotation, reviewer=team.reviewer)
    task_services.review_reject(annotation=annotation, reviewer=team.reviewer, error_types=["wrong_label"],
                                comment="A dog")
    submit(tasks[2], team.annotators[2])
    QualityGate.objects.create(project=project, metric="gold_accuracy", comparator="gte", threshold=0.8,
                               min_samples=5)
    today = timezone.now().date()
    for days_ago, remaining, accepted, agreement in ((3, 6, 0, 0.5), (2, 6, 0, 0.55), (1, 5, 1, 0.6)):
        history(project, today - timedelta(days=days_ago), remaining=remaining, accepted=accepted,
                agreement=agreement, gold=agreement + 0.2)
    # an earlier snapshot of the day before yesterday: the last of the day is the one drawn
    history(project, today - timedelta(days=2), remaining=99, accepted=99, agreement=0.01, gold=0.01, hour=9)
    quality_services.progress_snapshot_write(project_id=project.pk)
    quality_services.quality_recompute_full(project_id=project.pk)
    Alert.objects.create(project=project, kind="throughput_dip", message="<b>Throughput</b> fell by half")
    return team


def get(client, user, project, query=""):
    client.force_login(user)
    return client.get(URL.format(project.pk) + query)


# --- who may see it ---------------------------------------------------------------------------------------------


def test_the_manager_and_the_admin_see_the_dashboard(world, client):
    for user in (world.manager, world.admin):
        response = get(client, user, world.project)
        assert response.status_code == 200
        html = response.content.decode()
        assert f"{world.project.name} — Dashboard" in html
        for chart in ("chart-status", "chart-burndown", "chart-throughput-day", "chart-heatmap",
                      "chart-throughput-hour", "chart-review", "chart-quality", "chart-errors"):
            assert f'id="{chart}"' in html
        assert "vendor/plotly/plotly.min.js" in html and "cdn" not in html.lower()


def test_people_outside_the_project_get_404_and_members_without_the_manager_role_403(world, client):
    assert get(client, world.outsider, world.project).status_code == 404
    assert get(client, world.annotators[0], world.project).status_code == 403
    assert get(client, world.reviewer, world.project).status_code == 403
    assert get(client, world.outsider, world.project, "?format=json").status_code == 404
    assert get(client, world.reviewer, world.project, "?format=csv&table=status").status_code == 403


def test_anonymous_visitors_are_sent_to_log_in(world, client):
    response = client.get(URL.format(world.project.pk))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- the numbers --------------------------------------------------------------------------------------------------


def test_the_json_carries_the_api_figures_and_the_page_shows_them(world, client):
    client.force_login(world.manager)
    api = client.get(f"/api/v1/projects/{world.project.pk}/metrics/").json()
    data = client.get(URL.format(world.project.pk) + "?format=json").json()
    # the dashboard's data holds the API's payload unchanged, and its own figures agree with it
    assert data["metrics"] == api
    assert data["progress"]["by_status"] == api["progress"]["by_status"]
    assert data["progress"]["accepted_pct"] == api["progress"]["accepted_pct"]
    assert data["progress"]["eta"] == api["progress"]["eta"]
    assert data["quality"]["now"]["agreement"] == api["quality"]["agreement"]["value"]
    assert data["quality"]["now"]["gold_accuracy"] == api["quality"]["gold_accuracy"]
    assert data["review"]["backlog"] == api["review"]["backlog"] == 1  # the third submission waits
    # what the workers counted: 6 tasks, 1 accepted (approved), 1 in rework, 1 in review, 3 open
    assert api["progress"]["by_status"]["accepted"] == 1 and api["progress"]["total"] == 6
    assert api["progress"]["accepted_pct"] == pytest.approx(16.67)
    assert sum(sum(row) for row in api["throughput"]["heatmap"]["submitted"]) == 3
    assert data["quality"]["error_types"] == [{"code": "wrong_label", "name": "Wrong label", "count": 1}]
    # two decisions today (an approval, a rejection), each made moments after its submission
    latency = data["review"]["latency_per_day"]
    assert [row["decided"] for row in latency] == [2] and 0 <= latency[0]["mean_latency_seconds"] < 60
    # and the page shows the same numbers
    html = client.get(URL.format(world.project.pk)).content.decode()
    assert 'id="kpi-accepted-pct">16.7 %' in html
    assert f'id="kpi-eta">{api["progress"]["eta"]}' in html
    assert 'id="kpi-backlog">1<' in html


def test_the_daily_history_is_the_last_snapshot_of_each_day(world, client):
    data = get(client, world.manager, world.project, "?format=json").json()
    today = timezone.now().date()
    days = [(today - timedelta(days=n)).isoformat() for n in (3, 2, 1, 0)]
    assert [row["date"] for row in data["burndown"]] == days
    # the 09:00 snapshot (99 remaining) of the day before yesterday is not the one drawn: 18:00's is
    assert [row["remaining_tasks"] for row in data["burndown"][:3]] == [6, 6, 5]
    assert [row["accepted"] for row in data["burndown"]] == [0, 0, 1, 1]
    assert [row["agreement"] for row in data["quality"]["per_day"][:3]] == [0.5, 0.55, 0.6]
    assert data["quality"]["per_day"][0]["gold_accuracy"] == pytest.approx(0.7)
    assert [gate["threshold"] for gate in data["quality"]["gates"]] == [0.8]


def test_user_text_is_escaped(world, client):
    html = get(client, world.manager, world.project).content.decode()
    assert "<b>Throughput</b>" not in html and "&lt;b&gt;Throughput&lt;/b&gt; fell by half" in html


# --- downloads ----------------------------------------------------------------------------------------------------


def test_every_table_downloads_as_csv(world, client):
    client.force_login(world.manager)
    tables = ["status", "burndown", "throughput_day", "throughput_hour", "heatmap", "review", "quality", "gates",
              "error_types", "error_types_by_label", "alerts"]
    for table in tables:
        response = client.get(URL.format(world.project.pk) + f"?format=csv&table={table}")
        assert response.status_code == 200, table
        assert response["Content-Type"].startswith("text/csv")
        assert f'filename="{world.project.slug}-{table}.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(client.get(URL.format(world.project.pk) + "?format=csv&table=status")
                                       .content.decode())))
    assert rows[0] == ["Status", "Tasks"]
    assert dict(rows[1:])["Accepted"] == "1" and dict(rows[1:])["Open"] == "3"
    heatmap = list(csv.reader(io.StringIO(client.get(URL.format(world.project.pk) + "?format=csv&table=heatmap")
                                          .content.decode())))
    assert len(heatmap) == 1 + 7 * 24 and sum(int(row[2]) for row in heatmap[1:]) == 3


def test_a_csv_cell_that_a_spreadsheet_would_run_is_written_as_text(world, client):
    Alert.objects.create(project=world.project, kind="throughput_dip", message="=HYPERLINK(\"http://x\")")
    text = get(client, world.manager, world.project, "?format=csv&table=alerts").content.decode()
    assert "'=HYPERLINK" in text and "\n=HYPERLINK" not in text.replace("\r", "")


def test_an_unknown_table_or_format_is_a_clear_400(world, client):
    response = get(client, world.manager, world.project, "?format=csv&table=secrets")
    assert response.status_code == 400 and "Unknown table" in response.content.decode()
    response = get(client, world.manager, world.project, "?format=xml")
    assert response.status_code == 400 and response.json()["errors"]["format"]


# --- errors by label ----------------------------------------------------------------------------------------------


def test_the_error_types_per_label_of_the_metrics_api_are_a_table_with_its_csv(world, client):
    # given a second rejection, of a cat, with two error types (the world already rejected a dog: wrong label)
    annotation = submit(factories.tasks(world.batch, 1)[0], world.annotators[0], "cat")
    task_services.review_reject(annotation=annotation, reviewer=world.reviewer,
                                error_types=["wrong_label", "boundary"], comment="Not a cat, and too loose")
    quality_services.quality_recompute_full(project_id=world.project.pk)
    client.force_login(world.manager)
    api = client.get(f"/api/v1/projects/{world.project.pk}/metrics/").json()
    assert api["quality"]["error_types_by_label"] == {"cat": {"boundary": 1, "wrong_label": 1},
                                                      "dog": {"wrong_label": 1}}

    # then the dashboard's data carries them, the error types most frequent first, the labels most erring first
    data = client.get(URL.format(world.project.pk) + "?format=json").json()
    assert data["quality"]["error_types_by_label"] == {
        "types": [{"code": "wrong_label", "name": "Wrong label"}, {"code": "boundary", "name": "Boundary"}],
        "rows": [{"label": "cat", "total": 2, "counts": {"boundary": 1, "wrong_label": 1}},
                 {"label": "dog", "total": 1, "counts": {"wrong_label": 1}}]}
    # the page shows them as a table "Errors by label", unfolded
    html = client.get(URL.format(world.project.pk)).content.decode()
    assert 'id="h-errors-by-label">Errors by label</h2>' in html
    table = html[html.index('id="h-errors-by-label"'):]
    table = table[:table.index("</section>")]
    assert '<details class="chart-table" open>' in table
    assert ("<thead><tr><th scope=\"col\">Label</th><th scope=\"col\">All error types</th>"
            "<th scope=\"col\">Wrong label</th><th scope=\"col\">Boundary</th></tr></thead>") in table
    assert "<tr><td>cat</td><td>2</td><td>1</td><td>1</td></tr><tr><td>dog</td><td>1</td><td>1</td><td>0</td></tr>" \
        in table
    # and its CSV holds the same rows
    rows = list(csv.reader(io.StringIO(client.get(
        URL.format(world.project.pk) + "?format=csv&table=error_types_by_label").content.decode())))
    assert rows == [["Label", "All error types", "Wrong label", "Boundary"], ["cat", "2", "1", "1"],
                    ["dog", "1", "1", "0"]]


def test_error_type_names_and_labels_are_escaped_in_the_errors_by_label_table(world, client):
    # given an error type named with markup (the admin edits names) and a label with markup in the figures
    from apps.quality.models import ErrorType

    ErrorType.objects.filter(project=world.project, code="wrong_label").update(name="<i>Wrong</i> label")
    latest = MetricSnapshot.objects.filter(project=world.project, scope="project", kind="quality").latest()
    latest.values["error_types_by_label"] = {"<script>alert(1)</script>": {"wrong_label": 2}}
    latest.save(update_fields=["values"])

    html = get(client, world.manager, world.project).content.decode()

    table = html[html.index('id="h-errors-by-label"'):]
    assert "<script>alert(1)</script>" not in html and "<i>Wrong</i>" not in html
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td><td>2</td><td>2</td>" in table
    assert "&lt;i&gt;Wrong&lt;/i&gt; label</th>" in table


def test_the_errors_by_label_table_says_when_there_is_nothing_yet(db, client):
    team = factories.team(review_mode="all")
    html = get(client, team.manager, team.project).content.decode()
    table = html[html.index('id="h-errors-by-label"'):]
    table = table[:table.index("</section>")]
    assert "No data yet." in table


# --- filters ------------------------------------------------------------------------------------------------------


def test_the_batch_filter_shows_the_batch_s_figures(world, client):
    other = factories.batch(world.project, name="Second")
    factories.tasks(other, 4)
    quality_services.progress_snapshot_write(project_id=world.project.pk)
    data = get(client, world.manager, world.project, f"?format=json&batch={other.pk}").json()
    assert data["filters"]["batch"] == other.pk
    assert data["progress"]["total"] == 4 and data["progress"]["by_status"]["open"] == 4
    assert data["progress"]["accepted_pct"] == 0
    whole = get(client, world.manager, world.project, "?format=json").json()
    assert whole["progress"]["total"] == 10
    # and the burndown of that batch: today's 4 tasks, none accepted (read from the snapshot's by_batch)
    today = timezone.now().date().isoformat()
    [last] = [row for row in data["burndown"] if row["date"] == today]
    assert (last["remaining_tasks"], last["accepted"]) == (4, 0)


def test_a_batch_of_another_project_or_a_bad_date_is_refused_with_a_message(world, client):
    foreign = Batch.objects.create(project=world.other_project, name="Not yours")
    response = get(client, world.manager, world.project, f"?format=json&batch={foreign.pk}")
    assert response.status_code == 400 and "batch" in response.json()["errors"]
    response = get(client, world.manager, world.project, "?date_from=2026-02-30")
    assert response.status_code == 400 and "Enter a valid date." in response.content.decode()
    response = get(client, world.manager, world.project, "?format=json&date_from=2025-03-10&date_to=2025-03-01")
    assert response.status_code == 400
    assert response.json()["errors"]["date_from"] == ["The start date must be on or before the end date."]
    response = get(client, world.manager, world.project, "?format=json&date_from=2020-01-01&date_to=2025-01-01")
    assert response.status_code == 400 and "at most" in response.json()["errors"]["date_from"][0]
    # days near the ends of the calendar, or in the future: a clear 400, never an overflow
    for query in ("date_to=0001-01-05", "date_from=9999-12-30&date_to=9999-12-31", "date_from=1999-12-31"):
        response = get(client, world.manager, world.project, f"?format=json&{query}")
        assert response.status_code == 400, query
        assert any("between 2000-01-01 and today" in message
                   for messages in response.json()["errors"].values() for message in messages), query


def test_the_date_range_limits_the_daily_series(world, client):
    yesterday = (timezone.now().date() - timedelta(days=1)).isoformat()
    data = get(client, world.manager, world.project, f"?format=json&date_from={yesterday}&date_to={yesterday}").json()
    assert [row["date"] for row in data["burndown"]] == [yesterday]
    assert [row["agreement"] for row in data["quality"]["per_day"]] == [0.6]
    assert all(row["date"] == yesterday for row in data["throughput"]["per_day"])


# --- fixed queries ------------------------------------------------------------------------------------------------

# user, project, guardian's permissions, the progress and quality snapshots, the daily history (two: the last
# time of each day, then those rows), gates, alerts, error-type names, the portal bar's alert count, the batches of
# the filter
QUERIES_HTML = 13


def queries(client, user, project, query=""):
    client.force_login(user)
    client.get(URL.format(project.pk) + query)  # warm: content types and the like are cached per process
    with CaptureQueriesContext(connection) as context:
        response = client.get(URL.format(project.pk) + query)
    assert response.status_code == 200
    return len(context)


def test_the_page_runs_a_fixed_number_of_queries_whatever_the_size(world, client):
    before = {fmt: queries(client, world.manager, world.project, fmt) for fmt in ("", "?format=json")}
    # given many more tasks, batches, annotators, submissions, alerts and weeks of history
    project = world.project
    for i in range(6):
        batch = factories.batch(project, name=f"More {i}")
        tasks = factories.tasks(batch, 20)
        annotator = factories.member(project, Membership.Role.ANNOTATOR, f"more{i}")
        for task in tasks[:3]:
            submit(task, annotator)
        Alert.objects.create(project=project, batch=batch, kind="outlier_annotator", message=f"Alert {i}")
    today = timezone.now().date()
    for days_ago in range(4, 60):
        history(project, today - timedelta(days=days_ago), remaining=100, accepted=days_ago, agreement=0.5, gold=0.7)
    quality_services.progress_snapshot_write(project_id=project.pk)
    quality_services.quality_recompute_full(project_id=project.pk)
    # then the page and its data cost the same number of queries
    after = {fmt: queries(client, world.manager, project, fmt) for fmt in ("", "?format=json")}
    assert after == before
    assert before[""] == QUERIES_HTML
    batch = project.batches.first()
    assert queries(client, world.manager, project, f"?batch={batch.pk}") == QUERIES_HTML + 2  # the batch, its snapshot


def test_the_review_latency_of_past_days_is_carried_over_and_today_recomputed(world):
    project = world.project
    latest = quality_services.progress_latest(project)
    today = timezone.now().date()
    # given the last snapshot's latency series: an old day past the 30-day window, a day of last week, today's
    old, last_week = (today - timedelta(days=40)).isoformat(), (today - timedelta(days=6)).isoformat()
    latest.values["review"]["latency_per_day"] = [
        {"date": old, "decided": 9, "mean_latency_seconds": 1.0},
        {"date": last_week, "decided": 7, "mean_latency_seconds": 3600.0},
        {"date": today.isoformat(), "decided": 99, "mean_latency_seconds": 5.0}]
    latest.save(update_fields=["values"])
    # when the progress is computed again
    rows = quality_services.progress_compute(project)["review"]["latency_per_day"]
    # then last week's figures are taken as they were, the old day is dropped, today is read from the events
    assert [row["date"] for row in rows] == [last_week, today.isoformat()]
    assert rows[0] == {"date": last_week, "decided": 7, "mean_latency_seconds": 3600.0}
    assert rows[1]["decided"] == 2


def test_the_heatmap_counts_submissions_in_their_weekday_and_hour(world):
    # the fixture's three submissions were made just now
    now = timezone.now()
    grid = quality_services.progress_compute(world.project, now=now)["throughput"]["heatmap"]["submitted"]
    assert grid[now.isoweekday() - 1][now.hour] == 3
    assert sum(map(sum, grid)) == 3


def test_the_eta_range_comes_from_the_spread_of_the_seven_day_pace():
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday
    eta = {"remaining_annotations": 700}
    days = [(now.date() - timedelta(days=i)).isoformat() for i in range(35)]
    # a steady 100 a day for five weeks: one pace, one date, sure
    steady = quality_services._eta_range(eta, [{"date": d, "submitted": 100} for d in days], now)
    assert steady["per_day_low"] == steady["per_day_high"] == 100
    assert steady["date_early"] == steady["date_late"] == "2026-03-09" and steady["confidence"] == "high"
    # weekdays only, 140 a day: every 7-day window holds five working days, so the pace is still 100 a day
    weekdays = [{"date": d, "submitted": 140 if datetime.fromisoformat(d).weekday() < 5 else 0} for d in days]
    assert quality_services._eta_range(eta, weekdays, now)["per_day_low"] == 100
    # a team that doubled its pace three weeks ago: a wide range, low confidence
    doubling = [{"date": d, "submitted": 200 if i < 21 else 50} for i, d in enumerate(days)]
    ranged = quality_services._eta_range(eta, doubling, now)
    assert ranged["date_early"] < ranged["date_late"] and ranged["confidence"] == "low"
    # less than a week of work: no range
    assert quality_services._eta_range(eta, [{"date": days[0], "submitted": 5}], now)["confidence"] == "none"


def test_alerts_are_shown_in_the_readers_words_with_links_to_the_alerts_and_the_team(world, client):
    # given an alert raised with its details (the stored English message says something else on purpose)
    alert = Alert.objects.create(project=world.project, kind="throughput_dip", message="stored text",
                                 details={"day": "2026-11-27", "submitted": 3, "trailing_mean": 12.0, "ratio": 0.25})
    expected = alert_text(alert)
    assert expected != "stored text"

    page = get(client, world.manager, world.project).content.decode()
    data = get(client, world.manager, world.project, "?format=json").json()

    # then the page and the JSON carry the rendered text, and the page links the team view and the alerts
    assert escape(expected) in page
    assert [a["text"] for a in data["alerts"]["rows"] if a["id"] == alert.pk] == [expected]
    assert f'href="/projects/{world.project.pk}/team/"' in page
    assert f'href="/alerts/?project={world.project.pk}"' in page
