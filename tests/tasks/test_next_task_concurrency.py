"""The next-task engine under real concurrency (PostgreSQL): sixteen annotators, each on its own connection, ask for
work and submit it as fast as they can on an overlap-2 project until nothing is left.

What a team lead would check afterwards: no task was given to more annotators than the overlap, nobody got the
same task twice, every submission is there, every task ended accepted, and nobody saw an error.
"""

import threading
from collections import Counter

import pytest
from django.db import IntegrityError, close_old_connections, connection
from django.db.models import Count

from apps.projects.models import Membership, Project
from apps.tasks.models import Annotation, Assignment, Task
from apps.tasks.next_task import next_task_assign
from apps.tasks.services import assignment_submit
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
