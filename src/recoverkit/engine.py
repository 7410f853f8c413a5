"""The engine: five stages linked by bounded queues, run as tasks of one event loop inside the shop's process.

::

    track()/submit() -> journal (store) -> [ingest] => [sessionize] => [score] => [route] => [dispatch] -> adapters
                                            (=>: a bounded queue of batches carrying the watermark)

Every accepted event is appended to the store's journal first (:mod:`recoverkit.journal`); the stages run in
the one process holding the store's pipeline lease, read the journal in order, and checkpoint their state into
the store every ``store.checkpoint_interval`` seconds. A restart (or another worker taking over the lease)
loads the last checkpoint and re-reads the journal after it, so a crash loses nothing accepted, and the
store's ledger makes sure nothing is sent twice (see :mod:`recoverkit.dispatch`).

Use it from async code as a context manager::

    async with recoverkit.Engine(channels={"email": MyEmail()}) as engine:
        engine.track({"event": "add_to_cart", "session_id": "s1", ...})

From synchronous (WSGI) code use :class:`recoverkit.BackgroundEngine`, which runs this engine in a thread.
The engine installs no signal handlers, changes no logging configuration and sets no event-loop policy.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from time import perf_counter
from types import TracebackType
from typing import Any, Final, TypeVar

import anyio
import anyio.abc
import anyio.to_thread
import msgspec

from ._log import get_logger
from ._pipeline import Batch, Control, Link, StageStatistics
from .catalogue import Catalogue
from .channels.base import Channel, Message
from .clock import Clock, WallClock
from .config import Config
from .currency import Rates
from .deadletters import DeadLetters
from .dispatch import Dispatch, Guard
from .errors import ConfigError, EngineStateError, StoreError
from .events import contact_key
from .ingest import Ingest
from .journal import Journal
from .links import RestoreLinks
from .loyalty import Loyalty
from .offers import CodeBook, CouponProvider
from .plugins import Plugins
from .privacy import decode_record, encode_forget
from .route import Route
from .score import Score, Scorer
from .sessionize import Sessionize
from .store.base import PIPELINE_LEASE, JournalEntry, PurgeReport, Store
from .store.memory import MemoryStore
from .store.sqlite import SQLiteStore

__all__ = ["Engine", "EngineStatistics"]

_log = get_logger("recoverkit.engine")
T = TypeVar("T")

#: Format of the checkpoint blob; a newer recoverkit reading an older format must convert or refuse it.
CHECKPOINT_FORMAT: Final = 1


class _CheckpointBlob(msgspec.Struct, array_like=True):
    format: int
    owner: str
    states: dict[str, bytes]


class EngineStatistics(msgspec.Struct, kw_only=True):
    """A snapshot of what the engine has done; see each field. ``stages`` has the per-stage figures.

    ``events_accepted`` counts events journaled by this process; ``events_spilled`` those of them that
    ``track()`` journaled itself because the inbox was full; ``events_overflow`` events that could not be kept
    (the store failed; they were refused). ``owner`` says whether this process runs the pipeline, and
    ``journal_behind`` how many journaled events it has not read yet.

    A take-over restores the pipeline from the last checkpoint, counters included (abandonments, reasons,
    message outcomes, late events, events read): ``restores`` counts the take-overs this process completed,
    ``restored`` holds the stages' figures right after the last one, and ``restoring`` is true while one is
    under way (the stages' counters then mix old and restored values). :mod:`recoverkit.metrics` uses them to
    count what this process did.
    """

    events_accepted: int
    events_invalid: dict[str, int]
    events_overflow: int
    events_spilled: int
    events_late: int
    sessions: int
    abandonments: dict[str, int]
    reasons: dict[str, int]
    messages: dict[str, int]
    dead_letters: int
    watermark: float
    owner: bool
    journal_behind: int
    checkpoint_position: int
    stages: dict[str, StageStatistics]
    restores: int = 0
    restoring: bool = False
    restored: dict[str, StageStatistics] = {}
    #: Times this process found its lease had lapsed (a stall past ``lease_ttl``) and restored from the checkpoint.
    lease_lapses: int = 0


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
        self.catalogue, self.loyalty, self.rates = self.plugins.catalogue, self.plugins.loyalty, self.plugins.rates
        self.clock: Clock = self.plugins.clock if self.plugins.clock is not None else WallClock()
        self.channels = dict(self.plugins.channels or {})
        letters = self.plugins.dead_letters
        dead = letters if isinstance(letters, DeadLetters) else DeadLetters(letters)
        self.store, self._owns_store = self._open_store(self.plugins.store)
        # A store in memory never blocks: calling it inline saves a thread hop per call.
        self._inline_store = isinstance(self.store, MemoryStore)
        if not pipeline and self._owns_store and self._inline_store:
            raise ConfigError(
                "pipeline=False journals events for a worker in another process, so it needs a shared store: "
                "set config.store.path (or pass store=PATH) to the SQLite file the worker reads"
            )
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        settings = self.config.store
        self.journal = Journal(
            self.config,
            self.clock,
            self.store,
            durability=settings.durability,
            record_purchases=not self.clock.event_time,
        )
        self.ingest = Ingest(self.config, self.clock, self.journal, self._read_journal)
        self.sessionize = Sessionize(self.config, event_time=self.clock.event_time)
        self.score = Score(self.plugins.scorer, shipping_shock_ratio=self.config.shipping_shock_ratio)
        self.route = Route(self.config, rates=self.rates)
        self.coupons = self.plugins.coupons if self.plugins.coupons is not None else self._default_coupons()
        self.links = self.plugins.links if self.plugins.links is not None else self._default_links()
        self.dispatch = Dispatch(
            self.config,
            self.channels,
            self.clock,
            dead,
            store=self.store,
            call=self.call_store,
            owner=self.owner,
            guard=self.plugins.guard,
            coupons=self.coupons,
            links=self.links,
            catalogue=self.catalogue,
            loyalty=self.loyalty,
        )
        self.dispatch.on_forgotten = self._forgotten
        self.dispatch.on_claim_refused = self._claim_refused
        self.dispatch.delivering = deliver
        self.runs_pipeline = pipeline
        self._stages = (self.ingest, self.sessionize, self.score, self.route, self.dispatch)
        self._links: list[Link[Any]] = []
        self._task_group: anyio.abc.TaskGroup | None = None
        self._state = "new"
        self.is_owner = False
        self._checkpointed = 0
        self._restores = 0
        self._restoring = False
        self._restored: dict[str, StageStatistics] = {}
        self._checkpoint_due = False  # a forget was applied: checkpoint (and trim) without waiting
        self._purged_at = -math.inf
        self._renewed_at = -math.inf  # the time passed to the last renewal that held: the lease ran to this + ttl
        self._lease_lapses = 0
        self._lease_doubt = False  # a renewal failed while owning: its write may or may not have gone in
        self._lease_wake: anyio.Event | None = None
        self._taking_over: anyio.Event | None = None  # set once the last take-over ended (restored or abandoned)
        self._lease_checked: anyio.Event | None = None  # set (and replaced) after each renewal of the lease
        self._flushes: set[anyio.Event] = set()  # barriers flush() waits for; closing releases those left
        self._flushes_cut: set[anyio.Event] = set()  # released by closing, not by the pipeline
        self._drain_lock: anyio.Lock | None = None
        self._checkpoint_lock: anyio.Lock | None = None
        #: Seconds ``async with`` waits at exit for in-flight work before cancelling it.
        self.close_timeout = 10.0

    def _default_coupons(self) -> CouponProvider | None:
        if not self.config.code_offers():
            return None
        name = self.config.code_secret_env
        secret = os.environ.get(name, "")
        if len(secret.encode()) < 32:
            raise ConfigError(
                f"the flows make offers with codes ({', '.join(self.config.code_offers())}) but the environment "
                f"variable {name} {'is empty' if not secret else 'is shorter than 32 bytes'}; expected a random "
                "secret of at least 32 bytes (python -c 'import secrets; print(secrets.token_urlsafe(48))'), or "
                "pass coupons=<your CouponProvider> to Engine"
            )
        return CodeBook(self.store, secret, policy=self.config.codes, clock=self.clock)

    def _default_links(self) -> RestoreLinks | None:
        return RestoreLinks.from_config(self.config.links, clock=self.clock)

    def _open_store(self, store: Store | str | os.PathLike[str] | None) -> tuple[Store, bool]:
        settings = self.config.store
        if store is None:
            if settings.path is None:
                return MemoryStore(), True
            store = settings.path
        if isinstance(store, (str, os.PathLike)):
            return SQLiteStore(store, synchronous=settings.synchronous, busy_timeout=settings.busy_timeout), True
        return store, False  # a Store: Plugins.validate refused anything else

    async def call_store(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a blocking store method without blocking the event loop (in a worker thread for SQLite)."""
        if self._inline_store:
            return fn(*args, **kwargs)
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    async def _read_journal(self, after: int, limit: int) -> list[JournalEntry]:
        return await self.call_store(self.store.read_events, after, limit)

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
        if self._state != "new":
            raise EngineStateError(f"the engine is {self._state}; an Engine can be started once")
        capacity = self.config.queue_batches
        self._links = [Link[Any](capacity) for _ in self._stages]
        self._drain_lock = anyio.Lock()
        self._checkpoint_lock = anyio.Lock()
        self._lease_wake = anyio.Event()
        self._lease_checked = anyio.Event()
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._stopped = anyio.Event()
        self._state = "running"
        for i, stage in enumerate(self._stages):
            outbox = self._links[i + 1] if i + 1 < len(self._links) else None
            self._task_group.start_soon(self._run_stage, i, outbox, name=f"recoverkit-{stage.name}")
        try:
            await self._renew_lease()  # takes over (and restores) at once when the lease is free
        except BaseException:
            # A stage failed during the restore (or the store did): leave nothing running or open behind.
            self._state = "closing"
            self._task_group.cancel_scope.cancel()
            try:
                await self._task_group.__aexit__(None, None, None)
            finally:
                with anyio.CancelScope(shield=True):
                    await self._close_adapters()
                    if self._owns_store:
                        await self.call_store(self.store.close)
                self._close_links()
                self._state = "closed"
            raise
        self._task_group.start_soon(self._tick, name="recoverkit-ticker")
        self._task_group.start_soon(self._keep_lease, name="recoverkit-lease")
        self._task_group.start_soon(self._keep_checkpoints, name="recoverkit-checkpoints")
        _log.info(
            "engine_started",
            event_time=self.clock.event_time,
            channels=sorted(self.channels),
            store=type(self.store).__name__,
            owner=self.is_owner,
        )

    async def aclose(self, timeout: float = 10.0) -> None:
        """Stop: journal and handle everything accepted so far, wait for deliveries in flight, checkpoint, close.

        Waits at most ``timeout`` seconds, then cancels what is left (which the journal keeps: the next start
        handles it). Messages scheduled for later stay scheduled in the checkpoint. Closing completes even when
        the calling task is being cancelled (the host shutting down). If a stage failed, its error is raised
        from here, in an ``ExceptionGroup``, rather than lost.
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
                        await self._drain_inbox()
                        await self._links[0].send_stream.aclose()  # ends ingest, which closes the next link, ...
                        await self._stopped.wait()  # dispatch returns once drained and nothing is in flight
                    if scope.cancelled_caught:
                        _log.warning("engine_close_timeout", timeout=timeout)
                    else:
                        await self._final_checkpoint()
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                await self._close_adapters()
                if self.runs_pipeline:  # also after a take-over that closing cut short (is_owner is off then)
                    self.is_owner = False
                    try:
                        await self.call_store(self.store.release_lease, PIPELINE_LEASE, self.owner)
                    except StoreError as exc:
                        _log.warning("lease_release_failed", error=str(exc))
                if self._owns_store:
                    await self.call_store(self.store.close)
            self._close_links()
            self._state = "closed"
            # A flush() whose barrier the stages will never reach now (cancelled at the close timeout) is told so,
            # rather than left waiting for ever (BackgroundEngine's thread could not stop while it waits).
            for barrier in self._flushes:
                if not barrier.is_set():
                    self._flushes_cut.add(barrier)
                    barrier.set()
            _log.info("engine_stopped")

    def _close_links(self) -> None:
        for link in self._links:  # a cancelled or failed stage leaves its streams open
            link.send_stream.close()
            link.receive_stream.close()

    async def _close_adapters(self) -> None:
        for adapter in {id(a): a for a in self.channels.values()}.values():
            close = getattr(adapter, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception as exc:
                    _log.warning("adapter_close_failed", adapter=type(adapter).__name__, error=type(exc).__name__)

    async def _run_stage(self, index: int, outbox: Link[Any] | None) -> None:
        try:
            await self._stages[index].run(self._links[index], outbox)
        finally:
            if outbox is None:  # dispatch ended: drained, or cancelled with the caller's scope; aclose goes on
                self._stopped.set()

    async def _tick(self) -> None:
        # Journal what track() queued; live, push the wall clock through the pipeline so timers fire and the
        # journal is read (also what other workers wrote). In event time, nudge ingest only when this process
        # journaled something new: time comes from the events.
        interval = self.config.tick_interval
        send = self._links[0].send_stream
        event_time = self.clock.event_time
        try:
            while True:
                if event_time:
                    await anyio.sleep(interval)
                else:
                    await self.clock.sleep(interval)
                if self.journal.pending:
                    await self._drain_inbox(nudge=False)
                if not self.is_owner or (event_time and not self.ingest.behind):
                    continue
                mark = -math.inf if event_time else self.clock.now()
                # A full queue means the pipeline is busy: skip this tick, the next carries a newer clock.
                with contextlib.suppress(anyio.WouldBlock):
                    send.send_nowait(Batch([], mark, perf_counter()))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return

    async def _drain_inbox(self, *, nudge: bool = False) -> None:
        """Journal everything ``track()`` has queued, in the order it was queued."""
        assert self._drain_lock is not None
        async with self._drain_lock:
            if self.journal.pending:
                # In a worker thread: validating and committing a full inbox takes milliseconds. What the store
                # refuses is counted and logged there (events_overflow, journal_overflow).
                await self.call_store(self.journal.drain)
        if nudge:
            await self._nudge()

    async def _nudge(self) -> None:
        if self.is_owner:
            await self._links[0].send_stream.send(Batch([], -math.inf, perf_counter()))

    # -- the lease ------------------------------------------------------------------------------------------

    async def _keep_lease(self) -> None:
        period = self.config.store.lease_ttl / 5
        try:
            while True:
                assert self._lease_wake is not None
                with anyio.move_on_after(period):
                    await self._lease_wake.wait()  # or sooner: a claim was refused, the lease may have lapsed
                self._lease_wake = anyio.Event()
                try:
                    await self._renew_lease()
                finally:
                    checked, self._lease_checked = self._lease_checked, anyio.Event()
                    if checked is not None:
                        checked.set()  # flush() waits for this after claims were refused
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return  # the engine is closing: aclose() finishes what the lease needs (checkpoint, release)

    def _claim_refused(self) -> None:
        if self._lease_wake is not None:
            self._lease_wake.set()

    async def _renew_lease(self) -> None:
        """Renew the pipeline lease; take over when this process gets it, stand down when another holds it.

        Whether another process may have run the pipeline meanwhile is judged by the store's lease row, not by
        timing: a renewal that finds its own name still on the row (``"renewed"``), even after a stall long
        past ``lease_ttl``, knows that nobody else held the lease since (any other holder replaces the name), so
        the state is current and the claims refused while it was out are simply retried. Only ``"taken"`` while
        owning (someone else held it in between, or released it) means the state may be stale: then this
        process stops acting as owner and restores from the checkpoint as a take-over does.
        """
        if not self.runs_pipeline:
            return  # a journal writer only: the dedicated worker holds the lease
        ttl = self.config.store.lease_ttl
        now = time.time()
        try:
            taken = await self.call_store(self.store.take_lease, PIPELINE_LEASE, self.owner, ttl=ttl, now=now)
        except StoreError as exc:
            _log.error("lease_renewal_failed", error=str(exc))
            if self.is_owner:
                # Unknown whether the write went in: the next answer cannot be trusted to say "nobody else held
                # it" for the time it covers, unless the lease cannot have expired meanwhile (see below).
                self._lease_doubt = True
                if time.time() >= self._renewed_at + ttl:  # it would have expired by now: act as if lost
                    self._stand_down("pipeline_lease_lost")
            return
        if taken is None:
            if self.is_owner:
                # Another process took over (this one stalled past the lease). Stop reading the journal; claims
                # already fail for a non-owner, so nothing is sent from the stale state; a later take-over
                # restores from the store.
                self._stand_down("pipeline_lease_lost")
            return
        renewed_at, self._renewed_at = self._renewed_at, now
        doubt, self._lease_doubt = self._lease_doubt, False
        if not self.is_owner:
            await self._take_over()
        elif taken == "taken" or (doubt and time.time() >= renewed_at + ttl):
            # Someone else held the lease since the last renewal (or, after a failed renewal, may have): their
            # reads, sends and checkpoints are not in this state. Restore, as a process taking over would.
            self._lease_lapses += 1
            _log.warning(
                "pipeline_lease_lapsed", owner=self.owner, held_back=self.dispatch.extra_statistics()["held_not_owner"]
            )
            self._stand_down(None)
            await self._take_over()
        elif self._state == "running":
            # Still ours, and nobody else held it: claims refused while it was out (a stall past the lease, or
            # a race with this renewal) are retried; nothing was missed. (Closing, dispatch may have ended:
            # what is held stays in the last checkpoint, for the next start.)
            self.dispatch.resume_refused()

    def _stand_down(self, event: str | None) -> None:
        """Stop acting as the pipeline's owner: ingest stops reading the journal, flush() and the ticker stop
        feeding the stages, and no checkpoint is written from this state (a take-over restores it)."""
        self.is_owner = False
        self.ingest.active = False
        if event is not None:
            _log.warning(event, owner=self.owner)

    async def _take_over(self) -> None:
        # flush() waits for a take-over under way, so that it answers for the restored pipeline, not for a
        # state being discarded (or returns at once, as in any non-owner, if the take-over is abandoned).
        self._taking_over = anyio.Event()
        try:
            await self._restore()
        finally:
            self._taking_over.set()

    async def _restore(self) -> None:
        """This process now holds the lease: restore the pipeline from the last checkpoint and read on.

        Safe at any moment of the engine's life: once closing has begun the take-over is abandoned (the lease
        is given back, so another worker need not wait for it to expire, and the stages' state, which may be
        stale, is neither restored nor checkpointed); once the restore is in the pipeline it is completed, as
        closing lets the stages handle everything sent to them before they end.
        """
        store = self.store
        if self._state != "running":
            await self._abandon_take_over()
            return
        unknown = await self.call_store(store.mark_unknown)
        checkpoint = await self.call_store(store.load_checkpoint)
        states: dict[str, bytes] = {}
        position = 0
        if checkpoint is not None:
            blob = msgspec.msgpack.decode(checkpoint.state, type=_CheckpointBlob)
            if blob.format != CHECKPOINT_FORMAT:
                raise StoreError(
                    f"the store's checkpoint has format {blob.format}, this recoverkit reads format "
                    f"{CHECKPOINT_FORMAT}; upgrade recoverkit, or start from an empty store"
                )
            states, position = blob.states, checkpoint.position
        if self._state != "running":  # closing began while the checkpoint was read
            await self._abandon_take_over()
            return
        control = Control("restore", position, states)
        self._restoring = True
        try:
            # send_nowait is not used: a full link means the stages are busy, and the restore waits its turn.
            await self._links[0].send_stream.send(Batch([], -math.inf, perf_counter(), None, control))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._restoring = False
            await self._abandon_take_over()
            return
        # In the pipeline, ahead of anything sent from now on: the stages apply it before what follows, and
        # closing lets them finish it, so the take-over completes.
        self._checkpointed = position
        self.is_owner = True
        self.ingest.active = True
        await control.done.wait()
        self._restored, self._restores = control.restored, self._restores + 1
        self._restoring = False
        _log.info("pipeline_lease_taken", owner=self.owner, position=position, unknown_outcomes=unknown)

    async def _abandon_take_over(self) -> None:
        self._stand_down(None)
        try:
            await self.call_store(self.store.release_lease, PIPELINE_LEASE, self.owner)
        except StoreError as exc:
            _log.warning("lease_release_failed", error=str(exc))
        _log.info("pipeline_take_over_abandoned", owner=self.owner, reason="closing")

    # -- checkpoints ----------------------------------------------------------------------------------------

    async def _keep_checkpoints(self) -> None:
        # Checks every second (or tick) whether a checkpoint is due, so that one after a forget is not
        # ``checkpoint_interval`` away; retention runs here too, at most hourly.
        interval = self.config.store.checkpoint_interval
        last = time.monotonic()
        while True:
            await anyio.sleep(min(interval, 1.0))
            if not self.is_owner or self._state != "running":
                continue  # closing: aclose() writes the last checkpoint itself, once the stages have ended
            due = time.monotonic() - last >= interval and self.ingest.position > self._checkpointed
            try:
                if due or self._checkpoint_due:
                    last = time.monotonic()
                    await self._checkpoint()
                if time.time() - self._purged_at >= 3600:
                    await self.purge()
            except StoreError as exc:
                _log.error("checkpoint_failed", error=str(exc))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return  # the engine began closing while this checkpoint was on its way in

    def _forgotten(self) -> None:
        self._checkpoint_due = True

    async def purge(self) -> PurgeReport:
        """Delete what is older than the retention periods of ``config.store`` (also run hourly by itself).

        Ages are measured on the engine's clock, as everything purged was dated on it: in a replay of old data
        "now" is the watermark, so a dead letter of 2019 lives ``dead_letter_days`` of event time, not until the
        first purge. Before a replay has seen any event its clock has no time yet, and nothing is purged.
        """
        settings = self.config.store
        now = self.clock.now()
        self._purged_at = time.time()  # how often to purge is a matter of work done, on the wall clock
        if not math.isfinite(now):
            return PurgeReport(ledger_entries=0, purchases=0, dead_letters=0)
        ledger_before = now - settings.ledger_days * 86_400
        report = await self.call_store(
            self.store.purge,
            ledger_before=ledger_before,
            purchases_before=ledger_before,
            dead_letters_before=now - settings.dead_letter_days * 86_400,
            facts_before=ledger_before,  # analytics and uplift cover the period the ledger keeps
        )
        if report.ledger_entries or report.purchases or report.dead_letters or report.facts:
            _log.info(
                "retention_purged",
                ledger_entries=report.ledger_entries,
                purchases=report.purchases,
                dead_letters=report.dead_letters,
                facts=report.facts,
            )
        return report

    async def checkpoint(self) -> int | None:
        """Write a checkpoint of the pipeline now; return the journal position it covers.

        Returns ``None`` when this process does not hold the pipeline lease. The journal is trimmed up to the
        position. Runs by itself every ``store.checkpoint_interval`` seconds and when the engine closes.
        """
        self._require_running()
        return await self._checkpoint()

    async def _checkpoint(self) -> int | None:
        if not self.is_owner:
            return None
        assert self._checkpoint_lock is not None
        async with self._checkpoint_lock:
            self._checkpoint_due = False
            control = Control("checkpoint", 0, {})
            await self._links[0].send_stream.send(Batch([], -math.inf, perf_counter(), None, control))
            await control.done.wait()
            await self._save_checkpoint(control.position, control.states)
            return control.position

    async def _final_checkpoint(self) -> None:
        # Every stage has ended: their state is quiet and can be read directly.
        if not self.is_owner:
            return
        states = {stage.name: stage.snapshot() for stage in self._stages}
        try:
            await self._save_checkpoint(self.ingest.position, states)
        except StoreError as exc:
            _log.error("checkpoint_failed", error=str(exc))

    async def _save_checkpoint(self, position: int, states: dict[str, bytes]) -> None:
        store = self.store
        # Only the lease holder may write the pipeline's state; one that lost the lease keeps quiet.
        holder = await self.call_store(store.lease_holder, PIPELINE_LEASE, now=time.time())
        if holder != self.owner:
            return
        blob = msgspec.msgpack.encode(_CheckpointBlob(CHECKPOINT_FORMAT, self.owner, states))
        if not await self.call_store(store.save_checkpoint, position, blob, now=time.time()):
            # The store has a later checkpoint (written by an owner that lost the lease after us... or before
            # our restore caught up): it covers everything up to our position too, so trimming stays safe.
            _log.info("checkpoint_superseded", position=position)
        await self.call_store(store.trim_events, position)
        self._checkpointed = max(self._checkpointed, position)
        _log.debug("checkpoint_saved", position=position, size=len(blob))

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
        if self._state in ("closing", "closed"):
            self.journal.refused += 1
            return False
        return self.journal.track(event)

    async def submit(self, event: Any) -> None:
        """Validate ``event`` now (raising :class:`InvalidEvent`) and journal it; waits while the pipeline is
        busy (backpressure). The event is durable when this returns."""
        self._require_running()
        events, datas = self.journal.accept([event], raise_invalid=True)
        await self._append(events, datas)

    async def submit_many(self, events: Iterable[Any]) -> None:
        """Journal many raw events at once (the fast path for replays); invalid ones are counted, not raised."""
        self._require_running()
        accepted, datas = self.journal.accept(list(events))
        await self._append(accepted, datas)

    async def _append(self, events: list[Any], datas: list[bytes]) -> None:
        if not events:
            return
        if not await self.call_store(self.journal.append, events, datas):
            raise StoreError("the store refused the events (see the log); they were not accepted")
        await self._nudge()

    async def flush(self, *, end_of_input: bool = False) -> None:
        """Wait until everything accepted so far has gone through every stage and deliveries have finished.

        Live, this also advances the engine to the clock's current time, so with a
        :class:`~recoverkit.clock.FakeClock` ``clock.advance(3600); await engine.flush()`` fires what fell due.
        In event time, ``end_of_input=True`` declares the input complete: events held back for lateness are
        released and the watermark moves to the last event time. Open carts stay open (they are censored, not
        abandoned). In a process that does not hold the pipeline lease this only journals what was tracked.
        """
        self._require_running()
        await self._drain_inbox()
        if self.clock.event_time:
            mark = math.inf if end_of_input else -math.inf
        else:
            mark = self.clock.now()
        while True:
            if self._taking_over is not None:
                await self._taking_over.wait()
            if not self.is_owner:
                return
            checked = self._lease_checked
            await self._flush_once(mark)
            if checked is None or self._state != "running" or not self.dispatch.extra_statistics()["held_not_owner"]:
                return
            # Claims were refused (the lease lapsed under a stall) and are held until the lease is checked, which
            # the refusal set off: wait for that check, then flush again what it resumed or restored.
            self._claim_refused()
            await checked.wait()

    async def _flush_once(self, mark: float) -> None:
        barrier = anyio.Event()
        self._flushes.add(barrier)
        try:
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                await self._links[0].send_stream.send(Batch([], mark, perf_counter(), [barrier]))
                await barrier.wait()
        finally:
            self._flushes.discard(barrier)
        if barrier in self._flushes_cut:
            self._flushes_cut.discard(barrier)
            raise EngineStateError(
                "the engine closed while flush() waited; what was accepted is in the journal, for the next start"
            )
        if self._state != "running" and not barrier.is_set():
            raise EngineStateError("the engine began closing while flush() waited; close() handles what was accepted")

    def _require_running(self) -> None:
        if self._state != "running":
            raise EngineStateError(
                f"the engine is {self._state}; use `async with Engine(...) as engine:` before submitting events"
            )

    # -- data protection ------------------------------------------------------------------------------------

    async def forget(self, customer_id: str) -> bool:
        """Erase everything held about ``customer_id``, and never write to them again (see
        :mod:`recoverkit.privacy` for what goes and the little that stays).

        In the process holding the pipeline lease this returns once the erasure is done and checkpointed:
        ``True``. Elsewhere the request is journaled and ``False`` returned: the owner carries it out when it
        reads it, within a tick or two. Raises ``ValueError`` for an empty id.
        """
        self._require_running()
        at = time.time()
        record = encode_forget(customer_id, at)
        forget = decode_record(record)
        if not await self.call_store(self.journal.append, [forget], [record]):
            raise StoreError("the store refused the forget request (see the log); it was not recorded")
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
        carts = self.sessionize.carts_of(customer_id) if self.is_owner else []
        contact_keys = [customer_id] + [contact_key(cart.session_id) for cart in carts]
        pending = [m for m in self.dispatch.pending() if m.recipient.contact_key in contact_keys]
        return {
            "customer_id": customer_id,
            "complete": self.is_owner,
            "carts": msgspec.to_builtins(carts),
            "contact": self.route.contact_of(customer_id) if self.is_owner else None,
            "pending_messages": msgspec.to_builtins(pending),
            "store": [msgspec.to_builtins(self.store.export(key)) for key in contact_keys],
        }

    # -- looking inside -------------------------------------------------------------------------------------

    def pending_messages(self) -> list[Message]:
        """Messages scheduled and not yet due, in due order."""
        return self.dispatch.pending()

    def statistics(self) -> EngineStatistics:
        """Counters and queue figures of every stage, for dashboards, health checks and tests."""
        stages = {stage.name: stage.statistics() for stage in self._stages}
        counts = dict(self.sessionize.counts)  # copied at once: a metrics scrape may read this from another thread
        journal = self.journal
        return EngineStatistics(
            events_accepted=journal.accepted,
            events_invalid=dict(journal.invalid),
            events_overflow=journal.refused,
            events_spilled=journal.spilled,
            events_late=self.ingest.late,
            sessions=stages["sessionize"].extra["sessions"],
            abandonments={k.removeprefix("abandoned_"): v for k, v in counts.items() if k.startswith("abandoned_")},
            reasons=dict(self.score.reasons),
            messages=dict(self.dispatch.outcomes),
            dead_letters=len(self.dispatch.dead_letters),
            watermark=self.dispatch.watermark,
            owner=self.is_owner,
            journal_behind=self.ingest.behind,
            checkpoint_position=self._checkpointed,
            stages=stages,
            restores=self._restores,
            restoring=self._restoring,
            restored=dict(self._restored),
            lease_lapses=self._lease_lapses,
        )
