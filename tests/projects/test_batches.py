"""The batch state machine (DESIGN.md, Lifecycle): draft → active ⇄ paused → in_review → completed | blocked →
delivered, a manager's override of a blocked batch, and `batch_transition`, the one entry point of admin and API."""

import pytest

from apps.core.errors import PermissionDeniedError, TransitionError, ValidationError
from apps.projects import services
from apps.projects.models import Batch, Membership, QualityGate
from apps.quality.models import Webhook, WebhookDelivery
from apps.tasks import services as task_services
from apps.tasks.models import Task, TaskEvent
from tests import factories

pytestmark = pytest.mark.django_db

BATCH_STATES = ["draft", "active", "paused", "in_review", "blocked", "completed", "delivered"]


# --- helpers ------------------------------------------------------------------------------------------------------


def world():
    return {
        "batches": sorted(Batch.objects.values_list("pk", "status", "override_reason")),
        "batch history": Batch.history.count(),
        "tasks": sorted(Task.objects.values_list("pk", "status")),
        "task history": Task.history.count(),
        "events": TaskEvent.objects.count(),
        "deliveries": WebhookDelivery.objects.count(),
    }


def assert_refused(call, *, batch, current):
    batch.refresh_from_db()
    status, history_rows, before = batch.status, batch.history.count(), world()

    with pytest.raises(TransitionError) as refused:
        call()

    assert refused.value.status_code == 409
    assert refused.value.current == current
    batch.refresh_from_db()
    assert batch.status == status
    assert batch.history.count() == history_rows
    assert world() == before
    return refused.value


def batch_events(batch):
    return list(TaskEvent.objects.filter(batch=batch, task__isnull=True).order_by("id"))


def latest_history(obj):
    return obj.history.order_by("-history_id").first()


class Given:
    """A project (no review) with a manager, and a batch of it brought into `state` by the manager."""

    def __init__(self, state="draft", tasks=0):
        self.project = factories.project(review_mode="none")
        self.manager = factories.member(self.project, Membership.Role.MANAGER, "manager")
        self.annotator = factories.member(self.project, Membership.Role.ANNOTATOR, "annotator")
        self.batch = factories.batch(self.project, active=False, name="Week 1")
        self.tasks = factories.tasks(self.batch, tasks)
        path = {
            "draft": [], "active": ["activate"], "paused": ["activate", "pause"],
            "in_review": ["activate", "review"], "blocked": ["activate", "review", "block"],
            "completed": ["activate", "review", "complete"], "delivered": ["activate", "review", "complete", "deliver"],
        }[state]
        for step in path:
            kwargs = {"batch": self.batch, "actor": None if step == "block" else self.manager}
            getattr(services, f"batch_{step}")(**kwargs)
        self.batch.refresh_from_db()
        assert self.batch.status == state

    def gate(self, state=QualityGate.State.BREACHED, **fields):
        fields = {"project": self.project, "metric": "agreement", "threshold": 0.7, "state": state} | fields
        return QualityGate.objects.create(**fields)

    def finish_tasks(self):
        for task in self.tasks:
            task_services.task_cancel(task=task, actor=self.manager)


# --- legal transitions ---------------------------------------------------------------------------------------------


def test_activate_releases_a_draft_and_opens_its_tasks():
    # given a draft batch with three new tasks
    given = Given("draft", tasks=3)
    assert {t.status for t in given.tasks} == {"new"}

    # when the manager activates it
    services.batch_activate(batch=given.batch, actor=given.manager)

    # then the batch is active, its tasks are open, each with a history row by the manager
    given.batch.refresh_from_db()
    assert given.batch.status == "active"
    assert set(Task.objects.filter(batch=given.batch).values_list("status", flat=True)) == {"open"}
    for task in given.tasks:
        row = latest_history(task)
        assert (row.status, row.history_user, row.history_change_reason) == ("open", given.manager,
                                                                             "batch activated")
    # and one 'batch_activated' event says how many tasks opened; the history names the manager
    [event] = batch_events(given.batch)
    assert (event.type, event.actor, event.payload) == ("batch_activated", given.manager, {"opened_tasks": 3})
    assert (latest_history(given.batch).status, latest_history(given.batch).history_user) == ("active",
                                                                                             given.manager)


def test_activate_leaves_tasks_of_other_batches_alone():
    given = Given("draft", tasks=1)
    other = factories.batch(given.project, active=False, name="Week 2")
    other_task = factories.tasks(other)[0]
    services.batch_activate(batch=given.batch, actor=given.manager)
    other_task.refresh_from_db()
    assert other_task.status == "new"


