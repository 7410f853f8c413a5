"""The ``report`` command of the ``recoverkit`` CLI (:mod:`recoverkit.cli` registers it with :func:`add_commands`).

::

    recoverkit report [--store DB] [--events FILE [--events-format F]] [--config F] [--window-days 5]
                      [--format table|json|html] [--output PATH] [--period P | --since T --until T]

The funnel comes from ``--events`` (recoverkit JSON lines, or a REES46 / Retailrocket CSV); recovery and uplift
from ``--store`` (an engine's SQLite state file: it must exist, the report never creates one; or a
``postgresql://`` URL of a PostgreSQL store, partitioned or not: the facts are the store's, named in the report
without the password). ``--since`` and
``--until`` take a date (``2026-01-31``), an RFC 3339 time or epoch seconds (UTC when no zone is given);
``--period`` names whole UTC days instead (``last-7-days``, ``this-month``, ``last-month``, ``2026-12``,
``2026-12-07``, ``2026-12-01..2026-12-07``), relative forms counted from now on the wall clock (the clock a live
engine dates its facts with). With both bounds, each headline figure is compared with the period of the same
length before.
``--format html`` writes one self-contained page; ``--output`` writes to a file instead of stdout. Tables are
fitted to a terminal, and plain aligned text, never wrapped, anywhere else (a file, a pipe). Exit status 0 on
success, 2 for usage errors, 1 when a file cannot be read.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from ._cli_common import open_url
from ._cli_output import Out, Ticker
from .store import is_store_url, store_label

if TYPE_CHECKING:
    from .analytics import Report
    from .config import Config

__all__ = ["add_commands", "parse_time"]


def parse_time(text: str) -> float:
    """``--since``/``--until``: epoch seconds, a date or an RFC 3339 / ISO 8601 time (UTC when no zone).

    >>> parse_time("2026-01-01"), parse_time("2026-01-01T01:00:00+01:00"), parse_time("1767225600")
    (1767225600.0, 1767225600.0, 1767225600.0)
    """
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a date (2026-01-31), an ISO 8601 time (2026-01-31T12:00:00Z) or epoch seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``report`` command on the CLI's subcommand parsers ``sub``."""
    p = sub.add_parser(
        "report", help="funnel, recovery and uplift against the holdout, as tables, JSON or a self-contained HTML page"
    )
    p.add_argument(
        "--store", help="an engine's SQLite state file (store.path), or a postgresql:// URL: recovery and uplift"
    )
    p.add_argument("--events", help="an event file (.jsonl, .jsonl.gz, - for stdin, or a REES46/Retailrocket CSV)")
    p.add_argument(
        "--events-format", choices=["auto", "jsonl", "rees46", "retailrocket"], default="auto",
        help="the format of --events (default: told from its first line)",
    )  # fmt: skip
    p.add_argument("--config", help="TOML configuration file (the abandonment timers used for the funnel)")
    p.add_argument(
        "--window-days", type=float, default=5.0, help="attribution window: orders this long after a message count (5)"
    )
    p.add_argument("--format", choices=["table", "json", "html"], default="table", help="output format (table)")
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.add_argument("--since", type=parse_time, help="start of the period (inclusive)")
    p.add_argument("--until", type=parse_time, help="end of the period (exclusive)")
    p.add_argument(
        "--period", help="the period as whole UTC days: last-7-days, this-month, last-month, 2026-12, 2026-12-07 or "
        "2026-12-01..2026-12-07 (instead of --since/--until)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace, console: Out, err: Out) -> int:
    from .analytics import print_report, render_html
    from .config import load_config

    if args.store is None and args.events is None:
        err.error("report needs --store, --events or both")
        return 2
    if args.period is not None and not _period(args, err):
        return 2
    if args.since is not None and args.until is not None and args.since >= args.until:
        err.error("--since must be before --until")
        return 2
    config = load_config(args.config) if args.config else None
    with Ticker(err, "report"):
        report = _build(args, config)
    if args.format == "json":
        _write(args.output, msgspec.json.format(msgspec.json.encode(report)) + b"\n")
    elif args.format == "html":
        _write(args.output, render_html(report).encode("utf-8"))
    elif args.output and args.output != "-":
        with open(args.output, "w", encoding="utf-8") as out:
            print_report(report, Out(out))
    else:
        print_report(report, console)
    if args.output and args.output != "-":
        err.print(f"wrote {args.format} report to {args.output}", markup=False, soft_wrap=True)
    return 0


def _period(args: argparse.Namespace, err: Out) -> bool:
    """Set ``args.since``/``args.until`` from ``--period``; ``False`` (the error printed) when it cannot be."""
    from .analytics._period import parse_period

    if args.since is not None or args.until is not None:
        err.error("--period names the whole period: give it, or --since/--until, not both")
        return False
    try:
        args.since, args.until = parse_period(args.period, now=time.time())
    except ValueError as exc:
        err.error(str(exc))
        return False
    return True


def _build(args: argparse.Namespace, config: Config | None) -> Report:
    from .analytics import build_report

    with contextlib.ExitStack() as opened:
        store = args.store
        if is_store_url(store):  # a PostgreSQL store, opened here and named without its password
            store = opened.enter_context(open_url(args.store, "report"))
        report = build_report(
            store=store, events=args.events, events_format=args.events_format, config=config,
            window_days=args.window_days, since=args.since, until=args.until,
        )  # fmt: skip
        return report if store is args.store else msgspec.structs.replace(report, store=store_label(args.store))


def _write(output: str | None, data: bytes) -> None:
    if output is None or output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        Path(output).write_bytes(data)
