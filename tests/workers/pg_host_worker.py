"""One "host": a live engine on the PostgreSQL store every host shares (``tests/store/test_postgres_hosts.py``).

::

    python tests/workers/pg_host_worker.py --url URL --sent SENT.log --name host-a

The engine runs ``Engine(config, store=URL)`` on the wall clock: carts abandoned 1 s after their last
activity, one flow with one ``email`` message at once (so the shopper's address and consent are needed), a cap
of one message per customer a week, a checkpoint every 0.2 s and a 1 s lease. Every host journals what it
tracks into the store's journal; on a one-partition store the host holding the pipeline lease processes all of
it, on a partitioned one each host runs its share of the partitions. The
adapter appends ``<key> <name> <pid>`` to ``--sent`` with one ``os.write`` on an ``O_APPEND`` descriptor,
then fsyncs, before ``send`` returns: the file is the truth about adapter calls across a ``kill -9``, and
lines from several processes never interleave.

Protocol: prints ``ready`` once the engine runs, then reads one JSON command per line on stdin and answers each
with one JSON line on stdout:

- ``{"track": [event, ...]}``: ``engine.track()`` each, then ``await engine.flush()`` (so they are in the
  shared journal); answers ``{"tracked": n}``;
- ``{"status": true}``: answers ``{"owner": bool, "owned": int, "pid": int}`` (``owned``: how many partitions
  this host runs; on a one-partition store 1 while it holds the pipeline lease);
- end of input: closes the engine and exits 0.

Logs go to stderr (warnings and up), so stdout carries only the protocol.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import anyio
import anyio.to_thread
import msgspec

from recoverkit import Cap, Config, Engine, Flow, FlowStep, Message, StoreConfig

LEASE_TTL = 1.0


class AppendLog:
    """The email adapter: ``<key> <name> <pid>`` per call, on disk before ``send`` returns."""

    def __init__(self, path: str, name: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._line = f" {name} {os.getpid()}\n"

    async def send(self, message: Message) -> None:
        os.write(self._fd, (message.key + self._line).encode())
        os.fsync(self._fd)


def say(answer: object) -> None:
    sys.stdout.write(answer if isinstance(answer, str) else msgspec.json.encode(answer).decode())
    sys.stdout.write("\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> None:
    config = Config(
        abandon_after=1,
        tick_interval=0.01,
        store=StoreConfig(checkpoint_interval=0.2, lease_ttl=LEASE_TTL),
        flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="email")])],
        caps=[Cap(max=1, per=7 * 86400)],
    )
    async with Engine(config, channels={"email": AppendLog(args.sent, args.name)}, store=args.url) as engine:
        say("ready")
        while line := await anyio.to_thread.run_sync(sys.stdin.readline):
            command = msgspec.json.decode(line)
            if "track" in command:
                tracked = sum(engine.track(event) for event in command["track"])
                await engine.flush()
                say({"tracked": tracked})
            elif "status" in command:
                partitions = engine.partitions  # None on a one-partition store
                owned = (1 if engine.is_owner else 0) if partitions is None else len(partitions["owned"])
                say({"owner": engine.is_owner, "owned": owned, "pid": os.getpid()})
            else:
                say({"error": f"unknown command {sorted(command)}"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", required=True, help="the PostgreSQL store's URL (made by `recoverkit db init`)")
    parser.add_argument("--sent", required=True, help="the log of adapter calls (appended to)")
    parser.add_argument("--name", required=True, help="the host's name in the log")
    args = parser.parse_args()
    # The host configures logging, and here the script is the host: warnings and up, to stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    anyio.run(run, args)


if __name__ == "__main__":
    main()
