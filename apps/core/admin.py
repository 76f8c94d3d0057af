"""Users in the admin: deactivated, never deleted — their name stays on the immutable audit trail."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin


class LabelPortalUserAdmin(UserAdmin):
    """The stock user admin without deletion: history rows and events point at users and cannot change
    (on PostgreSQL a trigger refuses it), so people who leave are deactivated instead."""

    list_display = ("username", "email", "first_name", "last_name", "is_active", "is_staff", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser", "groups")

    def has_delete_permission(self, request, obj=None):
        return False


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), LabelPortalUserAdmin)
