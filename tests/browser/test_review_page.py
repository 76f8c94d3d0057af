"""The review page in headless Chromium, as a reviewer works it: approve with A, reject with error types and a
comment (R), fix a text-span annotation with the keyboard and the mouse (F, label keys, Ctrl+Enter), escalate (E),
merge an overlap-2 pair side by side (M, Ctrl+Enter); and the annotator then finds the rework, with the reviewer's
comment, on the labeling page. Screenshots go to docs/screenshots/review.png and review-pairwise.png."""

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from apps.annotators.models import AnnotatorProfile
from apps.quality.models import Review
from apps.tasks import services
from apps.tasks.models import Annotation
from tests import factories
from tests.browser.conftest import login

pytestmark = pytest.mark.django_db(transaction=True)

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TEXT = "Ada Lovelace met Charles Babbage in London."
SPAN_SCHEMA = {"labels": [{"value": "PER", "name": "Person", "hotkey": "1", "color": "#1f77b4"},
                          {"value": "ORG", "name": "Organisation", "hotkey": "2", "color": "#2ca02c"},
                          {"value": "LOC", "name": "Location", "hotkey": "3", "color": "#d62728"}]}
ADA = {"start": 0, "end": 12, "label": "PER"}
BABBAGE = {"start": 17, "end": 32, "label": "PER"}
LONDON = {"start": 36, "end": 42, "label": "LOC"}
DECISION = re.compile(r"/api/v1/annotations/\d+/review/$")
PAIRWISE = re.compile(r"/api/v1/tasks/\d+/review/pairwise/$")


class Desk:
    """A project with `n` tasks, annotators ann0 and ann1, and the reviewer `reviewer` (and a lead, `lead`)."""

    def __init__(self, task_type="classification", n=2, data=None, schema=None, **options):
        self.project = factories.project(task_type=task_type, schema=schema, review_mode="all", **options)
        self.annotators = [factories.member(self.project, "annotator", f"ann{i}") for i in range(2)]
        self.reviewer = factories.member(self.project, "reviewer", "reviewer")
        self.lead = factories.member(self.project, "reviewer", "lead")
        AnnotatorProfile.objects.create(user=self.lead, seniority=AnnotatorProfile.Seniority.LEAD)
        self.tasks = factories.tasks(factories.batch(self.project), n, data=data or {"text": "Something purring."})

    def submit(self, task, annotator, result, notes=""):
        assignment = services.assignment_assign(task=task, annotator=annotator)
        return services.assignment_submit(assignment=assignment, actor=annotator, result=result, notes=notes)


def open_review(page, desk, username="reviewer"):
    login(page, username)
    page.goto(f"/projects/{desk.project.pk}/review/")
    expect(page.locator("#workspace")).to_be_visible()


def decide(page, key, url=DECISION):
    """Press `key` and wait for the decision's answer; return its status."""
    with page.expect_response(lambda r: url.search(r.url) and r.request.method == "POST") as answer:
        page.keyboard.press(key)
    return answer.value.status


def shown(page, annotation):
    """The page shows `annotation` (its author and version) and is ready for the next key."""
    expect(page.locator("#annotator")).to_have_text(annotation.annotator.username)
    expect(page.locator("#status")).to_have_text("")


def screenshot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def select_text(page, text):
    """Select `text` in the span widget with the mouse: press at its first character, drag to after its last."""
    box = page.evaluate("""text => {
        const root = document.querySelector('#widget .lp-span-text');
        const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            const at = node.textContent.indexOf(text);
            if (at < 0) continue;
            const range = document.createRange();
            range.setStart(node, at); range.setEnd(node, at + text.length);
            const r = range.getBoundingClientRect();
            return {left: r.left, right: r.right, y: r.top + r.height / 2};
        }
        return null;
    }""", text)
    assert box, f"“{text}” is not in the text"
    page.mouse.move(box["left"] + 1, box["y"])
    page.mouse.down()
    page.mouse.move(box["right"] - 1, box["y"], steps=5)
    page.mouse.up()


# --- approve, reject, and the annotator's rework ---------------------------------------------------------------------


