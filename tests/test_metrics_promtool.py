"""The exposition of recoverkit.metrics and the alert rules shipped beside the Grafana dashboard, checked with
Prometheus's own promtool (Debian's ``prometheus`` package): the exposition parses (``check metrics``), the rules
load (``check rules``) and fire as meant (``test rules``).

Without promtool the tests skip, saying so; with ``RECOVERKIT_REQUIRE_PROMTOOL=1`` (as ``.ci/run`` sets) they
fail instead: CI must run them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import anyio
import pytest

pytest.importorskip("prometheus_client", reason="the metrics extra is not installed (pip install '.[metrics]')")

from prometheus_client import generate_latest

from recoverkit import Engine, FakeClock, MemoryChannel, PermanentDeliveryError
from recoverkit.metrics import register
from test_metrics import ABANDON_AFTER, DELAY, T0, config, shopper

RULES = Path(__file__).resolve().parent.parent / "examples" / "grafana" / "recoverkit-rules.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("RECOVERKIT_REQUIRE_PROMTOOL") == "1":
            pytest.fail(f"{reason}, and RECOVERKIT_REQUIRE_PROMTOOL=1 says these tests must run")
        pytest.skip(reason)
    return found


def _exposition() -> bytes:
    """A scrape after a shop's carts: one message sent, one dead-lettered, one pending."""
    email = MemoryChannel()

    async def run() -> bytes:
        clock = FakeClock(T0)
        async with Engine(config(), channels={"email": email}, clock=clock) as engine:
            registry = register(engine)
            for event in [*shopper("s1", "c1"), *shopper("s2", "c2")]:
                engine.track(event)
            await engine.flush()
            email.fail_next(1, PermanentDeliveryError("HTTP 410"))
            clock.advance(ABANDON_AFTER + DELAY)
            await engine.flush()
            for event in shopper("s3", "c3"):
                engine.track(event)
            clock.advance(ABANDON_AFTER + 1)
            await engine.flush()
            return generate_latest(registry)

    return anyio.run(run)


def test_the_exposition_passes_promtool_check_metrics(promtool: str) -> None:
    text = _exposition()
    assert b"recoverkit_message_outcomes_total{" in text and b"recoverkit_info{" in text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_the_rules_file_passes_promtool_check_rules(promtool: str) -> None:
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60,
                            check=False)  # fmt: skip
    assert result.returncode == 0 and "SUCCESS: 9 rules found" in result.stdout, result.stdout + result.stderr


def test_the_rules_fire_on_dead_letters_and_a_failing_channel_and_not_on_a_healthy_one(
    promtool: str, tmp_path: Path
) -> None:
    tests = tmp_path / "rules_test.yml"
    tests.write_text(
        textwrap.dedent(f"""
        rule_files: ["{RULES}"]
        evaluation_interval: 1m
        tests:
          - interval: 1m
            input_series:
              # sms: 30 sent and 15 dead an hour (a third dead); email: 60 sent, none dead.
              - series: 'recoverkit_message_outcomes_total{{outcome="sent", channel="sms", flow="f", job="shop"}}'
                values: '0+0.5x120'
              - series: 'recoverkit_message_outcomes_total{{outcome="dead", channel="sms", flow="f", job="shop"}}'
                values: '0+0.25x120'
              - series: 'recoverkit_message_outcomes_total{{outcome="sent", channel="email", flow="f", job="shop"}}'
                values: '0+1x120'
              - series: 'recoverkit_message_outcomes_total{{outcome="dead", channel="email", flow="f", job="shop"}}'
                values: '0+0x120'
              - series: 'recoverkit_pipeline_lease_owner{{job="shop"}}'
                values: '1x120'
            alert_rule_test:
              - eval_time: 90m
                alertname: RecoverkitDeadLettersGrowing
                exp_alerts:
                  - exp_labels: {{severity: ticket, channel: sms}}
                    exp_annotations:
                      summary: "More than 10 sms messages dead-lettered in the last hour"
              - eval_time: 90m
                alertname: RecoverkitChannelFailing
                exp_alerts:
                  - exp_labels: {{severity: page, channel: sms}}
                    exp_annotations:
                      summary: "sms: 33.33% of messages dead or unknown in the last hour"
              - eval_time: 90m
                alertname: RecoverkitNoPipelineOwner
                exp_alerts: []
    """)
    )
    result = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60,
                            check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
