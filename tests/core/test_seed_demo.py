"""`manage.py seed_demo`: the demo team, three projects and a few days of history; a second run changes nothing.

Seeding takes a few seconds, so the tests that only read the demo share one, built once for the class
`TestSeededDemo` inside a transaction that is rolled back afterwards (what Django's `setUpTestData` does); each
test still runs in its own savepoint. A class rather than flat functions, because pytest tears a class-scoped
fixture down before any test outside the class runs, so the empty-database tests never see the shared demo.
"""

import io
from unittest import mock

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.db.models import Count
from django.test import override_settings

from apps.annotators.models import AnnotatorProfile
from apps.core import demo
from apps.projects.label_schema import result_validate
from apps.projects.models import Batch, Guideline, Membership, Project, QualityGate
from apps.quality.models import MetricSnapshot, Review
from apps.tasks.models import Annotation, Assignment, Clarification, Task, TaskEvent

User = get_user_model()


def seed(*args):
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture(scope="class")
def shared_demo(django_db_setup, django_db_blocker, tmp_path_factory):
    """The small demo, seeded once for the class and rolled back after it; yields (output, media root)."""
    media = tmp_path_factory.mktemp("media")
    with django_db_blocker.unblock(), override_settings(MEDIA_ROOT=media), transaction.atomic():
        output = seed("--small")
        yield output, media
        transaction.set_rollback(True)


@pytest.fixture
def seeded(shared_demo, db):
    return shared_demo[0]


@pytest.fixture
def demo_media(shared_demo, db):
    return shared_demo[1]


def row_counts():
    """Rows of every domain model and of every history table, and the event log."""
    models = [m for m in apps.get_models()
              if m._meta.app_label in {"projects", "tasks", "annotators", "quality", "guardian", "auth"}]
    return {m._meta.label: m.objects.count() for m in models}


def table_digests():
    """A digest of every row of every table row_counts() counts (all columns, timestamps included: a second run
    must not even re-save a row), per model, so that a failure names the table that changed."""
    import hashlib

    models = [m for m in apps.get_models()
              if m._meta.app_label in {"projects", "tasks", "annotators", "quality", "guardian", "auth", "core",
                                       "dashboards"}]
    digests = {}
    for model in models:
        digest = hashlib.sha256()
        for row in model.objects.order_by("pk").values_list().iterator(chunk_size=2000):
            digest.update(repr(row).encode())
        digests[model._meta.label] = digest.hexdigest()
    return digests


def demo_help():
    from apps.core.management.commands.seed_demo import Command

    return Command().create_parser("manage.py", "seed_demo").format_help()


