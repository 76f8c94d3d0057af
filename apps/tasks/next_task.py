"""The next-task engine: which task an annotator gets when they ask for one.

Rules, in order (DESIGN.md "Assignment"): an unexpired assignment the annotator already holds; their rework; a
gold task when their share of gold is below the project's gold rate; then open work of active batches by batch
priority, task priority and the project's sampling, preferring tasks whose language/skill match the annotator.
Never the same task twice to one annotator, never more live + submitted assignments than the task's overlap: the
project's overlap plus the annotators low-agreement routing added to the task (`Task.extra_annotations`). An
annotator whose membership is paused gets no new task (they still get back the work already theirs).

Candidates are read through indexes in small, ordered pages; only the task chosen is locked, with SKIP LOCKED on
PostgreSQL, so concurrent annotators spread over different tasks without waiting and never take the same slot. A
task another request holds is waited for only when nothing else is free, and a search that met such a task runs
again before answering "nothing left". SQLite serialises writers instead.
"""

import random

from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.core.errors import TransitionError
from apps.core.permissions import ANNOTATE, require_project_perm
from apps.projects.models import Batch, Membership, Project

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


def _held_or_rework(project, annotator, now):
    """The annotator's unexpired live assignment (oldest first), else their rework (longest waiting first), else
    None: both read in one query, the annotator's own few rows."""
    # The status list repeats what the conditions below allow, so that the (annotator, status) index serves the
    # read instead of a walk through all of the annotator's assignments.
    mine = list(Assignment.objects.filter(
        task__project=project, annotator=annotator,
        status__in=[Assignment.Status.ASSIGNED, Assignment.Status.IN_PROGRESS, Assignment.Status.REJECTED],
    ).filter(
        Q(status__in=[Assignment.Status.ASSIGNED, Assignment.Status.IN_PROGRESS])
        & (Q(lease_expires_at__gt=now) | Q(lease_expires_at__isnull=True))
        | Q(rework_count__gt=0, status__in=[Assignment.Status.REJECTED, Assignment.Status.IN_PROGRESS])
    ).select_related("task"))
    held = [a for a in mine if a.status in (Assignment.Status.ASSIGNED, Assignment.Status.IN_PROGRESS)
            and (a.lease_expires_at is None or a.lease_expires_at > now)]
    if held:
        return min(held, key=lambda a: a.assigned_at)
    rework = [a for a in mine if a.rework_count and a.status in (Assignment.Status.REJECTED,
                                                                 Assignment.Status.IN_PROGRESS)]
    return min(rework, key=lambda a: a.updated_at) if rework else None


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


# What a candidate asks of its annotator, read as text from the task data (never the whole JSON of a page).
LANGUAGE, SKILL = KeyTextTransform("language", "data"), KeyTextTransform("skill", "data")


def _preferred(page, search):
    """The candidate ids in the order to try them: those of the top priority that match the annotator's languages
    or skills first, then the rest as ordered. A match never jumps a task of higher priority. The profile is read
    only when a candidate names a language or a skill."""
    ids = [task_id for task_id, *_ in page]
    if not any(language is not None or skill is not None for _, _, language, skill in page):
        return ids
    languages, skills = search.languages_and_skills()
    if not (languages or skills):
        return ids
    top = page[0][1]
    matching = [task_id for task_id, priority, language, skill in page if priority == top and (
        (language is not None and language in languages) or (skill is not None and skill in skills))]
    chosen = set(matching)
    return matching + [task_id for task_id in ids if task_id not in chosen]


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
    """One request's search: whom for; tasks given up on (their last slot went to another request meanwhile);
    tasks another request was working on when tried (`busy`), and whether there were any (`contended`: then a
    search that found nothing runs again before answering "nothing left")."""

    def __init__(self, annotator):
        self.annotator = annotator
        self.passed = set()
        self.busy = []
        self.contended = False
        self._profile = None

    def languages_and_skills(self):
        if self._profile is None:
            profile = getattr(self.annotator, "profile", None)
            self._profile = (set(profile.languages or []) if profile else set(),
                             set((profile.skills or {}).keys()) if profile else set())
        return self._profile


def _assign(task_id, search, skip_locked=False):
    """The assignment of this task to the search's annotator; None when another request holds the task (with
    `skip_locked`) or when its slot went to someone else meanwhile (then it is not tried again)."""
    try:
        return services.assignment_assign(task=Task(pk=task_id), annotator=search.annotator,
                                          skip_locked=skip_locked)
    except TransitionError:
        search.passed.add(task_id)
        return None


# Tasks someone started that may still have a free slot (with overlap > 1), served before fresh ones.
STARTED = (Task.Status.IN_PROGRESS, Task.Status.REWORK, Task.Status.ON_HOLD)


def _per_task_count(assignments):
    """COUNT of `assignments` of the outer task, as a subquery PostgreSQL runs per candidate through the task's
    index. (A NOT EXISTS became an anti-join that, with the annotator's assignment count underestimated, compared
    every candidate with every assignment of the annotator: 15 ms at 600 of them, growing with their work.)"""
    return Coalesce(Subquery(assignments.filter(task=OuterRef("pk")).order_by().values("task")
                             .annotate(n=Count("id")).values("n")), 0)


