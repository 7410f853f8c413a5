"""``benchmarks/bench_onsite.py --quick --json`` runs and reports what it promises (figures are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_onsite_quick_measures_both_look_ups_against_a_store_query() -> None:
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_onsite.py"), "--quick", "--json", "--timeout", "240"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=260)
    assert done.returncode == 0, done.stderr[-4000:]
    doc = json.loads(done.stdout)
    for key in ("cpu", "cores", "python", "recoverkit", "msgspec", "load average"):
        assert doc["machine"].get(key), key
    assert doc["settings"] == {"offers": 1000, "views": 2000}
    for key in ("baseline_store_query_us", "nothing_waiting_us", "offer_waiting_us"):
        assert doc[key] > 0
    assert doc["store_round_trips"] == {"nothing_waiting": 0, "offer_waiting": 1000}
