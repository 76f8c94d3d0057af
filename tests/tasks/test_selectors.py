"""Task reads scoped by role (DESIGN.md, Who uses it): managers see every task of their projects, reviewers every
non-gold one; an annotator sees only tasks they were given, only their own annotations and events (blind overlap), never gold
answers; confidential clarifications only managers and the asker see; users outside a project see nothing of it."""

import pytest
from django.contrib.auth.models import AnonymousUser

from apps.projects import services as project_services
from apps.tasks import selectors, services
from apps.tasks.models import Assignment, Task
from tests import factories

pytestmark = pytest.mark.django_db


class Shared:
    """An overlap-2 project: annotators 0 and 1 both submitted on the first task; annotator 2 holds the second
    task; a third task nobody was given; and a gold task annotator 0 answered."""

    def __init__(self):
        self.team = team = factories.team(overlap=2)
        self.a0, self.a1, self.a2 = team.annotators
        self.shared = team.task
        self.held, self.untouched = factories.tasks(team.batch, 2)
        self.gold = factories.tasks(team.batch, is_gold=True, gold_answer={"label": "dog"})[0]
        self.annotations = {}
        for annotator, label in ((self.a0, "cat"), (self.a1, "dog")):
            assignment = services.assignment_assign(task=self.shared, annotator=annotator)
            self.annotations[annotator] = services.assignment_submit(assignment=assignment, actor=annotator,
                                                                     result={"label": label})
        self.held_assignment = services.assignment_assign(task=self.held, annotator=self.a2)
        gold_assignment = services.assignment_assign(task=self.gold, annotator=self.a0)
        services.assignment_submit(assignment=gold_assignment, actor=self.a0, result={"label": "cat"})
        self.all_tasks = {self.shared, self.held, self.untouched, self.gold}


@pytest.fixture
def given():
    return Shared()


def people(given):
    team = given.team
    return {"admin": team.admin, "manager": team.manager, "reviewer": team.reviewer, "annotator0": given.a0,
            "annotator1": given.a1, "annotator2": given.a2, "outsider": team.outsider, "anonymous": AnonymousUser()}


# --- task_list / task_get ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who, expected", [
    ("admin", {"shared", "held", "untouched", "gold"}),
    ("manager", {"shared", "held", "untouched", "gold"}),
    ("reviewer", {"shared", "held", "untouched"}),  # reviewers never see gold tasks
    ("annotator0", {"shared", "gold"}),
    ("annotator1", {"shared"}),
    ("annotator2", {"held"}),
    ("outsider", set()),
    ("anonymous", set()),
])
def test_task_list_shows_each_user_the_tasks_they_may_open(given, who, expected):
    user = people(given)[who]
    names = {given.shared.pk: "shared", given.held.pk: "held", given.untouched.pk: "untouched",
             given.gold.pk: "gold"}
    listed = list(selectors.task_list(user=user).values_list("pk", flat=True))
    assert len(listed) == len(set(listed)), "a task is listed twice"
    assert {names[pk] for pk in listed} == expected
    assert {names[pk] for pk in selectors.task_list(user=user, project=given.team.project)
            .values_list("pk", flat=True)} == expected


def test_task_list_of_an_admin_lists_each_task_once_however_many_assignments_it_has(given):
    # given a task with two assignments, another with one
    listed = list(selectors.task_list(user=given.team.admin).values_list("pk", flat=True))

    # then every task is listed exactly once
    assert sorted(listed) == sorted(t.pk for t in given.all_tasks)
    assert selectors.task_list(user=given.team.admin).count() == Task.objects.count()


@pytest.mark.parametrize("who, visible", [
    ("admin", {"shared", "held", "untouched", "gold"}),
    ("manager", {"shared", "held", "untouched", "gold"}),
    ("reviewer", {"shared", "held", "untouched"}),  # reviewers never see gold tasks
    ("annotator0", {"shared", "gold"}),
    ("annotator2", {"held"}),
    ("outsider", set()),
    ("anonymous", set()),
])
def test_task_get_answers_does_not_exist_for_a_task_the_user_may_not_open(given, who, visible):
    user = people(given)[who]
    for name, task in (("shared", given.shared), ("held", given.held), ("untouched", given.untouched),
                       ("gold", given.gold)):
        if name in visible:
            assert selectors.task_get(user=user, task_id=task.pk) == task
        else:
            with pytest.raises(Task.DoesNotExist):
                selectors.task_get(user=user, task_id=task.pk)


def test_task_get_of_a_task_that_does_not_exist(given):
    with pytest.raises(Task.DoesNotExist):
        selectors.task_get(user=given.team.manager, task_id=10**9)


def test_an_annotator_removed_from_the_project_sees_none_of_its_tasks_any_more(given):
    # given annotator 0, who worked on two tasks and asked a question, loses their role in the project
    services.clarification_ask(task=given.shared, actor=given.a0, question="Fox?")
    assert selectors.clarification_list(user=given.a0).exists()
    project_services.membership_remove(project=given.team.project, user=given.a0)

    # then the tasks, their annotations, events, assignments and questions are gone for them
    assert not selectors.clarification_list(user=given.a0).exists()
    assert not selectors.task_list(user=given.a0).exists()
    for task in (given.shared, given.gold):
        with pytest.raises(Task.DoesNotExist):
            selectors.task_get(user=given.a0, task_id=task.pk)
        assert not selectors.annotation_list(user=given.a0, task=task).exists()
        assert not selectors.event_list(user=given.a0, task=task).exists()
    assert not selectors.assignment_list_for_annotator(user=given.a0).exists()


