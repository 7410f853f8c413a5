"""Multi-currency thresholds: given per currency, or in a base currency converted with the shop's rates, always
exact integer minor units; a currency without a rate matches nothing and is counted, never guessed."""

from __future__ import annotations

import doctest
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, localcontext
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import recoverkit.currency
from helpers import T0
from recoverkit import Config, Engine, FakeClock, MemoryChannel, load_config
from recoverkit.config import Condition, CurrencyConfig, Flow, FlowStep, OfferSpec
from recoverkit.currency import Converter, Rates, StaticRates, convert
from recoverkit.errors import ConfigError
from recoverkit.money import minor_unit_exponent
from test_route import RouteRun, contact, scored

USD = Decimal("1.08")


def test_the_module_docstring_examples_run() -> None:
    assert doctest.testmod(recoverkit.currency).failed == 0


# -- converting one amount --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "rate", "currency", "minor"),
    [
        ("20.00", "1.08", "USD", 2160),
        ("20.00", "0.8571", "GBP", 1714),  # 17.142: down
        ("0.05", "1.5", "USD", 8),  # 0.075: half to even, up to 0.08
        ("0.05", "1.3", "USD", 6),  # 0.065: half to even, down to 0.06
        ("20.00", "162.4567", "JPY", 3249),  # no minor unit
        ("20.00", "0.3312", "KWD", 6624),  # three decimals
        ("1", "1", "EUR", 100),
    ],
)
def test_a_base_amount_is_converted_to_exact_minor_units_rounding_half_to_even(
    amount: str, rate: str, currency: str, minor: int
) -> None:
    assert convert(Decimal(amount), Decimal(rate), currency) == minor


_amounts = st.decimals(min_value=0, max_value=Decimal(10) ** 14, places=2, allow_nan=False, allow_infinity=False)
_rates = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(10) ** 11, allow_nan=False, allow_infinity=False)
_currencies = st.sampled_from(["USD", "JPY", "KWD", "GBP", "CLF"])


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(_amounts, _rates.filter(lambda r: r > 0), _currencies)
def test_every_conversion_is_an_integer_within_half_a_minor_unit_of_the_exact_product(
    amount: Decimal, rate: Decimal, currency: str
) -> None:
    minor = convert(amount, rate, currency)
    assert type(minor) is int
    scale = Decimal(10) ** minor_unit_exponent(currency)
    # The oracle must not round: the default context keeps 28 digits, fewer than a 16-digit amount times a
    # rate of many digits. A product has at most the sum of its factors' digits, so this precision is exact,
    # and trapping Inexact makes the oracle fail loudly rather than round if that reasoning were ever wrong.
    digits = sum(len(d.as_tuple().digits) for d in (amount, rate, scale)) + 2
    with localcontext(Context(prec=digits, traps=[Inexact])):
        exact = amount * rate * scale
        error = Decimal(minor) - exact
    assert abs(error) <= Decimal("0.5")
    # Rounding is the point here, so Inexact is not trapped; the precision still holds every integer digit.
    assert Decimal(minor) == exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN, context=Context(prec=digits))


class Floaty:
    """A rates object answering floats: what a shop's JSON feed parsed naively gives."""

    def rate(self, currency: str) -> Any:
        return 1.08


class Broken:
    def rate(self, currency: str) -> Decimal | None:
        raise RuntimeError("rates table not loaded")


def test_no_float_rate_is_ever_used() -> None:
    with pytest.raises(ValueError, match=r"rate of USD: expected a Decimal > 0"):
        StaticRates({"USD": 1.08})  # type: ignore[dict-item]
    assert Converter("EUR", rates=Floaty()).minor(Decimal("20"), "USD") is None
    # A float answer is not trusted, but the static table still fills in.
    assert Converter("EUR", {"USD": USD}, Floaty()).minor(Decimal("20"), "USD") == 2160


@pytest.mark.parametrize(
    "rate", [Decimal(0), Decimal(-1), Decimal("NaN"), Decimal("Infinity"), Decimal(10) ** 12, True]
)
def test_rates_that_are_not_positive_finite_decimals_are_refused(rate: Any) -> None:
    with pytest.raises(ValueError, match="expected a Decimal > 0"):
        StaticRates({"USD": rate})


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.floats(), st.decimals(), st.integers(-10, 10**13), st.none(), st.text(max_size=3)), _currencies)
def test_whatever_a_rates_object_answers_a_threshold_is_an_int_or_unknown(answer: Any, currency: str) -> None:
    class Odd:
        def rate(self, currency: str) -> Any:
            return answer

    minor = Converter("EUR", rates=Odd()).minor(Decimal("20.00"), currency)
    assert minor is None or type(minor) is int
    if isinstance(answer, float) or answer is None or isinstance(answer, str):
        assert minor is None


