"""Helpers of the tests that run the example shop in real processes (on ``django_support.process_settings``)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import SUPPORT_PARENT
from .fixtures import CODE_SECRET, LINK_SECRET

__all__ = ["process_env", "read_outbox", "wait_for"]


def process_env(directory: Path, mode: str = "embedded", **more: str) -> dict[str, str]:
    """The environment of a process running the example shop on ``django_support.process_settings``, with its
    files in ``directory`` and recoverkit in ``mode``."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "django_support.process_settings",
        "PYTHONPATH": os.pathsep.join(p for p in (str(SUPPORT_PARENT), os.environ.get("PYTHONPATH")) if p),
        "RK_TEST_DIR": str(directory),
        "RK_TEST_MODE": mode,
        "RECOVERKIT_LINK_SECRET": LINK_SECRET,
        "RECOVERKIT_CODE_SECRET": CODE_SECRET,
        **more,
    }


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    """Poll ``condition`` until it is truthy (and return it); fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return result


def read_outbox(path: Path) -> list[dict[str, Any]]:
    """The messages the shop's DemoOutbox wrote to ``path`` (whole lines only: a line is written in one go)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
