"""Recovery policy: quiet hours, frequency caps, holdout, A/B variants, soft opt-in and offers."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.contract import make_message
from helpers import T0, abandoned
from recoverkit import Config, Engine, FakeClock, MemoryChannel
from recoverkit.config import Cap, ChannelPolicy, Condition, Flow, FlowStep, OfferSpec, QuietHours, Variant
from recoverkit.dispatch import Dispatch
from recoverkit.errors import ConfigError, PermanentDeliveryError
from recoverkit.sessionize import ContactChanged
from test_route import RouteRun, contact, scored

EMAIL_QUIET = {"email": ChannelPolicy(address="email", quiet_hours=QuietHours(start="21:00", end="08:00"))}


def at(zone: str, text: str) -> float:
    """Epoch seconds of local time ``text`` ("2026-03-29 01:30") in ``zone``."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def local(zone: str, ts: float) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def quiet_due(due: float, timezone: str | None, shop: str = "UTC", **quiet: str) -> float:
    policy = ChannelPolicy(address="email", quiet_hours=QuietHours(**(quiet or {"start": "21:00", "end": "08:00"})))
    run = RouteRun(Config(timezone=shop, channels={"email": policy}))
    return run.stage._outside_quiet_hours(due, "email", timezone)


# -- quiet hours ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "due", "expected"),
    [
        ("Europe/Berlin", "2026-06-10 23:10", "2026-06-11 08:00"),  # inside, before midnight
        ("Europe/Berlin", "2026-06-11 03:00", "2026-06-11 08:00"),  # inside, after midnight
        ("Europe/Berlin", "2026-06-11 08:00", "2026-06-11 08:00"),  # the end is outside
        ("Europe/Berlin", "2026-06-11 20:59", "2026-06-11 20:59"),  # outside
        ("Pacific/Kiritimati", "2026-06-10 22:00", "2026-06-11 08:00"),  # UTC+14
        ("America/New_York", "2026-03-08 02:30", "2026-03-08 08:00"),  # the night the clocks go forward
        ("Europe/Berlin", "2026-10-25 02:30", "2026-10-25 08:00"),  # the night they go back (ambiguous hour)
    ],
)
def test_a_message_due_in_quiet_hours_moves_to_their_end_in_the_customers_zone(
    zone: str, due: str, expected: str
) -> None:
    moved = quiet_due(at(zone, due), zone)
    assert local(zone, moved) == expected


def test_quiet_hours_ending_in_a_dst_gap_never_move_a_message_earlier() -> None:
    # 02:30 does not exist in Berlin on 2026-03-29 (02:00 jumps to 03:00).
    due = at("Europe/Berlin", "2026-03-29 01:00")
    moved = quiet_due(due, "Europe/Berlin", start="00:00", end="02:30")
    assert moved > due
    # 02:30 read with the offset before the jump is 03:30 after it: late by the gap at most, never early.
    assert local("Europe/Berlin", moved) == "2026-03-29 03:30"


def test_an_unknown_customer_zone_falls_back_to_the_shops() -> None:
    due = at("Asia/Tokyo", "2026-06-10 23:00")
    assert local("Asia/Tokyo", quiet_due(due, "Mars/Olympus_Mons", shop="Asia/Tokyo")) == "2026-06-11 08:00"
    assert local("Asia/Tokyo", quiet_due(due, None, shop="Asia/Tokyo")) == "2026-06-11 08:00"


def test_quiet_hours_apply_to_the_messages_route_schedules() -> None:
    config = Config(channels=EMAIL_QUIET, timezone="UTC")
    late = datetime(2026, 1, 1, 22, 0, tzinfo=UTC).timestamp() - 3600  # step 0 due at 22:00 UTC
    [first, second] = RouteRun(config).feed(contact(), scored(abandoned(at=late - T0))).messages()
    assert datetime.fromtimestamp(first.due_at, UTC).strftime("%Y-%m-%d %H:%M") == "2026-01-02 08:00"
    assert datetime.fromtimestamp(second.due_at, UTC).strftime("%Y-%m-%d %H:%M") == "2026-01-03 08:00"


@pytest.mark.parametrize("bad", [{"start": "21:00", "end": "21:00"}, {"start": "25:00", "end": "08:00"}])
def test_bad_quiet_hours_are_refused_at_start_up(bad: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="quiet_hours"):
        Config.from_dict({"channels": {"email": {"quiet_hours": bad}}})


