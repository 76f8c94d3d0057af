"""The Django admin as an admin (and a staff manager) uses it: pages, imports, batch actions, members, history."""

import datetime

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.forms import CheckboxInput
from django.test.utils import CaptureQueriesContext
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from apps.annotators.models import AnnotatorProfile, Team
from apps.projects import services as project_services
from apps.projects.forms import LABEL_SCHEMA_EXAMPLES
from apps.projects.label_schema import label_schema_validate
from apps.projects.models import Batch, Guideline, Membership, Project, QualityGate
from apps.quality.alerts import alert_text
from apps.quality.models import (DEFAULT_ERROR_TYPES, Alert, ErrorType, MetricSnapshot, SanityRule, Webhook,
                                 WebhookDelivery)
from apps.tasks import services as task_services
from apps.tasks.models import Clarification, Task, TaskEvent
from tests import factories


def url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def page_messages(response):
    return [str(m) for m in response.context["messages"]] if response.context else []


@pytest.fixture
def world(team):
    """The team's project with one object of every model the admin shows."""
    annotator, other = team.annotators[0], team.annotators[1]
    assignment = task_services.assignment_assign(task=team.task, annotator=annotator)
    annotation = task_services.assignment_submit(assignment=assignment, actor=annotator, result={"label": "cat"})
    task_services.review_start(annotation=annotation, reviewer=team.reviewer)
    task_services.clarification_ask(task=team.task, actor=other, question="Is a lynx a cat?")
    AnnotatorProfile.objects.create(user=annotator, skills={"ner": 3}, languages=["en"])
    gate = project_services.gate_create(project=team.project, actor=None, metric="agreement", comparator="gte",
                                        threshold=0.7, min_samples=10)
    MetricSnapshot.objects.create(project=team.project, scope="project", kind="progress", values={"total": 1},
                                  computed_at=timezone.now())
    Alert.objects.create(kind="gate_breach", project=team.project, gate=gate, message="Agreement below 0.7")
    webhook = Webhook.objects.create(project=team.project, url="https://hooks.example.org/lp", secret="s3cret",
                                     events=["task.accepted"])
    WebhookDelivery.objects.create(webhook=webhook, event="task.accepted", payload={"event": "task.accepted"})
    Group.objects.create(name="Managers")
    Team.objects.create(name="Morning shift").members.set([annotator, other])
    SanityRule.objects.create(project=team.project, kind="label_needs_note", label="cat")
    return team


# --- every page loads ----------------------------------------------------------------------------------------


def test_every_admin_changelist_add_and_change_page_loads_for_a_superuser(world, client):
    client.force_login(world.admin)
    for model, model_admin in admin.site._registry.items():
        obj = model._default_manager.order_by("pk").first()
        ours = model.__module__.startswith("apps.")
        assert obj is not None or not ours, f"the test world has no {model.__name__}"

        assert client.get(url(model, "changelist")).status_code == 200, model
        if obj is not None:
            assert client.get(url(model, "change", obj.pk)).status_code == 200, model
        add = client.get(url(model, "add"))
        assert add.status_code == (200 if model_admin.has_add_permission(add.wsgi_request) else 403), model


def test_history_pages_load_and_history_cannot_be_reverted(world, client):
    client.force_login(world.admin)
    batch = world.batch
    for model, model_admin in admin.site._registry.items():
        if not hasattr(model, "history"):
            continue
        obj = model._default_manager.order_by("pk").first()
        response = client.get(url(model, "history", obj.pk))
        assert response.status_code == 200, model
        record = obj.history.order_by("history_id").first()
        if record is not None:
            version = client.get(url(model, "simple_history", obj.pk, record.history_id))
            assert version.status_code == 200, model
            assert b'name="_save"' not in version.content, model  # no Revert button

    record = batch.history.order_by("history_id").first()
    response = client.post(url(Batch, "simple_history", batch.pk, record.history_id),
                           {"name": "rewritten", "priority": 99})
    assert response.status_code == 403
    batch.refresh_from_db()
    assert batch.name != "rewritten" and batch.priority == 0


# --- project, label schema, guidelines, members --------------------------------------------------------------


