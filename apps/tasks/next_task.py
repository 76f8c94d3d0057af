"""The next-task engine: which task an annotator gets when they ask for one.

Rules, in order (DESIGN.md "Assignment"): an unexpired assignment the annotator already holds; their rework; a
gold task when their share of gold is below the project's gold rate; then open work of active batches by batch
priority, task priority and the project's sampling, preferring tasks whose language/skill match the annotator.
Never the same task twice to one annotator, never more live + submitted assignments than the overlap.

Candidates are read through indexes in small, ordered pages; only the task chosen is locked, with SKIP LOCKED on
PostgreSQL, so concurrent annotators spread over different tasks without waiting and never take the same slot. A
task another request holds is waited for only when nothing else is free, and a search that met such a task runs
again before answering "nothing left". SQLite serialises writers instead.
"""

import random

from django.db import connection, transaction
from django.db.models import Count, F, OuterRef, Q, Subquery
from django.utils import timezone

from apps.core.errors import TransitionError
from apps.core.permissions import ANNOTATE, require_project_perm
from apps.projects.models import Batch, Project

from . import services
from .models import Assignment, Task

CANDIDATES = 50  # how many ordered candidates are looked at for a language/skill match
ASSIGN_ATTEMPTS = 5  # how often a search that lost a race to another request is run again
EXPIRE_ON_READ = 20


def _expire_due_in_project(project, now):
    """Lazily free slots whose lease ran out, a few at a time (the beat task does the rest)."""
    due = Assignment.objects.filter(
        task__project=project, status__in=[Assignment.Status.ASSIGNED, Assignment.Status.IN_PROGRESS],
        rework_count=0, lease_expires_at__lte=now,
    ).values_list("pk", flat=True)[:EXPIRE_ON_READ]
    for assignment_id in list(due):
        try:
            services.assignment_expire(assignment=Assignment(pk=assignment_id), now=now)
        except TransitionError:
            pass


def _held(project, annotator, now):
    return (Assignment.objects.filter(task__project=project, annotator=annotator,
                                      status__in=[Assignment.Status.ASSIGNED, Assignment.Status.IN_PROGRESS])
            .filter(Q(lease_expires_at__gt=now) | Q(lease_expires_at__isnull=True))
            .select_related("task").order_by("assigned_at").first())


def _rework(project, annotator):
    return (Assignment.objects.filter(task__project=project, annotator=annotator, rework_count__gt=0,
                                      status__in=[Assignment.Status.REJECTED, Assignment.Status.IN_PROGRESS])
            .select_related("task").order_by("updated_at").first())


def _gold_due(project, annotator):
    if project.gold_rate <= 0:
        return False
    counts = Assignment.objects.filter(task__project=project, annotator=annotator).aggregate(
        total=Count("id"), gold=Count("id", filter=Q(task__is_gold=True)))
    return counts["gold"] < project.gold_rate * (counts["total"] + 1)


def _lockable(queryset):
    if connection.features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True, of=("self",))
    return queryset


def _profile_match(task, languages, skills):
    language, skill = task.data.get("language"), task.data.get("skill")
    return (language is not None and language in languages) or (skill is not None and skill in skills)


def _preferred(candidates, languages, skills):
    """The candidates in the order to try them: those of the top priority that match the annotator's languages or
    skills first, then the rest as ordered. A match never jumps a task of higher priority."""
    if not candidates or not (languages or skills):
        return candidates
    top = candidates[0].priority
    matching = [task for task in candidates if task.priority == top and _profile_match(task, languages, skills)]
    chosen = {task.pk for task in matching}
    return matching + [task for task in candidates if task.pk not in chosen]


def _priority_levels(tasks):
    """The distinct task priorities present, highest first, each read through the index when it is needed."""
    level = tasks.order_by("-priority").values_list("priority", flat=True).first()
    while level is not None:
        yield level
        level = tasks.filter(priority__lt=level).order_by("-priority").values_list("priority", flat=True).first()


def _ordered(tasks, project):
    """Querysets to take candidates from, in turn: task priority first, then the project's sampling."""
    if project.sampling == Project.Sampling.RANDOM:
        # A random start point on the stable random key, wrapping around - within one priority level at a time,
        # so that wrapping never puts a lower priority before a higher one.
        start = random.random()
        for level in _priority_levels(tasks):
            same = tasks.filter(priority=level)
            yield same.filter(random_key__gte=start).order_by("random_key")
            yield same.filter(random_key__lt=start).order_by("random_key")
    elif project.sampling == Project.Sampling.UNCERTAINTY:
        # Tasks without a prediction after every scored one, on every database (SQLite sorts NULL first).
        yield tasks.order_by("-priority", F("prediction_score").asc(nulls_last=True), "id")
    else:
        yield tasks.order_by("-priority", "id")


