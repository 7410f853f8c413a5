"""Containment of shop code (recoverkit._contain): an adapter, guard or offer plug-in that raises, raises
``CancelledError``, ignores cancellation or blocks fails only its own message, is named and counted, and never
stops the stage, other channels, ``flush()`` or ``close()``."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from helpers import T0
from recoverkit import ChannelPolicy, Config, Engine, FakeClock, Flow, FlowStep, MemoryChannel
from recoverkit._contain import Containment, Failed, Plugin, Returned, describe
from recoverkit.channels.base import Message

pytestmark = pytest.mark.anyio

#: Short enough to keep every test well under a second per backend; what matters is that it is bounded.
TIMEOUT = 0.2


def policy(**fields: Any) -> ChannelPolicy:
    fields.setdefault("timeout", TIMEOUT)
    return ChannelPolicy(address="none", requires_consent=False, backoff=1.0, backoff_max=1.0, **fields)


def config(**policies: ChannelPolicy) -> Config:
    """Step 0 on channel ``hook`` as soon as the cart is abandoned, step 1 on ``other`` a second later."""
    return Config(
        abandon_after=600,
        flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="hook"), FlowStep(delay=1, channel="other")])],
        channels={"hook": policies.get("hook", policy()), "other": policies.get("other", policy())},
    )


def add(session: str) -> dict[str, Any]:
    return {
        "event": "add_to_cart", "session_id": session, "ts": T0, "currency": "EUR",
        "items": [{"item_id": "A", "price": "10.00", "quantity": 1}],
    }  # fmt: skip



@pytest.fixture
def released() -> Iterator[threading.Event]:
    """Set at the end of the test: lets a plug-in stuck on purpose end, so no thread outlives it. (A task that
    ignores cancellation must be let go by the test itself, before its event loop closes: closing a loop
    cancels every task and waits for each to end.)"""
    event = threading.Event()
    yield event
    event.set()


# -- an adapter raising CancelledError -----------------------------------------------------------------------


async def test_an_adapter_raising_cancelled_error_fails_only_its_own_message() -> None:
    async def send(message: Message) -> None:
        if message.cart.session_id == "s1":
            raise asyncio.CancelledError  # as a library's own cancel scope leaking out would

    hook = MemoryChannel(handler=send)
    other = MemoryChannel()
    clock = FakeClock(T0)
    cfg = config(hook=policy(max_attempts=2))
    with anyio.fail_after(5):
        async with Engine(cfg, channels={"hook": hook, "other": other}, clock=clock) as engine:
            engine.track(add("s1"))
            engine.track(add("s2"))
            clock.advance(600)
            await engine.flush()
            clock.advance(2)  # step 1 falls due, and the retry of s1's step 0 (backoff at most 1 s)
            await engine.flush()
            clock.advance(2)
            await engine.flush()
            (letter,) = engine.dispatch.dead_letters
            stats = engine.statistics().stages["dispatch"].extra["plugins"]
            ledger = {e.key: (e.state, e.error) for e in engine.store.ledger()}
    assert hook.keys() == ["s2/f/0"]
    assert sorted(other.keys()) == ["s1/f/1", "s2/f/1"]
    assert letter.message.key == "s1/f/0"
    assert letter.error == "channel 'hook' adapter (MemoryChannel) raised CancelledError without being cancelled"
    assert ledger["s1/f/0"][0] == "dead"
    assert stats["failures"] == {"channel 'hook' adapter (MemoryChannel)": {"cancelled": 2}}


# -- adapters ignoring cancellation --------------------------------------------------------------------------


class BlockingAdapter:
    """A synchronous adapter (a plain ``send``) whose send to cart s1 blocks in its thread on a socket that never
    answers; the others go."""

    def __init__(self, released: threading.Event) -> None:
        self.released = released
        self.started: list[str] = []
        self.sent: list[str] = []
        self.thread: list[str] = []

    def send(self, message: Message) -> None:
        self.started.append(message.key)
        self.thread.append(threading.current_thread().name)
        if message.cart.session_id == "s1":
            self.released.wait()
        self.sent.append(message.key)


class DeafAdapter:
    """An async adapter that catches its cancellation and keeps waiting, as a retry loop around a hung await."""

    def __init__(self, released: threading.Event) -> None:
        self.released = released
        self.started: list[str] = []
        self.sent: list[str] = []
        self.cancelled = 0

    async def send(self, message: Message) -> None:
        self.started.append(message.key)
        while message.cart.session_id == "s1" and not self.released.is_set():
            try:
                await anyio.sleep(0.01)
            except asyncio.CancelledError:
                self.cancelled += 1  # swallowed: "keep trying"
        self.sent.append(message.key)


@pytest.mark.parametrize("kind", ["sync_thread", "async_deaf"])
async def test_an_adapter_ignoring_cancellation_is_given_up_and_its_outcome_is_unknown(
    kind: str, released: threading.Event
) -> None:
    stuck: BlockingAdapter | DeafAdapter = BlockingAdapter(released) if kind == "sync_thread" else DeafAdapter(released)
    other = MemoryChannel()
    clock = FakeClock(T0)
    started = time.monotonic()
    try:
        with anyio.fail_after(5):
            async with Engine(config(), channels={"hook": stuck, "other": other}, clock=clock) as engine:
                engine.track(add("s1"))
                clock.advance(600)
                await engine.flush()  # returns: the stuck send is given up after its timeout and a grace
                engine.track(add("s2"))  # ingest goes on
                clock.advance(2)
                await engine.flush()
                clock.advance(3600)  # long after any retry would have come
                await engine.flush()
                ledger = {e.key: e.state for e in engine.store.ledger()}
                stats = engine.statistics()
            # close() returned too, with the adapter still stuck
        elapsed = time.monotonic() - started
        assert not released.is_set()
        sent = list(stuck.sent)
    finally:
        released.set()  # before the loop closes (see the fixture)
    assert stuck.started == ["s1/f/0", "s2/f/0"]  # s1's never retried: it may have gone out
    assert sent == ["s2/f/0"]  # the same channel goes on
    assert ledger == {"s1/f/0": "unknown", "s2/f/0": "sent", "s1/f/1": "sent", "s2/f/1": "sent"}
    assert stats.messages["unknown"] == 1
    assert "failed_attempts" not in stats.messages
    assert sorted(other.keys()) == ["s1/f/1", "s2/f/1"]  # and so does the other
    label = f"channel 'hook' adapter ({type(stuck).__name__})"
    assert stats.stages["dispatch"].extra["plugins"]["stuck"] == {label: 1}
    assert elapsed < 3.0
    if isinstance(stuck, BlockingAdapter):
        assert stuck.thread[0] != threading.current_thread().name  # a sync adapter runs off the loop
    else:
        assert stuck.cancelled >= 1  # it was asked to stop


# -- the helper itself ---------------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    error = warning


async def test_a_sync_plugin_runs_in_a_thread_and_an_async_one_on_the_loop() -> None:
    contain = Containment(Recorder())
    loop_thread = threading.get_ident()

    def sync(x: int) -> tuple[int, int]:
        return x + 1, threading.get_ident()

    async def asynchronous(x: int) -> tuple[int, int]:
        return x + 2, threading.get_ident()

    a = await contain.call(Plugin("guard", "'s'"), sync, 1, timeout=1)
    b = await contain.call(Plugin("guard", "'a'"), asynchronous, 1, timeout=1)
    assert isinstance(a, Returned) and a.value[0] == 2 and a.value[1] != loop_thread
    assert isinstance(b, Returned) and b.value == (3, loop_thread)


async def test_a_plain_function_returning_an_awaitable_has_it_awaited() -> None:
    async def later() -> str:
        return "yes"

    answer = await Containment(Recorder()).call(Plugin("guard", "'g'"), lambda: later(), timeout=1)
    assert answer == Returned("yes")


async def test_a_failure_is_named_counted_and_logged_without_its_text() -> None:
    log = Recorder()
    contain = Containment(log)

    def guard(message: object) -> bool:
        raise LookupError("jane@example.com not found")

    plugin = Plugin("guard", repr(describe(guard)))
    answer = await contain.call(plugin, guard, None, timeout=1, ids={"key": "c/f/0"})
    assert isinstance(answer, Failed) and answer.kind == "raised"
    name = "test_containment.test_a_failure_is_named_counted_and_logged_without_its_text.<locals>.guard"
    assert str(answer.error()) == f"guard '{name}' raised LookupError: jane@example.com not found"
    assert contain.failures[plugin.label, "raised"] == 1
    assert log.events == [("plugin_failed", {"plugin": plugin.label, "failure": "raised", "error": "LookupError",
                                             "key": "c/f/0"})]  # fmt: skip
    assert "example.com" not in repr(log.events)


async def test_a_plugin_with_too_many_calls_stuck_is_not_called_again_until_one_returns(
    released: threading.Event,
) -> None:
    contain = Containment(Recorder(), max_stuck=2)
    calls: list[int] = []

    def hung(n: int) -> None:
        calls.append(n)
        released.wait()

    plugin = Plugin("catalogue", "'c'")
    kinds = [getattr(await contain.call(plugin, hung, n, timeout=0.05), "kind", None) for n in range(3)]
    assert kinds == ["abandoned", "abandoned", "stuck"]
    assert calls == [0, 1]
    released.set()
    with anyio.fail_after(2):
        while contain.stuck():
            await anyio.sleep(0.01)
    assert isinstance(await contain.call(plugin, lambda n: n, 7, timeout=1), Returned)


async def test_cancelling_the_caller_cancels_the_call_and_propagates() -> None:
    contain = Containment(Recorder())
    cancelled = anyio.Event()

    async def slow() -> None:
        try:
            await anyio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with anyio.move_on_after(0.05) as scope:
        await contain.call(Plugin("loyalty", "'l'"), slow, timeout=5)
    assert scope.cancelled_caught
    with anyio.fail_after(1):
        await cancelled.wait()


# -- closing the adapters --------------------------------------------------------------------------------------


class BadClose(MemoryChannel):
    """An adapter whose ``aclose()`` misbehaves the way ``how`` says."""

    def __init__(self, how: str, released: threading.Event) -> None:
        super().__init__()
        self.how = how
        self.released = released
        self.close_started = False

    async def aclose(self) -> None:
        self.close_started = True
        if self.how == "raises":
            raise RuntimeError("connection reset")
        if self.how == "cancelled":
            raise asyncio.CancelledError
        while not self.released.is_set():  # "deaf": swallows its cancellation and goes on waiting
            try:
                await anyio.sleep(0.01)
            except asyncio.CancelledError:
                pass


class GoodClose(MemoryChannel):
    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


@pytest.mark.parametrize("how", ["raises", "cancelled", "deaf"])
async def test_an_adapter_whose_aclose_misbehaves_neither_holds_up_close_nor_keeps_the_next_open(
    how: str, released: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    bad, good = BadClose(how, released), GoodClose()
    started = time.monotonic()
    try:
        with anyio.fail_after(5):
            engine = Engine(config(), channels={"hook": bad, "other": good}, clock=FakeClock(T0))
            await engine.start()
            with caplog.at_level("WARNING", logger="recoverkit"):
                await engine.aclose()  # returns, and does not raise
        elapsed = time.monotonic() - started
    finally:
        released.set()  # before the loop closes (see the fixture)
    assert bad.close_started
    assert good.closed == 1  # the next adapter was still closed
    assert elapsed < 3.0  # bounded by the channel's timeout (0.2 s) and the grace, not by the adapter
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "hook" in logged and "aclose" in logged
    assert "connection reset" not in logged  # the exception's type is logged, never its text


async def test_an_adapter_serving_two_channels_is_closed_once() -> None:
    shared = GoodClose()
    async with Engine(config(), channels={"hook": shared, "other": shared}, clock=FakeClock(T0)):
        pass
    assert shared.closed == 1
