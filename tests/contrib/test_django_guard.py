"""A guard written as a plain Django ORM query (docs/durability.md) works: recoverkit runs synchronous guards in
a worker thread, where Django allows synchronous queries, not on its event loop, where Django refuses them; a
failing guard is named as the guard; a guard given as an import path is the function itself."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

try:  # tests/contrib is a plain directory; should it become a package, its modules import relatively
    from django_support import guards, setup
except ImportError:  # pragma: no cover
    from .django_support import guards, setup

setup()

from storefront.models import Cart, Order  # noqa: E402

from recoverkit import ChannelPolicy, Config, Engine, FakeClock, Flow, FlowStep, MemoryChannel  # noqa: E402
from recoverkit.integration import IntegrationSettings  # noqa: E402

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def config(max_attempts: int = 5) -> Config:
    return Config(
        abandon_after=600,
        flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="webhook")])],
        channels={"webhook": ChannelPolicy(address="none", requires_consent=False, max_attempts=max_attempts,
                                           backoff=1.0, backoff_max=1.0)},
    )  # fmt: skip


def add(session: str) -> dict[str, Any]:
    return {
        "event": "add_to_cart", "session_id": session, "ts": T0, "currency": "EUR",
        "items": [{"item_id": "A", "price": "10.00", "quantity": 1}],
    }  # fmt: skip


@pytest.fixture
def bought() -> Iterator[str]:
    """A cart of the shop's database with an order placed (now, so after T0): its session's message is vetoed."""
    cart = Cart.objects.create(id=f"guard-{uuid.uuid4().hex[:12]}")
    order = Order.objects.create(number=uuid.uuid4().hex[:16], cart=cart, total=Decimal("10.00"),
                                 shipping_cost=Decimal("0.00"))  # fmt: skip
    yield cart.id
    order.delete()
    cart.delete()


async def test_a_guard_querying_the_django_orm_lets_sends_go_and_vetoes_the_bought(bought: str) -> None:
    clock = FakeClock(T0)
    channel = MemoryChannel()
    fresh = f"fresh-{uuid.uuid4().hex[:12]}"
    async with Engine(config(), channels={"webhook": channel}, clock=clock,
                      guard=guards.has_not_ordered_since) as engine:  # fmt: skip
        engine.track(add(fresh))
        engine.track(add(bought))
        clock.advance(601)
        await engine.flush()
        messages = engine.statistics().messages
        states = {e.key: e.state for e in engine.store.ledger()}
    assert channel.keys() == [f"{fresh}/f/0"]
    assert states == {f"{fresh}/f/0": "sent", f"{bought}/f/0": "cancelled"}
    assert messages["vetoed"] == 1
    assert "failed_attempts" not in messages


async def test_a_failing_guard_is_named_as_the_guard_not_the_adapter() -> None:
    clock = FakeClock(T0)
    channel = MemoryChannel()
    async with Engine(config(max_attempts=1), channels={"webhook": channel}, clock=clock,
                      guard=guards.broken) as engine:  # fmt: skip
        engine.track(add("s1"))
        clock.advance(601)
        await engine.flush()
        (letter,) = engine.dispatch.dead_letters
        plugins = engine.statistics().stages["dispatch"].extra["plugins"]
    assert channel.attempts == []
    assert letter.error.startswith("guard 'django_support.guards.broken' raised FieldError: ")
    assert plugins["failures"] == {"guard 'django_support.guards.broken'": {"raised": 1}}


def test_a_guard_given_as_an_import_path_is_the_function_and_a_class_is_built() -> None:
    def guard_of(path: str) -> Any:
        return IntegrationSettings.from_mapping({"GUARD": path}, source="settings.RECOVERKIT").guard

    assert guard_of("django_support.guards.has_not_ordered_since") is guards.has_not_ordered_since
    assert isinstance(guard_of("django_support.guards:NotOrdered"), guards.NotOrdered)
