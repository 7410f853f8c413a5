"""Dispatch, through a running engine on a FakeClock: due times, retries, dead letters, containment, cancels.

Every test builds its shoppers from events (identify, consent, add_to_cart), lets the fake clock run past
``abandon_after`` and then past the flow's delay, and looks at what reached the MemoryChannel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import event as hypothesis_event
from hypothesis import given, settings
from hypothesis import strategies as st

from recoverkit import (
    ChannelPolicy,
    Config,
    DeadLetters,
    Engine,
    EventClock,
    FakeClock,
    Flow,
    FlowStep,
    MemoryChannel,
    Message,
    PermanentDeliveryError,
    TransientDeliveryError,
)

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
ABANDON_AFTER = 60.0
DELAY = 30.0
DUE = ABANDON_AFTER + DELAY  # a cart filled at T0 gets its first message at T0 + 90


def config(*steps: tuple[float, str], **policies: ChannelPolicy) -> Config:
    """One flow ``f`` with the given (delay, channel) steps; quick retries unless a policy says otherwise."""
    quick = {"backoff": 1.0, "backoff_max": 4.0}
    channels = {
        name: ChannelPolicy(address=address, **quick)
        for name, address in (("email", "email"), ("sms", "phone"))
    }
    channels.update(policies)
    return Config(
        abandon_after=ABANDON_AFTER,
        session_timeout=3600,
        flows=[Flow(name="f", steps=[FlowStep(delay=d, channel=c) for d, c in steps or [(DELAY, "email")]])],
        channels=channels,
    )


def shopper(session: str, customer: str, *, channels: tuple[str, ...] = ("email",)) -> list[dict[str, Any]]:
    """A known customer who consented to ``channels`` and put something in the cart."""
    return [
        {"event": "identify", "session_id": session, "customer_id": customer,
         "email": f"{customer}@example.com", "phone": "+49 170 1234567"},
        {"event": "consent", "session_id": session, "customer_id": customer, "granted": list(channels)},
        {"event": "add_to_cart", "session_id": session, "customer_id": customer, "currency": "EUR",
         "items": [{"item_id": "SKU-1", "price": "35.79"}]},
    ]  # fmt: skip


def purchase(session: str, customer: str) -> dict[str, Any]:
    return {
        "event": "purchase",
        "session_id": session,
        "customer_id": customer,
        "transaction_id": f"o-{session}",
    }


class Run:
    """An engine on a fake clock, with the helpers every test here needs."""

    def __init__(self, engine: Engine, clock: FakeClock) -> None:
        self.engine = engine
        self.clock = clock

    async def track(self, *events: Mapping[str, Any]) -> None:
        for event in events:
            assert self.engine.track(event)
        await self.engine.flush()

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` of fake time pass; what fell due has been handled (and sent) on return."""
        self.clock.advance(seconds)
        await self.engine.flush()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Let the engine's loop run until ``condition()`` holds (for states that flush() would wait out)."""
        with anyio.fail_after(5):
            while not condition():
                await anyio.sleep(0.001)

    @property
    def outcomes(self) -> dict[str, int]:
        return self.engine.statistics().messages


def running(cfg: Config, channels: Mapping[str, Any], **kwargs: Any) -> AbstractAsyncContextManager[Run]:
    return running_on(FakeClock(T0), cfg, channels, **kwargs)


@asynccontextmanager
async def running_on(
    clock: FakeClock, cfg: Config, channels: Mapping[str, Any], **kwargs: Any
) -> AsyncIterator[Run]:
    """``async with running_on(...) as run``: an engine on ``clock``, started and closed around the block."""
    async with Engine(cfg, channels=channels, clock=clock, **kwargs) as engine:
        yield Run(engine, clock)


@pytest.fixture
def email() -> MemoryChannel:
    return MemoryChannel()


@pytest.fixture
async def run(email: MemoryChannel) -> AsyncIterator[Run]:
    async with running(config(), {"email": email}) as r:
        yield r


# -- due times -----------------------------------------------------------------------------------------------


