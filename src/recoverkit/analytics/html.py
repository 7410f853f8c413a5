"""The report as one self-contained HTML file: inline CSS, inline SVG charts, no script, nothing fetched.

The page carries a Content-Security-Policy that forbids loading anything (``default-src 'none'``), so a
browser opening it offline shows all of it and a browser opening it online fetches nothing. The charts
(:mod:`recoverkit.analytics._svg`): ``chart-funnel`` (the checkout funnel, or without events the recovery
funnel a store can tell), ``chart-reasons`` (abandonment by likely reason), ``chart-recovery`` (messages sent
and carts recovered per day), ``chart-due-days`` and ``chart-sent-days`` (each day's messages, by the day they
fell due or were sent, and the carts they recovered) and ``chart-uplift`` (each uplift estimate with its interval
against zero).

The headline figures come first (``<section id="headline">``, one ``.figure`` each, the same rows as the terminal's
headline table), then the details. The layout is CSS only: tables sit in containers that scroll on their own on
a narrow screen, so the page itself never scrolls sideways, and fit without scrolling at 1280 px.
Everything from data is escaped: the page is rendered by Jinja2 with autoescaping, and the charts escape their
own text.
"""

from __future__ import annotations

import functools
from importlib.resources import files
from typing import TYPE_CHECKING, Final

from .._optional import require
from ._format import SHORT_STEPS, count, duration, money, moneys, pct, period, points, when
from ._summary import summary_rows
from ._svg import bar_chart, forest_plot, time_chart
from .recovery import MessageDay
from .report import Report

if TYPE_CHECKING:
    import jinja2
    from markupsafe import Markup

    from .funnel import Funnel
    from .recovery import Recovery

__all__ = ["CHART_IDS", "render_html"]

#: The ids of the charts every report has (a chart without data says so inside it).
CHART_IDS: Final = (
    "chart-funnel", "chart-reasons", "chart-recovery", "chart-due-days", "chart-sent-days", "chart-uplift",
)  # fmt: skip


@functools.cache
def _page() -> jinja2.Template:
    """The page's template, a file beside this module (report.html.j2), compiled on first use: autoescaping on,
    and a name the template does not know is an error, not an empty string."""
    # On first use, not at import: jinja2 is the optional 'templates' extra, and the terminal and JSON reports
    # (which import this package) do without it.
    jinja = require("jinja2", extra="templates", feature="recoverkit report --format html (render_html)")
    env = jinja.Environment(autoescape=True, undefined=jinja.StrictUndefined, keep_trailing_newline=True)
    template: jinja2.Template = env.from_string(files(__package__).joinpath("report.html.j2").read_text("utf-8"))
    return template


def _verdict(value: str | None) -> str:
    return {"uplift": "uplift", "harm": "harm", "too_small": "too small to tell"}.get(value or "", "-")


def _charts(report: Report) -> dict[str, Markup]:
    f, rec, up = report.funnel, report.recovery, report.uplift
    funnel, reasons = _event_charts(f) if f is not None else _store_charts(rec)
    recovery = time_chart(
        "chart-recovery", "Recovery over time: messages sent and carts recovered per day",
        [] if rec is None else [(d.day, d.sent, d.recovered) for d in rec.days],
        empty="no store given" if rec is None else "no message was sent in this period",
    )  # fmt: skip
    uplift = forest_plot(
        "chart-uplift", "Uplift against the holdout, with intervals",
        [] if up is None else [
            (f"{'all flows' if x.flow == '*' else x.flow} ({x.scope})", x.difference, x.low, x.high,
             x.verdict != "too_small") for x in up.rows
        ],
        empty="no store given" if up is None else "no holdout to compare with",
    )  # fmt: skip
    due, sent = _message_day_charts(rec)
    # Markup: the chart builders escaped every piece of text from data themselves. markupsafe comes with jinja2,
    # which _page() has required by the time render_html calls this.
    from markupsafe import Markup

    charts = (funnel, reasons, recovery, due, sent, uplift)
    return {name: Markup(svg) for name, svg in zip(CHART_IDS, charts, strict=True)}


