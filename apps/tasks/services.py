"""The task lifecycle: one function per transition of assignments, annotations, reviews and tasks.

Every transition locks its rows (task before assignment before annotation), re-checks the state, writes the
change and a TaskEvent in one transaction, and enqueues follow-up work on commit. An illegal transition raises
TransitionError and changes nothing. The task's status is derived in one place: `task_status_refresh`.

A started review claims its annotation: while it is open and fresh, every review transition on that annotation
by anyone else (start, approve, reject, fix, escalate, pairwise resolve) is refused with 409 (`_claim_check`).
"""

import json
import random
from datetime import timedelta

from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.core.audit import NEW_ROW, audited_save, history_record_queryset, records_actor
from apps.core.errors import PermissionDeniedError, TransitionError, ValidationError
from apps.core.permissions import ANNOTATE, MANAGE, REVIEW, has_project_perm, require_project_perm
from apps.core.rows import ModelColumns, built_once, instances
from apps.projects.label_schema import TaskType
from apps.projects.models import Batch, Project
from apps.quality.sanity import submission_check

from .models import Annotation, Assignment, Clarification, Task, TaskEvent

AS = Assignment.Status
TS = Task.Status
AN = Annotation.Status


# --- plumbing -------------------------------------------------------------------------------------------------


def _event(*, type, project, actor=None, task=None, assignment=None, batch=None, payload=None):
    """A lifecycle event, not yet written: `event_record` writes it alone, `audited_save` with the change it records."""
    return TaskEvent(
        type=type, project_id=getattr(project, "pk", project), actor=actor, task=task, assignment=assignment,
        batch_id=getattr(batch, "pk", batch) if batch is not None else (task.batch_id if task is not None else None),
        payload=payload or {},
    )


def event_record(**kwargs):
    """Append one lifecycle event."""
    event = _event(**kwargs)
    event.save()
    return event


def _after_commit_refresh(project_id):
    """Have the project's progress figures recomputed once the transaction has committed (at most once a window)."""
    from apps.quality.tasks import progress_recompute_soon

    transaction.on_commit(lambda: progress_recompute_soon(project_id))


def _refuse(message, current):
    raise TransitionError(message, current=current)


# --- the hot transitions' reads, as SQL written once ----------------------------------------------------------
# Every assignment and submission locks its task (with project, guideline and batch) and its assignment, counts the
# task's slots and reads its assignments to derive the status: compiling these through the ORM cost more Python than
# the database spends running them. The SQL is built once per connection from the models' `_meta`.


def _lock_clause(connection, skip_locked, of):
    """`FOR UPDATE OF …` where the database locks rows (PostgreSQL), nothing where it serialises writers (SQLite)."""
    if not connection.features.has_select_for_update:
        return ""
    return f" FOR UPDATE OF {of}" + (" SKIP LOCKED" if skip_locked else "")


def _task_lock_read(connection):
    from apps.projects.models import Guideline

    quote = connection.ops.quote_name
    parts = [ModelColumns(Task, "t", connection), ModelColumns(Project, "p", connection),
             ModelColumns(Batch, "b", connection), ModelColumns(Guideline, "g", connection)]
    sql = (f"SELECT {', '.join(part.select for part in parts)} FROM {quote(Task._meta.db_table)} t "
           f"INNER JOIN {quote(Project._meta.db_table)} p ON p.id = t.project_id "
           f"INNER JOIN {quote(Batch._meta.db_table)} b ON b.id = t.batch_id "
           f"LEFT OUTER JOIN {quote(Guideline._meta.db_table)} g ON g.id = p.current_guideline_id WHERE ")
    reads = {skip: f"{sql}t.id = %s{_lock_clause(connection, skip, 't')}" for skip in (False, True)}
    # The first of several tasks, in the order given, that no other transaction holds (PostgreSQL: SKIP LOCKED).
    reads["first_free"] = (f"{sql}t.id = ANY(%s) ORDER BY array_position(%s, t.id) LIMIT 1"
                           f"{_lock_clause(connection, True, 't')}")
    return parts, reads


def _lock_task(task_id, skip_locked=False):
    """The task, locked, with its project and batch; with `skip_locked`, None when another transaction holds it."""
    # Only the task row (OF t): without it PostgreSQL also locks the joined project and batch rows, and every
    # transition of a project would wait for every other one. The guideline: a submission records its version.
    task = _task_locked_read(bool(skip_locked), [task_id])
    if task is None and not skip_locked:
        raise Task.DoesNotExist("Task matching query does not exist.")
    return task


def _lock_first_free_task(task_ids):
    """The first of `task_ids`, in their order, that no other transaction holds, locked (SKIP LOCKED) with its
    project and batch; None when others hold every one. PostgreSQL only: one statement instead of one per task."""
    task_ids = [int(task_id) for task_id in task_ids]
    return _task_locked_read("first_free", [task_ids, task_ids])


def _task_locked_read(read, params):
    connection, (parts, sql) = built_once("task_lock", Task, _task_lock_read, write=True)
    with connection.cursor() as cursor:
        cursor.execute(sql[read], params)
        row = cursor.fetchone()
    if row is None:
        return None
    task_columns, project_columns, batch_columns, guideline_columns = parts
    task, start = task_columns.instance(row, 0, connection), task_columns.width
    project = project_columns.instance(row, start, connection)
    start += project_columns.width
    batch = batch_columns.instance(row, start, connection)
    start += batch_columns.width
    guideline = guideline_columns.instance(row, start, connection) if row[start] is not None else None
    Project._meta.get_field("current_guideline").set_cached_value(project, guideline)
    Task._meta.get_field("project").set_cached_value(task, project)
    Task._meta.get_field("batch").set_cached_value(task, batch)
    return task


def _assignment_lock_read(connection):
    from django.contrib.auth import get_user_model

    quote, user_model = connection.ops.quote_name, get_user_model()
    parts = [ModelColumns(Assignment, "a", connection), ModelColumns(user_model, "u", connection)]
    sql = (f"SELECT {', '.join(part.select for part in parts)} FROM {quote(Assignment._meta.db_table)} a "
           f"INNER JOIN {quote(user_model._meta.db_table)} u ON u.id = a.annotator_id WHERE a.id = %s")
    return parts, sql + _lock_clause(connection, False, "a")


def _lock_assignment(assignment_id, task_id=None):
    """Lock an assignment and its task, task first (the fixed order every transition uses). `task_id`: its task
    when the caller read it already (an assignment never changes task), which saves a query on the hot paths."""
    if task_id is None:
        task_id = Assignment.objects.values_list("task_id", flat=True).get(pk=assignment_id)
    task = _lock_task(task_id)
    connection, ((assignment_columns, user_columns), sql) = built_once(
        "assignment_lock", Assignment, _assignment_lock_read, write=True)
    with connection.cursor() as cursor:
        cursor.execute(sql, [assignment_id])
        row = cursor.fetchone()
    if row is None:
        raise Assignment.DoesNotExist("Assignment matching query does not exist.")
    assignment = assignment_columns.instance(row, 0, connection)
    Assignment._meta.get_field("annotator").set_cached_value(
        assignment, user_columns.instance(row, assignment_columns.width, connection))
    if assignment.task_id != task.pk:
        raise ValueError(f"Assignment {assignment_id} is not on task {task_id}.")
    assignment.task = task
    return assignment


