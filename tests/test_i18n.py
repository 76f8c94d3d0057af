"""Spanish, end to end: the catalogues are complete and compiled, the pages and the JS catalogue speak Spanish when
the language cookie says so, and no English UI word is left on the main pages.

The catalogues are parsed with a small .po reader (polib is not installed). Two checks also re-extract the strings
the way `make messages` does and fail when a source string has no Spanish yet; they need GNU gettext (xgettext)
and skip without it.
"""

import ast
import gettext
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation
from rest_framework.authtoken.models import Token

from tests import factories

ROOT = Path(settings.BASE_DIR)
LOCALE = ROOT / "locale"
CATALOGUES = [LOCALE / "es" / "LC_MESSAGES" / f"{domain}.po" for domain in ("django", "djangojs")]
ES = {settings.LANGUAGE_COOKIE_NAME: "es"}

# English UI words that must not survive on a page rendered in Spanish.
ENGLISH_UI_WORDS = ["Submit", "Skip", "Log in", "Log out", "Your projects", "Start labeling", "Review queue",
                    "Keyboard shortcuts", "Shortcuts", "Cancel", "Approve", "Reject", "Guideline", "Undo"]


# --- a tiny .po reader ---------------------------------------------------------------------------------------------


def po_entries(path):
    """The entries of a .po file as dicts: msgctxt, msgid, msgid_plural, msgstr {index: text}, flags, obsolete."""
    entries, entry, field = [], None, None

    def finish():
        if entry is not None and entry["msgid"] is not None:
            entries.append(entry)

    for raw in Path(path).read_text(encoding="utf-8").splitlines() + [""]:
        line = raw.strip()
        obsolete = line.startswith("#~")
        if obsolete:
            line = line[2:].strip()
        if not line:
            finish()
            entry, field = None, None
            continue
        if entry is None:
            entry = {"msgctxt": None, "msgid": None, "msgid_plural": None, "msgstr": {}, "flags": set(),
                     "obsolete": False}
        entry["obsolete"] |= obsolete
        if line.startswith("#,"):
            entry["flags"] |= {flag.strip() for flag in line[2:].split(",")}
            continue
        if line.startswith("#"):
            continue
        match = re.match(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(".*")$', line)
        if match:
            keyword, index, text = match.group(1), match.group(2), ast.literal_eval(match.group(3))
            if keyword.startswith("msgstr"):
                field = ("msgstr", int(index or 0))
                entry["msgstr"][field[1]] = text
            else:
                field = (keyword, None)
                entry[keyword] = text
        elif line.startswith('"') and field is not None:
            text = ast.literal_eval(line)
            if field[0] == "msgstr":
                entry["msgstr"][field[1]] += text
            else:
                entry[field[0]] += text
    return entries


def messages(path):
    """The translatable entries (no header, no obsolete ones)."""
    return [e for e in po_entries(path) if e["msgid"] and not e["obsolete"]]


def header(path):
    return next(e for e in po_entries(path) if e["msgid"] == "")["msgstr"][0]


# --- the catalogues ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("po", CATALOGUES, ids=lambda p: p.name)
def test_catalogue_is_complete(po):
    """Every msgid has a Spanish msgstr (all plural forms), none is fuzzy, and Plural-Forms is Spanish's."""
    entries = messages(po)
    assert entries, f"{po} holds no messages"
    assert "Plural-Forms: nplurals=2; plural=(n != 1);" in header(po)
    assert "fuzzy" not in next(e for e in po_entries(po) if e["msgid"] == "")["flags"]
    untranslated = [e["msgid"] for e in entries
                    if not e["msgstr"] or any(not text for text in e["msgstr"].values())
                    or (e["msgid_plural"] is not None and sorted(e["msgstr"]) != [0, 1])]
    fuzzy = [e["msgid"] for e in entries if "fuzzy" in e["flags"]]
    assert not untranslated, f"{len(untranslated)} untranslated in {po.name}: {untranslated[:10]}"
    assert not fuzzy, f"{len(fuzzy)} fuzzy in {po.name}: {fuzzy[:10]}"


@pytest.mark.parametrize("po", CATALOGUES, ids=lambda p: p.name)
def test_translations_keep_placeholders_and_markup(po):
    """%(name)s placeholders, {n} fields and HTML tags come through unchanged (in any order)."""
    token = re.compile(r"%\(\w+\)[sdr]|\{\w*\}|</?(?:b|code|kbd|em|strong|br)\b[^>]*>|&\w+;")
    wrong = []
    for entry in messages(po):
        for index, text in entry["msgstr"].items():
            source = entry["msgid_plural"] if index and entry["msgid_plural"] else entry["msgid"]
            if sorted(token.findall(source)) != sorted(token.findall(text)):
                wrong.append((entry["msgid"], text))
    assert not wrong, wrong


@pytest.mark.parametrize("po", CATALOGUES, ids=lambda p: p.name)
def test_compiled_catalogue_matches_po(po):
    """The committed .mo is the compiled .po: every message is in it with the same translation."""
    mo = po.with_suffix(".mo")
    assert mo.exists(), f"{mo} is missing: run `make compilemessages` and commit it"
    assert mo.stat().st_size > 0
    with mo.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    stale = []
    for entry in messages(po):
        if entry["msgid_plural"] is not None:
            got = [compiled.ngettext(entry["msgid"], entry["msgid_plural"], n) for n in (1, 2)]
            want = [entry["msgstr"][0], entry["msgstr"][1]]
        elif entry["msgctxt"] is not None:
            got, want = compiled.pgettext(entry["msgctxt"], entry["msgid"]), entry["msgstr"][0]
        else:
            got, want = compiled.gettext(entry["msgid"]), entry["msgstr"][0]
        if got != want:
            stale.append(entry["msgid"])
    assert not stale, f"{mo.name} is out of date (run `make compilemessages`): {stale[:10]}"


# --- nothing extractable is missing from the catalogues (needs GNU gettext) ---------------------------------------


def _xgettext_msgids(args, files, folder):
    if not shutil.which("xgettext"):
        pytest.skip("needs GNU gettext (xgettext) to re-extract the strings")
    pot = folder / "extracted.pot"
    subprocess.run(["xgettext", "--from-code=UTF-8", f"--output={pot}", *args, *map(str, files)],
                   capture_output=True, text=True, check=True, cwd=ROOT)
    return {e["msgid"] for e in messages(pot)} if pot.exists() else set()


def _translated(po):
    return {e["msgid"] for e in messages(po) if e["msgstr"] and all(e["msgstr"].values())}


def test_every_js_string_is_in_the_catalogue(tmp_path):
    """The scripts' t("…") and gettext("…") strings (what `make messages` extracts) all have Spanish."""
    sources = sorted(p for p in (ROOT / "static").rglob("*.js") if "vendor" not in p.parts)
    found = _xgettext_msgids(["--language=JavaScript", "--keyword=gettext_noop", "--keyword=gettext_lazy",
                              "--keyword=ngettext_lazy:1,2", "--keyword=pgettext:1c,2",
                              "--keyword=npgettext:1c,2,3", "--keyword=t"], sources, tmp_path)
    assert "Loading the next task…" in found  # the t() helper is extracted
    missing = sorted(found - _translated(LOCALE / "es/LC_MESSAGES/djangojs.po"))
    assert not missing, f"new JS strings without Spanish (run `make messages`, translate): {missing}"


def test_every_python_and_template_string_is_in_the_catalogue(tmp_path):
    """gettext()/{% translate %} strings of apps/, labelportal/ and templates/ all have Spanish."""
    files = sorted(p for folder in ("apps", "labelportal") for p in (ROOT / folder).rglob("*.py"))
    for number, template in enumerate(sorted((ROOT / "templates").rglob("*.html"))):
        python = tmp_path / f"template{number}.py"
        python.write_text(translation.templatize(template.read_text(encoding="utf-8"), origin=str(template)),
                          encoding="utf-8")
        files.append(python)
    found = _xgettext_msgids(["--language=Python", "--keyword=gettext_noop", "--keyword=gettext_lazy",
                              "--keyword=ngettext_lazy:1,2", "--keyword=pgettext:1c,2",
                              "--keyword=npgettext:1c,2,3", "--keyword=pgettext_lazy:1c,2",
                              "--keyword=npgettext_lazy:1c,2,3"], files, tmp_path)
    assert "Your projects" in found
    missing = sorted(found - _translated(LOCALE / "es/LC_MESSAGES/django.po"))
    assert not missing, f"new strings without Spanish (run `make messages`, translate): {missing}"


# --- the pages in Spanish ------------------------------------------------------------------------------------------


class VisibleText(HTMLParser):
    """The text a person reads or hears: text nodes and the human-facing attributes, without scripts and styles."""

    ATTRIBUTES = {"aria-label", "title", "placeholder", "alt"}

    def __init__(self):
        super().__init__()
        self.parts, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        attrs = dict(attrs)
        self.parts += [value for name, value in attrs.items() if name in self.ATTRIBUTES and value]
        if tag == "input" and attrs.get("type") in ("submit", "button") and attrs.get("value"):
            self.parts.append(attrs["value"])

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)

    def handle_data(self, data):
        if not self.skip and data.strip():
            self.parts.append(data.strip())