def _form_data(response):
    """The POST a browser would send for the change form in `response`, inlines included."""
    data = {}

    def add_form(form):
        for name, field in form.fields.items():
            value = form[name].value()
            key = form[name].html_name
            if isinstance(field.widget, CheckboxInput):
                if value:
                    data[key] = "on"
            elif value is None:
                data[key] = ""
            elif isinstance(value, (list, tuple)):
                data[key] = [str(v) for v in value]
            else:
                data[key] = str(value)

    add_form(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        add_form(formset.management_form)
        for form in formset.initial_forms:
            add_form(form)
    return data


def _inline_prefix(response, model):
    for inline in response.context["inline_admin_formsets"]:
        if inline.formset.model is model:
            return inline.formset.prefix
    raise AssertionError(f"no inline for {model.__name__}")


def _inline_add(data, prefix, **fields):
    n = int(data[f"{prefix}-TOTAL_FORMS"])
    for name, value in fields.items():
        data[f"{prefix}-{n}-{name}"] = value
    data[f"{prefix}-TOTAL_FORMS"] = str(n + 1)


def test_adding_a_member_in_the_project_inline_grants_the_object_permission(team, client):
    newcomer = factories.UserFactory(username="newcomer")
    client.force_login(team.admin)
    page = client.get(url(Project, "change", team.project.pk))
    data = _form_data(page)
    _inline_add(data, _inline_prefix(page, Membership), user=str(newcomer.pk), role="annotator")

    response = client.post(url(Project, "change", team.project.pk), data)

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    assert Membership.objects.filter(project=team.project, user=newcomer, role="annotator").exists()
    newcomer = type(newcomer).objects.get(pk=newcomer.pk)  # fresh permission cache
    assert newcomer.has_perm("projects.annotate_project", team.project)
    assert newcomer.has_perm("projects.view_project", team.project)


def test_deleting_a_member_in_the_project_inline_takes_the_permission_away(team, client):
    leaver = team.annotators[2]
    client.force_login(team.admin)
    page = client.get(url(Project, "change", team.project.pk))
    data = _form_data(page)
    prefix = _inline_prefix(page, Membership)
    membership = Membership.objects.get(project=team.project, user=leaver)
    index = next(i for i in range(int(data[f"{prefix}-TOTAL_FORMS"]))
                 if data.get(f"{prefix}-{i}-id") == str(membership.pk))
    data[f"{prefix}-{index}-DELETE"] = "on"

    response = client.post(url(Project, "change", team.project.pk), data)

    assert response.status_code == 302
    assert not Membership.objects.filter(project=team.project, user=leaver).exists()
    leaver = type(leaver).objects.get(pk=leaver.pk)
    assert not leaver.has_perm("projects.annotate_project", team.project)
    assert not leaver.has_perm("projects.view_project", team.project)


def test_a_new_guideline_version_is_appended_and_becomes_current(team, client):
    client.force_login(team.admin)
    before = team.project.guidelines.count()
    page = client.get(url(Project, "change", team.project.pk))
    data = _form_data(page)
    _inline_add(data, _inline_prefix(page, Guideline), text="Label lynxes as cats.")

    response = client.post(url(Project, "change", team.project.pk), data)

    assert response.status_code == 302
    team.project.refresh_from_db()
    assert team.project.guidelines.count() == before + 1
    assert team.project.current_guideline.text == "Label lynxes as cats."
    assert team.project.current_guideline.version == before + 1
    assert team.project.current_guideline.created_by == team.admin


def _project_add_data(**overrides):
    data = {"name": "Birds", "slug": "birds", "description": "", "task_type": "classification",
            "label_schema": '{"labels": ["sparrow", "robin"]}', "overlap": "1", "gold_rate": "0",
            "review_mode": "all", "review_sample_rate": "0.2", "sampling": "sequential", "lease_minutes": "30"}
    for prefix in ("guidelines", "batches", "gates", "memberships"):
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    data.update(overrides)
    return data


def test_creating_a_project_in_the_admin_creates_the_default_error_types(admin_user, client):
    client.force_login(admin_user)

    response = client.post(url(Project, "add"), _project_add_data(**{
        "guidelines-TOTAL_FORMS": "1", "guidelines-0-text": "Look at the beak."}))

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    project = Project.objects.get(slug="birds")
    assert sorted(project.error_types.values_list("code", flat=True)) == sorted(c for c, _n in DEFAULT_ERROR_TYPES)
    assert project.created_by == admin_user
    assert project.current_guideline.text == "Look at the beak."
    assert project.label_schema["labels"][0] == {"value": "sparrow", "name": "sparrow", "hotkey": "1",
                                                 "color": "#e6194b"}


def test_a_bad_label_schema_is_refused_with_readable_messages(admin_user, client):
    client.force_login(admin_user)

    response = client.post(url(Project, "add"), _project_add_data(
        label_schema='{"labels": [{"value": "cat", "hotkey": "1"}, {"value": "cat", "color": "red"}]}'))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["label_schema"]
    assert "Label 2: the value 'cat' is used twice." in errors
    assert "Label 2: 'color' must look like #1f77b4." in errors
    content = response.content.decode()
    assert "used twice" in content
    assert "min_labels" in content  # the help text shows an example per task type
    assert not Project.objects.filter(slug="birds").exists()


def test_invalid_json_in_the_label_schema_gets_one_clear_message(admin_user, client):
    client.force_login(admin_user)

    response = client.post(url(Project, "add"), _project_add_data(label_schema='{"labels": [cat, dog]}'))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["label_schema"]
    assert len(errors) == 1 and "not valid JSON" in errors[0]
    assert not Project.objects.exists()


def test_the_label_schema_examples_in_the_help_text_are_valid():
    for task_type, example in LABEL_SCHEMA_EXAMPLES.items():
        label_schema_validate(task_type, example)


def test_the_task_type_is_locked_once_the_project_has_tasks(team, client):
    client.force_login(team.admin)
    response = client.get(url(Project, "change", team.project.pk))
    assert "task_type" not in response.context["adminform"].form.fields


# --- task import ------------------------------------------------------------------------------------------------


def _upload(name, text):
    return SimpleUploadedFile(name, text.encode(), content_type="application/octet-stream")


def test_the_project_page_links_to_the_import(team, client):
    client.force_login(team.admin)
    response = client.get(url(Project, "change", team.project.pk))
    assert url(Project, "import", team.project.pk) in response.content.decode()


def test_importing_a_good_jsonl_file_creates_the_tasks(team, client):
    client.force_login(team.admin)
    Task.objects.filter(pk=team.task.pk).update(external_id="known")
    lines = ['{"data": {"text": "a lynx"}, "external_id": "t1"}', '{"data": {"text": "a robin"}, "external_id": "t2"}',
             '{"data": {"text": "again"}, "external_id": "known"}']

    response = client.post(url(Project, "import", team.project.pk),
                           {"file": _upload("tasks.jsonl", "\n".join(lines)), "default_batch_name": "Spring"},
                           follow=True)

    assert response.status_code == 200
    assert "Imported 2 tasks, skipped 1 duplicates into batch Spring" in page_messages(response)[0]
    batch = Batch.objects.get(project=team.project, name="Spring")
    assert sorted(batch.tasks.values_list("external_id", flat=True)) == ["t1", "t2"]


def test_a_file_with_one_bad_row_imports_nothing_and_names_the_row(team, client):
    client.force_login(team.admin)
    tasks_before, batches_before = Task.objects.count(), Batch.objects.count()
    lines = ['{"data": {"text": "fine"}}', '{"data": {"text": "fine too"}}', '{"data": {"colour": "red"}}']

    response = client.post(url(Project, "import", team.project.pk), {"file": _upload("tasks.jsonl", "\n".join(lines))})

    assert response.status_code == 200
    assert dict(response.context["row_errors"]) == {"Row 3": ["'data' needs 'text' or 'image'."]}
    content = response.content.decode()
    assert "Row 3" in content and "needs &#x27;text&#x27; or &#x27;image&#x27;" in content
    assert any("Nothing was imported" in m for m in page_messages(response))
    assert (Task.objects.count(), Batch.objects.count()) == (tasks_before, batches_before)


def test_a_csv_file_is_imported(team, client):
    client.force_login(team.admin)
    response = client.post(url(Project, "import", team.project.pk),
                           {"file": _upload("tasks.csv", "external_id,text\nc1,a cat\nc2,a dog\n")}, follow=True)
    assert "Imported 2 tasks" in page_messages(response)[0]
    assert Task.objects.filter(project=team.project, external_id__in=["c1", "c2"]).count() == 2


def test_a_large_upload_streamed_from_a_temporary_file_is_imported(team, client, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # Django writes the upload to disk, as it does for big files
    client.force_login(team.admin)
    rows = ",".join(f'{{"data": {{"text": "item {n}"}}, "external_id": "big-{n}"}}' for n in range(50))

    response = client.post(url(Project, "import", team.project.pk), {"file": _upload("tasks.json", f"[{rows}]")},
                           follow=True)

    assert "Imported 50 tasks, skipped 0 duplicates" in page_messages(response)[0]
    assert Task.objects.filter(project=team.project, external_id__startswith="big-").count() == 50


def test_an_oversized_file_is_refused_with_its_message(team, client, settings):
    settings.IMPORT_MAX_BYTES = 10
    client.force_login(team.admin)
    tasks_before = Task.objects.count()

    response = client.post(url(Project, "import", team.project.pk),
                           {"file": _upload("tasks.json", '[{"data": {"text": "a long enough text"}}]')})

    assert response.status_code == 200
    assert any("the limit is" in m for m in page_messages(response))
    assert Task.objects.count() == tasks_before


def test_a_file_of_another_type_is_refused(team, client):
    client.force_login(team.admin)
    response = client.post(url(Project, "import", team.project.pk), {"file": _upload("tasks.xlsx", "x")})
    assert response.status_code == 200
    assert "Upload a .json" in response.context["form"].errors["file"][0]


# --- batch actions ------------------------------------------------------------------------------------------------


def _act(client, action, batches, **extra):
    return client.post(url(Batch, "changelist"), {"action": action, "_selected_action": [b.pk for b in batches],
                                                  **extra}, follow=True)


def _batch_in_review(project, name="Finished"):
    batch = Batch.objects.create(project=project, name=name)
    project_services.batch_activate(batch=batch, actor=None)
    project_services.batch_review(batch=batch, actor=None)
    batch.refresh_from_db()
    return batch


def test_activate_action_releases_a_draft_batch(team, client):
    client.force_login(team.admin)
    draft = factories.batch(team.project, name="Draft", active=False)
    factories.tasks(draft, 2)

    response = _act(client, "activate_batches", [draft])

    draft.refresh_from_db()
    assert draft.status == Batch.Status.ACTIVE
    assert set(draft.tasks.values_list("status", flat=True)) == {Task.Status.OPEN}
    assert "1 batch moved to Active." in page_messages(response)


def test_an_illegal_transition_shows_the_error_and_changes_nothing(team, client):
    client.force_login(team.admin)
    response = _act(client, "deliver_batches", [team.batch])
    team.batch.refresh_from_db()
    assert team.batch.status == Batch.Status.ACTIVE
    assert any("cannot move to delivered" in m for m in page_messages(response))


def test_complete_is_refused_while_a_gate_is_breached(team, client):
    client.force_login(team.admin)
    batch = _batch_in_review(team.project)
    QualityGate.objects.create(project=team.project, metric="agreement", threshold=0.8, state="breached")

    response = _act(client, "complete_batches", [batch])

    batch.refresh_from_db()
    assert batch.status == Batch.Status.IN_REVIEW
    assert any("quality gate(s) breached" in m for m in page_messages(response))
    assert not TaskEvent.objects.filter(batch=batch, type=TaskEvent.Type.BATCH_COMPLETED).exists()


def test_override_asks_for_a_reason_and_then_completes(team, client):
    client.force_login(team.admin)
    batch = _batch_in_review(team.project)
    QualityGate.objects.create(project=team.project, metric="agreement", threshold=0.8, state="breached")

    asked = _act(client, "override_batches", [batch])
    assert asked.status_code == 200 and "reason" in asked.context["form"].fields
    assert batch.name in asked.content.decode()

    empty = _act(client, "override_batches", [batch], apply="1", reason="  ")
    assert empty.context["form"].errors["reason"]
    batch.refresh_from_db()
    assert batch.status == Batch.Status.IN_REVIEW

    done = _act(client, "override_batches", [batch], apply="1", reason="Customer accepted the agreement level.")
    batch.refresh_from_db()
    assert batch.status == Batch.Status.COMPLETED
    assert batch.override_reason == "Customer accepted the agreement level."
    assert batch.overridden_by == team.admin
    assert "1 batch completed by override." in page_messages(done)


def test_batch_and_project_lists_show_progress_without_a_query_per_row(team, client):
    client.force_login(team.admin)
    Task.objects.filter(pk=team.task.pk).update(status=Task.Status.ACCEPTED)
    factories.tasks(team.batch, 3)

    def queries(model):
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url(model, "changelist"))
        assert response.status_code == 200
        return len(captured), response.content.decode()

    batch_queries, content = queries(Batch)
    assert "1 / 4 (25%)" in content
    project_queries, content = queries(Project)
    assert "1 / 4 (25%)" in content

    for n in range(5):
        extra = project_services.project_create(actor=team.admin, name=f"Extra {n}", slug=f"extra-{n}",
                                                task_type="classification",
                                                label_schema=factories.CLASSIFICATION_SCHEMA)
        factories.tasks(factories.batch(extra), 2)
    assert queries(Batch)[0] == batch_queries
    assert queries(Project)[0] == project_queries


# --- tasks, events and the rest ------------------------------------------------------------------------------------


def test_the_task_page_shows_its_event_trail_and_annotations_read_only(world, client):
    client.force_login(world.admin)
    response = client.get(url(Task, "change", world.task.pk))
    content = response.content.decode()
    assert response.status_code == 200
    assert "Submitted" in content and "Assigned" in content  # event types in the trail
    assert "&quot;label&quot;: &quot;cat&quot;" in content or '"label": "cat"' in content
    form = response.context["adminform"].form
    assert "status" not in form.fields and "final_result" not in form.fields


def test_editing_a_task_checks_the_gold_answer_against_the_schema(team, client):
    client.force_login(team.admin)
    page = client.get(url(Task, "change", team.task.pk))
    data = _form_data(page)
    data.update(is_gold="on", gold_answer='{"label": "zebra"}')

    response = client.post(url(Task, "change", team.task.pk), data)

    assert response.status_code == 200
    assert "Label 'zebra' is not in the schema." in response.context["adminform"].form.errors["gold_answer"]
    team.task.refresh_from_db()
    assert not team.task.is_gold

    data.update(gold_answer='{"label": "dog"}', priority="5")
    assert client.post(url(Task, "change", team.task.pk), data).status_code == 302
    team.task.refresh_from_db()
    assert (team.task.is_gold, team.task.gold_answer, team.task.priority) == (True, {"label": "dog"}, 5)


def test_task_event_admin_refuses_add_change_and_delete(world, client):
    client.force_login(world.admin)
    event = TaskEvent.objects.filter(task=world.task).first()

    view = client.get(url(TaskEvent, "change", event.pk))
    assert view.status_code == 200
    assert b'name="_save"' not in view.content and b"deletelink" not in view.content
    assert client.post(url(TaskEvent, "change", event.pk), {"type": "accepted"}).status_code == 403
    assert client.post(url(TaskEvent, "delete", event.pk), {"post": "yes"}).status_code == 403
    assert client.get(url(TaskEvent, "add")).status_code == 403
    assert TaskEvent.objects.get(pk=event.pk).type == event.type


def test_annotations_and_reviews_are_read_only(world, client):
    client.force_login(world.admin)
    from apps.quality.models import Review
    from apps.tasks.models import Annotation

    for model in (Annotation, Review):
        obj = model.objects.first()
        response = client.get(url(model, "change", obj.pk))
        assert response.status_code == 200 and b'name="_save"' not in response.content
        assert client.post(url(model, "change", obj.pk), {}).status_code == 403


def test_a_manager_answers_a_clarification_in_the_admin(world, client):
    client.force_login(world.admin)
    clarification = Clarification.objects.get()

    response = client.post(url(Clarification, "change", clarification.pk), {"answer": "Yes, a lynx is a cat."})

    assert response.status_code == 302
    clarification.refresh_from_db()
    assert clarification.status == Clarification.Status.ANSWERED
    assert clarification.answered_by == world.admin
    assert TaskEvent.objects.filter(type=TaskEvent.Type.CLARIFICATION_ANSWERED, task=world.task).exists()
    page = client.get(url(Clarification, "change", clarification.pk))
    assert "answer" not in page.context["adminform"].form.fields  # answered: read-only now


def test_acknowledging_alerts(world, client):
    client.force_login(world.admin)
    alert = Alert.objects.get()

    response = client.post(url(Alert, "changelist"), {"action": "acknowledge_alerts", "_selected_action": [alert.pk]},
                           follow=True)

    alert.refresh_from_db()
    assert alert.state == Alert.State.ACKNOWLEDGED and alert.acknowledged_by == world.admin
    assert alert.acknowledged_at is not None
    assert "1 alert acknowledged." in page_messages(response)
    assert alert.history.latest().history_user == world.admin


def test_resolving_alerts_records_who_and_skips_the_resolved(world, client):
    client.force_login(world.admin)
    alert = Alert.objects.get()

    response = client.post(url(Alert, "changelist"), {"action": "resolve_alerts", "_selected_action": [alert.pk]},
                           follow=True)

    alert.refresh_from_db()
    assert alert.state == Alert.State.RESOLVED and alert.resolved_by == world.admin and alert.resolved_at
    assert "1 alert resolved." in page_messages(response)
    assert alert.history.latest().history_user == world.admin
    # again: nothing left to resolve, and nothing changes
    response = client.post(url(Alert, "changelist"), {"action": "resolve_alerts", "_selected_action": [alert.pk]},
                           follow=True)
    assert "No open or acknowledged alert was selected." in page_messages(response)
    assert alert.history.count() == 2


def test_the_alert_list_shows_the_text_in_the_readers_words(world, client):
    client.force_login(world.admin)
    alert = Alert.objects.get()
    alert.details = {"day": "2026-11-27", "submitted": 3, "trailing_mean": 12.0, "ratio": 0.25}
    alert.kind = Alert.Kind.THROUGHPUT_DIP
    alert.save()

    page = client.get(url(Alert, "changelist")).content.decode()

    assert escape(alert_text(alert)) in page


def test_webhook_secret_is_never_shown_and_kept_when_left_empty(world, client):
    client.force_login(world.admin)
    webhook = Webhook.objects.get()
    page = client.get(url(Webhook, "change", webhook.pk))
    assert b"s3cret" not in page.content

    data = {"project": world.project.pk, "url": "https://hooks.example.org/new", "events": ["alert.raised"],
            "secret": "", "is_active": "on"}
    assert client.post(url(Webhook, "change", webhook.pk), data).status_code == 302
    webhook.refresh_from_db()
    assert (webhook.url, webhook.events, webhook.secret) == ("https://hooks.example.org/new", ["alert.raised"],
                                                             "s3cret")
    record = webhook.history.order_by("history_id").first()
    version = client.get(url(Webhook, "simple_history", webhook.pk, record.history_id))
    assert version.status_code == 200 and b"s3cret" not in version.content


# --- staff managers see their own projects only ---------------------------------------------------------------------


def _staff_manager(team):
    user = team.manager
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    codenames = ["view_project", "change_project", "view_batch", "change_batch", "view_task", "view_taskevent",
                 "view_historicalproject"]
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def test_a_staff_manager_sees_only_the_projects_they_manage(team, client):
    client.force_login(_staff_manager(team))
    other_batch = factories.batch(team.other_project, name="Elsewhere")
    other_task = factories.tasks(other_batch, 1)[0]

    projects = client.get(url(Project, "changelist"))
    assert list(projects.context["cl"].result_list) == [team.project]
    batches = client.get(url(Batch, "changelist"))
    assert other_batch not in batches.context["cl"].result_list and team.batch in batches.context["cl"].result_list
    tasks = client.get(url(Task, "changelist"))
    assert list(tasks.context["cl"].result_list) == [team.task]

    assert client.get(url(Project, "change", team.project.pk)).status_code == 200
    assert client.get(url(Project, "change", team.other_project.pk)).status_code == 302  # "does not exist"
    assert client.get(url(Task, "change", other_task.pk)).status_code == 302
    assert client.get(url(Project, "history", team.other_project.pk)).status_code == 404
    record = team.other_project.history.first()
    assert client.get(url(Project, "simple_history", team.other_project.pk, record.history_id)).status_code == 404
    assert client.get(url(Project, "import", team.other_project.pk)).status_code == 302


def test_a_staff_manager_cannot_act_on_another_projects_batch(team, client):
    client.force_login(_staff_manager(team))
    other_batch = factories.batch(team.other_project, name="Elsewhere", active=False)

    _act(client, "activate_batches", [other_batch])

    other_batch.refresh_from_db()
    assert other_batch.status == Batch.Status.DRAFT


def test_the_due_date_of_a_batch_can_be_edited(team, client):
    client.force_login(team.admin)
    response = client.post(url(Batch, "change", team.batch.pk),
                           {"name": team.batch.name, "priority": "3", "due_date": "2030-01-31"})
    assert response.status_code == 302
    team.batch.refresh_from_db()
    assert (team.batch.priority, team.batch.due_date) == (3, datetime.date(2030, 1, 31))
    assert team.batch.status == Batch.Status.ACTIVE


def test_error_types_are_retired_not_deleted(team, client):
    client.force_login(team.admin)
    error_type = ErrorType.objects.filter(project=team.project).first()
    assert client.post(url(ErrorType, "delete", error_type.pk), {"post": "yes"}).status_code == 403
    assert ErrorType.objects.filter(pk=error_type.pk).exists()


def test_the_object_permissions_page_of_a_project_lists_its_members(team, client):
    client.force_login(team.admin)
    response = client.get(url(Project, "permissions", team.project.pk))
    assert response.status_code == 200
    assert "annotator0" in response.content.decode()


def test_cancel_action_takes_tasks_out_of_the_work(team, client):
    client.force_login(team.admin)
    response = client.post(url(Task, "changelist"), {"action": "cancel_tasks", "_selected_action": [team.task.pk]},
                           follow=True)
    team.task.refresh_from_db()
    assert team.task.status == Task.Status.CANCELLED
    assert "1 task cancelled." in page_messages(response)
    assert TaskEvent.objects.filter(task=team.task, type=TaskEvent.Type.CANCELLED, actor=team.admin).exists()


def test_the_task_list_runs_a_fixed_number_of_queries(team, client):
    client.force_login(team.admin)

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url(Task, "changelist"), {"project": team.project.pk}).status_code == 200
        return len(captured)

    before = queries()
    factories.tasks(factories.batch(team.project, name="More"), 20)
    assert queries() == before


