"""Signed webhooks with retries (DESIGN.md, Quality; the Webhook model): every delivery is an HMAC-SHA256 of its
body under the webhook's secret in `X-LabelPortal-Signature: sha256=<hex>`; a receiver that fails is tried again
with exponential back-off; loopback, private and non-http(s) targets are refused; `task.accepted` and
`batch.completed` fire from the services; deliveries are recorded and shown in the admin."""

import json
import socket

import pytest
from django.urls import reverse

from apps.projects import services as project_services
from apps.quality import services as quality_services
from apps.quality.models import Webhook, WebhookDelivery
from apps.quality.tasks import webhook_deliver
from apps.tasks import services
from tests import factories

from .conftest import SECRET

pytestmark = pytest.mark.django_db


def subscribe(project, url, events=("task.accepted", "batch.completed"), **fields):
    return Webhook.objects.create(project=project, url=url, secret=SECRET, events=list(events), **fields)


def accept(team, on_commit, task=None):
    """An annotator labels the team's task and the reviewer approves it: the task is accepted."""
    task = task or team.task
    with on_commit(execute=True):
        assignment = services.assignment_assign(task=task, annotator=team.annotators[0])
        annotation = services.assignment_submit(assignment=assignment, actor=team.annotators[0],
                                                result={"label": "cat"})
        services.review_approve(annotation=annotation, reviewer=team.reviewer)
    task.refresh_from_db()
    assert task.status == "accepted"
    return task


@pytest.fixture
def backoff(monkeypatch):
    """The countdowns the delivery task asks Celery to wait before each retry (eager tests run them at once)."""
    countdowns = []
    retry = webhook_deliver.retry

    def spy(*args, **kwargs):
        countdowns.append(kwargs.get("countdown"))
        return retry(*args, **kwargs)

    monkeypatch.setattr(webhook_deliver, "retry", spy)
    return countdowns


# --- signed deliveries ------------------------------------------------------------------------------------------------


def test_an_accepted_task_is_posted_signed_to_the_receiver(team, receiver, private_allowed,
                                                           django_capture_on_commit_callbacks):
    # given a webhook of the project pointing at a local receiver
    hook = receiver()
    webhook = subscribe(team.project, hook.url)

    # when a task is accepted through the services
    task = accept(team, django_capture_on_commit_callbacks)

    # then the receiver got one POST whose signature verifies with the shared secret
    [request] = hook.received
    assert request.path == "/hooks/labelportal?source=test"
    assert request.signed_with(SECRET)
    assert not request.signed_with("another secret")
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-LabelPortal-Event"] == "task.accepted"
    assert request.json == {"event": "task.accepted",
                            "data": {"task": task.pk, "external_id": None, "result": {"label": "cat"}}}
    # and the delivery is recorded as delivered at the first attempt
    [delivery] = WebhookDelivery.objects.filter(webhook=webhook)
    assert request.headers["X-LabelPortal-Delivery"] == str(delivery.pk)
    assert (delivery.event, delivery.status, delivery.attempts, delivery.response_status) == (
        "task.accepted", "delivered", 1, 200)
    assert delivery.delivered_at is not None and delivery.last_error == ""
    assert delivery.payload == request.json


def test_a_tampered_body_does_not_verify(team, receiver, private_allowed, django_capture_on_commit_callbacks):
    hook = receiver()
    subscribe(team.project, hook.url)
    accept(team, django_capture_on_commit_callbacks)

    [request] = hook.received
    request.body = request.body.replace(b'"cat"', b'"dog"')

    assert not request.signed_with(SECRET)


def test_a_failing_receiver_is_retried_with_exponential_backoff(team, receiver, private_allowed, backoff,
                                                                django_capture_on_commit_callbacks):
    # given a receiver that answers 500 three times, then 200
    hook = receiver(statuses=(500, 500, 500, 200))
    subscribe(team.project, hook.url)

    accept(team, django_capture_on_commit_callbacks)

    # then it was tried four times, waiting 1, 2 and 4 seconds, and is delivered
    [delivery] = WebhookDelivery.objects.all()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("delivered", 4, 200)
    assert delivery.last_error == ""
    assert backoff == [1, 2, 4]
    # each attempt is the same delivery, body and valid signature
    assert len(hook.received) == 4
    assert {r.body for r in hook.received} == {hook.received[0].body}
    assert {r.headers["X-LabelPortal-Delivery"] for r in hook.received} == {str(delivery.pk)}
    assert all(r.signed_with(SECRET) for r in hook.received)


