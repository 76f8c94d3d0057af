"""The Celery application: broker from REDIS_URL, configuration from Django settings (CELERY_*)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelportal.settings.dev")

app = Celery("labelportal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