def test_an_unknown_shop_time_zone_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigError, match="IANA"):
        Config.from_dict({"timezone": "Europe/Atlantis"})


# -- frequency caps -------------------------------------------------------------------------------------------


def cart_events(session: str, value: str, t: float = 0.0) -> list[dict[str, Any]]:
    base = {"session_id": session, "ts": T0 + t, "customer_id": "c1"}
    return [
        {"event": "identify", **base, "email": "c1@example.invalid"},
        {"event": "consent", **base, "granted": ["email"]},
        {
            "event": "add_to_cart",
            **base,
            "currency": "EUR",
            "items": [{"item_id": "A", "price": value, "quantity": 1}],
        },
    ]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exit_event", "why"),
    [
        # Back in the abandoned session (emptying the cart is activity there): the cart is no longer abandoned.
        ({"event": "remove_from_cart", "items": [{"item_id": "A", "quantity": 1}]}, "cancelled_resumed"),
        # From elsewhere (the unsubscribe page, an order on the phone): by the customer.
        ({"event": "consent", "session_id": "s2", "withdrawn": ["email"]}, "cancelled_consent_withdrawn"),
        ({"event": "purchase", "session_id": "s2", "value": "20.00", "currency": "EUR"}, "cancelled_purchase"),
    ],
)
async def test_the_exit_conditions_stop_the_rest_of_the_sequence(exit_event: dict[str, Any], why: str) -> None:
    # A three-step flow: the first message goes, then the shopper empties the cart, unsubscribes or buys.
    steps = [FlowStep(delay=0), FlowStep(delay=3600), FlowStep(delay=86_400)]
    clock = FakeClock(T0)
    channel = MemoryChannel()
    async with Engine(Config(abandon_after=600, flows=[Flow(name="f", steps=steps)]), channels={"email": channel},
                      clock=clock) as engine:  # fmt: skip
        for event in cart_events("s1", "20.00"):
            engine.track(event)
        clock.advance(601)
        await engine.flush()
        assert channel.keys() == ["s1/f/0"]
        engine.track({"session_id": "s1", **exit_event, "customer_id": "c1", "ts": clock.now()})
        clock.advance(2 * 86_400)
        await engine.flush()
        assert channel.keys() == ["s1/f/0"]
        assert engine.statistics().messages[why] == 2


@pytest.mark.anyio
async def test_a_cap_is_shared_across_two_flows_and_a_capped_message_is_skipped() -> None:
    config = Config(
        abandon_after=600,
        caps=[Cap(max=1, per=16 * 3600, channel="email")],
        flows=[
            Flow(name="big", when=Condition(min_value=Decimal("50")), steps=[FlowStep(delay=0)]),
            Flow(name="small", steps=[FlowStep(delay=0), FlowStep(delay=20 * 3600)]),
        ],
    )
    clock = FakeClock(T0)
    channel = MemoryChannel()
    async with Engine(config, channels={"email": channel}, clock=clock) as engine:
        for event in cart_events("s1", "100.00") + cart_events("s2", "10.00", t=5):
            engine.track(event)
        clock.advance(700)
        await engine.flush()
        assert len(channel.keys()) == 1  # one of the two carts' first emails; the other was capped
        assert engine.statistics().messages["capped"] == 1
        clock.advance(20 * 3600)
        await engine.flush()
    assert len(channel.keys()) == 2  # 20 hours later the cap has room again: s2's second step goes
    assert channel.keys()[1] == "s2/small/1"


@settings(max_examples=60, deadline=None)
@given(
    dues=st.lists(st.integers(0, 48 * 3600), min_size=1, max_size=30),
    cap=st.integers(1, 4),
    per=st.sampled_from([600, 3600, 16 * 3600]),
)
def test_caps_are_never_exceeded(dues: list[int], cap: int, per: int) -> None:
    config = Config(caps=[Cap(max=cap, per=per)])
    stage = Dispatch(config, {"email": MemoryChannel()}, FakeClock(T0))
    allowed = []
    for i, due in enumerate(sorted(dues)):
        message = make_message(f"cart-{i}/f/0", due_at=T0 + due)
        if not stage._schedule.capped(message, message.due_at):
            allowed.append(message.due_at)
    for t in allowed:
        assert sum(1 for u in allowed if t - per < u <= t) <= cap


# -- holdout and variants -------------------------------------------------------------------------------------


