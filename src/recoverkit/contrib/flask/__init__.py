"""recoverkit for Flask: ``Recoverkit(app)``, a tracker per request, the ``flask recoverkit`` commands.

::

    from recoverkit.contrib.flask import Recoverkit, restore_cart, tracker

    rk = Recoverkit()

    def create_app():
        app = Flask(__name__)
        app.config["RECOVERKIT_CHANNELS"] = {"email": "myshop.mail.RecoveryEmail"}
        app.config["RECOVERKIT_CHECKOUT_PATHS"] = {"/checkout": "begin_checkout"}
        rk.init_app(app)
        return app

    @rk.customer_loader
    def load_customer():
        return current_user.id if current_user.is_authenticated else None

    # in a view
    tracker.add_to_cart([{"item_id": "SKU-1", "price": "35.79", "quantity": 1}], currency="EUR", cart_id=cart.id)

Settings are the ``RECOVERKIT_*`` keys of ``app.config`` (``RECOVERKIT_MODE``, ``RECOVERKIT_CONFIG``,
``RECOVERKIT_STORE``, ``RECOVERKIT_CHANNELS``, ...: the keys of :class:`recoverkit.integration.IntegrationSettings`
with the prefix). See ``docs/flask.md`` for all of them, the modes and deployment under gunicorn and uWSGI.
Install with ``pip install 'recoverkit[flask]'``.
"""

from __future__ import annotations

try:
    import flask as _flask  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "recoverkit.contrib.flask needs Flask, which is not installed; install it with "
        "`pip install 'recoverkit[flask]'`"
    ) from exc

from ._cli import cli
from ._extension import Recoverkit, current_session_id, current_tracker, restore_cart, tracker
from ._settings import PREFIX, settings_from_config
from ._state import EXTENSION_KEY, RecoverkitState

__all__ = [
    "EXTENSION_KEY",
    "PREFIX",
    "Recoverkit",
    "RecoverkitState",
    "cli",
    "current_session_id",
    "current_tracker",
    "restore_cart",
    "settings_from_config",
    "tracker",
]
