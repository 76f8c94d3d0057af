"""History in the admin for the models that gained it: sanity rules (their own list, change and history pages, and
the inline on the project page) and metric snapshots (read-only, with their history)."""

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.quality import services as quality_services
from apps.quality.models import MetricSnapshot, SanityRule
from tests import factories


def url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def world(team, client):
    """The team's project with a sanity rule (written through the admin, so its history names the admin), a span
    project with a count rule, and a progress snapshot; the admin logged in."""
    client.force_login(team.admin)
    spans = factories.project(actor=team.admin, task_type="text_spans", slug="spans")
    team.rule = SanityRule.objects.create(project=team.project, kind=SanityRule.Kind.LABEL_NEEDS_NOTE, label="cat",
                                          message="Say why it is a cat.")
    team.count_rule = SanityRule.objects.create(project=spans, kind=SanityRule.Kind.MAX_ITEMS, label="PER", count=5)
    team.spans = spans
    team.snapshot = quality_services.progress_snapshot_write(project_id=team.project.pk)
    return team


def test_the_sanity_rule_list_filters_by_project_and_kind_and_searches(world, client):
    everything = client.get(url(SanityRule, "changelist"))
    by_project = client.get(url(SanityRule, "changelist"), {"project": world.spans.pk})
    by_kind = client.get(url(SanityRule, "changelist"), {"kind__exact": SanityRule.Kind.LABEL_NEEDS_NOTE})
    searched = client.get(url(SanityRule, "changelist"), {"q": "why it is a cat"})

    assert everything.status_code == 200
    assert set(everything.context["cl"].result_list) == {world.rule, world.count_rule}
    assert list(by_project.context["cl"].result_list) == [world.count_rule]
    assert list(by_kind.context["cl"].result_list) == [world.rule]
    assert list(searched.context["cl"].result_list) == [world.rule]


def test_a_sanity_rule_changed_on_its_page_is_in_its_history(world, client, django_capture_on_commit_callbacks):
    page = client.get(url(SanityRule, "change", world.rule.pk))
    assert page.status_code == 200

    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url(SanityRule, "change", world.rule.pk), {
            "kind": SanityRule.Kind.LABEL_FORBIDDEN, "label": "dog", "count": "1", "message": "", "is_active": "on"})

    assert response.status_code == 302
    world.rule.refresh_from_db()
    assert (world.rule.kind, world.rule.label) == (SanityRule.Kind.LABEL_FORBIDDEN, "dog")
    assert callbacks, "the project's figures were not asked to follow the rule"
    latest = world.rule.history.latest()
    assert (latest.history_type, latest.label, latest.history_user) == ("~", "dog", world.admin)

    history = client.get(url(SanityRule, "history", world.rule.pk))
    assert history.status_code == 200
    assert "admin" in history.content.decode()
    first = world.rule.history.earliest()
    version = client.get(url(SanityRule, "simple_history", world.rule.pk, first.history_id))
    assert version.status_code == 200 and b'name="_save"' not in version.content


def test_the_rules_own_page_checks_it_against_its_project(world, client):
    not_a_label = client.post(url(SanityRule, "change", world.rule.pk), {
        "kind": SanityRule.Kind.LABEL_FORBIDDEN, "label": "lynx", "count": "1", "message": "", "is_active": "on"})
    conflict = client.post(url(SanityRule, "add"), {
        "project": world.spans.pk, "kind": SanityRule.Kind.MIN_ITEMS, "label": "PER", "count": "9", "message": "",
        "is_active": "on"})

    assert not_a_label.status_code == 200 and "is not a label of the project" in not_a_label.content.decode()
    assert conflict.status_code == 200 and "no result could pass" in conflict.content.decode()
    world.rule.refresh_from_db()
    assert world.rule.label == "cat" and SanityRule.objects.filter(project=world.spans).count() == 1


def test_the_project_page_renders_its_rules_inline(world, client):
    page = client.get(url(type(world.project), "change", world.project.pk))

    assert page.status_code == 200
    inline = next(i for i in page.context["inline_admin_formsets"] if i.formset.model is SanityRule)
    assert [form.instance for form in inline.formset.initial_forms] == [world.rule]
    assert 'value="Say why it is a cat."' in page.content.decode()


def test_metric_snapshots_show_their_history_read_only(world, client):
    snapshot = world.snapshot
    assert client.get(url(MetricSnapshot, "change", snapshot.pk)).status_code == 200

    history = client.get(url(MetricSnapshot, "history", snapshot.pk))

    assert history.status_code == 200
    record = snapshot.history.get()
    version = client.get(url(MetricSnapshot, "simple_history", snapshot.pk, record.history_id))
    assert version.status_code == 200 and b'name="_save"' not in version.content
    assert client.post(url(MetricSnapshot, "simple_history", snapshot.pk, record.history_id),
                       {"kind": "forged", "computed_at": timezone.now()}).status_code == 403
