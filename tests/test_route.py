"""The route stage: flows applied to scored abandonments, the contact book, and cancellations."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from helpers import T0, abandoned, loop_turns_during
from recoverkit.channels.base import Message
from recoverkit.config import Condition, Config, Flow, FlowStep
from recoverkit.facts import Conversion, MessageOutcome
from recoverkit.route import Cancel, Route
from recoverkit.score import Scored, features_of
from recoverkit.sessionize import Abandoned, ContactChanged, Converted, Resumed

EMAIL = "jane@example.com"
PHONE = "+49 170 1234567"


def scored(item: Abandoned | None = None, probability: float = 0.3, reason: Any = "unknown", **cart: Any) -> Scored:
    """A scored abandonment (at T0 + 2400) of the helpers' cart for customer ``cust-1``."""
    item = item if item is not None else abandoned(**cart)
    return Scored(abandoned=item, features=features_of(item), probability=probability, reason=reason)


def contact(
    key: str = "cust-1",
    *,
    email: str | None = EMAIL,
    phone: str | None = None,
    granted: tuple[str, ...] = ("email",),
) -> ContactChanged:
    customer = None if key.startswith("session:") else key
    return ContactChanged(contact_key=key, at=T0, customer_id=customer, email=email, phone=phone, granted=granted)


def flow(name: str, *steps: FlowStep, **when: Any) -> Flow:
    return Flow(name=name, steps=list(steps) or [FlowStep(delay=0.0)], when=Condition(**when))


class RouteRun:
    def __init__(self, config: Config | None = None) -> None:
        self.stage = Route(config if config is not None else Config())
        self.out: list[Any] = []

    def feed(self, *items: Any) -> RouteRun:
        self.stage.handle(list(items), self.out)
        return self

    def messages(self) -> list[Message]:
        return [x for x in self.out if type(x) is Message]

    def cancels(self) -> list[Cancel]:
        return [x for x in self.out if type(x) is Cancel]

    @property
    def skipped(self) -> dict[str, int]:
        return dict(self.stage.skipped)


# -- the default flow ---------------------------------------------------------------------------------------


def test_the_default_flow_schedules_two_emails_an_hour_and_a_day_after_abandonment() -> None:
    run = RouteRun().feed(contact(), scored())
    messages = run.messages()
    assert [(m.key, m.channel, m.template, m.due_at) for m in messages] == [
        ("cart-1/cart-recovery/0", "email", "cart-reminder", T0 + 2400 + 3600),
        ("cart-1/cart-recovery/1", "email", "cart-last-call", T0 + 2400 + 86_400),
    ]
    assert all(m.recipient.email == EMAIL and m.abandoned_at == T0 + 2400 for m in messages)


def test_a_message_carries_the_score_reason_trigger_and_cart() -> None:
    item = abandoned("exit_intent")
    [first, _] = RouteRun().feed(contact(), scored(item, probability=0.25, reason="form_friction")).messages()
    assert (first.score, first.reason, first.trigger, first.cart, first.flow, first.step) == (
        0.25,
        "form_friction",
        "exit_intent",
        item.cart,
        "cart-recovery",
        0,
    )


def test_no_message_without_email_consent() -> None:
    run = RouteRun().feed(contact(granted=()), scored())
    assert run.messages() == []
    assert run.skipped == {"no_consent": 2}


def test_no_message_for_an_unknown_contact() -> None:
    run = RouteRun().feed(scored())
    assert run.messages() == []
    assert run.skipped == {"no_consent": 2}


def test_no_message_without_an_email_address() -> None:
    run = RouteRun().feed(contact(email=None), scored())
    assert run.messages() == []
    assert run.skipped == {"no_address": 2}


def test_consent_for_another_channel_is_not_email_consent() -> None:
    run = RouteRun().feed(contact(granted=("sms",)), scored())
    assert run.skipped == {"no_consent": 2}


def test_an_email_message_carries_no_phone_number() -> None:
    [message, _] = RouteRun().feed(contact(phone=PHONE), scored()).messages()
    assert (message.recipient.email, message.recipient.phone) == (EMAIL, None)
    assert message.recipient.contact_key == "cust-1"


