"""Permission questions, answered in one place: guardian object permissions on Project, superusers see everything."""

from django.utils.translation import gettext as _

from .errors import PermissionDeniedError
from .rows import built_once

VIEW, ANNOTATE, REVIEW, MANAGE = "view_project", "annotate_project", "review_project", "manage_project"


def is_admin(user):
    return bool(user and user.is_active and user.is_superuser)


def _object_perms_sql(connection):
    """The user's own object permissions and their groups', as (content type, object pk, codename) rows: the
    UNION ALL that `UserObjectPermission.objects.filter(user=…)` and `GroupObjectPermission.objects.filter(
    group__user=…)` compile to, written once per connection from the guardian and auth models' `_meta`."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from guardian.models import GroupObjectPermission, UserObjectPermission

    quote = connection.ops.quote_name

    def column(model, name):
        return quote(model._meta.get_field(name).column)

    permission = quote(Permission._meta.db_table)
    codename = f"{permission}.{column(Permission, 'codename')}"
    permission_id = f"{permission}.{quote(Permission._meta.pk.column)}"
    user_perms = quote(UserObjectPermission._meta.db_table)
    group_perms = quote(GroupObjectPermission._meta.db_table)
    groups = get_user_model()._meta.get_field("groups")
    membership = quote(groups.m2m_db_table())
    membership_group = f"{membership}.{quote(groups.m2m_reverse_name())}"
    membership_user = f"{membership}.{quote(groups.m2m_column_name())}"
    return (
        f"SELECT {user_perms}.{column(UserObjectPermission, 'content_type')}, "
        f"{user_perms}.{column(UserObjectPermission, 'object_pk')}, {codename} "
        f"FROM {user_perms} INNER JOIN {permission} "
        f"ON {user_perms}.{column(UserObjectPermission, 'permission')} = {permission_id} "
        f"WHERE {user_perms}.{column(UserObjectPermission, 'user')} = %s "
        "UNION ALL "
        f"SELECT {group_perms}.{column(GroupObjectPermission, 'content_type')}, "
        f"{group_perms}.{column(GroupObjectPermission, 'object_pk')}, {codename} "
        f"FROM {group_perms} INNER JOIN {permission} "
        f"ON {group_perms}.{column(GroupObjectPermission, 'permission')} = {permission_id} "
        f"INNER JOIN {membership} "
        f"ON {group_perms}.{column(GroupObjectPermission, 'group')} = {membership_group} "
        f"WHERE {membership_user} = %s"
    )


def _object_perms_prefetch(user):
    """All of the user's object permissions, their own and their groups', read in one query and cached on the user
    object where guardian's backend looks for them (GUARDIAN_AUTO_PREFETCH: `_guardian_perms_cache`, in guardian's
    shape; guardian reads them with two queries). A request reads its user afresh, so this is once per request.
    The query is a fixed SQL string (see `_object_perms_sql`): on the annotation loop's every request, compiling it
    through the ORM cost more than running it. Assumes guardian's generic permission tables (the project defines no
    direct foreign-key permission models)."""
    if hasattr(user, "_guardian_perms_cache"):
        return
    from guardian.models import UserObjectPermission

    connection, sql = built_once("object_perms", UserObjectPermission, _object_perms_sql)
    with connection.cursor() as cursor:
        cursor.execute(sql, [user.pk, user.pk])
        rows = cursor.fetchall()
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
