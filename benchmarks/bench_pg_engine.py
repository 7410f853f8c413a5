"""Engine throughput per process on PostgreSQL, against SQLite, memory and a bare psycopg insert-and-read-back
of the same lines, measured in one run on this machine (issue 14's second figure).

The same synthetic events (``recoverkit.synthetic.generate_jsonl``, ``--sessions`` sessions) go through the whole
pipeline in event time (``Engine(Config(), channels=<counting adapters>, clock=EventClock(), store=...)``), two
ways:

- replay-style, as ``recoverkit.replay`` runs it: ``submit_many`` in chunks of 1,024 lines (one journal commit
  each), then ``flush(end_of_input=True)``;
- live-style: one request thread calls ``engine.track(line)`` for every line (``durability = "batch"``: the
  engine journals its inbox every tick, or the ``track()`` call that finds the inbox full journals it), then
  ``flush(end_of_input=True)``.

Each into three stores: the in-memory store, a new SQLite file (``synchronous = "normal"``), and a PostgreSQL
store of one partition made by ``recoverkit.store.postgres.init`` in a fresh schema (``--partitions`` to choose
another count: with more than one, the partitioned engine runs a pipeline per partition, all in this process). The
timed region runs from opening the store to the end of ``async with`` (the final checkpoint written), as
``bench_durability.py`` times it.

**Baseline** (same run, same lines): bare psycopg, one connection, into a plain table ``(id bigserial, data
bytea)``: the lines COPYed in (binary) in transactions of 1,024 lines, then read back in ``id`` order through a
server-side cursor (1,024 rows a fetch). That is the least any engine on PostgreSQL must do with the events
(journal them, read them back), without numbering per partition, pipeline, ledger or checkpoints.

The configurations alternate (bare, then each store and style) ``--repeat`` times; the best run of each is kept.
Figures: events/s and ratios: PostgreSQL / bare (aim: >= 0.5), PostgreSQL / SQLite, PostgreSQL / memory. Checks:
every configuration accepted the same events and sent the same number of messages, and the bare table gave back
every line.

**Scaling out** (the partitioned engine): ``--engine-processes`` (1, then 2) engine processes over one store of
``--scale-partitions`` (8) partitions. The processes start, join as members and share the partitions out (each
waits until every process is a member and holds its share; not timed); then, released together, each
``submit_many``s the same synthetic lines' sessions that fall in the partitions it owns (as a load balancer
routing by partition would: no process journals into another's partitions, except what the journal mirrors into
every partition, a customer's consent and address, purchases); once every process's input is in, each flushes
with ``end_of_input=True``; all close together at the end. Figure: events / the slowest process's seconds, and
its ratio to one process (the baseline, same run); per-process events/s too. Checks: the partitions were shared
out once each and did not move, no message key reached an adapter twice across the processes, no ledger entry
left ``sending`` or ``unknown``, the store's ``check()`` is clean. Reported, not a check (issue 14 wants them
equal; the engine decides): whether each run sent the same message keys as the first run of one process, and
how many keys differ.

The server: a throwaway cluster started here (tests/store/postgres_cluster.py: initdb in a temporary directory, a
Unix socket, ``fsync=off``, ``synchronous_commit=off``: CPU and round trips, not the disk), or ``--url`` for one of
yours (schemas ``bench_pg_engine``, ``bench_pg_engine_bare`` and ``bench_pg_engine_scale`` are made in it and
dropped at the end). On a 2-core machine the server shares the cores with the engine(s). Run from the repository
root:

    .venv/bin/python benchmarks/bench_pg_engine.py              # 5,000 sessions (~30,000 events), 3 rounds
    .venv/bin/python benchmarks/bench_pg_engine.py --only scale # 1 and 2 engine processes, 8 partitions
    .venv/bin/python benchmarks/bench_pg_engine.py --quick      # 200 sessions, one round: indicative only
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import msgspec
from _common import emit_json, has_uvloop, machine, parser, print_header, quiet_logs, ratio, watchdog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "store"))

import psycopg
from psycopg import sql

from recoverkit import Config, Engine, EventClock
from recoverkit.channels.base import Message
from recoverkit.store.postgres import PostgresStore, init
from recoverkit.synthetic import generate_jsonl

SCHEMA: Final = "bench_pg_engine"
BARE_SCHEMA: Final = "bench_pg_engine_bare"
SCALE_SCHEMA: Final = "bench_pg_engine_scale"
#: Seconds a scale-out step (processes starting and sharing the partitions out, a process's run) may take.
SCALE_STEP: Final = 120.0
CHUNK_LINES: Final = 1024  # as recoverkit.replay submits, and the bare baseline's transactions and fetches
STORES: Final = ("memory", "sqlite", "postgres")
STYLES: Final = ("replay", "live")
AIM: Final = 0.5  # issue 14: the engine on PostgreSQL at least half the bare insert-and-read-back baseline


# -- the baseline: bare psycopg -------------------------------------------------------------------------------


def reset_bare(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(BARE_SCHEMA)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(BARE_SCHEMA)))
        conn.execute(
            sql.SQL("CREATE TABLE {}.bare (id bigserial PRIMARY KEY, data bytea NOT NULL)").format(
                sql.Identifier(BARE_SCHEMA)
            )
        )


def bare_once(url: str, lines: list[bytes]) -> tuple[float, int]:
    """Seconds to COPY ``lines`` into a plain table in transactions of 1,024 and read them back; lines read."""
    reset_bare(url)
    started = time.perf_counter()
    read = 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(BARE_SCHEMA)))
        for i in range(0, len(lines), CHUNK_LINES):
            with conn.transaction(), conn.cursor().copy("COPY bare (data) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["bytea"])
                for line in lines[i : i + CHUNK_LINES]:
                    copy.write_row((line,))
        with conn.transaction(), conn.cursor(name="read_back", binary=True) as cursor:
            cursor.itersize = CHUNK_LINES
            cursor.execute("SELECT data FROM bare ORDER BY id")
            for (data,) in cursor:
                read += len(data) > 0
    return time.perf_counter() - started, read


# -- the engine ---------------------------------------------------------------------------------------------------


class _Count:
    """A channel adapter that only counts (as ``recoverkit bench`` uses)."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, message: Message) -> None:
        self.sent += 1


