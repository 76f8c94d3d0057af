"""A project's own sanity rules (SanityRule): refused at submit, resubmission and fix with a 400 naming the rule;
set and checked in the admin; reported over the existing annotations (admin page, CSV, JSON, management
command); counted in the engine's sanity pass rate, and a gate on it breaches with one alert."""

import csv
import io
import json
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from hypothesis import HealthCheck, given, settings, strategies as st

from apps.projects import services as project_services
from apps.projects.models import Membership, Project
from apps.quality import engine, sanity, services as quality_services
from apps.quality.models import Alert, Review, SanityRule
from apps.tasks import services
from apps.tasks.models import Annotation, Assignment, TaskEvent
from tests import factories
from tests.api.conftest import assert_error, client_for

pytestmark = pytest.mark.django_db

CLASSES = {"labels": [{"value": "cat"}, {"value": "dog"}, {"value": "other", "name": "Other"}]}
BOXES = {"labels": [{"value": "car"}, {"value": "person"}, {"value": "other", "name": "Other"}]}
SPANS = {"labels": [{"value": "PER"}, {"value": "ORG"}, {"value": "LOC"}]}
SCHEMAS = {"classification": CLASSES, "multilabel": CLASSES, "bounding_boxes": BOXES, "text_spans": SPANS}
DATA = {"classification": {"text": "A small animal."}, "multilabel": {"text": "A small animal."},
        "bounding_boxes": {"image": "/static/street.png", "width": 640, "height": 480},
        "text_spans": {"text": "Ada Lovelace met Charles Babbage in London."}}


def box(label, x=0.1):
    return {"x": x, "y": 0.1, "w": 0.2, "h": 0.2, "label": label}


def span(label, start, end):
    return {"start": start, "end": end, "label": label}


class World:
    """A project of one task type (review everything, overlap 1) with a manager, a reviewer, two annotators and
    ten tasks."""

    def __init__(self, task_type, *, review_mode="all", overlap=1, n=10, slug=None):
        self.admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
        self.project = factories.project(actor=self.admin, task_type=task_type, schema=SCHEMAS[task_type],
                                         review_mode=review_mode, overlap=overlap, slug=slug or f"w-{task_type}")
        self.manager = factories.member(self.project, Membership.Role.MANAGER, f"boss-{task_type}")
        self.reviewer = factories.member(self.project, Membership.Role.REVIEWER, f"rev-{task_type}")
        self.annotators = [factories.member(self.project, Membership.Role.ANNOTATOR, f"{task_type}-a{i}")
                           for i in range(2)]
        self.batch = factories.batch(self.project)
        self.tasks = factories.tasks(self.batch, n, data=DATA[task_type])
        self.free = list(self.tasks)

    def rule(self, kind, label="", count=1, message="", is_active=True):
        return SanityRule.objects.create(project=self.project, kind=kind, label=label, count=count, message=message,
                                         is_active=is_active)

    def assignment(self, annotator=None, task=None):
        return services.assignment_assign(task=task or self.free.pop(0), annotator=annotator or self.annotators[0])

    def submit(self, result, notes="", annotator=None, task=None):
        annotator = annotator or self.annotators[0]
        return services.assignment_submit(assignment=self.assignment(annotator, task), actor=annotator,
                                          result=result, notes=notes)


def state():
    """What a refused call must leave as it was."""
    return {"annotations": sorted(Annotation.objects.values_list("pk", "version", "status", "is_current")),
            "assignments": sorted(Assignment.objects.values_list("pk", "status")),
            "reviews": sorted(Review.objects.values_list("pk", "decision")),
            "events": TaskEvent.objects.count()}


def submit_url(assignment):
    return f"/api/v1/assignments/{assignment.pk}/submit/"


# --- at submit ------------------------------------------------------------------------------------------------------

