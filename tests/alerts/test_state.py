"""The watcher's saved state: a watcher restored from it and fed the rest of the stream raises exactly the alerts
the uninterrupted one raises; an unknown format is refused naming it; another config keeps the baselines."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from recoverkit.alerts import Alert, AlertsConfig, AlertWatcher, StateFormatError
from recoverkit.events import Event
from recoverkit.synthetic import DEFAULT_START, generate_events
from recoverkit._synthetic_incidents import Incident, inject

HOURS = 9
INCIDENT_AT = DEFAULT_START + 6 * 3600 + 17  # after the warm-up, off the minute


@pytest.fixture(scope="module")
def shop() -> list[Event]:
    """Nine hours of the synthetic shop with the payment provider down for 20 minutes at the sixth hour."""
    end = DEFAULT_START + HOURS * 3600
    events = itertools.takewhile(lambda e: float(e.ts or 0) < end, generate_events(20_000, seed=7))
    return list(inject(events, [Incident("payment_down", INCIDENT_AT, 1200)]))


@pytest.fixture(scope="module")
def uninterrupted(shop: list[Event]) -> list[Alert]:
    watcher = AlertWatcher(deliver_in_thread=False)
    for event in shop:
        watcher.observe(event)
    watcher.finish()
    alerts = watcher.alerts
    assert [(a.kind, a.area) for a in alerts] == [("alert", "payment"), ("resolved", "payment")]
    return alerts


def _index_at(shop: list[Event], ts: float) -> int:
    return next(i for i, e in enumerate(shop) if float(e.ts or 0) >= ts)


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(6 * 3600 - 60, id="just-before-the-incident"),
        pytest.param(6 * 3600 + 600, id="incident-open"),
        pytest.param(6 * 3600 + 1500, id="incident-over-not-resolved"),
        pytest.param(3600, id="before-the-baselines-are-trusted"),
    ],
)
def test_a_restored_watcher_raises_exactly_what_the_uninterrupted_one_raises(
    shop: list[Event], uninterrupted: list[Alert], cut: float
) -> None:
    split = _index_at(shop, DEFAULT_START + cut)
    first = AlertWatcher(deliver_in_thread=False)
    for event in shop[:split]:
        first.observe(event)
    before = first.alerts
    restored = AlertWatcher.from_state(first.state(), deliver_in_thread=False)
    for event in shop[split:]:
        restored.observe(event)
    restored.finish()
    assert before + restored.alerts == uninterrupted
    stats = restored.statistics()
    assert stats.events == len(shop) and stats.minutes == HOURS * 60


def test_a_state_round_trips_to_the_same_bytes(shop: list[Event]) -> None:
    watcher = AlertWatcher(deliver_in_thread=False)
    for event in shop[: _index_at(shop, INCIDENT_AT + 600)]:
        watcher.observe(event)
    state = watcher.state()
    again = AlertWatcher.from_state(state, deliver_in_thread=False)
    assert again.state() == state
    assert again.statistics().open_incidents == ("payment",) == watcher.statistics().open_incidents


def test_a_new_watcher_state_restores_to_one_that_judges_from_its_first_event() -> None:
    restored = AlertWatcher.from_state(AlertWatcher(deliver_in_thread=False).state(), deliver_in_thread=False)
    assert restored.statistics().minutes == 0 and restored.advance(DEFAULT_START + 3600) == []


def test_an_unknown_format_is_refused_naming_it() -> None:
    blob = msgspec.msgpack.encode({"format": 99, "windows": [420.0]})
    with pytest.raises(StateFormatError, match=r"unknown `format` 99, expected 1"):
        AlertWatcher.from_state(blob)


@pytest.mark.parametrize("blob", [b"", b"\x00\x01", msgspec.msgpack.encode({"windows": []})])
def test_bytes_that_are_not_a_state_are_refused_saying_what_was_expected(blob: bytes) -> None:
    with pytest.raises(StateFormatError, match=r"expected a msgpack map with a `format` field"):
        AlertWatcher.from_state(blob)


def test_a_state_of_format_1_that_does_not_decode_is_refused() -> None:
    with pytest.raises(StateFormatError, match=r"format 1\) does not decode"):
        AlertWatcher.from_state(msgspec.msgpack.encode({"format": 1, "windows": "x"}))


@pytest.mark.parametrize("windows", [[300.0, 600.0], [420.0, 1800.0], [420.0]])
def test_a_state_restored_under_other_windows_keeps_its_baselines_and_still_detects(
    shop: list[Event], windows: list[float]
) -> None:
    split = _index_at(shop, INCIDENT_AT - 120)
    first = AlertWatcher(deliver_in_thread=False)
    for event in shop[:split]:
        first.observe(event)
    restored = AlertWatcher.from_state(first.state(), AlertsConfig(windows=windows), deliver_in_thread=False)
    assert restored.config.windows == windows
    for event in shop[split:]:
        restored.observe(event)
    restored.finish()
    opened = [a for a in restored.alerts if a.kind == "alert"]
    # Judged at once (the baselines came with the state): within ten minutes of the outage's start.
    assert [a.area for a in opened] == ["payment"] and opened[0].at - INCIDENT_AT <= 600
