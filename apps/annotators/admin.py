"""The admin of annotator profiles: seniority, skills, languages, capacity and working pattern."""

from django.contrib import admin

from apps.core.admin_base import HistoryAdmin, managed_projects

from .models import AnnotatorProfile


@admin.register(AnnotatorProfile)
class AnnotatorProfileAdmin(HistoryAdmin):
    list_display = ["user", "seniority", "weekly_capacity_hours", "working_hours_start", "working_hours_end",
                    "timezone", "is_active"]
    list_filter = ["seniority", "is_active"]
    list_select_related = ["user"]
    search_fields = ["user__username", "user__email", "user__first_name", "user__last_name"]
    autocomplete_fields = ["user"]
    history_list_display = ["seniority", "weekly_capacity_hours", "is_active"]

    def get_queryset(self, request):
        profiles = super().get_queryset(request)
        if request.user.is_superuser:
            return profiles
        # A manager sees the profiles of the people in the projects they manage.
        return profiles.filter(user__memberships__project__in=managed_projects(request).values("pk")).distinct()
