"""Calls into shop code, contained: the one helper every call to a plug-in goes through.

A shop plugs its own code into the engine: channel adapters, the guard, the catalogue, the loyalty programme,
the coupon provider. Any of them can raise, hang, raise ``CancelledError`` of its own accord, ignore
cancellation (an ``await`` on a socket that never answers, caught and retried), or block the event loop with
synchronous I/O (an ORM query, a synchronous SMTP call). :meth:`Containment.call` makes each of these fail
only the one call:

- **Sync or async, "await me maybe"** (httpx's ``MockTransport`` does the same for its handler): a coroutine
  function is awaited on the loop; a plain function runs in a worker thread (``anyio.to_thread``, bounded by a
  limiter of its own), because shop code written for a synchronous framework blocks, and some frameworks
  refuse to run at all on an event loop (Django raises ``SynchronousOnlyOperation``). A plain function that
  returns an awaitable has it awaited on the loop.
- **Its own task.** The call runs in a task of its own, so a ``CancelledError`` it raises is its failure (the
  caller was not cancelled), and a call that ignores cancellation is left behind instead of stopping the
  stage, ``flush()`` or ``close()``.
- **A timeout**, then a short grace for the call to react to its cancellation. A call still running after
  that is *abandoned*: it may still take effect (a send may still reach the provider), which the caller must
  treat as an unknown outcome. A thread cannot be cancelled at all; one still running is abandoned the same
  way. Calls abandoned and still running are counted per plug-in; past ``max_stuck`` of them the plug-in is
  not called again until one returns, so a hung provider cannot pile up threads without end.
- **A typed answer**, :class:`Returned` or :class:`Failed`, naming the plug-in and its role
  (``guard 'myshop.guards.has_ordered'``, ``channel 'sms' adapter (SmsChannel)``). Each failure is counted
  (:attr:`Containment.failures`) and logged with the plug-in, the kind of failure and the exception's type,
  never its text, which may carry an address.

What to do with a failure (retry the item, send it without an offer, record the outcome as unknown) is the
caller's decision; the stage itself never fails because of a plug-in.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeVar

import anyio
import anyio.to_thread

from .errors import RecoverkitError

__all__ = ["Containment", "Failed", "Plugin", "PluginError", "Returned", "describe"]

T = TypeVar("T")

#: Threads given to synchronous plug-ins at once (their own limiter: a slow guard must not hold back the
#: store's threads, and the store's must not hold back sends).
DEFAULT_THREADS: Final = 16
#: Abandoned calls of one plug-in still running before it is refused outright (see the module docs).
DEFAULT_MAX_STUCK: Final = 16
#: The longest a call gets to end after its cancellation (a clean-up of a connection, say).
MAX_GRACE: Final = 1.0

FailureKind = Literal["raised", "cancelled", "timed_out", "abandoned", "stuck"]


class PluginError(RecoverkitError):
    """A plug-in call that did not return an answer; raised by :meth:`Failed.error`, inside the engine only.

    The message names the plug-in and its role and says what happened (``guard 'myshop.guards.has_ordered'
    raised SynchronousOnlyOperation: ...``).
    """


def describe(obj: Any) -> str:
    """The import path of a plug-in for messages: ``myshop.guards.has_ordered``, or its class's for an object."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    target = obj if inspect.isfunction(obj) or inspect.ismethod(obj) or isinstance(obj, type) else type(obj)
    module = getattr(target, "__module__", None)
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or repr(target)
    return f"{module}.{name}" if module and module != "builtins" else str(name)


@dataclass(frozen=True, slots=True)
class Plugin:
    """Which plug-in a call goes to: its ``role`` and a ``name`` in the shop's words (a channel's name, an import
    path). :attr:`label` is what messages, logs and counters show."""

    role: str
    name: str

    @property
    def label(self) -> str:
        return f"{self.role} {self.name}"


@dataclass(frozen=True, slots=True)
class Returned(Generic[T]):
    """The call returned ``value``."""

    value: T


@dataclass(frozen=True, slots=True)
class Failed:
    """The call did not return an answer.

    ``kind`` says how: ``raised`` (``cause`` is the exception), ``cancelled`` (it raised ``CancelledError``
    though nobody cancelled it), ``timed_out`` (no answer within ``timeout``; it ended once cancelled),
    ``abandoned`` (no answer, and still running after its cancellation: whatever it does may still happen),
    ``stuck`` (not called: too many of its earlier calls are abandoned and still running).
    """

    plugin: Plugin
    kind: FailureKind
    timeout: float
    cause: BaseException | None = None

    @property
    def unknown(self) -> bool:
        """Whether the call may still take effect: a send that may yet reach the provider."""
        return self.kind == "abandoned"

    def describe(self) -> str:
        """What happened, for an error column or a dead letter: names the plug-in, keeps the cause's text."""
        label = self.plugin.label
        cause = self.cause
        if self.kind == "raised" and cause is not None:
            return f"{label} raised {type(cause).__name__}: {cause}"
        if self.kind == "cancelled":
            return f"{label} raised CancelledError without being cancelled"
        if self.kind == "timed_out":
            return f"{label} gave no answer within {self.timeout}s"
        if self.kind == "abandoned":
            return f"{label} gave no answer within {self.timeout}s and ignored its cancellation; it may still act"
        return f"{label} has calls still running after their timeout; not called again until one returns"

    def error(self) -> PluginError:
        """The failure as an exception to raise, chained to its cause."""
        error = PluginError(self.describe())
        error.__cause__ = self.cause
        return error


