"""The labeling page, one task type at a time: an annotator labels one task with the keyboard and one with the
mouse, reloads mid-task, submits, and the stored result is what they saw.

`LABELPORTAL_SCREENSHOTS=docs/screenshots pytest tests/browser/test_label_task_types.py` also saves a screenshot of
each page as label-<task type>.png (the README's pictures)."""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from apps.tasks.models import Annotation, Assignment
from tests import factories
from tests.browser.conftest import login

SCREENSHOTS = os.environ.get("LABELPORTAL_SCREENSHOTS")
NAMES = {"classification": "Animal sightings", "multilabel": "Animal photos", "text_spans": "People and places",
         "bounding_boxes": "Street scenes"}
IMAGE = "/static/tasks/test-pattern.svg"  # 640 × 480, served by the live server's static files handler

pytestmark = pytest.mark.django_db(transaction=True)


def setup_project(task_type, data, *, n=2, schema=None, username="annotator"):
    """A project of `task_type` with an active batch of `n` tasks and one annotator."""
    project = factories.project(task_type=task_type, schema=schema)
    project.name = NAMES[task_type]
    project.save(update_fields=["name"])
    annotator = factories.member(project, "annotator", username)
    tasks = factories.tasks(factories.batch(project), n, data=data)
    return project, annotator, tasks


def open_labeling(page, project, username="annotator"):
    login(page, username)
    page.goto(f"/projects/{project.pk}/label/")
    expect(page.locator("#workspace")).to_be_visible()
    expect(page.locator("#task-ref")).to_have_text(re.compile(r"Task \d+"))


def submit(page, how="keyboard"):
    """Submit with Ctrl+Enter or the button; wait for the server's 201 and for the next task (or the end)."""
    before = page.locator("#task-ref").text_content()
    with page.expect_response(lambda r: "/submit/" in r.url and r.request.method == "POST") as answer:
        if how == "keyboard":
            page.keyboard.press("Control+Enter")
        else:
            page.click("#submit")
    assert answer.value.status == 201, answer.value.text()
    page.wait_for_function(
        "before => !document.getElementById('done').hidden || document.getElementById('task-ref').textContent !== before",
        arg=before)


def reload_mid_task(page):
    """Reload before submitting: the same task comes back with the draft restored from localStorage."""
    task = page.locator("#task-ref").text_content()
    page.reload()
    expect(page.locator("#task-ref")).to_have_text(task)
    expect(page.locator("#status")).to_have_text("Your draft was restored.")


def result_of(task):
    annotation = Annotation.objects.get(task=task)
    assert annotation.is_current and annotation.version == 1
    return annotation.result


def screenshot(page, task_type):
    if SCREENSHOTS:
        folder = Path(SCREENSHOTS)
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"label-{task_type}.png"))


def pressed(page, value):
    return page.locator(f"#widget .lp-label[data-value='{value}']")


# --- classification ------------------------------------------------------------------------------------------------


