"""``benchmarks/event_path.py`` runs: its ``--quick --json`` run exits 0 and reports the paths it traced.

A fast counterpart of ``tests/test_benchmarks.py`` (same way of running the script: a subprocess from the
repository root, so its argument parsing and imports are exercised). The figures themselves are not asserted
here: they are what issue 13 measures the engine's layout by, not a contract.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT_TIMEOUT = 120

pytestmark = pytest.mark.timeout(SCRIPT_TIMEOUT + 30)


def test_event_path_quick_traces_one_event_to_the_adapter() -> None:
    script = ROOT / "benchmarks" / "event_path.py"
    command = [sys.executable, str(script), "--quick", "--json", "--timeout", str(SCRIPT_TIMEOUT)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT + 15)
    assert done.returncode == 0, f"event_path.py exited {done.returncode}:\n{done.stderr[-4000:]}"
    doc = json.loads(done.stdout)
    for key in ("cpu", "cores", "python", "recoverkit", "msgspec", "anyio"):
        assert doc["machine"].get(key), f"machine header lacks {key!r}"
    path, everything = doc["event_path"], doc["everything_called"]
    for figures in (path, everything):
        # Each measure passes the engine's front and ends in the channel adapter's module.
        assert "recoverkit.engine" in figures["module_list"]
        assert "recoverkit.channels.webhook" in figures["module_list"]
        assert figures["modules"] == len(figures["module_list"]) and figures["functions"] >= figures["modules"]
        assert figures["back_and_forths"] == len(figures["back_and_forth_list"])
    # The event's own path is read in order of first call: from the Tracker to the adapter's send, and it is
    # a part of everything called.
    assert path["function_list"][0].startswith("recoverkit.") and "Tracker." in path["function_list"][0]
    assert path["function_list"][-1].endswith("WebhookChannel.send")
    assert set(path["module_list"]) <= set(everything["module_list"])
    assert path["functions"] == len(path["function_list"]) <= everything["functions"]
    # The aim is judged on the event's own path.
    assert doc["module_target_met"] == (path["modules"] <= doc["module_target"])
    assert doc["back_and_forth_target_met"] == (path["back_and_forths"] == 0)
