"""``track()`` latency with ``durability = "sync"`` on PostgreSQL, against SQLite, memory and a bare psycopg
``INSERT`` per event, from 1 and 4 request threads, measured in one run on this machine (issue 14's fourth figure).

A :class:`recoverkit.BackgroundEngine` (wall clock, ``Config(store=StoreConfig(durability="sync"))``,
``{"email": MemoryChannel()}``) takes pre-encoded live synthetic events from ``--threads`` request threads (1,
then 4), each call timed on its own with ``time.perf_counter_ns()`` as ``bench_durability.py`` times it (its
``_time_calls``: an empty timed region is measured in the same loop and its median subtracted). With ``"sync"``,
``track()`` validates the event and commits it to the journal before it returns; concurrent calls share a
commit. Stores:

- memory (the baseline for what the engine itself costs a sync call);
- a new SQLite file, ``synchronous = "normal"``;
- PostgreSQL: a store of one partition made by ``recoverkit.store.postgres.init`` in a fresh schema (the default
  pool of 4 connections);
- floor: bare psycopg, one autocommit ``INSERT`` of the event into a plain table per call, one connection per
  request thread, without an engine: the round trip and commit any synchronous write to this server costs.

The configurations run one after another, rotated ``--repeat`` times, samples pooled. Figures: p50, p99, p99.9
and max in microseconds; PostgreSQL's p99 as a ratio to memory, SQLite and the floor. Checks: every event tracked
was accepted, none refused, and the engine held the pipeline lease.

The server: a throwaway cluster started here (tests/store/postgres_cluster.py: a Unix socket, ``fsync=off``,
``synchronous_commit=off``: round trips and CPU, not the disk's fsync), or ``--url`` for one of yours (schemas
``bench_pg_track`` and ``bench_pg_track_floor`` are made in it and dropped). As fast as they can, four threads
saturate a 2-core machine (the server's backends compete with the engine for the cores); ``--rate`` paces them.
Run from the repository root:

    .venv/bin/python benchmarks/bench_pg_track.py              # 4,000 samples per configuration, 2 rounds
    .venv/bin/python benchmarks/bench_pg_track.py --quick      # 200 samples, one round: indicative only
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

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
    watchdog,
)
from bench_durability import _time_calls as time_calls

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "store"))

import psycopg
from psycopg import sql

from recoverkit import BackgroundEngine, Config, MemoryChannel, WallClock
from recoverkit.config import StoreConfig
from recoverkit.store.postgres import PostgresStore, init
from recoverkit.synthetic import generate_jsonl

SCHEMA: Final = "bench_pg_track"
FLOOR_SCHEMA: Final = "bench_pg_track_floor"
CONFIGS: Final = ("memory", "sqlite", "postgres", "floor")
QS: Final = (50, 99, 99.9)
STEP_TIMEOUT: Final = 10.0
RUN_TIMEOUT: Final = 300.0


def _drop(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def _floor(url: str, threads: int) -> Iterator[Callable[[bytes], bool]]:
    """A call that INSERTs one event over the calling thread's own connection (autocommit), opened beforehand."""
    _drop(url, FLOOR_SCHEMA)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(FLOOR_SCHEMA)))
        conn.execute(
            sql.SQL("CREATE TABLE {}.bare (id bigserial PRIMARY KEY, data bytea NOT NULL)").format(
                sql.Identifier(FLOOR_SCHEMA)
            )
        )
    local = threading.local()
    connections = [psycopg.connect(url, autocommit=True) for _ in range(threads)]
    free = list(connections)
    statement = sql.SQL("INSERT INTO {}.bare (data) VALUES (%s)").format(sql.Identifier(FLOOR_SCHEMA))

    def insert(event: bytes) -> bool:
        conn = getattr(local, "conn", None)
        if conn is None:  # the thread's first call: one of the connections opened before the timing began
            conn = local.conn = free.pop()
        conn.execute(statement, (event,), binary=True)
        return True

    try:
        yield insert
    finally:
        for conn in connections:
            conn.close()


