"""The watcher keeps its baselines across a hand-over, between real worker processes (``watch_worker.py`` with
``--save-every 1``): the holder reads six hours of a shop (baselines trusted) and saves its state in the store;
it is killed (``kill -9``) a minute before a payment outage; another worker takes the lease, restores the saved
state ("resumed") and, fed the rest, raises the outage's alert at the same minute as a watcher that was never
interrupted (a new watcher, as before, would judge nothing for two hours). A real SQLite file, and PostgreSQL
through the fixtures of tests/store/postgres_cluster.py.

The events after the hand-over are stamped a few minutes ahead of the wall clock, so they are judged in event
time as they are loaded (the watcher's clock is the latest event time), not late.
"""

from __future__ import annotations

import itertools
import math
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from recoverkit.alerts import AlertsConfig, AlertWatcher
from recoverkit.events import Event
from recoverkit.store import SQLiteStore, open_store_url
from recoverkit.synthetic import DEFAULT_START, generate_events
from recoverkit._synthetic_incidents import Incident, inject
from store.postgres_cluster import postgres_cluster, postgres_url  # noqa: F401 - fixtures used by name

from .shop_incident import Hook, hook, load, wait_for
from .test_engine_watch_processes import LEASE_TTL, Workers

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and POSIX process handling"),
]

HOURS = 8
OUTAGE_AT = 6 * 3600  # seconds after the start
CUT = OUTAGE_AT - 60  # the hand-over: a minute before the outage


def shop() -> tuple[list[Event], list[Event]]:
    """The events before and after the hand-over, moved (by whole minutes) so the hand-over is 2-3 minutes
    ahead of now."""
    stop = DEFAULT_START + HOURS * 3600
    events = itertools.takewhile(lambda e: float(e.ts or 0) < stop, generate_events(20_000, seed=5))
    events = inject(events, [Incident("payment_down", DEFAULT_START + OUTAGE_AT, 1200)])
    shift = math.ceil((time.time() + 120 - (DEFAULT_START + CUT)) / 60) * 60
    moved = [msgspec.structs.replace(e, ts=float(e.ts or 0) + shift) for e in events]
    cut = DEFAULT_START + CUT + shift
    return [e for e in moved if float(e.ts or 0) < cut], [e for e in moved if float(e.ts or 0) >= cut]


def uninterrupted(before: list[Event], after: list[Event]) -> list[tuple[str, str, float]]:
    """(kind, incident, minute) of what a watcher never interrupted raises after the hand-over."""
    watcher = AlertWatcher(AlertsConfig(), deliver_in_thread=False)
    for event in before:
        watcher.observe(event)
    already = len(watcher.alerts)
    for event in after:
        watcher.observe(event)
    return [(a.kind, a.incident, a.at) for a in watcher.alerts[already:]]


def received(receiver: Hook) -> list[tuple[str, str, float]]:
    return [(a["kind"], a["incident"], float(a["at"])) for a in receiver.received]


@pytest.fixture
def receiver() -> Iterator[Hook]:
    yield from hook()


def hand_over(tmp_path: Path, store_arg: str, store: Any, receiver: Hook) -> None:
    before, after = shop()
    expected = uninterrupted(before, after)
    assert [(kind, incident.split("@")[0]) for kind, incident, _ in expected] == [
        ("alert", "payment"), ("resolved", "payment")
    ]
    # Today's behaviour, for contrast: a new watcher fed only what follows the hand-over judges nothing.
    fresh = AlertWatcher(AlertsConfig(), deliver_in_thread=False)
    for event in after:
        fresh.observe(event)
    assert fresh.alerts == []

    workers = Workers(tmp_path, store_arg, receiver.url, "--save-every", "1")
    try:
        wait_for(lambda: len(workers.watching()) == 1, 30, "one watcher", workers.describe)
        load(store, before)
        first = workers.watching()[0]
        wait_for(lambda: workers.status(first).get("fed") == len(before), 120, "the six hours read",
                 workers.describe)
        saves = workers.status(first)["saves"]
        wait_for(lambda: workers.status(first).get("saves", 0) >= saves + 2, 10, "a save after the six hours",
                 workers.describe)
        assert receiver.received == []  # nothing happened yet
        workers.kill(first)
        wait_for(lambda: len(workers.watching()) == 1, 10 * LEASE_TTL, "another worker watching", workers.describe)
        second = workers.watching()[0]
        assert second != first and workers.status(second)["started"] == "resumed"
        load(store, after)
        wait_for(lambda: len(receiver.received) >= 2, 120, "the outage's alert and its resolution", workers.describe)
        time.sleep(1.0)
        # The same alerts at the same minutes: detected within the same delay as the uninterrupted watcher.
        assert received(receiver) == expected
        assert workers.status(second)["late"] == 0
    finally:
        codes = workers.stop()
    assert [c for c in codes if c not in (0, -signal.SIGKILL)] == []


def test_a_killed_holders_successor_resumes_its_baselines_sqlite(tmp_path: Path, receiver: Hook) -> None:
    path = tmp_path / "shop.db"
    with SQLiteStore(path) as store:
        hand_over(tmp_path, str(path), store, receiver)


def test_a_killed_holders_successor_resumes_its_baselines_postgres(
    tmp_path: Path, receiver: Hook, postgres_url: str
) -> None:
    from recoverkit.store.postgres import init

    init(postgres_url)
    store = open_store_url(postgres_url)
    try:
        hand_over(tmp_path, postgres_url, store, receiver)
    finally:
        store.close()
