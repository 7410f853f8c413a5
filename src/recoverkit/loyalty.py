"""The shop's loyalty programme, as ``loyalty_bonus`` offers see it: bonus points granted with a message.

A ``loyalty_bonus`` offer (see :mod:`recoverkit.offers`) promises the shopper extra loyalty points, or a
multiple of the usual points, if the order is completed before the offer's ``expires_at``: "double points if
you order today". recoverkit keeps no points; the shop passes an object with one method, :class:`Loyalty`, to
the engine (``Engine(loyalty=...)``), which grants the bonus just before the message is sent, after the ledger
claim, so that only a message that goes out grants anything. The grant's reference is recorded on the
message's offer (``Offer.grant_id``, with the points and expiry the programme confirmed).

Guarantees:

- **One grant per message.** ``grant`` is called with ``key`` = the message's idempotency key
  (``cart/flow/step``); a retry of the message reuses the first grant and does not call ``grant`` again, and a
  retry after ``grant`` failed calls it again *with the same key*, so a programme that honours the key (as
  :class:`MemoryLoyalty` does) never grants twice. Implementations must honour it.
- **Only known customers.** Points belong to a customer account: a message to a shopper without a
  ``customer_id`` goes without the offer (counted as ``offer_no_customer``).
- **Failures are retried like a failed send.** A ``grant`` that raises or outlives the channel's ``timeout``
  fails the attempt, which is retried with backoff (and dead-lettered when attempts run out), as a coupon
  system failing to issue a code is: the message promises points, so it is not sent until they are granted.
  A programme that *declines* (the customer is not a member...) answers :class:`NotGranted`: the message then
  goes without the offer, counted as ``offer_loyalty_<reason>``.

Limit: a grant whose answer was lost (a timeout after the programme recorded it) stands even if the message is
later dead-lettered; the programme has it under the message key.
"""

from __future__ import annotations

import secrets
from typing import Literal, Protocol, runtime_checkable

import msgspec

__all__ = ["Loyalty", "LoyaltyGrant", "MemoryLoyalty", "NotGranted", "NotGrantedReason"]


class LoyaltyGrant(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A bonus the loyalty programme granted: ``grant_id`` is its reference there; ``points`` extra points, or
    ``multiplier`` times the order's usual points, if the order is completed before ``expires_at``."""

    grant_id: str
    customer_id: str
    expires_at: float
    points: int | None = None
    multiplier: int | None = None


#: Why a programme declined a grant: not a member of the programme, a limit of the programme, anything else.
NotGrantedReason = Literal["not_member", "limit", "declined"]


class NotGranted(msgspec.Struct, frozen=True, kw_only=True):
    """The programme will not grant this bonus; ``reason`` is a statistics key, ``detail`` a sentence for logs
    without personal data. The message goes without the offer."""

    reason: NotGrantedReason
    detail: str = ""


@runtime_checkable
class Loyalty(Protocol):
    """The shop's loyalty programme: passed as ``Engine(loyalty=...)``; see the module docstring.

    ``grant`` grants ``customer_id`` either ``points`` extra points or ``multiplier`` times the usual points
    (exactly one of the two is given) on an order completed before ``expires_at`` (epoch seconds), and returns
    the :class:`LoyaltyGrant`, or :class:`NotGranted`. It must be idempotent on ``key``: called again with a
    key it has granted under, it returns that grant and grants nothing more. It is called from the engine's
    event loop and given the channel's ``timeout``.
    """

    async def grant(
        self, *, customer_id: str, points: int | None, multiplier: int | None, expires_at: float, key: str
    ) -> LoyaltyGrant | NotGranted:
        """Grant the bonus under ``key``, or return the grant already made under it."""
        ...


class MemoryLoyalty:
    """A :class:`Loyalty` in memory: the reference implementation and the test double.

    ``grants`` holds every grant by key. ``fail_next(n)`` makes the next ``n`` calls raise
    :class:`ConnectionError` *after* recording the grant (as a programme whose answer was lost would), so tests
    can check that a retry does not grant twice. ``members``, when given, is the set of customer ids in the
    programme; others are answered ``NotGranted("not_member")``. ``calls`` counts calls.

    Calling again with a key already granted under returns that grant; with other terms (another customer,
    other points) it raises :class:`ValueError`: the caller reused a key for a different grant, which is a bug.
    """

    def __init__(self, *, members: set[str] | None = None) -> None:
        self.grants: dict[str, LoyaltyGrant] = {}
        self.members = members
        self.calls = 0
        self._failures = 0

    def fail_next(self, n: int = 1) -> None:
        """Make the next ``n`` calls raise ``ConnectionError`` once their grant is recorded."""
        self._failures += n

    async def grant(
        self, *, customer_id: str, points: int | None, multiplier: int | None, expires_at: float, key: str
    ) -> LoyaltyGrant | NotGranted:
        """See :class:`MemoryLoyalty`."""
        self.calls += 1
        if (points is None) == (multiplier is None):
            raise ValueError(
                f"grant: expected `points` or `multiplier` (one of the two), got {points!r} and {multiplier!r}"
            )
        if self.members is not None and customer_id not in self.members:
            return NotGranted(reason="not_member", detail="the customer is not in the loyalty programme")
        granted = self.grants.get(key)
        if granted is None:
            granted = self.grants[key] = LoyaltyGrant(
                grant_id=f"grant-{secrets.token_hex(6)}", customer_id=customer_id, expires_at=expires_at,
                points=points, multiplier=multiplier,
            )  # fmt: skip
        elif (granted.customer_id, granted.points, granted.multiplier) != (customer_id, points, multiplier):
            raise ValueError(f"grant: key {key!r} was granted with other terms; expected one grant per key")
        if self._failures:
            self._failures -= 1
            raise ConnectionError("loyalty programme unreachable (MemoryLoyalty.fail_next)")
        return granted
