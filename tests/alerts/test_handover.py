"""The engine-run watcher across hand-overs (:mod:`recoverkit._alert_handover`): how a new holder starts from the
saved state (resumed, baselines only, fresh), and the fence: a holder that lost the lease never overwrites its
successor's save. Real SQLite files; engines on the wall clock, in one process (several: test_handover_processes)."""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from recoverkit import Config, Engine, StoreConfig, WallClock
from recoverkit._alert_handover import STATE_NAME, HolderState, restore, snapshot
from recoverkit._alert_runner import ALERTS_LEASE, watch_of
from recoverkit._alert_sources import JournalSource, OutcomeSource
from recoverkit.alerts import AlertsConfig, AlertWatcher
from recoverkit.errors import ConfigError
from recoverkit.events import Event
from recoverkit.store import SavedState, SQLiteStore
from recoverkit.synthetic import DEFAULT_START, generate_events
from recoverkit._synthetic_incidents import Incident, inject

CONFIG = AlertsConfig()
CUT = DEFAULT_START + 6 * 3600 - 60
NOW = 2_000_000_000.0  # wall time of the hand-over in these unit tests


@pytest.fixture(scope="module")
def shop() -> tuple[list[Event], list[Event]]:
    """Eight hours with a payment outage at the sixth: the events before and after the hand-over (a minute before)."""
    stop = DEFAULT_START + 8 * 3600
    events = itertools.takewhile(lambda e: float(e.ts or 0) < stop, generate_events(20_000, seed=5))
    events = list(inject(events, [Incident("payment_down", DEFAULT_START + 6 * 3600, 1200)]))
    return [e for e in events if float(e.ts or 0) < CUT], [e for e in events if float(e.ts or 0) >= CUT]


@pytest.fixture(scope="module")
def saved(shop: tuple[list[Event], list[Event]]) -> SavedState:
    """The state a holder saved at NOW, having read the six hours (as journal position 1234)."""
    watcher = AlertWatcher(CONFIG, deliver_in_thread=False)
    for event in shop[0]:
        watcher.observe(event)
    journal = JournalSource(lambda after, limit: [], 0, after=1234)
    outcomes = OutcomeSource(lambda since: [], 1, since=None, overlap=34.0)
    blob = snapshot(watcher, [journal], outcomes, now=NOW, owner="first")
    assert blob is not None
    return SavedState(name=STATE_NAME, state=blob, saved_at=NOW, owner="first")


def _start(saved: SavedState | None, *, now: float = NOW + 5, contiguous: bool = True) -> Any:
    return restore(saved, CONFIG, [], now=now, journals=1, contiguous=lambda journal, position: contiguous)


def _opened(watcher: AlertWatcher, events: list[Event]) -> list[tuple[str, float]]:
    for event in events:
        watcher.observe(event)
    watcher.finish()
    watcher.close(0)
    return [(a.area, a.at) for a in watcher.alerts if a.kind == "alert"]


def test_a_recent_state_with_the_journal_whole_resumes_where_it_was_saved(
    shop: tuple[list[Event], list[Event]], saved: SavedState
) -> None:
    start = _start(saved)
    assert (start.how, start.positions, start.outcomes_since) == ("resumed", [1234], None)
    uninterrupted = AlertWatcher(CONFIG, deliver_in_thread=False)
    for event in shop[0]:
        uninterrupted.observe(event)
    assert _opened(start.watcher, shop[1]) == _opened(uninterrupted, shop[1])
    assert [area for area, _ in _opened(AlertWatcher(CONFIG, deliver_in_thread=False), shop[1])] == []


def test_entries_trimmed_after_the_saved_positions_keep_only_the_baselines(
    shop: tuple[list[Event], list[Event]], saved: SavedState
) -> None:
    start = _start(saved, contiguous=False)
    assert (start.how, start.positions) == ("baselines", [0])
    holder = msgspec.msgpack.decode(saved.state, type=HolderState)
    kept = AlertWatcher.from_state(holder.watcher, deliver_in_thread=False).statistics()
    assert start.watcher.statistics().minutes == kept.minutes > 5 * 60  # the statistics go on
    # The windows start again at the first event read; the outage is judged once the short one is whole.
    (opened,) = _opened(start.watcher, shop[1])
    assert opened[0] == "payment" and opened[1] - (DEFAULT_START + 6 * 3600) <= 15 * 60


