"""What the Django, Flask and ASGI integrations share: settings, the process's engine, the request's tracker.

A web framework integration does four things, and only the first depends on the framework:

1. find the shopper's session id (a first-party cookie, :data:`SESSION_COOKIE`, that this module mints and
   checks) and the logged-in customer's id;
2. read the shop's settings (Django's ``RECOVERKIT`` dict, Flask's ``RECOVERKIT_*`` keys) into
   :class:`IntegrationSettings`, whose errors name the setting, the bad value and what was expected, at start-up;
3. hold one engine per process (:class:`LazyEngine`): built at start-up so that configuration errors surface
   then, started on first use, dropped and rebuilt in a forked child;
4. give views a :class:`Tracker` bound to the request, whose methods (``tracker.add_to_cart(...)``) fill in the
   session, the customer and the segment hints (device, traffic source) and never raise.

Modes (``MODE``): ``"embedded"`` (default) runs the engine in every web process; with a shared SQLite store the
pipeline lease makes exactly one of them run the pipeline while the others only journal. ``"journal"`` makes
web processes journal only, for a dedicated worker (``manage.py recoverkit worker``, ``flask recoverkit worker``)
that runs the pipeline. ``"off"`` records nothing (tests, management commands that must not start threads).
``CLOCK`` takes a :class:`~recoverkit.FakeClock` in a shop's own tests, so "an hour later" is instant.

Only first-party data: the session cookie identifies a visit to this shop and nothing else, is ``HttpOnly`` and
``SameSite=Lax``, and carries no personal data.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from ._integration_settings import PATH_EVENTS, SETTING_KEYS, IntegrationSettings
from ._log import get_logger
from ._plugin_settings import import_object, unknown_setting
from ._tracker import EventSink, Tracker, restore_cart
from ._web_session import (
    SESSION_COOKIE,
    SESSION_COOKIE_MAX_AGE,
    device_of,
    is_session_id,
    load_customer,
    new_session_id,
)
from .background import BackgroundEngine
from .clock import Clock
from .links import PARAMETER as LINK_PARAMETER
from .links import RestoreLinks

# The settings, the session cookie and the tracker live in private modules, one concept each; their names are
# this module's, as the integrations and the docs spell them.
__all__ = [
    "LINK_PARAMETER",
    "PATH_EVENTS",
    "SESSION_COOKIE",
    "SESSION_COOKIE_MAX_AGE",
    "SETTING_KEYS",
    "EventSink",
    "IntegrationSettings",
    "LazyEngine",
    "Tracker",
    "device_of",
    "import_object",
    "is_session_id",
    "load_customer",
    "new_session_id",
    "restore_cart",
    "unknown_setting",
]

_log = get_logger("recoverkit.integration")



def _refuse(event: Mapping[str, Any]) -> bool:
    return False  # the sink of a tracker that records nothing


class _StampingSink:
    """The sink of this process's engine for the trackers of requests: stamps ``ts`` in place, then tracks.

    Built once per engine and shared by every request, so a tracked event costs no lookup, no copy and no
    allocation besides its own dict. The dicts are the trackers' own, new for each event: stamping them is safe.
    """

    __slots__ = ("_clock", "engine")

    def __init__(self, engine: BackgroundEngine) -> None:
        self.engine = engine
        self._clock: Clock = engine.engine.clock

    def __call__(self, event: dict[str, Any]) -> bool:
        if "ts" not in event:
            # Now, not when the engine's loop next drains its inbox: as LazyEngine.track does.
            event["ts"] = self._clock.now()
        return self.engine.track(event)


class LazyEngine:
    """One engine per process, built when first asked for (thread-safe), closed once.

    Building is cheap and raises :class:`ConfigError` for a broken configuration, so integrations call
    :meth:`get` at start-up; the engine's thread starts on the first event. A forked child (gunicorn
    ``--preload``) rebuilds its own engine itself (:class:`~recoverkit.BackgroundEngine` is fork-aware), so the
    same ``LazyEngine`` is safe to share across a fork. ``MODE = "off"`` holds no engine at all.
    """

    def __init__(self, settings: IntegrationSettings) -> None:
        self.settings = settings
        self._engine: BackgroundEngine | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._closed = False
        self._sink: _StampingSink | None = None

    def get(self) -> BackgroundEngine | None:
        """The process's engine (``None`` in mode ``"off"`` or once closed)."""
        engine = self._engine
        if engine is not None and self._pid == os.getpid():
            return engine
        if self.settings.mode == "off" or self._closed:
            return None
        with self._lock:
            if self._pid != os.getpid():
                # Forked without Python's fork hooks (uWSGI forks from C): the parent's engine, its thread and its
                # store connection are not this process's. Leave them alone and build this process's own.
                self._pid = os.getpid()
                self._engine = None
            if self._engine is None and not self._closed:
                self._engine = self.settings.build_engine()
            return self._engine

    def track(self, event: Mapping[str, Any]) -> bool:
        """Hand ``event`` to the engine, stamped with the time it happened (``ts``, on the engine's clock) when it
        has none; ``False`` when nothing records events. Never raises."""
        try:
            engine = self.get()
            if engine is None:
                return False
            if "ts" not in event:
                # Now, not when the engine's loop next drains its inbox (up to a tick later, and much later when a
                # test moves a FakeClock in between).
                event = {**event, "ts": engine.engine.clock.now()}
        except Exception as exc:  # never fail the shop's request because recoverkit cannot start
            _log.error("engine_unavailable", error=str(exc))
            return False
        return engine.track(event)

    def sink(self) -> EventSink:
        """Where the tracker of a request being set up now sends its events: this process's engine, looked up here
        once (with its fork check) rather than for every event; a sink that keeps nothing when nothing records
        events (mode ``"off"``, closed, or an engine that cannot be built, which is logged). Never raises.

        The sink takes the tracker's own new dicts (it stamps ``ts`` in them in place, as :meth:`track` stamps a
        copy); anything else goes through :meth:`track`.
        """
        try:
            engine = self.get()
        except Exception as exc:  # never fail the shop's request because recoverkit cannot start
            _log.error("engine_unavailable", error=str(exc))
            return _refuse
        if engine is None:
            return _refuse
        sink = self._sink
        if sink is None or sink.engine is not engine:
            sink = self._sink = _StampingSink(engine)
        return sink

    @property
    def links(self) -> RestoreLinks | None:
        """The engine's cart-restore links (``None`` when ``[links] base_url`` is not configured)."""
        engine = self.get()
        return engine.engine.links if engine is not None else None

    def close(self, timeout: float | None = None) -> None:
        """Drain and stop the engine (idempotent). Later events are refused."""
        with self._lock:
            self._closed = True
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close(timeout)
