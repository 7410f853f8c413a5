"""The cost of durability: the SQLite store against memory (replay) and ``durability="sync"`` against
``"batch"`` (``track()`` latency), measured in one run on this machine.

**(a) Replay throughput.** The same synthetic events (``recoverkit.synthetic.generate_jsonl``) go through the
whole pipeline in event time, as ``recoverkit.replay`` runs it: ``Engine(Config(), channels=<counting
adapters>, clock=EventClock(), store=...)``, ``submit_many`` in chunks of 1,024 lines, then
``flush(end_of_input=True)``. The timed region runs from building the engine (opening the store) to the end
of ``async with`` (the final checkpoint written and the store closed). Three stores, interleaved ``--repeat``
times, best run of each kept:

- baseline: the in-memory store (the default, what ``recoverkit replay`` uses);
- a new SQLite file with ``synchronous = "normal"`` (survives a killed process);
- a new SQLite file with ``synchronous = "full"`` (also survives a power loss: one fsync per group commit).

With SQLite every ``submit_many`` chunk is one journal commit, every message one ledger claim and one finish
(group commits shared by the deliveries in flight), and a checkpoint is written every
``store.checkpoint_interval`` (30 s, so usually only the final one). Figures: events/s and SQLite / memory.
Target: ratio >= 0.5. As a check, every store must have sent the same number of messages.

**(b) ``track()`` latency with ``durability = "sync"``.** A :class:`recoverkit.BackgroundEngine` (wall clock,
``Config(store=StoreConfig(path=<new file>, ...))``, ``{"email": MemoryChannel()}``) and ``--threads`` (4)
request threads calling ``track()`` with pre-encoded synthetic events, each call timed on its own with
``time.perf_counter_ns()`` as ``bench_track.py`` does (an empty timed region is measured in the same loop and
its median subtracted). The configurations, one after another, in rotation ``--repeat`` times, samples pooled:

- baseline: ``durability = "batch"`` on SQLite (synchronous normal): ``track()`` appends to the inbox and
  returns; the engine journals the inbox every tick;
- ``durability = "sync"``, synchronous normal: ``track()`` validates the event and commits it to the journal
  before it returns (concurrent calls share group commits);
- ``durability = "sync"``, synchronous full: the same, with an fsync per group commit;
- ``durability = "sync"``, synchronous normal, in a worker that does not hold the pipeline lease (another
  owner holds it, as in every worker of a pre-forking server but one): journaling only, no pipeline;
- floors: ``SQLiteStore.append_events([event])`` alone from the same threads, without an engine, for each
  ``synchronous``: what the store's commit costs by itself.

There is no feeder thread: the engine's load is the events the request threads track (it runs the pipeline
over them meanwhile, in its own thread). Figures: p50, p99, p99.9 and max in microseconds, and sync / batch.
Target: p99 < 1 ms for sync + normal. Checks: every event tracked with ``True`` was accepted, none refused.

Reading it: fsync latency is the disk's (and, in a VM, the host's); ``--dir`` puts the files on another
filesystem. The tail of ``sync`` also holds what happens in the same process while a caller waits for its
commit: the engine's loop thread and the other request threads compete for the GIL and, on a small machine,
for the cores; compare the floor rows, which have neither engine nor pipeline.

``--quick`` (200 sessions, 400 samples per configuration, one round) is a smoke run of a few seconds; its
figures are indicative only. ``--timeout`` stops the script with a message (exit code 3) instead of hanging.
Run from the repository root:

    .venv/bin/python benchmarks/bench_durability.py                  # 20,000 sessions, 3 rounds
    .venv/bin/python benchmarks/bench_durability.py --quick
    .venv/bin/python benchmarks/bench_durability.py --sessions 30000 --repeat 5 --json
"""

from __future__ import annotations

import math
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import anyio
from _common import (
    bounded,
    emit_json,
    has_uvloop,
    machine,
    parser,
    percentiles,
    print_header,
    quiet_logs,
    ratio,
    run_threads,
    watchdog,
)

from recoverkit import BackgroundEngine, Config, Engine, EventClock, MemoryChannel, WallClock
from recoverkit.channels.base import Message
from recoverkit.config import StoreConfig
from recoverkit.store import PIPELINE_LEASE, SQLiteStore
from recoverkit.synthetic import generate_jsonl