def test_classification_with_keyboard_and_mouse(page, live_server):
    project, annotator, tasks = setup_project("classification", {"text": "A small animal purring on the sofa."})
    open_labeling(page, project)

    # The text and one button per label, with the schema's hotkeys 1-3.
    expect(page.locator(".lp-item-text")).to_have_text("A small animal purring on the sofa.")
    expect(page.locator("#widget .lp-label kbd")).to_have_text(["1", "2", "3"])
    # Keyboard: 2 picks "dog", 1 changes it to "cat"; only one label is pressed at a time.
    page.keyboard.press("2")
    expect(pressed(page, "dog")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("1")
    expect(pressed(page, "cat")).to_have_attribute("aria-pressed", "true")
    expect(pressed(page, "dog")).to_have_attribute("aria-pressed", "false")
    screenshot(page, "classification")
    reload_mid_task(page)
    expect(pressed(page, "cat")).to_have_attribute("aria-pressed", "true")
    submit(page, "keyboard")

    # Mouse: the second task, labelled by clicking.
    pressed(page, "bird").click()
    expect(pressed(page, "bird")).to_have_attribute("aria-pressed", "true")
    submit(page, "mouse")

    expect(page.locator("#done")).to_be_visible()
    assert result_of(tasks[0]) == {"label": "cat"}
    assert result_of(tasks[1]) == {"label": "bird"}
    assert set(Assignment.objects.filter(annotator=annotator).values_list("status", flat=True)) == {"submitted"}
    assert page.js_errors == []


def test_label_and_zoom_buttons_keep_the_keyboard_focus(page, live_server):
    # Without a mouse or the hotkeys: Tab to a button, Space or Enter presses it, and focus stays put.
    project, _annotator, tasks = setup_project("classification", {"text": "A purring animal."}, n=1)
    open_labeling(page, project)
    expect(pressed(page, "cat")).to_be_focused()        # the page starts on the first label
    page.keyboard.press("Space")
    expect(pressed(page, "cat")).to_have_attribute("aria-pressed", "true")
    expect(pressed(page, "cat")).to_be_focused()
    page.keyboard.press("Tab")
    expect(pressed(page, "dog")).to_be_focused()
    page.keyboard.press("Enter")
    expect(pressed(page, "dog")).to_have_attribute("aria-pressed", "true")
    expect(pressed(page, "dog")).to_be_focused()
    submit(page, "keyboard")
    assert result_of(tasks[0]) == {"label": "dog"}

    project, _annotator, _tasks = setup_project("bounding_boxes", {"image": IMAGE, "width": 640, "height": 480}, n=1)
    page.goto(f"/projects/{project.pk}/label/")
    expect(page.locator("#task-ref")).to_have_text(re.compile(r"Task \d+"))
    zoom_in = page.get_by_role("button", name="Zoom in")
    zoom_in.focus()
    page.keyboard.press("Enter")
    expect(zoom_in).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(".lp-zoom output")).to_have_text("156%")
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("button", name="Zoom out")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Space")
    expect(pressed(page, "person")).to_have_attribute("aria-pressed", "true")
    expect(pressed(page, "person")).to_be_focused()
    assert page.js_errors == []


