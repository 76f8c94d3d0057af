"""Schemathesis against the OpenAPI schema at /api/v1/schema/ (API.md: "Never 500 on any input").

Every operation of the schema gets generated requests — valid and invalid, with ids that exist and ids that do
not — as an admin with a token, against a database holding projects of each task type with tasks, work in every
stage, a clarification and an alert. The run is bounded (few examples per operation, a fixed seed; about 25 s) and
asserts one thing: no answer is a server error. There is no per-example deadline: a slow machine must not fail it.
"""

import json
import os

import hypothesis
import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig

from apps.projects import services as project_services
from apps.projects.models import Membership, QualityGate
from apps.quality.models import Alert
from apps.tasks import services
from tests import factories

# A longer exploration: LABELPORTAL_FUZZ_EXAMPLES=200 LABELPORTAL_FUZZ_SEED=7 pytest tests/api_fuzz
SEED = int(os.environ.get("LABELPORTAL_FUZZ_SEED", "20240611"))
MAX_EXAMPLES = int(os.environ.get("LABELPORTAL_FUZZ_EXAMPLES", "12"))


def _world():
    """Projects of every task type with tasks at every stage; returns the ids the generated paths may use."""
    team = factories.team(review_mode="all")
    project = team.project
    tasks = factories.tasks(team.batch, 5)
    work = [services.assignment_assign(task=task, annotator=team.annotators[0]) for task in tasks[:4]]
    services.assignment_start(assignment=work[1], actor=team.annotators[0])
    submitted = services.assignment_submit(assignment=work[2], actor=team.annotators[0], result={"label": "cat"})
    approved = services.assignment_submit(assignment=work[3], actor=team.annotators[0], result={"label": "dog"})
    services.review_approve(annotation=approved, reviewer=team.reviewer)
    clarification = services.clarification_ask(task=tasks[0], actor=team.annotators[0], question="Cat or lion?")
    gate = QualityGate.objects.create(project=project, metric="agreement", comparator="gte", threshold=0.8,
                                      state=QualityGate.State.BREACHED)
    alert = Alert.objects.create(kind=Alert.Kind.GATE_BREACH, project=project, batch=team.batch, gate=gate,
                                 message="Agreement below 0.8")
    draft = factories.batch(project, active=False, name="Draft")
    factories.tasks(draft, 2)
    spans = factories.project(actor=team.admin, task_type="text_spans", slug="spans")
    boxes = factories.project(actor=team.admin, task_type="bounding_boxes", slug="boxes")
    factories.tasks(factories.batch(spans), 2, data={"text": "Ada Lovelace wrote the first program"})
    factories.tasks(factories.batch(boxes), 2, data={"image": "/media/a.png", "width": 64, "height": 48})
    for other in (spans, boxes):
        project_services.membership_add(project=other, user=team.manager, role=Membership.Role.MANAGER)
    token = Token.objects.create(user=team.admin)
    return token.key, {
        "project_id": [project.pk, spans.pk, boxes.pk],
        "batch_id": [team.batch.pk, draft.pk],
        "task_id": [t.pk for t in tasks],
        "assignment_id": [a.pk for a in work],
        "annotation_id": [submitted.pk, approved.pk],
        "clarification_id": [clarification.pk],
        "alert_id": [alert.pk],
        "user_id": [team.annotators[1].pk, team.reviewer.pk],
    }


# Loaded once, at import: generating the schema reads no database. (schemathesis.pytest.from_fixture would load
# it per test, but schemathesis 4.32 sets Node._nodeid there, which pytest 9 no longer has.)
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", get_wsgi_application(),
                                        config=SchemathesisConfig.from_dict({"seed": SEED}))
KNOWN = {}


@schemathesis.serializer("application/x-ndjson")
def jsonl_serializer(context, value):
    """The import's JSONL body: a generated string as it is (lone surrogates too: the server must refuse bad
    UTF-8), anything else one JSON value per line."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    values = value if isinstance(value, list) else [value]
    return "".join(json.dumps(item) + "\n" for item in values).encode()


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """Paths name an object of the test's world most of the time, and whatever was generated otherwise."""
    if not path_parameters:
        return st.just(path_parameters)
    return st.fixed_dictionaries({name: st.sampled_from([*KNOWN.get(name, []), value])
                                  for name, value in path_parameters.items()})


@pytest.fixture
def api_token(db):
    token, known = _world()
    KNOWN.clear()
    KNOWN.update(known)
    # As Django's test client does: a request must not close the test's connection (and roll its data back).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield token
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)
    KNOWN.clear()


@schema.parametrize()
@hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck))
def test_no_input_gives_a_server_error(case, api_token):
    response = case.call(headers={"Authorization": f"Token {api_token}"})
    case.validate_response(response, checks=(not_a_server_error,))
