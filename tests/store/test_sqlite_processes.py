"""SQLiteStore shared by real processes: concurrent appends, racing claims, a lease that survives a SIGKILL, and
no accepted event lost when a writer is killed mid-stream.

Each child is ``python -c CHILD MODE PATH ...``: it opens its own store, prints ``ready``, waits for ``go`` and
the moment to start at on stdin (so that the children really run at once) and prints what the store answered,
one line per answer, flushed as soon as the call has returned. Time is real here (``time.time()``), since
the processes are.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recoverkit.store import PIPELINE_LEASE, SQLiteStore

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and fork-free POSIX process handling"),
]

CHILD = r"""
import random, sys, threading, time
from recoverkit.store import SQLiteStore

mode, path, args = sys.argv[1], sys.argv[2], sys.argv[3:]
print_lock = threading.Lock()

def say(*parts):
    line = " ".join(str(p) for p in parts) + "\n"
    with print_lock:  # one write per line, flushed at once: what the parent reads was really returned
        sys.stdout.write(line)
        sys.stdout.flush()

store = SQLiteStore(path, synchronous=args[0], busy_timeout=30)
say("ready")
command, start_at = sys.stdin.readline().split()
if command != "go":
    sys.exit(3)
time.sleep(max(0.0, float(start_at) - time.time()))

if mode == "append":  # append COUNT batches of BATCH events named NAME-i-j
    name, count, batch = args[1], int(args[2]), int(args[3])
    for i in range(count):
        last = store.append_events([f"{name}-{i}-{j}".encode() for j in range(batch)], now=time.time())
        say(last)
elif mode == "claim":  # claim KEYS keys as OWNER, in an order shuffled by SEED
    owner, keys = args[1], [f"cart-{n}/flow/0" for n in range(int(args[2]))]
    random.Random(args[3]).shuffle(keys)
    claimed = 0
    for key in keys:
        got = store.claim(key, cart_key=key.split("/")[0], contact_key="c", channel="email", started_at=0.0,
                          owner=owner, now=time.time())
        say(key, got)
        claimed += got == "claimed"
        if got == "claimed" and claimed == 10:
            # Rendezvous: 200 claims take a few milliseconds, less than two processes' start can differ by;
            # wait for the other to claim its first ten too, so that the rest really runs at the same time.
            while len(store.ledger()) < 20:
                time.sleep(0.001)
elif mode == "lease":  # hold the pipeline lease as OWNER with TTL, renewing every INTERVAL, until killed
    owner, ttl, interval = args[1], float(args[2]), float(args[3])
    while True:
        now = time.time()
        say("held" if store.acquire_lease("pipeline", owner, ttl=ttl, now=now) else "refused", repr(now))
        time.sleep(interval)
elif mode == "append-forever":  # THREADS threads appending batches of about 300-byte events until killed
    def work(thread):
        rng = random.Random(thread)
        i = 0
        while True:
            data = [f"t{thread}-{i}-{j}-".encode() + b"x" * 280 for j in range(rng.randint(1, 8))]
            last = store.append_events(data, now=time.time())
            for offset, event in enumerate(data):
                say(last - len(data) + 1 + offset, event.decode())
            i += 1
    for t in range(int(args[1])):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    while True:
        time.sleep(1)
