"""``recoverkit bench``: the whole pipeline against a baseline measured in the same run.

Shared machines are noisy, so absolute events per second mean little from one run to the next. The figure
that counts is the **ratio** of end-to-end replay throughput (all five stages, event time, messages counted
by an in-memory adapter) to the throughput of decoding the very same bytes with msgspec alone. Each is
measured ``repeat`` times, interleaved, and the best run of each is kept.

The report also gives per-stage figures (share of busy time, batch latency, queue peaks), the latency of a
batch from ingest to dispatch, and the memory held per open cart (three items, measured with ``tracemalloc``
at ``memory_carts`` open carts), and says what machine and versions produced it.
"""

from __future__ import annotations

import gc
import importlib.metadata
import os
import platform
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from ._cli_output import Out, Table, as_out, escape
from .config import Config
from .events import AddToCart, Event, Item
from .replay import ReplaySummary, read_lines, replay
from .sessionize import Sessionize

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["BenchReport", "measure_cart_memory", "print_report", "run_bench"]


class StageFigure(msgspec.Struct, kw_only=True):
    name: str
    received: int
    batches: int
    busy_seconds: float
    batch_p50_ms: float
    batch_p99_ms: float
    queue_peak: int
    queue_capacity: int


class BenchReport(msgspec.Struct, kw_only=True):
    """Figures of one ``bench`` run; ``ratio`` = pipeline / baseline events per second."""

    machine: dict[str, str]
    source: str
    events: int
    megabytes: float
    baseline_events_per_second: float
    pipeline_events_per_second: float
    ratio: float
    runs: int
    stages: list[StageFigure]
    pipeline_latency_p50_ms: float
    pipeline_latency_p99_ms: float
    abandonments: int
    messages: int
    memory_carts: int
    memory_bytes_per_cart: float


def machine_info() -> dict[str, str]:
    """What the figures came from: CPU, cores, OS, Python and the versions that matter."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }
    for package in ("recoverkit", "msgspec", "anyio", "uvloop"):
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = "not installed"
    return info


def _uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _baseline(lines: list[bytes]) -> float:
    decode = msgspec.json.Decoder(Event).decode
    started = time.perf_counter()
    for line in lines:
        decode(line)
    return len(lines) / (time.perf_counter() - started)


class _Count:
    async def send(self, message: Any) -> None:
        return None


def _pipeline(lines: list[bytes], config: Config) -> tuple[float, ReplaySummary, Any]:
    used = {ch for f in config.flows for s in f.steps for ch in (s.channel, s.fallback) if ch}
    channels = {name: _Count() for name in used}
    started = time.perf_counter()
    summary = anyio.run(
        lambda: replay(lines, config=config, channels=channels),
        backend="asyncio",
        backend_options={"use_uvloop": _uvloop()},
    )
    return len(lines) / (time.perf_counter() - started), summary, summary.statistics


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
                    items=[catalog[(i * 31 + k * 977) % len(catalog)] for k in range(items_per_cart)],
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
    sessions: int = 50_000,
    seed: int = 0,
    repeat: int = 3,
    memory_carts: int = 100_000,
    config: Config | None = None,
) -> BenchReport:
    """Run the benchmark over ``events`` (a file) or ``sessions`` synthetic sessions; see the module docs."""
    config = config if config is not None else Config()
    if events is not None:
        lines = list(read_lines(events))
        source = str(events)
    else:
        from .synthetic import generate_jsonl

        lines = list(generate_jsonl(sessions, seed=seed))
        source = f"synthetic: {sessions:,} sessions, seed {seed}"
    baseline = 0.0
    best = 0.0
    best_summary: ReplaySummary | None = None
    for _ in range(max(repeat, 1)):
        baseline = max(baseline, _baseline(lines))
        rate, summary, _ = _pipeline(lines, config)
        if rate > best:
            best, best_summary = rate, summary
    assert best_summary is not None
    stats = best_summary.statistics
    stages = [
        StageFigure(
            name=s.name,
            received=s.received,
            batches=s.batches,
            busy_seconds=s.busy_seconds,
            batch_p50_ms=s.latency_p50 * 1e3,
            batch_p99_ms=s.latency_p99 * 1e3,
            queue_peak=s.queue_peak,
            queue_capacity=s.queue_capacity,
        )
        for s in stats.stages.values()
    ]
    dispatch = stats.stages["dispatch"].extra
    return BenchReport(
        machine=machine_info() | {"event loop": "uvloop" if _uvloop() else "asyncio"},
        source=source,
        events=len(lines),
        megabytes=sum(len(line) + 1 for line in lines) / 1e6,
        baseline_events_per_second=baseline,
        pipeline_events_per_second=best,
        ratio=best / baseline if baseline else 0.0,
        runs=max(repeat, 1),
        stages=stages,
        pipeline_latency_p50_ms=dispatch["pipeline_latency_p50"] * 1e3,
        pipeline_latency_p99_ms=dispatch["pipeline_latency_p99"] * 1e3,
        abandonments=sum(stats.abandonments.values()),
        messages=sum(best_summary.messages.values()),
        memory_carts=memory_carts,
        memory_bytes_per_cart=measure_cart_memory(memory_carts) if memory_carts else 0.0,
    )


def print_report(report: BenchReport, console: Out | Console | None = None) -> None:
    """Print ``report`` on ``console`` (a rich console, or stdout by default): tables on a terminal, plain
    lines that are never wrapped elsewhere."""
    console = as_out(console)
    console.print(
        f"[bold]recoverkit bench[/] - {escape(report.source)}: {report.events:,} events, {report.megabytes:.1f} MB",
        soft_wrap=True,
    )
    console.print("machine: " + escape(", ".join(f"{k} {v}" for k, v in report.machine.items())), soft_wrap=True)
    table = Table()
    table.add_column("measure")
    table.add_column("events/s", justify="right")
    table.add_column("vs baseline", justify="right")
    table.add_row("baseline: msgspec decode only", f"{report.baseline_events_per_second:,.0f}", "1.000")
    table.add_row(
        "pipeline: ingest→sessionize→score→route→dispatch",
        f"{report.pipeline_events_per_second:,.0f}",
        f"{report.ratio:.3f}",
    )
    console.print(table)
    table = Table(title="stages (best run)")
    for col in ("stage", "items", "batches", "busy s", "batch p50 ms", "batch p99 ms", "queue peak"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for s in report.stages:
        table.add_row(
            s.name, f"{s.received:,}", f"{s.batches:,}", f"{s.busy_seconds:.3f}", f"{s.batch_p50_ms:.3f}",
            f"{s.batch_p99_ms:.3f}", f"{s.queue_peak}/{s.queue_capacity}",
        )  # fmt: skip
    console.print(table)
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
