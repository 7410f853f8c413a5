"""The measured figures of issue 17 section 3 on fixed seeds: every injected incident detected within 10 minutes of
event time, no false alarm on the same days clean; and benchmarks/eval_alerts.py's smoke run."""

from __future__ import annotations

import pytest

from recoverkit._alert_eval import evaluate_week, incidents_for
from recoverkit.synthetic import DEFAULT_START

from test_benchmarks import run_quick

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.mark.parametrize("seed", [5, 6])
def test_every_incident_is_detected_within_ten_minutes_and_clean_days_raise_nothing(seed: int) -> None:
    result = evaluate_week(seed, days=2.5)
    assert [d.incident.kind for d in result.detections] == ["payment_down", "form_broken", "tracking_lost"]
    for detection in result.detections:
        assert detection.delay is not None and 0 < detection.delay <= 600, detection
    assert result.false_alarms_clean == () and result.false_alarms_with_incidents == ()
    assert result.events > 400_000


def test_incidents_come_after_the_first_day_apart_from_one_another() -> None:
    incidents = incidents_for(3, 7.0)
    assert all(DEFAULT_START + 86_400 <= i.start and i.end <= DEFAULT_START + 7 * 86_400 for i in incidents)
    assert all(a.end < b.start for a, b in zip(incidents, incidents[1:]))
    assert incidents == incidents_for(3, 7.0)


def test_eval_alerts_quick_reports_detections_and_false_alarms() -> None:
    doc = run_quick("eval_alerts.py")
    assert doc["quick"] is True and doc["injected"] == 3 and doc["simulated_weeks"] == pytest.approx(2 / 7)
    assert doc["targets"]["all_detected_within_10_min"] is True
    assert {i["kind"] for i in doc["incidents"]} == {"payment_down", "form_broken", "tracking_lost"}
    assert "load average" in doc["machine"]
