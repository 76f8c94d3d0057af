# LabelPortal — the two commands: `make run` (demo on SQLite) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed

.PHONY: run test install migrate seed serve worker beat check-deploy clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(PY) manage.py migrate --noinput

seed: migrate
	$(PY) manage.py seed_demo

serve:
	$(PY) manage.py runserver 127.0.0.1:8000

## make run: virtualenv, install, migrate, demo data, and the site on http://127.0.0.1:8000 (admin at /admin/)
run: seed serve

## make test: the test suite (SQLite unless DATABASE_URL is set; PostgreSQL/Redis tests skip without them)
test: install
	$(BIN)/pytest $(PYTEST_ARGS)

worker: install
	$(BIN)/celery -A labelportal worker --loglevel=INFO

beat: install
	$(BIN)/celery -A labelportal beat --loglevel=INFO

check-deploy: install
	DJANGO_SETTINGS_MODULE=labelportal.settings.prod SECRET_KEY=$$(head -c 48 /dev/urandom | base64) \
	  ALLOWED_HOSTS=labels.example.com $(PY) manage.py check --deploy --fail-level WARNING

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles
