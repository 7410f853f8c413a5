"""The process's recoverkit state: the validated ``settings.RECOVERKIT`` and the process's engine.

One :class:`RecoverkitState` per process, built by the app's ``ready()`` (so a broken configuration stops the
process at start-up) and rebuilt when ``settings.RECOVERKIT`` changes (Django's ``setting_changed`` signal, which
``override_settings`` sends in a shop's tests); the engine of the state it replaces is closed then. Building starts
no thread: the engine's starts with the first event, in the process that records it, so a state built before a
fork (gunicorn ``--preload``) is safe to inherit (see :class:`~recoverkit.integration.LazyEngine`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from django.conf import settings as django_settings  # type: ignore[import-untyped]

from ...clock import Clock, WallClock
from ...integration import EventSink, IntegrationSettings, LazyEngine
from ...links import RestoreLinks
from ._settings import settings_from_django

__all__ = ["RecoverkitState", "close", "configure", "get_state"]


class RecoverkitState:
    """What recoverkit keeps for this process: ``settings`` (validated), ``engine`` (the process's
    :class:`~recoverkit.integration.LazyEngine`, ``None``-valued in mode ``"off"``) and ``clock`` (the ``CLOCK``
    setting, else the wall clock: events are stamped and links verified on it)."""

    __slots__ = ("_config_links", "clock", "engine", "settings")

    def __init__(self, settings: IntegrationSettings) -> None:
        self.settings = settings
        self.engine = LazyEngine(settings)
        self.clock: Clock = settings.clock if settings.clock is not None else WallClock()
        self._config_links: RestoreLinks | None = None

    def check(self) -> None:
        """Build the engine (not start it), so that what only the engine checks (secrets, channels the flows name,
        templates) fails now; raises :class:`ConfigError` naming ``settings.RECOVERKIT``."""
        if self.settings.mode != "off":
            self.engine.get()  # its errors read "settings.RECOVERKIT: recoverkit cannot start: ..."

    @property
    def links(self) -> RestoreLinks | None:
        """The cart-restore links (``None`` when ``[links] base_url`` is not configured)."""
        if self.settings.mode != "off":
            return self.engine.links
        # Mode "off" holds no engine, but a shop's restore view must still work (in its own tests, say).
        if self._config_links is None:
            self._config_links = self.settings.links()
        return self._config_links

    def track(self, event: Mapping[str, Any]) -> bool:
        """Hand ``event`` to the engine (stamped with the time it was tracked); never raises."""
        return self.engine.track(event)

    def sink(self) -> EventSink:
        """The sink for the tracker of a request being set up now (see :meth:`LazyEngine.sink`); never raises."""
        return self.engine.sink()


_current: RecoverkitState | None = None
# Guards building and swapping the state; the hot path reads _current without it.
_lock = threading.Lock()


def get_state() -> RecoverkitState:
    """The process's state, built from ``settings.RECOVERKIT`` on first use if ``ready()`` has not built it."""
    state = _current
    if state is None:
        with _lock:
            state = _current if _current is not None else _swap(_build())
    return state


def configure() -> RecoverkitState:
    """(Re)build the state from ``settings.RECOVERKIT`` and close the engine of the one it replaces.

    Raises :class:`ConfigError` for a broken configuration and then keeps the previous state.
    """
    state = _build()
    with _lock:
        return _swap(state)


def close(timeout: float | None = None) -> None:
    """Drain and stop the process's engine (idempotent; later events are refused until :func:`configure`)."""
    state = _current
    if state is not None:
        state.engine.close(timeout)


def _build() -> RecoverkitState:
    state = RecoverkitState(settings_from_django(getattr(django_settings, "RECOVERKIT", None)))
    state.check()
    return state


def _swap(state: RecoverkitState) -> RecoverkitState:
    global _current
    old, _current = _current, state
    if old is not None:
        old.engine.close()
    return state
