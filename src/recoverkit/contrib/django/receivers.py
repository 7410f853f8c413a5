"""What recoverkit does on Django's signals (connected by the app's ``ready()``).

- ``setting_changed`` for ``RECOVERKIT`` (sent by ``override_settings`` in tests): the process's state is rebuilt
  from the new value and the engine of the old one closed, so each test's settings get an engine of their own and
  none outlives its test.
- ``user_logged_in``: the request's tracker records ``identify`` with the user's id, so a cart filled as a guest
  is stitched to the customer at once (a purchase on any of their devices then stops its messages). Only the id:
  contact details are the shop's to send (``tracker.identify(email=...)``).
- ``user_logged_out``: the browser gets a new recoverkit session (a new cookie), as Django gives it a new session:
  whoever shops next on a shared computer is a new guest, and never gets the logged-out customer's reminders or
  has their cart taken for the customer's.
"""

from __future__ import annotations

from typing import Any

from ..._log import get_logger
from ...integration import Tracker
from ._state import configure
from .tracking import REQUEST_ATTRIBUTE, RequestTracker

__all__ = ["on_setting_changed", "on_user_logged_in", "on_user_logged_out"]

_log = get_logger("recoverkit.contrib.django")


def on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    """Rebuild the state when ``settings.RECOVERKIT`` changes; a broken new value raises ``ConfigError``."""
    if setting == "RECOVERKIT":
        configure()


def on_user_logged_in(*, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    """Record ``identify`` with the user's id for the request's shopper. Never raises."""
    try:
        tracker = getattr(request, REQUEST_ATTRIBUTE, None) if request is not None else None
        if isinstance(tracker, Tracker) and user is not None and user.pk is not None:
            tracker.identify(str(user.pk))
    except Exception as exc:  # never fail a login because of recoverkit
        _log.error("identify_on_login_failed", error=type(exc).__name__)


def on_user_logged_out(*, request: Any = None, **kwargs: Any) -> None:
    """Give the request's shopper a new session id (set as the cookie on the response). Never raises."""
    try:
        tracker = getattr(request, REQUEST_ATTRIBUTE, None) if request is not None else None
        if isinstance(tracker, RequestTracker):
            tracker.rotate_session()
    except Exception as exc:  # never fail a logout because of recoverkit
        _log.error("rotate_on_logout_failed", error=type(exc).__name__)
