"""Support for the Flask (and ASGI) integration tests: a clock the test's thread may advance, the example shop,
secrets, and a check that no test leaves an engine's thread running."""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

__all__ = [
    "LINK_SECRET",
    "ROOT",
    "load_example",
    "no_thread_leak",
    "secrets_env",
]

ROOT = Path(__file__).resolve().parents[2]
LINK_SECRET = "test-link-secret-0123456789abcdef-0123456789"
CODE_SECRET = "test-code-secret-0123456789abcdef-0123456789"


def load_example(relative: str, name: str) -> ModuleType:
    """Import an example (``examples/flask_shop/app.py``) as module ``name``, once per test session."""
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, ROOT / relative)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The link and code secrets in the environment, for this test only."""
    values = {"RECOVERKIT_LINK_SECRET": LINK_SECRET, "RECOVERKIT_CODE_SECRET": CODE_SECRET}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def no_thread_leak() -> Iterator[None]:
    """Fail the test if a thread it started is still alive once its fixtures have closed their engines."""
    before = set(threading.enumerate())
    yield
    left: list[Any] = []
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=30)
        if thread.is_alive():
            left.append(thread.name)
    assert not left, f"threads left running: {left}"
