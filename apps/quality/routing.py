"""Automatic routing (issue #6, parts 5 and 6): low-agreement tasks and annotators flagged `low_gold`.

Run by the quality worker after the figures are updated (services.quality_refresh, quality_recompute_full), never
by a request. Each pass is a few queries whatever the size of the project:

- A task is low when its agreement (the task snapshot's mean pairwise score of its current annotations, over at
  least 2 of them) is below the project's `low_agreement_threshold`, and it is neither gold nor accepted/cancelled.
  A low task raises one alert (kind low_agreement_task, the task on it; the database's `alert_one_live_per_task`
  refuses a second live one) and is routed as the project says: `extra_annotator` asks for one more annotator
  (Task.extra_annotations, up to `max_overlap`, by default overlap + 1) once the ones asked for before are in;
  `senior_review` sends its waiting annotations to the escalation queue, once. The alert resolves itself when the
  task is no longer low (its agreement rose, it was accepted or cancelled, or the threshold was removed). A task
  whose last required annotation leaves it low is not accepted automatically while routing can still act on it
  (`acceptance_held`, asked by the task-status rule): without review it would be accepted before the worker saw it.
- An annotator the annotators snapshot flags `low_gold` on a project with `pause_low_gold` is paused there
  (projects.services.membership_pause) with an alert for the managers; a manager's resume holds until the
  annotator has answered OUTLIER_MIN_OBSERVATIONS more gold tasks and is still flagged.

Idempotent and safe with two workers at once: the writers of a project are serialised by the project lock, the
tasks routed are locked and re-checked, and a task is routed again only when its state says so (the annotators
asked for are in; never routed before for senior review).
"""

from django.db import transaction
from django.db.models import Count, Exists, F, FloatField, IntegerField, OuterRef, Subquery
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone, translation

from apps.projects.models import Membership, Project
from apps.tasks.models import Annotation, Task, TaskEvent

from .engine import ANNOTATORS, SCOPE, TASK_AGREEMENT, project_lock, snapshot_latest
from .metrics import OUTLIER_MIN_OBSERVATIONS
from .models import Alert, MetricSnapshot

LIVE = (Alert.State.OPEN, Alert.State.ACKNOWLEDGED)
FINAL = (Task.Status.ACCEPTED, Task.Status.CANCELLED)
ROUTING = Project.Routing
ROUTING_REASON = {ROUTING.EXTRA_ANNOTATOR: "low agreement: one more annotator",
                  ROUTING.SENIOR_REVIEW: "low agreement: senior review"}


# --- low-agreement tasks --------------------------------------------------------------------------------------------

def _low_snapshots(project, threshold, *, since=None):
    """The task snapshots of the project's low tasks (see the module docstring), with `agreement` and `n`."""
    snapshots = MetricSnapshot.objects.filter(project=project, scope=SCOPE.TASK, kind=TASK_AGREEMENT)
    if since is not None:
        snapshots = snapshots.filter(computed_at__gte=since)
    return (snapshots
            .annotate(agreement=Cast(KeyTextTransform("value", "values__agreement"), FloatField()),
                      n=Cast(KeyTextTransform("n", "values__agreement"), IntegerField()))
            .filter(agreement__lt=threshold, n__gte=2, task__is_gold=False)
            .exclude(task__status__in=FINAL))


def max_overlap(project):
    """The most annotators routing may give a task: the project's setting, by default overlap + 1."""
    return project.max_overlap if project.max_overlap is not None else project.overlap + 1


def _alerts_resolve(project, threshold, now, since=None):
    """Resolve the live low-agreement alerts whose task is no longer low. Returns them.

    After an incremental update (`since`) only the alerts of the tasks it touched are looked at: a project may
    have thousands of live alerts, and asking each one's task took a tenth of a second at 10,000. An alert whose
    task was accepted or cancelled is resolved by the next full pass (QUALITY_RECOMPUTE_DEBOUNCE_SECONDS after the
    last one on a busy project, at most the beat's 10 minutes)."""
    live = Alert.objects.filter(project=project, kind=Alert.Kind.LOW_AGREEMENT_TASK, state__in=LIVE)
    if threshold is not None:
        if since is not None:
            # The touched tasks' ids first, as a list: as a subquery the planner asked every live alert's snapshot.
            live = live.filter(task_id__in=list(MetricSnapshot.objects.filter(
                project=project, scope=SCOPE.TASK, kind=TASK_AGREEMENT, computed_at__gte=since)
                .values_list("task_id", flat=True)))
        live = live.exclude(Exists(_low_snapshots(project, threshold).filter(task_id=OuterRef("task_id"))))
    resolved = list(live)
    for alert in resolved:
        alert.state, alert.resolved_at = Alert.State.RESOLVED, now
        alert.save(update_fields=["state", "resolved_at", "updated_at"])
    return resolved


