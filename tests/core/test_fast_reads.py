"""The hot reads written as fixed SQL (token, object permissions, project, the annotator's assignment) give the
answers the ORM gave: the same rows, the same model instances, the same refusals.

The ORM versions they replaced are the known answers here: each test builds what the queryset would have returned
and compares."""

import pytest
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.utils import translation
from guardian.shortcuts import assign_perm, remove_perm
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.core.authentication import FastTokenAuthentication
from apps.core.permissions import ANNOTATE, MANAGE, VIEW, _object_perms_prefetch, has_project_perm
from apps.projects import services as project_services
from apps.projects.models import Membership, Project
from apps.projects.selectors import project_get
from apps.tasks import services as task_services
from apps.tasks.models import Assignment
from apps.tasks.selectors import assignment_get_for_annotator
from tests import factories


def fields_of(instance):
    """An instance's field values as the ORM loaded them (no state, no caches)."""
    return {key: value for key, value in instance.__dict__.items() if not key.startswith("_")}


@pytest.fixture
def team(db):
    team = factories.team()
    team.annotator = team.annotators[0]
    team.assignment = task_services.assignment_assign(task=team.task, annotator=team.annotator)
    for user in (team.admin, team.manager, team.reviewer, team.outsider, *team.annotators):
        user.evict_obj_perms_cache()  # as a request's freshly read user
    return team


