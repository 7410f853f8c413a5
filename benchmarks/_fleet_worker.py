"""One process of ``fleet_chaos.py``: an engine that runs its share of a partitioned store, or a producer (not a
benchmark).

::

    python benchmarks/_fleet_worker.py engine   --url URL --sent SENT.log --name e3 [--lease-ttl 1]
    python benchmarks/_fleet_worker.py producer --url URL --name p0

Both are live engines (wall clock) on the PostgreSQL store at URL, made with several partitions by
``recoverkit.store.postgres.init``: carts abandoned 1 s after their last activity, one flow with one ``email``
message at once (so the customer's address and consent are needed: they come from other events, which other
partitions may hold), a cap of one message per customer a week, a checkpoint every 0.2 s, a ``--lease-ttl`` lease.

- ``engine``: runs its fair share of the partitions (``Engine(store=URL)``). The adapter appends
  ``<key> <name> <pid> <time>`` to ``--sent`` with one ``os.write`` on an ``O_APPEND`` descriptor and fsyncs
  before ``send`` returns: the file is the truth about adapter calls across a ``kill -9``. Prints ``"ready"``
  once started (its share taken and restored); end of input closes it cleanly (its partitions handed over).
- ``producer``: a journal writer (``pipeline=False``). Reads ``{"track": [event, ...]}`` lines on stdin, tracks each
  and flushes (so they are in the store), then answers ``{"tracked": n}``.

Logs (warnings and up) go to stderr; stdout carries only the protocol.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import anyio
import anyio.to_thread
import msgspec

from recoverkit import Cap, Config, Engine, Flow, FlowStep, Message, StoreConfig


class AppendLog:
    """The email adapter: ``<key> <name> <pid> <time>`` per call, on disk before ``send`` returns."""

    def __init__(self, path: str, name: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._who = f" {name} {os.getpid()}"

    async def send(self, message: Message) -> None:
        os.write(self._fd, f"{message.key}{self._who} {time.time():.3f}\n".encode())
        os.fsync(self._fd)


def say(answer: object) -> None:
    sys.stdout.write(msgspec.json.encode(answer).decode() + "\n")
    sys.stdout.flush()


def config(lease_ttl: float) -> Config:
    return Config(
        abandon_after=1,
        tick_interval=0.01,
        store=StoreConfig(checkpoint_interval=0.2, lease_ttl=lease_ttl),
        flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="email")])],
        caps=[Cap(max=1, per=7 * 86400)],
    )


async def engine(args: argparse.Namespace) -> None:
    channels = {"email": AppendLog(args.sent, args.name)}
    async with Engine(config(args.lease_ttl), channels=channels, store=args.url, owner=args.name):
        say("ready")
        await anyio.to_thread.run_sync(sys.stdin.read)  # until end of input: then close cleanly


async def producer(args: argparse.Namespace) -> None:
    async with Engine(config(args.lease_ttl), store=args.url, owner=args.name, pipeline=False) as writer:
        say("ready")
        while line := await anyio.to_thread.run_sync(sys.stdin.readline):
            events = msgspec.json.decode(line)["track"]
            tracked = sum(writer.track(event) for event in events)
            await writer.flush()
            say({"tracked": tracked})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("role", choices=["engine", "producer"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--sent", help="the log of adapter calls (engine)")
    parser.add_argument("--lease-ttl", type=float, default=1.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    anyio.run(engine if args.role == "engine" else producer, args)


if __name__ == "__main__":
    main()
