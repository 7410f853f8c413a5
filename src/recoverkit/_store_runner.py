"""The one way the pipeline reaches its store: :class:`StoreRunner`, built once by assembly and handed to ingest,
dispatch, ownership and replay.

Store methods block (SQLite commits, reads of the journal). Run on the event loop they would stall every stage;
run in a worker thread they cost a thread hop, which a store in memory does not need. The runner decides once,
by the store's kind, and counts and times every call, so that "how much of the pipeline's time goes to the
store" is a figure in :meth:`recoverkit.Engine.statistics` rather than a guess.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any, Final, TypeAlias, TypeVar

import anyio.to_thread

from .store.base import Store
from .store.memory import MemoryStore

__all__ = ["LEASE_THREADS", "StoreCall", "StoreRunner"]

T = TypeVar("T")
#: Worker threads kept for the leases' calls of one runner (see :meth:`StoreRunner.lease`).
LEASE_THREADS: Final = 2

#: Runs a blocking store method off the event loop: ``await call(store.claim, key, ...)``. A
#: :class:`StoreRunner` is one; a stage built alone (tests, tools) may take any such callable.
StoreCall: TypeAlias = Callable[..., Awaitable[Any]]


class StoreRunner:
    """Runs a blocking store call without blocking the event loop: inline for a store in memory (it never blocks,
    and calling it inline saves a thread hop per call), in a worker thread for any other store.

    Callable as ``await runner(fn, *args, **kwargs)``, the ``call=`` signature :class:`~recoverkit.dispatch.Dispatch`
    takes. ``calls`` and ``seconds`` count the calls made and the time spent in them (thread hop included);
    they are read from other threads (a metrics scrape) without a lock, so a reading may be a call behind.
    """

    __slots__ = ("_lease_threads", "calls", "inline", "seconds", "store")

    def __init__(self, store: Store) -> None:
        self.store = store
        #: Whether calls run on the event loop's thread (a store in memory) rather than in a worker thread.
        self.inline = isinstance(store, MemoryStore)
        self.calls = 0
        self.seconds = 0.0
        self._lease_threads: anyio.CapacityLimiter | None = None  # made on first use, in the event loop

    async def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return await self._run(None, fn, args, kwargs)

    async def lease(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Like calling the runner, for the leases' own calls (take, renew, release, heartbeat): in worker threads
        of their own, so that a renewal never waits for a thread behind the data's calls (anyio's default pool
        has 40, and thousands of messages falling due at once can hold them all for longer than a lease)."""
        if self._lease_threads is None:
            self._lease_threads = anyio.CapacityLimiter(LEASE_THREADS)
        return await self._run(self._lease_threads, fn, args, kwargs)

    async def _run(
        self, limiter: anyio.CapacityLimiter | None, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        started = perf_counter()
        try:
            if self.inline:
                return fn(*args, **kwargs)
            return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=limiter)
        finally:
            self.calls += 1
            self.seconds += perf_counter() - started