def visible_text(response):
    parser = VisibleText()
    parser.feed(response.content.decode())
    return " | ".join(parser.parts)


def english_left(text):
    return [word for word in ENGLISH_UI_WORDS if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text)]


@pytest.fixture
def world(db):
    """A project with an annotator who has a task waiting, a reviewer, and an answered clarification."""
    team = factories.team()
    annotator = team.annotators[0]
    return team, annotator


def spanish_client(client, user=None):
    client.cookies.load(ES)
    if user is not None:
        client.force_login(user)
    return client


def test_login_page_in_spanish(client):
    response = spanish_client(client).get(reverse("login"))
    assert response.status_code == 200
    html = response.content.decode()
    assert '<html lang="es">' in html
    assert "Iniciar sesión" in html and "Contraseña" in html and "Usuario" in html
    assert not english_left(visible_text(response)), english_left(visible_text(response))


def test_home_page_in_spanish(client, world):
    team, annotator = world
    response = spanish_client(client, annotator).get(reverse("home"))
    assert response.status_code == 200
    text = visible_text(response)
    for spanish in ("Tus proyectos", "Empezar a etiquetar", "Tú hoy", "Tú en total", "Cerrar sesión", "Proyectos"):
        assert spanish in text
    assert team.project.name in text
    assert not english_left(text), english_left(text)


