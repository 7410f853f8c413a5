"""Crash test: a replay worker SIGKILLed many times sends every message once and loses no accepted event.

The long version of ``tests/test_crash.py``, with the same worker (``tests/workers/crash_worker.py``, run as a
script: benchmarks import nothing from ``tests``). The worker replays a synthetic event file in event time on a
SQLite store; its adapter logs every call (fsynced before the call returns), and a restarted worker resumes the
input after the lines the store already journaled.

- **Reference** (the baseline, in the same run): the worker once, never killed, on its own store.
- **Crashed run**: the worker on a fresh store, killed with SIGKILL ``--kill-delay`` seconds (uniform, seeded)
  after it reports holding the pipeline lease, restarted on the same files, ``--kills`` times; then left to
  finish. A restarted worker waits for the killed one's lease (1 s) to expire, loads the last checkpoint (one
  every 0.2 s) and re-reads the journal after it. ``--pace`` spreads the input over time so that every kill
  lands while there is work left (by default: long enough that the kills cannot outrun it);
  ``--send-latency`` keeps each send open a while, so that kills also land between a claim and its outcome.
- **Checks** (exit code 1 if any fails): in event time the outcome does not depend on batching or
  interruptions, so the crashed run must end where the reference did: no key in the sent log twice
  (*duplicates*); no key the reference did not send (*spurious*); every reference key sent or left
  ``unknown`` by a kill (*lost*: a lost or twice-applied event would change the set); every ledger ``sent``
  entry in the log; no message due at or after its cart's purchase; the journal handed out exactly one seq per
  line; ``SQLiteStore.check()`` and ``check_database`` find nothing; and every kill planned landed on a
  running worker. *Unknown outcomes* are sends a kill interrupted between claim and outcome: never re-sent
  (``recoverkit ledger`` resolves them).

``--starved`` makes stalls past the lease happen, as on a starved machine: about one send in ``--stall-every``
(40) blocks the worker's event loop for 1.3 s (past the 1 s lease, with claims in flight), a thief thread takes
the lease whenever it has expired and holds it up to 0.3 s (as another worker taking over and closing would), and
``--hogs`` (1) processes spin on the CPU. The checks are the same: a worker whose lease lapsed and was taken
meanwhile must restore and still send nothing twice and lose nothing.

``--quick`` is a smoke run of a few seconds: 300 sessions, one kill 0.05-0.3 s after the lease is taken, sends
open 5 ms; it exercises the same code path (kill, lease expiry, restore, resume) and the same checks.
Each wait on a worker is bounded (``STEP_TIMEOUT``) and the whole run by ``--timeout``. Run from the repository
root:

    .venv/bin/python benchmarks/crash_test.py                            # 20,000 sessions, 50 kills
    .venv/bin/python benchmarks/crash_test.py --sessions 5000 --kills 10
    .venv/bin/python benchmarks/crash_test.py --quick --json
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
from _common import emit_json, machine, parser, print_header, quiet_logs, ratio, watchdog

from recoverkit.errors import StoreError
from recoverkit.store import PIPELINE_LEASE, SQLiteStore, check_database
from recoverkit.synthetic import generate_jsonl

WORKER = Path(__file__).resolve().parent.parent / "tests" / "workers" / "crash_worker.py"
CHUNK = 256
#: Seconds a worker may take to report a step (start-up, a killed worker's lease expiring, finishing).
STEP_TIMEOUT = 300.0


class Worker:
    """One life of the crash worker; its stdout is read by a thread so that waits can time out."""

    def __init__(self, worker: Path, events: Path, store: Path, sent: Path, *extra: str, chunk: int = CHUNK) -> None:
        self.stderr_path = store.with_name(f"{store.name}.stderr")
        command = [sys.executable, worker, "--events", events, "--store", store, "--sent", sent, "--chunk", chunk]
        with self.stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                [*map(str, command), *extra], stdout=subprocess.PIPE, stderr=stderr, text=True
            )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, wanted: str) -> bool:
        """Wait until the worker prints ``wanted``; ``False`` if it exited first."""
        while True:
            try:
                line = self.lines.get(timeout=STEP_TIMEOUT)
            except queue.Empty:
                raise RuntimeError(f"the worker did not print {wanted!r} within {STEP_TIMEOUT} s") from None
            if line is None:
                return False
            if line == wanted:
                return True

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STEP_TIMEOUT)

    def finish(self) -> None:
        code = self.process.wait(timeout=STEP_TIMEOUT)
        if code != 0:
            errors = self.stderr_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the worker exited with {code}:\n{errors}")


def read_sent(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    # An empty line is where a worker closed off a record cut short by a kill; a cut record does not parse.
    return [msgspec.json.decode(line) for line in path.read_bytes().splitlines() if line.strip()]


def read_store(store: Path) -> dict[str, Any]:
    with SQLiteStore(store) as s:
        ledger = {entry.key: entry.state for entry in s.ledger()}
        return {"ledger": ledger, "last_seq": s.last_seq(), "check": s.check(), "database": check_database(store)}


def purchases(lines: list[bytes]) -> dict[str, float]:
    """The first purchase time of each cart, keyed as messages are (the cart id, else the session id)."""
    first: dict[str, float] = {}
    for line in lines:
        event = msgspec.json.decode(line)
        if event["event"] == "purchase":
            cart_key = event.get("cart_id") or event["session_id"]
            first[cart_key] = min(first.get(cart_key, event["ts"]), event["ts"])
    return first


def run_reference(worker: Path, events: Path, folder: Path) -> dict[str, Any]:
    store, sent = folder / "reference.db", folder / "reference-sent.jsonl"
    started = time.perf_counter()
    Worker(worker, events, store, sent).finish()
    return {"seconds": time.perf_counter() - started, "sent": read_sent(sent)} | read_store(store)


class Thief:
    """Another worker, as far as the lease goes: takes the pipeline lease whenever it has expired, holds it a
    moment and gives it back, so that a worker whose loop stalled past its lease finds it taken meanwhile."""

    def __init__(self, store: Path, *, seed: int, hold: float = 0.3, rest: float = 0.5, poll: float = 0.05) -> None:
        self.store, self.hold, self.rest, self.poll = store, hold, rest, poll
        self.rng = random.Random(seed)
        self.thefts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Thief:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=STEP_TIMEOUT)

    def _run(self) -> None:
        while not self.store.exists() and not self._stop.wait(self.poll):
            pass
        with SQLiteStore(self.store) as store:
            while not self._stop.wait(self.poll):
                try:
                    if store.acquire_lease(PIPELINE_LEASE, "crash-test-thief", ttl=self.hold + 1, now=time.time()):
                        self.thefts += 1
                        # Held for a random while: given back before the stalled worker looks again (it finds
                        # the lease taken meanwhile and restores) or after (it finds it lost and stands down).
                        self._stop.wait(self.rng.uniform(0.02, self.hold))
                        store.release_lease(PIPELINE_LEASE, "crash-test-thief")
                        self._stop.wait(self.rest)  # then leaves the worker be for a while
                except StoreError:
                    continue  # busy: the worker is writing; try again at the next poll


def hog() -> subprocess.Popen[bytes]:
    """A process that spins on a CPU until killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def run_crashed(
    worker: Path,
    events: Path,
    folder: Path,
    *,
    kills: int,
    delays: tuple[float, float],
    seed: int,
    extra: list[str],
    chunk: int = CHUNK,
    starved: bool = False,
    hogs: int = 0,
) -> dict[str, Any]:
    store, sent = folder / "crashed.db", folder / "crashed-sent.jsonl"
    rng = random.Random(seed)
    started = time.perf_counter()
    landed: list[float] = []
    lives = 0
    spinning = [hog() for _ in range(hogs)]
    thief = Thief(store, seed=seed)
    try:
        with thief if starved else contextlib.nullcontext():
            lives = _lives(
                worker, events, store, sent, kills=kills, delays=delays, rng=rng, landed=landed, extra=extra, chunk=chunk
            )
    finally:
        for process in spinning:
            process.kill()
            process.wait()
    stderr = store.with_name(f"{store.name}.stderr").read_text(errors="replace")
    return {
        "seconds": time.perf_counter() - started,
        "kills": len(landed),
        "kill_delays": landed,
        "lives": lives,
        "thefts": thief.thefts,
        "lease_lapses": stderr.count("pipeline_lease_lapsed"),
        "leases_lost": stderr.count("pipeline_lease_lost"),
        "claims_refused": stderr.count("claim_refused_not_owner"),
        "sent": read_sent(sent),
    } | read_store(store)


