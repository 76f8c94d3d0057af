"""Production settings (labelportal.settings.prod): they refuse to start without SECRET_KEY or ALLOWED_HOSTS, and
pass `manage.py check --deploy` with no warning. Each case starts manage.py in its own process, as a server would."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def manage(*args, **env):
    """Run manage.py with the production settings and `env` on top of this environment (None: unset)."""
    # DJANGO_ALLOW_ASYNC_UNSAFE: set by the browser tests' conftest for Playwright in this process; a production
    # process never has it (check --deploy warns about it).
    environment = {key: value for key, value in os.environ.items()
                   if key not in {"SECRET_KEY", "ALLOWED_HOSTS", "DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE"}}
    environment["DJANGO_SETTINGS_MODULE"] = "labelportal.settings.prod"
    for key, value in env.items():
        if value is None:
            environment.pop(key, None)
        else:
            environment[key] = value
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=120)


def strong_key():
    return secrets.token_urlsafe(50)


@pytest.mark.parametrize("secret_key", [None, ""], ids=["unset", "empty"])
def test_prod_refuses_to_start_without_a_secret_key(secret_key):
    result = manage("check", SECRET_KEY=secret_key, ALLOWED_HOSTS="labels.example.com")

    assert result.returncode != 0
    assert "ImproperlyConfigured: Set the SECRET_KEY environment variable" in result.stderr


@pytest.mark.parametrize("allowed_hosts", [None, "", ",", " , "], ids=["unset", "empty", "comma", "blank"])
def test_prod_refuses_to_start_without_allowed_hosts(allowed_hosts):
    result = manage("check", SECRET_KEY=strong_key(), ALLOWED_HOSTS=allowed_hosts)

    assert result.returncode != 0
    assert "ImproperlyConfigured: Set the ALLOWED_HOSTS environment variable" in result.stderr


def test_prod_passes_check_deploy_with_no_warning():
    result = manage("check", "--deploy", "--fail-level", "WARNING", SECRET_KEY=strong_key(),
                    ALLOWED_HOSTS="labels.example.com")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_prod_does_not_run_in_debug_even_when_asked():
    result = manage("shell", "-c", "from django.conf import settings; print(settings.DEBUG, settings.ALLOWED_HOSTS)",
                    SECRET_KEY=strong_key(), ALLOWED_HOSTS="labels.example.com, www.example.com", DEBUG="1")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False ['labels.example.com', 'www.example.com']"


@pytest.mark.parametrize(("setting", "expected"), [(None, "True"), ("true", "True"), ("false", "False"),
                                                   ("0", "False")], ids=["default", "true", "false", "0"])
def test_postgresql_binds_parameters_and_prepares_statements_on_the_server_unless_turned_off(setting, expected):
    # A pooler in transaction mode that does not track prepared statements needs it off (README, Configuration).
    result = manage("shell", "--no-imports", "-c", "from django.conf import settings; "
                    "options = settings.DATABASES['default'].get('OPTIONS', {}); "
                    "print(options.get('server_side_binding', False) and options.get('prepare_threshold') == 5)",
                    SECRET_KEY=strong_key(), ALLOWED_HOSTS="labels.example.com",
                    DATABASE_URL="postgres://labelportal@db.example.com:5432/labelportal",
                    DATABASE_SERVER_SIDE_BINDING=setting)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected
