"""The engine's task runner: the stages as tasks of one task group, the queues between them, the ticker, and
the barriers :meth:`recoverkit.Engine.flush` waits for.

::

    orders -> [ingest] => [sessionize] => [score] => [route] => [dispatch]
              (orders: Tick, Appended, Drain and the Control barriers; =>: a bounded queue of batches)

The runner knows nothing of leases or checkpoints (see :mod:`recoverkit._ownership`): it runs what it is given
and says where the engine is in its life (``state``: new, running, closing, closed).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal

import anyio
import anyio.abc

from ._log import get_logger
from ._pipeline import Appended, Control, Drain, Lease, Link, Order, Queue, Stage, Tick
from .clock import Clock
from .config import Config
from .errors import EngineStateError
from .ingest import Ingest

__all__ = ["Runner", "State"]

_log = get_logger("recoverkit.engine")

#: Where the engine is in its life: :meth:`Runner.open` starts it, :meth:`Runner.stop` ends it.
State = Literal["new", "running", "closing", "closed"]


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
        journaled something ingest has not read: time comes from the events."""
        interval = self._config.tick_interval
        event_time = self._clock.event_time
        ingest = self._ingest
        try:
            while True:
                if event_time:
                    await anyio.sleep(interval)
                else:
                    await self._clock.sleep(interval)
                await ingest.journal_inbox()
                if self.after_inbox is not None:
                    await self.after_inbox()
                if not self._lease.held or (event_time and not ingest.behind):
                    continue
                # A full queue means the pipeline is busy: skip this tick, the next carries a newer clock.
                with contextlib.suppress(anyio.WouldBlock):
                    self.orders.send_stream.send_nowait(Tick(-math.inf if event_time else self._clock.now()))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return

    async def nudge(self) -> None:
        """This process journaled events: have ingest read them (while it runs the pipeline)."""
        if self._lease.held:
            await self.orders.send_stream.send(Appended())

    def poke(self) -> None:
        """:meth:`nudge` without waiting: a full queue means ingest is busy, and it reads on by itself."""
        if self._lease.held and self.state == "running":
            with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
                self.orders.send_stream.send_nowait(Appended())

    async def control(self, control: Control) -> None:
        """Put a checkpoint or restore barrier into the pipeline, behind everything sent before it."""
        await self.orders.send_stream.send(control)

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