def test_labeling_page_in_spanish(client, world):
    team, annotator = world
    response = spanish_client(client, annotator).get(reverse("tasks:label", args=[team.project.pk]))
    assert response.status_code == 200
    text = visible_text(response)
    for spanish in ("Enviar", "Omitir", "Deshacer", "Atajos de teclado", "Pedir una aclaración", "Guía"):
        assert spanish in text
    for key in ("Ctrl+Enter", "Ctrl+Z", "Alt+S", "Alt+H", "Alt+N", "Alt+G"):
        assert f"<kbd>{key}</kbd>" in response.content.decode()  # key names are not translated
    assert reverse("javascript-catalog") in response.content.decode()
    assert not english_left(text), english_left(text)


def test_review_page_and_profile_in_spanish(client, world):
    team, _annotator = world
    client = spanish_client(client, team.reviewer)
    response = client.get(reverse("quality:review", args=[team.project.pk]))
    assert response.status_code == 200
    text = visible_text(response)
    for spanish in ("Revisión", "Aprobar", "Rechazar", "Corregir y aceptar", "Escalar", "0 pendientes"):
        assert spanish in text
    # The project's error types are its data (seeded with English names), not the interface's words.
    for name in team.project.error_types.values_list("name", flat=True):
        text = text.replace(name, "")
    assert not english_left(text), english_left(text)

    response = client.get(reverse("profile"))
    text = visible_text(response)
    assert "Tu perfil" in text and "Token de la API" in text
    assert not english_left(text), english_left(text)


def test_dates_are_localised(client, world):
    """The token's creation date is written the Spanish way ("28 de noviembre de 2026 a las 7:45")."""
    team, annotator = world
    Token.objects.create(user=annotator)
    text = visible_text(spanish_client(client, annotator).get(reverse("profile")))
    months = ("enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|octubre|noviembre|diciembre")
    assert re.search(rf"Creado el \d{{1,2}} de ({months}) de \d{{4}}", text), text


def test_english_stays_english(client, world):
    """Without the cookie (and with it set to en) the pages stay in English."""
    team, annotator = world
    client.force_login(annotator)
    text = visible_text(client.get(reverse("home")))
    assert "Your projects" in text and "Start labeling" in text
    client.cookies.load({settings.LANGUAGE_COOKIE_NAME: "en"})
    assert "Your projects" in visible_text(client.get(reverse("home")))


def test_language_switcher_sets_spanish(client, world):
    """The switcher in the top bar posts to set_language; the next page comes in Spanish."""
    team, annotator = world
    client.force_login(annotator)
    home = client.get(reverse("home")).content.decode()
    assert f'action="{reverse("set_language")}"' in home
    assert '<option value="es">Español</option>' in home
    response = client.post(reverse("set_language"), {"language": "es", "next": reverse("home")})
    assert response.status_code == 302
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "es"
    assert "Tus proyectos" in visible_text(client.get(reverse("home")))


def test_javascript_catalogue_in_spanish(client):
    """/jsi18n/ with the cookie carries every djangojs translation, e.g. the labeling page's status lines."""
    response = spanish_client(client).get(reverse("javascript-catalog"))
    assert response.status_code == 200
    body = response.content.decode()
    assert json.dumps("Loading the next task…") + ": " + json.dumps("Cargando la siguiente tarea…") in body
    missing = [e["msgid"] for e in messages(LOCALE / "es/LC_MESSAGES/djangojs.po")
               if e["msgid_plural"] is None
               and json.dumps(e["msgid"]) + ": " + json.dumps(e["msgstr"][0]) not in body]
    assert not missing, missing


def test_javascript_catalogue_in_english_has_no_spanish(client):
    body = client.get(reverse("javascript-catalog")).content.decode()
    assert json.dumps("Cargando la siguiente tarea…") not in body


def test_api_refusals_follow_the_language(client, world):
    """A refusal a service raises reaches the labeling page's status line in the reader's language."""
    team, annotator = world
    client = spanish_client(client, annotator)
    answer = client.post(f"/api/v1/projects/{team.project.pk}/next/", {"start": True}, content_type="application/json")
    assert answer.status_code == 200
    assignment = answer.json()["assignment"]["id"]
    answer = client.post(f"/api/v1/assignments/{assignment}/submit/", {"result": {"label": "zebra"}},
                         content_type="application/json")
    assert answer.status_code == 400
    errors = " ".join(str(m) for ms in answer.json()["errors"].values() for m in ms)
    assert "La etiqueta 'zebra' no está en el esquema." in errors, answer.json()
