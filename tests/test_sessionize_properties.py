"""Invariants of abandonment detection over random shopping sessions (hypothesis).

Each example is a few sessions, some sharing a customer, each a random script of cart, checkout, exit-intent,
payment-failure, purchase and page-view events separated by random gaps chosen around the configured waits.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import T0
from recoverkit.channels.memory import MemoryChannel
from recoverkit.clock import EventClock
from recoverkit.config import Config
from recoverkit.engine import Engine
from recoverkit.events import (
    AddToCart,
    BaseEvent,
    BeginCheckout,
    ExitIntent,
    Item,
    PageView,
    PaymentFailed,
    Purchase,
    RemoveFromCart,
)
from recoverkit.sessionize import Abandoned, Sessionize

pytestmark = pytest.mark.anyio

CONFIG = Config(
    abandon_after=600,
    exit_intent_after=120,
    session_timeout=900,
    recovery_window=3000,
    allowed_lateness=60,
)
KINDS: list[type[BaseEvent]] = [
    AddToCart,
    AddToCart,
    RemoveFromCart,
    BeginCheckout,
    ExitIntent,
    PaymentFailed,
    Purchase,
    PageView,
]
#: Gaps between a session's events: short ones, and ones just either side of each configured wait.
GAPS = st.one_of(st.integers(1, 200), st.sampled_from([119, 121, 599, 601, 899, 901, 2999, 3001, 5000]))


def ts(event: BaseEvent) -> float:
    assert isinstance(event.ts, float)  # the scripts are built with float times, as ingest hands them on
    return event.ts


def is_cart_activity(event: BaseEvent) -> bool:
    return type(event) is AddToCart or (type(event) is BeginCheckout and bool(event.items))


@st.composite
def shopping(draw: st.DrawFn) -> list[BaseEvent]:
    """Events of 1-3 sessions in time order; timestamps are distinct (sessions differ in the fraction)."""
    events: list[BaseEvent] = []
    for n in range(draw(st.integers(1, 3))):
        customer = draw(st.sampled_from([None, "cust-1", "cust-2"]))
        t = draw(st.integers(0, 1200)) + n / 100
        for _ in range(draw(st.integers(1, 8))):
            kind = draw(st.sampled_from(KINDS))
            items: list[Item] = []
            if kind in (AddToCart, RemoveFromCart) or (kind is BeginCheckout and draw(st.booleans())):
                item_id = draw(st.sampled_from("AB"))
                items = [Item(item_id=item_id, price=Decimal("10.00"), quantity=draw(st.integers(1, 2)))]
            events.append(kind(session_id=f"s{n}", customer_id=customer, ts=T0 + t, currency="EUR", items=items))
            t += draw(GAPS)
    return sorted(events, key=ts)


def abandonments(events: list[BaseEvent], advances: list[int]) -> list[Abandoned]:
    """Feed ``events`` in order, moving the watermark after some of them; the abandonments, in emitted order.

    ``advances[i]`` says where the watermark goes after event ``i``: not at all (0), to the event (1), or to
    just before the next event (2), which is as far as the watermark may go without passing it.
    """
    stage = Sessionize(CONFIG)
    out: list[Any] = []
    for i, event in enumerate(events):
        stage.handle([event], out)  # type: ignore[list-item]
        following = ts(events[i + 1]) if i + 1 < len(events) else None
        if advances[i % len(advances)] == 1:
            stage.advance(ts(event), out)
        elif advances[i % len(advances)] == 2 and following is not None:
            stage.advance(following - 0.001, out)
    stage.advance(ts(events[-1]) + 30 * 86_400, out)
    return [item for item in out if type(item) is Abandoned]


ADVANCES = st.lists(st.integers(0, 2), min_size=1, max_size=8)


@pytest.mark.slow
@settings(deadline=None, max_examples=300)
@given(events=shopping(), advances=ADVANCES)
def test_no_abandonment_after_a_purchase_without_new_cart_activity(
    events: list[BaseEvent], advances: list[int]
) -> None:
    customer_of = {e.session_id: e.customer_id for e in events}
    for abandoned in abandonments(events, advances):
        session = abandoned.cart.session_id
        customer = customer_of[session]
        purchases = [
            ts(p)
            for p in events
            if type(p) is Purchase
            and ts(p) < abandoned.at
            and (p.session_id == session or (customer is not None and customer_of[p.session_id] == customer))
        ]
        if not purchases:
            continue
        bought = max(purchases)
        assert any(e.session_id == session and is_cart_activity(e) and bought < ts(e) < abandoned.at for e in events), (
            f"{session} abandoned at {abandoned.at - T0} after a purchase at {bought - T0} with no new cart"
        )


@pytest.mark.slow
@settings(deadline=None, max_examples=300)
@given(events=shopping(), advances=ADVANCES)
def test_at_most_one_abandonment_per_idle_period(events: list[BaseEvent], advances: list[int]) -> None:
    last: dict[str, float] = {}
    for abandoned in abandonments(events, advances):
        session = abandoned.cart.session_id
        previous = last.get(session)
        if previous is not None:
            assert any(e.session_id == session and previous < ts(e) <= abandoned.at for e in events), (
                f"{session} abandoned at {previous - T0} and again at {abandoned.at - T0}, nothing between"
            )
        last[session] = abandoned.at


@pytest.mark.slow
@settings(deadline=None, max_examples=300)
@given(events=shopping(), advances=ADVANCES)
def test_an_abandoned_cart_has_items_and_was_left_after_its_last_activity(
    events: list[BaseEvent], advances: list[int]
) -> None:
    for abandoned in abandonments(events, advances):
        assert abandoned.cart.lines and abandoned.cart.value > 0
        assert abandoned.at >= abandoned.cart.last_at


# -- order independence through the engine ------------------------------------------------------------------


async def sessionize_outputs(chunks: list[list[BaseEvent]]) -> tuple[list[bytes], dict[str, int]]:
    """Replay ``chunks``, a ``submit_many`` each, in event time: sessionize's outputs (sorted) and counts."""
    engine = Engine(CONFIG, clock=EventClock(), channels={"email": MemoryChannel()})
    seen: list[Any] = []
    score_handle = engine.score.handle

    def record(items: list[Any], out: list[Any]) -> None:  # what score receives is what sessionize emitted
        seen.extend(items)
        score_handle(items, out)

    engine.score.handle = record  # type: ignore[method-assign]
    async with engine:
        for chunk in chunks:
            await engine.submit_many(chunk)
        await engine.flush(end_of_input=True)
        assert engine.ingest.late == 0
    emitted = sorted(type(x).__name__.encode() + msgspec.json.encode(x) for x in seen)
    return emitted, dict(engine.sessionize.counts)


@settings(deadline=None, max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=shopping(), data=st.data())
async def test_arrival_order_and_batching_within_the_allowed_lateness_change_nothing(
    events: list[BaseEvent], data: st.DataObject
) -> None:
    # Each event arrives up to (not including) allowed_lateness seconds of event time late: when it arrives,
    # no event more than allowed_lateness newer has arrived before it, so ingest can still put it in place.
    # Arrivals are grouped into random chunks, as a replay submits them.
    n = len(events)
    lateness = int(CONFIG.allowed_lateness)
    delays = data.draw(st.lists(st.integers(0, lateness - 1), min_size=n, max_size=n), label="delays")
    keys = [ts(event) + delay for event, delay in zip(events, delays, strict=True)]
    arrivals = [events[i] for i in sorted(range(n), key=lambda i: (keys[i], i))]
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1)), label="cuts")) if n > 1 else []
    chunks = [arrivals[a:b] for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    assert await sessionize_outputs(chunks) == await sessionize_outputs([[e] for e in events])