RATIO_TARGET: Final = 0.5
P99_TARGET_US: Final = 1000.0
CHUNK_LINES: Final = 1024  # as recoverkit.replay submits
QS: Final = (50, 99, 99.9)
STORES: Final = ("memory", "sqlite-normal", "sqlite-full")
TRACK_CONFIGS: Final = ("batch", "sync-normal", "sync-full", "follower-normal", "floor-normal", "floor-full")
#: Seconds a step that should be quick (threads meeting at the start line, reading statistics, closing the
#: engine) may take, and seconds a phase's calls or its final flush may take, before the script gives up
#: with an error; ``--timeout`` bounds the whole run again.
STEP_TIMEOUT: Final = 10.0
RUN_TIMEOUT: Final = 300.0


# -- (a) replay throughput ---------------------------------------------------------------------------------


class _Count:
    """A channel adapter that only counts (as ``recoverkit bench`` uses)."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, message: Message) -> None:
        self.sent += 1


async def _replay_once(lines: list[bytes], store: str | None, synchronous: str) -> tuple[float, int, int]:
    """Seconds, messages sent and events accepted for one replay of ``lines`` into ``store`` (None: memory)."""
    config = Config(store=StoreConfig(synchronous=synchronous))  # type: ignore[arg-type]
    used = sorted({ch for f in config.flows for s in f.steps for ch in (s.channel, s.fallback) if ch})
    counter = _Count()
    started = time.perf_counter()
    engine = Engine(config, channels=dict.fromkeys(used, counter), clock=EventClock(), store=store)
    async with engine:
        for i in range(0, len(lines), CHUNK_LINES):
            await engine.submit_many(lines[i : i + CHUNK_LINES])
        await engine.flush(end_of_input=True)
        accepted = engine.statistics().events_accepted
    return time.perf_counter() - started, counter.sent, accepted


def run_replay(lines: list[bytes], *, repeat: int, directory: Path) -> dict[str, Any]:
    runs: dict[str, list[float]] = {name: [] for name in STORES}
    messages: dict[str, set[int]] = {name: set() for name in STORES}
    accepted: dict[str, set[int]] = {name: set() for name in STORES}
    for _ in range(repeat):
        for name in STORES:  # interleaved, so that a noisy moment hits every store alike
            with tempfile.TemporaryDirectory(dir=directory) as tmp:
                path = None if name == "memory" else str(Path(tmp) / "state.db")
                synchronous = name.rpartition("-")[2] if path else "normal"
                seconds, sent, ok = anyio.run(
                    _replay_once, lines, path, synchronous, backend="asyncio",
                    backend_options={"use_uvloop": has_uvloop()},
                )  # fmt: skip
            runs[name].append(len(lines) / seconds)
            messages[name].add(sent)
            accepted[name].add(ok)
    best = {name: max(rates) for name, rates in runs.items()}
    all_messages = set().union(*messages.values())
    all_accepted = set().union(*accepted.values())
    return {
        "events": len(lines),
        "events_per_second": best,
        "runs_events_per_second": runs,
        "ratios": {
            "sqlite_normal_vs_memory": ratio(best["sqlite-normal"], best["memory"]),
            "sqlite_full_vs_memory": ratio(best["sqlite-full"], best["memory"]),
        },
        "messages": sorted(all_messages),
        "accepted": sorted(all_accepted),
        "same_decisions": len(all_messages) == 1 and len(all_accepted) == 1,
    }


# -- (b) track() latency -----------------------------------------------------------------------------------


def _time_calls(
    call: Callable[[bytes], bool], events: list[bytes], *, threads: int, per_thread: int, rate: float = 0.0
) -> tuple[list[int], list[int], int, float]:
    """Time ``call(event)`` from ``threads`` threads: (empty-region ns, call ns, calls returning False, s).

    ``rate`` > 0 paces the threads to that many calls per second in total (each on its own fixed schedule, as
    requests arrive); 0 calls as fast as possible, which saturates the machine.
    """
    period = threads / rate if rate > 0 else 0.0
    results: list[tuple[array[int], array[int], int]] = [(array("q"), array("q"), 0)] * threads
    start_line = threading.Barrier(threads + 1, timeout=STEP_TIMEOUT)

    def request(k: int) -> None:
        ns = time.perf_counter_ns
        empty = array("q", bytes(8 * per_thread))
        timed = array("q", bytes(8 * per_thread))
        m = len(events)
        j = (k * m) // threads  # each thread its own stretch of the events
        refused = 0
        start_line.wait()
        begun = time.perf_counter()
        for i in range(per_thread):
            if period:
                wait = begun + i * period - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            event = events[j]
            j = j + 1 if j + 1 < m else 0
            t0 = ns()
            t1 = ns()
            empty[i] = t1 - t0
            t0 = ns()
            ok = call(event)
            t1 = ns()
            timed[i] = t1 - t0
            if not ok:
                refused += 1
        results[k] = (empty, timed, refused)

    window = run_threads(request, threads, start_line, seconds=RUN_TIMEOUT, what=f"{per_thread:,} calls")
    if any(not r[1] for r in results):
        raise RuntimeError("a request thread failed (see the traceback above); no figures")
    empty_ns = [s for r in results for s in r[0]]
    call_ns = [s for r in results for s in r[1]]
    return empty_ns, call_ns, sum(r[2] for r in results), window


def _track_phase(
    name: str, events: list[bytes], *, threads: int, per_thread: int, directory: Path, rate: float = 0.0
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        path = str(Path(tmp) / "state.db")
        kind, _, synchronous = name.partition("-")
        if kind == "floor":
            store = SQLiteStore(path, synchronous=synchronous)  # type: ignore[arg-type]

            def append(event: bytes) -> bool:
                store.append_events([event], now=time.time())
                return True

            try:
                empty, samples, refused, window = _time_calls(
                    append, events, threads=threads, per_thread=per_thread, rate=rate
                )
            finally:
                store.close()
            return {"empty": empty, "samples": samples, "refused": refused, "seconds": window, "accepted": None}
        durability = "batch" if kind == "batch" else "sync"
        if kind == "follower":
            with SQLiteStore(path) as other:  # someone else runs the pipeline: this engine only journals
                other.acquire_lease(PIPELINE_LEASE, "bench-other-worker", ttl=3600.0, now=time.time())
        config = Config(
            store=StoreConfig(path=path, durability=durability, synchronous=synchronous or "normal")  # type: ignore[arg-type]
        )
        bg = BackgroundEngine(config, clock=WallClock(), channels={"email": MemoryChannel()}, close_at_exit=False)
        bg.start()
        try:
            empty, samples, refused, window = _time_calls(
                bg.track, events, threads=threads, per_thread=per_thread, rate=rate
            )
            bounded(bg.flush, RUN_TIMEOUT, f"{name}: BackgroundEngine.flush()")
            stats = bounded(bg.statistics, STEP_TIMEOUT, f"{name}: BackgroundEngine.statistics()")
            if stats.owner != (kind != "follower"):
                raise RuntimeError(
                    f"{name}: expected the engine {'not ' if kind == 'follower' else ''}to own the pipeline"
                )
        finally:
            bg.close(timeout=STEP_TIMEOUT)
        tracked = threads * per_thread - refused
        invalid = sum(stats.events_invalid.values())
        return {
            "empty": empty,
            "samples": samples,
            "refused": refused,
            "seconds": window,
            "accepted": stats.events_accepted,
            "all_accepted": stats.events_accepted + invalid == tracked and stats.events_overflow == 0,
        }


def run_track(
    events: list[bytes], *, threads: int, samples: int, repeat: int, directory: Path, rate: float = 0.0
) -> dict[str, Any]:
    per_thread = max(samples // threads, 1)
    pooled: dict[str, dict[str, Any]] = {
        name: {"empty": [], "samples": [], "refused": 0, "seconds": 0.0, "all_accepted": True, "calls": 0}
        for name in TRACK_CONFIGS
    }
    for _ in range(repeat):
        for name in TRACK_CONFIGS:
            phase = _track_phase(name, events, threads=threads, per_thread=per_thread, directory=directory, rate=rate)
            pool = pooled[name]
            pool["empty"] += phase["empty"]
            pool["samples"] += phase["samples"]
            pool["refused"] += phase["refused"]
            pool["seconds"] += phase["seconds"]
            pool["calls"] += threads * per_thread
            pool["all_accepted"] = pool["all_accepted"] and phase.get("all_accepted", True)
    figures: dict[str, dict[str, float]] = {}
    checks: dict[str, dict[str, Any]] = {}
    overhead: dict[str, float] = {}
    for name, pool in pooled.items():
        overhead[name] = statistics.median(pool["empty"])
        adjusted = [max(s - overhead[name], 0) for s in pool["samples"]]
        figures[name] = {k: v / 1000.0 for k, v in percentiles(adjusted, QS).items()}  # ns -> us
        checks[name] = {
            "calls": pool["calls"],
            "refused": pool["refused"],
            "calls_per_second": pool["calls"] / pool["seconds"] if pool["seconds"] else math.nan,
            "all_accepted": pool["all_accepted"],
        }
    batch = figures["batch"]
    return {
        "settings": {
            "request_threads": threads,
            "rate_per_second": rate,
            "samples_per_configuration": per_thread * threads * repeat,
            "rounds": repeat,
            "switch_interval_s": sys.getswitchinterval(),
        },
        "timer_overhead_ns": overhead,
        "latency_us": figures,
        "ratios_vs_batch": {
            name: {"p50": ratio(figures[name]["p50"], batch["p50"]), "p99": ratio(figures[name]["p99"], batch["p99"])}
            for name in ("sync-normal", "sync-full", "follower-normal")
        },
        "checks": checks,
    }


# -- the script ---------------------------------------------------------------------------------------------


def report(doc: dict[str, Any]) -> None:
    s = doc["settings"]
    if "replay" in doc:
        r = doc["replay"]
        print(f"(a) replay throughput, event time: {r['events']:,} events ({s['sessions']:,} synthetic sessions), "
              f"{s['repeat']} interleaved run(s) of each store, best kept")  # fmt: skip
        header = f"{'store':<34}{'events/s':>12}{'vs memory':>12}   runs (events/s)"
        print(header)
        print("-" * len(header))
        labels = {
            "memory": "baseline: in memory",
            "sqlite-normal": "SQLite, synchronous normal",
            "sqlite-full": "SQLite, synchronous full",
        }
        for name, label in labels.items():
            rate = r["events_per_second"][name]
            runs = ", ".join(f"{x:,.0f}" for x in r["runs_events_per_second"][name])
            print(f"{label:<34}{rate:>12,.0f}{ratio(rate, r['events_per_second']['memory']):>12.3f}   {runs}")
        same = "yes" if r["same_decisions"] else "NO"
        print(f"same messages and accepted events with every store: {same} "
              f"(messages {r['messages']}, accepted {r['accepted']})")  # fmt: skip
        for name, key in (("normal", "sqlite_normal_vs_memory"), ("full", "sqlite_full_vs_memory")):
            value = r["ratios"][key]
            verdict = "met" if value >= RATIO_TARGET else "NOT met"
            print(f"target: SQLite ({name}) / memory >= {RATIO_TARGET}: {value:.3f} - {verdict}")
        print()
    if "track" in doc:
        t = doc["track"]
        ts = t["settings"]
        pace = f"paced at {ts['rate_per_second']:,.0f} calls/s" if ts.get("rate_per_second") else "as fast as they can"
        print(f"(b) track() latency from {ts['request_threads']} request threads ({pace}), "
              f"{ts['samples_per_configuration']:,} samples per configuration over {ts['rounds']} round(s); "
              f"GIL switch interval {ts['switch_interval_s'] * 1e3:g} ms; timer overhead subtracted")  # fmt: skip
        header = f"{'configuration':<44}" + "".join(f"{h:>11}" for h in ("p50", "p99", "p99.9", "max")) + "   (us)"
        print(header)
        print("-" * len(header))
        labels = {
            "batch": "baseline: durability batch (SQLite normal)",
            "sync-normal": "durability sync, synchronous normal",
            "sync-full": "durability sync, synchronous full",
            "follower-normal": "sync, normal, worker without the lease",
            "floor-normal": "floor: store.append_events, normal",
            "floor-full": "floor: store.append_events, full",
        }
        for name, label in labels.items():
            f = t["latency_us"][name]
            print(f"{label:<44}" + "".join(f"{f[k]:>11.1f}" for k in ("p50", "p99", "p99.9", "max")))
        for name in ("sync-normal", "sync-full", "follower-normal"):
            r = t["ratios_vs_batch"][name]
            print(f"{name} / batch: p50 {r['p50']:,.0f}x, p99 {r['p99']:,.0f}x")
        bad = [name for name, c in t["checks"].items() if c["refused"] or not c["all_accepted"]]
        print(
            "every event tracked was accepted, none refused: "
            + ("yes" if not bad else f"NO ({', '.join(bad)}; see --json checks)")
        )
        p99 = t["latency_us"]["sync-normal"]["p99"]
        verdict = "met" if p99 < P99_TARGET_US else "NOT met"
        print(f"target: track() p99 < {P99_TARGET_US / 1000:g} ms with sync + normal: {p99:,.1f} us - {verdict}")


def _filesystem(path: Path) -> str:
    """The filesystem type holding ``path`` (from /proc/mounts), for the machine header."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    resolved = str(path.resolve())
    best, kind = "", "unknown"
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and resolved.startswith(parts[1]) and len(parts[1]) > len(best):
            best, kind = parts[1], parts[2]
    return f"{kind} on {best}" if best else kind