CASES = [
    # task type, rule, a result (and notes) that breaks it, the message, the field, a result that passes
    ("bounding_boxes", {"kind": "min_items", "count": 1}, {"boxes": []}, "", "Add at least 1 box.", "result",
     {"boxes": [box("car")]}, ""),
    ("bounding_boxes", {"kind": "min_items", "label": "car", "count": 2}, {"boxes": [box("car"), box("person")]},
     "", "Add at least 2 “car” boxes.", "result", {"boxes": [box("car"), box("car", 0.5)]}, ""),
    ("bounding_boxes", {"kind": "max_items", "count": 1}, {"boxes": [box("car"), box("car", 0.5)]}, "",
     "Draw at most 1 box.", "result", {"boxes": [box("car")]}, ""),
    ("bounding_boxes", {"kind": "label_needs_note", "label": "other"}, {"boxes": [box("other")]}, "  \n ",
     "Label “Other” needs a note.", "notes", {"boxes": [box("other")]}, "a kiosk"),
    ("bounding_boxes", {"kind": "label_forbidden", "label": "person"}, {"boxes": [box("car"), box("person", 0.5)]},
     "", "Label “person” may not be used.", "result", {"boxes": [box("car")]}, ""),
    ("text_spans", {"kind": "min_items", "label": "PER", "count": 1}, {"spans": [span("LOC", 36, 42)]}, "",
     "Mark at least 1 “PER” span.", "result", {"spans": [span("PER", 0, 12)]}, ""),
    ("text_spans", {"kind": "max_items", "count": 2},
     {"spans": [span("PER", 0, 12), span("PER", 17, 32), span("LOC", 36, 42)]}, "", "Mark at most 2 spans.",
     "result", {"spans": [span("PER", 0, 12), span("PER", 17, 32)]}, ""),
    ("multilabel", {"kind": "min_items", "count": 2}, {"labels": ["cat"]}, "", "Choose at least 2 labels.",
     "result", {"labels": ["cat", "dog"]}, ""),
    ("multilabel", {"kind": "min_items", "label": "cat"}, {"labels": ["dog"]}, "", "Choose the label “cat”.",
     "result", {"labels": ["dog", "cat"]}, ""),
    ("multilabel", {"kind": "label_needs_note", "label": "other"}, {"labels": ["cat", "other"]}, "",
     "Label “Other” needs a note.", "notes", {"labels": ["cat", "dog"]}, ""),
    ("classification", {"kind": "label_forbidden", "label": "dog"}, {"label": "dog"}, "",
     "Label “dog” may not be used.", "result", {"label": "cat"}, ""),
    ("classification", {"kind": "label_needs_note", "label": "other", "message": "Say what it is, please."},
     {"label": "other"}, "", "Say what it is, please.", "notes", {"label": "other"}, "a lynx"),
]


@pytest.mark.parametrize("task_type, rule, bad, bad_notes, message, where, good, good_notes", CASES)
def test_a_submission_breaking_a_rule_is_a_400_naming_it_and_a_passing_one_is_taken(
        task_type, rule, bad, bad_notes, message, where, good, good_notes):
    world = World(task_type)
    world.rule(**rule)
    world.rule("label_forbidden", label=SCHEMAS[task_type]["labels"][1]["value"], is_active=False)  # inactive
    assignment = world.assignment()
    client = client_for(world.annotators[0])
    before = state()

    refused = client.post(submit_url(assignment), {"result": bad, "notes": bad_notes}, format="json")

    body = assert_error(refused, 400, error_keys={where})
    assert body["detail"] == message and body["errors"][where] == [message]
    assert state() == before  # nothing written: no annotation, no event, the assignment as it was

    taken = client.post(submit_url(assignment), {"result": good, "notes": good_notes}, format="json")

    assert taken.status_code == 201, taken.content
    assert list(Annotation.objects.values_list("result", "notes")) == [(good, good_notes)]


def test_several_rules_broken_are_all_named_the_schema_s_first():
    world = World("bounding_boxes")
    world.rule("max_items", count=1)
    world.rule("label_needs_note", label="other")
    assignment = world.assignment()

    response = client_for(world.annotators[0]).post(submit_url(assignment), {"result": {"boxes": [
        box("other"), box("car", 0.5), {"x": 0.9, "y": 0.1, "w": 0.5, "h": 0.1, "label": "car"}]}}, format="json")

    body = assert_error(response, 400)
    assert body["detail"] == "Box 3: the box reaches outside the image."
    assert body["errors"] == {"result": ["Box 3: the box reaches outside the image.", "Draw at most 1 box."],
                              "notes": ["Label “Other” needs a note."]}
    assert Annotation.objects.count() == 0


def test_a_retried_submission_makes_one_annotation_and_a_refused_key_can_be_sent_again_fixed():
    world = World("bounding_boxes")
    world.rule("min_items", count=1)
    assignment = world.assignment()
    client = client_for(world.annotators[0])
    key = {"HTTP_IDEMPOTENCY_KEY": "draft-7f3a"}

    refused = client.post(submit_url(assignment), {"result": {"boxes": []}}, format="json", **key)
    assert refused.status_code == 400 and Annotation.objects.count() == 0
    # the labeling page keeps its key until a submission is taken: the fixed result goes with the same key
    first = client.post(submit_url(assignment), {"result": {"boxes": [box("car")]}}, format="json", **key)
    again = client.post(submit_url(assignment), {"result": {"boxes": [box("car")]}}, format="json", **key)

    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert Annotation.objects.count() == 1