def test_an_sms_message_carries_no_email_address() -> None:
    config = Config(flows=[flow("sms", FlowStep(delay=0.0, channel="sms"))])
    [message] = RouteRun(config).feed(contact(phone=PHONE, granted=("sms",)), scored()).messages()
    assert (message.channel, message.recipient.phone, message.recipient.email) == ("sms", PHONE, None)


def test_a_channel_without_consent_requirement_needs_no_consent() -> None:
    config = Config(flows=[flow("hook", FlowStep(delay=0.0, channel="webhook"))])
    [message] = RouteRun(config).feed(scored()).messages()
    assert (message.channel, message.recipient.email, message.recipient.phone) == ("webhook", None, None)


def test_the_fallback_channel_is_used_when_the_first_lacks_consent() -> None:
    config = Config(flows=[flow("f", FlowStep(delay=0.0, channel="sms", fallback="email"))])
    [message] = RouteRun(config).feed(contact(phone=PHONE, granted=("email",)), scored()).messages()
    assert (message.channel, message.recipient.email, message.recipient.phone) == ("email", EMAIL, None)
    assert message.key == "cart-1/f/0"


def test_the_fallback_channel_is_used_when_the_first_lacks_an_address() -> None:
    config = Config(flows=[flow("f", FlowStep(delay=0.0, channel="sms", fallback="email"))])
    [message] = RouteRun(config).feed(contact(granted=("sms", "email")), scored()).messages()
    assert message.channel == "email"


def test_a_step_is_skipped_when_neither_channel_can_be_used() -> None:
    config = Config(flows=[flow("f", FlowStep(delay=0.0, channel="sms", fallback="email"))])
    run = RouteRun(config).feed(contact(granted=()), scored())
    assert run.messages() == []
    assert run.skipped == {"no_consent": 1}


# -- flows and conditions -----------------------------------------------------------------------------------


def test_the_first_matching_flow_takes_the_cart() -> None:
    config = Config(flows=[flow("big", min_value=Decimal("100.00")), flow("vip", returning=True), flow("all")])
    run = RouteRun(config).feed(contact(), scored(returning=True, value=50_00))
    assert [m.flow for m in run.messages()] == ["vip"]


def test_flow_order_decides_between_two_matching_flows() -> None:
    config = Config(flows=[flow("all"), flow("vip", returning=True)])
    run = RouteRun(config).feed(contact(), scored(returning=True))
    assert [m.flow for m in run.messages()] == ["all"]


def test_an_abandonment_no_flow_takes_is_counted_unrouted() -> None:
    config = Config(flows=[flow("vip", returning=True)])
    run = RouteRun(config).feed(contact(), scored(returning=False))
    assert run.messages() == []
    assert run.stage.unrouted == 1


