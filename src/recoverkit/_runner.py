"""The engine's task runner: the stages as tasks of one task group, the queues between them, the ticker, and
the barriers :meth:`recoverkit.Engine.flush` waits for.

::

    orders -> [ingest] => [sessionize] => [score] => [route] => [dispatch]
              (orders: Tick, Appended, Drain and the Control barriers; =>: a bounded queue of batches)

The runner knows nothing of leases or checkpoints (see :mod:`recoverkit._ownership`): it runs what it is given
and says where the engine is in its life (``state``: new, running, closing, closed).

The ticker (live) does not tick at a fixed rate. While work comes in (events tracked or submitted, other orders
into ingest, deliveries in flight) it ticks every ``tick_interval``, or sooner when a timer falls due first. Once
a tick has gone through every stage and nothing else moved, the engine is idle: the ticker sleeps until the
earliest deadline (a cart's abandonment timer, a message or retry falling due) or until it is woken: by
``track()`` filling an empty inbox (one thread-safe wake-up on that transition, never per event) or journaling
an event itself (sync durability), or by an order into ingest (a submit, a flush, a checkpoint, a partition's
journal growing). An idle owner still looks at the journal every :data:`IDLE_POLL` seconds for what other
processes journaled (and a lease it took over): their events reach its pipeline within that much when it is
idle, within a tick when it is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final, Literal

import anyio
import anyio.abc

from ._log import get_logger
from ._pipeline import Appended, Control, Drain, Lease, Link, Order, Queue, Stage, Tick
from .clock import Clock, sleep_or_wake
from .config import Config
from .errors import EngineStateError
from .ingest import Ingest
from .journal import Journal

__all__ = ["IDLE_POLL", "Alarm", "Runner", "State"]

_log = get_logger("recoverkit.engine")

#: Where the engine is in its life: :meth:`Runner.open` starts it, :meth:`Runner.stop` ends it.
State = Literal["new", "running", "closing", "closed"]

#: Seconds an idle live engine sleeps at most: then it looks at the journal (one tick) for what other processes
#: journaled, and notices a lease it took over. Each look costs about a tick of CPU.
IDLE_POLL: Final = 1.0
#: The shortest wait between two ticks, so that a burst of deadlines a microsecond apart is one tick, not many.
MIN_WAIT: Final = 0.001


def _deadline_sources(stages: Sequence[Stage]) -> list[Callable[[], float]]:
    """Callables giving each stage's next deadline on the engine's clock (infinite: none): the stages that have
    one (dispatch's schedule, sessionize's abandonment timers) say so with a ``next_deadline()`` method."""
    sources: list[Callable[[], float]] = []
    for stage in stages:
        own = getattr(stage, "next_deadline", None)
        if callable(own):
            sources.append(own)
    return sources


class Runner:
    """Runs ``stages`` (ingest first, dispatch last) as tasks, feeds ingest its orders and ends them in order.

    ``lease`` says whether this process runs the pipeline: the ticker and :meth:`nudge` only feed the stages
    while it is held.
    """

    def __init__(self, config: Config, clock: Clock, stages: Sequence[Stage], ingest: Ingest, lease: Lease) -> None:
        self._config = config
        self._clock = clock
        self._stages = tuple(stages)
        self._ingest = ingest
        self._lease = lease
        self.state: State = "new"
        self.orders: Queue[Order]  # ingest's queue, created by open() (on the loop that runs the engine)
        self._links: list[Link[Any]] = []
        self._group: anyio.abc.TaskGroup | None = None
        self._stopped: anyio.Event | None = None  # set once dispatch, the last stage, has ended
        self._flushes: set[anyio.Event] = set()  # barriers flush() waits for; closing releases those left
        self._flushes_cut: set[anyio.Event] = set()  # released by closing, not by the pipeline
        #: Awaited after each tick has journaled the inbox (a partitioned engine tells its partitions what grew).
        self.after_inbox: Callable[[], Coroutine[Any, Any, None]] | None = None
        #: How many times the ticker has woken (a tick, or a look at the inbox): the cost of an idle engine.
        self.ticks = 0
        self._deadlines = _deadline_sources(self._stages)
        self._journal = ingest.journal  # the inbox whose filling wakes the ticker (ingest journals it)
        #: What ends the ticker's idle wait: work arriving (the inbox filling, an order into ingest).
        self.alarm = Alarm()

    @property
    def running(self) -> bool:
        return self.state == "running"

    def require_running(self) -> None:
        if self.state != "running":
            raise EngineStateError(
                f"the engine is {self.state}; use `async with Engine(...) as engine:` before submitting events"
            )

    # -- the life of the tasks ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the queues and start every stage as a task of a new task group (entered here)."""
        if self.state != "new":
            raise EngineStateError(f"the engine is {self.state}; an Engine can be started once")
        capacity = self._config.queue_batches
        self.orders = Queue[Order](capacity)
        self._links = [Link[Any](capacity) for _ in self._stages[1:]]
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._stopped = anyio.Event()
        self.state = "running"
        for index, stage in enumerate(self._stages):
            self._group.start_soon(self._run_stage, index, name=f"recoverkit-{stage.name}")

    def start_soon(self, task: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        """Run ``task`` beside the stages until the engine closes (the ticker, the lease and checkpoint keepers)."""
        assert self._group is not None
        self._group.start_soon(task, name=name)

    async def _run_stage(self, index: int) -> None:
        inbox: Queue[Any] = self.orders if index == 0 else self._links[index - 1]
        outbox = self._links[index] if index < len(self._links) else None
        try:
            await self._stages[index].run(inbox, outbox)  # type: ignore[arg-type]  # ingest takes the orders
        finally:
            if outbox is None and self._stopped is not None:  # dispatch ended (drained, or cancelled): closing goes on
                self._stopped.set()

    async def abort(self) -> None:
        """A failed start: cancel everything and leave the task group (the caller closes what it opened)."""
        assert self._group is not None
        self.state = "closing"
        self._group.cancel_scope.cancel()
        await self._group.__aexit__(None, None, None)

    async def stop(self, timeout: float, before_exit: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """End the stages in order: journal the inbox, close ingest's queue (each stage closes the next queue
        once it has handled everything), wait at most ``timeout`` seconds for dispatch to finish, then await
        ``before_exit()`` (the last checkpoint, of stages that have ended) unless the wait timed out.

        Shielded: the caller may be being cancelled, and the task group must still be drained and exited in
        order, from this scope, or anyio's cancel scopes are left corrupted. If a stage failed, its error is
        raised from here, in an ``ExceptionGroup``.
        """
        group, stopped = self._group, self._stopped
        assert group is not None and stopped is not None
        self.state = "closing"
        with anyio.CancelScope(shield=True):
            if not group.cancel_scope.cancel_called:  # else a stage failed and the others were cancelled
                with anyio.move_on_after(timeout) as scope:
                    await self._ingest.journal_inbox()
                    await self.orders.send_stream.aclose()  # ends ingest, which closes the next link, ...
                    await stopped.wait()  # dispatch returns once drained and nothing is in flight
                if scope.cancelled_caught:
                    _log.warning("engine_close_timeout", timeout=timeout)
                else:
                    await before_exit()
        group.cancel_scope.cancel()
        await group.__aexit__(None, None, None)

    def closed(self) -> None:
        """The engine has closed: close the queues, and release the flush() calls left waiting."""
        queues: list[Queue[Any]] = [self.orders, *self._links]
        for queue in queues:  # a cancelled or failed stage leaves its streams open
            queue.close()
        self.state = "closed"
        # A flush() whose barrier the stages will never reach now (cancelled at the close timeout) is told so,
        # rather than left waiting for ever (BackgroundEngine's thread could not stop while it waits).
        for barrier in self._flushes:
            if not barrier.is_set():
                self._flushes_cut.add(barrier)
                barrier.set()

    # -- feeding ingest -------------------------------------------------------------------------------------

    async def tick(self) -> None:
        """Journal what track() queued; live, push the clock through the pipeline so timers fire and the
        journal is read (also what other workers wrote). In event time, nudge ingest only when this process
        journaled something ingest has not read: time comes from the events.

        Live, the ticker sleeps until the next deadline when the engine is idle (see the module docstring)."""
        if self._clock.event_time:
            await self._tick_event_time()
        else:
            await self._tick_live()

    async def _tick_event_time(self) -> None:
        interval = self._config.tick_interval
        ingest = self._ingest
        try:
            while True:
                await anyio.sleep(interval)
                self.ticks += 1
                await ingest.journal_inbox()
                if self.after_inbox is not None:
                    await self.after_inbox()
                if not self._lease.held or not ingest.behind:
                    continue
                # A full queue means the pipeline is busy: skip this tick, the next carries a newer clock.
                with contextlib.suppress(anyio.WouldBlock):
                    self.orders.send_stream.send_nowait(Tick(-math.inf))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return

    async def _tick_live(self) -> None:
        interval = self._config.tick_interval
        clock, ingest, alarm = self._clock, self._ingest, self.alarm
        alarm.listen(self._journal)
        wait = interval
        sent = -math.inf  # the clock of the last tick sent into the pipeline
        seen: tuple[int, int, bool] | None = None  # what the pipeline had done at the previous tick
        try:
            while True:
                await sleep_or_wake(clock, wait, alarm.arm())
                worked = alarm.disarm()
                self.ticks += 1
                await ingest.journal_inbox()
                if self.after_inbox is not None:
                    await self.after_inbox()
                now = clock.now()
                held = self._lease.held
                progress = self._progress(held)
                quiet = not worked and progress == seen and self._settled(sent, held)
                seen = progress
                due = self._next_deadline() if held else math.inf
                if held:
                    # A full queue means the pipeline is busy: skip this tick, the next carries a newer clock.
                    with contextlib.suppress(anyio.WouldBlock):
                        self.orders.send_stream.send_nowait(Tick(now))
                        sent = now
                # A deadline at or before ``now`` fires with this tick, once it gets through: the next wait is
                # for what comes after it (and the engine is not quiet: firing it is work).
                wait = self._next_wait(now, due if due > now else math.inf, quiet=quiet and due > now)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return

    def _next_wait(self, now: float, due: float, *, quiet: bool) -> float:
        """Seconds until the ticker's next wake-up: the next deadline, not later than a tick away while the
        engine is busy (or cannot be woken from other threads), nor than :data:`IDLE_POLL` when it is idle."""
        if quiet and self.alarm.listening_to(self._journal):
            return max(min(IDLE_POLL, due - now), MIN_WAIT)
        return max(min(self._config.tick_interval, due - now), MIN_WAIT)

    def _progress(self, held: bool) -> tuple[int, int, bool]:
        """What the pipeline has done so far: ingest's position, the items the later stages received, the lease."""
        return self._ingest.position, sum(stage.received for stage in self._stages[1:]), held

    def _settled(self, sent: float, held: bool) -> bool:
        """Whether the pipeline has nothing under way: every queue empty, nothing journaled unread, the last tick
        through every stage, no delivery in flight (its failure would schedule a retry)."""
        if self._journal.pending or self.orders.depth or any(link.depth for link in self._links):
            return False
        if not held:
            return True
        last = self._stages[-1]
        return not self._ingest.behind and last.watermark >= sent and getattr(last, "settled", True) is not False

    def _next_deadline(self) -> float:
        due = math.inf
        for source in self._deadlines:
            when = source()
            if when < due:
                due = when
        return due

    async def nudge(self) -> None:
        """This process journaled events: have ingest read them (while it runs the pipeline)."""
        if self._lease.held:
            await self.orders.send_stream.send(Appended())
            self.alarm.work()  # what it reads may set earlier deadlines: the ticker looks again once it is through

    def poke(self) -> None:
        """:meth:`nudge` without waiting: a full queue means ingest is busy, and it reads on by itself."""
        if self._lease.held and self.state == "running":
            with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
                self.orders.send_stream.send_nowait(Appended())
            self.alarm.work()

    async def control(self, control: Control) -> None:
        """Put a checkpoint or restore barrier into the pipeline, behind everything sent before it."""
        await self.orders.send_stream.send(control)
        self.alarm.work()  # a restore brings its own timers

    async def drain(self, mark: float) -> None:
        """Return once everything journaled before this call has gone through every stage (see :class:`Drain`).

        Raises :class:`EngineStateError` when the engine closed (or began closing) before the barrier was
        reached: what was accepted is in the journal, for close() or the next start.
        """
        barrier = anyio.Event()
        self._flushes.add(barrier)
        try:
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                await self.orders.send_stream.send(Drain(mark, barrier))
                self.alarm.work()
                await barrier.wait()
        finally:
            self._flushes.discard(barrier)
        if barrier in self._flushes_cut:
            self._flushes_cut.discard(barrier)
            raise EngineStateError(
                "the engine closed while flush() waited; what was accepted is in the journal, for the next start"
            )
        if self.state != "running" and not barrier.is_set():
            raise EngineStateError("the engine began closing while flush() waited; close() handles what was accepted")


class Alarm:
    """What ends the live ticker's idle wait: work arriving. ``track()`` rings it (from any thread, through the
    loop's ``call_soon_threadsafe``) for the first event into an empty inbox (or one it journaled itself), and only
    while the ticker listens (is idle): a busy ticker journals the inbox within a tick anyway, so ``track()`` pays
    one attribute read."""

    def __init__(self) -> None:
        self._event: anyio.Event | None = None  # the current wait's; a new one for every wait
        #: The ticker is in an idle wait: the first event into the inbox must wake it.
        self.listening = False
        #: Work arrived since the ticker last looked (an order into ingest, the inbox filling).
        self.worked = False
        self._call_soon: Callable[..., Any] | None = None  # the loop's call_soon_threadsafe (asyncio only)
        self._loop_thread = 0

    def listen(self, journal: Journal) -> None:
        """Called on the engine's loop: let ``journal``'s ``track()`` ring from any thread. Only on asyncio;
        elsewhere the ticker is never idle (it ticks every ``tick_interval``, as it always did)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._call_soon = loop.call_soon_threadsafe
        self._loop_thread = threading.get_ident()
        journal.on_work = self.tracked

    def arm(self) -> anyio.Event:
        """A new wait begins: the event that ends it."""
        event = self._event = anyio.Event()
        return event

    def disarm(self) -> bool:
        """The wait ended: stop listening; whether work arrived meanwhile (then the next tick is not quiet)."""
        self.listening = False
        worked, self.worked = self.worked, False
        return worked

    def listening_to(self, journal: Journal) -> bool:
        """Start listening for an idle wait, if the alarm can be rung from other threads and the inbox is empty.

        Listening first, then a last look at the inbox: a ``track()`` that found the ticker busy (and so did not
        ring) has put its event in the inbox before this look, and is counted as work.
        """
        if self._call_soon is None:
            return False
        self.listening = True
        if journal.pending:
            self.listening = False
            self.worked = True
            return False
        return True

    def tracked(self) -> None:
        """``track()`` left work (any thread; see ``Journal.on_work``): ring if the ticker is idle."""
        if not self.listening:
            return
        self.listening = False
        if threading.get_ident() == self._loop_thread:
            self.ring()
            return
        call_soon = self._call_soon
        if call_soon is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing is left to wake
                call_soon(self.ring)

    def ring(self) -> None:
        """On the loop: end the ticker's current wait; it stays busy until the pipeline is quiet again."""
        self.worked = True
        self.listening = False
        event = self._event
        if event is not None:
            event.set()

    def work(self) -> None:
        """On the loop: an order went into ingest (what it reads, or a restore, may bring earlier deadlines). An
        idle ticker is woken; a busy one just does not count its next tick as quiet."""
        self.worked = True
        if self.listening:
            self.ring()
