"""The sessionize stage, driven synchronously: events in with float ``ts``, the watermark moved by hand."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from helpers import T0, SessionizeRun, add, event, item, legacy_checkpoint, loop_turns_during, page, remove
from recoverkit.config import Config
from recoverkit.events import (
    AddPaymentInfo,
    AddShippingInfo,
    BaseEvent,
    BeginCheckout,
    CheckoutStep,
    Consent,
    ExitIntent,
    FormError,
    Identify,
    PaymentFailed,
    Purchase,
    ViewCart,
    ViewItem,
)
from recoverkit.sessionize import Abandoned, ContactChanged, Converted, Resumed, Sessionize

# -- abandonment by inactivity ------------------------------------------------------------------------------


def test_an_idle_cart_is_abandoned_once_at_last_activity_plus_abandon_after() -> None:
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0), page("s1", 100))
    run.advance(1899)
    assert run.of(Abandoned) == []
    run.advance(1900)
    [abandoned] = run.of(Abandoned)
    assert (abandoned.trigger, abandoned.at) == ("inactivity", T0 + 1900)
    assert abandoned.cart.session_id == "s1"


def test_an_abandoned_cart_is_not_abandoned_again_without_new_activity() -> None:
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0))
    for t in (1800, 3600, 86_400, 6 * 86_400):
        run.advance(t)
    assert len(run.of(Abandoned)) == 1


def test_a_session_without_items_is_never_abandoned() -> None:
    run = SessionizeRun().feed(page("s1", 0), event(ViewItem, "s1", 10, items=[item()]))
    run.advance(86_400)
    assert run.of(Abandoned) == []


def test_activity_before_the_deadline_postpones_abandonment() -> None:
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0))
    run.advance(1000).feed(page("s1", 1500)).advance(1800)
    assert run.of(Abandoned) == []
    run.advance(3300)
    assert [a.at for a in run.of(Abandoned)] == [T0 + 3300]


def test_activity_at_exactly_the_deadline_postpones_abandonment() -> None:
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0), page("s1", 1800)).advance(1800)
    assert run.of(Abandoned) == []


def test_a_later_event_in_the_same_batch_does_not_hide_an_abandonment() -> None:
    # Replays hand over many events per batch; the watermark only moves after the batch. A shopper idle for
    # longer than abandon_after was gone whether or not the watermark moved between their two events.
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0), page("s1", 2000)).advance(2000)
    assert [(a.trigger, a.at) for a in run.of(Abandoned)] == [("inactivity", T0 + 1800)]
    assert [r.at for r in run.of(Resumed)] == [T0 + 2000]


def test_a_later_event_in_the_same_batch_finds_an_idle_session_forgotten() -> None:
    run = SessionizeRun(session_timeout=900, abandon_after=1800).feed(page("s1", 0), add("s1", 1000)).advance(2800)
    assert run.stage.counts["evicted"] == 1
    assert [a.cart.started_at for a in run.of(Abandoned)] == [T0 + 1000]


# -- exit intent and payment failure ------------------------------------------------------------------------


def test_exit_intent_shortens_the_wait_to_exit_intent_after() -> None:
    run = SessionizeRun(abandon_after=1800, exit_intent_after=300)
    run.feed(add("s1", 0), event(ExitIntent, "s1", 100)).advance(399)
    assert run.of(Abandoned) == []
    run.advance(400)
    assert [(a.trigger, a.at) for a in run.of(Abandoned)] == [("exit_intent", T0 + 400)]


def test_exit_intent_without_a_cart_abandons_nothing() -> None:
    run = SessionizeRun(exit_intent_after=300).feed(page("s1", 0), event(ExitIntent, "s1", 10)).advance(86_400)
    assert run.of(Abandoned) == []


def test_activity_after_exit_intent_restores_the_normal_wait() -> None:
    run = SessionizeRun(abandon_after=1800, exit_intent_after=300)
    run.feed(add("s1", 0), event(ExitIntent, "s1", 100), page("s1", 200)).advance(1999)
    assert run.of(Abandoned) == []
    run.advance(2000)
    assert [(a.trigger, a.at) for a in run.of(Abandoned)] == [("inactivity", T0 + 2000)]


def test_payment_failed_abandons_at_the_next_advance_at_or_after_it() -> None:
    run = SessionizeRun(abandon_after=1800, payment_failed_after=0)
    run.feed(add("s1", 0), event(PaymentFailed, "s1", 60)).advance(59)
    assert run.of(Abandoned) == []
    run.advance(60)
    [abandoned] = run.of(Abandoned)
    assert (abandoned.trigger, abandoned.at) == ("payment_failed", T0 + 60)
    assert abandoned.cart.payment_failures == 1


def test_payment_failed_waits_payment_failed_after_when_configured() -> None:
    run = SessionizeRun(payment_failed_after=120).feed(add("s1", 0), event(PaymentFailed, "s1", 60)).advance(179)
    assert run.of(Abandoned) == []
    run.advance(180)
    assert [(a.trigger, a.at) for a in run.of(Abandoned)] == [("payment_failed", T0 + 180)]


# -- resumption ---------------------------------------------------------------------------------------------


def test_activity_after_abandonment_emits_resumed_for_the_cart_and_contact() -> None:
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0, cart_id="c-9")).advance(1800)
    run.feed(page("s1", 2500))
    assert run.of(Resumed) == [Resumed(cart_key="c-9", contact_key="session:s1", at=T0 + 2500)]


def test_a_resumed_cart_left_idle_again_is_abandoned_again() -> None:
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0)).advance(1800)
    run.feed(page("s1", 2500)).advance(4299)
    assert len(run.of(Abandoned)) == 1
    run.advance(4300)
    assert [a.at for a in run.of(Abandoned)] == [T0 + 1800, T0 + 4300]


def test_an_event_older_than_the_abandonment_does_not_resume_it() -> None:
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0), page("s1", 100)).advance(1900)
    run.feed(page("s1", 50))
    assert run.of(Resumed) == []


# -- conversion ---------------------------------------------------------------------------------------------


def test_purchase_emits_converted_and_no_abandonment_follows() -> None:
    run = SessionizeRun(abandon_after=1800)
    run.feed(
        add("s1", 0, customer_id="cust-1"),
        event(Purchase, "s1", 300, value=Decimal("10.00"), transaction_id="T-1"),
    )
    run.advance(30 * 86_400)
    assert run.of(Converted) == [
        Converted(
            cart_key="s1",
            session_id="s1",
            customer_id="cust-1",
            contact_key="cust-1",
            at=T0 + 300,
            value=1000,
            currency="EUR",
            transaction_id="T-1",
        )
    ]
    assert run.of(Abandoned) == []


def test_a_purchase_after_abandonment_converts_the_cart_without_resuming_it() -> None:
    # A purchase is not a return: what it stops downstream must be recorded as stopped by the purchase.
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0)).advance(1800)
    run.feed(event(Purchase, "s1", 2000)).advance(30 * 86_400)
    assert [type(x).__name__ for x in run.out] == ["Abandoned", "Converted"]
    assert run.stage.counts["resumed"] == 0


def test_the_same_purchase_reported_twice_converts_once() -> None:
    run = SessionizeRun().feed(add("s1", 0), event(Purchase, "s1", 300), event(Purchase, "s1", 300))
    assert len(run.of(Converted)) == 1


def test_purchase_in_another_session_of_the_customer_closes_this_sessions_cart() -> None:
    run = SessionizeRun(abandon_after=1800)
    run.feed(add("laptop", 0, customer_id="cust-1"), add("phone", 60, customer_id="cust-1"))
    run.feed(event(Purchase, "phone", 120, customer_id="cust-1")).advance(30 * 86_400)
    assert sorted((c.session_id, c.contact_key) for c in run.of(Converted)) == [
        ("laptop", "cust-1"),
        ("phone", "cust-1"),
    ]
    assert run.of(Abandoned) == []


def test_sessions_stitched_by_identify_share_their_customers_purchase() -> None:
    run = SessionizeRun(abandon_after=1800)
    run.feed(add("laptop", 0), event(Identify, "laptop", 10, customer_id="cust-1"))
    run.feed(page("phone", 60), event(Identify, "phone", 70, customer_id="cust-1"))
    run.feed(event(Purchase, "phone", 120)).advance(30 * 86_400)
    assert {c.session_id for c in run.of(Converted)} == {"laptop", "phone"}
    assert run.of(Abandoned) == []


def test_purchase_in_another_session_only_reports_its_own_order_value() -> None:
    run = SessionizeRun()
    run.feed(add("laptop", 0, customer_id="cust-1"), add("phone", 60, customer_id="cust-1"))
    run.feed(event(Purchase, "phone", 120, value=Decimal("10.00"), transaction_id="T-1"))
    converted = {c.session_id: c for c in run.of(Converted)}
    assert (converted["phone"].value, converted["phone"].transaction_id) == (1000, "T-1")
    assert (converted["laptop"].value, converted["laptop"].transaction_id) == (None, None)


def test_a_sibling_cart_past_its_deadline_is_abandoned_before_a_purchase_closes_it() -> None:
    run = SessionizeRun(abandon_after=1800)
    run.feed(add("laptop", 0, customer_id="cust-1"), page("phone", 100, customer_id="cust-1"))
    run.feed(event(Purchase, "phone", 2000, customer_id="cust-1")).advance(2000)
    [abandoned] = run.of(Abandoned)
    assert (abandoned.cart.session_id, abandoned.at, abandoned.cart.returning) == ("laptop", T0 + 1800, False)
    assert {c.session_id for c in run.of(Converted)} == {"laptop", "phone"}


def test_a_purchase_by_another_customer_does_not_close_the_cart() -> None:
    run = SessionizeRun(abandon_after=1800)
    run.feed(add("s1", 0, customer_id="cust-1"), add("s2", 10, customer_id="cust-2"))
    run.feed(event(Purchase, "s2", 20)).advance(1800)
    assert [c.session_id for c in run.of(Converted)] == ["s2"]
    assert [a.cart.session_id for a in run.of(Abandoned)] == ["s1"]


def test_cart_events_older_than_the_purchase_do_not_reopen_the_cart() -> None:
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0), event(Purchase, "s1", 300))
    run.feed(add("s1", 200, item_id="B"), event(BeginCheckout, "s1", 250, items=[item("B")])).advance(86_400)
    assert run.of(Abandoned) == []
    assert run.stage.counts["ignored_after_purchase"] == 2


def test_cart_activity_after_the_purchase_starts_a_new_cart() -> None:
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0), event(Purchase, "s1", 300))
    run.feed(add("s1", 400, item_id="B")).advance(2200)
    [abandoned] = run.of(Abandoned)
    assert [line.item_id for line in abandoned.cart.lines] == ["B"]


# -- the cart -----------------------------------------------------------------------------------------------


def test_adding_the_same_item_again_adds_to_its_quantity() -> None:
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0, qty=2), add("s1", 10, qty=3)).advance(1810)
    [abandoned] = run.of(Abandoned)
    assert [(line.item_id, line.quantity) for line in abandoned.cart.lines] == [("A", 5)]
    assert abandoned.cart.value == 5 * 1000


def test_removing_some_units_lowers_the_quantity() -> None:
    run = SessionizeRun(abandon_after=1800)
    run.feed(add("s1", 0, qty=3), add("s1", 5, item_id="B"), remove("s1", 10, qty=2)).advance(1810)
    [abandoned] = run.of(Abandoned)
    assert [(line.item_id, line.quantity) for line in abandoned.cart.lines] == [("A", 1), ("B", 1)]


def test_removing_everything_leaves_no_cart_to_abandon() -> None:
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0, qty=2), remove("s1", 10, qty=2)).advance(86_400)
    assert run.of(Abandoned) == []


def test_a_checkout_step_with_items_replaces_the_cart() -> None:
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0, item_id="A", qty=4))
    run.feed(event(BeginCheckout, "s1", 10, items=[item("B", "5.00", 2)])).advance(1810)
    [abandoned] = run.of(Abandoned)
    assert [(line.item_id, line.price, line.quantity) for line in abandoned.cart.lines] == [("B", 500, 2)]


def test_a_checkout_step_without_items_keeps_the_cart() -> None:
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0), event(BeginCheckout, "s1", 10)).advance(1810)
    [abandoned] = run.of(Abandoned)
    assert [line.item_id for line in abandoned.cart.lines] == ["A"]


def test_the_checkout_step_only_moves_forward() -> None:
    run = SessionizeRun(abandon_after=1800)
    run.feed(add("s1", 0), event(AddPaymentInfo, "s1", 10), event(ViewCart, "s1", 20), add("s1", 30, item_id="B"))
    run.advance(1830)
    [abandoned] = run.of(Abandoned)
    assert abandoned.cart.step == CheckoutStep.PAYMENT


def test_checkout_at_is_when_checkout_began() -> None:
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0), event(ViewCart, "s1", 5))
    run.feed(event(BeginCheckout, "s1", 10), event(AddShippingInfo, "s1", 20, shipping=Decimal("4.90"))).advance(1820)
    [abandoned] = run.of(Abandoned)
    assert abandoned.cart.checkout_at == T0 + 10
    assert (abandoned.cart.step, abandoned.cart.shipping) == (CheckoutStep.SHIPPING, 490)


def test_a_cart_that_never_reached_checkout_has_no_checkout_time() -> None:
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0), event(ViewCart, "s1", 5)).advance(1805)
    assert run.of(Abandoned)[0].cart.checkout_at is None


def test_the_cart_key_is_the_shops_cart_id_when_given() -> None:
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0, cart_id="cart-77")).advance(1800)
    assert run.of(Abandoned)[0].cart.cart_key == "cart-77"


def test_friction_signals_are_counted_on_the_cart() -> None:
    run = SessionizeRun(abandon_after=1800, exit_intent_after=1800)
    run.feed(add("s1", 0), event(ViewItem, "s1", 1), event(ViewItem, "s1", 2), page("s1", 3))
    run.feed(event(FormError, "s1", 4, form_field="zip"), event(ExitIntent, "s1", 5)).advance(1805)
    cart = run.of(Abandoned)[0].cart
    assert (cart.item_views, cart.views, cart.form_errors, cart.exit_intents) == (2, 1, 1, 1)


# -- money --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "price", "minor"),
    [("EUR", "35.79", 3579), ("JPY", "1200", 1200), ("KWD", "1.234", 1234), ("EUR", "0.105", 10)],
)
def test_prices_become_integer_minor_units_of_the_currency(currency: str, price: str, minor: int) -> None:
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0, price=price, currency=currency)).advance(1800)
    cart = run.of(Abandoned)[0].cart
    assert (cart.currency, cart.lines[0].price) == (currency, minor)
    assert type(cart.lines[0].price) is int


def test_the_cart_value_is_the_integer_sum_of_its_lines() -> None:
    # 0.10 + 0.20 is not 0.30 in binary floats; in minor units it is exactly 30.
    run = SessionizeRun(abandon_after=1800)
    run.feed(add("s1", 0, item_id="A", price="0.10", qty=3), add("s1", 1, item_id="B", price="0.20")).advance(1801)
    assert run.of(Abandoned)[0].cart.value == 50


def test_the_declared_value_is_used_when_the_lines_have_no_price() -> None:
    run = SessionizeRun(abandon_after=1800)
    run.feed(event(BeginCheckout, "s1", 0, currency="EUR", value=Decimal("49.90"), items=[item("A", "0")])).advance(
        1800
    )
    assert run.of(Abandoned)[0].cart.value == 4990


# -- contacts and consent -----------------------------------------------------------------------------------


def test_identify_emits_the_contact_details() -> None:
    run = SessionizeRun().feed(event(Identify, "s1", 0, email="jane@example.com", locale="de-DE"))
    [change] = run.of(ContactChanged)
    assert (change.contact_key, change.email, change.locale) == ("session:s1", "jane@example.com", "de-DE")


def test_identifying_an_anonymous_session_merges_it_into_the_customer() -> None:
    run = SessionizeRun().feed(page("s1", 0), event(Identify, "s1", 10, customer_id="cust-1", email="j@example.com"))
    merge, details = run.of(ContactChanged)
    assert (merge.contact_key, merge.customer_id, merge.merged_from) == ("cust-1", "cust-1", "session:s1")
    assert (details.contact_key, details.email, details.merged_from) == ("cust-1", "j@example.com", None)


def test_a_customer_id_on_any_event_stitches_the_session() -> None:
    run = SessionizeRun(abandon_after=1800).feed(add("s1", 0), page("s1", 10, customer_id="cust-1")).advance(1810)
    assert [c.merged_from for c in run.of(ContactChanged)] == ["session:s1"]
    assert run.of(Abandoned)[0].cart.contact_key == "cust-1"


def test_switching_customers_does_not_merge_the_first_customer_into_the_second() -> None:
    run = SessionizeRun().feed(page("s1", 0, customer_id="cust-1"), page("s1", 10, customer_id="cust-2"))
    assert [(c.contact_key, c.merged_from) for c in run.of(ContactChanged)] == [
        ("cust-1", "session:s1"),
        ("cust-2", None),
    ]


def test_consent_emits_granted_and_withdrawn_channels() -> None:
    run = SessionizeRun().feed(event(Consent, "s1", 0, granted=["email"], withdrawn=["sms"]))
    [change] = run.of(ContactChanged)
    assert (change.contact_key, change.granted, change.withdrawn) == ("session:s1", ("email",), ("sms",))


# -- forgetting ---------------------------------------------------------------------------------------------


def test_an_idle_session_without_a_cart_is_forgotten_after_session_timeout() -> None:
    run = SessionizeRun(session_timeout=900).feed(page("s1", 0), page("s1", 100)).advance(999)
    assert run.sessions == 1
    run.advance(1000)
    assert run.sessions == 0


def test_an_abandoned_cart_is_kept_for_the_recovery_window() -> None:
    run = SessionizeRun(abandon_after=1800, session_timeout=900, recovery_window=86_400)
    run.feed(add("s1", 0)).advance(1800).advance(1800 + 3600)
    assert run.sessions == 1
    run.advance(1800 + 86_400)
    assert run.sessions == 0


def test_a_return_within_the_recovery_window_still_resumes_the_cart() -> None:
    run = SessionizeRun(abandon_after=1800, session_timeout=900, recovery_window=86_400)
    run.feed(add("s1", 0)).advance(1800).advance(50_000).feed(page("s1", 50_001))
    assert len(run.of(Resumed)) == 1


def test_a_bought_session_is_forgotten_after_session_timeout() -> None:
    run = SessionizeRun(session_timeout=900).feed(add("s1", 0), event(Purchase, "s1", 60)).advance(959)
    assert run.sessions == 1
    run.advance(960)
    assert run.sessions == 0


def test_beyond_max_sessions_the_oldest_session_is_evicted_and_counted() -> None:
    run = SessionizeRun(max_sessions=2).feed(page("s1", 0), page("s2", 10), page("s3", 20))
    assert run.sessions == 2
    assert run.stage.counts["evicted_overflow"] == 1
    run.feed(add("s1", 30)).advance(86_400)  # s1 was forgotten: its cart is a new session's
    assert [a.cart.started_at for a in run.of(Abandoned)] == [T0 + 30]


def test_beyond_max_sessions_the_least_recently_active_session_is_evicted() -> None:
    run = SessionizeRun(max_sessions=2, abandon_after=1800)
    run.feed(add("s1", 0), page("s2", 10), page("s1", 20), page("s3", 30)).advance(86_400)
    # s2 was idle longest: s1 keeps its cart and is abandoned.
    assert [a.cart.session_id for a in run.of(Abandoned)] == ["s1"]


def test_a_new_session_is_not_the_one_evicted_on_overflow() -> None:
    run = SessionizeRun(max_sessions=1, abandon_after=1800).feed(add("s1", 0)).advance(1800)
    run.feed(add("s2", 1900)).advance(3700)
    assert [a.cart.session_id for a in run.of(Abandoned)] == ["s1", "s2"]


def test_memory_returns_to_empty_after_many_sessions_go_idle() -> None:
    run = SessionizeRun(abandon_after=600, session_timeout=600, recovery_window=3600)
    for n in range(2000):
        s = f"s{n}"
        customer = f"cust-{n % 7}"
        run.feed(page(s, n, customer_id=customer if n % 10 else f"guest-{n}"))
        if n % 2:
            run.feed(add(s, n + 1, customer_id=customer))
        if n % 10 == 0:
            run.feed(page(s, n + 2, customer_id=customer))  # the shopper logs in as someone else
        if n % 3 == 0:
            run.feed(event(Purchase, s, n + 3))
        run.advance(n)
    run.advance(10 * 86_400)
    stats = run.stage.extra_statistics()
    assert (stats["sessions"], stats["customers"], stats["timers"]) == (0, 0, 0)


def test_sustained_overflow_keeps_the_timer_heap_bounded() -> None:
    run = SessionizeRun(max_sessions=10)
    for n in range(5000):
        run.feed(add(f"s{n}", n))
    stats = run.stage.extra_statistics()
    assert stats["sessions"] == 10
    assert stats["timers"] <= 2 * 10 + 1024 + 1


def test_a_timer_armed_after_the_heap_was_compacted_mid_batch_still_fires_before_later_events() -> None:
    # Event time: every timer due before an event fires before it, however the input was batched. Here one
    # batch overflows max_sessions until the timer heap is compacted, then arms a timer (a failed payment,
    # due at once) that must fire before the next event takes the cart elsewhere.
    config = Config(max_sessions=2, abandon_after=1800, session_timeout=3600, payment_failed_after=0)
    events: list[BaseEvent] = [page(f"churn-{n}", n) for n in range(1100)]
    events += [add("a", 1100, cart_id="cart-7"), event(PaymentFailed, "a", 1101), page("c", 1102, cart_id="cart-7")]
    at_once, one_by_one = Sessionize(config, event_time=True), Sessionize(config, event_time=True)
    out_at_once: list[Any] = []
    out_one_by_one: list[Any] = []
    at_once.handle(events, out_at_once)  # type: ignore[arg-type]
    for e in events:
        one_by_one.handle([e], out_one_by_one)  # type: ignore[list-item]
    assert [type(x) for x in out_at_once] == [Abandoned, Resumed]
    assert out_at_once == out_one_by_one


# -- one cart per cart_id, and a restore link followed elsewhere ---------------------------------------------------


def test_one_cart_id_sent_from_two_sessions_is_one_cart_holding_the_items_of_both() -> None:
    run = SessionizeRun(abandon_after=1800)
    run.feed(add("laptop", 0, cart_id="cart-7", customer_id="cust-1", item_id="A"))
    run.feed(add("phone", 60, cart_id="cart-7", item_id="B")).advance(10 * 86_400)
    (left,) = run.of(Abandoned)  # one cart, abandoned once: not one per session under the same key
    assert (left.cart.cart_key, left.cart.session_id) == ("cart-7", "phone")
    assert [line.item_id for line in left.cart.lines] == ["A", "B"]
    assert (left.cart.started_at, left.cart.customer_id) == (T0, "cust-1")  # the cart's start; its customer's
    assert left.at == T0 + 60 + 1800


def test_an_item_in_both_sessions_of_one_cart_id_keeps_the_newer_sessions_line() -> None:
    run = SessionizeRun(abandon_after=1800)
    run.feed(add("laptop", 0, cart_id="cart-7", item_id="A", qty=1))
    run.feed(add("phone", 60, item_id="A", qty=3), page("phone", 70, cart_id="cart-7")).advance(10 * 86_400)
    (left,) = run.of(Abandoned)
    assert [(line.item_id, line.quantity) for line in left.cart.lines] == [("A", 3)]


def test_a_session_that_handed_its_cart_id_on_keeps_no_cart() -> None:
    run = SessionizeRun(abandon_after=1800)
    run.feed(add("laptop", 0, cart_id="cart-7"), page("phone", 60, cart_id="cart-7"))
    run.feed(page("laptop", 120)).advance(10 * 86_400)  # activity on the laptop does not bring a second cart back
    assert [(a.cart.cart_key, a.cart.session_id) for a in run.of(Abandoned)] == [("cart-7", "phone")]


def test_a_cart_id_bought_in_the_session_it_moved_to_converts_once() -> None:
    run = SessionizeRun(abandon_after=1800)
    run.feed(add("laptop", 0, cart_id="cart-7", customer_id="cust-1"))
    run.feed(event(Purchase, "phone", 60, cart_id="cart-7", transaction_id="o-1")).advance(10 * 86_400)
    assert [(c.cart_key, c.session_id, c.own) for c in run.of(Converted)] == [("cart-7", "phone", True)]
    assert run.of(Abandoned) == [] and run.of(Resumed) == []


def test_a_restore_link_followed_in_another_session_resumes_the_abandoned_cart() -> None:
    run = SessionizeRun(abandon_after=1800)
    run.feed(add("laptop", 0, cart_id="cart-7", customer_id="cust-1")).advance(1800)
    run.feed(page("phone", 5000, page_type="cart_restore", cart_id="cart-7"))
    assert run.of(Resumed) == [Resumed(cart_key="cart-7", contact_key="cust-1", at=T0 + 5000)]
    run.advance(10 * 86_400)  # and left again from the phone: abandoned again, with its items and customer
    again = run.of(Abandoned)[-1]
    assert (again.cart.cart_key, again.cart.session_id, again.cart.customer_id) == ("cart-7", "phone", "cust-1")
    assert [line.item_id for line in again.cart.lines] == ["A"] and again.at == T0 + 5000 + 1800


def test_a_restore_link_of_a_cart_without_cart_id_resumes_the_session_it_was_built_for() -> None:
    # Without the shop's cart_id, a cart's key (and so its link's) is its session id.
    run = SessionizeRun(abandon_after=1800)
    run.feed(add("laptop", 0, customer_id="cust-1")).advance(1800)
    run.feed(page("phone", 5000, page_type="cart_restore", cart_id="laptop"))
    assert run.of(Resumed) == [Resumed(cart_key="laptop", contact_key="cust-1", at=T0 + 5000)]


def test_a_restore_link_of_a_cart_that_is_gone_resumes_nothing() -> None:
    run = SessionizeRun(abandon_after=1800)
    run.feed(add("laptop", 0, cart_id="cart-7"), event(Purchase, "laptop", 60)).advance(1800)
    run.feed(page("phone", 5000, page_type="cart_restore", cart_id="cart-7")).advance(10 * 86_400)
    assert run.of(Resumed) == [] and run.of(Abandoned) == []


def test_the_cart_id_rule_survives_a_checkpoint() -> None:
    first = SessionizeRun(abandon_after=1800).feed(add("laptop", 0, cart_id="cart-7", item_id="A"))
    second = SessionizeRun(abandon_after=1800)
    second.stage.restore(first.stage.snapshot())
    second.feed(add("phone", 60, cart_id="cart-7", item_id="B")).advance(10 * 86_400)
    (left,) = second.of(Abandoned)
    assert [line.item_id for line in left.cart.lines] == ["A", "B"]


def test_a_checkpoint_written_before_cart_lines_were_packed_still_restores() -> None:
    # Until 0.3 a session's lines were checkpointed as an array of line arrays; now they are packed bytes. An
    # old checkpoint (in the layout of its time, each session's lines unpacked) restores to the same carts.
    first = SessionizeRun(abandon_after=1800).feed(
        add("s1", 0, "A", price="9.99", qty=2), add("s1", 1, "B"), add("s2", 2, "C"), page("s3", 3)
    )
    old = legacy_checkpoint(first.stage.snapshot(), packed=False)
    assert [type(session[8]) for session in msgspec.msgpack.decode(old)[1]] == [list, list, type(None)]
    second = SessionizeRun(abandon_after=1800)
    second.stage.restore(old)
    assert second.stage.snapshot() == first.stage.snapshot()  # packed again, byte for byte
    second.advance(10 * 86_400)
    carts = {a.cart.cart_key: [(n.item_id, n.price, n.quantity) for n in a.cart.lines] for a in second.of(Abandoned)}
    assert carts == {"s1": [("A", 999, 2), ("B", 1000, 1)], "s2": [("C", 1000, 1)]}


def test_a_checkpoint_written_before_sessions_kept_their_detail_apart_restores_every_field() -> None:
    # Until December 2026 a session's checkout detail, troubles and purchase time were fields of the session
    # (24 in all); now they are one Detail, None for a session without any. The old layout restores to the same
    # state, byte for byte once written again, and goes on as the original would.
    first = SessionizeRun(abandon_after=1800).feed(
        add("s1", 0, "A", price="9.99", qty=2),
        event(BeginCheckout, "s1", 5, value=Decimal("19.98"), shipping=Decimal("4.90")),
        event(PaymentFailed, "s1", 6),
        event(ExitIntent, "s1", 7),
        add("s2", 2, "C"),
        add("s3", 3, "D"),
        event(Purchase, "s3", 4),
        page("s4", 3),
    )
    state = first.stage.snapshot()
    old = legacy_checkpoint(state)
    assert [len(session) for session in msgspec.msgpack.decode(old)[1]] == [24] * 4
    assert [session[-1] for session in msgspec.msgpack.decode(state)[1]].count(None) == 2  # s2 and s4: no detail
    second = SessionizeRun(abandon_after=1800)
    second.stage.restore(old)
    assert second.stage.snapshot() == state
    first.out.clear()  # what it emitted before the checkpoint
    first.advance(10 * 86_400)
    second.advance(10 * 86_400)
    assert second.out == first.out and second.of(Abandoned)


# -- a checkpoint taken in parts -----------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 15, 16, 65_535, 65_536, 70_000])
def test_a_msgpack_array_or_map_header_is_what_msgspec_writes(length: int) -> None:
    from recoverkit._msgpack_parts import ARRAY, MAP, bin_header, header, header_size

    for kind, value in ((ARRAY, [0] * length), (MAP, dict.fromkeys(range(length), 0))):
        encoded = msgspec.msgpack.encode(value)
        written = header(kind, length)
        assert encoded[: len(written)] == written and header_size(encoded[0]) == len(written)
    data = msgspec.msgpack.encode(b"x" * length)
    assert data == bin_header(length) + b"x" * length


@pytest.mark.parametrize("sessions", [0, 3, 4, 5, 40])
def test_a_checkpoint_taken_in_parts_is_the_same_bytes_and_lets_the_loop_run(
    sessions: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """snapshot_soon() encodes the sessions a part at a time, yielding to the event loop in between; what it
    returns is exactly snapshot(), which restores into the same state."""
    import recoverkit.sessionize._stage as stage

    monkeypatch.setattr(stage, "SNAPSHOT_PART", 4)
    run = SessionizeRun()
    for n in range(sessions):
        run.feed(event(Identify, f"s{n}", n, customer_id=f"c{n % 7}"), add(f"s{n}", n, f"SKU-{n}"))
    if sessions:
        run.feed(event(Purchase, "s1", sessions + 1, customer_id="c1"))
    whole = run.stage.snapshot()
    state, yields = loop_turns_during(run.stage.snapshot_soon)

    assert state == whole
    assert yields >= (sessions - 1) // 4 if sessions > 4 else True  # the loop ran between the parts
    again = Sessionize(Config(), event_time=True)
    again.restore(whole)
    assert again.snapshot() == whole