def _require_own(assignment, actor):
    # Nobody, not even an admin, works in someone else's name: the audit trail must say who did the work.
    if actor is None or actor.pk != assignment.annotator_id:
        raise PermissionDeniedError(_("This assignment belongs to another annotator."))


def _lease_end(project, now):
    return now + timedelta(minutes=project.lease_minutes)


def _result_check(task, result, notes):
    # The schema's rules and the project's own (apps.quality.sanity): a 400 naming the first rule broken.
    submission_check(task.project, task.data, result, notes)


# --- task status: the one place -------------------------------------------------------------------------------


def task_status_derive(task, assignments, pending_review_ids):
    """The status a task should have, from its assignments; `pending_review_ids` are assignments whose current
    annotation waits for a review. Accepted and cancelled are final and only set by their transitions. A task
    needs the project's overlap plus the annotators low-agreement routing added to it (`extra_annotations`):
    until they are in, it is in progress again, never accepted or in review."""
    if task.status in (TS.ACCEPTED, TS.CANCELLED):
        return task.status
    if task.batch.status == Batch.Status.DRAFT:
        return TS.NEW
    reworking = done = pending = fresh_live = held = 0
    for assignment in assignments:
        if assignment.status == AS.REJECTED or (assignment.status in Assignment.LIVE and assignment.rework_count):
            reworking += 1
        elif assignment.status == AS.SUBMITTED and assignment.pk in pending_review_ids:
            pending += 1
        elif assignment.status in (AS.SUBMITTED, AS.APPROVED):
            done += 1
        elif assignment.status in Assignment.LIVE:
            fresh_live += 1
            held += assignment.status == AS.ON_HOLD
    if task.is_gold:
        # Gold tasks are answered by many annotators and scored, never closed by the overlap.
        return TS.IN_PROGRESS if (done or pending or fresh_live or reworking) else TS.OPEN
    if reworking:
        return TS.REWORK
    required = task.project.overlap + task.extra_annotations
    if done >= required and not pending:
        return TS.ACCEPTED
    if pending and done + pending >= required:
        return TS.IN_REVIEW
    if held and held == fresh_live and not (done or pending):
        return TS.ON_HOLD
    if fresh_live or done or pending:
        return TS.IN_PROGRESS
    return TS.OPEN


def _low_agreement_holds(task):
    from apps.quality.routing import acceptance_held

    return acceptance_held(task)


def _assignments_with_pending_read(connection):
    quote = connection.ops.quote_name
    columns = ModelColumns(Assignment, "a", connection)
    waiting = ", ".join(f"'{status}'" for status in (AN.SUBMITTED, AN.ESCALATED))
    return columns, (
        f"SELECT {columns.select}, EXISTS(SELECT 1 FROM {quote(Annotation._meta.db_table)} n "
        f"WHERE n.assignment_id = a.id AND n.is_current AND n.needs_review AND n.status IN ({waiting})) "
        f"FROM {quote(Assignment._meta.db_table)} a WHERE a.task_id = %s")


def _assignments_with_pending(task_id):
    """The task's assignments, and the ids of those whose current annotation waits for a review: one query."""
    connection, (columns, sql) = built_once("assignments_pending", Assignment, _assignments_with_pending_read,
                                         write=True)
    with connection.cursor() as cursor:
        cursor.execute(sql, [task_id])
        rows = cursor.fetchall()
    assignments = [columns.instance(row, 0, connection) for row in rows]
    return assignments, {assignment.pk for assignment, row in zip(assignments, rows) if row[-1]}


@records_actor
def task_status_refresh(*, task, actor=None, assignments=None):
    """Bring a (locked) task's status in line with its assignments; accept it when everything required is in.

    `assignments`: (the task's assignments, the ids of those waiting for a review) as they stand now, when the
    caller read them under the task's lock and knows what it changed since (saves the read)."""
    assignments, pending = assignments or _assignments_with_pending(task.pk)
    status = task_status_derive(task, assignments, pending)
    if status == TS.ACCEPTED and task.status != TS.ACCEPTED and _low_agreement_holds(task):
        status = TS.IN_PROGRESS  # the quality worker routes it first (apps/quality/routing.py)
    if status == TS.ACCEPTED and task.status != TS.ACCEPTED:
        _task_accept_locked(task, actor=actor, automatic=True)
    elif status != task.status:
        task.status = status
        audited_save(task, update_fields=["status", "updated_at"])
    return task.status


def task_final_result(task):
    """The result to deliver: a reviewer's fix if there is one, else the consensus of the current results
    (METRICS.md, Consensus): the majority vote.

    Classification votes on the label; the other types vote on the whole result, compared as its canonical JSON
    text (sorted keys, no spaces). A tie goes to the result of the annotator most accurate on gold among those
    who gave one of the tied results; if they are equally accurate (or none has a gold figure), to the smallest
    label value — for the other types the smallest canonical JSON text, which stands in for "the smallest label
    value" (a set of labels, spans or boxes has no natural order). The gold accuracies are read only on a tie
    (`_gold_accuracy_of`: the engine's annotators snapshot or state, else for classification one aggregate query,
    else unknown — nothing is scored row by row): acceptance runs on the submit path. This is the task's final result; the quality
    engine's task snapshots report the vote and Dawid–Skene beside it but never replace it.
    """
    current = instances(Annotation, f"m.task_id = %s AND m.is_current AND m.status NOT IN ('{AN.REJECTED}', "
                                    f"'{AN.SUPERSEDED}')", [task.pk], order_by="m.submitted_at, m.id")
    if not current:
        return None
    fixes = [a for a in current if a.source == Annotation.Source.REVIEW_FIX]
    if fixes:
        return fixes[-1].result
    classification = task.project.task_type == TaskType.CLASSIFICATION
    votes = {}  # key → the annotations that gave it, oldest first
    for annotation in current:
        votes.setdefault(_vote_key(annotation.result, classification), []).append(annotation)
    most = max(len(annotations) for annotations in votes.values())
    tied = sorted(key for key, annotations in votes.items() if len(annotations) == most)
    if len(tied) > 1:
        accuracy = _gold_accuracy_of(task.project, {a.annotator_id for key in tied for a in votes[key]})

        def best(key):  # the accuracy of the key's most accurate annotator; no figure ranks below every figure
            figures = [accuracy.get(a.annotator_id) for a in votes[key]]
            return max((round(f, 9) for f in figures if f is not None), default=-1.0)

        top = max(best(key) for key in tied)
        tied = [key for key in tied if best(key) == top]  # still sorted: the smallest label value first
    return votes[tied[0]][0].result


