"""Roles: memberships kept in step with guardian object permissions, and project reads scoped by them.

A user sees a project only while they hold a role in it (or are an admin); anonymous users and members of other
projects see nothing of it, not even that it exists (DoesNotExist, a 404)."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from apps.core.errors import PermissionDeniedError, ValidationError
from apps.core.permissions import ANNOTATE, MANAGE, REVIEW, VIEW, has_project_perm
from apps.projects import selectors, services
from apps.projects.models import Membership, Project
from apps.tasks import services as task_services
from tests import factories

pytestmark = pytest.mark.django_db

PERMS = (VIEW, ANNOTATE, REVIEW, MANAGE)


def perms_of(user, project):
    """The project permissions the user holds, read fresh from the database (no permission cache)."""
    user = get_user_model().objects.get(pk=user.pk)
    return {perm for perm in PERMS if user.has_perm(f"projects.{perm}", project)}


# --- membership_add / membership_remove keep the permissions in sync ------------------------------------------------


@pytest.mark.parametrize("role, perm", [("annotator", ANNOTATE), ("reviewer", REVIEW), ("manager", MANAGE)])
def test_a_role_grants_its_permission_and_view(role, perm):
    # given a project and a user without any role in it
    project = factories.project()
    user = factories.UserFactory()
    assert perms_of(user, project) == set()

    # when the user is given the role
    membership = services.membership_add(project=project, user=user, role=role)

    # then they hold exactly the role's permission and view, on this project only
    assert (membership.project, membership.user, membership.role) == (project, user, role)
    assert perms_of(user, project) == {VIEW, perm}
    other = factories.project(slug="other")
    assert perms_of(user, other) == set()


def test_roles_add_up_and_removing_one_keeps_the_others_and_view():
    # given a user who is annotator and reviewer
    project = factories.project()
    user = factories.UserFactory()
    services.membership_add(project=project, user=user, role="annotator")
    services.membership_add(project=project, user=user, role="reviewer")
    assert perms_of(user, project) == {VIEW, ANNOTATE, REVIEW}

    # when the annotator role is removed
    removed = services.membership_remove(project=project, user=user, role="annotator")

    # then the reviewer role and view stay
    assert removed == 1
    assert perms_of(user, project) == {VIEW, REVIEW}
    assert list(Membership.objects.filter(user=user).values_list("role", flat=True)) == ["reviewer"]


def test_removing_the_last_role_removes_view_and_the_project_disappears():
    # given an annotator of a project
    project = factories.project()
    user = factories.member(project, "annotator")
    assert selectors.project_get(user=user, project_id=project.pk) == project

    # when their only role is removed
    services.membership_remove(project=project, user=user, role="annotator")

    # then they hold nothing on the project, and it is as if it did not exist for them
    assert perms_of(user, project) == set()
    assert not selectors.project_list(user=user).exists()
    with pytest.raises(Project.DoesNotExist):
        selectors.project_get(user=user, project_id=project.pk)


def test_removing_all_roles_at_once():
    project = factories.project()
    user = factories.UserFactory()
    for role in ("annotator", "reviewer", "manager"):
        services.membership_add(project=project, user=user, role=role)
    assert services.membership_remove(project=project, user=user) == 3
    assert perms_of(user, project) == set()
    assert not Membership.objects.filter(user=user).exists()


def test_adding_a_role_twice_is_one_membership():
    project = factories.project()
    user = factories.UserFactory()
    first = services.membership_add(project=project, user=user, role="reviewer")
    again = services.membership_add(project=project, user=user, role="reviewer")
    assert first.pk == again.pk
    assert Membership.objects.filter(user=user).count() == 1
    assert Membership.history.filter(user=user).count() == 1


def test_removing_a_role_the_user_does_not_hold_changes_nothing():
    project = factories.project()
    user = factories.member(project, "annotator")
    assert services.membership_remove(project=project, user=user, role="manager") == 0
    assert perms_of(user, project) == {VIEW, ANNOTATE}


def test_an_unknown_role_is_refused_and_changes_nothing():
    project = factories.project()
    user = factories.UserFactory()
    with pytest.raises(ValidationError) as refused:
        services.membership_add(project=project, user=user, role="owner")
    assert "role" in refused.value.errors
    assert not Membership.objects.filter(user=user).exists()
    assert perms_of(user, project) == set()


def test_only_a_manager_changes_memberships_and_the_history_names_them():
    # given a project with a manager and an annotator
    project = factories.project()
    manager = factories.member(project, "manager", "manager")
    annotator = factories.member(project, "annotator", "annotator")
    newcomer = factories.UserFactory(username="newcomer")

    # when the annotator tries to add or remove someone, then it is refused and nothing changes
    with pytest.raises(PermissionDeniedError):
        services.membership_add(project=project, user=newcomer, role="annotator", actor=annotator)
    with pytest.raises(PermissionDeniedError):
        services.membership_remove(project=project, user=manager, actor=annotator)
    assert perms_of(newcomer, project) == set()
    assert perms_of(manager, project) == {VIEW, MANAGE}

    # when the manager adds and then removes the newcomer, then both are in the history under the manager's name
    services.membership_add(project=project, user=newcomer, role="annotator", actor=manager)
    services.membership_remove(project=project, user=newcomer, actor=manager)
    rows = list(Membership.history.filter(user=newcomer).order_by("history_id")
                .values_list("history_type", "role", "history_user"))
    assert rows == [("+", "annotator", manager.pk), ("-", "annotator", manager.pk)]


def test_an_admin_holds_every_permission_without_a_membership():
    project = factories.project()
    admin = get_user_model().objects.get(username="admin")
    assert all(has_project_perm(admin, project, perm) for perm in PERMS)
    admin.is_active = False
    assert not has_project_perm(admin, project, VIEW)


# --- project reads, per kind of user -------------------------------------------------------------------------------


@pytest.fixture
def team():
    return factories.team()


def test_anonymous_sees_no_project(team):
    anonymous = AnonymousUser()
    assert not selectors.project_list(user=anonymous).exists()
    assert not selectors.project_list_with_progress(user=anonymous).exists()
    assert not selectors.batch_list(user=anonymous).exists()
    with pytest.raises(Project.DoesNotExist):
        selectors.project_get(user=anonymous, project_id=team.project.pk)


def test_a_member_of_another_project_sees_only_that_one(team):
    # given the annotator of another project
    outsider = team.outsider

    # then they see their project, not this one, nor its batches
    assert list(selectors.project_list(user=outsider)) == [team.other_project]
    with pytest.raises(Project.DoesNotExist):
        selectors.project_get(user=outsider, project_id=team.project.pk)
    assert not selectors.batch_list(user=outsider, project=team.project).exists()
    assert team.batch not in selectors.batch_list(user=outsider)
    assert not selectors.membership_list(user=outsider, project=team.project).exists()


@pytest.mark.parametrize("who", ["annotator", "reviewer", "manager"])
def test_every_role_sees_its_project(team, who):
    user = {"annotator": team.annotators[0], "reviewer": team.reviewer, "manager": team.manager}[who]
    assert list(selectors.project_list(user=user)) == [team.project]
    assert selectors.project_get(user=user, project_id=team.project.pk) == team.project
    assert list(selectors.batch_list(user=user)) == [team.batch]


@pytest.mark.parametrize("who, perm, sees", [
    ("annotator", ANNOTATE, True), ("annotator", REVIEW, False), ("annotator", MANAGE, False),
    ("reviewer", REVIEW, True), ("reviewer", ANNOTATE, False), ("reviewer", MANAGE, False),
    ("manager", MANAGE, True), ("manager", ANNOTATE, False), ("manager", REVIEW, False),
])
def test_project_list_by_permission(team, who, perm, sees):
    user = {"annotator": team.annotators[0], "reviewer": team.reviewer, "manager": team.manager}[who]
    assert selectors.project_list(user=user, perm=perm).filter(pk=team.project.pk).exists() is sees
    if not sees:
        with pytest.raises(Project.DoesNotExist):
            selectors.project_get(user=user, project_id=team.project.pk, perm=perm)


def test_an_admin_sees_every_project(team):
    assert set(selectors.project_list(user=team.admin)) == {team.project, team.other_project}
    assert selectors.project_get(user=team.admin, project_id=team.other_project.pk, perm=MANAGE) == \
        team.other_project
    assert selectors.membership_list(user=team.admin, project=team.project).count() == 5


def test_an_inactive_member_sees_nothing(team):
    annotator = team.annotators[0]
    annotator.is_active = False
    annotator.save()
    assert not selectors.project_list(user=annotator).exists()


def test_only_managers_list_the_members(team):
    members = selectors.membership_list(user=team.manager, project=team.project)
    assert sorted(m.user.username for m in members) == ["annotator0", "annotator1", "annotator2", "manager",
                                                        "reviewer"]
    for user in (team.reviewer, team.annotators[0]):
        assert not selectors.membership_list(user=user, project=team.project).exists()


def test_members_with_role(team):
    assert [m.user for m in selectors.members_with_role(project=team.project, role="reviewer")] == [team.reviewer]
    assert selectors.members_with_role(project=team.project, role="annotator").count() == 3


def test_progress_counts_accepted_and_leaves_cancelled_out(team):
    # given three more tasks: one accepted (no review), one cancelled
    project = factories.project(review_mode="none", slug="progress")
    manager = factories.member(project, "manager")
    annotator = factories.member(project, "annotator")
    done, dropped, _open = factories.tasks(factories.batch(project), 3)
    assignment = task_services.assignment_assign(task=done, annotator=annotator)
    task_services.assignment_submit(assignment=assignment, actor=annotator, result={"label": "cat"})
    task_services.task_cancel(task=dropped, actor=manager)

    # then the manager's project list carries 1 accepted of 2 (cancelled left out)
    [row] = selectors.project_list_with_progress(user=manager)
    assert (row.tasks_accepted, row.tasks_total) == (1, 2)
    [batch_row] = selectors.batch_list_with_progress(user=manager, project=project)
    assert (batch_row.tasks_accepted, batch_row.tasks_total) == (1, 2)
    # and a user outside the project gets no row at all
    assert not selectors.project_list_with_progress(user=team.outsider).filter(pk=project.pk).exists()
