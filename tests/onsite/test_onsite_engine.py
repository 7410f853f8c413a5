"""The onsite channel through a real engine: a due message waits in the store for its visitor, who sees it once
through the look-up, and never after a purchase."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recoverkit import Config, Engine, FakeClock
from recoverkit.config import Flow, FlowStep, OfferSpec
from recoverkit.errors import ConfigError
from recoverkit.onsite import OnsiteBoard, OnsiteChannel
from recoverkit.store import SQLiteStore
from recoverkit.store.base import Store
from recoverkit.templates import Templates

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600.0


def cart(session: str, customer: str | None = None, cart_id: str = "c-1") -> dict[str, Any]:
    event: dict[str, Any] = {
        "event": "add_to_cart", "session_id": session, "currency": "EUR", "cart_id": cart_id,
        "items": [{"item_id": "MUG", "name": "Mug <b>", "price": "12.50", "quantity": 1}],
    }  # fmt: skip
    if customer is not None:
        event["customer_id"] = customer
    return event


def onsite_config(**step: Any) -> Config:
    return Config(
        abandon_after=60,
        offers={"ten": OfferSpec(kind="discount", name="10% off", percent=10, valid_for=3600)},
        flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="onsite", template="cart-reminder", **step)])],
    )


@pytest.fixture(autouse=True)
def _code_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOVERKIT_CODE_SECRET", "test-only-code-secret-of-at-least-32-bytes")


@pytest.fixture
def store(tmp_path: Path) -> Any:
    opened = SQLiteStore(tmp_path / "store.db")
    yield opened
    opened.close()


async def abandoned_with_offer(store: Store, clock: FakeClock, *events: dict[str, Any], **step: Any) -> None:
    channel = OnsiteChannel(shows=1)
    async with Engine(onsite_config(**step), channels={"onsite": channel}, store=store, clock=clock) as engine:
        for event in events:
            await engine.submit(event)
        clock.advance(120)
        await engine.flush()
        assert engine.statistics().messages.get("sent") == 1, engine.statistics().messages


async def test_a_due_message_waits_for_its_visitor_and_is_shown_once(store: Any) -> None:
    clock = FakeClock(T0)
    await abandoned_with_offer(store, clock, cart("s-1"), offer="ten")
    lines = "{% for line in cart.lines %}{{ line.name }}{% endfor %} {{ offer.code }}"
    board = OnsiteBoard(store, Templates(sources={"cart-reminder.onsite.html": lines}), clock=clock)
    assert board.answer(session_id="s-2", customer_id=None) is None  # someone else
    answer = board.answer(session_id="s-1", customer_id=None)
    assert answer is not None and answer.code is not None and "Mug &lt;b&gt;" in answer.html
    assert answer.code in answer.html and 0 < answer.expires_in <= 3600
    assert board.answer(session_id="s-1", customer_id=None) is None  # shown once
    assert board.mark(answer.token, "clicked", session_id="s-1", customer_id=None)
    assert not board.mark(answer.token, "clicked", session_id="s-1", customer_id=None)
    outcomes = {(o.outcome, o.channel) for o in store.outcomes()}
    assert {("sent", "onsite"), ("shown", "onsite"), ("clicked", "onsite")} <= outcomes


async def test_a_logged_in_customer_sees_it_on_another_device(store: Any) -> None:
    clock = FakeClock(T0)
    await abandoned_with_offer(store, clock, cart("s-1", customer="cust-7"))
    board = OnsiteBoard(store, Templates(), clock=clock)
    assert board.answer(session_id="s-phone", customer_id="cust-7") is not None


async def test_nothing_shows_after_a_purchase_recorded_before_any_cancel(store: Any) -> None:
    clock = FakeClock(T0)
    await abandoned_with_offer(store, clock, cart("s-1"))
    # The purchase as the journal records it for the claims, before the pipeline has seen it.
    store.record_purchase(cart_key="c-1", contact_key="session:s-1", at=clock.now())
    board = OnsiteBoard(store, Templates(), clock=clock)
    assert board.answer(session_id="s-1", customer_id=None) is None


async def test_a_visitor_nobody_waits_for_costs_no_store_round_trip(store: Any) -> None:
    clock = FakeClock(T0)
    await abandoned_with_offer(store, clock, cart("s-1"))
    board = OnsiteBoard(store, Templates(), clock=clock, refresh=60)
    for i in range(100):
        assert board.answer(session_id=f"other-{i}", customer_id=None) is None
    assert (board.from_memory, board.from_store) == (100, 0)
    assert board.answer(session_id="s-1", customer_id=None) is not None
    assert board.answer(session_id="s-1", customer_id=None) is None  # asked the store, found nothing left
    assert board.answer(session_id="s-1", customer_id=None) is None  # ... and no longer asks it
    assert board.from_store == 2


async def test_an_offer_put_elsewhere_is_seen_after_the_refresh(store: Any) -> None:
    clock = FakeClock(T0)
    board = OnsiteBoard(store, Templates(), clock=clock, refresh=5)
    assert board.answer(session_id="s-1", customer_id=None) is None
    await abandoned_with_offer(store, clock, cart("s-1"))  # the clock moved 120 s: past the refresh
    assert board.answer(session_id="s-1", customer_id=None) is not None


async def test_the_rate_limit_counts_per_visitor_and_per_client(store: Any) -> None:
    from recoverkit.onsite import RateLimit

    board = OnsiteBoard(store, Templates(), clock=FakeClock(T0), visitor_limit=RateLimit(2, 60),
                        client_limit=RateLimit(3, 60))  # fmt: skip
    assert [board.limited("a", None, "10.0.0.1") for _ in range(3)] == [False, False, True]
    assert board.limited("b", None, "10.0.0.1") is True  # the client's fourth
    assert board.limited("c", None, "10.0.0.2") is False


async def test_an_onsite_channel_refuses_a_store_without_onsite_offers() -> None:
    class NoOnsite:
        pass

    with pytest.raises(ConfigError, match="NoOnsite cannot keep on-site offers"):
        OnsiteChannel(NoOnsite())  # type: ignore[arg-type]


async def test_the_stored_message_holds_no_email_address(store: Any) -> None:
    clock = FakeClock(T0)
    identify = {"event": "identify", "session_id": "s-1", "email": "ann@example.com"}
    await abandoned_with_offer(store, clock, cart("s-1"), identify)
    [offer] = store.onsite_for(session_id="s-1", customer_id=None, now=clock.now())
    assert b"ann@example.com" not in offer.message


async def test_the_report_counts_what_visitors_did_and_credits_the_order_to_the_onsite_step(store: Any) -> None:
    from recoverkit.analytics._facts import load_facts
    from recoverkit.analytics.recovery import recovery

    clock = FakeClock(T0)
    await abandoned_with_offer(store, clock, cart("s-1"), offer="ten")
    board = OnsiteBoard(store, Templates(), clock=clock)
    answer = board.answer(session_id="s-1", customer_id=None)
    assert answer is not None and board.mark(answer.token, "clicked", session_id="s-1", customer_id=None)
    clock.advance(60)
    purchase = {"event": "purchase", "session_id": "s-1", "cart_id": "c-1", "transaction_id": "T-1",
                "value": "11.25", "currency": "EUR"}  # fmt: skip
    async with Engine(onsite_config(offer="ten"), channels={"onsite": OnsiteChannel()}, store=store,
                      clock=clock) as engine:  # fmt: skip
        await engine.submit(purchase)
        clock.advance(120)
        await engine.flush()
    report = recovery(load_facts(store))
    [row] = [r for r in report.rows if r.dimension == "channel"]
    assert (row.channel, row.sent, row.recovered_carts) == ("onsite", 1, 1)
    assert row.on_site == {"clicked": 1, "shown": 1} and row.not_sent == {} and row.outcomes == 1
