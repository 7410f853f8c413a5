"""The channel interface: the one method an adapter implements to deliver a :class:`~recoverkit.items.Message`.

A channel adapter is any object with ``async def send(self, message: Message) -> None``. Return normally when
the provider accepted the message; raise :class:`~recoverkit.errors.PermanentDeliveryError` when retrying
cannot help and :class:`~recoverkit.errors.TransientDeliveryError` when it may. Any other exception, and a
send that outlives the channel's timeout, counts as transient: it is retried with backoff and, when attempts
run out, dead-lettered. ``aclose()``, when present, is awaited once when the engine stops.

``message.key`` is stable across retries: adapters whose provider can deduplicate should pass it on (the
webhook adapter sends it as ``Idempotency-Key``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

# Message and Recipient are defined with the other types that cross the pipeline's links; they are re-exported
# here, where adapters have always imported them from.
from ..items import Message, Recipient

__all__ = ["Channel", "Message", "Recipient"]


@runtime_checkable
class Channel(Protocol):
    """A delivery adapter supplied by the host shop (email, SMS, push, webhook, ad audience, ...)."""

    async def send(self, message: Message) -> None:
        """Deliver ``message`` or raise; see the module docstring for what each outcome means."""
        ...
