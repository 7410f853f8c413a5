"""WSGI entry point: ``gunicorn --chdir examples/django_shop shopsite.wsgi`` (``--preload`` works too)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopsite.settings")

from shopsite.dev import prepare

prepare()

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
