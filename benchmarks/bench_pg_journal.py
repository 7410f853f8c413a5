"""Journal appends on PostgreSQL: :class:`recoverkit.store.postgres.PostgresStore` against a bare psycopg COPY of
the same lines, per web process, measured in one run on this machine (issue 14's first figure).

What a web process does: it appends the events it accepted, in batches (one event per request with
``durability = "sync"``; a flush of what came in meanwhile with ``"batch"``). Each configuration runs ``--procs``
processes (1, then 2) that start together and each append ``--events`` synthetic events (about 300 bytes of JSON,
``--sessions`` session ids) in batches of ``--batch`` events:

- baseline: bare psycopg, one connection per process, into a table ``(id bigserial, part, data, accepted_at)``
  (the partition computed the same way): a batch of one event is one ``INSERT`` in autocommit mode, a larger
  batch one transaction that COPYs it in (binary). The fastest ways in: no per-partition counter, so no promise
  about gaps;
- the store: ``PostgresStore.append_keyed(batch, now=...)`` into a store of ``--partitions`` partitions: the same
  COPY, plus the per-partition counters locked and advanced in the same transaction (what keeps positions free
  of gaps under concurrent writers), through the connection pool and the store's plumbing.

Configurations alternate (baseline, store) ``--repeat`` times and the best run of each is kept. Figures: events/s
per process (the mean over the processes of events / that process's time) and store / baseline. Aim: ratio >=
0.5. Checks: every partition's positions run 1..head with no gap, and the store holds exactly the events sent.

The server: a throwaway cluster started here (tests/store/postgres_cluster.py: initdb in a temporary directory,
a Unix socket, ``fsync=off`` and ``synchronous_commit=off``: the figures are then CPU and round trips, not the
disk's fsync), or ``--url`` for one of yours (a new schema is made in it and dropped at the end). On a 2-core
machine the server shares the cores with the writers: 2 writer processes compete with it.

    python benchmarks/bench_pg_journal.py [--quick] [--json] [--url URL]
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import emit_json, machine, parser, print_header, quiet_logs, ratio, watchdog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "store"))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from recoverkit.store.postgres import PostgresStore, init, partition_of  # noqa: E402

SCHEMA = "bench_pg_journal"


def events(writer: int, count: int, sessions: int) -> list[tuple[str, bytes]]:
    out = []
    for n in range(count):
        session = f"sess-{writer}-{n % sessions}"
        data = (
            f'{{"event":"add_to_cart","session_id":"{session}","ts":{1_767_225_600 + n},"writer":{writer},'
            f'"n":{n},"item":{{"sku":"SKU-{n % 997:05d}","name":"Merino wool sweater, navy","qty":1,'
            f'"price":8900,"currency":"EUR"}},"page":"https://shop.example/p/sku-{n % 997}"}}'
        ).encode()
        out.append((session, data))
    return out


def _bare(url: str, batches: list[list[tuple[str, bytes]]], partitions: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(SCHEMA)))
        for batch in batches:
            if len(batch) == 1:  # one event: one INSERT, its own transaction (autocommit), the fastest way in
                session, data = batch[0]
                conn.execute(
                    "INSERT INTO bare (part, data, accepted_at) VALUES (%s, %s, %s)",
                    (partition_of(session, partitions), data, time.time()), binary=True,
                )  # fmt: skip
                continue
            with conn.transaction(), conn.cursor().copy(
                "COPY bare (part, data, accepted_at) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int4", "bytea", "float8"])
                now = time.time()
                for session, data in batch:
                    copy.write_row((partition_of(session, partitions), data, now))


def _store(url: str, batches: list[list[tuple[str, bytes]]], partitions: int) -> None:
    with PostgresStore(url, schema=SCHEMA, pool_size=1) as store:
        for batch in batches:
            store.append_keyed(batch, now=time.time())


def _worker(kind: str, url: str, writer: int, args: dict[str, Any], start: Any, out: Any) -> None:
    lines = events(writer, args["events"], args["sessions"])
    size = args["batch"]
    batches = [lines[i : i + size] for i in range(0, len(lines), size)]
    run = _bare if kind == "bare" else _store
    start.wait()
    began = time.perf_counter()
    run(url, batches, args["partitions"])
    out.put((writer, len(lines), time.perf_counter() - began))


def run_config(kind: str, url: str, procs: int, args: dict[str, Any]) -> float:
    """Events/s per process (mean over the processes) of one run of ``procs`` writers of ``kind``."""
    ctx = multiprocessing.get_context("spawn")  # each writer opens its own connections, after it starts
    start = ctx.Barrier(procs)
    out = ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(kind, url, w, args, start, out)) for w in range(procs)]
    for w in workers:
        w.start()
    results = [out.get(timeout=600) for _ in workers]
    for w in workers:
        w.join()
        if w.exitcode != 0:
            raise SystemExit(f"a {kind} writer failed (exit {w.exitcode})")
    return statistics.mean(count / seconds for _, count, seconds in results)


def reset(url: str, partitions: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    init(url, partitions=partitions, schema=SCHEMA)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {}.bare (id bigserial PRIMARY KEY, part integer NOT NULL, data bytea NOT NULL, "
                "accepted_at double precision NOT NULL)"
            ).format(sql.Identifier(SCHEMA))
        )


def verify(url: str, expected: int) -> list[str]:
    """Problems: a gap in a partition, or a count other than the events the store was sent."""
    with PostgresStore(url, schema=SCHEMA) as store:
        problems = store.check()
        held = sum(len(store.read_partition(p, 0, 10_000_000)) for p in range(store.partitions))
    if held != expected:
        problems.append(f"the store holds {held} events, {expected} were appended")
    return problems


def server_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def main() -> None:
    p = parser(__doc__ or "", timeout=1800)
    p.add_argument("--url", help="a PostgreSQL server of yours (default: a throwaway cluster started here)")
    p.add_argument("--events", type=int, help="events per process and run (default 20,000; 500 with --quick)")
    p.add_argument("--batch", type=int, action="append", help="events per append (default 1 and 64; repeatable)")
    p.add_argument("--procs", type=int, action="append", help="writer processes (default 1 and 2; repeatable)")
    p.add_argument("--partitions", type=int, default=64, help="the store's partitions (default 64)")
    p.add_argument("--sessions", type=int, default=500, help="session ids per writer (default 500)")
    p.add_argument("--repeat", type=int, help="runs of each configuration, best kept (default 3; 1 with --quick)")
    args = p.parse_args()
    quiet_logs()
    watchdog(args.timeout, "bench_pg_journal")
    count = args.events or (500 if args.quick else 20_000)
    repeat = args.repeat or (1 if args.quick else 3)
    batches = args.batch or [1, 64]
    procs_list = args.procs or [1, 2]

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
            postgresql=server_version(url), psycopg=psycopg.__version__, psycopg_impl=psycopg.pq.__impl__,
            server="throwaway cluster, Unix socket, fsync=off, synchronous_commit=off" if cluster else "--url",
            partitions=args.partitions, events_per_process=count, repeat=repeat,
        )  # fmt: skip
        rows: list[dict[str, Any]] = []
        problems: list[str] = []
        for batch in batches:
            for procs in procs_list:
                shared = {"events": count, "sessions": args.sessions, "batch": batch, "partitions": args.partitions}
                best = {"bare": 0.0, "store": 0.0}
                for _ in range(repeat):
                    for kind in ("bare", "store"):
                        reset(url, args.partitions)
                        best[kind] = max(best[kind], run_config(kind, url, procs, shared))
                        if kind == "store":
                            problems += verify(url, count * procs)
                rows.append({
                    "batch": batch, "processes": procs, "bare_events_per_s": best["bare"],
                    "store_events_per_s": best["store"], "ratio": ratio(best["store"], best["bare"]),
                })  # fmt: skip
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    finally:
        if cluster is not None:
            cluster.remove()

    if args.json:
        emit_json({"benchmark": "pg_journal", "machine": info, "results": rows, "problems": problems})
    else:
        print_header("recoverkit benchmark: journal appends on PostgreSQL, store against bare COPY", info)
        print(f"{'batch':>6} {'procs':>6} {'bare ev/s/proc':>15} {'store ev/s/proc':>16} {'store/bare':>11}")
        for row in rows:
            print(
                f"{row['batch']:>6} {row['processes']:>6} {row['bare_events_per_s']:>15,.0f} "
                f"{row['store_events_per_s']:>16,.0f} {row['ratio']:>11.2f}"
            )
        print()
        print("checks: " + ("every partition without a gap, every event kept" if not problems else "; ".join(problems)))
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
