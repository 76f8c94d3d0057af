"""WSGI entry point for gunicorn: `gunicorn labelportal.wsgi`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelportal.settings.prod")
application = get_wsgi_application()
