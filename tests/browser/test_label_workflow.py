"""The labeling page around the widgets: drafts survive a reload, a submit survives a bad connection, the server's
sanity rules are shown, skip, hold with a clarification and resume, rework with the reviewer's feedback, the
shortcuts, and lead time that counts active time only."""

import json
import re
import time

import pytest
from playwright.sync_api import expect

from apps.projects import services as project_services
from apps.quality.models import ErrorType
from apps.tasks import services
from apps.tasks.models import Annotation, Assignment, Clarification
from tests import factories
from tests.browser.conftest import login

pytestmark = pytest.mark.django_db(transaction=True)

SUBMIT_URL = re.compile(r"/api/v1/assignments/\d+/submit/$")


class Setup:
    """A classification project (cat 1, dog 2, bird 3) with an active batch, an annotator, a manager, a reviewer."""

    def __init__(self, n=2, task_type="classification", data=None):
        self.project = factories.project(task_type=task_type)
        self.annotator = factories.member(self.project, "annotator", "annotator")
        self.manager = factories.member(self.project, "manager", "manager")
        self.reviewer = factories.member(self.project, "reviewer", "reviewer")
        self.tasks = factories.tasks(factories.batch(self.project), n,
                                     data=data or {"text": "Something with whiskers."})

    def assignment(self, task):
        return Assignment.objects.get(task=task, annotator=self.annotator)


def open_labeling(page, setup, username="annotator"):
    login(page, username)
    page.get_by_role("link", name="Start labeling").click()    # from the home page, as a person would
    page.wait_for_url(f"**/projects/{setup.project.pk}/label/")
    expect(page.locator("#task-ref")).to_have_text(f"Task {setup.tasks[0].pk}")


def label(page, value):
    return page.locator(f"#widget .lp-label[data-value='{value}']")


def task_shown(page, task):
    expect(page.locator("#task-ref")).to_have_text(f"Task {task.pk}")


def draft_of(page, assignment):
    raw = page.evaluate("key => localStorage.getItem(key)", f"labelportal:draft:{assignment.annotator_id}:{assignment.pk}")
    return json.loads(raw) if raw else None


# --- nothing lost -------------------------------------------------------------------------------------------------


