"""A live engine (wall clock) on a SQLite store, driven line by line over stdin (``test_restart_timing.py``).

::

    python tests/workers/live_worker.py --store STATE.db --sent SENT.jsonl [--delay SECONDS]

The engine runs ``Config(abandon_after=1, tick_interval=0.01)`` with one flow of one step, ``--delay``
seconds (default 2) after the abandonment on the ``webhook`` channel (which needs neither address nor
consent), a checkpoint every 0.1 s and a 1 s lease. Its adapter appends ``{"key", "due_at", "sent_at",
"pid"}`` (``sent_at`` is ``time.time()`` on entry) as one JSON line to ``--sent`` and fsyncs it before it
returns.

The worker prints ``ready`` once the engine runs, then reads one JSON command per line from stdin and
answers each with one JSON line on stdout:

- ``{"track": EVENT}``: ``engine.track(EVENT)``, then ``await engine.flush()``; answers ``{"tracked": bool}``;
- ``{"status": true}``: answers ``{"owner", "pending", "position", "checkpoint"}``: whether this process
  holds the pipeline lease, how many messages are scheduled and not yet due, the journal position the
  pipeline has read up to and the one its last checkpoint covers.

End of input closes the engine cleanly and the worker exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import msgspec

from recoverkit import Engine
from recoverkit.channels.base import Message
from recoverkit.config import Config, Flow, FlowStep, StoreConfig


class SentLog:
    """The webhook adapter: one fsynced JSON line per call, written before the call returns."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._pid = os.getpid()

    async def send(self, message: Message) -> None:
        record = {"key": message.key, "due_at": message.due_at, "sent_at": time.time(), "pid": self._pid}
        os.write(self._fd, msgspec.json.encode(record) + b"\n")
        os.fsync(self._fd)


def say(answer: Any) -> None:
    sys.stdout.write(answer if isinstance(answer, str) else msgspec.json.encode(answer).decode())
    sys.stdout.write("\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> None:
    config = Config(
        abandon_after=1,
        tick_interval=0.01,
        store=StoreConfig(path=args.store, checkpoint_interval=0.1, lease_ttl=1),
        flows=[Flow(name="f", steps=[FlowStep(delay=args.delay, channel="webhook")])],
    )
    async with Engine(config, channels={"webhook": SentLog(Path(args.sent))}) as engine:
        say("ready")
        while line := await anyio.to_thread.run_sync(sys.stdin.readline):
            command = msgspec.json.decode(line)
            if "track" in command:
                tracked = engine.track(command["track"])
                await engine.flush()
                say({"tracked": tracked})
            elif "status" in command:
                stats = engine.statistics()
                say(
                    {
                        "owner": engine.is_owner,
                        "pending": len(engine.pending_messages()),
                        "position": stats.stages["ingest"].extra["position"],
                        "checkpoint": stats.checkpoint_position,
                    }
                )
            else:
                say({"error": f"unknown command {sorted(command)}"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--store", required=True, help="the SQLite store file (created if missing)")
    parser.add_argument("--sent", required=True, help="the log of adapter calls (appended to)")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds from abandonment to the message")
    args = parser.parse_args()
    # The host configures logging, and here the script is the host: warnings and up, to stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    anyio.run(run, args)


if __name__ == "__main__":
    main()
