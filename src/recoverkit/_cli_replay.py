"""The commands of the ``recoverkit`` CLI that run the engine over event files (:mod:`recoverkit.cli` registers
them, each with its ``add_*`` function)::

    recoverkit demo                          replay the bundled sample and show what recoverkit would do
    recoverkit replay EVENTS [--config F] [--out F] [--json] [--store DB [--resume]] [--model F]
    recoverkit bench [EVENTS] [--sizes 100k,1M] [--store-kind memory,sqlite] [--json]
    recoverkit bench --write-events FILE [--count 10M] [--mix browse|funnel]
    recoverkit convert rees46|retailrocket CSV OUT

A replay names its first invalid lines on stderr, each with its line number, and its summary counts them all;
it fails (exit status 1, after the summary) when the input is empty, holds no valid event, or was all decided
on before in the ``--store`` it resumes. ``--store`` may be a ``postgresql://`` URL: a PostgreSQL store of one
journal partition (a replay is one pipeline in event time; a partitioned store is refused, saying so).
"""

from __future__ import annotations

import argparse
import gc
import logging
from pathlib import Path
from typing import Any

import anyio
import msgspec

from ._cli_common import config_from, open_url, when, write_json
from ._cli_output import Out, Table, Ticker, escape
from .config import load_config
from .store import is_store_url

__all__ = ["add_bench", "add_convert", "add_demo", "add_replay"]

#: Invalid lines a replay names on stderr, each with its line number; the summary counts the rest.
_INVALID_LINES_SHOWN = 20


def add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="replay the bundled sample data and show the messages recoverkit would send")
    p.add_argument("--limit", type=int, default=15, help="messages to list (default 15)")
    p.set_defaults(func=_cmd_demo)


