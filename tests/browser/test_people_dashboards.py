"""The people dashboards in headless Chromium: the team view, an annotator's detail and my stats draw their plotly
charts with data points, the team table sorts, and nobody else's name reaches an annotator's page. Screenshots go
to docs/screenshots/dashboard-team.png, dashboard-annotator.png and dashboard-my-stats.png."""

import random
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.annotators.models import Team
from apps.dashboards.people_trends import people_trends_recompute
from apps.projects.models import Membership
from apps.quality.models import ErrorType, Review
from apps.quality.services import quality_recompute_full
from apps.tasks.models import Annotation, Assignment, Clarification, Task
from tests import factories
from tests.browser.conftest import login

pytestmark = pytest.mark.django_db(transaction=True)

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
LABELS = ["cat", "dog", "bird"]
# username: (seconds per task, accuracy, team)
PEOPLE = {
    "amara": (14, 0.96, "Morning shift"), "bruno": (9, 0.70, "Morning shift"), "chen": (22, 0.98, "Morning shift"),
    "dana": (12, 0.90, "Morning shift"), "emil": (30, 0.93, "Evening shift"), "fatima": (16, 0.85, "Evening shift"),
    "goran": (11, 0.94, "Evening shift"), "hana": (19, 0.80, "Evening shift"),
}
COMMENTS = ["The animal on the left is a dog: look at the ears.", "Birds on a wire count as bird, see 3.2.",
            "Close one; the guideline says to label the main subject."]


class TeamWorld:
    """A classification project (overlap 3, review everything) worked for six weeks by eight annotators of
    different speed and care in two shifts; a quarter of the tasks are gold. Rows are written directly (as the
    worker would find them after six weeks), then the quality and trend workers run."""

    def __init__(self, n_tasks=90, weeks=6):
        rng = random.Random(7)
        self.admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
        self.project = factories.project(actor=self.admin, slug="street-pets", overlap=3, review_mode="all")
        self.manager = factories.member(self.project, Membership.Role.MANAGER, "manager")
        self.reviewer = factories.member(self.project, Membership.Role.REVIEWER, "reviewer")
        self.people = {name: factories.member(self.project, Membership.Role.ANNOTATOR, name) for name in PEOPLE}
        batch = factories.batch(self.project)
        truths = [rng.choice(LABELS) for _ in range(n_tasks)]
        tasks = Task.objects.bulk_create([
            Task(project=self.project, batch=batch, data={"text": "a pet"}, status=Task.Status.IN_REVIEW,
                 is_gold=i % 4 == 0, gold_answer={"label": truth} if i % 4 == 0 else None)
            for i, truth in enumerate(truths)])
        gold_ids = {t.pk for t in tasks if t.is_gold}
        wrong_label = ErrorType.objects.get(project=self.project, code="wrong_label")
        guideline = ErrorType.objects.get(project=self.project, code="guideline_not_followed")
        now = timezone.now()
        names = list(PEOPLE)
        annotations, reviews = [], []
        for i, (task, truth) in enumerate(zip(tasks, truths)):
            when = now - timedelta(days=weeks * 7 * (1 - i / n_tasks), hours=rng.uniform(0, 8))
            for name in rng.sample(names, 3):
                seconds, accuracy, _team = PEOPLE[name]
                learning = 1.3 - 0.5 * i / n_tasks  # everyone gets faster over the weeks
                person = self.people[name]
                assignment = Assignment.objects.create(task=task, annotator=person, status=Assignment.Status.SUBMITTED,
                                                       submitted_at=when)
                correct = rng.random() < accuracy
                label = truth if correct else rng.choice([x for x in LABELS if x != truth])
                annotations.append((Annotation(task=task, assignment=assignment, annotator=person, author=person,
                                               version=1, result={"label": label},
                                               lead_time_seconds=round(seconds * learning * rng.uniform(0.85, 1.2), 1),
                                               status=Annotation.Status.SUBMITTED), when, correct))
        created = Annotation.objects.bulk_create([a for a, _when, _correct in annotations])
        for annotation, (_a, when, correct) in zip(created, annotations):
            Annotation.objects.filter(pk=annotation.pk).update(submitted_at=when)
            if annotation.task_id in gold_ids:
                continue
            decision = Review.Decision.APPROVE if correct else Review.Decision.REJECT
            reviews.append((Review(annotation=annotation, reviewer=self.reviewer, decision=decision,
                                   comment="" if correct else rng.choice(COMMENTS),
                                   decided_at=when + timedelta(hours=2)), correct))
        for review, correct in zip(Review.objects.bulk_create([r for r, _c in reviews]), [c for _r, c in reviews]):
            if not correct:
                review.error_types.set([wrong_label] if review.pk % 3 else [wrong_label, guideline])
        bruno = self.people["bruno"]
        for task in tasks[5:7]:
            Clarification.objects.create(task=task, asked_by=bruno, question="Is a fox a dog for this project?")
        for team_name in ("Morning shift", "Evening shift"):
            team = Team.objects.create(name=team_name)
            team.members.set([self.people[n] for n, (_s, _a, t) in PEOPLE.items() if t == team_name])
        quality_recompute_full(project_id=self.project.pk)
        people_trends_recompute(self.project.pk)


