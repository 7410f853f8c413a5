"""The purchase-path watcher on the synthetic shop: each injected incident raises one alert with a plain
explanation, as a warning record and through the sinks; a replay raises exactly what a live run raised."""

from __future__ import annotations

import itertools
import logging
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from recoverkit.alerts import Alert, AlertsConfig, AlertWatcher, MemoryAlertSink, replay_file
from recoverkit.datasets import write_jsonl
from recoverkit.config import Config
from recoverkit.errors import ConfigError
from recoverkit.events import Event, PageView
from recoverkit.synthetic import DEFAULT_START, generate_events
from recoverkit._synthetic_incidents import Incident, inject

HOURS = 10
INCIDENT_AT = DEFAULT_START + 6 * 3600 + 17  # after the watcher's warm-up, off the minute


@pytest.fixture(scope="module")
def shop() -> list[Event]:
    """Ten hours of the synthetic shop (about 70,000 events), generated once for the module."""
    end = DEFAULT_START + HOURS * 3600
    return list(itertools.takewhile(lambda e: float(e.ts or 0) < end, generate_events(20_000, seed=7)))


def _watch(events: list[Event], **options: Any) -> tuple[AlertWatcher, MemoryAlertSink]:
    sink = MemoryAlertSink()
    watcher = AlertWatcher(AlertsConfig(**options), sinks=[sink], deliver_in_thread=False)
    for event in events:
        watcher.observe(event)
    watcher.finish()
    return watcher, sink


def _opened(watcher: AlertWatcher) -> list[Alert]:
    return [alert for alert in watcher.alerts if alert.kind == "alert"]


def test_a_clean_shop_raises_no_alert(shop: list[Event]) -> None:
    watcher, sink = _watch(shop)
    assert watcher.alerts == [] and sink.alerts == []
    stats = watcher.statistics()
    assert stats.events == len(shop) and stats.late == 0 and stats.minutes == HOURS * 60


def test_payment_provider_down_is_one_alert_within_ten_minutes_saying_what_failed(
    shop: list[Event], caplog: pytest.LogCaptureFixture
) -> None:
    incident = Incident("payment_down", INCIDENT_AT, 1200)
    with caplog.at_level(logging.INFO, logger="recoverkit.alerts"):
        watcher, sink = _watch(list(inject(shop, [incident])))
    (alert,) = _opened(watcher)
    assert alert.area == "payment" and alert.check == "payment_failures"
    assert 0 < alert.at - incident.start <= 600
    assert alert.text.startswith("payment step: ") and "of attempts failed in the last 7 minutes, usually" in alert.text
    assert alert.text.endswith("; provider_unavailable up")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage().split(" ", 1)[0] for r in warnings] == ["purchase_path_alert"]
    assert warnings[0].name == "recoverkit.alerts" and warnings[0].text == alert.text  # type: ignore[attr-defined]
    # The incident closes once the windows have been clean for resolve_after; the sink got both, in order.
    assert [a.kind for a in watcher.alerts] == ["alert", "resolved"]
    assert sink.alerts == watcher.alerts
    assert watcher.alerts[1].incident == alert.incident and "back to usual" in watcher.alerts[1].text


def test_a_broken_form_field_is_one_checkout_alert_naming_the_field(shop: list[Event]) -> None:
    incident = Incident("form_broken", INCIDENT_AT, 2 * 3600, "phone")
    watcher, _ = _watch(list(inject(shop, [incident])))
    (alert,) = _opened(watcher)
    assert alert.area == "checkout" and 0 < alert.at - incident.start <= 600
    assert alert.text.startswith(("checkout form: field phone rejected", "checkout step: "))


def test_tracking_lost_on_one_page_type_names_it(shop: list[Event]) -> None:
    incident = Incident("tracking_lost", INCIDENT_AT, 2 * 3600, "search")
    watcher, _ = _watch(list(inject(shop, [incident])))
    (alert,) = _opened(watcher)
    assert alert.area == "tracking:page:search" and 0 < alert.at - incident.start <= 600
    assert alert.text.startswith("tracking: page type search: ") and "tracking may be broken" in alert.text


def test_an_incident_still_open_is_reminded_once_per_realert_period(shop: list[Event]) -> None:
    incident = Incident("tracking_lost", INCIDENT_AT, 2.5 * 3600, "category")
    watcher, _ = _watch(list(inject(shop, [incident])), realert_after=3600)
    kinds = [a.kind for a in watcher.alerts]
    assert kinds[0] == "alert" and kinds.count("alert") == 1
    assert kinds.count("reminder") == 2  # broken for 2.5 hours: reminders at +1 h and +2 h, then resolved
    assert kinds[-1] == "resolved"
    assert len({a.incident for a in watcher.alerts}) == 1


def _live(events: list[Event], lateness: float, seed: int) -> list[Alert]:
    """A live run: each event reaches the watcher up to `lateness` after its ts, out of order within that, with
    the engine's wall clock advancing it in between (ticks every 5 seconds, through quiet stretches too)."""
    rng = random.Random(seed)
    arrivals = sorted((float(e.ts or 0) + rng.uniform(0, lateness), i) for i, e in enumerate(events))
    watcher = AlertWatcher(AlertsConfig(lateness=lateness), deliver_in_thread=False)
    tick = arrivals[0][0]
    for at, index in arrivals:
        while tick + 5 < at:
            tick += 5
            watcher.advance(tick)
        watcher.advance(at)
        watcher.observe(events[index])
    end = arrivals[-1][0]
    for step in range(1, 400):  # the clock runs on after the last event
        watcher.advance(end + 5 * step)
    assert watcher.statistics().late == 0
    return watcher.alerts


