"""What :meth:`recoverkit.Engine.statistics` reports: :class:`EngineStatistics`, collected from an engine's
parts (the journal, the stages, ownership and the store runner) in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from ._pipeline import StageStatistics
from .store._lifecycle import StoreStatistics

if TYPE_CHECKING:
    from ._assembly import Assembly

__all__ = ["EngineStatistics", "collect"]


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
    #: Store calls the pipeline made (through its one store runner), and the seconds they took, thread hops included.
    store_calls: int = 0
    store_seconds: float = 0.0
    #: The store's own counters (:meth:`recoverkit.store.StoreLifecycle.statistics`): its writes, and for a store
    #: over a network (PostgreSQL) the retries, reconnections, connection errors and unknown outcomes behind them.
    #: All 0 when the store could not say (it failed or was closed).
    store: StoreStatistics = msgspec.field(default_factory=StoreStatistics)


def collect(parts: Assembly) -> EngineStatistics:
    """A snapshot of ``parts``' figures; safe to call from another thread (each figure is read once)."""
    stages = {stage.name: stage.statistics() for stage in parts.stages}
    counts = dict(parts.sessionize.counts)  # copied at once: a metrics scrape may read this from another thread
    journal, ownership, ingest, dispatch = parts.journal, parts.ownership, parts.ingest, parts.dispatch
    return EngineStatistics(
        events_accepted=journal.accepted,
        events_invalid=dict(journal.invalid),
        events_overflow=journal.refused,
        events_spilled=journal.spilled,
        events_late=ingest.late,
        sessions=stages["sessionize"].extra["sessions"],
        abandonments={k.removeprefix("abandoned_"): v for k, v in counts.items() if k.startswith("abandoned_")},
        reasons=dict(parts.score.reasons),
        messages=dict(dispatch.outcomes),
        dead_letters=len(dispatch.dead_letters),
        watermark=dispatch.watermark,
        owner=ownership.is_owner,
        journal_behind=ingest.behind,
        checkpoint_position=ownership.checkpointed,
        stages=stages,
        restores=ownership.restores,
        restoring=ownership.restoring,
        restored=dict(ownership.restored),
        lease_lapses=ownership.lease_lapses,
        store_calls=parts.runner.calls,
        store_seconds=parts.runner.seconds,
        store=_store_statistics(parts),
    )


def _store_statistics(parts: Assembly) -> StoreStatistics:
    # The store's figures are counters under its own lock, cheap to read from any thread; a store that fails or was
    # closed (a scrape racing close) must not take the engine's figures with it.
    try:
        return parts.store.statistics()
    except Exception:
        return StoreStatistics()