@pytest.mark.parametrize(
    ("condition", "item", "expected"),
    [
        pytest.param({"min_score": 0.5}, {"probability": 0.5}, True, id="min_score_inclusive"),
        pytest.param({"min_score": 0.5}, {"probability": 0.49}, False, id="below_min_score"),
        pytest.param({"max_score": 0.5}, {"probability": 0.5}, True, id="max_score_inclusive"),
        pytest.param({"max_score": 0.5}, {"probability": 0.51}, False, id="above_max_score"),
        pytest.param(
            {"reasons": ["shipping_cost", "form_friction"]},
            {"reason": "form_friction"},
            True,
            id="listed_reason",
        ),
        pytest.param({"reasons": ["shipping_cost"]}, {"reason": "unknown"}, False, id="unlisted_reason"),
        pytest.param({"triggers": ["exit_intent"]}, {"trigger": "exit_intent"}, True, id="listed_trigger"),
        pytest.param({"triggers": ["exit_intent"]}, {"trigger": "inactivity"}, False, id="unlisted_trigger"),
        pytest.param({"min_value": Decimal("20.00")}, {"value": 2000}, True, id="min_value_inclusive"),
        pytest.param({"min_value": Decimal("20.00")}, {"value": 1999}, False, id="below_min_value"),
        pytest.param({"max_value": Decimal("20.00")}, {"value": 2000}, True, id="max_value_inclusive"),
        pytest.param({"max_value": Decimal("20.00")}, {"value": 2001}, False, id="above_max_value"),
        pytest.param({"min_value": Decimal("2000")}, {"value": 2000, "currency": "JPY"}, True, id="min_value_in_yen"),
        pytest.param(
            {"min_value": Decimal("2.000")},
            {"value": 1999, "currency": "KWD"},
            False,
            id="min_value_in_dinar",
        ),
        pytest.param({"currencies": ["EUR", "USD"]}, {"currency": "USD"}, True, id="listed_currency"),
        pytest.param({"currencies": ["EUR"]}, {"currency": "GBP"}, False, id="unlisted_currency"),
        pytest.param({"currencies": ["EUR"]}, {"currency": None}, False, id="no_currency"),
        pytest.param({"returning": True}, {"returning": True}, True, id="returning"),
        pytest.param({"returning": False}, {"returning": True}, False, id="not_new"),
    ],
)
def test_a_flow_takes_the_cart_only_when_its_condition_holds(
    condition: dict[str, Any], item: dict[str, Any], expected: bool
) -> None:
    scoring = {k: item.pop(k) for k in ("probability", "reason") if k in item}
    trigger = item.pop("trigger", "inactivity")
    config = Config(flows=[flow("f", **condition)])
    run = RouteRun(config).feed(contact(), scored(abandoned(trigger, **item), **scoring))
    assert bool(run.messages()) is expected


def test_a_step_condition_skips_only_that_step() -> None:
    steps = [
        FlowStep(delay=0.0),
        FlowStep(delay=3600.0, when=Condition(min_score=0.5)),
        FlowStep(delay=7200.0),
    ]
    run = RouteRun(Config(flows=[flow("f", *steps)])).feed(contact(), scored(probability=0.2))
    assert [m.key for m in run.messages()] == ["cart-1/f/0", "cart-1/f/2"]
    assert run.skipped == {"condition": 1}
    (skipped,) = [x for x in run.out if type(x) is MessageOutcome]
    assert (skipped.key, skipped.outcome, skipped.step) == ("cart-1/f/1", "skipped_condition", 1)


# -- cancellations ------------------------------------------------------------------------------------------


def test_a_conversion_cancels_everything_for_the_cart_and_the_customer_and_is_kept_as_a_fact() -> None:
    converted = Converted(
        cart_key="cart-1", session_id="s1", customer_id="cust-1", contact_key="cust-1", at=T0 + 9, value=1990,
        currency="EUR", transaction_id="o-1",
    )  # fmt: skip
    run = RouteRun().feed(converted)
    assert run.out == [
        Cancel(why="purchase", at=T0 + 9, cart_key="cart-1", contact_key="cust-1"),
        Conversion(
            cart_key="cart-1", contact_key="cust-1", at=T0 + 9, value=1990, currency="EUR", transaction_id="o-1"
        ),
    ]


def test_a_resumption_cancels_what_is_pending_for_the_cart() -> None:
    run = RouteRun().feed(Resumed(cart_key="cart-1", contact_key="cust-1", at=T0 + 9))
    assert run.out == [Cancel(why="resumed", at=T0 + 9, cart_key="cart-1")]


def test_consent_withdrawal_cancels_that_channel_for_the_contact() -> None:
    withdrawal = ContactChanged(contact_key="cust-1", at=T0 + 9, withdrawn=("email",))
    run = RouteRun().feed(contact(), withdrawal)
    assert run.cancels() == [Cancel(why="consent_withdrawn", at=T0 + 9, contact_key="cust-1", channel="email")]


def test_no_message_after_consent_is_withdrawn() -> None:
    run = RouteRun().feed(contact(), ContactChanged(contact_key="cust-1", at=T0 + 9, withdrawn=("email",)), scored())
    assert run.messages() == []


def test_granting_consent_emits_no_cancellation() -> None:
    assert RouteRun().feed(contact()).out == []


# -- the contact book ---------------------------------------------------------------------------------------


