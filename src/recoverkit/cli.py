"""The ``recoverkit`` command (also ``python -m recoverkit``).

::

    recoverkit demo                          replay the bundled sample and show what recoverkit would do
    recoverkit replay EVENTS [--config F] [--out F] [--json] [--store DB [--resume]] [--model F]
    recoverkit bench [EVENTS] [--sessions N] [--json]
    recoverkit dead-letters list FILE
    recoverkit dead-letters resend FILE --webhook URL [--key KEY ...]
    recoverkit check-config FILE
    recoverkit convert rees46|retailrocket CSV OUT
    recoverkit db check PATH                 integrity check of a state file (exit status 1 if problems)
    recoverkit db info PATH                  schema version, rows per table, lease holders
    recoverkit ledger PATH [--state S ...]   list ledger entries; --resolve KEY --as sent|retry settles one
    recoverkit forget PATH CUSTOMER          erase a customer's personal data (right to erasure)
    recoverkit export PATH CUSTOMER          everything held about a customer, as JSON (right of access)
    recoverkit report [--store DB] [--events F] [--format table|json|html]   funnel, recovery, uplift
    recoverkit train EVENTS --out MODEL [--test-share S]   fit the conversion model on a shop's history
    recoverkit evaluate EVENTS --model MODEL                auROC, auPR, calibration of a model file

Exit status: 0 on success, 2 for usage and configuration errors, 1 for other failures. Messages on stdout,
diagnostics on stderr; progress bars only when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import logging
import sys
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import msgspec
import structlog
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from ._cli_report import add_commands as add_report_commands
from ._cli_store import add_commands
from ._cli_templates import add_commands as add_template_commands
from ._cli_train import add_commands as add_train_commands
from .config import Config, load_config
from .errors import ConfigError, RecoverkitError

__all__ = ["main"]


def _config(path: str | None) -> Config:
    return load_config(path) if path else Config()


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _run_replay(args: argparse.Namespace, source: Any, console: Console, err: Console) -> int:
    from .replay import replay

    config = _config(args.config)
    if getattr(args, "model", None):  # replay --model: score with a trained model, as `model = ...` would
        config = msgspec.structs.replace(config, model=args.model)
    progress_cb = None
    bar = None
    if err.is_terminal and not args.no_progress and isinstance(source, (str, Path)) and str(source) != "-":
        from rich.progress import BarColumn, Progress, TransferSpeedColumn

        total = Path(source).stat().st_size
        bar = Progress("replaying", BarColumn(), TransferSpeedColumn(), console=err, transient=True)
        task = bar.add_task("replay", total=total)

        def progress_cb(done: int) -> None:
            bar.update(task, completed=min(done, total))  # bytes of decompressed text: approximate for .gz

        bar.start()
    try:
        summary = anyio.run(
            lambda: replay(
                source,
                config=config,
                out=args.out,
                progress=progress_cb,
                store=getattr(args, "store", None),
                resume=getattr(args, "resume", False),
            ),
            backend="asyncio",
            backend_options={"use_uvloop": _uvloop()},
        )
    finally:
        if bar is not None:
            bar.stop()
    if args.json:
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(summary)) + b"\n")
        return 0
    _print_summary(summary, console)
    return 0


def _print_summary(summary: Any, console: Console) -> None:
    console.print(
        f"[bold]{summary.events:,}[/] events ({summary.accepted:,} accepted, "
        f"{sum(summary.invalid.values()):,} invalid, {summary.late:,} late) "
        f"from {_when(summary.first_event_at)} to {_when(summary.last_event_at)} UTC, "
        f"replayed in {summary.seconds:.2f} s ({summary.events_per_second:,.0f} events/s)"
    )
    if summary.invalid:
        console.print("invalid events by reason: " + ", ".join(f"{k} {v}" for k, v in summary.invalid.items()))
    console.print(
        f"carts: {summary.carts:,}   converted: {summary.converted:,}   "
        f"abandoned: {sum(summary.abandonments.values()):,}"
    )
    table = Table(title="abandonments", show_edge=False)
    table.add_column("trigger")
    table.add_column("count", justify="right")
    for trigger, count in sorted(summary.abandonments.items()):
        table.add_row(trigger, f"{count:,}")
    console.print(table)
    table = Table(title="likely reasons", show_edge=False)
    table.add_column("reason")
    table.add_column("count", justify="right")
    for reason, count in sorted(summary.reasons.items()):
        table.add_row(reason, f"{count:,}")
    console.print(table)
    table = Table(title="messages sent", show_edge=False)
    for col in ("flow", "step", "channel"):
        table.add_column(col)
    table.add_column("count", justify="right")
    for key, count in summary.messages.items():
        flow, step, channel = key.split("/")
        table.add_row(flow, step, channel, f"{count:,}")
    console.print(table)
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(summary.skipped.items())) or "none"
    console.print(
        f"not sent: {skipped}; still pending when the events ended: {summary.pending:,}; "
        f"dead letters: {summary.dead_letters:,}"
    )


def _cmd_replay(args: argparse.Namespace, console: Console, err: Console) -> int:
    return _run_replay(args, args.events, console, err)


def _cmd_demo(args: argparse.Namespace, console: Console, err: Console) -> int:
    from .datasets import demo_events_path
    from .money import format_minor
    from .replay import replay

    path = demo_events_path()
    config = load_config(path.with_name("demo.toml"))
    console = Console(width=max(console.width, 110))  # the table is wider than a piped default of 80
    console.print(
        f"[bold]recoverkit demo[/]: replaying {path.name}, a slice of the public REES46 dataset (see "
        "ATTRIBUTION.md beside it), in event time; settings from demo.toml (shorter waits: the slice covers "
        "under three hours)\n"
    )
    sent: list[Any] = []

    class _Collect:
        async def send(self, message: Any) -> None:
            sent.append(message)

    pending: list[Any] = []
    summary = anyio.run(
        lambda: replay(path, config=config, channels={"email": _Collect()}, pending_out=pending), backend="asyncio"
    )
    rows = [(m, "sent") for m in sent] + [(m, "later") for m in pending]
    table = Table(
        title=f"messages recoverkit would send: {len(sent)} due within the data (sent), {len(pending)} due after "
        "it ends (later)",
        show_edge=False,
    )
    for col in ("due (UTC)", "", "cart", "trigger", "reason", "score", "value", "step", "to"):
        table.add_column(col, no_wrap=True)
    for m, status in rows[: args.limit]:
        email = m.recipient.email or ""
        masked = (email[:2] + "***") if email else "-"
        table.add_row(
            _when(m.due_at)[5:16], status, m.cart.cart_key[:6], m.trigger.replace("inactivity", "idle"), m.reason,
            f"{m.score:.2f}", format_minor(m.cart.value, m.cart.currency), f"{m.step} {m.channel}", masked,
        )  # fmt: skip
    console.print(table)
    if len(rows) > args.limit:
        console.print(f"... and {len(rows) - args.limit} more (--limit N to see them)")
    console.print()
    _print_summary(summary, console)
    return 0


def _cmd_bench(args: argparse.Namespace, console: Console, err: Console) -> int:
    from .bench import print_report, run_bench

    report = run_bench(
        args.events, sessions=args.sessions, seed=args.seed, repeat=args.repeat, memory_carts=args.memory_carts,
        config=_config(args.config),
    )  # fmt: skip
    if args.json:
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(report)) + b"\n")
    else:
        print_report(report, console)
    return 0


def _cmd_dead_letters(args: argparse.Namespace, console: Console, err: Console) -> int:
    from .deadletters import DeadLetters

    letters = DeadLetters(args.file)
    if args.action == "list":
        table = Table(title=f"dead letters in {args.file}: {len(letters)}")
        for col in ("key", "channel", "attempts", "at (UTC)", "permanent", "error"):
            table.add_column(col)
        for letter in letters:
            m = letter.message
            table.add_row(m.key, m.channel, str(letter.attempts), _when(letter.at), str(letter.permanent),
                          letter.error[:80])  # fmt: skip
        console.print(table)
        return 0
    from .channels.webhook import WebhookChannel

    channel = WebhookChannel(args.webhook)
    wanted = set(args.key or ())

    async def resend() -> tuple[int, int]:
        ok = failed = 0
        try:
            for letter in letters:
                if wanted and letter.message.key not in wanted:
                    continue
                try:
                    await channel.send(letter.message)
                except Exception as exc:
                    failed += 1
                    err.print(escape(f"{letter.message.key}: still failing: {exc}"))
                else:
                    ok += 1
                    letters.mark_resent(letter.message.key)
        finally:
            await channel.aclose()
        return ok, failed

    ok, failed = anyio.run(resend)
    console.print(f"re-sent {ok}, still failing {failed}")
    return 0 if not failed else 1


def _cmd_check_config(args: argparse.Namespace, console: Console, err: Console) -> int:
    config = load_config(args.file)
    console.print(f"{args.file}: ok ({len(config.flows)} flow(s): {', '.join(f.name for f in config.flows)})")
    return 0


def _cmd_convert(args: argparse.Namespace, console: Console, err: Console) -> int:
    from . import datasets

    if args.dataset == "rees46":
        events = datasets.rees46_events(args.csv)
    else:
        events = datasets.retailrocket_events(args.csv)
    count = datasets.write_jsonl(events, args.out)
    console.print(f"wrote {count:,} events to {args.out}")
    return 0


def _cmd_db(args: argparse.Namespace, console: Console, err: Console) -> int:
    # Read-only: neither creates, migrates nor changes the file, so it is safe beside running workers. Paths
    # and owners can be long: soft_wrap keeps each on one line for grep.
    import time

    from .store import check_database, describe_database

    if args.action == "check":
        problems = check_database(args.path)
        if not problems:
            console.print(f"{escape(args.path)}: ok", soft_wrap=True)
            return 0
        console.print(f"{escape(args.path)}: {len(problems)} problem(s)", soft_wrap=True)
        for problem in problems:
            console.print(f"  {escape(problem)}", soft_wrap=True)
        return 1
    info = describe_database(args.path)
    now = time.time()
    console.print(
        f"{escape(info.path)}: schema version {info.schema_version} (this recoverkit: {info.supported_version})",
        soft_wrap=True,
    )
    checkpoint = "none" if info.checkpoint_position is None else f"at seq {info.checkpoint_position:,}"
    console.print(f"journal: last seq {info.last_seq:,}; checkpoint {checkpoint}")
    table = Table(title="rows", show_edge=False)
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in info.rows.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    if not info.leases:
        console.print("leases: none")
    for lease in info.leases:
        left = lease.expires_at - now
        state = f"expires in {left:.1f} s" if left > 0 else f"expired {-left:.1f} s ago"
        console.print(
            f"lease {escape(lease.name)}: held by {escape(lease.owner)}, {state} ({_when(lease.expires_at)} UTC)",
            soft_wrap=True,
        )
    return 0


async def _maintenance(args: argparse.Namespace, work: Any) -> Any:
    """Run ``work(engine)`` on an engine on the store that sends nothing.

    If no shop process holds the pipeline lease, this one takes it: it restores the last checkpoint and reads
    the journal, so the whole state is at hand, and leaves a checkpoint behind (due messages stay scheduled for
    the shop's engine). If a shop process holds it, this one only journals, and the shop's engine acts.
    """
    from .engine import Engine

    path = Path(args.store)
    if not path.exists():
        raise ValueError(f"{path}: no such state file; expected the store.path of a recoverkit engine")
    async with Engine(_config(args.config), store=path, deliver=False) as engine:
        await engine.flush()
        return await work(engine)


def _cmd_forget(args: argparse.Namespace, console: Console, err: Console) -> int:
    async def work(engine: Any) -> bool:
        return bool(await engine.forget(args.customer))

    done = anyio.run(_maintenance, args, work, backend="asyncio")
    if done:
        console.print("erased: the customer's carts, contact details, pending messages and dead letters are gone")
    else:
        console.print("requested: a running engine holds this store; it erases the customer within seconds")
    return 0


def _cmd_export(args: argparse.Namespace, console: Console, err: Console) -> int:
    async def work(engine: Any) -> Any:
        return engine.export(args.customer)

    exported = anyio.run(_maintenance, args, work, backend="asyncio")
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(exported)).decode() + "\n")
    return 0


def _uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recoverkit", description="Win back abandoned carts in real time.")
    parser.add_argument("--version", action="version", version=f"recoverkit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log engine activity to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="replay the bundled sample data and show the messages recoverkit would send")
    p.add_argument("--limit", type=int, default=15, help="messages to list (default 15)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("replay", help="run the engine over a recorded event file in event time")
    p.add_argument("events", help=".jsonl or .jsonl.gz file of events, or - for stdin")
    p.add_argument("--config", help="TOML configuration file")
    p.add_argument("--out", help="write every message that would be sent as a JSON line to this file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    p.add_argument("--store", help="keep the replay's state in this SQLite file (default: in memory)")
    p.add_argument("--model", help="score with this model file from `recoverkit train` (default: the config's)")
    p.add_argument(
        "--resume", action="store_true", help="carry on an interrupted replay in the same --store (one input per store)"
    )
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("forget", help="erase a customer's personal data from a state file (right to erasure)")
    p.add_argument("store", help="the SQLite state file (store.path)")
    p.add_argument("customer", help="the customer id")
    p.add_argument("--config", help="TOML configuration file (its flows and store settings)")
    p.set_defaults(func=_cmd_forget)

    p = sub.add_parser("export", help="print everything held about a customer as JSON (right of access)")
    p.add_argument("store", help="the SQLite state file (store.path)")
    p.add_argument("customer", help="the customer id")
    p.add_argument("--config", help="TOML configuration file (its flows and store settings)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("bench", help="measure the pipeline against a msgspec-decode baseline in the same run")
    p.add_argument("events", nargs="?", help="event file to use (default: generate synthetic events)")
    p.add_argument("--sessions", type=int, default=50_000, help="synthetic sessions to generate (default 50000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best is kept")
    p.add_argument("--memory-carts", type=int, default=100_000, help="open carts for the memory figure")
    p.add_argument("--config", help="TOML configuration file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("dead-letters", help="list or re-send dead letters")
    p.add_argument("action", choices=["list", "resend"])
    p.add_argument("file", help="the dead-letter file (Engine(dead_letters=...))")
    p.add_argument("--webhook", help="resend: POST each letter to this URL")
    p.add_argument("--key", action="append", help="resend only this key (repeatable)")
    p.set_defaults(func=_cmd_dead_letters)

    p = sub.add_parser("check-config", help="validate a TOML configuration file")
    p.add_argument("file")
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("convert", help="convert a public dataset to recoverkit events")
    p.add_argument("dataset", choices=["rees46", "retailrocket"])
    p.add_argument("csv")
    p.add_argument("out", help=".jsonl or .jsonl.gz")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("db", help="look at a state file (SQLiteStore) without changing it")
    p.add_argument("action", choices=["check", "info"], help="check: integrity; info: version, rows, leases")
    p.add_argument("path", help="the SQLite state file")
    p.set_defaults(func=_cmd_db)
    add_commands(sub)
    add_template_commands(sub)
    add_report_commands(sub)
    add_train_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``recoverkit`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    # The CLI owns its process, so unlike the library it may configure logging: diagnostics to stderr,
    # warnings and worse unless -v.
    level = logging.INFO if args.verbose else logging.WARNING
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(level),
    )
    console = Console()
    err = Console(stderr=True)
    if args.command == "dead-letters" and args.action == "resend" and not args.webhook:
        parser.error("dead-letters resend needs --webhook URL")
    # Messages are escaped when printed: they quote values from the user's files, and "[/x]" there is text.
    try:
        return int(args.func(args, console, err))
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/] {escape(str(exc))}")
        return 2
    except (RecoverkitError, OSError, ValueError, EOFError, zlib.error) as exc:  # EOFError, zlib: a bad .gz
        err.print(f"[red]error:[/] {escape(str(exc))}")
        return 1
