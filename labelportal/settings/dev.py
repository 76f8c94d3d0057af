"""Development: runs with nothing set (SQLite, Celery eager, console e-mail) on http://127.0.0.1:8000."""

import os
import secrets

from .base import *  # noqa: F401,F403
from .base import BASE_DIR, env_bool, env_list

DEBUG = env_bool("DEBUG", True)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")


def _local_secret_key():
    """A random key kept in a git-ignored file, so sessions survive restarts and nothing is hard-coded."""
    path = BASE_DIR / ".secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = os.environ.get("SECRET_KEY") or _local_secret_key()
