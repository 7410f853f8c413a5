"""The engine: five stages linked by bounded queues, run as tasks of one event loop inside the shop's process.

::

    track()/submit() -> [ingest] => [sessionize] => [score] => [route] => [dispatch] -> channel adapters
                         (=>: a bounded queue of batches carrying the watermark)

Use it from async code as a context manager::

    async with recoverkit.Engine(channels={"email": MyEmail()}) as engine:
        engine.track({"event": "add_to_cart", "session_id": "s1", ...})

From synchronous (WSGI) code use :class:`recoverkit.BackgroundEngine`, which runs this engine in a thread.
The engine installs no signal handlers, changes no logging configuration and sets no event-loop policy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from time import perf_counter
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import msgspec
import structlog

from ._pipeline import Batch, Link, StageStatistics
from .channels.base import Channel, Message
from .channels.console import ConsoleChannel
from .clock import Clock, WallClock
from .config import Config
from .deadletters import DeadLetters
from .dispatch import Dispatch
from .errors import ConfigError, EngineStateError, InvalidEvent
from .events import decode_event, normalize_timestamp
from .ingest import Ingest
from .route import Route
from .score import Score, Scorer
from .sessionize import Sessionize

__all__ = ["Engine", "EngineStatistics"]

_log = structlog.get_logger("recoverkit.engine")


class EngineStatistics(msgspec.Struct, kw_only=True):
    """A snapshot of what the engine has done; see each field. ``stages`` has the per-stage figures."""

    events_accepted: int
    events_invalid: dict[str, int]
    events_overflow: int
    events_late: int
    sessions: int
    abandonments: dict[str, int]
    reasons: dict[str, int]
    messages: dict[str, int]
    dead_letters: int
    watermark: float
    stages: dict[str, StageStatistics]


class Engine:
    """The recovery engine. Build it once at start-up; configuration errors are raised here.

    ``channels`` maps channel names used by the flows (``"email"``, ``"sms"``, ...) to adapters; without it
    every channel is a :class:`~recoverkit.channels.ConsoleChannel` that only logs what it would send.
    ``clock`` is wall time by default; pass :class:`~recoverkit.clock.EventClock` to replay recorded events in
    event time, or :class:`~recoverkit.clock.FakeClock` in tests. ``scorer`` replaces the default model.
    ``dead_letters`` is a path for the dead-letter file (or a :class:`~recoverkit.deadletters.DeadLetters`).
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        channels: Mapping[str, Channel] | None = None,
        clock: Clock | None = None,
        scorer: Scorer | None = None,
        dead_letters: str | Path | DeadLetters | None = None,
    ) -> None:
        self.config = config if config is not None else Config()
        if not isinstance(self.config, Config):
            raise ConfigError(f"config must be a recoverkit.Config, got {type(self.config).__name__}")
        self.clock: Clock = clock if clock is not None else WallClock()
        used = sorted({ch for f in self.config.flows for s in f.steps for ch in (s.channel, s.fallback) if ch})
        if channels is None:
            console = ConsoleChannel()
            channels = {name: console for name in used}
        missing = [name for name in used if name not in channels]
        if missing:
            raise ConfigError(
                f"the flows use channel(s) {missing} but no adapter was given for them; pass "
                f"channels={{{', '.join(repr(m) + ': <adapter>' for m in missing)}}} to Engine, or change the flows"
            )
        for name, adapter in channels.items():
            if not callable(getattr(adapter, "send", None)):
                raise ConfigError(
                    f"channel {name!r}: {type(adapter).__name__} has no `send(message)` method; expected an object "
                    "implementing recoverkit.channels.Channel"
                )
        self.channels = dict(channels)
        if scorer is not None and not callable(getattr(scorer, "score", None)):
            raise ConfigError(f"scorer {type(scorer).__name__} has no `score(cart, features)` method")
        if not isinstance(dead_letters, DeadLetters):
            dead_letters = DeadLetters(dead_letters)
        self.ingest = Ingest(self.config, self.clock)
        self.sessionize = Sessionize(self.config, event_time=self.clock.event_time)
        self.score = Score(scorer, shipping_shock_ratio=self.config.shipping_shock_ratio)
        self.route = Route(self.config)
        self.dispatch = Dispatch(self.config, self.channels, self.clock, dead_letters)
        self._stages = (self.ingest, self.sessionize, self.score, self.route, self.dispatch)
        self._links: list[Link[Any]] = []
        self._task_group: anyio.abc.TaskGroup | None = None
        self._state = "new"
        #: Seconds ``async with`` waits at exit for in-flight work before cancelling it.
        self.close_timeout = 10.0

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose(self.close_timeout)

    async def start(self) -> None:
        """Start the stages as tasks of the current event loop. Prefer ``async with engine:``."""
        if self._state != "new":
            raise EngineStateError(f"the engine is {self._state}; an Engine can be started once")
        capacity = self.config.queue_batches
        self._links = [Link[Any](capacity) for _ in self._stages]
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._stopped = anyio.Event()
        for i, stage in enumerate(self._stages):
            outbox = self._links[i + 1] if i + 1 < len(self._links) else None
            self._task_group.start_soon(self._run_stage, i, outbox, name=f"recoverkit-{stage.name}")
        self._task_group.start_soon(self._tick, name="recoverkit-ticker")
        self._state = "running"
        _log.info("engine_started", event_time=self.clock.event_time, channels=sorted(self.channels))

    async def aclose(self, timeout: float = 10.0) -> None:
        """Stop: handle everything accepted so far, wait for deliveries in flight, close the adapters.

        Waits at most ``timeout`` seconds, then cancels what is left. Messages scheduled for later are not
        sent (they are lost with the process in this release). Closing completes even when the calling task
        is being cancelled (the host shutting down). If a stage failed, its error is raised from here, in an
        ``ExceptionGroup``, rather than lost.
        """
        if self._state != "running":
            return
        self._state = "closing"
        tg = self._task_group
        assert tg is not None
        try:
            # Shielded: the caller may be being cancelled, and the task group must still be drained and exited
            # in order, from this scope, or anyio's cancel scopes are left corrupted.
            with anyio.CancelScope(shield=True):
                if not tg.cancel_scope.cancel_called:  # else a stage failed and the others were cancelled
                    with anyio.move_on_after(timeout) as scope:
                        await self._links[0].send_stream.aclose()  # ends ingest, which closes the next link, ...
                        await self._stopped.wait()  # dispatch returns once drained and nothing is in flight
                    if scope.cancelled_caught:
                        _log.warning("engine_close_timeout", timeout=timeout)
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                for adapter in {id(a): a for a in self.channels.values()}.values():
                    close = getattr(adapter, "aclose", None)
                    if close is not None:
                        try:
                            await close()
                        except Exception as exc:
                            _log.warning(
                                "adapter_close_failed", adapter=type(adapter).__name__, error=type(exc).__name__
                            )
            for link in self._links:  # a cancelled or failed stage leaves its streams open
                link.send_stream.close()
                link.receive_stream.close()
            self._state = "closed"
            _log.info("engine_stopped")

    async def _run_stage(self, index: int, outbox: Link[Any] | None) -> None:
        try:
            await self._stages[index].run(self._links[index], outbox)
        finally:
            if outbox is None:  # dispatch ended: drained, or cancelled with the caller's scope; aclose goes on
                self._stopped.set()

    async def _tick(self) -> None:
        # Live: push the wall clock through the pipeline so timers fire and track()'s inbox is drained.
        # Event time: only drain the inbox; time comes from the events.
        interval = self.config.tick_interval
        send = self._links[0].send_stream
        event_time = self.clock.event_time
        try:
            while True:
                await self.clock.sleep(interval)
                if event_time and not self.ingest.pending:
                    continue
                mark = -math.inf if event_time else self.clock.now()
                await send.send(Batch([], mark, perf_counter()))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return

    # -- putting events in ----------------------------------------------------------------------------------

    def track(self, event: Any) -> bool:
        """Hand an event to the engine without waiting; safe from any thread; never raises.

        ``event`` is a ``dict``, JSON ``bytes``/``str`` or an event Struct. It is validated later in the engine's
        loop; invalid events are counted in :meth:`statistics` and logged without their content. Returns
        ``False`` when the engine's inbox is full or the engine is closed (the event is counted as overflow).
        """
        if self._state in ("closing", "closed"):
            self.ingest.overflow += 1
            return False
        return self.ingest.track(event)

    async def submit(self, event: Any) -> None:
        """Validate ``event`` now (raising :class:`InvalidEvent`) and queue it, waiting while queues are full."""
        self._require_running()
        try:
            decoded = decode_event(event)
            if decoded.ts is not None:  # ingest's range check, raised here instead of counted later
                normalize_timestamp(decoded.ts, self.clock.now())
        except InvalidEvent as exc:
            self.ingest._reject(exc)
            raise
        await self._links[0].send_stream.send(Batch([decoded], -math.inf, perf_counter()))

    async def submit_many(self, events: Iterable[Any]) -> None:
        """Queue many raw events at once (the fast path for replays); invalid ones are counted, not raised."""
        self._require_running()
        chunk = list(events)
        if chunk:
            await self._links[0].send_stream.send(Batch(chunk, -math.inf, perf_counter()))

    async def flush(self, *, end_of_input: bool = False) -> None:
        """Wait until everything accepted so far has gone through every stage and deliveries have finished.

        Live, this also advances the engine to the clock's current time, so with a
        :class:`~recoverkit.clock.FakeClock` ``clock.advance(3600); await engine.flush()`` fires what fell due.
        In event time, ``end_of_input=True`` declares the input complete: events held back for lateness are
        released and the watermark moves to the last event time. Open carts stay open (they are censored, not
        abandoned).
        """
        self._require_running()
        barrier = anyio.Event()
        if self.clock.event_time:
            mark = math.inf if end_of_input else -math.inf
        else:
            mark = self.clock.now()
        await self._links[0].send_stream.send(Batch([], mark, perf_counter(), [barrier]))
        await barrier.wait()

    def _require_running(self) -> None:
        if self._state != "running":
            raise EngineStateError(
                f"the engine is {self._state}; use `async with Engine(...) as engine:` before submitting events"
            )

    # -- looking inside -------------------------------------------------------------------------------------

    def pending_messages(self) -> list[Message]:
        """Messages scheduled and not yet due, in due order."""
        return self.dispatch.pending()

    def statistics(self) -> EngineStatistics:
        """Counters and queue figures of every stage, for dashboards, health checks and tests."""
        stages = {stage.name: stage.statistics() for stage in self._stages}
        counts = self.sessionize.counts
        return EngineStatistics(
            events_accepted=self.ingest.accepted,
            events_invalid=dict(self.ingest.invalid),
            events_overflow=self.ingest.overflow,
            events_late=self.ingest.late,
            sessions=stages["sessionize"].extra["sessions"],
            abandonments={k.removeprefix("abandoned_"): v for k, v in counts.items() if k.startswith("abandoned_")},
            reasons=dict(self.score.reasons),
            messages=dict(self.dispatch.outcomes),
            dead_letters=len(self.dispatch.dead_letters),
            watermark=self.dispatch.watermark,
            stages=stages,
        )
