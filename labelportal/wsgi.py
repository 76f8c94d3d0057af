"""WSGI entry point for gunicorn: `gunicorn labelportal.wsgi`."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelportal.settings.prod")
application = get_wsgi_application()

# Load the URL conf (and with it the views, serializers and services) now, then take the start-up objects out of
# the garbage collector's view (gc.freeze): a full collection would otherwise walk them all in the middle of a
# request (see labelportal/celery.py for the figures).
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns
gc.collect()
gc.freeze()
