"""recoverkit for Django: an app, a middleware, a tracker per request, a restore-view helper, ``manage.py recoverkit``.

::

    # settings.py
    INSTALLED_APPS = [..., "recoverkit.contrib.django"]
    MIDDLEWARE = [..., "recoverkit.contrib.django.middleware.RecoverkitMiddleware"]
    RECOVERKIT = {
        "CHANNELS": {"email": "myshop.mail.RecoveryEmail"},      # your adapter, or its import path
        "CHECKOUT_PATHS": {"/checkout/": "begin_checkout"},      # recorded when the page loads
    }

    # a view
    from recoverkit.contrib.django import get_tracker

    def add_to_cart(request):
        ...
        get_tracker(request).add_to_cart([{"item_id": "SKU-1", "price": "35.79", "quantity": 1}],
                                         currency="EUR", cart_id=str(cart.pk))

Settings are the keys of :class:`recoverkit.integration.IntegrationSettings` in one ``RECOVERKIT`` dict; the app's
``ready()`` validates them (errors name ``settings.RECOVERKIT[...]``) and builds the process's engine without
starting it; its thread starts with the first event. See ``docs/django.md`` for every setting, the modes and
deployment under gunicorn, uWSGI and ASGI servers. Install with ``pip install 'recoverkit[django]'``.
"""

from __future__ import annotations

try:
    import django as _django  # type: ignore[import-untyped]  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "recoverkit.contrib.django needs Django, which is not installed; install it with "
        "`pip install 'recoverkit[django]'`"
    ) from exc

from ._settings import settings_from_django
from ._state import RecoverkitState, close, get_state
from .middleware import RecoverkitMiddleware
from .tracking import REQUEST_ATTRIBUTE, RequestTracker, aget_tracker, flush, get_engine, get_tracker, track
from .views import restore_cart

__all__ = [
    "REQUEST_ATTRIBUTE",
    "RecoverkitMiddleware",
    "RecoverkitState",
    "RequestTracker",
    "aget_tracker",
    "close",
    "flush",
    "get_engine",
    "get_state",
    "get_tracker",
    "restore_cart",
    "settings_from_django",
    "track",
]