@contextmanager
def _engine(kind: str, url: str, directory: Path) -> Iterator[tuple[BackgroundEngine, Any]]:
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        store: Any = None
        if kind == "sqlite":
            store = str(Path(tmp) / "state.db")
        elif kind == "postgres":
            _drop(url, SCHEMA)
            init(url, partitions=1, schema=SCHEMA)
            store = PostgresStore(url, schema=SCHEMA)
        config = Config(store=StoreConfig(durability="sync"))
        bg = BackgroundEngine(
            config, clock=WallClock(), channels={"email": MemoryChannel()}, store=store, close_at_exit=False
        )
        try:
            bg.start()
            yield bg, store
        finally:
            bg.close(timeout=STEP_TIMEOUT)
            if isinstance(store, PostgresStore):
                store.close()


def phase(kind: str, events: list[bytes], *, threads: int, per_thread: int, url: str, directory: Path,
          rate: float) -> dict[str, Any]:  # fmt: skip
    if kind == "floor":
        with _floor(url, threads) as insert:
            empty, samples, refused, window = time_calls(
                insert, events, threads=threads, per_thread=per_thread, rate=rate
            )
        return {"empty": empty, "samples": samples, "refused": refused, "seconds": window, "all_accepted": True}
    with _engine(kind, url, directory) as (bg, _):
        empty, samples, refused, window = time_calls(
            bg.track, events, threads=threads, per_thread=per_thread, rate=rate
        )
        bounded(bg.flush, RUN_TIMEOUT, f"{kind}: BackgroundEngine.flush()")
        stats = bounded(bg.statistics, STEP_TIMEOUT, f"{kind}: BackgroundEngine.statistics()")
    tracked = threads * per_thread - refused
    invalid = sum(stats.events_invalid.values())
    return {
        "empty": empty,
        "samples": samples,
        "refused": refused,
        "seconds": window,
        "all_accepted": stats.events_accepted + invalid == tracked and stats.events_overflow == 0 and stats.owner,
    }