def test_a_staff_user_who_creates_a_project_manages_it(team, client):
    staff = _staff_manager(team)
    staff.user_permissions.add(Permission.objects.get(codename="add_project"))
    client.force_login(staff)
    data = _project_add_data(**{"memberships-TOTAL_FORMS": "1", "memberships-0-user": str(staff.pk),
                                "memberships-0-role": "manager"})

    response = client.post(url(Project, "add"), data)

    assert response.status_code == 302
    project = Project.objects.get(slug="birds")
    assert list(project.memberships.values_list("user__username", "role")) == [("manager", "manager")]
    staff = type(staff).objects.get(pk=staff.pk)
    assert staff.has_perm("projects.manage_project", project)
    assert client.get(url(Project, "change", project.pk)).status_code == 200


# --- the error typology, edited in the admin -----------------------------------------------------------------


def _waiting_annotation(team, annotator_index=0, task=None):
    task = task or factories.tasks(team.batch, 1)[0]
    assignment = task_services.assignment_assign(task=task, annotator=team.annotators[annotator_index])
    return task_services.assignment_submit(assignment=assignment, actor=team.annotators[annotator_index],
                                           result={"label": "cat"})


def test_an_admin_adds_an_error_type_that_reviewers_can_then_use(team, client):
    # given the add page of the error types
    client.force_login(team.admin)
    assert client.get(url(ErrorType, "add")).status_code == 200

    # when the admin adds "Blurry image" to the project
    response = client.post(url(ErrorType, "add"), {"project": team.project.pk, "code": "blurry",
                                                    "name": "Blurry image", "description": "Cannot be read",
                                                    "is_active": "on"})

    # then it is in the project's taxonomy, active, with a history row naming the admin
    assert response.status_code == 302, page_messages(response) or response.context["adminform"].form.errors
    blurry = ErrorType.objects.get(project=team.project, code="blurry")
    assert (blurry.name, blurry.description, blurry.is_active) == ("Blurry image", "Cannot be read", True)
    assert blurry.history.get().history_user == team.admin
    # and a reviewer rejects with it
    review = task_services.review_reject(annotation=_waiting_annotation(team), reviewer=team.reviewer,
                                         error_types=["blurry"], comment="Too blurry to tell")
    assert list(review.error_types.values_list("code", flat=True)) == ["blurry"]


