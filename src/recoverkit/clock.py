"""Clocks: wall time when live, event time in replay, a hand-driven clock in tests.

Every timer in the engine (abandonment, message due times, retry backoff) is measured on the engine's clock
and fires when the stream's *watermark* passes it. Live, the watermark is the wall clock, pushed through the
pipeline when a timer falls due and, while events arrive, every ``tick_interval``. In replay it is the latest
event time seen minus the allowed lateness, so a day of events replays in seconds with the same decisions every
time. A :class:`FakeClock` makes "30 minutes later" an instant ``clock.advance(1800)`` in tests.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Protocol, runtime_checkable

import anyio

__all__ = ["Clock", "EventClock", "FakeClock", "WallClock"]


@runtime_checkable
class Clock(Protocol):
    """What the engine needs of a clock. ``event_time`` says whose time it is.

    When ``event_time`` is false the engine stamps events without ``ts`` with :meth:`now` and advances its
    watermark to :meth:`now` every tick. When it is true, time is whatever the events say and :meth:`now`
    reports the current watermark.
    """

    @property
    def event_time(self) -> bool: ...

    def now(self) -> float:
        """Current time in epoch seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class WallClock:
    """Real time: ``time.time()``; the default for a live engine."""

    event_time = False

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class EventClock:
    """Event time: the engine's watermark, advanced by the events themselves (replay).

    ``now()`` is the watermark the ingest stage last published; it never moves backwards.
    """

    event_time = True

    def __init__(self) -> None:
        self._watermark = -math.inf

    def now(self) -> float:
        return self._watermark

    def observe(self, watermark: float) -> None:
        """Move the watermark forward (the ingest stage calls this; going backwards is ignored)."""
        if watermark > self._watermark:
            self._watermark = watermark

    async def sleep(self, seconds: float) -> None:
        # Nothing in the engine sleeps on event time; timers fire from the watermark. Yield so a caller
        # polling in a loop cannot starve the event loop.
        await anyio.sleep(0)


class FakeClock:
    """A clock that moves only when told to, for tests: ``clock.advance(1800)`` is "30 minutes later".

    ``sleep`` waits until enough fake time has passed. ``advance``/``set`` may be called from any thread: a
    test that drives a :class:`~recoverkit.BackgroundEngine` (or a web framework's test client running the app
    on its own loop) advances the clock from the test's thread, and sleepers are woken on their own loop.
    """

    event_time = False

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = float(start)
        self._waiters: list[tuple[float, anyio.Event, asyncio.AbstractEventLoop | None]] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake sleepers whose time has come."""
        if seconds < 0:
            raise ValueError(f"FakeClock.advance() expects seconds >= 0, got {seconds}")
        with self._lock:
            self._set(self._now + seconds)

    def set(self, when: float) -> None:
        """Jump to epoch time ``when`` (never backwards)."""
        with self._lock:
            self._set(when)

    def _set(self, when: float) -> None:
        if when < self._now:
            raise ValueError(f"FakeClock.set() cannot go back in time from {self._now} to {when}")
        self._now = float(when)
        due = [w for w in self._waiters if w[0] <= self._now]
        self._waiters = [w for w in self._waiters if w[0] > self._now]
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for _, event, loop in due:
            if loop is None or loop is here:
                event.set()
            elif not loop.is_closed():
                # An event of another thread's loop: set it there (asyncio's events are not thread-safe).
                loop.call_soon_threadsafe(event.set)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.sleep(0)
            return
        event = anyio.Event()
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # not on asyncio (trio): only the loop's own thread may advance the clock
            loop = None
        with self._lock:
            self._waiters.append((self._now + seconds, event, loop))
        await event.wait()


async def sleep_or_wake(clock: Clock, seconds: float, wake: anyio.Event) -> bool:
    """Wait ``seconds`` of ``clock``'s time or until ``wake`` is set, whichever comes first; whether it was ``wake``.

    The engine's ticker waits here for the next deadline or for work. On the wall clock this is one cancel scope
    around ``wake.wait()``; any other clock (a :class:`FakeClock` that tests advance) races its own ``sleep``
    against the event in a small task group.
    """
    if wake.is_set():
        return True
    if seconds <= 0:
        await anyio.sleep(0)
        return wake.is_set()
    if type(clock) is WallClock:
        with anyio.move_on_after(seconds):
            await wake.wait()
        return wake.is_set()
    async with anyio.create_task_group() as group:

        async def sleeper() -> None:
            await clock.sleep(seconds)
            group.cancel_scope.cancel()

        group.start_soon(sleeper)
        await wake.wait()
        group.cancel_scope.cancel()
    return wake.is_set()
