"""Who a session belongs to, for the sessionize stage: sessions stitched to customers, one cart per ``cart_id``.

Three indexes over the sessions the stage holds:

- **customers**: a customer's sessions, in the order they were stitched. A session is stitched when an event
  carries a ``customer_id`` it did not have (a log-in, or any event of a known shopper); an anonymous session
  stitched this way is merged into the customer (``merged_from``: consent given while anonymous is theirs
  from now on), a session switching customers is not;
- **cart ids**: the session holding each of the shop's ``cart_id``\\ s. The cart lives in the session that last
  sent its id; when another session sends it (another device, or a restore link followed), the cart moves
  there (see :func:`~recoverkit.sessionize._cart.move_cart`);
- **buyers**: customers seen buying, for the cart's ``returning`` feature; bounded like the sessions.

Erasure reads the same indexes: :meth:`Stitching.forget` drops a customer's sessions, carts and entries, and
:meth:`Stitching.carts_of` answers an access request.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import cachetools

from ..cart import CartSnapshot
from ..events import contact_key
from ..items import ContactChanged, Forget, Resumed
from ._cart import Session, cart_key, contact_of, move_cart, snapshot

__all__ = ["Stitching"]


class Stitching:
    """The customer, cart-id and buyer indexes over ``sessions``, which the stage owns and this reads.

    ``counts`` is the stage's counter (``stitched``, ``carts_moved``, ``resumed``, ``forgotten``); it and
    ``sessions`` are the stage's own objects, which the stage changes in place (a restore builds a new
    :class:`Stitching` over new ones).
    """

    def __init__(
        self,
        sessions: dict[str, Session],
        counts: Counter[str],
        *,
        max_buyers: int,
        customers: dict[str, tuple[str, ...]] | None = None,
        buyers: Iterable[tuple[str, float]] = (),
    ) -> None:
        """Indexes over ``sessions`` (least recently active first), with a checkpoint's ``customers`` and
        ``buyers`` when restoring."""
        self._sessions = sessions
        self._counts = counts
        #: Customer id -> their sessions' ids, in the order they were stitched. Tuples, replaced whole: the
        #: garbage collector stops tracking a tuple of strings (a list it tracks for ever).
        self.customers: dict[str, tuple[str, ...]] = customers if customers is not None else {}
        #: The shop's cart ids -> the session holding that cart (one cart per cart_id). Rebuilt from the
        #: sessions, least recently active first: a cart id two sessions held (a checkpoint of an older
        #: recoverkit) is the latest one's.
        self.carts: dict[str, str] = {x.cart_id: x.session_id for x in sessions.values() if x.cart_id is not None}
        #: Customers seen buying, for the ``returning`` feature; bounded like the sessions themselves.
        self.buyers: cachetools.LRUCache[str, float] = cachetools.LRUCache(maxsize=max_buyers)
        for customer, at in buyers:
            self.buyers[customer] = at

    # -- customers ------------------------------------------------------------------------------------------

    def stitch(self, session: Session, customer_id: str, ts: float, out: list[Any]) -> None:
        """``session`` belongs to ``customer_id`` from ``ts``: emit the :class:`ContactChanged` that says so."""
        previous = session.customer_id
        if previous is not None:
            self._leave(session.session_id, previous)
        session.customer_id = customer_id
        self.customers[customer_id] = (*self.customers.get(customer_id, ()), session.session_id)
        self._counts["stitched"] += 1
        # Consent given while anonymous belongs to the customer from now on.
        out.append(
            ContactChanged(
                contact_key=customer_id,
                at=ts,
                customer_id=customer_id,
                merged_from=contact_key(session.session_id) if previous is None else None,
            )
        )

    def siblings(self, customer_id: str) -> tuple[str, ...]:
        """The ids of ``customer_id``'s sessions (a copy: closing them may change the index)."""
        return tuple(self.customers.get(customer_id, ()))

    def bought(self, customer_id: str, ts: float) -> None:
        """``customer_id`` bought at ``ts``: their later carts are ``returning``."""
        self.buyers[customer_id] = ts

    def snapshot(self, session: Session) -> CartSnapshot:
        """The session's cart, frozen, with ``returning`` set when its customer bought before."""
        customer = session.customer_id
        return snapshot(session, returning=customer is not None and customer in self.buyers)

    def _leave(self, session_id: str, customer_id: str) -> None:
        siblings = self.customers.get(customer_id)
        if siblings is not None:
            if session_id in siblings:
                at = siblings.index(session_id)
                siblings = siblings[:at] + siblings[at + 1 :]
            if siblings:
                self.customers[customer_id] = siblings
            else:
                del self.customers[customer_id]

    # -- one cart per cart_id -------------------------------------------------------------------------------

    def take_cart(self, session: Session, cart_id: str, ts: float, out: list[Any], *, back: bool) -> None:
        """``session`` sent the shop's ``cart_id``: from now on it holds that cart, the only one of that key.

        A cart of that id held by another session (or, for a link built for a cart without ``cart_id``, the
        session of that id) moves here, merged with what this session holds: an item in both keeps this
        session's line, which is the newer. An abandoned cart that comes back this way (``back``: any event but
        a purchase) is resumed, as activity in its own session would resume it, so its pending steps stop.
        """
        self.release_cart_id(session)
        session.cart_id = cart_id
        owner = self._holder(cart_id, session)
        self.carts[cart_id] = session.session_id
        if owner is None or not (owner.lines or owner.abandoned):
            return
        if owner.abandoned and back:
            self._counts["resumed"] += 1
            out.append(Resumed(cart_key=cart_id, contact_key=contact_of(owner), at=ts))
        move_cart(owner, session)
        self._counts["carts_moved"] += 1
        if session.customer_id is None and owner.customer_id is not None:
            self.stitch(session, owner.customer_id, ts, out)

    def _holder(self, cart_id: str, session: Session) -> Session | None:
        """The session other than ``session`` that held ``cart_id`` until now, if any (read before ``session``
        is recorded as its holder)."""
        sessions = self._sessions
        owner_id = self.carts.get(cart_id)
        if owner_id is None and cart_id in sessions and sessions[cart_id].cart_id is None:
            owner_id = cart_id  # the session whose own cart (keyed by its session id) the link was built for
        return sessions.get(owner_id) if owner_id is not None and owner_id != session.session_id else None

    def release_cart_id(self, session: Session) -> None:
        """``session`` no longer holds its ``cart_id`` (bought, evicted or taking another)."""
        cart_id = session.cart_id
        if cart_id is not None and self.carts.get(cart_id) == session.session_id:
            del self.carts[cart_id]

    # -- a session leaving, and erasure ---------------------------------------------------------------------

    def drop(self, session: Session) -> None:
        """``session`` was evicted from the stage: it holds no cart id and is no customer's any more."""
        self.release_cart_id(session)
        if session.customer_id is not None:
            self._leave(session.session_id, session.customer_id)

    def forget(self, forget: Forget, out: list[Any]) -> None:
        """Erase the customer's sessions and carts; note their contact and cart keys for the stages after, and
        pass ``forget`` on."""
        customer = forget.customer_id
        sessions = self._sessions
        for session_id in self._ids_of(customer, self.customers.pop(customer, ())):
            session = sessions.pop(session_id, None)  # its timer entry is skipped when it pops
            forget.contact_keys.append(contact_key(session_id))
            if session is not None:
                self.release_cart_id(session)
                forget.cart_keys.append(cart_key(session))
        self.buyers.pop(customer, None)
        self._counts["forgotten"] += 1
        out.append(forget)

    def carts_of(self, customer_id: str) -> list[CartSnapshot]:
        """The carts of ``customer_id``'s sessions held now (for an access request)."""
        sessions = self._sessions
        ids = self._ids_of(customer_id, self.customers.get(customer_id, ()))
        return [self.snapshot(sessions[sid]) for sid in ids if sid in sessions]

    def _ids_of(self, customer_id: str, indexed: tuple[str, ...]) -> list[str]:
        # The index, and a walk over every session naming the customer: erasure must miss none of them.
        ids = set(indexed)
        ids.update(sid for sid, session in self._sessions.items() if session.customer_id == customer_id)
        return sorted(ids)