def run(events: list[bytes], *, thread_counts: list[int], samples: int, repeat: int, url: str, directory: Path,
        rate: float) -> dict[str, Any]:  # fmt: skip
    rows: list[dict[str, Any]] = []
    for threads in thread_counts:
        per_thread = max(samples // threads, 1)
        pooled: dict[str, dict[str, Any]] = {
            kind: {"empty": [], "samples": [], "refused": 0, "seconds": 0.0, "all_accepted": True} for kind in CONFIGS
        }
        for _ in range(repeat):
            for kind in CONFIGS:
                result = phase(
                    kind, events, threads=threads, per_thread=per_thread, url=url, directory=directory, rate=rate
                )
                pool = pooled[kind]
                for key in ("empty", "samples"):
                    pool[key] += result[key]
                pool["refused"] += result["refused"]
                pool["seconds"] += result["seconds"]
                pool["all_accepted"] = pool["all_accepted"] and result["all_accepted"]
        latency: dict[str, dict[str, float]] = {}
        checks: dict[str, dict[str, Any]] = {}
        for kind, pool in pooled.items():
            overhead = statistics.median(pool["empty"])
            adjusted = [max(s - overhead, 0) for s in pool["samples"]]
            latency[kind] = {k: v / 1000.0 for k, v in percentiles(adjusted, QS).items()}  # ns -> us
            checks[kind] = {
                "calls": len(pool["samples"]),
                "refused": pool["refused"],
                "calls_per_second": len(pool["samples"]) / pool["seconds"] if pool["seconds"] else float("nan"),
                "all_accepted": pool["all_accepted"],
            }
        pg = latency["postgres"]["p99"]
        rows.append({
            "threads": threads,
            "samples_per_configuration": per_thread * threads * repeat,
            "latency_us": latency,
            "postgres_p99_vs": {k: ratio(pg, latency[k]["p99"]) for k in ("memory", "sqlite", "floor")},
            "checks": checks,
        })  # fmt: skip
    return {"rows": rows}


def server_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def report(doc: dict[str, Any]) -> None:
    s = doc["settings"]
    pace = f"paced at {s['rate']:,.0f} calls/s" if s["rate"] else "as fast as they can"
    print(f"track() with durability sync, {pace}; timer overhead subtracted; {s['repeat']} round(s)")
    labels = {
        "memory": "baseline: memory store",
        "sqlite": "SQLite, synchronous normal",
        "postgres": "PostgreSQL, 1 partition",
        "floor": "floor: bare psycopg INSERT (no engine)",
    }
    for row in doc["results"]["rows"]:
        print()
        print(f"{row['threads']} request thread(s), {row['samples_per_configuration']:,} samples per configuration")
        header = f"{'configuration':<40}" + "".join(f"{h:>11}" for h in ("p50", "p99", "p99.9", "max")) + "   (us)"
        print(header)
        print("-" * len(header))
        for kind, label in labels.items():
            f = row["latency_us"][kind]
            print(f"{label:<40}" + "".join(f"{f[k]:>11.1f}" for k in ("p50", "p99", "p99.9", "max")))
        v = row["postgres_p99_vs"]
        print(
            f"PostgreSQL p99 / memory {v['memory']:.1f}x, / SQLite {v['sqlite']:.1f}x, / bare INSERT {v['floor']:.2f}x"
        )
    bad = [f"{r['threads']} threads: {k}" for r in doc["results"]["rows"] for k, c in r["checks"].items()
           if c["refused"] or not c["all_accepted"]]  # fmt: skip
    print("checks: " + ("every event tracked was accepted, none refused" if not bad else "FAILED " + ", ".join(bad)))


def main() -> None:
    p = parser(__doc__.split("\n\n")[0], timeout=900.0)
    p.add_argument("--url", help="a PostgreSQL server of yours (default: a throwaway cluster started here)")
    p.add_argument("--threads", default="1,4", help="request thread counts, comma-separated (default 1,4)")
    p.add_argument("--samples", type=int, help="samples per configuration and round (default 4,000; 200 with --quick)")
    p.add_argument("--repeat", type=int, help="rounds (default 2; 1 with --quick)")
    p.add_argument("--rate", type=float, default=0.0, help="calls per second from all threads (default 0: unpaced)")
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the SQLite files go")
    args = p.parse_args()
    quiet_logs()
    watchdog(args.timeout, "bench_pg_track")
    thread_counts = [int(n) for n in args.threads.split(",")]
    samples = args.samples if args.samples is not None else (200 if args.quick else 4_000)
    repeat = max(args.repeat if args.repeat is not None else (1 if args.quick else 2), 1)
    # Live events (from now on), as a shop would send them; enough that no thread repeats one.
    events = list(generate_jsonl(200 if args.quick else 1_000, seed=1, start=time.time()))

    cluster = None
    url = args.url
    if url is None:
        from postgres_cluster import Cluster

        cluster = Cluster()
        cluster.init()
        cluster.start()
        url = cluster.url()
    try:
        info = machine(
            event_loop="uvloop" if has_uvloop() else "asyncio", sqlite=sqlite3.sqlite_version,
            postgresql=server_version(url), psycopg=psycopg.__version__, psycopg_impl=psycopg.pq.__impl__,
            server="throwaway cluster, Unix socket, fsync=off, synchronous_commit=off" if cluster else "--url",
            switch_interval_s=sys.getswitchinterval(),
        )  # fmt: skip
        results = run(
            events, thread_counts=thread_counts, samples=samples, repeat=repeat, url=url, directory=args.dir,
            rate=args.rate,
        )  # fmt: skip
        for schema in (SCHEMA, FLOOR_SCHEMA):
            _drop(url, schema)
    finally:
        if cluster is not None:
            cluster.remove()
    doc = {
        "benchmark": "pg_track",
        "machine": info,
        "settings": {"threads": thread_counts, "samples": samples, "repeat": repeat, "rate": args.rate},
        "results": results,
    }
    failed = [c for r in results["rows"] for c in r["checks"].values() if c["refused"] or not c["all_accepted"]]
    if args.json:
        emit_json(doc)
    else:
        print_header("recoverkit benchmark: track() with sync durability on PostgreSQL, SQLite and memory", info)
        report(doc)
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