def test_a_second_error_type_with_a_code_the_project_has_is_refused(team, client):
    client.force_login(team.admin)
    before = ErrorType.objects.count()

    response = client.post(url(ErrorType, "add"), {"project": team.project.pk, "code": "wrong_label",
                                                    "name": "Another wrong label", "is_active": "on"})

    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors
    assert ErrorType.objects.count() == before


def test_renaming_an_error_type_keeps_its_code_and_the_reviews_that_used_it(team, client):
    # given a rejection that used "Wrong label"
    wrong = ErrorType.objects.get(project=team.project, code="wrong_label")
    review = task_services.review_reject(annotation=_waiting_annotation(team), reviewer=team.reviewer,
                                         error_types=["wrong_label"], comment="A dog")
    client.force_login(team.admin)
    page = client.get(url(ErrorType, "change", wrong.pk))
    assert page.status_code == 200
    assert "code" not in page.context["adminform"].form.fields  # the code is fixed once created

    # when the admin renames it (a code posted anyway is ignored)
    data = _form_data(page) | {"name": "Wrong class", "code": "hacked"}
    response = client.post(url(ErrorType, "change", wrong.pk), data)

    # then the name changed, the code did not, and the past review points at the renamed type
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    wrong.refresh_from_db()
    assert (wrong.code, wrong.name, wrong.is_active) == ("wrong_label", "Wrong class", True)
    assert [e.name for e in review.error_types.all()] == ["Wrong class"]
    assert [h.name for h in wrong.history.order_by("history_id")] == ["Wrong label", "Wrong class"]
    assert wrong.history.order_by("history_id").last().history_user == team.admin


