# LabelPortal — the two commands: `make run` (demo on SQLite) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed

.PHONY: run test install migrate seed serve worker beat check-deploy clean messages compilemessages

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

## make messages: extract every translatable string into locale/<lang>/LC_MESSAGES/{django,djangojs}.po (needs GNU
## gettext). Python and templates go through Django's makemessages. The scripts call gettext through a local helper,
## `const t = (s) => gettext(s)`, which Django's `makemessages -d djangojs` cannot see (its xgettext keywords are fixed),
## so the JS catalogue is built here with xgettext, Django's JS keywords plus --keyword=t, and msgmerge'd into the .po.
## Do not run `manage.py makemessages -d djangojs` by hand: it would drop every t("...") string as obsolete.
## Then translate the new/changed (fuzzy) entries and run `make compilemessages`; the .mo files are committed, so
## `make run` and CI need no gettext tools.
LOCALES ?= es
JS_SOURCES = $(shell find static -name '*.js' -not -path '*/vendor/*' | sort)
XGETTEXT_JS = xgettext -d djangojs --language=JavaScript --from-code=UTF-8 --add-comments=Translators \
	--keyword=gettext_noop --keyword=gettext_lazy --keyword=ngettext_lazy:1,2 --keyword=pgettext:1c,2 \
	--keyword=npgettext:1c,2,3 --keyword=t

messages: install
	$(PY) manage.py makemessages --no-obsolete $(addprefix -l ,$(LOCALES)) \
	  --ignore=.venv --ignore=bench --ignore=tests --ignore=staticfiles --ignore=node_modules
	$(XGETTEXT_JS) --output=locale/djangojs.pot $(JS_SOURCES)
	set -e; for lang in $(LOCALES); do po=locale/$$lang/LC_MESSAGES/djangojs.po; mkdir -p $$(dirname $$po); \
	  if [ -f $$po ]; then msgmerge -q --backup=none --previous --update $$po locale/djangojs.pot; \
	  else msginit --no-translator -l $$lang -i locale/djangojs.pot -o $$po; fi; \
	  msgattrib --no-obsolete -o $$po $$po; done
	rm -f locale/djangojs.pot
	@echo "Now translate the empty and fuzzy entries (msgattrib --untranslated / --only-fuzzy), then: make compilemessages"

compilemessages: install
	$(PY) manage.py compilemessages --ignore=.venv

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles
