"""On-site offers waiting for their visitor (:class:`OnsiteStore`): the store side of the ``onsite`` channel.

An on-site message is not pushed anywhere: dispatch *puts* it in the store (:meth:`OnsiteStore.put_onsite`), and
the shop's pages ask for it when the visitor comes back (:mod:`recoverkit.onsite`). It lives in the store, not
in one process, because the process that delivers it (the pipeline's owner) is rarely the web worker that
answers the visitor, and several hosts may share the store.

A visitor is known by the first-party session cookie (``session_id``) and, once logged in, the shop's customer
id (``customer_id``); an offer waits for either. Nothing here is addressed by anything a visitor could choose:
the page names an offer only by its ``token`` (random, 128 bits), and a mark is applied only when the token
belongs to the visitor who sends it.

This protocol is not part of :class:`~recoverkit.store.Store`: a shop's own store without it still runs every
other channel. The stores recoverkit ships (memory, SQLite, PostgreSQL) implement it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final, Literal, Protocol, get_args, runtime_checkable

import msgspec

__all__ = [
    "ONSITE_MARKS",
    "OnsiteChanges",
    "OnsiteMark",
    "OnsiteOffer",
    "OnsiteStore",
    "check_mark",
    "check_offer",
    "check_visitor",
    "visitor_keys",
]

#: What a page reports about an offer it was given: it was shown, clicked, or dismissed by the visitor.
OnsiteMark = Literal["shown", "clicked", "dismissed"]
ONSITE_MARKS: Final[frozenset[str]] = frozenset(get_args(OnsiteMark))
#: The most visitors one :meth:`OnsiteStore.onsite_changes` answer lists (the rest come with the next call).
CHANGES_LIMIT: Final = 10_000


class OnsiteOffer(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One on-site message waiting for its visitor.

    ``token`` is what the page names the offer by (random; never the message key, which names the cart);
    ``key`` is the message's idempotency key (one offer per key). ``session_id`` and ``customer_id`` say whose
    it is (at least one). ``started_at`` is when the cart was started: a purchase of the cart, or by the contact,
    at or after it withdraws the offer. It is shown at most ``shows`` times, until ``expires_at``, and never after
    a ``"clicked"`` or ``"dismissed"`` mark. ``message`` is the :class:`~recoverkit.items.Message` as JSON, which
    the page's answer is rendered from.
    """

    token: str
    key: str
    cart_key: str
    contact_key: str
    session_id: str | None
    customer_id: str | None
    started_at: float
    put_at: float
    expires_at: float
    shows: int
    message: bytes
    #: ``"waiting"`` until the visitor clicked or dismissed it.
    state: Literal["waiting", "clicked", "dismissed"] = "waiting"
    #: How many times a page showed it.
    shown: int = 0


