"""The Celery application: broker from REDIS_URL, configuration from Django settings (CELERY_*).

Every task is an `AuditedTask`: it runs as the user who enqueued it, so the history rows it writes name that user
(and the task, as their change reason). The user travels in a message header (apps.core.audit.ACTOR_HEADER), so a
real worker knows it as well as an eager run does. A task enqueued with no user (beat, a command without
`acting_as`) runs as the system: its rows name no user.
"""

import gc
import os

from celery import Celery
from celery.signals import worker_init, worker_process_init
from celery.contrib.django.task import DjangoTask

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelportal.settings.dev")


class AuditedTask(DjangoTask):
    """A task that carries its author: the acting user (or the request's) when it is enqueued, restored when it
    runs. Called as a plain function (`task(…)`), it runs in its caller's context. (DjangoTask, Celery's default
    for Django, adds delay_on_commit.)"""

    @staticmethod
    def _actor_headers(headers):
        from apps.core.audit import ACTOR_HEADER, acting_user

        headers = dict(headers or {})
        if ACTOR_HEADER not in headers:
            headers[ACTOR_HEADER] = getattr(acting_user(), "pk", None)
        return headers

    def apply_async(self, args=None, kwargs=None, task_id=None, producer=None, link=None, link_error=None,
                    shadow=None, **options):
        options["headers"] = self._actor_headers(options.get("headers"))
        return super().apply_async(args, kwargs, task_id=task_id, producer=producer, link=link,
                                   link_error=link_error, shadow=shadow, **options)

    def delay_on_commit(self, *args, **kwargs):
        return self.apply_async_on_commit(args, kwargs)

    def apply_async_on_commit(self, *args, **kwargs):
        # The author is whoever enqueues now, not whoever's context the commit happens to run the callback in.
        kwargs["headers"] = self._actor_headers(kwargs.get("headers"))
        return super().apply_async_on_commit(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        request = self.request
        if request.called_directly:
            return super().__call__(*args, **kwargs)
        from apps.core.audit import acting_as, change_reason

        with acting_as(self._actor(request)), change_reason(f"celery: {self.name}"):
            return super().__call__(*args, **kwargs)

    @staticmethod
    def _actor(request):
        """The user named in the message's header, or None (the system): also when that user is gone."""
        from django.contrib.auth import get_user_model

        from apps.core.audit import ACTOR_HEADER, current_actor

        user_id = (request.headers or {}).get(ACTOR_HEADER) or getattr(request, ACTOR_HEADER, None)
        if not user_id:
            return None
        current = current_actor()
        if current is not None and current.pk == user_id:
            return current  # run eagerly by the user's own code: no need to read the user again
        return get_user_model().objects.filter(pk=user_id).first()


app = Celery("labelportal", task_cls=AuditedTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@worker_process_init.connect  # and in each prefork child, after the fork
def _startup_objects_freeze(**kwargs):
    """Move what start-up loaded (Django, the apps, numpy: 100,000+ objects) out of the garbage collector's view.

    Otherwise every full collection walks all of them: 75-95 ms of CPU in the middle of whichever task triggered
    it, which set the quality engine's p99 per event (bench/metrics.py); frozen, a full collection takes ~4 ms."""
    gc.collect()
    gc.freeze()
