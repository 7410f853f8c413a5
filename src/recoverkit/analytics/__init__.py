"""Funnel and recovery analytics: where shoppers drop out of checkout, what recovery sent, and what it earned.

Pure functions over typed inputs, each returning :mod:`msgspec` Structs that encode as JSON:

- :func:`load_events` reads an event file (recoverkit JSON lines, or a REES46 / Retailrocket CSV export) and
  :func:`funnel` computes the checkout funnel, the time between steps, friction, segments and bottlenecks, and,
  through the engine's own sessionize and score stages, why carts were abandoned (:func:`abandonment`);
- :func:`load_facts` reads a store's facts for a period; :func:`recovery` counts what the flows sent, skipped and
  recovered within the attribution window, with revenue per currency and discount cost; :func:`uplift` compares
  treatment with the holdout and says how much of that revenue is incremental, or that the sample is too small;
- :func:`headline_figures` gives the figures an owner reads first (recovered revenue, recovery rate, revenue per
  recipient, incremental revenue with its interval, discount cost, unsubscribes);
- :func:`build_report` puts them together as ``recoverkit report`` does; :func:`print_report` prints it with
  rich, :func:`render_html` makes a self-contained HTML page with charts.

``docs/analytics.md`` explains every figure, the attribution rule and the interval method.
"""

from ._facts import Facts, Order, Orders, load_facts
from ._stats import newcombe_interval, percentile, wilson_interval
from .abandonment import Abandonment, ReasonRow, abandonment
from .funnel import CartStep, Friction, Funnel, FunnelStep, SegmentRow, funnel
from .headline import Headline, HeadlineMoney, headline_figures
from .html import render_html
from .recovery import DEFAULT_WINDOW, CohortSummary, DayRow, MessageDay, Recovery, RecoveryRow, recovery
from .report import REPORT_VERSION, Report, RevenueSummary, build_report
from .sources import EventLog, EventSource, load_events
from .terminal import print_report
from .uplift import MIN_HOLDOUT_CONVERSIONS, IncrementalRevenue, Uplift, UpliftRow, uplift

__all__ = [
    "DEFAULT_WINDOW",
    "MIN_HOLDOUT_CONVERSIONS",
    "REPORT_VERSION",
    "Abandonment",
    "CartStep",
    "CohortSummary",
    "DayRow",
    "EventLog",
    "EventSource",
    "Facts",
    "Friction",
    "Funnel",
    "FunnelStep",
    "Headline",
    "HeadlineMoney",
    "IncrementalRevenue",
    "MessageDay",
    "Order",
    "Orders",
    "ReasonRow",
    "Recovery",
    "RecoveryRow",
    "Report",
    "RevenueSummary",
    "SegmentRow",
    "Uplift",
    "UpliftRow",
    "abandonment",
    "build_report",
    "funnel",
    "headline_figures",
    "load_events",
    "load_facts",
    "newcombe_interval",
    "percentile",
    "print_report",
    "recovery",
    "render_html",
    "uplift",
    "wilson_interval",
]
