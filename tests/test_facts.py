"""The engine keeps the facts recovery analytics are computed from: how each step ended for each cart,
which carts converted (and for how much), and which restore links were followed."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import T0
from recoverkit import Config, Engine, FakeClock, MemoryChannel, MemoryStore
from recoverkit.config import Cap, Flow, FlowStep
from recoverkit.errors import PermanentDeliveryError

pytestmark = pytest.mark.anyio


def shopper(session: str, customer: str, *, consent: bool = True, t: float = T0) -> list[dict[str, Any]]:
    base = {"session_id": session, "customer_id": customer, "ts": t}
    events: list[dict[str, Any]] = [{"event": "identify", **base, "email": f"{customer}@example.com"}]
    if consent:
        events.append({"event": "consent", **base, "granted": ["email"]})
    events.append({"event": "add_to_cart", **base, "currency": "EUR", "items": [{"item_id": "A", "price": "30.00"}]})
    return events


async def test_the_outcome_of_every_step_and_every_conversion_is_kept() -> None:
    steps = [FlowStep(delay=0), FlowStep(delay=3600), FlowStep(delay=7200)]
    caps = [Cap(max=2, per=86_400, channel="email")]
    config = Config(abandon_after=600, caps=caps, flows=[Flow(name="f", steps=steps)])
    clock = FakeClock(T0)
    channel = MemoryChannel()
    store = MemoryStore()
    async with Engine(config, channels={"email": channel}, clock=clock, store=store) as engine:
        for events in (shopper("s1", "c1"), shopper("s2", "c2", consent=False), shopper("s3", "c3")):
            for event in events:
                engine.track(event)
        clock.advance(601)
        await engine.flush()
        channel.fail_next(1, PermanentDeliveryError("no such mailbox"))  # c1's second message
        clock.advance(3600)
        await engine.flush()
        # c3 buys before the second step: the rest of their sequence is cancelled; the order is kept.
        engine.track({"event": "purchase", "session_id": "s3", "customer_id": "c3", "ts": clock.now(),
                      "value": "30.00", "currency": "EUR", "transaction_id": "o-3"})  # fmt: skip
        await engine.flush()
        clock.advance(7200)
        await engine.flush()
        outcomes = {o.key: o.outcome for o in store.outcomes()}
        conversions = store.conversions()
    assert outcomes == {
        "s1/f/0": "sent",
        "s1/f/1": "dead",  # the provider refused it for good: a dead letter
        "s1/f/2": "capped",  # two emails in a day already went to the provider (the refused one counts)
        "s2/f/0": "skipped_no_consent", "s2/f/1": "skipped_no_consent", "s2/f/2": "skipped_no_consent",
        "s3/f/0": "sent",
        "s3/f/1": "sent",
        "s3/f/2": "cancelled_purchase",  # bought between two steps: stopped by the purchase, and says so
    }  # fmt: skip
    (order,) = conversions
    assert (order.cart_key, order.contact_key, order.value, order.currency, order.transaction_id, order.own) == (
        "s3", "c3", 3000, "EUR", "o-3", True
    )


async def test_a_followed_restore_link_is_kept_as_a_visit_of_the_linked_cart() -> None:
    clock = FakeClock(T0)
    store = MemoryStore()
    async with Engine(Config(), channels={"email": MemoryChannel()}, clock=clock, store=store) as engine:
        engine.track({"event": "page_view", "session_id": "new-device", "ts": T0 + 5, "page_type": "cart_restore",
                      "cart_id": "cart-77"})  # fmt: skip
        engine.track({"event": "page_view", "session_id": "new-device", "ts": T0 + 6, "page_type": "product"})
        await engine.flush()
        visits = store.visits()
    assert [(v.cart_key, v.at) for v in visits] == [("cart-77", T0 + 5)]



async def test_a_restore_link_opened_on_another_device_stops_the_next_step_as_a_return() -> None:
    config = Config(abandon_after=600, flows=[Flow(name="f", steps=[FlowStep(delay=0), FlowStep(delay=7200)])])
    clock = FakeClock(T0)
    store = MemoryStore()
    async with Engine(config, channels={"email": MemoryChannel()}, clock=clock, store=store) as engine:
        for event in shopper("laptop", "c1"):
            engine.track({**event, "cart_id": "cart-9"})
        clock.advance(601)
        await engine.flush()  # abandoned: the first message goes, the second is due in two hours
        engine.track({"event": "page_view", "session_id": "phone", "ts": clock.now(), "page_type": "cart_restore",
                      "cart_id": "cart-9"})  # fmt: skip
        await engine.flush()
        clock.advance(7200)
        await engine.flush()
        outcomes = {o.key: o.outcome for o in store.outcomes()}
        visits = [v.cart_key for v in store.visits()]
    assert outcomes == {"cart-9/f/0": "sent", "cart-9/f/1": "cancelled_resumed"}
    assert visits == ["cart-9"]


async def test_one_cart_id_used_from_two_sessions_is_one_cart_and_one_message_with_every_item() -> None:
    config = Config(abandon_after=600, flows=[Flow(name="f", steps=[FlowStep(delay=0)])])
    clock = FakeClock(T0)
    channel = MemoryChannel()
    async with Engine(config, channels={"email": channel}, clock=clock) as engine:
        for event in shopper("laptop", "c1"):
            engine.track({**event, "cart_id": "cart-9"})
        engine.track({"event": "add_to_cart", "session_id": "phone", "cart_id": "cart-9", "ts": T0 + 60,
                      "currency": "EUR", "items": [{"item_id": "B", "price": "5.00"}]})  # fmt: skip
        clock.advance(3600)
        await engine.flush()
    (message,) = channel.sent
    assert message.key == "cart-9/f/0" and message.recipient.email == "c1@example.com"
    assert ([line.item_id for line in message.cart.lines], message.cart.value) == (["A", "B"], 3500)
