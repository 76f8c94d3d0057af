"""The reviewer's portal: the review queue page (its script talks to the review API)."""

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Min
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.utils import timezone

from apps.core.permissions import REVIEW
from apps.tasks.review_queue import is_senior, review_queue
from apps.tasks.views import _project_or_404

from .models import ErrorType


def queue_stats(project, reviewer):
    """How many annotations wait for this reviewer, and since when (the oldest)."""
    stats = review_queue(project=project, reviewer=reviewer).aggregate(n=Count("id"), oldest=Min("submitted_at"))
    age = (timezone.now() - stats["oldest"]).total_seconds() if stats["oldest"] else None
    return {"length": stats["n"], "oldest_seconds": age, "oldest_at": stats["oldest"]}


@login_required
def review(request, project_id):
    """The review page: the next annotation drawn as the labeling page draws it, and the decisions."""
    project = _project_or_404(request.user, project_id, REVIEW)
    error_types = list(ErrorType.objects.filter(project=project, is_active=True).order_by("name")
                       .values("code", "name", "description"))
    config = {
        "projectId": project.pk, "taskType": project.task_type, "schema": project.label_schema,
        "apiBase": "/api/v1/", "csrfToken": get_token(request), "userId": request.user.pk,
        "errorTypes": error_types, "overlap": project.overlap,
    }
    return render(request, "quality/review.html", {
        "project": project, "config": config, "stats": queue_stats(project, request.user),
        "senior": is_senior(request.user),
    })
