"""The incremental quality updates run twice, and at once with each other and with a full pass: the figures end
as a full recompute finds them (PostgreSQL: the project's advisory lock serialises the writers)."""

import threading
from unittest import mock

import pytest
from django.db import close_old_connections

from apps.projects.models import Membership
from apps.quality import engine
from apps.quality.models import MetricSnapshot
from apps.tasks import services
from tests import factories

FIGURES = ("agreement", "fleiss_kappa", "gold_accuracy", "acceptance_rate", "rework_rate", "sanity_pass_rate",
           "samples", "figures", "error_types", "error_types_by_label", "submitted", "tasks_annotated")


def latest(project, kind):
    return (MetricSnapshot.objects.filter(project=project, kind=kind, scope="project")
            .order_by("-computed_at").first().values)


def project_with_work(slug):
    """Three annotators on 6 tasks (2 gold), labels that disagree on some; the transitions' own recomputes are
    held back."""
    project = factories.project(slug=slug, overlap=3, review_mode="none")
    people = [factories.member(project, Membership.Role.ANNOTATOR, f"{slug}-{i}") for i in range(3)]
    batch = factories.batch(project)
    tasks = [factories.tasks(batch, 1, **({"is_gold": True, "gold_answer": {"label": "cat"}} if i < 2 else {}))[0]
             for i in range(6)]
    for i, task in enumerate(tasks):
        for j, person in enumerate(people[:2]):
            assignment = services.assignment_assign(task=task, annotator=person)
            services.assignment_submit(assignment=assignment, actor=person, result={"label": "cat" if i + j else "dog"},
                                       lead_time_seconds=10.0 * (i + j + 1))
    return project, people, tasks


def third_submissions(people, tasks):
    for i, task in enumerate(tasks):
        assignment = services.assignment_assign(task=task, annotator=people[2])
        services.assignment_submit(assignment=assignment, actor=people[2], result={"label": ["dog", "bird"][i % 2]},
                                   lead_time_seconds=7.0 * (i + 1))


def assert_equal_to_a_full_recompute(project):
    full = engine.project_quality_compute(project)
    quality, annotators = latest(project, "quality"), latest(project, "annotators")
    assert {name: quality[name] for name in FIGURES} == {name: full["quality"][name] for name in FIGURES}
    assert annotators["annotators"] == full["annotators"]["annotators"]
    assert latest(project, "agreement")["pairwise"] == full["agreement"]["pairwise"]
    assert engine._state_row(project).values["project"] == full["state"]["project"]


@pytest.mark.django_db
def test_an_update_run_twice_changes_nothing_the_second_time():
    with mock.patch("apps.quality.tasks.progress_recompute_soon"):
        project, people, tasks = project_with_work("twice")
        engine.project_quality_recompute(project.pk)
        third_submissions(people, tasks)
    first = engine.tasks_quality_update(project, [t.pk for t in tasks])
    state = engine._state_row(project).values
    again = engine.tasks_quality_update(project, [t.pk for t in tasks])
    assert sorted(first["task_ids"]) == sorted(t.pk for t in tasks) and again["task_ids"] == []
    assert engine._state_row(project).values == state
    assert latest(project, "quality")["submitted"] == 18
    assert_equal_to_a_full_recompute(project)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_updates_and_a_full_pass_at_once_end_equal_to_a_full_recompute():
    # given a full pass, then a third annotation on every task that nobody has applied yet
    with mock.patch("apps.quality.tasks.progress_recompute_soon"):
        project, people, tasks = project_with_work("at-once")
        engine.project_quality_recompute(project.pk)
        third_submissions(people, tasks)
    barrier = threading.Barrier(4)
    errors = []

    def worker(run):
        try:
            barrier.wait()
            run()
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            close_old_connections()

    # when two workers update the same tasks, a third scans the events and a fourth makes a full pass, at once
    runs = [lambda: engine.tasks_quality_update(project, [t.pk for t in tasks]),
            lambda: engine.tasks_quality_update(project, [t.pk for t in reversed(tasks)]),
            lambda: engine.quality_events_apply(project),
            lambda: engine.project_quality_recompute(project.pk)]
    threads = [threading.Thread(target=worker, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then nothing failed and every figure is the full recompute's
    assert errors == []
    assert latest(project, "quality")["submitted"] == 18
    assert_equal_to_a_full_recompute(project)