async def test_message_is_delivered_when_due_and_not_before(run: Run, email: MemoryChannel) -> None:
    await run.track(*shopper("s1", "c1"))
    await run.advance(ABANDON_AFTER)
    assert [m.key for m in run.engine.pending_messages()] == ["s1/f/0"]
    await run.advance(DELAY - 0.5)
    assert email.attempts == []
    await run.advance(0.5)
    assert email.keys() == ["s1/f/0"]
    assert email.sent[0].due_at == T0 + DUE
    assert run.engine.pending_messages() == []


async def test_the_message_carries_the_cart_and_the_address_its_channel_needs(
    run: Run, email: MemoryChannel
) -> None:
    await run.track(*shopper("s1", "c1"))
    await run.advance(DUE)
    (message,) = email.sent
    assert (message.flow, message.step, message.channel, message.trigger) == ("f", 0, "email", "inactivity")
    assert message.recipient.email == "c1@example.com"
    assert message.recipient.phone is None  # only the address the channel needs travels
    assert message.cart.value == 3579 and message.cart.currency == "EUR"


async def test_messages_of_later_steps_wait_for_their_own_delay(email: MemoryChannel) -> None:
    async with running(config((DELAY, "email"), (600, "email")), {"email": email}) as run:
        await run.track(*shopper("s1", "c1"))
        await run.advance(DUE)
        assert email.keys() == ["s1/f/0"]
        await run.advance(600 - DELAY - 1)
        assert email.keys() == ["s1/f/0"]
        await run.advance(1)
        assert email.keys() == ["s1/f/0", "s1/f/1"]


# -- retries and dead letters --------------------------------------------------------------------------------


async def test_a_transient_failure_is_retried_with_backoff_until_it_succeeds(
    run: Run, email: MemoryChannel
) -> None:
    email.fail_next(2)
    await run.track(*shopper("s1", "c1"))
    await run.advance(DUE)
    assert (len(email.attempts), email.sent) == (1, [])
    retry = run.engine.pending_messages()
    assert [m.key for m in retry] == ["s1/f/0"]  # back in the schedule, not retried on the spot
    for _ in range(10):
        await run.advance(4)
    assert [m.key for m in email.attempts] == ["s1/f/0"] * 3
    assert email.keys() == ["s1/f/0"]
    outcomes = run.outcomes
    assert (outcomes["sent"], outcomes["failed_attempts"], outcomes["retry_scheduled"]) == (1, 2, 2)
    assert run.engine.statistics().dead_letters == 0


async def test_a_retry_waits_for_its_backoff() -> None:
    attempted_at: list[float] = []
    email = MemoryChannel(handler=lambda message: attempted_at.append(clock.now()) or None)
    slow = ChannelPolicy(backoff=100.0, backoff_max=100.0)
    async with running(config(email=slow), {"email": email}) as run:
        clock = run.clock
        email.fail_next(1)  # fail_next fails before the handler runs: note the first attempt separately
        await run.track(*shopper("s1", "c1"))
        await run.advance(DUE)
        first = clock.now()
        for _ in range(101):
            await run.advance(1)
        assert len(email.attempts) == 2
    (second,) = attempted_at
    # Full jitter: anywhere up to the backoff; with Config.seed the draw is the same on every run.
    assert 1 <= second - first <= 101


@pytest.mark.parametrize(("asked", "expected"), [(500.0, 500.0), (10 * 86_400.0, 86_400.0)])
async def test_a_retry_waits_as_long_as_the_provider_asked_up_to_a_day(asked: float, expected: float) -> None:
    email = MemoryChannel()
    quick = ChannelPolicy(backoff=1.0, backoff_max=2.0)  # on its own, the backoff would retry within 2 s
    async with running(config(email=quick), {"email": email}) as run:
        email.fail_next(1, TransientDeliveryError("HTTP 429; retry after", retry_after=asked))
        await run.track(*shopper("s1", "c1"))
        await run.advance(DUE)
        assert len(run.engine.pending_messages()) == 1
        await run.advance(expected - 1)
        assert len(email.attempts) == 1  # not before the time the provider gave
        await run.advance(2)
        assert email.keys() == ["s1/f/0"]
        assert run.outcomes["retry_after_honoured"] == 1