def test_classification_hotkeys_come_from_the_schema(page, live_server):
    schema = {"labels": [{"value": "positive", "name": "Positive", "hotkey": "p"},
                         {"value": "negative", "name": "Negative", "hotkey": "n"},
                         {"value": "mixed", "name": "Mixed"}]}     # no hotkey given: the default for place 3
    project, _annotator, tasks = setup_project("classification", {"text": "Great food, slow service."}, n=1,
                                               schema=schema)
    open_labeling(page, project)
    expect(page.locator("#widget .lp-label kbd")).to_have_text(["p", "n", "3"])
    expect(page.locator("#widget .lp-label")).to_have_text([re.compile("Positive"), re.compile("Negative"),
                                                            re.compile("Mixed")])
    page.keyboard.press("Shift+N")                          # the hotkey's capital works too
    expect(pressed(page, "negative")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("1")                                # not a hotkey of this schema
    expect(pressed(page, "negative")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("3")
    submit(page, "keyboard")
    assert result_of(tasks[0]) == {"label": "mixed"}
    assert page.js_errors == []


# --- multilabel, on an image ----------------------------------------------------------------------------------------


def test_multilabel_on_an_image_with_keyboard_and_mouse(page, live_server):
    schema = {"labels": [{"value": "vehicle"}, {"value": "person"}, {"value": "animal"}]}
    project, _annotator, tasks = setup_project("multilabel", {"image": IMAGE}, schema=schema)
    open_labeling(page, project)

    image = page.locator(".lp-item-image")
    expect(image).to_be_visible()
    page.wait_for_function("() => { const i = document.querySelector('.lp-item-image'); return i.complete && i.naturalWidth > 0; }")
    # Keyboard: the hotkeys toggle; 1, 3, 2 and 2 again leave "vehicle" and "animal".
    for key in "1322":
        page.keyboard.press(key)
    expect(pressed(page, "vehicle")).to_have_attribute("aria-pressed", "true")
    expect(pressed(page, "person")).to_have_attribute("aria-pressed", "false")
    expect(pressed(page, "animal")).to_have_attribute("aria-pressed", "true")
    screenshot(page, "multilabel")
    reload_mid_task(page)
    expect(page.locator("#widget .lp-label[aria-pressed='true']")).to_have_count(2)
    submit(page, "keyboard")

    # Mouse: click person and animal, then animal again to take it off, then vehicle.
    for value in ("person", "animal", "animal", "vehicle"):
        pressed(page, value).click()
    expect(pressed(page, "animal")).to_have_attribute("aria-pressed", "false")
    submit(page, "mouse")

    assert result_of(tasks[0]) == {"labels": ["vehicle", "animal"]}
    assert result_of(tasks[1]) == {"labels": ["vehicle", "person"]}  # in the schema's order
    assert page.js_errors == []


# --- text spans ----------------------------------------------------------------------------------------------------


def word_box(page, word, nth=0):
    """The on-screen rectangle of `word` (its n-th occurrence) in the span text, from a DOM Range."""
    return page.evaluate("""([word, nth]) => {
        const box = document.querySelector('.lp-span-text');
        const walker = document.createTreeWalker(box, NodeFilter.SHOW_TEXT);
        let seen = 0;
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            let at = node.textContent.indexOf(word);
            while (at >= 0) {
                if (seen++ === nth) {
                    const range = document.createRange();
                    range.setStart(node, at); range.setEnd(node, at + word.length);
                    const r = range.getBoundingClientRect();
                    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom};
                }
                at = node.textContent.indexOf(word, at + 1);
            }
        }
        return null;
    }""", [word, nth])


def drag_select(page, first_word, last_word=None):
    """Select from the start of `first_word` to the end of `last_word` with the mouse (left to right on screen)."""
    a, b = word_box(page, first_word), word_box(page, last_word or first_word)
    y = (a["top"] + a["bottom"]) / 2
    page.mouse.move(a["left"] + 1, y)
    page.mouse.down()
    page.mouse.move((a["left"] + b["right"]) / 2, y, steps=3)
    page.mouse.move(b["right"] - 1, y, steps=3)
    page.mouse.up()


def segment(page, text):
    """The highlighted segment showing exactly `text`."""
    return page.locator(".lp-span-text .lp-span", has_text=re.compile("^" + re.escape(text) + "$"))


def test_text_spans_with_keyboard_and_mouse(page, live_server):
    text = "Ada Lovelace met Charles Babbage in London in 1833."
    project, _annotator, tasks = setup_project("text_spans", {"text": text})
    open_labeling(page, project)
    chips = page.locator("#widget .lp-span-list .lp-chip")

    # Keyboard: → selects the first word, Shift+→ extends by a word, 1 tags it PER.
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    expect(page.locator(".lp-span-info")).to_contain_text("Ada Lovelace")
    page.keyboard.press("1")
    expect(segment(page, "Ada Lovelace")).to_have_count(1)
    # The span is highlighted in the label's colour (#e6194b for the first label).
    expect(segment(page, "Ada Lovelace")).to_have_css("border-bottom-color", "rgb(230, 25, 75)")
    # → from the start: Ada, Lovelace, met, Charles; Shift+→ to Babbage; 2 tags it ORG (to be relabelled).
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("2")
    # London: seven words from the start.
    for _ in range(7):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("3")
    # 1833. with its full stop, the last word: ← from nothing starts at the end.
    page.keyboard.press("Escape")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("2")
    expect(chips).to_have_count(4)

    # Click a span to select it; a label key relabels it, Delete removes another.
    segment(page, "Charles Babbage").click()
    expect(page.locator(".lp-span-info")).to_contain_text("Charles Babbage")
    page.keyboard.press("1")
    expect(segment(page, "Charles Babbage")).to_have_css("border-bottom-color", "rgb(230, 25, 75)")
    segment(page, "1833.").click()
    page.keyboard.press("Delete")
    expect(chips).to_have_count(3)
    # Ctrl+Z brings the deleted span back.
    page.keyboard.press("Control+z")
    expect(chips).to_have_count(4)
    segment(page, "1833.").click()
    page.keyboard.press("Delete")
    expect(chips).to_have_count(3)
    screenshot(page, "text_spans")
    reload_mid_task(page)
    expect(chips).to_have_count(3)
    expect(segment(page, "Charles Babbage")).to_have_css("border-bottom-color", "rgb(230, 25, 75)")
    submit(page, "keyboard")

    # Mouse: drag over "Charles Babbage", click the ORG button; drag over "London", press 3.
    drag_select(page, "Charles", "Babbage")
    expect(page.locator(".lp-span-info")).to_contain_text("Charles Babbage")
    page.locator("#widget .lp-label[data-value='ORG']").click()
    drag_select(page, "London")
    page.keyboard.press("3")
    # A click on a span and its × button in the list remove it again: tag "met" and take it off.
    drag_select(page, "met")
    page.locator("#widget .lp-label[data-value='PER']").click()
    expect(chips).to_have_count(3)
    page.locator("#widget .lp-span-list li", has_text="met").locator(".lp-remove").click()
    expect(chips).to_have_count(2)
    submit(page, "mouse")

    start = text.index
    assert result_of(tasks[0]) == {"spans": [
        {"start": 0, "end": 12, "label": "PER"},
        {"start": start("Charles"), "end": start("Babbage") + 7, "label": "PER"},
        {"start": start("London"), "end": start("London") + 6, "label": "LOC"},
    ]}
    assert result_of(tasks[1]) == {"spans": [
        {"start": start("Charles"), "end": start("Babbage") + 7, "label": "ORG"},
        {"start": start("London"), "end": start("London") + 6, "label": "LOC"},
    ]}
    assert page.js_errors == []


def test_text_spans_right_to_left_offsets_are_code_points(page, live_server):
    # Arabic, right to left, after an emoji outside the Basic Multilingual Plane: JavaScript counts it as two UTF-16
    # units, Python as one character. The stored offsets must be Python's.
    text = "🌍 زار أحمد مدينة القاهرة في الصيف"
    project, _annotator, tasks = setup_project("text_spans", {"text": text}, n=1)
    open_labeling(page, project)
    box = page.locator(".lp-span-text")
    expect(box).to_have_css("direction", "rtl")

    # Keyboard: in right-to-left text ← goes forward in reading order: 🌍, زار, أحمد.
    for _ in range(3):
        page.keyboard.press("ArrowLeft")
    expect(page.locator(".lp-span-info")).to_contain_text("أحمد")
    page.keyboard.press("1")
    # Mouse: a double click selects the word القاهرة; 3 tags it LOC.
    word = word_box(page, "القاهرة")
    page.mouse.dblclick((word["left"] + word["right"]) / 2, (word["top"] + word["bottom"]) / 2)
    expect(page.locator(".lp-span-info")).to_contain_text("القاهرة")
    page.keyboard.press("3")
    expect(segment(page, "القاهرة")).to_have_css("border-bottom-color", "rgb(67, 99, 216)")
    submit(page, "keyboard")

    result = result_of(tasks[0])
    assert result == {"spans": [
        {"start": text.index("أحمد"), "end": text.index("أحمد") + len("أحمد"), "label": "PER"},
        {"start": text.index("القاهرة"), "end": text.index("القاهرة") + len("القاهرة"), "label": "LOC"},
    ]}
    assert [text[s["start"]:s["end"]] for s in result["spans"]] == ["أحمد", "القاهرة"]
    assert page.js_errors == []


def test_text_spans_keyboard_takes_over_a_partial_mouse_selection(page, live_server):
    text = "Ada Lovelace met Charles Babbage"
    project, _annotator, tasks = setup_project("text_spans", {"text": text}, n=1)
    open_labeling(page, project)
    info = page.locator(".lp-span-info")

    # "ove" selected with the mouse inside "Lovelace"; Shift+→ extends it to the end of that word.
    drag_select(page, "ove")
    expect(info).to_contain_text("“ove”")
    page.keyboard.press("Shift+ArrowRight")
    expect(info).to_contain_text("“ovelace”")
    page.keyboard.press("1")
    # "abb" selected inside "Babbage"; → selects the word it is in.
    drag_select(page, "abb")
    page.keyboard.press("ArrowRight")
    expect(info).to_contain_text("“Babbage”")
    page.keyboard.press("2")
    submit(page, "keyboard")

    assert result_of(tasks[0]) == {"spans": [
        {"start": text.index("ove"), "end": text.index(" met"), "label": "PER"},
        {"start": text.index("Babbage"), "end": len(text), "label": "ORG"},
    ]}
    assert page.js_errors == []


def test_text_spans_relabelling_may_not_overlap_a_span_of_the_same_label(page, live_server):
    text = "Ada Lovelace met Charles Babbage"
    project, _annotator, tasks = setup_project("text_spans", {"text": text}, n=1)
    open_labeling(page, project)
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("1")                             # "Ada Lovelace" PER
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("2")                             # "Lovelace met" ORG: overlaps, another label
    page.locator("#widget .lp-chip", has_text="Lovelace met").click()
    page.keyboard.press("1")                             # PER would overlap "Ada Lovelace" PER
    expect(page.locator(".lp-span-info")).to_have_text("That overlaps a span with the same label.")
    expect(page.locator("#widget .lp-chip", has_text="Lovelace met")).to_contain_text("ORG")
    submit(page, "keyboard")

    assert result_of(tasks[0]) == {"spans": [{"start": 0, "end": 12, "label": "PER"},
                                             {"start": 4, "end": 16, "label": "ORG"}]}
    assert page.js_errors == []


def test_text_spans_a_drag_may_end_past_the_text(page, live_server):
    # People drag to the end of the text and a little further: right of it, or below it.
    text = "Ada Lovelace met Charles Babbage in London"
    project, _annotator, tasks = setup_project("text_spans", {"text": text}, n=1)
    open_labeling(page, project)
    info = page.locator(".lp-span-info")
    text_box = page.locator(".lp-span-text").bounding_box()

    def drag_from(word, x, y):
        start = word_box(page, word)
        page.mouse.move(start["left"] + 1, (start["top"] + start["bottom"]) / 2)
        page.mouse.down()
        page.mouse.move(x, y, steps=5)
        page.mouse.up()

    drag_from("London", text_box["x"] + text_box["width"] + 20, text_box["y"] + text_box["height"] / 2)
    expect(info).to_contain_text("“London”")
    page.keyboard.press("3")
    drag_from("Charles", text_box["x"] + 200, text_box["y"] + text_box["height"] + 40)
    expect(info).to_contain_text("“Charles Babbage in London”")
    page.keyboard.press("2")
    submit(page, "keyboard")

    assert result_of(tasks[0]) == {"spans": [
        {"start": text.index("Charles"), "end": len(text), "label": "ORG"},
        {"start": text.index("London"), "end": len(text), "label": "LOC"},
    ]}
    assert page.js_errors == []


# --- bounding boxes ------------------------------------------------------------------------------------------------


def overlay_point(page, fx, fy):
    """Page coordinates of the point (fx, fy), in fractions of the image, on the drawing overlay."""
    r = page.locator(".lp-box-overlay").bounding_box()
    return r["x"] + fx * r["width"], r["y"] + fy * r["height"]


def drag(page, start, end):
    page.mouse.move(*overlay_point(page, *start))
    page.mouse.down()
    page.mouse.move(*overlay_point(page, *end), steps=5)
    page.mouse.up()


def assert_box(box, expected, label):
    assert box["label"] == label
    for key, value in zip("xywh", expected):
        assert box[key] == pytest.approx(value, abs=0.01), (key, box)


def test_bounding_boxes_with_keyboard_and_mouse(page, live_server):
    project, _annotator, tasks = setup_project("bounding_boxes", {"image": IMAGE, "width": 640, "height": 480})
    open_labeling(page, project)
    page.wait_for_function("() => { const i = document.querySelector('.lp-box-canvas img'); return i.complete && i.naturalWidth > 0; }")
    boxes = page.locator(".lp-box-overlay rect.lp-box")
    zoom = page.locator(".lp-zoom output")

    # Zoom with + and -: the canvas grows and shrinks with it.
    expect(zoom).to_have_text("100%")
    page.keyboard.press("+")
    expect(zoom).to_have_text("125%")
    assert page.locator(".lp-box-canvas").bounding_box()["width"] == pytest.approx(800, abs=1)
    page.keyboard.press("-")
    expect(zoom).to_have_text("100%")
    # Keyboard: Alt+B adds a box in the middle (label "car"), → → moves it, Shift+↓ makes it taller, 2 relabels it.
    page.keyboard.press("Alt+b")
    expect(boxes).to_have_count(1)
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowDown")
    page.keyboard.press("2")
    # A second box, removed with Delete.
    page.keyboard.press("Alt+b")
    expect(boxes).to_have_count(2)
    page.keyboard.press("Delete")
    expect(boxes).to_have_count(1)
    expect(page.locator("#widget .lp-span-list li")).to_have_count(1)
    reload_mid_task(page)
    expect(boxes).to_have_count(1)
    expect(boxes.first).to_have_attribute("stroke", "#3cb44b")
    submit(page, "keyboard")

    # Mouse: draw a box near the car, move it onto the car, pull its bottom-right corner out; Esc, click "person" and
    # draw the person; draw a third box, click "car" to relabel it, remove it with its × button; zoom with the buttons.
    page.wait_for_function("() => { const i = document.querySelector('.lp-box-canvas img'); return i.complete && i.naturalWidth > 0; }")
    drag(page, (0.05, 0.4), (0.35, 0.7))
    expect(boxes).to_have_count(1)
    drag(page, (0.2, 0.55), (0.275, 0.65))         # inside the box: moves it by (7.5%, 10%)
    drag(page, (0.425, 0.8), (0.4375, 0.82))       # the "se" handle sits on the corner of the selected box
    page.keyboard.press("Escape")
    page.locator("#widget .lp-label[data-value='person']").click()
    drag(page, (0.67, 0.27), (0.77, 0.64))
    expect(boxes.nth(1)).to_have_attribute("stroke", "#3cb44b")
    drag(page, (0.8, 0.8), (0.9, 0.9))
    page.locator("#widget .lp-label[data-value='car']").click()
    expect(boxes.nth(2)).to_have_attribute("stroke", "#e6194b")
    expect(boxes).to_have_count(3)
    page.locator("#widget .lp-span-list li").nth(2).locator(".lp-remove").click()
    expect(boxes).to_have_count(2)
    page.get_by_role("button", name="Zoom in").click()
    expect(zoom).to_have_text("125%")
    page.get_by_role("button", name="Zoom out").click()
    expect(zoom).to_have_text("100%")
    screenshot(page, "bounding_boxes")
    submit(page, "mouse")

    first = result_of(tasks[0])["boxes"]
    assert len(first) == 1
    assert_box(first[0], (0.42, 0.4, 0.2, 0.21), "person")
    car, person = result_of(tasks[1])["boxes"]
    assert_box(car, (0.125, 0.5, 0.3125, 0.32), "car")
    assert_box(person, (0.67, 0.27, 0.1, 0.37), "person")
    assert page.js_errors == []


def test_bounding_boxes_a_click_on_a_box_is_not_an_undo_step(page, live_server):
    project, _annotator, _tasks = setup_project("bounding_boxes", {"image": IMAGE, "width": 640, "height": 480}, n=1)
    open_labeling(page, project)
    boxes = page.locator(".lp-box-overlay rect.lp-box")
    drag(page, (0.1, 0.1), (0.3, 0.3))
    drag(page, (0.5, 0.5), (0.7, 0.7))
    expect(boxes).to_have_count(2)
    # Clicking the first box selects it and changes nothing: the next Ctrl+Z undoes the second box's drawing.
    page.mouse.click(*overlay_point(page, 0.2, 0.2))
    expect(page.locator("#widget .lp-span-list li.selected")).to_have_text(re.compile("^car at 10%"))
    page.keyboard.press("Control+z")
    expect(boxes).to_have_count(1)
    page.keyboard.press("Control+z")
    expect(boxes).to_have_count(0)
    assert page.js_errors == []


def window_drag_listeners(page):
    """The box widgets' mouse listeners on the window (the DevTools protocol alone can list listeners)."""
    cdp = page.context.new_cdp_session(page)
    window = cdp.send("Runtime.evaluate", {"expression": "window", "objectGroup": "test"})["result"]["objectId"]
    listeners = cdp.send("DOMDebugger.getEventListeners", {"objectId": window})["listeners"]
    cdp.detach()
    return [listener["type"] for listener in listeners if listener["type"] in ("mousemove", "mouseup")
            and "drag" in listener.get("handler", {}).get("description", "")]


def test_bounding_boxes_tasks_done_leave_no_listeners_behind(page, live_server):
    # Each task builds a new widget; one that left its window listeners behind kept every earlier task's image
    # and boxes alive for the whole session.
    project, _annotator, tasks = setup_project("bounding_boxes", {"image": IMAGE, "width": 640, "height": 480}, n=4)
    open_labeling(page, project)
    for _ in range(3):
        page.keyboard.press("Alt+b")
        submit(page, "keyboard")
    drag(page, (0.1, 0.1), (0.3, 0.3))                 # drawing still works, and cleans up after itself
    expect(page.locator(".lp-box-overlay rect.lp-box")).to_have_count(1)

    assert window_drag_listeners(page) == []
    assert Annotation.objects.filter(task__in=tasks).count() == 3
    assert page.js_errors == []
