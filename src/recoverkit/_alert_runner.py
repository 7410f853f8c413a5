"""The engine runs the purchase-path watcher itself (``[alerts] enabled = true``), in exactly one process of the
shop at a time, whatever the number of worker processes and hosts.

Who watches. Every engine that delivers (``deliver=True``; not the CLI's maintenance engines, not a partition's
own pipeline, not a replay unless ``[alerts] replay``) builds its alert sinks at start-up (a named environment
variable that is unset is a :class:`~recoverkit.errors.ConfigError` then, not at the first alert) and competes
for the store's ``alerts`` lease (:data:`ALERTS_LEASE`, through the store's
:class:`~recoverkit.store.LeaseStore`, on the engine's :class:`~recoverkit._store_runner.StoreRunner` lease
lane). The holder renews it every ``store.lease_ttl / 5`` seconds and runs the watcher; the others ask for it
at the same pace. When the holder dies (even by ``kill -9``) its lease expires after ``lease_ttl`` and the next
process to ask takes it, with the watcher its predecessor saved (:mod:`recoverkit._alert_handover`: the holder
saves it every ``[alerts] save_every`` seconds and when it closes, fenced by the lease), or else a new watcher that
relearns from the journal still kept (as a restarted watcher
does: docs/alerts.md, "Limits"). A holder whose renewals fail or lag pauses judging once half the ttl has passed
without one, before its lease can expire, so two processes never judge at once, short of one stalled mid-poll
past its lease; when a renewal finds the lease still its own, it goes on with the same watcher. A closing engine stops its watcher (the alerts already raised are delivered) and releases the lease, so
the hand-over is immediate.

What it reads: every journal of the store and every process's send outcomes, merged in time
(:mod:`recoverkit._alert_sources`), polled every second from a worker thread (a store in memory: inline, it is
one process's), so the watcher's work never runs on the engine's event loop. Live, each poll that has caught up
also advances the watcher to the engine's clock, so a shop whose events stop altogether is still judged.

:func:`watch_purchase_path` is the engine's one hook (in :meth:`recoverkit.Engine.start`); :func:`watch_of`
finds an engine's watch for :mod:`recoverkit.metrics`.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final, Protocol

import anyio
import anyio.to_thread

from ._alert_handover import STATE_NAME, Start, restore, snapshot
from ._alert_settings import AlertsConfig
from ._alert_sinks import Alert, AlertSink
from ._alert_sources import JournalSource, MergedFeed, OutcomeSource, Source
from ._alert_watcher import AlertWatcher
from ._log import get_logger
from ._store_runner import StoreRunner
from .clock import Clock
from .config import Config
from .errors import StoreError
from .store._journal import JournalEntry
from .store._partition_view import PartitionView, is_partitioned
from .store._state import StateStore
from .store.base import Store

__all__ = ["ALERTS_LEASE", "PurchasePathWatch", "watch_of", "watch_purchase_path"]

_log = get_logger("recoverkit.alerts")

#: The store lease whose holder runs the shop's one watcher.
ALERTS_LEASE: Final = "alerts"
#: Seconds between polls of the store: an alert follows its minute's judgement within about a second, and an idle
#: shop costs one small read a second in one process.
POLL_INTERVAL: Final = 1.0
#: Batches read per source in one poll: a poll stays short (a stopped watcher waits for the one under way).
POLL_ROUNDS: Final = 4

#: Engines whose watch is running, for the metrics (weak: a closed engine's watch goes with it).
_WATCHES: weakref.WeakKeyDictionary[object, PurchasePathWatch] = weakref.WeakKeyDictionary()


#: How long the store remembers that an alert was sent (its lease, :class:`_OncePerShop`): longer than a new
#: holder can take to relearn the journal kept and reach the minute again.
ALERT_MEMORY: Final = 86_400.0


class _OncePerShop:
    """A sink that sends each alert once per shop, across hand-overs: before the first delivery of an alert it
    takes a store lease named for it (kind, incident, minute; ``alert:...``) for :data:`ALERT_MEMORY` seconds.

    A new holder relearns from the journal kept; when that journal still holds an incident its predecessor
    alerted, the new watcher opens the same incident at the same minute (the same events, in the same order),
    finds the alert's lease held by the predecessor, and sends nothing. Called from the watcher's delivery
    thread; the store's methods are thread-safe. A retry of the same alert by the same holder finds the lease
    its own ("renewed") and goes on; another sink of the same holder likewise.
    """

    def __init__(self, sink: AlertSink, store: Store, owner: str) -> None:
        self._sink, self._store, self._owner = sink, store, owner

    def __repr__(self) -> str:
        return f"{self._sink!r} (once per shop)"

    def send(self, alert: Alert) -> None:
        name = f"alert:{alert.kind}:{alert.incident}:{int(alert.at)}"
        if not self._store.acquire_lease(name, self._owner, ttl=ALERT_MEMORY, now=time.time()):
            _log.info("purchase_path_alert_sent_already", incident=alert.incident, kind=alert.kind)
            return
        self._sink.send(alert)


class _Engine(Protocol):
    """What the watch needs of the engine (:class:`recoverkit.Engine`)."""

    config: Config
    store: Store
    call_store: StoreRunner
    clock: Clock
    owner: str
    _delivers: bool


def watch_purchase_path(
    engine: _Engine, start_soon: Callable[[Callable[[], Coroutine[Any, Any, None]], str], None]
) -> PurchasePathWatch | None:
    """The engine's hook: when ``[alerts] enabled`` and this engine is one that may watch, build the watch (its
    sinks: a :class:`~recoverkit.errors.ConfigError` for a missing variable, raised here) and run it as a task
    of the engine (``start_soon``) until the engine closes. Otherwise nothing: no task, no thread, no lease."""
    watch = PurchasePathWatch.of(engine)
    if watch is not None:
        _WATCHES[engine] = watch
        start_soon(watch.run, "recoverkit-alerts")
    return watch


def watch_of(engine: object) -> PurchasePathWatch | None:
    """The watch ``engine`` runs (``None`` when ``[alerts]`` is not enabled for it)."""
    return _WATCHES.get(engine)


class PurchasePathWatch:
    """The lease loop and the feed of one engine's watcher; see the module docstring."""

    def __init__(
        self, config: AlertsConfig, store: Store, runner: StoreRunner, clock: Clock, *, owner: str, ttl: float,
        sinks: Sequence[AlertSink],
    ) -> None:
        self.config, self._store, self._runner, self._clock = config, store, runner, clock
        self.owner, self.ttl, self._sinks = owner, ttl, list(sinks)
        #: The watcher while this process holds the lease (a new one at each take-over), else ``None``.
        self.watcher: AlertWatcher | None = None
        self.feed: MergedFeed | None = None
        #: How often this process took the lease (each time with a new watcher).
        self.takeovers = 0
        self._renewed_at = -math.inf
        self._polling: anyio.Lock | None = None
        self._threads = anyio.CapacityLimiter(1)  # one poll at a time, off the event loop
        #: How the current watcher started: "resumed", "baselines" or "fresh" (:mod:`recoverkit._alert_handover`).
        self.started: str | None = None
        #: States saved by this process (fenced saves refused are not counted).
        self.saves = 0
        self._saved_at = -math.inf  # monotonic time of the last save
        # Saved and restored only live, in a store that keeps states: a replay is a run of its own.
        self._keeps_state = isinstance(store, StateStore) and not clock.event_time

    @classmethod
    def of(cls, engine: _Engine) -> PurchasePathWatch | None:
        """The watch for ``engine``, or ``None`` when it must not watch: ``[alerts]`` disabled, an engine that
        sends nothing, a partition's own pipeline (its front engine watches), a replay without ``replay``."""
        config = engine.config.alerts
        if not config.enabled or not engine._delivers or isinstance(engine.store, PartitionView):
            return None
        if engine.clock.event_time and not config.replay:
            return None
        from .alerts import sinks_from_config  # the public module builds sinks; it imports this one's siblings only

        sinks = sinks_from_config(config)
        return cls(config, engine.store, engine.call_store, engine.clock, owner=engine.owner,
                   ttl=engine.config.store.lease_ttl, sinks=sinks)

    @property
    def running(self) -> bool:
        """Whether this process runs the shop's watcher now."""
        return self.watcher is not None

    # -- the task -----------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Keep or seek the lease every ``ttl / 5`` seconds and, while holding it, poll every second (at once
        while a backlog lasts), until cancelled (the engine closing): then stop watching and release the lease.
        The lease has a task of its own, so a long poll never delays a renewal."""
        self._polling = anyio.Lock()
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._keep_lease)
                await self._keep_feeding()
        finally:
            with anyio.CancelScope(shield=True):
                await self._close()

    async def _keep_lease(self) -> None:
        while True:
            await self._renew()
            await anyio.sleep(self.ttl / 5)

    async def _keep_feeding(self) -> None:
        while True:
            caught_up = True
            feed = self.feed
            # Paused, not stopped, while renewals fail or lag: judging stops before the lease can expire and
            # another process take it; if the next renewal finds the lease still this process's ("renewed"),
            # nobody else judged meanwhile and this watcher goes on where it was (its baselines intact).
            if feed is not None and time.time() < self._renewed_at + self.ttl / 2:
                caught_up = await self._poll(feed)
            await anyio.sleep(POLL_INTERVAL if caught_up else 0)

    async def _renew(self) -> None:
        now = time.time()  # leases are about processes: wall time, whatever the engine's clock
        try:
            taken = await self._runner.lease(self._store.take_lease, ALERTS_LEASE, self.owner, ttl=self.ttl, now=now)
        except StoreError as exc:
            _log.error("alerts_lease_renewal_failed", error=str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - the watch must never stop the engine: logged, tried again
            _log.error("alerts_lease_renewal_failed", error=type(exc).__name__)
            return
        if taken is None:
            if self.watcher is not None:
                await self._stop("alerts_lease_lost")
            return
        self._renewed_at = now
        if self.watcher is None or taken == "taken":
            if self.watcher is not None:  # someone else held it in between: their watcher judged meanwhile
                await self._stop("alerts_lease_lapsed")
            await self._start()

    async def _start(self) -> None:
        self.takeovers += 1
        sinks = [_OncePerShop(sink, self._store, self.owner) for sink in self._sinks]
        start: Start | None = None
        if self._keeps_state:
            try:
                start = await self._in_thread(self._restore_sync, sinks)
            except Exception as exc:  # noqa: BLE001 - a store hiccup: start afresh, as without a saved state
                _log.warning("purchase_path_state_unreadable", error=type(exc).__name__)
        if start is None:
            start = Start(AlertWatcher(self.config, sinks=sinks), [0] * self._journals(), None, "fresh")
        self.watcher, self.feed, self.started = start.watcher, MergedFeed(start.watcher, self._sources(start)), start.how
        self._saved_at = time.monotonic()
        _log.info("purchase_path_watch_started", owner=self.owner, sources=len(self.feed.sources), how=start.how)

    def _journals(self) -> int:
        return int(getattr(self._store, "partitions")) if is_partitioned(self._store) else 1

    def _restore_sync(self, sinks: Sequence[AlertSink]) -> Start:
        store = self._store
        assert isinstance(store, StateStore)
        saved = store.load_state(STATE_NAME)
        readers = self._readers()

        def contiguous(journal: int, position: int) -> bool:
            entries = readers[journal](position, 1)
            if entries:
                return entries[0].seq == position + 1
            head = getattr(store, "partition_head")(journal) if is_partitioned(store) else store.last_seq()
            return int(head) == position

        return restore(saved, self.config, sinks, now=time.time(), journals=len(readers), contiguous=contiguous)

    def _readers(self) -> list[Callable[[int, int], list[JournalEntry]]]:
        store = self._store
        if is_partitioned(store):
            return [_partition_reader(store, p) for p in range(self._journals())]
        return [store.read_events]

    def _sources(self, start: Start) -> list[Source]:
        store = self._store
        journals: list[Source] = [
            JournalSource(read, p, after=start.positions[p]) for p, read in enumerate(self._readers())
        ]
        cfg = self.config
        if self._clock.event_time:
            since: float | None = None  # a replay: every outcome its store holds is of its own events' time
        elif start.outcomes_since is not None:
            # Resumed: on from just after the last outcome the saved watcher read (that one was counted already).
            since = math.nextafter(start.outcomes_since, math.inf)
        else:
            since = self._clock.now() - cfg.windows[-1] - cfg.lateness
        overlap = cfg.lateness + 2 * POLL_INTERVAL  # facts are written within moments of their time
        outcomes = OutcomeSource(lambda since: store.outcomes(since=since), len(journals), since=since, overlap=overlap)
        return [*journals, outcomes]

    async def _poll(self, feed: MergedFeed) -> bool:
        """One poll (bounded: a few batches per source, well under a lease's ttl); whether it caught up."""
        assert self._polling is not None
        async with self._polling:
            if feed is not self.feed:
                return True  # stopped meanwhile
            try:
                caught_up: bool = await self._in_thread(self._poll_sync, feed)
            except Exception as exc:  # noqa: BLE001 - a store hiccup must not end the watch: logged, tried again
                _log.warning("alert_feed_failed", error=type(exc).__name__)
                return True
            return caught_up

    def _poll_sync(self, feed: MergedFeed) -> bool:
        caught_up = feed.poll(rounds=POLL_ROUNDS)
        clock = self._clock
        if caught_up and not clock.event_time:
            feed.watcher.advance(clock.now())
            if self._keeps_state and time.monotonic() - self._saved_at >= self.config.save_every:
                self._save_sync(feed)
        return caught_up

    def _save_sync(self, feed: MergedFeed) -> None:
        """Save the watcher's state and the positions it reached, fenced by the ``alerts`` lease (a holder that
        lost it never overwrites its successor's save). Called with every source's buffer fed (caught up)."""
        *journals, outcomes = feed.sources
        assert isinstance(outcomes, OutcomeSource)
        now = time.time()
        blob = snapshot(feed.watcher, [s for s in journals if isinstance(s, JournalSource)], outcomes, now=now,
                        owner=self.owner)
        if blob is None:
            return
        self._saved_at = time.monotonic()
        store = self._store
        assert isinstance(store, StateStore)
        try:
            saved = store.save_state(STATE_NAME, blob, now=now, lease=ALERTS_LEASE, owner=self.owner)
        except Exception as exc:  # noqa: BLE001 - the watch goes on; the next save (save_every later) tries again
            _log.warning("purchase_path_state_save_failed", error=type(exc).__name__)
            return
        if saved:
            self.saves += 1
        else:
            _log.warning("purchase_path_state_fenced", owner=self.owner)

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._runner.inline:  # a store in memory: one process's, not thread-safe, and never blocks
            return fn(*args)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._threads)

    async def _stop(self, why: str | None) -> None:
        """Stop watching: no more polls; the alerts raised are delivered (from a thread: it may wait on a sink)."""
        watcher, feed = self.watcher, self.feed
        if watcher is None or feed is None:
            return
        if self._polling is not None:
            async with self._polling:  # a poll under way finishes first: nothing is fed to a stopped watcher
                self.watcher = self.feed = None
        else:
            self.watcher = self.feed = None
        if why is not None:
            _log.warning(why, owner=self.owner)
        await anyio.to_thread.run_sync(watcher.close)

    async def _close(self) -> None:
        """The engine is closing: a replay judges what its input completed; stop; release the lease."""
        feed = self.feed
        if feed is not None and self._clock.event_time:
            try:
                await self._in_thread(self._finish_sync, feed)
            except Exception as exc:  # noqa: BLE001 - closing goes on
                _log.warning("alert_feed_failed", error=type(exc).__name__)
        holding = self.watcher is not None
        if feed is not None and holding and self._keeps_state:
            try:  # a clean close hands its state over: the next holder goes on where this one stopped
                await self._in_thread(self._close_save_sync, feed)
            except Exception as exc:  # noqa: BLE001 - closing goes on; the next holder has the last periodic save
                _log.warning("purchase_path_state_save_failed", error=type(exc).__name__)
        await self._stop(None)
        if holding:
            try:
                await self._runner.lease(self._store.release_lease, ALERTS_LEASE, self.owner)
            except Exception as exc:  # noqa: BLE001 - it expires after its ttl instead; closing goes on
                _log.error("alerts_lease_release_failed", error=type(exc).__name__)

    def _close_save_sync(self, feed: MergedFeed) -> None:
        if feed.poll(rounds=POLL_ROUNDS):
            feed.watcher.advance(self._clock.now())
            self._save_sync(feed)

    @staticmethod
    def _finish_sync(feed: MergedFeed) -> None:
        while not feed.poll():
            pass
        feed.watcher.finish()


def _partition_reader(store: object, partition: int) -> Callable[[int, int], list[JournalEntry]]:
    """``read(after, limit)`` of one partition's journal of a partitioned store (:class:`PartitionedStore`)."""
    read_partition: Callable[[int, int, int], list[JournalEntry]] = getattr(store, "read_partition")
    return lambda after, limit: read_partition(partition, after, limit)