def test_a_resubmission_breaking_a_rule_is_refused_and_no_version_is_added():
    world = World("text_spans")
    first = world.submit({"spans": [span("PER", 0, 12)]})
    services.review_reject(annotation=first, reviewer=world.reviewer, error_types=["missed_object"],
                           comment="Mark both people.")
    world.rule("min_items", count=2, message="Mark both people.")
    before = state()

    with pytest.raises(Exception) as refused:
        services.assignment_resubmit(assignment=first.assignment, actor=world.annotators[0],
                                     result={"spans": [span("PER", 17, 32)]})

    assert refused.value.status_code == 400 and refused.value.message == "Mark both people."
    assert state() == before
    again = services.assignment_resubmit(assignment=first.assignment, actor=world.annotators[0],
                                         result={"spans": [span("PER", 0, 12), span("PER", 17, 32)]})
    assert again.version == 2


def test_a_reviewer_s_fix_breaking_a_rule_is_refused_over_the_api_and_nothing_is_decided():
    world = World("bounding_boxes")
    annotation = world.submit({"boxes": [box("car")]})
    world.rule("label_forbidden", label="person")
    before = state()

    response = client_for(world.reviewer).post(f"/api/v1/annotations/{annotation.pk}/review/", {
        "decision": "fix", "corrected_result": {"boxes": [box("person")]}, "error_types": ["wrong_label"]},
        format="json")

    body = assert_error(response, 400)
    assert body["detail"] == "Label “person” may not be used."
    assert state() == before
    assert Review.objects.filter(decided_at__isnull=False).count() == 0


def test_a_reviewer_s_comment_is_the_note_a_label_needs_in_a_fix():
    world = World("classification")
    annotation = world.submit({"label": "cat"})
    world.rule("label_needs_note", label="other")

    with pytest.raises(Exception) as refused:
        services.review_fix(annotation=annotation, reviewer=world.reviewer, corrected_result={"label": "other"})
    assert refused.value.errors == {"notes": ["Label “Other” needs a note."]}

    review = services.review_fix(annotation=annotation, reviewer=world.reviewer, corrected_result={"label": "other"},
                                 comment="It is a lynx.")
    assert review.decision == "fix" and review.corrected_annotation.result == {"label": "other"}


# --- one meaning: the rule over one result and in the database ------------------------------------------------------

LABELS = st.sampled_from(["car", "person", "other", "PER", "cat", "Car", "", 5, None, True])
ITEM = st.one_of(st.fixed_dictionaries({"label": LABELS}), st.fixed_dictionaries({}), LABELS,
                 st.lists(st.just("car"), max_size=1))
RESULTS = {
    "bounding_boxes": st.one_of(st.fixed_dictionaries({"boxes": st.lists(ITEM, max_size=4)}),
                                st.fixed_dictionaries({"boxes": st.one_of(LABELS, st.fixed_dictionaries(
                                    {"label": LABELS}))}), st.just({}), st.just(["car"])),
    "multilabel": st.one_of(st.fixed_dictionaries({"labels": st.lists(LABELS, max_size=4)}),
                            st.fixed_dictionaries({"labels": LABELS}), st.just({})),
    "classification": st.one_of(st.fixed_dictionaries({"label": LABELS}), st.just({}), st.just(["cat"])),
}
NOTES = st.sampled_from(["", " ", "\n\t ", "a note", " x "])


@pytest.mark.parametrize("task_type", sorted(RESULTS))
def test_the_database_reads_every_rule_as_the_submit_check_does(task_type):
    world = World(task_type, review_mode="none", n=1)
    annotation = world.submit({"classification": {"label": "cat"}, "multilabel": {"labels": ["cat"]},
                               "bounding_boxes": {"boxes": []}}[task_type])
    labels = ["car", "other", "Car"] if task_type == "bounding_boxes" else ["cat", "other"]
    rules = [SanityRule(project=world.project, kind=kind, label=label, count=count)
             for kind in ("label_needs_note", "label_forbidden") for label in labels
             for count in (1,)]
    if task_type != "classification":
        rules += [SanityRule(project=world.project, kind=kind, label=label, count=count)
                  for kind in ("min_items", "max_items") for label in ["", *labels] for count in (0, 1, 2)]

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(result=RESULTS[task_type], notes=NOTES)
    def check(result, notes):
        Annotation.objects.filter(pk=annotation.pk).update(result=result, notes=notes)
        rows = Annotation.objects.filter(pk=annotation.pk)
        for rule in rules:
            expected = sanity.rule_broken(rule, task_type, result, notes)
            assert rows.filter(sanity.rule_breach(rule, task_type)).exists() == expected, (rule.kind, rule.label,
                                                                                            rule.count, result, notes)

    check()