# -- finding a threshold in a cart's currency ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "given", "currency", "minor"),
    [
        (None, Decimal("20"), "USD", 2000),  # no base: a plain amount is in the cart's currency
        (None, Decimal("20"), "JPY", 20),
        (None, {"EUR": Decimal("20")}, "USD", None),  # no base, no amount for USD: unknown
        ("EUR", Decimal("20"), "EUR", 2000),
        ("EUR", Decimal("20"), "USD", 2160),  # a plain amount is in the base currency
        ("EUR", {"EUR": Decimal("20"), "USD": Decimal("30")}, "USD", 3000),  # the cart's own currency wins
        ("EUR", {"EUR": Decimal("20")}, "USD", 2160),
        ("EUR", {"GBP": Decimal("20")}, "USD", None),  # neither the cart's currency nor the base
        ("EUR", Decimal("20"), "CHF", None),  # no rate for CHF
        ("EUR", {"CHF": Decimal("25")}, "CHF", 2500),  # ... unless given in CHF
        ("EUR", Decimal("20"), None, 2000),  # a cart without a currency is in the base currency
    ],
)
def test_a_threshold_in_a_carts_currency(base: str | None, given: Any, currency: str | None, minor: int | None) -> None:
    assert Converter(base, {"USD": USD}).minor(given, currency) == minor


def test_the_shops_rates_win_and_the_static_ones_fill_in() -> None:
    live = StaticRates({"USD": Decimal("1.10")})
    converter = Converter("EUR", {"USD": USD, "GBP": Decimal("0.86")}, live)
    assert converter.minor(Decimal("20"), "USD") == 2200
    assert converter.minor(Decimal("20"), "GBP") == 1720
    live.set("USD", None)
    assert converter.minor(Decimal("20"), "USD") == 2160  # asked on every conversion: a refresh shows at once


def test_a_rates_object_that_raises_is_contained() -> None:
    assert Converter("EUR", {"USD": USD}, Broken()).minor(Decimal("20"), "USD") == 2160
    assert Converter("EUR", rates=Broken()).minor(Decimal("20"), "USD") is None


def test_the_largest_threshold_times_the_largest_rate_is_still_exact() -> None:
    # Beyond the default 28 digits of a Decimal: the product is computed with enough digits to stay exact.
    converter = Converter("EUR", {"XYZ": Decimal("99999999999.9999")})
    assert converter.minor(Decimal("999999999999999.99"), "XYZ") == 9_999_999_999_999_989_900_000_000_000


def test_static_rates_is_a_rates() -> None:
    assert isinstance(StaticRates(), Rates)


# -- conditions and offers in the route stage ------------------------------------------------------------------

CURRENCY = CurrencyConfig(base="EUR", rates={"USD": USD})


def routed(config: Config, **cart: Any) -> RouteRun:
    return RouteRun(config).feed(contact(), scored(**cart))


def flow_config(*, currency: CurrencyConfig = CURRENCY, **when: Any) -> Config:
    return Config(currency=currency, flows=[Flow(name="f", when=Condition(**when), steps=[FlowStep(delay=0)])])


@pytest.mark.parametrize(
    ("value", "taken"), [(2159, False), (2160, True)], ids=["just_below_21.60_usd", "exactly_21.60_usd"]
)
def test_a_base_currency_minimum_is_converted_for_a_usd_cart(value: int, taken: bool) -> None:
    run = routed(flow_config(min_value=Decimal("20.00")), currency="USD", value=value)
    assert bool(run.messages()) is taken


def test_a_per_currency_threshold_overrides_the_converted_base_amount() -> None:
    config = flow_config(min_value={"EUR": Decimal("20.00"), "USD": Decimal("30.00")})
    assert routed(config, currency="USD", value=2999).messages() == []
    assert routed(config, currency="USD", value=3000).messages() != []
    assert routed(config, currency="EUR", value=2000).messages() != []