def test_consent_given_before_logging_in_belongs_to_the_customer() -> None:
    run = RouteRun().feed(
        contact("session:s1", email=None, granted=("email",)),
        ContactChanged(contact_key="cust-1", at=T0, customer_id="cust-1", merged_from="session:s1"),
        ContactChanged(contact_key="cust-1", at=T0, customer_id="cust-1", email=EMAIL),
        scored(),
    )
    assert [m.recipient.email for m in run.messages()] == [EMAIL, EMAIL]


def test_the_customers_own_choice_wins_over_the_anonymous_one_on_merge() -> None:
    run = RouteRun().feed(
        contact("cust-1", granted=()),
        ContactChanged(contact_key="cust-1", at=T0, withdrawn=("email",)),
        contact("session:s1", email=None, granted=("email",)),
        ContactChanged(contact_key="cust-1", at=T0, customer_id="cust-1", merged_from="session:s1"),
        scored(),
    )
    assert run.messages() == []


def test_an_address_given_anonymously_is_kept_on_merge() -> None:
    run = RouteRun().feed(
        contact("session:s1", email=EMAIL, granted=("email",)),
        ContactChanged(contact_key="cust-1", at=T0, customer_id="cust-1", merged_from="session:s1"),
        scored(),
    )
    assert len(run.messages()) == 2
    assert run.stage.extra_statistics()["contacts"] == 1


def test_an_anonymous_shopper_with_consent_and_email_is_addressed_by_session() -> None:
    run = RouteRun().feed(contact("session:s1"), scored(customer_id=None))
    assert [m.recipient.contact_key for m in run.messages()] == ["session:s1", "session:s1"]


def test_later_contact_details_replace_earlier_ones() -> None:
    run = RouteRun().feed(contact(), ContactChanged(contact_key="cust-1", at=T0, email="new@example.com"), scored())
    assert {m.recipient.email for m in run.messages()} == {"new@example.com"}


def test_locale_and_time_zone_travel_with_the_recipient() -> None:
    details = ContactChanged(contact_key="cust-1", at=T0, locale="de-DE", timezone="Europe/Berlin")
    [message, _] = RouteRun().feed(contact(), details, scored()).messages()
    assert (message.recipient.locale, message.recipient.timezone) == ("de-DE", "Europe/Berlin")


def test_anything_else_passes_through() -> None:
    other = object()
    assert RouteRun().feed(other).out == [other]


def test_a_withdrawal_made_before_logging_in_stops_the_customers_messages() -> None:
    run = RouteRun().feed(
        contact("cust-1", granted=("email",)),
        ContactChanged(contact_key="session:s2", at=T0, withdrawn=("email",)),
        ContactChanged(contact_key="cust-1", at=T0 + 5, customer_id="cust-1", merged_from="session:s2"),
        scored(),
    )
    assert run.messages() == []
    assert run.cancels() == [
        Cancel(why="consent_withdrawn", at=T0, contact_key="session:s2", channel="email"),
        Cancel(why="consent_withdrawn", at=T0 + 5, contact_key="cust-1", channel="email"),
    ]


# -- a checkpoint taken in parts -----------------------------------------------------------------------------


@pytest.mark.parametrize("contacts", [0, 3, 4, 5, 41])
def test_a_checkpoint_taken_in_parts_is_the_same_bytes_and_lets_the_loop_run(
    contacts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """snapshot_soon() encodes the contacts a part at a time, yielding to the event loop in between; what it
    returns is exactly snapshot(), which restores into the same state."""
    import recoverkit.route as route

    monkeypatch.setattr(route, "CONTACTS_PART", 4)
    run = RouteRun()
    run.feed(*(contact(f"cust-{n}", granted=("email",) if n % 2 else ()) for n in range(contacts)))
    if contacts:
        run.feed(scored())  # something scheduled, counted and assigned too
    whole = run.stage.snapshot()
    state, yields = loop_turns_during(run.stage.snapshot_soon)

    assert state == whole
    assert yields >= (contacts - 1) // 4 if contacts > 4 else True  # the loop ran between the parts
    again = Route(Config())
    again.restore(whole)
    assert again.snapshot() == whole