def _routed_record(tasks, project, routing, agreement_of, now):
    """The routed tasks' history rows and ROUTED events, in bulk (acting user: none, the system)."""
    from apps.core.audit import history_record_queryset

    ids = [task.pk for task in tasks]
    history_record_queryset(Task.objects.filter(pk__in=ids), user=None, reason=ROUTING_REASON[routing])
    TaskEvent.objects.bulk_create([
        TaskEvent(project=project, batch_id=task.batch_id, task=task, type=TaskEvent.Type.ROUTED, actor=None,
                  payload={"routing": routing, "agreement": agreement_of.get(task.pk),
                           "threshold": project.low_agreement_threshold, "overlap": project.overlap,
                           "extra_annotations": task.extra_annotations})
        for task in tasks])


def _route_extra_annotator(project, low, now):
    """One more annotator for every low task whose annotators asked for are all in, within max_overlap."""
    from apps.tasks.services import task_status_refresh

    room = max_overlap(project) - project.overlap
    if room <= 0:
        return []
    # The low tasks first (IN: the planner reads them through the snapshot index, then the tasks by key), and of
    # those the ones whose annotators asked for are all in: locked, and re-checked by the lock (PostgreSQL
    # evaluates the conditions again on a row another worker changed meanwhile).
    n = Subquery(low.filter(task_id=OuterRef("pk")).values("n")[:1])
    tasks = list(Task.objects.select_for_update(of=("self",)).select_related("project", "batch")
                 .filter(project=project, pk__in=low.values("task_id"), extra_annotations__lt=room)
                 .alias(n=n).filter(n__gte=F("extra_annotations") + project.overlap).order_by("pk"))
    if not tasks:
        return []
    # One UPDATE (the rows are locked): bulk_update's CASE per row grows with the square of a big first pass.
    Task.objects.filter(pk__in=[t.pk for t in tasks]).update(extra_annotations=F("extra_annotations") + 1,
                                                             routed_at=now, updated_at=now)
    for task in tasks:
        task.extra_annotations, task.routed_at, task.updated_at = task.extra_annotations + 1, now, now
    agreement_of = dict(low.filter(task_id__in=[t.pk for t in tasks]).values_list("task_id", "agreement"))
    _routed_record(tasks, project, ROUTING.EXTRA_ANNOTATOR, agreement_of, now)
    for task in tasks:
        task_status_refresh(task=task, actor=None)  # the one place that derives it: in review → in progress
    return tasks


def _route_senior_review(project, low, now):
    """Every low task never routed before goes to senior review: its waiting annotations are escalated."""
    from apps.tasks.services import task_escalate_to_senior_review

    tasks = list(Task.objects.select_for_update(of=("self",)).select_related("project", "batch")
                 .filter(project=project, pk__in=low.values("task_id"), routed_at__isnull=True).order_by("pk"))
    if not tasks:
        return []
    Task.objects.filter(pk__in=[t.pk for t in tasks]).update(routed_at=now, updated_at=now)
    agreement_of = dict(low.filter(task_id__in=[t.pk for t in tasks]).values_list("task_id", "agreement"))
    _routed_record(tasks, project, ROUTING.SENIOR_REVIEW, agreement_of, now)
    comment = "Low agreement between annotators: sent to senior review automatically."
    for task in tasks:
        task_escalate_to_senior_review(task=task, comment=comment,
                                       payload={"reason": "low_agreement", "agreement": agreement_of.get(task.pk)})
    return tasks


def _english(kind, details):
    """The alert's stored English message: the text apps.quality.alerts renders from its details."""
    from .alerts import alert_text_render

    with translation.override("en"):
        return alert_text_render(kind, details)


