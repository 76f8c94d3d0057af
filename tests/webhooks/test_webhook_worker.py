"""A webhook delivery through a real Celery worker (Redis broker, its own process), not eagerly: the event recorded
by the service is enqueued after commit, the worker posts it signed to a local receiver, the receiver's first 500
makes the worker retry with its back-off (a message with a countdown, back through the broker), and the second
attempt is delivered. The receiver verifies the signature as a customer would.

Needs Redis (REDIS_URL) and a database the worker process can share (PostgreSQL, or a SQLite file).
"""

import pytest
from django.db import transaction

from apps.quality import services as quality_services
from apps.quality.models import Webhook, WebhookDelivery
from apps.quality.tasks import webhook_deliver
from tests import factories
from tests.conftest import wait_for

from .conftest import SECRET

pytestmark = [pytest.mark.redis]


@pytest.fixture
def private_targets_for_the_worker(monkeypatch, settings):
    """Local receivers allowed here and in the worker process (which reads WEBHOOKS_ALLOW_PRIVATE from its
    environment): requested before celery_worker_process, which copies os.environ when it starts the worker."""
    monkeypatch.setenv("WEBHOOKS_ALLOW_PRIVATE", "1")
    settings.WEBHOOKS_ALLOW_PRIVATE = True


@pytest.fixture
def worker_queue(private_targets_for_the_worker, celery_worker_process, monkeypatch):
    """The worker's queue; webhook deliveries enqueued by the services go to it (they go to the default queue
    otherwise, which no test worker reads). Retries follow the message's own queue."""
    queue = celery_worker_process
    monkeypatch.setattr(webhook_deliver, "delay",
                        lambda *args, **kwargs: webhook_deliver.apply_async(args, kwargs, queue=queue))
    return queue


def test_a_delivery_goes_through_a_real_worker_retried_once_then_delivered_signed(worker_queue, receiver):
    # given a project whose webhook points at a local receiver that fails once, then takes the delivery
    hook = receiver(statuses=(500, 200))
    project = factories.project()
    webhook = Webhook.objects.create(project=project, url=hook.url, secret=SECRET, events=["task.accepted"])

    # when the service records a task.accepted event in a transaction that commits
    with transaction.atomic():
        [delivery] = quality_services.webhooks_notify(
            project_id=project.pk, event="task.accepted",
            payload={"task": 123, "external_id": "ext-1", "result": {"label": "cat"}})

    # then the worker delivers it after one retry
    delivered = wait_for(lambda: WebhookDelivery.objects.filter(pk=delivery.pk, status="delivered").first(),
                         timeout=90)
    assert delivered is not None, (
        f"not delivered within 90 s: {WebhookDelivery.objects.filter(pk=delivery.pk).values().first()}, "
        f"{len(hook.received)} request(s) received")
    assert (delivered.webhook_id, delivered.attempts, delivered.response_status) == (webhook.pk, 2, 200)
    assert delivered.last_error == "" and delivered.delivered_at is not None

    # and the receiver got the same signed body twice, under the same delivery id
    assert len(hook.received) == 2
    first, second = hook.received
    for request in (first, second):
        assert request.signed_with(SECRET)
        assert not request.signed_with(SECRET + "x")
        assert request.headers["X-LabelPortal-Event"] == "task.accepted"
        assert request.headers["X-LabelPortal-Delivery"] == str(delivery.pk)
        assert request.json == {"event": "task.accepted",
                                "data": {"task": 123, "external_id": "ext-1", "result": {"label": "cat"}}}
    assert first.body == second.body