def test_a_maximum_is_converted_too() -> None:
    config = flow_config(max_value=Decimal("100"))
    assert routed(config, currency="USD", value=10_800).messages() != []
    assert routed(config, currency="USD", value=10_801).messages() == []


def test_a_cart_in_a_currency_without_a_rate_matches_no_amount_condition_and_is_counted() -> None:
    run = routed(flow_config(min_value=Decimal("20.00")), currency="CHF", value=1_000_000)
    assert run.messages() == [] and run.stage.unrouted == 1
    assert run.skipped == {"condition_currency": 1}


def test_without_a_base_a_plain_amount_is_in_the_carts_currency_as_before() -> None:
    config = flow_config(min_value=Decimal("20.00"), currency=CurrencyConfig())
    assert routed(config, currency="CHF", value=2000).messages() != []


def offer_config(**spec: Any) -> Config:
    return Config(
        currency=CURRENCY,
        offers={"o": OfferSpec(name="O", **spec)},
        flows=[Flow(name="f", steps=[FlowStep(delay=0, offer="o")])],
    )


def test_an_offers_base_amount_and_minimum_are_converted_to_the_carts_currency() -> None:
    config = offer_config(kind="discount", amount={"EUR": Decimal("5.00")}, min_value={"EUR": Decimal("30.00")})
    [message] = routed(config, currency="USD", value=5000).messages()
    assert message.offer is not None
    assert (message.offer.amount, message.offer.min_value, message.offer.currency) == (540, 3240, "USD")


def test_an_offers_amount_in_the_carts_currency_wins() -> None:
    config = offer_config(kind="discount", amount={"EUR": Decimal("5.00"), "USD": Decimal("6.00")})
    [message] = routed(config, currency="USD").messages()
    assert message.offer is not None and (message.offer.amount, message.offer.currency) == (600, "USD")


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "discount", "amount": {"EUR": Decimal("5.00")}},
        {"kind": "free_shipping", "min_value": {"EUR": Decimal("20.00")}},
        {"kind": "discount", "percent": 10, "min_value": {"EUR": Decimal("20.00")}},
    ],
    ids=["amount", "free_shipping_minimum", "percent_minimum"],
)
def test_an_offer_whose_amounts_cannot_be_had_in_the_carts_currency_is_left_out_and_counted(spec: Any) -> None:
    run = routed(offer_config(**spec), currency="CHF")
    [message] = run.messages()
    assert message.offer is None and run.skipped == {"offer_currency": 1}


def test_an_offer_without_amounts_needs_no_rate() -> None:
    [message] = routed(offer_config(kind="discount", percent=10), currency="CHF").messages()
    assert message.offer is not None and message.offer.percent == 10


@settings(max_examples=150, deadline=None)
@given(
    amount=st.decimals(min_value=0, max_value=10**9, places=2),
    rate=st.decimals(min_value=Decimal("0.0001"), max_value=10**6, places=4).filter(lambda r: r > 0),
    currency=st.sampled_from(["USD", "JPY", "KWD"]),
)
def test_every_converted_offer_amount_on_a_message_is_integer_minor_units(
    amount: Decimal, rate: Decimal, currency: str
) -> None:
    config = Config(
        currency=CurrencyConfig(base="EUR", rates={currency: rate}),
        offers={"o": OfferSpec(kind="discount", name="O", amount={"EUR": amount}, min_value={"EUR": amount})},
        flows=[Flow(name="f", steps=[FlowStep(delay=0, offer="o")])],
    )
    [message] = routed(config, currency=currency).messages()
    assert message.offer is not None
    for value in (message.offer.amount, message.offer.min_value):
        assert type(value) is int and value == convert(amount, rate, currency)


