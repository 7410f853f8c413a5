"""The whole report: the funnel of an event file, recovery and uplift from a store, and the honest revenue figure.

:func:`build_report` is what ``recoverkit report`` runs; :class:`Report` is what it prints, encodes as JSON
(``msgspec.json.encode(report)``) and renders as HTML (:func:`~recoverkit.analytics.render_html`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Final

import msgspec

from ..config import Config
from ..score import Scorer
from ..store.base import Store
from ._facts import DAY, Facts, load_facts
from ._format import period as period_text
from ._period import previous_period
from ._stats import DEFAULT_CONFIDENCE
from .funnel import Funnel, funnel
from .headline import Headline, headline_figures
from .recovery import Recovery, recovery
from .sources import EventFormat, EventLog, load_events
from .uplift import Uplift, UpliftRow, uplift

__all__ = ["REPORT_VERSION", "Report", "RevenueSummary", "build_report", "headline"]

#: The version of the JSON layout; raised when a field changes meaning or goes (new fields do not raise it).
REPORT_VERSION: Final = 1


class RevenueSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The honest figure, per currency, in minor units: what the recovery flows are credited with
    (``recovered``, by the attribution rule) beside what they added (``incremental``, against the shop-wide
    holdout, with its interval; ``None`` without a holdout or order values), and what the codes cost.
    ``verdict`` is the overall uplift's (``"too_small"``: the sample cannot tell)."""

    currency: str
    recovered: int
    incremental: int | None
    low: int | None
    high: int | None
    discount_cost: int
    verdict: str | None


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """Everything ``recoverkit report`` shows; parts without a source are ``None`` (no ``--events``: no
    ``funnel``; no ``--store``: no ``recovery``, ``uplift``, ``revenue`` nor ``headline``). ``since``/``until``
    bound the period (epoch seconds), ``period`` says it as a reader does (``"1-7 Dec 2026"``), ``window`` is the
    attribution window in seconds, ``notes`` what a reader should know about the figures.

    ``headline`` holds the figures shown first (:mod:`recoverkit.analytics.headline`); ``previous`` the same
    figures for the period of the same length just before (``previous_since``..``since``), when the period has
    both bounds and a store was given."""

    version: int
    generated_at: float
    window: float
    confidence: float
    since: float | None
    until: float | None
    store: str | None
    funnel: Funnel | None
    recovery: Recovery | None
    uplift: Uplift | None
    revenue: list[RevenueSummary]
    notes: list[str]
    period: str = ""
    headline: Headline | None = None
    previous: Headline | None = None
    previous_since: float | None = None


def build_report(
    *,
    store: Store | str | Path | None = None,
    events: str | Path | EventLog | None = None,
    events_format: EventFormat = "auto",
    config: Config | None = None,
    scorer: Scorer | None = None,
    window_days: float = 5.0,
    since: float | None = None,
    until: float | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    now: float | None = None,
) -> Report:
    """Build the report from a ``store`` (a :class:`~recoverkit.store.Store` or the path of an existing SQLite
    state file, opened and closed here) and/or an ``events`` file (see :func:`load_events`).

    ``window_days`` is the attribution window (recovery and uplift); ``since``/``until`` bound the period:
    events by their time, recovery and uplift by when carts were assigned; ``config`` and ``scorer`` are the
    engine's, for abandonment in the funnel. With a store and both bounds, the headline figures of the period of
    the same length before ``since`` are computed too (``Report.previous``), from the same store.
    """
    if store is None and events is None:
        raise ValueError("build_report: expected a `store`, an `events` file or both, got neither")
    if not 0 < window_days < 3650:  # also refuses NaN
        raise ValueError(f"window_days={window_days!r}; expected a number of days between 0 and 3650")
    window = window_days * DAY
    notes: list[str] = []
    shown_funnel = None
    if events is not None:
        log = events if isinstance(events, EventLog) else load_events(events, format=events_format, since=since,
                                                                      until=until)  # fmt: skip
        shown_funnel = funnel(log, config=config, scorer=scorer)
        if log.source.skipped:
            left = ", ".join(f"{k} {v:,}" for k, v in log.source.skipped.items())
            notes.append(f"Events not used: {left}.")
    report = Report(
        version=REPORT_VERSION, generated_at=time.time() if now is None else now, window=window,
        confidence=confidence, since=since, until=until, store=None, funnel=shown_funnel, recovery=None,
        uplift=None, revenue=[], notes=notes, period=period_text(since, until),
    )  # fmt: skip
    return report if store is None else _with_store(report, store)


def _with_store(report: Report, store: Store | str | Path) -> Report:
    """``report`` with the figures of ``store``: recovery, uplift, the headline, and the previous period's."""
    since, until, window = report.since, report.until, report.window
    before = previous_period(since, until) if since is not None and until is not None else None
    name, facts, earlier = _read_store(store, since, until, before)
    found = recovery(facts, window=window)
    measured = uplift(facts, window=window, confidence=report.confidence)
    previous = None
    if earlier is not None:
        previous = headline_figures(
            earlier, recovery(earlier, window=window), uplift(earlier, window=window, confidence=report.confidence)
        )
    notes = [*report.notes, *([measured.note] if measured.note else [])]
    if report.funnel is None:
        notes.append(found.cohort.note)
    return msgspec.structs.replace(
        report, store=name, recovery=found, uplift=measured, revenue=_revenue(found, measured), notes=notes,
        headline=headline_figures(facts, found, measured), previous=previous,
        previous_since=before[0] if previous is not None and before else None,
    )  # fmt: skip


def _read_store(
    store: Store | str | Path, since: float | None, until: float | None, before: tuple[float, float] | None
) -> tuple[str, Facts, Facts | None]:
    """The store's name, the facts of the period and those of the period ``before`` it (when given)."""
    if isinstance(store, str | Path):
        from ..store import SQLiteStore

        path = Path(store)
        if not path.is_file():  # opening would create it: a report never makes a state file
            raise ValueError(f"{path}: no such state file; expected the store.path of a recoverkit engine")
        with SQLiteStore(path) as opened:
            return str(path), *_both(opened, since, until, before)
    return type(store).__name__, *_both(store, since, until, before)


def _both(
    store: Store, since: float | None, until: float | None, before: tuple[float, float] | None
) -> tuple[Facts, Facts | None]:
    earlier = None if before is None else load_facts(store, since=before[0], until=before[1])
    return load_facts(store, since=since, until=until), earlier


def headline(found: Uplift) -> UpliftRow | None:
    """The uplift row the honest revenue figure comes from: the shop-wide holdout across all flows."""
    return next((r for r in found.rows if r.flow == "*" and r.scope == "global"), None)


def _revenue(found: Recovery, measured: Uplift) -> list[RevenueSummary]:
    top = headline(measured)
    incremental = {r.currency: r for r in top.revenue} if top is not None else {}
    currencies = sorted(set(found.total.recovered_revenue) | set(found.total.discount_cost) | set(incremental))
    rows = []
    for currency in currencies:
        inc = incremental.get(currency)
        rows.append(
            RevenueSummary(
                currency=currency, recovered=found.total.recovered_revenue.get(currency, 0),
                incremental=inc.value if inc else None, low=inc.low if inc else None, high=inc.high if inc else None,
                discount_cost=found.total.discount_cost.get(currency, 0), verdict=top.verdict if top else None,
            )
        )
    return rows