class OnsiteChanges(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`OnsiteStore.onsite_changes` answers: the visitors (``"s:<session>"``, ``"c:<customer>"``)
    offers were put for after a position, each with the offer's expiry, and the position to ask after next."""

    position: int
    visitors: list[tuple[str, float]]


@runtime_checkable
class OnsiteStore(Protocol):
    """On-site offers as a store keeps them; see the module docstring.

    Every method is one transaction. Times are the caller's (the engine's clock), never the store's.
    """

    def put_onsite(self, offer: OnsiteOffer) -> bool:
        """Keep ``offer``; ``False`` (and nothing changed) when an offer with its ``key`` is already kept.

        Offers that expired before ``offer.put_at`` are deleted on the way: they can never be shown again.
        """
        ...

    def onsite_changes(self, after: int, *, now: float) -> OnsiteChanges:
        """The visitors offers were put for at positions after ``after`` (0: from the start) that have not
        expired at ``now``, at most :data:`CHANGES_LIMIT`; positions grow in the order puts are committed, so a
        reader that asks after the position it was last given misses none."""
        ...

    def onsite_for(self, *, session_id: str | None, customer_id: str | None, now: float) -> list[OnsiteOffer]:
        """The offers that may be shown now to the visitor with ``session_id`` or ``customer_id``, newest first:
        waiting, with shows left, not expired at ``now``, and neither their cart nor their contact bought at or
        after the cart's ``started_at`` (the purchase record :meth:`~recoverkit.store.LedgerStore.record_purchase`
        keeps, not a cancellation that may come later)."""
        ...

    def mark_onsite(
        self, token: str, mark: OnsiteMark, *, session_id: str | None, customer_id: str | None, now: float
    ) -> OnsiteOffer | None:
        """Apply ``mark`` to the offer ``token`` names, if it is this visitor's and may still be shown; answer it
        as it was before the mark, else ``None`` (not theirs, unknown, expired, bought, clicked or dismissed).

        ``"shown"`` uses one of its shows (``None`` when none is left); ``"clicked"`` and ``"dismissed"`` end it
        (``None`` when it was never shown).
        """
        ...

    def forget_onsite(self, contact_key: str) -> int:
        """Delete every offer for ``contact_key`` (an erasure); return how many."""
        ...


def visitor_keys(session_id: str | None, customer_id: str | None) -> list[str]:
    """The keys an in-process index files a visitor under: ``"s:<session>"`` and ``"c:<customer>"``."""
    keys = []
    if session_id:
        keys.append("s:" + session_id)
    if customer_id:
        keys.append("c:" + customer_id)
    return keys


def check_offer(offer: OnsiteOffer) -> None:
    """Refuse an offer a store could not keep or could never show."""
    if not isinstance(offer, OnsiteOffer):
        raise TypeError(f"put_onsite: expected an OnsiteOffer, got {type(offer).__name__}")
    for name in ("token", "key", "cart_key", "contact_key"):
        if not getattr(offer, name):
            raise ValueError(f"put_onsite: OnsiteOffer `{name}` must be non-empty, got {getattr(offer, name)!r}")
    if not offer.session_id and not offer.customer_id:
        raise ValueError("put_onsite: OnsiteOffer needs a `session_id` or a `customer_id`, got neither")
    if offer.shows < 1:
        raise ValueError(f"put_onsite: OnsiteOffer `shows` must be at least 1, got {offer.shows!r}")
    for name in ("started_at", "put_at", "expires_at"):
        if math.isnan(getattr(offer, name)):
            raise ValueError(f"put_onsite: OnsiteOffer `{name}` must be epoch seconds, got nan")


def check_visitor(method: str, session_id: str | None, customer_id: str | None) -> None:
    if not session_id and not customer_id:
        raise ValueError(f"{method}: expected a `session_id` or a `customer_id`, got neither")


def check_mark(token: str, mark: str) -> None:
    if mark not in ONSITE_MARKS:
        raise ValueError(f"mark_onsite: `mark` must be one of {', '.join(sorted(ONSITE_MARKS))}, got {mark!r}")
    if not isinstance(token, str) or not token:
        raise ValueError(f"mark_onsite: `token` must be a non-empty string, got {token!r}")


def live(offer: OnsiteOffer, now: float, bought: float | None) -> bool:
    """Whether ``offer`` is still on at ``now`` (waiting, not expired), given the latest purchase of its cart or
    of its contact (``bought``): one at or after the cart was started withdraws it."""
    if offer.state != "waiting" or offer.expires_at <= now:
        return False
    return bought is None or bought < offer.started_at


def after_mark(offer: OnsiteOffer, mark: OnsiteMark) -> OnsiteOffer | None:
    """The live offer once ``mark`` is applied, or ``None`` when it cannot be: no show left for ``"shown"``,
    never shown for ``"clicked"`` and ``"dismissed"``."""
    if mark == "shown":
        if offer.shown >= offer.shows:
            return None
        return msgspec.structs.replace(offer, shown=offer.shown + 1)
    if offer.shown == 0:
        return None
    return msgspec.structs.replace(offer, state="clicked" if mark == "clicked" else "dismissed")


def newest_first(offers: Sequence[OnsiteOffer]) -> list[OnsiteOffer]:
    return sorted(offers, key=lambda o: (-o.put_at, o.key))