def main() -> None:
    p = parser(__doc__.split("\n\n")[0], timeout=600.0)
    p.add_argument("--sessions", type=int, help="synthetic sessions (default 20,000; 200 with --quick)")
    p.add_argument("--repeat", type=int, help="runs / rounds of each configuration (default 3; 1 with --quick)")
    p.add_argument(
        "--samples", type=int, help="track() samples per configuration and round (default 10,000; 400 with --quick)"
    )
    p.add_argument("--threads", type=int, default=4, help="request threads for track() (default 4)")
    p.add_argument("--only", choices=("replay", "track"), help="run one part only")
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="track() calls per second from all threads together (default 0: as fast as possible, saturating)",
    )
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the SQLite files go")
    args = p.parse_args()
    quiet_logs()
    watchdog(args.timeout, "bench_durability")
    sessions = args.sessions if args.sessions is not None else (200 if args.quick else 20_000)
    repeat = max(args.repeat if args.repeat is not None else (1 if args.quick else 3), 1)
    samples = args.samples if args.samples is not None else (400 if args.quick else 10_000)
    info = machine(
        event_loop="uvloop" if has_uvloop() else "asyncio",
        sqlite=sqlite3.sqlite_version,
        files=_filesystem(args.dir),
    )
    doc: dict[str, Any] = {
        "machine": info,
        "settings": {
            "sessions": sessions,
            "repeat": repeat,
            "samples": samples,
            "threads": args.threads,
            "rate": args.rate,
        },
    }
    if args.only in (None, "replay"):
        lines = list(generate_jsonl(sessions, seed=0))
        doc["replay"] = run_replay(lines, repeat=repeat, directory=args.dir)
    if args.only in (None, "track"):
        # Live events (from now on), as a shop would send them; enough that no thread repeats one.
        events = list(generate_jsonl(max(sessions // 4, 200 if args.quick else 1_000), seed=1, start=time.time()))
        doc["track"] = run_track(
            events, threads=args.threads, samples=samples, repeat=repeat, directory=args.dir, rate=args.rate
        )
    targets: dict[str, Any] = {"replay_ratio": RATIO_TARGET, "track_sync_normal_p99_us": P99_TARGET_US}
    if "replay" in doc:
        targets["replay_ratio_met"] = {k: v >= RATIO_TARGET for k, v in doc["replay"]["ratios"].items()}
    if "track" in doc:
        targets["track_p99_met"] = doc["track"]["latency_us"]["sync-normal"]["p99"] < P99_TARGET_US
    doc["targets"] = targets
    if args.json:
        emit_json(doc)
        return
    print_header("recoverkit benchmark: the cost of durability (SQLite store, sync track)", info)
    report(doc)


if __name__ == "__main__":
    main()