def test_a_receiver_that_never_takes_it_ends_failed_after_the_last_retry(team, receiver, private_allowed, backoff,
                                                                        django_capture_on_commit_callbacks):
    hook = receiver(statuses=(503,))
    subscribe(team.project, hook.url)

    accept(team, django_capture_on_commit_callbacks)

    [delivery] = WebhookDelivery.objects.all()
    tries = webhook_deliver.max_retries + 1
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("failed", tries, 503)
    assert delivery.last_error == "HTTP 503"
    assert len(hook.received) == tries
    assert backoff == [2 ** n for n in range(webhook_deliver.max_retries)]


def test_an_unreachable_receiver_is_retried_then_failed(team, private_allowed, django_capture_on_commit_callbacks):
    # given a port nobody listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subscribe(team.project, f"http://127.0.0.1:{port}/hook")

    accept(team, django_capture_on_commit_callbacks)

    [delivery] = WebhookDelivery.objects.all()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("failed", 9, None)
    assert "refused" in delivery.last_error.lower()


def test_redirects_are_not_followed(team, receiver, private_allowed, django_capture_on_commit_callbacks):
    # given a receiver that redirects elsewhere (a way around the address check)
    elsewhere = receiver()
    hook = receiver(statuses=(302,), headers={"Location": elsewhere.url})
    subscribe(team.project, hook.url)

    accept(team, django_capture_on_commit_callbacks)

    [delivery] = WebhookDelivery.objects.all()
    assert (delivery.status, delivery.response_status) == ("failed", 302)
    assert elsewhere.received == []


def test_a_path_with_spaces_and_non_ascii_letters_is_sent_percent_encoded(team, receiver, private_allowed,
                                                                         django_capture_on_commit_callbacks):
    hook = receiver()
    base = hook.url.split("/hooks")[0]
    subscribe(team.project, f"{base}/hooks/größe und maß?team=Ünter Wegs")

    accept(team, django_capture_on_commit_callbacks)

    [request] = hook.received
    assert request.path == "/hooks/gr%C3%B6%C3%9Fe%20und%20ma%C3%9F?team=%C3%9Cnter%20Wegs"
    assert WebhookDelivery.objects.get().status == "delivered"


def test_a_delivered_delivery_is_not_sent_again(team, receiver, private_allowed, django_capture_on_commit_callbacks):
    hook = receiver()
    subscribe(team.project, hook.url)
    accept(team, django_capture_on_commit_callbacks)
    [delivery] = WebhookDelivery.objects.all()

    # when the task runs twice (at-least-once queues do that)
    assert webhook_deliver.delay(delivery.pk).get() == "delivered"

    assert len(hook.received) == 1
    delivery.refresh_from_db()
    assert delivery.attempts == 1


# --- refused targets --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/hook",
    "http://localhost:{port}/hook",
    "http://[::1]:{port}/hook",
    "http://[::ffff:127.0.0.1]:{port}/hook",
    "http://0.0.0.0:{port}/hook",
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "https://192.168.1.10/hook",
    "http://169.254.169.254/latest/meta-data/",  # a cloud metadata service
    "http://100.64.0.1/hook",  # carrier-grade NAT, not the public internet either
    "http://[fd00::1]/hook",
    "http://224.0.0.1/hook",
])
def test_loopback_and_private_targets_are_refused(team, receiver, settings, url, django_capture_on_commit_callbacks):
    # given the default setting, and a webhook at an address inside the network (one a receiver listens on)
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    hook = receiver()
    subscribe(team.project, url.format(port=hook.server.server_port))

    accept(team, django_capture_on_commit_callbacks)

    # then nothing was sent, and the delivery says why, without retries
    [delivery] = WebhookDelivery.objects.all()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("refused", 1, None)
    assert "not allowed" in delivery.last_error
    assert hook.received == []