def test_pause_and_activate_again_keep_the_tasks_as_they_are():
    # given an active batch with an open task and a task in progress
    given = Given("active", tasks=2)
    task_services.assignment_assign(task=given.tasks[0], annotator=given.annotator)

    # when the manager pauses it, then it is paused with a 'batch_paused' event
    services.batch_pause(batch=given.batch, actor=given.manager)
    given.batch.refresh_from_db()
    assert given.batch.status == "paused"
    assert (batch_events(given.batch)[-1].type, batch_events(given.batch)[-1].actor) == ("batch_paused",
                                                                                         given.manager)
    assert latest_history(given.batch).history_user == given.manager

    # when it is activated again, then it is active and no task was reopened
    services.batch_activate(batch=given.batch, actor=given.manager)
    given.batch.refresh_from_db()
    assert given.batch.status == "active"
    assert batch_events(given.batch)[-1].payload == {"opened_tasks": 0}
    assert sorted(Task.objects.filter(batch=given.batch).values_list("status", flat=True)) == ["in_progress", "open"]


@pytest.mark.parametrize("state", ["active", "paused"])
def test_review_starts_the_final_review(state):
    given = Given(state)
    services.batch_review(batch=given.batch, actor=given.manager)
    given.batch.refresh_from_db()
    assert given.batch.status == "in_review"
    event = batch_events(given.batch)[-1]
    assert (event.type, event.actor, event.payload) == ("batch_in_review", given.manager, {})
    assert (latest_history(given.batch).status, latest_history(given.batch).history_user) == ("in_review",
                                                                                             given.manager)


def test_block_is_raised_by_the_quality_engine_with_the_breached_gates():
    # given a batch in review and a breached gate
    given = Given("in_review")
    gate = given.gate()
    Webhook.objects.create(project=given.project, url="https://hooks.example.org/lp", secret="s",
                           events=["batch.blocked"])

    # when the engine blocks the batch (no user acting)
    services.batch_block(batch=given.batch, gates=[gate])

    # then it is blocked, the event lists the gate, and a webhook delivery is queued
    given.batch.refresh_from_db()
    assert given.batch.status == "blocked"
    event = batch_events(given.batch)[-1]
    assert (event.type, event.actor, event.payload) == ("batch_blocked", None, {"gates": [gate.pk]})
    assert latest_history(given.batch).history_user is None
    [delivery] = WebhookDelivery.objects.all()
    assert delivery.event == "batch.blocked" and delivery.payload["data"]["status"] == "blocked"


@pytest.mark.parametrize("state", ["in_review", "blocked"])
def test_complete_when_every_task_is_final_and_no_gate_is_breached(state):
    # given a batch whose tasks are all accepted or cancelled, gates pending or passing
    given = Given(state, tasks=2)
    given.finish_tasks()
    given.gate(state=QualityGate.State.PASSING)
    given.gate(state=QualityGate.State.PENDING, batch=given.batch)
    Webhook.objects.create(project=given.project, url="https://hooks.example.org/lp", secret="s",
                           events=["batch.completed"])

    # when the manager completes it
    services.batch_complete(batch=given.batch, actor=given.manager)

    # then it is completed, with its event, its history and a webhook delivery
    given.batch.refresh_from_db()
    assert (given.batch.status, given.batch.override_reason) == ("completed", "")
    event = batch_events(given.batch)[-1]
    assert (event.type, event.actor) == ("batch_completed", given.manager)
    assert latest_history(given.batch).history_user == given.manager
    assert WebhookDelivery.objects.get().event == "batch.completed"


def test_complete_with_unfinished_tasks_is_refused():
    given = Given("in_review", tasks=2)
    task_services.task_cancel(task=given.tasks[0], actor=given.manager)
    error = assert_refused(lambda: services.batch_complete(batch=given.batch, actor=given.manager),
                           batch=given.batch, current="in_review")
    assert "1 task(s)" in error.message


@pytest.mark.parametrize("scope", ["project", "batch"])
def test_complete_with_a_breached_gate_is_refused_naming_the_gate(scope):
    # given a finished batch in review and a breached gate on the project or on this batch
    given = Given("in_review")
    gate = given.gate(batch=given.batch if scope == "batch" else None)

    # when the manager completes it, then it is refused naming the gate and the way out
    error = assert_refused(lambda: services.batch_complete(batch=given.batch, actor=given.manager),
                           batch=given.batch, current="in_review")
    assert error.errors == {"gates": [gate.pk]}
    assert "override" in error.message


