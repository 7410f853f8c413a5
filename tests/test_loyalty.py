"""Loyalty bonuses: granted through the shop's programme only for messages that go out, once per message
however often the send or the grant is retried, and recorded on the message's offer."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.contract import make_message
from helpers import T0
from recoverkit import Config, Engine, FakeClock, MemoryChannel
from recoverkit.errors import ConfigError
from recoverkit.loyalty import Loyalty, LoyaltyGrant, MemoryLoyalty, NotGranted
from recoverkit.offers import Offer
from recoverkit.templates import Templates

DAY = 86_400.0


# -- the reference programme ----------------------------------------------------------------------------------


async def grant(loyalty: MemoryLoyalty, key: str = "cart-1/f/0", **terms: Any) -> LoyaltyGrant | NotGranted:
    fields: dict[str, Any] = {"customer_id": "c1", "points": 200, "multiplier": None, "expires_at": T0 + DAY}
    fields.update(terms)
    return await loyalty.grant(key=key, **fields)


@pytest.mark.anyio
async def test_a_grant_is_idempotent_on_its_key() -> None:
    loyalty = MemoryLoyalty()
    first = await grant(loyalty)
    again = await grant(loyalty)
    other = await grant(loyalty, key="cart-1/f/1")
    assert isinstance(first, LoyaltyGrant) and first == again and other != first
    assert (first.customer_id, first.points, first.expires_at) == ("c1", 200, T0 + DAY)
    assert len(loyalty.grants) == 2 and loyalty.calls == 3


@pytest.mark.anyio
async def test_a_key_reused_for_other_terms_is_a_bug_and_raises() -> None:
    loyalty = MemoryLoyalty()
    await grant(loyalty)
    with pytest.raises(ValueError, match="was granted with other terms"):
        await grant(loyalty, customer_id="c2")


@pytest.mark.anyio
async def test_a_failed_call_records_the_grant_before_raising_like_a_lost_answer() -> None:
    loyalty = MemoryLoyalty()
    loyalty.fail_next()
    with pytest.raises(ConnectionError):
        await grant(loyalty)
    assert len(loyalty.grants) == 1
    assert await grant(loyalty) == next(iter(loyalty.grants.values()))


@pytest.mark.anyio
async def test_a_customer_outside_the_programme_is_not_granted() -> None:
    answer = await grant(MemoryLoyalty(members={"someone-else"}))
    assert answer == NotGranted(reason="not_member", detail="the customer is not in the loyalty programme")


@pytest.mark.anyio
async def test_exactly_one_of_points_and_multiplier_is_granted() -> None:
    with pytest.raises(ValueError, match="one of the two"):
        await grant(MemoryLoyalty(), points=200, multiplier=2)
    assert isinstance(await grant(MemoryLoyalty(), points=None, multiplier=2), LoyaltyGrant)


def test_the_memory_programme_is_a_loyalty() -> None:
    assert isinstance(MemoryLoyalty(), Loyalty)


# -- in the engine ---------------------------------------------------------------------------------------------


def config(channel: dict[str, Any] | None = None, delay: float = 0, **offer: Any) -> Config:
    terms = offer or {"points": 200}
    return Config.from_dict(
        {
            "abandon_after": 600,
            "channels": {"email": channel or {}},
            "offers": {"double": {"kind": "loyalty_bonus", "name": "Double points today", "valid_for": DAY, **terms}},
            "flows": [{"name": "f", "steps": [{"delay": delay, "offer": "double"}]}],
        }
    )


def cart_events(customer: str | None = "c1") -> list[dict[str, Any]]:
    base: dict[str, Any] = {"session_id": "s1", "ts": T0}
    if customer is not None:
        base["customer_id"] = customer
    return [
        {"event": "identify", **base, "email": "shopper@example.invalid"},
        {"event": "consent", **base, "granted": ["email"]},
        {"event": "add_to_cart", **base, "currency": "EUR", "items": [{"item_id": "A", "price": "40.00"}]},
    ]


class Run:
    """One engine on a fake clock with a MemoryChannel and a loyalty programme."""

    def __init__(self, engine_config: Config, loyalty: Any = None, channel: MemoryChannel | None = None) -> None:
        self.clock = FakeClock(T0)
        self.channel = channel if channel is not None else MemoryChannel()
        self.loyalty = loyalty if loyalty is not None else MemoryLoyalty()
        self.engine = Engine(engine_config, channels={"email": self.channel}, clock=self.clock, loyalty=self.loyalty)
        self.outcomes: dict[str, int] = {}

    async def abandon_and_wait(self, customer: str | None = "c1", rounds: int = 6, purchase: bool = False) -> Run:
        async with self.engine as engine:
            for event in cart_events(customer):
                engine.track(event)
            self.clock.advance(601)
            await engine.flush()
            if purchase:
                # From another session (an order by phone): in the cart's own session it would be a return.
                engine.track({"event": "purchase", "session_id": "s2", "customer_id": customer, "ts": self.clock.now(),
                              "value": "40.00", "currency": "EUR"})  # fmt: skip
                await engine.flush()
            for _ in range(rounds):  # time for retries: backoff up to 30 s, 60 s, 120 s...
                self.clock.advance(3600)
                await engine.flush()
            self.outcomes = dict(engine.statistics().messages)
        return self


@pytest.mark.anyio
async def test_the_grant_is_recorded_on_the_offer_of_the_message_sent() -> None:
    run = await Run(config()).abandon_and_wait()
    [message] = run.channel.sent
    [(key, granted)] = run.loyalty.grants.items()
    assert key == message.key == "s1/f/0"
    assert message.offer is not None and message.offer.grant_id == granted.grant_id
    assert (message.offer.points, message.offer.expires_at) == (200, granted.expires_at)
    assert granted.expires_at == message.due_at + DAY and granted.customer_id == "c1"
    assert run.outcomes["offer_loyalty_granted"] == 1


@pytest.mark.anyio
async def test_a_grant_that_fails_once_is_retried_under_the_same_key_and_granted_once() -> None:
    loyalty = MemoryLoyalty()
    loyalty.fail_next(1)  # the programme records the grant, but its answer is lost
    run = await Run(config(), loyalty).abandon_and_wait()
    [message] = run.channel.sent
    assert loyalty.calls == 2 and len(loyalty.grants) == 1
    assert message.offer is not None and message.offer.grant_id == loyalty.grants[message.key].grant_id
    assert run.outcomes["failed_attempts"] == 1 and run.outcomes["sent"] == 1
    assert len(run.channel.attempts) == 1  # the adapter never saw a message without its grant


class Flaky:
    """A programme that fails before granting anything, ``failures`` times."""

    def __init__(self, failures: int) -> None:
        self.inner = MemoryLoyalty()
        self.failures = failures

    async def grant(
        self, *, customer_id: str, points: int | None, multiplier: int | None, expires_at: float, key: str
    ) -> LoyaltyGrant | NotGranted:
        if self.failures:
            self.failures -= 1
            raise TimeoutError("loyalty API timed out")
        return await self.inner.grant(
            customer_id=customer_id, points=points, multiplier=multiplier, expires_at=expires_at, key=key
        )


@pytest.mark.anyio
async def test_a_grant_that_keeps_failing_dead_letters_the_message_like_a_failing_coupon_system() -> None:
    loyalty = Flaky(failures=100)
    run = await Run(config({"max_attempts": 3}), loyalty).abandon_and_wait()
    assert run.channel.attempts == [] and loyalty.inner.grants == {}
    assert run.outcomes["dead_lettered"] == 1 and run.outcomes["failed_attempts"] == 3
    [letter] = run.engine.dispatch.dead_letters
    assert letter.message.offer is not None and letter.message.offer.grant_id is None  # the terms, nothing granted


@pytest.mark.anyio
async def test_a_send_retried_after_the_grant_reuses_it_without_calling_the_programme() -> None:
    channel = MemoryChannel()
    channel.fail_next(2)
    run = await Run(config(), channel=channel).abandon_and_wait()
    assert run.loyalty.calls == 1 and len(channel.attempts) == 3
    assert len({m.offer.grant_id for m in channel.attempts if m.offer is not None}) == 1


@pytest.mark.anyio
async def test_no_grant_for_a_message_not_sent_because_the_cart_was_bought_first() -> None:
    run = await Run(config(delay=3600)).abandon_and_wait(purchase=True)
    assert run.channel.sent == [] and run.loyalty.calls == 0 and run.loyalty.grants == {}
    assert run.outcomes["cancelled_purchase"] == 1


@pytest.mark.anyio
async def test_an_anonymous_shopper_gets_the_message_without_the_bonus() -> None:
    run = await Run(config()).abandon_and_wait(customer=None)
    [message] = run.channel.sent
    assert message.offer is None and run.loyalty.calls == 0
    assert run.outcomes["offer_no_customer"] == 1


@pytest.mark.anyio
async def test_a_declined_grant_sends_the_message_without_the_bonus_counted_by_reason() -> None:
    run = await Run(config(), MemoryLoyalty(members=set())).abandon_and_wait()
    [message] = run.channel.sent
    assert message.offer is None and run.outcomes["offer_loyalty_not_member"] == 1


@pytest.mark.anyio
async def test_a_multiplier_offer_asks_the_programme_for_a_multiple_of_the_usual_points() -> None:
    run = await Run(config(multiplier=2)).abandon_and_wait()
    [message] = run.channel.sent
    [granted] = run.loyalty.grants.values()
    assert (granted.points, granted.multiplier) == (None, 2)
    assert message.offer is not None and (message.offer.points, message.offer.multiplier) == (None, 2)


@settings(max_examples=25, deadline=None)
@given(failures=st.integers(0, 3), lost=st.booleans(), send_failures=st.integers(0, 2))
def test_whatever_fails_and_is_retried_a_sent_message_carries_the_one_grant_made(
    failures: int, lost: bool, send_failures: int
) -> None:
    """Grant failures (before or after the programme records the grant) and send failures, in any number the
    channel's attempts allow: exactly one grant is made, and it is the one the sent message carries."""
    import anyio

    async def scenario() -> None:
        if lost:
            loyalty: Any = MemoryLoyalty()
            loyalty.fail_next(failures)
            grants = loyalty.grants
        else:
            loyalty = Flaky(failures)
            grants = loyalty.inner.grants
        channel = MemoryChannel()
        channel.fail_next(send_failures)
        run = await Run(config({"max_attempts": 6}), loyalty, channel).abandon_and_wait(rounds=8)
        [message] = run.channel.sent
        assert len(grants) == 1
        assert message.offer is not None and message.offer.grant_id == grants[message.key].grant_id

    anyio.run(scenario)


