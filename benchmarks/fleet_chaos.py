"""Many hosts under fire: engine processes over a partitioned PostgreSQL store, killed with ``kill -9`` at random.

::

    python benchmarks/fleet_chaos.py                       # 4 engines, 2 producers, 64 partitions, 100 kills
    python benchmarks/fleet_chaos.py --quick --json        # a short run (what tests/store/test_fleet_chaos.py runs)
    python benchmarks/fleet_chaos.py --kills 200 --seed 7  # longer, another draw

What it does (issue 14's proof): a throwaway PostgreSQL cluster (or ``--url``), a store made with ``--partitions``
partitions, ``--engines`` engine processes (``_fleet_worker.py engine``: each runs its fair share of the
partitions) and two producer processes (journal writers). Shoppers arrive in waves. Each shopper's cart goes in
through producer 0 (who they are, their consent, what they add); a third of them buy, and their purchase (the
payment provider's webhook) goes in through producer 1. Carts are abandoned 1 s after their last activity and
the flow sends one email at once, capped at one per customer a week. Meanwhile, every ``--kill-every`` seconds a
random engine is killed with ``kill -9`` and a new one started in its place (every ``--stall-every``-th fault is
instead a ``SIGSTOP`` past the lease, then ``SIGCONT``: the stalled engine's writes are fenced); one engine joins
mid-run, one shuts down cleanly (its partitions handed over at once), and the database server is restarted once
(with the throwaway cluster).

What it checks, from the adapters' own fsynced log of calls and the store:

- every customer who left got **exactly one** message, or their message is ``unknown`` in the ledger (the
  killed process may have been sending it: an operator settles it), never two;
- **no buyer** got one (each purchase was journaled by the other producer well before the cart's 1 s);
- **no accepted event lost**: every partition's head is exactly what the producers were told was kept (each
  event in its session's partition, plus the mirrors of identify, consent and purchase in every other), and the
  store finds no gap in any partition's positions (``check()``);
- **take-over time** after each kill: from the kill until every partition is owned again by a live process
  (p50, p99; the aim is the lease time plus 1 s).

Exit code 0 when every check holds, 1 otherwise (the problems are printed, and in ``--json``).
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import emit_json, machine, parser, percentiles, print_header, watchdog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "store"))

from recoverkit.store.postgres import PostgresStore, init

WORKER = Path(__file__).resolve().parent / "_fleet_worker.py"
STEP = 30.0  # seconds any one answer or start may take
ITEMS = [{"item_id": "SKU-1", "price": "19.90", "quantity": 1}]


class Proc:
    """One worker process; its answers are read by a thread so that every wait can time out."""

    def __init__(self, role: str, name: str, url: str, sent: Path, lease_ttl: float) -> None:
        self.name = name
        self.stderr = sent.with_name(f"{name}.stderr")
        command = [sys.executable, str(WORKER), role, "--url", url, "--name", name, "--lease-ttl", str(lease_ttl)]
        if role == "engine":
            command += ["--sent", str(sent)]
        with self.stderr.open("ab") as err:
            self.process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
            )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def answer(self) -> Any:
        try:
            line = self.lines.get(timeout=STEP)
        except queue.Empty:
            raise RuntimeError(f"{self.name}: no answer within {STEP} s: {self.tail()}") from None
        if line is None:
            raise RuntimeError(f"{self.name} exited ({self.process.poll()}): {self.tail()}")
        return json.loads(line)

    def ready(self) -> Proc:
        if self.answer() != "ready":
            raise RuntimeError(f"{self.name} did not start: {self.tail()}")
        return self

    def track(self, events: list[dict[str, Any]]) -> int:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"track": events}) + "\n")
        self.process.stdin.flush()
        return int(self.answer()["tracked"])

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STEP)

    def close(self) -> int:
        assert self.process.stdin is not None
        if not self.process.stdin.closed:
            self.process.stdin.close()
        return self.process.wait(timeout=STEP)

    def tail(self) -> str:
        return self.stderr.read_text(errors="replace")[-2000:] if self.stderr.exists() else ""


def shopper(wave: int, i: int, buyer: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The events of one shopper: through producer 0 (the cart), and through producer 1 (the purchase)."""
    customer, session = f"w{wave}c{i}", f"w{wave}c{i}.web"
    cart = [
        {"event": "identify", "session_id": session, "customer_id": customer, "email": f"{customer}@example.com"},
        {"event": "consent", "session_id": session, "customer_id": customer, "granted": ["email"]},
        {"event": "add_to_cart", "session_id": session, "customer_id": customer, "currency": "EUR", "items": ITEMS},
    ]
    paid = [{"event": "purchase", "session_id": session, "customer_id": customer, "currency": "EUR"}] if buyer else []
    return cart, paid