def test_gates_of_other_batches_and_inactive_gates_do_not_block():
    given = Given("in_review")
    other = factories.batch(given.project, active=False, name="Week 2")
    given.gate(batch=other)
    given.gate(is_active=False)
    services.batch_complete(batch=given.batch, actor=given.manager)
    given.batch.refresh_from_db()
    assert given.batch.status == "completed"


@pytest.mark.parametrize("state", ["in_review", "blocked"])
def test_override_completes_a_blocked_batch_with_a_written_reason(state):
    # given a finished batch with a breached gate
    given = Given(state)
    gate = given.gate()

    # when the manager overrides with a reason
    services.batch_override(batch=given.batch, actor=given.manager, reason="  Customer accepted the risk ")

    # then it is completed and the override is recorded: who, when, why, which gates
    given.batch.refresh_from_db()
    assert given.batch.status == "completed"
    assert (given.batch.override_reason, given.batch.overridden_by) == ("Customer accepted the risk",
                                                                        given.manager)
    assert given.batch.overridden_at is not None
    event = batch_events(given.batch)[-1]
    assert (event.type, event.actor) == ("batch_overridden", given.manager)
    assert event.payload == {"reason": "Customer accepted the risk", "gates": [gate.pk]}
    row = latest_history(given.batch)
    assert (row.status, row.override_reason, row.history_user) == ("completed", "Customer accepted the risk",
                                                                   given.manager)


def test_override_without_a_reason_is_refused_and_changes_nothing():
    given = Given("blocked")
    given.gate()
    before = world()
    with pytest.raises(ValidationError) as refused:
        services.batch_override(batch=given.batch, actor=given.manager, reason="   ")
    assert "reason" in refused.value.errors
    assert world() == before


def test_override_never_completes_unfinished_work():
    given = Given("blocked", tasks=1)
    given.gate()
    assert_refused(lambda: services.batch_override(batch=given.batch, actor=given.manager, reason="Ship it"),
                   batch=given.batch, current="blocked")


def test_deliver_a_completed_batch():
    given = Given("completed")
    services.batch_deliver(batch=given.batch, actor=given.manager)
    given.batch.refresh_from_db()
    assert given.batch.status == "delivered"
    event = batch_events(given.batch)[-1]
    assert (event.type, event.actor) == ("batch_delivered", given.manager)
    assert latest_history(given.batch).history_user == given.manager


def test_deliver_rechecks_the_gates_unless_a_manager_overrode_them():
    # given a completed batch whose gate was breached after completion
    given = Given("completed")
    gate = given.gate()

    # when it is delivered, then it is refused naming the gate
    error = assert_refused(lambda: services.batch_deliver(batch=given.batch, actor=given.manager),
                           batch=given.batch, current="completed")
    assert error.errors == {"gates": [gate.pk]}

    # and a batch completed by an override is delivered despite the breach
    overridden = Given("blocked")
    overridden.gate()
    services.batch_override(batch=overridden.batch, actor=overridden.manager, reason="Accepted by the customer")
    services.batch_deliver(batch=overridden.batch, actor=overridden.manager)
    overridden.batch.refresh_from_db()
    assert overridden.batch.status == "delivered"


# --- illegal transitions, per source state ---------------------------------------------------------------------------

TRANSITIONS = {
    "activate": (lambda g: services.batch_activate(batch=g.batch, actor=g.manager), {"draft", "paused"}),
    "pause": (lambda g: services.batch_pause(batch=g.batch, actor=g.manager), {"active"}),
    "review": (lambda g: services.batch_review(batch=g.batch, actor=g.manager), {"active", "paused"}),
    "complete": (lambda g: services.batch_complete(batch=g.batch, actor=g.manager), {"in_review", "blocked"}),
    "block": (lambda g: services.batch_block(batch=g.batch), {"in_review"}),
    "override": (lambda g: services.batch_override(batch=g.batch, actor=g.manager, reason="Because"),
                 {"in_review", "blocked"}),
    "deliver": (lambda g: services.batch_deliver(batch=g.batch, actor=g.manager), {"completed"}),
}
ILLEGAL = [(name, state) for name, (_call, legal) in TRANSITIONS.items() for state in BATCH_STATES
           if state not in legal]


