"""Automatic pause of an annotator flagged low_gold (projects with pause_low_gold): the membership paused and
audited, one alert for the managers, a kind notice for the annotator, next/ refused while paused (started work
still theirs), and a manager's audited resume."""

from unittest import mock

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.core.errors import PermissionDeniedError, TransitionError
from apps.projects import services as project_services
from apps.projects.models import Membership
from apps.quality import routing, services as quality_services
from apps.quality.engine import ANNOTATORS, SCOPE
from apps.quality.models import Alert, MetricSnapshot
from apps.tasks import services
from tests import factories
from tests.api.conftest import client_for

pytestmark = pytest.mark.django_db

NOTICE = ("is paused while a lead reviews your recent gold results. They will be in touch; nothing you have done "
          "is lost.")


class Team:
    """A project with pause_low_gold, a manager, three annotators (one of them flagged low_gold by the annotators
    snapshot), a reviewer and open tasks."""

    def __init__(self, pause_low_gold=True):
        self.project = factories.project(slug="gold-watch", pause_low_gold=pause_low_gold, review_mode="none")
        self.manager = factories.member(self.project, Membership.Role.MANAGER, "lead")
        self.reviewer = factories.member(self.project, Membership.Role.REVIEWER, "checker")
        self.people = [factories.member(self.project, Membership.Role.ANNOTATOR, name)
                       for name in ("weak", "steady", "careful")]
        self.weak = self.people[0]
        self.membership = Membership.objects.get(project=self.project, user=self.weak, role="annotator")
        self.tasks = factories.tasks(factories.batch(self.project), 5)
        self.flag(self.weak)

    def flag(self, *flagged):
        rows = [{"annotator_id": person.pk, "username": person.username, "gold_accuracy": 0.2 if person in flagged
                 else 0.95, "gold_n": 24, "flags": ["low_gold"] if person in flagged else []}
                for person in self.people]
        MetricSnapshot.objects.create(project=self.project, scope=SCOPE.PROJECT, kind=ANNOTATORS,
                                      values={"annotators": rows}, computed_at=timezone.now())

    def next_task(self, person):
        return client_for(person).post(f"/api/v1/projects/{self.project.pk}/next/", {}, format="json")


def test_a_low_gold_annotator_is_paused_once_with_one_alert_for_the_managers():
    team = Team()

    [paused] = routing.low_gold_pause_evaluate(team.project)
    routing.low_gold_pause_evaluate(team.project)  # the next pass: already paused, nothing more

    team.membership.refresh_from_db()
    assert paused.pk == team.membership.pk and team.membership.paused_at is not None
    assert team.membership.pause_reason == "Gold accuracy flagged low_gold by the quality engine."
    record = team.membership.history.latest("history_date")
    assert (record.history_change_reason, record.history_user, record.paused_at) == (
        "paused", None, team.membership.paused_at)
    alert = Alert.objects.get(project=team.project)
    assert (alert.kind, alert.state, alert.severity) == ("outlier_annotator", "open", "warning")
    assert alert.details == {"annotator_id": team.weak.pk, "username": "weak", "project": team.project.name,
                             "paused": True, "flag": "low_gold", "gold_accuracy": 0.2, "gold_n": 24}
    assert alert.message == (f"Annotator #{team.weak.pk} (weak) was paused on the project “{team.project.name}”: "
                             "their gold accuracy (0.200) is too low.")
    others = Membership.objects.filter(project=team.project, paused_at__isnull=False)
    assert list(others.values_list("user__username", flat=True)) == ["weak"]


def test_nothing_is_paused_on_a_project_without_pause_low_gold():
    team = Team(pause_low_gold=False)
    assert routing.low_gold_pause_evaluate(team.project) == []
    team.membership.refresh_from_db()
    assert team.membership.paused_at is None and Alert.objects.count() == 0


def test_the_full_pass_pauses_the_annotator_the_engine_flags():
    team = Team()
    MetricSnapshot.objects.filter(project=team.project).delete()
    flags = {team.weak.pk: {"flags": ["low_gold"], "z": {"gold_accuracy": -4.0}}}
    with mock.patch("apps.quality.metrics.annotator_outlier_flags", return_value=flags), \
            mock.patch("apps.quality.tasks.webhook_deliver.delay"):
        # an annotator appears in the snapshot once they submitted something
        assignment = services.assignment_assign(task=team.tasks[0], annotator=team.weak)
        services.assignment_submit(assignment=assignment, actor=team.weak, result={"label": "cat"})
        quality_services.quality_recompute_full(project_id=team.project.pk)
    team.membership.refresh_from_db()
    assert team.membership.paused_at is not None
    kinds = sorted((kind, bool(paused)) for kind, paused in
                   Alert.objects.filter(project=team.project).values_list("kind", "details__paused"))
    assert kinds == [("outlier_annotator", False), ("outlier_annotator", True)]  # the flag's, and the pause's


def test_a_paused_annotator_gets_no_new_task_but_keeps_the_one_started():
    team = Team()
    held = services.assignment_assign(task=team.tasks[0], annotator=team.weak)
    routing.low_gold_pause_evaluate(team.project)

    # the assignment in hand comes back, and can be submitted
    response = team.next_task(team.weak)
    assert response.status_code == 200 and response.json()["assignment"]["id"] == held.pk
    services.assignment_submit(assignment=held, actor=team.weak, result={"label": "cat"})
    # then nothing new: a 409 that says why
    response = team.next_task(team.weak)
    assert response.status_code == 409
    body = response.json()
    assert "paused" in body["detail"] and body["errors"] == {}
    assert team.weak.assignments.count() == 1
    # the others work as before
    assert team.next_task(team.people[1]).status_code == 200


