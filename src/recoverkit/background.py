"""Running the engine from synchronous code (Django, Flask, any WSGI app): a loop in a background thread.

``BackgroundEngine.track(event)`` is a bounded ``deque.append`` plus a few attribute reads: it returns in about a
microsecond and never raises. It blocks the request only when the engine's loop is behind (its inbox is over
budget: the call journals it, see :mod:`recoverkit.journal`) or the store refuses writes (the call journals its
own event and says whether that worked). The engine's event loop (uvloop when it is
installed) runs in a daemon thread started on the first ``track()`` or :meth:`~BackgroundEngine.start`.

Fork safety: servers such as gunicorn with ``--preload`` import the app, then fork workers. A thread started
before the fork does not exist in the child, so the child drops the parent's engine (and the events it had
buffered, which belong to the parent) and starts its own on first use. This is done with
``os.register_at_fork``, so ``track()`` pays nothing for it.

Nothing global is touched: no signal handlers, no logging configuration, no event-loop policy.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from .channels.base import Message
from .config import Config
from .engine import Engine, EngineStatistics
from .errors import EngineStateError
from .plugins import Plugins

T = TypeVar("T")

__all__ = ["BackgroundEngine"]

_HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


class BackgroundEngine:
    """An :class:`~recoverkit.Engine` on its own event loop in a daemon thread, for synchronous callers.

    Takes the same arguments as :class:`~recoverkit.Engine` (validated here, at construction): ``plugins`` (a
    :class:`~recoverkit.Plugins`), passed through as it is, and every other keyword argument of
    :class:`~recoverkit.Engine` (the plug-ins as keywords, ``owner``, ``deliver``, ``pipeline``), forwarded to it;
    an argument :class:`~recoverkit.Engine` does not take is a :class:`TypeError` here. Plus ``use_uvloop``
    (default: when installed) and ``close_at_exit`` (default true: an ``atexit`` hook drains the engine for up to
    ``close_timeout`` seconds when the interpreter exits).
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        plugins: Plugins | None = None,
        use_uvloop: bool | None = None,
        close_at_exit: bool = True,
        close_timeout: float = 10.0,
        **engine_options: Any,
    ) -> None:
        # Forwarded rather than re-listed: a list here drifted from Engine's once (owner, deliver and links were
        # unreachable). A fork (gunicorn's workers) gets a new Engine from this factory, with its own store
        # connection and its own lease owner name: a SQLite connection must not cross a fork.
        self._factory: Callable[[], Engine] = lambda: Engine(config, plugins=plugins, **engine_options)
        self.engine = self._factory()  # raises ConfigError now, not on the first request
        self._use_uvloop = _HAS_UVLOOP if use_uvloop is None else use_uvloop
        self._close_timeout = close_timeout
        self._lock = threading.Lock()
        self._portal: BlockingPortal | None = None
        self._portal_cm: Any = None
        self._engine_cm: Any = None
        self._running = False
        self._closed = False
        ref = weakref.ref(self)
        # Weak references: neither hook may keep an engine the shop dropped alive.
        os.register_at_fork(after_in_child=lambda: _call(ref, "_after_fork"))
        if close_at_exit:
            atexit.register(_call, ref, "close")

    # -- the hot path ---------------------------------------------------------------------------------------

    def track(self, event: Any) -> bool:
        """Queue ``event`` (dict, JSON bytes/str or event Struct) for the engine. Never raises.

        Returns ``False`` when the event was not kept (the engine is closed or could not start, the store refused
        the write); refusals are counted in ``events_overflow``. ``True`` means what :meth:`Engine.track` says.
        """
        if not self._running and not self._closed:
            try:
                self.start()
            except Exception:  # never fail the shop's request because the engine could not start
                return False
        return self.engine.track(event)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread and the engine (idempotent; ``track()`` calls it on first use)."""
        with self._lock:
            if self._running:
                return
            if self._closed:
                raise EngineStateError("this BackgroundEngine was closed; create a new one")
            backend_options = {"use_uvloop": self._use_uvloop}
            self._portal_cm = start_blocking_portal("asyncio", backend_options)
            self._portal = self._portal_cm.__enter__()
            self._engine_cm = self._portal.wrap_async_context_manager(self.engine)
            self._engine_cm.__enter__()
            self._running = True

    def close(self, timeout: float | None = None) -> None:
        """Drain what was accepted, finish deliveries in flight (at most ``timeout`` s) and stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if not self._running:
                self.engine._discard()  # never started: refuse later events, close the file it opened
                return
            self._running = False
            self.engine.close_timeout = self._close_timeout if timeout is None else timeout
            try:
                # __exit__ runs the engine's __aexit__ in the task that entered it, as anyio requires.
                self._engine_cm.__exit__(None, None, None)
            finally:
                self._portal_cm.__exit__(None, None, None)
                self._portal = None

    def __enter__(self) -> BackgroundEngine:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _after_fork(self) -> None:
        # In a forked child the loop thread is gone and the lock may be held by a thread that no longer
        # exists: start from scratch, with a fresh engine whose inbox does not hold the parent's events.
        self._lock = threading.Lock()
        if self._portal is not None:
            # Dropping the parent's portal context manager finalizes its generator, whose clean-up asks the
            # (dead) loop thread to stop and would wait for it forever. Mark the portal stopped first, as
            # BlockingPortal.stop() does, so that the clean-up finds nothing to wait for. (A private attribute
            # of anyio's: tests/test_background.py forks a real process to catch a change.)
            self._portal._event_loop_thread_id = None
        self._portal = None
        self._portal_cm = self._engine_cm = None
        self._running = False
        if not self._closed:
            self.engine = self._factory()

    # -- blocking helpers for sync code and tests -----------------------------------------------------------

    def flush(self) -> None:
        """Block until everything tracked so far has been handled (see :meth:`Engine.flush`)."""
        portal = self._require_portal()
        portal.call(self.engine.flush)

    def statistics(self) -> EngineStatistics:
        """A snapshot of the engine's statistics (read from the engine's thread)."""
        if self._portal is None:
            return self.engine.statistics()
        return self._portal.call(self._statistics)

    async def _statistics(self) -> EngineStatistics:
        return self.engine.statistics()

    def forget(self, customer_id: str) -> bool:
        """Erase a customer's personal data (see :meth:`Engine.forget`); blocks until done or journaled."""
        portal = self._require_portal()
        return portal.call(self.engine.forget, customer_id)

    def export(self, customer_id: str) -> dict[str, Any]:
        """Everything held about a customer, JSON-ready (see :meth:`Engine.export`)."""
        portal = self._require_portal()
        return portal.call(self._export, customer_id)

    async def _export(self, customer_id: str) -> dict[str, Any]:
        return self.engine.export(customer_id)

    def call(self, fn: Callable[..., Awaitable[T]], /, *args: Any) -> T:
        """Run ``await fn(*args)`` on the engine's loop, from any other thread, and return its result (or raise its
        exception); starts the engine if it is not running. What the helpers above are made of: for code that
        needs the running engine itself (an operator console's actions, a maintenance task)."""
        portal = self._require_portal()
        return portal.call(fn, *args)

    def pending_messages(self) -> list[Message]:
        portal = self._require_portal()
        return portal.call(self._pending)

    async def _pending(self) -> list[Message]:
        return self.engine.pending_messages()

    def _require_portal(self) -> BlockingPortal:
        if self._portal is None:
            with contextlib.suppress(EngineStateError):
                self.start()
        if self._portal is None:
            raise EngineStateError("the background engine is not running")
        return self._portal


def _call(ref: weakref.ReferenceType[BackgroundEngine], method: str) -> None:
    obj = ref()
    if obj is not None:
        getattr(obj, method)()