def many_carts(n: int) -> list[Any]:
    return [scored(abandoned(cart_key=f"cart-{i}")) for i in range(n)]


def test_holdout_carts_get_nothing_and_the_assignment_is_deterministic() -> None:
    config = Config(flows=[Flow(name="f", holdout=0.3, steps=[FlowStep(delay=0)])])
    first = RouteRun(config).feed(contact(), *many_carts(1000))
    again = RouteRun(config).feed(contact(), *many_carts(1000))
    messaged = {m.cart.cart_key for m in first.messages()}
    assert messaged == {m.cart.cart_key for m in again.messages()}
    held = first.stage.holdout["f"]
    assert held + len(messaged) == 1000 and 240 < held < 360


def test_a_global_holdout_keeps_carts_out_of_every_flow() -> None:
    run = RouteRun(Config(holdout=1.0)).feed(contact(), *many_carts(10))
    assert run.messages() == [] and run.stage.holdout["*"] == 10


def test_variants_are_assigned_by_weight_recorded_and_applied() -> None:
    step = FlowStep(
        delay=3600,
        template="plain",
        variants=[Variant(name="a", weight=3), Variant(name="b", weight=1, template="bold", delay=600)],
    )
    run = RouteRun(Config(flows=[Flow(name="f", steps=[step])])).feed(contact(), *many_carts(2000))
    by_variant = Counter(m.variant for m in run.messages())
    assert 1350 < by_variant["a"] < 1650 and by_variant["a"] + by_variant["b"] == 2000
    for message in run.messages():
        expected = ("plain", 3600.0) if message.variant == "a" else ("bold", 600.0)
        assert (message.template, message.due_at - message.abandoned_at) == expected
    again = RouteRun(Config(flows=[Flow(name="f", steps=[step])])).feed(contact(), *many_carts(2000))
    assert [m.variant for m in again.messages()] == [m.variant for m in run.messages()]


# -- consent --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("soft", "returning", "granted", "withdrawn", "sent"),
    [
        (True, True, (), (), True),  # soft opt-in: a past customer never asked
        (True, False, (), (), False),  # not a past customer
        (False, True, (), (), False),  # soft opt-in off
        (True, True, (), ("email",), False),  # a "no" wins
        (False, False, ("email",), (), True),  # explicit consent
    ],
)
def test_soft_opt_in(
    soft: bool, returning: bool, granted: tuple[str, ...], withdrawn: tuple[str, ...], sent: bool
) -> None:
    config = Config(channels={"email": ChannelPolicy(address="email", soft_opt_in=soft)})
    change = contact(granted=granted)
    run = RouteRun(config).feed(change)
    if withdrawn:
        run.feed(ContactChanged(contact_key="cust-1", at=T0, withdrawn=withdrawn))
    run.feed(scored(abandoned(returning=returning)))
    assert bool(run.messages()) is sent


# -- offers ---------------------------------------------------------------------------------------------------

OFFERS = {
    "free-shipping": OfferSpec(kind="free_shipping", name="Free shipping", min_value={"EUR": Decimal("20")}),
    "five-off": OfferSpec(kind="discount", name="5 off", amount={"EUR": Decimal("5.00")}, valid_for=3600),
    "ten-percent": OfferSpec(kind="discount", name="10% off", percent=10),
}


def offer_config(**step: Any) -> Config:
    return Config(offers=OFFERS, flows=[Flow(name="f", steps=[FlowStep(delay=0, **step)])])


def test_the_offer_is_chosen_by_the_abandonment_reason_first() -> None:
    config = offer_config(offer="ten-percent", offer_by_reason={"shipping_cost": "free-shipping"})
    [shipping] = RouteRun(config).feed(contact(), scored(reason="shipping_cost")).messages()
    [other] = RouteRun(config).feed(contact(), scored(reason="price_comparison")).messages()
    assert shipping.offer is not None and other.offer is not None
    assert (shipping.offer.kind, shipping.offer.min_value, shipping.offer.currency) == ("free_shipping", 2000, "EUR")
    assert (other.offer.kind, other.offer.percent, other.offer.code) == ("discount", 10, None)


def test_a_fixed_amount_offer_is_in_minor_units_of_the_carts_currency_and_expires() -> None:
    [message] = RouteRun(offer_config(offer="five-off")).feed(contact(), scored()).messages()
    assert message.offer is not None
    assert (message.offer.amount, message.offer.currency) == (500, "EUR")
    assert message.offer.expires_at == message.due_at + 3600


