"""Reading a store's facts for analytics, and the one rule every figure shares: which order a conversion is.

:func:`load_facts` gathers what recovery and uplift are computed from (:class:`Facts`): the **cohort** of carts
assigned (messaged or held out) in a period, and everything that happened to those carts afterwards, whenever
it happened, so that a cart abandoned on the last day of the period still gets its whole attribution window.

:class:`Orders` answers "which order is this conversion, and what was it worth": a cart bought in its own
session carries the order's value; a cart closed by its customer's purchase elsewhere does not, and is matched to
the order that closed it (the customer's own conversion at the same instant), so that an order recovering two
carts of one customer is counted, and its revenue summed, once.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Final

import msgspec

from ..facts import Assignment, Conversion, LinkVisit, MessageOutcome
from ..store.base import CodeRecord, LedgerState, Store

__all__ = ["CODE_OFFERS", "DAY", "Facts", "Order", "Orders", "add_money", "day_of", "load_facts"]

DAY: Final = 86_400.0
_SENT: Final[tuple[LedgerState, ...]] = ("sent",)
#: Offer kinds that carry a code a store keeps (:class:`~recoverkit.store.CodeRecord`).
CODE_OFFERS: Final = frozenset({"discount", "free_shipping"})


class Facts(msgspec.Struct, frozen=True, kw_only=True):
    """The facts of one cohort: the assignments made in the period, and the outcomes, conversions, visits and
    redeemable codes of the cohort's carts at any time after the period began.

    ``due`` maps the key of each message sent to when it fell due: the time the send ledger recorded when dispatch
    claimed it (:attr:`~recoverkit.store.LedgerEntry.claimed_at`, on the engine's clock; for a message sent after
    retries, when its last attempt fell due). A sent message missing from it (its ledger entry purged, or facts
    built by hand) is dated by its send."""

    assignments: list[Assignment]
    outcomes: list[MessageOutcome]
    conversions: list[Conversion]
    visits: list[LinkVisit]
    codes: list[CodeRecord]
    since: float | None = None
    until: float | None = None
    due: dict[str, float] = {}


def load_facts(store: Store, *, since: float | None = None, until: float | None = None) -> Facts:
    """The facts of the carts assigned at ``since`` <= ``assigned_at`` < ``until`` (either bound optional).

    Outcomes, conversions and visits of those carts are read from ``since`` on without an upper bound: a
    message sent, or an order placed, after ``until`` still belongs to a cart of the period. Conversions of other
    carts are kept too (a customer's purchase in another session is matched by :class:`Orders`).

    Codes: the store interface lists codes per contact only (:meth:`~recoverkit.store.Store.export`), so they
    are read for each contact whose messages carried a code offer: one read per such contact. When the messages
    fell due (:attr:`Facts.due`) comes from the send ledger's ``sent`` entries, read once.
    """
    assignments = store.assignments(since=since, until=until)
    carts = {a.cart_key for a in assignments}
    outcomes = [o for o in store.outcomes(since=since) if o.cart_key in carts]
    visits = [v for v in store.visits(since=since) if v.cart_key in carts]
    conversions = store.conversions(since=since)
    contacts = sorted({o.contact_key for o in outcomes if o.offer_kind in CODE_OFFERS and o.contact_key})
    codes: dict[str, CodeRecord] = {}
    for contact in contacts:
        for code in store.export(contact).codes:
            if code.cart_key in carts:
                codes[code.code_hash] = code
    return Facts(
        assignments=assignments, outcomes=outcomes, conversions=conversions, visits=visits,
        codes=sorted(codes.values(), key=lambda c: (c.issued_at, c.code_hash)), since=since, until=until,
        due=_due(store, outcomes),
    )  # fmt: skip


def _due(store: Store, outcomes: Iterable[MessageOutcome]) -> dict[str, float]:
    """When each message of ``outcomes`` that was sent fell due: its ledger entry's ``claimed_at``."""
    sent = {o.key for o in outcomes if o.outcome == "sent"}
    if not sent:
        return {}
    return {e.key: e.claimed_at for e in store.ledger(_SENT) if e.key in sent}


class Order(msgspec.Struct, frozen=True, kw_only=True):
    """One order: ``key`` identifies it (its transaction id when known), ``value`` in minor units of
    ``currency`` (``None`` when no purchase event said)."""

    key: str
    at: float
    value: int | None
    currency: str | None


class Orders:
    """Conversions by cart, and the order behind each (see the module docstring)."""

    def __init__(self, conversions: Iterable[Conversion]) -> None:
        self._by_cart: dict[str, list[Conversion]] = defaultdict(list)
        self._own: dict[tuple[str, float], Conversion] = {}
        self._by_transaction: dict[str, Conversion] = {}
        for conversion in sorted(conversions, key=lambda c: (c.at, c.cart_key)):
            self._by_cart[conversion.cart_key].append(conversion)
            if conversion.own:
                self._own.setdefault((conversion.contact_key, conversion.at), conversion)
                if conversion.transaction_id is not None:
                    self._by_transaction.setdefault(conversion.transaction_id, conversion)
        self._times = {cart: [c.at for c in found] for cart, found in self._by_cart.items()}

    def first_after(self, cart_key: str, after: float, *, within: float) -> Conversion | None:
        """The cart's first conversion strictly after ``after`` and at most ``within`` seconds later."""
        times = self._times.get(cart_key)
        if not times:
            return None
        i = bisect.bisect_right(times, after)
        if i < len(times) and times[i] <= after + within:
            return self._by_cart[cart_key][i]
        return None

    def conversions_of(self, cart_key: str) -> Sequence[Conversion]:
        """Every conversion of ``cart_key``, oldest first."""
        return self._by_cart.get(cart_key, ())

    def order_of(self, conversion: Conversion) -> Order:
        """The order behind ``conversion``: its own, or the customer's order that closed it elsewhere."""
        source = conversion if conversion.own else self._own.get((conversion.contact_key, conversion.at))
        if source is None:  # the closing order's own fact is missing (outside the period, or purged)
            return Order(key=f"{conversion.contact_key}@{conversion.at!r}", at=conversion.at, value=None, currency=None)
        key = source.transaction_id or f"{source.cart_key}@{source.at!r}"
        return Order(key=key, at=source.at, value=source.value, currency=source.currency)

    def by_transaction(self, transaction_id: str) -> Conversion | None:
        """The own conversion recorded with ``transaction_id`` (what a redeemed code names), if any."""
        return self._by_transaction.get(transaction_id)


def add_money(totals: dict[str, int], currency: str | None, amount: int) -> None:
    """Add ``amount`` to ``totals[currency]``; amounts of different currencies are never added together.
    A value without a currency is kept under ``"?"`` rather than guessed."""
    key = currency or "?"
    totals[key] = totals.get(key, 0) + amount


def day_of(ts: float) -> str:
    """The UTC calendar day of ``ts`` as ``YYYY-MM-DD``."""
    return time.strftime("%Y-%m-%d", time.gmtime(ts))