def test_a_flow_offering_a_loyalty_bonus_without_a_programme_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigError, match=r"flow 'f' step 0 \(offer 'double'\) grants loyalty points, but no loyalty"):
        Engine(config(), channels={"email": MemoryChannel()}, clock=FakeClock(T0))


def test_an_object_without_grant_is_refused_as_a_loyalty_programme() -> None:
    with pytest.raises(ConfigError, match=r"loyalty object has no `grant"):
        Engine(config(), channels={"email": MemoryChannel()}, clock=FakeClock(T0), loyalty=object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("offer", "message"),
    [
        ({"kind": "loyalty_bonus"}, "expects `points` or `multiplier`"),
        ({"kind": "loyalty_bonus", "points": 100, "multiplier": 2}, "one of the two, not both"),
        ({"kind": "loyalty_bonus", "multiplier": 1}, r"Expected `int` >= 2"),
        ({"kind": "discount", "percent": 5, "multiplier": 2}, r"offers\.x\.multiplier`: expected only on a loyalty"),
    ],
)
def test_bad_loyalty_settings_are_refused_when_loaded(offer: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({"offers": {"x": {"name": "X", **offer}}})


# -- in the built-in templates --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "text"),
    [
        (Offer(kind="loyalty_bonus", name="Points", points=200), "200 bonus points"),
        (Offer(kind="loyalty_bonus", name="Points", multiplier=2), "double points"),
        (Offer(kind="loyalty_bonus", name="Points", multiplier=5), "5x points"),
    ],
)
def test_the_offer_text_of_a_loyalty_bonus(offer: Offer, text: str) -> None:
    rendered = Templates(sources={"t.sms.txt": "{{ offer.text }}"}, builtin=False)
    assert rendered.render("t", make_message(offer=offer), kind="sms").text == text


@pytest.mark.parametrize("name", ["cart-reminder", "cart-last-call"])
@pytest.mark.parametrize("kind", ["email", "sms", "push"])
def test_the_built_in_templates_promise_the_points(name: str, kind: Any) -> None:
    offer = Offer(kind="loyalty_bonus", name="Double points today", multiplier=2, expires_at=T0, grant_id="g-1")
    message = msgspec.structs.replace(make_message(offer=offer), channel=kind)
    rendered = Templates().render(name, message, kind=kind)
    assert "double points" in rendered.text
    if kind == "email":
        promise = "Double points today: complete your order by 2026-01-01 00:00 UTC and earn double points."
        assert promise in rendered.text
        assert rendered.html is not None and "earn double points" in rendered.html


def test_the_background_engine_passes_the_loyalty_programme_on() -> None:
    from recoverkit import BackgroundEngine

    loyalty = MemoryLoyalty()
    background = BackgroundEngine(config(), channels={"email": MemoryChannel()}, loyalty=loyalty, close_at_exit=False)
    try:
        assert background.engine.loyalty is loyalty and background.engine.dispatch._prepare.loyalty is loyalty
    finally:
        background.close()