def test_a_fixed_amount_offer_without_the_carts_currency_is_left_out_and_counted() -> None:
    run = RouteRun(offer_config(offer="five-off")).feed(contact(), scored(currency="USD"))
    [message] = run.messages()
    assert message.offer is None and run.skipped == {"offer_currency": 1}


def test_a_step_naming_an_unknown_offer_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigError, match=r"names offer.*'nope'"):
        Config.from_dict({"flows": [{"name": "f", "steps": [{"delay": 0, "offer": "nope"}]}]})


def test_a_discount_needs_a_percent_or_an_amount() -> None:
    with pytest.raises(ConfigError, match=r"percent.*amount"):
        Config.from_dict({"offers": {"x": {"kind": "discount", "name": "X"}}})


# -- triggers -------------------------------------------------------------------------------------------------


def test_a_checkout_abandonment_flow_takes_only_carts_that_reached_checkout() -> None:
    from recoverkit.events import CheckoutStep

    config = Config(
        flows=[
            Flow(name="checkout", when=Condition(min_step="checkout"), steps=[FlowStep(delay=0)]),
            Flow(name="cart", steps=[FlowStep(delay=0)]),
        ]
    )
    run = RouteRun(config).feed(
        contact(),
        scored(abandoned(cart_key="a", step=CheckoutStep.CART)),
        scored(abandoned(cart_key="b", step=CheckoutStep.SHIPPING)),
    )
    assert [(m.cart.cart_key, m.flow) for m in run.messages()] == [("a", "cart"), ("b", "checkout")]


def test_the_documented_example_configuration_is_valid() -> None:
    from pathlib import Path

    from recoverkit import load_config

    config = load_config(Path(__file__).parent.parent / "examples" / "shop.toml")
    assert [flow.name for flow in config.flows] == ["payment-failed", "checkout", "cart-recovery"]
    assert config.channel_policy("email").quiet_hours == QuietHours(start="21:00", end="08:00")


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["grant", "withdraw", "abandon"]), st.sampled_from(["email", "sms"])),
        max_size=25,
    )
)
def test_no_message_goes_to_a_channel_without_consent(ops: list[tuple[str, str]]) -> None:
    config = Config(
        flows=[
            Flow(
                name="f", steps=[FlowStep(delay=0, channel="email", fallback="sms"), FlowStep(delay=60, channel="sms")]
            )
        ]
    )
    run = RouteRun(config).feed(contact(email="a@example.invalid", phone="+4917012345", granted=()))
    consent: dict[str, bool] = {}
    for n, (op, channel) in enumerate(ops):
        if op == "abandon":
            before = len(run.messages())
            run.feed(scored(abandoned(cart_key=f"cart-{n}")))
            for message in run.messages()[before:]:
                assert consent.get(message.channel) is True, (message.channel, consent)
        else:
            granted = op == "grant"
            consent[channel] = granted
            change = ContactChanged(
                contact_key="cust-1",
                at=T0,
                granted=(channel,) if granted else (),
                withdrawn=() if granted else (channel,),
            )
            run.feed(change)


# -- codes and links on the messages sent --------------------------------------------------------------------

SECRETS = {"RECOVERKIT_CODE_SECRET": "c" * 40, "RECOVERKIT_LINK_SECRET": "l" * 40}


def offer_engine_config() -> Config:
    return Config.from_dict(
        {
            "abandon_after": 600,
            "offers": {"ten": {"kind": "discount", "name": "10% off", "percent": 10, "valid_for": 3600}},
            "flows": [{"name": "f", "steps": [{"delay": 0, "offer": "ten"}, {"delay": 3600, "offer": "ten"}]}],
            "links": {"base_url": "https://shop.example/cart/restore"},
        }
    )


