"""Permission questions, answered in one place: guardian object permissions on Project, superusers see everything."""

from django.utils.translation import gettext as _

from .errors import PermissionDeniedError

VIEW, ANNOTATE, REVIEW, MANAGE = "view_project", "annotate_project", "review_project", "manage_project"


def is_admin(user):
    return bool(user and user.is_active and user.is_superuser)


def _object_perms_prefetch(user):
    """All of the user's object permissions, their own and their groups', read in one query and cached on the user
    object where guardian's backend looks for them (GUARDIAN_AUTO_PREFETCH: `_guardian_perms_cache`, in guardian's
    shape; guardian reads them with two queries). A request reads its user afresh, so this is once per request.
    Assumes guardian's generic permission tables (the project defines no direct foreign-key permission models)."""
    if hasattr(user, "_guardian_perms_cache"):
        return
    from guardian.models import GroupObjectPermission, UserObjectPermission

    fields = ("content_type_id", "object_pk", "permission__codename")
    rows = UserObjectPermission.objects.filter(user=user).values_list(*fields).union(
        GroupObjectPermission.objects.filter(group__user=user).values_list(*fields), all=True)
    cache = {}
    for content_type_id, object_pk, codename in rows:
        cache.setdefault((content_type_id, str(object_pk)), []).append(codename)
    user._guardian_perms_cache = cache


def has_project_perm(user, project, perm):
    """Does `user` hold `perm` (one of VIEW/ANNOTATE/REVIEW/MANAGE) on `project`? Admins hold every one."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    _object_perms_prefetch(user)
    return user.has_perm(f"projects.{perm}", project)


def require_project_perm(user, project, perm):
    if not has_project_perm(user, project, perm):
        labels = {VIEW: _("see"), ANNOTATE: _("annotate"), REVIEW: _("review"), MANAGE: _("manage")}
        raise PermissionDeniedError(
            _("You may not %(action)s in the project “%(project)s”.") % {"action": labels.get(perm, perm),
                                                                         "project": project.name}
        )