def _lives(
    worker: Path,
    events: Path,
    store: Path,
    sent: Path,
    *,
    kills: int,
    delays: tuple[float, float],
    rng: random.Random,
    landed: list[float],
    extra: list[str],
    chunk: int,
) -> int:
    """Start the worker, kill it, again until ``kills`` landed, then let it finish; return how many lives."""
    lives = 0
    while True:
        # The pace only spreads the input over the kills: once they have all landed, the last life runs
        # unpaced (paced, a starved run's remaining input outlasted STEP_TIMEOUT: 120 kills of up to 4 s).
        unpaced = ["--pace", "0"] if len(landed) >= kills else []
        life = Worker(worker, events, store, sent, *extra, *unpaced, chunk=chunk)
        lives += 1
        try:
            if len(landed) < kills and life.wait_for("owner"):
                delay = rng.uniform(*delays)
                try:
                    life.process.wait(timeout=delay)  # it may finish first: then that kill did not happen
                except subprocess.TimeoutExpired:
                    life.kill()
                    landed.append(delay)
                    print(f"  kill {len(landed)}/{kills} at {delay:.2f} s", file=sys.stderr)
                    continue
            life.finish()
        finally:
            life.kill()  # never leave a worker behind, whatever went wrong
        break
    return lives


def verdict(lines: list[bytes], reference: dict[str, Any], crashed: dict[str, Any], kills: int) -> dict[str, Any]:
    reference_keys = {record["key"] for record in reference["sent"]}
    calls = Counter(record["key"] for record in crashed["sent"])
    sent_keys = set(calls)
    ledger: dict[str, str] = crashed["ledger"]
    unknown = {key for key, state in ledger.items() if state == "unknown"}
    bought = purchases(lines)

    def after_purchase(sent: list[dict[str, Any]]) -> int:
        return sum(1 for r in sent if (cart := r["key"].rsplit("/", 2)[0]) in bought and r["due_at"] >= bought[cart])

    figures = {
        "events": len(lines),
        "kills": crashed["kills"],
        "kills_planned": kills,
        "restarts": crashed["lives"] - 1,
        "thefts": crashed["thefts"],
        "lease_lapses": crashed["lease_lapses"],
        "leases_lost": crashed["leases_lost"],
        "claims_refused": crashed["claims_refused"],
        "messages": len(reference_keys),
        "adapter_calls": sum(calls.values()),
        "duplicates": sum(n - 1 for n in calls.values() if n > 1),
        "spurious": len(sent_keys - reference_keys),
        "lost": len(reference_keys - sent_keys - unknown),
        "unknown_outcomes": len(unknown),
        "unknown_and_called": len(unknown & sent_keys),
        "ledger_states": dict(sorted(Counter(ledger.values()).items())),
        "after_purchase": after_purchase(crashed["sent"]) + after_purchase(reference["sent"]),
        "journal_seqs": crashed["last_seq"],
        "integrity": crashed["check"] + crashed["database"],
        "reference_seconds": reference["seconds"],
        "elapsed_seconds": crashed["seconds"],
        # What the kills cost in time: each restart waits for the killed worker's lease and redoes the work
        # since the last checkpoint. The pace (--pace) stretches the crashed run's input on purpose, so this
        # is a rough figure, not a speed measurement.
        "elapsed_vs_reference": ratio(crashed["seconds"], reference["seconds"]),
    }
    sent_in_ledger = {key for key, state in ledger.items() if state == "sent"}
    checks = {
        "reference sends each key once": len(reference["sent"]) == len(reference_keys),
        "no duplicate adapter call": figures["duplicates"] == 0,
        "no spurious send": figures["spurious"] == 0,
        "no lost message": figures["lost"] == 0 and sent_keys | unknown == reference_keys,
        "ledger 'sent' only for logged calls": sent_in_ledger <= sent_keys,
        "ledger only sent or unknown": set(ledger.values()) <= {"sent", "unknown"},
        "nothing due after a purchase": figures["after_purchase"] == 0,
        "one journal seq per line": crashed["last_seq"] == len(lines) == reference["last_seq"],
        "store integrity ok": figures["integrity"] == [] and reference["check"] == [],
        f"{kills} kills landed": crashed["kills"] == kills,
    }
    return {"figures": figures, "checks": checks, "ok": all(checks.values())}