@pytest.mark.parametrize("url", [
    "ftp://127.0.0.1/hook",
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/_hook",
    "javascript:alert(1)",
    "http:///no-host",
    "http://127.0.0.1:99999/hook",  # no such port
    "http://" + "a" * 64 + ".example.org/hook",  # a DNS label is at most 63 characters
])
def test_urls_that_are_not_http_are_refused_even_when_private_targets_are_allowed(team, private_allowed, url,
                                                                                 django_capture_on_commit_callbacks):
    subscribe(team.project, url)

    accept(team, django_capture_on_commit_callbacks)

    [delivery] = WebhookDelivery.objects.all()
    assert (delivery.status, delivery.attempts) == ("refused", 1)


def test_the_connection_goes_to_the_address_that_was_checked(team, settings, monkeypatch,
                                                             django_capture_on_commit_callbacks):
    # given a name that resolves to a public address when checked, then to loopback (DNS rebinding)
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    answers = iter(["8.8.8.8", "127.0.0.1", "127.0.0.1"])
    resolved, connected = [], []

    def getaddrinfo(host, port, *args, **kwargs):
        address = next(answers)
        resolved.append((host, address))
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    def create_connection(address, *args, **kwargs):
        connected.append(address)
        raise ConnectionRefusedError("test: no network")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    subscribe(team.project, "http://hooks.example.org/labelportal")
    monkeypatch.setattr(webhook_deliver, "max_retries", 0)

    accept(team, django_capture_on_commit_callbacks)

    # then the one connection attempt went to the public address that passed the check
    assert resolved == [("hooks.example.org", "8.8.8.8")]
    assert connected == [("8.8.8.8", 80)]


