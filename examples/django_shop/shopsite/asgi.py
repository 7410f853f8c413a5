"""ASGI entry point: ``uvicorn --app-dir examples/django_shop shopsite.asgi:application``. The middleware is
async-capable, so under ASGI it runs on the server's event loop without a thread hop."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopsite.settings")

from shopsite.dev import prepare

prepare()

from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()