def reset_store(url: str, partitions: int, schema: str = SCHEMA) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    init(url, partitions=partitions, schema=schema)


@contextmanager
def opened(kind: str, url: str, directory: Path) -> Iterator[PostgresStore | str | None]:
    """What ``Engine(store=...)`` is given for ``kind``; a PostgreSQL store is opened (and closed) here."""
    if kind == "memory":
        yield None
    elif kind == "sqlite":
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            yield str(Path(tmp) / "state.db")
    else:
        with PostgresStore(url, schema=SCHEMA) as store:
            yield store


async def engine_once(lines: list[bytes], kind: str, style: str, url: str, directory: Path) -> dict[str, Any]:
    """One run of ``lines`` through an engine on ``kind`` in ``style``: seconds, messages, events accepted."""
    config = Config()
    used = sorted({ch for f in config.flows for s in f.steps for ch in (s.channel, s.fallback) if ch})
    counter = _Count()

    def feed(engine: Engine) -> int:
        return sum(engine.track(line) for line in lines)

    started = time.perf_counter()
    with opened(kind, url, directory) as store:
        async with Engine(config, channels=dict.fromkeys(used, counter), clock=EventClock(), store=store) as engine:
            if style == "replay":
                for i in range(0, len(lines), CHUNK_LINES):
                    await engine.submit_many(lines[i : i + CHUNK_LINES])
                tracked = len(lines)
            else:  # a request thread, as a web worker's; the engine's loop runs the pipeline meanwhile
                tracked = await anyio.to_thread.run_sync(feed, engine)
            await engine.flush(end_of_input=True)
            stats = engine.statistics()
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "messages": counter.sent,
        "accepted": stats.events_accepted,
        "tracked": tracked,
        "overflow": stats.events_overflow,
    }


