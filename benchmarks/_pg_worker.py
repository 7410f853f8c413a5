"""One engine process on a PostgreSQL store shared with others, for ``bench_pg_takeover.py`` (not a benchmark).

::

    python benchmarks/_pg_worker.py --url URL --schema S --sent SENT.log --name w0 [--lease-ttl 1]

A live engine (wall clock) on ``PostgresStore(URL, schema=S)``, a store made by ``recoverkit.store.postgres.init``:
carts abandoned 1 s after their last activity, one flow with one ``webhook`` message at once (no consent or
address needed), a checkpoint every 0.2 s and a ``--lease-ttl`` pipeline lease. Every process journals what it
tracks; the one holding the lease runs the pipeline over all of it. The adapter appends ``<key> <name> <pid>``
to ``--sent`` with one ``os.write`` on an ``O_APPEND`` descriptor and fsyncs before ``send`` returns: the file is
the truth about adapter calls across a ``kill -9``, and lines from several processes never interleave.

Protocol (one JSON document per line; logs, warnings and up, on stderr):

- prints ``"ready"`` (a JSON string) once the engine runs;
- prints ``{"taken": <time.time()>, "pid": <pid>}`` when this process has taken the pipeline lease and restored
  the pipeline (the engine's ``pipeline_lease_taken`` log record, caught by a handler on ``recoverkit.engine``);
- reads commands on stdin: ``{"track": [event, ...]}``: ``track()`` each, then ``flush()`` (so they are in the
  shared journal), answers ``{"tracked": n}``; ``{"status": true}``: answers ``{"owner": bool, "pid": int}``;
- end of input: closes the engine (which gives the lease back) and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time

import anyio
import anyio.to_thread
import msgspec

from recoverkit import Config, Engine, Flow, FlowStep, Message, StoreConfig
from recoverkit.store.postgres import PostgresStore

_say_lock = threading.Lock()


def say(answer: object) -> None:
    # The lease handler runs wherever the engine logs from; one line at a time on stdout.
    line = msgspec.json.encode(answer).decode()
    with _say_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class AppendLog:
    """The webhook adapter: ``<key> <name> <pid>`` per call, on disk before ``send`` returns."""

    def __init__(self, path: str, name: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._tail = f" {name} {os.getpid()}\n"

    async def send(self, message: Message) -> None:
        os.write(self._fd, (message.key + self._tail).encode())
        os.fsync(self._fd)


class LeaseTaken(logging.Handler):
    """Reports ``pipeline_lease_taken`` on stdout with the wall time it was logged."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == "pipeline_lease_taken":
            say({"taken": time.time(), "pid": os.getpid()})


async def run(args: argparse.Namespace) -> None:
    config = Config(
        abandon_after=1,
        tick_interval=0.01,
        store=StoreConfig(checkpoint_interval=0.2, lease_ttl=args.lease_ttl),
        flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="webhook")])],
    )
    with PostgresStore(args.url, schema=args.schema) as store:
        async with Engine(config, channels={"webhook": AppendLog(args.sent, args.name)}, store=store) as engine:
            say("ready")
            while line := await anyio.to_thread.run_sync(sys.stdin.readline):
                command = msgspec.json.decode(line)
                if "track" in command:
                    tracked = sum(engine.track(event) for event in command["track"])
                    await engine.flush()
                    say({"tracked": tracked})
                elif "status" in command:
                    say({"owner": engine.is_owner, "pid": os.getpid()})
                else:
                    say({"error": f"unknown command {sorted(command)}"})


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--url", required=True, help="the PostgreSQL server's URL")
    parser.add_argument("--schema", required=True, help="the store's schema (made by recoverkit.store.postgres.init)")
    parser.add_argument("--sent", required=True, help="the log of adapter calls (appended to)")
    parser.add_argument("--name", required=True, help="this process's name in the log")
    parser.add_argument("--lease-ttl", type=float, default=1.0, help="the pipeline lease's time to live, s")
    args = parser.parse_args()
    # The worker is the host here, so it configures logging: warnings and up to stderr, and the one INFO record
    # the benchmark times (the take-over) through its own handler.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    engine_log = logging.getLogger("recoverkit.engine")
    engine_log.setLevel(logging.INFO)
    handler = LeaseTaken(level=logging.INFO)
    engine_log.addHandler(handler)
    # Only the handler's record goes below WARNING; the stderr handler keeps its threshold.
    logging.getLogger().handlers[0].setLevel(logging.WARNING)
    anyio.run(run, args)


if __name__ == "__main__":
    main()