# --- the admin ------------------------------------------------------------------------------------------------------

def admin_url(name, *args):
    return reverse(f"admin:{name}", args=args)


def change_form(client, project):
    """The project page's form data as a browser would send it back, and the sanity rules' inline prefix."""
    from tests.test_admin import _form_data, _inline_prefix

    page = client.get(admin_url("projects_project_change", project.pk))
    assert page.status_code == 200
    return _form_data(page), _inline_prefix(page, SanityRule)


def add_rule(data, prefix, **fields):
    n = int(data[f"{prefix}-TOTAL_FORMS"])
    data.update({f"{prefix}-{n}-{name}": value for name, value in fields.items()})
    data[f"{prefix}-{n}-is_active"] = "on"
    data[f"{prefix}-TOTAL_FORMS"] = str(n + 1)


def inline_errors(response):
    errors = []
    for inline in response.context["inline_admin_formsets"]:
        if inline.formset.model is SanityRule:
            errors += [str(m) for form_errors in inline.formset.errors for ms in form_errors.values() for m in ms]
            errors += [str(m) for m in inline.formset.non_form_errors()]
    return errors


def test_a_manager_adds_a_rule_on_the_project_page_and_the_figures_follow(django_capture_on_commit_callbacks):
    world = World("bounding_boxes", review_mode="none")
    for boxes in ([box("car")], [box("car"), box("car", 0.5)], [box("person")], []):
        world.submit({"boxes": boxes})
    quality_services.quality_recompute_full(project_id=world.project.pk)
    assert engine.snapshot_latest(world.project, engine.QUALITY).values["sanity_pass_rate"] == 1.0
    client = client_for(None)
    client.force_login(world.manager)
    data, prefix = change_form(client, world.project)
    add_rule(data, prefix, kind="min_items", label="car", count="1", message="")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(admin_url("projects_project_change", world.project.pk), data)

    assert response.status_code == 302, response.context and inline_errors(response)
    rule = SanityRule.objects.get(project=world.project)
    assert (rule.kind, rule.label, rule.count, rule.is_active) == ("min_items", "car", 1, True)
    assert rule.history.get().history_user == world.manager
    # the rule's change had the figures recomputed: 2 of the 4 annotations have no car
    assert len(callbacks) >= 1
    assert engine.snapshot_latest(world.project, engine.QUALITY).values["sanity_pass_rate"] == 0.5

    # unchanged rules on a later save recompute nothing
    data, prefix = change_form(client, world.project)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        client.post(admin_url("projects_project_change", world.project.pk), data)
    with mock.patch("apps.quality.tasks.quality_recompute.delay") as recompute:
        for callback in callbacks:
            callback()
    recompute.assert_not_called()


@pytest.mark.parametrize("task_type, fields, error", [
    ("bounding_boxes", {"kind": "label_forbidden", "label": "bicycle"},
     "“bicycle” is not a label of the project's schema (its labels: car, person, other)."),
    ("bounding_boxes", {"kind": "label_needs_note", "label": ""}, "Name the label this rule is about."),
    ("bounding_boxes", {"kind": "min_items", "count": "0"}, "“At least 0” is always true: N must be 1 or more."),
    ("classification", {"kind": "min_items", "count": "1"},
     "A classification result is exactly one label: there are no items to count. Use “Label X may not be used” "
     "or “Label X needs a note” instead."),
    ("multilabel", {"kind": "max_items", "label": "cat", "count": "1"},
     "A label is chosen once at most: to keep “cat” out, use “Label X may not be used”."),
    ("multilabel", {"kind": "min_items", "count": "4"}, "The schema has 3 labels: no result could choose 4."),
])
def test_a_rule_that_makes_no_sense_for_the_project_is_refused_with_a_clear_message(task_type, fields, error):
    world = World(task_type)
    client = client_for(None)
    client.force_login(world.admin)
    data, prefix = change_form(client, world.project)
    add_rule(data, prefix, **{"label": "", "count": "1", "message": "", **fields})

    response = client.post(admin_url("projects_project_change", world.project.pk), data)

    assert response.status_code == 200
    assert inline_errors(response) == [error]
    assert SanityRule.objects.count() == 0


