"""The reviewer's portal: the review queue page (its script talks to the review API); the managers' alerts page."""

from datetime import timedelta
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef
from django.http import Http404
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _, gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from apps.core.errors import PermissionDeniedError, TransitionError
from apps.core.permissions import MANAGE, REVIEW
from apps.projects.selectors import project_list
from apps.tasks.review_queue import ESCALATIONS, QUEUES, REVIEW_QUEUE, review_queue_stats
from apps.tasks.views import _project_or_404

from . import selectors, services
from .alerts import LIVE, alert_text
from .context_processors import alert_bell_cached, alert_bell_forget
from .models import Alert, AlertRead, ErrorType

ALERTS_PER_PAGE = 25


def queue_stats(project, reviewer, now=None):
    """How many annotations wait for this reviewer, and since when the oldest: in all (`length`, `oldest_at`) and
    per queue (`queues`: `review`, and `escalations` for senior and lead reviewers, else None)."""
    now = now or timezone.now()
    queues = review_queue_stats(project=project, reviewer=reviewer, now=now)
    waiting = [q for q in queues.values() if q is not None]
    age = max((q["oldest_seconds"] for q in waiting if q["oldest_seconds"] is not None), default=None)
    return {"length": sum(q["length"] for q in waiting), "oldest_seconds": age,
            "oldest_at": now - timedelta(seconds=age) if age is not None else None, "queues": queues}


@login_required
def review(request, project_id):
    """The review page: the next annotation drawn as the labeling page draws it, and the decisions. Senior and lead
    reviewers work two queues, the review queue and the escalations, one at a time."""
    project = _project_or_404(request.user, project_id, REVIEW)
    error_types = list(ErrorType.objects.filter(project=project, is_active=True).order_by("name")
                       .values("code", "name", "description"))
    stats = queue_stats(project, request.user)
    queues, senior = stats["queues"], stats["queues"]["escalations"] is not None
    # A senior starts with the escalations when there are any (they rank first), unless the address names a queue.
    queue = request.GET.get("queue")
    if not senior:
        queue = REVIEW_QUEUE
    elif queue not in QUEUES:
        queue = ESCALATIONS if queues[ESCALATIONS]["length"] else REVIEW_QUEUE
    current = project.current_guideline
    config = {
        "projectId": project.pk, "taskType": project.task_type, "schema": project.label_schema,
        "apiBase": "/api/v1/", "csrfToken": get_token(request), "userId": request.user.pk,
        "errorTypes": error_types, "overlap": project.overlap, "senior": senior, "queue": queue, "queues": queues,
        "currentGuideline": {"version": current.version, "text": current.text} if current else None,
    }
    queue_tabs = [{"code": REVIEW_QUEUE, "name": _("Review queue"), "length": queues[REVIEW_QUEUE]["length"]},
                  {"code": ESCALATIONS, "name": _("Escalations"),
                   "length": queues[ESCALATIONS]["length"] if senior else 0}]
    return render(request, "quality/review.html", {
        "project": project, "config": config, "stats": stats, "senior": senior, "queue_tabs": queue_tabs,
    })


# --- alerts ---------------------------------------------------------------------------------------------------------

class AlertFilterForm(forms.Form):
    """The alerts page's filters: a project the user manages, a state, or one alert (the e-mails link to it)."""

    project = forms.IntegerField(label=gettext_lazy("Project"), required=False, min_value=1, max_value=2**63 - 1)
    state = forms.ChoiceField(label=gettext_lazy("State"), required=False,
                              choices=[("", gettext_lazy("All")), ("live", gettext_lazy("Open or acknowledged")),
                                       *Alert.State.choices])
    alert = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1, widget=forms.HiddenInput)


def _alerts_page(request, *, status=200):
    """The alerts of the projects the user manages, newest first, filtered and paginated; the alerts shown are
    marked as read (the bell stops counting them)."""
    user = request.user
    if not alert_bell_cached(request)["manages"]:
        raise PermissionDenied(_("Alerts are for the managers of a project."))
    form = AlertFilterForm(request.GET)
    form.is_valid()
    if "project" in form.errors or "alert" in form.errors:
        raise Http404(_("No such project or alert."))
    filters = {"project": None, "state": "", "alert": None, **form.cleaned_data}
    status = 400 if form.errors else status  # an unknown state: the page says so, unfiltered by it
    alerts = selectors.alert_list(user=user)
    project = None
    if filters["project"]:
        project = _project_or_404(user, filters["project"], MANAGE)
        alerts = alerts.filter(project=project)
    if filters["state"] == "live":
        alerts = alerts.filter(state__in=LIVE)
    elif filters["state"]:
        alerts = alerts.filter(state=filters["state"])
    if filters["alert"]:
        alerts = alerts.filter(pk=filters["alert"])
    alerts = (alerts.select_related("project", "batch", "task", "acknowledged_by", "resolved_by")
              .annotate(was_read=Exists(AlertRead.objects.filter(alert=OuterRef("pk"), user=user)))
              .order_by("-created_at", "-pk"))
    page = Paginator(alerts, ALERTS_PER_PAGE).get_page(request.GET.get("page"))
    for alert in page:
        alert.text = alert_text(alert)
    unread = [AlertRead(alert=alert, user=user) for alert in page if not alert.was_read]
    if unread:
        AlertRead.objects.bulk_create(unread, ignore_conflicts=True)
        alert_bell_forget(request)  # the bell on this very page counts them as read already
    query = {key: value for key, value in request.GET.items() if key in form.fields and value}
    return render(request, "quality/alerts.html", {
        "form": form, "page": page, "project": project, "query": urlencode(query),
        "projects": project_list(user=user, perm=MANAGE).order_by("name").values("pk", "name"),
    }, status=status)


@login_required
@require_GET
def alerts(request):
    """The managers' alerts page, which the bell in the top bar links to."""
    return _alerts_page(request)


def _alert_transition(request, alert_id, service, done_message):
    try:
        alert = selectors.alert_list(user=request.user).get(pk=alert_id)
    except Alert.DoesNotExist:
        raise Http404(_("No such alert.")) from None
    try:
        service(alert=alert, actor=request.user)
    except TransitionError as error:
        messages.error(request, error.message)
        return _alerts_page(request, status=409)
    except PermissionDeniedError as error:  # no longer a manager since the page was shown
        raise PermissionDenied(error.message) from None
    messages.success(request, done_message % {"id": alert.pk})
    query = {key: value for key, value in request.GET.items() if key in AlertFilterForm.base_fields and value}
    return redirect(f"{reverse('quality:alerts')}?{urlencode(query)}" if query else reverse("quality:alerts"))


@login_required
@require_POST
def alert_acknowledge(request, alert_id):
    return _alert_transition(request, alert_id, services.alert_acknowledge, _("Alert #%(id)s acknowledged."))


@login_required
@require_POST
def alert_resolve(request, alert_id):
    return _alert_transition(request, alert_id, services.alert_resolve, _("Alert #%(id)s resolved."))
