"""The partitioned engine: the partitions this process owns, each run by a pipeline of its own (:class:`Fleet`).

With a store whose journal has several partitions (PostgreSQL made with ``recoverkit db init URL --partitions
64``, docs/scaling.md), any number of engine processes on any number of hosts share the work. Each process:

- **journals** what it accepts into the partition of each event's session (every web process does this,
  whichever partitions it owns: :meth:`recoverkit.journal.Journal._write_keyed`);
- **says it is alive** every ``lease_ttl / 5`` seconds (:meth:`~recoverkit.store.PartitionedStore.heartbeat`)
  and computes its **fair share** of the partitions from the live members: ``partitions // members``, one more
  for the first ``partitions % members`` of them in name order, so the shares always add up to every partition;
- **takes free partitions** up to its share, and **hands over** the ones above it at once (a final checkpoint,
  then the lease released): so partitions move when a process joins (the others are above their new share),
  when one shuts down cleanly (it leaves the members and releases everything) and when one dies (its leases
  and its membership lapse within ``lease_ttl``; the others' shares grow and they take what is free);
- runs each partition it owns as an ordinary pipeline (ingest, sessionize, score, route, dispatch, with its
  ownership: lease renewal, checkpoints, restore) on a :class:`~recoverkit.store.PartitionView` of the store:
  the lease is the partition's, with its epoch fencing every claim and checkpoint, and the journal is the
  partition's. A partition's state (carts, timers, schedule) moves with it through its fenced checkpoint: the
  new owner restores it and replays the partition's journal after it.

What stays global is the store's: the ledger (a claim checks the partition's epoch, the key, suppression and the
customer's purchases in every partition, in one transaction), purchases, consent and suppression, caps, codes,
facts and dead letters. So a purchase journaled in one partition stops the messages of the same customer's
carts in every other.

The engine's front (:class:`recoverkit.Engine`) keeps its verbs: ``flush()`` and ``checkpoint()`` act on the
partitions this process owns, ``forget()`` journals the request into every partition (each owner erases what
it holds) and answers ``True`` only where this process owns them all, ``statistics()`` adds up the partitions'.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

import anyio
import msgspec

from ._log import get_logger
from ._pipeline import StageStatistics
from ._statistics import EngineStatistics
from ._store_runner import StoreRunner
from .channels.base import Message
from .config import Config
from .errors import EngineStateError, StoreError
from .store._partition_view import PartitionView, SharedStore

__all__ = ["Fleet", "PartitionPipeline", "fair_share"]

_log = get_logger("recoverkit.engine")

#: The shortest tick of a partition's pipeline: each tick reads the partition's journal for what other processes
#: appended, so with many partitions a 10 ms tick would be hundreds of queries a second for nothing. What this
#: process appends reaches its partitions at once (:meth:`Fleet.appended`); timers fire within this much.
PARTITION_TICK = 0.1
#: How many partitions are started (taken, restored) at once: enough that a take-over after a death takes every
#: free lease at once (restoring 8 at a time left the last partitions of a dead process unowned for seconds).
START_AT_ONCE = 32


def fair_share(partitions: int, members: list[str], owner: str) -> int:
    """How many of ``partitions`` ``owner`` should run among the live ``members`` (sorted; ``owner`` is added
    if missing): ``partitions // n``, plus one for the first ``partitions % n`` members."""
    live = sorted({*members, owner})
    base, extra = divmod(partitions, len(live))
    return base + (1 if live.index(owner) < extra else 0)


class PartitionPipeline(Protocol):
    """What the fleet needs of the pipeline it runs for one partition (an :class:`~recoverkit.Engine` on a
    :class:`~recoverkit.store.PartitionView`)."""

    @property
    def is_owner(self) -> bool: ...

    async def start(self) -> None: ...

    async def aclose(self, timeout: float = 10.0) -> None: ...

    async def flush(self, *, end_of_input: bool = False) -> None: ...

    async def checkpoint(self) -> int | None: ...

    def pending_messages(self) -> list[Message]: ...

    def statistics(self) -> EngineStatistics: ...

    def _grew(self, head: int) -> None: ...

    def _taking_over(self) -> bool: ...

    def _hold_to(self, floor: float, head: int) -> None: ...


class _Slot:
    """One partition's pipeline and the events of the task it lives in."""

    __slots__ = ("done", "failed", "pipeline", "ready", "stop")

    def __init__(self, pipeline: PartitionPipeline) -> None:
        self.pipeline = pipeline
        self.ready = anyio.Event()  # started (owner or not), or failed
        self.stop = anyio.Event()  # close it and end the task
        self.done = anyio.Event()  # closed
        self.failed = False


