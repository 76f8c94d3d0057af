"""The language switcher in the top bar: the interface in Spanish, for the pages and the labeling script."""

import pytest
from playwright.sync_api import expect

from tests import factories
from tests.browser.conftest import login

pytestmark = pytest.mark.django_db(transaction=True)


def setup_annotator():
    project = factories.project(task_type="classification")
    factories.member(project, "annotator", "annotator")
    factories.tasks(factories.batch(project), 1, data={"text": "Un gato."})
    return project


def switch_to(page, code):
    page.select_option("#language", code)            # the select submits its form on change
    expect(page.locator("html")).to_have_attribute("lang", code)


def test_the_language_switcher_changes_the_interface_language(page, live_server):
    project = setup_annotator()
    login(page, "annotator")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#language option:checked")).to_have_text("English")

    switch_to(page, "es")
    expect(page.locator("#language option:checked")).to_have_text("Español")
    # The choice stays for the next pages, the labeling page included, which still works.
    page.goto(f"/projects/{project.pk}/label/")
    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.locator("#language option:checked")).to_have_text("Español")
    expect(page.locator("#widget .lp-label")).to_have_count(3)

    switch_to(page, "en")
    expect(page.get_by_role("button", name="Submit")).to_be_visible()
    assert page.js_errors == []


def test_the_interface_reads_in_spanish(page, live_server):
    project = setup_annotator()
    login(page, "annotator")
    switch_to(page, "es")
    # The pages (templates) and the labeling script's own messages (the JavaScript catalogue) are in Spanish.
    expect(page.locator("h1")).to_have_text("Tus proyectos")
    page.goto(f"/projects/{project.pk}/label/")
    expect(page.locator("#submit")).to_contain_text("Enviar")
    expect(page.locator("#task-ref")).not_to_be_empty()
    page.reload()
    expect(page.locator("#status")).to_have_text("Se recuperó tu borrador.")
    assert page.js_errors == []
