"""The channel interface: what dispatch hands to an adapter, and the one method an adapter implements.

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

import msgspec

from ..cart import CartSnapshot
from ..offers import Offer

__all__ = ["Channel", "Message", "Recipient"]


class Recipient(msgspec.Struct, frozen=True, kw_only=True):
    """Who a message is for. ``email`` and ``phone`` are personal data: adapters must not log them."""

    contact_key: str
    customer_id: str | None = None
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    timezone: str | None = None

    def __repr__(self) -> str:
        # Keep addresses out of reprs, which end up in tracebacks and logs.
        return f"Recipient(contact_key={self.contact_key!r}, email={'***' if self.email else None}, " \
               f"phone={'***' if self.phone else None})"


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """One recovery message, scheduled by the route stage and delivered by dispatch.

    ``key`` is the idempotency key ``"<cart_key>/<flow>/<step>"``: the engine sends each key at most once.
    ``due_at`` is epoch seconds on the engine's clock. ``score`` is the cart's conversion probability and
    ``reason`` its likely abandonment reason (see :mod:`recoverkit.score`).
    """

    key: str
    flow: str
    step: int
    channel: str
    template: str
    due_at: float
    abandoned_at: float
    trigger: str
    score: float
    reason: str
    cart: CartSnapshot
    recipient: Recipient
    #: The A/B variant of the step this message was assigned (recorded on every message of an experiment).
    variant: str | None = None
    #: What the message offers (a code, free shipping, ...), see :mod:`recoverkit.offers`.
    offer: Offer | None = None
    #: A signed link that restores the cart (see :mod:`recoverkit.links`), when the shop's URL is configured.
    restore_url: str | None = None


@runtime_checkable
class Channel(Protocol):
    """A delivery adapter supplied by the host shop (email, SMS, push, webhook, ad audience, ...)."""

    async def send(self, message: Message) -> None:
        """Deliver ``message`` or raise; see the module docstring for what each outcome means."""
        ...