# -- configuration ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "message"),
    [
        ({"rates": {"USD": "1.08"}}, r"at `currency.rates`: expected a `base` currency to convert from"),
        ({"base": "EUR", "rates": {"USD": "0"}}, r"`currency.rates`: expected decimal rates > 0 and < 10\^12, got 0"),
        ({"base": "EUR", "rates": {"USD": "NaN"}}, r"at `currency.rates`: expected decimal rates > 0"),
        ({"base": "EUR", "rates": {"EUR": "1.1"}}, r"no rate other than 1 for the base currency EUR"),
        ({"base": "EUR", "rates": {"usd": "1.1"}}, r"`currency.rates`: Expected `str` matching regex '\^\[A-Z\]\{3"),
        ({"base": "euro"}, r"at `currency.base`: Expected `str` matching regex"),
        ({"base": "EUR", "rates": {"USD": "one"}}, r"`currency.rates\[...\]`: Invalid decimal string \(value: \{'USD'"),
    ],
)
def test_bad_currency_settings_are_refused_naming_the_key_path(currency: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({"currency": currency})


def test_condition_amounts_per_currency_are_validated_like_single_ones() -> None:
    with pytest.raises(ConfigError, match=r"at `flows\[0\]\.when\.min_value`: expected a finite amount"):
        Config.from_dict({"flows": [{"name": "f", "when": {"min_value": {"EUR": "NaN"}}, "steps": [{"delay": 0}]}]})
    with pytest.raises(ValueError, match=r"`max_value` expected an amount in major units .* got 1\.5"):
        Condition(max_value={"EUR": 1.5})  # type: ignore[dict-item]
    assert Condition(min_value={"EUR": "20"}).min_value == {"EUR": Decimal("20")}  # type: ignore[dict-item]


def test_rates_given_to_the_engine_need_a_base_currency() -> None:
    with pytest.raises(ConfigError, match=r"rates were given to Engine but `currency.base` is not set"):
        Engine(Config(), channels={"email": MemoryChannel()}, clock=FakeClock(T0), rates=StaticRates())
    with pytest.raises(ConfigError, match=r"rates dict has no `rate\(currency\)` method"):
        Engine(
            Config(currency=CURRENCY),
            channels={"email": MemoryChannel()},
            clock=FakeClock(T0),
            rates={},  # type: ignore[arg-type]
        )


def test_the_example_configuration_converts_from_eur() -> None:
    config = load_config(Path(__file__).parent.parent / "examples" / "shop.toml")
    assert config.currency.base == "EUR" and config.currency.rates["USD"] == Decimal("1.08")


# -- end to end ------------------------------------------------------------------------------------------------


def engine_config() -> Config:
    return Config.from_dict(
        {
            "abandon_after": 600,
            "currency": {"base": "EUR", "rates": {"USD": "1.08"}},
            "offers": {"five": {"kind": "free_shipping", "name": "Free shipping", "min_value": {"EUR": "20.00"}}},
            "flows": [
                {"name": "big", "when": {"min_value": "40.00"}, "steps": [{"delay": 0, "offer": "five"}]},
                {"name": "small", "steps": [{"delay": 0}]},
            ],
        }
    )


def cart_events(session: str, currency: str, price: str) -> list[dict[str, Any]]:
    base = {"session_id": session, "ts": T0, "customer_id": f"c-{session}"}
    return [
        {"event": "identify", **base, "email": f"{session}@example.invalid"},
        {"event": "consent", **base, "granted": ["email"]},
        {"event": "add_to_cart", **base, "currency": currency, "items": [{"item_id": "A", "price": price}]},
    ]


@pytest.mark.anyio
async def test_an_engine_converts_eur_thresholds_for_usd_carts_with_the_shops_rates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RECOVERKIT_CODE_SECRET", "s" * 40)
    clock = FakeClock(T0)
    channel = MemoryChannel()
    live = StaticRates({"USD": Decimal("1.10")})  # the shop's feed: wins over the file's 1.08
    async with Engine(engine_config(), channels={"email": channel}, clock=clock, rates=live) as engine:
        for session, currency, price in [("a", "USD", "44.00"), ("b", "USD", "43.99"), ("c", "CHF", "99.00")]:
            for event in cart_events(session, currency, price):
                engine.track(event)
        clock.advance(601)
        await engine.flush()
        route = engine.statistics().stages["route"].extra
    flows = {m.cart.cart_key: (m.flow, m.offer) for m in channel.sent}
    assert flows["a"][0] == "big" and flows["b"][0] == "small" and flows["c"][0] == "small"
    offer = flows["a"][1]
    assert offer is not None and (offer.min_value, offer.currency) == (2200, "USD") and offer.code
    assert route["skipped"] == {"condition_currency": 1}  # CHF: no rate, so not "big"


def test_the_background_engine_passes_the_rates_on() -> None:
    from recoverkit import BackgroundEngine

    rates = StaticRates({"USD": USD})
    background = BackgroundEngine(
        Config(currency=CURRENCY), channels={"email": MemoryChannel()}, rates=rates, close_at_exit=False
    )
    try:
        assert background.engine.rates is rates
        assert background.engine.route._money.rate("USD") == USD
    finally:
        background.close()