@pytest.mark.parametrize("name, state", ILLEGAL)
def test_illegal_batch_transition_is_refused_and_changes_nothing(name, state):
    # given a batch in a state the transition does not start from
    given = Given(state)

    # when it is attempted, then it is refused naming the current state, and nothing changed
    error = assert_refused(lambda: TRANSITIONS[name][0](given), batch=given.batch, current=state)
    assert state in error.message and "Week 1" in error.message


@pytest.mark.parametrize("name", sorted(set(TRANSITIONS) - {"block"}))
def test_batch_transitions_need_the_manage_permission(name):
    # given a batch in a state the transition starts from, and users who do not manage the project
    legal_state = sorted(TRANSITIONS[name][1])[0]
    given = Given(legal_state)
    reviewer = factories.member(given.project, Membership.Role.REVIEWER, "reviewer")
    outsider = factories.member(factories.project(slug="elsewhere"), Membership.Role.MANAGER, "outsider")

    # when they attempt it, then it is refused (403) and nothing changes
    for user in (given.annotator, reviewer, outsider):
        given.manager = user
        before = world()
        with pytest.raises(PermissionDeniedError):
            TRANSITIONS[name][0](given)
        assert world() == before


# --- batch_transition: the one entry point ------------------------------------------------------------------------------


@pytest.mark.parametrize("source, target", [
    ("draft", "active"), ("paused", "active"), ("active", "paused"), ("active", "in_review"),
    ("paused", "in_review"), ("in_review", "completed"), ("blocked", "completed"), ("completed", "delivered"),
])
def test_batch_transition_moves_to_the_target(source, target):
    given = Given(source)
    services.batch_transition(batch=given.batch, actor=given.manager, to=target)
    given.batch.refresh_from_db()
    assert given.batch.status == target
    assert batch_events(given.batch)[-1].actor == given.manager
    assert latest_history(given.batch).history_user == given.manager


@pytest.mark.parametrize("source, target", [("draft", "paused"), ("active", "completed"), ("completed", "active"),
                                            ("delivered", "delivered")])
def test_batch_transition_refuses_an_illegal_move(source, target):
    given = Given(source)
    assert_refused(lambda: services.batch_transition(batch=given.batch, actor=given.manager, to=target),
                   batch=given.batch, current=source)


@pytest.mark.parametrize("target", ["blocked", "draft", "archived", ""])
def test_batch_transition_refuses_targets_it_does_not_offer(target):
    # given an active batch ('blocked' is raised by the quality engine only, 'draft' is never gone back to)
    given = Given("in_review")
    before = world()
    with pytest.raises(ValidationError) as refused:
        services.batch_transition(batch=given.batch, actor=given.manager, to=target)
    assert "to" in refused.value.errors
    assert world() == before


def test_batch_transition_to_completed_with_a_reason_overrides_a_breached_gate():
    given = Given("blocked")
    gate = given.gate()
    services.batch_transition(batch=given.batch, actor=given.manager, to="completed", reason="Signed off by QA lead")
    given.batch.refresh_from_db()
    assert (given.batch.status, given.batch.override_reason) == ("completed", "Signed off by QA lead")
    assert batch_events(given.batch)[-1].payload == {"reason": "Signed off by QA lead", "gates": [gate.pk]}


def test_batch_transition_to_completed_with_a_reason_but_no_breach_is_a_plain_completion():
    given = Given("in_review")
    services.batch_transition(batch=given.batch, actor=given.manager, to="completed", reason="Just in case")
    given.batch.refresh_from_db()
    assert (given.batch.status, given.batch.override_reason) == ("completed", "")
    assert batch_events(given.batch)[-1].type == "batch_completed"


def test_batch_transition_to_completed_without_a_reason_is_refused_by_a_breached_gate():
    given = Given("blocked")
    gate = given.gate()
    error = assert_refused(lambda: services.batch_transition(batch=given.batch, actor=given.manager, to="completed"),
                           batch=given.batch, current="blocked")
    assert error.errors == {"gates": [gate.pk]}


def test_batch_transition_with_a_reason_never_overrides_unfinished_work():
    given = Given("blocked", tasks=1)
    given.gate()
    error = assert_refused(lambda: services.batch_transition(batch=given.batch, actor=given.manager, to="completed",
                                                             reason="Ship it"),
                           batch=given.batch, current="blocked")
    assert "not accepted or cancelled" in error.message