def test_draft_with_notes_is_restored_after_a_reload(page, live_server):
    setup = Setup()
    open_labeling(page, setup)
    page.keyboard.press("2")
    page.keyboard.press("Alt+n")
    expect(page.locator("#notes")).to_be_focused()
    page.keyboard.type("Maybe a fox?")
    page.locator("#notes").blur()
    draft = draft_of(page, setup.assignment(setup.tasks[0]))
    assert (draft["result"], draft["notes"]) == ({"label": "dog"}, "Maybe a fox?")
    assert draft["key"] and draft["activeMs"] >= 0

    page.reload()
    task_shown(page, setup.tasks[0])
    expect(page.locator("#status")).to_have_text("Your draft was restored.")
    expect(label(page, "dog")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#notes")).to_have_value("Maybe a fox?")
    with page.expect_response(SUBMIT_URL) as answer:
        page.keyboard.press("Control+Enter")
    assert answer.value.status == 201
    task_shown(page, setup.tasks[1])

    annotation = Annotation.objects.get(task=setup.tasks[0])
    assert (annotation.result, annotation.notes) == ({"label": "dog"}, "Maybe a fox?")
    assert annotation.lead_time_seconds > 0
    # The submitted draft is gone from the browser; the next task starts clean.
    assert draft_of(page, setup.assignment(setup.tasks[0])) is None
    expect(label(page, "dog")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#notes")).to_have_value("")
    assert page.js_errors == []


def test_submit_is_retried_with_the_same_idempotency_key_until_the_server_answers(page, live_server):
    setup = Setup()
    open_labeling(page, setup)
    calls = []

    def flaky_network(route):
        calls.append(route.request.headers.get("idempotency-key"))
        if len(calls) == 1:
            route.abort()                      # lost on the way: the server never sees it
        elif len(calls) == 2:
            route.fetch()                      # the server stores the annotation, but its answer is lost
            route.abort()
        else:
            route.continue_()                  # the server replays its first answer

    page.route(SUBMIT_URL, flaky_network)
    page.keyboard.press("3")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#status")).to_contain_text("retrying")
    task_shown(page, setup.tasks[1])

    assert len(calls) == 3 and calls[0] and len(set(calls)) == 1
    assert Annotation.objects.filter(task=setup.tasks[0]).count() == 1
    assert Annotation.objects.get(task=setup.tasks[0]).result == {"label": "bird"}
    assert setup.assignment(setup.tasks[0]).status == "submitted"
    assert page.js_errors == []


def test_a_submit_still_being_processed_is_waited_for_not_dropped(page, live_server):
    # A proxy gave up on the first request while the server was still working on it: the retry is answered 409
    # "still being processed". The page must keep the draft and ask again, not treat the task as lost.
    setup = Setup()
    open_labeling(page, setup)
    calls = []

    def busy_then_ok(route):
        calls.append(route.request.headers.get("idempotency-key"))
        if len(calls) == 1:
            route.fulfill(status=409, content_type="application/json", body=json.dumps(
                {"detail": "A request with this Idempotency-Key is still being processed.", "errors": {}}))
        else:
            route.continue_()

    page.route(SUBMIT_URL, busy_then_ok)
    page.keyboard.press("2")
    page.keyboard.press("Control+Enter")
    task_shown(page, setup.tasks[1])

    assert len(calls) == 2 and len(set(calls)) == 1
    assert [a.result for a in Annotation.objects.filter(task=setup.tasks[0])] == [{"label": "dog"}]
    assert page.js_errors == []


def test_skip_and_hold_wait_while_a_submission_is_retried(page, live_server):
    setup = Setup()
    open_labeling(page, setup)
    attempts, prompts = [], []
    page.route(SUBMIT_URL, lambda route: (attempts.append(1), route.abort() if len(attempts) <= 2 else route.continue_()))
    page.on("dialog", lambda dialog: (prompts.append(dialog.message), dialog.accept("changed my mind")))

    # Every message of the status line, however briefly shown (the retry loop overwrites it).
    page.evaluate("""() => { window.statusLog = [];
        new MutationObserver(() => window.statusLog.push(document.getElementById('status').textContent))
            .observe(document.getElementById('status'), {childList: true, characterData: true, subtree: true}); }""")

    page.keyboard.press("1")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#status")).to_contain_text("retrying")
    page.keyboard.press("Alt+s")
    page.keyboard.press("Alt+h")
    expect(page.locator("#ask-dialog")).to_be_hidden()
    task_shown(page, setup.tasks[1])
    assert any("still on its way" in message for message in page.evaluate("window.statusLog"))

    assert prompts == []
    assert setup.assignment(setup.tasks[0]).status == "submitted"
    assert Annotation.objects.get(task=setup.tasks[0]).result == {"label": "cat"}
    assert not Annotation.objects.filter(task=setup.tasks[1]).exists()
    assert page.js_errors == []


def test_the_servers_sanity_rules_are_shown_next_to_the_form(page, live_server):
    setup = Setup()
    open_labeling(page, setup)

    with page.expect_response(SUBMIT_URL) as answer:
        page.keyboard.press("Control+Enter")              # no label chosen
    assert answer.value.status == 400
    expect(page.locator("#errors")).to_be_visible()
    expect(page.locator("#errors")).to_have_text("Required field 'label' is missing.")
    expect(page.locator("#status")).to_contain_text("refused")
    assert Annotation.objects.count() == 0
    assert setup.assignment(setup.tasks[0]).status == "in_progress"

    page.keyboard.press("1")
    with page.expect_response(SUBMIT_URL) as answer:
        page.click("#submit")
    assert answer.value.status == 201
    task_shown(page, setup.tasks[1])
    expect(page.locator("#errors")).to_be_hidden()
    assert Annotation.objects.get().result == {"label": "cat"}
    assert page.js_errors == []


# --- skip, hold and clarification -----------------------------------------------------------------------------------


def test_skip_asks_for_a_reason(page, live_server):
    setup = Setup(n=3)
    open_labeling(page, setup)
    prompts = []

    # Cancelling the prompt skips nothing.
    page.once("dialog", lambda dialog: (prompts.append(dialog.message), dialog.dismiss()))
    page.keyboard.press("Alt+s")
    task_shown(page, setup.tasks[0])
    assert setup.assignment(setup.tasks[0]).status == "in_progress"

    page.once("dialog", lambda dialog: (prompts.append(dialog.message), dialog.accept("Too blurry to tell")))
    page.keyboard.press("Alt+s")
    task_shown(page, setup.tasks[1])
    skipped = setup.assignment(setup.tasks[0])
    assert (skipped.status, skipped.reason) == ("skipped", "Too blurry to tell")

    # The Skip button does the same.
    page.once("dialog", lambda dialog: dialog.accept("Not my language"))
    page.click("#skip")
    task_shown(page, setup.tasks[2])
    assert setup.assignment(setup.tasks[1]).reason == "Not my language"
    assert prompts == ["Why do you skip this task?"] * 2
    assert Annotation.objects.count() == 0
    assert page.js_errors == []


def test_hold_with_a_clarification_then_resume_from_the_home_page(page, live_server):
    setup = Setup()
    open_labeling(page, setup)
    page.keyboard.press("3")                                 # work begun before asking stays in the draft

    page.keyboard.press("Alt+h")
    dialog = page.locator("#ask-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#question")).to_be_focused()
    page.keyboard.type("Does a cartoon cat count as a cat?")
    page.check("#confidential")
    with page.expect_response(re.compile(r"/clarifications/$")) as answer:
        page.get_by_role("button", name="Send and hold").click()
    assert answer.value.status == 201
    expect(dialog).to_be_hidden()
    task_shown(page, setup.tasks[1])                         # the next task meanwhile

    clarification = Clarification.objects.get()
    assert (clarification.question, clarification.confidential, clarification.status) == (
        "Does a cartoon cat count as a cat?", True, "open")
    assert setup.assignment(setup.tasks[0]).status == "on_hold"
    assert Annotation.objects.count() == 0

    # The home page lists the question, waiting.
    page.goto("/")
    question = page.locator(".clarifications li", has_text="Does a cartoon cat count as a cat?")
    expect(question).to_contain_text("waiting for an answer")
    expect(question.get_by_role("button", name="Resume this task")).to_have_count(0)

    # A manager answers; the home page shows the answer and a way back to the task.
    services.clarification_answer(clarification=clarification, actor=setup.manager, answer="Yes, drawings count.")
    page.reload()
    expect(question.locator(".answer")).to_have_text("Answer: Yes, drawings count.")
    question.get_by_role("button", name="Resume this task").click()
    page.wait_for_url(f"**/projects/{setup.project.pk}/label/")
    task_shown(page, setup.tasks[0])
    expect(page.locator("#status")).to_have_text("Your draft was restored.")
    expect(label(page, "bird")).to_have_attribute("aria-pressed", "true")
    assert setup.assignment(setup.tasks[0]).status == "in_progress"

    with page.expect_response(SUBMIT_URL) as answer:
        page.keyboard.press("Control+Enter")
    assert answer.value.status == 201
    task_shown(page, setup.tasks[1])
    assert Annotation.objects.get(task=setup.tasks[0]).result == {"label": "bird"}
    assert page.js_errors == []


def test_ctrl_enter_in_the_question_sends_the_question_not_the_task(page, live_server):
    setup = Setup()
    open_labeling(page, setup)
    page.keyboard.press("1")
    page.click("#ask")
    page.fill("#question", "Is a lynx a cat?")
    with page.expect_response(re.compile(r"/clarifications/$")):
        page.keyboard.press("Control+Enter")
    task_shown(page, setup.tasks[1])

    assert Clarification.objects.get().question == "Is a lynx a cat?"
    assert Annotation.objects.count() == 0
    assert setup.assignment(setup.tasks[0]).status == "on_hold"
    assert page.js_errors == []


# --- rework ----------------------------------------------------------------------------------------------------------


def reject(setup, task, comment="Ears and whiskers: it is a cat."):
    error, _ = ErrorType.objects.get_or_create(project=setup.project, code="wrong-label",
                                               defaults={"name": "Wrong label"})
    annotation = Annotation.objects.get(task=task, is_current=True)
    services.review_reject(annotation=annotation, reviewer=setup.reviewer, error_types=[error.code], comment=comment)


def test_rework_shows_the_reviewers_feedback_and_resubmits_as_version_2(page, live_server):
    setup = Setup(n=1)
    open_labeling(page, setup)
    page.keyboard.press("2")
    page.keyboard.press("Alt+n")
    page.keyboard.type("pointy ears")
    with page.expect_response(SUBMIT_URL):
        page.keyboard.press("Control+Enter")
    expect(page.locator("#done")).to_be_visible()
    expect(page.locator("#rework")).to_be_hidden()

    reject(setup, setup.tasks[0])
    page.reload()
    task_shown(page, setup.tasks[0])
    rework = page.locator("#rework")
    expect(rework).to_be_visible()
    expect(rework.locator("#rework-comment")).to_have_text("Ears and whiskers: it is a cat.")
    expect(rework.locator("#rework-errors li")).to_have_text(["Wrong label"])
    expect(rework.locator("#rework-reviewer")).to_have_text("reviewer")
    # The rejected result and notes are the starting point.
    expect(label(page, "dog")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#notes")).to_have_value("pointy ears")

    page.keyboard.press("1")
    with page.expect_response(SUBMIT_URL) as answer:
        page.keyboard.press("Control+Enter")
    assert answer.value.status == 201
    expect(page.locator("#done")).to_be_visible()
    expect(page.locator("#rework")).to_be_hidden()

    versions = list(Annotation.objects.filter(task=setup.tasks[0]).order_by("version"))
    assert [(a.version, a.status, a.is_current, a.result) for a in versions] == [
        (1, "superseded", False, {"label": "dog"}), (2, "submitted", True, {"label": "cat"})]
    assert versions[1].notes == "pointy ears"
    assert setup.assignment(setup.tasks[0]).status == "submitted"
    assert page.js_errors == []


def test_rework_after_a_submit_whose_answer_never_arrived(page, live_server):
    # The server stored the submission but the browser never heard back (the tab was closed while it retried):
    # the draft with its Idempotency-Key stayed behind. When the work comes back as rework, that old draft must
    # not be taken for the rework's, or the resubmission would reuse the old key and be refused.
    setup = Setup(n=1)
    open_labeling(page, setup)

    def answer_lost(route):
        if not Annotation.objects.exists():
            route.fetch()
        route.abort()

    page.route(SUBMIT_URL, answer_lost)
    page.keyboard.press("2")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#status")).to_contain_text("retrying")
    assert Annotation.objects.count() == 1
    page.goto("about:blank")
    page.unroute(SUBMIT_URL)

    reject(setup, setup.tasks[0])
    page.goto(f"/projects/{setup.project.pk}/label/")
    task_shown(page, setup.tasks[0])
    expect(page.locator("#rework")).to_be_visible()
    expect(label(page, "dog")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("1")
    with page.expect_response(SUBMIT_URL) as answer:
        page.keyboard.press("Control+Enter")
    assert answer.value.status == 201, answer.value.text()
    expect(page.locator("#done")).to_be_visible()

    current = Annotation.objects.get(task=setup.tasks[0], is_current=True)
    assert (current.version, current.result) == (2, {"label": "cat"})
    assert page.js_errors == []


# --- shortcuts, guideline, undo ---------------------------------------------------------------------------------------


def test_shortcut_help_guideline_and_undo(page, live_server):
    setup = Setup(n=1)
    project_services.guideline_add(project=setup.project, actor=setup.manager,
                                   text="Cats have whiskers.\n\nCartoon animals count.")
    open_labeling(page, setup)

    # The project's current guideline, in a side panel that Alt+G folds and unfolds.
    guideline = page.locator("#guideline")
    expect(guideline.locator("summary")).to_contain_text("Guideline v2")
    expect(guideline.locator(".guideline-text")).to_contain_text("Cartoon animals count.")
    page.keyboard.press("Alt+g")
    expect(guideline.locator(".guideline-text")).to_be_hidden()
    page.keyboard.press("Alt+g")
    expect(guideline.locator(".guideline-text")).to_be_visible()

    # ? shows every shortcut; Escape closes the overlay.
    page.keyboard.press("?")
    help_dialog = page.locator("#help-dialog")
    expect(help_dialog).to_be_visible()
    expect(help_dialog).to_contain_text("Keyboard shortcuts")
    expect(help_dialog).to_contain_text("Ctrl+Enter")
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()
    page.click("#help")
    expect(help_dialog).to_be_visible()
    help_dialog.get_by_role("button", name="Close").click()
    expect(help_dialog).to_be_hidden()

    # Ctrl+Z undoes one change at a time; the Undo button too.
    page.keyboard.press("1")
    page.keyboard.press("2")
    page.keyboard.press("3")
    page.keyboard.press("Control+z")
    expect(label(page, "dog")).to_have_attribute("aria-pressed", "true")
    page.click("#undo")
    expect(label(page, "cat")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Control+z")
    expect(page.locator("#widget .lp-label[aria-pressed='true']")).to_have_count(0)
    page.keyboard.press("Control+z")
    expect(page.locator("#status")).to_have_text("Nothing to undo.")

    # Label keys typed into the notes are text, not labels.
    page.keyboard.press("Alt+n")
    page.keyboard.type("12")
    expect(page.locator("#notes")).to_have_value("12")
    expect(page.locator("#widget .lp-label[aria-pressed='true']")).to_have_count(0)
    page.keyboard.press("Escape")
    assert page.js_errors == []


def press_like_a_mac(page, key, code):
    """Option+letter as a Mac reports it: `key` is the character Option makes (Alt+S types ß), `code` the key."""
    page.evaluate("""([key, code]) => (document.activeElement || document.body).dispatchEvent(
        new KeyboardEvent('keydown', {key, code, altKey: true, bubbles: true, cancelable: true}))""", [key, code])


def test_alt_shortcuts_work_with_a_mac_keyboard(page, live_server):
    setup = Setup(n=1)
    open_labeling(page, setup)

    press_like_a_mac(page, "©", "KeyG")                # Option+G
    expect(page.locator("#guideline .guideline-text")).to_be_hidden()
    prompts = []
    page.once("dialog", lambda dialog: (prompts.append(dialog.message), dialog.dismiss()))
    press_like_a_mac(page, "ß", "KeyS")                # Option+S: returns once the prompt is dismissed
    assert prompts == ["Why do you skip this task?"]
    press_like_a_mac(page, "˙", "KeyH")                # Option+H
    expect(page.locator("#ask-dialog")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#ask-dialog")).to_be_hidden()
    press_like_a_mac(page, "Dead", "KeyN")             # Option+N is a dead key
    expect(page.locator("#notes")).to_be_focused()
    assert setup.assignment(setup.tasks[0]).status == "in_progress"
    assert page.js_errors == []


def test_alt_b_adds_a_box_with_a_mac_keyboard(page, live_server):
    setup = Setup(n=1, task_type="bounding_boxes",
                  data={"image": "/static/tasks/test-pattern.svg", "width": 640, "height": 480})
    open_labeling(page, setup)
    press_like_a_mac(page, "∫", "KeyB")                # Option+B
    expect(page.locator(".lp-box-overlay rect.lp-box")).to_have_count(1)
    assert page.js_errors == []


# --- lead time: active time only ---------------------------------------------------------------------------------------


def submitted_lead_time(page, setup):
    with page.expect_response(SUBMIT_URL) as answer:
        page.keyboard.press("Control+Enter")
    assert answer.value.status == 201
    task_shown(page, setup.tasks[1])                   # no request left in flight when the test ends
    return Annotation.objects.get(task=setup.tasks[0]).lead_time_seconds


def test_lead_time_leaves_out_an_idle_stretch(page, live_server, settings):
    settings.LABELPORTAL_IDLE_SECONDS = 1
    setup = Setup()
    open_labeling(page, setup)
    started = time.monotonic()
    for key in "12121":                                # about a second of work
        page.keyboard.press(key)
        page.wait_for_timeout(200)
    page.wait_for_timeout(3000)                        # then three seconds without any input: idle
    lead = submitted_lead_time(page, setup)
    wall = time.monotonic() - started

    assert wall > 3.9
    assert 0 < lead < wall - 2, (lead, wall)
    assert page.js_errors == []


def test_lead_time_leaves_out_ten_idle_minutes_with_the_default_threshold(page, live_server):
    # The page saves its draft every 5 s; that must not count the time since the last input as work.
    setup = Setup()
    page.clock.install()
    open_labeling(page, setup)
    page.keyboard.press("1")
    page.clock.run_for("10:00")                        # ten minutes pass without input (120 s is idle)
    page.keyboard.press("2")
    lead = submitted_lead_time(page, setup)

    assert lead is not None and lead < 60, lead
    assert page.js_errors == []


def test_lead_time_leaves_out_a_hidden_tab(page, live_server):
    setup = Setup()
    page.clock.install()
    open_labeling(page, setup)
    page.keyboard.press("1")

    def visibility(state):
        page.evaluate("""state => {
            Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => state});
            document.dispatchEvent(new Event('visibilitychange'));
        }""", state)

    visibility("hidden")
    page.clock.run_for("01:30")                        # ninety seconds in another tab (under the idle threshold)
    visibility("visible")
    page.keyboard.press("2")
    lead = submitted_lead_time(page, setup)

    assert lead is not None and lead < 30, lead
    assert page.js_errors == []
