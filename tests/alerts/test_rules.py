"""The watcher's Prometheus figures and the alert rules shipped beside the Grafana dashboard, checked with
promtool (Debian's prometheus package) when it is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from recoverkit.alerts import AlertWatcher, register_metrics
from recoverkit.synthetic import DEFAULT_START
from recoverkit._synthetic_incidents import Incident, inject

from .test_watcher import INCIDENT_AT, shop  # noqa: F401 - the module's event fixture

RULES = Path(__file__).resolve().parents[2] / "examples" / "grafana" / "recoverkit-purchase-path-rules.yml"
promtool = shutil.which("promtool") or ""


@pytest.fixture
def needs_promtool() -> None:
    """Skip without promtool, saying so; fail instead under RECOVERKIT_REQUIRE_PROMTOOL=1 (as .ci/run sets, and
    tests/test_metrics_promtool.py does for the engine's rules)."""
    if not promtool:
        reason = "promtool is not installed (Debian: prometheus)"
        if os.environ.get("RECOVERKIT_REQUIRE_PROMTOOL") == "1":
            pytest.fail(f"{reason}, and RECOVERKIT_REQUIRE_PROMTOOL=1 says these tests must run")
        pytest.skip(reason)


def _exposition(watcher: AlertWatcher) -> str:
    prometheus_client = pytest.importorskip("prometheus_client")
    return prometheus_client.generate_latest(register_metrics(watcher)).decode()


def test_the_metrics_say_which_check_has_an_incident_open(shop: list) -> None:  # noqa: F811
    watcher = AlertWatcher(deliver_in_thread=False)
    for event in inject(shop[: len(shop) * 2 // 3], [Incident("payment_down", INCIDENT_AT, 3 * 3600)]):
        watcher.observe(event)
    text = _exposition(watcher)
    assert 'recoverkit_purchase_path_incidents_open{check="payment_failures"} 1.0' in text
    assert 'recoverkit_purchase_path_incidents_open{check="tracking"} 0.0' in text
    assert 'recoverkit_purchase_path_alerts_total{kind="alert"} 1.0' in text
    stats = watcher.statistics()
    assert f"recoverkit_purchase_path_events_total {float(stats.events)}" in text
    assert f"recoverkit_purchase_path_judgements_total {float(stats.minutes)}" in text


@pytest.mark.usefixtures("needs_promtool")
def test_the_exposition_passes_promtool(tmp_path: Path) -> None:
    watcher = AlertWatcher(deliver_in_thread=False)
    watcher.observe({"event": "page_view", "session_id": "s1", "ts": DEFAULT_START})
    result = subprocess.run([promtool, "check", "metrics"], input=_exposition(watcher), capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.usefixtures("needs_promtool")
def test_the_rules_file_passes_promtool_check() -> None:
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0 and "SUCCESS: 4 rules found" in result.stdout, result.stdout + result.stderr


@pytest.mark.usefixtures("needs_promtool")
def test_the_rules_fire_on_an_open_incident_and_on_a_stalled_watcher(tmp_path: Path) -> None:
    tests = tmp_path / "rules_test.yml"
    tests.write_text(textwrap.dedent(f"""\
        rule_files: ["{RULES}"]
        evaluation_interval: 1m
        tests:
          - interval: 1m
            input_series:
              - series: 'recoverkit_purchase_path_incidents_open{{check="payment_failures"}}'
                values: '0 0 1 1 1 0'
              - series: 'recoverkit_purchase_path_judgements_total'
                values: '0+1x20 20x40'
            alert_rule_test:
              - eval_time: 3m
                alertname: RecoverkitPurchasePathBroken
                exp_alerts:
                  - exp_labels: {{check: payment_failures, severity: page}}
                    exp_annotations:
                      summary: "Purchase path broken (payment_failures): see the recoverkit.alerts log for what and since when"
              - eval_time: 6m
                alertname: RecoverkitPurchasePathBroken
                exp_alerts: []
              - eval_time: 30m
                alertname: RecoverkitPurchasePathWatcherStalled
                exp_alerts: []
              - eval_time: 45m
                alertname: RecoverkitPurchasePathWatcherStalled
                exp_alerts:
                  - exp_labels: {{severity: ticket}}
                    exp_annotations:
                      summary: "recoverkit's purchase-path watcher is not judging any minutes"
        """))
    result = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.usefixtures("needs_promtool")
def test_the_unwatched_rule_fires_when_no_process_runs_the_watcher_not_during_a_hand_over(tmp_path: Path) -> None:
    tests = tmp_path / "rules_test.yml"
    tests.write_text(textwrap.dedent(f"""\
        rule_files: ["{RULES}"]
        evaluation_interval: 1m
        tests:
          - interval: 1m
            input_series:
              # a hands over to b at 2m (b holds from 3m: one scrape with nobody), then b stops at 10m
              - series: 'recoverkit_purchase_path_watcher_running{{instance="a"}}'
                values: '1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0'
              - series: 'recoverkit_purchase_path_watcher_running{{instance="b"}}'
                values: '0 0 0 1 1 1 1 1 1 1 0 0 0 0 0 0 0 0 0 0'
            alert_rule_test:
              - eval_time: 3m
                alertname: RecoverkitPurchasePathUnwatched
                exp_alerts: []
              - eval_time: 9m
                alertname: RecoverkitPurchasePathUnwatched
                exp_alerts: []
              - eval_time: 14m
                alertname: RecoverkitPurchasePathUnwatched
                exp_alerts: []
              - eval_time: 16m
                alertname: RecoverkitPurchasePathUnwatched
                exp_alerts:
                  - exp_labels: {{severity: ticket}}
                    exp_annotations:
                      summary: "Nobody watches the purchase path: no recoverkit process runs the alerts watcher"
        """))
    result = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
