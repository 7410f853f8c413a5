"""A shop's worker process with ``[alerts] enabled``: an engine on a store shared with other workers.

Run by ``tests/alerts/test_engine_watch_processes.py`` (not collected by pytest)::

    python tests/alerts/watch_worker.py --store DB-OR-URL --status DIR --name w0 [--partitions N]

The engine runs live (wall clock) with ``lease_ttl = 1`` s, no flows (nothing to send: the test is about the
watcher) and checkpoints an hour apart (the journal the test loaded stays whole, so every holder relearns the
same events). Alerts go to the webhook whose URL is in ``RK_TEST_ALERT_WEBHOOK``. With ``--partitions`` the
store is a SQLite file of that many partitions (a PostgreSQL URL brings its own).

Every 0.1 s the worker writes ``DIR/<name>.json`` (atomically): ``{"pid", "running", "takeovers", "fed",
"alerts", "late", "started", "saves"}`` from its engine's watch. It closes its engine and exits 0 when its stdin closes.
Logs go to stderr (warnings and up).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import anyio
import anyio.to_thread

from recoverkit import Config, Engine, StoreConfig, WallClock
from recoverkit._alert_runner import watch_of
from recoverkit.alerts import AlertsConfig
from recoverkit.store import SQLiteStore

LEASE_TTL = 1.0
WEBHOOK_ENV = "RK_TEST_ALERT_WEBHOOK"


def config(save_every: float) -> Config:
    return Config(
        flows=[],
        store=StoreConfig(lease_ttl=LEASE_TTL, checkpoint_interval=3600.0),
        alerts=AlertsConfig(enabled=True, webhook_url_env=WEBHOOK_ENV, save_every=save_every),
    )


def status(engine: Engine, pid: int) -> dict[str, object]:
    watch = watch_of(engine)
    watcher = None if watch is None else watch.watcher
    feed = None if watch is None else watch.feed
    return {
        "pid": pid,
        "running": watcher is not None,
        "takeovers": 0 if watch is None else watch.takeovers,
        "fed": 0 if feed is None else feed.fed,
        "alerts": 0 if watcher is None else len(watcher.alerts),
        "late": 0 if watcher is None else watcher.statistics().late,
        "started": None if watch is None else watch.started,
        "saves": 0 if watch is None else watch.saves,
    }


async def run(args: argparse.Namespace) -> None:
    store: object = args.store
    if args.partitions:
        store = SQLiteStore(args.store, partitions=args.partitions)
    path = Path(args.status) / f"{args.name}.json"
    async with Engine(config(args.save_every), store=store, clock=WallClock(), owner=args.name) as engine:  # type: ignore[arg-type]
        async with anyio.create_task_group() as group:

            async def until_stdin_closes() -> None:
                await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
                group.cancel_scope.cancel()

            group.start_soon(until_stdin_closes)
            while True:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(status(engine, os.getpid())))
                os.replace(tmp, path)
                await anyio.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="the SQLite file or PostgreSQL URL shared by the workers")
    parser.add_argument("--status", required=True, help="the directory the status files go to")
    parser.add_argument("--name", required=True, help="this worker's name (its owner name in the leases)")
    parser.add_argument("--partitions", type=int, default=0, help="a partitioned SQLite file of this many")
    parser.add_argument("--save-every", type=float, default=3600.0,
                        help="[alerts] save_every (default an hour: a new holder relearns from the journal)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    anyio.run(run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