class Fleet:
    """The partitions one engine process runs; see the module docstring.

    ``make(view)`` builds the pipeline of one partition (unstarted). ``runner`` is the engine's one way to the
    store. ``pipeline=False`` (a web process beside dedicated workers) journals only and owns no partition.
    """

    def __init__(
        self,
        config: Config,
        store: SharedStore,
        runner: StoreRunner,
        *,
        owner: str,
        make: Callable[[PartitionView], PartitionPipeline],
        pipeline: bool = True,
    ) -> None:
        self._config = config
        self._store = store
        self._call = runner
        self.owner = owner
        self._make = make
        self.runs_pipeline = pipeline
        self.partitions = store.partitions
        self._slots: dict[int, _Slot] = {}
        self._spawn: Callable[[Callable[[], Coroutine[Any, Any, None]], str], None] | None = None
        self.members: list[str] = []
        self.share = 0
        self.taken = 0  # partitions this process started running
        self.handed_over = 0  # partitions it gave up while running (above its share, or closing)
        self.lost = 0  # partitions whose lease passed to another process under it (a stall past the lease)
        self._grown: dict[int, int] = {}  # partition -> highest position journaled here, not yet told
        self._grown_lock = threading.Lock()
        self._balancing: anyio.Lock | None = None
        self._closing = False
        #: In event time: this process's name as a writer (see :meth:`keep_floor`); ``None`` live.
        self.writer: str | None = None
        #: In event time: the slowest writer's mark, last read (nothing is known to be written before it is read).
        self._floor = -math.inf
        self._heads: list[int] = []  # the partitions' heads read just after the marks

    # -- membership and balance -----------------------------------------------------------------------------

    async def start(self, spawn: Callable[[Callable[[], Coroutine[Any, Any, None]], str], None]) -> None:
        """Join the members and take this process's share of the free partitions (restored) before returning.

        ``spawn(task, name)`` runs a task beside the engine's stages: each partition's pipeline lives in one
        task of its own, started and closed there (a task group is left by the task that entered it).
        """
        self._spawn = spawn
        self._balancing = anyio.Lock()
        if self.writer is not None and not self.runs_pipeline:
            # A producer registers before it writes, so the partitions wait for it from now on. (An engine that
            # runs partitions registers with its first append: one that only processes must hold nobody back.)
            await self._call(self._store.mark_writer, self.writer, -math.inf)
        if self.runs_pipeline:
            await self.balance()

    async def keep_reading(self, *, event_time: bool) -> None:
        """Every :data:`PARTITION_TICK` s, read the partitions' heads in one query and have the pipelines of the
        partitions that grew read them (what other processes journaled; a partition's own ticks do not ask the
        store, so an idle engine costs one query a tick, however many partitions it runs). In event time, also
        hold each partition's watermark to the slowest writer's mark (a replay journaled by several processes)."""
        if not self.runs_pipeline:
            return
        while not self._closing:
            try:
                # The marks first, then the heads: a mark is published after its events commit, so the heads read
                # next cover every event it vouches for.
                marks = await self._call(self._store.writer_marks) if event_time else {}
                heads = await self._call(self._store.partition_heads)
            except StoreError as exc:
                _log.error("partition_heads_failed", error=str(exc))
            else:
                self._heads = heads
                if event_time:
                    self._floor = min(marks.values(), default=math.inf)
                for part, slot in list(self._slots.items()):
                    if event_time:
                        slot.pipeline._hold_to(self._floor, heads[part])
                    else:
                        slot.pipeline._grew(heads[part])
            await anyio.sleep(PARTITION_TICK)

    async def keep_balance(self) -> None:
        """Heartbeat and rebalance every ``lease_ttl / 5`` seconds until the engine closes."""
        if not self.runs_pipeline:
            return
        period = self._config.store.lease_ttl / 5
        while not self._closing:
            await anyio.sleep(period)
            try:
                await self.balance()
            except StoreError as exc:  # the store is unreachable: the partitions' own leases say what is safe
                _log.error("partition_balance_failed", error=str(exc))

    async def balance(self) -> None:
        """One round: heartbeat, drop pipelines that lost their partition, hand over what is above the share,
        take free partitions up to it."""
        assert self._balancing is not None
        async with self._balancing:
            if self._closing:
                return
            ttl = self._config.store.lease_ttl
            self.members = await self._call.lease(self._store.heartbeat, self.owner, ttl=ttl, now=time.time())
            self.share = fair_share(self.partitions, self.members, self.owner)
            for part, slot in list(self._slots.items()):
                if not slot.pipeline.is_owner and not slot.pipeline._taking_over():
                    self.lost += 1  # another process holds it: this one's state is stale, its writes fenced
                    _log.warning("partition_lost", partition=part, owner=self.owner)
                    await self._stop(part)
            owned = sorted(self._slots)
            if len(owned) > self.share:
                for part in reversed(owned[self.share :]):
                    self.handed_over += 1
                    await self._stop(part)
                _log.info("partitions_handed_over", owner=self.owner, share=self.share, members=len(self.members))
            elif len(owned) < self.share:
                leases = await self._call.lease(self._store.partition_leases)
                free = [lease.partition for lease in leases if lease.owner is None and lease.partition not in owned]
                await self._start_many(free[: self.share - len(owned)])

    @property
    def pipelines(self) -> dict[int, PartitionPipeline]:
        """The pipelines of the partitions this process runs (owns, or is taking over), by partition."""
        # A copy first: statistics() may be read from another thread (a metrics scrape) while a round changes it.
        return {part: slot.pipeline for part, slot in list(self._slots.items())}

    async def _start_many(self, parts: list[int]) -> None:
        limiter = anyio.CapacityLimiter(START_AT_ONCE)

        async def one(part: int) -> None:
            async with limiter:
                await self._start(part)

        async with anyio.create_task_group() as group:
            for part in parts:
                group.start_soon(one, part)

    async def _start(self, part: int) -> None:
        slot = _Slot(self._make(PartitionView(self._store, part)))
        if self.writer is not None:  # before it reads anything: a new pipeline's own floor is none
            slot.pipeline._hold_to(self._floor, self._heads[part] if self._heads else 0)
        assert self._spawn is not None
        self._spawn(lambda: self._host(slot), f"recoverkit-partition-{part}")
        await slot.ready.wait()
        if slot.failed or not slot.pipeline.is_owner:  # it failed to start, or another process took it first
            slot.stop.set()
            await slot.done.wait()
            return
        self._slots[part] = slot
        self.taken += 1
        with self._grown_lock:
            head = self._grown.pop(part, None)
        if head is not None:
            slot.pipeline._grew(head)

    async def _host(self, slot: _Slot) -> None:
        """The task one partition's pipeline lives in: started, run until told to stop, closed."""
        try:
            try:
                await slot.pipeline.start()
            except Exception as exc:  # the store failed during the take-over: the next round tries again
                slot.failed = True
                _log.error("partition_start_failed", error=str(exc))
                return
            finally:
                slot.ready.set()
            try:
                await slot.stop.wait()
            finally:
                # A clean close, also when the engine's tasks are being cancelled (aclose shields itself, and
                # must leave the pipeline's task group from this task's own scope): what is journaled is read,
                # deliveries in flight finish, the last checkpoint is written (fenced: refused if the partition
                # already passed on) and the lease released, so the next owner takes it at once.
                await slot.pipeline.aclose(self._config.store.lease_ttl)
        finally:
            slot.done.set()

    async def _stop(self, part: int) -> None:
        slot = self._slots.pop(part)
        slot.stop.set()
        await slot.done.wait()

    async def close(self) -> None:
        """Leave the members and hand every partition over (each closed, its lease released)."""
        self._closing = True
        if self._balancing is None:
            return  # never started
        with anyio.CancelScope(shield=True):
            async with self._balancing:
                if self.runs_pipeline:
                    try:
                        await self._call.lease(self._store.leave, self.owner)
                    except StoreError as exc:
                        _log.warning("partition_leave_failed", error=str(exc))
                if self.writer is not None:  # it has written all it will: the others need not wait for it
                    try:
                        await self._call(self._store.drop_writer, self.writer)
                    except StoreError as exc:
                        _log.warning("writer_drop_failed", error=str(exc))
                async with anyio.create_task_group() as group:
                    for part in list(self._slots):
                        self.handed_over += 1
                        group.start_soon(self._stop, part)

    # -- what this process journaled ------------------------------------------------------------------------

    def appended(self, heads: dict[int, int]) -> None:
        """The journal committed events up to ``heads`` (partition -> position); called from its thread."""
        with self._grown_lock:
            for part, head in heads.items():
                if head > self._grown.get(part, 0):
                    self._grown[part] = head

    async def nudge(self) -> None:
        """Tell the pipelines of the partitions that grew here to read them (ingest reads them at once)."""
        with self._grown_lock:
            grown, self._grown = self._grown, {}
        for part, head in grown.items():
            slot = self._slots.get(part)
            if slot is not None:
                slot.pipeline._grew(head)

    # -- the verbs, over the partitions owned ---------------------------------------------------------------

    @property
    def owns_all(self) -> bool:
        pipelines = self.pipelines
        return len(pipelines) == self.partitions and all(p.is_owner for p in pipelines.values())

    @property
    def owns_any(self) -> bool:
        return any(p.is_owner for p in self.pipelines.values())

    async def flush(self, *, end_of_input: bool) -> None:
        await self.nudge()
        async with anyio.create_task_group() as group:
            for pipeline in list(self.pipelines.values()):
                group.start_soon(_flush, pipeline, end_of_input)

    async def checkpoint(self) -> int | None:
        """Checkpoint every partition owned; the positions covered, added up (``None`` when none is owned)."""
        covered: list[int] = []
        for pipeline in list(self.pipelines.values()):
            try:
                position = await pipeline.checkpoint()
            except EngineStateError:
                continue  # being handed over: its last checkpoint is written as it closes
            if position is not None:
                covered.append(position)
        return sum(covered) if covered else None

    def pending_messages(self) -> list[Message]:
        pending = [m for p in self.pipelines.values() for m in p.pending_messages()]
        pending.sort(key=lambda m: m.due_at)
        return pending

    def statistics(self, front: EngineStatistics) -> EngineStatistics:
        """The front's journal figures with the partitions' pipeline figures added up."""
        return merge_statistics(front, [p.statistics() for p in list(self.pipelines.values())])

    def status(self) -> dict[str, Any]:
        """What this process does among the members: for ``statistics()`` and operators."""
        return {
            "partitions": self.partitions,
            "owned": sorted(part for part, p in self.pipelines.items() if p.is_owner),
            "share": self.share,
            "members": len(self.members),
            "taken": self.taken,
            "handed_over": self.handed_over,
            "lost": self.lost,
        }