def token_client(key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


# --- token authentication ------------------------------------------------------------------------------------------


def test_a_valid_token_gives_the_user_and_token_drf_would_give(team, django_assert_num_queries):
    token = Token.objects.create(user=team.annotator)

    with django_assert_num_queries(1):
        user, auth = FastTokenAuthentication().authenticate_credentials(token.key)
        assert auth.user is user  # select_related's cache: no second query
        assert user.auth_token is auth

    drf_user, drf_token = TokenAuthentication().authenticate_credentials(token.key)
    assert (type(user), fields_of(user)) == (type(drf_user), fields_of(drf_user))
    assert (type(auth), fields_of(auth)) == (type(drf_token), fields_of(drf_token))
    assert user._state.adding is False and user._state.db == "default"


def test_the_api_knows_the_caller_by_their_token(team):
    token = Token.objects.create(user=team.annotator)

    answer = token_client(token.key).get(f"/api/v1/projects/{team.project.pk}/")

    assert answer.status_code == 200 and answer.json()["id"] == team.project.pk


def test_an_unknown_token_is_refused_with_drfs_message(team):
    Token.objects.create(user=team.annotator)

    answer = token_client("0" * 40).get(f"/api/v1/projects/{team.project.pk}/")

    assert answer.status_code == 401
    assert answer.json()["detail"] == "Invalid token."
    with pytest.raises(exceptions.AuthenticationFailed, match="Invalid token."):
        FastTokenAuthentication().authenticate_credentials("0" * 40)


def test_an_inactive_users_token_is_refused_with_drfs_message(team):
    token = Token.objects.create(user=team.annotator)
    team.annotator.is_active = False
    team.annotator.save(update_fields=["is_active"])

    answer = token_client(token.key).get(f"/api/v1/projects/{team.project.pk}/")

    assert answer.status_code == 401
    assert answer.json()["detail"] == "User inactive or deleted."
    assert not Assignment.objects.filter(annotator=team.annotator).exclude(pk=team.assignment.pk).exists()


def test_the_refusals_are_translated_as_drf_translates_them(team):
    token = Token.objects.create(user=team.annotator)
    team.annotator.is_active = False
    team.annotator.save(update_fields=["is_active"])

    with translation.override("es"):
        with pytest.raises(exceptions.AuthenticationFailed) as ours:
            FastTokenAuthentication().authenticate_credentials(token.key)
        with pytest.raises(exceptions.AuthenticationFailed) as drfs:
            TokenAuthentication().authenticate_credentials(token.key)
        assert str(ours.value.detail) == str(drfs.value.detail) != "User inactive or deleted."


# --- object permissions --------------------------------------------------------------------------------------------


def test_the_permission_cache_holds_the_users_own_and_their_groups_permissions(team):
    annotator, project, other = team.annotator, team.project, team.other_project
    group = Group.objects.create(name="Readers of the other project")
    annotator.groups.add(group)
    assign_perm("projects.view_project", group, other)
    assign_perm("projects.review_project", group, project)
    Group.objects.create(name="Not theirs").user_set.add(team.reviewer)
    assign_perm("projects.manage_project", Group.objects.get(name="Not theirs"), project)
    project_type = ContentType.objects.get_for_model(Project).pk

    _object_perms_prefetch(annotator)

    cache = {key: sorted(codenames) for key, codenames in annotator._guardian_perms_cache.items()}
    assert cache == {
        (project_type, str(project.pk)): ["annotate_project", "review_project", "view_project"],
        (project_type, str(other.pk)): ["view_project"],
    }
    assert has_project_perm(annotator, other, VIEW) and not has_project_perm(annotator, other, ANNOTATE)
    assert not has_project_perm(annotator, project, MANAGE)


def test_the_permissions_are_read_once_per_user_object(team, django_assert_num_queries):
    with django_assert_num_queries(1):
        assert has_project_perm(team.annotator, team.project, ANNOTATE)
        assert has_project_perm(team.annotator, team.project, VIEW)
        assert not has_project_perm(team.annotator, team.other_project, VIEW)


# --- project_get ---------------------------------------------------------------------------------------------------


def test_a_member_gets_the_project_as_the_orm_loads_it(team, django_assert_num_queries):
    with django_assert_num_queries(2):  # the project, the permissions
        project = project_get(user=team.annotator, project_id=team.project.pk, perm=ANNOTATE)

    orm = Project.objects.get(pk=team.project.pk)
    assert fields_of(project) == fields_of(orm)
    assert project.label_schema["labels"][0]["value"] == "cat" and project.created_at.tzinfo is not None
    assert project._state.adding is False and project._state.db == "default"


@pytest.mark.parametrize("project_id", ["{pk}", 10**30, -1, None, 0])
def test_project_get_accepts_what_the_orm_accepts(team, project_id):
    """A key as text is read as the ORM reads it; out of range or missing matches nothing (no database error)."""
    if project_id == "{pk}":
        assert project_get(user=team.admin, project_id=str(team.project.pk)).pk == team.project.pk
        return
    with pytest.raises(Project.DoesNotExist):
        project_get(user=team.admin, project_id=project_id)
    with pytest.raises(Project.DoesNotExist):
        Project.objects.get(pk=project_id)


def test_a_key_that_is_no_number_fails_as_in_the_orm(team):
    with pytest.raises(ValueError) as ours:
        project_get(user=team.admin, project_id="abc")
    with pytest.raises(ValueError) as orms:
        Project.objects.get(pk="abc")
    assert str(ours.value) == str(orms.value)


def test_project_get_hides_the_project_from_outsiders_and_the_inactive(team):
    with pytest.raises(Project.DoesNotExist):
        project_get(user=team.outsider, project_id=team.project.pk)
    with pytest.raises(Project.DoesNotExist):
        project_get(user=team.reviewer, project_id=team.project.pk, perm=ANNOTATE)
    with pytest.raises(Project.DoesNotExist):
        project_get(user=team.annotator, project_id=team.project.pk + 1000)
    team.annotator.is_active = False
    with pytest.raises(Project.DoesNotExist):
        project_get(user=team.annotator, project_id=team.project.pk)


def test_an_outsider_gets_404_from_the_api(team):
    answer = token_client(Token.objects.create(user=team.outsider).key).post(
        f"/api/v1/projects/{team.project.pk}/next/", {}, format="json")

    assert answer.status_code == 404
    assert not Assignment.objects.filter(annotator=team.outsider).exists()


def test_an_admin_sees_every_project(team):
    for project in (team.project, team.other_project):
        assert project_get(user=team.admin, project_id=project.pk, perm=MANAGE) == project


# --- assignment_get_for_annotator ----------------------------------------------------------------------------------


def test_the_annotator_gets_their_assignment_with_its_task_and_project(team, django_assert_num_queries):
    with django_assert_num_queries(2):  # the assignment with its task and project, the permissions
        assignment = assignment_get_for_annotator(user=team.annotator, assignment_id=team.assignment.pk)
        task, project = assignment.task, assignment.task.project

    orm = Assignment.objects.select_related("task__project").get(pk=team.assignment.pk)
    assert fields_of(assignment) == fields_of(orm)
    assert fields_of(task) == fields_of(orm.task)
    assert fields_of(project) == fields_of(orm.task.project)
    assert task.data == orm.task.data and assignment.assigned_at.tzinfo is not None


def test_another_annotators_assignment_does_not_exist_for_them(team):
    with pytest.raises(Assignment.DoesNotExist):
        assignment_get_for_annotator(user=team.annotators[1], assignment_id=team.assignment.pk)
    with pytest.raises(Assignment.DoesNotExist):
        assignment_get_for_annotator(user=team.admin, assignment_id=team.assignment.pk)
    with pytest.raises(Assignment.DoesNotExist):
        assignment_get_for_annotator(user=team.annotator, assignment_id=10**30)


def test_an_annotator_who_lost_the_annotate_permission_no_longer_gets_the_assignment(team):
    remove_perm("projects.annotate_project", team.annotator, team.project)
    team.annotator.evict_obj_perms_cache()

    with pytest.raises(Assignment.DoesNotExist):
        assignment_get_for_annotator(user=team.annotator, assignment_id=team.assignment.pk)


def test_a_removed_annotator_cannot_submit_over_the_api(team):
    client = token_client(Token.objects.create(user=team.annotator).key)
    project_services.membership_remove(project=team.project, user=team.annotator, role=Membership.Role.ANNOTATOR)

    answer = client.post(f"/api/v1/assignments/{team.assignment.pk}/submit/", {"result": {"label": "cat"}},
                         format="json")

    assert answer.status_code == 404
    team.assignment.refresh_from_db()
    assert team.assignment.status == Assignment.Status.ASSIGNED and not team.assignment.annotations.exists()
