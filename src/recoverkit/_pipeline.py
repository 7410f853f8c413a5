"""The plumbing between stages: batches, bounded links and the statistics every stage keeps.

Stages exchange :class:`Batch` objects rather than single items: an asyncio hand-off costs microseconds, so
moving 256 events per hand-off is what lets five stages keep up with the decoder. Every batch carries the
stream's watermark, the time up to which the stage before has seen everything, so timers downstream fire on
the same clock in the same order whether the engine runs live or replays a file.
"""

from __future__ import annotations

import abc
import math
from time import perf_counter
from typing import Any, ClassVar, Final, Generic, Literal, TypeVar

import anyio
import anyio.lowlevel
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._log import get_logger

__all__ = [
    "Appended",
    "Batch",
    "Control",
    "Drain",
    "LatencyHistogram",
    "Lease",
    "Link",
    "Order",
    "Queue",
    "Stage",
    "StageStatistics",
    "Tick",
]

#: Items a stage handles before letting the event loop run other tasks (see :meth:`Stage.process`). The default
#: ``batch_size``: the batches ingest makes go whole (no cost on the event path); only a fan-out (thousands of
#: timers falling due at once) is split.
HANDLE_STEP: Final = 256

T = TypeVar("T")


class Control:
    """An order that travels through every stage behind the items sent before it: an aligned barrier.

    Because links are FIFO and each stage applies the order after handling the batch that carries it, every
    stage sees it at the same point of the stream: when a checkpoint collects each stage's
    :meth:`Stage.snapshot`, the snapshots together are the pipeline's state as of one journal position, and a
    restore replaces every stage's state at one point too (no stage mixes old and new state).
    ``states`` maps stage names to encoded state: filled in by a checkpoint, read by a restore. ``done`` is
    set once the last stage has applied the order.
    """

    __slots__ = ("done", "kind", "position", "restored", "states")

    def __init__(self, kind: Literal["checkpoint", "restore"], position: int, states: dict[str, bytes]) -> None:
        self.kind = kind
        self.position = position
        self.states = states
        #: A restore: each stage's statistics right after it (counters a checkpoint carries go on from these).
        self.restored: dict[str, StageStatistics] = {}
        self.done = anyio.Event()

    async def enact(self, stage: Stage, *, last: bool) -> None:
        """:meth:`apply`, with a checkpoint taken by :meth:`Stage.snapshot_soon`: a stage whose state is large
        encodes it a part at a time and lets the event loop run in between (its own state cannot change
        meanwhile: only its own task changes it, and that task is here)."""
        if self.kind != "checkpoint":
            self.apply(stage, last=last)
            return
        self.states[stage.name] = await stage.snapshot_soon()
        if last:
            self.done.set()

    def apply(self, stage: Stage, *, last: bool) -> None:
        if self.kind == "checkpoint":
            self.states[stage.name] = stage.snapshot()
        else:
            stage.restore(self.states.get(stage.name))
            self.restored[stage.name] = stage.statistics()
        if last:
            self.done.set()


class Batch(Generic[T]):
    """Items moving between two stages, the watermark they were produced under, and optional barriers.

    ``barriers`` are events set by the last stage once everything before them has been handled and nothing is
    in flight (:meth:`recoverkit.Engine.flush` uses them). ``control`` is applied by each stage after the
    items (see :class:`Control`). ``born`` is the ``perf_counter()`` at which ingest created the batch, for
    end-to-end latency figures.
    """

    __slots__ = ("barriers", "born", "control", "items", "watermark")

    def __init__(
        self,
        items: list[T],
        watermark: float,
        born: float,
        barriers: list[anyio.Event] | None = None,
        control: Control | None = None,
    ) -> None:
        self.items = items
        self.watermark = watermark
        self.born = born
        self.barriers = barriers
        self.control = control


