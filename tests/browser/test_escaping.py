"""What people typed is shown as text and never runs (issue 3: "HTML/JS in task data, label names, notes and comments
… is escaped wherever a page shows it"), in headless Chromium, on the pages that draw it with their scripts — the
labeling page, the review page (one annotation, and two side by side), home and the project dashboard.

Every field a person can type into carries a payload with an <img onerror> (runs when inserted as HTML) and a
`</script><script>` (runs when it breaks out of a JSON block or an inline script); each pushes its field's tag onto
window.__xss, so a failure names the field. Label *values* cannot carry markup (apps.projects.label_schema allows
letters, digits, spaces and _ . - : / only), so label names and descriptions carry it.
"""

import json

import pytest
from playwright.sync_api import expect

from apps.projects import services as project_services
from apps.projects.models import Project
from apps.quality.models import ErrorType
from apps.tasks import services
from tests import factories
from tests.browser.conftest import login

pytestmark = pytest.mark.django_db(transaction=True)


def payload(tag, short=False):
    """`tag`, then markup that would record `tag` in window.__xss if it ran (`short`: under 100 characters)."""
    img = f"<img src=x alt={tag} onerror=(window.__xss=window.__xss||[]).push(this.alt)>"
    # no quotes in the script: JSON encoding (\") would turn a payload that escaped its block into a syntax error
    script = f"</script><script>(window.__xss=window.__xss||[]).push(/{tag}/.source)</script>"
    return f"{tag} {img}" if short else f"{tag} {img} {script}"


FIELDS = ("project", "label", "description", "guideline", "batch", "tasktext", "notes", "comment", "question",
          "errortype", "pairproject", "spanlabel", "spantext", "pairnotes")
P = {field: payload(field, short=field == "errortype") for field in FIELDS}


class World:
    """Two projects, every typed field carrying its payload.

    - `project` (classification, review all): annotator `ann`'s first task was rejected with a comment (rework);
      `ann2`'s submission with notes waits for review; `ann` asked a question on another task.
    - `pair` (text spans, overlap 2): `ann` and `ann2` tagged the same text differently: the reviewer sees them side
      by side.
    """

    def __init__(self):
        admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
        schema = {"labels": [{"value": "cat", "name": P["label"], "description": P["description"]},
                             {"value": "dog", "name": "Dog"}]}
        self.project = factories.project(actor=admin, schema=schema, slug="xss-one", review_mode="all")
        Project.objects.filter(pk=self.project.pk).update(name=P["project"])
        project_services.guideline_add(project=self.project, actor=admin, text=P["guideline"])
        ErrorType.objects.create(project=self.project, code="wrong-label", name=P["errortype"])
        self.ann, self.ann2 = (factories.member(self.project, "annotator", name) for name in ("ann", "ann2"))
        self.reviewer = factories.member(self.project, "reviewer", "rev")
        self.manager = factories.member(self.project, "manager", "man")
        batch = factories.batch(self.project, name=P["batch"])
        self.rework, self.waiting, self.asked = factories.tasks(batch, 3, data={"text": P["tasktext"]})

        rejected = self.submit(self.rework, self.ann, {"label": "cat"}, notes=P["notes"])
        services.review_reject(annotation=rejected, reviewer=self.reviewer, error_types=["wrong-label"],
                               comment=P["comment"])
        self.submit(self.waiting, self.ann2, {"label": "cat"}, notes=P["notes"])
        services.assignment_assign(task=self.asked, annotator=self.ann)
        services.clarification_ask(task=self.asked, actor=self.ann, question=P["question"])

        spans = {"labels": [{"value": "PER", "name": P["spanlabel"]}, {"value": "ORG", "name": "Organisation"}]}
        self.pair = factories.project(actor=admin, task_type="text_spans", schema=spans, slug="xss-pair",
                                      review_mode="all", overlap=2)
        Project.objects.filter(pk=self.pair.pk).update(name=P["pairproject"])
        for person in (self.ann, self.ann2):
            project_services.membership_add(project=self.pair, user=person, role="annotator")
        project_services.membership_add(project=self.pair, user=self.reviewer, role="reviewer")
        [pair_task] = factories.tasks(factories.batch(self.pair), 1, data={"text": f"Ada {P['spantext']}"})
        self.submit(pair_task, self.ann, {"spans": [{"start": 0, "end": 3, "label": "PER"}]}, notes=P["pairnotes"])
        self.submit(pair_task, self.ann2, {"spans": [{"start": 0, "end": 3, "label": "ORG"}]}, notes=P["pairnotes"])

    @staticmethod
    def submit(task, annotator, result, notes=""):
        assignment = services.assignment_assign(task=task, annotator=annotator)
        return services.assignment_submit(assignment=assignment, actor=annotator, result=result, notes=notes)


