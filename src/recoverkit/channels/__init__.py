"""Channel adapters: the interface (:class:`Channel`, :class:`Message`) and the adapters recoverkit ships.

- :class:`ConsoleChannel` logs what would be sent (addresses masked), for development.
- :class:`MemoryChannel` keeps messages in a list, the test double for a shop's own tests.
- :class:`JsonLinesChannel` writes each message as a JSON line (what ``recoverkit replay --out`` uses).
- :class:`WebhookChannel` POSTs each message as JSON with an ``Idempotency-Key`` header (httpx).
- :class:`SmtpChannel` sends each message as an email rendered from a template (aiosmtplib).
- :class:`HttpChannel` posts each message, rendered from a template, to an SMS or push provider's HTTP API;
  :class:`RequestSpec` is what its ``build`` function returns.
"""

from .base import Channel, Message, Recipient
from .console import ConsoleChannel
from .http import HttpChannel, RequestSpec
from .jsonl import JsonLinesChannel
from .memory import MemoryChannel
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