class LatencyHistogram:
    """Durations in log-spaced buckets (about 19% wide): constant memory, cheap to record, rough percentiles."""

    __slots__ = ("_buckets", "count", "max", "total")
    _PER_OCTAVE = 4

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def record(self, seconds: float) -> None:
        micros = seconds * 1e6
        index = int(math.log2(micros) * self._PER_OCTAVE) if micros > 1.0 else 0
        self._buckets[index] = self._buckets.get(index, 0) + 1
        self.count += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds

    def buckets(self) -> dict[int, int]:
        """A copy of the counts by bucket index; bucket ``i`` holds the durations up to :meth:`upper_edge` ``(i)``
        (and above the edge of bucket ``i - 1``; bucket 0 also holds everything under a microsecond).

        The copy is one C-level step, atomic under the GIL, so another thread (a metrics scrape) may take it
        while the stage records; ``count`` and ``total`` may then be a record or two ahead of it.
        """
        return dict(self._buckets)

    @classmethod
    def upper_edge(cls, index: int) -> float:
        """The upper edge, in seconds, of bucket ``index``."""
        return float(2.0 ** ((index + 1) / cls._PER_OCTAVE) / 1e6)

    def percentile(self, q: float) -> float:
        """Upper edge, in seconds, of the bucket holding the ``q``-th percentile (0 when empty)."""
        if not self.count:
            return 0.0
        rank = q / 100.0 * self.count
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                return min(2.0 ** ((index + 1) / self._PER_OCTAVE) / 1e6, self.max)  # type: ignore[no-any-return]
        return self.max


class StageStatistics(msgspec.Struct, kw_only=True):
    """What one stage has done since the engine started (a snapshot; it does not update itself).

    ``queue_depth`` and ``queue_peak`` are in batches waiting in front of the stage; latencies are the time
    the stage spent per batch, in seconds.
    """

    name: str
    received: int
    emitted: int
    errors: int
    batches: int
    busy_seconds: float
    queue_depth: int
    queue_peak: int
    queue_capacity: int
    latency_p50: float
    latency_p99: float
    latency_max: float
    extra: dict[str, Any] = {}


class Queue(Generic[T]):
    """A bounded queue of ``T`` into a stage, which remembers how full it got.

    When it is full the sender waits: backpressure travels upstream to ingest, whose own inbox then bounds
    what ``track()`` may buffer.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.send_stream: MemoryObjectSendStream[T]
        self.receive_stream: MemoryObjectReceiveStream[T]
        self.send_stream, self.receive_stream = anyio.create_memory_object_stream[T](capacity)
        self.peak = 0

    async def send(self, item: T) -> None:
        await self.send_stream.send(item)
        depth = self.send_stream.statistics().current_buffer_used
        if depth > self.peak:
            self.peak = depth

    @property
    def depth(self) -> int:
        return self.send_stream.statistics().current_buffer_used

    def close(self) -> None:
        """Close both ends at once (a cancelled or failed stage leaves its streams open)."""
        self.send_stream.close()
        self.receive_stream.close()


class Link(Queue[Batch[T]]):
    """A bounded queue of batches from one stage to the next (ingest to sessionize, and so on)."""


# -- the orders into ingest ---------------------------------------------------------------------------------
#
# The first queue carries orders, not data: ingest reads the data itself, from the journal. Each order says
# what to read and how far to move the watermark.


class Tick:
    """The ticker's order: read what is new and, live, move the watermark to ``clock`` (``-inf`` in event time,
    where time comes from the events). Live, ingest also asks the store, for what other processes journaled."""

    __slots__ = ("clock",)

    def __init__(self, clock: float) -> None:
        self.clock = clock


class Appended:
    """This process journaled events (a submit): read them, from the cache when it holds them."""

    __slots__ = ()


class Drain:
    """Everything journaled so far must go through: read it all (asking the store too), move the watermark to
    ``mark`` (live, the clock; ``+inf`` in event time: the end of input, release everything held; ``-inf``:
    no time), and pass ``barrier`` on, to be set once the last stage has handled what came before it."""

    __slots__ = ("barrier", "mark")

    def __init__(self, mark: float, barrier: anyio.Event) -> None:
        self.mark = mark
        self.barrier = barrier


#: What the first queue carries: the orders above, and the checkpoint and restore barriers.
Order = Tick | Appended | Drain | Control


class Lease:
    """Whether this process holds the pipeline lease: written by the engine's ownership component alone, read
    by ingest (which reads the journal only while it is held) and by the engine's front."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = False