class _Search:
    """One request's search: tasks given up on (a race for their last slot was lost), and whether another request
    was working on a candidate at the same time (then its status may have moved: search again before saying
    "nothing left")."""

    def __init__(self):
        self.passed = set()
        self.contended = False


def _open_candidates(project, annotator, batch, status, languages, skills, search):
    tasks = Task.objects.filter(batch=batch, status=status, is_gold=False).exclude(
        pk__in=Assignment.objects.filter(annotator=annotator, task__batch=batch).values("task_id"))
    if search.passed:
        tasks = tasks.exclude(pk__in=search.passed)
    if status != Task.Status.OPEN:
        taken = (Assignment.objects.filter(task=OuterRef("pk"), status__in=[*Assignment.LIVE, *Assignment.DONE])
                 .order_by().values("task").annotate(n=Count("id")).values("n"))
        tasks = tasks.alias(taken=Subquery(taken)).filter(Q(taken__lt=project.overlap) | Q(taken__isnull=True))
    for ordered in _ordered(tasks, project):
        # Read a page of candidates without locking it, and lock only the one chosen. Locking the whole page made
        # every concurrent request skip all of its tasks and answer "nothing left" while work remained.
        page = list(ordered[:CANDIDATES])
        task = _take_one(tasks, _preferred(page, languages, skills), search)
        if task is None and len(page) == CANDIDATES:  # the whole page went meanwhile: the next free task
            task = _lockable(ordered).first()
        if task is not None:
            return task
    return None


def _take_one(tasks, candidates, search):
    """Lock and return the first candidate that still qualifies (the conditions of `tasks` are re-checked), trying
    them in order; None when none does.

    SKIP LOCKED first, so that concurrent requests spread over different tasks without waiting. A candidate that
    another request holds is waited for only when nothing else is free, and taken if it still qualifies once that
    request is done (with overlap > 1 it may have a slot left): skipping it would answer "nothing left" wrongly.
    """
    busy = []
    for task in candidates:
        locked = _lockable(tasks.filter(pk=task.pk)).first()
        if locked is not None:
            return locked
        search.contended = True
        if connection.features.has_select_for_update_skip_locked and tasks.filter(pk=task.pk).exists():
            busy.append(task)
    for task in busy:
        locked = tasks.filter(pk=task.pk).select_for_update(of=("self",)).first()
        if locked is not None:
            return locked
    return None


def _gold_candidate(project, annotator, passed=()):
    tasks = Task.objects.filter(project=project, is_gold=True, batch__status=Batch.Status.ACTIVE).exclude(
        status=Task.Status.CANCELLED).exclude(
        pk__in=Assignment.objects.filter(annotator=annotator, task__project=project).values("task_id"))
    if passed:
        tasks = tasks.exclude(pk__in=passed)
    start = random.random()
    for ordered in (tasks.filter(random_key__gte=start).order_by("random_key"),
                    tasks.filter(random_key__lt=start).order_by("random_key")):
        task = _lockable(ordered).first()
        if task is not None:
            return task
    return None


def next_task_assign(*, project, annotator, now=None):
    """The annotator's next assignment in `project` (new or one they already hold), or None when nothing is left."""
    require_project_perm(annotator, project, ANNOTATE)
    now = now or timezone.now()
    _expire_due_in_project(project, now)
    held = _held(project, annotator, now)
    if held is not None:
        return held
    rework = _rework(project, annotator)
    if rework is not None:
        return rework
    profile = getattr(annotator, "profile", None)
    languages = set(profile.languages or []) if profile else set()
    skills = set((profile.skills or {}).keys()) if profile else set()
    search = _Search()
    for _attempt in range(ASSIGN_ATTEMPTS):
        search.contended = False
        with transaction.atomic():
            task = _gold_candidate(project, annotator, search.passed) if _gold_due(project, annotator) else None
            if task is None:
                task = _open_task(project, annotator, languages, skills, search)
            if task is None:
                if search.contended:
                    continue  # others were taking candidates meanwhile: what they left may sit elsewhere now
                return None
            try:
                return services.assignment_assign(task=task, annotator=annotator)
            except TransitionError:
                # Another annotator took its last slot between our read and our lock: look again, elsewhere.
                search.passed.add(task.pk)
    return None


def _open_task(project, annotator, languages, skills, search):
    batches = project.batches.filter(status=Batch.Status.ACTIVE).order_by("-priority", "id")
    # With overlap > 1, started tasks with a free slot go first so that tasks finish.
    statuses = ([Task.Status.IN_PROGRESS, Task.Status.REWORK, Task.Status.ON_HOLD, Task.Status.OPEN]
                if project.overlap > 1 else [Task.Status.OPEN])
    for batch in batches:
        for status in statuses:
            task = _open_candidates(project, annotator, batch, status, languages, skills, search)
            if task is not None:
                return task
    return None
