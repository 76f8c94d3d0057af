"""The people dashboards (issue 7 parts 2–4, 6): the team view, an annotator's detail, my stats; who may see them,
what they show (the API's figures), their JSON and CSV, escaping, and a fixed number of queries."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.annotators.models import Team
from apps.dashboards.people_trends import KIND as TRENDS_KIND
from apps.dashboards.people_trends import people_trends_recompute
from apps.projects.models import Membership
from apps.quality.models import MetricSnapshot
from apps.quality.services import quality_recompute_full
from apps.tasks import services
from tests import factories

pytestmark = pytest.mark.django_db

SCHEMA = {"labels": [{"value": "cat"}, {"value": "dog"}, {"value": "bird"}]}
COMMENT = '<script>alert("comment")</script> Look at the ears again'
QUESTION = "<b>Is a fox a dog?</b>"
TEAM_NAME = "Morning <i>shift</i>"


class PeopleWorld:
    """A classification project (overlap 2, review everything) with three annotators who did the same four tasks
    and a gold task, a reviewer who approved most of it and rejected one of alpha's with a comment, alpha's open
    question, two teams; another project with its own annotator.

    Lead times: alpha 10 s on everything, bravo 20 s, charlie 40 s. alpha answers the gold task wrongly.
    """

    def __init__(self):
        self.admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
        self.project = factories.project(actor=self.admin, schema=SCHEMA, slug="people-project", overlap=3,
                                         review_mode="all")
        self.manager = factories.member(self.project, Membership.Role.MANAGER, "manager")
        self.reviewer = factories.member(self.project, Membership.Role.REVIEWER, "reviewer")
        self.alpha, self.bravo, self.charlie = (factories.member(self.project, Membership.Role.ANNOTATOR, name)
                                                for name in ("ann_alpha", "ann_bravo", "ann_charlie"))
        self.other_project = factories.project(actor=self.admin, schema=SCHEMA, slug="other-project")
        self.outsider = factories.member(self.other_project, Membership.Role.ANNOTATOR, "ann_outsider")
        self.other_manager = factories.member(self.other_project, Membership.Role.MANAGER, "other_manager")
        self.batch = factories.batch(self.project)
        self.tasks = factories.tasks(self.batch, 4, data={"text": "a cat"})
        self.gold = factories.tasks(self.batch, 1, data={"text": "a gold cat"}, is_gold=True,
                                    gold_answer={"label": "cat"})[0]
        leads = {self.alpha: 10.0, self.bravo: 20.0, self.charlie: 40.0}
        self.annotations = {}
        for task in [*self.tasks, self.gold]:
            for person, lead in leads.items():
                label = "dog" if (person is self.alpha and task is self.gold) else "cat"
                assignment = services.assignment_assign(task=task, annotator=person)
                self.annotations[(person.pk, task.pk)] = services.assignment_submit(
                    assignment=assignment, actor=person, result={"label": label}, lead_time_seconds=lead)
        rejected = self.annotations[(self.alpha.pk, self.tasks[0].pk)]
        services.review_reject(annotation=rejected, reviewer=self.reviewer, error_types=["wrong_label"],
                               comment=COMMENT)
        for (person_id, task_id), annotation in self.annotations.items():
            if annotation.pk != rejected.pk and task_id != self.gold.pk:
                services.review_approve(annotation=annotation, reviewer=self.reviewer)
        self.clarification = services.clarification_ask(task=self.tasks[1], actor=self.alpha, question=QUESTION)
        self.morning = Team.objects.create(name=TEAM_NAME)
        self.morning.members.set([self.alpha, self.bravo])
        self.evening = Team.objects.create(name="Evening shift")
        self.evening.members.set([self.charlie, self.outsider])
        quality_recompute_full(project_id=self.project.pk)
        people_trends_recompute(self.project.pk)


@pytest.fixture
def world(db, small_team_distribution):
    # Three annotators stand for a team here: the team spread is shown from 3 in this world (5 by default).
    return PeopleWorld()


def client_for(user):
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def team_url(world):
    return f"/projects/{world.project.pk}/team/"


def annotator_url(world, user):
    return f"/projects/{world.project.pk}/team/{user.pk}/"


def mine_url(world):
    return f"/projects/{world.project.pk}/my-stats/"


def csv_rows(response):
    return list(csv.reader(io.StringIO(response.content.decode())))


# --- who may see what ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("who, team, detail, mine", [
    ("admin", 200, 200, 200),
    ("manager", 200, 200, 403),
    ("reviewer", 403, 403, 403),
    ("alpha", 403, 403, 200),
    ("outsider", 404, 404, 404),
    ("other_manager", 404, 404, 404),
])
def test_each_page_loads_for_its_roles_only(world, who, team, detail, mine):
    client = client_for(getattr(world, who))

    assert client.get(team_url(world)).status_code == team
    assert client.get(annotator_url(world, world.bravo)).status_code == detail
    assert client.get(mine_url(world)).status_code == mine
    pages = {team_url(world): (team, "annotators"), annotator_url(world, world.bravo): (detail, "feedback"),
             mine_url(world): (mine, "feedback")}
    for url, (status, table) in pages.items():
        assert client.get(url + "?format=json").status_code == status
        assert client.get(url + f"?format=csv&table={table}").status_code == status


def test_anonymous_people_are_sent_to_log_in(world):
    for url in (team_url(world), annotator_url(world, world.bravo), mine_url(world)):
        response = Client().get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_detail_of_someone_who_is_no_annotator_here_is_404(world):
    client = client_for(world.manager)

    assert client.get(annotator_url(world, world.reviewer)).status_code == 404
    assert client.get(annotator_url(world, world.outsider)).status_code == 404
    assert client.get(f"/projects/{world.project.pk}/team/999999/").status_code == 404


def test_an_unknown_table_is_404(world):
    assert client_for(world.manager).get(team_url(world) + "?format=csv&table=passwords").status_code == 404


# --- the team view ---------------------------------------------------------------------------------------------------

def test_the_team_view_shows_the_api_figures(world):
    api = client_for(world.manager).get(f"/api/v1/projects/{world.project.pk}/annotators/").json()

    data = client_for(world.manager).get(team_url(world) + "?format=json").json()

    assert data["annotators"] == api["results"]
    assert data["distribution"] == api["distribution"]
    assert data["computed_at"] == api["computed_at"]
    by_name = {row["username"]: row for row in data["annotators"]}
    assert by_name["ann_alpha"]["submitted"] == 5
    assert by_name["ann_alpha"]["median_lead_time_seconds"] == 10.0
    assert by_name["ann_charlie"]["median_lead_time_seconds"] == 40.0
    assert by_name["ann_alpha"]["acceptance_rate"] == 0.75  # 3 approved, 1 rejected
    assert by_name["ann_bravo"]["acceptance_rate"] == 1.0
    assert by_name["ann_alpha"]["gold_accuracy"] == 0.0 and by_name["ann_bravo"]["gold_accuracy"] == 1.0
    assert data["medians"]["median_lead_time_seconds"] == 20.0


def test_the_team_table_renders_each_annotator_with_figures(world):
    html = client_for(world.manager).get(team_url(world)).content.decode()

    assert 'id="annotators"' in html and "sortable" in html
    for name in ("ann_alpha", "ann_bravo", "ann_charlie"):
        assert f">{name}</a>" in html
    assert "ann_outsider" not in html  # in a team with people here, but not in this project
    assert 'data-sort="40.0">40.0 s</td>' in html
    assert "75 %" in html
    assert 'id="chart-scatter"' in html and "vendor/plotly/plotly.min.js" in html
    assert "cdn" not in html.lower()


def test_teams_are_compared_and_their_names_escaped(world):
    client = client_for(world.manager)

    html = client.get(team_url(world)).content.decode()
    teams = {t["name"]: t for t in client.get(team_url(world) + "?format=json").json()["teams"]}

    assert TEAM_NAME not in html and "Morning &lt;i&gt;shift&lt;/i&gt;" in html
    assert teams[TEAM_NAME]["annotators"] == 2 and teams["Evening shift"]["annotators"] == 1
    assert teams[TEAM_NAME]["submitted"] == 10
    assert teams[TEAM_NAME]["acceptance_rate"] == pytest.approx(7 / 8)  # 3 of 4 and 4 of 4, pooled
    assert teams[TEAM_NAME]["median_lead_time_seconds"] == 15.0
    assert teams[TEAM_NAME]["gold_accuracy"] == 0.5
    assert teams["Evening shift"]["median_lead_time_seconds"] == 40.0
    assert None not in teams  # everyone here is in a team


def test_team_csv_downloads(world):
    client = client_for(world.manager)

    annotators = csv_rows(client.get(team_url(world) + "?format=csv&table=annotators"))
    teams = csv_rows(client.get(team_url(world) + "?format=csv&table=teams"))
    trends = csv_rows(client.get(team_url(world) + "?format=csv&table=trends"))

    assert annotators[0][:3] == ["annotator_id", "username", "submitted"]
    assert [row[1] for row in annotators[1:]] == ["ann_alpha", "ann_bravo", "ann_charlie"]
    assert annotators[1][2] == "5" and float(annotators[3][3]) == 40.0
    assert {row[0] for row in teams[1:]} == {TEAM_NAME, "Evening shift"}
    assert trends[0] == ["username", "week", "submitted", "median_lead_time_seconds", "acceptance_rate", "reviewed",
                         "gold_accuracy", "gold_n"]
    this_week = [row for row in trends[1:] if row[2] != "0"]
    assert sorted((row[0], row[2], row[3]) for row in this_week) == [
        ("ann_alpha", "5", "10.0"), ("ann_bravo", "5", "20.0"), ("ann_charlie", "5", "40.0")]


# --- an annotator's detail (managers) --------------------------------------------------------------------------------

def test_the_annotator_detail_shows_their_work_for_coaching(world):
    client = client_for(world.manager)

    response = client.get(annotator_url(world, world.alpha))
    data = client.get(annotator_url(world, world.alpha) + "?format=json").json()

    html = response.content.decode()
    api = client.get(f"/api/v1/projects/{world.project.pk}/annotators/").json()["results"]
    assert data["figures"] == next(row for row in api if row["username"] == "ann_alpha")
    assert data["error_types"] == [{"code": "wrong_label", "name": "Wrong label", "count": 1}]
    assert [f["comment"] for f in data["feedback"]] == [COMMENT]
    assert data["feedback"][0]["error_types"] == ["Wrong label"]
    assert [c["question"] for c in data["clarifications"]] == [QUESTION]
    assert [m["task_id"] for m in data["gold_misses"]] == [world.gold.pk]
    # alpha was fastest on every task: their time is half the median or less, never above it
    assert all(h["ratio"] <= 0.5 for h in data["hardest"]) and len(data["hardest"]) == 5
    assert COMMENT not in html and "&lt;script&gt;alert(&quot;comment&quot;)&lt;/script&gt;" in html
    assert QUESTION not in html and "&lt;b&gt;Is a fox a dog?&lt;/b&gt;" in html
    assert "reviewer" not in json.dumps(data["feedback"])


def test_a_staff_manager_opens_the_hardest_tasks_in_the_admin(world):
    html = client_for(world.admin).get(annotator_url(world, world.charlie)).content.decode()

    assert f'href="/admin/tasks/task/{world.tasks[0].pk}/change/"' in html


def test_the_hardest_tasks_are_the_slowest_against_the_task_median(world):
    data = client_for(world.manager).get(annotator_url(world, world.charlie) + "?format=json").json()

    assert len(data["hardest"]) == 5
    assert {h["ratio"] for h in data["hardest"]} == {2.0}  # 40 s against a median of 20 s
    assert {h["task_median_seconds"] for h in data["hardest"]} == {20.0}


def test_annotator_detail_csv(world):
    client = client_for(world.manager)

    feedback = csv_rows(client.get(annotator_url(world, world.alpha) + "?format=csv&table=feedback"))
    questions = csv_rows(client.get(annotator_url(world, world.alpha) + "?format=csv&table=clarifications"))
    errors = csv_rows(client.get(annotator_url(world, world.alpha) + "?format=csv&table=error_types"))

    assert feedback[1][2:] == ["reject", "Wrong label", COMMENT]
    assert questions[1][3] == QUESTION
    assert errors[1] == ["wrong_label", "Wrong label", "1"]


def test_csv_cells_cannot_run_as_spreadsheet_formulas(world):
    services.clarification_ask(task=world.tasks[2], actor=world.alpha, question="=HYPERLINK(\"http://x\")")

    rows = csv_rows(client_for(world.manager).get(annotator_url(world, world.alpha)
                                                  + "?format=csv&table=clarifications"))

    assert rows[1][3] == "'=HYPERLINK(\"http://x\")"


# --- my stats (annotators) -------------------------------------------------------------------------------------------

def test_my_stats_are_the_api_s_figures_and_nobody_else_s(world):
    client = client_for(world.alpha)
    api = client.get("/api/v1/me/metrics/", {"project": world.project.pk}).json()

    data = client.get(mine_url(world) + "?format=json").json()

    assert data["me"] == api["me"] and data["team"] == api["team"] and data["computed_at"] == api["computed_at"]
    assert data["me"]["annotator_id"] == world.alpha.pk and data["me"]["submitted"] == 5
    assert data["team"]["median_lead_time_seconds"]["median"] == 20.0
    assert data["trend"]["mine"]["submitted"][-1] == 5
    assert data["trend"]["team"]["median_lead_time_seconds"]["median"][-1] == 20.0
    assert [f["comment"] for f in data["feedback"]] == [COMMENT]
    assert [c["question"] for c in data["clarifications"]] == [QUESTION]


def test_an_annotator_s_pages_never_name_or_number_another_annotator(world):
    client = client_for(world.alpha)
    bodies = [client.get(mine_url(world)).content.decode(),
              client.get(mine_url(world) + "?format=json").content.decode()]
    bodies += [client.get(mine_url(world) + f"?format=csv&table={table}").content.decode()
               for table in ("figures", "trend", "feedback", "clarifications", "error_types")]

    for body in bodies:
        for other in (world.bravo, world.charlie, world.outsider):
            assert other.username not in body
            assert f'"annotator_id": {other.pk}' not in body and f'"annotator_id":{other.pk}' not in body
        assert "reviewer" not in body.lower().replace("reviewers", "")  # not who reviewed
        assert TEAM_NAME not in body and "Evening shift" not in body
    data = json.loads(bodies[1])
    assert set(data["trend"]) == {"weeks", "mine", "team", "computed_at"}
    assert "annotators" not in data and "hardest" not in json.dumps(data)
    html = bodies[0]
    assert "&lt;script&gt;alert(&quot;comment&quot;)&lt;/script&gt;" in html and COMMENT not in html
    assert "&lt;b&gt;Is a fox a dog?&lt;/b&gt;" in html and QUESTION not in html


def test_my_stats_withhold_the_team_below_three_annotators(world):
    snapshot = MetricSnapshot.objects.filter(project=world.project, kind="annotators").latest()
    rows = [row for row in snapshot.values["annotators"] if row["annotator_id"] != world.charlie.pk]
    from apps.quality.engine import DISTRIBUTION_FIGURES, _percentiles

    snapshot.values = {**snapshot.values, "annotators": rows,
                       "distribution": {n: _percentiles([r[n] for r in rows]) for n in DISTRIBUTION_FIGURES}}
    snapshot.save()

    data = client_for(world.alpha).get(mine_url(world) + "?format=json").json()
    html = client_for(world.alpha).get(mine_url(world)).content.decode()

    assert data["team"]["submitted"] == {"n": 2, "p25": None, "median": None, "p75": None}
    assert "team spread shown from 5 annotators" in html  # the text says the default


def test_the_home_page_links_my_stats_for_annotators_and_the_team_for_managers(world):
    annotator = client_for(world.alpha).get("/").content.decode()
    manager = client_for(world.manager).get("/").content.decode()

    assert f'href="{mine_url(world)}"' in annotator and f'href="{team_url(world)}"' not in annotator
    assert f'href="{team_url(world)}"' in manager and f'href="{mine_url(world)}"' not in manager


# --- a fixed number of queries ---------------------------------------------------------------------------------------

def _grow(world, extra):
    """More annotators in the snapshots, teams, reviews and questions: what a bigger project has."""
    people = [factories.member(world.project, Membership.Role.ANNOTATOR, f"more{extra}_{i}") for i in range(extra)]
    snapshot = MetricSnapshot.objects.filter(project=world.project, kind="annotators").latest()
    template = snapshot.values["annotators"][0]
    rows = snapshot.values["annotators"] + [{**template, "annotator_id": p.pk, "username": p.username}
                                            for p in people]
    snapshot.values = {**snapshot.values, "annotators": rows}
    snapshot.save()
    trends = MetricSnapshot.objects.get(project=world.project, kind=TRENDS_KIND)
    first = next(iter(trends.values["annotators"].values()))
    trends.values["annotators"].update({str(p.pk): first for p in people})
    trends.computed_at = timezone.now()
    trends.save()
    team = Team.objects.create(name=f"Team of {extra}")
    team.members.set(people)
    tasks = factories.tasks(world.batch, extra, data={"text": "more"})
    for task in tasks:
        assignment = services.assignment_assign(task=task, annotator=world.alpha)
        annotation = services.assignment_submit(assignment=assignment, actor=world.alpha, result={"label": "cat"},
                                                lead_time_seconds=5)
        services.review_reject(annotation=annotation, reviewer=world.reviewer, error_types=["boundary"],
                               comment="again")
        services.clarification_ask(task=task, actor=world.alpha, question="why?")


@pytest.mark.parametrize("page", ["team", "annotator", "mine"])
def test_query_counts_are_fixed(world, django_assert_num_queries, page):
    """The page's data (`?format=json`) takes a pinned number of queries, and the rendered page as many plus what
    the portal's frame asks (the alert bell), before and after the project grows."""
    user = world.alpha if page == "mine" else world.manager
    client = client_for(user)
    url = {"team": team_url(world), "annotator": annotator_url(world, world.alpha), "mine": mine_url(world)}[page]
    # session, user, project, guardian, the two snapshots, then: teams | membership, error type names, questions,
    # new reviews and their error types | error type names, new reviews and their error types, questions
    expected = {"team": 7, "annotator": 11, "mine": 10}[page]
    # feedback since the worker's pass, read live (and more of it once the project grows)
    services.review_reject(annotation=world.annotations[(world.alpha.pk, world.gold.pk)], reviewer=world.reviewer,
                           error_types=["boundary"], comment="since the pass")
    client.get(url)

    with django_assert_num_queries(expected):
        assert client.get(url + "?format=json").status_code == 200
    with CaptureQueriesContext(connection) as before:
        assert client.get(url).status_code == 200
    _grow(world, 6)
    with django_assert_num_queries(expected):
        assert client.get(url + "?format=json").status_code == 200
    with CaptureQueriesContext(connection) as after:
        assert client.get(url).status_code == 200
    assert len(after) == len(before) <= expected + 2