store.close()
say("done")
"""


class Child:
    def __init__(self, tmp_path: Path, mode: str, path: Path, *args: object, synchronous: str = "normal") -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, mode, str(path), synchronous, *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout

    def line(self) -> str:
        line = self.stdout.readline()
        assert line.endswith("\n"), f"child ended early (exit {self.process.poll()})"
        return line.rstrip("\n")

    def ready(self) -> None:
        assert self.line() == "ready"

    def go(self, start_at: float) -> None:
        self.stdin.write(f"go {start_at!r}\n")
        self.stdin.flush()

    def finish(self, timeout: float = 20) -> list[str]:
        out, _ = self.process.communicate(timeout=timeout)
        assert self.process.returncode == 0
        return out.splitlines()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def children(tmp_path: Path) -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:  # whatever happened in the test, leave no process behind
        child.kill()
        child.stdin.close()
        child.stdout.close()


def start_together(children: list[Child]) -> None:
    """Wait until every child has opened its store, then have them all start at the same moment."""
    for child in children:
        child.ready()
    start_at = time.time() + 0.1
    for child in children:
        child.go(start_at)


def test_processes_appending_at_once_to_a_new_file_lose_nothing_and_share_no_seq(
    tmp_path: Path, children: list[Child]
) -> None:
    path = tmp_path / "state.db"  # created by whichever child gets there first
    count, batch = 150, 3
    children += [Child(tmp_path, "append", path, f"p{n}", count, batch) for n in range(4)]
    start_together(children)
    outputs = [child.finish() for child in children]
    returned = [int(line) for out in outputs for line in out[:-1]]
    assert all(out[-1] == "done" for out in outputs)
    assert len(returned) == 4 * count
    seqs = [last - j for last in returned for j in range(batch)]
    assert sorted(seqs) == list(range(1, 4 * count * batch + 1))  # unique, and no gap: nothing lost
    with SQLiteStore(path) as store:
        entries = store.read_events(0, 10_000)
        assert len(entries) == 4 * count * batch
        for last in returned:  # each call's events are consecutive, in order, from one process
            names = [e.data.decode() for e in entries[last - batch : last]]
            assert [n.rsplit("-", 1)[1] for n in names] == ["0", "1", "2"]
            assert len({n.rsplit("-", 1)[0] for n in names}) == 1
        assert store.check() == []


def test_two_processes_racing_for_the_same_keys_claim_each_exactly_once(tmp_path: Path, children: list[Child]) -> None:
    path = tmp_path / "state.db"
    keys = 200
    with SQLiteStore(path) as store:
        # both play the same owner, so that the lease lets both through and only the ledger decides
        assert store.acquire_lease(PIPELINE_LEASE, "shared", ttl=120, now=time.time())
        children += [Child(tmp_path, "claim", path, "shared", keys, seed) for seed in range(2)]
        start_together(children)
        answers = [dict(line.split(" ") for line in child.finish()[:-1]) for child in children]
        assert all(len(a) == keys for a in answers)
        for key in answers[0]:
            assert sorted([answers[0][key], answers[1][key]]) == ["claimed", "duplicate"], key
        assert len(store.ledger({"sending"})) == keys
        assert all(sum(v == "claimed" for v in a.values()) >= 10 for a in answers)  # both were in the race


def test_a_lease_whose_holder_was_killed_is_taken_once_it_expires(tmp_path: Path, children: list[Child]) -> None:
    path = tmp_path / "state.db"
    ttl = 1.0
    SQLiteStore(path).close()
    holder = Child(tmp_path, "lease", path, "A", ttl, 0.1)
    children.append(holder)
    start_together(children)
    with SQLiteStore(path) as store:
        renewals = []
        for _ in range(4):  # A takes the lease and renews it
            state, now = holder.line().split(" ")
            assert state == "held"
            renewals.append(float(now))
        assert not store.acquire_lease(PIPELINE_LEASE, "B", ttl=ttl, now=time.time())
        assert store.lease_holder(PIPELINE_LEASE, now=time.time()) == "A"

        os.kill(holder.process.pid, signal.SIGKILL)
        killed = time.time()
        holder.process.wait(timeout=10)
        renewals += [float(line.split(" ")[1]) for line in holder.stdout.read().splitlines()]
        refused = 0
        while True:
            now = time.time()
            if store.acquire_lease(PIPELINE_LEASE, "B", ttl=ttl, now=now):
                break
            refused += 1
            assert now - killed < ttl + 2, "B never got the lease"
            time.sleep(0.02)
        assert refused > 0  # right after the kill, A's lease was still valid
        assert now >= renewals[-1] + ttl  # not a moment before A's last renewal ran out
        assert now - killed <= ttl + 0.5
        assert store.lease_holder(PIPELINE_LEASE, now=now) == "B"


@pytest.mark.parametrize("synchronous", ["normal", "full"])
def test_every_event_a_killed_writer_was_told_is_kept_is_there_after_reopening(
    tmp_path: Path, children: list[Child], synchronous: str
) -> None:
    path = tmp_path / "state.db"
    child = Child(tmp_path, "append-forever", path, 4, synchronous=synchronous)
    children.append(child)
    start_together(children)
    # Drain the child's output as it comes: a full pipe would block it in print, not in the store.
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.append(child.stdout.read()))
    reader.start()
    delay = random.uniform(0.2, 0.6)
    time.sleep(delay)
    os.kill(child.process.pid, signal.SIGKILL)
    child.process.wait(timeout=10)
    reader.join(timeout=10)
    lines = output[0].split("\n")[:-1]  # a line cut by the kill has no newline: it was never fully reported
    printed = dict(line.split(" ") for line in lines)
    assert len(printed) > 20, f"the child printed only {len(printed)} events in {delay:.2f} s"
    with SQLiteStore(path) as store:
        kept = {str(e.seq): e.data.decode() for e in store.read_events(0, 1_000_000)}
        missing = sorted(set(printed) - set(kept), key=int)
        assert missing == [], f"killed after {delay:.2f} s; lost seqs {missing[:10]}"
        assert all(kept[seq] == data for seq, data in printed.items())
        assert store.check() == []
        assert store.append_events([b"after"], now=time.time()) == store.last_seq() > max(map(int, printed))