# -- scaling out: several engine processes over one partitioned store ------------------------------------------


class _Session(msgspec.Struct):
    session_id: str


class _Keys:
    """A channel adapter that keeps the keys it was called with (to count calls made twice across processes)."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    async def send(self, message: Message) -> None:
        self.keys.append(message.key)


async def _scale_engine(index: int, processes: int, url: str, sessions: int, out: Any, gates: Any) -> None:
    go, all_in, done = gates  # released by the parent: start, every process's input journaled, close
    lines = list(generate_jsonl(sessions, seed=0))
    config = Config()
    used = sorted({ch for f in config.flows for s in f.steps for ch in (s.channel, s.fallback) if ch})
    keys = _Keys()
    decode = msgspec.json.Decoder(_Session).decode
    with PostgresStore(url, schema=SCALE_SCHEMA) as store:
        engine = Engine(config, channels=dict.fromkeys(used, keys), clock=EventClock(), store=store, owner=f"p{index}")
        async with engine:
            # Until every process is a member and holds its share: the figure is the work, not the sharing out.
            with anyio.fail_after(SCALE_STEP):
                while not ((s := engine.partitions) and s["members"] == processes and len(s["owned"]) == s["share"]):
                    await anyio.sleep(0.05)
            owned = set(s["owned"])
            mine = [line for line in lines if store.partition_of(decode(line).session_id) in owned]
            out.put(("owned", index, sorted(owned)))
            if not await anyio.to_thread.run_sync(go.wait, SCALE_STEP):
                raise TimeoutError("bench_pg_engine: the processes did not start together")
            started = time.perf_counter()
            for i in range(0, len(mine), CHUNK_LINES):
                await engine.submit_many(mine[i : i + CHUNK_LINES])
            # The input ends when every process's is in (the journal mirrors some of each into the others'
            # partitions): end_of_input declared sooner would release a partition's watermark past them.
            out.put(("submitted", index, None))
            if not await anyio.to_thread.run_sync(all_in.wait, SCALE_STEP):
                raise TimeoutError("bench_pg_engine: the other processes did not finish submitting")
            await engine.flush(end_of_input=True)
            seconds = time.perf_counter() - started
            status = engine.partitions or {}
            out.put(("done", index, {"events": len(mine), "seconds": seconds, "owned": status.get("owned")}))
            # Close together: a process leaving early would hand its partitions to one still at work.
            await anyio.to_thread.run_sync(done.wait, SCALE_STEP)
    out.put(("keys", index, keys.keys))


def _scale_process(index: int, processes: int, url: str, sessions: int, out: Any, gates: Any) -> None:
    quiet_logs()
    anyio.run(
        _scale_engine, index, processes, url, sessions, out, gates, backend="asyncio",
        backend_options={"use_uvloop": has_uvloop()},
    )  # fmt: skip


def scale_once(url: str, processes: int, sessions: int, partitions: int) -> dict[str, Any]:
    """One run of ``processes`` engine processes over a new store of ``partitions``; see the module docstring."""
    reset_store(url, partitions, SCALE_SCHEMA)
    ctx = multiprocessing.get_context("spawn")  # each process opens its own connections, after it starts
    out = ctx.Queue()
    gates = go, all_in, done = ctx.Event(), ctx.Event(), ctx.Event()
    workers = [
        ctx.Process(target=_scale_process, args=(k, processes, url, sessions, out, gates)) for k in range(processes)
    ]
    for w in workers:
        w.start()
    try:
        owned: dict[int, list[int]] = _collect(out, "owned", processes)
        go.set()
        _collect(out, "submitted", processes)
        all_in.set()
        finished: dict[int, dict[str, Any]] = _collect(out, "done", processes)
        done.set()
        keys = [key for ks in _collect(out, "keys", processes).values() for key in ks]
    finally:
        for gate in gates:  # a process waiting on one after a failure here ends instead of timing out
            gate.set()
        for w in workers:
            w.join(SCALE_STEP)
            if w.is_alive():
                w.kill()
    problems = [f"process {k} exited with {w.exitcode}" for k, w in enumerate(workers) if w.exitcode != 0]
    shares = [part for parts in owned.values() for part in parts]
    if sorted(shares) != list(range(partitions)):
        problems.append(f"the partitions were not shared out once each: {owned}")
    if any(f["owned"] != owned[k] for k, f in finished.items()):
        problems.append("a partition moved during the run")
    calls = len(keys)
    duplicates = calls - len(set(keys))
    with PostgresStore(url, schema=SCALE_SCHEMA) as store:
        problems += store.check()
        open_claims = len(store.ledger(["sending", "unknown"]))
    if open_claims:
        problems.append(f"{open_claims} ledger entries left sending or unknown")
    if duplicates:
        problems.append(f"{duplicates} messages sent twice")
    slowest = max(f["seconds"] for f in finished.values())  # they started together: the run ends with the last
    events = sum(f["events"] for f in finished.values())
    return {
        "events": events,
        "events_per_second": events / slowest,
        "per_process_events_per_second": statistics.mean(f["events"] / f["seconds"] for f in finished.values()),
        "owned": [owned[k] for k in sorted(owned)],
        "messages": calls,
        "keys": set(keys),
        "duplicates": duplicates,
        "problems": problems,
    }


def _collect(out: Any, kind: str, count: int) -> dict[int, Any]:
    """The payloads of ``count`` ``(kind, index, payload)`` messages from the processes, by index."""
    got: dict[int, Any] = {}
    while len(got) < count:
        what, index, payload = out.get(timeout=SCALE_STEP)  # queue.Empty if a process died or hung
        if what != kind:
            raise RuntimeError(f"bench_pg_engine: expected {kind!r} from the processes, got {what!r}")
        got[index] = payload
    return got


def run_scale(*, url: str, sessions: int, processes: list[int], partitions: int, repeat: int) -> dict[str, Any]:
    """Every count of ``processes`` ``repeat`` times, interleaved; the best run of each kept."""
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in processes}
    for _ in range(repeat):
        for n in processes:
            runs[n].append(scale_once(url, n, sessions, partitions))
    rows = []
    for n, results in runs.items():
        best = max(results, key=lambda r: r["events_per_second"])
        rows.append({
            "processes": n, "events": best["events"], "events_per_second": best["events_per_second"],
            "per_process_events_per_second": best["per_process_events_per_second"], "owned": best["owned"],
            "runs_events_per_second": [r["events_per_second"] for r in results],
            "messages": sorted({r["messages"] for r in results}), "duplicates": sum(r["duplicates"] for r in results),
        })  # fmt: skip
    one = next((r["events_per_second"] for r in rows if r["processes"] == 1), float("nan"))
    # The same input must give the same messages on 1 engine process as on several (issue 14); every run is
    # compared with the first run of the fewest processes.
    reference = runs[min(processes)][0]["keys"]
    for row in rows:
        row["vs_one_process"] = ratio(row["events_per_second"], one)
        differ = [r["keys"] ^ reference for r in runs[row["processes"]]]
        row["same_messages"] = not any(differ)
        row["messages_differing"] = [len(d) for d in differ]
    return {
        "partitions": partitions,
        "rows": rows,
        "problems": [p for results in runs.values() for r in results for p in r["problems"]],
    }


# -- the run ---------------------------------------------------------------------------------------------------------


def run(lines: list[bytes], *, url: str, repeat: int, partitions: int, directory: Path) -> dict[str, Any]:
    names = ["bare"] + [f"{kind}-{style}" for style in STYLES for kind in STORES]
    runs: dict[str, list[float]] = {name: [] for name in names}
    decisions: dict[str, set[tuple[int, int]]] = {name: set() for name in names[1:]}
    problems: list[str] = []
    for _ in range(repeat):
        seconds, read = bare_once(url, lines)  # interleaved, so that a noisy moment hits every configuration alike
        runs["bare"].append(len(lines) / seconds)
        if read != len(lines):
            problems.append(f"bare: read back {read} of {len(lines)} lines")
        for name in names[1:]:
            kind, style = name.split("-")
            if kind == "postgres":
                reset_store(url, partitions)
            result = anyio.run(
                engine_once, lines, kind, style, url, directory, backend="asyncio",
                backend_options={"use_uvloop": has_uvloop()},
            )  # fmt: skip
            runs[name].append(len(lines) / result["seconds"])
            decisions[name].add((result["accepted"], result["messages"]))
            if result["tracked"] != len(lines) or result["overflow"]:
                problems.append(f"{name}: {result['tracked']} of {len(lines)} tracked, {result['overflow']} overflow")
    best = {name: max(rates) for name, rates in runs.items()}
    every = set().union(*decisions.values())
    if len(every) != 1:
        problems.append(f"the configurations disagree on (accepted, messages): {decisions}")
    ratios = {}
    for style in STYLES:
        pg = best[f"postgres-{style}"]
        ratios[style] = {
            "postgres_vs_bare": ratio(pg, best["bare"]),
            "postgres_vs_sqlite": ratio(pg, best[f"sqlite-{style}"]),
            "postgres_vs_memory": ratio(pg, best[f"memory-{style}"]),
            "memory_vs_bare": ratio(best[f"memory-{style}"], best["bare"]),
        }
    accepted, messages = min(every) if every else (0, 0)
    return {
        "events": len(lines),
        "events_per_second": best,
        "runs_events_per_second": runs,
        "ratios": ratios,
        "accepted": accepted,
        "messages": messages,
        "same_decisions": len(every) == 1,
        "problems": problems,
    }


def server_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def report(doc: dict[str, Any]) -> None:
    if "results" in doc:
        report_throughput(doc)
    if "scale" in doc:
        if "results" in doc:
            print()
        report_scale(doc)


def report_scale(doc: dict[str, Any]) -> None:
    sc, s = doc["scale"], doc["settings"]
    print(f"scaling out: engine processes over one PostgreSQL store of {sc['partitions']} partitions, "
          f"{s['sessions']:,} sessions, replay-style; each process submits its own partitions' sessions")  # fmt: skip
    header = f"{'processes':>10}{'events/s':>12}{'per process':>13}{'vs 1':>8}   partitions owned; runs (events/s)"
    print(header)
    print("-" * len(header))
    for row in sc["rows"]:
        runs = ", ".join(f"{x:,.0f}" for x in row["runs_events_per_second"])
        print(f"{row['processes']:>10}{row['events_per_second']:>12,.0f}{row['per_process_events_per_second']:>13,.0f}"
              f"{row['vs_one_process']:>8.2f}   {row['owned']}; {runs}")  # fmt: skip
    messages = "; ".join(
        f"{row['processes']}: {row['messages']} ({'same keys' if row['same_messages'] else 'keys differing: '}"
        f"{'' if row['same_messages'] else row['messages_differing']})"
        for row in sc["rows"]
    )
    duplicates = sum(row["duplicates"] for row in sc["rows"])
    print(f"messages by processes, each run against the first run of the fewest: {messages}; sent twice: {duplicates}")
    print("checks: " + ("partitions shared out once each and kept, ledger settled, store consistent"
                        if not sc["problems"] else "; ".join(sc["problems"])))  # fmt: skip


def report_throughput(doc: dict[str, Any]) -> None:
    r, s = doc["results"], doc["settings"]
    print(f"engine throughput, event time: {r['events']:,} events ({s['sessions']:,} synthetic sessions), "
          f"{s['repeat']} interleaved run(s) of each configuration, best kept")  # fmt: skip
    header = f"{'configuration':<52}{'events/s':>12}{'vs bare':>10}   runs (events/s)"
    print(header)
    print("-" * len(header))
    labels = {"bare": "baseline: bare COPY in + read back (psycopg)"}
    for style in STYLES:
        what = "submit_many, chunks of 1,024" if style == "replay" else "track() from one thread"
        for kind in STORES:
            store = {"memory": "memory", "sqlite": "SQLite normal", "postgres": f"PostgreSQL ({s['partitions']} part.)"}
            labels[f"{kind}-{style}"] = f"{store[kind]}, {what}"
    for name, label in labels.items():
        rate = r["events_per_second"][name]
        runs = ", ".join(f"{x:,.0f}" for x in r["runs_events_per_second"][name])
        print(f"{label:<52}{rate:>12,.0f}{ratio(rate, r['events_per_second']['bare']):>10.3f}   {runs}")
    print()
    for style in STYLES:
        q = r["ratios"][style]
        verdict = "met" if q["postgres_vs_bare"] >= AIM else "NOT met"
        print(f"{style}: PostgreSQL / bare {q['postgres_vs_bare']:.3f} (aim >= {AIM}: {verdict}); "
              f"PostgreSQL / SQLite {q['postgres_vs_sqlite']:.3f}; PostgreSQL / memory {q['postgres_vs_memory']:.3f}; "
              f"memory / bare {q['memory_vs_bare']:.3f}")  # fmt: skip
    same = "yes" if r["same_decisions"] else "NO"
    print(f"same accepted events and messages everywhere: {same} (accepted {r['accepted']:,}, "
          f"messages {r['messages']:,})")  # fmt: skip
    print("checks: " + ("every configuration complete, the bare table gave every line back"
                        if not r["problems"] else "; ".join(r["problems"])))  # fmt: skip


def main() -> None:
    p = parser(__doc__.split("\n\n")[0], timeout=1800.0)
    p.add_argument("--url", help="a PostgreSQL server of yours (default: a throwaway cluster started here)")
    p.add_argument("--sessions", type=int, help="synthetic sessions (default 5,000, ~30,000 events; 200 with --quick)")
    p.add_argument("--repeat", type=int, help="rounds of every configuration, best kept (default 3; 1 with --quick)")
    p.add_argument("--partitions", type=int, default=1, help="the PostgreSQL store's partitions (default 1)")
    p.add_argument(
        "--engine-processes",
        default="1,2",
        help="scaling out: engine processes sharing one partitioned store, comma-separated (default 1,2)",
    )
    p.add_argument("--scale-partitions", type=int, default=8, help="the store's partitions for scaling out (8)")
    p.add_argument("--only", choices=("throughput", "scale"), help="run one part only")
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the SQLite files go")
    args = p.parse_args()
    quiet_logs()
    watchdog(args.timeout, "bench_pg_engine")
    processes = sorted({int(n) for n in args.engine_processes.split(",")})
    sessions = args.sessions if args.sessions is not None else (200 if args.quick else 5_000)
    repeat = max(args.repeat if args.repeat is not None else (1 if args.quick else 3), 1)
    lines = list(generate_jsonl(sessions, seed=0))

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
        )  # fmt: skip
        results = scale = None
        if args.only in (None, "throughput"):
            results = run(lines, url=url, repeat=repeat, partitions=args.partitions, directory=args.dir)
        if args.only in (None, "scale"):
            scale = run_scale(
                url=url, sessions=sessions, processes=processes, partitions=args.scale_partitions, repeat=repeat
            )
        with psycopg.connect(url, autocommit=True) as conn:
            for schema in (SCHEMA, BARE_SCHEMA, SCALE_SCHEMA):
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    finally:
        if cluster is not None:
            cluster.remove()
    doc: dict[str, Any] = {
        "benchmark": "pg_engine",
        "machine": info,
        "settings": {
            "sessions": sessions, "repeat": repeat, "partitions": args.partitions, "engine_processes": processes,
            "scale_partitions": args.scale_partitions,
        },
    }  # fmt: skip
    if results is not None:
        met = {s: results["ratios"][s]["postgres_vs_bare"] >= AIM for s in STYLES}
        doc |= {"results": results, "aim": {"postgres_vs_bare": AIM, "met": met}}
    if scale is not None:
        doc["scale"] = scale
    if args.json:
        emit_json(doc)
    else:
        print_header("recoverkit benchmark: engine throughput on PostgreSQL, SQLite and memory vs bare psycopg", info)
        report(doc)
    if (results and results["problems"]) or (scale and scale["problems"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