def print_report(doc: dict[str, Any]) -> None:
    f, s = doc["figures"], doc["settings"]
    print(f"events            {f['events']:,} ({s['sessions']:,} sessions, seed {s['seed']})")
    print(
        f"kills             {f['kills']} landed of {f['kills_planned']} planned "
        f"(at {s['kill_delay'][0]}-{s['kill_delay'][1]} s after taking the lease)"
    )
    print(f"restarts          {f['restarts']}")
    if s["starved"]:
        print(
            f"starved           lease taken by the thief {f['thefts']} times; the worker found its lease lapsed "
            f"{f['lease_lapses']} times, lost {f['leases_lost']}; {f['claims_refused']} claims refused and held"
        )
    print(f"messages          {f['messages']:,} (reference), {f['adapter_calls']:,} adapter calls (crashed)")
    print(f"duplicates        {f['duplicates']}")
    print(f"spurious          {f['spurious']}")
    print(f"lost              {f['lost']}")
    print(f"unknown outcomes  {f['unknown_outcomes']} ({f['unknown_and_called']} of them reached the adapter)")
    print(f"ledger            {f['ledger_states']}")
    print(f"integrity         {'ok' if not f['integrity'] else '; '.join(f['integrity'])}")
    print(
        f"elapsed           {f['elapsed_seconds']:.1f} s (reference, never killed: {f['reference_seconds']:.1f} s; "
        f"crashed / reference {f['elapsed_vs_reference']:.1f}x, paced on purpose)"
    )
    print()
    for name, passed in doc["checks"].items():
        print(f"  {'ok  ' if passed else 'FAIL'}  {name}")
    print()
    print("all checks passed" if doc["ok"] else "SOME CHECKS FAILED")


