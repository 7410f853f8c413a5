"""What the engine's purchase-path watcher reads: every journal of the store and the send outcomes every process
recorded, merged in event-time order (:class:`MergedFeed`).

Why these sources. The journal holds every event every worker process accepted (a partitioned store holds one
journal per partition). How each send ended is recorded by the process that sent it in the store's facts
(:class:`~recoverkit.facts.MessageOutcome`: ``sent``, or ``dead`` once its retries ran out or the channel
refused it for good), so the one watcher counts every process's sends, whichever host made them. A
:class:`~recoverkit.alerts.WatchedChannel` only sees the sends of its own process, so it is not used here.

Why a merge. The watcher judges a minute once its clock (the latest time it was given) is ``lateness`` past the
minute's end, and counts what comes later as late. Read one journal after another, the second journal's events
would all be late. So each source is read in bounded batches into a buffer, and only what every source that is
still behind has reached is released, sorted by time: a source that read a whole batch (more may follow) holds
the release back to the latest time it has read; a source that has read everything it holds does not.
Within one journal, events are in the order they were journaled, which is their time order to within what a
live shop's clocks and the inbox allow (well within ``lateness``); a journal read out of order by more than
that counts the difference as late, as :class:`~recoverkit.alerts.JournalFeed` would.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final, Protocol

from ._alert_watcher import AlertWatcher
from .errors import InvalidEvent
from .events import decode_event
from .facts import MessageOutcome
from .store._journal import JournalEntry

__all__ = ["BATCH", "JournalSource", "MergedFeed", "OutcomeSource", "Source"]

#: Entries read from one journal at a time, and the most a source keeps waiting for the others: a read's cost
#: and the memory held stay bounded however far behind the feed is (a new holder relearning a day of journal).
BATCH: Final = 1024
#: The send outcomes that are sends: ``sent`` went out, ``dead`` failed for good (the rest, cancelled, capped,
#: skipped, were never attempted). ``True``: it went out.
_SENDS: Final = {"sent": True, "dead": False}

#: An item of the merge: (time, source's rank, the item): a journal's event, or a send as (channel, ok).
_Item = tuple[float, int, Any]


class Source(Protocol):
    """A stream of timed items read in batches into :attr:`buffer`; :attr:`caught_up` once a read found the end."""

    buffer: list[_Item]
    caught_up: bool
    high: float  # the latest time read

    def read(self) -> None: ...


class JournalSource:
    """One journal (the store's, or one partition's) read after :attr:`position` by ``read(after, limit)``."""

    def __init__(self, read: Callable[[int, int], list[JournalEntry]], rank: int, *, after: int = 0) -> None:
        self._read, self._rank = read, rank
        self.position = after
        self.buffer: list[_Item] = []
        self.caught_up = False
        self.high = -math.inf
        #: Entries trimmed away before they were read (the feed fell behind a checkpoint's trim).
        self.missed = 0
        #: Entries that are not events (a forget request's record) or do not decode: left out.
        self.skipped = 0

    def read(self) -> None:
        if len(self.buffer) >= BATCH:
            return  # the others are behind it: wait for them before reading more
        entries = self._read(self.position, BATCH)
        for entry in entries:
            if entry.seq > self.position + 1:
                self.missed += entry.seq - self.position - 1
            self.position = entry.seq
            try:
                event = decode_event(entry.data)
            except (InvalidEvent, ValueError):
                self.skipped += 1
                continue
            ts = event.ts
            if isinstance(ts, datetime):
                ts = ts.timestamp()
            if ts is None:  # the journal stamps every event; an unstamped one cannot be placed in time
                self.skipped += 1
                continue
            self.buffer.append((float(ts), self._rank, event))
            self.high = max(self.high, float(ts))
        self.caught_up = len(entries) < BATCH


class OutcomeSource:
    """The sends every process recorded: the store's ``sent`` and ``dead`` outcome facts, read by ``read(since)``.

    Each read goes back ``overlap`` seconds before the latest time read (a fact is written shortly after its
    time, by whichever process sent it) and keeps each (key, outcome) once. ``since`` is where the first read
    starts (``None``: every fact kept).
    """

    def __init__(
        self, read: Callable[[float | None], Sequence[MessageOutcome]], rank: int, *, since: float | None,
        overlap: float,
    ) -> None:
        self._read, self._rank, self._overlap = read, rank, overlap
        self._since = since
        self._seen: dict[tuple[str, str], float] = {}
        self.buffer: list[_Item] = []
        self.caught_up = False
        self.high = -math.inf

    def read(self) -> None:
        since = self._since if self.high == -math.inf else self.high - self._overlap
        for fact in self._read(since):
            ok = _SENDS.get(fact.outcome)
            if ok is None or fact.channel is None or (fact.key, fact.outcome) in self._seen:
                continue
            self._seen[(fact.key, fact.outcome)] = fact.at
            self.buffer.append((fact.at, self._rank, (fact.channel, ok)))
            self.high = max(self.high, fact.at)
        if self._seen:  # forget what the next read's overlap can no longer return: the set stays bounded
            oldest = self.high - self._overlap
            self._seen = {key: at for key, at in self._seen.items() if at >= oldest}
        self.caught_up = True  # a read returns every fact recorded since: nothing is left behind it


class MergedFeed:
    """Feeds ``watcher`` from ``sources``, merged in time order (see the module docstring)."""

    def __init__(self, watcher: AlertWatcher, sources: Sequence[Source]) -> None:
        self.watcher = watcher
        self.sources = list(sources)
        self.fed = 0

    def poll(self, *, rounds: int = 16) -> bool:
        """Read every source and feed what all of them have reached, up to ``rounds`` times while some are
        behind; returns whether every source is caught up (then the watcher may be advanced to the clock)."""
        for _ in range(rounds):
            for source in self.sources:
                source.read()
            behind = [source.high for source in self.sources if not source.caught_up]
            self._release(min(behind, default=math.inf))
            if not behind:
                return True
        return False

    def _release(self, frontier: float) -> None:
        ready: list[_Item] = []
        for source in self.sources:
            if frontier == math.inf:
                ready += source.buffer
                source.buffer = []
            else:
                ready += [item for item in source.buffer if item[0] <= frontier]
                source.buffer = [item for item in source.buffer if item[0] > frontier]
        ready.sort(key=lambda item: (item[0], item[1]))  # stable: each source's own order within a time
        watcher = self.watcher
        for at, _, item in ready:
            if isinstance(item, tuple):
                watcher.observe_send(item[0], item[1], at, catch_up=True)  # recorded once the send ended
            else:
                watcher.observe(item)
        self.fed += len(ready)
