"""The report as tables: rich's in a terminal, aligned plain text in a file or a pipe (never wrapped)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._cli_output import Out, Table, as_out, escape
from ._format import SHORT_STEPS as _SHORT
from ._format import count, duration, money, moneys, pct, period, points, when
from ._summary import summary_rows
from .abandonment import Abandonment
from .funnel import Friction, Funnel
from .recovery import MessageDay, Recovery, RecoveryRow
from .report import Report
from .uplift import Uplift

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["print_report"]

#: Days of recovery over time shown in the terminal (the JSON and HTML reports have them all).
_DAYS_SHOWN = 14


def print_report(report: Report, console: Out | Console | None = None) -> None:
    """Print ``report`` on ``console`` (a rich console, or stdout by default) as tables; every value taken from
    data is escaped, never read as rich markup. rich is used only on a terminal (and only if installed)."""
    console = as_out(console)
    shown = report.period or period(report.since, report.until)
    console.print(f"[bold]recoverkit report[/] for {escape(shown)} (UTC); attribution window "
                  f"{report.window / 86_400:g} days", soft_wrap=True)  # fmt: skip
    _headline(report, console)
    if report.funnel is not None:
        _funnel(report.funnel, console)
    if report.recovery is not None:
        _recovery(report.recovery, console)
    if report.uplift is not None:
        _uplift(report.uplift, console)
    if report.revenue:
        table = Table(title="recovered revenue, honestly")
        for column in ("currency", "credited to recovery", "incremental (vs holdout)", "interval", "discount cost"):
            table.add_column(column, justify="left" if column == "currency" else "right")
        for r in report.revenue:
            interval = "-" if r.low is None else f"{money(r.low, r.currency)} to {money(r.high, r.currency)}"
            table.add_row(escape(r.currency), money(r.recovered, r.currency), money(r.incremental, r.currency),
                          interval, money(r.discount_cost, r.currency))  # fmt: skip
        console.print(table)
    said = report.uplift.note if report.uplift is not None else None  # printed with the uplift already
    for note in report.notes:
        if note != said:
            console.print(f"note: {escape(note)}", soft_wrap=True)


def _headline(report: Report, console: Out) -> None:
    """The headline figures first, with the previous period's and the change when there is one."""
    rows = summary_rows(report)
    if not rows:
        return
    compared = report.previous is not None
    before = period(report.previous_since, report.since) if compared else ""
    table = Table(title="headline" + (f" (previous period: {before})" if compared else ""))
    columns = ["", "this period", *(("previous", "change") if compared else ()), "what it is"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("", "what it is") else "right")
    for row in rows:
        cells = [escape(row.name), escape(row.value), *((escape(row.previous), row.change) if compared else ()),
                 escape(row.detail)]
        table.add_row(*cells)
    console.print(table)


def _funnel(f: Funnel, console: Out) -> None:
    src = f.source
    console.print(
        f"\n[bold]funnel[/] of {escape(src.path)} ({escape(src.format)}): {src.events:,} events, {f.sessions:,} "
        f"sessions, {when(src.first_at)} to {when(src.last_at)}", soft_wrap=True,
    )  # fmt: skip
    table = Table(title="sessions reaching each step")
    for column in ("step", "sessions", "from previous", "drop-off", "median time", "p90 time", ""):
        table.add_column(column, justify="left" if column in ("step", "") else "right")
    for s in f.steps:
        flag = f"[red]◀ {escape(s.bottleneck)}[/]" if s.bottleneck else ""
        table.add_row(s.step, f"{s.sessions:,}", pct(s.conversion), pct(s.drop_off), duration(s.median_seconds),
                      duration(s.p90_seconds), flag)  # fmt: skip
    console.print(table)
    if f.unrecorded:
        console.print(f"not recorded in these events (left out): {', '.join(f.unrecorded)}")
    if f.carts:
        shares = [f" ({pct(c.conversion)})" if c.conversion is not None else "" for c in f.carts]
        steps = (f"{c.step} {c.carts:,}{s}" for c, s in zip(f.carts, shares, strict=True))
        console.print("carts: " + "  →  ".join(steps))
    _abandonment(f.abandonment, console)
    _friction(f.friction, console)
    _segments(f, console)