async def test_a_retry_after_shorter_than_the_backoff_draw_changes_nothing() -> None:
    email = MemoryChannel()
    async with running(config(email=ChannelPolicy(backoff=100.0, backoff_max=100.0)), {"email": email}) as run:
        email.fail_next(1, TransientDeliveryError("busy", retry_after=0.0))
        await run.track(*shopper("s1", "c1"))
        await run.advance(DUE)
        await run.advance(101)
        assert email.keys() == ["s1/f/0"] and run.outcomes.get("retry_after_honoured", 0) == 0


async def test_a_permanent_failure_goes_to_the_dead_letters_without_retry(
    run: Run, email: MemoryChannel
) -> None:
    email.fail_next(1, PermanentDeliveryError("mailbox c1@example.com does not exist"))
    await run.track(*shopper("s1", "c1"))
    await run.advance(DUE)
    for _ in range(10):
        await run.advance(60)
    assert len(email.attempts) == 1
    (letter,) = run.engine.dispatch.dead_letters
    assert (letter.message.key, letter.attempts, letter.permanent) == ("s1/f/0", 1, True)
    assert letter.error.startswith("PermanentDeliveryError:")
    assert run.outcomes["dead_lettered"] == 1


async def test_a_message_is_dead_lettered_when_attempts_run_out(email: MemoryChannel) -> None:
    async with running(
        config(email=ChannelPolicy(max_attempts=3, backoff=1, backoff_max=2)), {"email": email}
    ) as run:
        email.fail_next(100)
        await run.track(*shopper("s1", "c1"))
        await run.advance(DUE)
        for _ in range(10):
            await run.advance(2)
        assert len(email.attempts) == 3
        (letter,) = run.engine.dispatch.dead_letters
        assert (letter.attempts, letter.permanent) == (3, False)
        assert letter.error.startswith("TransientDeliveryError:")
        assert run.engine.pending_messages() == []


async def test_dead_letters_are_written_to_the_file_and_read_back(
    tmp_path: Path, email: MemoryChannel
) -> None:
    path = tmp_path / "dead.jsonl"
    async with running(config(), {"email": email}, dead_letters=path) as run:
        email.fail_next(1, PermanentDeliveryError("address rejected"))
        await run.track(*shopper("s1", "c1"), *shopper("s2", "c2"))
        await run.advance(DUE)
    (letter,) = DeadLetters(path)
    assert letter == next(iter(run.engine.dispatch.dead_letters))
    assert (letter.error, letter.permanent, letter.attempts) == (
        "PermanentDeliveryError: address rejected",
        True,
        1,
    )
    assert sorted([*email.keys(), letter.message.key]) == ["s1/f/0", "s2/f/0"]


async def test_an_adapter_raising_an_unexpected_error_is_contained_and_retried(
    run: Run, email: MemoryChannel
) -> None:
    calls: list[str] = []

    def buggy(message: Message) -> None:
        calls.append(message.key)
        if len(calls) == 1:
            raise TypeError("'NoneType' object is not subscriptable")

    buggy_email = MemoryChannel(handler=buggy)
    async with running(config(), {"email": buggy_email}) as r:
        await r.track(*shopper("s1", "c1"), *shopper("s2", "c2"))
        await r.advance(DUE)
        for _ in range(5):
            await r.advance(4)
        assert sorted(buggy_email.keys()) == ["s1/f/0", "s2/f/0"]
        assert len(buggy_email.attempts) == 3
        assert r.outcomes["failed_attempts"] == 1
        assert r.engine.statistics().stages["dispatch"].extra["in_flight"] == 0


# -- containment: timeouts and concurrency -------------------------------------------------------------------


def hanging(log: list[str]) -> Callable[[Message], Any]:
    never = anyio.Event()

    async def handler(message: Message) -> None:
        log.append(f"{message.channel} started")
        try:
            await never.wait()
        except anyio.get_cancelled_exc_class():
            log.append(f"{message.channel} timed out")
            raise

    return handler


async def test_an_adapter_that_hangs_is_timed_out() -> None:
    log: list[str] = []
    stuck = MemoryChannel(handler=hanging(log))
    policy = ChannelPolicy(timeout=0.05, max_attempts=1)
    async with running(config(email=policy), {"email": stuck}) as run:
        await run.track(*shopper("s1", "c1"))
        await run.advance(DUE)  # returns once the send has timed out: flush waits for sends in flight
        assert log == ["email started", "email timed out"]
        (letter,) = run.engine.dispatch.dead_letters
        assert letter.error == "TimeoutError: no answer within 0.05s"