def test_an_event_time_replay_raises_exactly_the_alerts_of_the_live_run(shop: list[Event], tmp_path: Path) -> None:
    incidents = [Incident("payment_down", INCIDENT_AT, 1200), Incident("tracking_lost", INCIDENT_AT + 5400, 3600, "home")]
    events = list(inject(shop, incidents))
    live = _live(events, lateness=60, seed=3)
    replay = AlertWatcher(AlertsConfig(lateness=60), deliver_in_thread=False)
    for event in events:  # the journal's order is the arrival order; the file's here is ts order: same minutes
        replay.observe(msgspec.json.encode(event))
    replay.finish(events[-1].ts + 400 * 5 + 60)  # type: ignore[operator]
    assert [a.kind for a in live].count("alert") == 2
    assert replay.alerts == live
    # From a file: the same alerts up to the file's last minute (the live clock ran on 33 minutes past it, so it
    # could also close incidents the file's end leaves open).
    write_jsonl(events, tmp_path / "events.jsonl.gz")
    sink = MemoryAlertSink()
    from_file = replay_file(tmp_path / "events.jsonl.gz", AlertsConfig(lateness=60), sinks=[sink])
    last_minute = (float(events[-1].ts or 0) // 60 + 1) * 60
    assert from_file == sink.alerts == [a for a in live if a.at <= last_minute]


def test_events_for_a_minute_already_judged_are_counted_late_and_left_out() -> None:
    watcher = AlertWatcher(deliver_in_thread=False)
    watcher.observe(PageView(session_id="s1", ts=DEFAULT_START + 10))
    watcher.observe(PageView(session_id="s2", ts=DEFAULT_START + 200))  # 60 s lateness: minute 0 and 1 judged
    watcher.observe(PageView(session_id="s3", ts=DEFAULT_START + 30))
    watcher.observe(PageView(session_id="s4", ts=DEFAULT_START + 125))  # minute 2: not judged yet
    stats = watcher.statistics()
    assert (stats.events, stats.late, stats.minutes) == (3, 1, 2)


def test_an_event_without_ts_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="PageView has no `ts`"):
        AlertWatcher().observe({"event": "page_view", "session_id": "s1"})


def test_page_types_are_bounded_so_a_shop_cannot_grow_the_watcher_without_end() -> None:
    watcher = AlertWatcher(deliver_in_thread=False)
    for n in range(500):
        watcher.observe(PageView(session_id="s", ts=DEFAULT_START + n / 100, page_type=f"type-{n}"))
    pages = watcher._labels.keys("page")
    assert len(pages) == 33 and "page:other" in pages


def _steady(minutes: int, per_minute: Callable[[int], int], start: float = DEFAULT_START) -> list[Event]:
    events: list[Event] = []
    for minute in range(minutes):
        count = per_minute(minute)
        events += [PageView(session_id=f"s{minute}-{i}", ts=start + minute * 60 + (i + 0.5) * 60 / count,
                            page_type="home") for i in range(count)]
    return events


def test_all_events_dropping_is_judged_against_the_same_hour_of_the_week() -> None:
    # Busy days, quiet nights: 40 events a minute from 08:00 to 20:00 UTC, 4 at night, for eight days. The
    # nights are usual for their hour of the week; the same shop going silent one afternoon is not.
    def rate(minute: int) -> int:
        return 40 if 8 <= (minute // 60) % 24 < 20 else 4

    days = 8
    silent = DEFAULT_START + (days * 1440 + 14 * 60) * 60  # day 9, 14:00: nothing arrives any more
    events = _steady(days * 1440 + 14 * 60, rate)
    watcher = AlertWatcher(deliver_in_thread=False)
    for event in events:
        watcher.observe(event)
    assert watcher.alerts == []  # quiet nights, and the mornings waking up, are usual for their hour of the week
    for second in range(0, 15 * 60, 5):  # the engine's clock ticks on; no events come
        watcher.advance(silent + second)
    (alert,) = watcher.alerts
    assert alert.area == "traffic" and alert.baseline == "hour of week" and alert.at - silent <= 600
    assert re.fullmatch(r"tracking: \d+ events in the last 7 minutes, usually about 280 at this hour of the week; "
                        r"tracking may be broken", alert.text)


def test_alerts_config_section_is_strict_naming_key_value_and_expectation() -> None:
    assert Config.from_dict({"alerts": {"windows": [300, 1200], "min_ratio": 3}}).alerts.windows == [300, 1200]
    with pytest.raises(ConfigError, match=r"`alerts.windows`: expected distinct durations in increasing order"):
        Config.from_dict({"alerts": {"windows": [900, 300]}})
    with pytest.raises(ConfigError, match=r"`alerts.significance`.*<= 0.01 \(value: 0.5\)"):
        Config.from_dict({"alerts": {"significance": 0.5}})
    with pytest.raises(ConfigError, match=r"`alerts`: Object contains unknown field `windw`"):
        Config.from_dict({"alerts": {"windw": [300]}})
    with pytest.raises(ConfigError, match=r"`alerts.webhook_url_env`"):
        Config.from_dict({"alerts": {"webhook_url_env": "https://hooks.example/T0KEN"}})
