"""The engine runs the purchase-path watcher itself (``[alerts] enabled``): off by default and then invisible,
checked at start-up, one watcher per shop (the holder of the store's ``alerts`` lease), fed from every journal
of the store and from every process's send outcomes. Real SQLite files and a real webhook receiver on localhost;
the engines live on the wall clock (leases are wall time), in one process here (several processes:
``test_engine_watch_processes.py``)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from recoverkit import Config, Engine, EventClock, StoreConfig, WallClock
from recoverkit._alert_runner import ALERTS_LEASE, watch_of
from recoverkit._alert_sources import JournalSource, MergedFeed, OutcomeSource
from recoverkit.alerts import AlertsConfig, AlertWatcher
from recoverkit.errors import ConfigError, StoreError
from recoverkit.events import PageView, encode_event
from recoverkit.facts import MessageOutcome
from recoverkit.store import MemoryStore, SQLiteStore
from recoverkit.synthetic import DEFAULT_START

from .shop_incident import Hook, hook, load, recent_outage

pytestmark = pytest.mark.anyio

WEBHOOK_ENV = "RK_TEST_ALERT_WEBHOOK"
promtool = shutil.which("promtool") or ""
TTL = 1.0


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    for received in hook():
        monkeypatch.setenv(WEBHOOK_ENV, received.url)
        yield received


def enabled(**alerts: Any) -> Config:
    return Config(
        flows=[],
        store=StoreConfig(lease_ttl=TTL, checkpoint_interval=3600.0),
        alerts=AlertsConfig(enabled=True, webhook_url_env=WEBHOOK_ENV, **alerts),
    )


async def until(predicate: Any, timeout: float, what: str) -> float:
    """Wait (polling) until ``predicate()``; return the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await anyio.sleep(0.02)
    return time.monotonic() - started


# -- configuration and the quiet default -----------------------------------------------------------------------


async def test_by_default_nothing_is_started_no_thread_no_lease(tmp_path: Path) -> None:
    threads = {t.name for t in threading.enumerate()}
    with SQLiteStore(tmp_path / "shop.db") as store:
        async with Engine(Config(flows=[]), store=store, clock=WallClock()) as engine:
            await anyio.sleep(0.3)
            assert watch_of(engine) is None
            assert store.lease_holder(ALERTS_LEASE, now=time.time()) is None
            new = {t.name for t in threading.enumerate()} - threads
            assert not [name for name in new if "alert" in name]
    assert Config().alerts.enabled is False and Config().alerts.replay is False


async def test_a_webhook_variable_that_is_unset_is_a_config_error_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    with SQLiteStore(tmp_path / "shop.db") as store:
        engine = Engine(enabled(), store=store, clock=WallClock())
        with pytest.raises(ConfigError, match=f"webhook_url_env = '{WEBHOOK_ENV}'"):
            await engine.start()
        assert store.lease_holder(ALERTS_LEASE, now=time.time()) is None
        assert store.lease_holder("pipeline", now=time.time()) is None  # nothing left running behind


def test_the_switches_are_validated_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="alerts.enabled"):
        Config.from_dict({"alerts": {"enabled": "yes"}})
    with pytest.raises(ConfigError, match="alerts.replay"):
        Config.from_dict({"alerts": {"replay": "sometimes"}})
    assert Config.from_dict({"alerts": {"enabled": True}}).alerts.enabled is True


async def test_engines_that_send_nothing_or_replay_do_not_watch(tmp_path: Path, receiver: Hook) -> None:
    with SQLiteStore(tmp_path / "shop.db") as store:
        async with Engine(enabled(), store=store, clock=WallClock(), deliver=False) as engine:
            assert watch_of(engine) is None
        async with Engine(enabled(), store=store, clock=EventClock()) as engine:
            assert watch_of(engine) is None
        async with Engine(enabled(replay=True), store=store, clock=EventClock()) as engine:
            watch = watch_of(engine)
            assert watch is not None
            await until(lambda: watch.running, 5, "the replay's watcher")
        assert store.lease_holder(ALERTS_LEASE, now=time.time()) is None  # released at close


