"""``recoverkit bench``: replay throughput against baselines measured in the same run, at several input sizes.

Shared machines are noisy, so absolute events per second mean little from one run to the next. The figure that
counts is the **ratio** of the throughput of a replay to that of decoding the very same lines with msgspec alone,
**untyped** (``msgspec.json.Decoder()``, into dicts: the floor any JSON-lines reader pays). Typed decoding into
recoverkit's events (``Decoder(Event)``) is a second baseline row. Each measurement is made ``repeat`` times,
interleaved (decoding, then the replay, then again), and the best of each is kept.

**The replay measured is ``recoverkit replay FILE``** itself, with the default configuration (or ``config``), in
memory: the command runs in a child process of its own, so its peak resident memory (``ru_maxrss`` of that child)
is the whole replay's, interpreter and imports included, and nothing of the parent's. Its events per second are
the replay's own (``ReplaySummary.events_per_second``: reading the file through the last stage, interpreter start
left out); its per-stage busy time, divided by the events, gives microseconds per event per stage, and what is
left of the time per event is spent outside the stages (reading and decoding lines, journal, event loop). With
``stores=("memory", "sqlite")`` each run also replays into a new SQLite file (``--store``), for SQLite / memory.

**Sizes.** Synthetic input is the ``"browse"`` mix of :mod:`recoverkit.synthetic` (most events page views, most
carts abandoned, a few percent of sessions buy), written once at the largest size; each smaller size is the first
events of it, as is each size of a given ``events`` file. The **flat cost** figure is events per second at the
largest size divided by those at the smallest: 1.0 when the cost of an event does not grow with the input.

The decoding baselines read the lines in chunks and time only the decoding, so they need no more memory at 10 M
events than at 100 k; the replay's reading and decompression of the file are part of the replay's time. The report
also gives the latency of a batch from ingest to dispatch and the memory held per open cart (three items, measured
with ``tracemalloc`` at ``memory_carts`` open carts), and says what machine, load and versions produced it.
"""

from __future__ import annotations

import gc
import importlib.metadata
import os
import platform
import tempfile
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from ._bench_replay import SizeFigure, StageFigure, measure_size, write_prefix
from ._cli_output import Out, Table, as_out, escape
from .config import Config
from .events import AddToCart, Event, Item
from .sessionize import Sessionize
from .synthetic import Mix

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "STORES",
    "BenchReport",
    "SizeFigure",
    "StageFigure",
    "machine_info",
    "measure_cart_memory",
    "parse_size",
    "parse_sizes",
    "print_report",
    "run_bench",
    "write_bench_events",
]

#: Stores a run can replay into: in memory (the default) and a new SQLite file per run.
STORES = ("memory", "sqlite")


class BenchReport(msgspec.Struct, kw_only=True):
    """Figures of one ``bench`` run. The top-level figures are those of the largest size (``sizes[-1]``):
    ``ratio`` = pipeline / baseline events per second, the baseline being untyped decoding. ``flat_cost`` is the
    largest size's events per second over the smallest's (``None`` with one size)."""

    machine: dict[str, str]
    source: str
    events: int
    megabytes: float
    baseline_events_per_second: float
    typed_decode_events_per_second: float
    pipeline_events_per_second: float
    ratio: float
    typed_ratio: float
    peak_rss_mib: float
    runs: int
    stages: list[StageFigure]
    outside_stages_us_per_event: float
    pipeline_latency_p50_ms: float
    pipeline_latency_p99_ms: float
    abandonments: int
    messages: int
    sizes: list[SizeFigure]
    flat_cost: float | None
    stores: list[str]
    sqlite_vs_memory: float | None
    memory_carts: int
    memory_bytes_per_cart: float
    #: The load average when the run ended; ``machine["load average"]`` is the one when it started.
    load_average_after: str


def machine_info() -> dict[str, str]:
    """What the figures came from: CPU, cores, load average, OS, Python and the versions that matter."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "load average": load_average(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }
    for package in ("recoverkit", "msgspec", "anyio", "uvloop"):
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = "not installed"
    return info


def load_average() -> str:
    """The system's load average over 1, 5 and 15 minutes, as ``"0.39 0.66 1.04"`` (``"unknown"`` where the
    platform has none)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "unknown"


def parse_size(text: str) -> int:
    """``"100k"`` -> 100,000, ``"1M"`` -> 1,000,000, ``"2500"`` -> 2,500 (``_`` allowed; ``k``/``m`` any case).

    Raises :class:`ValueError` naming the text and what is expected.
    """
    raw = text.strip().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(raw[-1:].lower(), 1)
    digits = raw[:-1] if scale > 1 else raw
    try:
        value = float(digits) * scale
    except ValueError:
        value = -1.0
    if not digits or value < 1 or value != int(value) or value > 10**9:
        raise ValueError(f"size {text!r}; expected a whole number of events such as 2500, 100k or 1M")
    return int(value)