def _abandonment(a: Abandonment, console: Out) -> None:
    console.print(
        f"abandoned: {a.abandonments:,} times, {a.abandoned_carts:,} carts of {a.carts:,}; bought anyway later: "
        f"{a.came_back:,}; converted in session {a.converted_own:,}, elsewhere {a.converted_elsewhere:,}; still "
        f"open at the end: {a.open_at_end:,}"
    )
    if a.by_reason:
        table = Table(title="abandonment by likely reason")
        for column in ("reason", "abandonments", "share", "bought later", "value left"):
            table.add_column(column, justify="left" if column == "reason" else "right")
        for r in a.by_reason:
            table.add_row(escape(r.reason), f"{r.abandonments:,}", pct(r.share), f"{r.came_back:,}", moneys(r.value))
        console.print(table)
        console.print("by trigger: " + escape(", ".join(f"{k} {v:,}" for k, v in a.by_trigger.items())) +
                      "; by step: " + escape(", ".join(f"{k} {v:,}" for k, v in a.by_step.items())))  # fmt: skip


def _friction(fr: Friction, console: Out) -> None:
    console.print(
        f"friction over {fr.checkout_sessions:,} checkout sessions: payment failed in {pct(fr.payment_failure_rate)} "
        f"({fr.payment_failures:,} failures; {pct(fr.purchase_rate_after_payment_failure)} of those bought), form "
        f"errors in {pct(fr.form_error_rate)} ({fr.form_errors:,}; {pct(fr.purchase_rate_after_form_error)} "
        f"bought); without friction {pct(fr.purchase_rate_without_friction)} bought", soft_wrap=True,
    )  # fmt: skip
    if fr.payment_error_codes:
        console.print("payment errors: " + escape(", ".join(f"{k} {v}" for k, v in fr.payment_error_codes.items())))
    if fr.form_fields:
        console.print("form errors by field: " + escape(", ".join(f"{k} {v}" for k, v in fr.form_fields.items())))


def _segments(f: Funnel, console: Out) -> None:
    """One table per segment dimension, its rows in the funnel's order."""
    names = [_SHORT.get(s.step, s.step) for s in f.steps]
    for dimension in dict.fromkeys(r.dimension for r in f.segments):
        table = Table(title=f"by {dimension}")
        table.add_column(dimension)
        for name in names:
            table.add_column(name, justify="right")
        for column in ("conversion", "pay failed", "form errors", "worse at"):
            table.add_column(column, justify="right" if column != "worse at" else "left")
        for seg in (x for x in f.segments if x.dimension == dimension):
            worse = ", ".join(_SHORT.get(b, b) for b in seg.bottlenecks)
            table.add_row(escape(seg.value), *(f"{n:,}" for n in seg.sessions), pct(seg.conversion),
                          pct(seg.payment_failure_rate), pct(seg.form_error_rate),
                          f"[red]{escape(worse)}[/]" if worse else "")  # fmt: skip
        console.print(table)


def _recovery(r: Recovery, console: Out) -> None:
    c = r.cohort
    console.print(
        f"\n[bold]recovery[/]: {c.abandoned_carts:,} abandoned carts routed to a flow ({c.treatment_carts:,} "
        f"treatment, {c.holdout_carts:,} holdout); {c.messaged_carts:,} messaged; {c.converted_carts:,} bought "
        f"within the window (any group); {c.recovered_carts:,} recovered after a message", soft_wrap=True,
    )  # fmt: skip
    table = Table(title="by flow, step, channel, offer and variant")
    for column in ("", "sent", "failed", "not sent (why)", "links", "recovered", "revenue", "discount cost"):
        table.add_column(column, justify="left" if column in ("", "not sent (why)") else "right")
    for row in [r.total, *r.rows]:
        table.add_row(*_recovery_cells(row))
    console.print(table)
    if r.codes_issued:
        console.print(f"codes issued: {r.codes_issued:,}, redeemed: {r.total.codes_redeemed:,}; cost unknown for "
                      f"{r.total.discount_cost_unknown:,} (free shipping, or order not found)")  # fmt: skip
    _on_site(r, console)
    if r.days:
        table = Table(title=f"recovery over time (last {min(len(r.days), _DAYS_SHOWN)} days)")
        for column in ("day", "sent", "links followed", "recovered", "revenue"):
            table.add_column(column, justify="left" if column == "day" else "right")
        for d in r.days[-_DAYS_SHOWN:]:
            table.add_row(d.day, f"{d.sent:,}", f"{d.link_visits:,}", f"{d.recovered:,}", moneys(d.revenue))
        console.print(table)
    _message_days(r, console)


