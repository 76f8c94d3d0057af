"""A project's own sanity rules on the labeling page: the server's refusal is shown next to the form, in the
annotator's words, and the same draft goes through once it is fixed."""

import pytest
from playwright.sync_api import expect

from apps.quality.models import SanityRule
from apps.tasks.models import Annotation, Assignment
from tests import factories
from tests.browser.test_label_task_types import IMAGE, open_labeling

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMA = {"labels": [{"value": "car"}, {"value": "other", "name": "Other"}]}


def test_a_broken_rule_is_shown_next_to_the_form_and_the_fixed_result_is_taken(page, live_server):
    project = factories.project(task_type="bounding_boxes", schema=SCHEMA)
    annotator = factories.member(project, "annotator", "annotator")
    tasks = factories.tasks(factories.batch(project), 2, data={"image": IMAGE, "width": 640, "height": 480})
    SanityRule.objects.create(project=project, kind="min_items", count=1)
    SanityRule.objects.create(project=project, kind="label_needs_note", label="other")
    open_labeling(page, project)
    errors = page.locator("#errors li")

    # Nothing drawn: "Add at least 1 box."
    with page.expect_response(lambda r: "/submit/" in r.url and r.request.method == "POST") as answer:
        page.keyboard.press("Control+Enter")
    assert answer.value.status == 400
    expect(errors).to_have_text(["Add at least 1 box."])
    expect(page.locator("#status")).to_have_text("The server refused this result; fix it and submit again.")

    # A box labelled Other (hotkey 2), no note: "Label “Other” needs a note."
    page.keyboard.press("Alt+b")
    page.keyboard.press("2")
    with page.expect_response(lambda r: "/submit/" in r.url and r.request.method == "POST") as answer:
        page.click("#submit")
    assert answer.value.status == 400
    expect(errors).to_have_text(["Label “Other” needs a note."])
    assert Annotation.objects.count() == 0
    assert Assignment.objects.get(task=tasks[0], annotator=annotator).status == "in_progress"

    # With a note it is taken: one annotation, the next task, no error left on the page.
    page.fill("#notes", "A food truck.")
    with page.expect_response(lambda r: "/submit/" in r.url and r.request.method == "POST") as answer:
        page.click("#submit")
    assert answer.value.status == 201
    expect(page.locator("#task-ref")).to_have_text(f"Task {tasks[1].pk}")
    expect(page.locator("#errors")).to_be_hidden()
    annotation = Annotation.objects.get()
    assert annotation.notes == "A food truck." and [b["label"] for b in annotation.result["boxes"]] == ["other"]
    assert page.js_errors == []
