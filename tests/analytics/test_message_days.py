"""Recovery by the day messages fell due and by the day they were sent: each day's messages followed to the carts
they recovered."""

from __future__ import annotations

from helpers import T0
from recoverkit.analytics import Facts, MessageDay, load_facts, recovery
from recoverkit.facts import Assignment, Conversion, MessageOutcome
from recoverkit.store import ClaimRequest, FinishRequest, MemoryStore

HOUR, DAY = 3600.0, 86_400.0


def assign(cart: str) -> Assignment:
    return Assignment(cart_key=cart, flow="f", group="treatment", contact_key=f"c-{cart}", assigned_at=T0, value=1,
                      currency="EUR")  # fmt: skip


def sent(cart: str, at: float, step: int = 0) -> MessageOutcome:
    return MessageOutcome(key=f"{cart}/{step}", cart_key=cart, contact_key=f"c-{cart}", flow="f", step=step,
                          outcome="sent", at=T0 + at, channel="email")  # fmt: skip


def bought(cart: str, at: float, value: int) -> Conversion:
    return Conversion(cart_key=cart, contact_key=f"c-{cart}", at=T0 + at, value=value, currency="EUR")


def test_each_days_messages_are_followed_to_what_they_recovered() -> None:
    # a: due late on day 0, sent (after retries) on day 1, bought on day 3: a day-0 due, day-1 send recovery.
    # b: due and sent on day 1, its second step due and sent on day 2; bought on day 2 after the second: credited
    #    to the second message (last touch).
    # c: due and sent on day 1; never bought.
    facts = Facts(
        assignments=[assign("a"), assign("b"), assign("c")],
        outcomes=[sent("a", DAY + HOUR), sent("b", DAY + 2 * HOUR), sent("b", 2 * DAY, step=1),
                  sent("c", DAY + 3 * HOUR)],
        conversions=[bought("a", 3 * DAY, 4000), bought("b", 2 * DAY + HOUR, 2500)],
        visits=[], codes=[],
        due={"a/0": T0 + 23 * HOUR, "b/0": T0 + DAY + 2 * HOUR, "b/1": T0 + 2 * DAY, "c/0": T0 + DAY + 3 * HOUR},
    )  # fmt: skip
    found = recovery(facts)
    d0, d1, d2, d3 = (f"2026-01-0{i}" for i in (1, 2, 3, 4))
    assert found.by_due_day == [
        MessageDay(day=d0, sent=1, carts=1, recovered=1, revenue={"EUR": 4000}),
        MessageDay(day=d1, sent=2, carts=2, recovered=0, revenue={}),
        MessageDay(day=d2, sent=1, carts=1, recovered=1, revenue={"EUR": 2500}),
    ]
    assert found.by_sent_day == [
        MessageDay(day=d1, sent=3, carts=3, recovered=1, revenue={"EUR": 4000}),
        MessageDay(day=d2, sent=1, carts=1, recovered=1, revenue={"EUR": 2500}),
    ]
    assert found.due_unknown == 0
    # The days of orders (DayRow) still date each recovery by its order: day 2 and day 3.
    assert [(d.day, d.recovered) for d in found.days if d.recovered] == [(d2, 1), (d3, 1)]


def test_a_message_without_a_due_time_is_counted_on_its_send_day() -> None:
    facts = Facts(assignments=[assign("a")], outcomes=[sent("a", DAY)], conversions=[], visits=[], codes=[])
    found = recovery(facts)
    assert found.due_unknown == 1
    assert [(d.day, d.sent) for d in found.by_due_day] == [(d.day, d.sent) for d in found.by_sent_day] == [
        ("2026-01-02", 1)
    ]


def test_load_facts_takes_the_due_time_from_the_send_ledger() -> None:
    store = MemoryStore()
    store.record_facts([assign("a"), sent("a", DAY)])
    assert store.acquire_lease("pipeline", "o", ttl=10 * DAY, now=T0)
    claim = ClaimRequest(key="a/0", cart_key="a", contact_key="c-a", channel="email", started_at=T0, owner="o",
                         now=T0 + DAY, at=T0 + 20 * HOUR)  # fmt: skip
    assert store.claim_many([claim]) == ["claimed"]
    store.finish_many([FinishRequest(key="a/0", outcome="sent", now=T0 + DAY)])
    facts = load_facts(store)
    assert facts.due == {"a/0": T0 + 20 * HOUR}
    assert [d.day for d in recovery(facts).by_due_day] == ["2026-01-01"]
