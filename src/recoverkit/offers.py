"""Offers attached to recovery messages: what a message promises the shopper, and the codes that carry it.

An :class:`Offer` is plain data that travels on a :class:`~recoverkit.channels.Message` (templates show it,
the ledger and analytics record it). ``kind`` says what it is:

- ``"discount"``: ``code`` takes ``percent`` off, or ``amount`` (minor units of ``currency``) off, on carts of
  at least ``min_value``; the code is unique to this recovery, single-use and void after ``expires_at``;
- ``"free_shipping"``: the same kind of code, for shipping (the usual answer to a shipping-cost shock);
- ``"payment_help"``: no code; the message offers other ways to pay (after a failed payment);
- ``"substitute"``: ``items`` names cheaper or complementary products from the shop's catalogue;
- ``"loyalty_bonus"``: ``points`` extra loyalty points if the order is completed before ``expires_at``.

Amounts are integers in minor units, never floats.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["Offer", "OfferKind"]

#: What an offer gives; see the module docstring.
OfferKind = Literal["discount", "free_shipping", "payment_help", "substitute", "loyalty_bonus"]


class Offer(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One offer made in one message; see the module docstring for the fields each ``kind`` uses."""

    kind: OfferKind
    name: str
    code: str | None = None
    percent: int | None = None
    amount: int | None = None
    currency: str | None = None
    min_value: int | None = None
    expires_at: float | None = None
    items: tuple[str, ...] = ()
    points: int | None = None
