"""Browser tests: the real pages in headless Chromium (Debian's `chromium`), driven by Playwright.

Playwright cannot download its own browsers here; it drives /usr/bin/chromium. Without Chromium the tests skip
(or fail in CI, where LABELPORTAL_REQUIRE_SERVICES=1).
"""

import os
import shutil
import threading
import time

import pytest
from django.core.signals import request_finished, request_started

from tests.conftest import service_missing

# Playwright's sync API runs an event loop in the test thread; the ORM calls the tests make are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("LABELPORTAL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        service_missing(f"needs Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_missing("needs the playwright Python package (pip install -r requirements.txt)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class RequestsInFlight:
    """Counts the requests the live server is still answering.

    A page closed at the end of a test may leave a request running in the server's thread (a retry, the next item
    after a decision). If the database is flushed under it, the flush deadlocks with that request's transaction, so
    the teardown waits for the server to go quiet first.
    """

    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()

    def started(self, **kwargs):
        with self.lock:
            self.count += 1

    def finished(self, **kwargs):
        with self.lock:
            self.count -= 1

    def wait_until_quiet(self, timeout=15):
        deadline = time.monotonic() + timeout
        time.sleep(0.05)  # a request the browser sent just before closing reaches the server
        while self.count > 0 and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture(scope="session")
def requests_in_flight():
    counter = RequestsInFlight()
    request_started.connect(counter.started, dispatch_uid="browser-requests-started")
    request_finished.connect(counter.finished, dispatch_uid="browser-requests-finished")
    yield counter
    request_started.disconnect(dispatch_uid="browser-requests-started")
    request_finished.disconnect(dispatch_uid="browser-requests-finished")


@pytest.fixture
def new_page(browser, live_server, requests_in_flight):
    """Opens a person's browser: a fresh context (no cookies, empty localStorage) on the live server, in English,
    collecting uncaught errors in `page.js_errors`. Every context opened is closed after the test, once the server
    has answered what it was sent."""
    contexts = []

    def open_page():
        context = browser.new_context(base_url=live_server.url, locale="en-US",
                                      viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.js_errors = []
        page.on("pageerror", lambda error: page.js_errors.append(str(error)))
        return page

    yield open_page
    for context in contexts:
        context.close()
    requests_in_flight.wait_until_quiet()


@pytest.fixture
def page(new_page):
    """A fresh browser context on the live server, in English."""
    return new_page()


def login(page, username, password="pw-Secret-1"):
    """Sign in through the login form, as a person would."""
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
