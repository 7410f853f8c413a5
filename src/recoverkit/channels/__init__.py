"""Channel adapters: the interface (:class:`Channel`, :class:`Message`) and the adapters recoverkit ships.

- :class:`ConsoleChannel` logs what would be sent (addresses masked), for development.
- :class:`MemoryChannel` keeps messages in a list, the test double for a shop's own tests.
- :class:`JsonLinesChannel` writes each message as a JSON line (what ``recoverkit replay --out`` uses).
- :class:`WebhookChannel` POSTs each message as JSON with an ``Idempotency-Key`` header (httpx).
"""

from .base import Channel, Message, Recipient
from .console import ConsoleChannel
from .jsonl import JsonLinesChannel
from .memory import MemoryChannel
from .webhook import WebhookChannel

__all__ = [
    "Channel",
    "ConsoleChannel",
    "JsonLinesChannel",
    "MemoryChannel",
    "Message",
    "Recipient",
    "WebhookChannel",
]
