"""The ``recoverkit`` command (also ``python -m recoverkit``).

::

    recoverkit demo                          replay the bundled sample and show what recoverkit would do
    recoverkit replay EVENTS [--config F] [--out F] [--json] [--store DB [--resume]] [--model F]
    recoverkit bench [EVENTS] [--sessions N] [--json]
    recoverkit dead-letters list FILE [--json]
    recoverkit dead-letters resend FILE --webhook URL [--key KEY ...]
    recoverkit check-config FILE
    recoverkit convert rees46|retailrocket CSV OUT
    recoverkit db check PATH                 integrity check of a state file (exit status 1 if problems)
    recoverkit db info PATH [--json]         schema version, rows per table, lease holders
    recoverkit ledger PATH [--state S ...] [--json]   list ledger entries; --resolve KEY --as sent|retry settles one
    recoverkit forget PATH CUSTOMER [--dead-letters F]   erase a customer's personal data, say what went where
    recoverkit export PATH CUSTOMER          everything held about a customer, as JSON (right of access)
    recoverkit report [--store DB] [--events F] [--format table|json|html]   funnel, recovery, uplift
    recoverkit train EVENTS --out MODEL [--test-share S]   fit the conversion model on a shop's history
    recoverkit evaluate EVENTS --model MODEL                auROC, auPR, calibration of a model file

Exit status: 0 on success, 2 for usage and configuration errors, 1 for other failures. Messages on stdout,
diagnostics on stderr, each error one line (``error: ...``). Output that is not a terminal is plain text that is
never wrapped (see :mod:`recoverkit._cli_output`); long work (replay, convert, bench, report, train, evaluate)
then writes a progress line on stderr every ``RECOVERKIT_PROGRESS_INTERVAL`` seconds (default 10; 0: none),
where a terminal gets a progress bar (replay) or nothing.
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

from . import __version__
from ._cli_output import Out, Table, Ticker, escape
from ._cli_report import add_commands as add_report_commands
from ._cli_store import add_commands
from ._cli_templates import add_commands as add_template_commands
from ._cli_train import add_commands as add_train_commands
from ._log import log_to_stderr
from .config import Config, load_config
from .errors import ConfigError, RecoverkitError

__all__ = ["main"]


def _config(path: str | None) -> Config:
    return load_config(path) if path else Config()


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _run_replay(args: argparse.Namespace, source: Any, console: Out, err: Out) -> int:
    from .replay import replay

    config = _config(args.config)
    if getattr(args, "model", None):  # replay --model: score with a trained model, as `model = ...` would
        config = msgspec.structs.replace(config, model=args.model)
    named = isinstance(source, (str, Path)) and str(source) != "-"
    total = Path(source).stat().st_size if named else None
    read = 0
    bar = None
    terminal = err.console()
    if terminal is not None and not args.no_progress and total is not None:
        from rich.progress import BarColumn, Progress, TransferSpeedColumn

        bar = Progress("replaying", BarColumn(), TransferSpeedColumn(), console=terminal, transient=True)
        task = bar.add_task("replay", total=total)
        bar.start()

    def progress_cb(done: int) -> None:
        nonlocal read
        read = done
        if bar is not None:
            bar.update(task, completed=min(done, total or 0))  # bytes of decompressed text: approximate for .gz

    def what() -> str:
        # .gz: the bytes read are decompressed text, so the compressed size is no total for them.
        of = f" of {total / 1e6:,.1f} MB" if total and not str(source).endswith(".gz") else ""
        return f"{read / 1e6:,.1f} MB read{of}"

    shown = 0

    def on_invalid(number: int, exc: Exception) -> None:
        # The first few, with the line to look at; the summary counts them all.
        nonlocal shown
        shown += 1
        if shown <= _INVALID_LINES_SHOWN:
            err.print(escape(f"line {number}: {exc}"), soft_wrap=True)
        elif shown == _INVALID_LINES_SHOWN + 1:
            err.print("further invalid lines are not shown; the summary counts them all", soft_wrap=True)

    def on_wait(text: str) -> None:
        err.print(escape(text), soft_wrap=True)

    from .replay import IncompleteReplay

    failure: str | None = None
    # The journal logs each invalid event's reason without its line; the warnings above say it with the line.
    journal_log = logging.getLogger("recoverkit.journal")
    quiet = _WithoutInvalidEvents()
    journal_log.addFilter(quiet)
    try:
        with Ticker(err, "replay", what, enabled=not args.no_progress):
            summary = anyio.run(
                lambda: replay(
                    source,
                    config=config,
                    out=args.out,
                    progress=progress_cb,
                    store=getattr(args, "store", None),
                    resume=getattr(args, "resume", False),
                    on_invalid=on_invalid,
                    on_wait=on_wait,
                ),
                backend="asyncio",
                backend_options={"use_uvloop": _uvloop()},
            )
    except IncompleteReplay as exc:
        summary, failure = exc.summary, str(exc)  # the summary of what was read, then the error
    finally:
        journal_log.removeFilter(quiet)
        if bar is not None:
            bar.stop()
    name = "<stdin>" if not named else str(source)
    if failure is None:
        if summary.lines == 0:
            failure = f"{name}: no events to replay (the input is empty)"
        elif summary.accepted == 0:
            failure = f"{name}: none of its {summary.lines:,} event(s) is valid (the reasons are above)"
        elif summary.processed == 0:
            failure = (
                f"nothing left to replay: the store's journal already held all {summary.resumed_after:,} valid "
                f"events of {name}, and they were decided on before; replay into a new --store to run it again"
            )
    if args.json:
        _write_json(summary)
    else:
        _print_summary(summary, console)
    if failure is not None:
        err.error(failure)
        return 1
    return 0


#: Invalid lines a replay names on stderr, each with its line number; the summary counts the rest.
_INVALID_LINES_SHOWN = 20


class _WithoutInvalidEvents(logging.Filter):
    """Drops the journal's ``invalid_event`` records while a replay reports each invalid line itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "event", None) != "invalid_event"