def test_retiring_an_error_type_refuses_it_in_new_reviews_and_keeps_it_in_old_ones(team, client):
    # given a rejection that used "Boundary"
    boundary = ErrorType.objects.get(project=team.project, code="boundary")
    old = task_services.review_reject(annotation=_waiting_annotation(team), reviewer=team.reviewer,
                                      error_types=["boundary"], comment="Too loose")
    client.force_login(team.admin)

    # when the admin turns 'active' off
    data = _form_data(client.get(url(ErrorType, "change", boundary.pk)))
    data.pop("is_active", None)
    response = client.post(url(ErrorType, "change", boundary.pk), data)

    # then it is retired, not deleted, and listed as inactive
    assert response.status_code == 302
    boundary.refresh_from_db()
    assert boundary.is_active is False
    listed = client.get(url(ErrorType, "changelist") + f"?is_active__exact=0&project={team.project.pk}")
    assert listed.status_code == 200 and "Boundary" in listed.content.decode()
    # a new rejection naming it is refused, and the old review still names it
    from apps.core.errors import ValidationError

    annotation = _waiting_annotation(team, annotator_index=1)
    with pytest.raises(ValidationError, match="boundary"):
        task_services.review_reject(annotation=annotation, reviewer=team.reviewer, error_types=["boundary"],
                                    comment="Too loose")
    assert list(old.error_types.values_list("code", flat=True)) == ["boundary"]

    # when it is turned on again, it can be chosen again
    data["is_active"] = "on"
    assert client.post(url(ErrorType, "change", boundary.pk), data).status_code == 302
    review = task_services.review_reject(annotation=annotation, reviewer=team.reviewer, error_types=["boundary"],
                                         comment="Too loose")
    assert list(review.error_types.values_list("code", flat=True)) == ["boundary"]
