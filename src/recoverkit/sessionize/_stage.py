"""Stage 2, sessionize: keep every session's cart, stitch sessions to customers, detect abandonment.

This is where "the shopper left" is decided. Per session the stage keeps the cart (lines in integer minor
units, currency, shipping, the furthest checkout step, friction signals) and one timer:

- a cart with items and no activity for ``abandon_after`` is **abandoned** (trigger ``inactivity``); after an
  ``exit_intent`` the wait shrinks to ``exit_intent_after`` (trigger ``exit_intent``); after a
  ``payment_failed`` to ``payment_failed_after`` (trigger ``payment_failed``, at once by default);
- any later activity in the session **resumes** the cart (downstream cancels what is pending for it) and
  re-arms the timer, so there is at most one abandonment per idle period; so does following the cart's
  restore link from another session (another device): the shopper is back;
- a ``purchase`` **converts** the cart and every other open cart of the same customer, including carts in
  other sessions, and events older than the purchase no longer change the closed cart. A purchase is not a
  return: what it stops downstream stops because of the purchase;
- **one cart per** ``cart_id``: the shop's cart lives in the session that last sent its ``cart_id``. When
  another session sends it (the shopper switched devices, or followed the restore link), the cart moves
  there, with its lines, its checkout progress and its start, and is merged with what that session already
  held; the session it left keeps no cart. A session without a customer that takes a known customer's cart
  becomes that customer's session (it is their cart);
- sessions without a cart are forgotten ``session_timeout`` after their last activity, abandoned ones after
  ``recovery_window``; beyond ``max_sessions`` the least recently active are evicted, so memory is bounded.

Timers fire when the watermark passes them (see :mod:`recoverkit.clock`), so replay and live decide alike.
What crosses to the next stage: :class:`Abandoned`, :class:`Resumed`, :class:`Converted` and
:class:`ContactChanged`.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import cachetools
import msgspec

from ._pipeline import Stage
from ._session_cart import Session, State, cart_key, clear_cart, move_cart, new_line, snapshot
from .cart import CartSnapshot
from .config import Config
from .events import (
    RESTORE_PAGE,
    AddPaymentInfo,
    AddShippingInfo,
    AddToCart,
    BaseEvent,
    BeginCheckout,
    CheckoutStep,
    Consent,
    Event,
    ExitIntent,
    FormError,
    Identify,
    PageView,
    PaymentFailed,
    Purchase,
    RemoveFromCart,
    ViewCart,
    ViewItem,
    contact_key,
)
from .facts import LinkVisit
from .items import Abandoned, ContactChanged, Converted, Forget, Resumed
from .money import to_minor

__all__ = ["Abandoned", "ContactChanged", "Converted", "Resumed", "Sessionize"]


class Sessionize(Stage):
    """Holds carts and timers; emits abandonments, resumptions, conversions and contact changes."""

    name = "sessionize"

    def __init__(self, config: Config, *, event_time: bool = False) -> None:
        super().__init__()
        # In event time every timer due before an event fires before that event is handled, so decisions do
        # not depend on how the input was cut into batches. Live, timers fire on the clock's ticks only: a
        # shop's clock running ahead must not make carts abandon early.
        self._event_time = event_time
        self._abandon_after = config.abandon_after
        self._exit_after = config.exit_intent_after
        self._failed_after = config.payment_failed_after
        self._idle = config.session_timeout
        self._window = config.recovery_window
        self._max_sessions = config.max_sessions
        self._sessions: dict[str, Session] = {}
        self._customers: dict[str, list[str]] = {}
        #: The shop's cart ids -> the session holding that cart (one cart per cart_id; rebuilt on restore).
        self._carts: dict[str, str] = {}
        #: Customers seen buying, for the ``returning`` feature; bounded like the sessions themselves.
        self._buyers: cachetools.LRUCache[str, float] = cachetools.LRUCache(maxsize=config.max_sessions)
        self._timers: list[tuple[float, str]] = []
        self.counts: Counter[str] = Counter()
        self._handlers: dict[type[BaseEvent], Callable[[Session, Any, float, list[Any]], None]] = {
            PageView: self._on_page_view,
            ViewItem: self._on_view_item,
            AddToCart: self._on_add,
            RemoveFromCart: self._on_remove,
            ViewCart: self._on_checkout_step,
            BeginCheckout: self._on_checkout_step,
            AddShippingInfo: self._on_checkout_step,
            AddPaymentInfo: self._on_checkout_step,
            Purchase: self._on_purchase,
            Identify: self._on_identify,
            Consent: self._on_consent,
            PaymentFailed: self._on_payment_failed,
            FormError: self._on_form_error,
            ExitIntent: self._on_exit_intent,
        }

    # -- the stage ------------------------------------------------------------------------------------------

    def handle(self, items: Sequence[Event | Forget], out: list[Any]) -> None:
        handlers = self._handlers
        timers = self._timers
        event_time = self._event_time
        for event in items:
            try:
                if isinstance(event, Forget):
                    self._forget(event, out)
                    continue
                ts: float = event.ts  # type: ignore[assignment]  # ingest made every ts a float
                if event_time and timers and timers[0][0] < ts:
                    self._fire(ts, out, inclusive=False)
                    timers = self._timers  # the heap may have been rebuilt
                session = self._session_of(event, ts, out)
                if event.customer_id is not None and event.customer_id != session.customer_id:
                    self._stitch(session, event.customer_id, ts, out)
                cart_id = event.cart_id
                if cart_id is not None and cart_id != session.cart_id:
                    self._take_cart(session, cart_id, ts, out, back=type(event) is not Purchase)
                if event.currency is not None:
                    session.currency = event.currency
                handlers[type(event)](session, event, ts, out)
            except Exception:
                self.errors += 1
                self.log.exception("sessionize_failed", event=getattr(event, "event", type(event).__name__))

    def _session_of(self, event: Event, ts: float, out: list[Any]) -> Session:
        """The session ``event`` belongs to at ``ts``: caught up on a timer it passed, resumed when it comes back
        to an abandoned cart, or opened (again, when it was forgotten)."""
        sessions = self._sessions
        session_id = event.session_id
        session = sessions.get(session_id)
        if session is not None and session.deadline < ts and not self._catch_up(session, ts, out):
            session = None
        if session is None:
            return self._open(event, ts)
        # Re-inserted on every event, the dict stays in least-recently-active order for overflow.
        del sessions[session_id]
        sessions[session_id] = session
        if session.abandoned and ts > session.last_at and type(event) is not Purchase:
            # A purchase is not a return: it converts the cart (downstream records why steps stop).
            self._resume(session, ts, out)
        if ts > session.last_at:
            session.last_at = ts
        return session

    def advance(self, watermark: float, out: list[Any]) -> None:
        self._fire(watermark, out, inclusive=True)

    def _fire(self, limit: float, out: list[Any], *, inclusive: bool) -> None:
        """Fire timers due at or before ``limit`` (strictly before it unless ``inclusive``)."""
        timers = self._timers
        sessions = self._sessions
        pop = heapq.heappop
        while timers and (timers[0][0] <= limit if inclusive else timers[0][0] < limit):
            due, session_id = pop(timers)
            session = sessions.get(session_id)
            if session is None or session.timer_at != due:
                continue  # superseded by an earlier timer for the same session
            session.timer_at = math.inf
            if session.deadline > due:  # activity moved the deadline since this entry was pushed
                self._arm(session, session.deadline)
            elif session.lines and not session.abandoned:
                self._abandon(session, due, out)
            else:
                self._evict(session)

    # -- timers ---------------------------------------------------------------------------------------------

    def _arm(self, session: Session, deadline: float) -> None:
        # One heap entry per session: a later deadline just updates the session, and the entry already in the
        # heap re-arms itself when it pops. Only an earlier deadline needs a new entry.
        session.deadline = deadline
        if deadline < session.timer_at:
            session.timer_at = deadline
            heapq.heappush(self._timers, (deadline, session.session_id))

    def _touch(self, session: Session, ts: float) -> None:
        """Activity at ``ts``: the shopper is here; the inactivity clock restarts."""
        if ts >= session.last_at or session.deadline < ts:
            session.trigger = "inactivity"
            self._arm(session, session.last_at + (self._abandon_after if session.lines else self._idle))

    def _catch_up(self, session: Session, ts: float, out: list[Any]) -> bool:
        """Fire the session's own timer when an event of the session at ``ts`` shows it passed unnoticed.

        Every event of a batch is handled before the watermark moves, so a deadline falling between two events
        of one batch would otherwise be postponed by the second, and whether a cart counts as abandoned would
        depend on how the input was batched. Returns ``False`` when the session was forgotten instead.
        """
        while session.deadline < ts:
            if session.lines and not session.abandoned:
                self._abandon(session, session.deadline, out)
            else:
                self._evict(session)
                return False
        return True

    def _open(self, event: BaseEvent, ts: float) -> Session:
        session = Session(
            session_id=event.session_id,
            started_at=ts,
            last_at=ts,
            deadline=ts + self._idle,
            device=event.device,
            source=event.source,
        )
        self._sessions[event.session_id] = session
        self._arm(session, session.deadline)
        if len(self._sessions) > self._max_sessions:
            self._evict_oldest()
        return session

    def _evict_oldest(self) -> None:
        # The first session in the dict is the least recently active one (see handle); the one just opened is
        # the last, so it is never the one to go.
        sessions = self._sessions
        while len(sessions) > self._max_sessions:
            self.counts["evicted_overflow"] += 1
            self._evict(next(iter(sessions.values())))
        if len(self._timers) > 2 * len(sessions) + 1024:
            # Evicted sessions leave their heap entries behind (skipped when they pop); rebuild the heap from
            # the live sessions so that sustained overflow cannot grow it without bound.
            self._timers = [(s.timer_at, s.session_id) for s in sessions.values() if s.timer_at != math.inf]
            heapq.heapify(self._timers)

    def _evict(self, session: Session) -> None:
        del self._sessions[session.session_id]
        self._release_cart_id(session)
        customer = session.customer_id
        if customer is not None:
            siblings = self._customers.get(customer)
            if siblings is not None:
                if session.session_id in siblings:
                    siblings.remove(session.session_id)
                if not siblings:
                    del self._customers[customer]
        self.counts["evicted"] += 1

    # -- state changes that emit ----------------------------------------------------------------------------

    def _abandon(self, session: Session, due: float, out: list[Any]) -> None:
        session.abandoned = True
        self.counts[f"abandoned_{session.trigger}"] += 1
        out.append(Abandoned(cart=self._snapshot(session), trigger=session.trigger, at=due))
        self._arm(session, session.last_at + self._window)

    def _resume(self, session: Session, ts: float, out: list[Any]) -> None:
        session.abandoned = False
        self.counts["resumed"] += 1
        out.append(Resumed(cart_key=cart_key(session), contact_key=self._contact_key(session), at=ts))

    def _close(self, session: Session, event: Purchase, ts: float, out: list[Any], own: bool) -> None:
        value = currency = transaction = None
        if own:
            currency = event.currency or session.currency
            if event.value is not None:
                value = to_minor(event.value, currency)
            transaction = event.transaction_id
        out.append(
            Converted(
                cart_key=cart_key(session),
                session_id=session.session_id,
                customer_id=session.customer_id,
                contact_key=self._contact_key(session),
                at=ts,
                value=value,
                currency=currency,
                transaction_id=transaction,
                own=own,
            )
        )
        self.counts["converted"] += 1
        self._release_cart_id(session)
        clear_cart(session)
        session.purchased_at = ts
        self._arm(session, ts + self._idle)

    def _stitch(self, session: Session, customer_id: str, ts: float, out: list[Any]) -> None:
        previous = session.customer_id
        if previous is not None:
            siblings = self._customers.get(previous)
            if siblings and session.session_id in siblings:
                siblings.remove(session.session_id)
            if siblings is not None and not siblings:
                del self._customers[previous]
        session.customer_id = customer_id
        self._customers.setdefault(customer_id, []).append(session.session_id)
        self.counts["stitched"] += 1
        # Consent given while anonymous belongs to the customer from now on.
        out.append(
            ContactChanged(
                contact_key=customer_id,
                at=ts,
                customer_id=customer_id,
                merged_from=contact_key(session.session_id) if previous is None else None,
            )
        )

    def _take_cart(self, session: Session, cart_id: str, ts: float, out: list[Any], *, back: bool) -> None:
        """``session`` sent the shop's ``cart_id``: from now on it holds that cart, the only one of that key.

        A cart of that id held by another session (or, for a link built for a cart without ``cart_id``, the
        session of that id) moves here, merged with what this session holds: an item in both keeps this
        session's line, which is the newer. An abandoned cart that comes back this way (``back``: any event but
        a purchase) is resumed, as activity in its own session would resume it, so its pending steps stop.
        """
        self._release_cart_id(session)
        session.cart_id = cart_id
        owner = self._holder(cart_id, session)
        self._carts[cart_id] = session.session_id
        if owner is None or not (owner.lines or owner.abandoned):
            return
        if owner.abandoned and back:
            self.counts["resumed"] += 1
            out.append(Resumed(cart_key=cart_id, contact_key=self._contact_key(owner), at=ts))
        move_cart(owner, session)
        self.counts["carts_moved"] += 1
        if session.customer_id is None and owner.customer_id is not None:
            self._stitch(session, owner.customer_id, ts, out)

    def _holder(self, cart_id: str, session: Session) -> Session | None:
        """The session other than ``session`` that held ``cart_id`` until now, if any (read before ``session``
        is recorded as its holder)."""
        owner_id = self._carts.get(cart_id)
        if owner_id is None and cart_id in self._sessions and self._sessions[cart_id].cart_id is None:
            owner_id = cart_id  # the session whose own cart (keyed by its session id) the link was built for
        return self._sessions.get(owner_id) if owner_id is not None and owner_id != session.session_id else None

    def _release_cart_id(self, session: Session) -> None:
        cart_id = session.cart_id
        if cart_id is not None and self._carts.get(cart_id) == session.session_id:
            del self._carts[cart_id]

    # -- per-kind handlers ----------------------------------------------------------------------------------

    def _on_page_view(self, session: Session, event: PageView, ts: float, out: list[Any]) -> None:
        session.views += 1
        if event.page_type == RESTORE_PAGE:
            # The shop's restore view records this (recoverkit.integration.restore_cart): a link was followed.
            out.append(LinkVisit(cart_key=cart_key(session), at=ts))
        self._touch(session, ts)

    def _on_view_item(self, session: Session, event: ViewItem, ts: float, out: list[Any]) -> None:
        session.item_views += 1
        self._touch(session, ts)

    def _closed_before(self, session: Session, ts: float) -> bool:
        """An event older than the purchase that closed the cart must not reopen it."""
        if session.purchased_at is not None and ts <= session.purchased_at:
            self.counts["ignored_after_purchase"] += 1
            return True
        return False

    def _on_add(self, session: Session, event: AddToCart, ts: float, out: list[Any]) -> None:
        if self._closed_before(session, ts):
            return
        lines = session.lines
        if lines is None:
            lines = session.lines = []
            self.counts["carts"] += 1
        currency = session.currency
        for item in event.items:
            price = to_minor(item.price, currency)
            for line in lines:
                if line.item_id == item.item_id:
                    line.quantity += item.quantity
                    line.price = price
                    break
            else:
                lines.append(new_line(item, price))
        if session.step < CheckoutStep.CART:
            session.step = CheckoutStep.CART
        self._touch(session, ts)

    def _on_remove(self, session: Session, event: RemoveFromCart, ts: float, out: list[Any]) -> None:
        if self._closed_before(session, ts):
            return
        lines = session.lines
        if lines:
            for item in event.items:
                for line in lines:
                    if line.item_id == item.item_id:
                        line.quantity -= item.quantity
                        break
            lines[:] = [line for line in lines if line.quantity > 0]
            if not lines:
                session.lines = None
        self._touch(session, ts)

    def _on_checkout_step(
        self, session: Session, event: ViewCart | BeginCheckout | AddShippingInfo | AddPaymentInfo, ts: float,
        out: list[Any],
    ) -> None:  # fmt: skip
        if self._closed_before(session, ts):
            return
        currency = session.currency
        if event.items:  # on these steps the shop sends the whole cart: it replaces what we pieced together
            if session.lines is None:
                self.counts["carts"] += 1
            session.lines = [new_line(item, to_minor(item.price, currency)) for item in event.items]
        if event.value is not None:
            session.declared_value = to_minor(event.value, currency)
        if event.shipping is not None:
            session.shipping = to_minor(event.shipping, currency)
        step = type(event).step
        if step is not None and step > session.step:
            session.step = step
        if step is not None and step >= CheckoutStep.CHECKOUT and session.checkout_at is None:
            session.checkout_at = ts
        self._touch(session, ts)

    def _on_purchase(self, session: Session, event: Purchase, ts: float, out: list[Any]) -> None:
        if session.purchased_at is not None and ts <= session.purchased_at:
            return  # the same order reported twice
        self._close(session, event, ts, out, own=True)
        customer = session.customer_id
        if customer is not None:
            for session_id in tuple(self._customers.get(customer, ())):
                other = self._sessions.get(session_id)
                if other is None or other is session or not self._catch_up(other, ts, out):
                    continue
                if other.lines or other.abandoned:
                    self._close(other, event, ts, out, own=False)
            # Only now: an abandonment caught up above came before this purchase made the customer a buyer.
            self._buyers[customer] = ts

    def _on_identify(self, session: Session, event: Identify, ts: float, out: list[Any]) -> None:
        out.append(
            ContactChanged(
                contact_key=self._contact_key(session),
                at=ts,
                customer_id=session.customer_id,
                email=event.email,
                phone=event.phone,
                locale=event.locale,
                timezone=event.timezone,
            )
        )
        self._touch(session, ts)

    def _on_consent(self, session: Session, event: Consent, ts: float, out: list[Any]) -> None:
        out.append(
            ContactChanged(
                contact_key=self._contact_key(session),
                at=ts,
                customer_id=session.customer_id,
                granted=tuple(event.granted),
                withdrawn=tuple(event.withdrawn),
            )
        )
        self._touch(session, ts)

    def _on_payment_failed(self, session: Session, event: PaymentFailed, ts: float, out: list[Any]) -> None:
        session.payment_failures += 1
        self._touch(session, ts)
        if session.lines:
            session.trigger = "payment_failed"
            self._arm(session, ts + self._failed_after)

    def _on_form_error(self, session: Session, event: FormError, ts: float, out: list[Any]) -> None:
        session.form_errors += 1
        self._touch(session, ts)

    def _on_exit_intent(self, session: Session, event: ExitIntent, ts: float, out: list[Any]) -> None:
        session.exit_intents += 1
        self._touch(session, ts)
        if session.lines and ts + self._exit_after < session.deadline:
            session.trigger = "exit_intent"
            self._arm(session, ts + self._exit_after)

    # -- helpers --------------------------------------------------------------------------------------------

    @staticmethod
    def _contact_key(session: Session) -> str:
        return contact_key(session.session_id, session.customer_id)

    def _snapshot(self, session: Session) -> CartSnapshot:
        customer = session.customer_id
        return snapshot(session, returning=customer is not None and customer in self._buyers)

    def _forget(self, forget: Forget, out: list[Any]) -> None:
        """Erase the customer's sessions and carts; note their contact and cart keys for the stages after."""
        customer = forget.customer_id
        ids = set(self._customers.pop(customer, ()))
        ids.update(sid for sid, session in self._sessions.items() if session.customer_id == customer)
        for session_id in sorted(ids):
            session = self._sessions.pop(session_id, None)  # its timer entry is skipped when it pops
            forget.contact_keys.append(contact_key(session_id))
            if session is not None:
                self._release_cart_id(session)
                forget.cart_keys.append(cart_key(session))
        self._buyers.pop(customer, None)
        self.counts["forgotten"] += 1
        out.append(forget)

    def carts_of(self, customer_id: str) -> list[CartSnapshot]:
        """The carts of ``customer_id``'s sessions held now (for an access request)."""
        ids = set(self._customers.get(customer_id, ()))
        ids.update(sid for sid, session in self._sessions.items() if session.customer_id == customer_id)
        return [self._snapshot(self._sessions[sid]) for sid in sorted(ids) if sid in self._sessions]

    # -- state ----------------------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        state = State(
            self.watermark, list(self._sessions.values()), self._customers, list(self._buyers.items()),
            dict(self.counts),
        )
        return msgspec.msgpack.encode(state)

    def restore(self, state: bytes | None) -> None:
        s = State(-math.inf, [], {}, [], {}) if state is None else msgspec.msgpack.decode(state, type=State)
        self.watermark = s.watermark
        self._sessions = {session.session_id: session for session in s.sessions}
        # Least recently active first: a cart id two sessions held (a checkpoint of an older recoverkit) is the
        # latest one's.
        self._carts = {x.cart_id: x.session_id for x in s.sessions if x.cart_id is not None}
        self._customers = s.customers
        self._buyers.clear()
        for customer, at in s.buyers:
            self._buyers[customer] = at
        self.counts = Counter(s.counts)
        # One heap entry per armed session, as _arm keeps it.
        self._timers = [(x.timer_at, x.session_id) for x in s.sessions if x.timer_at != math.inf]
        heapq.heapify(self._timers)

    def open_carts(self) -> int:
        """Sessions holding a cart that is neither abandoned nor bought (walks every session: O(n))."""
        return sum(1 for s in self._sessions.values() if s.lines and not s.abandoned)

    def extra_statistics(self) -> dict[str, Any]:
        return {
            "sessions": len(self._sessions),
            "customers": len(self._customers),
            "cart_ids": len(self._carts),
            "timers": len(self._timers),
            **dict(self.counts),
        }