def _print_summary(summary: Any, console: Out, cartless: int | None = None) -> None:
    """Print a replay's summary; ``cartless``, when known, is how many purchases had no cart before them."""
    console.print(
        f"[bold]{summary.events:,}[/] events ({summary.accepted:,} accepted, "
        f"{sum(summary.invalid.values()):,} invalid, {summary.late:,} late) "
        f"from {_when(summary.first_event_at)} to {_when(summary.last_event_at)} UTC, "
        f"replayed in {summary.seconds:.2f} s ({summary.events_per_second:,.0f} events/s)"
    )
    if summary.invalid:
        console.print("invalid events by reason: " + ", ".join(f"{k} {v}" for k, v in summary.invalid.items()))
    if getattr(summary, "resumed_after", 0):
        console.print(
            f"resumed: the first {summary.resumed_after:,} valid events were already in the store's journal; this "
            f"run decided on {summary.processed:,} journal entries"
        )
    console.print(
        f"carts: {summary.carts:,}   converted: {summary.converted:,}   "
        f"abandoned: {sum(summary.abandonments.values()):,}"
    )
    # The engine counts every purchase as a conversion, also one in a session that never had a cart (REES46
    # records many such): then "converted" can exceed "carts", which reads as a bug without a word on it.
    if cartless:
        console.print(
            f"  converted counts every purchase: {cartless:,} of the {summary.converted:,} were in sessions with no "
            "cart event before them (this data records purchases without one)"
        )
    elif summary.converted > summary.carts:
        console.print(
            "  converted counts every purchase, also those in sessions with no cart event before them: so it can "
            "exceed carts"
        )
    table = Table(title="abandonments")
    table.add_column("trigger")
    table.add_column("count", justify="right")
    for trigger, count in sorted(summary.abandonments.items()):
        table.add_row(trigger, f"{count:,}")
    console.print(table)
    table = Table(title="likely reasons")
    table.add_column("reason")
    table.add_column("count", justify="right")
    for reason, count in sorted(summary.reasons.items()):
        table.add_row(reason, f"{count:,}")
    console.print(table)
    table = Table(title="messages sent")
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


def _cmd_replay(args: argparse.Namespace, console: Out, err: Out) -> int:
    return _run_replay(args, args.events, console, err)


def _cmd_demo(args: argparse.Namespace, console: Out, err: Out) -> int:
    from .datasets import demo_events_path
    from .money import format_minor
    from .replay import replay

    path = demo_events_path()
    config = load_config(path.with_name("demo.toml"))
    console = console.widened(110)  # the table is wider than a narrow terminal
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
    _print_summary(summary, console, cartless=_cartless_purchases(path))
    return 0


