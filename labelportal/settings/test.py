"""Tests: SQLite by default; PostgreSQL and Redis when DATABASE_URL / REDIS_URL are set (as in CI)."""

import secrets

from .base import *  # noqa: F401,F403

DEBUG = False
SECRET_KEY = secrets.token_urlsafe(50)
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Tests run Celery tasks in-process; the real-worker tests switch this off for themselves.
CELERY_TASK_ALWAYS_EAGER = True
# Figures after every transition, so that a test sees its own; tests of the window set it themselves.
PROGRESS_RECOMPUTE_WINDOW_SECONDS = 0
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