def main() -> None:
    p = parser(__doc__.split("\n\n")[0], timeout=3600.0)
    p.add_argument("--sessions", type=int, help="synthetic sessions (default 20000; 300 with --quick)")
    p.add_argument("--kills", type=int, help="SIGKILLs before the worker may finish (default 50; 1 with --quick)")
    p.add_argument("--seed", type=int, default=1, help="seed of the events and of the kill moments (default 1)")
    p.add_argument(
        "--kill-delay", type=float, nargs=2, metavar=("MIN", "MAX"),
        help="a kill comes MIN-MAX seconds (uniform) after the worker takes the lease (default 0.05 1.0; "
        "0.5 4.0 with --starved; 0.05 0.3 with --quick)",
    )  # fmt: skip
    p.add_argument(
        "--pace", type=float, help="seconds the worker sleeps after each chunk (of 256 lines, fewer for many kills; "
        "default: enough that the input lasts 1.5 times the longest kill delay per kill)",
    )  # fmt: skip
    p.add_argument("--send-latency", type=float, help="seconds each send stays open (default 0.02; 0.005 with --quick)")
    p.add_argument(
        "--starved", action="store_true", help="stalls past the lease: sends that block the loop 1.3 s, a thief "
        "that takes the lease whenever it expired, CPU hogs",
    )  # fmt: skip
    p.add_argument("--stall-every", type=int, default=40, help="with --starved: one send in N stalls (default 40)")
    p.add_argument("--hogs", type=int, default=1, help="with --starved: processes spinning on a CPU (default 1)")
    p.add_argument("--keep", type=Path, help="work in this folder and keep its files (default: a temporary one)")
    p.add_argument("--worker", type=Path, default=WORKER, help="the worker script (default: %(default)s)")
    args = p.parse_args()
    quiet_logs()
    watchdog(args.timeout, "crash_test")
    quick = args.quick
    if args.sessions is None:
        args.sessions = 300 if quick else 20_000
    if args.kills is None:
        args.kills = 1 if quick else 50
    if args.kill_delay is None:
        # Starved, a worker must live through a 1.3 s stall and the renewal after it for its lease to lapse;
        # kills within 1 s of taking the lease nearly always land during the first stall instead.
        args.kill_delay = (0.05, 0.3) if quick else (0.5, 4.0) if args.starved else (0.05, 1.0)
    if args.send_latency is None:
        args.send_latency = 0.005 if quick else 0.02
    info = machine()
    with tempfile.TemporaryDirectory(prefix="recoverkit-crash-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("reference.db", "crashed.db", "reference-sent.jsonl", "crashed-sent.jsonl"):
            for leftover in folder.glob(f"{name}*"):  # a kept folder of an earlier run
                leftover.unlink()
        events = folder / "events.jsonl"
        lines = list(generate_jsonl(args.sessions, seed=args.seed))
        events.write_bytes(b"".join(line + b"\n" for line in lines))
        # Every life submits a chunk as soon as it holds the lease, however soon it is killed: with fewer than a
        # few chunks per kill the input runs out before the kills do (5,000 sessions in chunks of 256 lines
        # allowed 121 kills of 200). So at least 4 chunks per kill, each paced so that the input lasts 1.5 times
        # the longest kill delay per kill.
        chunk = max(1, min(CHUNK, len(lines) // (4 * max(args.kills, 1))))
        chunks = -(-len(lines) // chunk)
        pace = args.pace if args.pace is not None else 1.5 * args.kills * args.kill_delay[1] / chunks
        settings = {
            "sessions": args.sessions,
            "seed": args.seed,
            "kills": args.kills,
            "kill_delay": list(args.kill_delay),
            "chunk": chunk,
            "pace": pace,
            "send_latency": args.send_latency,
            "starved": args.starved,
            "stall_every": args.stall_every if args.starved else 0,
            "hogs": args.hogs if args.starved else 0,
            "folder": str(folder),
        }
        if not args.json:
            print_header("recoverkit crash test: SIGKILL a replay worker, restart it, compare", info)
            print(f"{len(lines):,} events; reference run...", file=sys.stderr)
        reference = run_reference(args.worker, events, folder)
        if not args.json:
            print(f"crashed run ({args.kills} kills, pace {pace:.3f} s per chunk of {chunk})...", file=sys.stderr)
        crashed = run_crashed(
            args.worker,
            events,
            folder,
            kills=args.kills,
            delays=tuple(args.kill_delay),
            seed=args.seed,
            extra=[
                "--pace", str(pace), "--send-latency", str(args.send_latency),
                *(["--stall-every", str(args.stall_every)] if args.starved else []),
            ],
            chunk=chunk,
            starved=args.starved,
            hogs=args.hogs if args.starved else 0,
        )  # fmt: skip
        doc = {"machine": info, "settings": settings} | verdict(lines, reference, crashed, args.kills)
    if args.json:
        emit_json(doc)
    else:
        print_report(doc)
    sys.exit(0 if doc["ok"] else 1)


if __name__ == "__main__":
    main()
