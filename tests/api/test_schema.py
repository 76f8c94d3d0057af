"""The OpenAPI 3 schema (issue 3, point 2): it validates, generates without a warning, documents every endpoint and
method of the URL conf and nothing else; and the docs page loads Swagger UI from local static files only.

`manage.py spectacular --validate --fail-on-warn` is what CI and a person run by hand; here it runs in-process.
Under test settings nothing is collected into STATIC_ROOT, so the docs' assets are looked up with the staticfiles
finders — what `collectstatic` would copy and what `runserver` serves.
"""

import json
import re
from html.parser import HTMLParser

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from tests.api.conftest import body_of

API_PREFIX = "api/v1/"
METHODS = ("get", "post", "put", "patch", "delete")
UNDOCUMENTED = {"schema", "docs"}  # the schema and its docs page (SERVE_INCLUDE_SCHEMA = False)


def api_operations():
    """{(OpenAPI path, method)} of every view under /api/v1/, from the URL conf."""

    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern), pattern

    operations = set()
    for route, pattern in walk(get_resolver().url_patterns, ""):
        if not route.startswith(API_PREFIX) or pattern.name in UNDOCUMENTED:
            continue
        view = getattr(pattern.callback, "cls", None) or getattr(pattern.callback, "view_class", None)
        path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        operations |= {(path, method) for method in METHODS if hasattr(view, method)}
    return operations


def test_manage_py_spectacular_validates_without_a_warning(tmp_path):
    GENERATOR_STATS.reset()  # what an earlier test's schema request left behind is not this run's
    target = tmp_path / "schema.json"

    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", "--file", str(target))

    schema = json.loads(target.read_text())
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "LabelPortal API"


@pytest.mark.django_db
def test_the_served_schema_validates_and_documents_every_endpoint_and_nothing_else():
    GENERATOR_STATS.reset()
    response = APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(body_of(response))

    validate_schema(schema)  # raises on any breach of the OpenAPI 3 JSON schema
    assert not GENERATOR_STATS, "the schema was generated with warnings or errors (see the captured output)"

    documented = {(path, method) for path, item in schema["paths"].items() for method in item if method in METHODS}
    expected = api_operations()
    assert len(expected) >= 40
    assert sorted(expected - documented) == [], "endpoints missing from the schema"
    assert sorted(documented - expected) == [], "operations in the schema that no URL serves"
    operation_ids = [op["operationId"] for item in schema["paths"].values() for m, op in item.items() if m in METHODS]
    assert len(operation_ids) == len(set(operation_ids))
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                assert operation.get("responses"), (path, method)
    # Token and session authentication are both described.
    schemes = {(scheme["in"], scheme["name"]) for scheme in schema["components"]["securitySchemes"].values()}
    assert {("header", "Authorization"), ("cookie", "sessionid")} <= schemes


class _Assets(HTMLParser):
    """The src/href of every element of a page."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


@pytest.mark.django_db
def test_the_docs_page_loads_swagger_ui_from_local_static_files_that_exist(settings):
    response = APIClient().get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    parser = _Assets()
    parser.feed(html)

    static = [url for url in parser.urls if url.startswith(settings.STATIC_URL)]
    # the page's own stylesheet and scripts (Swagger UI's bundle and preset), and its icon
    assert any(url.endswith("swagger-ui-bundle.js") for url in static), parser.urls
    assert any(url.endswith(".css") for url in static), parser.urls
    elsewhere = [url for url in parser.urls if not url.startswith(settings.STATIC_URL)]
    assert not elsewhere, f"the docs page loads assets from elsewhere than {settings.STATIC_URL}: {elsewhere}"
    assert not re.search(r"""["'(]\s*(https?:)?//""", html), "the docs page refers to another host"

    missing = [url for url in static if finders.find(url.removeprefix(settings.STATIC_URL).split("?")[0]) is None]
    assert not missing, f"static files the docs page needs that no finder has: {missing}"

    # and the schema the page loads is served, to anonymous callers too
    schema_url = re.search(r"""["'](/api/v1/schema/[^"']*)["']""", html)
    assert schema_url, "the docs page does not point at /api/v1/schema/"
    assert APIClient().get(schema_url.group(1)).status_code == 200
