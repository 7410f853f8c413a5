"""Stage 1, ingest: accept raw events without blocking the shop, validate them, put them in time order.

Two ways in:

- ``track()`` (any thread, never blocks, never raises): appends the raw event to an in-memory inbox, a
  ``collections.deque`` whose ``append`` is atomic under the GIL and costs a fraction of a microsecond. The
  stage drains it every ``tick_interval`` and whenever it wakes for other work. When the inbox holds
  ``inbox_capacity`` events, ``track()`` refuses further events and counts them as ``overflow``.
- ``submit()`` (async, from the engine's own loop): waits for room, which is how a replay applies backpressure.

Decoding happens here, in the engine's loop, not in the request thread. An invalid event is counted by reason
(``malformed_json``, ``unknown_event``, ``wrong_type``, ``missing_field``, ``too_large``, ``bad_value``) and
logged with its reason and field, never its content; everything else carries on.

In event time the stage holds events in a reorder buffer until the watermark (latest event time minus
``allowed_lateness``) passes them, so the sessionizer sees them in time order; an event older than the
watermark on arrival is still passed on, at once, and counted as ``late``.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, deque
from time import perf_counter
from typing import Any

import msgspec

from ._pipeline import Batch, Link, Stage
from .clock import Clock, EventClock
from .config import Config
from .errors import InvalidEvent
from .events import BaseEvent, Event, Purchase, decode_event, normalize_timestamp

__all__ = ["Ingest"]

# Log the first few invalid events of each reason, then one in this many, so an attack or a broken client
# cannot flood the shop's logs while every invalid event is still counted.
_LOG_FIRST = 10
_LOG_EVERY = 1000
_EPOCH_MIN = 946_684_800.0
_EPOCH_MAX = 4_102_444_800.0


def _rank(event: BaseEvent) -> int:
    # Tie-break for events with the same timestamp: a purchase sorts after the cart activity of the same
    # instant, so "added and bought in the same second" ends bought whatever order the two arrived in.
    return 1 if type(event) is Purchase else 0


class Ingest(Stage):
    """Validates raw events, stamps missing times, and hands on time-ordered batches with a watermark."""

    name = "ingest"

    def __init__(self, config: Config, clock: Clock) -> None:
        super().__init__()
        self._config = config
        self._clock = clock
        self._event_time = clock.event_time
        self._lateness = config.allowed_lateness if clock.event_time else 0.0
        self._batch_size = config.batch_size
        self._capacity = config.inbox_capacity
        #: Raw events from ``track()``, drained by the stage; bounded by ``inbox_capacity``.
        self.pending: deque[Any] = deque()
        self.accepted = 0
        self.overflow = 0
        self.late = 0
        self.invalid: Counter[str] = Counter()
        self._reorder: list[tuple[float, int, int, Event]] = []
        self._seq = 0
        self._max_ts = -math.inf
        #: Event time of the first event and the latest event time seen (event-time mode only).
        self.first_event_at: float | None = None

    @property
    def last_event_at(self) -> float | None:
        return self._max_ts if self._max_ts > -math.inf else None

    # -- the ways in ----------------------------------------------------------------------------------------

    def track(self, raw: Any) -> bool:
        """Queue ``raw`` for validation; ``False`` (and counted) when the inbox is full. Thread-safe."""
        if len(self.pending) >= self._capacity:
            self.overflow += 1  # approximate under contention between threads; it is a statistic
            return False
        self.pending.append(raw)
        return True

    # -- the stage ------------------------------------------------------------------------------------------

    async def run(self, inbox: Link[Any], outbox: Link[Any] | None) -> None:
        self.inbox = inbox
        assert outbox is not None  # internal wiring, not user input
        async with inbox.receive_stream:
            async for command in inbox.receive_stream:
                await self._process_command(command, outbox)
        await self._drain(outbox, None, None)
        await outbox.send_stream.aclose()

    async def _process_command(self, command: Batch[Any], outbox: Link[Any]) -> None:
        # ``command.items`` are raw events from submit(); ``command.watermark`` is the live clock on a tick,
        # +inf to mean "end of input: release everything", or -inf when it carries no time.
        if command.items:
            await self._emit(self._accept(command.items), outbox, None)
        await self._drain(outbox, command.watermark, command.barriers)

    async def _drain(self, outbox: Link[Any], clock_mark: float | None, barriers: list[Any] | None) -> None:
        """Accept everything ``track()`` queued, then move the watermark and release what it passed."""
        pending = self.pending
        while pending:
            chunk = [pending.popleft() for _ in range(min(len(pending), self._batch_size * 4))]
            await self._emit(self._accept(chunk), outbox, None)
        if self._event_time:
            end = clock_mark == math.inf  # end of input: everything seen so far is complete
            watermark = self._max_ts if end else self._max_ts - self._lateness
            released = self._release(math.inf if end else watermark)
        else:
            live = clock_mark is not None and clock_mark > -math.inf
            watermark = clock_mark if live else self.watermark  # type: ignore[assignment]
            released = []
        watermark = max(watermark, self.watermark)
        if released or watermark > self.watermark or barriers:
            await self._emit(released, outbox, barriers, watermark)

    def handle(self, items: list[Any], out: list[Any]) -> None:  # the Stage API, used by tests and tools
        out.extend(self._accept(items))

    def _accept(self, raws: list[Any]) -> list[Event]:
        """Decode and time-stamp ``raws``; in event time they go to the reorder buffer instead of the result."""
        started = perf_counter()
        out: list[Event] = []
        # Events without ``ts`` happen "now": the wall clock live, the latest event time in a replay.
        now = self._max_ts if self._event_time else self._clock.now()
        reorder = self._reorder
        event_time = self._event_time
        rejected = 0
        for raw in raws:
            try:
                event = decode_event(raw)
                ts = event.ts
                if type(ts) is not float or not (_EPOCH_MIN <= ts <= _EPOCH_MAX):
                    if event_time:  # the latest event time, including events earlier in this batch
                        now = self._max_ts
                    if ts is None and now == -math.inf:
                        raise InvalidEvent(
                            "`$.ts` is missing and no event time is known yet; expected a timestamp on the "
                            "first event of a replay",
                            reason="missing_field",
                            field="$.ts",
                        )
                    ts = normalize_timestamp(ts, now)
                    event = msgspec.structs.replace(event, ts=ts)
            except InvalidEvent as exc:
                rejected += 1
                self._reject(exc)
                continue
            except Exception as exc:  # a Struct built in Python with nonsense in it; never stop the stage
                rejected += 1
                self._reject(InvalidEvent(f"{type(exc).__name__}: {exc}", reason="bad_value"))
                continue
            if event_time:
                if ts > self._max_ts:
                    if self._max_ts == -math.inf:
                        self.first_event_at = ts
                    self._max_ts = ts
                elif ts < self.watermark:
                    self.late += 1
                self._seq += 1
                heapq.heappush(reorder, (ts, _rank(event), self._seq, event))
            else:
                out.append(event)
        self.accepted += len(raws) - rejected
        self.received += len(raws)
        self.latency.record(perf_counter() - started)
        return out

    def _release(self, watermark: float) -> list[Event]:
        """Pop every buffered event at or before ``watermark`` in (time, rank, arrival) order."""
        reorder = self._reorder
        out: list[Event] = []
        pop = heapq.heappop
        while reorder and reorder[0][0] <= watermark:
            out.append(pop(reorder)[3])
        return out

    def _reject(self, exc: InvalidEvent) -> None:
        self.errors += 1
        count = self.invalid[exc.reason] = self.invalid[exc.reason] + 1
        if count <= _LOG_FIRST or count % _LOG_EVERY == 0:
            # The reason and the JSON path only: the message may quote a value, and values can be personal.
            self.log.warning("invalid_event", reason=exc.reason, field=exc.field, count=count)

    async def _emit(
        self,
        events: list[Event],
        outbox: Link[Any],
        barriers: list[Any] | None,
        watermark: float | None = None,
    ) -> None:
        """Send ``events`` downstream in batches; only the last batch carries the new watermark and barriers.

        The earlier batches keep the old watermark so that no timer downstream fires before every event up to
        the new watermark has been handled.
        """
        if not events and watermark is None and not barriers:
            return
        self.emitted += len(events)
        size = self._batch_size
        chunks = [events[i : i + size] for i in range(0, len(events), size)] or [events]
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            mark = watermark if (last and watermark is not None) else self.watermark
            self.batches += 1
            await outbox.send(Batch(chunk, mark, perf_counter(), barriers if last else None))
        if watermark is not None:
            self.watermark = watermark
            if isinstance(self._clock, EventClock):
                self._clock.observe(watermark)

    def extra_statistics(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "invalid": dict(self.invalid),
            "overflow": self.overflow,
            "late": self.late,
            "inbox": len(self.pending),
            "reorder_buffer": len(self._reorder),
        }
