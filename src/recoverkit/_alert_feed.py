"""Feeding the purchase-path watcher without touching the engine: the store's journal, and a channel wrapper.

- :class:`JournalFeed` reads the events every worker journaled from the store (the same journal the pipeline
  reads, in the same order), so one watcher sees the whole shop, and a journal replayed later gives the same
  minutes, hence the same alerts.
- :class:`WatchedChannel` wraps a channel adapter and tells the watcher how each send ended, stamped with the
  engine's clock (event time in a replay).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Final

from ._alert_watcher import AlertWatcher
from ._log import get_logger
from .channels.base import Channel, Message
from .clock import Clock
from .errors import InvalidEvent
from .store._journal import JournalStore

__all__ = ["JournalFeed", "WatchedChannel"]

_log = get_logger("recoverkit.alerts")
_BATCH: Final = 1024  # entries per read: a poll's cost stays bounded however far behind the feed is


class JournalFeed:
    """Reads ``store``'s journal after ``after`` into ``watcher``, :meth:`poll` by :meth:`poll`.

    Start ``after`` at 0 to let the watcher learn from the journal still kept (warming its baselines), or at
    ``store.last_seq()`` to watch from now on. With ``clock`` (the engine's; wall time live), each poll also
    advances the watcher to ``clock.now()``, so a shop that stops sending events altogether is noticed; an
    event-time clock is not read (in a replay the events are the clock). The pipeline trims the journal once a
    checkpoint covers it: a feed that falls behind a trim counts the events it missed (:attr:`missed`), so poll
    at least every few seconds (:meth:`start` does, from a thread). A single journal only: a partitioned store
    (docs/scaling.md) has one per partition.
    """

    def __init__(
        self, store: JournalStore, watcher: AlertWatcher, *, after: int = 0, clock: Clock | None = None
    ) -> None:
        self._store, self._watcher, self._clock = store, watcher, clock
        self.position = after
        self.missed = 0
        self.invalid = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> int:
        """Feed the entries journaled since the last poll (at most 1,024); returns how many were read."""
        entries = self._store.read_events(self.position, _BATCH)
        for entry in entries:
            if entry.seq > self.position + 1:
                self.missed += entry.seq - self.position - 1
            self.position = entry.seq
            try:
                self._watcher.observe(entry.data)
            except (InvalidEvent, ValueError):  # the journal holds validated events; count, never stop
                self.invalid += 1
        clock = self._clock
        if clock is not None and not clock.event_time:
            self._watcher.advance(clock.now())
        return len(entries)

    def start(self, interval: float = 1.0) -> None:
        """Poll from a daemon thread every ``interval`` seconds (at once while entries keep coming)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(interval,), name="recoverkit-alert-feed", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread :meth:`start` started (after its current poll)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                read = self.poll()
            except Exception as exc:  # noqa: BLE001 - a store hiccup must not end the watch; logged, tried again
                _log.warning("alert_feed_failed", error=type(exc).__name__)
                read = 0
            if read < _BATCH:
                self._stop.wait(interval)


class WatchedChannel:
    """A channel adapter that also tells ``watcher`` how each send ended, as channel ``name``.

    ``clock`` is the engine's clock (or a callable returning the time): a send is stamped with it. Sends are
    passed through unchanged: what ``channel.send`` returns or raises is what the engine gets. A cancelled send
    is not counted (the engine stopping is not the channel failing).
    """

    def __init__(self, channel: Channel, name: str, watcher: AlertWatcher, clock: Clock | Callable[[], float]) -> None:
        self._channel, self._name, self._watcher = channel, name, watcher
        self._now: Callable[[], float] = clock if callable(clock) else clock.now

    def __repr__(self) -> str:
        return f"WatchedChannel({self._channel!r}, name={self._name!r})"

    async def send(self, message: Message) -> None:
        try:
            await self._channel.send(message)
        except Exception:
            self._record(ok=False)
            raise
        self._record(ok=True)

    def _record(self, *, ok: bool) -> None:
        at = self._now()
        if math.isfinite(at):  # an event clock before the first event has no time yet
            self._watcher.observe_send(self._name, ok, at)

    async def aclose(self) -> None:
        close = getattr(self._channel, "aclose", None)
        if close is not None:
            await close()