def test_rules_no_result_could_pass_together_are_refused():
    world = World("bounding_boxes")
    client = client_for(None)
    client.force_login(world.admin)
    data, prefix = change_form(client, world.project)
    add_rule(data, prefix, kind="min_items", label="car", count="3", message="")
    add_rule(data, prefix, kind="max_items", label="car", count="2", message="")

    response = client.post(admin_url("projects_project_change", world.project.pk), data)

    assert response.status_code == 200
    assert inline_errors(response) == ["“At least 3” is more than “at most 2” of “car”: no result could pass."]
    assert SanityRule.objects.count() == 0


def test_a_label_taken_out_of_the_schema_is_refused_in_the_rules_that_use_it():
    world = World("bounding_boxes")
    world.rule("label_needs_note", label="other")
    client = client_for(None)
    client.force_login(world.admin)
    data, _prefix = change_form(client, world.project)
    data["label_schema"] = json.dumps({"labels": ["car", "person"]})

    response = client.post(admin_url("projects_project_change", world.project.pk), data)

    assert response.status_code == 200
    assert inline_errors(response) == ["“other” is not a label of the project's schema (its labels: car, person)."]
    world.project.refresh_from_db()
    assert len(world.project.label_schema["labels"]) == 3


def test_rules_and_their_report_are_for_the_project_s_managers_only():
    world = World("bounding_boxes")
    world.rule("min_items", count=1)
    other = World("classification", slug="elsewhere")
    report = admin_url("projects_project_sanity_report", world.project.pk)
    client = client_for(None)

    client.force_login(other.manager)  # a manager, of another project
    assert client.get(report).status_code == 302  # the admin's "no such object" redirect
    assert client.get(report + "?format=csv").status_code == 302
    page = client.get(admin_url("projects_project_change", other.project.pk))
    assert b"sanity-report-link" in page.content and str(world.project.pk).encode() not in page.content.split(
        b"sanity-report-link")[1][:200]

    client.force_login(world.annotators[0])  # not staff: the admin's login page
    assert client.get(report).status_code == 302

    client.force_login(world.manager)
    assert client.get(report).status_code == 200
    page = client.get(admin_url("projects_project_change", world.project.pk))
    assert report.encode() in page.content


# --- the report over existing data ----------------------------------------------------------------------------------

class Existing:
    """A box project with work done before its rules: the annotations below, then rules and a schema change."""

    def __init__(self):
        w = self.world = World("bounding_boxes", review_mode="all")
        a0, a1 = w.annotators
        self.empty = w.submit({"boxes": []}, annotator=a0)                                   # < 1 box
        self.one_car = w.submit({"boxes": [box("car")]}, annotator=a0)                       # passes
        self.silent = w.submit({"boxes": [box("car"), box("other", 0.5)]}, annotator=a1)   # > 1, no note
        self.noted = w.submit({"boxes": [box("other")]}, notes="a kiosk", annotator=a1)     # passes
        self.person = w.submit({"boxes": [box("person")]}, annotator=a1)                    # schema loses person
        # rework: the first version broke the min rule, the second passes; only the second is current
        self.reworked = w.submit({"boxes": []}, annotator=a1)
        services.review_reject(annotation=self.reworked, reviewer=w.reviewer, error_types=["missed_object"],
                               comment="Mark both people.")
        self.reworked_v2 = services.assignment_resubmit(assignment=self.reworked.assignment, actor=a1,
                                                        result={"boxes": [box("car")]})
        # a reviewer's fix is the task's result, not the annotator's work: the annotator's version is reported
        self.fixed = w.submit({"boxes": [box("car"), box("car", 0.5)]}, annotator=a0)   # > 1
        services.review_fix(annotation=self.fixed, reviewer=w.reviewer, corrected_result={"boxes": [box("car")]},
                            error_types=["extra_object"])
        self.min_rule = w.rule("min_items", count=1)
        self.max_rule = w.rule("max_items", count=1, message="One box per image.")
        self.note_rule = w.rule("label_needs_note", label="other")
        self.unused = w.rule("label_forbidden", label="car", is_active=False)
        Project.objects.filter(pk=w.project.pk).update(label_schema={
            "labels": [{"value": "car", "name": "car"}, {"value": "other", "name": "Other"}], "options": {}})
        w.project.refresh_from_db()


def offenders(annotations):
    return sorted((a.task_id, a.annotator.username, a.version) for a in annotations)


