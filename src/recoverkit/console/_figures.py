"""The console's live figures: what the engine holds now and what the store says about today and the period.

Read on every visit to the overview, so each figure is one pass over what the store keeps (the ledger, the
dead letters, the facts of the period); nothing is cached between requests.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Final

import msgspec

from .._log import get_logger
from ..analytics import build_report, load_facts, recovery

if TYPE_CHECKING:
    from ._access import EngineAccess

__all__ = ["DAY", "PERIOD_DAYS", "Figures", "RevenueFigure", "UpliftFigure", "live_figures"]

DAY: Final = 86_400.0
#: The period recovered revenue and uplift are measured over, in days up to now.
PERIOD_DAYS: Final = 30

_log = get_logger("recoverkit.console")


class RevenueFigure(msgspec.Struct, frozen=True, kw_only=True):
    """Recovered revenue in one currency (minor units) and, against the holdout, the incremental part with its
    interval (``None`` when the holdout cannot say)."""

    currency: str
    recovered: int
    incremental: int | None
    low: int | None
    high: int | None


class UpliftFigure(msgspec.Struct, frozen=True, kw_only=True):
    """The shop-wide uplift against the holdout: conversion rates, their difference and its interval."""

    treated: int
    holdout: int
    treated_rate: float
    holdout_rate: float
    difference: float
    low: float
    high: float
    confidence: float
    verdict: str
    explanation: str


class Figures(msgspec.Struct, frozen=True, kw_only=True):
    """The overview. ``open_carts`` and ``pending`` are the pipeline's (``None`` in a process that does not run
    it: ``owner`` says); the rest are the store's, shared by every process."""

    at: float
    owner: bool
    open_carts: int | None
    pending: int | None
    abandoned_today: int
    sent_today: int
    ledger: dict[str, int]
    dead: int
    unknown: int
    period_days: int
    revenue: list[RevenueFigure]
    uplift: UpliftFigure | None
    notes: list[str]


def _day_start(at: float) -> float:
    return at - at % DAY  # midnight UTC on the engine's clock


def live_figures(access: EngineAccess) -> Figures:
    """The figures now, on the engine's clock."""
    store, now = access.store, access.clock.now()
    today = _day_start(now)
    entries = store.ledger()
    ledger = Counter(e.state for e in entries)
    sent_today = sum(1 for e in entries if e.state == "sent" and (e.finished_at or e.claimed_at) >= today)
    owner, open_carts, pending = _pipeline(access)
    abandoned_today = recovery(load_facts(store, since=today)).cohort.abandoned_carts
    report = build_report(store=store, since=now - PERIOD_DAYS * DAY, now=now)
    revenue = [
        RevenueFigure(currency=r.currency, recovered=r.recovered, incremental=r.incremental, low=r.low, high=r.high)
        for r in report.revenue
    ]
    # The shop-wide holdout across every flow: the row the honest revenue figure comes from (as the report's).
    rows = report.uplift.rows if report.uplift is not None else []
    top = next((r for r in rows if r.flow == "*" and r.scope == "global"), None)
    uplift = None
    if top is not None:
        uplift = UpliftFigure(
            treated=top.treated, holdout=top.holdout, treated_rate=top.treated_rate, holdout_rate=top.holdout_rate,
            difference=top.difference, low=top.low, high=top.high, confidence=report.confidence, verdict=top.verdict,
            explanation=top.explanation,
        )  # fmt: skip
    return Figures(
        at=now, owner=owner, open_carts=open_carts, pending=pending, abandoned_today=abandoned_today,
        sent_today=sent_today, ledger=dict(sorted(ledger.items())), dead=len(store.dead_letters()),
        unknown=ledger.get("unknown", 0), period_days=PERIOD_DAYS, revenue=revenue, uplift=uplift,
        notes=list(report.notes),
    )  # fmt: skip


def _pipeline(access: EngineAccess) -> tuple[bool, int | None, int | None]:
    """Whether this process runs the pipeline, and then its open carts and messages scheduled."""
    try:
        stats = access.statistics()
        if not stats.owner:
            return False, None, None
        return True, stats.sessions, len(access.pending_messages())
    except Exception as exc:  # an engine that cannot answer must not take the figures the store has with it
        _log.error("console_statistics_failed", error=type(exc).__name__)
        return False, None, None