def test_a_name_that_does_not_resolve_is_retried_not_refused(team, settings, monkeypatch,
                                                             django_capture_on_commit_callbacks):
    settings.WEBHOOKS_ALLOW_PRIVATE = False

    def getaddrinfo(*args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(webhook_deliver, "max_retries", 2)
    subscribe(team.project, "https://hooks.example.org/labelportal")

    accept(team, django_capture_on_commit_callbacks)

    [delivery] = WebhookDelivery.objects.all()
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    assert "name resolution" in delivery.last_error


@pytest.mark.parametrize("url, allowed", [
    ("https://hooks.example.org/x", True),
    ("http://8.8.8.8/x", True),
    ("http://127.0.0.1/x", False),
    ("ftp://8.8.8.8/x", False),
    ("http://8.8.8.8:0/x", False),
    ("http://8.8.8.8:65536/x", False),
])
def test_address_allowed(settings, monkeypatch, url, allowed):
    # given names that resolve to a public address (without asking a DNS server); IP literals are themselves
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    resolve = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host.endswith(".example.org"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port))]
        return resolve(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    assert quality_services.webhook_address_allowed(url) is allowed


# --- events from the services -----------------------------------------------------------------------------------------


def test_only_subscribed_active_webhooks_of_the_project_get_an_event(team, receiver, private_allowed,
                                                                     django_capture_on_commit_callbacks):
    hooks = {name: receiver() for name in ("accepted", "batches", "inactive", "other project")}
    subscribe(team.project, hooks["accepted"].url, events=["task.accepted"])
    subscribe(team.project, hooks["batches"].url, events=["batch.completed"])
    subscribe(team.project, hooks["inactive"].url, is_active=False)
    subscribe(team.other_project, hooks["other project"].url)

    accept(team, django_capture_on_commit_callbacks)

    assert {name: len(hook.received) for name, hook in hooks.items()} == {
        "accepted": 1, "batches": 0, "inactive": 0, "other project": 0}
    assert list(WebhookDelivery.objects.values_list("webhook__url", "event")) == [
        (hooks["accepted"].url, "task.accepted")]


def test_a_completed_batch_is_posted(team, receiver, private_allowed, django_capture_on_commit_callbacks):
    # given a batch whose only task was accepted, in review
    hook = receiver()
    subscribe(team.project, hook.url, events=["batch.completed"])
    accept(team, django_capture_on_commit_callbacks)
    project_services.batch_review(batch=team.batch, actor=team.manager)

    # when the manager completes it
    with django_capture_on_commit_callbacks(execute=True):
        project_services.batch_complete(batch=team.batch, actor=team.manager)

    # then one signed batch.completed event went out
    [request] = hook.received
    assert request.signed_with(SECRET)
    assert request.headers["X-LabelPortal-Event"] == "batch.completed"
    assert request.json == {"event": "batch.completed",
                            "data": {"batch": team.batch.pk, "name": team.batch.name, "status": "completed"}}
    assert WebhookDelivery.objects.get().status == "delivered"


def test_nothing_is_sent_when_the_transition_is_refused(team, receiver, private_allowed,
                                                        django_capture_on_commit_callbacks):
    # given a batch with an unfinished task, in review
    hook = receiver()
    subscribe(team.project, hook.url)
    project_services.batch_review(batch=team.batch, actor=team.manager)

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(Exception):
        project_services.batch_complete(batch=team.batch, actor=team.manager)

    assert hook.received == []
    assert WebhookDelivery.objects.count() == 0


def test_the_task_accepted_by_a_manager_is_posted_too(team, receiver, private_allowed,
                                                      django_capture_on_commit_callbacks):
    hook = receiver()
    subscribe(team.project, hook.url)
    with django_capture_on_commit_callbacks(execute=True):
        assignment = services.assignment_assign(task=team.task, annotator=team.annotators[0])
        services.assignment_submit(assignment=assignment, actor=team.annotators[0], result={"label": "dog"})
        services.task_accept(task=team.task, actor=team.manager)

    [request] = hook.received
    assert request.json["data"]["result"] == {"label": "dog"}


# --- the admin ----------------------------------------------------------------------------------------------------------


def test_deliveries_are_listed_in_the_admin(team, receiver, private_allowed, client,
                                            django_capture_on_commit_callbacks):
    hook = receiver(statuses=(500, 200))
    webhook = subscribe(team.project, hook.url)
    accept(team, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    client.force_login(team.admin)

    listing = client.get(reverse("admin:quality_webhookdelivery_changelist"))
    detail = client.get(reverse("admin:quality_webhookdelivery_change", args=[delivery.pk]))

    assert listing.status_code == 200
    page = listing.content.decode()
    assert "task.accepted" in page and webhook.url.split("?")[0] in page and "Delivered" in page
    assert detail.status_code == 200
    assert json.dumps(delivery.payload["data"]["result"])[1:-1] in detail.content.decode().replace("&quot;", '"')
    assert SECRET not in page and SECRET not in detail.content.decode()


def test_a_delivery_whose_enqueue_was_lost_is_sent_by_the_periodic_resend(team, receiver, private_allowed):
    # given a delivery recorded a while ago that never went out (the broker was down at commit: no on_commit run)
    from datetime import timedelta

    from django.utils import timezone

    from apps.quality.tasks import webhook_deliveries_resend

    hook = receiver()
    webhook = subscribe(team.project, hook.url)
    delivery = WebhookDelivery.objects.create(webhook=webhook, event="task.accepted",
                                              payload={"event": "task.accepted", "data": {"task": 1}})
    WebhookDelivery.objects.filter(pk=delivery.pk).update(created_at=timezone.now() - timedelta(minutes=30))
    fresh = WebhookDelivery.objects.create(webhook=webhook, event="task.accepted", payload={"event": "x"})

    # when the periodic resend runs
    webhook_deliveries_resend()

    # then the old one is delivered and signed; the fresh one (its own send may still be on the way) is left alone
    delivery.refresh_from_db()
    fresh.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 1)
    assert (fresh.status, fresh.attempts) == ("pending", 0)
    assert len(hook.received) == 1 and hook.received[0].signed_with(SECRET)