def rows_of(finding):
    return sorted((row["task"], row["annotator"], row["version"]) for row in finding.annotations)


def test_the_report_finds_exactly_the_current_annotations_that_break_each_rule():
    e = Existing()

    report = sanity.sanity_report(e.world.project)

    findings = {finding.key: finding for finding in report["findings"]}
    assert list(findings) == ["schema", str(e.min_rule.pk), str(e.max_rule.pk), str(e.note_rule.pk)]
    assert rows_of(findings["schema"]) == offenders([e.person])
    assert findings["schema"].annotations[0]["detail"] == "Box 1: label 'person' is not in the schema."
    assert rows_of(findings[str(e.min_rule.pk)]) == offenders([e.empty])
    assert rows_of(findings[str(e.max_rule.pk)]) == offenders([e.silent, e.fixed])
    assert findings[str(e.max_rule.pk)].annotations[0]["detail"] == "One box per image."
    assert rows_of(findings[str(e.note_rule.pk)]) == offenders([e.silent])
    assert [f.count for f in report["findings"]] == [1, 1, 2, 1]
    # 7 current annotations (the rework's first version is not), 4 break at least one rule
    assert (report["current"], report["breaking"], report["pass_rate"]) == (7, 4, pytest.approx(3 / 7))


@pytest.mark.parametrize("task_type, results", [
    ("classification", [{"label": "cat"}, {"label": "dog"}, {"label": "other"}, {"label": "other"}]),
    ("bounding_boxes", [{"boxes": [box("car")]}, {"boxes": [box("person")]}, {"boxes": [box("other")]},
                        {"boxes": [box("other")]}]),
])
def test_an_annotation_breaking_the_schema_and_a_rule_is_counted_once(task_type, results):
    # given four annotations, then "other" taken out of the schema, the second label forbidden and "other" (no
    # longer in the schema: a rule left over) needing a note: the last two break the schema, the third a rule too
    world = World(task_type, review_mode="none")
    annotations = [world.submit(result, notes="it is a kiosk" if i == 3 else "") for i, result in enumerate(results)]
    forbidden = SCHEMAS[task_type]["labels"][1]["value"]
    world.rule("label_forbidden", label=forbidden)
    note = world.rule("label_needs_note", label="other")
    Project.objects.filter(pk=world.project.pk).update(label_schema={
        "labels": [{"value": label["value"], "name": label["value"]} for label in SCHEMAS[task_type]["labels"][:2]],
        "options": {}})
    world.project.refresh_from_db()

    report = sanity.sanity_report(world.project)

    assert [(f.key, f.count) for f in report["findings"]] == [("schema", 2), (str(note.pk - 1), 1), (str(note.pk), 1)]
    assert rows_of(report["findings"][0]) == offenders(annotations[2:])
    assert (report["current"], report["breaking"], report["pass_rate"]) == (4, 3, 0.25)
    computed = engine.project_quality_compute(world.project)
    assert computed["quality"]["figures"]["sanity_pass_rate"] == {"value": 0.25, "n": 4}


def test_the_report_of_a_span_project_checks_spans_against_their_task_s_text():
    world = World("text_spans", review_mode="none")
    people = world.submit({"spans": [span("PER", 0, 12), span("PER", 17, 32)]})
    place = world.submit({"spans": [span("LOC", 36, 42)]})
    nothing = world.submit({"spans": []})
    rule = world.rule("min_items", label="PER", count=1)
    Project.objects.filter(pk=world.project.pk).update(label_schema={
        "labels": [{"value": "PER", "name": "PER"}, {"value": "ORG", "name": "ORG"}], "options": {"max_spans": 1}})
    world.project.refresh_from_db()

    report = sanity.sanity_report(world.project)

    schema, per = report["findings"]
    assert [(row["annotation"], row["detail"]) for row in schema.annotations] == [
        (people.pk, "At most 1 spans allowed."), (place.pk, "Span 1: label 'LOC' is not in the schema.")]
    assert [row["annotation"] for row in per.annotations] == [place.pk, nothing.pk]
    assert (per.key, report["current"], report["breaking"]) == (str(rule.pk), 3, 3)


