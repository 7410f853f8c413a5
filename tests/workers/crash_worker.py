"""A replay worker that may be SIGKILLed at any moment and restarted on the same files (``test_crash.py``).

::

    python tests/workers/crash_worker.py --events EVENTS.jsonl --store STATE.db --sent SENT.jsonl [--config C.toml]

It runs an :class:`~recoverkit.Engine` in event time on the SQLite store ``--store`` and resumes the input
where the store left it: the first ``store.last_seq()`` lines of ``--events`` were accepted by an earlier life
(``submit_many`` returns after the commit, and a chunk is committed whole or not at all), so it submits only
the lines after them, in chunks of ``--chunk`` lines, then ``flush(end_of_input=True)`` and exits 0.

Every channel's adapter appends one JSON line per call to ``--sent`` (``key``, ``flow``, ``step``,
``due_at``, ``pid``) with one ``write`` and ``fsync``\\ s it before it returns: the log holds every adapter
call that happened, whenever the process was killed, and a key the ledger says was ``sent`` is in it.

Progress goes to stdout, one flushed line each: ``started`` (the engine is running), ``owner`` (this process
holds the pipeline lease; a restarted worker waits for the killed one's lease to expire), ``submitted N``
and ``done``. Without ``--config`` the flows are two e-mails, at 0 and 30 minutes after a 10-minute
abandonment, with a checkpoint every 0.2 s and a 1 s lease, so that checkpoints and take-overs happen between
kills. ``--pace S`` sleeps S seconds after each chunk, to spread a short input over time;
``--send-latency S`` has each send wait S seconds after logging it, as a provider's round trip would, which
widens the window in which a kill leaves a send's outcome unknown. ``--stall-every N --stall S`` starves the
worker: about one send in N (chosen by its key, so the same ones in every life) blocks the event loop for S
seconds before it is logged, as a synchronous call inside an async adapter would, so that with S past the 1 s
lease the worker's lease lapses while it has claims in flight.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import zlib
from pathlib import Path

import anyio
import msgspec

from recoverkit import Engine, EventClock
from recoverkit.channels.base import Message
from recoverkit.config import Config, Flow, FlowStep, StoreConfig, load_config

#: Seconds between two looks at whether the lease is ours yet.
OWNER_POLL = 0.02


def default_config(store: str) -> Config:
    return Config(
        abandon_after=600,
        flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="email"), FlowStep(delay=1800, channel="email")])],
        store=StoreConfig(path=store, checkpoint_interval=0.2, lease_ttl=1),
    )


class SentLog:
    """The adapter of every channel: one fsynced JSON line per call, written before the call returns."""

    def __init__(self, path: Path, latency: float = 0.0, *, stall_every: int = 0, stall: float = 0.0) -> None:
        self.latency = latency
        self.stall_every, self.stall = stall_every, stall
        # A line cut short by a kill (unlikely: each record is one write) must not swallow the next one.
        if path.exists() and path.stat().st_size:
            with path.open("rb") as f:
                f.seek(-1, os.SEEK_END)
                cut = f.read(1) != b"\n"
            if cut:
                with path.open("ab") as f:
                    f.write(b"\n")
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._pid = os.getpid()

    async def send(self, message: Message) -> None:
        if self.stall_every and zlib.crc32(message.key.encode()) % self.stall_every == 0:
            time.sleep(self.stall)  # blocks the loop on purpose: no renewal, no tick, no checkpoint meanwhile
        record = {
            "key": message.key,
            "flow": message.flow,
            "step": message.step,
            "due_at": message.due_at,
            "pid": self._pid,
        }
        # Blocking on purpose: the record is on disk before the engine can learn that the send happened.
        os.write(self._fd, msgspec.json.encode(record) + b"\n")
        os.fsync(self._fd)
        if self.latency:
            await anyio.sleep(self.latency)  # the provider's answer on its way: the widest window for a kill


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> None:
    config = load_config(args.config) if args.config else default_config(args.store)
    with open(args.events, "rb") as f:
        lines = f.read().splitlines()
    adapter = SentLog(Path(args.sent), args.send_latency, stall_every=args.stall_every, stall=args.stall)
    channels = {step.channel: adapter for flow in config.flows for step in flow.steps}
    async with Engine(config, channels=channels, clock=EventClock(), store=args.store) as engine:
        say("started")
        # A flush from a process without the lease only journals; wait for the killed worker's lease to lapse.
        while not engine.is_owner:
            await anyio.sleep(OWNER_POLL)
        say("owner")
        # Read only now: the process before this one is dead, so nothing is being appended any more.
        accepted = await engine.call_store(engine.store.last_seq)
        for start in range(accepted, len(lines), args.chunk):
            await engine.submit_many(lines[start : start + args.chunk])
            if args.pace:
                await anyio.sleep(args.pace)
        say(f"submitted {len(lines) - accepted}")
        # End as the owner: a flush in a process that lost the lease meanwhile (a stall past it, and another
        # worker took it) only journals, and what it held would wait for the next start. So flush until one
        # runs from start to end with the lease held and no restore.
        while True:
            restores = engine.statistics().restores
            await engine.flush(end_of_input=True)
            if engine.is_owner and engine.statistics().restores == restores:
                break
            while not engine.is_owner:
                await anyio.sleep(OWNER_POLL)
    say("done")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", required=True, help="JSON lines, one event each")
    parser.add_argument("--store", required=True, help="the SQLite store file (created if missing)")
    parser.add_argument("--sent", required=True, help="the log of adapter calls (appended to)")
    parser.add_argument("--config", help="a TOML configuration; its [store] path is ignored for --store")
    parser.add_argument("--chunk", type=int, default=256, help="lines per submit_many (default 256)")
    parser.add_argument("--pace", type=float, default=0.0, help="seconds to sleep after each chunk (default 0)")
    parser.add_argument(
        "--send-latency", type=float, default=0.0, help="seconds each send waits after logging (default 0)"
    )
    parser.add_argument(
        "--stall-every", type=int, default=0, help="about one send in N blocks the loop for --stall s (default: none)"
    )
    parser.add_argument("--stall", type=float, default=1.3, help="seconds a stalling send blocks (default 1.3)")
    args = parser.parse_args()
    # The host configures logging, and here the script is the host: warnings and up, to stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    anyio.run(run, args)


if __name__ == "__main__":
    main()
