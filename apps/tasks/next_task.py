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

The reads cost little Python, because the ORM's compilation of a query (0.5-1 ms of CPU each) was most of a
request: what the rules ask first about the annotator (held work and rework with their tasks, the active batches,
the pause, the project's leases that ran out, their gold share) is one statement of fixed SQL (`_AnnotatorState`),
and each candidate read is compiled by the ORM once per shape and then run as plain SQL (`_CompiledRead`).
"""

import random

from django.db import connection, transaction
from django.db.models import Count, F, OuterRef, Subquery
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.core.errors import TransitionError
from apps.core.permissions import ANNOTATE, require_project_perm
from apps.core.rows import ModelColumns, built_for, built_once
from apps.projects.models import Batch, Membership, Project

from . import services
from .models import Assignment, Task

CANDIDATES = 50  # how many ordered candidates are looked at for a language/skill match
ASSIGN_ATTEMPTS = 5  # how often a search that lost a race to another request is run again
EXPIRE_ON_READ = 20

AS = Assignment.Status


# --- compiled reads -------------------------------------------------------------------------------------------------


class _CompiledRead:
    """A read compiled by the ORM once and run again as plain SQL with other values.

    `build(value)` returns the queryset; every value that changes from one run to the next is written `value(name)`.
    At compilation these are stand-in numbers that no constant of the query equals; they are found among the
    compiled parameters, and each run puts its own values in their places (in the parameter's type: psycopg's Int4
    of an expression stays an Int4), so that the SQL run is the SQL the ORM would have run."""

    _FIRST_STAND_IN = -1_000_000_007  # within int4, and far from any constant a query of the engine holds

    def __init__(self, build):
        stand_ins = {}

        def value(name):
            return stand_ins.setdefault(name, self._FIRST_STAND_IN - len(stand_ins))

        self.sql, params = build(value).query.sql_with_params()
        names = {number: name for name, number in stand_ins.items()}
        self.params = list(params)
        self.slots = [(position, names[param], type(param)) for position, param in enumerate(self.params)
                      if type(param) is not bool and isinstance(param, (int, float)) and param in names]
        unplaced = set(stand_ins) - {name for _position, name, _kind in self.slots}
        if unplaced or any(str(-number) in self.sql for number in stand_ins.values()):
            raise RuntimeError(f"{unplaced or 'a value'} was not compiled as a parameter of: {self.sql}")

    def rows(self, values):
        params = self.params.copy()
        for position, name, kind in self.slots:
            value = values[name]
            params[position] = value if kind is int or kind is float else kind(value)
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            return cursor.fetchall()


def _compiled(read, *shape):
    """`read(value, *shape)` compiled for this database, once per shape (the arguments that change its SQL)."""
    return built_for(connection, ("compiled read", read, shape),
                     lambda _database: _CompiledRead(lambda value: read(value, *shape)))


def _passed_values(passed):
    return {("passed", i): task_id for i, task_id in enumerate(passed)}


def _passed_stand_ins(value, passed_n):
    return [value(("passed", i)) for i in range(passed_n)]


# --- what the rules ask first: one statement --------------------------------------------------------------------------


def _literals(*values):
    """Choice values of the code (statuses, roles) as SQL string literals."""
    assert all(value.isidentifier() for value in values), values  # letters and underscores: nothing to escape
    return ", ".join(f"'{value}'" for value in values)


class _AnnotatorState:
    """What the rules ask first about the annotator in a project, read in one statement: their held and rework
    assignments (with their tasks, as models: the view shows them), the project's active batches, whether their
    membership is paused, the project's leases that ran out (a few, freed lazily on read) and, when the project has
    a gold rate, how many of their assignments are gold. Fixed SQL, portable (PostgreSQL and SQLite)."""

    def __init__(self, project, annotator, now):
        self.mine, self.due, self.paused, self.gold = [], [], False, None
        batches = []
        with_gold = project.gold_rate > 0
        database, (sql, mine_columns) = built_once(("annotator_state", with_gold), Assignment,
                                                   lambda database: self._compose(database, with_gold))
        moment = database.ops.adapt_datetimefield_value(now)
        params = [project.pk, annotator.pk, moment, project.pk, project.pk, annotator.pk, project.pk, moment]
        if with_gold:
            params += [project.pk, annotator.pk]
        with database.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        for row in rows:
            kind, ref, rank = row[:3]
            if kind == "mine":
                self.mine.append(self._assignment_with_task(row, mine_columns, database))
            elif kind == "batch":
                batches.append((-rank, ref))
            elif kind == "paused":
                self.paused = True
            elif kind == "due":
                self.due.append(ref)
            else:
                self.gold = (ref, rank)
        self.batch_ids = [batch_id for _rank, batch_id in sorted(batches)]  # batch priority first, then id

    @staticmethod
    def _compose(connection, with_gold):
        """(the statement, the assignment's and the task's columns in its mine rows)."""
        quote = connection.ops.quote_name

        def column(model, alias, name):
            return f"{alias}.{quote(model._meta.get_field(name).column)}"

        def table(model):
            return quote(model._meta.db_table)

        mine_columns = (ModelColumns(Assignment, "a", connection), ModelColumns(Task, "t", connection))
        blanks = ", ".join(["NULL"] * sum(columns.width for columns in mine_columns))
        a = {name: column(Assignment, "a", name) for name in (
            "id", "task", "annotator", "status", "lease_expires_at", "rework_count", "assigned_at")}
        t = {name: column(Task, "t", name) for name in ("id", "project", "is_gold")}
        b = {name: column(Batch, "b", name) for name in ("id", "project", "status", "priority")}
        m = {name: column(Membership, "m", name) for name in ("id", "project", "user", "role", "paused_at")}
        assignments_of_project = f"{table(Assignment)} a INNER JOIN {table(Task)} t ON {t['id']} = {a['task']}"
        # The status lists repeat what the conditions allow, so that the (annotator, status) and (status, lease)
        # indexes serve the reads. The mine rows come first and the batches second: PostgreSQL types each column of
        # a UNION from its first typed branch, pair by pair.
        # The statuses and the role are constants of the code, written into the SQL (never anything a user typed):
        # with them as parameters PostgreSQL found no plan good for every value and planned the statement anew on
        # every call, although it is prepared.
        live, rework = _literals(AS.ASSIGNED, AS.IN_PROGRESS), _literals(AS.REJECTED, AS.IN_PROGRESS)
        branches = [
            f"SELECT 'mine', {a['id']}, NULL, {', '.join(columns.select for columns in mine_columns)}"
            f" FROM {assignments_of_project}"
            f" WHERE {t['project']} = %s AND {a['annotator']} = %s"
            f" AND {a['status']} IN ({_literals(AS.ASSIGNED, AS.IN_PROGRESS, AS.REJECTED)})"
            f" AND (({a['status']} IN ({live}) AND ({a['lease_expires_at']} > %s OR {a['lease_expires_at']} IS NULL))"
            f" OR ({a['rework_count']} > 0 AND {a['status']} IN ({rework})))",
            f"SELECT 'batch', {b['id']}, {b['priority']}, {blanks} FROM {table(Batch)} b"
            f" WHERE {b['project']} = %s AND {b['status']} = {_literals(Batch.Status.ACTIVE)}",
            f"SELECT 'paused', {m['id']}, NULL, {blanks} FROM {table(Membership)} m"
            f" WHERE {m['project']} = %s AND {m['user']} = %s AND {m['role']} = {_literals(Membership.Role.ANNOTATOR)}"
            f" AND {m['paused_at']} IS NOT NULL",
            # The assignment model's default order, as the ORM read ordered them: which few are freed first.
            f"SELECT 'due', due.id, NULL, {blanks} FROM (SELECT {a['id']} AS id FROM {assignments_of_project}"
            f" WHERE {t['project']} = %s AND {a['status']} IN ({live}) AND {a['rework_count']} = 0"
            f" AND {a['lease_expires_at']} <= %s ORDER BY {a['assigned_at']} DESC LIMIT {EXPIRE_ON_READ}) due",
        ]
        if with_gold:
            branches.append(f"SELECT 'gold', COUNT({a['id']}), COUNT(CASE WHEN {t['is_gold']} THEN 1 END), {blanks}"
                            f" FROM {assignments_of_project} WHERE {t['project']} = %s AND {a['annotator']} = %s")
        return " UNION ALL ".join(branches), mine_columns

    @staticmethod
    def _assignment_with_task(row, mine_columns, database):
        """The assignment of a mine row with its task, built as the ORM builds them (after the 3 leading columns)."""
        assignment_columns, task_columns = mine_columns
        assignment = assignment_columns.instance(row, 3, database)
        assignment.task = task_columns.instance(row, 3 + assignment_columns.width, database)
        return assignment

    def held_or_rework(self, now):
        """Their unexpired live assignment (oldest first), else their rework (longest waiting first), else None."""
        held = [a for a in self.mine if a.status in (AS.ASSIGNED, AS.IN_PROGRESS)
                and (a.lease_expires_at is None or a.lease_expires_at > now)]
        if held:
            return min(held, key=lambda a: a.assigned_at)
        rework = [a for a in self.mine if a.rework_count and a.status in (AS.REJECTED, AS.IN_PROGRESS)]
        return min(rework, key=lambda a: a.updated_at) if rework else None

    def gold_due(self, project):
        """Is the annotator's share of gold, counting the next task, below the project's gold rate?"""
        if self.gold is None:
            return False
        total, gold = self.gold
        return gold < project.gold_rate * (total + 1)


def _expire(assignment_ids, now):
    """Lazily free slots whose lease ran out, a few at a time (the beat task does the rest)."""
    for assignment_id in assignment_ids:
        try:
            services.assignment_expire(assignment=Assignment(pk=assignment_id), now=now)
        except TransitionError:
            pass


# --- candidates ---------------------------------------------------------------------------------------------------


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


def _assign(task_id, search):
    """The assignment of this task to the search's annotator (waiting for it if another request holds it); None when
    its slot went to someone else meanwhile (then it is not tried again)."""
    try:
        return services.assignment_assign(task=Task(pk=task_id), annotator=search.annotator)
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


# The candidate reads, each compiled once per shape (see _CompiledRead): `value(...)` marks what changes per run.


def _offered_tasks(value, statuses, overlap_one, passed_n):
    """The tasks of a batch in `statuses` that may be offered to the annotator: not given to them before, not
    passed over by this search, and, once started, with a free slot (with overlap 1 only a task that routing gave
    extra annotators can have one)."""
    tasks = (Task.objects.filter(batch_id=value("batch"), status__in=statuses, is_gold=False)
             .alias(mine=_per_task_count(Assignment.objects.filter(annotator_id=value("annotator")))).filter(mine=0))
    if passed_n:
        tasks = tasks.exclude(pk__in=_passed_stand_ins(value, passed_n))
    if Task.Status.OPEN not in statuses:  # an open task has no live or submitted assignment
        if overlap_one:
            tasks = tasks.filter(extra_annotations__gt=0)
        taken = _per_task_count(Assignment.objects.filter(status__in=[*Assignment.LIVE, *Assignment.DONE]))
        # The task's own overlap, compared in SQL: the project's plus what low-agreement routing added to it.
        tasks = tasks.alias(taken=taken).filter(taken__lt=F("extra_annotations") + value("overlap"))
    return tasks


def _in_order(tasks, value, ordering):
    """`tasks` in one of the orders of the project's sampling, task priority first (see _OpenWork.orderings)."""
    if ordering == "sequential":
        return tasks.order_by("-priority", "id")
    if ordering == "uncertainty":
        # Tasks without a prediction after every scored one, on every database (SQLite sorts NULL first).
        return tasks.order_by("-priority", F("prediction_score").asc(nulls_last=True), "id")
    same = tasks.filter(priority=value("level"))
    if ordering == "random_from_start":
        return same.filter(random_key__gte=value("start")).order_by("random_key")
    return same.filter(random_key__lt=value("start")).order_by("random_key")  # "random_before_start"


def _page_read(value, statuses, overlap_one, passed_n, ordering):
    return _in_order(_offered_tasks(value, statuses, overlap_one, passed_n), value, ordering).values_list(
        "pk", "priority", LANGUAGE, SKILL)[:CANDIDATES]


def _first_free_read(value, statuses, overlap_one, passed_n, ordering):
    return _lockable(_in_order(_offered_tasks(value, statuses, overlap_one, passed_n), value, ordering)).values_list(
        "pk", flat=True)[:1]


def _priority_level_read(value, statuses, overlap_one, passed_n, below_level):
    tasks = _offered_tasks(value, statuses, overlap_one, passed_n)
    if below_level:
        tasks = tasks.filter(priority__lt=value("level"))
    return tasks.order_by("-priority").values_list("priority", flat=True)[:1]


class _OpenWork:
    """The work of one batch in one group of statuses that a search may be offered, and its reads. The tasks the
    search passed over when it came here are left out of its pages; the first free task, read under a lock, leaves
    out all it passed over by then."""

    def __init__(self, project, batch_id, statuses, search):
        passed = tuple(search.passed)
        self.statuses = statuses
        self.overlap_one = project.overlap == 1 and Task.Status.OPEN not in statuses
        self.passed_n = len(passed)
        self.values = {"batch": batch_id, "annotator": search.annotator.pk, "overlap": project.overlap,
                       **_passed_values(passed)}

    def _rows(self, read, last_shape, values, passed_n=None):
        shape = (self.statuses, self.overlap_one, self.passed_n if passed_n is None else passed_n, last_shape)
        return _compiled(read, *shape).rows(values)

    def orderings(self, sampling):
        """The orders to take candidates in, in turn, each with its values: task priority first, then the
        project's sampling."""
        if sampling == Project.Sampling.RANDOM:
            # A random start point on the stable random key, wrapping around - within one priority level at a
            # time, so that wrapping never puts a lower priority before a higher one.
            start = random.random()
            for level in self._priority_levels():
                yield "random_from_start", {**self.values, "level": level, "start": start}
                yield "random_before_start", {**self.values, "level": level, "start": start}
        elif sampling == Project.Sampling.UNCERTAINTY:
            yield "uncertainty", self.values
        else:
            yield "sequential", self.values

    def _priority_levels(self):
        """The distinct task priorities present, highest first, each read through the index when it is needed."""
        rows = self._rows(_priority_level_read, False, self.values)
        while rows:
            level = rows[0][0]
            yield level
            rows = self._rows(_priority_level_read, True, {**self.values, "level": level})

    def page(self, ordering, values):
        """Up to CANDIDATES (id, priority, language, skill) in order, read without a lock."""
        return self._rows(_page_read, ordering, values)

    def first_free_id(self, ordering, values, passed):
        """The first task in order that nobody holds (SKIP LOCKED) and that was not passed over, locked; or None.
        Run inside a transaction."""
        rows = self._rows(_first_free_read, ordering, {**values, **_passed_values(passed)}, passed_n=len(passed))
        return rows[0][0] if rows else None


def _open_candidates(project, batch_id, statuses, search):
    work = _OpenWork(project, batch_id, statuses, search)
    for ordering, values in work.orderings(project.sampling):
        # Read a page of candidates without locking it, and lock only the one being assigned. Locking the whole
        # page made every concurrent request skip all of its tasks and answer "nothing left" while work remained.
        page = work.page(ordering, values)
        assignment = _take_one(_preferred(page, search), search)
        if assignment is None and len(page) == CANDIDATES:  # the whole page went meanwhile: the next free task
            assignment = _take_first_free(work, ordering, values, search)
        if assignment is not None:
            return assignment
    return None


def _take_one(task_ids, search):
    """Assign the first candidate that nobody else holds and that still has a slot, trying them in order; tasks
    another request holds are skipped (SKIP LOCKED), so that concurrent requests spread over different tasks
    without waiting, and remembered in `search.busy`."""
    if connection.vendor == "postgresql":
        return _take_first_unheld(task_ids, search)
    for task_id in task_ids:  # SQLite: writers are serialised, nobody else holds a task
        if task_id not in search.passed:
            assignment = _assign(task_id, search)
            if assignment is not None:
                return assignment
    return None


def _take_first_unheld(task_ids, search):
    """`_take_one` on PostgreSQL: each statement locks the first candidate no other request holds (SKIP LOCKED);
    those before it in the order were held by others (busy). A candidate whose slot went meanwhile is passed over
    and the ones after it are tried."""
    remaining = [task_id for task_id in task_ids if task_id not in search.passed]
    while remaining:
        task_id, assignment = services.assignment_assign_first_free(task_ids=remaining, annotator=search.annotator)
        held = remaining if task_id is None else remaining[:remaining.index(task_id)]
        if held:
            search.contended = True
            search.busy.extend(held)
        if assignment is not None:
            return assignment
        if task_id is None:
            return None
        search.passed.add(task_id)
        remaining = remaining[remaining.index(task_id) + 1:]
    return None


def _take_first_free(work, ordering, values, search):
    """The first task further on that nobody holds (SKIP LOCKED), re-checked under its lock."""
    for _attempt in range(CANDIDATES):
        with transaction.atomic():  # a lost race rolls back to here, which releases the lock taken below
            task_id = work.first_free_id(ordering, values, tuple(search.passed))
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


def _gold_read(value, passed_n, from_start):
    """The first gold task of the project's active batches, not cancelled and not given to the annotator before,
    from a random start point on the random key (or before it: the wrap-around), locked."""
    tasks = Task.objects.filter(project_id=value("project"), is_gold=True, batch__status=Batch.Status.ACTIVE).exclude(
        status=Task.Status.CANCELLED).exclude(
        pk__in=Assignment.objects.filter(annotator_id=value("annotator"), task__project_id=value("project"))
        .values("task_id"))
    if passed_n:
        tasks = tasks.exclude(pk__in=_passed_stand_ins(value, passed_n))
    start = value("start")
    ordered = tasks.filter(random_key__gte=start) if from_start else tasks.filter(random_key__lt=start)
    return _lockable(ordered.order_by("random_key")).values_list("pk", flat=True)[:1]


def _gold_assign(project, search):
    """A gold task for the annotator, or None (none left, or its slot went meanwhile: then it is passed)."""
    with transaction.atomic():
        passed = tuple(search.passed)
        values = {"project": project.pk, "annotator": search.annotator.pk, "start": random.random(),
                  **_passed_values(passed)}
        for from_start in (True, False):
            rows = _compiled(_gold_read, len(passed), from_start).rows(values)
            if rows:
                return _assign(rows[0][0], search)
        return None


class AnnotatorPausedError(TransitionError):
    """The annotator's membership is paused: no new task until a lead lifts the pause (a 409)."""


def next_task_assign(*, project, annotator, now=None):
    """The annotator's next assignment in `project` (new or one they already hold), or None when nothing is left.

    A paused annotator still gets back what is already theirs (held work, rework); instead of a new task they get
    AnnotatorPausedError."""
    require_project_perm(annotator, project, ANNOTATE)
    now = now or timezone.now()
    state = _AnnotatorState(project, annotator, now)
    _expire(state.due, now)
    current = state.held_or_rework(now)
    if current is not None:
        return current
    if state.paused:
        raise AnnotatorPausedError(
            _("Your work on this project is paused while a lead reviews your recent results."), current="paused")
    gold_due = state.gold_due(project)  # no assignment of theirs is made below before an answer
    search = _Search(annotator)
    for _attempt in range(ASSIGN_ATTEMPTS):
        search.contended, search.busy = False, []
        # Each try is its own short transaction (inside assignment_assign): a task is locked only while it is
        # being assigned.
        assignment = _gold_assign(project, search) if gold_due else None
        if assignment is None:
            assignment = _open_assign(project, state.batch_ids, search) or _busy_assign(search)
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
