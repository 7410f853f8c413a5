"""An in-memory channel: the test double for a shop's own tests, modelled on httpx's ``MockTransport``.

::

    channel = MemoryChannel()
    channel.fail_next(2)            # the next two sends raise TransientDeliveryError
    ...run the engine...
    assert channel.keys() == ["cart-1/default/0"]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

from ..errors import TransientDeliveryError
from .base import Message

__all__ = ["MemoryChannel"]


class MemoryChannel:
    """Keeps every accepted message in :attr:`sent`, in the order ``send`` was called.

    - :attr:`sent` holds messages whose send succeeded; :attr:`attempts` holds every message ``send`` was
      called with, failed ones included, so a test can count retries.
    - :meth:`fail_next` makes the next sends raise (a :class:`~recoverkit.errors.TransientDeliveryError` by
      default, or the exception given), to simulate a flaky or rejecting provider.
    - ``handler``, when given, is called with each message after any :meth:`fail_next` failures are used up;
      it may be a plain function or a coroutine function, and whatever it raises fails the send. Use it for
      behaviour that depends on the message (reject one address, block on an event to simulate a slow
      provider).
    - :meth:`aclose` only sets :attr:`closed`, so a test can check that the engine closed its channels; sends
      after it are still accepted.

    Not thread-safe; it is meant to be driven by one event loop.
    """

    def __init__(self, handler: Callable[[Message], Awaitable[None] | None] | None = None) -> None:
        self.sent: list[Message] = []
        self.attempts: list[Message] = []
        self.closed = False
        self._handler = handler
        self._failures: deque[Exception | None] = deque()

    async def send(self, message: Message) -> None:
        """Record ``message`` in :attr:`sent`, unless a pending failure or the handler makes it raise."""
        self.attempts.append(message)
        if self._failures:
            exc = self._failures.popleft()
            if exc is None:
                raise TransientDeliveryError(
                    f"MemoryChannel: simulated transient failure sending message {message.key!r} "
                    "(set up with fail_next())"
                )
            # The same instance may be raised several times; drop the previous traceback so each raise
            # reports only its own frames instead of an ever-growing chain.
            raise exc.with_traceback(None)
        if self._handler is not None:
            result = self._handler(message)
            if result is not None:
                await result
        self.sent.append(message)

    def fail_next(self, n: int = 1, exc: Exception | None = None) -> None:
        """Make the next ``n`` calls to :meth:`send` raise ``exc``, then behave normally again.

        ``exc`` defaults to a fresh :class:`~recoverkit.errors.TransientDeliveryError` naming the message
        key; pass a :class:`~recoverkit.errors.PermanentDeliveryError` to simulate a rejected address. Calls
        add up: ``fail_next(1); fail_next(1, permanent)`` fails once transiently, then once permanently.
        """
        if n < 0:
            raise ValueError(f"fail_next() expects n >= 0, got {n}")
        self._failures.extend([exc] * n)

    def keys(self) -> list[str]:
        """The keys of the messages in :attr:`sent`, in order."""
        return [message.key for message in self.sent]

    def clear(self) -> None:
        """Forget recorded messages and pending failures; the handler and :attr:`closed` are kept."""
        self.sent.clear()
        self.attempts.clear()
        self._failures.clear()

    async def aclose(self) -> None:
        """Mark the channel closed. Idempotent."""
        self.closed = True
