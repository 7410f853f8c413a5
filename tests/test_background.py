"""BackgroundEngine: the engine on its own loop in a daemon thread, for synchronous (WSGI) callers.

These tests are synchronous on purpose: they are the shop's request threads. Events carry explicit past
timestamps where a timer has to fire, so nothing waits on the wall clock.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from recoverkit import BackgroundEngine, Config, EngineStateError, Flow, FlowStep, MemoryChannel

# The webhook channel needs neither consent nor an address; the message is due at the abandonment itself.
CONFIG = Config(abandon_after=60, flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="webhook")])])


def view(session: str) -> dict[str, Any]:
    return {"event": "view_item", "session_id": session, "items": [{"item_id": "SKU-1"}]}


def old_cart(session: str) -> dict[str, Any]:
    """A cart filled an hour ago: abandoned as soon as the engine's watermark moves."""
    return {
        "event": "add_to_cart",
        "session_id": session,
        "ts": time.time() - 3600,
        "items": [{"item_id": "SKU-1", "price": "9.99"}],
    }


@pytest.fixture(params=[False, True], ids=["asyncio", "uvloop"])
def use_uvloop(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def channel() -> MemoryChannel:
    return MemoryChannel()


@pytest.fixture
def engine(channel: MemoryChannel, use_uvloop: bool) -> Iterator[BackgroundEngine]:
    bg = BackgroundEngine(CONFIG, channels={"webhook": channel}, use_uvloop=use_uvloop, close_at_exit=False)
    yield bg
    bg.close(timeout=5)


def test_track_from_a_plain_thread_starts_the_engine(engine: BackgroundEngine) -> None:
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(engine.track(view("s1"))))
    thread.start()
    thread.join()
    assert results == [True]
    engine.flush()
    assert engine.statistics().events_accepted == 1


def test_the_engine_runs_in_a_daemon_thread_not_the_callers(engine: BackgroundEngine) -> None:
    before = set(threading.enumerate())
    engine.start()
    started = [t for t in threading.enumerate() if t not in before]
    assert len(started) == 1 and started[0].daemon


def test_flush_waits_until_a_due_message_is_delivered(
    engine: BackgroundEngine, channel: MemoryChannel
) -> None:
    engine.track(old_cart("s1"))
    engine.flush()
    assert channel.keys() == ["s1/f/0"]


def test_close_drains_what_was_tracked(channel: MemoryChannel, use_uvloop: bool) -> None:
    bg = BackgroundEngine(CONFIG, channels={"webhook": channel}, use_uvloop=use_uvloop, close_at_exit=False)
    for i in range(500):
        bg.track(view(f"s{i}"))
    bg.close()
    assert bg.statistics().events_accepted == 500
    assert channel.closed


def test_after_close_track_returns_false(engine: BackgroundEngine) -> None:
    engine.track(view("s1"))
    engine.close()
    assert engine.track(view("s2")) is False
    assert engine.statistics().events_overflow == 1


def test_after_close_start_and_flush_raise(engine: BackgroundEngine) -> None:
    engine.start()
    engine.close()
    with pytest.raises(EngineStateError):
        engine.start()
    with pytest.raises(EngineStateError):
        engine.flush()


def test_close_is_idempotent_and_works_when_never_started(channel: MemoryChannel) -> None:
    bg = BackgroundEngine(CONFIG, channels={"webhook": channel}, close_at_exit=False)
    bg.close()
    bg.close()
    assert bg.track(view("s1")) is False


def test_pending_messages_are_read_from_the_engine_thread(channel: MemoryChannel) -> None:
    later = Config(
        abandon_after=60, flows=[Flow(name="f", steps=[FlowStep(delay=86_400, channel="webhook")])]
    )
    with BackgroundEngine(later, channels={"webhook": channel}, close_at_exit=False) as bg:
        bg.track(old_cart("s1"))
        bg.flush()
        assert [m.key for m in bg.pending_messages()] == ["s1/f/0"]


def test_configuration_errors_are_raised_at_construction() -> None:
    from recoverkit import ConfigError

    with pytest.raises(ConfigError, match="webhook"):
        BackgroundEngine(CONFIG, channels={"email": MemoryChannel()}, close_at_exit=False)


