"""The shopper's visit as a web request shows it: recoverkit's session cookie, the device class, the customer id.

Only first-party data: the session cookie identifies a visit to this shop and nothing else, is ``HttpOnly`` and
``SameSite=Lax``, and carries no personal data. Re-exported by :mod:`recoverkit.integration`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Final

from ._log import get_logger

__all__ = ["SESSION_COOKIE", "SESSION_COOKIE_MAX_AGE", "device_of", "is_session_id", "load_customer", "new_session_id"]

# The integration's logger: these are the integration's records, wherever the code lives.
_log = get_logger("recoverkit.integration")

#: The first-party cookie that carries recoverkit's session id (a random id, nothing else).
SESSION_COOKIE: Final = "rk_sid"
#: 30 days: a cart abandoned today can still be restored and stitched when the shopper comes back next week.
SESSION_COOKIE_MAX_AGE: Final = 30 * 86_400
_SESSION_ID: Final = re.compile(r"[A-Za-z0-9_-]{22}")


def new_session_id() -> str:
    """A fresh, unguessable session id (128 bits, 22 URL-safe characters)."""
    return secrets.token_urlsafe(16)


def is_session_id(value: object) -> bool:
    """Whether a cookie value is a session id this module minted (anything else is replaced, never trusted)."""
    return isinstance(value, str) and _SESSION_ID.fullmatch(value) is not None


_MOBILE: Final = re.compile(r"Mobi|iPhone|Android.+Mobile|Windows Phone", re.IGNORECASE)
_TABLET: Final = re.compile(r"iPad|Tablet|Android(?!.*Mobile)|Kindle|Silk", re.IGNORECASE)
_BOT: Final = re.compile(r"bot\b|crawler|spider|curl/|python-requests|HeadlessChrome", re.IGNORECASE)


def device_of(user_agent: str | None) -> str | None:
    """The device class of a ``User-Agent`` (``"mobile"``, ``"tablet"``, ``"desktop"``, ``"bot"``), for the
    analytics segments; ``None`` when there is none. A coarse guess on purpose: nothing is fingerprinted."""
    if not user_agent:
        return None
    ua = user_agent[:512]
    if _BOT.search(ua):
        return "bot"
    if _TABLET.search(ua):
        return "tablet"
    if _MOBILE.search(ua):
        return "mobile"
    return "desktop"


def load_customer(loader: Callable[[], object]) -> str | None:
    """Call a shop's customer loader and make its answer a customer id: ``str`` as is, ``int`` as text,
    ``None`` for a guest. A loader that raises or answers anything else is contained and logged (without what it
    returned, which may be personal data); the shopper is then treated as a guest."""
    try:
        value = loader()
    except Exception as exc:  # the shop's code: contained, and logged without anything it might hold
        _log.error("customer_loader_failed", error=type(exc).__name__)
        return None
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    _log.error("customer_loader_bad_value", type=type(value).__name__, expected="str, int or None")
    return None
