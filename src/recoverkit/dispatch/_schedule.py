"""Dispatch's schedule: which messages wait, when each falls due, and what stops it before it is handed over.

Pure bookkeeping, on the engine's clock: no store, no adapter, no event loop. :class:`Schedule` holds the pending
messages (by key, in a heap of due times, indexed by cart and by contact), the purchases seen, a first filter of
keys already handed over, the frequency caps' history and the retention of all of these. It decides three of
dispatch's guarantees as far as this process can see them:

- **Never after purchase**: a message of a cart bought, or of a customer who bought anything after starting the
  cart, is cancelled when it arrives and when it falls due (the store's claim makes the last check, see
  :mod:`recoverkit.dispatch`).
- **One per key**: a key already handed over (or scheduled) is not scheduled a second time.
- **Caps**: at most ``Cap.max`` messages per contact (and channel) within ``Cap.per`` seconds.

What falls due is handed over by :meth:`Schedule.pop_due`, which counts it against the caps; what ends here
(cancelled, capped) is reported through the ``ended`` callback, which counts it and keeps its fact.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable

import msgspec

from ..clock import Clock
from ..config import Config
from ..facts import Fact
from ..items import Cancel, Message
from ._counts import MessageCounts

__all__ = ["Ended", "Schedule"]

#: Called when a message ends without being handed over: (message, outcome, when on the engine's clock).
Ended = Callable[[Message, str, float], None]


class _State(msgspec.Struct, array_like=True):
    # Dispatch's part of every checkpoint. Positional (array_like) and read back by checkpoints of older
    # versions: new fields go at the end, with defaults.
    watermark: float
    pending: list[tuple[Message, float, int]]  # message, due, attempts
    ledger: dict[str, str]
    bought_carts: dict[str, float]
    bought_contacts: dict[str, float]
    expiry: list[tuple[float, str, str]]
    outcomes: dict[str, int]
    history: dict[str, list[tuple[float, str]]] = {}
    facts: list[Fact] = []  # facts for analytics not yet written to the store


class Schedule:
    """Pending messages, purchases seen, caps and retention; see the module docstring.

    ``outcomes`` is the stage's counter (shared, so that a restore refills it in place); ``ended`` reports a
    message that ends here.
    """

    def __init__(self, config: Config, clock: Clock, outcomes: Counter[str], ended: Ended) -> None:
        self._clock = clock
        self._event_time = clock.event_time
        self._outcomes = outcomes
        self._ended = ended
        #: Messages scheduled and their final outcomes, by channel and flow (shared with the stage's FactWriter).
        self.counts = MessageCounts()
        self._caps = list(config.caps)
        self._cap_window = max((cap.per for cap in config.caps), default=0.0)
        #: Per contact: (due time, channel) of the messages handed over within the longest cap window.
        self.history: dict[str, list[tuple[float, str]]] = {}
        # Pending messages by key, a heap of (due, seq, key) with lazy deletion, and indexes for cancelling by
        # cart and by contact.
        self.pending: dict[str, Message] = {}
        self._due: dict[str, float] = {}  # due time of retries, which differs from message.due_at
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._by_cart: dict[str, set[str]] = {}
        self._by_contact: dict[str, set[str]] = {}
        #: Failed attempts so far, by key (absent: none).
        self.attempts: dict[str, int] = {}
        #: The ledger is the store's; this is a cheap first filter of keys already handed over (value: outcome).
        self.ledger: dict[str, str] = {}
        # Purchases: cart/contact -> purchase time, as this pipeline has seen them (in event time in a replay).
        self.bought_carts: dict[str, float] = {}
        self.bought_contacts: dict[str, float] = {}
        # Retention of ledger and purchase entries: long enough that no flow can still act on the cart.
        longest = max((s.delay for f in config.flows for s in f.steps), default=0.0)
        self._retention = config.recovery_window + longest
        self._expiry: deque[tuple[float, str, str]] = deque()

    def moment(self, due: float) -> float:
        """When something that fell due at ``due`` happens, on the engine's clock: live, now; in event time
        ``due`` itself.

        In event time "now" is the watermark, and a live engine acts the moment the watermark reaches a due time.
        How far past it the watermark has moved by the time dispatch gets to act (or an adapter answers) depends
        on how the input was cut into chunks, so recording that instead would make two replays of one file
        disagree, and would date a message hours or days after it was due.
        """
        return due if self._event_time else self._clock.now()

    # -- scheduling -------------------------------------------------------------------------------------------------

    def add(self, message: Message, due: float | None = None, *, restoring: bool = False) -> None:
        """Schedule ``message`` for its ``due_at``, or for ``due`` (a retry); a key already handed over, or a
        message whose cart was bought, ends instead. ``restoring`` (a checkpoint's messages) skips both checks."""
        key = message.key
        if key in self.ledger and due is None and not restoring:
            self._outcomes["duplicate_key"] += 1
            return
        if due is None and not restoring:
            self.counts.schedule(message)
        if self.bought(message) and not restoring:
            # Dated by the purchase that stopped it (the watermark here depends on how the input was batched).
            bought = max(
                self.bought_carts.get(message.cart.cart_key, -math.inf),
                self.bought_contacts.get(message.recipient.contact_key, -math.inf),
            )
            self._ended(message, "cancelled_purchase", self.moment(bought))
            return
        previous = self.pending.get(key)
        if previous is not None:
            self._unschedule(key, previous)
        when = message.due_at if due is None else due
        self.pending[key] = message
        self._due[key] = when
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, key))
        self._by_cart.setdefault(message.cart.cart_key, set()).add(key)
        self._by_contact.setdefault(message.recipient.contact_key, set()).add(key)
        if not restoring:
            self._outcomes["scheduled" if due is None else "retry_scheduled"] += 1

    @property
    def next_due(self) -> float:
        """The earliest due time in the heap (infinite when none): never later than the next message (or retry)
        that falls due, possibly earlier (a cancelled or rescheduled entry is only skipped when it pops)."""
        heap = self._heap
        return heap[0][0] if heap else math.inf

    def due_of(self, key: str, message: Message) -> float:
        return self._due.get(key, message.due_at)

    def _unschedule(self, key: str, message: Message) -> None:
        del self.pending[key]
        self._due.pop(key, None)
        for index, group in ((self._by_cart, message.cart.cart_key), (self._by_contact, message.recipient.contact_key)):
            keys = index.get(group)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[group]

    def pop_due(self, watermark: float) -> list[tuple[Message, int, float]]:
        """Take what is due by ``watermark`` off the schedule: (message, failed attempts so far, due time) of
        each message to deliver now, in due order. A first attempt counts against the caps from now on, and its
        key is marked as handed over; a message bought or capped meanwhile ends here instead."""
        heap = self._heap
        pending = self.pending
        handed: list[tuple[Message, int, float]] = []
        while heap and heap[0][0] <= watermark:
            due, _, key = heapq.heappop(heap)
            message = pending.get(key)
            if message is None or self.due_of(key, message) != due:
                continue  # cancelled or rescheduled since
            self._unschedule(key, message)
            # In event time only a purchase made by the due time cancels: a restart can restore a message that
            # was due, and waiting for a slot, when a later purchase arrived.
            if self.bought(message, by=due if self._event_time else None):
                self._ended(message, "cancelled_purchase", self.moment(due))
                continue
            attempt = self.attempts.get(key, 0)
            if attempt == 0:
                if self.capped(message, due):
                    self.ledger[key] = "capped"
                    self._expire_later(watermark, "ledger", key)
                    self._ended(message, "capped", self.moment(due))
                    continue
                self.ledger[key] = "in_flight"
                self._expire_later(watermark, "ledger", key)
            handed.append((message, attempt, due))
        self._prune(watermark)
        return handed

    def settle(self, key: str, outcome: str) -> None:
        """``key`` is done with (sent, dead, skipped, unknown): no attempts left to count, ``outcome`` noted."""
        self.attempts.pop(key, None)
        self.ledger[key] = outcome

    # -- cancelling -------------------------------------------------------------------------------------------------

    def cancel(self, cancel: Cancel) -> None:
        """Stop what ``cancel`` names; a purchase is also remembered, so that nothing of its cart or contact
        is scheduled or handed over afterwards."""
        if cancel.why == "purchase":
            if cancel.cart_key is not None:
                self.bought_carts[cancel.cart_key] = cancel.at
                self._expire_later(cancel.at, "cart", cancel.cart_key)
            if cancel.contact_key is not None:
                self.bought_contacts[cancel.contact_key] = cancel.at
                self._expire_later(cancel.at, "contact", cancel.contact_key)
        keys: set[str] = set()
        if cancel.cart_key is not None:
            keys |= self._by_cart.get(cancel.cart_key, set())
        if cancel.contact_key is not None:
            keys |= self._by_contact.get(cancel.contact_key, set())
        for key in keys:
            message = self.pending.get(key)
            if message is None or (cancel.channel is not None and message.channel != cancel.channel):
                continue
            self._unschedule(key, message)
            self.attempts.pop(key, None)
            self._ended(message, f"cancelled_{cancel.why}", cancel.at)

    def bought(self, message: Message, by: float | None = None) -> bool:
        """Was the cart bought, or did its customer buy anything after starting it (and, given ``by``, at or
        before ``by``)?"""
        started = message.cart.started_at
        last = math.inf if by is None else by
        cart = self.bought_carts.get(message.cart.cart_key)
        if cart is not None and started <= cart <= last:
            return True
        contact = self.bought_contacts.get(message.recipient.contact_key)
        return contact is not None and started <= contact <= last

    def forget(self, contact_keys: Iterable[str], cart_keys: Iterable[str]) -> int:
        """Drop every pending message, purchase mark and cap history of these contacts and carts; return how
        many messages were dropped."""
        keys: set[str] = set()
        for contact in contact_keys:
            keys |= self._by_contact.get(contact, set())
            self.bought_contacts.pop(contact, None)
            self.history.pop(contact, None)
        for cart in cart_keys:
            keys |= self._by_cart.get(cart, set())
        dropped = 0
        for key in keys:
            message = self.pending.get(key)
            if message is not None:
                self._unschedule(key, message)
                self.attempts.pop(key, None)
                self.counts.end(message, "cancelled_forgotten")
                dropped += 1
        return dropped

    # -- retention --------------------------------------------------------------------------------------------------

    def _expire_later(self, at: float, kind: str, key: str) -> None:
        self._expiry.append((at + self._retention, kind, key))

    def _prune(self, watermark: float) -> None:
        # Entries are appended in roughly watermark order, so the front of the deque expires first; an entry
        # that is a little out of order just lives a little longer.
        expiry = self._expiry
        while expiry and expiry[0][0] < watermark:
            _, kind, key = expiry.popleft()
            if kind == "ledger":
                self.ledger.pop(key, None)
            elif kind == "cart":
                self.bought_carts.pop(key, None)
            else:
                self.bought_contacts.pop(key, None)

    # -- frequency caps ---------------------------------------------------------------------------------------------

    def capped(self, message: Message, due: float) -> bool:
        """Would sending ``message`` at ``due`` exceed a cap? If not, it counts towards them from now on.

        Caps count per customer (contact key) across every flow, on the engine's clock (event time in a
        replay). A capped message is skipped for good: being late is worse than not being sent.
        """
        if not self._caps:
            return False
        contact = message.recipient.contact_key
        history = self.history.get(contact)
        if history is None:
            history = self.history[contact] = []
        elif self._full(history, message.channel, due):
            return True
        history.append((due, message.channel))
        return False

    def _full(self, history: list[tuple[float, str]], channel: str, due: float) -> bool:
        """Is a cap that applies to ``channel`` used up at ``due``? Forgets history older than every cap."""
        horizon = due - self._cap_window
        if history and history[0][0] <= horizon:
            history[:] = [h for h in history if h[0] > horizon]
        for cap in self._caps:
            if cap.channel is not None and cap.channel != channel:
                continue
            since = due - cap.per
            used = sum(1 for at, ch in history if at > since and (cap.channel is None or ch == cap.channel))
            if used >= cap.max:
                return True
        return False

    # -- state ------------------------------------------------------------------------------------------------------

    def messages(self) -> list[Message]:
        """Messages scheduled and not yet due, in due order."""
        return sorted(self.pending.values(), key=lambda m: self.due_of(m.key, m))

    def snapshot(self, watermark: float, held: Iterable[tuple[Message, int]], facts: list[Fact]) -> bytes:
        """The schedule as dispatch's checkpoint state, with ``held`` (messages taken off the schedule and not
        yet settled: (message, failed attempts)) scheduled again for their due time, and ``facts`` not yet
        written."""
        pending = [(m, self.due_of(k, m), self.attempts.get(k, 0)) for k, m in self.pending.items()]
        seen = set(self.pending)
        for message, attempt in held:
            if message.key not in seen:
                seen.add(message.key)
                pending.append((message, message.due_at, attempt))
        state = _State(
            watermark, pending, self.ledger, self.bought_carts, self.bought_contacts, list(self._expiry),
            dict(self._outcomes), self.history, list(facts),
        )  # fmt: skip
        return msgspec.msgpack.encode(state)

    def restore(self, state: bytes | None) -> tuple[float, list[Fact]]:
        """Replace everything with ``state`` from :meth:`snapshot` (``None``: empty), outcome counts included;
        return its watermark and its facts not yet written."""
        s = _State(-math.inf, [], {}, {}, {}, [], {}) if state is None else msgspec.msgpack.decode(state, type=_State)
        self.pending, self._due, self._heap, self._by_cart, self._by_contact = {}, {}, [], {}, {}
        self.attempts = {}
        self.ledger = s.ledger
        self.bought_carts = s.bought_carts
        self.bought_contacts = s.bought_contacts
        self._expiry = deque(s.expiry)
        self._outcomes.clear()
        self._outcomes.update(s.outcomes)
        self.history = s.history
        for message, due, attempts in s.pending:
            self.add(message, due=due, restoring=True)
            if attempts:
                self.attempts[message.key] = attempts
        return s.watermark, list(s.facts)
