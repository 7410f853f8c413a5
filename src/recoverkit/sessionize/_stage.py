"""The sessionize stage itself: receives batches of events, decides what each one means for its session, and
fires the timers the watermark passed (the rules are in the package's docstring).

Per event: timers due before it fire first (event time only), the session is found, caught up, resumed or
opened, stitched to the event's customer, handed the event's ``cart_id``, and the event's handler runs.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec

from .. import _msgpack_parts as msgpack_parts
from .._interning import shared
from .._pipeline import Stage
from ..cart import CartSnapshot
from ..config import Config
from ..events import (
    CUSTOMER_WIDE,
    RESTORE_PAGE,
    BaseEvent,
    CheckoutSignal,
    Consent,
    Event,
    ExitIntent,
    FormError,
    Identify,
    PageView,
    PaymentFailed,
    Purchase,
    ViewItem,
    contact_key,
)
from ..facts import LinkVisit
from ..items import Abandoned, Cancel, ContactChanged, Converted, Forget, Resumed
from ..money import to_minor
from . import _legacy
from ._abandon_timers import AbandonTimers, abandons
from ._cart import (
    CART_EDITS,
    Session,
    State,
    add_signal,
    cart_key,
    clear_cart,
    contact_of,
    detail_of,
    pack_lines,
    purchased_at,
)
from ._stitching import Stitching

__all__ = ["SNAPSHOT_PART", "Sessionize"]

#: Sessions (or customers) a checkpoint encodes in one go (about a millisecond's work) before it lets the event
#: loop run.
SNAPSHOT_PART: Final = 2048


def _decode_state(state: bytes) -> State:
    try:
        return msgspec.msgpack.decode(state, type=State)
    except msgspec.ValidationError:
        return _legacy.read(state)  # a checkpoint written before sessions kept their detail apart


class Sessionize(Stage):
    """Holds carts and timers; emits abandonments, resumptions, conversions and contact changes."""

    name = "sessionize"

    def __init__(self, config: Config, *, event_time: bool = False) -> None:
        super().__init__()
        # In event time every timer due before an event fires before that event is handled, so decisions do
        # not depend on how the input was cut into batches. Live, timers fire on the clock's ticks only: a
        # shop's clock running ahead must not make carts abandon early.
        self._event_time = event_time
        self._max_sessions = config.max_sessions
        #: Least recently active first (re-inserted on every event), for overflow. The stitching indexes
        #: these sessions and adds to these counts: a restore builds all three anew.
        self._sessions: dict[str, Session] = {}
        self.counts: Counter[str] = Counter()
        self._stitching = Stitching(self._sessions, self.counts, max_buyers=config.max_sessions)
        self._timers = AbandonTimers(config)
        #: In a partition's pipeline (a partitioned store): whether a session id belongs to another partition.
        #: Its events here are mirrors (see :data:`recoverkit.journal.MIRRORED`): news about a customer.
        self.foreign: Callable[[str], bool] | None = None
        cart = self._on_cart
        self._handlers: dict[type[BaseEvent], Callable[[Session, Any, float, list[Any]], None]] = {
            **dict.fromkeys(CART_EDITS, cart),
            PageView: self._on_page_view,
            ViewItem: self._on_view_item,
            Purchase: self._on_purchase,
            Identify: self._on_identify,
            Consent: self._on_consent,
            PaymentFailed: self._on_payment_failed,
            FormError: self._on_form_error,
            ExitIntent: self._on_exit_intent,
            CheckoutSignal: self._on_checkout_signal,
        }

    # -- the stage ------------------------------------------------------------------------------------------

    def handle(self, items: Sequence[Event | Forget], out: list[Any]) -> None:
        handlers = self._handlers
        stitching = self._stitching
        timers = self._timers.heap  # the same list all along: compaction rebuilds it in place
        event_time = self._event_time
        foreign = self.foreign
        sessions = self._sessions
        for event in items:
            try:
                kind: type[Any] = type(event)
                if kind is Forget:
                    stitching.forget(event, out)  # type: ignore[arg-type]
                    sessions = self._sessions
                    continue
                ts: float = event.ts  # type: ignore[union-attr,assignment]  # ingest made every ts a float
                if event_time and timers and timers[0].due < ts:
                    self._fire(ts, out, inclusive=False)
                # Only the kinds the journal mirrors can be another partition's: the rest skip the hash.
                if foreign is not None and kind in CUSTOMER_WIDE and foreign(event.session_id):  # type: ignore[union-attr]
                    self._mirrored(event, ts, out)  # type: ignore[arg-type]
                    continue
                session_id = event.session_id  # type: ignore[union-attr]
                session = sessions.get(session_id)
                if (
                    session is not None
                    and ts >= session.last_at
                    and session.deadline >= ts
                    and not session.abandoned
                ):
                    # The common case, inline: an active session's next event. Re-inserted, the dict stays in
                    # least-recently-active order for overflow.
                    del sessions[session_id]
                    sessions[session_id] = session
                    session.last_at = ts
                else:
                    session = self._session_of(event, ts, out)  # type: ignore[arg-type]
                customer_id = event.customer_id
                if customer_id is not None and customer_id != session.customer_id:
                    stitching.stitch(session, customer_id, ts, out)
                cart_id = event.cart_id  # type: ignore[union-attr]
                if cart_id is not None and cart_id != session.cart_id:
                    stitching.take_cart(session, cart_id, ts, out, back=kind is not Purchase)
                currency = event.currency  # type: ignore[union-attr]
                if currency is not None and currency != session.currency:
                    # Interned: every event decodes its own copy of "EUR", and a session holding that copy for
                    # days would keep 52 bytes per cart where one shared string does.
                    session.currency = shared(currency)
                handlers[kind](session, event, ts, out)
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
            session.abandoned = False
            self.counts["resumed"] += 1
            out.append(Resumed(cart_key=cart_key(session), contact_key=contact_of(session), at=ts))
        if ts > session.last_at:
            session.last_at = ts
        return session

    def next_deadline(self) -> float:
        """When the earliest timer falls due, on the engine's clock (infinite: none armed); read by the live
        ticker, which sleeps until it when the engine is idle. A timer entry a session has since moved later
        only makes the ticker look once early."""
        return self._timers.next_due

    def advance(self, watermark: float, out: list[Any]) -> None:
        self._fire(watermark, out, inclusive=True)

    def _fire(self, limit: float, out: list[Any], *, inclusive: bool) -> None:
        """Fire timers due at or before ``limit`` (strictly before it unless ``inclusive``)."""
        for due, session in self._timers.due(limit, self._sessions, inclusive=inclusive):
            if abandons(session):
                self._abandon(session, due, out)
            else:
                self._evict(session)

    def _catch_up(self, session: Session, ts: float, out: list[Any]) -> bool:
        """Fire the session's own timer when an event of the session at ``ts`` shows it passed unnoticed.

        Every event of a batch is handled before the watermark moves, so a deadline falling between two events
        of one batch would otherwise be postponed by the second, and whether a cart counts as abandoned would
        depend on how the input was batched. Returns ``False`` when the session was forgotten instead.
        """
        while session.deadline < ts:
            if abandons(session):
                self._abandon(session, session.deadline, out)
            else:
                self._evict(session)
                return False
        return True

    # -- sessions held --------------------------------------------------------------------------------------

    def _open(self, event: BaseEvent, ts: float) -> Session:
        timers = self._timers
        sessions = self._sessions
        session = Session(
            session_id=event.session_id,
            started_at=ts,
            last_at=ts,
            deadline=ts + timers.session_timeout,
            # A handful of values shared by every session (desktop, mobile; newsletter, paid): interned, so a
            # session holds a reference, not its own decoded copy (about 110 bytes a session).
            device=None if event.device is None else shared(event.device),
            source=None if event.source is None else shared(event.source),
        )
        sessions[event.session_id] = session
        timers.arm(session, session.deadline)
        if len(sessions) > self._max_sessions:
            # The first session in the dict is the least recently active one (see _session_of); the one just
            # opened is the last, so it is never the one to go.
            while len(sessions) > self._max_sessions:
                self.counts["evicted_overflow"] += 1
                self._evict(next(iter(sessions.values())))
            timers.compact(sessions)
        return session

    def _evict(self, session: Session) -> None:
        del self._sessions[session.session_id]
        self._stitching.drop(session)
        self.counts["evicted"] += 1

    # -- state changes that emit ----------------------------------------------------------------------------

    def _abandon(self, session: Session, due: float, out: list[Any]) -> None:
        session.abandoned = True
        self.counts[f"abandoned_{session.trigger}"] += 1
        out.append(Abandoned(cart=self._stitching.snapshot(session), trigger=session.trigger, at=due))
        self._timers.abandoned(session)

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
                contact_key=contact_of(session),
                at=ts,
                value=value,
                currency=currency,
                transaction_id=transaction,
                own=own,
            )
        )
        self.counts["converted"] += 1
        self._stitching.release_cart_id(session)
        clear_cart(session)
        detail_of(session).purchased_at = ts
        self._timers.bought(session, ts)

    # -- mirrors from other partitions ----------------------------------------------------------------------

    def _mirrored(self, event: Event, ts: float, out: list[Any]) -> None:
        """An event of a session another partition holds, written here too because it names a customer: their
        address or consent changed (for the carts of theirs held here), or they bought (which closes them)."""
        customer = event.customer_id
        if isinstance(event, Purchase):
            self._bought_elsewhere(event, ts, out)
        elif customer is not None and isinstance(event, Identify):
            out.append(
                ContactChanged(
                    contact_key=customer, at=ts, customer_id=customer, email=event.email, phone=event.phone,
                    locale=event.locale, timezone=event.timezone,
                )
            )  # fmt: skip
        elif customer is not None and isinstance(event, Consent):
            out.append(
                ContactChanged(
                    contact_key=customer, at=ts, customer_id=customer, granted=tuple(event.granted),
                    withdrawn=tuple(event.withdrawn),
                )
            )  # fmt: skip
        self.counts["mirrored"] += 1

    def _bought_elsewhere(self, event: Purchase, ts: float, out: list[Any]) -> None:
        """A purchase in another partition: close the cart of the shop's ``cart_id`` and the customer's carts
        held here, as a purchase closes a customer's other sessions (not their own conversion: ``own=False``)."""
        sessions, stitching = self._sessions, self._stitching
        held: list[str] = []
        if event.cart_id is not None:
            holder = stitching.carts.get(event.cart_id)
            if holder is None and event.cart_id in sessions and sessions[event.cart_id].cart_id is None:
                holder = event.cart_id  # a cart keyed by its session id
            if holder is not None:
                held.append(holder)
        customer = event.customer_id
        if customer is not None:
            held.extend(stitching.siblings(customer))
        for session_id in dict.fromkeys(held):
            session = sessions.get(session_id)
            if session is None or not self._catch_up(session, ts, out):
                continue
            bought = purchased_at(session)
            if (session.lines or session.abandoned) and not (bought is not None and ts <= bought):
                self._close(session, event, ts, out, own=False)
        if customer is not None:
            stitching.bought(customer, ts)
        # What the purchase's own partition tells its dispatch through its conversion (so that nothing of this
        # cart or customer is scheduled or handed over afterwards), this partition's dispatch hears directly: the
        # conversion itself is recorded once, by the partition of the session that bought.
        out.append(
            Cancel(
                why="purchase", at=ts, cart_key=event.cart_id if event.cart_id is not None else event.session_id,
                contact_key=customer if customer is not None else contact_key(event.session_id),
            )
        )  # fmt: skip

    # -- per-kind handlers ----------------------------------------------------------------------------------

    def _on_page_view(self, session: Session, event: PageView, ts: float, out: list[Any]) -> None:
        session.views += 1
        if event.page_type == RESTORE_PAGE:
            # The shop's restore view records this (recoverkit.integration.restore_cart): a link was followed.
            out.append(LinkVisit(cart_key=cart_key(session), at=ts))
        self._timers.touch(session, ts)

    def _on_view_item(self, session: Session, event: ViewItem, ts: float, out: list[Any]) -> None:
        session.item_views += 1
        self._timers.touch(session, ts)

    def _on_cart(self, session: Session, event: Any, ts: float, out: list[Any]) -> None:
        """Add, remove, cart view and checkout steps: the lines change as :data:`CART_EDITS` says."""
        bought = purchased_at(session)
        if bought is not None and ts <= bought:
            # An event older than the purchase that closed the cart must not reopen it.
            self.counts["ignored_after_purchase"] += 1
            return
        if CART_EDITS[type(event)](session, event, ts):
            self.counts["carts"] += 1
        self._timers.touch(session, ts)

    def _on_purchase(self, session: Session, event: Purchase, ts: float, out: list[Any]) -> None:
        bought = purchased_at(session)
        if bought is not None and ts <= bought:
            return  # the same order reported twice
        self._close(session, event, ts, out, own=True)
        customer = session.customer_id
        if customer is not None:
            for session_id in self._stitching.siblings(customer):
                other = self._sessions.get(session_id)
                if other is None or other is session or not self._catch_up(other, ts, out):
                    continue
                if other.lines or other.abandoned:
                    self._close(other, event, ts, out, own=False)
            # Only now: an abandonment caught up above came before this purchase made the customer a buyer.
            self._stitching.bought(customer, ts)

    def _on_identify(self, session: Session, event: Identify, ts: float, out: list[Any]) -> None:
        out.append(
            ContactChanged(
                contact_key=contact_of(session),
                at=ts,
                customer_id=session.customer_id,
                email=event.email,
                phone=event.phone,
                locale=event.locale,
                timezone=event.timezone,
            )
        )
        self._timers.touch(session, ts)

    def _on_consent(self, session: Session, event: Consent, ts: float, out: list[Any]) -> None:
        out.append(
            ContactChanged(
                contact_key=contact_of(session),
                at=ts,
                customer_id=session.customer_id,
                granted=tuple(event.granted),
                withdrawn=tuple(event.withdrawn),
            )
        )
        self._timers.touch(session, ts)

    def _on_payment_failed(self, session: Session, event: PaymentFailed, ts: float, out: list[Any]) -> None:
        detail_of(session).payment_failures += 1
        self._timers.payment_failed(session, ts)

    def _on_form_error(self, session: Session, event: FormError, ts: float, out: list[Any]) -> None:
        detail_of(session).form_errors += 1
        self._timers.touch(session, ts)

    def _on_exit_intent(self, session: Session, event: ExitIntent, ts: float, out: list[Any]) -> None:
        detail_of(session).exit_intents += 1
        self._timers.exit_intent(session, ts)

    def _on_checkout_signal(self, session: Session, event: CheckoutSignal, ts: float, out: list[Any]) -> None:
        detail = detail_of(session)
        detail.signals = add_signal(detail.signals, event)
        self._timers.touch(session, ts)

    # -- access and state -----------------------------------------------------------------------------------

    def carts_of(self, customer_id: str) -> list[CartSnapshot]:
        """The carts of ``customer_id``'s sessions held now (for an access request)."""
        return self._stitching.carts_of(customer_id)

    def snapshot(self) -> bytes:
        stitching = self._stitching
        state = State(
            self.watermark, list(self._sessions.values()), stitching.customers, list(stitching.buyers.items()),
            dict(self.counts),
        )
        return msgspec.msgpack.encode(state)

    async def snapshot_soon(self) -> bytes:
        """:meth:`snapshot`'s bytes exactly, with the sessions and the customer index encoded
        :data:`SNAPSHOT_PART` at a time and the event loop let run between parts: at 100,000 open carts a
        checkpoint no longer stalls deliveries and ``track()`` for the whole encoding, and the parts are joined
        on a worker thread (:mod:`recoverkit._msgpack_parts`). Nothing changes the state meanwhile: only this
        stage's task does, and it is here."""
        sessions = self._sessions
        if len(sessions) <= SNAPSHOT_PART:
            return self.snapshot()
        stitching = self._stitching
        customers = stitching.customers
        # State's five fields; the sessions and the customer index read straight from their dicts (a list of
        # 100,000 entries first was itself a 3-13 ms pause).
        fields = [
            self.watermark,
            msgpack_parts.Lazy(iter(sessions.values()), len(sessions), list),
            msgpack_parts.Lazy(iter(customers.items()), len(customers), dict),
            list(stitching.buyers.items()),
            dict(self.counts),
        ]
        return await msgpack_parts.encode_fields(fields, step=SNAPSHOT_PART)

    def restore(self, state: bytes | None) -> None:
        s = State(-math.inf, [], {}, [], {}) if state is None else _decode_state(state)
        self.watermark = s.watermark
        # New objects, each swapped in whole: a metrics scrape from another thread never sees them half-filled.
        self._sessions = {session.session_id: session for session in s.sessions}
        for session in s.sessions:
            if type(session.lines) is list:  # a checkpoint written before cart lines were packed
                session.lines = pack_lines(session.lines)
        self.counts = Counter(s.counts)
        self._stitching = Stitching(
            self._sessions, self.counts, max_buyers=self._max_sessions, customers=s.customers, buyers=s.buyers
        )
        self._timers.rebuild(self._sessions)

    def open_carts(self) -> int:
        """Sessions holding a cart that is neither abandoned nor bought (walks every session: O(n))."""
        return sum(1 for s in self._sessions.values() if s.lines and not s.abandoned)

    def extra_statistics(self) -> dict[str, Any]:
        stitching = self._stitching
        return {
            "sessions": len(self._sessions),
            "customers": len(stitching.customers),
            "cart_ids": len(stitching.carts),
            "timers": len(self._timers),
            **dict(self.counts),
        }
