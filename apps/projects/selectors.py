"""Reads of projects and their parts, already scoped to what the user may see."""

from django.db import connections, router
from django.db.models import Count, Q
from guardian.shortcuts import get_objects_for_user

from apps.core.permissions import MANAGE, VIEW, has_project_perm
from apps.core.rows import instances, primary_key_lookup_value

from .models import Batch, Membership, Project, QualityGate


def project_list(*, user, perm=VIEW):
    """Projects on which `user` holds `perm`; nothing for anonymous or inactive users."""
    if user is None or not user.is_authenticated or not user.is_active:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    # Only object permissions count: the managers' group holds model-wide permissions so that its members can
    # open the admin at all, and those must not open every project to them.
    return get_objects_for_user(user, f"projects.{perm}", klass=Project, accept_global_perms=False)


def project_get(*, user, project_id, perm=VIEW):
    """The project if the user may see it, else Project.DoesNotExist (a 404: never reveal it exists).

    The same answer as `project_list(user=user, perm=perm).get(pk=project_id)` (object permissions only; admins see
    every project), for a fraction of its cost on the hot paths: one fetch by primary key and `has_project_perm`,
    whose permission rows guardian reads once per request and caches on the user. The fetch is SQL written once
    (`rows.instances`): every request of the annotation loop makes it, and the ORM's compilation cost more than
    the query."""
    if user is None or not user.is_authenticated or not user.is_active:
        raise Project.DoesNotExist("Project matching query does not exist.")
    project_pk = primary_key_lookup_value(Project, project_id, connections[router.db_for_read(Project)])
    found = instances(Project, "m.id = %s", [project_pk]) if project_pk is not None else []
    if not found:
        raise Project.DoesNotExist("Project matching query does not exist.")
    project = found[0]
    if not has_project_perm(user, project, perm):
        raise Project.DoesNotExist("Project matching query does not exist.")
    return project


def project_list_with_progress(*, user):
    """Projects with accepted / total task counts (cancelled tasks left out), in one query."""
    return project_list(user=user).annotate(
        tasks_total=Count("tasks", filter=~Q(tasks__status="cancelled")),
        tasks_accepted=Count("tasks", filter=Q(tasks__status="accepted")),
    )


def batch_list(*, user, project=None):
    batches = Batch.objects.filter(project__in=project_list(user=user))
    return batches.filter(project=project) if project is not None else batches


def batch_list_with_progress(*, user, project=None):
    return batch_list(user=user, project=project).annotate(
        tasks_total=Count("tasks", filter=~Q(tasks__status="cancelled")),
        tasks_accepted=Count("tasks", filter=Q(tasks__status="accepted")),
    )


def membership_list(*, user, project):
    if not project_list(user=user, perm=MANAGE).filter(pk=project.pk).exists():
        return Membership.objects.none()
    return Membership.objects.filter(project=project).select_related("user")


def gates_for_batch(batch):
    """Active gates that guard `batch`: its own and the project-wide ones."""
    return QualityGate.objects.filter(project_id=batch.project_id, is_active=True).filter(
        Q(batch=batch) | Q(batch__isnull=True)
    )


def gates_breached_for_batch(batch):
    return gates_for_batch(batch).filter(state=QualityGate.State.BREACHED)


def members_with_role(*, project, role):
    return Membership.objects.filter(project=project, role=role).select_related("user")
