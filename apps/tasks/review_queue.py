"""The review queue: which annotation a reviewer gets next.

The reviewer's own open review comes back first; then escalations (senior and lead reviewers only), rework
resubmissions, and the oldest submissions. Never the reviewer's own work, nor an escalation the reviewer made; an
annotation another reviewer opened in the last CLAIM_MINUTES is left to them. A candidate's task is locked with SKIP
LOCKED where the database has it and the candidate checked again once locked, so two reviewers never get the same
annotation.

The two queues can also be asked for apart: REVIEW_QUEUE (everything but escalations) and ESCALATIONS (senior and
lead reviewers only; empty for anyone else). Without a queue both are served, escalations first.
"""

from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Case, Count, Exists, IntegerField, Min, OuterRef, Q, Value, When
from django.utils import timezone

from apps.core.permissions import REVIEW, require_project_perm
from apps.quality.models import Review

from . import services
from .models import Annotation, Assignment, Task

CLAIM_MINUTES = 30
REVIEW_QUEUE, ESCALATIONS = "review", "escalations"
QUEUES = (REVIEW_QUEUE, ESCALATIONS)
is_senior = services.reviewer_is_senior


def _queue_filter(annotations, queue, senior):
    """Keep the annotations of `queue` (None: both queues the reviewer may work)."""
    if queue is not None and queue not in QUEUES:
        raise ValueError(f"Unknown review queue {queue!r}")
    if queue == ESCALATIONS:
        return annotations.filter(status=Annotation.Status.ESCALATED) if senior else annotations.none()
    if queue == REVIEW_QUEUE or not senior:
        return annotations.exclude(status=Annotation.Status.ESCALATED)
    return annotations


def review_queue(*, project, reviewer, now=None, queue=None, senior=None):
    """Annotations waiting for this reviewer, in queue order. `queue`: REVIEW_QUEUE, ESCALATIONS or None (both)."""
    now = now or timezone.now()
    senior = is_senior(reviewer) if senior is None else senior
    claimed = Review.objects.filter(annotation=OuterRef("pk"), decided_at__isnull=True,
                                    started_at__gte=now - timedelta(minutes=CLAIM_MINUTES)).exclude(reviewer=reviewer)
    # An escalation goes up to someone else: the reviewer who escalated never gets it back, even as a senior.
    escalated_by_them = Review.objects.filter(annotation=OuterRef("pk"), reviewer=reviewer,
                                              decision=Review.Decision.ESCALATE)
    waiting = (Annotation.objects
               .filter(task__project=project, is_current=True, needs_review=True,
                       status__in=[Annotation.Status.SUBMITTED, Annotation.Status.ESCALATED],
                       assignment__status=Assignment.Status.SUBMITTED)
               .exclude(task__status__in=[Task.Status.ACCEPTED, Task.Status.CANCELLED])
               .exclude(annotator=reviewer)
               .exclude(Exists(claimed))
               .exclude(Q(status=Annotation.Status.ESCALATED) & Exists(escalated_by_them)))
    return _queue_filter(waiting, queue, senior).annotate(
        rank=Case(When(status=Annotation.Status.ESCALATED, then=Value(0)),
                  When(version__gt=1, then=Value(1)), default=Value(2), output_field=IntegerField()),
    ).order_by("rank", "submitted_at", "id")


def review_queue_stats(*, project, reviewer, now=None):
    """Per queue, how many annotations wait for this reviewer and for how long the oldest has waited (seconds since
    its submission): `{"review": {"length", "oldest_seconds"}, "escalations": {...} or None}` (None: not a senior
    or lead reviewer, who has no escalation queue)."""
    now = now or timezone.now()
    senior = is_senior(reviewer)
    stats = {}
    for queue in QUEUES:
        if queue == ESCALATIONS and not senior:
            stats[queue] = None
            continue
        row = review_queue(project=project, reviewer=reviewer, now=now, queue=queue, senior=senior).aggregate(
            n=Count("id"), oldest=Min("submitted_at"))
        stats[queue] = {"length": row["n"],
                        "oldest_seconds": round((now - row["oldest"]).total_seconds()) if row["oldest"] else None}
    return stats


def review_next(*, project, reviewer, now=None, queue=None):
    """Claim the reviewer's next annotation (starting its review), or None when the queue is empty for them.
    `queue`: REVIEW_QUEUE or ESCALATIONS to serve only that queue; None serves both, escalations first."""
    require_project_perm(reviewer, project, REVIEW)
    now = now or timezone.now()
    senior = is_senior(reviewer)
    # Only what can still be decided: an open review of a task accepted or cancelled meanwhile would come back
    # for ever, every decision on it refused. Work escalated after this reviewer opened it (low-agreement routing)
    # is a senior's now; an escalation they made themselves is never theirs again.
    mine = (Annotation.objects.filter(task__project=project, reviews__reviewer=reviewer,
                                      reviews__decided_at__isnull=True, is_current=True,
                                      status__in=[Annotation.Status.SUBMITTED, Annotation.Status.ESCALATED],
                                      assignment__status=Assignment.Status.SUBMITTED)
            .exclude(task__status__in=[Task.Status.ACCEPTED, Task.Status.CANCELLED])
            .exclude(Q(status=Annotation.Status.ESCALATED) & Exists(Review.objects.filter(
                annotation=OuterRef("pk"), reviewer=reviewer, decision=Review.Decision.ESCALATE))))
    mine = _queue_filter(mine, queue, senior).order_by("submitted_at").first()
    if mine is not None:
        return mine
    with transaction.atomic():
        waiting = review_queue(project=project, reviewer=reviewer, now=now, queue=queue,
                               senior=senior).select_related("task")
        skip_locked = connection.features.has_select_for_update_skip_locked
        passed = []
        while True:
            candidates = waiting.exclude(pk__in=passed) if passed else waiting
            if skip_locked:
                # Lock the task, not the annotation: every transition locks a task before its annotations, and
                # taking them the other way round here deadlocked against decisions on the same task.
                candidates = candidates.select_for_update(skip_locked=True, of=("task",))
            annotation = candidates.first()
            if annotation is None:
                return None
            # The lock may have been granted after another reviewer claimed or decided this annotation and
            # committed: the query above read the queue as it was before. A new statement sees it as it is now.
            if not skip_locked or review_queue(project=project, reviewer=reviewer, now=now, queue=queue,
                                               senior=senior).filter(pk=annotation.pk).exists():
                break
            passed.append(annotation.pk)
        services.review_start(annotation=annotation, reviewer=reviewer)
    return annotation