def parse_sizes(text: str) -> list[int]:
    """``"100k,1M,10M"`` -> ``[100000, 1000000, 10000000]``: sorted, each once (see :func:`parse_size`)."""
    sizes = sorted({parse_size(part) for part in text.split(",") if part.strip()})
    if not sizes:
        raise ValueError(f"sizes {text!r}; expected sizes separated by commas, such as 100k,1M")
    return sizes


def write_bench_events(path: str | os.PathLike[str], count: int, *, mix: Mix = "browse", seed: int = 0) -> int:
    """Write ``count`` synthetic events of ``mix`` to ``path`` (``.gz``: compressed) for ``recoverkit bench FILE``
    or a replay; :func:`recoverkit.synthetic.write_events`, as ``recoverkit bench --write-events`` runs it."""
    from .synthetic import write_events

    return write_events(path, count, mix=mix, seed=seed)


def _inputs(
    events: str | Path | None,
    sizes: Sequence[int] | None,
    sessions: int | None,
    mix: Mix,
    seed: int,
    workdir: Path,
) -> tuple[list[Path], str]:
    """The input file of each size, smallest first, and what they are, for the report's header."""
    if events is not None:
        source = Path(events)
        if not sizes:
            return [source], str(events)
        paths: list[Path] = []
        for size in sorted(sizes):
            target = workdir / f"input-{size}.jsonl"
            if write_prefix(source, target, size) < size:  # the file is shorter: it is the last size
                target.unlink()
                paths.append(source)
                break
            paths.append(target)
        return paths, f"{events}, the first {', '.join(f'{s:,}' for s in sorted(sizes))} events"
    if sessions is not None:
        from .datasets import write_jsonl
        from .synthetic import generate_events

        path = workdir / f"synthetic-{sessions}-sessions.jsonl"
        write_jsonl(generate_events(sessions, seed=seed, mix=mix), path)
        return [path], f"synthetic ({mix} mix): {sessions:,} sessions, seed {seed}"
    ordered = sorted(sizes or (100_000, 1_000_000))
    largest = workdir / f"synthetic-{ordered[-1]}.jsonl"
    write_bench_events(largest, ordered[-1], mix=mix, seed=seed)
    paths = []
    for size in ordered[:-1]:
        paths.append(workdir / f"synthetic-{size}.jsonl")
        write_prefix(largest, paths[-1], size)
    return [*paths, largest], f"synthetic ({mix} mix, seed {seed}): the first {len(ordered)} sizes of one stream"


def measure_cart_memory(carts: int = 100_000, items_per_cart: int = 3) -> float:
    """Bytes of memory the sessionizer holds per open cart, at ``carts`` open carts of ``items_per_cart``.

    Session ids are 36-character UUID-like strings as most shops use; products come from a 5,000-item
    catalogue, so product ids are shared between carts as they are in a real shop.
    """
    catalog = [
        Item(item_id=f"SKU-{n:06d}", price=Decimal(f"{(n % 400) + 1}.99"), quantity=1, name=f"Product {n}")
        for n in range(5000)
    ]
    stage = Sessionize(Config(max_sessions=carts * 2))
    out: list[Any] = []
    events: list[Event]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        chunk = 10_000
        for start in range(0, carts, chunk):
            events = [
                AddToCart(
                    session_id=f"{i:08x}-4f1c-4b7a-9c2e-{i * 7919 % 16**12:012x}",
                    ts=1_767_225_600.0 + i * 0.01,
                    currency="EUR",
                    items=tuple(catalog[(i * 31 + k * 977) % len(catalog)] for k in range(items_per_cart)),
                )
                for i in range(start, min(start + chunk, carts))
            ]
            stage.handle(events, out)
            del events
        out.clear()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    if stage.open_carts() != carts:
        raise RuntimeError(f"expected {carts} open carts, found {stage.open_carts()}")
    return (after - before) / carts