class TestSeededDemo:
    """Tests that read one shared demo."""

    def test_the_demo_accounts_log_in_with_the_documented_passwords(self, seeded, client):
        # given the demo
        # then every account printed and documented logs in with its password
        for username, password, _role, _name in demo.credentials():
            assert client.login(username=username, password=password), username
            assert username in seeded and password in seeded
            client.logout()
        assert User.objects.get(username="admin").is_superuser
        assert User.objects.get(username="daniel").is_staff and not User.objects.get(username="daniel").is_superuser
        # and reviewers and annotators have varied, valid profiles, with a lead reviewer
        profiles = AnnotatorProfile.objects.select_related("user")
        assert profiles.count() == 8
        for profile in profiles:
            profile.full_clean()
            assert profile.skills and profile.languages and profile.working_days
        assert profiles.filter(seniority="lead", user__username__in=["amira", "tomas"]).exists()
        assert {p.seniority for p in profiles} == {"junior", "senior", "lead"}
        assert len({p.timezone for p in profiles}) >= 5
        assert "--small" in demo_help() and "admin-demo-1" in demo_help()

    def test_three_projects_of_the_three_task_types_with_their_setup(self, seeded):
        projects = {p.slug: p for p in Project.objects.all()}
        assert {projects[slug].task_type for slug in demo.DEMO_SLUGS} == {"classification", "text_spans",
                                                                             "bounding_boxes"}
        # batches: active ones and a draft whose tasks are still new
        statuses = set(Batch.objects.values_list("status", flat=True))
        assert {"active", "draft"} <= statuses
        draft = Batch.objects.get(status="draft")
        assert draft.tasks.exists() and not draft.tasks.exclude(status=Task.Status.NEW).exists()
        # gold tasks carry their answers; guidelines have two versions on one project; gates and members exist
        for project in projects.values():
            gold = project.tasks.filter(is_gold=True)
            assert gold.exists() and not gold.filter(gold_answer__isnull=True).exists()
            assert QualityGate.objects.filter(project=project).exists()
            assert set(Membership.objects.filter(project=project).values_list("role", flat=True)) == {
                "annotator", "reviewer", "manager"}
        news = projects[demo.NEWS]
        versions = Guideline.objects.filter(project=news).order_by("version").values_list("version", flat=True)
        assert list(versions) == [1, 2]
        assert news.current_guideline.version == 2
        assert Annotation.objects.filter(task__project=news, guideline_version=2).exists()

    def test_gold_answers_and_predictions_pass_the_sanity_rules(self, seeded):
        for task in Task.objects.select_related("project"):
            for result in (task.gold_answer, task.prediction):
                if result is not None:
                    assert result_validate(task.project.task_type, task.project.label_schema, task.data, result) == []

    def test_news_spans_point_at_the_names_also_in_arabic_hebrew_and_spanish(self, seeded):
        tasks = list(Task.objects.filter(project__slug=demo.NEWS))
        assert {"en", "es", "ar", "he"} <= {t.data["language"] for t in tasks}
        # every span of a gold answer or a model prediction covers exactly one of the names put in the sentence
        checked = set()
        for task in tasks:
            text, language = task.data["text"], task.data["language"]
            for result in (task.gold_answer, task.prediction):
                for span in (result or {}).get("spans", []):
                    assert text[span["start"]:span["end"]] in demo.NEWS_VALUES[language][span["label"]], task
                    checked.add(language)
        assert {"en", "es", "ar", "he"} <= checked

    def test_street_frames_are_drawn_into_media_and_their_boxes_match(self, seeded, demo_media):
        tasks = Task.objects.filter(project__slug=demo.STREET)
        for task in tasks:
            assert task.data["image"] == f"/media/demo/{task.external_id}.svg"
            assert (task.data["width"], task.data["height"]) == (640, 480)
            svg = (demo_media / "demo" / f"{task.external_id}.svg").read_text()
            assert svg.startswith("<svg") and 'width="640"' in svg
        scene = demo.street_scene(16)
        truth = demo.street_truth(scene)
        assert len(truth["boxes"]) == len(scene["objects"]) >= 1
        for box, obj in zip(truth["boxes"], sorted(scene["objects"], key=lambda o: o["box"][0])):
            x, y, w, h = obj["box"]
            assert abs(box["x"] * 640 - x) < 0.1 and abs(box["y"] * 480 - y) < 0.1
            assert abs(box["w"] * 640 - w) < 0.1 and abs(box["h"] * 480 - h) < 0.1

    def test_the_history_covers_the_lifecycle_over_several_days(self, seeded):
        # tasks were accepted, after reviews that approved, rejected (with error types), fixed and escalated
        assert Task.objects.filter(status=Task.Status.ACCEPTED).exists()
        decisions = set(Review.objects.values_list("decision", flat=True))
        assert {"approve", "reject", "fix", "escalate"} <= decisions
        rejections = Review.objects.filter(decision="reject")
        assert not rejections.annotate(n=Count("error_types")).filter(n=0).exists()
        # rejected work was resubmitted as a new version, the old one superseded
        rejected = Annotation.objects.filter(reviews__decision="reject", version=1)
        assert rejected.exists()
        for annotation in rejected:
            assert annotation.status == Annotation.Status.SUPERSEDED and not annotation.is_current
            assert annotation.assignment.annotations.filter(version=2, source="annotator").exists()
        # the side paths: a skip, a hold, an expired lease, a cancelled task, clarifications answered and open
        types = set(TaskEvent.objects.values_list("type", flat=True))
        assert {"imported", "assigned", "started", "submitted", "resubmitted", "review_started", "approved", "rejected",
                "fixed", "escalated", "accepted", "skipped", "held", "resumed", "expired", "cancelled",
                "clarification_asked", "clarification_answered", "batch_activated", "batch_paused"} <= types
        assert Clarification.objects.filter(status="answered").count() >= 2
        assert Clarification.objects.filter(status="open").exists()
        assert Clarification.objects.filter(confidential=True).exists()
        # lead times are recorded; people acted on several distinct days
        assert not Annotation.objects.filter(source="annotator", lead_time_seconds__isnull=True).exists()
        assert len({at.date() for at in TaskEvent.objects.values_list("at", flat=True)}) >= 3
        assert Assignment.objects.filter(status__in=Assignment.LIVE).exists()  # work in flight when the demo opens
        assert MetricSnapshot.objects.filter(kind="progress").count() > 3

    def test_history_rows_name_the_people_who_acted(self, seeded):
        submitted = TaskEvent.objects.filter(type="submitted").select_related("assignment", "actor")
        assert all(e.actor_id == e.assignment.annotator_id for e in submitted)
        assert Project.history.filter(history_user__username="admin").exists()
        assert Annotation.history.filter(history_user__username="amira").exists()  # her fixes and decisions

    def test_a_second_run_changes_nothing(self, seeded):
        # given the demo
        before, contents = row_counts(), table_digests()
        # when the command runs again
        output = seed("--small")
        # then it says so and no row of any table (history and events included) was added, changed or removed
        assert "Demo data already present; nothing changed." in output
        assert row_counts() == before
        after = table_digests()
        assert [label for label in contents if after[label] != contents[label]] == []
        assert before["tasks.TaskEvent"] > 0 and before["tasks.HistoricalTask"] > 0
        assert before["quality.HistoricalMetricSnapshot"] > 0 and before["auth.User"] > 0

    def test_the_digests_see_a_row_changed_in_place(self, seeded):
        # a guard for the test above: a run that rewrote a row without adding one would be caught
        before = table_digests()
        task = Task.objects.order_by("pk").first()
        Task.objects.filter(pk=task.pk).update(data={**task.data, "text": "rewritten"})
        after = table_digests()
        assert [label for label in before if after[label] != before[label]] == ["tasks.Task"]

    def test_missing_frames_are_redrawn_on_a_second_run(self, seeded, demo_media):
        frame = demo_media / "demo" / "street-003.svg"
        frame.unlink()
        before, contents = row_counts(), table_digests()
        output = seed("--small")
        assert frame.exists() and "Redrew 1" in output
        assert row_counts() == before and table_digests() == contents


