"""Section 4: "goes well with" products from the shop's catalogue beside any offer, in e-mails and on-site."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recoverkit import Config, Engine, FakeClock, MemoryChannel
from recoverkit.catalogue import Product, StaticCatalogue
from recoverkit.config import Flow, FlowStep, OfferSpec
from recoverkit.errors import ConfigError
from recoverkit.onsite import OnsiteBoard, OnsiteChannel
from recoverkit.store import SQLiteStore
from recoverkit.templates import Templates

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600.0
CATALOGUE = StaticCatalogue(
    [
        Product(item_id="MUG", name="Mug", category="mugs", prices={"EUR": 1250}),
        Product(item_id="MUG-S", name="Small mug", category="mugs", prices={"EUR": 900}),
        Product(item_id="COASTER", name="Cork <coaster>", prices={"EUR": 390}, url="https://shop.example/coaster"),
        Product(item_id="SPOON", name="Spoon", prices={"EUR": 250}),
    ],
    complements={"MUG": ["COASTER", "SPOON"]},
)


@pytest.fixture(autouse=True)
def _code_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOVERKIT_CODE_SECRET", "test-only-code-secret-of-at-least-32-bytes")


def config(channel: str, **offer: Any) -> Config:
    return Config(
        abandon_after=60,
        offers={"deal": OfferSpec(name="Deal", **offer)},
        flows=[Flow(name="f", steps=[FlowStep(delay=0, channel=channel, template="cart-reminder", offer="deal")])],
    )


def cart_event() -> dict[str, Any]:
    return {"event": "add_to_cart", "session_id": "s-1", "currency": "EUR", "cart_id": "c-1",
            "items": [{"item_id": "MUG", "name": "Mug", "price": "12.50", "category": "mugs"}]}  # fmt: skip


async def sent(config: Config, channel: Any, store: Any = None, **plugins: Any) -> FakeClock:
    clock = FakeClock(T0)
    async with Engine(config, channels={config.flows[0].steps[0].channel: channel}, clock=clock, store=store,
                      **plugins) as engine:  # fmt: skip
        await engine.submit(cart_event())
        clock.advance(120)
        await engine.flush()
    return clock


async def test_substitutes_and_goes_well_with_beside_each_other() -> None:
    email = MemoryChannel()
    await sent(config("webhook", kind="substitute", suggestions=2, complements=2), email, catalogue=CATALOGUE)
    [message] = email.sent
    assert message.offer is not None
    assert [s.item_id for s in message.offer.suggestions] == ["MUG-S"]
    assert [s.item_id for s in message.offer.complements] == ["COASTER", "SPOON"]
    rendered = Templates().render("cart-reminder", message, kind="email")
    assert "Goes well with:" in rendered.text and "Cork <coaster>    3.90 EUR" in rendered.text
    assert rendered.html is not None and "Cork &lt;coaster&gt;" in rendered.html


async def test_a_code_with_goes_well_with_on_site(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s.db") as store:
        clock = await sent(config("onsite", kind="discount", percent=10, complements=1), OnsiteChannel(),
                           store=store, catalogue=CATALOGUE)  # fmt: skip
        answer = OnsiteBoard(store, Templates(), clock=clock).answer(session_id="s-1", customer_id=None)
    assert answer is not None and answer.code is not None
    assert 'Goes well with: <a href="https://shop.example/coaster">Cork &lt;coaster&gt;</a> (3.90 EUR)' in answer.html


async def test_no_complement_leaves_the_offer_as_it_is() -> None:
    email = MemoryChannel()
    await sent(config("webhook", kind="payment_help", complements=2), email, catalogue=StaticCatalogue([]))
    [message] = email.sent
    assert message.offer is not None and message.offer.kind == "payment_help" and message.offer.complements == ()


async def test_complements_without_a_catalogue_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="flow 'f' step 0 \\(offer 'deal'\\) suggests products, but no catalogue"):
        Engine(config("webhook", kind="payment_help", complements=2), channels={"webhook": MemoryChannel()})


def test_complements_is_bounded() -> None:
    expected = r"invalid configuration at `offers\.deal\.complements`: Expected `int` <= 10"
    with pytest.raises(ConfigError, match=expected):
        Config.from_dict({"offers": {"deal": {"kind": "payment_help", "name": "x", "complements": 11}}})