def _open_candidates(project, batch_id, statuses, search):
    tasks = (Task.objects.filter(batch_id=batch_id, status__in=statuses, is_gold=False)
             .alias(mine=_per_task_count(Assignment.objects.filter(annotator=search.annotator))).filter(mine=0))
    if search.passed:
        tasks = tasks.exclude(pk__in=search.passed)
    if Task.Status.OPEN not in statuses:  # an open task has no live or submitted assignment
        if project.overlap == 1:
            tasks = tasks.filter(extra_annotations__gt=0)
        taken = _per_task_count(Assignment.objects.filter(status__in=[*Assignment.LIVE, *Assignment.DONE]))
        # The task's own overlap, compared in SQL: the project's plus what low-agreement routing added to it.
        tasks = tasks.alias(taken=taken).filter(taken__lt=F("extra_annotations") + project.overlap)
    for ordered in _ordered(tasks, project):
        # Read a page of candidates without locking it, and lock only the one being assigned. Locking the whole
        # page made every concurrent request skip all of its tasks and answer "nothing left" while work remained.
        page = list(ordered.values_list("pk", "priority", LANGUAGE, SKILL)[:CANDIDATES])
        assignment = _take_one(_preferred(page, search), search)
        if assignment is None and len(page) == CANDIDATES:  # the whole page went meanwhile: the next free task
            assignment = _take_first_free(ordered, search)
        if assignment is not None:
            return assignment
    return None


def _take_one(task_ids, search):
    """Assign the first candidate that nobody else holds and that still has a slot, trying them in order; tasks
    another request holds are skipped (SKIP LOCKED), so that concurrent requests spread over different tasks
    without waiting, and remembered in `search.busy`."""
    skip_locked = connection.features.has_select_for_update_skip_locked
    for task_id in task_ids:
        if task_id in search.passed:
            continue
        assignment = _assign(task_id, search, skip_locked=skip_locked)
        if assignment is not None:
            return assignment
        if task_id not in search.passed:
            search.contended = True
            search.busy.append(task_id)
    return None


def _take_first_free(ordered, search):
    """The first task further on that nobody holds (SKIP LOCKED), re-checked under its lock."""
    for _attempt in range(CANDIDATES):
        with transaction.atomic():  # a lost race rolls back to here, which releases the lock taken below
            task_id = _lockable(ordered.exclude(pk__in=search.passed)).values_list("pk", flat=True).first()
            if task_id is None:
                return None
            assignment = _assign(task_id, search)
        if assignment is not None:
            return assignment
    return None


def _busy_assign(search):
    """Nothing else is free: wait for the tasks other requests held, and take one if it still has a slot (with
    overlap > 1 it may). No lock is held while waiting: every failed attempt rolled back its own."""
    for task_id in search.busy:
        if task_id not in search.passed:
            assignment = _assign(task_id, search)
            if assignment is not None:
                return assignment
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


def _gold_assign(project, search):
    """A gold task for the annotator, or None (none left, or its slot went meanwhile: then it is passed)."""
    with transaction.atomic():
        task = _gold_candidate(project, search.annotator, search.passed)
        if task is None:
            return None
        try:
            return services.assignment_assign(task=task, annotator=search.annotator)
        except TransitionError:
            search.passed.add(task.pk)
            return None


class AnnotatorPausedError(TransitionError):
    """The annotator's membership is paused: no new task until a lead lifts the pause (a 409)."""


def _paused_memberships(project, annotator):
    return Membership.objects.filter(project=project, user=annotator, role=Membership.Role.ANNOTATOR,
                                     paused_at__isnull=False)


def annotator_is_paused(project, annotator):
    """Is the annotator's annotator membership of the project paused (Membership.paused_at set)?"""
    return _paused_memberships(project, annotator).exists()


def _active_batches_unless_paused(project, annotator):
    """The ids of the project's active batches, highest priority first; AnnotatorPausedError when the annotator is
    paused. One query: the pause is read along with the batches (on its own only when no batch is active)."""
    rows = list(Batch.objects.filter(project=project, status=Batch.Status.ACTIVE).order_by("-priority", "id")
                .annotate(paused=Exists(_paused_memberships(project, annotator))).values_list("pk", "paused"))
    if rows[0][1] if rows else annotator_is_paused(project, annotator):
        raise AnnotatorPausedError(
            _("Your work on this project is paused while a lead reviews your recent results."), current="paused")
    return [batch_id for batch_id, _paused in rows]


def next_task_assign(*, project, annotator, now=None):
    """The annotator's next assignment in `project` (new or one they already hold), or None when nothing is left.

    A paused annotator still gets back what is already theirs (held work, rework); instead of a new task they get
    AnnotatorPausedError."""
    require_project_perm(annotator, project, ANNOTATE)
    now = now or timezone.now()
    _expire_due_in_project(project, now)
    current = _held_or_rework(project, annotator, now)
    if current is not None:
        return current
    batch_ids = _active_batches_unless_paused(project, annotator)
    search = _Search(annotator)
    for _attempt in range(ASSIGN_ATTEMPTS):
        search.contended, search.busy = False, []
        # Each try is its own short transaction (inside assignment_assign): a task is locked only while it is
        # being assigned.
        assignment = _gold_assign(project, search) if _gold_due(project, annotator) else None
        if assignment is None:
            assignment = _open_assign(project, batch_ids, search) or _busy_assign(search)
        if assignment is not None:
            return assignment
        if not search.contended:
            return None
    return None


def _open_assign(project, batch_ids, search):
    # Started tasks with a free slot go first so that tasks finish; one query reads them all (they are few: no more
    # than the work in hand), by priority like the fresh ones. With overlap 1 only a task that routing gave extra
    # annotators can have a free slot once started.
    for batch_id in batch_ids:
        for statuses in (STARTED, (Task.Status.OPEN,)):
            assignment = _open_candidates(project, batch_id, statuses, search)
            if assignment is not None:
                return assignment
    return None
