"""Channel adapters: the interface (:class:`Channel`, :class:`Message`) and the adapters recoverkit ships.

- :class:`ConsoleChannel` logs what would be sent (addresses masked), for development.
- :class:`MemoryChannel` keeps messages in a list, the test double for a shop's own tests.
- :class:`JsonLinesChannel` writes each message as a JSON line (what ``recoverkit replay --out`` uses).
- :class:`WebhookChannel` POSTs each message as JSON with an ``Idempotency-Key`` header (httpx; the ``http``
  extra).
- :class:`SmtpChannel` sends each message as an email rendered from a template (aiosmtplib; the ``smtp`` extra).
- :class:`HttpChannel` posts each message, rendered from a template, to an SMS or push provider's HTTP API;
  :class:`RequestSpec` is what its ``build`` function returns (httpx and jinja2; the ``http`` extra).

The last three are loaded on first access (``recoverkit.channels.SmtpChannel``, or ``from recoverkit.channels
import SmtpChannel``), not with this package: the engine imports this package for :class:`Channel`, and their
modules pull in the standard library's email package and their optional dependency's stand-in, which a shop
using its own adapters never needs. Building one without its extra raises
:class:`~recoverkit.errors.MissingExtraError` naming the extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .base import Channel, Message, Recipient
from .console import ConsoleChannel
from .jsonl import JsonLinesChannel
from .memory import MemoryChannel

if TYPE_CHECKING:
    from .http import HttpChannel, RequestSpec
    from .smtp import SmtpChannel
    from .webhook import WebhookChannel

__all__ = [
    "Channel",
    "ConsoleChannel",
    "HttpChannel",
    "JsonLinesChannel",
    "MemoryChannel",
    "Message",
    "Recipient",
    "RequestSpec",
    "SmtpChannel",
    "WebhookChannel",
]

#: The names loaded on first access, and the module (under this package) each lives in.
_LAZY = {
    "HttpChannel": "http",
    "RequestSpec": "http",
    "SmtpChannel": "smtp",
    "WebhookChannel": "webhook",
}


# Hidden from type checkers, which see the names through the imports above (and flag a misspelt one).
if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        # PEP 562: only called for names not found in the module; each lazy name is imported once, then cached.
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