def test_the_report_is_counted_by_the_database_in_a_few_queries_whatever_the_size():
    e = Existing()
    with CaptureQueriesContext(connection) as small:
        sanity.sanity_report(e.world.project, limit=1)
    active = list(SanityRule.objects.filter(is_active=True).values_list("pk", flat=True))
    SanityRule.objects.update(is_active=False)  # work done before the rules, as in Existing
    e.world.free = factories.tasks(e.world.batch, 3, data=DATA["bounding_boxes"])
    for _ in range(3):
        e.world.submit({"boxes": [box("car"), box("other", 0.5)]}, annotator=e.world.annotators[0])
    SanityRule.objects.filter(pk__in=active).update(is_active=True)
    with CaptureQueriesContext(connection) as bigger:
        report = sanity.sanity_report(e.world.project, limit=1)
    assert len(bigger) == len(small) <= 10
    assert [f.count for f in report["findings"]] == [1, 1, 5, 4]


def test_the_report_page_lists_the_offenders_and_the_csv_has_them_all():
    e = Existing()
    client = client_for(None)
    client.force_login(e.world.manager)
    url = admin_url("projects_project_sanity_report", e.world.project.pk)

    page = client.get(url)

    assert page.status_code == 200
    text = page.content.decode()
    assert "4 of the 7 current annotations break at least one rule (sanity pass rate 0.429)." in text
    assert "At most 1 items" in text and "“One box per image.”" in text
    assert f'href="{admin_url("tasks_annotation_change", e.silent.pk)}"' in text

    response = client.get(url + "?format=csv")

    assert response["Content-Type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert sorted((line["rule"], int(line["annotation"])) for line in lines) == sorted([
        ("schema", e.person.pk), (str(e.min_rule.pk), e.empty.pk), (str(e.max_rule.pk), e.silent.pk),
        (str(e.max_rule.pk), e.fixed.pk), (str(e.note_rule.pk), e.silent.pk)])
    assert {line["annotator"] for line in lines} == {"bounding_boxes-a0", "bounding_boxes-a1"}


def test_csv_cells_a_person_typed_cannot_run_as_formulas():
    world = World("classification")
    world.submit({"label": "dog"})
    world.rule("label_forbidden", label="dog", message="=HYPERLINK(\"http://evil\")")
    text = "".join(sanity.sanity_report_csv(world.project))
    line = list(csv.DictReader(io.StringIO(text)))[0]
    assert line["message"].startswith("'=") and line["detail"].startswith("'=")


def test_the_management_command_writes_the_report_as_csv_and_json():
    e = Existing()
    out = io.StringIO()
    call_command("sanity_report", e.world.project.slug, "--format", "json", stdout=out)
    report = json.loads(out.getvalue())
    assert (report["current"], report["breaking"]) == (7, 4)
    assert [(r["rule"], r["offending"], len(r["annotations"])) for r in report["rules"]] == [
        ("schema", 1, 1), (str(e.min_rule.pk), 1, 1), (str(e.max_rule.pk), 2, 2), (str(e.note_rule.pk), 1, 1)]
    assert report["rules"][2]["annotations"][0] == {
        "annotation": e.silent.pk, "task": e.silent.task_id, "annotator": "bounding_boxes-a1", "version": 1,
        "detail": "One box per image."}

    out = io.StringIO()
    call_command("sanity_report", str(e.world.project.pk), stdout=out)
    lines = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(lines) == 5 and lines[0]["rule"] == "schema"


def test_the_management_command_names_an_unknown_project():
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="No project “nope”"):
        call_command("sanity_report", "nope", stdout=io.StringIO())


# --- the engine's sanity pass rate and a gate on it -----------------------------------------------------------------

def test_the_engine_s_sanity_pass_rate_counts_the_active_rules():
    e = Existing()
    quality_services.quality_recompute_full(project_id=e.world.project.pk)
    quality = engine.snapshot_latest(e.world.project, engine.QUALITY).values
    # the same 7 current annotations and the same 4 offenders as the report
    assert quality["figures"]["sanity_pass_rate"] == {"value": pytest.approx(3 / 7), "n": 7}
    batch = engine.snapshot_latest(e.world.project, engine.QUALITY, scope="batch", batch_id=e.world.batch.pk)
    assert batch.values["figures"]["sanity_pass_rate"]["value"] == pytest.approx(3 / 7)

    SanityRule.objects.filter(pk__in=[e.max_rule.pk, e.note_rule.pk]).update(is_active=False)
    computed = engine.project_quality_compute(e.world.project)
    assert computed["quality"]["figures"]["sanity_pass_rate"] == {"value": pytest.approx(5 / 7), "n": 7}


