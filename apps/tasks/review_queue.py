"""The review queue: which annotation a reviewer gets next.

The reviewer's own open review comes back first; then escalations (senior and lead reviewers only), rework
resubmissions, and the oldest submissions. Never the reviewer's own work; an annotation another reviewer opened in
the last CLAIM_MINUTES is left to them. A candidate's task is locked with SKIP LOCKED where the database has it and
the candidate checked again once locked, so two reviewers never get the same annotation.
"""

from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Case, Exists, IntegerField, OuterRef, Value, When
from django.utils import timezone

from apps.core.permissions import REVIEW, require_project_perm
from apps.quality.models import Review

from . import services
from .models import Annotation, Assignment, Task

CLAIM_MINUTES = 30
is_senior = services.reviewer_is_senior


def review_queue(*, project, reviewer, now=None):
    """Annotations waiting for this reviewer, in queue order."""
    now = now or timezone.now()
    claimed = Review.objects.filter(annotation=OuterRef("pk"), decided_at__isnull=True,
                                    started_at__gte=now - timedelta(minutes=CLAIM_MINUTES)).exclude(reviewer=reviewer)
    queue = (Annotation.objects
             .filter(task__project=project, is_current=True, needs_review=True,
                     status__in=[Annotation.Status.SUBMITTED, Annotation.Status.ESCALATED],
                     assignment__status=Assignment.Status.SUBMITTED)
             .exclude(task__status__in=[Task.Status.ACCEPTED, Task.Status.CANCELLED])
             .exclude(annotator=reviewer)
             .exclude(Exists(claimed)))
    if not is_senior(reviewer):
        queue = queue.exclude(status=Annotation.Status.ESCALATED)
    return queue.annotate(
        rank=Case(When(status=Annotation.Status.ESCALATED, then=Value(0)),
                  When(version__gt=1, then=Value(1)), default=Value(2), output_field=IntegerField()),
    ).order_by("rank", "submitted_at", "id")



def review_next(*, project, reviewer, now=None):
    """Claim the reviewer's next annotation (starting its review), or None when the queue is empty for them."""
    require_project_perm(reviewer, project, REVIEW)
    now = now or timezone.now()
    # Only what can still be decided: an open review of a task accepted or cancelled meanwhile would come back
    # for ever, every decision on it refused.
    mine = (Annotation.objects.filter(task__project=project, reviews__reviewer=reviewer,
                                      reviews__decided_at__isnull=True, is_current=True,
                                      status__in=[Annotation.Status.SUBMITTED, Annotation.Status.ESCALATED],
                                      assignment__status=Assignment.Status.SUBMITTED)
            .exclude(task__status__in=[Task.Status.ACCEPTED, Task.Status.CANCELLED]))
    if not is_senior(reviewer):
        # Work escalated after this reviewer opened it (low-agreement routing) is a senior's now.
        mine = mine.exclude(status=Annotation.Status.ESCALATED)
    mine = mine.order_by("submitted_at").first()
    if mine is not None:
        return mine
    with transaction.atomic():
        queue = review_queue(project=project, reviewer=reviewer, now=now).select_related("task")
        skip_locked = connection.features.has_select_for_update_skip_locked
        passed = []
        while True:
            candidates = queue.exclude(pk__in=passed) if passed else queue
            if skip_locked:
                # Lock the task, not the annotation: every transition locks a task before its annotations, and
                # taking them the other way round here deadlocked against decisions on the same task.
                candidates = candidates.select_for_update(skip_locked=True, of=("task",))
            annotation = candidates.first()
            if annotation is None:
                return None
            # The lock may have been granted after another reviewer claimed or decided this annotation and
            # committed: the query above read the queue as it was before. A new statement sees it as it is now.
            if not skip_locked or review_queue(project=project, reviewer=reviewer, now=now).filter(
                    pk=annotation.pk).exists():
                break
            passed.append(annotation.pk)
        services.review_start(annotation=annotation, reviewer=reviewer)
    return annotation
