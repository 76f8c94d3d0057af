"""Shared fixtures: service requirements (PostgreSQL, Redis, a real Celery worker) and the users of a project.

On a laptop, a test that needs a service the machine lacks is skipped with the reason. CI sets
LABELPORTAL_REQUIRE_SERVICES=1, which turns each such skip into a failure.
"""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection

from tests import factories

REQUIRE_SERVICES = os.environ.get("LABELPORTAL_REQUIRE_SERVICES") == "1"
ROOT = Path(__file__).resolve().parent.parent


def service_missing(reason):
    """Skip (laptop) or fail (CI) a test whose service is not there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (LABELPORTAL_REQUIRE_SERVICES=1 forbids skipping)")
    pytest.skip(reason)


def redis_available():
    url = os.environ.get("REDIS_URL")
    if not url:
        return False
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except Exception:
        return False


@pytest.fixture(autouse=True)
def _service_markers(request):
    if request.node.get_closest_marker("postgres") and connection.vendor != "postgresql":
        service_missing("needs PostgreSQL: set DATABASE_URL=postgres://…")
    if request.node.get_closest_marker("redis") and not redis_available():
        service_missing("needs Redis: set REDIS_URL=redis://… to a running server")


@pytest.fixture
def celery_worker_process(transactional_db):
    """A real Celery worker in its own process, on Redis, using this test's database; yields its queue name."""
    from labelportal.celery import app

    if not redis_available():
        service_missing("needs Redis: set REDIS_URL=redis://… to a running server")
    queue = f"test-{uuid.uuid4().hex[:10]}"
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        database_url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    else:
        if db["NAME"].startswith("file:") or ":memory:" in db["NAME"]:
            service_missing("a worker process cannot share an in-memory SQLite test database; set DATABASE_URL")
        database_url = f"sqlite:///{db['NAME']}"
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "labelportal.settings.test",
           "CELERY_TASK_ALWAYS_EAGER": "0"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "labelportal", "worker", "-Q", queue, "--pool=solo",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO",
         "-n", f"{queue}@%h"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        yield queue
    finally:
        app.conf.task_always_eager = previous
        worker.terminate()
        try:
            output, _ = worker.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            output, _ = worker.communicate()
        print(output[-4000:])  # shown by pytest when the test failed


def wait_for(predicate, timeout=60, interval=0.2):
    """Poll until `predicate()` is truthy; return its value or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


@pytest.fixture
def admin_user(db):
    return factories.UserFactory(username="admin", is_staff=True, is_superuser=True)


@pytest.fixture
def team(db):
    """A classification project (overlap 1, review all) with an active batch and its people."""
    return factories.team()


@pytest.fixture
def small_team_distribution(monkeypatch):
    """The team spread shown from 3 annotators (5 by default): for test worlds of three people."""
    from apps.dashboards import people_trends
    from apps.quality import engine

    monkeypatch.setattr(engine, "DISTRIBUTION_MIN_TEAM", 3)
    monkeypatch.setattr(people_trends, "DISTRIBUTION_MIN_TEAM", 3)