SUBMISSION = st.tuples(st.integers(0, 4), st.integers(0, 2), st.sampled_from(["cat", "dog", "other"]),
                       st.sampled_from(["", "  ", "why"]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(before=st.lists(SUBMISSION, max_size=10), after=st.lists(SUBMISSION, min_size=1, max_size=10),
       margin=st.sampled_from([0, 3600]))
def test_the_incremental_sanity_pass_rate_under_rules_equals_a_full_recompute(before, after, margin):
    # given a classification project whose rules came after some of its work (annotations written as they were
    # stored before the rules: "dog" is now forbidden, "other" needs a note), and a full pass
    world = World("classification", review_mode="none", overlap=3, n=5, slug="incremental")
    world.rule("label_forbidden", label="dog")
    world.rule("label_needs_note", label="other")
    people = [*world.annotators, factories.member(world.project, Membership.Role.ANNOTATOR)]
    assignments = {}

    def write(task_index, person_index, label, notes):
        task, person = world.tasks[task_index], people[person_index]
        assignment = assignments.get((task_index, person_index))
        if assignment is None:
            assignment = assignments[task_index, person_index] = services.assignment_assign(task=task,
                                                                                           annotator=person)
        versions = Annotation.objects.filter(assignment=assignment)
        versions.update(is_current=False, status="superseded")
        Annotation.objects.create(task=task, assignment=assignment, annotator=person, author=person,
                                  version=versions.count() + 1, result={"label": label}, notes=notes)
        return task.pk

    for submission in before:
        write(*submission)
    with override_settings(QUALITY_COMMIT_MARGIN_SECONDS=margin):
        engine.project_quality_recompute(world.project.pk)
        # when later work updates its tasks one by one
        for submission in after:
            engine.task_quality_update(write(*submission))
        quality = engine.snapshot_latest(world.project, engine.QUALITY).values
        batch = engine.snapshot_latest(world.project, engine.QUALITY, scope="batch", batch_id=world.batch.pk).values
        full = engine.project_quality_compute(world.project)
    # then the sanity pass rate is the full recompute's, which counts the rules
    assert quality["figures"]["sanity_pass_rate"] == full["quality"]["figures"]["sanity_pass_rate"]
    assert batch["figures"]["sanity_pass_rate"] == full["batches"][world.batch.pk]["figures"]["sanity_pass_rate"]
    current = {}
    for task_index, person_index, label, notes in [*before, *after]:
        current[task_index, person_index] = label == "cat" or (label == "other" and notes.strip() != "")
    sane = sum(current.values())
    assert full["quality"]["figures"]["sanity_pass_rate"] == {
        "value": pytest.approx(sane / len(current)) if current else None, "n": len(current)}


def test_the_rules_of_some_tasks_are_found_as_for_the_whole_project():
    e = Existing()
    everything = sanity.annotations_breaking_rules(e.world.project)
    some = sanity.annotations_breaking_rules(e.world.project, task_ids=[e.silent.task_id, e.one_car.task_id])
    assert everything.tolist() == sorted([e.empty.pk, e.silent.pk, e.fixed.pk, e.reworked.pk])
    assert some.tolist() == [e.silent.pk]


def test_a_gate_on_the_sanity_pass_rate_breaches_with_one_alert_when_a_rule_comes_in(
        django_capture_on_commit_callbacks):
    world = World("classification", review_mode="none", n=10)
    for i in range(10):
        world.submit({"label": "other" if i < 3 else "cat"}, annotator=world.annotators[i % 2])
    gate = project_services.gate_create(project=world.project, actor=None, metric="sanity_pass_rate",
                                        comparator="gte", threshold=0.9, min_samples=10)

    def evaluate():
        with mock.patch("apps.quality.tasks.webhook_deliver.delay"), django_capture_on_commit_callbacks(
                execute=True):
            quality_services.quality_recompute_full(project_id=world.project.pk)
        gate.refresh_from_db()
        return gate.state, gate.last_value, gate.last_n

    assert evaluate() == ("passing", 1.0, 10)
    # the manager asks for a note with "other": 3 of 10 current annotations have none
    rule = world.rule("label_needs_note", label="other")
    assert evaluate() == ("breached", pytest.approx(0.7), 10)
    alert = Alert.objects.get(gate=gate)
    assert (alert.kind, alert.state) == ("gate_breach", "open")
    assert "Sanity pass rate is 0.700" in alert.message
    assert evaluate()[0] == "breached" and Alert.objects.filter(gate=gate).count() == 1  # no alert storm
    # the rule is switched off again: passing, and the alert resolves itself
    rule.is_active = False
    rule.save()
    assert evaluate() == ("passing", 1.0, 10)
    alert.refresh_from_db()
    assert alert.state == "resolved" and Alert.objects.filter(gate=gate).count() == 1
