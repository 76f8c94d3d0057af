"""Reads of figures and alerts. Requests only read snapshots that workers wrote; they never compute over rows."""

from apps.core.permissions import MANAGE
from apps.projects.selectors import project_list

from .models import Alert, MetricSnapshot


def snapshot_latest(*, project, kind, scope=MetricSnapshot.Scope.PROJECT, annotator=None):
    snapshots = MetricSnapshot.objects.filter(project=project, scope=scope, kind=kind)
    if annotator is not None:
        snapshots = snapshots.filter(annotator=annotator)
    return snapshots.order_by("-computed_at").first()


def alert_list(*, user):
    """Alerts of the projects the user manages (admins: all)."""
    return Alert.objects.filter(project__in=project_list(user=user, perm=MANAGE).values("pk"))