def add_replay(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("replay", help="run the engine over a recorded event file in event time")
    p.add_argument("events", help=".jsonl or .jsonl.gz file of events, or - for stdin")
    p.add_argument("--config", help="TOML configuration file")
    p.add_argument("--out", help="write every message that would be sent as a JSON line to this file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--no-progress", action="store_true",
        help="no progress bar on a terminal, no progress lines on stderr otherwise",
    )  # fmt: skip
    p.add_argument(
        "--store",
        help="keep the replay's state in this SQLite file, or the PostgreSQL store of a postgresql:// URL made with "
        "one partition (default: in memory)",
    )
    p.add_argument("--model", help="score with this model file from `recoverkit train` (default: the config's)")
    p.add_argument(
        "--resume", action="store_true",
        help="carry on an interrupted replay in the same --store (one input per store; waits for a killed run's "
        "lease to lapse; --out is appended to)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_replay)


def add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="measure `recoverkit replay` against msgspec decoding of the same lines in the same run, at several "
        "input sizes (or write a synthetic event file with --write-events)",
    )
    p.add_argument("events", nargs="?", help="event file to use, .jsonl or .jsonl.gz (default: synthetic events)")
    p.add_argument("--events", dest="events_option", metavar="FILE", help="the same as the EVENTS argument")
    p.add_argument(
        "--sizes",
        help="input sizes in events, such as 100k,1M,10M (default 100k,1M; of an EVENTS file: its first lines)",
    )
    p.add_argument("--sessions", type=int, help="instead of --sizes: this many synthetic sessions, one size")
    p.add_argument(
        "--mix", choices=["browse", "funnel"], default="browse",
        help="synthetic events: mostly page views (browse, the default) or the cart-heavy funnel",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best is kept")
    p.add_argument(
        "--store-kind", default="memory",
        help="memory (default), or memory,sqlite to replay into a new SQLite file too and compare",
    )  # fmt: skip
    p.add_argument("--memory-carts", type=int, default=100_000, help="open carts for the memory figure (0: none)")
    p.add_argument("--config", help="TOML configuration file for the replays (default: the defaults)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--write-events", metavar="FILE",
        help="only write --count synthetic events of --mix to FILE (.gz: compressed), for EVENTS or a replay",
    )  # fmt: skip
    p.add_argument("--count", default="1M", help="events --write-events writes, such as 10M (default 1M)")
    p.set_defaults(func=_cmd_bench)


def add_convert(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("convert", help="convert a public dataset to recoverkit events")
    p.add_argument("dataset", choices=["rees46", "retailrocket"])
    p.add_argument("csv")
    p.add_argument("out", help=".jsonl or .jsonl.gz")
    p.set_defaults(func=_cmd_convert)


# -- replay ---------------------------------------------------------------------------------------------------


class _Progress:
    """How far a replay has read: a bar on a terminal when the input's size is known, and the text of the
    progress lines written otherwise (see :class:`~recoverkit._cli_output.Ticker`)."""

    def __init__(self, source: Any, err: Out, *, enabled: bool) -> None:
        named = isinstance(source, (str, Path)) and str(source) != "-"
        self.total = Path(source).stat().st_size if named else None
        # .gz: the bytes read are decompressed text, so the compressed size is no total for them.
        self.gz = str(source).endswith(".gz")
        self.read = 0
        self.bar: Any = None
        terminal = err.console()
        if terminal is not None and enabled and self.total is not None:
            from rich.progress import BarColumn, Progress, TransferSpeedColumn

            self.bar = Progress("replaying", BarColumn(), TransferSpeedColumn(), console=terminal, transient=True)
            self.task = self.bar.add_task("replay", total=self.total)
            self.bar.start()

    def update(self, done: int) -> None:
        self.read = done
        if self.bar is not None:
            self.bar.update(self.task, completed=min(done, self.total or 0))  # decompressed bytes: approximate

    def what(self) -> str:
        of = f" of {self.total / 1e6:,.1f} MB" if self.total and not self.gz else ""
        return f"{self.read / 1e6:,.1f} MB read{of}"

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class _InvalidLines:
    """Names the first :data:`_INVALID_LINES_SHOWN` invalid lines on stderr, with the line to look at; the
    summary counts them all."""

    def __init__(self, err: Out) -> None:
        self.err = err
        self.shown = 0

    def __call__(self, number: int, exc: Exception) -> None:
        self.shown += 1
        if self.shown <= _INVALID_LINES_SHOWN:
            self.err.print(escape(f"line {number}: {exc}"), soft_wrap=True)
        elif self.shown == _INVALID_LINES_SHOWN + 1:
            self.err.print("further invalid lines are not shown; the summary counts them all", soft_wrap=True)


class _WithoutInvalidEvents(logging.Filter):
    """Drops the journal's ``invalid_event`` records while a replay reports each invalid line itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "event", None) != "invalid_event"


def _cmd_replay(args: argparse.Namespace, console: Out, err: Out) -> int:
    if is_store_url(args.store):  # refused here, before any event is read, if it is partitioned
        open_url(args.store, "replay", one_pipeline=_ONE_PARTITION).close()
    return _run_replay(args, args.events, console, err)


#: What a replay on a partitioned store should use instead (see open_url).
_ONE_PARTITION = (
    "a replay decides in event time in one pipeline; replay into a store made with `recoverkit db init URL "
    "--partitions 1` in another database, a SQLite file, or leave out --store (in memory)"
)


def _run_replay(args: argparse.Namespace, source: Any, console: Out, err: Out) -> int:
    from .replay import IncompleteReplay, replay

    config = config_from(args.config)
    if getattr(args, "model", None):  # replay --model: score with a trained model, as `model = ...` would
        config = msgspec.structs.replace(config, model=args.model)
    progress = _Progress(source, err, enabled=not args.no_progress)

    def on_wait(text: str) -> None:
        err.print(escape(text), soft_wrap=True)

    failure: str | None = None
    # The journal logs each invalid event's reason without its line; the warnings above say it with the line.
    journal_log = logging.getLogger("recoverkit.journal")
    quiet = _WithoutInvalidEvents()
    journal_log.addFilter(quiet)
    # What was imported and built before the replay lives as long as the command: frozen, the garbage collector's
    # full collections during the replay skip those ~26,000 objects (each full collection took 7 ms for them alone
    # on a 2-core VM; the longest pauses of a 500 k-event replay fell from 53-67 to 29-38 ms). Only the command
    # does this, for the length of the replay: the library never changes a shop's garbage collector.
    gc.freeze()
    try:
        with Ticker(err, "replay", progress.what, enabled=not args.no_progress):
            summary = anyio.run(
                lambda: replay(
                    source,
                    config=config,
                    out=args.out,
                    progress=progress.update,
                    store=getattr(args, "store", None),
                    resume=getattr(args, "resume", False),
                    on_invalid=_InvalidLines(err),
                    on_wait=on_wait,
                ),
                backend="asyncio",
                backend_options={"use_uvloop": _uvloop()},
            )
    except IncompleteReplay as exc:
        summary, failure = exc.summary, str(exc)  # the summary of what was read, then the error
    finally:
        gc.unfreeze()
        journal_log.removeFilter(quiet)
        progress.stop()
    named = isinstance(source, (str, Path)) and str(source) != "-"
    if failure is None:
        failure = _nothing_replayed(summary, str(source) if named else "<stdin>")
    if args.json:
        write_json(summary)
    else:
        _print_summary(summary, console)
    if failure is not None:
        err.error(failure)
        return 1
    return 0


def _nothing_replayed(summary: Any, name: str) -> str | None:
    """Why a replay that ran to its end decided nothing, if it did not."""
    if summary.lines == 0:
        return f"{name}: no events to replay (the input is empty)"
    if summary.accepted == 0:
        return f"{name}: none of its {summary.lines:,} event(s) is valid (the reasons are above)"
    if summary.processed == 0:
        return (
            f"nothing left to replay: the store's journal already held all {summary.resumed_after:,} valid "
            f"events of {name}, and they were decided on before; replay into a new --store to run it again"
        )
    return None


def _uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _print_summary(summary: Any, console: Out, cartless: int | None = None) -> None:
    """Print a replay's summary; ``cartless``, when known, is how many purchases had no cart before them."""
    console.print(
        f"[bold]{summary.events:,}[/] events ({summary.accepted:,} accepted, "
        f"{sum(summary.invalid.values()):,} invalid, {summary.late:,} late) "
        f"from {when(summary.first_event_at)} to {when(summary.last_event_at)} UTC, "
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


# -- demo, bench, convert -------------------------------------------------------------------------------------


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
            when(m.due_at)[5:16], status, m.cart.cart_key[:6], m.trigger.replace("inactivity", "idle"), m.reason,
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
    from .bench import STORES, parse_size, parse_sizes, print_report, run_bench, write_bench_events

    stores = [part.strip() for part in args.store_kind.split(",") if part.strip()]
    try:
        count = parse_size(args.count)
        sizes = parse_sizes(args.sizes) if args.sizes else None
    except ValueError as exc:
        err.error(str(exc))
        return 2
    problem = (
        "the event file is given twice, as EVENTS and as --events: give it once" if args.events and args.events_option
        else "--sessions and --sizes: give one of them" if args.sessions is not None and sizes
        else f"--store-kind {args.store_kind!r}: expected memory, or memory,sqlite" if not set(stores) <= set(STORES)
        else None
    )  # fmt: skip
    if problem is not None:
        err.error(problem)
        return 2
    if args.write_events:
        with Ticker(err, "bench", lambda: f"writing {count:,} events to {args.write_events}"):
            written = write_bench_events(args.write_events, count, mix=args.mix, seed=args.seed)
        console.print(f"wrote {written:,} events ({args.mix} mix) to {escape(args.write_events)}", soft_wrap=True)
        return 0
    config_from(args.config)  # a bad file is reported here, as by every command, not by the first replay
    ticker = Ticker(err, "bench")
    with ticker:
        report = run_bench(
            args.events or args.events_option, sizes=sizes, sessions=args.sessions, mix=args.mix, seed=args.seed,
            repeat=args.repeat, stores=stores, memory_carts=args.memory_carts, config=args.config,
            on_step=lambda text: setattr(ticker, "phase", text),
        )  # fmt: skip
    if args.json:
        write_json(report)
    else:
        print_report(report, console)
    return 0


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