async def test_an_adapter_that_hangs_stalls_neither_other_channels_nor_ingest() -> None:
    log: list[str] = []
    stuck = MemoryChannel(handler=hanging(log))
    sms_sent = anyio.Event()

    def sms_handler(message: Message) -> None:
        log.append("sms sent")
        sms_sent.set()

    sms = MemoryChannel(handler=sms_handler)
    cfg = config((DELAY, "email"), (DELAY, "sms"), email=ChannelPolicy(timeout=0.2, max_attempts=1))
    async with running(cfg, {"email": stuck, "sms": sms}) as run:
        await run.track(*shopper("s1", "c1", channels=("email", "sms")))
        run.clock.advance(DUE)  # the engine's ticker picks this up; flush() would wait for the stuck send
        with anyio.fail_after(5):
            await sms_sent.wait()
        accepted = run.engine.statistics().events_accepted
        run.engine.track({"event": "page_view", "session_id": "s2"})
        run.clock.advance(0.01)
        await run.wait_until(lambda: run.engine.statistics().events_accepted == accepted + 1)
        log.append("ingested")
        await run.engine.flush()
    assert log == ["email started", "sms sent", "ingested", "email timed out"]


async def test_the_channel_concurrency_limit_is_respected() -> None:
    current = peak = 0

    async def handler(message: Message) -> None:
        nonlocal current, peak
        current += 1
        peak = max(peak, current)
        for _ in range(5):
            await anyio.sleep(0)  # let every other delivery task try to start
        current -= 1

    email = MemoryChannel(handler=handler)
    async with running(config(email=ChannelPolicy(concurrency=2)), {"email": email}) as run:
        await run.track(*[e for i in range(8) for e in shopper(f"s{i}", f"c{i}")])
        await run.advance(DUE)
    assert len(email.sent) == 8
    assert peak == 2


# -- never after purchase ------------------------------------------------------------------------------------


async def test_a_purchase_cancels_what_is_pending_for_the_cart(run: Run, email: MemoryChannel) -> None:
    await run.track(*shopper("s1", "c1"))
    await run.advance(ABANDON_AFTER + 1)
    assert len(run.engine.pending_messages()) == 1
    await run.track(purchase("s1", "c1"))
    await run.advance(3600)
    assert email.attempts == []
    assert run.engine.pending_messages() == []


async def test_a_purchase_in_another_session_of_the_customer_cancels_the_cart(
    run: Run, email: MemoryChannel
) -> None:
    await run.track(*shopper("s1", "c1"))
    await run.advance(ABANDON_AFTER + 1)
    await run.track(purchase("s2-phone", "c1"))
    await run.advance(3600)
    assert email.attempts == []
    assert run.engine.pending_messages() == []


async def test_a_purchase_by_another_customer_cancels_nothing(run: Run, email: MemoryChannel) -> None:
    await run.track(*shopper("s1", "c1"))
    await run.advance(ABANDON_AFTER + 1)
    await run.track(purchase("s2", "c2"))
    await run.advance(3600)
    assert email.keys() == ["s1/f/0"]


def blocking_first_send() -> tuple[MemoryChannel, list[str], anyio.Event, anyio.Event]:
    """An email channel whose first send records its key, signals ``first_started`` and blocks until ``release``."""
    release = anyio.Event()
    first_started = anyio.Event()
    first: list[str] = []

    async def handler(message: Message) -> None:
        if not first:
            first.append(message.key)
            first_started.set()
            await release.wait()

    return MemoryChannel(handler=handler), first, first_started, release


async def test_a_purchase_arriving_between_due_time_and_adapter_call_cancels_the_send() -> None:
    email, first, first_started, release = blocking_first_send()
    async with running(config(email=ChannelPolicy(concurrency=1, timeout=30)), {"email": email}) as run:
        await run.track(*shopper("s1", "c1"), *shopper("s2", "c2"))
        run.clock.advance(DUE)  # both fall due; the first send blocks and the second waits for the slot
        with anyio.fail_after(5):
            await first_started.wait()
        other_session, other_customer = ("s2", "c2") if first == ["s1/f/0"] else ("s1", "c1")
        received = run.engine.dispatch.received
        run.engine.track(purchase(other_session, other_customer))
        run.clock.advance(1)
        await run.wait_until(lambda: run.engine.dispatch.received > received)  # the cancel reached dispatch
        release.set()
        await run.engine.flush()
    assert email.keys() == first
    assert [m.key for m in email.attempts] == first
    assert run.outcomes["cancelled_purchase"] == 1