def test_a_missing_trends_snapshot_is_computed_by_the_workers(world):
    MetricSnapshot.objects.filter(project=world.project, kind=TRENDS_KIND).delete()
    from django.core.cache import cache

    cache.delete(f"people-trends-due:{world.project.pk}")

    data = client_for(world.manager).get(team_url(world) + "?format=json").json()  # eager here: it runs at once

    assert MetricSnapshot.objects.filter(project=world.project, kind=TRENDS_KIND).count() == 1
    assert data["trends"]["annotators"][str(world.alpha.pk)]["submitted"][-1] == 5


def test_a_stale_trends_snapshot_is_shown_while_it_is_recomputed(world):
    trends = MetricSnapshot.objects.get(project=world.project, kind=TRENDS_KIND)
    trends.computed_at = timezone.now() - timedelta(hours=3)
    trends.save()
    from django.core.cache import cache

    cache.delete(f"people-trends-due:{world.project.pk}")

    client_for(world.manager).get(team_url(world))

    trends.refresh_from_db()
    assert trends.computed_at > timezone.now() - timedelta(minutes=1)


def test_feedback_written_after_the_worker_s_pass_shows_at_once(world):
    annotation = world.annotations[(world.bravo.pk, world.gold.pk)]
    services.review_reject(annotation=annotation, reviewer=world.reviewer, error_types=["boundary"],
                           comment="New today")

    data = client_for(world.bravo).get(mine_url(world) + "?format=json").json()

    assert [(f["comment"], f["error_types"]) for f in data["feedback"]] == [("New today", ["Boundary"])]
    alpha = client_for(world.alpha).get(mine_url(world) + "?format=json").json()
    assert [f["comment"] for f in alpha["feedback"]] == [COMMENT]  # from the worker's snapshot