@pytest.mark.anyio
async def test_a_sent_message_carries_its_own_code_and_a_signed_restore_link(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    clock = FakeClock(T0)
    channel = MemoryChannel()
    async with Engine(offer_engine_config(), channels={"email": channel}, clock=clock) as engine:
        for event in cart_events("s1", "50.00"):
            engine.track(event)
        clock.advance(601)
        await engine.flush()
        clock.advance(3600)
        await engine.flush()
        first, second = channel.sent
        assert first.offer is not None and second.offer is not None
        assert first.offer.code and second.offer.code and first.offer.code != second.offer.code
        assert first.restore_url is not None and first.restore_url.startswith("https://shop.example/cart/restore?t=")
        assert engine.links is not None and engine.coupons is not None
        token = first.restore_url.partition("?t=")[2]
        assert engine.links.verify(token, now=clock.now()).cart_key == "s1"
        redeemed = await engine.coupons.redeem(
            first.offer.code, customer="c1", cart_value=5000, currency="EUR", order_id="o-1", client_key="ip",
            now=T0 + 700,
        )  # fmt: skip
        assert (redeemed.outcome, redeemed.discount) == ("valid", 500)
        late = await engine.coupons.redeem(
            second.offer.code, customer="c1", cart_value=5000, currency="EUR", order_id="o-3", client_key="ip",
            now=second.offer.expires_at + 1,
        )  # fmt: skip
        assert late.outcome == "expired"
        again = await engine.coupons.redeem(
            second.offer.code, customer="someone-else", cart_value=5000, currency="EUR", order_id="o-2",
            client_key="ip", now=clock.now(),
        )  # fmt: skip
        assert again.outcome == "unknown"  # someone else's code: answered as no code at all
        assert engine.statistics().messages["offer_codes"] == 2


@pytest.mark.anyio
async def test_a_dead_letter_keeps_neither_the_code_nor_the_restore_link(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    clock = FakeClock(T0)
    channel = MemoryChannel()
    channel.fail_next(1, PermanentDeliveryError("mailbox does not exist"))
    db, letters = tmp_path / "state.db", tmp_path / "dead.jsonl"
    async with Engine(
        offer_engine_config(), channels={"email": channel}, clock=clock, store=db, dead_letters=letters
    ) as engine:
        for event in cart_events("s1", "50.00"):
            engine.track(event)
        clock.advance(601)
        await engine.flush()
        (attempt,) = channel.attempts
        assert attempt.offer is not None and attempt.offer.code and attempt.restore_url  # what the adapter got
        (letter,) = engine.dispatch.dead_letters
        assert letter.message.offer is not None and letter.message.offer.percent == 10  # the terms stay
        assert letter.message.offer.code is None and letter.message.restore_url is None
        stored = engine.store.dead_letters()
    code, token = attempt.offer.code.encode(), attempt.restore_url.partition("?t=")[2].encode()
    for kept in (letters.read_bytes(), stored[0].data, db.read_bytes()):
        assert code not in kept and token not in kept


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_a_missing_secret_is_a_config_error_at_start_up(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(missing)
    with pytest.raises(ConfigError, match=missing):
        Engine(offer_engine_config(), channels={"email": MemoryChannel()}, clock=FakeClock(T0))


@pytest.mark.anyio
async def test_abuse_limits_hold_at_engine_level_the_message_goes_without_the_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One customer abandons three carts in a month; the shop allows two codes per customer per period. The
    third message still goes out, without a code, and the refusal is counted and kept with its outcome."""
    monkeypatch.setenv("RECOVERKIT_CODE_SECRET", "s" * 40)
    config = Config.from_dict({
        "abandon_after": 600,
        "codes": {"per_contact": 2, "period": 30 * 86_400},
        "offers": {"ten": {"kind": "discount", "name": "10% off", "percent": 10}},
        "flows": [{"name": "f", "steps": [{"delay": 0, "offer": "ten"}]}],
    })  # fmt: skip
    clock = FakeClock(T0)
    channel = MemoryChannel()
    async with Engine(config, channels={"email": channel}, clock=clock) as engine:
        for n in range(3):
            for event in cart_events(f"s{n}", "30.00", t=clock.now() - T0):
                engine.track(event)
            clock.advance(601)
            await engine.flush()
            clock.advance(86_400)
        stats = engine.statistics()
    assert [m.offer is not None and m.offer.code is not None for m in channel.sent] == [True, True, False]
    assert stats.messages["offer_codes"] == 2 and stats.messages["offer_refused_contact_limit"] == 1


def test_amounts_in_conditions_built_in_python_may_be_int_or_str_but_never_float() -> None:
    assert Condition(min_value=50).min_value == Decimal("50")  # type: ignore[arg-type]
    assert Condition(max_value="19.90").max_value == Decimal("19.90")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`min_value` expected an amount in major units .* got 1\.5"):
        Condition(min_value=1.5)  # type: ignore[arg-type]
