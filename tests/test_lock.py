"""The set-up the README promises: locked, hashed, in step with pyproject.toml, and run verbatim by CI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Try it") : text.index("## Install")]
    return re.findall(r"```sh\n(.+?)\n```", section, flags=re.S)


def test_the_locks_agree_with_pyproject() -> None:
    # check_lock.py names each package whose pin no longer satisfies pyproject.toml, or whose floor in
    # lowest.txt is not the floor pyproject.toml states.
    result = subprocess.run(
        [sys.executable, str(ROOT / "requirements" / "check_lock.py")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_readme_commands_install_from_the_lock() -> None:
    demo, tests = _readme_commands()
    assert "--require-hashes -r requirements/base.txt" in demo and demo.endswith("recoverkit demo")
    assert "--require-hashes -r requirements/test.txt" in tests and "pytest" in tests


def test_ci_runs_the_readme_commands_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    demo, tests = _readme_commands()
    assert tests in ci.splitlines()
    # CI discards the demo's output; the command itself must be the README's.
    assert any(line.startswith(demo) for line in ci.splitlines())
