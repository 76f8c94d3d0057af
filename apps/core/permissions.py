"""Permission questions, answered in one place: guardian object permissions on Project, superusers see everything."""

from django.db import connections, router
from django.utils.translation import gettext as _

from .errors import PermissionDeniedError

VIEW, ANNOTATE, REVIEW, MANAGE = "view_project", "annotate_project", "review_project", "manage_project"


def is_admin(user):
    return bool(user and user.is_active and user.is_superuser)


class ModelColumns:
    """One model's concrete columns in a hand-written SELECT, and the instance built back from them as the ORM builds
    it: the database's and the fields' converters applied, then `Model.from_db`.

    The hot reads (the token, the project, the annotator's assignment, the permission rows) run on every request of
    the annotation loop, and compiling them through the ORM costs more Python than running a fixed SQL string with
    `cursor.execute`. Table and column names come from `_meta`, so a custom `db_table` or `db_column` still works;
    each read builds its SQL and converters once per process and database connection."""

    def __init__(self, model, table, connection):
        quote = connection.ops.quote_name
        fields = model._meta.concrete_fields
        self.model = model
        self.select = ", ".join(f"{quote(table)}.{quote(field.column)}" for field in fields)
        self.attnames = [field.attname for field in fields]
        self.width = len(fields)
        self.converters = []
        for index, field in enumerate(fields):
            column = field.get_col(table)
            converters = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
            if converters:
                self.converters.append((index, column, converters))

    def instance(self, row, start, connection):
        """The model instance from `row[start:start + width]`, as a queryset would have built it."""
        values = list(row[start:start + self.width])
        for index, column, converters in self.converters:
            value = values[index]
            for converter in converters:
                value = converter(value, column, connection)
            values[index] = value
        return self.model.from_db(connection.alias, self.attnames, values)


def primary_key_lookup_value(model, value, connection):
    """`value` as `Model.objects.get(pk=value)` would send it, or None where that lookup matches no row without
    asking the database (no key, or an integer out of the column's range: the ORM answers DoesNotExist there too).
    A value that is no key at all ("abc") raises the ORM's own ValueError."""
    primary_key = model._meta.pk
    value = primary_key.get_prep_value(value)
    if value is None:
        return None
    if isinstance(value, int):
        low, high = connection.ops.integer_field_range(primary_key.get_internal_type())
        if (low is not None and value < low) or (high is not None and value > high):
            return None
    return value


def read_connection(model):
    """The connection a queryset on `model` would read from."""
    return connections[router.db_for_read(model)]


_OBJECT_PERMS_SQL = {}


def _object_perms_sql(connection):
    """The user's own object permissions and their groups', as (content type, object pk, codename) rows: the
    UNION ALL that `UserObjectPermission.objects.filter(user=…)` and `GroupObjectPermission.objects.filter(
    group__user=…)` compile to, written once per connection from the guardian and auth models' `_meta`."""
    sql = _OBJECT_PERMS_SQL.get(connection.alias)
    if sql is None:
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
        sql = (
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
        _OBJECT_PERMS_SQL[connection.alias] = sql
    return sql


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

    connection = read_connection(UserObjectPermission)
    with connection.cursor() as cursor:
        cursor.execute(_object_perms_sql(connection), [user.pk, user.pk])
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