def test_the_annotator_sees_a_kind_notice_on_home_and_the_labeling_page_without_other_names(client):
    team = Team()
    routing.low_gold_pause_evaluate(team.project)
    client.force_login(team.weak)

    home = client.get(reverse("home")).content.decode()
    label = client.get(reverse("tasks:label", args=[team.project.pk])).content.decode()

    for page in (home, label):
        assert f"Your work on {team.project.name} {NOTICE}" in page
        assert "steady" not in page and "careful" not in page and "0.2" not in page
        assert "low_gold" not in page
    # a colleague who is not paused sees no notice
    client.force_login(team.people[1])
    assert NOTICE not in client.get(reverse("home")).content.decode()
    assert NOTICE not in client.get(reverse("tasks:label", args=[team.project.pk])).content.decode()


def test_a_manager_resumes_the_annotator_audited_and_the_alert_resolved_by_them():
    team = Team()
    routing.low_gold_pause_evaluate(team.project)

    project_services.membership_resume(membership=team.membership, actor=team.manager)

    team.membership.refresh_from_db()
    assert (team.membership.paused_at, team.membership.pause_reason) == (None, "")
    record = team.membership.history.latest("history_date")
    assert (record.history_change_reason, record.history_user) == ("resumed", team.manager)
    alert = Alert.objects.get(project=team.project)
    assert (alert.state, alert.resolved_by) == ("resolved", team.manager)
    assert team.next_task(team.weak).status_code == 200
    # the flag still stands, but a manager's resume holds until there are 20 new gold answers
    assert routing.low_gold_pause_evaluate(team.project) == []
    with pytest.raises(TransitionError):
        project_services.membership_resume(membership=team.membership, actor=team.manager)


def test_a_resumed_annotator_flagged_again_after_20_new_gold_answers_is_paused_again():
    team = Team()
    routing.low_gold_pause_evaluate(team.project)
    project_services.membership_resume(membership=team.membership, actor=team.manager)
    gold = factories.tasks(team.tasks[0].batch, 20, is_gold=True, gold_answer={"label": "cat"})
    for task in gold:
        assignment = services.assignment_assign(task=task, annotator=team.weak)
        services.assignment_submit(assignment=assignment, actor=team.weak, result={"label": "dog"})

    [paused] = routing.low_gold_pause_evaluate(team.project)

    assert paused.user == team.weak
    assert Alert.objects.filter(project=team.project, state="open").count() == 1


@pytest.mark.parametrize("who", ["weak", "reviewer", "outsider"])
def test_only_a_manager_resumes(who):
    team = Team()
    routing.low_gold_pause_evaluate(team.project)
    outsider = factories.member(factories.project(slug="elsewhere"), Membership.Role.MANAGER, "stranger")
    actor = {"weak": team.weak, "reviewer": team.reviewer, "outsider": outsider}[who]

    with pytest.raises(PermissionDeniedError):
        project_services.membership_resume(membership=team.membership, actor=actor)

    team.membership.refresh_from_db()
    assert team.membership.paused_at is not None
    assert Alert.objects.get(project=team.project).state == "open"


def test_the_admin_action_resumes_for_a_manager_and_sees_nothing_of_other_projects(client):
    team = Team()
    routing.low_gold_pause_evaluate(team.project)
    other = Team.__new__(Team)
    other.project = factories.project(slug="other-watch", pause_low_gold=True)
    stranger = factories.member(other.project, Membership.Role.MANAGER, "stranger")
    changelist = reverse("admin:projects_membership_changelist")

    # a manager of another project: the membership is not theirs to act on
    client.force_login(stranger)
    client.post(changelist, {"action": "resume_memberships", "_selected_action": [team.membership.pk]})
    team.membership.refresh_from_db()
    assert team.membership.paused_at is not None

    # the project's manager
    client.force_login(team.manager)
    assert "weak" in client.get(changelist + "?paused=yes").content.decode()
    response = client.post(changelist, {"action": "resume_memberships", "_selected_action": [team.membership.pk]})
    assert response.status_code == 302
    team.membership.refresh_from_db()
    assert team.membership.paused_at is None
    assert team.membership.history.latest("history_date").history_user == team.manager


def test_the_routing_settings_are_in_the_project_form(client):
    team = Team()
    client.force_login(team.manager)
    page = client.get(reverse("admin:projects_project_change", args=[team.project.pk])).content.decode()
    for field in ("low_agreement_threshold", "low_agreement_routing", "max_overlap", "pause_low_gold"):
        assert f'name="{field}"' in page


def test_the_api_lists_paused_members_and_a_manager_resumes_through_it():
    team = Team()
    routing.low_gold_pause_evaluate(team.project)
    members = f"/api/v1/projects/{team.project.pk}/members/"
    resume = f"{members}{team.weak.pk}/resume/"

    rows = client_for(team.manager).get(members).json()["results"]
    paused = [(row["username"], row["pause_reason"]) for row in rows if row["paused_at"]]
    assert paused == [("weak", "Gold accuracy flagged low_gold by the quality engine.")]
    # an annotator (even the paused one) may not resume; someone outside the project does not see it
    assert client_for(team.weak).post(resume).status_code == 403
    stranger = factories.member(factories.project(slug="away"), Membership.Role.MANAGER, "stranger")
    assert client_for(stranger).post(resume).status_code == 404
    team.membership.refresh_from_db()
    assert team.membership.paused_at is not None

    response = client_for(team.manager).post(resume)
    assert response.status_code == 200 and response.json()["paused_at"] is None
    again = client_for(team.manager).post(resume)
    assert again.status_code == 409 and "is not paused" in again.json()["detail"]
    assert client_for(team.manager).post(f"{members}{team.reviewer.pk}/resume/").status_code == 404
