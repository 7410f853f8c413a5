"""Stage 5, dispatch: hold scheduled messages until they are due, then deliver them through the adapters.

Guarantees, in the order they are checked when a message comes due:

1. **Never after purchase.** A purchase of the cart, or by its customer in any session after the cart was
   started, cancels the message; live, the check is repeated just before the adapter is called. In event
   time (replay) "after" is in event time: a message due before a purchase is sent, as it would have been
   live, however the events were batched.
2. **At most once per key.** The ledger records every key that was handed to an adapter; a key is never
   handed over a second time by this engine (a re-abandoned cart does not get step 1 again).
3. **Contained adapters.** Each channel has its own timeout and concurrency limit; a send that raises or
   hangs fails only that message, which is retried with exponential backoff and full jitter (transient
   failures) or dead-lettered (permanent failures, attempts exhausted). Ingest and other channels carry on.

Retries are the one place a message can reach a provider twice: a send that timed out may have been
accepted. The idempotency key ``message.key`` is stable across retries; adapters should pass it on (the
webhook adapter sends it as ``Idempotency-Key``).

The ledger and the schedule live in memory in this release: a restart forgets them.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter, deque
from collections.abc import Mapping
from time import perf_counter
from typing import Any

import anyio
import anyio.abc

from ._pipeline import Batch, LatencyHistogram, Link, Stage
from .channels.base import Channel, Message
from .clock import Clock
from .config import Config
from .deadletters import DeadLetter, DeadLetters
from .errors import PermanentDeliveryError, TransientDeliveryError
from .route import Cancel

__all__ = ["Dispatch"]


class Dispatch(Stage):
    """Schedules, gates and delivers messages; keeps the ledger, retries and dead letters."""

    name = "dispatch"

    def __init__(
        self,
        config: Config,
        channels: Mapping[str, Channel],
        clock: Clock,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        super().__init__()
        self._config = config
        self._channels = dict(channels)
        self._clock = clock
        self._event_time = clock.event_time
        self._policies = {name: config.channel_policy(name) for name in self._channels}
        self._limiters = {name: anyio.CapacityLimiter(p.concurrency) for name, p in self._policies.items()}
        self._rng = random.Random(config.seed)
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
        # The ledger: keys handed to an adapter (value: outcome). Purchases: cart/contact -> purchase time.
        self._ledger: dict[str, str] = {}
        self._bought_carts: dict[str, float] = {}
        self._bought_contacts: dict[str, float] = {}
        # Retention of ledger and purchase entries: long enough that no flow can still act on the cart.
        longest = max((s.delay for f in config.flows for s in f.steps), default=0.0)
        self._retention = config.recovery_window + longest
        self._expiry: deque[tuple[float, str, str]] = deque()
        # Delivery
        self._ready: deque[tuple[Message, int]] = deque()
        self._in_flight = 0
        self._max_in_flight = config.max_in_flight
        self._task_group: anyio.abc.TaskGroup | None = None
        self._barriers: list[anyio.Event] = []
        self.outcomes: Counter[str] = Counter()
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
            # scheduled (and is lost with the process in this release).
            while self._in_flight or self._ready:
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
            if self._bought(message):
                self.outcomes["cancelled_purchase"] += 1
                continue
            attempt = self._attempts.get(key, 0)
            if attempt == 0:
                self._ledger[key] = "in_flight"
                self._expire_later(watermark, "ledger", key)
            self._ready.append((message, attempt))
        self._prune(watermark)

    # -- scheduling -----------------------------------------------------------------------------------------

    def _schedule(self, message: Message, due: float | None = None) -> None:
        key = message.key
        if key in self._ledger and due is None:
            self.outcomes["duplicate_key"] += 1
            return
        if self._bought(message):
            self.outcomes["cancelled_purchase"] += 1
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
            self.outcomes[f"cancelled_{cancel.why}"] += 1

    def _bought(self, message: Message) -> bool:
        """Was the cart bought, or did its customer buy anything after starting it?"""
        started = message.cart.started_at
        cart = self._bought_carts.get(message.cart.cart_key)
        if cart is not None and cart >= started:
            return True
        contact = self._bought_contacts.get(message.recipient.contact_key)
        return contact is not None and contact >= started

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

    # -- delivery -------------------------------------------------------------------------------------------

    def _start_ready(self) -> None:
        tg = self._task_group
        while self._ready and self._in_flight < self._max_in_flight and tg is not None:
            message, attempt = self._ready.popleft()
            self._in_flight += 1
            tg.start_soon(self._deliver, message, attempt, name=f"recoverkit-deliver-{message.key}")

    async def _deliver(self, message: Message, attempt: int) -> None:
        key = message.key
        policy = self._policies[message.channel]
        adapter = self._channels[message.channel]
        error: str | None = None
        permanent = False
        cancelled = False
        try:
            async with self._limiters[message.channel]:
                # Live, a purchase may have arrived while we waited for a slot (in event time, advance()
                # decided at the due time). No early return from here: the bookkeeping below (start what is
                # ready, release flush() barriers) must run either way.
                cancelled = not self._event_time and self._bought(message)
                if cancelled:
                    self._ledger[key] = "cancelled"
                    self.outcomes["cancelled_purchase"] += 1
                else:
                    if not self._clock.event_time:
                        self.send_lateness.record(max(self._clock.now() - message.due_at, 0.0))
                    with anyio.fail_after(policy.timeout):
                        await adapter.send(message)
        except PermanentDeliveryError as exc:
            error, permanent = f"PermanentDeliveryError: {exc}", True
        except TransientDeliveryError as exc:
            error = f"TransientDeliveryError: {exc}"
        except TimeoutError:
            error = f"TimeoutError: no answer within {policy.timeout}s"
        except Exception as exc:  # a buggy adapter: contained, retried, visible in logs
            error = f"{type(exc).__name__}: {exc}"
            self.log.warning("adapter_raised", channel=message.channel, key=key, error=type(exc).__name__)
        finally:
            self._in_flight -= 1
        if cancelled:
            self._attempts.pop(key, None)
        elif error is None:
            self._ledger[key] = "sent"
            self._attempts.pop(key, None)
            self.outcomes["sent"] += 1
            self.emitted += 1
        else:
            self._failed(message, attempt, error, permanent)
        self._start_ready()
        self._release_barriers()

    def _failed(self, message: Message, attempt: int, error: str, permanent: bool) -> None:
        key = message.key
        policy = self._policies[message.channel]
        attempts = attempt + 1
        self.outcomes["failed_attempts"] += 1
        if not permanent and attempts < policy.max_attempts:
            # Exponential backoff with full jitter (AWS architecture blog): spreads retries of a burst.
            ceiling = min(policy.backoff_max, policy.backoff * 2**attempt)
            self._attempts[key] = attempts
            self._ledger[key] = "retrying"
            self._schedule(message, due=self.watermark + self._rng.uniform(0, ceiling))
            return
        self._attempts.pop(key, None)
        self._ledger[key] = "dead"
        self.outcomes["dead_lettered"] += 1
        self.log.warning("dead_lettered", channel=message.channel, key=key, attempts=attempts, permanent=permanent)
        self.dead_letters.add(
            DeadLetter(message=message, error=error[:500], attempts=attempts, at=self.watermark, permanent=permanent)
        )

    def _release_barriers(self) -> None:
        if self._barriers and not self._in_flight and not self._ready:
            for barrier in self._barriers:
                barrier.set()
            self._barriers.clear()

    # -- introspection --------------------------------------------------------------------------------------

    def pending(self) -> list[Message]:
        """Messages scheduled and not yet due, in due order."""
        return sorted(self._pending.values(), key=lambda m: self._due_of(m.key, m))

    def extra_statistics(self) -> dict[str, Any]:
        return {
            "pending": len(self._pending),
            "in_flight": self._in_flight,
            "ready": len(self._ready),
            "dead_letters": len(self.dead_letters),
            "outcomes": dict(self.outcomes),
            "send_lateness_p50": self.send_lateness.percentile(50),
            "send_lateness_p99": self.send_lateness.percentile(99),
            "pipeline_latency_p50": self.pipeline_latency.percentile(50),
            "pipeline_latency_p99": self.pipeline_latency.percentile(99),
        }