def _on_site(r: Recovery, console: Out) -> None:
    """What visitors did with on-site offers, per channel (recoverkit.onsite records it)."""
    rows = [x for x in r.rows if x.dimension == "channel" and x.on_site]
    if not rows:
        return
    table = Table(title="on-site offers by channel")
    for column in ("channel", "shown", "clicked", "dismissed", "click rate"):
        table.add_column(column, justify="left" if column == "channel" else "right")
    for x in rows:
        shown, clicked = x.on_site.get("shown", 0), x.on_site.get("clicked", 0)
        table.add_row(escape(x.label), count(shown), count(clicked), count(x.on_site.get("dismissed", 0)),
                      pct(clicked / shown if shown else None))  # fmt: skip
    console.print(table)


def _message_days(r: Recovery, console: Out) -> None:
    """Each day's messages and the carts they recovered, by the day they fell due and by the day they were sent."""
    due = {d.day: d for d in r.by_due_day}
    sent = {d.day: d for d in r.by_sent_day}
    days = sorted(set(due) | set(sent))[-_DAYS_SHOWN:]
    if not days:
        return
    table = Table(title=f"recovery by the day messages were due and sent (last {len(days)} days)")
    for column in ("day", "due", "recovered (by due day)", "sent", "recovered (by send day)", "revenue (by send day)"):
        table.add_column(column, justify="left" if column == "day" else "right")
    empty = MessageDay(day="")
    for day in days:
        d, s = due.get(day, empty), sent.get(day, empty)
        table.add_row(day, count(d.sent), count(d.recovered), count(s.sent), count(s.recovered), moneys(s.revenue))
    console.print(table)
    if r.due_unknown:
        console.print(f"{r.due_unknown:,} sent messages had no due time in the ledger (purged): counted on their "
                      "send day")  # fmt: skip


def _recovery_cells(row: RecoveryRow) -> list[str]:
    why = ", ".join(f"{k} {v:,}" for k, v in sorted(row.not_sent.items(), key=lambda kv: -kv[1])[:3])
    if len(row.not_sent) > 3:
        why += ", ..."
    revenue = moneys(row.recovered_revenue) + (f" (+{row.revenue_unknown} unknown)" if row.revenue_unknown else "")
    label = f"[bold]{escape(row.label)}[/]" if row.dimension == "all" else f"{row.dimension}: {escape(row.label)}"
    return [label, f"{row.sent:,}", f"{row.failed:,}", escape(why or "-"), f"{row.link_carts:,}",
            f"{row.recovered_carts:,}", revenue, moneys(row.discount_cost)]  # fmt: skip


def _uplift(u: Uplift, console: Out) -> None:
    if not u.rows:
        console.print(f"\n[bold]uplift[/]: {escape(u.note or 'no holdout')}", soft_wrap=True)
        return
    table = Table(title=f"\nuplift against the holdout ({u.confidence:.0%} intervals)")
    for column in ("flow", "scope", "treatment", "holdout", "difference", "interval", "relative", "verdict"):
        table.add_column(column, justify="left" if column in ("flow", "scope", "verdict") else "right")
    for row in u.rows:
        colour = {"uplift": "green", "harm": "red"}.get(row.verdict, "yellow")
        table.add_row(
            "all flows" if row.flow == "*" else escape(row.flow), row.scope,
            f"{row.treated_converted:,}/{row.treated:,} {pct(row.treated_rate)}",
            f"{row.holdout_converted:,}/{row.holdout:,} {pct(row.holdout_rate)}", points(row.difference),
            f"{points(row.low)} to {points(row.high)}", pct(row.relative, 0),
            f"[{colour}]{'too small to tell' if row.verdict == 'too_small' else row.verdict}[/]",
        )  # fmt: skip
    console.print(table)
    for row in u.rows:
        name = "all flows" if row.flow == "*" else row.flow
        console.print(f"  {escape(name)} ({row.scope} holdout): {escape(row.explanation)}", soft_wrap=True)