def journal_rows(events: list[dict[str, Any]], partitions: int) -> int:
    """How many journal rows ``events`` make: one each, and the mirrors (recoverkit.journal.MIRRORED) of every
    identify, consent and purchase naming a customer in every other partition."""
    mirrored = sum(1 for e in events if e["event"] in ("identify", "consent", "purchase") and e.get("customer_id"))
    return len(events) + mirrored * (partitions - 1)


def _stall_due(faults: int, every: int) -> bool:
    """Whether the next fault is a stall (every ``every``-th; never with 0)."""
    return every > 0 and (faults + 1) % every == 0


def all_owned(url: str, live: set[str]) -> bool:
    with PostgresStore(url) as store:
        return all(lease.owner in live for lease in store.partition_leases())


def run(args: Any, url: str, workdir: Path, restart_db: Callable[[], None] | None = None) -> dict[str, Any]:
    rng = random.Random(args.seed)
    init(url, partitions=args.partitions)
    sent = workdir / "sent.log"
    serial = iter(range(10**6))

    everyone: list[Proc] = []

    def new_engine() -> Proc:
        proc = Proc("engine", f"e{next(serial)}", url, sent, args.lease_ttl)
        everyone.append(proc)
        return proc

    try:
        return _chaos(args, url, sent, rng, new_engine, everyone, restart_db)
    finally:
        for proc in everyone:  # whatever is still running when the run ends or fails
            if proc.process.poll() is None:
                proc.kill()


def _chaos(
    args: Any, url: str, sent: Path, rng: random.Random, new_engine: Callable[[], Proc], everyone: list[Proc],
    restart_db: Callable[[], None] | None,
) -> dict[str, Any]:  # fmt: skip
    engines = [new_engine() for _ in range(args.engines - 1)]  # one more joins mid-run
    for e in engines:
        e.ready()
    producers = [Proc("producer", f"p{k}", url, sent, args.lease_ttl) for k in range(2)]
    everyone.extend(producers)
    for producer in producers:
        producer.ready()
    leavers: set[str] = set()
    buyers: set[str] = set()
    rows = 0
    kills = 0
    takeovers: list[float] = []
    joined = shut_down = restarted = False
    stalls = 0
    stalled_at_kill = -1
    started = time.monotonic()
    wave = 0
    while kills < args.kills or wave < args.waves:
        if wave < args.waves or kills < args.kills:
            wave += 1
            carts: list[dict[str, Any]] = []
            payments: list[dict[str, Any]] = []
            for i in range(args.shoppers):
                buyer = i % 3 == 0
                (buyers if buyer else leavers).add(f"w{wave}c{i}")
                cart, paid = shopper(wave, i, buyer)
                carts += cart
                payments += paid
            if producers[0].track(carts) != len(carts) or producers[1].track(payments) != len(payments):
                raise RuntimeError("a producer refused events")
            rows += journal_rows(carts + payments, args.partitions)
        if not joined and wave == 2:  # one engine joins mid-run: the others hand it its share
            engines.append(new_engine().ready())
            joined = True
        elif not shut_down and wave == 3:  # one shuts down cleanly: its partitions are handed over at once
            engines.pop(0).close()
            engines.append(new_engine().ready())
            shut_down = True
        elif restart_db is not None and not restarted and wave == 5:
            # The database restarted mid-run: engines and producers wait, reconnect and go on.
            restart_db()
            restarted = True
        elif (
            kills < args.kills and args.stall_every and (kills + 1) % args.stall_every == 0 and stalled_at_kill != kills
        ):
            # An engine stopped (SIGSTOP) past its lease: the others take its partitions; woken (SIGCONT), every
            # write it tries is fenced, and it finds its partitions gone and takes its share again.
            stalled_at_kill = kills
            victim = engines[rng.randrange(len(engines))]
            os.kill(victim.process.pid, signal.SIGSTOP)
            stopped_at = time.monotonic()
            live = {e.name for e in engines if e is not victim}
            while not all_owned(url, live):
                if time.monotonic() > stopped_at + args.lease_ttl * 10 + STEP:
                    raise RuntimeError("the partitions of a stalled engine were not taken over")
                time.sleep(0.05)
            stalls += 1
            os.kill(victim.process.pid, signal.SIGCONT)
        elif kills < args.kills:
            victim = engines.pop(rng.randrange(len(engines)))
            killed_at = time.monotonic()
            victim.kill()
            kills += 1
            live = {e.name for e in engines}
            deadline = killed_at + args.lease_ttl * 10 + STEP
            while not all_owned(url, live):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the partitions were not all owned again after kill {kills}")
                time.sleep(0.05)
            takeovers.append(time.monotonic() - killed_at)
            engines.append(new_engine().ready())
        time.sleep(args.kill_every)
    # Let everything fall due (1 s abandonment, the lease of the last victim), then stop cleanly.
    deadline = time.monotonic() + args.settle
    with PostgresStore(url) as store:
        while time.monotonic() < deadline:
            messaged = {line.split(" ")[0].split("/")[0] for line in _lines(sent)}
            unknown = {e.cart_key for e in store.ledger(["unknown", "sending"])}
            if leavers <= {k.removesuffix(".web") for k in messaged | unknown}:
                break
            time.sleep(0.2)
        time.sleep(2.0)  # a second message, or one to a buyer, would be due by now
    exits = [e.close() for e in engines] + [p.close() for p in producers]
    result = _verdict(url, sent, leavers, buyers, rows, kills, takeovers, exits, time.monotonic() - started, args)
    return result | {"stalls": stalls, "database_restarted": restarted}


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _verdict(
    url: str, sent: Path, leavers: set[str], buyers: set[str], rows: int, kills: int, takeovers: list[float],
    exits: list[int], seconds: float, args: Any,
) -> dict[str, Any]:  # fmt: skip
    calls = Counter(line.split(" ")[0] for line in _lines(sent))
    by_customer = Counter(key.split("/")[0].removesuffix(".web") for key in calls.elements())
    with PostgresStore(url) as store:
        states = {e.key: e.state for e in store.ledger()}
        unknown = {k.split("/")[0].removesuffix(".web") for k, s in states.items() if s in ("unknown", "sending")}
        heads = sum(store.partition_heads())
        problems = store.check()
    twice = sorted(c for c, n in by_customer.items() if n > 1)
    missed = sorted(c for c in leavers if by_customer[c] == 0 and c not in unknown)
    to_buyers = sorted(c for c in buyers if by_customer[c])
    if twice:
        problems.append(f"{len(twice)} customers got more than one message: {twice[:10]}")
    if missed:
        problems.append(f"{len(missed)} customers who left got nothing and nothing is unknown: {missed[:10]}")
    if to_buyers:
        problems.append(f"{len(to_buyers)} buyers got a message: {to_buyers[:10]}")
    if heads != rows:
        problems.append(
            f"the partitions' heads add up to {heads} journal rows, the producers were told {rows} were kept"
        )
    if any(exits):
        problems.append(f"exit codes {exits}")
    aim = args.lease_ttl + 1.0
    spread = percentiles(takeovers, (50, 99))
    return {
        "engines": args.engines, "producers": 2, "partitions": args.partitions, "kills": kills,
        "customers_left": len(leavers), "buyers": len(buyers), "messages": sum(calls.values()),
        "duplicates": len(twice), "lost": len(missed), "to_buyers": len(to_buyers), "unknown": len(unknown),
        "journal_rows": rows, "heads": heads, "takeover_p50_s": spread["p50"], "takeover_p99_s": spread["p99"],
        "takeover_max_s": spread["max"], "takeover_aim_s": aim, "seconds": round(seconds, 1), "problems": problems,
    }  # fmt: skip