def _cartless_purchases(path: Path) -> int:
    """Purchases in ``path`` made in a session with no cart open before them (none added since its last order).

    A presentation aid for the demo's summary, read from the events themselves, not from the engine.
    """
    from .datasets import read_jsonl
    from .events import AddPaymentInfo, AddShippingInfo, AddToCart, BeginCheckout, Purchase, ViewCart

    # What starts a cart in the sessionize stage: an item added, or a checkout step that sends the whole cart.
    steps = (ViewCart, BeginCheckout, AddShippingInfo, AddPaymentInfo)
    open_carts: set[str] = set()
    cartless = 0
    for event in read_jsonl(path):
        if type(event) is Purchase:
            if event.session_id not in open_carts:
                cartless += 1
            open_carts.discard(event.session_id)
        elif type(event) is AddToCart or (type(event) in steps and event.items):
            open_carts.add(event.session_id)
    return cartless


def _cmd_bench(args: argparse.Namespace, console: Out, err: Out) -> int:
    from .bench import print_report, run_bench

    with Ticker(err, "bench"):
        report = run_bench(
            args.events, sessions=args.sessions, seed=args.seed, repeat=args.repeat, memory_carts=args.memory_carts,
            config=_config(args.config),
        )  # fmt: skip
    if args.json:
        _write_json(report)
    else:
        print_report(report, console)
    return 0


def _cmd_dead_letters(args: argparse.Namespace, console: Out, err: Out) -> int:
    from ._cli_store import redact
    from .deadletters import DeadLetters

    if args.json and args.action != "list":
        err.error("dead-letters: --json is for list")
        return 2
    if not Path(args.file).is_file():  # else a typo would list "0" letters as if all had gone well
        err.error(f"{args.file}: no such dead-letter file; expected the file given as Engine(dead_letters=...)")
        return 2
    letters = DeadLetters(args.file)
    if args.action == "list":
        # Never the recipient (personal data); an error may quote an address, so it is redacted too.
        if args.json:
            document = {
                "file": args.file,
                "letters": [
                    {"key": letter.message.key, "channel": letter.message.channel, "attempts": letter.attempts,
                     "at": letter.at, "permanent": letter.permanent, "error": redact(letter.error)}
                    for letter in letters
                ],
            }  # fmt: skip
            _write_json(document)
            return 0
        table = Table(title=f"dead letters in {escape(args.file)}: {len(letters)}")
        for col in ("key", "channel", "attempts", "at (UTC)", "permanent", "error"):
            table.add_column(col)
        for letter in letters:
            m = letter.message
            table.add_row(escape(m.key), escape(m.channel), str(letter.attempts), _when(letter.at),
                          str(letter.permanent), escape(redact(letter.error)[:80]))  # fmt: skip
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
                    err.print(escape(f"{letter.message.key}: still failing: {redact(str(exc))}"), soft_wrap=True)
                else:
                    ok += 1
                    letters.mark_resent(letter.message.key)
        finally:
            await channel.aclose()
        return ok, failed

    ok, failed = anyio.run(resend)
    console.print(f"re-sent {ok}, still failing {failed}")
    return 0 if not failed else 1


def _cmd_check_config(args: argparse.Namespace, console: Out, err: Out) -> int:
    config = load_config(args.file)
    problems = _config_problems(config, args.file, secrets=not args.no_secrets)
    for problem in problems:
        err.error(problem, kind="configuration error")
    if problems:
        return 2
    flows = ", ".join(f.name for f in config.flows)
    console.print(f"{escape(args.file)}: ok ({len(config.flows)} flow(s): {flows})", soft_wrap=True)
    return 0