def points(page, selector):
    """How many data points plotly drew in the chart `selector` (markers, bars and boxes)."""
    return page.locator(f"{selector} .scatterlayer .point, {selector} .barlayer .point, "
                        f"{selector} .boxlayer path.box").count()


def test_the_team_view_draws_speed_against_accuracy_and_sorts(page):
    world = TeamWorld()
    login(page, "manager")

    page.goto(f"/projects/{world.project.pk}/team/")

    expect(page.locator("#chart-scatter .main-svg").first).to_be_visible(timeout=15_000)
    assert points(page, "#chart-scatter") == len(PEOPLE)
    assert page.locator("#chart-scatter").get_by_text("fast but careless").count() == 1
    assert points(page, "#chart-teams") >= 2
    assert points(page, "#chart-trends") > len(PEOPLE)
    # the table sorts by a figure: the fastest (difficulty-adjusted) first, descending on a second click
    speed = page.locator("#annotators thead button", has_text="Speed")
    speed.click()
    speed.click()
    assert page.locator("#annotators thead th").nth(3).get_attribute("aria-sort") == "descending"
    first = page.locator("#annotators tbody tr").first.locator("th").inner_text()
    assert first == "bruno"  # 9 s a task: the fastest of the eight
    page.select_option("#trend-figure", "median_lead_time_seconds")
    assert points(page, "#chart-trends") > len(PEOPLE)
    assert page.js_errors == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard-team.png"), full_page=True)


def test_the_annotator_detail_draws_their_weeks_and_errors(page):
    world = TeamWorld()
    login(page, "manager")

    page.goto(f"/projects/{world.project.pk}/team/{world.people['bruno'].pk}/")

    expect(page.locator("#trend-submitted .main-svg").first).to_be_visible(timeout=15_000)
    for figure in ("submitted", "median_lead_time_seconds", "acceptance_rate"):
        assert points(page, f"#trend-{figure}") >= 4
    assert points(page, "#chart-errors") == 2  # wrong label, guideline not followed
    expect(page.locator("#hardest tbody tr").first).to_be_visible()
    expect(page.get_by_text("Is a fox a dog for this project?").first).to_be_visible()
    assert page.js_errors == []
    page.screenshot(path=str(SCREENSHOTS / "dashboard-annotator.png"), full_page=True)


def test_my_stats_show_where_i_stand_and_no_one_else(page):
    world = TeamWorld()
    login(page, "bruno")

    page.goto("/")
    page.get_by_role("link", name="My stats").click()

    expect(page.locator("#where-submitted .main-svg").first).to_be_visible(timeout=15_000)
    assert page.url.endswith(f"/projects/{world.project.pk}/my-stats/")
    assert points(page, "#where-acceptance_rate") == 2  # the team's box and the "you" marker
    assert points(page, "#trend-submitted") >= 4
    assert points(page, "#chart-errors") == 2
    html = page.content()
    for other in PEOPLE:
        if other != "bruno":
            assert other not in html
    assert "reviewer" not in html.lower().replace("reviewers", "")
    assert page.js_errors == []
    page.screenshot(path=str(SCREENSHOTS / "dashboard-my-stats.png"), full_page=True)


def test_what_people_typed_is_shown_as_text_never_run(page):
    world = TeamWorld(n_tasks=30)
    payload = '<img src=x onerror="window.__xss=1">'
    Team.objects.filter(name="Morning shift").update(name=f"Morning {payload}")
    bruno = world.people["bruno"]
    Review.objects.filter(annotation__annotator=bruno).exclude(comment="").update(comment=f"Look {payload}")
    Clarification.objects.filter(asked_by=bruno).update(question=f"Fox? {payload}")
    people_trends_recompute(world.project.pk)
    login(page, "manager")

    for path in (f"/projects/{world.project.pk}/team/", f"/projects/{world.project.pk}/team/{bruno.pk}/"):
        page.goto(path)
        expect(page.locator(".main-svg").first).to_be_visible(timeout=15_000)
        assert page.evaluate("window.__xss") is None
    expect(page.get_by_text(f"Fox? {payload}").first).to_be_visible()
    expect(page.get_by_text(f"Look {payload}").first).to_be_visible()
    page.goto(f"/projects/{world.project.pk}/team/")
    expect(page.get_by_text(f"Morning {payload}").first).to_be_visible()
    assert page.evaluate("window.__xss") is None and page.js_errors == []
