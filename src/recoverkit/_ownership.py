"""Ownership of the pipeline: the lease, checkpoints, restores, retention and the erasure hand-off.

One process at a time runs the pipeline: the one holding the store's ``pipeline`` lease. :class:`Ownership`
keeps that lease (renewing it every ``lease_ttl / 5`` seconds, or at once when a claim was refused), takes over
when it gets it (loads the last checkpoint and restores every stage from it), stands down when another
process holds it, writes a checkpoint every ``store.checkpoint_interval`` seconds (and at once after an
erasure), and purges what is past the retention periods, hourly.

It talks to the stages only through the barriers of :mod:`recoverkit._pipeline`: a checkpoint or restore
:class:`~recoverkit._pipeline.Control` sent into ingest's queue, which every stage applies at the same point
of the stream. What it holds itself is one fact the stages read, the :class:`~recoverkit._pipeline.Lease`
(ingest reads the journal only while it is held), and the figures :meth:`recoverkit.Engine.statistics`
reports. Every store call goes through the engine's one :class:`~recoverkit._store_runner.StoreRunner`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

import anyio
import msgspec

from . import _msgpack_parts as msgpack_parts
from ._log import get_logger
from ._pipeline import Control, Lease, StageStatistics
from ._store_runner import StoreRunner
from .clock import Clock
from .config import Config
from .errors import StoreError
from .store._partition_view import FencedError
from .store.base import PIPELINE_LEASE, PurgeReport

__all__ = ["CHECKPOINT_FORMAT", "Ownership"]

# The engine's log: what ownership logs (pipeline_lease_taken, checkpoint_saved, ...) is what the engine did.
_log = get_logger("recoverkit.engine")

#: Format of the checkpoint blob; a newer recoverkit reading an older format must convert or refuse it.
CHECKPOINT_FORMAT: Final = 1
#: Retention purges run at each whole hour of the engine's clock, with their cut-offs at that hour: a replay in
#: event time purges what a live run over the same events would have purged, whatever its pace (see
#: :meth:`Ownership.purge_due`).
PURGE_EVERY: Final = 3600.0


class _CheckpointBlob(msgspec.Struct, array_like=True):
    format: int
    owner: str
    states: dict[str, bytes]


#: A journal in memory is trimmed this many positions at a time, the event loop let run between steps.
TRIM_STEP: Final = 8192


async def _encode_blob(owner: str, states: dict[str, bytes]) -> bytes:
    """``msgspec.msgpack.encode(_CheckpointBlob(CHECKPOINT_FORMAT, owner, states))``, byte for byte, with the
    states copied in on a worker thread: encoded in one call, a checkpoint of 100,000 open carts (22 MB) held the
    event loop for a copy of the whole, 15-20 ms on a 2-core VM."""
    encode = msgspec.msgpack.encode
    parts = [b"\x93", encode(CHECKPOINT_FORMAT), encode(owner), msgpack_parts.header(msgpack_parts.MAP, len(states))]
    for name, state in states.items():
        parts += (encode(name), msgpack_parts.bin_header(len(state)), state)
    return await msgpack_parts.join(parts)


class Claims(Protocol):
    """What ownership needs of dispatch: how many claims were refused for want of the lease, and a retry."""

    def extra_statistics(self) -> dict[str, Any]: ...

    def resume_refused(self) -> int: ...


class Reader(Protocol):
    """What ownership needs of ingest: how far it has read the journal."""

    @property
    def position(self) -> int: ...


class Ownership:
    """The lease, checkpoints, restores and retention of one engine; see the module docstring.

    ``send`` puts a barrier into ingest's queue and ``running`` says whether the engine is running (not yet
    closing): both are given by :meth:`attach` once the engine's tasks exist. ``pipeline=False`` (a journal
    writer) never takes the lease; ``purges=False`` (an engine that sends nothing) purges only when asked.
    """

    def __init__(
        self,
        config: Config,
        store: StoreRunner,
        clock: Clock,
        *,
        owner: str,
        lease: Lease,
        claims: Claims,
        reader: Reader,
        pipeline: bool = True,
        purges: bool = True,
    ) -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self.owner = owner
        self.lease = lease
        self._claims = claims
        self._reader = reader
        self.runs_pipeline = pipeline
        #: Whether retention purges run by themselves (purge_due). Not in an engine that sends nothing: the CLI's
        #: maintenance commands may run with a default configuration, whose retention is not the shop's.
        self.purges = purges
        self._send: Callable[[Control], Awaitable[None]] | None = None
        self._running: Callable[[], bool] = lambda: False
        #: The journal position the last checkpoint written (or restored) covers.
        self.checkpointed = 0
        self.restores = 0
        self.restoring = False
        self.restored: dict[str, StageStatistics] = {}
        self.lease_lapses = 0
        self.checkpoint_due = False  # a forget was applied: checkpoint (and trim) without waiting
        self._purged_hour = -math.inf  # the hour of the engine's clock the last scheduled purge cut off at
        self._renewed_at = -math.inf  # the time passed to the last renewal that held: the lease ran to this + ttl
        self._lease_doubt = False  # a renewal failed while owning: its write may or may not have gone in
        self._lease_wake: anyio.Event | None = None
        self.taking_over: anyio.Event | None = None  # set once the last take-over ended (restored or abandoned)
        self.lease_checked: anyio.Event | None = None  # set (and replaced) after each renewal of the lease
        self._checkpoint_lock: anyio.Lock | None = None

    @property
    def is_owner(self) -> bool:
        return self.lease.held

    def attach(self, send: Callable[[Control], Awaitable[None]], running: Callable[[], bool]) -> None:
        """The engine's tasks exist: barriers go through ``send``; ``running()`` says the engine is not closing."""
        self._send, self._running = send, running
        self._checkpoint_lock = anyio.Lock()
        self._lease_wake = anyio.Event()
        self.lease_checked = anyio.Event()

    # -- the lease ------------------------------------------------------------------------------------------

    async def keep_lease(self) -> None:
        """Renew the lease every ``lease_ttl / 5`` seconds, or sooner after :meth:`claim_refused`."""
        period = self._config.store.lease_ttl / 5
        try:
            while True:
                assert self._lease_wake is not None
                with anyio.move_on_after(period):
                    await self._lease_wake.wait()  # or sooner: a claim was refused, the lease may have lapsed
                self._lease_wake = anyio.Event()
                try:
                    await self.renew()
                finally:
                    checked, self.lease_checked = self.lease_checked, anyio.Event()
                    if checked is not None:
                        checked.set()  # flush() waits for this after claims were refused
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return  # the engine is closing: it finishes what the lease needs (checkpoint, release)

    def claim_refused(self) -> None:
        """A claim was refused for want of the lease: check it now rather than at the next renewal."""
        if self._lease_wake is not None:
            self._lease_wake.set()

    async def renew(self) -> None:
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
        ttl = self._config.store.lease_ttl
        now = time.time()
        try:
            taken = await self._store.lease(self._store.store.take_lease, PIPELINE_LEASE, self.owner, ttl=ttl, now=now)
        except StoreError as exc:
            _log.error("lease_renewal_failed", error=str(exc))
            if self.is_owner:
                # Unknown whether the write went in: the next answer cannot be trusted to say "nobody else held
                # it" for the time it covers, unless the lease cannot have expired meanwhile (see below).
                self._lease_doubt = True
                if time.time() >= self._renewed_at + ttl:  # it would have expired by now: act as if lost
                    self.stand_down("pipeline_lease_lost")
            return
        if taken is None:
            if self.is_owner:
                # Another process took over (this one stalled past the lease). Stop reading the journal; claims
                # already fail for a non-owner, so nothing is sent from the stale state; a later take-over
                # restores from the store.
                self.stand_down("pipeline_lease_lost")
            return
        await self._held(taken, now)

    async def _held(self, taken: str, now: float) -> None:
        """The store gave this process the lease at ``now`` (``taken``: "renewed" or "taken")."""
        ttl = self._config.store.lease_ttl
        renewed_at, self._renewed_at = self._renewed_at, now
        doubt, self._lease_doubt = self._lease_doubt, False
        if not self.is_owner:
            await self._take_over()
        elif taken == "taken" or (doubt and time.time() >= renewed_at + ttl):
            # Someone else held the lease since the last renewal (or, after a failed renewal, may have): their
            # reads, sends and checkpoints are not in this state. Restore, as a process taking over would.
            self.lease_lapses += 1
            held = self._claims.extra_statistics()["held_not_owner"]
            _log.warning("pipeline_lease_lapsed", owner=self.owner, held_back=held)
            self.stand_down(None)
            await self._take_over()
        elif self._running():
            # Still ours, and nobody else held it: claims refused while it was out (a stall past the lease, or
            # a race with this renewal) are retried; nothing was missed. (Closing, dispatch may have ended:
            # what is held stays in the last checkpoint, for the next start.)
            self._claims.resume_refused()

    def stand_down(self, event: str | None) -> None:
        """Stop acting as the pipeline's owner: ingest stops reading the journal, flush() and the ticker stop
        feeding the stages, and no checkpoint is written from this state (a take-over restores it)."""
        self.lease.held = False
        if event is not None:
            _log.warning(event, owner=self.owner)

    async def _take_over(self) -> None:
        # flush() waits for a take-over under way, so that it answers for the restored pipeline, not for a
        # state being discarded (or returns at once, as in any non-owner, if the take-over is abandoned).
        self.taking_over = anyio.Event()
        try:
            await self._restore()
        finally:
            self.taking_over.set()

    async def _restore(self) -> None:
        """This process now holds the lease: restore the pipeline from the last checkpoint and read on.

        Safe at any moment of the engine's life: once closing has begun the take-over is abandoned (the lease
        is given back, so another worker need not wait for it to expire, and the stages' state, which may be
        stale, is neither restored nor checkpointed); once the restore is in the pipeline it is completed, as
        closing lets the stages handle everything sent to them before they end.
        """
        if not self._running():
            await self._abandon_take_over()
            return
        store = self._store.store
        unknown = await self._store(store.mark_unknown)
        position, states = await self._load()
        if not self._running():  # closing began while the checkpoint was read
            await self._abandon_take_over()
            return
        control = Control("restore", position, states)
        self.restoring = True
        assert self._send is not None
        try:
            # Not send_nowait: a full queue means the stages are busy, and the restore waits its turn.
            await self._send(control)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self.restoring = False
            await self._abandon_take_over()
            return
        # In the pipeline, ahead of anything sent from now on: the stages apply it before what follows, and
        # closing lets them finish it, so the take-over completes.
        self.checkpointed = position
        self.lease.held = True
        await control.done.wait()
        self.restored, self.restores = control.restored, self.restores + 1
        self.restoring = False
        _log.info("pipeline_lease_taken", owner=self.owner, position=position, unknown_outcomes=unknown)

    async def _load(self) -> tuple[int, dict[str, bytes]]:
        """The last checkpoint's position and the stages' states (0 and none without a checkpoint)."""
        checkpoint = await self._store(self._store.store.load_checkpoint)
        if checkpoint is None:
            return 0, {}
        blob = msgspec.msgpack.decode(checkpoint.state, type=_CheckpointBlob)
        if blob.format != CHECKPOINT_FORMAT:
            raise StoreError(
                f"the store's checkpoint has format {blob.format}, this recoverkit reads format "
                f"{CHECKPOINT_FORMAT}; upgrade recoverkit, or start from an empty store"
            )
        return checkpoint.position, blob.states

    async def _abandon_take_over(self) -> None:
        self.stand_down(None)
        await self.release()
        _log.info("pipeline_take_over_abandoned", owner=self.owner, reason="closing")

    async def release(self) -> None:
        """Give the lease back (closing), so another worker need not wait for it to expire."""
        try:
            await self._store.lease(self._store.store.release_lease, PIPELINE_LEASE, self.owner)
        except StoreError as exc:
            _log.warning("lease_release_failed", error=str(exc))

    # -- checkpoints and retention --------------------------------------------------------------------------

    async def keep_checkpoints(self) -> None:
        """Checkpoint every ``checkpoint_interval`` s (sooner after an erasure) and purge hourly, while owner."""
        # Checks every second (or tick) whether a checkpoint is due, so that one after a forget is not
        # ``checkpoint_interval`` away.
        interval = self._config.store.checkpoint_interval
        last = time.monotonic()
        while True:
            await anyio.sleep(min(interval, 1.0))
            if not self.is_owner or not self._running():
                continue  # closing: the engine writes the last checkpoint itself, once the stages have ended
            due = time.monotonic() - last >= interval and self._reader.position > self.checkpointed
            try:
                if due or self.checkpoint_due:
                    last = time.monotonic()
                    await self.checkpoint()
                await self.purge_due()
            except FencedError as exc:  # a partition's owner that lost it (a stall past the lease): expected
                _log.warning("checkpoint_fenced", error=str(exc))
                self.stand_down("pipeline_lease_lost")
            except StoreError as exc:
                _log.error("checkpoint_failed", error=str(exc))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return  # the engine began closing while this checkpoint was on its way in

    def forgotten(self) -> None:
        """An erasure was applied: checkpoint (and trim the journal) without waiting for the interval."""
        self.checkpoint_due = True

    async def purge_due(self) -> PurgeReport | None:
        """Purge if the engine's clock passed a whole hour since the last scheduled purge, cutting off at that
        hour (``None`` when none was due). Checked every second by :meth:`keep_checkpoints` and at the end of
        every ``flush()``: so a live run purges within a second of each hour, and a replay in event time purges
        with the same cut-offs, and once more when its input ends, at the last hour its events reached."""
        now = self._clock.now()
        if not self.purges or not math.isfinite(now) or not self.is_owner:
            return None
        hour = math.floor(now / PURGE_EVERY) * PURGE_EVERY
        if hour <= self._purged_hour:
            return None
        self._purged_hour = hour
        return await self.purge(at=hour)

    async def purge(self, *, at: float | None = None) -> PurgeReport:
        """Delete what is older than the retention periods at ``at`` (the engine's clock now, by default); see
        :meth:`recoverkit.Engine.purge`."""
        settings = self._config.store
        now = self._clock.now() if at is None else at
        if not math.isfinite(now):
            return PurgeReport(ledger_entries=0, purchases=0, dead_letters=0)
        ledger_before = now - settings.ledger_days * 86_400
        report = await self._store(
            self._store.store.purge,
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
        """Checkpoint the pipeline through a barrier; the position it covers, or ``None`` when not the owner."""
        if not self.is_owner:
            return None
        assert self._checkpoint_lock is not None and self._send is not None
        async with self._checkpoint_lock:
            self.checkpoint_due = False
            control = Control("checkpoint", 0, {})
            await self._send(control)
            await control.done.wait()
            await self._save(control.position, control.states)
            return control.position

    async def final_checkpoint(self, position: int, states: dict[str, bytes]) -> None:
        """The last checkpoint, of stages that have ended (their state is quiet and was read directly)."""
        if not self.is_owner:
            return
        try:
            await self._save(position, states)
        except FencedError as exc:  # the partition passed on meanwhile: its new owner has it from its checkpoint
            _log.warning("checkpoint_fenced", error=str(exc))
        except StoreError as exc:
            _log.error("checkpoint_failed", error=str(exc))

    async def _save(self, position: int, states: dict[str, bytes]) -> None:
        store = self._store.store
        # Only the lease holder may write the pipeline's state; one that lost the lease keeps quiet.
        holder = await self._store.lease(store.lease_holder, PIPELINE_LEASE, now=time.time())
        if holder != self.owner:
            return
        blob = await _encode_blob(self.owner, states)
        if not await self._store(store.save_checkpoint, position, blob, now=time.time()):
            # The store has a later checkpoint (written by an owner that lost the lease after us... or before
            # our restore caught up): it covers everything up to our position too, so trimming stays safe.
            _log.info("checkpoint_superseded", position=position)
        await self._trim(position)
        self.checkpointed = max(self.checkpointed, position)
        _log.debug("checkpoint_saved", position=position, size=len(blob))

    async def _trim(self, position: int) -> None:
        """Trim the journal through ``position`` (checkpointed). A store in memory runs on the event loop's thread:
        there the entries since the last checkpoint go :data:`TRIM_STEP` at a time, with the loop let run between
        steps (100,000 entries freed at once held it 40 ms). Any other store trims in one call, off the loop."""
        store = self._store.store
        if self._store.inline:
            for through in range(self.checkpointed + TRIM_STEP, position, TRIM_STEP):
                await self._store(store.trim_events, through)
                await anyio.sleep(0)
        await self._store(store.trim_events, position)
