"""The console's way into the process's engine, however the framework runs it.

The console's pages and actions are synchronous code (Django and Flask views; the ASGI console runs them in a
worker thread), while the engine and its channel adapters live on an event loop: a
:class:`~recoverkit.BackgroundEngine`'s own loop thread, or the ASGI server's loop. :class:`EngineAccess` hides
which: store reads happen in the calling thread (every store method is synchronous and thread-safe), and what
must run on the engine's loop (a channel's ``send``, ``forget``, ``statistics``) is handed to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio.from_thread

if TYPE_CHECKING:
    from ..background import BackgroundEngine
    from ..channels.base import Channel, Message
    from ..clock import Clock
    from ..engine import Engine, EngineStatistics
    from ..privacy import Erasure
    from ..store.base import Store

__all__ = ["EngineAccess"]


class EngineAccess:
    """What the console reads from and asks of one engine.

    Build it with :meth:`background` for a :class:`~recoverkit.BackgroundEngine` (Django, Flask, an ASGI server
    without lifespan) or :meth:`on_loop` for an :class:`~recoverkit.Engine` running on the event loop whose
    worker thread calls the console (the ASGI console, through ``anyio.to_thread.run_sync``).
    """

    def __init__(self, engine: Engine, run: Callable[..., Any]) -> None:
        self.engine = engine
        self._run = run

    @classmethod
    def background(cls, background: BackgroundEngine) -> EngineAccess:
        """Access to ``background``'s engine, whose loop runs in its own thread (started here if need be)."""

        return cls(background.engine, background.call)

    @classmethod
    def on_loop(cls, engine: Engine) -> EngineAccess:
        """Access to ``engine`` from a worker thread of the loop it runs on (``anyio.to_thread.run_sync``)."""
        return cls(engine, anyio.from_thread.run)

    @property
    def store(self) -> Store:
        return self.engine.store

    @property
    def clock(self) -> Clock:
        return self.engine.clock

    @property
    def channels(self) -> Mapping[str, Channel]:
        return self.engine.channels

    def statistics(self) -> EngineStatistics:
        async def read() -> EngineStatistics:
            return self.engine.statistics()

        result: EngineStatistics = self._run(read)
        return result

    def pending_messages(self) -> list[Message]:
        async def read() -> list[Message]:
            return self.engine.pending_messages()

        result: list[Message] = self._run(read)
        return result

    def export(self, customer_id: str) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            return self.engine.export(customer_id)

        result: dict[str, Any] = self._run(read)
        return result

    def send(self, channel: Channel, message: Message) -> None:
        """``channel.send(message)`` on the engine's loop (where the adapter's connections live)."""
        self._run(channel.send, message)

    def erase(self, customer_id: str) -> Erasure:
        """:func:`recoverkit.privacy.erase` on the engine's loop: forget the customer and count what went."""
        from ..privacy import erase

        result: Erasure = self._run(erase, self.engine, customer_id)
        return result

    def mark_resent_in_engine(self, key: str) -> None:
        """Take ``key`` off the engine's own dead-letter list (and its dead-letter file, when it keeps one), as
        the store's :meth:`~recoverkit.store.DeadLetterStore.mark_resent` took it off the store's."""

        async def mark() -> None:
            for engine in (self.engine, *_partitions(self.engine)):
                dispatch = getattr(engine, "dispatch", None)
                letters = getattr(dispatch, "dead_letters", None)
                if letters is not None and any(letter.message.key == key for letter in letters):
                    letters.mark_resent(key)

        self._run(mark)


def _partitions(engine: Engine) -> list[Any]:
    fleet = getattr(engine, "_fleet", None)  # a partitioned store: each partition's pipeline keeps its letters
    return list(fleet.pipelines.values()) if fleet is not None else []