def test_a_state_older_than_the_longest_window_keeps_only_the_baselines(saved: SavedState) -> None:
    start = _start(saved, now=NOW + 900 + 30 + 1)
    assert start.how == "baselines"
    start.watcher.close(0)


def test_a_state_older_than_the_baselines_half_life_is_not_used(saved: SavedState) -> None:
    start = _start(saved, now=NOW + 86_400 + 1)
    assert (start.how, start.watcher.statistics().minutes) == ("fresh", 0)
    start.watcher.close(0)


def test_nothing_saved_starts_fresh() -> None:
    start = _start(None)
    assert (start.how, start.positions, start.outcomes_since) == ("fresh", [0], None)
    start.watcher.close(0)


@pytest.mark.parametrize("blob", [b"junk", msgspec.msgpack.encode({"format": 2})])
def test_an_unreadable_state_starts_fresh_and_says_why(blob: bytes, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="recoverkit.alerts"):
        start = _start(SavedState(name=STATE_NAME, state=blob, saved_at=NOW, owner="x"))
    assert start.how == "fresh"
    assert "purchase_path_state_unreadable" in caplog.text
    start.watcher.close(0)


def test_a_state_is_not_snapshot_while_a_source_holds_items_not_fed() -> None:
    journal = JournalSource(lambda after, limit: [], 0, after=5)
    journal.buffer.append((1.0, 0, object()))
    outcomes = OutcomeSource(lambda since: [], 1, since=None, overlap=34.0)
    watcher = AlertWatcher(CONFIG, deliver_in_thread=False)
    assert snapshot(watcher, [journal], outcomes, now=NOW, owner="a") is None
    journal.buffer.clear()
    state = msgspec.msgpack.decode(snapshot(watcher, [journal], outcomes, now=NOW, owner="a") or b"", type=HolderState)
    assert (state.positions, state.saved_at, state.owner) == ([5], NOW, "a")


def test_save_every_is_validated_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"`alerts.save_every`.*>= 1.0 \(value: 0\)"):
        Config.from_dict({"alerts": {"save_every": 0}})
    assert AlertsConfig().save_every == 60.0


async def until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await anyio.sleep(0.02)


@pytest.mark.anyio
async def test_a_holder_that_lost_the_lease_never_overwrites_its_successors_save(tmp_path: Path) -> None:
    """Two holders: the first believes it still holds the lease (its renewals are faked, as for a stalled process
    whose view is stale) and keeps saving every second; the second took the lease and saved. The store's fence
    refuses every save of the first, and the second's state stays."""
    config = Config(flows=[], store=StoreConfig(lease_ttl=1.0, checkpoint_interval=3600.0),
                    alerts=AlertsConfig(enabled=True, save_every=1.0))
    path = tmp_path / "shop.db"
    with SQLiteStore(path) as first_store, SQLiteStore(path) as second_store:
        async with Engine(config, store=first_store, clock=WallClock(), owner="first") as engine:
            watch = watch_of(engine)
            assert watch is not None
            await until(lambda: watch.saves >= 1, 10, "the first holder's first save")
            assert first_store.load_state(STATE_NAME).owner == "first"  # type: ignore[union-attr]
            real = first_store.take_lease

            def stale(name: str, owner: str, *, ttl: float, now: float) -> Any:
                return "renewed" if name == ALERTS_LEASE else real(name, owner, ttl=ttl, now=now)

            first_store.take_lease = stale  # type: ignore[method-assign]
            await until(lambda: second_store.take_lease(ALERTS_LEASE, "second", ttl=3600, now=time.time())
                        == "taken", 5, "the lease expired and taken by the second")
            assert second_store.save_state(STATE_NAME, b"second's", now=time.time(), lease=ALERTS_LEASE,
                                           owner="second")
            saves = watch.saves
            await anyio.sleep(3.0)  # the first goes on watching, and tries to save every second
            assert watch.running and watch.saves == saves
            saved = second_store.load_state(STATE_NAME)
            assert saved is not None and (saved.state, saved.owner) == (b"second's", "second")
