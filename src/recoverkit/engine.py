"""The engine: five stages linked by bounded queues, run as tasks of one event loop inside the shop's process.

::

    track() -> inbox ---.
    submit() ----------> [ingest: journal (store), read back] => [sessionize] => [score] => [route] => [dispatch]
                                                                                                    -> adapters
    (=>: a bounded queue of batches carrying the watermark)

Every accepted event is appended to the store's journal first (:mod:`recoverkit.journal`): ingest journals
what ``track()`` queued, and in the one process holding the store's pipeline lease reads the journal in order;
the stages checkpoint their state into the store every ``store.checkpoint_interval`` seconds. A restart (or
another worker taking over the lease) loads the last checkpoint and re-reads the journal after it, so a crash
loses nothing accepted, and the store's ledger makes sure nothing is sent twice (see :mod:`recoverkit.dispatch`).

:class:`Engine` is a front with the public verbs over three named parts: the assembly that wires the stages
from the configuration and the plug-ins (:mod:`recoverkit._assembly`), ownership of the pipeline (lease,
checkpoints, restores, retention: :mod:`recoverkit._ownership`) and the task runner (:mod:`recoverkit._runner`).
Every part reaches the store through one :class:`~recoverkit._store_runner.StoreRunner`.

Use it from async code as a context manager::

    async with recoverkit.Engine(channels={"email": MyEmail()}) as engine:
        engine.track({"event": "add_to_cart", "session_id": "s1", ...})

From synchronous (WSGI) code use :class:`recoverkit.BackgroundEngine`, which runs this engine in a thread.
The engine installs no signal handlers, changes no logging configuration and sets no event-loop policy.
"""

from __future__ import annotations

import dataclasses
import math
import os
import secrets
import socket
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import anyio
import msgspec

from ._alert_runner import watch_purchase_path
from ._assembly import Assembly
from ._fleet import PARTITION_TICK, Fleet
from ._log import get_logger
from ._statistics import EngineStatistics, collect
from .audit import note_config
from .catalogue import Catalogue
from .channels.base import Channel, Message
from .clock import Clock
from .config import Config
from .currency import Rates
from .deadletters import DeadLetters
from .dispatch import Guard
from .errors import StoreError
from .events import contact_key
from .links import RestoreLinks
from .loyalty import Loyalty
from .offers import CouponProvider
from .plugins import Plugins
from .privacy import decode_record, encode_forget
from .score import Scorer
from .store._audit import AuditStore
from .store._partition_view import PartitionView, SharedStore, is_partitioned
from .store.base import PurgeReport, Store

__all__ = ["Engine", "EngineStatistics"]

_log = get_logger("recoverkit.engine")


