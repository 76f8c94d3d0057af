"""The review page in headless Chromium, as a reviewer works it: approve with A or the button (the queue length
following each decision), reject with error types and a required comment (R; the server's refusal shown in the
dialog), fix a text-span annotation with the keyboard and the mouse (F, label keys, Ctrl+Enter) and a fix with
error types, escalate (E) and a senior's escalations queue, merge an overlap-2 pair side by side (M, Ctrl+Enter),
pick or reject one column, review bounding boxes; the guideline version the work was made under; and the annotator
then finds the rework, with the reviewer's comment, on the labeling page. Screenshots go to
docs/screenshots/review.png and review-pairwise.png."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.annotators.models import AnnotatorProfile
from apps.projects import services as project_services
from apps.quality.models import ErrorType, Review
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

    def extra_task(self):
        return factories.tasks(self.tasks[0].batch, 1, data=self.tasks[0].data)[0]

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
    services.review_reject(annotation=rejected, reviewer=desk.lead, error_types=["wrong_label"], comment="A bird")
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
    # the comment is required
    expect(page.locator("#reject-comment")).to_have_attribute("required", "")
    expect(dialog.locator("label[for=reject-comment]")).to_have_text("Comment for the annotator (required)")
    # sending it without an error type is refused on the page, and nothing is sent
    page.fill("#reject-comment", "It barks: a dog.")
    dialog.get_by_role("button", name="Send back for rework").click()
    expect(page.locator("#reject-types-error")).to_have_text("Choose at least one error type.")
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


# --- the buttons, the queue length, the guideline version --------------------------------------------------------------


def test_approve_with_the_button_and_the_queue_length_follows(page, live_server):
    # given three submissions waiting, the oldest two hours old
    desk = Desk(n=3)
    waiting = [desk.submit(task, desk.annotators[i % 2], {"label": "cat"}) for i, task in enumerate(desk.tasks)]
    Annotation.objects.filter(pk=waiting[0].pk).update(submitted_at=timezone.now() - timedelta(hours=2, minutes=1))
    open_review(page, desk)
    shown(page, waiting[0])
    expect(page.locator("#queue")).to_contain_text("3 waiting, oldest 2 hours")

    # when the reviewer clicks Approve (no hotkey), the next comes and the line says what is left
    with page.expect_response(lambda r: DECISION.search(r.url)) as answer:
        page.get_by_role("button", name="Approve").click()
    assert answer.value.status == 201
    shown(page, waiting[1])
    expect(page.locator("#queue-length")).to_have_text("2 waiting")
    expect(page.locator("#queue-oldest")).to_have_text(re.compile(r"^, oldest \d+ minutes?$"))
    page.get_by_role("button", name="Approve").click()
    shown(page, waiting[2])
    expect(page.locator("#queue-length")).to_have_text("1 waiting")
    page.get_by_role("button", name="Approve").click()

    # then the empty queue says 0, with no age
    expect(page.locator("#done")).to_be_visible()
    expect(page.locator("#queue-length")).to_have_text("0 waiting")
    expect(page.locator("#queue-oldest")).to_have_text("")
    assert [fresh.status for fresh in Annotation.objects.filter(pk__in=[a.pk for a in waiting])] == ["approved"] * 3
    assert page.js_errors == []


def test_the_guideline_shown_is_the_version_the_annotation_was_made_under(page, live_server):
    # given a submission made under guideline v2 (its text with markup, to be shown as text), and v3 written since
    desk = Desk(n=1)
    admin = desk.project.created_by
    project_services.guideline_add(project=desk.project, actor=admin,
                                   text="Dogs <b>bark</b>.\nCats purr.\n\nBirds sing.")
    annotation = desk.submit(desk.tasks[0], desk.annotators[0], {"label": "cat"})
    project_services.guideline_add(project=desk.project, actor=admin, text="The newest version.")
    assert annotation.guideline_version == 2
    open_review(page, desk)
    shown(page, annotation)

    # then the version line, the title and the text are v2's, and the page says v3 is current
    expect(page.locator("#guideline-version")).to_have_text("made under guideline v2")
    expect(page.locator("#guideline-title")).to_have_text("Guideline v2")
    expect(page.locator("#guideline-text p")).to_have_text(["Dogs <b>bark</b>.Cats purr.", "Birds sing."])
    expect(page.locator("#guideline-text b")).to_have_count(0)
    expect(page.locator("#guideline-text p").first.locator("br")).to_have_count(1)
    expect(page.locator("#guideline-note")).to_have_text(
        "The version this annotation was made under; the current guideline is v3.")
    expect(page.locator("#guideline")).not_to_contain_text("The newest version.")
    assert page.js_errors == []


# --- reject: the comment is required, the server's refusal is shown in the dialog -------------------------------------


def test_reject_needs_a_comment_and_the_server_s_refusal_shows_in_the_dialog(page, live_server):
    desk = Desk(n=1)
    annotation = desk.submit(desk.tasks[0], desk.annotators[0], {"label": "cat"})
    open_review(page, desk)
    shown(page, annotation)
    page.get_by_role("button", name="Reject").click()
    dialog = page.locator("#reject-dialog")
    dialog.get_by_label("Wrong label").check()

    # a comment of blanks is refused on the page, nothing sent
    page.fill("#reject-comment", "   ")
    dialog.get_by_role("button", name="Send back for rework").click()
    expect(page.locator("#reject-comment-error")).to_have_text("Write a comment for the annotator.")
    assert not Review.objects.filter(decided_at__isnull=False).exists()

    # when the server refuses (the error type was retired while the dialog was open), its reason shows in the
    # dialog, which stays open with what the reviewer typed
    ErrorType.objects.filter(project=desk.project, code="wrong_label").update(is_active=False)
    page.fill("#reject-comment", "It <b>barks</b>.")
    with page.expect_response(lambda r: DECISION.search(r.url)) as answer:
        dialog.get_by_role("button", name="Send back for rework").click()
    assert answer.value.status == 400
    expect(page.locator("#reject-error")).to_have_text("Unknown error type(s): wrong_label.")
    expect(page.locator("#reject-types-error")).to_have_text("Unknown: wrong_label")
    expect(dialog).to_be_visible()
    expect(page.locator("#reject-comment")).to_have_value("It <b>barks</b>.")

    # with another error type it goes out, the comment as typed
    dialog.get_by_label("Guideline not followed").check()
    dialog.get_by_label("Wrong label").uncheck()
    with page.expect_response(lambda r: DECISION.search(r.url)) as answer:
        dialog.get_by_role("button", name="Send back for rework").click()
    assert answer.value.status == 201
    expect(dialog).to_be_hidden()
    expect(page.locator("#done")).to_be_visible()
    review = Review.objects.get(decided_at__isnull=False)
    assert (review.decision, review.comment) == ("reject", "It <b>barks</b>.")
    assert list(review.error_types.values_list("code", flat=True)) == ["guideline_not_followed"]
    assert page.js_errors == []


# --- fixes with error types ------------------------------------------------------------------------------------------


def test_a_fix_records_the_error_types_ticked(page, live_server):
    desk = Desk(n=1)
    annotation = desk.submit(desk.tasks[0], desk.annotators[0], {"label": "cat"})
    open_review(page, desk)
    shown(page, annotation)

    # when the reviewer clicks Fix, relabels, ticks what was wrong and accepts with the button
    page.get_by_role("button", name="Fix and accept").click()
    fieldset = page.locator("#fix-error-types")
    expect(fieldset).to_be_visible()
    expect(fieldset.locator("legend")).to_have_text("What was wrong (optional)")
    page.locator("#widget .lp-label[data-value='dog']").click()
    fieldset.get_by_label("Wrong label").check()
    with page.expect_response(lambda r: DECISION.search(r.url)) as answer:
        page.locator("#accept-fix").click()
    assert answer.value.status == 201
    expect(page.locator("#done")).to_be_visible()

    # then the fix is stored with its error type, which the error figures count
    review = Review.objects.get(decision="fix")
    assert list(review.error_types.values_list("code", flat=True)) == ["wrong_label"]
    assert review.corrected_annotation.result == {"label": "dog"}
    assert page.js_errors == []


def test_a_fix_without_error_types_still_goes_through(page, live_server):
    desk = Desk(n=1)
    annotation = desk.submit(desk.tasks[0], desk.annotators[0], {"label": "cat"})
    open_review(page, desk)
    shown(page, annotation)

    page.keyboard.press("f")
    page.locator("#widget .lp-label[data-value='bird']").click()
    assert decide(page, "Control+Enter") == 201

    expect(page.locator("#done")).to_be_visible()
    assert not Review.objects.get(decision="fix").error_types.exists()
    assert page.js_errors == []


def test_pairwise_pick_marks_the_annotation_not_picked_with_the_error_types(page, live_server):
    desk = Desk(n=1, overlap=2)
    first = desk.submit(desk.tasks[0], desk.annotators[0], {"label": "cat"})
    second = desk.submit(desk.tasks[0], desk.annotators[1], {"label": "dog"})
    open_review(page, desk)
    shown(page, first)

    page.locator("#pick-error-types").get_by_label("Wrong label").check()
    with page.expect_response(lambda r: PAIRWISE.search(r.url)) as answer:
        page.locator(".pairwise-column").nth(1).get_by_role("button", name="Pick this one").click()
    assert answer.value.status == 200
    expect(page.locator("#done")).to_be_visible()

    # the picked one is approved with no error; the other is fixed to it, marked wrong label
    picked = Review.objects.get(annotation=second)
    other = Review.objects.get(annotation=first)
    assert (picked.decision, list(picked.error_types.values_list("code", flat=True))) == ("approve", [])
    assert (other.decision, list(other.error_types.values_list("code", flat=True))) == ("fix", ["wrong_label"])
    assert page.js_errors == []


def test_a_merge_marks_only_the_annotations_that_differ_from_the_merged_result(page, live_server):
    # given ann0 tagged Ada and London, ann1 only Ada: the merge (everything anyone tagged) is ann0's result
    desk = Desk(task_type="text_spans", n=1, data={"text": TEXT}, schema=SPAN_SCHEMA, overlap=2)
    first = desk.submit(desk.tasks[0], desk.annotators[0], {"spans": [LONDON, ADA]})
    second = desk.submit(desk.tasks[0], desk.annotators[1], {"spans": [ADA]})
    open_review(page, desk)
    shown(page, first)

    page.keyboard.press("m")
    expect(page.locator("#fix-error-types legend")).to_have_text(
        "What was wrong in the annotations that differ from the merged result (optional)")
    page.locator("#fix-error-types").get_by_label("Missed object").check()
    assert decide(page, "Control+Enter", PAIRWISE) == 200
    expect(page.locator("#done")).to_be_visible()

    # then ann0's annotation, the same as the merged result, is approved unmarked; ann1's is fixed, missed object
    first_review, second_review = Review.objects.get(annotation=first), Review.objects.get(annotation=second)
    assert (first_review.decision, first_review.error_types.count()) == ("approve", 0)
    assert (second_review.decision, list(second_review.error_types.values_list("code", flat=True))) == (
        "fix", ["missed_object"])
    desk.tasks[0].refresh_from_db()
    assert desk.tasks[0].status == "accepted"
    assert page.js_errors == []


# --- pairwise: reject one column -------------------------------------------------------------------------------------


def test_pairwise_reject_one_column_with_its_button(page, live_server):
    desk = Desk(n=1, overlap=2)
    first = desk.submit(desk.tasks[0], desk.annotators[0], {"label": "cat"})
    second = desk.submit(desk.tasks[0], desk.annotators[1], {"label": "dog"})
    open_review(page, desk)
    shown(page, first)

    # when the reviewer rejects the second column
    page.locator(".pairwise-column").nth(1).get_by_role("button", name="Reject").click()
    dialog = page.locator("#reject-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Wrong label").check()
    page.fill("#reject-comment", "Purring: a cat.")
    with page.expect_response(lambda r: DECISION.search(r.url)) as answer:
        dialog.get_by_role("button", name="Send back for rework").click()
    assert answer.value.status == 201
    assert f"/annotations/{second.pk}/review/" in answer.value.url

    # then only that annotation goes back for rework; the first is still there to decide, alone now
    expect(dialog).to_be_hidden()
    shown(page, first)
    expect(page.locator("#pairwise")).to_be_hidden()
    second.refresh_from_db()
    first.refresh_from_db()
    assert (second.status, first.status) == ("rejected", "submitted")
    assert Review.objects.get(annotation=second).comment == "Purring: a cat."
    assert page.js_errors == []


# --- bounding boxes ----------------------------------------------------------------------------------------------------

IMAGE = "/static/tasks/test-pattern.svg"  # 640 × 480, served by the live server's static files handler
CAR = {"x": 0.1, "y": 0.1, "w": 0.3, "h": 0.3, "label": "car"}
CAR_NEARLY = {"x": 0.11, "y": 0.1, "w": 0.3, "h": 0.29, "label": "car"}  # the same car (IoU ≥ 0.5)
PERSON = {"x": 0.6, "y": 0.5, "w": 0.1, "h": 0.3, "label": "person"}
PERSON_ELSEWHERE = {"x": 0.2, "y": 0.6, "w": 0.1, "h": 0.3, "label": "person"}


def test_review_of_bounding_boxes_drawn_read_only_with_the_pair_s_differences(page, live_server):
    # given an overlap-2 image task: both marked the car; the person each put somewhere else
    desk = Desk(task_type="bounding_boxes", n=1, data={"image": IMAGE, "width": 640, "height": 480}, overlap=2)
    first = desk.submit(desk.tasks[0], desk.annotators[0], {"boxes": [CAR, PERSON]})
    desk.submit(desk.tasks[0], desk.annotators[1], {"boxes": [CAR_NEARLY, PERSON_ELSEWHERE]})
    open_review(page, desk)
    shown(page, first)

    # the annotation under review is drawn, read-only: its two boxes, no handles, no way to add or remove one
    widget = page.locator("#widget")
    expect(widget.locator("rect.lp-box")).to_have_count(2)
    expect(widget.locator("rect.lp-box").nth(0)).to_have_attribute("x", "0.1")
    expect(widget.locator("rect.lp-box").nth(1)).to_have_attribute("y", "0.5")
    expect(widget.get_by_role("button", name="Add box")).to_have_count(0)
    expect(widget.locator(".lp-remove")).to_have_count(0)
    widget.locator(".lp-span-list .lp-chip").first.click()  # selecting a box shows no handles to drag
    expect(widget.locator("rect.lp-handle")).to_have_count(0)

    # side by side: the cars match, the persons do not, in the drawing and in the list
    columns = page.locator(".pairwise-column")
    for i in range(2):
        expect(columns.nth(i).locator("rect.lp-box")).to_have_count(2)
        expect(columns.nth(i).locator("rect.lp-box.lp-diff")).to_have_attribute("data-box", "1")
        expect(columns.nth(i).locator(".lp-span-list li.lp-diff")).to_have_text([re.compile("person")])
        expect(columns.nth(i).locator(".lp-span-list li:not(.lp-diff)")).to_have_text([re.compile("car")])

    # picking the first resolves the task with its boxes
    with page.expect_response(lambda r: PAIRWISE.search(r.url)) as answer:
        columns.nth(0).get_by_role("button", name="Pick this one").click()
    assert answer.value.status == 200
    expect(page.locator("#done")).to_be_visible()
    desk.tasks[0].refresh_from_db()
    assert (desk.tasks[0].status, desk.tasks[0].final_result) == ("accepted", {"boxes": [CAR, PERSON]})
    assert page.js_errors == []


# --- a senior's two queues ---------------------------------------------------------------------------------------------


def test_a_lead_works_the_escalations_and_the_review_queue_apart(page, live_server):
    # given two plain submissions and one the reviewer escalated
    desk = Desk(n=3)
    plains = [desk.submit(task, desk.annotators[i], {"label": "cat"}) for i, task in enumerate(desk.tasks[:2])]
    hard = desk.submit(desk.tasks[2], desk.annotators[0], {"label": "bird"})
    services.review_escalate(annotation=hard, reviewer=desk.reviewer, comment="A bat?")
    open_review(page, desk, "lead")

    # the lead starts on the escalations (there is one), and sees both queues' lengths
    expect(page.locator("#tab-escalations")).to_have_text("Escalations (1)")
    expect(page.locator("#tab-review")).to_have_text("Review queue (2)")
    expect(page.locator("#tab-escalations")).to_have_attribute("aria-pressed", "true")
    shown(page, hard)
    expect(page.locator("#badges")).to_have_text("escalated")

    # when they approve it, the escalations queue is empty and offers the review queue
    assert decide(page, "a") == 201
    expect(page.locator("#done")).to_be_visible()
    expect(page.locator("#done-title")).to_have_text("No escalations are waiting")
    expect(page.locator("#tab-escalations")).to_have_text("Escalations (0)")
    expect(page.locator("#switch-queue")).to_have_text("Go to the review queue (2)")

    # the switch takes them to the review queue, oldest first, and the address remembers it
    page.locator("#tab-review").click()
    shown(page, plains[0])
    expect(page.locator("#tab-review")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#badges")).to_have_text("")
    assert page.url.endswith("?queue=review")
    assert decide(page, "a") == 201
    shown(page, plains[1])
    expect(page.locator("#tab-review")).to_have_text("Review queue (1)")

    # and a new escalation meanwhile: the escalations tab serves it, leaving the open plain one for later
    other = desk.submit(desk.extra_task(), desk.annotators[1], {"label": "dog"})
    services.review_escalate(annotation=other, reviewer=desk.reviewer, comment="Unsure")
    page.locator("#tab-escalations").click()
    shown(page, other)
    expect(page.locator("#tab-escalations")).to_have_attribute("aria-pressed", "true")
    page.locator("#tab-review").click()
    shown(page, plains[1])
    hard.refresh_from_db()
    assert hard.status == "approved"
    assert page.js_errors == []


def test_a_reviewer_who_is_not_senior_has_no_queue_switch(page, live_server):
    desk = Desk(n=1)
    annotation = desk.submit(desk.tasks[0], desk.annotators[0], {"label": "cat"})
    open_review(page, desk)
    shown(page, annotation)

    expect(page.locator("#queue-tabs")).to_have_count(0)
    assert page.js_errors == []
