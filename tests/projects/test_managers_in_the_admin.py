"""A project manager works in the Django admin, and sees only their projects there (DESIGN.md, Who uses it)."""

import pytest
from django.urls import reverse

from apps.projects import services
from apps.projects.models import Membership
from apps.projects.selectors import project_list
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_manager_role_opens_the_admin_to_their_projects_only(client):
    # given two projects and a user made manager of the first one only
    admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
    mine = factories.project(actor=admin, slug="mine")
    other = factories.project(actor=admin, slug="other")
    manager = factories.member(mine, Membership.Role.MANAGER, "lead")

    # then they are staff, in the managers' group, and the admin lists their project and not the other
    manager.refresh_from_db()
    assert manager.is_staff and manager.groups.filter(name=services.MANAGERS_GROUP).exists()
    client.force_login(manager)
    response = client.get(reverse("admin:projects_project_changelist"))
    assert response.status_code == 200
    assert mine.name in response.content.decode() and other.name not in response.content.decode()
    assert client.get(reverse("admin:projects_project_change", args=[other.pk])).status_code in (302, 403, 404)

    # and the group's model-wide permissions do not open other projects anywhere else
    assert list(project_list(user=manager)) == [mine]


def test_losing_the_last_manager_role_takes_the_group_away():
    admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
    project = factories.project(actor=admin, slug="p")
    manager = factories.member(project, Membership.Role.MANAGER, "lead")

    services.membership_remove(project=project, user=manager, role=Membership.Role.MANAGER)

    assert not manager.groups.filter(name=services.MANAGERS_GROUP).exists()
    assert not manager.has_perm("projects.change_project", project)


def test_an_existing_managers_group_gets_the_permissions_of_new_models_after_migrate(client):
    # given a managers' group created before teams and sanity rules existed (those permissions missing)
    manager = factories.UserFactory(username="early-manager")
    project = factories.project(slug="early")
    services.membership_add(project=project, user=manager, role=Membership.Role.MANAGER)
    group = manager.groups.get(name=services.MANAGERS_GROUP)
    group.permissions.remove(*group.permissions.filter(codename__in=["view_team", "change_team", "add_sanityrule"]))
    assert not manager.__class__.objects.get(pk=manager.pk).has_perm("annotators.view_team")

    # when the post-migrate sync runs (as after `manage.py migrate`)
    services.managers_group_permissions_sync()

    # then the group has them again, and the manager opens the teams in the admin
    manager = manager.__class__.objects.get(pk=manager.pk)
    assert manager.has_perm("annotators.view_team") and manager.has_perm("annotators.change_team")
    assert manager.has_perm("quality.add_sanityrule")
    client.force_login(manager)
    assert client.get(reverse("admin:annotators_team_changelist")).status_code == 200
