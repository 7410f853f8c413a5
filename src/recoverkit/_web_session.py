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
# The same patterns in lower case, for a User-Agent that is ASCII (all real ones are) and lowered once: the same
# answers (for ASCII text, IGNORECASE is lower-casing), about ten times faster than re.IGNORECASE, which cannot
# use its literal-prefix search.
_MOBILE_LOWER: Final = re.compile(r"mobi|iphone|android.+mobile|windows phone")
_TABLET_LOWER: Final = re.compile(r"ipad|tablet|android(?!.*mobile)|kindle|silk")
_BOT_LOWER: Final = re.compile(r"bot\b|crawler|spider|curl/|python-requests|headlesschrome")
#: Distinct User-Agents remembered with their device class. A browser sends the same one on every request, so
#: nearly every request is answered from here; the bound keeps a flood of made-up agents from growing the process
#: (when full, the dict is emptied and refills with the agents seen next).
_DEVICE_CACHE_SIZE: Final = 1024
_device_cache: dict[str, str] = {}


def device_of(user_agent: str | None) -> str | None:
    """The device class of a ``User-Agent`` (``"mobile"``, ``"tablet"``, ``"desktop"``, ``"bot"``), for the
    analytics segments; ``None`` when there is none. A coarse guess on purpose: nothing is fingerprinted."""
    if not user_agent:
        return None
    device = _device_cache.get(user_agent)
    if device is None:
        device = _classify(user_agent[:512])
        if len(_device_cache) >= _DEVICE_CACHE_SIZE:
            _device_cache.clear()
        # Racing threads at worst both classify the same agent and store the same answer.
        _device_cache[user_agent] = device
    return device


def _classify(ua: str) -> str:
    if ua.isascii():
        ua = ua.lower()
        bot, tablet, mobile = _BOT_LOWER, _TABLET_LOWER, _MOBILE_LOWER
    else:  # Unicode case folding matches more than lower-casing does (the Kelvin sign is a "k"): the patterns as given
        bot, tablet, mobile = _BOT, _TABLET, _MOBILE
    if bot.search(ua):
        return "bot"
    if tablet.search(ua):
        return "tablet"
    if mobile.search(ua):
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
