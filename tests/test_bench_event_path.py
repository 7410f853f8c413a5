"""``benchmarks/event_path.py`` runs: its ``--quick --json`` run exits 0 and reports the path it traced.

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
    # The path starts at the engine's front and ends in the channel adapter's module.
    assert "recoverkit.engine" in doc["module_list"]
    assert "recoverkit.channels.memory" in doc["module_list"]
    assert doc["modules"] == len(doc["module_list"]) and doc["functions"] >= doc["modules"]
    assert doc["back_and_forths"] == len(doc["back_and_forth_list"])
