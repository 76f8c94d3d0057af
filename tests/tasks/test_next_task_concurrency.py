"""The next-task engine under real concurrency (PostgreSQL): sixteen annotators, each on its own connection, ask for
work and submit it as fast as they can on an overlap-2 project until nothing is left.

What a team lead would check afterwards: no task was given to more annotators than the overlap, nobody got the
same task twice, every submission is there, every task ended accepted, and nobody saw an error.
"""

import threading
from collections import Counter

import pytest
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import Count

from apps.projects.models import Membership, Project
from apps.tasks.models import Annotation, Assignment, Task, TaskEvent
from apps.tasks.next_task import next_task_assign
from apps.tasks.services import assignment_assign, assignment_assign_first_free, assignment_submit
from tests import factories

ANNOTATORS = 16
TASKS = 40
OVERLAP = 2
CYCLES_LIMIT = TASKS * OVERLAP  # no thread can do more than every slot; a runaway loop stops here


@pytest.mark.postgres
def test_sixteen_annotators_drain_an_overlap_two_project_without_double_assignments(transactional_db):
    # Given an overlap-2 project without review, 40 open tasks and 16 annotators
    admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
    project = factories.project(actor=admin, slug="crowd", review_mode="none", overlap=OVERLAP)
    annotators = [factories.member(project, Membership.Role.ANNOTATOR, f"crowd{i}") for i in range(ANNOTATORS)]
    tasks = factories.tasks(factories.batch(project), TASKS)
    barrier = threading.Barrier(ANNOTATORS)
    lock = threading.Lock()
    taken = {annotator.pk: [] for annotator in annotators}  # task ids each annotator was given, in order
    submitted = Counter()  # successful submissions per annotator
    integrity_errors, errors = [], []

    def work(annotator):
        try:
            barrier.wait()
            for _ in range(CYCLES_LIMIT):
                # A fresh project row per request, as a web request would read it.
                assignment = next_task_assign(project=Project.objects.get(pk=project.pk), annotator=annotator)
                if assignment is None:
                    break
                with lock:
                    taken[annotator.pk].append(assignment.task_id)
                assignment_submit(assignment=assignment, actor=annotator, result={"label": "cat"})
                with lock:
                    submitted[annotator.pk] += 1
        except IntegrityError as error:  # the once-per-annotator constraint: the engine tried a task twice
            integrity_errors.append(repr(error))
        except Exception as error:  # noqa: BLE001 - reported by the assertions below
            errors.append(repr(error))
        finally:
            connection.close()  # each thread had its own connection

    # When they all work at once until each is told "nothing left"
    threads = [threading.Thread(target=work, args=(annotator,)) for annotator in annotators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    close_old_connections()

    # Then nothing failed, and nothing was swallowed
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    assert integrity_errors == []
    assert errors == []
    # No task ever had more than the overlap: assignments are never deleted and none was skipped or expired here,
    # so the final count per task is the highest count it ever had.
    per_task = Counter(Assignment.objects.values_list("task_id", flat=True))
    assert max(per_task.values()) == OVERLAP
    assert not Assignment.objects.exclude(status=Assignment.Status.SUBMITTED).exists()
    # Nobody got the same task twice: not in what the engine answered, not in the database.
    for annotator_pk, task_ids in taken.items():
        assert len(task_ids) == len(set(task_ids)), f"annotator {annotator_pk} was given a task twice"
    assert not (Assignment.objects.values("task_id", "annotator_id").annotate(n=Count("id")).filter(n__gt=1)
                .exists())
    # Every submission made it, and they are exactly what the tasks needed
    assert sum(submitted.values()) == Annotation.objects.count() == OVERLAP * TASKS
    assert Annotation.objects.filter(is_current=True, status=Annotation.Status.SUBMITTED).count() == OVERLAP * TASKS
    assert sum(len(task_ids) for task_ids in taken.values()) == OVERLAP * TASKS
    # Every task ended accepted, with a final result
    assert set(Task.objects.filter(pk__in=[t.pk for t in tasks]).values_list("status", flat=True)) == {"accepted"}
    assert not Task.objects.filter(final_result__isnull=True).exists()
    # And the work was shared: more than one annotator did some (the race was real, not serialised by chance)
    assert sum(1 for n in submitted.values() if n) > 1


@pytest.mark.postgres
def test_the_first_free_candidate_is_locked_in_one_statement_past_a_task_another_request_holds(transactional_db):
    # Given three open tasks of an overlap-1 project, the first held by another request (its own connection),
    # the second full (its one annotator already took it)
    admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
    project = factories.project(actor=admin, slug="first-free", review_mode="none", overlap=1)
    ann, other = (factories.member(project, Membership.Role.ANNOTATOR, f"ff{i}") for i in range(2))
    held, full, free = factories.tasks(factories.batch(project), 3)
    assignment_assign(task=full, annotator=other)
    locked, release = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                Task.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(30)
        events = TaskEvent.objects.count()

        # When the engine asks for the first free one of [held, full, free] in that order
        refused = assignment_assign_first_free(task_ids=[held.pk, full.pk], annotator=ann)
        nothing = assignment_assign_first_free(task_ids=[held.pk], annotator=ann)
        taken = assignment_assign_first_free(task_ids=[held.pk, free.pk], annotator=ann)
    finally:
        release.set()
        holder.join()

    # Then the held task is skipped without waiting; the full one is refused with nothing written; the free one is
    # assigned
    assert refused == (full.pk, None) and nothing == (None, None)
    assert taken[0] == free.pk and taken[1].task_id == free.pk and taken[1].annotator_id == ann.pk
    assert TaskEvent.objects.count() == events + 1  # the one assignment's event, nothing for the refusal
    assert not Assignment.objects.filter(task=held).exists()
    assert Assignment.objects.filter(task=full).count() == 1
