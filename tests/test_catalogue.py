"""Substitute offers: the shop's catalogue behind a small interface, its in-memory reference implementation, and
the engine asking it only for messages that go out, carrying on without it when it fails."""

from __future__ import annotations

import doctest
from collections.abc import Sequence
from typing import Any

import anyio
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import recoverkit.catalogue
from channels.contract import make_message
from helpers import T0
from recoverkit import Config, Engine, FakeClock, MemoryChannel
from recoverkit.cart import CartLine, CartSnapshot
from recoverkit.catalogue import Catalogue, Product, StaticCatalogue, Suggestion, SuggestKind
from recoverkit.errors import ConfigError
from recoverkit.events import CheckoutStep
from recoverkit.offers import Offer
from recoverkit.templates import Templates

MUGS = [
    Product(item_id="mug-xl", name="XL mug", category="mugs", prices={"EUR": 2500, "USD": 2700}),
    Product(item_id="mug", name="Mug", category="mugs", prices={"EUR": 1500, "USD": 1600}, url="https://s.ex/mug"),
    Product(item_id="mug-s", name="Small mug", category="mugs", prices={"EUR": 900}),
    Product(item_id="mug-eu", name="Euro mug", category="mugs", prices={"EUR": 1500}),
    Product(item_id="spoon", name="Spoon", category="cutlery", prices={"EUR": 300, "USD": 350}),
    Product(item_id="coaster", name="Coaster", category="home", prices={"EUR": 400, "USD": 450}),
]
PAIRS = {"mug-xl": ["coaster", "spoon"], "mug": ["spoon", "nowhere"]}


def cart(*lines: CartLine, currency: str | None = "EUR") -> CartSnapshot:
    return CartSnapshot(
        cart_key="c", session_id="s", customer_id="cust-1", currency=currency, lines=lines,
        value=sum(line.price * line.quantity for line in lines), shipping=None, step=CheckoutStep.CART,
        started_at=T0, checkout_at=None, last_at=T0,
    )  # fmt: skip


def line(item_id: str, price: int, category: str | None = None) -> CartLine:
    return CartLine(item_id=item_id, price=price, quantity=1, category=category)


def suggest(
    catalogue: StaticCatalogue, shopped: CartSnapshot, kind: SuggestKind = "substitute", limit: int = 3
) -> list[str]:
    return [s.item_id for s in catalogue.suggest_sync(shopped, kind=kind, limit=limit)]


# -- the reference catalogue -----------------------------------------------------------------------------------


def test_the_module_docstring_examples_run() -> None:
    assert doctest.testmod(recoverkit.catalogue).failed == 0


def test_substitutes_are_cheaper_in_the_category_of_the_dearest_line_nearest_in_price_first() -> None:
    catalogue = StaticCatalogue(MUGS)
    shopped = cart(line("mug-xl", 2500), line("spoon", 300))
    # Both 15.00 mugs, ties by id, then the small one; never the spoon's category, never the XL mug itself.
    assert suggest(catalogue, shopped) == ["mug", "mug-eu", "mug-s"]


def test_a_substitute_has_a_price_in_the_carts_currency_or_is_not_suggested() -> None:
    catalogue = StaticCatalogue(MUGS)
    [only] = catalogue.suggest_sync(cart(line("mug-xl", 2700), currency="USD"), kind="substitute", limit=3)
    assert (only.item_id, only.price, only.currency, only.url) == ("mug", 1600, "USD", "https://s.ex/mug")


def test_the_lines_own_category_is_used_before_the_catalogues() -> None:
    catalogue = StaticCatalogue(MUGS)
    assert suggest(catalogue, cart(line("unknown-thing", 1000, category="home"))) == ["coaster"]
    assert suggest(catalogue, cart(line("unknown-thing", 1000))) == []  # no category known: nothing to compare


def test_items_in_the_cart_are_never_suggested() -> None:
    catalogue = StaticCatalogue(MUGS)
    assert "mug" not in suggest(catalogue, cart(line("mug-xl", 2500), line("mug", 1500)))


def test_complements_follow_the_configured_pairs_dearest_line_first() -> None:
    catalogue = StaticCatalogue(MUGS, complements=PAIRS)
    assert suggest(catalogue, cart(line("mug", 1500), line("mug-xl", 2500)), "complement") == ["coaster", "spoon"]
    assert suggest(catalogue, cart(line("mug", 1500)), "complement") == ["spoon"]  # unknown products are skipped


