"""Fixtures of the Django tests (imported by name into each test module, as pytest finds fixtures there)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from django.test import override_settings

from recoverkit import MemoryStore
from recoverkit.contrib.django import RecoverkitState, flush, get_state

__all__ = ["CODE_SECRET", "LINK_SECRET", "journal", "no_engine_leak", "rk", "secrets_env"]

LINK_SECRET = "test-link-secret-0123456789abcdef-0123456789"
CODE_SECRET = "test-code-secret-0123456789abcdef-0123456789"


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The link and code secrets in the environment, for this test only."""
    values = {"RECOVERKIT_LINK_SECRET": LINK_SECRET, "RECOVERKIT_CODE_SECRET": CODE_SECRET}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def no_engine_leak() -> Iterator[None]:
    """Fail the test if an engine thread (an anyio portal) it started is still running after its teardown.
    Django's and anyio's own long-lived executor threads are not engines and are left alone."""
    before = set(threading.enumerate())
    yield
    left: list[str] = []
    for thread in set(threading.enumerate()) - before:
        if thread.name.startswith("asyncio-portal"):
            thread.join(timeout=30)
            if thread.is_alive():
                left.append(thread.name)
    assert not left, f"engine threads left running: {left}"


@pytest.fixture
def rk(no_engine_leak: None) -> Iterator[Callable[..., RecoverkitState]]:
    """``rk(**settings)`` makes ``settings.RECOVERKIT = settings`` for the rest of the test (as
    ``override_settings`` does in a shop's tests) and returns the process's new state. At teardown the settings go
    back and every engine built on the way is closed."""
    overrides: list[Any] = []

    def use(**settings: Any) -> RecoverkitState:
        override = override_settings(RECOVERKIT=settings)
        override.enable()  # raises (and undoes itself) for broken settings
        overrides.append(override)
        return get_state()

    yield use
    for override in reversed(overrides):
        override.disable()


def journal(store: MemoryStore) -> list[dict[str, Any]]:
    """The events the process's engine accepted into ``store``, in order (after letting it catch up)."""
    flush()
    return [msgspec.json.decode(entry.data) for entry in store.read_events(0, 10_000)]
