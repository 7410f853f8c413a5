"""The on-site offers of a :class:`~recoverkit.store.MemoryStore` (:class:`~recoverkit.store.OnsiteStore`)."""

from __future__ import annotations

from ._memory_tables import MemoryTables
from ._onsite import (
    CHANGES_LIMIT,
    OnsiteChanges,
    OnsiteMark,
    OnsiteOffer,
    after_mark,
    check_mark,
    check_offer,
    check_visitor,
    live,
    newest_first,
    visitor_keys,
)
from ._privacy import ForgetReport

__all__ = ["MemoryOnsite"]


class _Table:
    """The offers by key, their positions, and the keys each visitor's offers are filed under."""

    __slots__ = ("by_token", "offers", "position", "positions")

    def __init__(self) -> None:
        self.offers: dict[str, OnsiteOffer] = {}  # message key -> offer
        self.by_token: dict[str, str] = {}  # token -> message key
        self.positions: dict[int, str] = {}  # position -> message key, in put order
        self.position = 0


class MemoryOnsite(MemoryTables):
    """:class:`~recoverkit.store.OnsiteStore` in dicts, under the store's one lock (which also guards the
    purchases an answer is judged by). Put first in the store's bases: its :meth:`forget` adds the offers to the
    privacy part's."""

    @property
    def _onsite(self) -> _Table:
        # Made on first use: the tables' constructor belongs to the store's other parts.
        table: _Table | None = self.__dict__.get("_onsite_table")
        if table is None:
            table = self.__dict__.setdefault("_onsite_table", _Table())
        return table

    def put_onsite(self, offer: OnsiteOffer) -> bool:
        check_offer(offer)
        with self._lock:
            self._enter(write=True)
            table = self._onsite
            for key in [k for k, o in table.offers.items() if o.expires_at < offer.put_at]:
                self._drop(table, key)
            if offer.key in table.offers:
                return False
            table.position += 1
            table.offers[offer.key] = offer
            table.by_token[offer.token] = offer.key
            table.positions[table.position] = offer.key
            return True

    def onsite_changes(self, after: int, *, now: float) -> OnsiteChanges:
        with self._lock:
            self._enter(write=False)
            table = self._onsite
            visitors: list[tuple[str, float]] = []
            position = max(after, 0)
            for seq in sorted(p for p in table.positions if p > after):
                if len(visitors) >= CHANGES_LIMIT:
                    break
                position = seq
                offer = table.offers[table.positions[seq]]
                if offer.expires_at > now:
                    keys = visitor_keys(offer.session_id, offer.customer_id)
                    visitors.extend((key, offer.expires_at) for key in keys)
            return OnsiteChanges(position=position, visitors=visitors)

    def onsite_for(self, *, session_id: str | None, customer_id: str | None, now: float) -> list[OnsiteOffer]:
        check_visitor("onsite_for", session_id, customer_id)
        with self._lock:
            self._enter(write=False)
            return newest_first([
                offer for offer in self._onsite.offers.values()
                if _theirs(offer, session_id, customer_id) and offer.shown < offer.shows
                and live(offer, now, self._bought(offer))
            ])  # fmt: skip

    def mark_onsite(
        self, token: str, mark: OnsiteMark, *, session_id: str | None, customer_id: str | None, now: float
    ) -> OnsiteOffer | None:
        check_mark(token, mark)
        check_visitor("mark_onsite", session_id, customer_id)
        with self._lock:
            self._enter(write=True)
            table = self._onsite
            key = table.by_token.get(token)
            offer = table.offers.get(key) if key is not None else None
            if offer is None or not _theirs(offer, session_id, customer_id):
                return None
            if not live(offer, now, self._bought(offer)):
                return None
            marked = after_mark(offer, mark)
            if marked is None:
                return None
            table.offers[offer.key] = marked
            return offer

    def forget_onsite(self, contact_key: str) -> int:
        with self._lock:
            self._enter(write=True)
            table = self._onsite
            keys = [key for key, offer in table.offers.items() if offer.contact_key == contact_key]
            for key in keys:
                self._drop(table, key)
            return len(keys)

    def forget(self, contact_key: str, *, at: float) -> ForgetReport:
        """The privacy part's erasure, then the contact's on-site offers."""
        report: ForgetReport = super().forget(contact_key, at=at)  # type: ignore[misc]  # the privacy part's
        self.forget_onsite(contact_key)
        return report

    def _bought(self, offer: OnsiteOffer) -> float | None:
        """The latest purchase of the offer's cart or contact (the caller holds the lock)."""
        times = [t for t in (self._cart_purchases.get(offer.cart_key), self._contact_purchases.get(offer.contact_key))
                 if t is not None]  # fmt: skip
        return max(times) if times else None

    @staticmethod
    def _drop(table: _Table, key: str) -> None:
        offer = table.offers.pop(key)
        table.by_token.pop(offer.token, None)
        for position in [p for p, k in table.positions.items() if k == key]:
            del table.positions[position]


def _theirs(offer: OnsiteOffer, session_id: str | None, customer_id: str | None) -> bool:
    return bool((session_id and offer.session_id == session_id) or (customer_id and offer.customer_id == customer_id))
