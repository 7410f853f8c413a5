"""What ``kill -9`` loses in ``durability = "batch"``: events ``track()`` acknowledged that never reached the journal.

A child process runs a :class:`recoverkit.BackgroundEngine` on a new SQLite file (``durability = "batch"``,
``synchronous = "normal"``, the default pipeline running in the same process, ``checkpoint_interval`` an hour
so that no journal trim happens during the run) and calls ``track()`` from its main thread with ``page_view``
events numbered 0, 1, 2, ... (the number is the session id), either as fast as it can (overload: the engine's
loop and its journal commits cannot keep up with the caller) or paced at ``--rate`` events per second. After
every acknowledged event when paced, every 64th flat out (``track()`` returned ``True``), the child writes the
count to a pipe; the parent keeps the last count it read. ``--seconds`` after the child reported its first
count, the parent sends it SIGKILL, reads what is left in the pipe, then reads the journal table of the file
with ``sqlite3``.

Lost per kill = numbers below the last reported count that are not in the journal: acknowledged events that
were never written. (Events acknowledged after the last report are not counted either way, so the figure is
exact for the events it covers.) Also printed: the acknowledged rate, and the loss in milliseconds of that
traffic. ``--kills`` runs (default 5), each on a new file; the minimum, median and maximum are reported.

``--quick`` runs two kills of one second each, for a smoke run. ``--timeout`` stops the script with a message
(exit code 3) instead of hanging. Run from the repository root:

    .venv/bin/python benchmarks/bench_overload_kill.py                  # overload: as fast as the caller can
    .venv/bin/python benchmarks/bench_overload_kill.py --rate 1000      # 1,000 events/s
    .venv/bin/python benchmarks/bench_overload_kill.py --quick --json
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

_REPORT_EVERY = 64
_COUNT = struct.Struct("<q")


def child(path: str, fd: int, rate: float) -> None:
    """Track numbered events into ``path`` until killed, reporting the acknowledged count on ``fd``."""
    import recoverkit
    from recoverkit.config import StoreConfig

    config = recoverkit.Config(store=StoreConfig(path=path, checkpoint_interval=3600.0))
    engine = recoverkit.BackgroundEngine(config, close_at_exit=False)
    engine.start()
    track = engine.track
    acked = 0
    i = 0
    interval = 1.0 / rate if rate > 0 else 0.0
    # Paced, every acknowledgement is reported (a write costs microseconds); flat out, every 64th, so that the
    # reporting does not slow the caller down much.
    every = 1 if interval else _REPORT_EVERY
    started = time.perf_counter()
    while True:
        if interval:
            wait = started + i * interval - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        if track({"event": "page_view", "session_id": str(i)}):
            acked = i + 1  # the numbers below `acked` were all acknowledged: events are numbered in order
            if acked % every == 0:
                os.write(fd, _COUNT.pack(acked))
        else:
            # A refused event is not acknowledged; report what came before it so the count stays a prefix.
            os.write(fd, _COUNT.pack(-1))
            return
        i += 1


def one_kill(directory: Path, seconds: float, rate: float, timeout: float) -> dict[str, Any]:
    path = directory / f"kill-{time.monotonic_ns()}.db"
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", str(path), "--fd", str(write_end), "--rate", str(rate)],
        pass_fds=(write_end,),
    )
    os.close(write_end)
    last = 0
    refused = False
    first = threading.Event()
    ended = threading.Event()

    def reader() -> None:
        nonlocal last, refused
        buffer = b""
        while chunk := os.read(read_end, 65536):
            buffer += chunk
            whole = len(buffer) - len(buffer) % _COUNT.size
            for (value,) in _COUNT.iter_unpack(buffer[:whole]):
                if value < 0:
                    refused = True
                else:
                    last = value
                first.set()
            buffer = buffer[whole:]
        ended.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        if not first.wait(timeout):
            raise TimeoutError(f"the child acknowledged no events within {timeout:g} s")
        started_at, started_count = time.perf_counter(), last
        time.sleep(seconds)
        ran = time.perf_counter() - started_at
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout)
        ended.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(read_end)
    if refused:
        raise RuntimeError("the child's track() returned False: nothing was expected to be refused here")
    conn = sqlite3.connect(path)
    try:
        journaled = {
            int(msgspec.json.decode(data)["session_id"]) for (data,) in conn.execute("SELECT data FROM journal")
        }
    finally:
        conn.close()
    lost = sum(1 for n in range(last) if n not in journaled)
    acked_rate = (last - started_count) / ran
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return {
        "acknowledged": last,
        "journaled": len(journaled),
        "lost": lost,
        "rate": acked_rate,
        "lost_ms": 1000.0 * lost / acked_rate if acked_rate else float("nan"),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="two kills after one second each: a smoke run")
    p.add_argument("--json", action="store_true", help="print the results as one JSON document on stdout")
    p.add_argument("--timeout", type=float, default=300.0, help="give up (exit code 3) after this many seconds")
    p.add_argument("--kills", type=int, default=5, help="runs, each killed once (default 5)")
    p.add_argument("--seconds", type=float, default=3.0, help="seconds of tracking before the kill (default 3)")
    p.add_argument("--rate", type=float, default=0.0, help="events per second; 0: as fast as possible (default)")
    p.add_argument("--dir", help="directory for the store files (default: a temporary directory)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        child(args.child, args.fd, args.rate)
        return 0

    from _common import emit_json, machine, print_header, watchdog

    watchdog(args.timeout, "bench_overload_kill.py")
    kills, seconds = (2, 1.0) if args.quick else (args.kills, args.seconds)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        runs = [one_kill(Path(tmp), seconds, args.rate, timeout=60.0) for _ in range(kills)]
    lost = sorted(run["lost"] for run in runs)
    summary = {
        "lost_min": lost[0],
        "lost_median": statistics.median(lost),
        "lost_max": lost[-1],
        "lost_ms_max": max(run["lost_ms"] for run in runs),
        "rate_median": statistics.median(run["rate"] for run in runs),
    }
    info = machine(
        kills=kills, seconds_before_kill=seconds, rate="as fast as possible" if not args.rate else f"{args.rate:g}/s"
    )
    if args.json:
        emit_json({"machine": info, "runs": runs, "summary": summary})
        return 0
    print_header("kill -9 under load, durability batch: acknowledged events lost per kill", info)
    print(f"{'run':>4} {'acknowledged':>13} {'journaled':>10} {'lost':>8} {'events/s':>10} {'lost ms':>8}")
    for n, run in enumerate(runs, 1):
        print(
            f"{n:>4} {run['acknowledged']:>13,} {run['journaled']:>10,} {run['lost']:>8,} {run['rate']:>10,.0f} "
            f"{run['lost_ms']:>8.1f}"
        )
    print()
    print(
        f"lost per kill: min {summary['lost_min']:,}, median {summary['lost_median']:,}, max {summary['lost_max']:,} "
        f"(at most {summary['lost_ms_max']:.1f} ms of the acknowledged traffic); median rate "
        f"{summary['rate_median']:,.0f} events/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
