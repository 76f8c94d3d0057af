"""The admin of annotator profiles (seniority, skills, languages, capacity and working pattern) and of teams."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _

from apps.core.admin_base import HistoryAdmin, managed_projects

from .models import AnnotatorProfile, Team


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


@admin.register(Team)
class TeamAdmin(HistoryAdmin):
    """Teams (a team, a shift, a vendor) that the team view compares. A manager who is not a superuser sees the
    teams with someone from the projects they manage (and empty ones), and picks members among those people only;
    members from elsewhere stay as they are when they save."""

    list_display = ["name", "member_count", "description"]
    search_fields = ["name", "description", "members__username"]
    filter_horizontal = ["members"]
    history_list_display = ["name"]

    @admin.display(description=_("members"), ordering="member_total")
    def member_count(self, obj):
        return obj.member_total

    def _people(self, request):
        """The users a manager may put in a team: members of the projects they manage."""
        return get_user_model().objects.filter(
            memberships__project__in=managed_projects(request).values("pk")).distinct()

    def get_queryset(self, request):
        # The member count of each row in the same query (a subquery, unaffected by the scoping join below).
        members = (Team.members.through.objects.filter(team=OuterRef("pk")).order_by().values("team")
                   .annotate(n=Count("*")).values("n"))
        teams = super().get_queryset(request).annotate(member_total=Coalesce(Subquery(members), 0))
        if request.user.is_superuser:
            return teams
        return teams.filter(Q(members__in=self._people(request).values("pk")) | Q(members__isnull=True)).distinct()

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "members" and not request.user.is_superuser:
            kwargs["queryset"] = self._people(request).order_by("username")
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_related(self, request, form, formsets, change):
        hidden = []
        if change and not request.user.is_superuser:
            # The form only offers this manager's people: keep the members it could not show.
            hidden = list(form.instance.members.exclude(pk__in=self._people(request).values("pk")))
        super().save_related(request, form, formsets, change)
        if hidden:
            form.instance.members.add(*hidden)

    def has_delete_permission(self, request, obj=None):
        if not super().has_delete_permission(request, obj):
            return False
        if obj is None or request.user.is_superuser:
            return True
        # Not a team that also holds people from projects this manager does not run.
        return not obj.members.exclude(pk__in=self._people(request).values("pk")).exists()