def _config_problems(config: Config, file: str, *, secrets: bool) -> list[str]:
    """What would stop an engine built from ``config`` that loading it does not catch, one message each.

    A channel the flows name that is neither built in nor declared under ``[channels.<name>]`` (most often a
    typo, which would otherwise become a channel of its own that no adapter serves), and, with ``secrets``,
    the secrets it reads from this environment.
    """
    from ._integration_commands import secret_status
    from .config import DEFAULT_CHANNELS, channel_paths

    problems: list[str] = []
    built_in = ", ".join(sorted(DEFAULT_CHANNELS))
    for name, paths in channel_paths(config).items():
        if name not in DEFAULT_CHANNELS and name not in config.channels:
            problems.append(
                f"{file}: `{paths[0]}` is {name!r}, which is neither a built-in channel ({built_in}) nor declared "
                f"under [channels.{name}]; expected one of those, or your own channel declared there (its adapter "
                "is passed to Engine(channels=...))"
            )
    if not secrets:
        return problems
    offers = config.code_offers()
    status = secret_status(config.code_secret_env)
    if offers and status != "set":
        problems.append(
            f"{file}: the offers {', '.join(offers)} carry codes, whose secret is read from the environment variable "
            f"{config.code_secret_env} (`code_secret_env`): {status}; expected a random secret of at least 32 "
            "bytes in every process that runs the engine, or --no-secrets if Engine(coupons=...) issues the codes"
        )
    if config.links.base_url is not None:
        status = secret_status(config.links.secret_env)
        if status != "set":
            problems.append(
                f"{file}: restore links (`links.base_url`) are signed with the secret in the environment variable "
                f"{config.links.secret_env} (`links.secret_env`): {status}; expected a random secret of at least 32 "
                "bytes, the same in every process that builds or verifies links"
            )
    return problems


def _cmd_convert(args: argparse.Namespace, console: Out, err: Out) -> int:
    from . import datasets

    if args.dataset == "rees46":
        events = datasets.rees46_events(args.csv)
    else:
        events = datasets.retailrocket_events(args.csv)
    done = 0

    def counted(events: Any) -> Any:
        nonlocal done
        for done, event in enumerate(events, 1):  # noqa: B007  # done is read by the progress line
            yield event

    with Ticker(err, "convert", lambda: f"{done:,} events written"):
        count = datasets.write_jsonl(counted(events), args.out)
    console.print(f"wrote {count:,} events to {escape(args.out)}", soft_wrap=True)
    return 0


def _cmd_db(args: argparse.Namespace, console: Out, err: Out) -> int:
    # Read-only: neither creates, migrates nor changes the file, so it is safe beside running workers. Paths
    # and owners can be long: soft_wrap keeps each on one line for grep.
    import time

    from .store import check_database, describe_database

    if args.action == "check":
        problems = check_database(args.path)
        if args.json:
            _write_json({"path": args.path, "ok": not problems, "problems": problems})
            return 1 if problems else 0
        if not problems:
            console.print(f"{escape(args.path)}: ok", soft_wrap=True)
            return 0
        console.print(f"{escape(args.path)}: {len(problems)} problem(s)", soft_wrap=True)
        for problem in problems:
            console.print(f"  {escape(problem)}", soft_wrap=True)
        return 1
    info = describe_database(args.path)
    if args.json:
        _write_json(info)
        return 0
    now = time.time()
    console.print(
        f"{escape(info.path)}: schema version {info.schema_version} (this recoverkit: {info.supported_version})",
        soft_wrap=True,
    )
    checkpoint = "none" if info.checkpoint_position is None else f"at seq {info.checkpoint_position:,}"
    console.print(f"journal: last seq {info.last_seq:,}; checkpoint {checkpoint}")
    table = Table(title="rows")
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


def _cmd_forget(args: argparse.Namespace, console: Out, err: Out) -> int:
    from .privacy import erase, finish_erasure

    async def work(engine: Any) -> Any:
        return await erase(engine, args.customer)

    # Exactly what went where (see recoverkit.privacy.Erasure); exit status 1 when anything was left.
    erasure = anyio.run(_maintenance, args, work, backend="asyncio")
    erasure = finish_erasure(erasure, store=args.store, dead_letters=args.dead_letters)
    for line in erasure.lines(args.dead_letters):
        console.print(escape(line), soft_wrap=True)
    return 0 if erasure.complete or not erasure.carried_out else 1


def _cmd_export(args: argparse.Namespace, console: Out, err: Out) -> int:
    async def work(engine: Any) -> Any:
        return engine.export(args.customer)

    exported = anyio.run(_maintenance, args, work, backend="asyncio")
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(exported)).decode() + "\n")
    return 0


def _write_json(document: Any) -> None:
    """``document`` as one JSON document on stdout (indented, as every --json of the CLI)."""
    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(document)) + b"\n")
    sys.stdout.buffer.flush()


