"""Account pages: the profile with the API token (create and rotate)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods
from rest_framework.authtoken.models import Token


@login_required
@require_http_methods(["GET", "POST"])
def profile(request):
    """Who you are, your projects and roles, and your API token: create it, or rotate it (the old one stops
    working at once)."""
    if request.method == "POST":
        with transaction.atomic():
            had_token = Token.objects.filter(user=request.user).delete()[0] > 0
            Token.objects.create(user=request.user)
        messages.success(request, _("Your API token was rotated; the old one no longer works.") if had_token
                         else _("Your API token was created."))
        return redirect("profile")
    token = Token.objects.filter(user=request.user).first()
    memberships = request.user.memberships.select_related("project").order_by("project__name", "role")
    return render(request, "core/profile.html", {"token": token, "memberships": memberships})