def _vote_key(result, classification):
    """What a result votes for: its label (classification), else its canonical JSON text."""
    if classification and isinstance(result, dict) and isinstance(result.get("label"), str):
        return result["label"]
    return json.dumps(result, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _gold_accuracy_of(project, annotator_ids):
    """Each annotator's gold accuracy (METRICS.md: the mean score of their current annotations on gold tasks),
    None when unknown. From the quality engine's latest annotators snapshot when it has them, else from its state
    (the per-annotator gold sums the snapshot is made from). For the others,
    classification is scored in one aggregate query over their gold work ("current" is the annotator's own
    current version, source annotator: gold work is never reviewed, so it has no reviewer's fix); the other types
    have no score the database computes, and this runs on the submit path (acceptance), so their accuracy is
    unknown until the engine's snapshot has it — the tie then goes to the smallest canonical result."""
    from apps.quality import engine
    from apps.quality.models import MetricSnapshot

    def snapshot_latest(kind):  # engine.snapshot_latest, as SQL written once: this runs on the submit path
        latest = instances(MetricSnapshot, "m.project_id = %s AND m.scope = %s AND m.kind = %s",
                           [project.pk, MetricSnapshot.Scope.PROJECT, kind], order_by="m.computed_at DESC", limit=1)
        return latest[0] if latest else None

    accuracy = {}
    snapshot = snapshot_latest(engine.ANNOTATORS)
    if snapshot is not None:
        for row in snapshot.values.get("annotators", []):
            if row.get("annotator_id") in annotator_ids:
                accuracy[row["annotator_id"]] = row.get("gold_accuracy")
    missing = set(annotator_ids) - set(accuracy)
    if missing:  # the engine's running sums, which the snapshot above is made from, when it has not been written
        state = snapshot_latest(engine.STATE)
        for annotator_id, sums in ((state.values if state is not None else {}).get("annotators") or {}).items():
            if int(annotator_id) in missing:
                accuracy[int(annotator_id)] = sums["gold"] / sums["gold_n"] if sums.get("gold_n") else None
        missing -= set(accuracy)
    if not missing or project.task_type != TaskType.CLASSIFICATION:
        return accuracy
    gold_work = Annotation.objects.filter(task__project=project, task__is_gold=True, annotator_id__in=missing,
                                          is_current=True, source=Annotation.Source.ANNOTATOR)
    rows = (gold_work.annotate(label=KeyTextTransform("label", "result"),
                               answer=KeyTextTransform("label", "task__gold_answer"))
            .values("annotator_id").order_by()
            .annotate(n=Count("id"), right=Count("id", filter=Q(label=F("answer")))))
    accuracy.update({row["annotator_id"]: row["right"] / row["n"] for row in rows})
    return accuracy


# --- assignments ------------------------------------------------------------------------------------------------


@records_actor
def assignment_assign(*, task, annotator, actor=None, skip_locked=False):
    """Give `task` to `annotator` with a lease. Refused for a closed task, a full task, or a second time.

    `skip_locked` (the next-task engine, on PostgreSQL): return None at once, changing nothing, when another
    transaction holds the task, instead of waiting for it.
    """
    with transaction.atomic():
        task = _lock_task(task.pk, skip_locked=skip_locked)
        if task is None:
            return None
        return _assign_write(task, annotator, actor, _assign_check(task, annotator))


@records_actor
def assignment_assign_first_free(*, task_ids, annotator, actor=None):
    """The first of `task_ids`, in their order, that no other transaction holds, given to `annotator` as
    `assignment_assign` gives it: (its id, the assignment). (None, None) when other transactions hold every one;
    (its id, None) when it cannot take the annotator (`assignment_assign` would refuse it: no slot left meanwhile,
    closed, theirs already) — the next-task engine then passes over it. PostgreSQL (SKIP LOCKED): one statement
    locks the first free task where trying them one by one cost a transaction per task another request held."""
    with transaction.atomic():
        task = _lock_first_free_task(task_ids)
        if task is None:
            return None, None
        try:
            checked = _assign_check(task, annotator)
        except TransitionError:  # nothing was written: the transaction ends and frees the lock
            return task.pk, None
        return task.pk, _assign_write(task, annotator, actor, checked)


def _assign_check(task, annotator):
    """`assignment_assign`'s refusals, for a task locked by the caller; the task's assignments and those waiting for
    a review, read under the lock (the slots, and the status derived after the assignment)."""
    require_project_perm(annotator, task.project, ANNOTATE)
    if task.batch.status != Batch.Status.ACTIVE:
        _refuse(_("The batch “%(batch)s” is %(status)s, not active.")
                % {"batch": task.batch.name, "status": task.batch.status}, task.batch.status)
    # Free slots decide, not the summary status: a task in rework or on hold may still need annotators.
    if task.status not in (TS.OPEN, TS.IN_PROGRESS, TS.ON_HOLD, TS.REWORK):
        _refuse(_("Task %(id)s is %(status)s and cannot be assigned.") % {"id": task.pk, "status": task.status},
                task.status)
    # Read under the task's lock: the slots now, and the assignments the status is derived from below.
    assignments, pending = _assignments_with_pending(task.pk)
    slots = {"mine": sum(a.annotator_id == annotator.pk for a in assignments),
             "taken": sum(a.status in (*Assignment.LIVE, *Assignment.DONE) for a in assignments)}
    if slots["mine"]:
        _refuse(_("Task %(id)s was already given to this annotator.") % {"id": task.pk}, task.status)
    needed = task.project.overlap + task.extra_annotations  # the task's overlap (low-agreement routing adds)
    if not task.is_gold and slots["taken"] >= needed:
        _refuse(_("Task %(id)s already has the %(n)d annotators it needs.") % {"id": task.pk, "n": needed},
                task.status)
    return assignments, pending


def _assign_write(task, annotator, actor, checked):
    """The assignment, its history row and event, and the task's status, once `_assign_check` let it through."""
    assignments, pending = checked
    now = timezone.now()
    assignment = Assignment(task=task, annotator=annotator, status=AS.ASSIGNED,
                            lease_expires_at=_lease_end(task.project, now))
    assigned = _event(type=TaskEvent.Type.ASSIGNED, project=task.project, task=task, actor=actor or annotator,
                      payload={"annotator": annotator.pk})
    assigned.assignment_id = NEW_ROW
    audited_save(assignment, events=[assigned])
    task_status_refresh(task=task, actor=actor or annotator, assignments=([*assignments, assignment], pending))
    _after_commit_refresh(task.project_id)
    return assignment


@records_actor
def assignment_start(*, assignment, actor):
    """The annotator opened the task (or began rework on a rejected one): assigned|rejected → in_progress."""
    with transaction.atomic():
        assignment = _lock_assignment(assignment.pk, assignment.task_id)
        _require_own(assignment, actor)
        if assignment.status == AS.IN_PROGRESS:
            return assignment  # the portal may call start again after a reload
        if assignment.status not in (AS.ASSIGNED, AS.REJECTED):
            _refuse(_("This assignment is %(status)s and cannot be started.") % {"status": assignment.status},
                    assignment.status)
        _task_open_check(assignment.task)
        rework = assignment.status == AS.REJECTED
        now = timezone.now()
        assignment.status = AS.IN_PROGRESS
        assignment.started_at = assignment.started_at or now
        assignment.lease_expires_at = _lease_end(assignment.task.project, now)
        assignment.save(update_fields=["status", "started_at", "lease_expires_at", "updated_at"])
        event_record(type=TaskEvent.Type.STARTED, project=assignment.task.project, task=assignment.task,
                     assignment=assignment, actor=actor, payload={"rework": rework})
        task_status_refresh(task=assignment.task, actor=actor)
        _after_commit_refresh(assignment.task.project_id)
    return assignment


@records_actor
def assignment_hold(*, assignment, actor, reason):
    """Put work aside (e.g. waiting for a clarification): assigned|in_progress → on_hold. Holds do not expire."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError(_("Say why the task is put on hold."), errors={"reason": [_("This field is required.")]})
    with transaction.atomic():
        assignment = _lock_assignment(assignment.pk)
        _require_own(assignment, actor)
        if assignment.status not in (AS.ASSIGNED, AS.IN_PROGRESS):
            _refuse(_("This assignment is %(status)s and cannot be put on hold.") % {"status": assignment.status},
                    assignment.status)
        assignment.status = AS.ON_HOLD
        assignment.reason = reason
        assignment.lease_expires_at = None
        assignment.save(update_fields=["status", "reason", "lease_expires_at", "updated_at"])
        event_record(type=TaskEvent.Type.HELD, project=assignment.task.project, task=assignment.task,
                     assignment=assignment, actor=actor, payload={"reason": reason})
        task_status_refresh(task=assignment.task, actor=actor)
        _after_commit_refresh(assignment.task.project_id)
    return assignment


@records_actor
def assignment_resume(*, assignment, actor):
    """Back to work after a hold: on_hold → in_progress, with a fresh lease."""
    with transaction.atomic():
        assignment = _lock_assignment(assignment.pk)
        _require_own(assignment, actor)
        if assignment.status != AS.ON_HOLD:
            _refuse(_("This assignment is %(status)s, not on hold.") % {"status": assignment.status},
                    assignment.status)
        _task_open_check(assignment.task)
        now = timezone.now()
        assignment.status = AS.IN_PROGRESS
        assignment.started_at = assignment.started_at or now
        assignment.lease_expires_at = _lease_end(assignment.task.project, now)
        assignment.save(update_fields=["status", "started_at", "lease_expires_at", "updated_at"])
        event_record(type=TaskEvent.Type.RESUMED, project=assignment.task.project, task=assignment.task,
                     assignment=assignment, actor=actor)
        task_status_refresh(task=assignment.task, actor=actor)
        _after_commit_refresh(assignment.task.project_id)
    return assignment


@records_actor
def assignment_skip(*, assignment, actor, reason=""):
    """The annotator gives the task up: assigned|in_progress|on_hold → skipped; the slot goes back to the pool."""
    with transaction.atomic():
        assignment = _lock_assignment(assignment.pk)
        _require_own(assignment, actor)
        if assignment.status not in Assignment.LIVE or assignment.rework_count:
            _refuse(_("This assignment is %(status)s and cannot be skipped.") % {"status": assignment.status}
                    if not assignment.rework_count else _("Rework cannot be skipped; resubmit it."),
                    assignment.status)
        assignment.status = AS.SKIPPED
        assignment.reason = (reason or "").strip()
        assignment.lease_expires_at = None
        assignment.save(update_fields=["status", "reason", "lease_expires_at", "updated_at"])
        event_record(type=TaskEvent.Type.SKIPPED, project=assignment.task.project, task=assignment.task,
                     assignment=assignment, actor=actor, payload={"reason": assignment.reason})
        task_status_refresh(task=assignment.task, actor=actor)
        _after_commit_refresh(assignment.task.project_id)
    return assignment


@records_actor
def assignment_expire(*, assignment, actor=None, now=None):
    """The lease ran out: assigned|in_progress → expired; the slot goes back to the pool."""
    now = now or timezone.now()
    with transaction.atomic():
        assignment = _lock_assignment(assignment.pk)
        if assignment.status not in (AS.ASSIGNED, AS.IN_PROGRESS) or assignment.rework_count:
            _refuse(_("This assignment is %(status)s and cannot expire.") % {"status": assignment.status},
                    assignment.status)
        if assignment.lease_expires_at is None or assignment.lease_expires_at > now:
            _refuse(_("The lease of this assignment has not run out."), assignment.status)
        assignment.status = AS.EXPIRED
        assignment.save(update_fields=["status", "updated_at"])
        event_record(type=TaskEvent.Type.EXPIRED, project=assignment.task.project, task=assignment.task,
                     assignment=assignment, actor=actor,
                     payload={"lease_expires_at": assignment.lease_expires_at.isoformat()})
        task_status_refresh(task=assignment.task, actor=actor)
        _after_commit_refresh(assignment.task.project_id)
    return assignment


def assignments_expire_due(*, now=None, limit=1000):
    """Expire every lease that ran out (the periodic task); safe to run twice at once. Returns how many."""
    now = now or timezone.now()
    due = list(
        Assignment.objects.filter(status__in=[AS.ASSIGNED, AS.IN_PROGRESS], rework_count=0,
                                  lease_expires_at__lte=now).values_list("pk", flat=True)[:limit]
    )
    expired = 0
    for assignment_id in due:
        try:
            assignment_expire(assignment=Assignment(pk=assignment_id), now=now)
            expired += 1
        except TransitionError:
            pass  # another worker, a submit or a start got there first
    return expired


def _task_open_check(task):
    if task.status in (TS.ACCEPTED, TS.CANCELLED):
        _refuse(_("Task %(id)s is %(status)s; no more work is taken on it.") % {"id": task.pk, "status": task.status},
                task.status)


def _needs_review(task, *, resubmission):
    if task.is_gold:
        return False  # gold answers are scored automatically
    mode = task.project.review_mode
    if resubmission:
        return mode != Project.ReviewMode.NONE
    if mode == Project.ReviewMode.ALL:
        return True
    if mode == Project.ReviewMode.SAMPLE:
        return random.random() < task.project.review_sample_rate
    return False


def _annotation_append(*, assignment, author, result, notes, lead_time_seconds, source, status, needs_review,
                       idempotency_key=None, first=False):
    """Write the next version of an assignment's result and retire the previous one (never rewritten). `first`: the
    caller knows there is none yet (a first submission: live, never reworked), so nothing is read; the unique
    constraints on (assignment, version) and the current version would refuse a second version 1."""
    # Every version of this assignment at once (a handful), newest first: the current one and the last number.
    versions = [] if first else list(assignment.annotations.select_for_update().order_by("-version"))
    previous = next((annotation for annotation in versions if annotation.is_current), None)
    if previous is not None:
        previous.is_current = False
        if previous.status in (AN.SUBMITTED, AN.REJECTED, AN.ESCALATED, AN.APPROVED):
            previous.status = AN.SUPERSEDED
        previous.save(update_fields=["is_current", "status"])
    last_version = versions[0].version if versions else 0
    guideline = assignment.task.project.current_guideline
    return audited_save(Annotation(
        task=assignment.task, assignment=assignment, annotator=assignment.annotator, author=author,
        version=last_version + 1, source=source, result=result, notes=notes or "",
        lead_time_seconds=lead_time_seconds, guideline=guideline,
        guideline_version=guideline.version if guideline else None, status=status, needs_review=needs_review,
        idempotency_key=idempotency_key or None,
    ))


def _submission_replay(assignment_id, idempotency_key, actor):
    """The annotation an earlier request with this key wrote; only its own annotator (or an admin) gets it back."""
    if not idempotency_key:
        return None
    replay = (Annotation.objects.select_related("assignment")
              .filter(assignment_id=assignment_id, idempotency_key=idempotency_key).first())
    if replay is not None:
        _require_own(replay.assignment, actor)
    return replay


def _lead_time_check(lead_time_seconds):
    if lead_time_seconds is None:
        return None
    try:
        value = float(lead_time_seconds)
    except (TypeError, ValueError):
        value = -1
    if not 0 <= value < 7 * 24 * 3600:
        raise ValidationError(_("lead_time_seconds must be a number of seconds ≥ 0."),
                              errors={"lead_time_seconds": [_("Invalid lead time.")]})
    return value


@records_actor
def assignment_submit(*, assignment, actor, result, notes="", lead_time_seconds=None, idempotency_key=None):
    """First submission: assigned|in_progress → submitted, writing annotation version 1.

    A retry with the same `idempotency_key` returns the first annotation and changes nothing.
    """
    replay = _submission_replay(assignment.pk, idempotency_key, actor)
    if replay is not None:
        return replay
    lead_time_seconds = _lead_time_check(lead_time_seconds)
    with transaction.atomic():
        assignment = _lock_assignment(assignment.pk, assignment.task_id)
        _require_own(assignment, actor)
        replay = _submission_replay(assignment.pk, idempotency_key, actor)
        if replay is not None:
            return replay
        if assignment.status not in (AS.ASSIGNED, AS.IN_PROGRESS) or assignment.rework_count:
            _refuse(_("This assignment is %(status)s and cannot be submitted.") % {"status": assignment.status}
                    if not assignment.rework_count else _("This is rework: resubmit it."), assignment.status)
        task = assignment.task
        _task_open_check(task)
        _result_check(task, result, notes)
        now = timezone.now()
        annotation = _annotation_append(
            assignment=assignment, author=actor, result=result, notes=notes, lead_time_seconds=lead_time_seconds,
            source=Annotation.Source.ANNOTATOR, status=AN.SUBMITTED,
            needs_review=_needs_review(task, resubmission=False), idempotency_key=idempotency_key, first=True,
        )
        assignment.status = AS.SUBMITTED
        assignment.started_at = assignment.started_at or now
        assignment.submitted_at = now
        assignment.lease_expires_at = None
        submitted = _event(type=TaskEvent.Type.SUBMITTED, project=task.project, task=task, assignment=assignment,
                           actor=actor, payload={"annotation": annotation.pk, "version": annotation.version,
                                                 "lead_time_seconds": lead_time_seconds})
        audited_save(assignment, update_fields=["status", "started_at", "submitted_at", "lease_expires_at",
                                                "updated_at"], events=[submitted])
        task_status_refresh(task=task, actor=actor)
        _after_commit_refresh(task.project_id)
    return annotation


@records_actor
def assignment_resubmit(*, assignment, actor, result, notes="", lead_time_seconds=None, idempotency_key=None):
    """Rework after a rejection: rejected|in_progress (rework) → submitted, as a new annotation version."""
    replay = _submission_replay(assignment.pk, idempotency_key, actor)
    if replay is not None:
        return replay
    lead_time_seconds = _lead_time_check(lead_time_seconds)
    with transaction.atomic():
        assignment = _lock_assignment(assignment.pk)
        _require_own(assignment, actor)
        replay = _submission_replay(assignment.pk, idempotency_key, actor)
        if replay is not None:
            return replay
        if not assignment.rework_count or assignment.status not in (AS.REJECTED, AS.IN_PROGRESS):
            _refuse(_("This assignment is %(status)s; only rejected work can be resubmitted.")
                    % {"status": assignment.status}, assignment.status)
        task = assignment.task
        _task_open_check(task)
        _result_check(task, result, notes)
        now = timezone.now()
        annotation = _annotation_append(
            assignment=assignment, author=actor, result=result, notes=notes, lead_time_seconds=lead_time_seconds,
            source=Annotation.Source.ANNOTATOR, status=AN.SUBMITTED,
            needs_review=_needs_review(task, resubmission=True), idempotency_key=idempotency_key,
        )
        assignment.status = AS.SUBMITTED
        assignment.submitted_at = now
        assignment.lease_expires_at = None
        assignment.save(update_fields=["status", "submitted_at", "lease_expires_at", "updated_at"])
        event_record(type=TaskEvent.Type.RESUBMITTED, project=task.project, task=task, assignment=assignment,
                     actor=actor, payload={"annotation": annotation.pk, "version": annotation.version,
                                           "lead_time_seconds": lead_time_seconds})
        task_status_refresh(task=task, actor=actor)
        _after_commit_refresh(task.project_id)
    return annotation


# --- reviews ------------------------------------------------------------------------------------------------------


def _lock_annotation_for_review(annotation_id, reviewer):
    annotation_row = Annotation.objects.values("task_id", "assignment_id").get(pk=annotation_id)
    task = _lock_task(annotation_row["task_id"])
    assignment = Assignment.objects.select_for_update().get(pk=annotation_row["assignment_id"])
    annotation = Annotation.objects.select_for_update().get(pk=annotation_id)
    assignment.task = task
    annotation.task, annotation.assignment = task, assignment
    require_project_perm(reviewer, task.project, REVIEW)
    if annotation.annotator_id == reviewer.pk:
        raise PermissionDeniedError(_("Nobody reviews their own work."))
    if annotation.status == AN.ESCALATED and not reviewer_is_senior(reviewer):
        raise PermissionDeniedError(_("Escalated work is decided by a senior or lead reviewer."))
    _task_open_check(task)
    if not annotation.is_current or annotation.status not in (AN.SUBMITTED, AN.ESCALATED) \
            or assignment.status != AS.SUBMITTED:
        _refuse(_("Annotation %(id)s is %(status)s and is not waiting for a review.")
                % {"id": annotation.pk, "status": annotation.status if annotation.is_current else AN.SUPERSEDED},
                annotation.status)
    _claim_check([annotation], reviewer)
    return annotation


def review_claim_minutes():
    """How long an open (started, undecided) review holds its annotation for its reviewer: the review queue's
    CLAIM_MINUTES, so that what the queue leaves to a reviewer is also refused to the others."""
    from .review_queue import CLAIM_MINUTES

    return CLAIM_MINUTES


def _senior_reviewer_ids():
    """The users whose AnnotatorProfile makes them senior or lead (a subquery: one rule for `reviewer_is_senior`
    and for the claims that count on escalated work)."""
    from apps.annotators.models import AnnotatorProfile

    return AnnotatorProfile.objects.filter(
        seniority__in=[AnnotatorProfile.Seniority.SENIOR, AnnotatorProfile.Seniority.LEAD]).values("user_id")


def review_claims_by_others(user, now=None):
    """The claims that hold annotations away from `user` (a reviewer): another reviewer's open (undecided) review started
    (or re-stamped by the queue, see review_queue.review_next) less than `review_claim_minutes()` ago. On
    escalated work only a senior's or lead's claim counts: a junior's open review from before the escalation
    (low-agreement routing) cannot be decided by them any more and must not hold the work back from the seniors.

    The one definition of "claimed": `_claim_check` refuses with it and the review queue skips with it
    (`claimed_by_others`), so what the queue leaves to someone is exactly what the others may not decide."""
    from apps.quality.models import Review

    now = now or timezone.now()
    return (Review.objects.filter(decided_at__isnull=True,
                                  started_at__gte=now - timedelta(minutes=review_claim_minutes()))
            .exclude(reviewer=user)
            .filter(~Q(annotation__status=AN.ESCALATED) | Q(reviewer__in=_senior_reviewer_ids())))


def claimed_by_others(user, now=None, annotation="pk"):
    """For Annotation querysets: the annotation (the outer query's `annotation` field) is claimed by someone other
    than `user` (`review_claims_by_others`)."""
    return Exists(review_claims_by_others(user, now).filter(annotation=OuterRef(annotation)))


def _claim_check(annotations, reviewer, now=None):
    """Refuse (409) to start or decide a review of an annotation that another reviewer holds
    (`review_claims_by_others`). Call with the task locked (every review transition locks it first), so that no
    claim appears between this check and the write.

    The claim binds everyone, managers and admins included: deciding over it would throw away the claimant's
    work in progress (a fix being drawn, a comment being written) without telling them. It lapses on its own: a
    stale claim (the reviewer left) does not block, and whoever starts the annotation next holds it."""
    now = now or timezone.now()
    claims = (review_claims_by_others(reviewer, now).filter(annotation__in=[a.pk for a in annotations])
              .select_related("reviewer").order_by("annotation_id", "started_at", "id"))
    holders = {}
    for claim in claims:
        holders.setdefault(claim.annotation_id, claim)  # the earliest one is named
    for annotation in annotations:
        claim = holders.get(annotation.pk)
        if claim is not None:
            minutes = max(0, int((now - claim.started_at).total_seconds() // 60))
            _refuse(_("Annotation %(id)s is claimed by %(reviewer)s, who opened its review %(minutes)d min ago: "
                      "only they decide it, until they do or %(claim)d minutes have passed.")
                    % {"id": annotation.pk, "reviewer": claim.reviewer.get_username(), "minutes": minutes,
                       "claim": review_claim_minutes()}, "claimed")


def _review_open(annotation, reviewer, now):
    """The reviewer's open review of this annotation, started now if they had none."""
    from apps.quality.models import Review

    review = Review.objects.filter(annotation=annotation, reviewer=reviewer, decided_at__isnull=True).first()
    if review is None:
        review = Review.objects.create(annotation=annotation, reviewer=reviewer)
        event_record(type=TaskEvent.Type.REVIEW_STARTED, project=annotation.task.project, task=annotation.task,
                     assignment=annotation.assignment, actor=reviewer, payload={"annotation": annotation.pk,
                                                                                "review": review.pk})
    return review


@records_actor
def review_start(*, annotation, reviewer):
    """A reviewer opened an annotation: records the start (for review latency) and claims it (`_claim_check`).
    Safe to call twice."""
    with transaction.atomic():
        annotation = _lock_annotation_for_review(annotation.pk, reviewer)
        return _review_open(annotation, reviewer, timezone.now())


@records_actor
def review_claim_refresh(*, annotation, reviewer):
    """The queue hands a reviewer back their own open review: re-stamp it (and their open reviews of the task's
    other annotations, which a side-by-side decision covers) so that the claim of a reviewer still at work does not
    lapse under them. Refused (409, nothing changed) when another reviewer claimed the annotation meanwhile.

    The re-stamp moves the review's `started_at`, which is what the claim runs from: `started_at` is "claimed
    since". Review latency is not measured from it (METRICS.md: decided_at − submitted_at), and the first opening
    stays recorded as the review_started TaskEvent."""
    from apps.quality.models import Review

    with transaction.atomic():
        task = _lock_task(annotation.task_id)
        now = timezone.now()
        _claim_check([Annotation.objects.get(pk=annotation.pk)], reviewer, now)
        mine = Review.objects.filter(annotation__task=task, reviewer=reviewer, decided_at__isnull=True)
        if mine.update(started_at=now):
            history_record_queryset(mine, reason="claim refreshed")  # an update() writes no history by itself


@records_actor
def reviews_release(*, project, reviewer, keep_task=None):
    """Give up the reviewer's open (undecided) reviews in the project, but those of `keep_task`: the review queue
    serves a reviewer one task at a time, so what they left behind (an annotation shown in the queue they switched
    away from, a review that can no longer be decided) stops holding work back from the other reviewers at once
    rather than after the claim's minutes. An open review holds no decision, only the claim: it is deleted (its
    review_started TaskEvent stays; the delete sends its signals, so the history keeps the row). Returns how many
    were released."""
    from apps.quality.models import Review

    open_reviews = Review.objects.filter(annotation__task__project=project, reviewer=reviewer,
                                         decided_at__isnull=True)
    if keep_task is not None:
        open_reviews = open_reviews.exclude(annotation__task=keep_task)
    released = 0
    for task_id in sorted(set(open_reviews.values_list("annotation__task_id", flat=True))):
        with transaction.atomic():  # under the task's lock, as every review transition
            _lock_task(task_id)
            released += open_reviews.filter(annotation__task_id=task_id).delete()[1].get("quality.Review", 0)
    return released


def _error_types_resolve(project, error_types):
    from apps.quality.models import ErrorType

    codes = [getattr(item, "code", item) for item in (error_types or [])]
    found = list(ErrorType.objects.filter(project=project, code__in=codes, is_active=True))
    missing = sorted(set(codes) - {e.code for e in found})
    if missing:
        raise ValidationError(_("Unknown error type(s): %(codes)s.") % {"codes": ", ".join(map(str, missing))},
                              errors={"error_types": [_("Unknown: %(c)s") % {"c": c} for c in missing]})
    return found


def _review_decide(review, *, decision, comment, error_types, corrected=None, now):
    review.decision = decision
    review.comment = comment or ""
    # A review opened by this very decision was stamped a moment after `now`: never decide before starting.
    review.decided_at = max(now, review.started_at)
    review.corrected_annotation = corrected
    review.save(update_fields=["decision", "comment", "decided_at", "corrected_annotation"])
    if error_types:
        review.error_types.set(error_types)
    return review


@records_actor
def review_approve(*, annotation, reviewer, comment=""):
    """submitted → approved; the task is accepted once all its required annotations are approved."""
    with transaction.atomic():
        annotation = _lock_annotation_for_review(annotation.pk, reviewer)
        now = timezone.now()
        review = _review_decide(_review_open(annotation, reviewer, now), decision="approve", comment=comment,
                                error_types=[], now=now)
        annotation.status = AN.APPROVED
        annotation.save(update_fields=["status"])
        annotation.assignment.status = AS.APPROVED
        annotation.assignment.save(update_fields=["status", "updated_at"])
        event_record(type=TaskEvent.Type.APPROVED, project=annotation.task.project, task=annotation.task,
                     assignment=annotation.assignment, actor=reviewer,
                     payload={"annotation": annotation.pk, "review": review.pk})
        task_status_refresh(task=annotation.task, actor=reviewer)
        _after_commit_refresh(annotation.task.project_id)
    return review


@records_actor
def review_reject(*, annotation, reviewer, error_types, comment):
    """submitted → rejected: the work goes back to its annotator as rework, with error types (one or more) and a
    comment (required: it is what the annotator reads on their rework)."""
    comment = (comment or "").strip()
    with transaction.atomic():
        # Who may decide (403) and whether it can be decided now (409) come before what the decision says (400).
        annotation = _lock_annotation_for_review(annotation.pk, reviewer)
        found = _reject_input_check(annotation.task.project, error_types, comment)
        now = timezone.now()
        review = _review_decide(_review_open(annotation, reviewer, now), decision="reject", comment=comment,
                                error_types=found, now=now)
        annotation.status = AN.REJECTED
        annotation.save(update_fields=["status"])
        assignment = annotation.assignment
        assignment.status = AS.REJECTED
        assignment.rework_count += 1  # the row is locked; history needs a plain value, not an F()
        assignment.save(update_fields=["status", "rework_count", "updated_at"])
        event_record(type=TaskEvent.Type.REJECTED, project=annotation.task.project, task=annotation.task,
                     assignment=assignment, actor=reviewer,
                     payload={"annotation": annotation.pk, "review": review.pk,
                              "error_types": sorted(e.code for e in found)})
        task_status_refresh(task=annotation.task, actor=reviewer)
        _after_commit_refresh(annotation.task.project_id)
    return review


def _reject_input_check(project, error_types, comment):
    """The project's active error types a rejection names; refused (400) without one, with an unknown or retired
    one, or without a comment, every field at fault named."""
    missing = {"comment": [_("This field is required.")]} if not comment else {}
    if not error_types:
        raise ValidationError(_("Choose at least one error type when rejecting."),
                              errors={"error_types": [_("This field is required.")], **missing})
    try:
        found = _error_types_resolve(project, error_types)
    except ValidationError as refused:
        raise ValidationError(refused.message, errors={**refused.errors, **missing}) from None
    if missing:
        raise ValidationError(_("Write a comment for the annotator when rejecting."), errors=missing)
    return found


@records_actor
def review_fix(*, annotation, reviewer, corrected_result, error_types=(), comment=""):
    """Fix and accept: the corrected result becomes a new version written by the reviewer, approved; the
    annotator's version stays in the history."""
    with transaction.atomic():
        annotation = _lock_annotation_for_review(annotation.pk, reviewer)
        # The reviewer's comment stands for the note a label needs: the fix keeps the annotator's notes.
        _result_check(annotation.task, corrected_result, "\n".join([annotation.notes, comment or ""]))
        found = _error_types_resolve(annotation.task.project, error_types)
        now = timezone.now()
        review = _review_open(annotation, reviewer, now)
        corrected = _annotation_append(
            assignment=annotation.assignment, author=reviewer, result=corrected_result, notes=annotation.notes,
            lead_time_seconds=None, source=Annotation.Source.REVIEW_FIX, status=AN.APPROVED, needs_review=False,
        )
        _review_decide(review, decision="fix", comment=comment, error_types=found, corrected=corrected, now=now)
        annotation.assignment.status = AS.APPROVED
        annotation.assignment.save(update_fields=["status", "updated_at"])
        event_record(type=TaskEvent.Type.FIXED, project=annotation.task.project, task=annotation.task,
                     assignment=annotation.assignment, actor=reviewer,
                     payload={"annotation": annotation.pk, "corrected_annotation": corrected.pk, "review": review.pk,
                              "error_types": sorted(e.code for e in found)})
        task_status_refresh(task=annotation.task, actor=reviewer)
        _after_commit_refresh(annotation.task.project_id)
    return review


@records_actor
def review_escalate(*, annotation, reviewer, comment):
    """Hand a hard case to a senior reviewer: the annotation stays in review, in the escalation queue."""
    comment = (comment or "").strip()
    if not comment:
        raise ValidationError(_("Say why you escalate."), errors={"comment": [_("This field is required.")]})
    with transaction.atomic():
        annotation = _lock_annotation_for_review(annotation.pk, reviewer)
        if annotation.status == AN.ESCALATED:
            _refuse(_("Annotation %(id)s is already escalated.") % {"id": annotation.pk}, annotation.status)
        now = timezone.now()
        review = _review_decide(_review_open(annotation, reviewer, now), decision="escalate", comment=comment,
                                error_types=[], now=now)
        annotation.status = AN.ESCALATED
        annotation.needs_review = True
        annotation.save(update_fields=["status", "needs_review"])
        event_record(type=TaskEvent.Type.ESCALATED, project=annotation.task.project, task=annotation.task,
                     assignment=annotation.assignment, actor=reviewer,
                     payload={"annotation": annotation.pk, "review": review.pk})
        task_status_refresh(task=annotation.task, actor=reviewer)
        _after_commit_refresh(annotation.task.project_id)
    return review


def task_escalate_to_senior_review(*, task, comment, payload=None):
    """The quality engine sends a task to senior review (low agreement): its current annotations that wait for a
    decision (or need none) go to the escalation queue, which only senior and lead reviewers work. Nobody acts:
    the events name no actor. Returns the escalated annotations; none for a task no longer open."""
    with transaction.atomic():
        task = _lock_task(task.pk)
        if task.status in (TS.ACCEPTED, TS.CANCELLED):
            return []
        # Approved work too: a task held back from acceptance while routing can act may have been approved by a
        # reviewer before the worker saw its agreement; a senior decides it again.
        annotations = list(Annotation.objects.select_for_update(of=("self",)).select_related("assignment").filter(
            task=task, is_current=True, status__in=[AN.SUBMITTED, AN.APPROVED],
            assignment__status__in=[AS.SUBMITTED, AS.APPROVED]).order_by("id"))
        for annotation in annotations:
            annotation.status = AN.ESCALATED
            annotation.needs_review = True
            annotation.save(update_fields=["status", "needs_review"])
            if annotation.assignment.status == AS.APPROVED:
                annotation.assignment.status = AS.SUBMITTED  # waiting for the senior's decision again
                annotation.assignment.save(update_fields=["status", "updated_at"])
            event_record(type=TaskEvent.Type.ESCALATED, project=task.project, task=task,
                         assignment=annotation.assignment, actor=None,
                         payload={"annotation": annotation.pk, "comment": comment, **(payload or {})})
        if annotations:
            task_status_refresh(task=task, actor=None)
            _after_commit_refresh(task.project_id)
    return annotations


# --- tasks ---------------------------------------------------------------------------------------------------------


def _outstanding_release(task, reason):
    """Release the work still held on a task that is being closed: live assignments and rework waiting for its
    annotator, which would otherwise come back as their "next task" and could be neither done nor skipped."""
    released = 0
    for assignment in task.assignments.select_for_update().filter(status__in=[*Assignment.LIVE, AS.REJECTED]):
        assignment.status = AS.SKIPPED
        assignment.reason = reason
        assignment.lease_expires_at = None
        assignment.save(update_fields=["status", "reason", "lease_expires_at", "updated_at"])
        released += 1
    return released


def _task_accept_locked(task, *, actor, automatic, final_result=None, payload=None):
    task.status = TS.ACCEPTED
    task.accepted_at = timezone.now()
    task.final_result = final_result if final_result is not None else task_final_result(task)
    audited_save(task, update_fields=["status", "accepted_at", "final_result", "updated_at"],
                 events=[_event(type=TaskEvent.Type.ACCEPTED, project=task.project, task=task, actor=actor,
                                payload={"automatic": automatic, **(payload or {})})])
    from apps.quality.services import webhooks_notify

    webhooks_notify(project_id=task.project_id, event="task.accepted",
                    payload={"task": task.pk, "external_id": task.external_id, "result": task.final_result})


@records_actor
def task_accept(*, task, actor):
    """A manager accepts a task with its current results: in_progress|in_review|rework|on_hold → accepted.

    Work still outstanding on it (live assignments, rework not yet resubmitted) is released."""
    with transaction.atomic():
        task = _lock_task(task.pk)
        require_project_perm(actor, task.project, MANAGE)
        if task.status not in (TS.IN_PROGRESS, TS.IN_REVIEW, TS.REWORK, TS.ON_HOLD):
            _refuse(_("Task %(id)s is %(status)s and cannot be accepted.") % {"id": task.pk, "status": task.status},
                    task.status)
        if not Annotation.objects.filter(task=task, is_current=True).exclude(status=AN.REJECTED).exists():
            _refuse(_("Task %(id)s has no submitted result to accept.") % {"id": task.pk}, task.status)
        released = _outstanding_release(task, _("Task accepted"))
        _task_accept_locked(task, actor=actor, automatic=False, payload={"released_assignments": released})
        _after_commit_refresh(task.project_id)
    return task


@records_actor
def task_cancel(*, task, actor, reason=""):
    """Take a task out of the work: any open status → cancelled; live assignments and pending rework are released."""
    with transaction.atomic():
        task = _lock_task(task.pk)
        require_project_perm(actor, task.project, MANAGE)
        if task.status in (TS.ACCEPTED, TS.CANCELLED):
            _refuse(_("Task %(id)s is %(status)s and cannot be cancelled.") % {"id": task.pk, "status": task.status},
                    task.status)
        released = _outstanding_release(task, _("Task cancelled"))
        task.status = TS.CANCELLED
        task.save(update_fields=["status", "updated_at"])
        event_record(type=TaskEvent.Type.CANCELLED, project=task.project, task=task, actor=actor,
                     payload={"reason": reason, "released_assignments": released})
        _after_commit_refresh(task.project_id)
    return task


@records_actor
def annotation_revert(*, annotation, actor):
    """A manager restores an earlier version of an assignment's result — as a new version, never a rewrite."""
    with transaction.atomic():
        assignment = _lock_assignment(annotation.assignment_id)
        require_project_perm(actor, assignment.task.project, MANAGE)
        source = Annotation.objects.get(pk=annotation.pk)
        current = assignment.annotations.filter(is_current=True).first()
        if current is not None and current.pk == source.pk:
            _refuse(_("Version %(v)d is already the current one.") % {"v": source.version}, current.status)
        status = current.status if current is not None and current.status != AN.SUPERSEDED else AN.SUBMITTED
        reverted = _annotation_append(
            assignment=assignment, author=actor, result=source.result, notes=source.notes,
            lead_time_seconds=None, source=Annotation.Source.REVERT, status=status,
            needs_review=current.needs_review if current is not None else False,
        )
        event_record(type=TaskEvent.Type.REVERTED, project=assignment.task.project, task=assignment.task,
                     assignment=assignment, actor=actor,
                     payload={"from_version": source.version, "new_version": reverted.version})
        if assignment.task.status == TS.ACCEPTED:
            assignment.task.final_result = task_final_result(assignment.task)
            assignment.task.save(update_fields=["final_result", "updated_at"])
    return reverted


# --- clarifications ----------------------------------------------------------------------------------------------


@records_actor
def clarification_ask(*, task, actor, question, confidential=False):
    """An annotator asks about a task; their assignment on it goes on hold until a manager answers."""
    question = (question or "").strip()
    if not question:
        raise ValidationError(_("Write your question."), errors={"question": [_("This field is required.")]})
    with transaction.atomic():
        task = _lock_task(task.pk)
        if not has_project_perm(actor, task.project, ANNOTATE) and not has_project_perm(actor, task.project, MANAGE):
            raise PermissionDeniedError(_("Only the project's annotators ask clarifications."))
        assignment = task.assignments.select_for_update().filter(annotator=actor).first()
        clarification = Clarification.objects.create(task=task, assignment=assignment, asked_by=actor,
                                                     question=question, confidential=bool(confidential))
        event_record(type=TaskEvent.Type.CLARIFICATION_ASKED, project=task.project, task=task,
                     assignment=assignment, actor=actor, payload={"clarification": clarification.pk})
        # In the same transaction, under the locks taken above: the question and the hold stand or fall together.
        if assignment is not None and assignment.status in (AS.ASSIGNED, AS.IN_PROGRESS):
            assignment_hold(assignment=assignment, actor=actor,
                            reason=_("Waiting for clarification #%(id)d") % {"id": clarification.pk})
    return clarification


@records_actor
def clarification_answer(*, clarification, actor, answer):
    """A manager answers; the annotator is told on their home page and can resume."""
    answer = (answer or "").strip()
    if not answer:
        raise ValidationError(_("Write the answer."), errors={"answer": [_("This field is required.")]})
    with transaction.atomic():
        clarification = Clarification.objects.select_for_update().select_related("task__project").get(
            pk=clarification.pk)
        require_project_perm(actor, clarification.task.project, MANAGE)
        if clarification.status != Clarification.Status.OPEN:
            _refuse(_("This clarification was already answered."), clarification.status)
        clarification.status = Clarification.Status.ANSWERED
        clarification.answer = answer
        clarification.answered_by = actor
        clarification.answered_at = timezone.now()
        clarification.save(update_fields=["status", "answer", "answered_by", "answered_at", "updated_at"])
        event_record(type=TaskEvent.Type.CLARIFICATION_ANSWERED, project=clarification.task.project,
                     task=clarification.task, assignment=clarification.assignment, actor=actor,
                     payload={"clarification": clarification.pk})
    return clarification


def reviewer_is_senior(user):
    """Senior and lead reviewers take escalations (AnnotatorProfile seniority)."""
    return _senior_reviewer_ids().filter(user_id=user.pk).exists()


@records_actor
def review_pairwise_resolve(*, task, reviewer, result, picked=None, error_types=(), comment=""):
    """Pairwise review of a task with several annotations waiting: the reviewer picks one (`picked`) or merges
    them into `result`. Every annotation whose result is the final result (the picked one, and any other equal
    to it, compared by `_result_canonical`) is approved; every other one is fixed to the final result (a new
    version by the reviewer, with the error types; the annotators' versions stay in the history). All or nothing: refused (409) when
    another reviewer holds any of them (`_claim_check`)."""
    with transaction.atomic():
        task = _lock_task(task.pk)
        waiting = list(Annotation.objects.filter(
            task=task, is_current=True, needs_review=True, status__in=[AN.SUBMITTED, AN.ESCALATED],
            assignment__status=AS.SUBMITTED).order_by("id"))
        if len(waiting) < 2:
            _refuse(_("Task %(id)s has fewer than two annotations waiting for review.") % {"id": task.pk},
                    task.status)
        # All of them are decided here: one another reviewer holds refuses the whole resolution, up front.
        _claim_check(waiting, reviewer)
        if picked is not None:
            chosen = next((a for a in waiting if a.pk == getattr(picked, "pk", picked)), None)
            if chosen is None:
                raise ValidationError(_("The picked annotation is not one of those waiting on this task."),
                                      errors={"annotation": [_("Not waiting for review on this task.")]})
            result = chosen.result
        reviews = []
        final = _result_canonical(result, task.project.task_type)
        for annotation in waiting:
            # Whoever gave the final result was right: approved, not fixed, and not marked with the error types
            # meant for the others (which would count against their error and acceptance figures).
            if _result_canonical(annotation.result, task.project.task_type) == final:
                reviews.append(review_approve(annotation=annotation, reviewer=reviewer, comment=comment))
            else:
                reviews.append(review_fix(annotation=annotation, reviewer=reviewer, corrected_result=result,
                                          error_types=error_types, comment=comment))
    return reviews


def _result_canonical(result, task_type):
    """A result as a comparable value: two results are the same when they say the same thing — for
    classification the same label, for the other types the same labels, spans or boxes in any order (as the
    review page's comparison)."""
    if task_type == TaskType.CLASSIFICATION and isinstance(result, dict) and "label" in result:
        return json.dumps([result.get("label")])

    def canon(value):
        if isinstance(value, dict):
            return {key: canon(item) for key, item in value.items()}
        if isinstance(value, list):
            return sorted((canon(item) for item in value),
                          key=lambda item: json.dumps(item, sort_keys=True, separators=(",", ":")))
        return value

    return json.dumps(canon(result or {}), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
