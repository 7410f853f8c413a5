"""The journal: how an accepted event reaches the store before the pipeline acts on it.

Every event the engine accepts is validated, given its final timestamp and appended to the store's journal;
the pipeline (in whichever process holds the pipeline lease) reads the journal in ``seq`` order. Because the
journal sits between the shop and the pipeline, a slow pipeline never makes the shop wait and never loses an
event: what the stages cannot take yet waits on disk, not in memory.

When ``track()`` has accepted an event it is kept, within the window of the durability setting:

- ``"batch"`` (the default): ``track()`` puts the raw event in an in-memory inbox and returns ``True`` at once: the
  event *will be* journaled. The engine journals the inbox in one group commit: at once when the first event of an
  empty inbox wakes its idle loop, and every ``tick_interval`` (10 ms) while it is busy. The inbox has a budget,
  ``inbox_capacity`` events (1,024) and two ticks of age: the ``track()`` call that finds it spent (the engine's
  loop is behind) journals the inbox itself, in order, and callers arriving meanwhile wait for that commit. So a
  process killed with ``kill -9`` loses at most what the inbox holds plus the commit under way: 2 x
  ``inbox_capacity`` events, and at ordinary rates the last tick or two of traffic.
- ``"sync"``: ``track()`` validates the event and journals it before it returns; ``True`` means the event is
  on disk (in SQLite's WAL) and survives ``kill -9`` at any moment after. Concurrent calls from request
  threads share commits. It costs the commit's latency on every call (see ``benchmarks/bench_durability.py``).

A store that refuses writes (disk full, read-only or immutable file, I/O error): the inbox's batch is split
(halves, down to one event) so that what fits is kept; the acknowledged events that do not fit are counted in
``refused`` (``events_overflow``) and logged as ``journal_overflow``. The journal then sets :attr:`Journal.refusing`,
and until a write succeeds again ``track()`` journals each event before it returns, in both modes, so that
``False`` tells the caller the event was not kept (logged as ``journal_append_failed``, then at most every 10 s;
``journal_writable_again`` when it clears). ``docs/durability.md`` ("Accepted means kept") has the figures.

``submit()`` and ``submit_many()`` always return after the commit, whatever the setting.

The owner of the pipeline usually does not read back what it has just written: the events it journaled are
kept decoded in a small bounded cache keyed by ``seq`` and handed straight to ingest. Only events journaled by
other processes, or journaled while the pipeline lagged behind (the cache was full), are read from the store.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections import Counter, deque
from collections.abc import Callable
from time import monotonic
from typing import Any, Final, Literal

import msgspec

from ._log import get_logger
from ._purchases import Purchases
from .clock import Clock
from .config import Config
from .errors import InvalidEvent, StoreError
from .events import CUSTOMER_WIDE, Event, Purchase, decode_event, normalize_timestamp
from .items import Forget
from .store.base import JournalEntry, Store

__all__ = ["Durability", "Journal"]

#: How accepted events are made durable; see the module docstring.
Durability = Literal["batch", "sync"]

_log = get_logger("recoverkit.journal")

#: On a partitioned store, the events also written to every other partition than their session's (see
#: :meth:`Journal._write_keyed`) when they name a customer (or, a purchase, the shop's cart id).
MIRRORED: Final = CUSTOMER_WIDE

# Log the first few invalid events of each reason, then one in this many, so an attack or a broken client
# cannot flood the shop's logs while every invalid event is still counted.
_LOG_FIRST: Final = 10
_LOG_EVERY: Final = 1000
_EPOCH_MIN: Final = 946_684_800.0
_EPOCH_MAX: Final = 4_102_444_800.0
#: ``track()`` journals the inbox itself once its oldest event has waited this many ticks: the engine's loop is
#: behind (a CPU-bound host, a long commit), and a kill -9 would lose what waits.
SPILL_AFTER_TICKS: Final = 2
#: Raw events journaled per commit when the inbox is drained.
DRAIN_CHUNK: Final = 1024
#: Seconds between log lines while the store refuses writes.
REFUSING_LOG_EVERY: Final = 10.0
#: SQLite's primary result codes for a store that cannot take writes at all: full disk (SQLITE_FULL), read-only
#: or immutable file (SQLITE_READONLY, SQLITE_PERM, SQLITE_CANTOPEN), I/O error (SQLITE_IOERR).
_REFUSED_CODES: Final = frozenset(
    {sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR}
)


def _refuses_writes(exc: BaseException) -> bool:
    """Whether ``exc`` says the store cannot write at all now, rather than that one write failed (a lock held by
    another process, a closed store): the former makes the journal split the batch and refuse new events."""
    if isinstance(exc, OSError):
        return True
    cause = exc.__cause__
    code = getattr(cause, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) in _REFUSED_CODES


class Journal:
    """Validates accepted events and appends them to ``store``; thread-safe where the methods say so.

    ``purchases`` records every purchase as it is journaled, for the claims (see :mod:`recoverkit._purchases`);
    by default ahead of the pipeline, as live. A replay in event time passes one that does not record ahead.
    """

    def __init__(
        self,
        config: Config,
        clock: Clock,
        store: Store,
        *,
        durability: Durability = "batch",
        purchases: Purchases | None = None,
    ) -> None:
        self.store = store
        self.durability: Durability = durability
        self._clock = clock
        self._event_time = clock.event_time
        self._purchases = purchases if purchases is not None else Purchases(store, ahead=True)
        # The inbox's budget: what a kill -9 can lose is what it holds plus the one commit under way, so it is
        # bounded by count and by age. Past either, track() journals the inbox itself (see _spill).
        self._capacity = config.inbox_capacity
        self._max_age = SPILL_AFTER_TICKS * config.tick_interval
        self._hot_capacity = max(config.batch_size * config.queue_batches * 4, 1024)
        #: Raw events from ``track()`` waiting to be journaled (batch durability), each with the engine clock's
        #: time when ``track()`` was called (``None`` in event time), the time of an event without ``ts``.
        self.pending: deque[tuple[Any, float | None]] = deque()
        self._pending_since = 0.0  # monotonic time the oldest event in ``pending`` was queued (about)
        # Held by whoever journals the inbox (the engine's drain or a spilling track()), so that events reach the
        # journal in the order track() queued them and a caller over budget waits for the commit under way.
        self._inbox_lock = threading.Lock()
        self._lock = threading.Lock()  # guards the hot cache and the counters written from request threads
        self._hot: dict[int, tuple[int, list[Any]]] = {}  # first seq -> (last seq, events)
        self._hot_size = 0
        self.accepted = 0
        self.spilled = 0
        self.refused = 0
        self.invalid: Counter[str] = Counter()
        self.store_errors = 0
        #: Health flag: the store refused the last write (disk full, read-only or immutable file, I/O error).
        #: Set by a failed append, cleared by the next one that succeeds; while set, ``track()`` journals each
        #: event before it returns, so it returns ``True`` only for events that are on disk.
        self.refusing = False
        self._refusing_logged_at = -math.inf
        #: Called (from the tracking thread) when ``track()`` leaves the engine's loop work: an event put into an
        #: empty inbox (once per filling of the inbox, never per event in it), or journaled by ``track()`` itself
        #: (sync durability, a refusing store, an inbox over budget), for the pipeline to read. An idle ticker
        #: is woken by it.
        self.on_work: Callable[[], None] | None = None
        #: The latest event time journaled: the "now" of events without ``ts`` in a replay.
        self.max_ts = -math.inf
        self.last_seq = 0
        #: The store's journal partitions: more than one, and each event goes to its session's partition
        #: (:mod:`recoverkit._fleet` runs a pipeline per partition).
        self.partitions: int = getattr(store, "partitions", 1)
        #: Called (from the thread that journaled) with ``{partition: highest position}`` after each commit to a
        #: partitioned store, so that the partitions' pipelines in this process read what grew.
        self.on_appended: Callable[[dict[int, int]], None] | None = None
        #: In event time on a partitioned store, this process's name among the writers whose marks the
        #: partitions' watermarks wait for (:meth:`~recoverkit.store.PartitionedStore.mark_writer`).
        self.writer: str | None = None
        #: Hand accepted events to the pipeline without writing them to the store (set by a replay whose store is
        #: its own, in memory: nothing could ever read them back, and copying every line there cost a fifth of a
        #: replay's time and held the lines since the last checkpoint in memory). They still get positions, in
        #: order, and always wait in the cache until ingest takes them; purchases are still recorded.
        self.transient = False

    # -- the ways in ----------------------------------------------------------------------------------------

    def track(self, raw: Any) -> bool:
        """Accept ``raw`` from any thread without waiting on the pipeline; see the module docstring.

        ``"batch"``: ``True`` means the event is in the inbox and will be journaled within the inbox's budget
        (unless the process dies first, or the store refuses the write: then it is counted in ``refused`` and
        logged as ``journal_overflow``). While the store refuses writes (:attr:`refusing`), and with ``"sync"``,
        ``True`` means the event is in the journal. ``False``: the event was invalid (``"sync"``, where it is
        validated here) or could not be journaled (counted in ``refused`` and logged).

        An event without ``ts`` happened when this is called: it is stamped with the engine's clock now (live),
        not when the inbox is journaled, a tick or a ``FakeClock.advance`` later.
        """
        stamp = None if self._event_time else self._clock.now()
        if self.durability == "batch" and not self.refusing:
            pending = self.pending
            if not pending:
                self._pending_since = monotonic()
                pending.append((raw, stamp))
                on_work = self.on_work
                if on_work is not None:
                    on_work()
                return True
            if len(pending) < self._capacity and monotonic() - self._pending_since < self._max_age:
                pending.append((raw, stamp))
                return True
            kept = self._spill(raw, stamp)
        else:
            kept = self._journal_now(raw, stamp)
        # Journaled here (sync, a refusing store, a spill): the pipeline has it to read.
        on_work = self.on_work
        if on_work is not None:
            on_work()
        return kept

    def _journal_now(self, raw: Any, stamp: float | None) -> bool:
        events, datas = self.accept([raw], stamps=[stamp])
        if not events:
            return False
        return self.append(events, datas)

    def _spill(self, raw: Any, stamp: float | None) -> bool:
        """The inbox is over its budget (the engine's loop is behind): journal it from this thread, then queue
        ``raw`` in the emptied inbox. A caller that finds another one journaling waits for it: backpressure."""
        with self._inbox_lock:
            pending = self.pending
            if len(pending) >= self._capacity or (pending and monotonic() - self._pending_since >= self._max_age):
                self.spilled += self._drain_locked()
            if self.refusing:  # the store refused what was just journaled: acknowledge only what it takes
                return self._journal_now(raw, stamp)
            if not pending:
                self._pending_since = monotonic()
            pending.append((raw, stamp))
            return True

    def drain(self) -> int:
        """Journal everything in the inbox, in the order it was queued; the number of events taken from it.

        Blocks for the commits (call it from a thread, or inline for a store in memory). What the store refuses
        is counted in ``refused`` and logged (``journal_overflow``); everything before it is kept.
        """
        with self._inbox_lock:
            return self._drain_locked()

    def _drain_locked(self) -> int:
        pending = self.pending
        taken = 0
        while pending:
            queued = [pending.popleft() for _ in range(min(len(pending), DRAIN_CHUNK))]
            taken += len(queued)
            events, datas = self.accept([raw for raw, _ in queued], stamps=[stamp for _, stamp in queued])
            if events:
                self._append_keeping(events, datas)
        return taken

    def accept(
        self, raws: list[Any], *, raise_invalid: bool = False, stamps: list[float | None] | None = None
    ) -> tuple[list[Event], list[bytes]]:
        """Validate and time-stamp ``raws``: the valid events and the bytes to journal for each.

        ``stamps`` (one per raw event) is when each was tracked, the time given to one without ``ts``; by default
        (and for ``None``) the engine's clock now, or in event time the latest event time accepted.

        Invalid events are counted by reason and logged without their content (and, with ``raise_invalid``,
        the first one's :class:`~recoverkit.errors.InvalidEvent` is raised).
        """
        events: list[Event] = []
        datas: list[bytes] = []
        event_time = self._event_time
        encode = msgspec.json.encode
        for index, raw in enumerate(raws):
            try:
                event = decode_event(raw)
                ts = event.ts
                if type(ts) is float and _EPOCH_MIN <= ts <= _EPOCH_MAX:
                    data = raw if type(raw) is bytes else encode(event)
                else:
                    # Events without ``ts`` happen "now": the wall clock live, the latest event time in a replay.
                    stamp = stamps[index] if stamps is not None else None
                    now = stamp if stamp is not None else self.max_ts if event_time else self._clock.now()
                    if ts is None and now == -math.inf:
                        raise InvalidEvent(
                            "`$.ts` is missing and no event time is known yet; expected a timestamp on the "
                            "first event of a replay",
                            reason="missing_field",
                            field="$.ts",
                        )
                    ts = normalize_timestamp(ts, now)
                    event = msgspec.structs.replace(event, ts=ts)
                    data = encode(event)  # the journal keeps the time given here, so a restart agrees
            except InvalidEvent as exc:
                self.reject(exc)
                if raise_invalid:
                    raise
                continue
            except Exception as exc:  # a Struct built in Python with nonsense in it; never stop the engine
                error = InvalidEvent(f"{type(exc).__name__}: {exc}", reason="bad_value")
                self.reject(error)
                if raise_invalid:
                    raise error from exc
                continue
            if ts > self.max_ts:
                self.max_ts = ts
            events.append(event)
            datas.append(data)
        return events, datas

    def reject(self, exc: InvalidEvent) -> None:
        with self._lock:
            count = self.invalid[exc.reason] = self.invalid[exc.reason] + 1
        if count <= _LOG_FIRST or count % _LOG_EVERY == 0:
            # The reason and the JSON path only: the message may quote a value, and values can be personal.
            _log.warning("invalid_event", reason=exc.reason, field=exc.field, count=count)

    # -- writing (blocking: call from a thread, or inline for a store in memory) ----------------------------

    def append(self, events: list[Any], datas: list[bytes]) -> bool:
        """Journal ``events`` (and record their purchases), then offer them to the hot cache: all or none.

        Blocks for the store's commit. Returns ``False`` (counted in ``refused``, logged) when the store failed:
        none of the events was accepted.
        """
        if not events:
            return True
        error = self._write(events, datas)
        self._settle(error)
        if error is None:
            return True
        with self._lock:
            self.refused += len(events)
        self._log_failure("journal_append_failed", error, len(events), kept=0)
        return False

    def _append_keeping(self, events: list[Any], datas: list[bytes]) -> int:
        """Journal what the store takes of ``events``, in order; count and log the rest. Returns the number kept.

        For the inbox, whose events ``track()`` has acknowledged: when the store refuses the whole (a full disk
        that has room for part of it), the first half is tried, and so on down to one event, and whatever was
        written is followed by the rest, again whole. The first single event the store refuses ends it: the
        events from there on are counted in ``refused``. An error that is not the store refusing writes (another
        process holding the write lock past ``busy_timeout``) is not retried piecemeal.
        """
        total = len(events)
        start = 0
        size = total
        error: BaseException | None = None
        while start < total:
            size = min(size, total - start)
            error = self._write(events[start : start + size], datas[start : start + size])
            if error is None:
                start += size
                size = total - start
            elif size > 1 and _refuses_writes(error):
                size = (size + 1) // 2
            else:
                break
        lost = total - start
        self._settle(error if lost else None)  # the last attempt says how the store is now
        if lost:
            assert error is not None
            with self._lock:
                self.refused += lost
            self._log_failure("journal_overflow", error, lost, kept=start)
        return start

    def _write(self, events: list[Any], datas: list[bytes]) -> BaseException | None:
        """One attempt: journal ``events`` in one commit. The store's error, or ``None`` once they are kept."""
        store = self.store
        now = self._clock.now() if not self._event_time else max(self.max_ts, 0.0)
        try:
            self._purchases.record(events)  # before the events: see recoverkit._purchases
            if self.partitions > 1:
                self._write_keyed(events, datas, now)
                return None
            last = self.last_seq + len(events) if self.transient else store.append_events(datas, now=now)
        except (StoreError, OSError) as exc:
            with self._lock:
                self.store_errors += 1
            return exc
        first = last - len(events) + 1
        with self._lock:
            self.accepted += len(events)
            if last > self.last_seq:
                self.last_seq = last
            # Not kept in the store, the events must wait here however many there are (a replay bounds that).
            if self.transient or self._hot_size + len(events) <= self._hot_capacity:
                self._hot[first] = (last, events)
                self._hot_size += len(events)
        return None

    def _write_keyed(self, events: list[Any], datas: list[bytes], now: float) -> None:
        """Journal ``events`` on a partitioned store: each to its session's partition, an erasure request to every
        partition (each partition's owner erases what it holds), in one commit. The hot cache is not used (an
        owner reads its partitions back); ``on_appended`` hears which partitions grew, and to where."""
        store: Any = self.store  # a PartitionedStore (self.partitions > 1)
        keyed: list[tuple[int, bytes]] = []
        every = range(self.partitions)
        for event, data in zip(events, datas, strict=True):
            kind = type(event)
            if kind is Forget:
                keyed.extend((part, data) for part in every)
                continue
            own = store.partition_of(event.session_id)
            keyed.append((own, data))
            if kind in MIRRORED and (event.customer_id is not None or (kind is Purchase and event.cart_id is not None)):
                # What a customer (or the shop's cart id) says applies beyond this session: their consent and
                # address reach the carts of their other sessions, and a purchase closes those carts, in every
                # partition (each partition's sessionize reads a mirror as news about the customer, not as
                # activity of a session it holds).
                keyed.extend((part, data) for part in every if part != own)
        placed: list[tuple[int, int]] = store.append_to(keyed, now=now)
        if self.writer is not None and self.max_ts > -math.inf:
            # After the commit: a mark says everything up to it is in the journal (event time, in time order).
            store.mark_writer(self.writer, self.max_ts)
        heads: dict[int, int] = {}
        for part, position in placed:
            heads[part] = max(heads.get(part, 0), position)
        with self._lock:
            self.accepted += len(events)
        if self.on_appended is not None:
            self.on_appended(heads)

    def _settle(self, error: BaseException | None) -> None:
        """Set the health flag from the outcome of a write: set when the store refused it, cleared when it took it."""
        refusing = error is not None and _refuses_writes(error)
        if refusing == self.refusing or (error is not None and not refusing):
            return  # unchanged; an error of another kind (a lock held too long) says nothing about the disk
        with self._lock:
            self.refusing = refusing
            self._refusing_logged_at = -math.inf
        if not refusing:
            _log.warning("journal_writable_again", refused=self.refused)

    def _log_failure(self, name: str, error: BaseException, lost: int, *, kept: int) -> None:
        # While the store refuses every write, each track() fails in turn: log the first failure and then at
        # most one line every REFUSING_LOG_EVERY seconds (``refused`` counts them all), not one per request.
        now = monotonic()
        with self._lock:
            quiet = self.refusing and now - self._refusing_logged_at < REFUSING_LOG_EVERY
            if not quiet:
                self._refusing_logged_at = now if self.refusing else -math.inf
        if not quiet:
            _log.error(
                name,
                events=lost,
                kept=kept,
                refused_total=self.refused,
                refusing=self.refusing,
                error=str(error),
            )

    # -- reading (the pipeline's owner) ---------------------------------------------------------------------

    def read(self, after: int, limit: int) -> list[JournalEntry]:
        """Up to ``limit`` journal entries after seq ``after``, from the store (blocking: run it in a thread)."""
        return self.store.read_events(after, limit)

    def take(self, after: int) -> list[Any] | None:
        """The events journaled right after seq ``after`` by this process, if the cache still has them.

        Entries the reader has moved past are dropped on the way, so the cache only holds what is ahead.
        """
        with self._lock:
            entry = self._hot.pop(after + 1, None)
            if entry is not None:
                self._hot_size -= len(entry[1])
                if self._hot and min(self._hot) <= after:
                    self._drop_through(after)
                return entry[1]
            if self._hot and min(self._hot) <= after:
                self._drop_through(after)
            return None

    def _drop_through(self, seq: int) -> None:
        for first in [f for f in self._hot if f <= seq]:
            self._hot_size -= len(self._hot.pop(first)[1])

    @property
    def cached(self) -> int:
        return self._hot_size
