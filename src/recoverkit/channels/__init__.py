"""Channel adapters: the interface (:class:`Channel`, :class:`Message`) and the adapters recoverkit ships.

- :class:`ConsoleChannel` logs what would be sent (addresses masked), for development.
- :class:`MemoryChannel` keeps messages in a list, the test double for a shop's own tests.
- :class:`JsonLinesChannel` writes each message as a JSON line (what ``recoverkit replay --out`` uses).
- :class:`WebhookChannel` POSTs each message as JSON with an ``Idempotency-Key`` header (httpx; the ``http``
  extra).
- :class:`SmtpChannel` sends each message as an email rendered from a template (aiosmtplib; the ``smtp`` extra).
- :class:`HttpChannel` posts each message, rendered from a template, to an SMS or push provider's HTTP API;
  :class:`RequestSpec` is what its ``build`` function returns (httpx and jinja2; the ``http`` extra).
- :class:`GoogleAdsAudience` and :class:`MetaAudience` add abandoners to an ad platform's custom audience and
  remove them on purchase, withdrawal of the ``ads`` consent and erasure; :class:`AudienceMembers` is the file
  of whom they added (the ``http`` extra; docs/audiences.md); :class:`MemoryAudience` is their test double.
- :class:`WhatsAppChannel` sends WhatsApp template messages (:class:`WhatsAppTemplate`), :class:`MessengerChannel`
  Messenger text (the ``http`` extra; docs/messengers.md).

An adapter whose sends leave lasting state implements :class:`Withdrawing` too: dispatch calls its ``withdraw``
with a :class:`Withdrawal` when the state must be taken back.

The last three are loaded on first access (``recoverkit.channels.SmtpChannel``, or ``from recoverkit.channels
import SmtpChannel``), not with this package: the engine imports this package for :class:`Channel`, and their
modules pull in the standard library's email package and their optional dependency's stand-in, which a shop
using its own adapters never needs. Building one without its extra raises
:class:`~recoverkit.errors.MissingExtraError` naming the extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._withdrawal import Withdrawal, Withdrawing
from .base import Channel, Message, Recipient
from .console import ConsoleChannel
from .jsonl import JsonLinesChannel
from .memory import MemoryChannel

if TYPE_CHECKING:
    from .audiences import AudienceMembers, MemoryAudience
    from .google_ads import GoogleAdsAudience
    from .http import HttpChannel, RequestSpec
    from .messenger import MessengerChannel
    from .meta import MetaAudience
    from .smtp import SmtpChannel
    from .webhook import WebhookChannel
    from .whatsapp import WhatsAppChannel, WhatsAppTemplate

__all__ = [
    "AudienceMembers",
    "Channel",
    "ConsoleChannel",
    "GoogleAdsAudience",
    "HttpChannel",
    "JsonLinesChannel",
    "MemoryAudience",
    "MemoryChannel",
    "Message",
    "MessengerChannel",
    "MetaAudience",
    "Recipient",
    "RequestSpec",
    "SmtpChannel",
    "WebhookChannel",
    "WhatsAppChannel",
    "WhatsAppTemplate",
    "Withdrawal",
    "Withdrawing",
]

#: The names loaded on first access, and the module (under this package) each lives in.
_LAZY = {
    "AudienceMembers": "audiences",
    "GoogleAdsAudience": "google_ads",
    "HttpChannel": "http",
    "MemoryAudience": "audiences",
    "MessengerChannel": "messenger",
    "MetaAudience": "meta",
    "RequestSpec": "http",
    "SmtpChannel": "smtp",
    "WebhookChannel": "webhook",
    "WhatsAppChannel": "whatsapp",
    "WhatsAppTemplate": "whatsapp",
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
