"""An idle live engine sleeps until its next deadline or until work arrives (recoverkit._runner's ticker).

Counted in wake-ups of the ticker (``Runner.ticks``) and in what happened, never in time: a fake clock that only
the test moves makes "asleep until the deadline" observable, since nothing but a deadline, a wake-up or a test's
``advance`` can end the ticker's wait.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from recoverkit import Config, Engine, FakeClock, Flow, FlowStep, MemoryChannel, StoreConfig
from recoverkit._runner import IDLE_POLL
from recoverkit.journal import Journal
from recoverkit.store.memory import MemoryStore

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
#: Real seconds a test waits at most for the engine's loop to get round to something (a bound, not a measure).
PATIENCE = 10.0


def cart(session: str) -> dict[str, Any]:
    return {"event": "add_to_cart", "session_id": session, "items": [{"item_id": "SKU-1", "price": "9.99"}]}


def webhook_flow(delay: float, **settings: Any) -> Config:
    return Config(flows=[Flow(name="f", steps=[FlowStep(delay=delay, channel="webhook")])], **settings)


async def until(done: Callable[[], bool], what: str) -> None:
    """Let the engine's loop run until ``done()``; fail naming ``what`` if it never comes."""
    with anyio.move_on_after(PATIENCE):
        while not done():
            await anyio.sleep(0.002)
    assert done(), f"{what} did not happen within {PATIENCE:g} s"


async def idle(engine: Engine, clock: FakeClock) -> None:
    """Let the ticker settle into its idle wait (listening for work). While busy it ticks every ``tick_interval``
    of the engine's clock, so the fake clock is moved on in steps of a millisecond (at most half a second in all)
    until the ticker has seen its last tick through the pipeline and nothing else move."""
    for _ in range(500):
        if engine._runner.alarm.listening:
            return
        clock.advance(0.001)
        await anyio.sleep(0.005)
    assert engine._runner.alarm.listening, "the ticker did not go idle"


async def step_clock(clock: FakeClock, seconds: float, steps: int) -> None:
    """Move the fake clock ``seconds`` forward in ``steps`` equal steps, letting the loop run after each."""
    for _ in range(steps):
        clock.advance(seconds / steps)
        await anyio.sleep(0.001)


async def test_an_idle_engine_sleeping_towards_a_timer_wakes_a_handful_of_times_in_two_seconds() -> None:
    clock = FakeClock(T0)
    channel = MemoryChannel()
    async with Engine(webhook_flow(0, abandon_after=5.0), channels={"webhook": channel}, clock=clock) as engine:
        engine.track(cart("s1"))
        await engine.flush()
        await idle(engine, clock)
        before = engine._runner.ticks
        # 190 steps of 10 ms: a ticker on a fixed 10 ms tick woke 190 times here.
        await step_clock(clock, 1.9, 190)
        woke = engine._runner.ticks - before
        assert engine.statistics().abandonments == {}
        assert woke <= 1 + math.ceil(1.9 / IDLE_POLL)  # the looks at the journal, at most one settling tick
        clock.set(T0 + 5.0)  # the deadline: abandoned, and the message (no delay) reaches its adapter
        await until(lambda: channel.keys() == ["s1/f/0"], "the abandonment's message")
    assert engine.statistics().abandonments == {"inactivity": 1}


async def test_a_track_into_an_empty_inbox_is_journaled_without_the_clock_moving() -> None:
    clock = FakeClock(T0)
    async with Engine(webhook_flow(0), channels={"webhook": MemoryChannel()}, clock=clock) as engine:
        await idle(engine, clock)
        idle_at = clock.now()
        # From another thread, as a web framework's request thread calls it; the fake clock stands still, so only
        # the inbox's wake-up can get the ticker to journal it.
        assert await anyio.to_thread.run_sync(engine.track, cart("s1"))
        await until(lambda: engine.journal.accepted == 1, "journaling the inbox")
        await until(lambda: engine.ingest.position == 1, "ingest reading it")
        assert not engine.journal.pending
        assert clock.now() == idle_at


async def test_a_due_message_reaches_its_adapter_at_its_deadline_without_a_flush() -> None:
    clock = FakeClock(T0)
    channel = MemoryChannel()
    async with Engine(webhook_flow(30, abandon_after=60), channels={"webhook": channel}, clock=clock) as engine:
        engine.track(cart("s1"))
        await engine.flush()
        clock.advance(60)  # the abandonment: the message is scheduled 30 s later
        await until(lambda: len(engine.pending_messages()) == 1, "scheduling the message")
        await idle(engine, clock)
        clock.advance(28)
        await idle(engine, clock)
        assert channel.keys() == []
        clock.set(T0 + 90)
        await until(lambda: channel.keys() == ["s1/f/0"], "the message at its due time")


async def test_an_idle_owner_reads_what_another_process_journaled_within_one_look() -> None:
    clock = FakeClock(T0)
    store = MemoryStore()
    async with (
        Engine(webhook_flow(0), channels={"webhook": MemoryChannel()}, clock=clock, store=store) as owner,
        Engine(webhook_flow(0), channels={"webhook": MemoryChannel()}, clock=clock, store=store) as other,
    ):
        assert owner.is_owner and not other.is_owner
        await idle(owner, clock)
        other.track(cart("s1"))
        await until(lambda: other.journal.accepted == 1, "the other engine journaling")
        assert owner.ingest.position == 0
        clock.advance(IDLE_POLL)  # the owner's next look at the journal
        await until(lambda: owner.ingest.position == 1, "the owner reading the other's event")


def test_only_the_first_event_into_an_empty_inbox_wakes_the_loop() -> None:
    clock = FakeClock(T0)
    journal = Journal(Config(), clock, MemoryStore())
    woken: list[int] = []
    journal.on_work = lambda: woken.append(len(journal.pending))
    for i in range(3):
        assert journal.track(cart(f"s{i}"))
    assert woken == [1]
    journal.drain()
    assert journal.track(cart("s3"))
    assert woken == [1, 1]


async def test_an_event_tracked_with_sync_durability_is_read_without_the_clock_moving() -> None:
    clock = FakeClock(T0)
    config = webhook_flow(0, store=StoreConfig(durability="sync"))
    async with Engine(config, channels={"webhook": MemoryChannel()}, clock=clock) as engine:
        await idle(engine, clock)
        idle_at = clock.now()
        assert await anyio.to_thread.run_sync(engine.track, cart("s1"))
        assert engine.journal.accepted == 1  # journaled before track() returned
        await until(lambda: engine.ingest.position == 1, "ingest reading it")
        assert clock.now() == idle_at
