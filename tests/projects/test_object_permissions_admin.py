"""The project's object-permissions page in the admin edits a person's roles (memberships), not raw permissions.

annotate → annotator, review → reviewer, manage → manager; the membership services do the change (history names
the admin), and the person's guardian permissions on the project are then exactly their roles' (+ view). View
alone is refused, and so is a new grant to a group (roles are per person).
"""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse
from guardian.shortcuts import assign_perm, get_group_perms, get_user_perms

from apps.projects import services
from apps.projects.models import Membership
from tests import factories

pytestmark = pytest.mark.django_db


def user_page(project, user):
    return reverse("admin:projects_project_permissions_manage_user", args=[project.pk, user.pk])


def group_page(project, group):
    return reverse("admin:projects_project_permissions_manage_group", args=[project.pk, group.pk])


def guardian_perms(user, project):
    return set(get_user_perms(get_user_model().objects.get(pk=user.pk), project))


def roles(user, project):
    return set(Membership.objects.filter(project=project, user=user).values_list("role", flat=True))


def membership_history(user, project):
    rows = Membership.history.filter(project_id=project.pk, user_id=user.pk).order_by("history_id")
    return [(row.history_type, row.role, row.history_user) for row in rows]


def save(client, project, user, *permissions):
    # a browser always sends the CSRF token: with nothing chosen, the form is still posted (guardian's view treats
    # an empty POST as a GET)
    return client.post(user_page(project, user), {"permissions": list(permissions), "csrfmiddlewaretoken": "-"})


@pytest.fixture
def admin_client(team, client):
    client.force_login(team.admin)
    return client


def test_granting_annotate_on_the_page_makes_the_person_an_annotator(team, admin_client):
    # given a person with no role in the project
    newcomer = factories.UserFactory(username="newcomer")

    # when the admin gives them "annotate" on the project's permissions page
    response = save(admin_client, team.project, newcomer, "annotate_project")

    # then they are an annotator (a membership, in the history by the admin) with exactly its permissions
    assert response.status_code == 302
    assert roles(newcomer, team.project) == {"annotator"}
    assert membership_history(newcomer, team.project) == [("+", "annotator", team.admin)]
    assert guardian_perms(newcomer, team.project) == {"view_project", "annotate_project"}
    # and the next sync of their permissions keeps them (before, a grant made here was silently taken back)
    services.membership_permissions_sync(project=team.project, user=newcomer)
    assert guardian_perms(newcomer, team.project) == {"view_project", "annotate_project"}


def test_the_page_shows_the_roles_and_changes_one_for_another(team, admin_client):
    annotator = team.annotators[0]
    page = admin_client.get(user_page(team.project, annotator))
    assert page.status_code == 200
    assert set(page.context["form"].fields["permissions"].initial) == {"annotate_project", "view_project"}
    assert set(dict(page.context["form"].fields["permissions"].choices)) == {
        "view_project", "annotate_project", "review_project", "manage_project"}

    response = save(admin_client, team.project, annotator, "view_project", "review_project")

    assert response.status_code == 302
    assert roles(annotator, team.project) == {"reviewer"}
    # (the new role first, the old taken away after: all in one transaction)
    assert membership_history(annotator, team.project)[-2:] == [("+", "reviewer", team.admin),
                                                                ("-", "annotator", team.admin)]
    assert guardian_perms(annotator, team.project) == {"view_project", "review_project"}


def test_granting_manage_makes_a_manager_who_works_in_the_admin(team, admin_client):
    newcomer = factories.UserFactory(username="newcomer")

    save(admin_client, team.project, newcomer, "manage_project", "annotate_project")

    newcomer.refresh_from_db()
    assert roles(newcomer, team.project) == {"manager", "annotator"}
    assert guardian_perms(newcomer, team.project) == {"view_project", "manage_project", "annotate_project"}
    assert newcomer.is_staff and newcomer.groups.filter(name=services.MANAGERS_GROUP).exists()


def test_revoking_everything_on_the_page_takes_the_person_out_of_the_project(team, admin_client):
    reviewer = team.reviewer

    response = save(admin_client, team.project, reviewer)

    assert response.status_code == 302
    assert roles(reviewer, team.project) == set()
    assert membership_history(reviewer, team.project)[-1] == ("-", "reviewer", team.admin)
    assert guardian_perms(reviewer, team.project) == set()


def test_view_alone_is_refused_with_the_reason(team, admin_client):
    newcomer = factories.UserFactory(username="newcomer")
    annotator = team.annotators[1]

    refused = save(admin_client, team.project, newcomer, "view_project")
    narrowed = save(admin_client, team.project, annotator, "view_project")

    for response in (refused, narrowed):
        assert response.status_code == 200
        assert "“View” alone is not a role" in response.content.decode()
    assert roles(newcomer, team.project) == set() and guardian_perms(newcomer, team.project) == set()
    assert roles(annotator, team.project) == {"annotator"}
    assert guardian_perms(annotator, team.project) == {"view_project", "annotate_project"}


def test_saving_the_page_drops_permissions_that_belong_to_no_role(team, admin_client):
    annotator = team.annotators[2]
    assign_perm("projects.change_project", annotator, team.project)  # granted raw, before the page edited roles

    save(admin_client, team.project, annotator, "annotate_project")

    assert roles(annotator, team.project) == {"annotator"}
    assert guardian_perms(annotator, team.project) == {"view_project", "annotate_project"}


def test_a_group_gets_no_new_permissions_but_an_old_grant_can_be_removed(team, admin_client):
    group = Group.objects.create(name="Night shift")

    refused = admin_client.post(group_page(team.project, group), {"permissions": ["annotate_project"]})

    assert refused.status_code == 200
    assert "Project roles are given to people, not groups" in refused.content.decode()
    assert not get_group_perms(group, team.project).exists()

    # given a group permission granted before (directly), the page can take it away
    assign_perm("projects.view_project", group, team.project)
    removed = admin_client.post(group_page(team.project, group), {"permissions": [], "csrfmiddlewaretoken": "-"})
    assert removed.status_code == 302
    assert not get_group_perms(group, team.project).exists()