def test_approve_with_the_a_key_resubmissions_first(page, live_server):
    # given two first submissions waiting and, submitted last, a resubmission after a rejection
    desk = Desk(n=3)
    first = desk.submit(desk.tasks[0], desk.annotators[0], {"label": "cat"}, notes="Looks like a cat to me")
    second = desk.submit(desk.tasks[1], desk.annotators[1], {"label": "dog"})
    rejected = desk.submit(desk.tasks[2], desk.annotators[0], {"label": "dog"})
    services.review_reject(annotation=rejected, reviewer=desk.lead, error_types=["wrong_label"])
    resubmitted = services.assignment_resubmit(assignment=rejected.assignment, actor=desk.annotators[0],
                                               result={"label": "bird"})
    open_review(page, desk)

    # the page shows the queue, and the resubmission first, marked as rework
    expect(page.locator("#queue")).to_contain_text("3 waiting")
    shown(page, resubmitted)
    expect(page.locator("#version")).to_have_text("resubmission, version 2")
    expect(page.locator("#badges")).to_have_text("rework")
    expect(page.locator("#widget .lp-label[data-value='bird']")).to_have_attribute("aria-pressed", "true")
    assert decide(page, "a") == 201

    # then the oldest first submission, drawn read-only, with its author, version and notes
    shown(page, first)
    expect(page.locator("#version")).to_have_text("first submission")
    expect(page.locator("#badges")).to_have_text("")
    expect(page.locator("#notes")).to_have_text("Looks like a cat to me")
    expect(page.locator("#widget .lp-label[data-value='cat']")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#widget .lp-label[data-value='cat']")).to_be_disabled()
    assert decide(page, "a") == 201
    shown(page, second)
    assert decide(page, "A") == 201
    expect(page.locator("#done")).to_be_visible()

    for annotation in (resubmitted, first, second):
        annotation.refresh_from_db()
        assert annotation.status == "approved"
    assert set(Review.objects.filter(reviewer=desk.reviewer).values_list("decision", flat=True)) == {"approve"}
    assert page.js_errors == []


def test_reject_with_error_types_and_a_comment_then_the_annotator_sees_the_rework(page, new_page):
    # given a submission waiting
    desk = Desk(n=1)
    annotation = desk.submit(desk.tasks[0], desk.annotators[0], {"label": "cat"})
    open_review(page, desk)
    shown(page, annotation)

    # when the reviewer presses R, the dialog lists the project's error types
    page.keyboard.press("r")
    dialog = page.locator("#reject-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("label.check")).to_have_text(
        ["Boundary", "Data problem", "Extra object", "Guideline not followed", "Missed object", "Wrong label"])
    # sending it without an error type is refused on the page, and nothing is sent
    page.fill("#reject-comment", "It barks: a dog.")
    dialog.get_by_role("button", name="Send back for rework").click()
    expect(page.locator("#reject-error")).to_have_text("Choose at least one error type.")
    assert not Review.objects.filter(decided_at__isnull=False).exists()
    # with two error types checked it goes out
    dialog.get_by_label("Wrong label").check()
    dialog.get_by_label("Guideline not followed").check()
    with page.expect_response(lambda r: DECISION.search(r.url)) as answer:
        dialog.get_by_role("button", name="Send back for rework").click()
    assert answer.value.status == 201
    expect(dialog).to_be_hidden()
    expect(page.locator("#done")).to_be_visible()

    review = Review.objects.get()
    assert (review.decision, review.comment) == ("reject", "It barks: a dog.")
    assert sorted(review.error_types.values_list("code", flat=True)) == ["guideline_not_followed", "wrong_label"]
    annotation.refresh_from_db()
    assert annotation.status == "rejected"

    # then the annotator, in their own browser, gets the rework with the reviewer's comment on the labeling page
    annotator_page = new_page()
    login(annotator_page, "ann0")
    annotator_page.goto(f"/projects/{desk.project.pk}/label/")
    rework = annotator_page.locator("#rework")
    expect(rework).to_be_visible()
    expect(annotator_page.locator("#rework-comment")).to_have_text("It barks: a dog.")
    expect(annotator_page.locator("#rework-reviewer")).to_have_text("reviewer")
    expect(annotator_page.locator("#rework-errors li")).to_have_text(["Guideline not followed", "Wrong label"])
    # starting from their rejected result
    expect(annotator_page.locator("#widget .lp-label[data-value='cat']")).to_have_attribute("aria-pressed", "true")
    assert annotator_page.js_errors == []
    assert page.js_errors == []


# --- fix and accept, on text spans -----------------------------------------------------------------------------------


def test_fix_a_text_span_annotation_with_keyboard_and_mouse(page, live_server):
    # given a text-span submission that tagged only "Ada Lovelace"
    desk = Desk(task_type="text_spans", n=1, data={"text": TEXT}, schema=SPAN_SCHEMA)
    annotation = desk.submit(desk.tasks[0], desk.annotators[0], {"spans": [ADA]}, notes="Not sure about London")
    open_review(page, desk)
    shown(page, annotation)
    expect(page.locator("#widget .lp-span-list li")).to_have_text([re.compile("Person.*Ada Lovelace")])
    screenshot(page, "review.png")

    # when the reviewer presses F, the result becomes editable and the decision buttons make way for the fix's
    page.keyboard.press("f")
    expect(page.locator("#fixing")).to_be_visible()
    expect(page.locator("#decisions")).to_be_hidden()
    # keyboard: → moves the selection word by word ("Ada", …, "Charles"), Shift+→ extends it, 1 tags it Person
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    expect(page.locator("#widget .lp-span-info")).to_have_text(re.compile("Charles Babbage"))
    page.keyboard.press("1")
    # mouse: select "London" and press 3 (Location)
    select_text(page, "London")
    expect(page.locator("#widget .lp-span-info")).to_have_text(re.compile("“London”"))
    page.keyboard.press("3")
    expect(page.locator("#widget .lp-span-list li")).to_have_count(3)

    # and Ctrl+Enter accepts the fix
    assert decide(page, "Control+Enter") == 201
    expect(page.locator("#done")).to_be_visible()

    # then the reviewer's version is stored beside the annotator's, and the task is accepted with it
    fixed = Annotation.objects.get(assignment=annotation.assignment, is_current=True)
    assert (fixed.version, fixed.author.username, fixed.source, fixed.status) == (2, "reviewer", "review_fix",
                                                                                   "approved")
    assert fixed.result == {"spans": [ADA, BABBAGE, LONDON]}
    annotation.refresh_from_db()
    assert (annotation.result, annotation.author.username, annotation.status) == ({"spans": [ADA]}, "ann0",
                                                                                  "superseded")
    desk.tasks[0].refresh_from_db()
    assert (desk.tasks[0].status, desk.tasks[0].final_result) == ("accepted", fixed.result)
    assert page.js_errors == []


def test_escape_cancels_a_fix_and_nothing_is_sent(page, live_server):
    desk = Desk(task_type="text_spans", n=1, data={"text": TEXT}, schema=SPAN_SCHEMA)
    annotation = desk.submit(desk.tasks[0], desk.annotators[0], {"spans": [ADA]})
    open_review(page, desk)
    shown(page, annotation)

    page.keyboard.press("f")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("2")
    expect(page.locator("#widget .lp-span-list li")).to_have_count(2)
    page.keyboard.press("Escape")

    expect(page.locator("#decisions")).to_be_visible()
    expect(page.locator("#widget .lp-span-list li")).to_have_count(1)
    assert Annotation.objects.get().status == "submitted" and not Review.objects.filter(decision="fix").exists()
    assert page.js_errors == []


# --- escalate --------------------------------------------------------------------------------------------------------


def test_escalate_with_a_comment_and_the_lead_sees_it_marked(page, new_page):
    desk = Desk(n=1)
    annotation = desk.submit(desk.tasks[0], desk.annotators[0], {"label": "bird"})
    open_review(page, desk)
    shown(page, annotation)

    # when the reviewer presses E and says why
    page.keyboard.press("e")
    expect(page.locator("#escalate-dialog")).to_be_visible()
    page.fill("#escalate-comment", "A bat: bird or not?")
    with page.expect_response(lambda r: DECISION.search(r.url)) as answer:
        page.locator("#escalate-dialog").get_by_role("button", name="Escalate").click()
    assert answer.value.status == 201

    # then it leaves their queue, and is escalated with the comment
    expect(page.locator("#done")).to_be_visible()
    annotation.refresh_from_db()
    assert annotation.status == "escalated"
    assert Review.objects.get().comment == "A bat: bird or not?"

    # and the lead gets it marked as escalated, without the escalate button, and can decide it
    lead_page = new_page()
    open_review(lead_page, desk, "lead")
    expect(lead_page.locator("#queue")).to_contain_text("you take escalations")
    expect(lead_page.locator("#badges")).to_have_text("escalated")
    expect(lead_page.locator("#escalate")).to_be_hidden()
    assert decide(lead_page, "a") == 201
    annotation.refresh_from_db()
    assert annotation.status == "approved"
    assert lead_page.js_errors == []
    assert page.js_errors == []


# --- pairwise ----------------------------------------------------------------------------------------------------------


def test_pairwise_merge_of_an_overlap_two_task(page, live_server):
    # given an overlap-2 text-span task: ann0 tagged Ada and London, ann1 Ada and Babbage
    desk = Desk(task_type="text_spans", n=1, data={"text": TEXT}, schema=SPAN_SCHEMA, overlap=2)
    first = desk.submit(desk.tasks[0], desk.annotators[0], {"spans": [ADA, LONDON]})
    second = desk.submit(desk.tasks[0], desk.annotators[1], {"spans": [ADA, BABBAGE]})
    open_review(page, desk)
    shown(page, first)

    # the page shows both side by side, and outlines what only one of them has
    pairwise = page.locator("#pairwise")
    expect(pairwise).to_be_visible()
    columns = pairwise.locator(".pairwise-column")
    expect(columns.locator("h3")).to_have_text(["ann0 · v1", "ann1 · v1"])
    expect(columns.nth(0).locator(".lp-span-list li.lp-diff")).to_have_text([re.compile("London")])
    expect(columns.nth(1).locator(".lp-span-list li.lp-diff")).to_have_text([re.compile("Charles Babbage")])
    expect(columns.nth(0).locator(".lp-span-list li:not(.lp-diff)")).to_have_text([re.compile("Ada Lovelace")])
    screenshot(page, "review-pairwise.png")

    # when the reviewer presses M, the merged result (everything anyone tagged) is ready to edit
    page.keyboard.press("m")
    expect(page.locator("#accept-fix")).to_contain_text("Accept the merged result")
    expect(page.locator("#widget .lp-span-list li")).to_have_count(3)
    # and Ctrl+Enter resolves the pair
    assert decide(page, "Control+Enter", PAIRWISE) == 200
    expect(page.locator("#done")).to_be_visible()

    # then both annotations are fixed to the merged result, and the task is accepted with it
    merged = {"spans": [ADA, BABBAGE, LONDON]}
    for original in (first, second):
        fixed = Annotation.objects.get(assignment=original.assignment, is_current=True)
        assert (fixed.version, fixed.author.username, fixed.source, fixed.result) == (2, "reviewer", "review_fix",
                                                                                      merged)
    desk.tasks[0].refresh_from_db()
    assert (desk.tasks[0].status, desk.tasks[0].final_result) == ("accepted", merged)
    assert page.js_errors == []


def test_pairwise_pick_one_with_its_button(page, live_server):
    desk = Desk(n=1, overlap=2)
    first = desk.submit(desk.tasks[0], desk.annotators[0], {"label": "cat"})
    second = desk.submit(desk.tasks[0], desk.annotators[1], {"label": "dog"})
    open_review(page, desk)
    shown(page, first)

    column = page.locator(".pairwise-column").nth(1)
    expect(column.locator(".lp-label.lp-diff")).to_have_attribute("data-value", "dog")
    with page.expect_response(lambda r: PAIRWISE.search(r.url)) as answer:
        column.get_by_role("button", name="Pick this one").click()
    assert answer.value.status == 200
    expect(page.locator("#done")).to_be_visible()

    second.refresh_from_db()
    assert second.status == "approved"
    desk.tasks[0].refresh_from_db()
    assert (desk.tasks[0].status, desk.tasks[0].final_result) == ("accepted", {"label": "dog"})
    assert page.js_errors == []


# --- a bad connection loses no decision ------------------------------------------------------------------------------


def flaky(page, url, calls):
    """The first request to `url` is lost on the way; the second reaches the server but its answer is lost; the
    third gets the server's (replayed) answer. `calls` collects the Idempotency-Key of each try."""

    def route(route):
        calls.append(route.request.headers.get("idempotency-key"))
        if len(calls) == 1:
            route.abort()
        elif len(calls) == 2:
            route.fetch()
            route.abort()
        else:
            route.continue_()

    page.route(url, route)


def test_a_decision_survives_a_bad_connection(page, live_server):
    desk = Desk(n=2)
    first = desk.submit(desk.tasks[0], desk.annotators[0], {"label": "cat"})
    second = desk.submit(desk.tasks[1], desk.annotators[1], {"label": "dog"})
    open_review(page, desk)
    shown(page, first)
    calls = []
    flaky(page, DECISION, calls)

    page.keyboard.press("a")

    shown(page, second)
    assert len(calls) == 3 and len(set(calls)) == 1  # one decision, retried with the same key
    first.refresh_from_db()
    assert first.status == "approved" and Review.objects.filter(decided_at__isnull=False).count() == 1
    assert page.js_errors == []


def test_a_pairwise_resolution_survives_a_bad_connection(page, live_server):
    desk = Desk(n=1, overlap=2)
    first = desk.submit(desk.tasks[0], desk.annotators[0], {"label": "cat"})
    desk.submit(desk.tasks[0], desk.annotators[1], {"label": "dog"})
    open_review(page, desk)
    shown(page, first)
    calls = []
    flaky(page, PAIRWISE, calls)

    page.locator(".pairwise-column").nth(0).get_by_role("button", name="Pick this one").click()

    expect(page.locator("#done")).to_be_visible()
    assert len(calls) == 3 and len(set(calls)) == 1
    desk.tasks[0].refresh_from_db()
    assert (desk.tasks[0].status, desk.tasks[0].final_result) == ("accepted", {"label": "cat"})
    assert page.js_errors == []