def run_bench(
    events: str | Path | None = None,
    *,
    sizes: Sequence[int] | None = None,
    sessions: int | None = None,
    mix: Mix = "browse",
    seed: int = 0,
    repeat: int = 3,
    stores: Iterable[str] = ("memory",),
    memory_carts: int = 100_000,
    config: str | Path | None = None,
    on_step: Callable[[str], None] | None = None,
) -> BenchReport:
    """Run the benchmark (see the module docs) and return its figures.

    Input: the ``events`` file (JSON lines, ``.gz`` or not; with ``sizes``, the first that many lines of it, each
    size in turn), else ``sessions`` synthetic sessions of ``mix``, else synthetic events of ``mix`` at each of
    ``sizes`` (default 100,000 and 1,000,000). ``stores``: ``"memory"`` always, ``"sqlite"`` too to compare.
    ``config``: a TOML configuration file for the replays (default: ``Config()``, as ``recoverkit replay``).
    ``on_step`` is told what is being measured, for progress lines.
    """
    chosen = list(dict.fromkeys(["memory", *stores]))
    unknown = [s for s in chosen if s not in STORES]
    if unknown:
        raise ValueError(f"stores {unknown!r}; expected {' and/or '.join(STORES)}")
    if sessions is not None and sizes:
        raise ValueError("sessions and sizes: give one of them (a number of sessions, or sizes in events)")
    repeat = max(repeat, 1)
    machine = machine_info() | {"event loop": "uvloop" if _uvloop() else "asyncio"}  # its load average: before
    step = on_step if on_step is not None else (lambda text: None)
    config_path = os.fspath(config) if config is not None else None
    with tempfile.TemporaryDirectory(prefix="recoverkit-bench-") as tmp:
        workdir = Path(tmp)
        step("writing the input")
        paths, source = _inputs(events, sizes, sessions, mix, seed, workdir)
        figures = []
        for path in paths:
            measure = _prefixed(step, path.name)
            figures.append(
                measure_size(path, repeat=repeat, stores=chosen, config=config_path, workdir=workdir, on_step=measure)
            )
    step("memory per cart")
    memory = measure_cart_memory(memory_carts) if memory_carts else 0.0
    top = figures[-1]
    own: dict[str, Any] = {
        "machine": machine,
        "source": source,
        "runs": repeat,
        "sizes": figures,
        "flat_cost": (
            top.pipeline_events_per_second / figures[0].pipeline_events_per_second
            if len(figures) > 1 and figures[0].pipeline_events_per_second
            else None
        ),
        "stores": chosen,
        "memory_carts": memory_carts,
        "memory_bytes_per_cart": memory,
        "load_average_after": load_average(),
    }
    # The other top-level figures are the largest size's: every field the two share, copied by name.
    shared = {f.name for f in msgspec.structs.fields(BenchReport)} & {f.name for f in msgspec.structs.fields(top)}
    return BenchReport(**own, **{name: getattr(top, name) for name in shared - own.keys()})


def _prefixed(step: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    return lambda text: step(f"{prefix}: {text}")


def _uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


# -- the report -----------------------------------------------------------------------------------------------


def print_report(report: BenchReport, console: Out | Console | None = None) -> None:
    """Print ``report`` on ``console`` (a rich console, or stdout by default): tables on a terminal, plain
    lines that are never wrapped elsewhere."""
    console = as_out(console)
    console.print(
        f"[bold]recoverkit bench[/] - {escape(report.source)}: up to {report.events:,} events, "
        f"{report.megabytes:.1f} MB; best of {report.runs}",
        soft_wrap=True,
    )
    console.print("machine: " + escape(", ".join(f"{k} {v}" for k, v in report.machine.items())), soft_wrap=True)
    console.print(f"load average at the start: {report.machine.get('load average')}, at the end: "
                  f"{report.load_average_after}", soft_wrap=True)  # fmt: skip
    _print_sizes(report, console)
    table = Table(title=f"stages at {report.events:,} events (best in-memory run)")
    for col in ("stage", "items", "batches", "busy s", "µs/event", "batch p50 ms", "batch p99 ms", "queue peak"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for s in report.stages:
        table.add_row(
            s.name, f"{s.received:,}", f"{s.batches:,}", f"{s.busy_seconds:.3f}", f"{s.us_per_event:.2f}",
            f"{s.batch_p50_ms:.3f}", f"{s.batch_p99_ms:.3f}", f"{s.queue_peak}/{s.queue_capacity}",
        )  # fmt: skip
    table.add_row("outside the stages", "", "", "", f"{report.outside_stages_us_per_event:.2f}", "", "", "")
    console.print(table)
    if report.flat_cost is not None:
        first = report.sizes[0]
        console.print(f"flat cost: events/s at {report.events:,} / at {first.events:,} events = {report.flat_cost:.3f}")
    console.print(
        f"batch latency ingest→dispatch: p50 {report.pipeline_latency_p50_ms:.2f} ms, "
        f"p99 {report.pipeline_latency_p99_ms:.2f} ms; abandonments {report.abandonments:,}, "
        f"messages {report.messages:,}"
    )
    if report.memory_carts:
        console.print(
            f"memory per open cart (3 items) at {report.memory_carts:,} open carts: "
            f"{report.memory_bytes_per_cart:,.0f} bytes"
        )


def _print_sizes(report: BenchReport, console: Out) -> None:
    sqlite = "sqlite" in report.stores
    table = Table(title="events per second (best run), in the same run")
    columns = ["events", "untyped decode", "typed decode", "replay", "replay / untyped", "replay / typed", "peak RSS"]
    if sqlite:
        columns += ["SQLite replay", "SQLite / memory", "SQLite peak RSS"]
    for col in columns:
        table.add_column(col, justify="right")
    for size in report.sizes:
        row = [
            f"{size.events:,}", f"{size.baseline_events_per_second:,.0f}",
            f"{size.typed_decode_events_per_second:,.0f}", f"{size.pipeline_events_per_second:,.0f}",
            f"{size.ratio:.3f}", f"{size.typed_ratio:.3f}", f"{size.peak_rss_mib:,.0f} MiB",
        ]  # fmt: skip
        if sqlite:
            row += [
                f"{size.sqlite_events_per_second or 0:,.0f}", f"{size.sqlite_vs_memory or 0:.3f}",
                f"{size.sqlite_peak_rss_mib or 0:,.0f} MiB",
            ]  # fmt: skip
        table.add_row(*row)
    console.print(table)