def _alerts_raise(project, low, routed):
    """One alert for every low task without a live one; `routed`: {task id: how it was routed just now}."""
    from .gates import _alert_raise

    live = Alert.objects.filter(task_id=OuterRef("task_id"), state__in=LIVE)
    # A manager who resolved a task's alert by hand has dealt with that task: it is not alerted again (routing still
    # acts on it). Alerts that resolved themselves (agreement recovered) have no resolver.
    dealt_with = Alert.objects.filter(task_id=OuterRef("task_id"), kind=Alert.Kind.LOW_AGREEMENT_TASK,
                                      state=Alert.State.RESOLVED, resolved_by__isnull=False)
    raised = []
    threshold = project.low_agreement_threshold
    rows = low.exclude(Exists(live)).exclude(Exists(dealt_with)).values_list("task_id", "task__external_id", "agreement", "n").order_by("task_id")
    for task_id, external_id, agreement, n in rows:
        how = routed.get(task_id)
        details = {"task_id": task_id, "external_id": external_id, "agreement": agreement, "n": n,
                   "threshold": threshold, "routing": how}
        alert = _alert_raise(
            project=project, kind=Alert.Kind.LOW_AGREEMENT_TASK, task=Task(pk=task_id),
            severity=Alert.Severity.INFO if how else Alert.Severity.WARNING,
            message=_english(Alert.Kind.LOW_AGREEMENT_TASK, details), details=details)
        if alert is not None:
            raised.append(alert)
    return raised


def low_agreement_tasks_evaluate(project, *, since=None, now=None):
    """Alert on and route the project's low tasks; `since`: only tasks whose snapshot moved since then (after an
    incremental update), None for all (the full pass). Live alerts are resolved in either case.

    Returns {"raised", "resolved", "routed", "released"}: the alerts raised and resolved, the tasks routed, and
    the tasks held back from acceptance that were accepted now that routing no longer applies (full pass)."""
    now = now or timezone.now()
    with transaction.atomic():
        project_lock(project.pk)
        project = Project.objects.get(pk=project.pk)  # the settings as they are now, under the lock
        threshold = project.low_agreement_threshold
        resolved = _alerts_resolve(project, threshold, now, since)
        if threshold is None:
            # Tasks are held only while a threshold is set: a project that never had one has none to release.
            ever = Project.history.filter(id=project.pk, low_agreement_threshold__isnull=False).exists()
            return {"raised": [], "resolved": resolved, "routed": [],
                    "released": _held_release(project) if since is None and ever else []}
        low = _low_snapshots(project, threshold, since=since)
        routed = []
        if project.low_agreement_routing == ROUTING.EXTRA_ANNOTATOR:
            routed = _route_extra_annotator(project, low, now)
        elif project.low_agreement_routing == ROUTING.SENIOR_REVIEW:
            routed = _route_senior_review(project, low, now)
        released = _held_release(project) if since is None else []  # before the alerts: accepted, not low
        raised = _alerts_raise(project, low, {task.pk: project.low_agreement_routing for task in routed})
    return {"raised": raised, "resolved": resolved, "routed": routed, "released": released}


# --- holding acceptance until routing has acted -------------------------------------------------------------------

def task_agreement(task):
    """The mean pairwise score of a task's current annotations (each assignment's latest annotator-written version,
    as the engine counts them), None below 2: the task snapshot's figure, computed now for one task."""
    from itertools import combinations

    from .scores import SCORES

    latest = {}
    for assignment_id, result in (Annotation.objects.filter(task=task, source=Annotation.Source.ANNOTATOR)
                                  .order_by("assignment_id", "-version").values_list("assignment_id", "result")):
        latest.setdefault(assignment_id, result)
    if len(latest) < 2:
        return None
    score = SCORES[task.project.task_type]
    pairs = [score(a or {}, b or {}) for a, b in combinations(latest.values(), 2)]
    return sum(pairs) / len(pairs)


def acceptance_held(task):
    """Should a task that has all the annotations it needs wait before it is accepted automatically? Yes while its
    agreement is below the project's threshold and routing can still act on it (one more annotator within
    max_overlap, or a senior review it never had): the quality worker routes it first, instead of a task being
    accepted at its last submission before anyone looked at its agreement (as with review mode "none")."""
    project = task.project
    if project.low_agreement_threshold is None or task.is_gold:
        return False
    if project.low_agreement_routing == ROUTING.EXTRA_ANNOTATOR:
        if project.overlap + task.extra_annotations >= max_overlap(project):
            return False
    elif project.low_agreement_routing != ROUTING.SENIOR_REVIEW or task.routed_at is not None:
        return False
    agreement = task_agreement(task)
    return agreement is not None and agreement < project.low_agreement_threshold