def _restarter(cluster: Any) -> Callable[[], None]:
    def restart() -> None:
        cluster.stop()
        cluster.start()

    return restart


def main() -> None:
    p = parser(__doc__.split("\n", 1)[0], timeout=3600)
    p.add_argument("--url", help="a PostgreSQL database to use (default: a throwaway cluster)")
    p.add_argument("--engines", type=int, default=4)
    p.add_argument("--partitions", type=int, default=64)
    p.add_argument("--kills", type=int, default=100)
    p.add_argument("--waves", type=int, default=0, help="at least this many waves of shoppers (one per step)")
    p.add_argument("--shoppers", type=int, default=6, help="shoppers per wave")
    p.add_argument("--kill-every", type=float, default=0.5)
    p.add_argument("--lease-ttl", type=float, default=1.0)
    p.add_argument("--settle", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stall-every", type=int, default=5, help="every n-th fault is a SIGSTOP past the lease (0: none)")
    args = p.parse_args()
    if args.quick:
        args.kills, args.partitions = min(args.kills, 8), min(args.partitions, 16)
    watchdog(args.timeout, "fleet_chaos.py")
    # The script is the host: SIGTERM ends it through its finally blocks (the workers and the cluster stopped).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    cluster = None
    url = args.url
    import tempfile

    with tempfile.TemporaryDirectory(prefix="recoverkit-chaos-") as work:
        if url is None:
            from postgres_cluster import Cluster

            cluster = Cluster()
            cluster.init()
            cluster.start()
            url = cluster.url(cluster.create_database())
        try:
            result = run(args, url, Path(work), None if cluster is None else _restarter(cluster))
        finally:
            if cluster is not None:
                cluster.stop()
                cluster.remove()
    info = machine(engines=args.engines, partitions=args.partitions, kills=args.kills, lease_ttl=args.lease_ttl)
    if args.json:
        emit_json({"machine": info, "result": result})
    else:
        print_header("fleet_chaos: engines killed at random over a partitioned PostgreSQL store", info)
        for key, value in result.items():
            print(f"{key:>18}: {value}")
    sys.exit(1 if result["problems"] else 0)


if __name__ == "__main__":
    main()