async def _flush(pipeline: PartitionPipeline, end_of_input: bool) -> None:
    # A partition being handed over meanwhile is read to the end and checkpointed as it closes: nothing to wait for.
    with contextlib.suppress(EngineStateError):
        await pipeline.flush(end_of_input=end_of_input)


def _add(into: dict[str, Any], more: Mapping[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            into.setdefault(key, value)
        else:
            into[key] = into.get(key, 0) + value


def _merge_stage(stages: list[StageStatistics]) -> StageStatistics:
    first = stages[0]
    extra: dict[str, Any] = {}
    for stage in stages:
        _add(extra, stage.extra)
    return msgspec.structs.replace(
        first,
        received=sum(s.received for s in stages),
        emitted=sum(s.emitted for s in stages),
        errors=sum(s.errors for s in stages),
        batches=sum(s.batches for s in stages),
        busy_seconds=sum(s.busy_seconds for s in stages),
        queue_depth=sum(s.queue_depth for s in stages),
        queue_peak=max(s.queue_peak for s in stages),
        queue_capacity=sum(s.queue_capacity for s in stages),
        latency_p50=max(s.latency_p50 for s in stages),  # the worst partition's: a bound, not a percentile
        latency_p99=max(s.latency_p99 for s in stages),
        latency_max=max(s.latency_max for s in stages),
        extra=extra,
    )


#: Figures of the front (what this process journaled, its one DeadLetters, the store they all share; its store
#: calls are added to the partitions'), not of the partitions' pipelines (whose own journals write nothing).
_FRONT = frozenset(
    {"events_accepted", "events_invalid", "events_overflow", "events_spilled", "dead_letters", "restored", "store"}
)
_FRONT_AND_PARTS = frozenset({"store_calls", "store_seconds"})


def merge_statistics(front: EngineStatistics, parts: list[EngineStatistics]) -> EngineStatistics:
    """``front`` (what this process journaled) with ``parts`` (its partitions' pipelines) added up: counts and
    figures summed, flags any, the watermark the lowest, each stage's figures merged (latencies the worst
    partition's)."""
    if not parts:
        return msgspec.structs.replace(front, owner=False)
    merged: dict[str, Any] = {}
    for name in EngineStatistics.__struct_fields__:
        if name in _FRONT:
            continue
        values = [getattr(stats, name) for stats in parts]
        first = values[0]
        if name == "stages":
            merged[name] = {stage: _merge_stage([v[stage] for v in values]) for stage in first}
        elif name == "watermark":
            merged[name] = min(values)
        elif isinstance(first, bool):
            merged[name] = any(values)
        elif isinstance(first, dict):
            total: dict[str, Any] = {}
            for value in values:
                _add(total, value)
            merged[name] = total
        else:
            merged[name] = sum(values) + (getattr(front, name) if name in _FRONT_AND_PARTS else 0)
    return msgspec.structs.replace(front, **merged)