@pytest.mark.parametrize("error", [StoreError("the store is unavailable"), RuntimeError("a store's own bug")])
async def test_a_holder_whose_renewals_fail_pauses_and_goes_on_with_the_same_watcher(
    tmp_path: Path, receiver: Hook, error: Exception
) -> None:
    class Refusing:
        """The store, failing to renew any lease (a database that is down for a moment, or a bug: either way
        contained, never the engine's end)."""

        def __init__(self, store: SQLiteStore) -> None:
            self._store = store

        def take_lease(self, *args: Any, **kwargs: Any) -> None:
            raise error

        def __getattr__(self, name: str) -> Any:
            return getattr(self._store, name)

    with SQLiteStore(tmp_path / "shop.db") as store:
        async with Engine(enabled(), store=store, clock=WallClock()) as engine:
            watch = watch_of(engine)
            assert watch is not None
            await until(lambda: watch.running, 5, "the watcher")
            watcher, feed = watch.watcher, watch.feed
            assert feed is not None
            watch._store = Refusing(store)  # type: ignore[assignment]
            await anyio.sleep(TTL)  # half the ttl without a renewal: paused
            engine.track({"event": "page_view", "session_id": "s1"})
            await engine.flush()
            await anyio.sleep(2 * TTL)
            assert feed.fed == 0  # not judging while the lease may have expired
            watch._store = store
            await until(lambda: feed.fed == 1, 5, "the watcher going on")
            assert watch.watcher is watcher and watch.takeovers == 1  # nobody else held it: the same watcher


# -- one watcher per shop, fed from the whole store ---------------------------------------------------------------


@pytest.mark.slow
async def test_the_engine_raises_an_outage_once_from_the_journal(tmp_path: Path, receiver: Hook) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    import recoverkit.metrics

    events = recent_outage()
    with SQLiteStore(tmp_path / "shop.db") as store:
        load(store, events)
        async with Engine(enabled(), store=store, clock=WallClock()) as engine:
            registry = recoverkit.metrics.register(engine)
            watch = watch_of(engine)
            assert watch is not None
            await until(lambda: watch.feed is not None and watch.feed.fed == len(events), 60, "every event fed")
            await until(lambda: len(receiver.kinds()) >= 2, 10, "the alert and its resolution")
            assert watch.running and store.lease_holder(ALERTS_LEASE, now=time.time()) == engine.owner
            assert watch.watcher is not None and watch.watcher.statistics().late == 0
            text = prometheus_client.generate_latest(registry).decode()
            assert "recoverkit_purchase_path_watcher_running 1.0" in text
            assert 'recoverkit_purchase_path_alerts_total{kind="alert"} 1.0' in text
            assert "recoverkit_purchase_path_events_missed_total 0.0" in text
            if promtool:  # the engine's and the watcher's families together pass promtool's lint
                checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                                         timeout=60, check=False)
                assert checked.returncode == 0, checked.stdout + checked.stderr
    assert receiver.kinds() == [("alert", "payment"), ("resolved", "payment")]


