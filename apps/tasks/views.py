"""The annotator portal: home (projects, own progress, clarifications) and the labeling page."""

import datetime

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Min, Q
from django.http import Http404
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from apps.core.errors import ApplicationError
from apps.core.permissions import ANNOTATE, MANAGE, REVIEW, has_project_perm
from apps.projects.models import Membership, Project
from apps.projects.selectors import project_list, project_list_with_progress

from . import selectors, services
from .models import Annotation, Assignment, Clarification, TaskEvent

SUBMISSIONS = [TaskEvent.Type.SUBMITTED, TaskEvent.Type.RESUBMITTED]


def _project_or_404(user, project_id, perm):
    try:
        project = project_list(user=user).select_related("current_guideline").get(pk=project_id)
    except Project.DoesNotExist:
        raise Http404(_("No such project.")) from None
    if not has_project_perm(user, project, perm):
        raise PermissionDenied(_("You do not have this role in the project."))
    return project


@login_required
def home(request):
    """Each project the user works in, with their own progress today and overall, the review backlog for
    reviewers and managers, and the user's clarifications."""
    user = request.user
    projects = list(project_list_with_progress(user=user).order_by("name"))
    ids = [p.pk for p in projects]
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    mine = TaskEvent.objects.filter(actor=user, type__in=SUBMISSIONS, project_id__in=ids)
    counts = {row["project_id"]: row for row in mine.values("project_id").annotate(
        total=Count("id"), today=Count("id", filter=Q(at__gte=today))).order_by()}
    backlog = {row["task__project_id"]: row for row in Annotation.objects.filter(
        task__project_id__in=ids, is_current=True, needs_review=True,
        status__in=[Annotation.Status.SUBMITTED, Annotation.Status.ESCALATED],
        assignment__status=Assignment.Status.SUBMITTED).values("task__project_id")
        .annotate(n=Count("id"), oldest=Min("submitted_at")).order_by()}
    paused = set(Membership.objects.filter(user=user, role=Membership.Role.ANNOTATOR, project_id__in=ids,
                                           paused_at__isnull=False).values_list("project_id", flat=True))
    held = {row["task__project_id"]: row["n"] for row in Assignment.objects.filter(
        annotator=user, status=Assignment.Status.ON_HOLD, task__project_id__in=ids)
        .values("task__project_id").annotate(n=Count("id")).order_by()}
    rows = []
    for project in projects:
        row = counts.get(project.pk, {})
        rows.append({
            "project": project,
            "can_annotate": has_project_perm(user, project, ANNOTATE), "paused": project.pk in paused,
            "can_review": has_project_perm(user, project, REVIEW),
            "can_manage": has_project_perm(user, project, MANAGE),
            "today": row.get("today", 0), "total": row.get("total", 0), "held": held.get(project.pk, 0),
            "backlog": backlog.get(project.pk, {}).get("n", 0), "oldest": backlog.get(project.pk, {}).get("oldest"),
        })
    since = timezone.now() - datetime.timedelta(days=14)
    clarifications = (Clarification.objects.filter(asked_by=user)
                      .filter(Q(status=Clarification.Status.OPEN) | Q(answered_at__gte=since))
                      .select_related("task__project", "assignment").order_by("-created_at")[:20])
    return render(request, "tasks/home.html", {"rows": rows, "clarifications": clarifications})


@login_required
def label(request, project_id):
    """The labeling page; its script loads tasks from and submits them to the API."""
    project = _project_or_404(request.user, project_id, ANNOTATE)
    config = {
        "projectId": project.pk, "taskType": project.task_type, "schema": project.label_schema,
        "apiBase": "/api/v1/", "csrfToken": get_token(request), "userId": request.user.pk,
        "idleSeconds": settings.LABELPORTAL_IDLE_SECONDS,
    }
    paused = Membership.objects.filter(project=project, user=request.user, role=Membership.Role.ANNOTATOR,
                                       paused_at__isnull=False).exists()
    return render(request, "tasks/label.html", {"project": project, "config": config, "paused": paused,
                                                "guideline": project.current_guideline})


@login_required
@require_POST
def assignment_resume(request, assignment_id):
    """Back to a task that was on hold (after a clarification was answered)."""
    try:
        assignment = selectors.assignment_get_for_annotator(user=request.user, assignment_id=assignment_id)
    except Assignment.DoesNotExist:
        raise Http404(_("No such assignment.")) from None
    try:
        services.assignment_resume(assignment=assignment, actor=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
        return redirect("home")
    return redirect("tasks:label", project_id=assignment.task.project_id)