class Engine:
    """The recovery engine. Build it once at start-up; configuration errors are raised here.

    The shop's plug-ins come as one :class:`~recoverkit.Plugins` bundle (``plugins=``), whose fields say what
    each one is and its default: ``channels``, ``store``, ``clock``, ``scorer``, ``guard``, ``coupons``,
    ``links``, ``catalogue``, ``loyalty``, ``rates``, ``dead_letters``. Each may also be given as a keyword
    argument of the same name, which adds it to the bundle; giving one both ways is a :class:`TypeError`.
    :meth:`Plugins.validate <recoverkit.Plugins.validate>` checks them here, so a missing adapter, a plug-in
    without its method or a template that does not render is a :class:`ConfigError` at start-up. A store
    passed in is not closed by the engine; one it opened (a path, ``config.store.path``) is. A secret that is
    needed and missing (the code secret in ``config.code_secret_env`` when no ``coupons`` is given, the links'
    secret) is a :class:`ConfigError` here too.

    The rest are this process's options, not plug-ins. ``owner`` names this process in leases and the ledger
    (default: host, pid and a random suffix). ``deliver=False`` runs the pipeline without sending anything:
    due messages stay scheduled (in the checkpoint) for the next engine that delivers; maintenance commands use
    it. ``pipeline=False`` makes this process a pure journal writer that never takes the pipeline lease: web
    workers use it when a dedicated worker process (``recoverkit worker``) runs the pipeline.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        plugins: Plugins | None = None,
        channels: Mapping[str, Channel] | None = None,
        clock: Clock | None = None,
        scorer: Scorer | None = None,
        dead_letters: str | Path | DeadLetters | None = None,
        store: Store | str | os.PathLike[str] | None = None,
        guard: Guard | None = None,
        owner: str | None = None,
        deliver: bool = True,
        pipeline: bool = True,
        coupons: CouponProvider | None = None,
        links: RestoreLinks | None = None,
        catalogue: Catalogue | None = None,
        loyalty: Loyalty | None = None,
        rates: Rates | None = None,
    ) -> None:
        self.config = config if config is not None else Config()
        given = (plugins if plugins is not None else Plugins()).merged(
            channels=channels, store=store, clock=clock, scorer=scorer, guard=guard, coupons=coupons, links=links,
            catalogue=catalogue, loyalty=loyalty, rates=rates, dead_letters=dead_letters,
        )
        #: The plug-ins this engine runs with, validated (``channels`` and ``scorer`` resolved).
        self.plugins = given.validate(self.config)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._build(deliver=deliver, pipeline=pipeline)
        #: With a partitioned store (docs/scaling.md): the partitions this process runs, each a pipeline of its
        #: own (:mod:`recoverkit._fleet`); this engine's own stages then only journal.
        self._fleet: Fleet | None = None
        if is_partitioned(self.store):
            self._fleet = self._partitioned(deliver=deliver, pipeline=pipeline)

    def _build(self, *, deliver: bool, pipeline: bool) -> None:
        """Wire the parts from ``self.config`` and ``self.plugins`` (validated)."""
        #: Whether this engine sends (``deliver``): the shop's engines do, the CLI's maintenance engines do not.
        self._delivers = deliver
        parts = self._parts = Assembly(self.config, self.plugins, owner=self.owner, deliver=deliver, pipeline=pipeline)
        self.catalogue, self.loyalty, self.rates = self.plugins.catalogue, self.plugins.loyalty, self.plugins.rates
        self.clock, self.channels, self.store = parts.clock, parts.channels, parts.store
        self.coupons, self.links = parts.coupons, parts.links
        self.journal, self.ingest, self.sessionize = parts.journal, parts.ingest, parts.sessionize
        self.score, self.route, self.dispatch = parts.score, parts.route, parts.dispatch
        self.runs_pipeline = pipeline
        self._ownership, self._runner = parts.ownership, parts.tasks
        #: Run a blocking store method without blocking the event loop (in a worker thread for SQLite): the
        #: engine's one :class:`~recoverkit._store_runner.StoreRunner`, which every stage uses too.
        self.call_store = parts.runner
        #: Seconds ``async with`` waits at exit for in-flight work before cancelling it.
        self.close_timeout = 10.0

    def _partitioned(self, *, deliver: bool, pipeline: bool) -> Fleet:
        """This engine journals into the partitions; the fleet runs the ones this process owns (see _fleet)."""
        store = cast("SharedStore", self.store)
        self._ownership.runs_pipeline = False  # the front never takes the one-pipeline lease of a partitioned store
        self.runs_pipeline = False
        # Each partition's dispatch gets its share of max_in_flight: the fleet has at most that many deliveries in
        # flight, the adapters' providers see no more, and a process owning every partition no more than a single
        # engine would. Each partition with the whole figure, thousands of deliveries woke in one turn of the
        # event loop after an outage, and the loop lagged past the lease (tests/store/test_postgres_fleet.py).
        share = max(1, -(-self.config.max_in_flight // store.partitions))
        config = msgspec.structs.replace(
            self.config, tick_interval=max(self.config.tick_interval, PARTITION_TICK), max_in_flight=share
        )
        plugins = dataclasses.replace(
            self.plugins, coupons=self.coupons, links=self.links, dead_letters=self.dispatch.dead_letters
        )

        caps = tuple((cap.max, cap.per, cap.channel) for cap in self.config.caps)

        def make(view: PartitionView) -> Engine:
            # An ordinary engine on one partition's view of the store, sharing this one's plug-ins (validated
            # once, here) and its channel adapters, which only the front closes.
            view.caps = caps
            part = Engine.__new__(Engine)
            part.config, part.owner = config, self.owner
            # In event time each partition keeps its own clock: its time is its own events' watermark, so what
            # it decides does not depend on which other partitions share this process.
            clock = type(self.clock)() if self.clock.event_time else self.clock
            part.plugins = dataclasses.replace(plugins, store=view.as_store(), clock=clock)
            part._build(deliver=deliver, pipeline=True)
            base, own = view.base, view.partition
            part.sessionize.foreign = lambda session_id: base.partition_of(session_id) != own
            part._fleet = None
            part._parts.owns_adapters = False
            part.ingest.polls = False  # the fleet reads every partition's head in one query and says what grew
            return part

        fleet = Fleet(self.config, store, self.call_store, owner=self.owner, make=make, pipeline=pipeline)
        self.journal.on_appended = fleet.appended
        if self.clock.event_time:  # a replay: this process is one of the writers the partitions wait for
            fleet.writer = self.journal.writer = self.owner
        self._runner.after_inbox = fleet.nudge
        return fleet

    def _grew(self, head: int) -> None:
        """(A partition's pipeline.) The journal of this partition reached ``head``: read it now, if unread."""
        if head > self.journal.last_seq:
            self.journal.last_seq = head
        if head > self.ingest.position:
            self._runner.poke()

    def _hold_to(self, floor: float, head: int) -> None:
        """(A partition's pipeline, event time.) The slowest writer's mark is ``floor`` and the partition's journal
        reached ``head`` after it: read on, and hold the watermark to the mark once read through ``head``."""
        self.ingest.hold_to(floor, head)
        self._grew(head)
        self._runner.poke()  # the watermark may move with the floor, whether or not the journal grew

    def _taking_over(self) -> bool:
        taking_over = self._ownership.taking_over
        return taking_over is not None and not taking_over.is_set()

    @property
    def is_owner(self) -> bool:
        """Whether this process holds the pipeline lease (runs the pipeline) now; with a partitioned store,
        whether it owns every partition (so :meth:`forget` and :meth:`export` are complete here)."""
        if self._fleet is not None:
            return self._fleet.owns_all
        return self._ownership.is_owner

    @property
    def partitions(self) -> dict[str, Any] | None:
        """With a partitioned store: the partitions this process owns, its share and the live members
        (``None`` with a one-sequence store)."""
        return None if self._fleet is None else self._fleet.status()

    @property
    def _state(self) -> str:
        return self._runner.state

    @property
    def _checkpoint_due(self) -> bool:
        return self._ownership.checkpoint_due

    @_checkpoint_due.setter
    def _checkpoint_due(self, due: bool) -> None:  # tests use it to make a checkpoint due at once
        self._ownership.checkpoint_due = due

    async def _renew_lease(self) -> None:
        """What the lease task does every ``lease_ttl / 5`` seconds (tests call it to skip the wait)."""
        await self._ownership.renew()

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose(self.close_timeout)

    async def start(self) -> None:
        """Start the stages as tasks of the current event loop. Prefer ``async with engine:``.

        If the pipeline lease is free, this process takes it, loads the last checkpoint and starts reading the
        journal after it before this returns; otherwise it journals events and waits to take over.
        """
        runner, ownership = self._runner, self._ownership
        await runner.open()
        ownership.attach(runner.control, lambda: runner.running)
        try:
            watch_purchase_path(self, runner.start_soon)  # [alerts] enabled: its sinks checked here (docs/alerts.md)
            await ownership.renew()  # takes over (and restores) at once when the lease is free
        except BaseException:
            # A stage failed during the restore (or the store did): leave nothing running or open behind.
            try:
                await runner.abort()
            finally:
                with anyio.CancelScope(shield=True):
                    await self._parts.close_adapters()
                    await self._parts.close_store()
                runner.closed()
            raise
        await self._note_config()
        runner.start_soon(runner.tick, name="recoverkit-ticker")
        runner.start_soon(ownership.keep_lease, name="recoverkit-lease")
        runner.start_soon(ownership.keep_checkpoints, name="recoverkit-checkpoints")
        if self._fleet is not None:
            await self._start_fleet(self._fleet)
        _log.info(
            "engine_started",
            event_time=self.clock.event_time,
            channels=sorted(self.channels),
            store=type(self.store).__name__,
            owner=self.is_owner,
        )

    async def _note_config(self) -> None:
        """Record in the store's audit log that this process started with a configuration the log has not seen
        (``config.changed``, :func:`recoverkit.audit.note_config`): the first worker of a deploy records it, the
        others find it recorded. A replay (event time) records nothing, nor does an engine that sends nothing
        (``deliver=False``: the CLI's maintenance commands, which may run with a default configuration that is
        not the shop's). Failing to record is logged, not fatal: the engine's promises do not depend on the log."""
        if self.clock.event_time or not self._delivers or not isinstance(self.store, AuditStore):
            return
        try:
            actor, at = f"engine:{self.owner}", self.clock.now()
            await self.call_store(note_config, self.store, self.config, actor=actor, at=at)
        except (StoreError, OSError) as exc:
            _log.error("config_change_not_recorded", error=str(exc))

    async def _start_fleet(self, fleet: Fleet) -> None:
        try:
            # Takes this process's share of the free partitions (restored) before returning.
            await fleet.start(self._runner.start_soon)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.aclose(self.close_timeout)
            raise
        self._runner.start_soon(fleet.keep_balance, name="recoverkit-partitions")
        event_time = self.clock.event_time
        self._runner.start_soon(lambda: fleet.keep_reading(event_time=event_time), name="recoverkit-partition-heads")

    async def aclose(self, timeout: float = 10.0) -> None:
        """Stop: journal and handle everything accepted so far, wait for deliveries in flight, checkpoint, close.

        Waits at most ``timeout`` seconds, then cancels what is left (which the journal keeps: the next start
        handles it). Messages scheduled for later stay scheduled in the checkpoint. Closing completes even when
        the calling task is being cancelled (the host shutting down). If a stage failed, its error is raised
        from here, in an ``ExceptionGroup``, rather than lost.
        """
        if self._runner.state != "running":
            return
        stages = self._parts.stages

        async def last_checkpoint() -> None:
            # Every stage has ended: their state is quiet and can be read directly.
            states = {stage.name: stage.snapshot() for stage in stages}
            await self._ownership.final_checkpoint(self.ingest.position, states)

        try:
            if self._fleet is not None:
                with anyio.CancelScope(shield=True):
                    # What track() queued is journaled, then every partition owned here is read to the end,
                    # checkpointed and handed over, in tasks of the runner's group (so before it stops).
                    await self.ingest.journal_inbox()
                    await self._fleet.nudge()
                    await self._fleet.close()
            await self._runner.stop(timeout, last_checkpoint)
        finally:
            with anyio.CancelScope(shield=True):
                await self._parts.close_adapters()
                if self.runs_pipeline:  # also after a take-over that closing cut short (not owner then)
                    self._ownership.stand_down(None)
                    await self._ownership.release()
                await self._parts.close_store()
            self._runner.closed()
            _log.info("engine_stopped")

    def _discard(self) -> None:
        """Never started and never will be (BackgroundEngine closed first): refuse later events as a closed
        engine does, and close the store opened at construction."""
        self._runner.state = "closed"
        if self._parts.owns_store:
            self.store.close()

    # -- checkpoints and retention --------------------------------------------------------------------------

    async def purge(self) -> PurgeReport:
        """Delete what is older than the retention periods of ``config.store``, now.

        The engine also purges by itself at each whole hour of its clock (cutting off at that hour), checked
        every second and at the end of every :meth:`flush`, so that an event-time replay keeps what a live run
        over the same events kept.

        Ages are measured on the engine's clock, as everything purged was dated on it: in a replay of old data
        "now" is the watermark, so a dead letter of 2019 lives ``dead_letter_days`` of event time, not until the
        first purge. Before a replay has seen any event its clock has no time yet, and nothing is purged.
        """
        return await self._ownership.purge()

    async def checkpoint(self) -> int | None:
        """Write a checkpoint of the pipeline now; return the journal position it covers.

        Returns ``None`` when this process does not hold the pipeline lease. The journal is trimmed up to the
        position. Runs by itself every ``store.checkpoint_interval`` seconds and when the engine closes.
        """
        self._runner.require_running()
        if self._fleet is not None:  # the positions of every partition owned here, added up
            return await self._fleet.checkpoint()
        return await self._ownership.checkpoint()

    # -- putting events in ----------------------------------------------------------------------------------

    def track(self, event: Any) -> bool:
        """Accept an event without waiting on the pipeline; safe from any thread; never raises.

        ``event`` is a ``dict``, JSON ``bytes``/``str`` or an event Struct. With ``store.durability = "batch"``
        ``True`` means it is in the inbox and will be validated and journaled within the inbox's budget (a tick,
        at most ``inbox_capacity`` events; invalid events are counted in :meth:`statistics` and logged without
        their content); with ``"sync"``, and while the store refuses writes, ``True`` means it is journaled.
        Returns ``False`` when the event was not kept: the engine is closed, the store refused it, or
        (``"sync"``) the event is invalid. See :mod:`recoverkit.journal` for what survives a crash.
        """
        if self._runner.state in ("closing", "closed"):
            self.journal.refused += 1
            return False
        return self.journal.track(event)

    async def submit(self, event: Any) -> None:
        """Validate ``event`` now (raising :class:`InvalidEvent`) and journal it; waits while the pipeline is
        busy (backpressure). The event is durable when this returns."""
        self._runner.require_running()
        events, datas = self.journal.accept([event], raise_invalid=True)
        await self._append(events, datas)

    async def submit_many(self, events: Iterable[Any]) -> None:
        """Journal many raw events at once (the fast path for replays); invalid ones are counted, not raised."""
        self._runner.require_running()
        accepted, datas = self.journal.accept(list(events))
        await self._append(accepted, datas)

    async def _append(self, events: list[Any], datas: list[bytes]) -> None:
        if not events:
            return
        if not await self.call_store(self.journal.append, events, datas):
            raise StoreError("the store refused the events (see the log); they were not accepted")
        if self._fleet is not None:
            await self._fleet.nudge()
        await self._runner.nudge()

    async def flush(self, *, end_of_input: bool = False) -> None:
        """Wait until everything accepted so far has gone through every stage and deliveries have finished.

        Live, this also advances the engine to the clock's current time, so with a
        :class:`~recoverkit.clock.FakeClock` ``clock.advance(3600); await engine.flush()`` fires what fell due.
        In event time, ``end_of_input=True`` declares the input complete: events held back for lateness are
        released and the watermark moves to the last event time. Open carts stay open (they are censored, not
        abandoned). In a process that does not hold the pipeline lease this only journals what was tracked.
        """
        runner, ownership = self._runner, self._ownership
        runner.require_running()
        await self.ingest.journal_inbox()
        if self._fleet is not None:  # the partitions owned here
            await self._fleet.flush(end_of_input=end_of_input)
            return
        if self.clock.event_time:
            mark = math.inf if end_of_input else -math.inf
        else:
            mark = self.clock.now()
        while True:
            if ownership.taking_over is not None:
                await ownership.taking_over.wait()
            if not ownership.is_owner:
                return
            checked = ownership.lease_checked
            await runner.drain(mark)
            if checked is None or not runner.running or not self.dispatch.extra_statistics()["held_not_owner"]:
                break
            # Claims were refused (the lease lapsed under a stall) and are held until the lease is checked, which
            # the refusal set off: wait for that check, then flush again what it resumed or restored.
            ownership.claim_refused()
            await checked.wait()
        # The retention purge of the hour the clock reached, if not done yet: what a replay's store keeps when its
        # input ends is what a live run's kept at the same time (one clock). Failing, it is logged, not raised:
        # everything flushed is kept, and the next flush or the hourly check tries again.
        try:
            await ownership.purge_due()
        except StoreError as exc:
            _log.error("purge_failed", error=str(exc))

    # -- data protection ------------------------------------------------------------------------------------

    async def forget(self, customer_id: str) -> bool:
        """Erase everything held about ``customer_id``, and never write to them again (see
        :mod:`recoverkit.privacy` for what goes and the little that stays).

        In the process holding the pipeline lease this returns once the erasure is done and checkpointed:
        ``True``. Elsewhere the request is journaled and ``False`` returned: the owner carries it out when it
        reads it, within a tick or two. Raises ``ValueError`` for an empty id.
        """
        self._runner.require_running()
        record = encode_forget(customer_id, time.time())
        if not await self.call_store(self.journal.append, [decode_record(record)], [record]):
            raise StoreError("the store refused the forget request (see the log); it was not recorded")
        if self._fleet is not None:
            await self._fleet.nudge()  # journaled into every partition: those owned here read it now
        if not self.is_owner:
            return False
        await self.flush()
        await self.checkpoint()
        return True

    def export(self, customer_id: str) -> dict[str, Any]:
        """Everything held about ``customer_id``, as JSON-ready data: the right of access.

        ``carts`` and ``contact`` come from the pipeline's state (only the process holding the lease has it;
        elsewhere they are empty and ``complete`` is ``False``), ``pending_messages`` are those scheduled for
        them, and ``store`` what the store keeps (ledger, dead letters, purchase, suppression).
        """
        if not isinstance(customer_id, str) or not customer_id.strip():
            raise ValueError(f"export: expected a non-empty customer id, got {customer_id!r}")
        carts = [cart for engine in self._pipelines() for cart in engine.sessionize.carts_of(customer_id)]
        contact_keys = [customer_id] + [contact_key(cart.session_id) for cart in carts]
        pending = [m for m in self.pending_messages() if m.recipient.contact_key in contact_keys]
        contacts = [engine.route.contact_of(customer_id) for engine in self._pipelines()]
        return {
            "customer_id": customer_id,
            "complete": self.is_owner,
            "carts": msgspec.to_builtins(carts),
            "contact": next((c for c in contacts if c is not None), None),
            "pending_messages": msgspec.to_builtins(pending),
            "store": [msgspec.to_builtins(self.store.export(key)) for key in contact_keys],
        }

    # -- looking inside -------------------------------------------------------------------------------------

    def _pipelines(self) -> list[Engine]:
        """The pipelines whose state this process holds: its own while it owns it, or its partitions'."""
        if self._fleet is not None:
            return [cast(Engine, p) for p in self._fleet.pipelines.values() if p.is_owner]
        return [self] if self._ownership.is_owner else []

    def pending_messages(self) -> list[Message]:
        """Messages scheduled and not yet due, in due order (with a partitioned store: in the partitions owned
        here)."""
        if self._fleet is not None:
            return self._fleet.pending_messages()
        return self.dispatch.pending()

    def statistics(self) -> EngineStatistics:
        """Counters and queue figures of every stage, for dashboards, health checks and tests (with a
        partitioned store: added up over the partitions owned here; :attr:`partitions` says which)."""
        if self._fleet is not None:
            return self._fleet.statistics(collect(self._parts))
        return collect(self._parts)