def _uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recoverkit",
        description="Win back abandoned carts in real time.",
        epilog="Output that is not a terminal is plain text, never wrapped; an error is one line on stderr. Exit "
        "status: 0 on success, 2 for usage and configuration errors, 1 for other failures. Long work (replay, "
        "convert, bench, report, train, evaluate) writes a progress line on stderr when it is not a terminal, "
        "every RECOVERKIT_PROGRESS_INTERVAL seconds (default 10; 0: none).",
    )
    parser.add_argument("--version", action="version", version=f"recoverkit {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log engine activity to stderr (-vv: debug records too)"
    )
    parser.add_argument(
        "--log-level", choices=sorted(_LOG_LEVELS), help="log to stderr from this level up (default: warning)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="replay the bundled sample data and show the messages recoverkit would send")
    p.add_argument("--limit", type=int, default=15, help="messages to list (default 15)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("replay", help="run the engine over a recorded event file in event time")
    p.add_argument("events", help=".jsonl or .jsonl.gz file of events, or - for stdin")
    p.add_argument("--config", help="TOML configuration file")
    p.add_argument("--out", help="write every message that would be sent as a JSON line to this file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--no-progress", action="store_true",
        help="no progress bar on a terminal, no progress lines on stderr otherwise",
    )  # fmt: skip
    p.add_argument("--store", help="keep the replay's state in this SQLite file (default: in memory)")
    p.add_argument("--model", help="score with this model file from `recoverkit train` (default: the config's)")
    p.add_argument(
        "--resume", action="store_true",
        help="carry on an interrupted replay in the same --store (one input per store; waits for a killed run's "
        "lease to lapse; --out is appended to)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("forget", help="erase a customer's personal data from a state file (right to erasure)")
    p.add_argument("store", help="the SQLite state file (store.path)")
    p.add_argument("customer", help="the customer id")
    p.add_argument("--config", help="TOML configuration file (its flows and store settings)")
    p.add_argument(
        "--dead-letters", metavar="FILE", help="the engine's dead-letter file (Engine(dead_letters=...)): erase it too"
    )
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
    p.add_argument("action", choices=["list", "resend"], help="list: show the letters; resend: POST them again")
    p.add_argument("file", help="the dead-letter file (Engine(dead_letters=...))")
    p.add_argument("--webhook", help="resend: POST each letter to this URL")
    p.add_argument("--key", action="append", help="resend only this key (repeatable)")
    p.add_argument("--json", action="store_true", help="list: print the letters as one JSON document")
    p.set_defaults(func=_cmd_dead_letters)

    p = sub.add_parser(
        "check-config",
        help="validate a TOML configuration file: its keys, the channels its flows name, and that the secrets it "
        "needs are set in this environment",
    )
    p.add_argument("file")
    p.add_argument(
        "--no-secrets", action="store_true", help="do not look for the secrets in the environment (codes, links)"
    )
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("convert", help="convert a public dataset to recoverkit events")
    p.add_argument("dataset", choices=["rees46", "retailrocket"])
    p.add_argument("csv")
    p.add_argument("out", help=".jsonl or .jsonl.gz")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("db", help="look at a state file (SQLiteStore) without changing it")
    p.add_argument("action", choices=["check", "info"], help="check: integrity; info: version, rows, leases")
    p.add_argument("path", help="the SQLite state file")
    p.add_argument("--json", action="store_true", help="print what was found as one JSON document")
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
    # The CLI owns its process, so unlike the library it may configure logging: recoverkit's records to stderr
    # (stdout carries the commands' output), warnings and worse unless -v or --log-level; the root logger and
    # any other library's loggers are left alone.
    if args.log_level is not None:
        level = _LOG_LEVELS[args.log_level]
    else:
        level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    log_to_stderr(level, unless_configured=False)
    console = Out()
    err = Out(stderr=True)
    if args.command == "dead-letters" and args.action == "resend" and not args.webhook:
        parser.error("dead-letters resend needs --webhook URL")
    # err.error writes messages as text, one line each: they quote values from the user's files ("[/x]" there
    # is text), and a log or a test looks for them whole.
    try:
        return int(args.func(args, console, err))
    except ConfigError as exc:
        err.error(str(exc), kind="configuration error")
        return 2
    except (RecoverkitError, OSError, ValueError, EOFError, zlib.error) as exc:  # EOFError, zlib: a bad .gz
        err.error(str(exc))
        return 1
