"""Permission questions, answered in one place: guardian object permissions on Project, superusers see everything."""

from django.utils.translation import gettext as _

from .errors import PermissionDeniedError

VIEW, ANNOTATE, REVIEW, MANAGE = "view_project", "annotate_project", "review_project", "manage_project"


def is_admin(user):
    return bool(user and user.is_active and user.is_superuser)


def has_project_perm(user, project, perm):
    """Does `user` hold `perm` (one of VIEW/ANNOTATE/REVIEW/MANAGE) on `project`? Admins hold every one."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return user.has_perm(f"projects.{perm}", project)


def require_project_perm(user, project, perm):
    if not has_project_perm(user, project, perm):
        labels = {VIEW: _("see"), ANNOTATE: _("annotate"), REVIEW: _("review"), MANAGE: _("manage")}
        raise PermissionDeniedError(
            _("You may not %(action)s in the project “%(project)s”.") % {"action": labels.get(perm, perm),
                                                                         "project": project.name}
        )
