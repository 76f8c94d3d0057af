"""Teams in the admin: superusers see and edit all; a manager sees the teams holding people of the projects they
manage, picks members among those people only, and keeps the members from elsewhere when saving."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from apps.annotators.models import Team
from apps.projects.models import Membership
from tests import factories

pytestmark = pytest.mark.django_db


class Shifts:
    def __init__(self):
        self.admin = factories.UserFactory(username="admin", is_staff=True, is_superuser=True)
        self.project = factories.project(actor=self.admin, slug="mine")
        self.manager = factories.member(self.project, Membership.Role.MANAGER, "manager")
        # Team permissions for the managers' group are the coordinator's to add (projects.services); here by hand.
        self.manager.user_permissions.add(*Permission.objects.filter(content_type__app_label="annotators",
                                                                     codename__endswith="_team"))
        self.mine = factories.member(self.project, Membership.Role.ANNOTATOR, "my_annotator")
        self.elsewhere_project = factories.project(actor=self.admin, slug="theirs")
        self.stranger = factories.member(self.elsewhere_project, Membership.Role.ANNOTATOR, "their_annotator")
        self.mixed = Team.objects.create(name="Mixed <b>shift</b>")
        self.mixed.members.set([self.mine, self.stranger])
        self.theirs = Team.objects.create(name="Their team")
        self.theirs.members.set([self.stranger])


@pytest.fixture
def shifts(db):
    return Shifts()


def test_a_superuser_sees_every_team(client, shifts):
    client.force_login(shifts.admin)

    html = client.get(reverse("admin:annotators_team_changelist")).content.decode()

    assert "Their team" in html and "Mixed &lt;b&gt;shift&lt;/b&gt;" in html and "Mixed <b>" not in html


def test_a_manager_sees_only_teams_with_their_people(client, shifts):
    client.force_login(shifts.manager)

    html = client.get(reverse("admin:annotators_team_changelist")).content.decode()

    assert "Mixed &lt;b&gt;shift&lt;/b&gt;" in html and "Their team" not in html
    assert client.get(reverse("admin:annotators_team_change", args=[shifts.theirs.pk])).status_code in (302, 404)


def test_a_manager_picks_members_among_their_people_and_keeps_the_others(client, shifts):
    client.force_login(shifts.manager)
    url = reverse("admin:annotators_team_change", args=[shifts.mixed.pk])

    form = client.get(url).content.decode()
    response = client.post(url, {"name": "Morning shift", "description": "", "members": [shifts.mine.pk]})

    assert "my_annotator" in form and "their_annotator" not in form
    assert response.status_code == 302
    shifts.mixed.refresh_from_db()
    assert shifts.mixed.name == "Morning shift"
    assert set(shifts.mixed.members.all()) == {shifts.mine, shifts.stranger}
    # nor can they put someone from elsewhere into a team
    response = client.post(url, {"name": "Morning shift", "members": [shifts.stranger.pk, shifts.mine.pk]})
    assert response.status_code == 200 and "members" in response.context["adminform"].form.errors


def test_a_manager_cannot_delete_a_team_that_holds_other_projects_people(client, shifts):
    client.force_login(shifts.manager)

    response = client.post(reverse("admin:annotators_team_delete", args=[shifts.mixed.pk]), {"post": "yes"})

    assert response.status_code == 403
    assert Team.objects.filter(pk=shifts.mixed.pk).exists()


def test_a_manager_adds_a_team_of_their_people(client, shifts):
    client.force_login(shifts.manager)

    response = client.post(reverse("admin:annotators_team_add"), {"name": "Evening shift",
                                                                   "members": [shifts.mine.pk]})

    assert response.status_code == 302
    assert list(Team.objects.get(name="Evening shift").members.all()) == [shifts.mine]


def test_the_demo_has_two_shifts_made_once():
    from apps.core.demo import DEMO_TEAMS, demo_teams

    for usernames in DEMO_TEAMS.values():
        for username in usernames:
            factories.UserFactory(username=username)

    demo_teams()
    Team.objects.get(name="Morning shift").members.clear()  # a team lead changed it since
    demo_teams()

    assert sorted(Team.objects.values_list("name", flat=True)) == ["Evening shift", "Morning shift"]
    assert sorted(Team.objects.get(name="Evening shift").members.values_list("username", flat=True)) == [
        "jan", "mateo", "youssef"]
    assert Team.objects.get(name="Morning shift").members.count() == 0


def test_the_team_list_counts_members_in_one_query_whatever_the_number_of_teams(client, django_assert_max_num_queries):
    from django.contrib.auth import get_user_model

    admin_user = get_user_model().objects.create_superuser("teamsadmin", "a@example.org", "pw-Secret-1")
    people = [factories.UserFactory(username=f"member{i}") for i in range(6)]
    for i in range(8):
        Team.objects.create(name=f"Shift {i}").members.add(*people[: i % 4 + 1])
    client.force_login(admin_user)
    with django_assert_max_num_queries(12):
        page = client.get("/admin/annotators/team/")
    assert page.status_code == 200
    counts = [row.member_total for row in page.context["cl"].result_list]
    assert sorted(counts) == sorted(i % 4 + 1 for i in range(8))