@pytest.mark.slow
async def test_two_engines_one_watcher_and_a_hand_over_when_it_closes(tmp_path: Path, receiver: Hook) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    import recoverkit.metrics

    events = recent_outage()
    with SQLiteStore(tmp_path / "shop.db") as first_store, SQLiteStore(tmp_path / "shop.db") as second_store:
        load(first_store, events)
        first = Engine(enabled(), store=first_store, clock=WallClock(), owner="first")
        close_first = anyio.Event()

        async def serve_first() -> None:  # in a task of its own: each engine's task group is its task's
            async with first:
                await close_first.wait()

        async with anyio.create_task_group() as group:
            group.start_soon(serve_first)
            await until(lambda: watch_of(first) is not None and watch_of(first).running, 5, "the first watcher")  # type: ignore[union-attr]
            async with Engine(enabled(), store=second_store, clock=WallClock(), owner="second") as second:
                watches = [watch_of(first), watch_of(second)]
                await until(lambda: len(receiver.kinds()) >= 2, 60, "the alert and its resolution")
                await anyio.sleep(3 * TTL)  # the second keeps asking for the lease meanwhile
                assert [w.running for w in watches if w is not None] == [True, False]
                text = prometheus_client.generate_latest(recoverkit.metrics.register(second)).decode()
                assert "recoverkit_purchase_path_watcher_running 0.0" in text
                assert "recoverkit_purchase_path_alerts_total" not in text  # only where the watcher runs
                close_first.set()
                took = await until(lambda: watches[1] is not None and watches[1].running, 3 * TTL, "the hand-over")
                assert took <= TTL + 0.5
                late = watches[1]
                assert late is not None and late.takeovers == 1
                assert late.started == "resumed"  # the first saved its watcher's state as it closed
                await until(lambda: late.feed is not None and late.feed.sources[0].caught_up, 10,
                            "the new watcher at the journal's end")
                await anyio.sleep(1.5)  # the delivery thread has had time to send, had it meant to
    # The first engine saved its watcher's state as it closed: the second went on from it, the outage resolved
    # already, and raised nothing (each alert once).
    assert receiver.kinds() == [("alert", "payment"), ("resolved", "payment")]


@pytest.mark.slow
async def test_a_partitioned_store_feeds_every_partition_into_the_one_watcher(
    tmp_path: Path, receiver: Hook
) -> None:
    events = recent_outage()
    with SQLiteStore(tmp_path / "shop.db", partitions=4) as store:
        load(store, events, partitioned=True)
        heads = store.partition_heads()
        assert all(head > 0 for head in heads)
        async with Engine(enabled(), store=store, clock=WallClock()) as engine:
            watch = watch_of(engine)
            assert watch is not None
            await until(lambda: watch.feed is not None and watch.feed.fed == len(events), 60, "every event fed")
            await until(lambda: len(receiver.kinds()) >= 2, 10, "the alert and its resolution")
            feed = watch.feed
            assert feed is not None and len(feed.sources) == 4 + 1  # four journals and the send outcomes
            assert [s.position for s in feed.sources[:4]] == heads  # type: ignore[attr-defined]
            assert feed.fed == len(events)
            assert watch.watcher is not None and watch.watcher.statistics().late == 0  # merged in time
    assert receiver.kinds() == [("alert", "payment"), ("resolved", "payment")]


# -- the feed ---------------------------------------------------------------------------------------------------


def test_journals_are_merged_in_time_so_none_is_late(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "shop.db", partitions=2) as store:
        at = [DEFAULT_START + 10 * i for i in range(600)]  # 100 minutes, every event 10 s after the last
        store.append_to([(i % 2, encode_event(PageView(session_id=f"s{i}", ts=ts))) for i, ts in enumerate(at)],
                        now=at[-1])
        merged = AlertWatcher(deliver_in_thread=False)
        feed = MergedFeed(merged, [JournalSource(lambda a, n, p=p: store.read_partition(p, a, n), p)  # type: ignore[misc]
                                   for p in range(2)])
        while not feed.poll(rounds=1):
            pass
        one_after_the_other = AlertWatcher(deliver_in_thread=False)
        for p in range(2):
            for entry in store.read_partition(p, 0, 1000):
                one_after_the_other.observe(entry.data)
    assert merged.statistics().events == 600 and merged.statistics().late == 0
    assert one_after_the_other.statistics().late > 290  # one journal, then the next: the second all but late