async def test_a_flush_waiting_on_a_send_cancelled_at_its_slot_returns() -> None:
    email, first, first_started, release = blocking_first_send()
    async with running(config(email=ChannelPolicy(concurrency=1, timeout=30)), {"email": email}) as run:
        await run.track(*shopper("s1", "c1"), *shopper("s2", "c2"))
        run.clock.advance(DUE)
        with anyio.fail_after(5):
            await first_started.wait()
        other_session, other_customer = ("s2", "c2") if first == ["s1/f/0"] else ("s1", "c1")
        dispatch = run.engine.dispatch
        received = dispatch.received
        run.engine.track(purchase(other_session, other_customer))
        run.clock.advance(1)
        await run.wait_until(lambda: dispatch.received > received)  # the cancel reached dispatch
        flushed = anyio.Event()

        async def flush() -> None:
            await run.engine.flush()  # waits for both sends: the blocked one and the one behind it
            flushed.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                batches = dispatch.batches
                tg.start_soon(flush)
                await run.wait_until(lambda: dispatch.batches > batches)  # the flush is waiting in dispatch
                release.set()  # the first send ends; the second finds the purchase at its slot
                await flushed.wait()
    assert email.keys() == first
    assert run.outcomes["cancelled_purchase"] == 1


async def test_a_purchase_cancels_the_retry_of_a_failed_send(run: Run, email: MemoryChannel) -> None:
    email.fail_next(1)
    await run.track(*shopper("s1", "c1"))
    await run.advance(DUE)
    assert len(email.attempts) == 1
    await run.track(purchase("s1", "c1"))
    for _ in range(5):
        await run.advance(4)
    assert len(email.attempts) == 1 and email.sent == []


# -- at most once per key, consent ---------------------------------------------------------------------------


async def test_a_re_abandoned_cart_does_not_get_step_0_twice(email: MemoryChannel) -> None:
    async with running(config((DELAY, "email"), (600, "email")), {"email": email}) as run:
        await run.track(*shopper("s1", "c1"))
        await run.advance(DUE)
        assert email.keys() == ["s1/f/0"]
        await run.track({"event": "page_view", "session_id": "s1"})  # back: step 1 is cancelled
        await run.advance(ABANDON_AFTER)  # abandoned again: the flow starts over
        await run.advance(3600)
        assert email.keys() == ["s1/f/0", "s1/f/1"]
        outcomes = run.outcomes
        assert (outcomes["cancelled_resumed"], outcomes["duplicate_key"]) == (1, 1)


async def test_withdrawing_consent_cancels_what_is_pending_on_that_channel_only() -> None:
    email, sms = MemoryChannel(), MemoryChannel()
    async with running(config((DELAY, "email"), (DELAY, "sms")), {"email": email, "sms": sms}) as run:
        await run.track(*shopper("s1", "c1", channels=("email", "sms")))
        await run.advance(ABANDON_AFTER + 1)
        assert len(run.engine.pending_messages()) == 2
        # The unsubscribe link in another message, opened in another session of the same customer.
        await run.track({"event": "consent", "session_id": "s9", "customer_id": "c1", "withdrawn": ["email"]})
        await run.advance(3600)
    assert email.attempts == []
    assert sms.keys() == ["s1/f/1"]
    assert run.outcomes["cancelled_consent_withdrawn"] == 1


async def test_without_consent_nothing_is_scheduled(run: Run, email: MemoryChannel) -> None:
    await run.track(*shopper("s1", "c1", channels=()))
    await run.advance(3600)
    assert email.attempts == []
    assert run.engine.route.skipped == {"no_consent": 1}


# -- invariants over random shopper behaviour ----------------------------------------------------------------

