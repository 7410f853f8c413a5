"""Feeding the watcher without touching the engine: from a real SQLite store's journal (what every worker
journaled, in journal order) and from a channel wrapped to report its sends."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import anyio
import pytest

from recoverkit.alerts import AlertsConfig, AlertWatcher, JournalFeed, MemoryAlertSink, WatchedChannel
from recoverkit.channels.memory import MemoryChannel
from recoverkit.clock import FakeClock
from recoverkit.errors import TransientDeliveryError
from recoverkit.events import PageView, encode_event
from recoverkit.store import SQLiteStore
from recoverkit.synthetic import DEFAULT_START, generate_events
from recoverkit._synthetic_incidents import Incident, inject

from channels.contract import make_message


def test_a_journal_feed_raises_the_alerts_of_the_events_journaled(tmp_path: Path) -> None:
    incident = Incident("payment_down", DEFAULT_START + 6 * 3600, 1200)
    end = DEFAULT_START + 8 * 3600
    events = list(inject(itertools.takewhile(lambda e: float(e.ts or 0) < end, generate_events(20_000, seed=5)),
                         [incident]))
    direct = AlertWatcher(deliver_in_thread=False)
    for event in events:
        direct.observe(event)
    with SQLiteStore(tmp_path / "shop.db") as store:
        for chunk in _chunks(events, 500):
            store.append_events([encode_event(e) for e in chunk], now=float(chunk[-1].ts or 0))
        sink = MemoryAlertSink()
        watcher = AlertWatcher(sinks=[sink], deliver_in_thread=False)
        feed = JournalFeed(store, watcher)
        while feed.poll():
            pass
        assert feed.position == store.last_seq() == len(events) and feed.missed == feed.invalid == 0
    assert [a.kind for a in sink.alerts] == ["alert", "resolved"] and sink.alerts[0].area == "payment"
    assert watcher.alerts == direct.alerts


def _chunks(items: list, size: int) -> list[list]:  # type: ignore[type-arg]
    return [items[i : i + size] for i in range(0, len(items), size)]


def test_a_feed_that_falls_behind_a_trim_counts_what_it_missed(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "shop.db") as store:
        store.append_events([encode_event(PageView(session_id=f"s{i}", ts=DEFAULT_START + i)) for i in range(10)],
                            now=DEFAULT_START)
        store.trim_events(4)
        watcher = AlertWatcher(deliver_in_thread=False)
        feed = JournalFeed(store, watcher)
        assert feed.poll() == 6 and feed.missed == 4 and watcher.statistics().events == 6


def test_a_feed_with_a_live_clock_advances_the_watcher_when_no_events_come(tmp_path: Path) -> None:
    clock = FakeClock(DEFAULT_START)
    with SQLiteStore(tmp_path / "shop.db") as store:
        store.append_events([encode_event(PageView(session_id="s", ts=DEFAULT_START + 1))], now=DEFAULT_START)
        watcher = AlertWatcher(deliver_in_thread=False)
        feed = JournalFeed(store, watcher, clock=clock)
        feed.poll()
        clock.advance(600)
        assert feed.poll() == 0
        assert watcher.statistics().minutes == 9  # minutes 0-8 judged: the clock is 10 minutes on, less lateness


def test_a_feed_polls_from_its_thread_until_stopped(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "shop.db", ) as store:
        watcher = AlertWatcher(deliver_in_thread=False)
        feed = JournalFeed(store, watcher)
        feed.start(interval=0.01)
        store.append_events([encode_event(PageView(session_id="s", ts=DEFAULT_START))], now=DEFAULT_START)
        for _ in range(500):
            if watcher.statistics().events:
                break
            anyio.run(anyio.sleep, 0.01)
        feed.stop()
        assert watcher.statistics().events == 1


class _Failing:
    def __init__(self) -> None:
        self.fail = False
        self.inner = MemoryChannel()

    async def send(self, message: object) -> None:
        if self.fail:
            raise TransientDeliveryError("provider busy")
        await self.inner.send(message)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_watched_channel_reports_sends_failing_as_one_alert() -> None:
    clock = FakeClock(DEFAULT_START)
    sink = MemoryAlertSink()
    watcher = AlertWatcher(AlertsConfig(lateness=0), sinks=[sink], deliver_in_thread=False)
    inner = _Failing()
    channel = WatchedChannel(inner, "sms", watcher, clock)
    for n in range(4 * 60 * 4):  # four hours, four sends a minute, all delivered
        await channel.send(make_message(key=f"k{n}"))
        clock.advance(15)
    inner.fail = True
    for n in range(10 * 4):  # ten minutes of the provider refusing
        with pytest.raises(TransientDeliveryError):
            await channel.send(make_message(key=f"f{n}"))
        clock.advance(15)
    (alert,) = sink.alerts
    assert alert.area == "channel:sms" and alert.check == "sends_failing"
    assert re.fullmatch(r"channel sms: \d+ % of sends failed in the last 7 minutes, usually 0\.\d %", alert.text)
    assert alert.at - (DEFAULT_START + 4 * 3600) <= 180
    assert len(inner.inner.sent) == 960