class _Call:
    """The state of one call, shared by the waiting caller, the call's task and (sync plug-ins) its thread."""

    __slots__ = ("abandoned", "cancelled", "ended", "error", "label", "lock", "started", "value")

    def __init__(self, label: str) -> None:
        self.label = label
        self.lock = threading.Lock()
        self.value: Any = None
        self.error: BaseException | None = None
        self.started = False  # the plug-in's code was entered
        self.ended = False  # ... and has returned or raised (or will never be entered)
        self.cancelled = False  # the caller gave up on it (timeout, or the caller itself was cancelled)
        self.abandoned = False  # given up while still running

    def start(self) -> bool:
        """Enter the plug-in's code, unless the caller has given up on the call already."""
        with self.lock:
            if self.cancelled:
                self.ended = True
                return False
            self.started = True
            return True


def _is_async(fn: Callable[..., Any]) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is a coroutine function
    return call is not None and not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)


class Containment:
    """Calls plug-ins under a timeout, in their own task (or thread), and turns every way they can fail into a
    :class:`Failed` answer; see the module docs. One per engine, used from its event loop (the threads that
    sync plug-ins run in touch only their own call's state and the stuck counts, under locks).

    ``log`` is the caller's logger. ``failures`` counts failures by plug-in label and kind:
    ``failures["guard 'myshop.guards.has_ordered'", "raised"]``.
    """

    def __init__(self, log: Any, *, threads: int = DEFAULT_THREADS, max_stuck: int = DEFAULT_MAX_STUCK) -> None:
        self._log = log
        self._threads = anyio.CapacityLimiter(threads)
        self._max_stuck = max_stuck
        self.failures: Counter[tuple[str, str]] = Counter()
        self._stuck: Counter[str] = Counter()
        self._stuck_lock = threading.Lock()
        # Strong references: asyncio keeps only weak ones, and an abandoned task must live until it ends.
        self._tasks: set[asyncio.Task[None]] = set()

    def stuck(self) -> dict[str, int]:
        """Abandoned calls still running, by plug-in label (only those with any)."""
        with self._stuck_lock:
            return {label: n for label, n in self._stuck.items() if n}

    def statistics(self) -> dict[str, Any]:
        """Failures by plug-in and kind, and abandoned calls still running, for the engine's statistics."""
        failures: dict[str, dict[str, int]] = {}
        for (label, kind), count in self.failures.items():
            failures.setdefault(label, {})[kind] = count
        return {"failures": failures, "stuck": self.stuck()}

    async def call(
        self,
        plugin: Plugin,
        fn: Callable[..., Any],
        /,
        *args: Any,
        timeout: float,
        ids: Any = None,
        expected: tuple[type[BaseException], ...] = (),
        **kwargs: Any,
    ) -> Returned[Any] | Failed:
        """``fn(*args, **kwargs)``, contained; see the class docs. ``ids`` are logged with a failure
        (``{"key": message.key}``): never personal data. Exceptions of the ``expected`` types are how the
        plug-in answers (an adapter's ``TransientDeliveryError``): returned as ``raised`` and counted, not logged.

        Cancelling the caller cancels the call too (as far as the call lets itself be cancelled) and propagates.
        A call the caller gave up on (timed out, then ended within the grace) counts as timed out even if it
        returned: it was told to stop, and what it returned then cannot be trusted to mean it finished.
        """
        label = plugin.label
        with self._stuck_lock:
            refused = self._stuck[label] >= self._max_stuck
        if refused:
            return self._failed(Failed(plugin, "stuck", timeout), ids)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - not on asyncio (trio): the engine itself runs on asyncio
            return await self._call_in_place(plugin, fn, args, kwargs, timeout, ids)
        call = _Call(label)
        runner = self._run_async(call, fn, args, kwargs) if _is_async(fn) else self._run_thread(call, fn, args, kwargs)
        task = loop.create_task(runner, name=f"recoverkit-plugin {label}")
        self._tasks.add(task)
        ended = anyio.Event()

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            with call.lock:
                if call.cancelled and not call.started:
                    call.ended = True  # cancelled before it began: it never ran, and never will
            ended.set()

        task.add_done_callback(done)
        try:
            with anyio.move_on_after(timeout):
                await ended.wait()
            if not task.done():
                with call.lock:
                    call.cancelled = True
                task.cancel()
                # A moment to react: most calls end at their next await; a thread never does.
                with anyio.move_on_after(min(timeout, MAX_GRACE)):
                    while not call.ended:
                        await anyio.sleep(0.005)
        except BaseException:
            # The caller is being cancelled (the engine is stopping): the call goes with it, if it lets itself.
            with call.lock:
                call.cancelled = True
            task.cancel()
            raise
        with call.lock:
            if not call.ended:
                if call.started:
                    call.abandoned = True
                else:
                    call.ended = True  # waited for a thread and never got one: it will not run now
            abandoned = call.abandoned
        if abandoned:
            with self._stuck_lock:
                self._stuck[label] += 1
                running = self._stuck[label]
            self.failures[label, "abandoned"] += 1
            self._log.error("plugin_abandoned", plugin=label, timeout=timeout, still_running=running, **(ids or {}))
            return Failed(plugin, "abandoned", timeout)
        error = call.error
        if call.cancelled:
            _close(call.value)
            return self._failed(Failed(plugin, "timed_out", timeout), ids)
        if isinstance(error, asyncio.CancelledError):
            return self._failed(Failed(plugin, "cancelled", timeout, error), ids)
        if isinstance(error, expected):
            self.failures[label, "raised"] += 1
            return Failed(plugin, "raised", timeout, error)
        if error is not None:
            return self._failed(Failed(plugin, "raised", timeout, error), ids)
        return Returned(call.value)

    def _failed(self, failed: Failed, ids: Any) -> Failed:
        self.failures[failed.plugin.label, failed.kind] += 1
        cause = failed.cause
        self._log.warning(
            "plugin_failed", plugin=failed.plugin.label, failure=failed.kind,
            error=type(cause).__name__ if cause is not None else None, **(ids or {}),
        )  # fmt: skip
        return failed

    def _end(self, call: _Call) -> None:
        """The plug-in's code has ended (in its task or its thread): an abandoned call is no longer stuck."""
        with call.lock:
            if call.ended:
                return
            call.ended = True
            abandoned = call.abandoned
        if abandoned:
            with self._stuck_lock:
                self._stuck[call.label] -= 1

    async def _run_async(self, call: _Call, fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
        if not call.start():
            return
        try:
            call.value = await fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - CancelledError included: this task is the call's own
            call.error = exc
        finally:
            self._end(call)

    async def _run_thread(self, call: _Call, fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
        def work() -> None:
            if not call.start():
                return
            try:
                call.value = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - reported to the caller, never lost in a thread
                call.error = exc
            if call.error is not None or not inspect.isawaitable(call.value):
                self._end(call)
            else:
                with call.lock:
                    given_up = call.cancelled
                if given_up:  # nobody is left to await what it returned
                    _close(call.value)
                    self._end(call)

        try:
            # abandon_on_cancel: a thread cannot be interrupted; on timeout the caller moves on without it.
            await anyio.to_thread.run_sync(work, abandon_on_cancel=True, limiter=self._threads)
        except BaseException:  # noqa: BLE001 - cancelled by the caller: a running thread ends the call itself
            if inspect.isawaitable(call.value) and not call.ended:
                _close(call.value)
                self._end(call)
            return
        if call.error is None and inspect.isawaitable(call.value) and not call.ended:
            # A plain function that returned an awaitable: awaited here, on the loop, where it belongs.
            try:
                call.value = await call.value
            except BaseException as exc:  # noqa: BLE001
                call.error = exc
            finally:
                self._end(call)

    async def _call_in_place(
        self, plugin: Plugin, fn: Callable[..., Any], args: Any, kwargs: Any, timeout: float, ids: Any
    ) -> Returned[Any] | Failed:  # pragma: no cover - only off asyncio: no task of its own, no abandoning
        try:
            with anyio.fail_after(timeout):
                if _is_async(fn):
                    value = await fn(*args, **kwargs)
                else:
                    call = functools.partial(fn, *args, **kwargs)
                    value = await anyio.to_thread.run_sync(call, limiter=self._threads)
                    if inspect.isawaitable(value):
                        value = await value
        except TimeoutError:
            return self._failed(Failed(plugin, "timed_out", timeout), ids)
        except Exception as exc:
            return self._failed(Failed(plugin, "raised", timeout, exc), ids)
        return Returned(value)


def _close(value: Any) -> None:
    """Close a coroutine nobody will await (no "never awaited" warning for a call given up)."""
    if inspect.iscoroutine(value):
        value.close()
