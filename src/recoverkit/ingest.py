"""Stage 1, ingest: journal what ``track()`` queued, read the journal in order, and put events in time order.

Events reach the pipeline through the store's journal (see :mod:`recoverkit.journal`): ``track()`` queues them
in the journal's inbox and ``submit()`` journals them at once. This stage owns that way in: it journals the
inbox (:meth:`Ingest.journal_inbox`, on every tick and before a flush or close, in every process) and, in the
process that holds the pipeline lease, reads the journal from its ``position`` (the last ``seq`` it has read)
whenever an order arrives on its queue (:class:`~recoverkit._pipeline.Tick`, ``Appended``, ``Drain``, or a
checkpoint or restore barrier). Events this process journaled itself come from an in-memory cache; the rest
(other workers' events, a backlog) are read from the store in chunks, so memory stays bounded however far
behind the pipeline is. Every store call goes through the one :class:`~recoverkit._store_runner.StoreRunner`.

In event time the stage holds events in a reorder buffer until the watermark (latest event time minus
``allowed_lateness``) passes them, so the sessionizer sees them in time order; an event older than the
watermark on arrival is still passed on, at once, and counted as ``late``. Live, events go on as read, and the
watermark is the engine's clock, moved only once everything journaled before the tick has been read, so no
timer fires ahead of events already accepted.

The stage's state (position, watermark, reorder buffer) is part of every checkpoint.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from time import perf_counter
from typing import Any, Final

import anyio
import msgspec

from ._pipeline import Batch, Control, Drain, Lease, Link, Order, Queue, Stage, Tick
from ._store_runner import StoreRunner
from .clock import Clock, EventClock
from .config import Config
from .errors import InvalidEvent
from .events import Event, Purchase, decode_event
from .journal import Journal
from .privacy import Forget, decode_record
from .store.base import JournalEntry

__all__ = ["Ingest"]

#: Journal entries read from the store at a time when catching up.
READ_CHUNK: Final = 4096


def _rank(event: Any) -> int:
    # Tie-break for events with the same timestamp: a purchase sorts after the cart activity of the same
    # instant, so "added and bought in the same second" ends bought whatever order the two arrived in.
    return 1 if type(event) is Purchase else 0


class _State(msgspec.Struct, array_like=True):
    position: int
    watermark: float
    max_ts: float
    first_event_at: float | None
    late: int
    read: int
    seq: int
    reorder: list[tuple[float, int, int, bytes]]


class Ingest(Stage):
    """Journals the inbox, reads the journal from ``position`` and hands on time-ordered batches with a watermark.

    ``store`` runs every store call (journaling the inbox, reading the journal back); ``lease`` says whether
    this process holds the pipeline lease (:attr:`active`): a stage that is not active journals the inbox but
    reads nothing, and only passes barriers on.
    """

    name = "ingest"

    def __init__(self, config: Config, clock: Clock, journal: Journal, store: StoreRunner, lease: Lease) -> None:
        super().__init__()
        self._clock = clock
        self._journal = journal
        self._store = store
        self._lease = lease
        self._inbox_lock: anyio.Lock | None = None
        self._event_time = clock.event_time
        self._lateness = config.allowed_lateness if clock.event_time else 0.0
        self._batch_size = config.batch_size
        self.position = 0
        self.late = 0
        #: Events read back from the store rather than from this process's cache.
        self.read_back = 0
        self.journal_errors = 0
        # The reorder buffer, in two parts: ``_ready``, events that arrived in (time, rank) order, appended at its
        # end and released from ``_head`` on (a replay's input is in order: no heap work at all), with their times
        # and arrival numbers in two lists beside it (floats and ints: no object per event for the garbage
        # collector to track); and ``_reorder``, a heap of (ts, rank, arrival, event) for the ones that arrived out
        # of order. Releasing merges the two, so the order out is (time, rank, arrival) whichever part an event
        # waited in.
        self._ready: list[Event] = []
        self._ready_ts: list[float] = []
        self._ready_seq: list[int] = []
        self._head = 0
        self._reorder: list[tuple[float, int, int, Event]] = []
        self._seq = 0
        self._max_ts = -math.inf
        #: Event time of the first event and the latest event time seen (event-time mode only).
        self.first_event_at: float | None = None
        # Event time, a partition's pipeline: the lowest mark of the processes journaling (see
        # recoverkit.store.PartitionedStore.mark_writer), which the watermark does not pass; and the next one, with
        # the journal position it applies from (every event committed before that mark was read is at or below it).
        self._writers_floor = math.inf
        #: Whether a live tick asks the store for what other processes journaled (a partition's pipeline does not:
        #: its fleet reads every partition's head in one query and tells it what grew).
        self.polls = True
        self._next_floor: tuple[int, float] | None = None

    @property
    def journal(self) -> Journal:
        """The journal this stage reads, and whose inbox it journals."""
        return self._journal

    @property
    def last_event_at(self) -> float | None:
        return self._max_ts if self._max_ts > -math.inf else None

    @property
    def active(self) -> bool:
        """Whether this process holds the pipeline lease, so reads the journal (ownership keeps the lease)."""
        return self._lease.held

    @property
    def behind(self) -> int:
        """Journal entries this process knows of that the stage has not read yet."""
        return max(self._journal.last_seq - self.position, 0)

    # -- the way in ------------------------------------------------------------------------------------------

    async def journal_inbox(self) -> None:
        """Journal everything ``track()`` has queued, in the order it was queued (in any process, owner or not).

        In a worker thread for a store on disk: validating and committing a full inbox takes milliseconds. What
        the store refuses is counted and logged by the journal (``events_overflow``, ``journal_overflow``).
        """
        if not self._journal.pending:
            return
        if self._inbox_lock is None:
            self._inbox_lock = anyio.Lock()
        async with self._inbox_lock:
            if self._journal.pending:
                await self._store(self._journal.drain)

    # -- the stage ------------------------------------------------------------------------------------------

    async def run(self, inbox: Queue[Order], outbox: Link[Any] | None) -> None:  # type: ignore[override]
        self.inbox = inbox
        assert outbox is not None  # internal wiring, not user input
        async with inbox.receive_stream:
            async for order in inbox.receive_stream:
                await self._obey(order, outbox)
        await self.journal_inbox()  # closing: what track() queued last is journaled, for this or the next owner
        if self.active:
            await self._pull(outbox)  # closing: read everything, also what other processes journaled
        await self._drain(outbox, None, None, None)
        await outbox.send_stream.aclose()

    async def _obey(self, order: Order, outbox: Link[Any]) -> None:
        # Tick: the live clock (or -inf in event time); Drain: the clock, +inf for "end of input: release
        # everything", or -inf when it carries no time, and a barrier; a Control: a checkpoint or restore.
        if type(order) is Control and order.kind == "restore":
            order.apply(self, last=False)
            await outbox.send(Batch([], -math.inf, perf_counter(), None, order))
            return
        mark, barriers, control = -math.inf, None, None
        if type(order) is Tick:
            mark = order.clock
        elif type(order) is Drain:
            mark, barriers = order.mark, [order.barrier]
        elif type(order) is Control:
            control = order
        if self.active:
            # Other processes' events are only found by asking the store: on live ticks and before a flush.
            # After this process's own append no query is needed when the cache holds what it wrote.
            poll = (self.polls and not self._event_time and mark > -math.inf) or barriers is not None
            await self._pull(outbox, poll=poll)
        await self._drain(outbox, mark, barriers, control)

    async def _pull(self, outbox: Link[Any], *, poll: bool = True) -> None:
        """Read everything journaled after ``position``: from this process's cache, else from the store.

        Without ``poll`` the store is only read when this process knows it journaled more than the cache had.
        """
        journal = self._journal
        while True:
            events = journal.take(self.position)
            if events is not None:
                last = self.position + len(events)
            else:
                if not poll and journal.last_seq <= self.position:
                    return
                entries = await self._store(journal.read, self.position, READ_CHUNK)
                if not entries:
                    return
                events = self._decode(entries)
                last = entries[-1].seq
                self.read_back += len(entries)
            self.position = last
            started = perf_counter()
            out = self._accept(events)
            self.latency.record(perf_counter() - started)
            if out:
                await self._emit(out, outbox)

    def _decode(self, entries: list[JournalEntry]) -> list[Any]:
        out: list[Any] = []
        for entry in entries:
            try:
                data = entry.data
                out.append(decode_record(data) if data[:1] == b"\x00" else decode_event(data))
            except InvalidEvent as exc:
                # Only events that passed validation are journaled; one that no longer decodes was written by
                # another version or damaged on disk. It is skipped, counted and logged, never fatal.
                self.journal_errors += 1
                self.errors += 1
                self.log.error("journal_entry_invalid", seq=entry.seq, reason=exc.reason, field=exc.field)
        return out

    async def _drain(
        self, outbox: Link[Any], clock_mark: float | None, barriers: list[Any] | None, control: Control | None
    ) -> None:
        """Move the watermark and release what it passed; pass on barriers and a checkpoint order."""
        if self._event_time:
            end = clock_mark == math.inf  # end of input: everything seen so far is complete
            # Not past the slowest writer's mark (several processes journaling one replay): what it has yet to
            # write may belong before the latest event seen here.
            watermark = self._max_ts if end else min(self._max_ts, self._floor()) - self._lateness
            released = self._release(math.inf if end else watermark)
        else:
            live = clock_mark is not None and clock_mark > -math.inf
            watermark = clock_mark if live else self.watermark  # type: ignore[assignment]
            released = []
        watermark = max(watermark, self.watermark)
        if released or watermark > self.watermark or barriers or control:
            await self._emit(released, outbox, barriers, watermark, control)

    def handle(self, items: list[Any], out: list[Any]) -> None:  # the Stage API, used by tests and tools
        out.extend(self._accept([decode_event(item) for item in items]))

    def _accept(self, events: list[Any]) -> list[Any]:
        """Take ``events`` in; in event time they go to the reorder buffer instead of the result."""
        self.received += len(events)
        if not self._event_time:
            return events
        ready, ready_ts, ready_seq, reorder = self._ready, self._ready_ts, self._ready_seq, self._reorder
        last_ts, last_rank = self._last_ready()
        max_ts, watermark, seq = self._max_ts, self.watermark, self._seq
        forgets: list[Any] = []
        for event in events:
            kind = type(event)
            if kind is Forget:
                self._seq, self._max_ts = seq, max_ts
                self._forget_held(event.customer_id)
                forgets.append(event)
                ready, ready_ts, ready_seq, reorder = self._ready, self._ready_ts, self._ready_seq, self._reorder
                last_ts, last_rank = self._last_ready()
                continue
            ts: float = event.ts  # the journal holds final timestamps
            if ts > max_ts:
                if max_ts == -math.inf:
                    self.first_event_at = ts
                max_ts = ts
            elif ts < watermark:
                self.late += 1
            seq += 1
            rank = 1 if kind is Purchase else 0
            if ts > last_ts or (ts == last_ts and rank >= last_rank):
                ready.append(event)
                ready_ts.append(ts)
                ready_seq.append(seq)
                last_ts, last_rank = ts, rank
            else:
                heapq.heappush(reorder, (ts, rank, seq, event))
        self._seq, self._max_ts = seq, max_ts
        return forgets

    def _last_ready(self) -> tuple[float, int]:
        """The time and rank of the last event held in order (an event at or after it keeps the order)."""
        if len(self._ready) > self._head:
            return self._ready_ts[-1], _rank(self._ready[-1])
        return -math.inf, 0

    def _forget_held(self, customer_id: str) -> None:
        """An erasure request: the held events of ``customer_id`` go. Not reordered itself: it applies to
        everything before it in the journal, which includes the events of the customer still held here; those
        go now, and the stages downstream erase the rest."""
        head = self._head
        kept = [
            (event, ts, seq)
            for event, ts, seq in zip(self._ready[head:], self._ready_ts[head:], self._ready_seq[head:], strict=True)
            if event.customer_id != customer_id
        ]
        self._ready = [event for event, _, _ in kept]
        self._ready_ts = [ts for _, ts, _ in kept]
        self._ready_seq = [seq for _, _, seq in kept]
        self._head = 0
        self._reorder = [x for x in self._reorder if x[3].customer_id != customer_id]
        heapq.heapify(self._reorder)

    def hold_to(self, floor: float, position: int) -> None:
        """Hold the event-time watermark to ``floor``, the slowest writer's mark, once this stage has read the
        journal through ``position`` (the head read after the mark: the events it covers are at or below it)."""
        self._next_floor = (position, floor)

    def _floor(self) -> float:
        pending = self._next_floor
        if pending is not None and self.position >= pending[0]:
            self._writers_floor, self._next_floor = pending[1], None
        return self._writers_floor

    def _release(self, watermark: float) -> list[Event]:
        """Take every held event at or before ``watermark``, in (time, rank, arrival) order."""
        ready, ready_ts, reorder, head = self._ready, self._ready_ts, self._reorder, self._head
        if not reorder:
            # In order all along: one binary search and a slice.
            cut = bisect_right(ready_ts, watermark, lo=head)
            out = ready[head:cut]
            head = cut
        else:
            out = []
            end = len(ready)
            while True:
                from_ready = head < end and ready_ts[head] <= watermark
                from_heap = reorder and reorder[0][0] <= watermark
                if from_ready and from_heap:
                    key = (ready_ts[head], _rank(ready[head]), self._ready_seq[head])
                    from_ready = key < reorder[0][:3]
                elif not (from_ready or from_heap):
                    break
                if from_ready:
                    out.append(ready[head])
                    head += 1
                else:
                    out.append(heapq.heappop(reorder)[3])
        if head > 4096 and head * 2 > len(ready):
            # What was released goes, in one move once it is most of the lists.
            del ready[:head], ready_ts[:head], self._ready_seq[:head]
            head = 0
        self._head = head
        return out

    def _held(self) -> list[tuple[float, int, int, Event]]:
        head = self._head
        in_order = zip(self._ready_ts[head:], self._ready_seq[head:], self._ready[head:], strict=True)
        return [(ts, _rank(event), seq, event) for ts, seq, event in in_order] + self._reorder

    async def _emit(
        self,
        events: list[Event],
        outbox: Link[Any],
        barriers: list[Any] | None = None,
        watermark: float | None = None,
        control: Control | None = None,
    ) -> None:
        """Send ``events`` downstream in batches; only the last batch carries the new watermark and orders.

        The earlier batches keep the old watermark so that no timer downstream fires before every event up to
        the new watermark has been handled.
        """
        self.emitted += len(events)
        size = self._batch_size
        chunks = [events[i : i + size] for i in range(0, len(events), size)] or [events]
        old = self.watermark
        if watermark is not None:
            self.watermark = watermark
            if isinstance(self._clock, EventClock):
                self._clock.observe(watermark)
        if control is not None:
            control.position = self.position
            control.apply(self, last=False)  # the snapshot includes the new watermark and what is still held
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            mark = self.watermark if last else old
            self.batches += 1
            await outbox.send(
                Batch(chunk, mark, perf_counter(), barriers if last else None, control if last else None)
            )

    # -- state ----------------------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        encode = msgspec.json.encode
        held = [(ts, rank, seq, encode(event)) for ts, rank, seq, event in self._held()]
        state = _State(
            self.position, self.watermark, self._max_ts, self.first_event_at, self.late, self.received,
            self._seq, held,
        )
        return msgspec.msgpack.encode(state)

    def restore(self, state: bytes | None) -> None:
        if state is None:
            s = _State(0, -math.inf, -math.inf, None, 0, 0, 0, [])
        else:
            s = msgspec.msgpack.decode(state, type=_State)
        self.position = s.position
        self.watermark = s.watermark
        self._max_ts = s.max_ts
        self.first_event_at = s.first_event_at
        self.late = s.late
        self.received = s.read
        self._seq = s.seq
        self._ready, self._ready_ts, self._ready_seq, self._head = [], [], [], 0
        self._reorder = [(ts, rank, seq, decode_event(data)) for ts, rank, seq, data in s.reorder]
        heapq.heapify(self._reorder)
        if isinstance(self._clock, EventClock) and self.watermark > -math.inf:
            self._clock.observe(self.watermark)

    def extra_statistics(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "behind": self.behind,
            "read_back": self.read_back,
            "journal_errors": self.journal_errors,
            "late": self.late,
            "reorder_buffer": len(self._ready) - self._head + len(self._reorder),
        }