def test_hebrew_prefix_stays_outside_the_place():
    text, spans = demo.sentence_fill("נציגי {ORG} נפגשו עם {PER} ב{LOC}.", {
        "ORG": ["אור אנרגיה"], "PER": ["דוד מזרחי"], "LOC": ["באר שבע"]}, demo.random.Random(1))
    assert [text[s["start"]:s["end"]] for s in spans] == ["אור אנרגיה", "דוד מזרחי", "באר שבע"]
    assert text[spans[2]["start"] - 1] == "ב"


def test_a_crash_midway_leaves_nothing_and_the_next_run_works(db, media_root):
    # given a seeding that fails in the middle of replaying the days
    with mock.patch.object(demo._DemoBuilder, "_manager_rounds", side_effect=RuntimeError("power cut")):
        with pytest.raises(RuntimeError):
            seed("--small")
    # then nothing was written
    assert not User.objects.exists() and not Project.objects.exists() and not TaskEvent.objects.exists()
    # and the next run builds the demo
    seed("--small")
    assert Project.objects.filter(slug__in=demo.DEMO_SLUGS).count() == 3


def test_a_half_taken_set_of_slugs_is_refused(db, media_root, admin_user):
    # given another project that uses one of the demo's slugs
    from tests import factories

    factories.project(actor=admin_user, slug=demo.NEWS)
    before = row_counts()
    # when the demo is seeded, it refuses and changes nothing
    with pytest.raises(CommandError, match="Some demo projects exist"):
        seed("--small")
    assert row_counts() == before


def test_an_admin_made_before_the_demo_is_kept_with_its_password(db, media_root, client):
    # given an admin created with createsuperuser before the demo
    User.objects.create_superuser("admin", "me@example.org", "my-own-password")
    # when the demo is seeded
    output = seed("--small")
    # then the demo is there, and the admin still logs in with its own password only
    assert Project.objects.filter(slug__in=demo.DEMO_SLUGS).count() == 3
    assert client.login(username="admin", password="my-own-password")
    assert not client.login(username="admin", password="admin-demo-1")
    assert "used as they are" in output and "admin" in output.rsplit("used as they are", 1)[1]


def test_an_admin_name_taken_by_a_plain_user_is_refused(db, media_root):
    User.objects.create_user("admin", password="whatever-1")
    before = row_counts()
    with pytest.raises(CommandError, match="not a superuser"):
        seed("--small")
    assert row_counts() == before


@pytest.mark.slow
def test_the_default_demo_is_the_full_one(db, media_root):
    output = seed()
    assert Task.objects.filter(project__slug=demo.SENTIMENT).count() == 250
    assert Task.objects.filter(project__slug=demo.NEWS).count() == 200
    assert Task.objects.filter(project__slug=demo.STREET).count() == 137
    assert len({at.date() for at in TaskEvent.objects.values_list("at", flat=True)}) >= 5
    assert Batch.objects.filter(status="delivered").exists()
    assert "Demo created" in output
