"""The engine as a whole: lifecycle, submit, statistics, configuration checks, threads, live timing."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest
from anyio.from_thread import start_blocking_portal

from recoverkit import (
    Config,
    ConfigError,
    Engine,
    EngineStateError,
    EngineStatistics,
    FakeClock,
    Flow,
    FlowStep,
    InvalidEvent,
    MemoryChannel,
    Message,
    WallClock,
)

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
STAGES = ["ingest", "sessionize", "score", "route", "dispatch"]


def view(session: str) -> dict[str, Any]:
    return {"event": "view_item", "session_id": session, "items": [{"item_id": "SKU-1"}]}


def cart(session: str) -> dict[str, Any]:
    return {"event": "add_to_cart", "session_id": session, "items": [{"item_id": "SKU-1", "price": "9.99"}]}


def webhook_flow(delay: float, **settings: Any) -> Config:
    """A flow on the ``webhook`` channel, which needs neither consent nor an address."""
    return Config(flows=[Flow(name="f", steps=[FlowStep(delay=delay, channel="webhook")])], **settings)


# -- lifecycle -----------------------------------------------------------------------------------------------


async def test_async_with_starts_the_engine_and_returns_it() -> None:
    engine = Engine(channels={"email": MemoryChannel()}, clock=FakeClock(T0))
    async with engine as entered:
        assert entered is engine
        await engine.submit(view("s1"))
        await engine.flush()
        assert engine.statistics().events_accepted == 1


async def test_leaving_async_with_handles_everything_tracked_so_far() -> None:
    engine = Engine(channels={"email": MemoryChannel()}, clock=FakeClock(T0))
    async with engine:
        for i in range(100):
            engine.track(view(f"s{i}"))
    assert engine.statistics().events_accepted == 100


async def test_leaving_async_with_closes_the_adapters_once() -> None:
    channel = MemoryChannel()
    closed: list[str] = []

    async def aclose() -> None:
        closed.append("email")

    channel.aclose = aclose  # type: ignore[method-assign]
    async with Engine(channels={"email": channel, "sms": channel}, clock=FakeClock(T0)):
        pass
    assert closed == ["email"]


async def test_an_adapter_failing_to_close_does_not_fail_the_engine() -> None:
    channel = MemoryChannel()

    async def aclose() -> None:
        raise OSError("connection reset")

    channel.aclose = aclose  # type: ignore[method-assign]
    async with Engine(channels={"email": channel}, clock=FakeClock(T0)) as engine:
        pass
    with pytest.raises(EngineStateError):
        await engine.submit(view("s1"))


async def test_track_after_close_returns_false_and_counts_overflow() -> None:
    async with Engine(channels={"email": MemoryChannel()}, clock=FakeClock(T0)) as engine:
        pass
    assert engine.track(view("s1")) is False
    assert engine.statistics().events_overflow == 1


async def test_submit_after_close_raises_engine_state_error() -> None:
    async with Engine(channels={"email": MemoryChannel()}, clock=FakeClock(T0)) as engine:
        pass
    with pytest.raises(EngineStateError, match="closed"):
        await engine.submit(view("s1"))


async def test_submit_before_start_raises_engine_state_error() -> None:
    engine = Engine(channels={"email": MemoryChannel()}, clock=FakeClock(T0))
    with pytest.raises(EngineStateError, match="async with Engine"):
        await engine.submit(view("s1"))
    with pytest.raises(EngineStateError):
        await engine.flush()


async def test_an_engine_cannot_be_started_twice() -> None:
    async with Engine(channels={"email": MemoryChannel()}, clock=FakeClock(T0)) as engine:
        with pytest.raises(EngineStateError, match="started once"):
            await engine.start()


async def test_leaving_async_with_gives_up_on_a_hung_send_after_close_timeout() -> None:
    cancelled = anyio.Event()

    async def hang(message: Message) -> None:
        try:
            await anyio.Event().wait()
        finally:
            cancelled.set()

    clock = FakeClock(T0)
    engine = Engine(webhook_flow(0, abandon_after=60), channels={"webhook": MemoryChannel(hang)}, clock=clock)
    engine.close_timeout = 0.05
    with anyio.fail_after(5):
        async with engine:
            engine.track(cart("s1"))
            await engine.flush()
            clock.advance(60)  # the ticker fires the abandonment; flush() would wait for the hung send
            while not engine.statistics().stages["dispatch"].extra["in_flight"]:
                await anyio.sleep(0.001)
    assert cancelled.is_set()
    assert engine.track(view("s2")) is False


async def test_cancelling_the_task_inside_async_with_still_closes_the_engine_cleanly() -> None:
    channel = MemoryChannel()
    engine = Engine(channels={"email": channel}, clock=FakeClock(T0))
    with anyio.CancelScope() as scope:  # the host shutting down: its task is cancelled
        async with engine:
            engine.track(view("s1"))
            scope.cancel()
            await anyio.sleep(0)
    assert scope.cancelled_caught
    assert channel.closed
    assert engine.track(view("s2")) is False
    async with Engine(channels={"email": MemoryChannel()}, clock=FakeClock(T0)) as again:  # scopes intact
        await again.flush()


async def test_a_stage_that_fails_surfaces_its_error_instead_of_a_cancellation() -> None:
    channel = MemoryChannel()
    engine = Engine(channels={"email": channel}, clock=FakeClock(T0))

    async def broken(batch: Any, outbox: Any) -> None:
        raise RuntimeError("bug in a stage")

    engine.sessionize.process = broken  # type: ignore[method-assign]
    with pytest.raises(BaseException) as info:  # an ExceptionGroup (the exceptiongroup backport before 3.11)
        async with engine:
            engine.track(view("s1"))
            await engine.flush()
    errors = getattr(info.value, "exceptions", ())
    assert [str(e) for e in errors if isinstance(e, RuntimeError)] == ["bug in a stage"]
    assert channel.closed
    assert engine.track(view("s2")) is False


# -- submit --------------------------------------------------------------------------------------------------


async def test_submit_raises_invalid_event_and_counts_it() -> None:
    async with Engine(channels={"email": MemoryChannel()}, clock=FakeClock(T0)) as engine:
        with pytest.raises(InvalidEvent) as info:
            await engine.submit({"event": "add_to_cart", "session_id": "s1", "currency": "euro"})
        assert (info.value.reason, info.value.field) == ("bad_value", "$.currency")
        await engine.flush()
        assert engine.statistics().events_invalid == {"bad_value": 1}


async def test_submit_raises_for_a_timestamp_in_milliseconds() -> None:
    async with Engine(channels={"email": MemoryChannel()}, clock=FakeClock(T0)) as engine:
        with pytest.raises(InvalidEvent, match="milliseconds"):
            await engine.submit({**view("s1"), "ts": T0 * 1000})
        await engine.flush()
        stats = engine.statistics()
        assert (stats.events_accepted, stats.events_invalid) == (0, {"bad_value": 1})


async def test_submit_many_counts_invalid_events_instead_of_raising() -> None:
    async with Engine(channels={"email": MemoryChannel()}, clock=FakeClock(T0)) as engine:
        await engine.submit_many([view("s1"), b"nope", view("s2")])
        await engine.flush()
        stats = engine.statistics()
        assert (stats.events_accepted, stats.events_invalid) == (2, {"malformed_json": 1})


# -- statistics ----------------------------------------------------------------------------------------------


async def test_statistics_report_every_stage_with_queue_and_latency_figures() -> None:
    async with Engine(channels={"email": MemoryChannel()}, clock=FakeClock(T0)) as engine:
        for i in range(50):
            engine.track(cart(f"s{i}"))
        await engine.flush()
        stats = engine.statistics()
    assert isinstance(stats, EngineStatistics)
    assert list(stats.stages) == STAGES
    assert stats.stages["ingest"].received == 50
    assert stats.stages["sessionize"].received == 50
    for name, stage in stats.stages.items():
        assert stage.name == name
        assert stage.batches >= 1
        assert stage.queue_capacity == Config().queue_batches
        assert 0 <= stage.queue_depth <= stage.queue_peak <= stage.queue_capacity
        assert 0 <= stage.latency_p50 <= stage.latency_p99 <= stage.latency_max
        # Busy time is the sum of the batches' times: at least the longest, at most every batch that long.
        assert 0 < stage.latency_max <= stage.busy_seconds <= stage.batches * stage.latency_max * (1 + 1e-9)
    assert stats.stages["ingest"].latency_max > 0
    assert stats.sessions == 50


async def test_statistics_count_abandonments_reasons_and_messages() -> None:
    clock = FakeClock(T0)
    channel = MemoryChannel()
    async with Engine(
        webhook_flow(10, abandon_after=60), channels={"webhook": channel}, clock=clock
    ) as engine:
        engine.track(cart("s1"))
        await engine.flush()
        clock.advance(70)
        await engine.flush()
        stats = engine.statistics()
    assert stats.abandonments == {"inactivity": 1}
    assert sum(stats.reasons.values()) == 1
    assert stats.messages["sent"] == 1
    assert stats.watermark == T0 + 70
    assert channel.keys() == ["s1/f/0"]


# -- configuration checked at construction -------------------------------------------------------------------


def test_a_flow_channel_without_an_adapter_is_a_config_error() -> None:
    config = Config(flows=[Flow(name="f", steps=[FlowStep(delay=60, channel="sms")])])
    with pytest.raises(ConfigError, match=r"\['sms'\].*channels=\{'sms': <adapter>\}"):
        Engine(config, channels={"email": MemoryChannel()})


def test_a_fallback_channel_without_an_adapter_is_a_config_error() -> None:
    config = Config(flows=[Flow(name="f", steps=[FlowStep(delay=60, channel="email", fallback="sms")])])
    with pytest.raises(ConfigError, match="sms"):
        Engine(config, channels={"email": MemoryChannel()})


def test_an_adapter_without_send_is_a_config_error() -> None:
    class NoSend:
        async def deliver(self, message: Message) -> None: ...

    with pytest.raises(ConfigError, match=r"channel 'email': NoSend has no `send\(message\)` method"):
        Engine(channels={"email": NoSend()})  # type: ignore[dict-item]


def test_a_config_that_is_not_a_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="dict"):
        Engine({"abandon_after": 60})  # type: ignore[arg-type]


def test_a_scorer_without_score_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="score"):
        Engine(channels={"email": MemoryChannel()}, scorer=object())  # type: ignore[arg-type]


def test_without_channels_every_flow_channel_gets_a_console_adapter() -> None:
    from recoverkit import ConsoleChannel

    engine = Engine()
    assert list(engine.channels) == ["email"]
    assert isinstance(engine.channels["email"], ConsoleChannel)


# -- embedded in a thread, fed from many ---------------------------------------------------------------------


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_an_engine_in_a_thread_accepts_every_event_from_eight_threads_exactly_once(use_uvloop: bool) -> None:
    threads, per_thread = 8, 2_000
    engine = Engine(channels={"email": MemoryChannel()})
    start = threading.Barrier(threads)
    refused: list[int] = []

    def feed(worker: int) -> None:
        start.wait()
        refused.append(sum(not engine.track(view(f"w{worker}-{i % 50}")) for i in range(per_thread)))

    with (
        start_blocking_portal("asyncio", {"use_uvloop": use_uvloop}) as portal,
        portal.wrap_async_context_manager(engine),
    ):
        workers = [threading.Thread(target=feed, args=(w,)) for w in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        portal.call(engine.flush)
        stats = portal.call(lambda: _statistics(engine))
    assert refused == [0] * threads
    total = threads * per_thread
    assert stats.events_accepted == total
    assert stats.stages["sessionize"].received == total  # none handed on twice
    assert (stats.events_invalid, stats.events_overflow) == ({}, 0)
    assert stats.sessions == threads * 50


async def _statistics(engine: Engine) -> EngineStatistics:
    return engine.statistics()


# -- live, on the wall clock ---------------------------------------------------------------------------------


async def test_live_a_due_message_reaches_the_adapter_promptly() -> None:
    # Not a benchmark: the bound is loose; it catches a message waiting for something other than its due time.
    arrived: list[float] = []
    done = anyio.Event()

    def record(message: Message) -> None:
        arrived.append(time.time())
        done.set()

    channel = MemoryChannel(record)
    config = webhook_flow(0.05, abandon_after=0.05)
    async with Engine(config, channels={"webhook": channel}, clock=WallClock()) as engine:
        engine.track(cart("s1"))
        with anyio.fail_after(5):
            await done.wait()
    (message,) = channel.sent
    assert 0 <= arrived[0] - message.due_at < 0.5
    assert engine.statistics().stages["dispatch"].extra["send_lateness_p99"] < 0.5


def test_templates_the_flows_name_are_checked_when_the_engine_is_built() -> None:
    from recoverkit import ConfigError, SmtpChannel, Templates

    smtp = SmtpChannel(
        "smtp.shop.example", sender="shop@shop.example", unsubscribe_mailto="unsubscribe@shop.example",
        templates=Templates(),
    )  # fmt: skip
    good = Config(flows=[Flow(name="f", steps=[FlowStep(delay=0, template="cart-reminder")])])
    Engine(good, channels={"email": smtp})
    bad = Config(flows=[Flow(name="f", steps=[FlowStep(delay=0, template="no-such-template")])])
    with pytest.raises(ConfigError, match="no-such-template"):
        Engine(bad, channels={"email": smtp})


def test_a_channel_only_an_ab_variant_uses_needs_an_adapter_at_start_up() -> None:
    # Without the check, the engine starts and a message fails only when a cart is first drawn into the variant.
    from recoverkit.config import Variant

    step = FlowStep(delay=60, channel="webhook", variants=[Variant(name="a"), Variant(name="b", channel="sms")])
    config = Config(flows=[Flow(name="f", steps=[step])])
    with pytest.raises(ConfigError) as info:
        Engine(config, channels={"webhook": MemoryChannel()})
    message = str(info.value)
    assert message.startswith("`flows[0].steps[0].variants[1].channel`:")
    assert "['sms']" in message
