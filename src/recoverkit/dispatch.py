"""Stage 5, dispatch: hold scheduled messages until they are due, then deliver them through the adapters.

Guarantees, in the order they are checked when a message comes due:

1. **Never after purchase.** A purchase of the cart, or by its customer in any session after the cart was
   started, cancels the message. The last check is made by the store's :meth:`~recoverkit.store.Store.claim`,
   in the same transaction that records the send: live, every purchase is recorded there as soon as it is
   journaled (by any worker process), before the pipeline has even read it. A host-supplied ``guard`` (for
   example "has this customer ordered since?", asked of the shop's own database) is asked after the claim and
   just before the adapter, and can veto the send. In event time (replay) "after" is in event time: a message
   due before a purchase is sent, as it would have been live, however the events were batched.
2. **At most once per key.** ``message.key`` (cart, flow, step) is claimed in the store's ledger before the
   adapter is called, and the outcome recorded after. A key already in the ledger is never handed over again:
   not after a restart from an older checkpoint, not by another worker. After a crash between claim and
   outcome the entry is ``unknown`` and the message is not sent again until a person resolves it
   (``recoverkit ledger``).
3. **Contained plug-ins.** Every call into shop code (adapter, guard, catalogue, loyalty, coupons) goes through
   :class:`~recoverkit._contain.Containment`: plain functions in a worker thread, coroutines in a task of
   their own, under the channel's timeout. A send that raises (``CancelledError`` included) or times out fails
   only that message, which is retried with exponential backoff and full jitter (transient failures) or
   dead-lettered (permanent failures, attempts exhausted). A send still running after its timeout and a grace
   (it ignores cancellation) may yet reach the provider: it is recorded ``unknown`` in the ledger and never
   retried. Ingest, other channels, ``flush()`` and ``close()`` carry on.
4. **Never dropped.** A claim refused because this process does not hold the pipeline lease (it lapsed during
   a stall) holds the message and makes the engine check the lease at once; the engine resumes it, or restores
   from the checkpoint, which holds it.

Retries are the one place a message can reach a provider twice: a send that timed out may have been
accepted. The idempotency key ``message.key`` is stable across retries; adapters should pass it on (the
webhook adapter sends it as ``Idempotency-Key``).

The schedule is part of every checkpoint, so pending messages survive a restart; the ledger is in the store.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from time import perf_counter
from typing import Any, Generic, TypeAlias, TypeVar

import anyio
import anyio.abc
import msgspec

from ._contain import Containment, Failed, Plugin, PluginError, describe
from ._pipeline import Batch, LatencyHistogram, Link, Stage
from ._redact import credentials_of, redact
from .catalogue import Catalogue, Suggestion
from .channels.base import Channel, Message
from .clock import Clock
from .config import Config
from .deadletters import DeadLetter, DeadLetters
from .errors import DeliveryError, PermanentDeliveryError, StoreError, TransientDeliveryError
from .facts import Assignment, Conversion, Fact, LinkVisit, MessageOutcome
from .links import RestoreLinks
from .loyalty import Loyalty, NotGranted
from .offers import CouponProvider, Offer, Refused
from .privacy import Forget
from .route import Cancel
from .store.base import Claim, ClaimRequest, FinishRequest, Outcome, Store

__all__ = ["Dispatch", "Guard", "StoreCall"]


async def _inline(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)

Req = TypeVar("Req")
Ans = TypeVar("Ans")

#: A host's last word before a send: ``False`` vetoes it. May be a plain or an async function.
Guard: TypeAlias = Callable[[Message], "bool | Awaitable[bool]"]
#: Runs a blocking store method off the event loop: ``await call(store.claim, key, ...)``.
StoreCall: TypeAlias = Callable[..., Awaitable[Any]]


class _Batcher(Generic[Req, Ans]):
    """Sends requests to a store method that takes many at once: one round trip for every request made while
    the previous round trip was under way, instead of one per request.

    Messages fall due together (a watermark moves past many), so claims and outcomes come in bursts; a store
    call costs a thread hop and a transaction whatever it carries. The first caller does the round trip and
    carries on while requests keep coming; each caller gets its own answer, or the exception of its batch.
    """

    def __init__(self, many: Callable[[list[Req]], Awaitable[list[Ans]]]) -> None:
        self._many = many
        self._queue: list[tuple[Req, _Slot[Ans]]] = []
        self._busy = False

    async def __call__(self, request: Req) -> Ans:
        slot: _Slot[Ans] = _Slot()
        self._queue.append((request, slot))
        if not self._busy:
            self._busy = True
            try:
                while self._queue:
                    batch, self._queue = self._queue, []
                    try:
                        answers = await self._many([r for r, _ in batch])
                    except BaseException as exc:
                        for _, waiting in batch:
                            waiting.fail(exc if isinstance(exc, Exception) else StoreError("the engine stopped"))
                        raise
                    for (_, waiting), answer in zip(batch, answers, strict=True):
                        waiting.set(answer)
            finally:
                self._busy = False
                for _, waiting in self._queue:  # only left when the round trip failed or was cancelled
                    waiting.fail(StoreError("the ledger could not be reached"))
                self._queue = []
        return await slot.get()


class _Slot(Generic[Ans]):
    __slots__ = ("_done", "_error", "_value")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self._value: Ans | None = None
        self._error: Exception | None = None

    def set(self, value: Ans) -> None:
        self._value = value
        self._done.set()

    def fail(self, error: Exception) -> None:
        self._error = error
        self._done.set()

    async def get(self) -> Ans:
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


def _without_credentials(message: Message) -> Message:
    """The message as a dead letter keeps it: without its discount code or its cart-restore link.

    Both are bearer credentials (whoever reads them can redeem the code or open the cart), and a dead letter
    lives in a file and a table that are copied, backed up and read by people; the store keeps codes only as
    keyed hashes for the same reason. The offer's terms stay, so a re-sent letter still says what was offered.
    """
    offer = message.offer
    if offer is not None and offer.code is not None:
        message = msgspec.structs.replace(message, offer=msgspec.structs.replace(offer, code=None))
    if message.restore_url is not None:
        message = msgspec.structs.replace(message, restore_url=None)
    return message


#: The longest wait a provider's Retry-After can impose on a retry (a day).
_MAX_RETRY_AFTER = 86_400.0


class _State(msgspec.Struct, array_like=True):
    watermark: float
    pending: list[tuple[Message, float, int]]  # message, due, attempts
    ledger: dict[str, str]
    bought_carts: dict[str, float]
    bought_contacts: dict[str, float]
    expiry: list[tuple[float, str, str]]
    outcomes: dict[str, int]
    history: dict[str, list[tuple[float, str]]] = {}
    facts: list[Fact] = []  # facts for analytics not yet written to the store


class Dispatch(Stage):
    """Schedules, gates and delivers messages; keeps the ledger, retries and dead letters."""

    name = "dispatch"

    def __init__(
        self,
        config: Config,
        channels: Mapping[str, Channel],
        clock: Clock,
        dead_letters: DeadLetters | None = None,
        *,
        store: Store | None = None,
        call: StoreCall | None = None,
        owner: str = "",
        guard: Guard | None = None,
        coupons: CouponProvider | None = None,
        links: RestoreLinks | None = None,
        catalogue: Catalogue | None = None,
        loyalty: Loyalty | None = None,
    ) -> None:
        super().__init__()
        self._coupons = coupons
        self._links = links
        self._catalogue = catalogue
        self._loyalty = loyalty
        if store is None:
            from .store.memory import MemoryStore  # a dispatch built alone (tests, tools) owns a private store

            store = MemoryStore()
            owner = owner or "dispatch"
            store.acquire_lease("pipeline", owner, ttl=1e12, now=0.0)
        self._store = store
        self._call: StoreCall = call if call is not None else _inline
        self._claims: _Batcher[ClaimRequest, Claim] = _Batcher(lambda r: self._call(store.claim_many, r))
        self._finishes: _Batcher[FinishRequest, StoreError | None] = _Batcher(
            lambda r: self._call(store.finish_many, r)
        )
        self._owner = owner
        self._guard = guard
        self._config = config
        self._channels = dict(channels)
        self._clock = clock
        self._event_time = clock.event_time
        self._policies = {name: config.channel_policy(name) for name in self._channels}
        self._limiters = {name: anyio.CapacityLimiter(p.concurrency) for name, p in self._policies.items()}
        # Every call into shop code goes through one helper: timeout, own task or thread, failures counted.
        self._contain = Containment(self.log)
        self._adapter_plugins = {
            name: Plugin("channel", f"{name!r} adapter ({type(adapter).__name__})")
            for name, adapter in self._channels.items()
        }
        self._guard_plugin = Plugin("guard", repr(describe(guard)))
        self._coupons_plugin = Plugin("coupons", repr(describe(coupons)))
        self._catalogue_plugin = Plugin("catalogue", repr(describe(catalogue)))
        self._loyalty_plugin = Plugin("loyalty", repr(describe(loyalty)))
        self._caps = list(config.caps)
        self._cap_window = max((cap.per for cap in config.caps), default=0.0)
        #: Per contact: (due time, channel) of the messages handed over within the longest cap window.
        self._history: dict[str, list[tuple[float, str]]] = {}
        self.dead_letters = dead_letters if dead_letters is not None else DeadLetters()
        # The schedule: pending messages by key, a heap of (due, seq, key) with lazy deletion, and indexes
        # for cancelling by cart and by contact.
        self._pending: dict[str, Message] = {}
        self._due: dict[str, float] = {}  # due time of retries, which differs from message.due_at
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._by_cart: dict[str, set[str]] = {}
        self._by_contact: dict[str, set[str]] = {}
        self._attempts: dict[str, int] = {}
        # When each due attempt happens on the engine's clock (see _moment): in event time its due time.
        self._attempt_at: dict[str, float] = {}
        # The ledger is the store's; this is a cheap first filter of keys already handed over (value: outcome).
        # Purchases: cart/contact -> purchase time, as this pipeline has seen them (in event time in a replay).
        self._ledger: dict[str, str] = {}
        self._bought_carts: dict[str, float] = {}
        self._bought_contacts: dict[str, float] = {}
        # Retention of ledger and purchase entries: long enough that no flow can still act on the cart.
        longest = max((s.delay for f in config.flows for s in f.steps), default=0.0)
        self._retention = config.recovery_window + longest
        self._expiry: deque[tuple[float, str, str]] = deque()
        # Delivery
        self._ready: deque[tuple[Message, int]] = deque()
        self._flight: dict[str, tuple[Message, int]] = {}  # key -> (message, attempt) handed to _deliver
        # Claims refused as "not_owner": held, never dropped, until the engine has checked its lease (resume them)
        # or restored from the checkpoint (which replaces them). Keys whose ledger entry a retry already reopened.
        self._refused: list[tuple[Message, int]] = []
        self._reopened: set[str] = set()
        #: Called when a claim is refused as "not_owner" (the engine checks its lease at once).
        self.on_claim_refused: Callable[[], None] | None = None
        self._facts: list[Fact] = []  # for analytics, to be written to the store
        self._writing = False
        self._prepared: dict[str, Message] = {}  # key -> the message with its code and link, while in flight
        #: False: hold due messages instead of delivering them (maintenance runs such as ``recoverkit forget``).
        self.delivering = True
        self._in_flight = 0
        self._max_in_flight = config.max_in_flight
        self._task_group: anyio.abc.TaskGroup | None = None
        self._barriers: list[anyio.Event] = []
        self.outcomes: Counter[str] = Counter()
        #: Called after a customer was erased from the store (the engine checkpoints then).
        self.on_forgotten: Callable[[], None] | None = None
        self.send_lateness = LatencyHistogram()
        #: From ingest creating a batch to dispatch having handled it: the pipeline's own latency.
        self.pipeline_latency = LatencyHistogram()

    # -- the stage ------------------------------------------------------------------------------------------

    async def run(self, inbox: Link[Any], outbox: Link[Any] | None) -> None:
        self.inbox = inbox
        async with anyio.create_task_group() as tg:
            self._task_group = tg
            async with inbox.receive_stream:
                async for batch in inbox.receive_stream:
                    self._process_batch(batch)
            # Input closed (engine stopping): wait for what is in flight; what is still scheduled stays
            # scheduled, in the engine's last checkpoint.
            self._write_facts()
            while self._in_flight or (self._ready and self.delivering) or self._writing:
                self._start_ready()
                await anyio.sleep(0.01)
        self._release_barriers()

    def _process_batch(self, batch: Batch[Any]) -> None:
        started = perf_counter()
        out: list[Any] = []
        self.handle(batch.items, out)
        if batch.watermark > self.watermark:
            self.watermark = batch.watermark
            self.advance(batch.watermark, out)
        self.received += len(batch.items)
        self.batches += 1
        if batch.barriers:
            self._barriers.extend(batch.barriers)
        if batch.control is not None:
            # Messages already handed to a delivery task are in the ledger (claimed) or about to be: a restart
            # from this snapshot finds their keys there, so they need not be part of it.
            batch.control.apply(self, last=True)
        self._write_facts()
        self._start_ready()
        finished = perf_counter()
        self.latency.record(finished - started)
        self.pipeline_latency.record(finished - batch.born)
        self._release_barriers()

    def handle(self, items: list[Any], out: list[Any]) -> None:
        for item in items:
            try:
                kind = type(item)
                if kind is Message:
                    self._schedule(item)
                elif kind is Assignment or kind is Conversion or kind is MessageOutcome or kind is LinkVisit:
                    self._facts.append(item)  # from the stages before, for analytics
                elif kind is Forget:
                    self._forget(item)
                elif kind is Cancel:
                    if self._event_time:
                        # Items of a batch all come before its watermark moves. In event time, first fire
                        # what fell due before this cancel, as a live engine would have, so that what a
                        # replay decides does not depend on how its input was batched.
                        self.advance(math.nextafter(item.at, -math.inf), out)
                    self._cancel(item)
            except Exception:
                self.errors += 1
                self.log.exception("dispatch_failed", item=type(item).__name__)

    def advance(self, watermark: float, out: list[Any]) -> None:
        heap = self._heap
        pending = self._pending
        while heap and heap[0][0] <= watermark:
            due, _, key = heapq.heappop(heap)
            message = pending.get(key)
            if message is None or self._due_of(key, message) != due:
                continue  # cancelled or rescheduled since
            self._unschedule(key, message)
            # In event time only a purchase made by the due time cancels: a restart can restore a message that
            # was due, and waiting for a slot, when a later purchase arrived.
            if self._bought(message, by=due if self._event_time else None):
                self._ended(message, "cancelled_purchase", self._moment(due))
                continue
            attempt = self._attempts.get(key, 0)
            if attempt == 0:
                if self._capped(message, due):
                    self._ledger[key] = "capped"
                    self._expire_later(watermark, "ledger", key)
                    self._ended(message, "capped", self._moment(due))
                    continue
                self._ledger[key] = "in_flight"
                self._expire_later(watermark, "ledger", key)
            self._attempt_at[key] = due
            self._ready.append((message, attempt))
        self._prune(watermark)

    def _moment(self, due: float) -> float:
        """When something that fell due at ``due`` happens, on the engine's clock: live, now; in event time
        ``due`` itself.

        In event time "now" is the watermark, and a live engine acts the moment the watermark reaches a due time.
        How far past it the watermark has moved by the time dispatch gets to act (or an adapter answers) depends
        on how the input was cut into chunks, so recording that instead would make two replays of one file
        disagree, and would date a message hours or days after it was due.
        """
        return due if self._event_time else self._clock.now()

    # -- scheduling -----------------------------------------------------------------------------------------

    def _schedule(self, message: Message, due: float | None = None, *, restoring: bool = False) -> None:
        key = message.key
        if key in self._ledger and due is None and not restoring:
            self.outcomes["duplicate_key"] += 1
            return
        if self._bought(message) and not restoring:
            # Dated by the purchase that stopped it (the watermark here depends on how the input was batched).
            bought = max(
                self._bought_carts.get(message.cart.cart_key, -math.inf),
                self._bought_contacts.get(message.recipient.contact_key, -math.inf),
            )
            self._ended(message, "cancelled_purchase", self._moment(bought))
            return
        previous = self._pending.get(key)
        if previous is not None:
            self._unschedule(key, previous)
        when = message.due_at if due is None else due
        self._pending[key] = message
        self._due[key] = when
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, key))
        self._by_cart.setdefault(message.cart.cart_key, set()).add(key)
        self._by_contact.setdefault(message.recipient.contact_key, set()).add(key)
        if not restoring:
            self.outcomes["scheduled" if due is None else "retry_scheduled"] += 1

    def _due_of(self, key: str, message: Message) -> float:
        return self._due.get(key, message.due_at)

    def _unschedule(self, key: str, message: Message) -> None:
        del self._pending[key]
        self._due.pop(key, None)
        for index, group in ((self._by_cart, message.cart.cart_key), (self._by_contact, message.recipient.contact_key)):
            keys = index.get(group)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[group]

    def _cancel(self, cancel: Cancel) -> None:
        if cancel.why == "purchase":
            if cancel.cart_key is not None:
                self._bought_carts[cancel.cart_key] = cancel.at
                self._expire_later(cancel.at, "cart", cancel.cart_key)
            if cancel.contact_key is not None:
                self._bought_contacts[cancel.contact_key] = cancel.at
                self._expire_later(cancel.at, "contact", cancel.contact_key)
        keys: set[str] = set()
        if cancel.cart_key is not None:
            keys |= self._by_cart.get(cancel.cart_key, set())
        if cancel.contact_key is not None:
            keys |= self._by_contact.get(cancel.contact_key, set())
        for key in keys:
            message = self._pending.get(key)
            if message is None or (cancel.channel is not None and message.channel != cancel.channel):
                continue
            self._unschedule(key, message)
            self._attempts.pop(key, None)
            self._ended(message, f"cancelled_{cancel.why}", cancel.at)

    def _bought(self, message: Message, by: float | None = None) -> bool:
        """Was the cart bought, or did its customer buy anything after starting it (and, given ``by``, at or
        before ``by``)?"""
        started = message.cart.started_at
        last = math.inf if by is None else by
        cart = self._bought_carts.get(message.cart.cart_key)
        if cart is not None and started <= cart <= last:
            return True
        contact = self._bought_contacts.get(message.recipient.contact_key)
        return contact is not None and started <= contact <= last

    def _expire_later(self, at: float, kind: str, key: str) -> None:
        self._expiry.append((at + self._retention, kind, key))

    def _prune(self, watermark: float) -> None:
        # Entries are appended in roughly watermark order, so the front of the deque expires first; an entry
        # that is a little out of order just lives a little longer.
        expiry = self._expiry
        while expiry and expiry[0][0] < watermark:
            _, kind, key = expiry.popleft()
            if kind == "ledger":
                self._ledger.pop(key, None)
            elif kind == "cart":
                self._bought_carts.pop(key, None)
            else:
                self._bought_contacts.pop(key, None)

    # -- frequency caps -------------------------------------------------------------------------------------

    def _capped(self, message: Message, due: float) -> bool:
        """Would sending ``message`` at ``due`` exceed a cap? If not, it counts towards them from now on.

        Caps count per customer (contact key) across every flow, on the engine's clock (event time in a
        replay). A capped message is skipped for good: being late is worse than not being sent.
        """
        caps = self._caps
        if not caps:
            return False
        contact = message.recipient.contact_key
        history = self._history.get(contact)
        if history is not None:
            horizon = due - self._cap_window
            if history and history[0][0] <= horizon:
                history[:] = [h for h in history if h[0] > horizon]
            for cap in caps:
                if cap.channel is not None and cap.channel != message.channel:
                    continue
                since = due - cap.per
                used = sum(1 for at, ch in history if at > since and (cap.channel is None or ch == cap.channel))
                if used >= cap.max:
                    return True
        else:
            history = self._history[contact] = []
        history.append((due, message.channel))
        return False

    # -- erasure --------------------------------------------------------------------------------------------

    def _forget(self, forget: Forget) -> None:
        """Drop the customer's pending messages and in-memory marks, then erase them from the store."""
        keys: set[str] = set()
        for contact in forget.contact_keys:
            keys |= self._by_contact.get(contact, set())
            self._bought_contacts.pop(contact, None)
            self._history.pop(contact, None)
        for cart in forget.cart_keys:
            keys |= self._by_cart.get(cart, set())
        for key in keys:
            message = self._pending.get(key)
            if message is not None:
                self._unschedule(key, message)
                self._attempts.pop(key, None)
                self.outcomes["cancelled_forgotten"] += 1
        # Due messages waiting for a delivery slot (or, in an engine that does not deliver, for one that does)
        # hold the address as well, and every checkpoint would keep it.
        gone_contacts, gone_carts = set(forget.contact_keys), set(forget.cart_keys)
        waiting = [
            (m, a)
            for m, a in self._ready
            if m.recipient.contact_key not in gone_contacts and m.cart.cart_key not in gone_carts
        ]
        self.outcomes["cancelled_forgotten"] += len(self._ready) - len(waiting)
        kept = {m.key for m, _ in waiting}
        for message, _ in self._ready:
            if message.key not in kept:
                self._attempt_at.pop(message.key, None)
        self._ready.clear()
        self._ready.extend(waiting)
        self.dead_letters.forget(set(forget.contact_keys))
        # Their facts not yet written go to the store first, for its forget to pseudonymise with the rest: the
        # analytics keep their counts, and the checkpoint no longer holds the contact key.
        contacts = set(forget.contact_keys)
        theirs = [f for f in self._facts if getattr(f, "contact_key", None) in contacts]
        self._facts[:] = [f for f in self._facts if getattr(f, "contact_key", None) not in contacts]
        # Counted as in flight, so that flush() (and Engine.forget, which waits on it) returns only once the
        # store has erased them too.
        tg = self._task_group
        if tg is not None:
            self._in_flight += 1
            tg.start_soon(self._erase, forget, theirs, name="recoverkit-forget")

    async def _erase(self, forget: Forget, facts: list[Fact]) -> None:
        try:
            if facts:
                await self._call(self._store.record_facts, facts)
            for contact in forget.contact_keys:
                await self._call(self._store.forget, contact, at=forget.at)
        except StoreError as exc:
            self.log.error("forget_failed", error=str(exc))
        finally:
            self._in_flight -= 1
        callback = self.on_forgotten
        if callback is not None:
            callback()
        self._start_ready()
        self._release_barriers()

    # -- delivery -------------------------------------------------------------------------------------------

    def _start_ready(self) -> None:
        tg = self._task_group
        if not self.delivering:
            return
        while self._ready and self._in_flight < self._max_in_flight and tg is not None:
            message, attempt = self._ready.popleft()
            self._in_flight += 1
            self._flight[message.key] = (message, attempt)
            tg.start_soon(self._deliver, message, attempt, name=f"recoverkit-deliver-{message.key}")

    async def _deliver(self, message: Message, attempt: int) -> None:
        key = message.key
        policy = self._policies[message.channel]
        adapter = self._channels[message.channel]
        error: str | None = None
        permanent = False
        skipped: str | None = None  # why the message was not handed to the adapter
        claimed = False
        unknown = False  # the adapter was given up on while still running: the send may yet go out
        wait: float | None = None  # what the provider asked for (Retry-After)
        # When this attempt happens on the engine's clock: what the ledger, the outcome, the code and the link
        # are dated with (see _moment).
        at = self._attempt_at.pop(key, message.due_at)
        if not self._event_time:
            at = self._clock.now()
        try:
            async with self._limiters[message.channel]:
                # No early return from here: the bookkeeping below (start what is ready, release flush()
                # barriers) must run either way.
                if not self._event_time:
                    at = self._clock.now()  # live, the send starts once it has a slot
                if not self._event_time and self._bought(message):
                    skipped = "cancelled_purchase"  # a purchase arrived while the message waited for a slot
                else:
                    skipped = await self._claim(message, attempt, at)
                claimed = skipped is None
                if claimed and self._guard is not None:
                    skipped = await self._ask_guard(message)
                if skipped is None:
                    message = await self._prepare(message, at)
                    if not self._clock.event_time:
                        self.send_lateness.record(max(self._clock.now() - message.due_at, 0.0))
                    sent = await self._contain.call(
                        self._adapter_plugins[message.channel], adapter.send, message,
                        timeout=policy.timeout, ids={"key": key}, expected=(DeliveryError,),
                    )  # fmt: skip
                    if isinstance(sent, Failed):
                        error, permanent, wait, unknown = self._send_failed(sent)
        except StoreError as exc:
            # The ledger could not be asked: nothing was handed to the adapter; try again later.
            error = f"StoreError: {exc}"
            self.log.error("ledger_unavailable", key=key, error=str(exc))
        except PluginError as exc:  # the guard, the coupons or the loyalty programme failed; already logged
            error = str(exc)
        except Exception as exc:  # a bug of ours while delivering: contained like a plug-in's, retried
            error = f"{type(exc).__name__}: {exc}"
            self.log.exception("delivery_failed", channel=message.channel, key=key, error=type(exc).__name__)
        try:
            if skipped == "not_owner":
                self._attempt_at[key] = at  # held: resumed later, as the attempt of this time
                self._hold_refused(message, attempt)
            elif skipped is not None:
                self._attempts.pop(key, None)
                self._ledger[key] = skipped
                if skipped == "duplicate_key":
                    self.outcomes[skipped] += 1  # decided elsewhere: that decision is the one recorded
                else:
                    self._ended(message, skipped, at)
                if claimed:  # vetoed after the claim: the key is settled, never to be sent
                    await self._finish(key, "cancelled", skipped, at)
            elif unknown:
                # At most once: the send may still reach the provider, so it is neither retried nor dead-lettered.
                # The ledger says "unknown" until a person settles it (``recoverkit ledger --resolve``).
                self._attempts.pop(key, None)
                self._ledger[key] = "unknown"
                self.outcomes["unknown"] += 1
                self.log.error("send_outcome_unknown", channel=message.channel, key=key)
                await self._finish(key, "unknown", (error or "")[:500], at)
            elif error is None:
                self._ledger[key] = "sent"
                self._attempts.pop(key, None)
                self._ended(self._prepared.get(key, message), "sent", at)
                self.emitted += 1
                await self._finish(key, "sent", None, at)
            else:
                await self._failed(self._prepared.get(key, message), attempt, error, permanent, claimed, at, wait)
        finally:
            self._prepared.pop(key, None)
            # Only now: until the outcome is recorded, flush() must wait and a checkpoint must keep the message.
            self._flight.pop(key, None)
            self._in_flight -= 1
        # The outcome's fact goes to the store now, not with the next batch: flush() returns once it is written.
        self._write_facts()
        self._start_ready()
        self._release_barriers()

    def _hold_refused(self, message: Message, attempt: int) -> None:
        """The ledger refused the claim: this process does not hold the pipeline lease (it lapsed during a stall,
        or another process took it). The message is held, neither sent nor dropped: the engine checks the lease
        at once, then resumes held messages (:meth:`resume_refused`) or restores from the checkpoint, which
        holds them (they are in every snapshot) or re-derives them from the journal."""
        self._refused.append((message, attempt))
        self.outcomes["not_owner"] += 1
        self.log.warning("claim_refused_not_owner", channel=message.channel, key=message.key, held=len(self._refused))
        callback = self.on_claim_refused
        if callback is not None:
            callback()

    def resume_refused(self) -> int:
        """Deliver the messages held after a refused claim again (the engine holds the lease, and nothing was
        missed while it did not: see ``Engine``); return how many."""
        held, self._refused = self._refused, []
        if held:
            self._ready.extendleft(reversed(held))
            self.log.info("refused_claims_resumed", count=len(held))
            self._start_ready()
        return len(held)

    def _send_failed(self, sent: Failed) -> tuple[str, bool, float | None, bool]:
        """What a failed send means: (error, permanent, provider's Retry-After, outcome unknown)."""
        cause = sent.cause
        if isinstance(cause, PermanentDeliveryError):
            return f"PermanentDeliveryError: {cause}", True, None, False
        if isinstance(cause, TransientDeliveryError):
            return f"TransientDeliveryError: {cause}", False, cause.retry_after, False
        if sent.kind == "timed_out":
            return f"TimeoutError: no answer within {sent.timeout}s", False, None, False
        if sent.kind == "abandoned":
            return sent.describe(), False, None, True
        if sent.kind == "raised" and cause is not None:
            return f"{type(cause).__name__}: {cause}", False, None, False
        return sent.describe(), False, None, False  # raised CancelledError of its own accord, or stuck

    async def _prepare(self, message: Message, now: float) -> Message:
        """Issue the offer's code (or grant its loyalty bonus, or ask the catalogue for its suggestions) and sign
        the restore link, just before the first send of ``message``.

        Done after the claim, so a code is issued, points granted and the catalogue asked only for a message that
        goes out; a retry reuses the prepared message (its code, grant, suggestions and link). A refused code
        (abuse limits) sends the message without the offer, counted as ``offer_refused_<reason>``; so does a
        catalogue that fails (``offer_catalogue_failed``). A code or a grant that fails (raises) fails the attempt,
        which is retried: the message promises them.
        """
        changes: dict[str, Any] = {}
        offer = message.offer
        # ``now`` is the attempt's time (see _moment): a code issued in a replay of old data is valid from when
        # its message was due, in event time, and a link is signed as of then.
        if offer is not None and offer.kind == "substitute" and not offer.suggestions:
            changes["offer"] = await self._suggest(message, offer)
        elif offer is not None and offer.kind == "loyalty_bonus" and offer.grant_id is None:
            changes["offer"] = await self._grant(message, offer, now)
        if offer is not None and offer.code is None and offer.kind in ("discount", "free_shipping"):
            if self._coupons is None:
                changes["offer"] = None
                self.outcomes["offer_no_coupons"] += 1
            else:
                answer = await self._contain.call(
                    self._coupons_plugin, self._coupons.issue, offer,
                    cart_key=message.cart.cart_key, contact_key=message.recipient.contact_key, now=now,
                    email=message.recipient.email, device=message.cart.device,
                    timeout=self._policies[message.channel].timeout, ids={"key": message.key},
                )  # fmt: skip
                if isinstance(answer, Failed):
                    raise answer.error()  # the message promises a code: the attempt fails and is retried
                issued = answer.value
                if isinstance(issued, Refused):
                    changes["offer"] = None
                    self.outcomes[f"offer_refused_{issued.reason}"] += 1
                else:
                    changes["offer"] = issued
                    self.outcomes["offer_codes"] += 1
        if self._links is not None and message.restore_url is None:
            changes["restore_url"] = self._links.build(
                message.cart.cart_key, contact_key=message.recipient.contact_key, now=now
            )
        if not changes:
            return message
        prepared = msgspec.structs.replace(message, **changes)
        self._prepared[message.key] = prepared
        return prepared

    async def _suggest(self, message: Message, offer: Offer) -> Offer | None:
        """``offer`` with the catalogue's suggestions, or ``None`` (counted) when there are none to make."""
        if self._catalogue is None:
            self.outcomes["offer_no_catalogue"] += 1
            return None
        cart = message.cart
        limit = offer.suggest_limit or 3
        # The channel's timeout bounds the catalogue too: a slow catalogue must not hold a delivery slot.
        answer = await self._contain.call(
            self._catalogue_plugin, self._catalogue.suggest, cart, kind=offer.suggest or "substitute", limit=limit,
            timeout=self._policies[message.channel].timeout, ids={"key": message.key},
        )  # fmt: skip
        try:
            if isinstance(answer, Failed):
                raise answer.error()
            found = list(answer.value)
        except Exception as exc:  # the shop's catalogue, contained: the message goes without the offer
            self.outcomes["offer_catalogue_failed"] += 1
            self.log.warning("catalogue_failed", key=message.key, error=type(exc).__name__)
            return None
        # Prices are money: integers in the cart's currency, or the suggestion is not shown.
        valid = [
            s for s in found
            if type(s) is Suggestion and type(s.price) is int and s.price >= 0 and s.currency == cart.currency
        ][:limit]  # fmt: skip
        if len(valid) < min(len(found), limit):
            self.outcomes["offer_catalogue_invalid"] += 1
            self.log.warning("catalogue_invalid", key=message.key, invalid=len(found) - len(valid))
        if not valid:
            self.outcomes["offer_no_suggestions"] += 1
            return None
        self.outcomes["offer_suggestions"] += 1
        return msgspec.structs.replace(offer, suggestions=tuple(valid), items=tuple(s.item_id for s in valid))

    async def _grant(self, message: Message, offer: Offer, now: float) -> Offer | None:
        """``offer`` with its loyalty grant, or ``None`` (counted) when it cannot be granted; raises when the
        programme fails, for the attempt to be retried (the grant is idempotent on the message key)."""
        customer = message.recipient.customer_id or message.cart.customer_id
        if customer is None:
            self.outcomes["offer_no_customer"] += 1  # points need an account
            return None
        if self._loyalty is None:
            self.outcomes["offer_no_loyalty"] += 1
            return None
        expires_at = offer.expires_at if offer.expires_at is not None else math.inf
        if not now < expires_at:
            self.outcomes["offer_expired"] += 1  # retried past the time limit: nothing left to promise
            return None
        granted = await self._contain.call(
            self._loyalty_plugin, self._loyalty.grant,
            customer_id=customer, points=offer.points, multiplier=offer.multiplier, expires_at=expires_at,
            key=message.key, timeout=self._policies[message.channel].timeout, ids={"key": message.key},
        )  # fmt: skip
        if isinstance(granted, Failed):
            raise granted.error()  # the grant is idempotent on the key: the retried attempt asks again
        answer = granted.value
        if isinstance(answer, NotGranted):
            self.outcomes[f"offer_loyalty_{answer.reason}"] += 1
            return None
        self.outcomes["offer_loyalty_granted"] += 1
        return msgspec.structs.replace(
            offer, grant_id=answer.grant_id, points=answer.points, multiplier=answer.multiplier,
            expires_at=answer.expires_at,
        )  # fmt: skip

    async def _claim(self, message: Message, attempt: int, at: float) -> str | None:
        """Claim ``message.key`` in the store's ledger; ``None`` when claimed, else the outcome to count."""
        store = self._store
        if attempt > 0 and message.key not in self._reopened:
            # A retry: the failed attempt was recorded as "failed"; reopen the key, then claim it like the first
            # attempt, so a purchase recorded since still stops it.
            await self._call(store.resolve, message.key, "retry")
            self._reopened.add(message.key)  # until claimed: a refused claim is made again, without reopening
        answer = await self._claims(
            ClaimRequest(
                key=message.key,
                cart_key=message.cart.cart_key,
                contact_key=message.recipient.contact_key,
                channel=message.channel,
                started_at=message.cart.started_at,
                owner=self._owner,
                now=time.time(),  # the lease is on wall time, also in a replay
                at=at,  # what the ledger records: the engine's clock
            )
        )
        if answer != "not_owner":
            self._reopened.discard(message.key)
        if answer == "claimed":
            return None
        # "suppressed": forgotten, or unsubscribed: never written to again.
        return {"duplicate": "duplicate_key", "purchased": "cancelled_purchase", "suppressed": "suppressed"}.get(
            answer, "not_owner"
        )

    async def _ask_guard(self, message: Message) -> str | None:
        """``"vetoed"`` when the guard says no; raises :class:`PluginError` (naming the guard) when it fails.

        A plain guard runs in a worker thread: it is the shop's code, free to query its database synchronously
        (Django refuses synchronous queries on an event loop). An async guard is awaited as it is.
        """
        assert self._guard is not None
        verdict = await self._contain.call(
            self._guard_plugin, self._guard, message,
            timeout=self._policies[message.channel].timeout, ids={"key": message.key},
        )  # fmt: skip
        if isinstance(verdict, Failed):
            raise verdict.error()
        return None if verdict.value else "vetoed"

    async def _finish(self, key: str, outcome: Outcome, error: str | None, at: float) -> None:
        """Record the outcome of ``key``, dated the attempt's ``at`` in event time, now on the engine's clock live."""
        try:
            finished = FinishRequest(key=key, outcome=outcome, now=self._moment(at), error=error)
            refused = await self._finishes(finished)
            if refused is not None:
                raise refused
        except StoreError as exc:
            # The entry stays "sending": after a restart it becomes "unknown", and nothing is sent twice.
            self.log.error("ledger_finish_failed", key=key, outcome=outcome, error=str(exc))

    async def _failed(
        self,
        message: Message,
        attempt: int,
        error: str,
        permanent: bool,
        claimed: bool,
        at: float,
        wait: float | None = None,
    ) -> None:
        key = message.key
        # A provider may quote the message back: its code and restore link must not reach the ledger or a letter.
        error = redact(error[:2000], credentials_of(message))
        policy = self._policies[message.channel]
        attempts = attempt + 1
        self.outcomes["failed_attempts"] += 1
        if not permanent and attempts < policy.max_attempts:
            # Exponential backoff with full jitter (AWS architecture blog): spreads retries of a burst.
            ceiling = min(policy.backoff_max, policy.backoff * 2**attempt)
            # Drawn for this key and attempt, not from one shared stream: concurrent sends fail in whatever order
            # their adapters answer, and a replay must retry at the same times however that order falls.
            delay = random.Random(f"{self._config.seed}/{key}/{attempt}").uniform(0, ceiling)
            if wait is not None and wait > delay:
                # The provider said when (Retry-After): sooner only earns another refusal and uses up an attempt.
                # Capped at a day, so that a wrong header cannot park a message beyond its recovery window.
                delay = min(wait, _MAX_RETRY_AFTER)
                self.outcomes["retry_after_honoured"] += 1
            if claimed:
                await self._finish(key, "failed", error[:500], at)
                self._attempts[key] = attempts
            # else the claim itself failed (store unavailable): the next try is still a first claim
            self._ledger[key] = "retrying"
            # Backoff from the failure on the engine's clock (in event time, from the attempt's due time).
            due = self._moment(at) + delay
            self._schedule(message, due=due)
            if self._event_time and due <= self.watermark:
                # The watermark passed the retry's time while the adapter was answering: a live engine would
                # have retried then. It may not move again (the end of a replay's input).
                self.advance(self.watermark, [])
            return
        self._attempts.pop(key, None)
        if claimed:
            await self._finish(key, "dead", error[:500], at)
        self._ledger[key] = "dead"
        self.outcomes["dead_lettered"] += 1
        self._facts.append(self._outcome(message, "dead", at))
        self.log.warning("dead_lettered", channel=message.channel, key=key, attempts=attempts, permanent=permanent)
        message = _without_credentials(message)
        letter = DeadLetter(
            message=message, error=error[:500], attempts=attempts, at=at, permanent=permanent
        )
        self.dead_letters.add(letter)
        try:
            # Also in the store, filed under the contact, so that forget() can erase it with everything else.
            await self._call(
                self._store.add_dead_letter,
                key,
                msgspec.json.encode(message),
                error=letter.error,
                attempts=attempts,
                permanent=permanent,
                at=letter.at,
                contact_key=message.recipient.contact_key,
            )
        except StoreError as exc:
            self.log.error("dead_letter_not_stored", key=key, error=str(exc))

    # -- facts for analytics --------------------------------------------------------------------------------

    def _outcome(self, message: Message, outcome: str, at: float) -> MessageOutcome:
        """The fact that ``message`` ended with ``outcome`` at ``at`` (on the engine's clock: see _moment)."""
        offer = message.offer
        return MessageOutcome(
            key=message.key, cart_key=message.cart.cart_key, contact_key=message.recipient.contact_key,
            flow=message.flow, step=message.step, outcome=outcome, at=at, channel=message.channel,
            variant=message.variant, offer=offer.name if offer is not None else None,
            offer_kind=offer.kind if offer is not None else None,
        )  # fmt: skip

    def _ended(self, message: Message, outcome: str, at: float) -> None:
        """Count a message's final outcome and keep it as a fact for analytics, dated ``at``."""
        self.outcomes[outcome] += 1
        self._facts.append(self._outcome(message, outcome, at))

    def _write_facts(self) -> None:
        """Start writing the facts gathered so far, unless a write is under way (it picks them up)."""
        if self._facts and not self._writing and self._task_group is not None:
            self._writing = True
            self._task_group.start_soon(self._record_facts, name="recoverkit-facts")

    async def _record_facts(self) -> None:
        # Written while the snapshot still holds them (the store keeps the first fact of a key, so a second write
        # is harmless): a fact is in the store or in the checkpoint whatever moment a crash picks.
        pending = self._facts  # a restore replaces the list: then this write's work is done
        try:
            while pending and pending is self._facts:
                batch = list(pending)
                try:
                    await self._call(self._store.record_facts, batch)
                except Exception as exc:  # kept for the next batch to try again; never stops the stage
                    self.log.error("facts_not_recorded", count=len(batch), error=str(exc))
                    return
                del pending[: len(batch)]
        finally:
            self._writing = False
            self._release_barriers()

    def _release_barriers(self) -> None:
        if self._writing:
            return  # flush() promises that the facts of what was handled are recorded
        if self._barriers and not self._in_flight and (not self._ready or not self.delivering):
            for barrier in self._barriers:
                barrier.set()
            self._barriers.clear()

    # -- state ----------------------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        # Due messages waiting for a delivery slot, and those being delivered, are in the snapshot too: one
        # whose claim had not been made yet would otherwise be lost in a crash, and one already claimed is
        # refused by the ledger after a restart.
        pending = [(m, self._due_of(k, m), self._attempts.get(k, 0)) for k, m in self._pending.items()]
        seen = set(self._pending)
        for message, attempt in [*self._ready, *self._flight.values(), *self._refused]:
            if message.key not in seen:
                seen.add(message.key)
                pending.append((message, message.due_at, attempt))
        state = _State(
            self.watermark, pending, self._ledger, self._bought_carts, self._bought_contacts, list(self._expiry),
            dict(self.outcomes), self._history, list(self._facts),
        )
        return msgspec.msgpack.encode(state)

    def restore(self, state: bytes | None) -> None:
        s = _State(-math.inf, [], {}, {}, {}, [], {}) if state is None else msgspec.msgpack.decode(state, type=_State)
        self.watermark = s.watermark
        self._pending, self._due, self._heap, self._by_cart, self._by_contact = {}, {}, [], {}, {}
        self._attempts = {}
        self._ready.clear()
        self._attempt_at = {}
        self._refused, self._reopened = [], set()
        self._ledger = s.ledger
        self._bought_carts = s.bought_carts
        self._bought_contacts = s.bought_contacts
        self._expiry = deque(s.expiry)
        self.outcomes = Counter(s.outcomes)
        self._history = s.history
        self._facts = list(s.facts)
        for message, due, attempts in s.pending:
            self._schedule(message, due=due, restoring=True)
            if attempts:
                self._attempts[message.key] = attempts
        # What was due at the checkpoint (waiting for a slot, or being sent) fires now: the watermark may not
        # move again (a replay restored at its end).
        self.advance(self.watermark, [])

    # -- introspection --------------------------------------------------------------------------------------

    def pending(self) -> list[Message]:
        """Messages scheduled and not yet due, in due order."""
        return sorted(self._pending.values(), key=lambda m: self._due_of(m.key, m))

    def extra_statistics(self) -> dict[str, Any]:
        return {
            "pending": len(self._pending),
            "in_flight": self._in_flight,
            "ready": len(self._ready),
            "held_not_owner": len(self._refused),
            "dead_letters": len(self.dead_letters),
            "outcomes": dict(self.outcomes),
            "plugins": self._contain.statistics(),
            "send_lateness_p50": self.send_lateness.percentile(50),
            "send_lateness_p99": self.send_lateness.percentile(99),
            "pipeline_latency_p50": self.pipeline_latency.percentile(50),
            "pipeline_latency_p99": self.pipeline_latency.percentile(99),
        }