def test_the_limit_is_honoured() -> None:
    catalogue = StaticCatalogue(MUGS)
    assert suggest(catalogue, cart(line("mug-xl", 2500)), limit=1) == ["mug"]
    assert suggest(catalogue, cart(line("mug-xl", 2500)), limit=0) == []


@pytest.mark.parametrize(
    ("products", "message"),
    [
        ([Product(item_id="a", name="A"), Product(item_id="a", name="B")], "unique item ids, got 'a' twice"),
        ([Product(item_id="a", name="A", prices={"EUR": 9.99})], "price in EUR: expected integer minor units"),  # type: ignore[dict-item]
        ([Product(item_id="a", name="A", prices={"EUR": -1})], "expected integer minor units >= 0, got -1"),
    ],
)
def test_a_bad_product_list_is_refused(products: list[Product], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StaticCatalogue(products)


def test_the_static_catalogue_is_a_catalogue() -> None:
    assert isinstance(StaticCatalogue([]), Catalogue)


_categories = st.sampled_from(["a", "b", "c"])
_products = st.lists(
    st.builds(
        Product,
        item_id=st.text("pqrstu", min_size=1, max_size=3),
        name=st.just("x"),
        category=_categories,
        prices=st.dictionaries(st.sampled_from(["EUR", "USD"]), st.integers(0, 10_000), max_size=2),
    ),
    unique_by=lambda p: p.item_id,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(_products, st.lists(st.tuples(st.text("pqrstuv", min_size=1, max_size=3), st.integers(0, 10_000), _categories),
                           min_size=1, max_size=4, unique_by=lambda t: t[0]), st.integers(1, 5))  # fmt: skip
def test_a_substitute_is_always_cheaper_same_category_not_in_the_cart_and_priced_in_integers(
    products: list[Product], lines: list[tuple[str, int, str]], limit: int
) -> None:
    shopped = cart(*(line(item, price, category) for item, price, category in lines))
    found = StaticCatalogue(products).suggest_sync(shopped, kind="substitute", limit=limit)
    top = max(shopped.lines, key=lambda ln: (ln.price, ln.item_id))
    categories = {p.item_id: p.category for p in products}
    assert len(found) <= limit
    assert len({s.item_id for s in found}) == len(found)
    for s in found:
        assert type(s.price) is int and s.price < top.price and s.currency == "EUR"
        assert categories[s.item_id] == top.category
        assert s.item_id not in {ln.item_id for ln in shopped.lines}


# -- in the engine ---------------------------------------------------------------------------------------------


def config(**offer: Any) -> Config:
    return Config.from_dict(
        {
            "abandon_after": 600,
            "offers": {"cheaper": {"kind": "substitute", "name": "Similar, for less", **offer}},
            "flows": [{"name": "f", "steps": [{"delay": 0, "offer": "cheaper"}]}],
        }
    )


def cart_events(session: str = "s1", customer: str = "c1", t: float = 0.0) -> list[dict[str, Any]]:
    base = {"session_id": session, "ts": T0 + t, "customer_id": customer}
    return [
        {"event": "identify", **base, "email": f"{customer}@example.invalid"},
        {"event": "consent", **base, "granted": ["email"]},
        {"event": "add_to_cart", **base, "currency": "EUR",
         "items": [{"item_id": "mug-xl", "price": "25.00", "quantity": 1, "category": "mugs"}]},
    ]  # fmt: skip


async def run(
    engine_config: Config, catalogue: Any, channel: MemoryChannel | None = None
) -> tuple[MemoryChannel, dict[str, int]]:
    """Abandon one cart, let its message fall due, and return the channel and the dispatch outcomes."""
    channel = channel if channel is not None else MemoryChannel()
    clock = FakeClock(T0)
    async with Engine(engine_config, channels={"email": channel}, clock=clock, catalogue=catalogue) as engine:
        for event in cart_events():
            engine.track(event)
        clock.advance(601)
        await engine.flush()
        for _ in range(3):  # room for retries (backoff up to 30 s, then 60 s)
            clock.advance(120)
            await engine.flush()
        return channel, dict(engine.statistics().messages)


@pytest.mark.anyio
async def test_a_substitute_offer_carries_the_catalogues_suggestions() -> None:
    catalogue = StaticCatalogue(MUGS)
    channel, outcomes = await run(config(suggestions=2), catalogue)
    [message] = channel.sent
    assert message.offer is not None and message.offer.kind == "substitute"
    assert [(s.item_id, s.price, s.currency) for s in message.offer.suggestions] == [
        ("mug", 1500, "EUR"), ("mug-eu", 1500, "EUR"),
    ]  # fmt: skip
    assert message.offer.items == ("mug", "mug-eu")
    assert outcomes["offer_suggestions"] == 1 and catalogue.calls == 1


@pytest.mark.anyio
async def test_a_complement_offer_asks_for_complements() -> None:
    catalogue = StaticCatalogue(MUGS, complements=PAIRS)
    channel, _ = await run(config(suggest="complement"), catalogue)
    [message] = channel.sent
    assert message.offer is not None and message.offer.items == ("coaster", "spoon")


class Failing:
    """A catalogue whose backend is down."""

    def __init__(self) -> None:
        self.calls = 0

    async def suggest(self, cart: CartSnapshot, *, kind: SuggestKind, limit: int) -> Sequence[Suggestion]:
        self.calls += 1
        raise ConnectionError("search backend unreachable")


class Hanging:
    async def suggest(self, cart: CartSnapshot, *, kind: SuggestKind, limit: int) -> Sequence[Suggestion]:
        await anyio.sleep(30)
        return []


class Returning:
    def __init__(self, answer: list[Any]) -> None:
        self.answer = answer

    async def suggest(self, cart: CartSnapshot, *, kind: SuggestKind, limit: int) -> Sequence[Suggestion]:
        return self.answer


@pytest.mark.anyio
async def test_a_failing_catalogue_does_not_stop_the_message_which_goes_without_the_offer() -> None:
    catalogue = Failing()
    channel, outcomes = await run(config(), catalogue)
    [message] = channel.sent
    assert message.offer is None
    assert outcomes["offer_catalogue_failed"] == 1 and outcomes["sent"] == 1
    assert catalogue.calls == 1  # not retried: the message went


@pytest.mark.anyio
async def test_a_catalogue_slower_than_the_channels_timeout_counts_as_failed() -> None:
    data = msgspec.to_builtins(config())
    data["channels"] = {"email": {"timeout": 0.05}}
    channel, outcomes = await run(Config.from_dict(data), Hanging())
    [message] = channel.sent
    assert message.offer is None and outcomes["offer_catalogue_failed"] == 1


@pytest.mark.anyio
async def test_a_catalogue_with_nothing_to_suggest_drops_the_offer() -> None:
    channel, outcomes = await run(config(), Returning([]))
    assert channel.sent[0].offer is None and outcomes["offer_no_suggestions"] == 1


@pytest.mark.anyio
async def test_suggestions_priced_in_floats_or_another_currency_are_left_out_and_counted() -> None:
    good = Suggestion(item_id="ok", name="OK", price=100, currency="EUR")
    answer = [
        Suggestion(item_id="float", name="F", price=9.99, currency="EUR"),  # type: ignore[arg-type]
        Suggestion(item_id="usd", name="U", price=100, currency="USD"),
        {"item_id": "dict", "name": "D", "price": 100, "currency": "EUR"},
        good,
    ]
    channel, outcomes = await run(config(), Returning(answer))
    offer = channel.sent[0].offer
    assert offer is not None and offer.suggestions == (good,)
    assert outcomes["offer_catalogue_invalid"] == 1


@pytest.mark.anyio
async def test_a_retried_send_reuses_the_suggestions_without_asking_again() -> None:
    catalogue = StaticCatalogue(MUGS)
    channel = MemoryChannel()
    channel.fail_next(1)
    channel, outcomes = await run(config(), catalogue, channel)
    first, second = channel.attempts
    assert first.offer == second.offer and first.offer is not None and first.offer.suggestions
    assert catalogue.calls == 1 and outcomes["sent"] == 1


@pytest.mark.anyio
async def test_the_catalogue_is_not_asked_for_a_message_that_is_not_sent() -> None:
    catalogue = StaticCatalogue(MUGS)
    clock = FakeClock(T0)
    channel = MemoryChannel()
    data = msgspec.to_builtins(config())
    data["flows"][0]["steps"][0]["delay"] = 3600
    async with Engine(Config.from_dict(data), channels={"email": channel}, clock=clock, catalogue=catalogue) as engine:
        for event in cart_events():
            engine.track(event)
        clock.advance(601)
        await engine.flush()
        engine.track({"event": "purchase", "session_id": "s2", "customer_id": "c1", "ts": clock.now(),
                      "value": "25.00", "currency": "EUR"})  # fmt: skip
        clock.advance(7200)
        await engine.flush()
        outcomes = engine.statistics().messages
    assert channel.sent == [] and catalogue.calls == 0 and outcomes["cancelled_purchase"] == 1


def test_a_flow_offering_substitutes_without_a_catalogue_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigError, match=r"flow 'f' step 0 \(offer 'cheaper'\) suggests products, but no catalogue"):
        Engine(config(), channels={"email": MemoryChannel()}, clock=FakeClock(T0))


def test_a_substitute_named_by_a_variant_or_a_reason_needs_a_catalogue_too() -> None:
    data = msgspec.to_builtins(config())
    data["offers"]["plain"] = {"kind": "payment_help", "name": "Pay another way"}
    data["flows"][0]["steps"][0] = {
        "delay": 0, "offer": "plain", "offer_by_reason": {"price_comparison": "cheaper"},
    }  # fmt: skip
    with pytest.raises(ConfigError, match=r"offer 'cheaper'"):
        Engine(Config.from_dict(data), channels={"email": MemoryChannel()}, clock=FakeClock(T0))
    data["flows"][0]["steps"][0] = {"delay": 0, "variants": [{"name": "a"}, {"name": "b", "offer": "cheaper"}]}
    with pytest.raises(ConfigError, match=r"offer 'cheaper'"):
        Engine(Config.from_dict(data), channels={"email": MemoryChannel()}, clock=FakeClock(T0))


def test_an_object_without_suggest_is_refused_as_a_catalogue() -> None:
    with pytest.raises(ConfigError, match=r"catalogue dict has no `suggest"):
        Engine(config(), channels={"email": MemoryChannel()}, clock=FakeClock(T0), catalogue={})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("offer", "message"),
    [
        ({"kind": "discount", "percent": 5, "suggest": "complement"}, "`suggest`|expected only on a substitute"),
        ({"kind": "payment_help", "suggestions": 2}, "expected only on a substitute offer"),
        ({"kind": "substitute", "suggestions": 11}, r"Expected `int` <= 10"),
        ({"kind": "substitute", "suggest": "upsell"}, "Invalid enum value 'upsell'"),
    ],
)
def test_bad_substitute_settings_are_refused_when_loaded(offer: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({"offers": {"x": {"name": "X", **offer}}})


# -- in the built-in templates --------------------------------------------------------------------------------


SUGGESTED = Offer(
    kind="substitute", name="Similar, for less", items=("mug", "spoon"),
    suggestions=(
        Suggestion(item_id="mug", name="<b>Mug</b>", price=1500, currency="EUR", url="https://s.ex/mug"),
        Suggestion(item_id="spoon", name="Spoon", price=300, currency="EUR"),
    ),
)  # fmt: skip


@pytest.mark.parametrize("name", ["cart-reminder", "cart-last-call"])
def test_the_built_in_emails_list_the_suggestions_with_prices(name: str) -> None:
    rendered = Templates().render(name, make_message(offer=SUGGESTED))
    assert "Similar, for less:" in rendered.text
    assert "<b>Mug</b>    15.00 EUR    https://s.ex/mug" in rendered.text
    assert "Spoon    3.00 EUR" in rendered.text
    assert rendered.html is not None
    assert '<a href="https://s.ex/mug" style="color: #222;">&lt;b&gt;Mug&lt;/b&gt;</a>' in rendered.html
    assert "3.00 EUR" in rendered.html


@pytest.mark.parametrize("kind", ["sms", "push"])
def test_the_short_built_in_templates_render_a_substitute_offer(kind: Any) -> None:
    rendered = Templates().render("cart-reminder", make_message(offer=SUGGESTED, channel=kind), kind=kind)
    assert rendered.text and "Mug" not in rendered.text  # too short a format for a list of products


def test_the_background_engine_passes_the_catalogue_on_and_checks_it_at_construction() -> None:
    from recoverkit import BackgroundEngine

    catalogue = StaticCatalogue(MUGS)
    background = BackgroundEngine(
        config(), channels={"email": MemoryChannel()}, catalogue=catalogue, close_at_exit=False
    )
    try:
        assert background.engine.catalogue is catalogue and background.engine.dispatch._prepare.catalogue is catalogue
    finally:
        background.close()
    with pytest.raises(ConfigError, match="no catalogue was given"):
        BackgroundEngine(config(), channels={"email": MemoryChannel()}, close_at_exit=False)
