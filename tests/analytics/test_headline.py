"""The headline figures, each computed from a known set of facts and checked by hand, and the previous period's
figures and the change against them."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import T0
from recoverkit.analytics import Facts, build_report, headline_figures, recovery, uplift
from recoverkit.analytics._summary import summary_rows
from recoverkit.facts import Assignment, Conversion, MessageOutcome
from recoverkit.store import CodeRecord, MemoryStore

HOUR, DAY = 3600.0, 86_400.0


def assign(cart: str, at: float = 0, *, group: str = "treatment", scope: str | None = None, **kw: Any) -> Assignment:
    fields: dict[str, Any] = {"contact_key": f"c-{cart}", "value": 5000, "currency": "EUR"}
    fields.update(kw)
    return Assignment(cart_key=cart, flow="f", group=group, scope=scope, assigned_at=T0 + at, **fields)  # type: ignore[arg-type]


def sent(cart: str, at: float, *, step: int = 0, outcome: str = "sent", contact: str | None = None) -> MessageOutcome:
    return MessageOutcome(key=f"{cart}/f/{step}", cart_key=cart, contact_key=contact or f"c-{cart}", flow="f",
                          step=step, outcome=outcome, at=T0 + at, channel="email")  # fmt: skip


def bought(cart: str, at: float, value: int, **kw: Any) -> Conversion:
    kw.setdefault("contact_key", f"c-{cart}")
    return Conversion(cart_key=cart, at=T0 + at, value=value, currency="EUR", **kw)


def shop_facts() -> Facts:
    """Four treatment carts and four held out (the shop-wide holdout), by hand:

    a: sent at 1 h, bought at 3 h for 40.00 EUR (recovered).
    b: sent at 1 h; its second step was cancelled by a consent withdrawal at 2 h (an unsubscribe); not bought.
    c: sent at 1 h, bought at 2 h for 60.00 EUR with a 5.00 EUR code (recovered).
    d: no consent, never sent; not bought.
    h1..h4: held out; h1 bought at 2 h for 30.00 EUR.
    """
    assignments = [assign(c) for c in "abcd"] + [assign(f"h{i}", group="holdout", scope="global") for i in range(1, 5)]
    outcomes = [
        sent("a", HOUR), sent("b", HOUR), sent("c", HOUR), sent("d", 0, outcome="skipped_no_consent"),
        sent("b", 2 * HOUR, step=1, outcome="cancelled_consent_withdrawn"),
    ]  # fmt: skip
    conversions = [bought("a", 3 * HOUR, 4000), bought("c", 2 * HOUR, 6000, transaction_id="o-c"),
                   bought("h1", 2 * HOUR, 3000)]  # fmt: skip
    code = CodeRecord(code_hash="h-c", cart_key="c", contact_key="c-c", kind="discount", issued_at=T0 + HOUR,
                      expires_at=T0 + 9 * DAY, amount=500, currency="EUR", redeemed_at=T0 + 2 * HOUR,
                      redeemed_order="o-c")  # fmt: skip
    return Facts(assignments=assignments, outcomes=outcomes, conversions=conversions, visits=[], codes=[code])


def test_every_headline_figure_from_known_facts() -> None:
    facts = shop_facts()
    h = headline_figures(facts, recovery(facts), uplift(facts))
    # 2 of the 3 carts sent a message were recovered, by orders worth 40.00 + 60.00 EUR, for 3 recipients.
    assert (h.messaged_carts, h.recovered_carts, h.recipients) == (3, 2, 3)
    assert h.recovery_rate == pytest.approx(2 / 3)
    (eur,) = h.money
    assert (eur.currency, eur.recovered, eur.recipients, eur.per_recipient) == ("EUR", 10_000, 3, 3333)
    # Treatment 2/4 = 50% against holdout 1/4 = 25%: +25 points x 4 treated carts x the treated orders' mean
    # value (40.00 + 60.00) / 2 = 50.00 EUR = 50.00 EUR incremental. One holdout conversion: too small to tell.
    assert eur.incremental == 5000 and eur.verdict == "too_small"
    assert eur.low is not None and eur.high is not None and eur.low < 0 < eur.high
    assert (eur.discount_cost, h.codes_redeemed, h.discount_cost_unknown) == (500, 1, 0)
    assert h.unsubscribes == 1  # c-b, who withdrew consent while step 1 was pending


def test_the_incremental_revenue_is_never_shown_without_its_interval_and_verdict() -> None:
    facts = shop_facts()
    report = build_report(store=_store(facts), since=T0, until=T0 + DAY, now=T0 + 2 * DAY)
    row = next(r for r in summary_rows(report) if r.key == "incremental-EUR")
    (eur,) = headline_figures(facts, recovery(facts), uplift(facts)).money
    low, high = f"{eur.low / 100:,.2f} EUR", f"{eur.high / 100:,.2f} EUR"  # type: ignore[operator]
    assert row.value == f"50.00 EUR ({low} to {high}), not significant" and low.startswith("-")


def test_without_a_holdout_there_is_no_incremental_figure() -> None:
    facts = shop_facts()
    kept = [a for a in facts.assignments if a.group == "treatment"]
    no_holdout = Facts(assignments=kept, outcomes=facts.outcomes, conversions=facts.conversions, visits=[], codes=[])
    (eur,) = headline_figures(no_holdout, recovery(no_holdout), uplift(no_holdout)).money
    assert (eur.incremental, eur.low, eur.high, eur.verdict) == (None, None, None, None)
    report_row = _row_of(no_holdout, "incremental-EUR")
    assert report_row.value == "no holdout to measure it"


def test_revenue_per_recipient_counts_each_contact_once() -> None:
    # One contact, two carts, both messaged; one order recovers both: 75.00 EUR over 1 recipient.
    facts = Facts(
        assignments=[assign("x1", contact_key="c-9"), assign("x2", contact_key="c-9")],
        outcomes=[sent("x1", HOUR, contact="c-9"), sent("x2", HOUR, contact="c-9")],
        conversions=[bought("x1", 2 * HOUR, 7500, contact_key="c-9", transaction_id="o-9"),
                     Conversion(cart_key="x2", contact_key="c-9", at=T0 + 2 * HOUR, own=False)],
        visits=[], codes=[],
    )  # fmt: skip
    h = headline_figures(facts, recovery(facts), uplift(facts))
    assert (h.recipients, h.recovered_carts, h.money[0].recovered, h.money[0].per_recipient) == (1, 2, 7500, 7500)


def test_nothing_sent_has_no_rate_and_no_revenue_per_recipient() -> None:
    facts = Facts(assignments=[assign("a")], outcomes=[], conversions=[], visits=[], codes=[])
    h = headline_figures(facts, recovery(facts), uplift(facts))
    assert (h.recipients, h.recovery_rate, h.money[0].recovered, h.money[0].per_recipient) == (0, None, 0, None)
    rows = summary_rows(build_report(store=_store(facts), now=T0))
    assert [r.value for r in rows][:3] == ["0.00 EUR", "-", "-"]
    empty = summary_rows(build_report(store=MemoryStore(), now=T0))
    assert [r.key for r in empty] == ["recovered", "recovery-rate", "per-recipient", "incremental", "discount-cost",
                                      "unsubscribes"]  # fmt: skip
    assert [r.value for r in empty] == ["-", "-", "-", "no holdout to measure it", "-", "0"]


def _store(facts: Facts) -> MemoryStore:
    store = MemoryStore()
    store.record_facts([*facts.assignments, *facts.outcomes, *facts.conversions])
    return store


def _row_of(facts: Facts, key: str) -> Any:
    return next(r for r in summary_rows(build_report(store=_store(facts), now=T0 + 2 * DAY)) if r.key == key)


def test_the_previous_period_of_the_same_length_and_the_change_against_it() -> None:
    # This period (day 7..14): the shop's facts moved a week on. The week before: one cart, sent and recovered for
    # 25.00 EUR, one recipient.
    week = 7 * DAY
    now = shop_facts()
    moved = [
        *(msgspec_replace(a, assigned_at=a.assigned_at + week) for a in now.assignments),
        *(msgspec_replace(o, at=o.at + week) for o in now.outcomes),
        *(msgspec_replace(c, at=c.at + week) for c in now.conversions),
    ]
    earlier = [assign("p"), sent("p", HOUR), bought("p", 2 * HOUR, 2500)]
    store = MemoryStore()
    store.record_facts([*moved, *earlier])  # type: ignore[list-item]
    report = build_report(store=store, since=T0 + week, until=T0 + 2 * week, now=T0 + 3 * week)
    assert report.period == "8-14 Jan 2026" and report.previous_since == T0
    assert report.previous is not None and report.headline is not None
    assert (report.previous.recovered_carts, report.previous.money[0].recovered) == (1, 2500)
    rows = {r.key: r for r in summary_rows(report)}
    # 100.00 EUR against 25.00 EUR: +300 %; 66.7% against 100%: -33.3 points; per recipient 33.33 against 25.00.
    assert (rows["recovered-EUR"].value, rows["recovered-EUR"].previous) == ("100.00 EUR", "25.00 EUR")
    assert rows["recovered-EUR"].change == "+300 %"
    assert (rows["recovery-rate"].value, rows["recovery-rate"].change) == ("66.7%", "-33.3 pp")
    assert rows["per-recipient-EUR"].change == "+33 %"
    assert (rows["unsubscribes"].value, rows["unsubscribes"].previous, rows["unsubscribes"].change) == ("1", "0", "new")
    assert rows["discount-cost-EUR"].change == "±0 %"  # no code in either period (codes come from the store's export)
    assert rows["incremental-EUR"].change == "-"  # two estimates too small to tell are not compared


def test_without_both_bounds_there_is_no_previous_period() -> None:
    report = build_report(store=_store(shop_facts()), since=T0, now=T0 + DAY)
    assert report.previous is None and report.period == "from 1 Jan 2026"
    assert all(r.change == "" and r.previous == "" for r in summary_rows(report))


def msgspec_replace(struct: Any, **changes: Any) -> Any:
    import msgspec

    return msgspec.structs.replace(struct, **changes)