_customers = st.sampled_from(["c0", "c1", "c2"])
_sessions = st.integers(min_value=0, max_value=2)
_actions = st.lists(
    st.one_of(
        st.tuples(st.just("cart"), _customers, _sessions),
        st.tuples(st.just("view"), _customers, _sessions),
        st.tuples(st.just("buy"), _customers, _sessions),
        st.tuples(st.just("withdraw"), _customers, st.just(9)),
        st.tuples(st.just("advance"), st.integers(min_value=1, max_value=200), st.just(0)),
        st.tuples(st.just("fail"), st.integers(min_value=1, max_value=3), st.just(0)),
    ),
    max_size=30,
)


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(_actions)
def test_random_shoppers_never_get_a_duplicate_a_message_after_purchase_or_without_consent(
    actions: list[tuple[str, Any, int]],
) -> None:
    clock = FakeClock(T0)
    bought: dict[str, list[float]] = {}
    consent: dict[str, bool] = {}
    sends = {"now": 0, "peak": 0}
    violations: list[str] = []

    async def deliver(message: Message) -> None:
        customer = message.recipient.contact_key
        started = message.cart.started_at
        if [t for t in bought.get(customer, []) if started <= t <= clock.now()]:
            violations.append(f"{message.key} sent after a purchase")
        if not consent.get(customer):
            violations.append(f"{message.key} sent without consent")
        if clock.now() < message.due_at:
            violations.append(f"{message.key} sent before it was due")
        sends["now"] += 1
        sends["peak"] = max(sends["peak"], sends["now"])
        await anyio.sleep(0)
        sends["now"] -= 1

    email = MemoryChannel(handler=deliver)
    cfg = config(
        (DELAY, "email"), (120, "email"), email=ChannelPolicy(concurrency=2, backoff=1, backoff_max=8)
    )

    async def scenario() -> None:
        async with running_on(clock, cfg, {"email": email}) as run:
            for action, who, k in actions:
                session = f"{who}-s{k}"
                if action == "cart":
                    consent[who] = True
                    await run.track(*shopper(session, who))
                elif action == "view":
                    await run.track({"event": "page_view", "session_id": session, "customer_id": who})
                elif action == "buy":
                    bought.setdefault(who, []).append(clock.now())
                    await run.track(purchase(session, who))
                elif action == "withdraw":
                    consent[who] = False
                    await run.track(
                        {
                            "event": "consent",
                            "session_id": session,
                            "customer_id": who,
                            "withdrawn": ["email"],
                        }
                    )
                elif action == "advance":
                    await run.advance(who)
                else:
                    email.fail_next(who)
            for _ in range(10):  # let everything still scheduled fall due (retries included)
                await run.advance(600)

    anyio.run(scenario)
    assert violations == []
    keys = email.keys()
    hypothesis_event(f"messages sent: {min(len(keys), 3)}{'+' if len(keys) >= 3 else ''}")
    assert len(keys) == len(set(keys))  # never two messages for one step of one cart
    assert sends["peak"] <= 2  # the channel's concurrency cap


# -- event time: decisions do not depend on batching ---------------------------------------------------------


@pytest.mark.parametrize("back", ["page_view", "purchase"])
@pytest.mark.parametrize("chunk", [1, 100], ids=["one-by-one", "one-batch"])
async def test_in_a_replay_a_message_due_before_the_shopper_came_back_is_sent(back: str, chunk: int) -> None:
    # Abandoned at 60 s, the message is due at 90 s; the shopper is back at 200 s. A live engine sends at
    # 90 s, so a replay must too, whether or not the return shares a batch with the due time.
    email = MemoryChannel()
    engine = Engine(config(), channels={"email": email}, clock=EventClock())
    events: list[dict[str, Any]] = [{**event, "ts": T0} for event in shopper("s1", "c1")]
    events += [
        {"event": back, "session_id": "s1", "customer_id": "c1", "ts": T0 + 200},
        {"event": "page_view", "session_id": "other", "ts": T0 + 5000},
    ]
    async with engine:
        for i in range(0, len(events), chunk):
            await engine.submit_many(events[i : i + chunk])
            await engine.flush()
        await engine.flush(end_of_input=True)
    assert email.keys() == ["s1/f/0"]
    assert email.sent[0].due_at == T0 + DUE