def test_track_from_many_threads_accepts_each_event_once(engine: BackgroundEngine) -> None:
    threads, per_thread = 8, 1_000
    go = threading.Barrier(threads)

    def feed(worker: int) -> None:
        go.wait()
        for i in range(per_thread):
            engine.track(view(f"w{worker}-{i % 20}"))

    workers = [threading.Thread(target=feed, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    engine.flush()
    stats = engine.statistics()
    assert stats.events_accepted == stats.stages["sessionize"].received == threads * per_thread


# -- fork safety ---------------------------------------------------------------------------------------------


def _child(bg: BackgroundEngine, channel: MemoryChannel, results: Any) -> None:
    # Runs in the forked child, with the parent's BackgroundEngine, whose loop thread did not survive.
    try:
        inherited = len(bg.engine.journal.pending)
        tracked = [bg.track(view("child-view")), bg.track(old_cart("child-cart"))]
        bg.flush()
        stats = bg.statistics()
        results.put(
            {
                "inherited": inherited,
                "tracked": tracked,
                "accepted": stats.events_accepted,
                "sent": channel.keys(),
            }
        )
        bg.close(timeout=5)
    except BaseException as exc:  # report anything to the parent rather than dying silently
        results.put({"error": repr(exc)})


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_can_use_the_engine_started_in_the_parent(
    channel: MemoryChannel, use_uvloop: bool
) -> None:
    # tick_interval=60: the parent's loop will not drain its inbox before the fork, so there are buffered
    # events for the child to (not) inherit.
    config = Config(
        abandon_after=60,
        tick_interval=60,
        flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="webhook")])],
    )
    bg = BackgroundEngine(config, channels={"webhook": channel}, use_uvloop=use_uvloop, close_at_exit=False)
    try:
        bg.start()
        for i in range(10):
            bg.track(view(f"parent-{i}"))
        assert len(bg.engine.journal.pending) == 10  # buffered in the parent at the moment of the fork

        context = multiprocessing.get_context("fork")
        results = context.Queue()
        child = context.Process(target=_child, args=(bg, channel, results))
        child.start()
        outcome = results.get(timeout=30)
        child.join(timeout=30)

        assert outcome == {
            "inherited": 0,  # the parent's buffered events stay the parent's
            "tracked": [True, True],
            "accepted": 2,
            "sent": ["child-cart/f/0"],
        }
        assert child.exitcode == 0
        bg.flush()
        assert bg.statistics().events_accepted == 10  # and the parent still has them, once each
        assert channel.sent == []
    finally:
        bg.close(timeout=5)


# -- nothing global is touched -------------------------------------------------------------------------------


def _globals() -> dict[str, Any]:
    root = logging.getLogger()
    return {
        "loop_policy": type(asyncio.get_event_loop_policy()),
        "sigint": signal.getsignal(signal.SIGINT),
        "sigterm": signal.getsignal(signal.SIGTERM),
        "root_handlers": list(root.handlers),
        "root_level": root.level,
        "structlog_configured": structlog.is_configured(),
    }


def test_start_and_close_change_no_global_state(channel: MemoryChannel, use_uvloop: bool) -> None:
    before = _globals()
    bg = BackgroundEngine(CONFIG, channels={"webhook": channel}, use_uvloop=use_uvloop, close_at_exit=False)
    bg.start()
    bg.track(old_cart("s1"))
    bg.flush()
    assert _globals() == before
    bg.close()
    assert _globals() == before
    assert channel.keys() == ["s1/f/0"]


def test_call_runs_a_coroutine_function_on_the_engines_loop_and_returns_its_result(engine: BackgroundEngine) -> None:
    callers = threading.get_ident()

    async def where(n: int) -> tuple[int, int]:
        return threading.get_ident(), n * 2

    async def fails() -> None:
        raise LookupError("from the loop")

    thread, doubled = engine.call(where, 21)  # starts the engine when it is not running
    assert doubled == 42 and thread != callers
    with pytest.raises(LookupError, match="from the loop"):
        engine.call(fails)