class Stage(abc.ABC):
    """A pipeline stage: receives batches from its link, handles each item, sends what it produces on.

    Subclasses implement :meth:`handle` (per batch of items) and :meth:`advance` (the watermark moved: fire
    timers). A failure while handling one item is counted and logged by the subclass and never stops the
    stage; :meth:`run` itself only ends when its input is closed.
    """

    name: ClassVar[str]

    def __init__(self) -> None:
        self.log = get_logger(f"recoverkit.{self.name}")
        self.received = 0
        self.emitted = 0
        self.errors = 0
        self.batches = 0
        self.latency = LatencyHistogram()
        self.watermark = -math.inf
        self.inbox: Queue[Any] | None = None

    @abc.abstractmethod
    def handle(self, items: list[Any], out: list[Any]) -> None:
        """Handle ``items`` in order, appending what goes downstream to ``out``."""

    def advance(self, watermark: float, out: list[Any]) -> None:  # noqa: B027 - optional hook
        """The watermark moved forward to ``watermark``: fire what is due, appending to ``out``."""

    def extra_statistics(self) -> dict[str, Any]:
        """Stage-specific figures for :meth:`statistics`."""
        return {}

    @abc.abstractmethod
    def snapshot(self) -> bytes:
        """The stage's state (and counters), encoded, as of the items handled so far."""

    async def snapshot_soon(self) -> bytes:
        """:meth:`snapshot`, for a checkpoint taken in the stage's own task: the same bytes, but a stage may
        encode a large state in parts and yield to the event loop between them, so that a checkpoint does
        not stall deliveries and ``track()`` for the whole encoding."""
        return self.snapshot()

    @abc.abstractmethod
    def restore(self, state: bytes | None) -> None:
        """Replace the stage's whole state with ``state`` from :meth:`snapshot`; ``None`` means empty."""

    async def run(self, inbox: Link[Any], outbox: Link[Any] | None) -> None:
        self.inbox = inbox
        async with inbox.receive_stream:
            async for batch in inbox.receive_stream:
                await self.process(batch, outbox)
        if outbox is not None:
            await outbox.send_stream.aclose()

    async def process(self, batch: Batch[Any], outbox: Link[Any] | None) -> None:
        started = perf_counter()
        out: list[Any] = []
        items = batch.items
        if len(items) <= HANDLE_STEP:
            self.handle(items, out)
        else:
            # A large batch (thousands of timers falling due at once fan out into one) is handled in steps, letting
            # the event loop run between them: handled whole, each stage of each partition held the loop for
            # hundreds of milliseconds in turn, and the lease's renewal waited seconds for its turn (CI, stop 22).
            # The items are handled in the same order, and the watermark moves only after the last, as before.
            for start in range(0, len(items), HANDLE_STEP):
                self.handle(items[start : start + HANDLE_STEP], out)
                await anyio.lowlevel.checkpoint()
        moved = batch.watermark > self.watermark
        if moved:
            self.watermark = batch.watermark
            self.advance(batch.watermark, out)
        self.received += len(batch.items)
        self.emitted += len(out)
        self.batches += 1
        self.latency.record(perf_counter() - started)
        if batch.control is not None:
            await batch.control.enact(self, last=outbox is None)
        if outbox is not None and (out or moved or batch.barriers or batch.control):
            batch.items = out
            await outbox.send(batch)

    def statistics(self) -> StageStatistics:
        inbox = self.inbox
        return StageStatistics(
            name=self.name,
            received=self.received,
            emitted=self.emitted,
            errors=self.errors,
            batches=self.batches,
            busy_seconds=self.latency.total,
            queue_depth=inbox.depth if inbox else 0,
            queue_peak=inbox.peak if inbox else 0,
            queue_capacity=inbox.capacity if inbox else 0,
            latency_p50=self.latency.percentile(50),
            latency_p99=self.latency.percentile(99),
            latency_max=self.latency.max,
            extra=self.extra_statistics(),
        )