def _message_day_charts(rec: Recovery | None) -> tuple[str, str]:
    """Each day's messages and the carts they recovered: by the day the messages fell due, and were sent."""
    empty = "no store given" if rec is None else "no message was sent in this period"
    due = time_chart(
        "chart-due-days", "Messages by the day they fell due, and the carts they recovered",
        [] if rec is None else [(d.day, d.sent, d.recovered) for d in rec.by_due_day], empty=empty,
        labels=("messages due", "carts recovered"),
    )  # fmt: skip
    sent = time_chart(
        "chart-sent-days", "Messages by the day they were sent, and the carts they recovered",
        [] if rec is None else [(d.day, d.sent, d.recovered) for d in rec.by_sent_day], empty=empty,
    )  # fmt: skip
    return due, sent


def _message_days(rec: Recovery | None) -> list[tuple[str, MessageDay, MessageDay]]:
    """Rows of the by-day table: each day, its messages by due day and by send day."""
    if rec is None:
        return []
    due = {d.day: d for d in rec.by_due_day}
    sent = {d.day: d for d in rec.by_sent_day}
    empty = MessageDay(day="")
    return [(day, due.get(day, empty), sent.get(day, empty)) for day in sorted(set(due) | set(sent))]


def _event_charts(f: Funnel) -> tuple[str, str]:
    """The funnel and reasons charts from the events: the checkout funnel and the engine's abandonments."""
    funnel = bar_chart(
        "chart-funnel", "Checkout funnel: sessions reaching each step",
        [(s.step, s.sessions, f"({pct(s.conversion)} of previous)" if s.conversion is not None else "",
          s.bottleneck is not None) for s in f.steps],
        empty="no funnel steps in these events",
    )  # fmt: skip
    reasons = bar_chart(
        "chart-reasons", "Abandonment by likely reason",
        [(x.reason, x.abandonments, f"({pct(x.share)})", False) for x in f.abandonment.by_reason],
        empty="no cart was abandoned in these events",
    )  # fmt: skip
    return funnel, reasons


def _store_charts(rec: Recovery | None) -> tuple[str, str]:
    """The funnel and reasons charts without events: the end of the funnel that the store's facts tell."""
    c = rec.cohort if rec is not None else None
    rows = [] if c is None else [
        ("abandoned, routed", c.abandoned_carts, "", False), ("messaged", c.messaged_carts, "", False),
        ("followed a link", rec.total.link_carts if rec else 0, "", False),
        ("recovered", c.recovered_carts, "", False),
    ]  # fmt: skip
    funnel = bar_chart("chart-funnel", "Recovery funnel from the store's facts", rows, empty="no data")
    reasons = bar_chart(
        "chart-reasons", "Abandoned carts routed to a flow, by likely reason",
        [] if c is None else [(k, v, "", False) for k, v in c.by_reason.items()], empty="no data",
    )  # fmt: skip
    return funnel, reasons


def render_html(report: Report) -> str:
    """``report`` as a complete, self-contained HTML page (see the module docstring)."""
    segments: dict[str, list[object]] = {}
    if report.funnel is not None:
        for row in report.funnel.segments:
            segments.setdefault(row.dimension, []).append(row)
    page = _page()  # first: a missing jinja2 is reported before any work
    rec = report.recovery
    on_site = [] if rec is None else [x for x in rec.rows if x.dimension == "channel" and x.on_site]
    return page.render(
        r=report, f=report.funnel, rec=rec, up=report.uplift, charts=_charts(report),
        segments=list(segments.items()), when=when, pct=pct, points=points, duration=duration, money=money,
        moneys=moneys, verdict=_verdict, short=SHORT_STEPS, count=count, period=period,
        summary=summary_rows(report), on_site=on_site, message_days=_message_days(rec),
    )  # fmt: skip