def test_a_small_batch_holds_back_what_a_source_behind_has_not_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    import recoverkit._alert_sources as sources

    monkeypatch.setattr(sources, "BATCH", 10)
    store = MemoryStore()
    fast = [encode_event(PageView(session_id=f"f{i}", ts=DEFAULT_START + 60 * i)) for i in range(100)]
    store.append_events(fast, now=DEFAULT_START)
    slow = [{"seq": i + 1, "ts": DEFAULT_START + 600 * i} for i in range(10)]  # every 10 minutes: far ahead

    class Far:
        buffer: list[Any] = []
        caught_up = False
        high = float("-inf")
        read_once = False

        def read(self) -> None:
            if not self.read_once:
                self.read_once = True
                self.buffer = [(float(e["ts"]), 1, ("email", True)) for e in slow]
                self.high = float(slow[-1]["ts"])
            else:
                self.caught_up = True

    watcher = AlertWatcher(deliver_in_thread=False)
    feed = MergedFeed(watcher, [JournalSource(store.read_events, 0), Far()])
    assert feed.poll(rounds=1) is False  # both behind: only what both reached went in
    assert watcher.statistics().events == 10
    while not feed.poll():
        pass
    assert watcher.statistics().events == 100 and watcher.statistics().late == 0


def test_a_send_outcome_recorded_after_its_minute_was_judged_counts_in_the_next_minute() -> None:
    watcher = AlertWatcher(deliver_in_thread=False)
    watcher.observe(PageView(session_id="s1", ts=DEFAULT_START))
    watcher.observe(PageView(session_id="s2", ts=DEFAULT_START + 300))  # judges the first four minutes
    watcher.observe_send("sms", False, DEFAULT_START + 10)  # a send of the first minute, read back too late
    assert watcher.statistics().late == 1
    watcher.observe_send("sms", False, DEFAULT_START + 10, catch_up=True)  # as the engine's feed does
    assert watcher.statistics().late == 1


def test_sends_count_from_the_outcomes_every_process_recorded(tmp_path: Path) -> None:
    """The outcome facts are what every sending process writes to the shared store (here another connection to
    the same file, as another worker's would be): a channel whose sends go dead is one incident, however many
    processes sent."""
    config = AlertsConfig()
    start = DEFAULT_START
    with SQLiteStore(tmp_path / "shop.db") as store, SQLiteStore(tmp_path / "shop.db") as other_process:
        facts, events = [], []
        for minute in range(6 * 60):
            at = start + 60 * minute
            events += [PageView(session_id=f"s{minute}-{i}", ts=at + 5 * i) for i in range(10)]
            failing = minute >= 5 * 60 + 30
            for i in range(12):  # 12 sends a minute, one in 100 dead as usual; every one dead after 5 h 30
                dead = failing or (minute * 12 + i) % 100 == 0
                facts.append(MessageOutcome(key=f"k{minute}-{i}", cart_key=f"c{minute}-{i}", contact_key="x",
                                            flow="f", step=0, outcome="dead" if dead else "sent",
                                            at=at + 5 * i, channel="sms"))
            facts.append(MessageOutcome(key=f"k{minute}-c", cart_key="c", contact_key="x", flow="f", step=0,
                                        outcome="cancelled_purchase", at=at + 1, channel="sms"))  # not a send
        half = len(facts) // 2
        store.record_facts(facts[:half])
        other_process.record_facts(facts[half:])
        store.append_events([encode_event(e) for e in events], now=start)
        watcher = AlertWatcher(config, deliver_in_thread=False)
        outcomes = OutcomeSource(lambda since: store.outcomes(since=since), 1, since=None, overlap=32)
        feed = MergedFeed(watcher, [JournalSource(store.read_events, 0), outcomes])
        while not feed.poll():
            pass
        watcher.finish()
    assert [(a.kind, a.area) for a in watcher.alerts] == [("alert", "channel:sms")]
    assert feed.fed == len(events) + 12 * 6 * 60