# --- blind overlap: annotations and events ------------------------------------------------------------------------------


@pytest.mark.parametrize("who, sees", [
    ("admin", {"annotator0", "annotator1"}), ("manager", {"annotator0", "annotator1"}),
    ("reviewer", {"annotator0", "annotator1"}), ("annotator0", {"annotator0"}), ("annotator1", {"annotator1"}),
    ("annotator2", set()), ("outsider", set()), ("anonymous", set()),
])
def test_annotation_list_is_blind_between_annotators(given, who, sees):
    user = people(given)[who]
    authors = {a.annotator.username for a in selectors.annotation_list(user=user, task=given.shared)}
    assert authors == sees


def test_an_annotator_sees_every_version_of_their_own_work_including_a_reviewers_fix(given):
    # given the reviewer fixed annotator 0's work on the shared task
    services.review_fix(annotation=given.annotations[given.a0], reviewer=given.team.reviewer,
                        corrected_result={"label": "bird"})

    # then annotator 0 sees both versions of their assignment, annotator 1 only their own
    assert [(a.version, a.result) for a in selectors.annotation_list(user=given.a0, task=given.shared)] == [
        (1, {"label": "cat"}), (2, {"label": "bird"})]
    assert [a.annotator for a in selectors.annotation_list(user=given.a1, task=given.shared)] == [given.a1]


@pytest.mark.parametrize("who", ["admin", "manager", "reviewer", "annotator0", "annotator1", "outsider", "anonymous"])
def test_event_list_shows_an_annotator_only_their_own_assignment(given, who):
    user = people(given)[who]
    events = list(selectors.event_list(user=user, task=given.shared))
    assignments = {e.assignment.annotator.username for e in events if e.assignment_id}
    if who in ("admin", "manager", "reviewer"):
        assert assignments == {"annotator0", "annotator1"}
        assert [e.type for e in events] == ["assigned", "submitted", "assigned", "submitted"]
    elif who.startswith("annotator"):
        assert assignments == {who} and [e.type for e in events] == ["assigned", "submitted"]
    else:
        assert events == []


# --- gold and assignments ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who, sees_gold", [("admin", True), ("manager", True), ("reviewer", False),
                                            ("annotator0", False), ("outsider", False), ("anonymous", False)])
def test_only_managers_and_admins_see_gold(given, who, sees_gold):
    assert selectors.can_see_gold(people(given)[who], given.team.project) is sees_gold


@pytest.mark.parametrize("who, sees_all", [("admin", True), ("manager", True), ("reviewer", True),
                                           ("annotator0", False), ("outsider", False), ("anonymous", False)])
def test_can_see_all_of_project(given, who, sees_all):
    assert selectors.can_see_all_of_project(people(given)[who], given.team.project) is sees_all


def test_assignments_of_an_annotator_are_their_own(given):
    assert {a.task for a in selectors.assignment_list_for_annotator(user=given.a0)} == {given.shared, given.gold}
    assert [a.task for a in selectors.assignment_list_for_annotator(user=given.a2, statuses=["assigned"])] == [
        given.held]
    assert not selectors.assignment_list_for_annotator(user=given.a2, statuses=["submitted"]).exists()
    assert not selectors.assignment_list_for_annotator(user=given.a0, project=given.team.other_project).exists()
    assert not selectors.assignment_list_for_annotator(user=AnonymousUser()).exists()


def test_an_assignment_is_found_only_for_its_own_annotator(given):
    assignment = given.held_assignment
    assert selectors.assignment_get_for_annotator(user=given.a2, assignment_id=assignment.pk) == assignment
    for user in (given.a0, given.team.manager, given.team.outsider):
        with pytest.raises(Assignment.DoesNotExist):
            selectors.assignment_get_for_annotator(user=user, assignment_id=assignment.pk)


# --- clarifications ------------------------------------------------------------------------------------------------------


def test_clarifications_confidential_ones_only_for_managers_and_the_asker(given):
    # given annotator 0 asked openly and annotator 1 asked confidentially on the shared task,
    # and annotator 2 asked on the task only they hold
    open_question = services.clarification_ask(task=given.shared, actor=given.a0, question="Fox?")
    secret = services.clarification_ask(task=given.shared, actor=given.a1, question="Is this my cousin's cat?",
                                        confidential=True)
    other = services.clarification_ask(task=given.held, actor=given.a2, question="Blurry?")
    everyone = people(given)

    # then each user sees exactly what they may
    expected = {
        "admin": {open_question, secret, other}, "manager": {open_question, secret, other},
        "annotator0": {open_question}, "annotator1": {open_question, secret}, "annotator2": {other},
        "reviewer": set(), "outsider": set(), "anonymous": set(),
    }
    for who, visible in expected.items():
        assert set(selectors.clarification_list(user=everyone[who])) == visible, who
        assert set(selectors.clarification_list(user=everyone[who], project=given.team.project)) == visible, who
    assert not selectors.clarification_list(user=given.team.manager, project=given.team.other_project).exists()