@pytest.fixture
def world(db):
    return World()


def nothing_ran(page):
    ran = page.evaluate("window.__xss === undefined ? null : window.__xss")
    assert ran is None, f"markup typed into these fields ran in {page.url}: {ran}"
    assert page.js_errors == []
    assert page.locator("img[alt]").evaluate_all(
        "imgs => imgs.filter(i => i.getAttribute('src') === 'x').length") == 0, "an <img> of a payload was inserted"


def shows_literally(page, *fields):
    for field in fields:
        expect(page.get_by_text(P[field]).first).to_be_visible()


def test_the_labeling_page_shows_typed_markup_as_text(page, world):
    login(page, "ann")
    page.goto(f"/projects/{world.project.pk}/label/")
    expect(page.locator("#task-ref")).to_have_text(f"Task {world.rework.pk}")
    expect(page.locator("#rework")).to_be_visible()

    shows_literally(page, "project", "guideline", "tasktext", "label", "comment")
    expect(page.locator("#rework-comment")).to_have_text(P["comment"])
    expect(page.locator("#rework-errors li")).to_have_text([P["errortype"]])
    expect(page.locator("#notes")).to_have_value(P["notes"])  # the rejected notes are the starting point
    nothing_ran(page)


def test_the_review_page_shows_typed_markup_as_text(page, world):
    login(page, "rev")
    page.goto(f"/projects/{world.project.pk}/review/")
    expect(page.locator("#workspace")).to_be_visible()
    expect(page.locator("#annotator")).to_have_text("ann2")

    shows_literally(page, "project", "guideline", "tasktext", "label", "notes")
    expect(page.locator("#notes")).to_have_text(P["notes"])
    page.keyboard.press("r")  # the reject dialog lists the error types
    expect(page.locator("#reject-dialog").get_by_text(P["errortype"])).to_be_visible()
    nothing_ran(page)


def test_the_pairwise_review_shows_typed_markup_as_text(page, world):
    login(page, "rev")
    page.goto(f"/projects/{world.pair.pk}/review/")
    pairwise = page.locator("#pairwise")
    expect(pairwise).to_be_visible()
    expect(pairwise.locator(".pairwise-column")).to_have_count(2)

    shows_literally(page, "pairproject", "spantext")
    expect(pairwise.get_by_text(P["spanlabel"]).first).to_be_visible()
    expect(page.locator("#widget").get_by_text(P["spantext"]).first).to_be_visible()
    nothing_ran(page)


def test_home_shows_typed_markup_as_text(page, world):
    login(page, "ann")
    expect(page.locator("#clar-title")).to_be_visible()
    shows_literally(page, "project", "pairproject", "question")
    nothing_ran(page)


def test_the_project_dashboard_shows_typed_markup_as_text(page, world):
    login(page, "man")
    page.goto(f"/projects/{world.project.pk}/dashboard/")
    page.wait_for_load_state("networkidle")
    shows_literally(page, "project")
    text = page.locator("body").inner_text()
    for field in ("batch", "errortype"):  # in the batch filter, the review table and the error-type chart
        assert P[field] in text, f"the dashboard does not show the {field} as typed"
    expect(page.locator("option").filter(has_text=P["batch"])).to_have_count(1)
    nothing_ran(page)


def test_the_payloads_do_run_when_inserted_unescaped(page):
    """The control: inserted as HTML, or written raw into an inline script, a payload records its tag — so the
    passes above come from escaping, not from payloads that never fire."""
    page.set_content("<div id=target></div><div id=after></div>")
    page.evaluate("html => { document.getElementById('target').innerHTML = html; }", P["label"])
    page.wait_for_function("window.__xss !== undefined")
    assert page.evaluate("window.__xss") == ["label"]

    page.evaluate("delete window.__xss")
    page.set_content(f"<script>const config = {json.dumps({'name': P['notes']})};</script>")  # not json_script
    page.wait_for_function("window.__xss !== undefined")
    assert page.evaluate("window.__xss") == ["notes"]
    assert len(P["errortype"]) <= 100  # ErrorType.name's max_length


def test_label_values_cannot_carry_markup():
    """Why the values above are plain: the schema refuses markup in a label's value (names may hold anything)."""
    from apps.core.errors import ValidationError
    from apps.projects.label_schema import label_schema_validate

    with pytest.raises(ValidationError):
        label_schema_validate("classification", {"labels": [{"value": P["label"][:60]}, {"value": "dog"}]})
    assert label_schema_validate("classification", {"labels": [{"value": "cat", "name": P["label"]}, {"value": "dog"}]})