def _held_release(project):
    """Tasks held back from acceptance that routing will not act on any more (the project's settings changed, or
    the agreement recovered): their status is derived again, which accepts them. Full pass only."""
    from apps.tasks.models import Assignment
    from apps.tasks.services import task_status_refresh

    done = (Assignment.objects.filter(task=OuterRef("pk"), status__in=[Assignment.Status.SUBMITTED,
                                                                       Assignment.Status.APPROVED])
            .order_by().values("task").annotate(n=Count("id")).values("n"))
    open_work = Assignment.objects.filter(task=OuterRef("pk"), status__in=[*Assignment.LIVE,
                                                                           Assignment.Status.REJECTED])
    waiting = Annotation.objects.filter(task=OuterRef("pk"), is_current=True, needs_review=True)
    held = (Task.objects.select_for_update(of=("self",)).select_related("project", "batch")
            .filter(project=project, status=Task.Status.IN_PROGRESS, is_gold=False)
            .alias(done=Coalesce(Subquery(done), 0)).filter(done__gte=F("extra_annotations") + project.overlap)
            .exclude(Exists(open_work)).exclude(Exists(waiting)).order_by("pk"))
    released = []
    for task in held:
        if task_status_refresh(task=task, actor=None) == Task.Status.ACCEPTED:
            released.append(task)
    return released


# --- annotators flagged low_gold ------------------------------------------------------------------------------------

def _resumed_at(membership):
    """When a manager last resumed this membership (its history), None if never."""
    from apps.projects.services import MEMBERSHIP_RESUMED

    return (Membership.history.filter(id=membership.pk, history_change_reason=MEMBERSHIP_RESUMED)
            .order_by("-history_date").values_list("history_date", flat=True).first())


def _gold_answers_since(membership, since):
    return Annotation.objects.filter(annotator_id=membership.user_id, task__project_id=membership.project_id,
                                     task__is_gold=True, source=Annotation.Source.ANNOTATOR,
                                     submitted_at__gt=since).count()


def _pause_alert_raise(project, membership, row):
    from .gates import _alert_raise

    details = {"annotator_id": membership.user_id, "username": membership.user.username, "project": project.name,
               "paused": True, "flag": "low_gold", "gold_accuracy": row.get("gold_accuracy"),
               "gold_n": row.get("gold_n", 0)}
    return _alert_raise(project=project, kind=Alert.Kind.OUTLIER_ANNOTATOR, severity=Alert.Severity.WARNING,
                        message=_english(Alert.Kind.OUTLIER_ANNOTATOR, details), details=details)


def low_gold_pause_evaluate(project, *, now=None):
    """Pause the annotators flagged low_gold on a project with pause_low_gold (see the module docstring), each
    with an alert for the managers. Returns the memberships paused now."""
    from apps.projects.services import membership_pause

    if not project.pause_low_gold:
        return []
    snapshot = snapshot_latest(project, ANNOTATORS)
    flagged = {row["annotator_id"]: row for row in (snapshot.values.get("annotators", []) if snapshot else [])
               if "low_gold" in (row.get("flags") or [])}
    if not flagged:
        return []
    paused = []
    candidates = (Membership.objects.filter(project=project, role=Membership.Role.ANNOTATOR,
                                            user_id__in=list(flagged), paused_at__isnull=True)
                  .select_related("user").order_by("user_id"))
    for membership in candidates:  # the flagged few, not the team
        resumed_at = _resumed_at(membership)
        if resumed_at is not None and _gold_answers_since(membership, resumed_at) < OUTLIER_MIN_OBSERVATIONS:
            continue  # a manager resumed them: that holds until there is new evidence
        with transaction.atomic():
            changed = membership_pause(membership=membership, actor=None, now=now,
                                       reason="Gold accuracy flagged low_gold by the quality engine.")
            if changed is not None:
                _pause_alert_raise(project, changed, flagged[membership.user_id])
                paused.append(changed)
    return paused


def pause_alerts_resolve(*, project_id, user_id, actor, now=None):
    """Resolve the live alerts that announced this annotator's pause (a manager resumed them)."""
    now = now or timezone.now()
    alerts = list(Alert.objects.select_for_update().filter(
        project_id=project_id, kind=Alert.Kind.OUTLIER_ANNOTATOR, state__in=LIVE, details__paused=True,
        details__annotator_id=user_id))
    for alert in alerts:
        alert.state, alert.resolved_at, alert.resolved_by = Alert.State.RESOLVED, now, actor
        alert.save(update_fields=["state", "resolved_at", "resolved_by", "updated_at"])
    return alerts

