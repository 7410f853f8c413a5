"""A worker process as gunicorn would run one: a BackgroundEngine on a SQLite file shared with other workers.

Run by ``tests/test_lease_processes.py`` (not collected by pytest)::

    python tests/workers/lease_worker.py --store DB --log SENDS [--name w0] [--block-sends]

The engine runs live (wall clock) with ``lease_ttl = 1`` s and a checkpoint every 0.2 s. Its one flow sends a
``webhook`` message (no consent or address needed) as soon as a cart is abandoned, one second after its last
activity. The adapter appends ``<key> <name>`` to the SENDS file, one ``os.write`` on an ``O_APPEND``
descriptor followed by ``fsync``, so a line is on disk before ``send`` returns and the lines of several
processes never interleave. With ``--block-sends`` the adapter writes nothing and never returns (a provider
that hangs), which keeps messages in flight for as long as the test likes.

Protocol: the worker prints ``ready`` once its engine has started, then reads one JSON object per line on
stdin and answers each with one JSON line on stdout:

- ``{"track": [event, ...]}``: ``track()`` each event; answers ``{"tracked": n, "refused": m}``;
- ``{"status": true}``: answers ``{"owner", "accepted", "sessions", "behind", "checkpoint", "messages",
  "pending", "in_flight", "pid"}`` from the engine's statistics (``sessions``: sessions the sessionizer holds;
  ``pending``: messages scheduled, not yet due; ``in_flight``: handed to delivery and not finished; all three
  only meaningful at the owner);
- ``{"unknown": true}``: answers ``{"unknown": [key, ...]}``, the store's ledger entries in state ``unknown``;
- ``{"stop": true}`` or end of input: closes the engine (draining what was tracked), answers
  ``{"stopped": true}`` and exits 0.

Logs go to stderr (warnings and up), so that stdout carries only the protocol.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import anyio

from recoverkit import BackgroundEngine, ChannelPolicy, Config, Flow, FlowStep, Message, StoreConfig, WallClock

LEASE_TTL = 1.0
CHECKPOINT_INTERVAL = 0.2
ABANDON_AFTER = 1.0


class AppendLogChannel:
    """Appends ``<key> <worker>`` to a file shared by every worker, durable before ``send`` returns."""

    def __init__(self, path: str, name: str, *, block: bool = False) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._name = name
        self._block = block

    async def send(self, message: Message) -> None:
        if self._block:
            await anyio.sleep(3600)  # a provider that never answers (the channel timeout is longer)
        # One write per line on an O_APPEND descriptor: appends from several processes never interleave.
        os.write(self._fd, f"{message.key} {self._name}\n".encode())
        os.fsync(self._fd)


def config(store: str, *, block: bool) -> Config:
    # The webhook channel needs neither consent nor an address. With --block-sends its timeout is long, so a
    # hanging send stays claimed ("sending") instead of failing and being retried.
    channels = {}
    if block:
        channels["webhook"] = ChannelPolicy(address="none", requires_consent=False, timeout=3600.0)
    return Config(
        abandon_after=ABANDON_AFTER,
        session_timeout=3600.0,  # sessions without a cart stay counted for the whole test
        flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="webhook")])],
        channels=channels,
        store=StoreConfig(path=store, lease_ttl=LEASE_TTL, checkpoint_interval=CHECKPOINT_INTERVAL),
    )


def answer(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="the SQLite file shared by the workers")
    parser.add_argument("--log", required=True, help="the file every adapter call appends its key to")
    parser.add_argument("--name", default=f"pid{os.getpid()}", help="this worker's name in the log")
    parser.add_argument("--block-sends", action="store_true", help="the adapter never returns")
    args = parser.parse_args()
    # The worker is the host here, so it may configure logging (process-global, left to the host by the library).
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    channel = AppendLogChannel(args.log, args.name, block=args.block_sends)
    bg = BackgroundEngine(
        config(args.store, block=args.block_sends),
        channels={"webhook": channel},
        clock=WallClock(),
        close_at_exit=False,
    )
    bg.start()
    answer("ready")
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        if "track" in command:
            results = [bg.track(event) for event in command["track"]]
            answer({"tracked": results.count(True), "refused": results.count(False)})
        elif "status" in command:
            stats = bg.statistics()
            dispatch = stats.stages["dispatch"].extra
            answer(
                {
                    "owner": stats.owner,
                    "accepted": stats.events_accepted,
                    "sessions": stats.stages["sessionize"].extra["sessions"],
                    "behind": stats.journal_behind,
                    "checkpoint": stats.checkpoint_position,
                    "messages": stats.messages,
                    "pending": dispatch["pending"],
                    "in_flight": dispatch["in_flight"] + dispatch["ready"],
                    "pid": os.getpid(),
                }
            )
        elif "unknown" in command:
            answer({"unknown": [entry.key for entry in bg.engine.store.ledger({"unknown"})]})
        elif "stop" in command:
            break
        else:
            answer({"error": f"unknown command {sorted(command)}"})
    bg.close(timeout=5)
    answer({"stopped": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
