"""The dispatch stage: reads the route stage's batches and runs its parts (see :mod:`recoverkit.dispatch`).

The parts, each in its own room: the schedule (:mod:`._schedule`), offer preparation (:mod:`._prepare`),
delivery (:mod:`._delivery`) and the analytics facts' writer (:mod:`._facts`). The stage owns what they share:
the outcome counter, the task group, ``flush()``'s barriers, and erasure, which touches all of them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from time import perf_counter
from typing import Any

import anyio
import anyio.abc

from .._contain import Containment
from .._pipeline import Batch, LatencyHistogram, Link, Stage
from ..catalogue import Catalogue
from ..channels.base import Channel
from ..clock import Clock
from ..config import Config
from ..deadletters import DeadLetters
from ..errors import StoreError
from ..facts import Assignment, Conversion, Fact, LinkVisit, MessageOutcome
from ..items import Cancel, Forget, Message
from ..links import RestoreLinks
from ..loyalty import Loyalty
from ..offers import CouponProvider
from ..store.base import Store
from ._delivery import Delivery, Guard, StoreCall
from ._facts import FactWriter
from ._prepare import Preparer
from ._schedule import Schedule
from ._withdraw import Withdrawals

__all__ = ["Dispatch"]

#: What the stages before hand on for analytics only: written to the store as they are.
_FACTS = (Assignment, Conversion, MessageOutcome, LinkVisit)


async def _inline(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


class Dispatch(Stage):
    """Schedules, gates and delivers messages; keeps the ledger, retries and dead letters.

    ``store`` is the engine's store and ``call`` what runs its blocking methods off the event loop (any callable
    ``await call(method, *args, **kwargs)``); built alone (tests, tools), dispatch keeps a private in-memory store
    and calls it in place.
    """

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
        if store is None:
            from ..store.memory import MemoryStore  # a dispatch built alone (tests, tools) owns a private store

            store = MemoryStore()
            owner = owner or "dispatch"
            store.acquire_lease("pipeline", owner, ttl=1e12, now=0.0)
        call = call if call is not None else _inline
        self._event_time = clock.event_time
        self.outcomes: Counter[str] = Counter()
        self.dead_letters = dead_letters if dead_letters is not None else DeadLetters()
        self.send_lateness = LatencyHistogram()
        #: From ingest creating a batch to dispatch having handled it: the pipeline's own latency.
        self.pipeline_latency = LatencyHistogram()
        #: Called when a claim is refused as "not_owner" (the engine checks its lease at once).
        self.on_claim_refused: Callable[[], None] | None = None
        #: Called after a customer was erased from the store (the engine checkpoints then).
        self.on_forgotten: Callable[[], None] | None = None
        self._store = store
        for adapter in channels.values():  # adapters that deliver into the store (onsite) use the engine's
            bind = getattr(adapter, "bind_store", None)
            if callable(bind):
                bind(store)
        self._call = call
        self._task_group: anyio.abc.TaskGroup | None = None
        self._barriers: list[anyio.Event] = []
        policies = {name: config.channel_policy(name) for name in channels}
        # Every call into shop code goes through one helper: timeout, own task or thread, failures counted.
        self._contain = Containment(self.log)
        self._facts = FactWriter(store, call, self.log, self.outcomes, written=self._release_barriers)
        self._schedule = Schedule(config, clock, self.outcomes, ended=self._facts.ended)
        self._facts.counts = self._schedule.counts  # one count of scheduled and ended messages
        self._prepare = Preparer(
            policies=policies, contain=self._contain, outcomes=self.outcomes, log=self.log,
            coupons=coupons, links=links, catalogue=catalogue, loyalty=loyalty,
        )  # fmt: skip
        self._delivery = Delivery(
            channels=dict(channels), policies=policies, clock=clock, seed=config.seed,
            max_in_flight=config.max_in_flight, schedule=self._schedule, facts=self._facts, store=store, call=call,
            owner=owner, guard=guard, contain=self._contain, dead_letters=self.dead_letters, outcomes=self.outcomes,
            log=self.log, lateness=self.send_lateness, prepare=self._prepare.prepare, sent=self._sent,
            settled=self._delivered, retry_due=self._retry_due, claim_refused=self._claim_refused,
        )  # fmt: skip
        # Adapters that keep lasting state (ad audiences) are told to take it back; see _withdraw.
        self._withdrawals = Withdrawals(
            channels, policies, contain=self._contain, outcomes=self.outcomes, started=self._withdraw_started,
            ended=self._withdraw_ended,
        )  # fmt: skip

    @property
    def delivering(self) -> bool:
        """False: hold due messages instead of delivering them (maintenance runs such as ``recoverkit forget``)."""
        return self._delivery.delivering

    @delivering.setter
    def delivering(self, value: bool) -> None:
        self._delivery.delivering = value

    def next_deadline(self) -> float:
        """When the watermark must next move for dispatch: the earliest due time scheduled (retries included),
        infinite when nothing is; read by the engine's ticker, which sleeps until it."""
        return self._schedule.next_due

    @property
    def settled(self) -> bool:
        """Nothing in flight: no delivery (whose failure schedules a retry) and no erasure under way."""
        return not self._delivery.in_flight

    # -- the stage --------------------------------------------------------------------------------------------------

    async def run(self, inbox: Link[Any], outbox: Link[Any] | None) -> None:
        self.inbox = inbox
        delivery = self._delivery
        async with anyio.create_task_group() as tg:
            self._task_group = delivery.task_group = tg
            async with inbox.receive_stream:
                async for batch in inbox.receive_stream:
                    self._process_batch(batch)
            # Input closed (engine stopping): wait for what is in flight; what is still scheduled stays
            # scheduled, in the engine's last checkpoint.
            self._write_facts()
            while delivery.in_flight or (delivery.ready and delivery.delivering) or self._facts.writing:
                delivery.start_ready()
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
        self._delivery.start_ready()
        finished = perf_counter()
        self.latency.record(finished - started)
        self.pipeline_latency.record(finished - batch.born)
        self._release_barriers()

    def handle(self, items: list[Any], out: list[Any]) -> None:
        for item in items:
            try:
                kind = type(item)
                if kind is Message:
                    self._schedule.add(item)
                elif kind in _FACTS:
                    self._facts.add(item)  # from the stages before, for analytics
                elif kind is Forget:
                    self._forget(item)
                elif kind is Cancel:
                    if self._event_time:
                        # Items of a batch all come before its watermark moves. In event time, first fire
                        # what fell due before this cancel, as a live engine would have, so that what a
                        # replay decides does not depend on how its input was batched.
                        self.advance(math.nextafter(item.at, -math.inf), out)
                    self._schedule.cancel(item)
                    if self._withdrawals:
                        self._withdrawals.cancel(item, self._task_group)
            except Exception:
                self.errors += 1
                self.log.exception("dispatch_failed", item=type(item).__name__)

    def advance(self, watermark: float, out: list[Any]) -> None:
        for message, attempt, due in self._schedule.pop_due(watermark):
            self._delivery.enqueue(message, attempt, due)

    # -- what delivery reports --------------------------------------------------------------------------------------

    def _sent(self) -> None:
        self.emitted += 1

    def _withdraw_started(self) -> None:
        self._delivery.in_flight += 1  # flush() waits for withdrawals as for sends

    def _withdraw_ended(self) -> None:
        self._delivery.in_flight -= 1
        self._delivered()

    def _delivered(self) -> None:
        self._write_facts()
        self._delivery.start_ready()
        self._release_barriers()

    def _retry_due(self, due: float) -> None:
        if self._event_time and due <= self.watermark:
            # The watermark passed the retry's time while the adapter was answering: a live engine would have
            # retried then. It may not move again (the end of a replay's input).
            self.advance(self.watermark, [])

    def _claim_refused(self) -> None:
        callback = self.on_claim_refused
        if callback is not None:
            callback()

    def resume_refused(self) -> int:
        """Deliver the messages held after a refused claim again (the engine holds the lease, and nothing was
        missed while it did not: see ``Engine``); return how many."""
        return self._delivery.resume_refused()

    # -- erasure ----------------------------------------------------------------------------------------------------

    def _forget(self, forget: Forget) -> None:
        """Drop the customer's pending messages and in-memory marks, then erase them from the store."""
        contacts, carts = set(forget.contact_keys), set(forget.cart_keys)
        dropped = self._schedule.forget(forget.contact_keys, forget.cart_keys)
        # Due messages waiting for a delivery slot (or, in an engine that does not deliver, for one that does)
        # hold the address as well, and every checkpoint would keep it.
        dropped += self._delivery.forget(contacts, carts)
        if self._withdrawals:
            self._withdrawals.forget(forget, self._task_group)
        self.outcomes["cancelled_forgotten"] += dropped
        self.dead_letters.forget(contacts)
        # Their facts not yet written go to the store first, for its forget to pseudonymise with the rest: the
        # analytics keep their counts, and the checkpoint no longer holds the contact key.
        theirs = self._facts.take(contacts)
        # Counted as in flight, so that flush() (and Engine.forget, which waits on it) returns only once the
        # store has erased them too.
        tg = self._task_group
        if tg is not None:
            self._delivery.in_flight += 1
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
            self._delivery.in_flight -= 1
        callback = self.on_forgotten
        if callback is not None:
            callback()
        self._delivery.start_ready()
        self._release_barriers()

    # -- facts and flush() ------------------------------------------------------------------------------------------

    def _write_facts(self) -> None:
        """Start writing the facts gathered so far, unless a write is under way (it picks them up)."""
        self._facts.start(self._task_group)

    def _release_barriers(self) -> None:
        if self._facts.writing:
            return  # flush() promises that the facts of what was handled are recorded
        delivery = self._delivery
        if self._barriers and not delivery.in_flight and (not delivery.ready or not delivery.delivering):
            for barrier in self._barriers:
                barrier.set()
            self._barriers.clear()

    # -- state ------------------------------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        # Due messages waiting for a delivery slot, and those being delivered, are in the snapshot too: one
        # whose claim had not been made yet would otherwise be lost in a crash, and one already claimed is
        # refused by the ledger after a restart.
        # Taken in one go (Stage.snapshot_soon's default), never in parts as sessionize and route take theirs:
        # dispatch's delivery tasks, which run beside this stage's own task, settle, retry and dead-letter
        # messages in the schedule, so a checkpoint that let the loop run between parts could interleave with
        # them (a dict changing size under the encoder, or a retry missing from both the pending messages and the
        # held ones).
        return self._schedule.snapshot(self.watermark, self._delivery.held(), self._facts.pending)

    def restore(self, state: bytes | None) -> None:
        self.watermark, facts = self._schedule.restore(state)
        self._delivery.reset()
        self._facts.restore(facts)
        # What was due at the checkpoint (waiting for a slot, or being sent) fires now: the watermark may not
        # move again (a replay restored at its end).
        self.advance(self.watermark, [])

    # -- introspection ----------------------------------------------------------------------------------------------

    def pending(self) -> list[Message]:
        """Messages scheduled and not yet due, in due order."""
        return self._schedule.messages()

    def waiting(self) -> list[Message]:
        """Messages due and waiting for a delivery slot (or, while not delivering, for an engine that delivers)."""
        return [message for message, _ in self._delivery.ready]

    def extra_statistics(self) -> dict[str, Any]:
        return {
            "pending": len(self._schedule.pending),
            "in_flight": self._delivery.in_flight,
            "ready": len(self._delivery.ready),
            "held_not_owner": len(self._delivery.refused),
            "dead_letters": len(self.dead_letters),
            "outcomes": dict(self.outcomes),
            "messages": self._schedule.counts.figures(),
            "plugins": self._contain.statistics(),
            "send_lateness_p50": self.send_lateness.percentile(50),
            "send_lateness_p99": self.send_lateness.percentile(99),
            "pipeline_latency_p50": self.pipeline_latency.percentile(50),
            "pipeline_latency_p99": self.pipeline_latency.percentile(99),
        }
