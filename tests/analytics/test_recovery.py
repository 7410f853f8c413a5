"""Recovery from a store's facts: the attribution rule (after a message, within the window, last touch), revenue
per currency and per order, links followed, what was not sent and why, discount cost, days."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import T0
from recoverkit.analytics import Facts, RecoveryRow, load_facts, recovery
from recoverkit.facts import Assignment, Conversion, LinkVisit, MessageOutcome
from recoverkit.store import CodeRecord, MemoryStore

HOUR, DAY = 3600.0, 86_400.0


def assign(cart: str, *, at: float = 0, group: str = "treatment", flow: str = "f", **kw: Any) -> Assignment:
    fields: dict[str, Any] = {"contact_key": f"c-{cart}", "value": 5000, "currency": "EUR", "reason": "unknown",
                              "trigger": "inactivity"}  # fmt: skip
    fields.update(kw)
    return Assignment(cart_key=cart, flow=flow, group=group, assigned_at=T0 + at, **fields)  # type: ignore[arg-type]


def out(cart: str, at: float, *, step: int = 0, outcome: str = "sent", flow: str = "f", **kw: Any) -> MessageOutcome:
    kw.setdefault("channel", "email" if not outcome.startswith("skipped") else None)
    return MessageOutcome(key=f"{cart}/{flow}/{step}", cart_key=cart, contact_key=kw.pop("contact", f"c-{cart}"),
                          flow=flow, step=step, outcome=outcome, at=T0 + at, **kw)  # fmt: skip


def bought(cart: str, at: float, value: int | None = 4000, currency: str | None = "EUR", **kw: Any) -> Conversion:
    kw.setdefault("contact_key", f"c-{cart}")
    return Conversion(cart_key=cart, at=T0 + at, value=value, currency=currency, **kw)


def facts(*items: Any, codes: list[CodeRecord] | None = None) -> Facts:
    by = {k: [x for x in items if type(x) is k] for k in (Assignment, MessageOutcome, Conversion, LinkVisit)}
    carts = {x.cart_key for x in items}
    assignments = by[Assignment] or [assign(c) for c in sorted(carts)]
    return Facts(assignments=assignments, outcomes=by[MessageOutcome], conversions=by[Conversion],
                 visits=by[LinkVisit], codes=codes or [])  # fmt: skip


def row(rows: list[RecoveryRow], dimension: str, label: str) -> RecoveryRow:
    return next(r for r in rows if r.dimension == dimension and r.label == label)


def test_only_orders_after_a_message_and_within_the_window_are_recovered() -> None:
    found = recovery(facts(
        out("before", HOUR), bought("before", HOUR / 2),  # bought before the message: not recovered
        out("late", HOUR), bought("late", HOUR + 5 * DAY + 1),  # a second after the 5 days: not recovered
        out("edge", HOUR), bought("edge", HOUR + 5 * DAY, value=1000),  # exactly at the end: recovered
        out("won", HOUR), bought("won", 2 * HOUR, value=4000),
        out("same", HOUR), bought("same", HOUR),  # at the instant of the message: not after it
    ))  # fmt: skip
    total = found.total
    assert (total.sent, total.sent_carts, total.recovered_carts, total.recovered_orders) == (5, 5, 2, 2)
    assert total.recovered_revenue == {"EUR": 5000}


def test_the_attribution_window_is_configurable() -> None:
    items = (out("a", 0), bought("a", 2 * DAY))
    assert recovery(facts(*items)).total.recovered_carts == 1
    assert recovery(facts(*items), window=DAY).total.recovered_carts == 0
    with pytest.raises(ValueError, match="window"):
        recovery(facts(*items), window=0)


def test_a_purchase_by_the_customer_elsewhere_recovers_the_cart_with_that_orders_value() -> None:
    # c-9 left two carts, both messaged, and bought once in a third session: both carts are recovered, by one
    # order, whose value is counted once.
    found = recovery(facts(
        out("x1", 0, contact="c-9"), out("x2", 0, contact="c-9"),
        bought("x1", HOUR, value=None, currency=None, own=False, contact_key="c-9"),
        bought("x2", HOUR, value=None, currency=None, own=False, contact_key="c-9"),
        bought("third", HOUR, value=7500, contact_key="c-9", transaction_id="o-9"),
    ))  # fmt: skip
    assert (found.total.recovered_carts, found.total.recovered_orders) == (2, 1)
    assert found.total.recovered_revenue == {"EUR": 7500} and found.total.revenue_unknown == 0


def test_an_order_elsewhere_whose_value_is_not_known_is_counted_apart() -> None:
    found = recovery(facts(out("x", 0), bought("x", HOUR, value=None, currency=None, own=False)))
    assert (found.total.recovered_carts, found.total.recovered_revenue, found.total.revenue_unknown) == (1, {}, 1)


def test_revenue_is_kept_per_currency_and_never_summed_across_them() -> None:
    found = recovery(facts(
        out("eur", 0), bought("eur", HOUR, value=1999, currency="EUR"),
        out("jpy", 0), bought("jpy", HOUR, value=1200, currency="JPY"),
        out("eur2", 0), bought("eur2", HOUR, value=1, currency="EUR"),
    ))  # fmt: skip
    assert found.total.recovered_revenue == {"EUR": 2000, "JPY": 1200}
    assert [(d.day, d.recovered, d.revenue) for d in found.days] == [("2026-01-01", 3, {"EUR": 2000, "JPY": 1200})]


def test_credit_goes_to_the_last_message_before_the_order() -> None:
    found = recovery(facts(
        out("early", 0, step=0, variant="a"), out("early", DAY, step=1), bought("early", HOUR),
        out("late", 0, step=0, variant="b"), out("late", DAY, step=1), bought("late", DAY + HOUR),
    ))  # fmt: skip
    assert row(found.rows, "step", "f / step 0").recovered_carts == 1
    assert row(found.rows, "step", "f / step 1").recovered_carts == 1
    assert row(found.rows, "variant", "f / step 0 / a").recovered_carts == 1
    assert row(found.rows, "variant", "f / step 0 / b").recovered_carts == 0
    assert row(found.rows, "flow", "f").recovered_carts == 2


def test_steps_not_sent_are_counted_by_why_and_failures_apart() -> None:
    found = recovery(facts(
        out("a", 0, outcome="skipped_no_consent"), out("a", 0, step=1, outcome="skipped_no_consent"),
        out("b", 0), out("b", DAY, step=1, outcome="dead"),
        out("c", 0, outcome="cancelled_purchase"), out("d", 0, outcome="capped"),
    ))  # fmt: skip
    t = found.total
    assert (t.outcomes, t.sent, t.failed) == (6, 1, 1)
    assert t.not_sent == {"cancelled_purchase": 1, "capped": 1, "skipped_no_consent": 2}
    assert row(found.rows, "channel", "-").not_sent == {"skipped_no_consent": 2}
    assert row(found.rows, "step", "f / step 1").failed == 1


def test_restore_links_followed_after_a_message_are_credited_to_it() -> None:
    found = recovery(facts(
        out("a", 0, offer="ten", offer_kind="discount"), LinkVisit(cart_key="a", at=T0 + HOUR),
        LinkVisit(cart_key="a", at=T0 + 2 * HOUR),  # the same cart again: one cart followed a link
        out("b", HOUR), LinkVisit(cart_key="b", at=T0 + 60),  # before its message: not a followed link
    ))  # fmt: skip
    assert found.total.link_carts == 1
    assert row(found.rows, "offer", "ten").link_carts == 1 and row(found.rows, "offer", "none").link_carts == 0
    assert [d.link_visits for d in found.days] == [2]


def code(cart: str, *, issued: float = 0, **kw: Any) -> CodeRecord:
    return CodeRecord(code_hash=f"h-{cart}", cart_key=cart, contact_key=f"c-{cart}", issued_at=T0 + issued,
                      expires_at=T0 + 7 * DAY, **kw)  # fmt: skip


def test_discount_cost_is_known_for_amounts_and_for_percentages_of_a_known_order() -> None:
    offer = {"offer": "ten", "offer_kind": "discount"}
    items = [
        out("amt", 0, **offer), bought("amt", HOUR, value=4000, transaction_id="o-amt"),
        out("pct", 0, **offer), bought("pct", HOUR, value=3333, transaction_id="o-pct"),
        out("ship", 0, offer="ship", offer_kind="free_shipping"), bought("ship", HOUR, transaction_id="o-ship"),
        out("lost", 0, **offer), out("unused", 0, **offer),
    ]
    codes = [
        code("amt", kind="discount", amount=500, currency="EUR", redeemed_at=T0 + HOUR, redeemed_order="o-amt"),
        code("pct", kind="discount", percent=15, redeemed_at=T0 + HOUR, redeemed_order="o-pct"),
        code("ship", kind="free_shipping", redeemed_at=T0 + HOUR, redeemed_order="o-ship"),
        code("lost", kind="discount", percent=10, redeemed_at=T0 + HOUR, redeemed_order="o-not-recorded"),
        code("unused", kind="discount", percent=10),
    ]
    found = recovery(facts(*items, codes=codes))
    t = found.total
    # 5.00 off, and 15% of 33.33 rounded down (4.99); free shipping and the order never recorded: unknown.
    assert (t.codes_redeemed, t.discount_cost, t.discount_cost_unknown) == (4, {"EUR": 999}, 2)
    assert row(found.rows, "offer", "ten").discount_cost == {"EUR": 999}
    assert row(found.rows, "offer", "ship").discount_cost_unknown == 1
    assert found.codes_issued == 5


def test_a_fixed_amount_never_costs_more_than_the_order() -> None:
    items = [out("a", 0, offer="big", offer_kind="discount"), bought("a", HOUR, value=300, transaction_id="o-a")]
    codes = [code("a", kind="discount", amount=500, currency="EUR", redeemed_at=T0 + HOUR, redeemed_order="o-a")]
    assert recovery(facts(*items, codes=codes)).total.discount_cost == {"EUR": 300}


def test_recovery_over_time_counts_sends_and_orders_on_their_own_days() -> None:
    found = recovery(facts(out("a", 0), out("b", DAY), bought("a", 2 * DAY, value=100), bought("b", 2 * DAY, value=50)))
    assert [(d.day, d.sent, d.recovered, d.revenue) for d in found.days] == [
        ("2026-01-01", 1, 0, {}), ("2026-01-02", 1, 0, {}), ("2026-01-03", 0, 2, {"EUR": 150})
    ]


def test_the_cohort_summary_says_what_the_store_knows() -> None:
    found = recovery(facts(
        assign("t1", reason="shipping_cost"), assign("t2"), assign("h1", group="holdout", scope="global"),
        out("t1", 0), bought("t1", HOUR), bought("h1", HOUR), bought("t2", 6 * DAY),
    ))  # fmt: skip
    c = found.cohort
    assert (c.abandoned_carts, c.treatment_carts, c.holdout_carts, c.messaged_carts) == (3, 2, 1, 1)
    assert (c.converted_carts, c.recovered_carts) == (2, 1)  # t2 bought after the window
    assert c.by_reason == {"unknown": 2, "shipping_cost": 1}


def test_load_facts_reads_a_period_s_cohort_and_everything_that_followed() -> None:
    store = MemoryStore()
    store.record_facts([
        assign("old", at=-DAY), out("old", -DAY + HOUR),
        assign("new", at=HOUR), out("new", 2 * HOUR, offer="ten", offer_kind="discount"),
        out("new", 3 * DAY, step=1),  # after `until`: still the cohort's
        bought("new", 3 * DAY + HOUR, transaction_id="o-new"),
        LinkVisit(cart_key="new", at=T0 + 3 * DAY + 60),
    ])  # fmt: skip
    store.issue_code(code("new", kind="discount", percent=10))
    store.redeem_code("h-new", contact_key="c-new", cart_value=4000, currency="EUR", order_id="o-new",
                      now=T0 + 3 * DAY + HOUR)  # fmt: skip
    loaded = load_facts(store, since=T0, until=T0 + DAY)
    assert [a.cart_key for a in loaded.assignments] == ["new"]
    assert [o.key for o in loaded.outcomes] == ["new/f/0", "new/f/1"]
    assert [c.redeemed_order for c in loaded.codes] == ["o-new"]
    found = recovery(loaded)
    assert (found.total.sent, found.total.recovered_carts, found.total.link_carts) == (2, 1, 1)
    assert found.total.discount_cost == {"EUR": 400}
    assert row(found.rows, "step", "f / step 0").discount_cost == {"EUR": 400}  # the step that carried the code


# -- what the engine records -----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_message_sent_after_the_cart_was_abandoned_a_second_time_is_counted_as_sent() -> None:
    from recoverkit import Config, Engine, FakeClock, MemoryChannel
    from recoverkit.config import Flow, FlowStep

    clock, channel, store = FakeClock(T0), MemoryChannel(), MemoryStore()
    config = Config(abandon_after=600, flows=[Flow(name="f", steps=[FlowStep(delay=HOUR)])])
    base = {"session_id": "s1", "customer_id": "c1"}
    async with Engine(config, channels={"email": channel}, clock=clock, store=store) as engine:
        engine.track({"event": "identify", **base, "email": "c1@example.com", "ts": T0})
        engine.track({"event": "consent", **base, "granted": ["email"], "ts": T0})
        engine.track({"event": "add_to_cart", **base, "currency": "EUR", "ts": T0,
                      "items": [{"item_id": "A", "price": "30.00"}]})  # fmt: skip
        clock.advance(601)  # abandoned; the message is due an hour later
        await engine.flush()
        engine.track({"event": "view_cart", **base, "ts": clock.now()})  # back: the message is cancelled
        await engine.flush()
        clock.advance(601)  # left again
        await engine.flush()
        clock.advance(HOUR + 1)
        await engine.flush()
        outcomes = [(o.key, o.outcome) for o in store.outcomes()]
    assert [m.key for m in channel.sent] == ["s1/f/0"]
    assert recovery(load_facts(store)).total.sent == 1, outcomes
