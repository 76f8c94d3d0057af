"""The review queue: which annotation a reviewer gets next.

The reviewer's own open review comes back first (its claim re-stamped); then escalations (senior and lead reviewers
only), rework resubmissions, and the oldest submissions. Never the reviewer's own work, nor an escalation the
reviewer made; an annotation another reviewer claimed (opened in the last CLAIM_MINUTES; services.claimed_by_others),
or whose task has another waiting annotation claimed by someone else, is left to them. Handing out an annotation
claims the other annotations waiting on its task too, and releases what the reviewer left open elsewhere. A candidate's task is locked with SKIP
LOCKED where the database has it and the candidate checked again once locked, so two reviewers never get the same
annotation.

The two queues can also be asked for apart: REVIEW_QUEUE (everything but escalations) and ESCALATIONS (senior and
lead reviewers only; empty for anyone else). Without a queue both are served, escalations first.
"""

from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Case, Count, Exists, IntegerField, Min, OuterRef, Q, Value, When
from django.utils import timezone

from apps.core.errors import TransitionError
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


def _waiting(project):
    """The project's annotations waiting for a review decision (the pairwise resolution's "waiting" too)."""
    return (Annotation.objects
            .filter(task__project=project, is_current=True, needs_review=True,
                    status__in=[Annotation.Status.SUBMITTED, Annotation.Status.ESCALATED],
                    assignment__status=Assignment.Status.SUBMITTED)
            .exclude(task__status__in=[Task.Status.ACCEPTED, Task.Status.CANCELLED]))


def _escalated_by(reviewer):
    """An escalation goes up to someone else: the reviewer who escalated never gets it back, even as a senior."""
    return Q(status=Annotation.Status.ESCALATED) & Exists(Review.objects.filter(
        annotation=OuterRef("pk"), reviewer=reviewer, decision=Review.Decision.ESCALATE))


def review_queue(*, project, reviewer, now=None, queue=None, senior=None):
    """Annotations waiting for this reviewer, in queue order. `queue`: REVIEW_QUEUE, ESCALATIONS or None (both).

    Left out: what another reviewer claimed (services.claimed_by_others, the rule the decisions refuse with), and
    an annotation whose task has another waiting annotation someone else claimed: the review page decides a task's
    waiting annotations side by side, all or nothing, and that resolution would be refused."""
    now = now or timezone.now()
    senior = is_senior(reviewer) if senior is None else senior
    claimed = services.claimed_by_others(reviewer, now)
    sibling_claimed = Exists(_waiting(project).filter(task=OuterRef("task_id")).exclude(pk=OuterRef("pk"))
                             .filter(services.claimed_by_others(reviewer, now)))
    waiting = (_waiting(project)
               .exclude(annotator=reviewer)
               .exclude(claimed)
               .exclude(sibling_claimed)
               .exclude(_escalated_by(reviewer)))
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
    `queue`: REVIEW_QUEUE or ESCALATIONS to serve only that queue; None serves both, escalations first.

    The reviewer's own open review comes back first, its claim re-stamped (services.review_claim_refresh) so that
    it does not lapse while they work — unless another reviewer took the annotation over after it lapsed: that
    one is theirs now. Otherwise what the reviewer left open in this project (the annotation shown in the queue
    they switched away from, a review that can no longer be decided) is released, and a new annotation is
    claimed together with the other annotations waiting on its task (the page decides them side by side)."""
    require_project_perm(reviewer, project, REVIEW)
    now = now or timezone.now()
    senior = is_senior(reviewer)
    # Only what can still be decided: an open review of a task accepted or cancelled meanwhile would come back
    # for ever, every decision on it refused. Work escalated after this reviewer opened it (low-agreement routing)
    # is a senior's now; an escalation they made themselves is never theirs again; an annotation another reviewer
    # claimed after this reviewer's claim lapsed is theirs.
    mine = (_waiting(project).filter(reviews__reviewer=reviewer, reviews__decided_at__isnull=True)
            .exclude(_escalated_by(reviewer))
            .exclude(services.claimed_by_others(reviewer, now)))
    for annotation in _queue_filter(mine, queue, senior).order_by("submitted_at", "id"):
        try:
            services.review_claim_refresh(annotation=annotation, reviewer=reviewer)
        except TransitionError:  # claimed by someone else since the query above
            continue
        return annotation
    annotation = _claim_next(project=project, reviewer=reviewer, now=now, queue=queue, senior=senior)
    services.reviews_release(project=project, reviewer=reviewer,
                             keep_task=annotation.task if annotation is not None else None)
    return annotation


def _claim_next(*, project, reviewer, now, queue, senior):
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
        # The task's other waiting annotations this reviewer may decide: claimed too, so that the side-by-side
        # decision the page offers is theirs (and nobody else is handed a part of it).
        for sibling in (review_queue(project=project, reviewer=reviewer, now=now, senior=senior)
                        .filter(task=annotation.task_id).exclude(pk=annotation.pk).order_by("id")):
            services.review_start(annotation=sibling, reviewer=reviewer)
    return annotation
