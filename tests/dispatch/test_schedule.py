"""Dispatch's schedule alone, with plain calls: due order, one per key, never after purchase, caps, retention,
erasure and the checkpoint round trip. No engine, no event loop, no store."""

from __future__ import annotations

from collections import Counter

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from recoverkit import Cap, CartSnapshot, Config, EventClock, FakeClock, Flow, FlowStep, Message, Recipient
from recoverkit.dispatch._schedule import Schedule
from recoverkit.events import CheckoutStep
from recoverkit.items import Cancel

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def message(
    key: str,
    due: float,
    *,
    cart: str | None = None,
    contact: str = "c1",
    channel: str = "email",
    started: float = T0,
) -> Message:
    """A message for ``key`` (``<cart>/<flow>/<step>``) due at ``due``; its cart started at ``started``."""
    cart_key = cart if cart is not None else key.split("/")[0]
    return Message(
        key=key, flow="f", step=0, channel=channel, template="t", due_at=due, abandoned_at=started,
        trigger="inactivity", score=0.5, reason="unknown",
        cart=CartSnapshot(cart_key=cart_key, session_id="s", customer_id=None, currency="EUR", lines=(), value=1000,
                          shipping=None, step=CheckoutStep.CART, started_at=started, checkout_at=None, last_at=started),
        recipient=Recipient(contact_key=contact),
    )  # fmt: skip


class Run:
    """A schedule and what ended in it: (key, outcome, at)."""

    def __init__(self, config: Config | None = None, *, event_time: bool = False) -> None:
        self.outcomes: Counter[str] = Counter()
        self.ended: list[tuple[str, str, float]] = []
        clock = EventClock() if event_time else FakeClock(T0)
        self.schedule = Schedule(config or Config(), clock, self.outcomes, self._ended)

    def _ended(self, message: Message, outcome: str, at: float) -> None:
        self.ended.append((message.key, outcome, at))

    def due(self, watermark: float) -> list[str]:
        return [m.key for m, _, _ in self.schedule.pop_due(watermark)]


# -- due order ----------------------------------------------------------------------------------------------------


def test_messages_fall_due_in_due_order_and_not_before() -> None:
    run = Run()
    for key, due in (("a/f/0", T0 + 30), ("b/f/0", T0 + 10), ("c/f/0", T0 + 20), ("d/f/0", T0 + 40)):
        run.schedule.add(message(key, due))
    assert [m.key for m in run.schedule.messages()] == ["b/f/0", "c/f/0", "a/f/0", "d/f/0"]
    assert run.due(T0 + 9) == []
    assert run.due(T0 + 30) == ["b/f/0", "c/f/0", "a/f/0"]
    assert [m.key for m in run.schedule.messages()] == ["d/f/0"]
    assert run.outcomes["scheduled"] == 4


def test_a_retry_falls_due_at_its_own_time_with_its_attempts() -> None:
    run = Run()
    first = message("a/f/0", T0 + 10)
    run.schedule.add(first)
    assert run.due(T0 + 10) == ["a/f/0"]
    run.schedule.attempts["a/f/0"] = 1
    run.schedule.add(first, due=T0 + 100)  # a retry: scheduled although the key was handed over
    assert run.outcomes["retry_scheduled"] == 1
    assert run.due(T0 + 99) == []
    assert [(m.key, attempt, due) for m, attempt, due in run.schedule.pop_due(T0 + 100)] == [("a/f/0", 1, T0 + 100)]


def test_a_key_handed_over_is_not_scheduled_again() -> None:
    run = Run()
    run.schedule.add(message("a/f/0", T0 + 10))
    assert run.due(T0 + 10) == ["a/f/0"]
    run.schedule.add(message("a/f/0", T0 + 20))
    assert run.schedule.messages() == [] and run.outcomes["duplicate_key"] == 1
    assert run.due(T0 + 1000) == []


# -- never after purchase ---------------------------------------------------------------------------------------------


def test_a_purchase_cancels_what_is_pending_and_what_comes_after() -> None:
    run = Run()
    run.schedule.add(message("a/f/0", T0 + 100))
    run.schedule.add(message("a/f/1", T0 + 200))
    run.schedule.add(message("b/f/0", T0 + 100, contact="c2"))
    run.schedule.cancel(Cancel(why="purchase", at=T0 + 50, cart_key="a", contact_key="c1"))
    assert sorted(run.ended) == [("a/f/0", "cancelled_purchase", T0 + 50), ("a/f/1", "cancelled_purchase", T0 + 50)]
    # A message routed after the purchase is stopped on arrival, dated by the purchase.
    run.schedule.add(message("a/f/2", T0 + 300))
    assert run.ended[-1] == ("a/f/2", "cancelled_purchase", T0)  # live: on the engine's clock, now
    assert run.due(T0 + 1000) == ["b/f/0"]


def test_a_customer_s_purchase_stops_carts_started_before_it_only() -> None:
    run = Run()
    run.schedule.cancel(Cancel(why="purchase", at=T0 + 50, contact_key="c1"))
    run.schedule.add(message("old/f/0", T0 + 100, started=T0))  # started before the purchase: stopped
    run.schedule.add(message("new/f/0", T0 + 100, started=T0 + 60))  # a new cart after it: goes out
    assert [key for key, _, _ in run.ended] == ["old/f/0"]
    assert run.due(T0 + 100) == ["new/f/0"]


def test_in_event_time_only_a_purchase_by_the_due_time_cancels_at_due_time() -> None:
    run = Run(event_time=True)
    run.schedule.add(message("a/f/0", T0 + 100))
    run.schedule.add(message("b/f/0", T0 + 300))
    # Recorded by another route (the ledger's purchase claims) without a Cancel reaching the schedule: the due
    # check alone decides.
    run.schedule.bought_carts["a"] = T0 + 200
    run.schedule.bought_carts["b"] = T0 + 200
    assert run.due(T0 + 1000) == ["a/f/0"]  # due before the purchase: sent, as it would have been live
    assert run.ended == [("b/f/0", "cancelled_purchase", T0 + 300)]  # dated by its due time in event time


def test_a_withdrawal_cancels_only_its_channel() -> None:
    run = Run()
    run.schedule.add(message("a/f/0", T0 + 100, channel="email"))
    run.schedule.add(message("a/f/1", T0 + 100, channel="sms"))
    run.schedule.cancel(Cancel(why="consent_withdrawn", at=T0 + 5, contact_key="c1", channel="sms"))
    assert run.ended == [("a/f/1", "cancelled_consent_withdrawn", T0 + 5)]
    assert run.due(T0 + 100) == ["a/f/0"]
    assert run.schedule.bought(message("a/f/0", T0)) is False  # not a purchase: nothing remembered


# -- caps -------------------------------------------------------------------------------------------------------------


def test_caps_skip_what_exceeds_them_for_good() -> None:
    run = Run(Config(caps=[Cap(max=2, per=3600), Cap(max=1, per=3600, channel="sms")]))
    for i, (due, channel) in enumerate([(0, "email"), (10, "sms"), (20, "sms"), (30, "email"), (3601, "email")]):
        run.schedule.add(message(f"k{i}/f/0", T0 + due, channel=channel))
    assert run.due(T0 + 4000) == ["k0/f/0", "k1/f/0", "k4/f/0"]
    assert [(key, outcome) for key, outcome, _ in run.ended] == [("k2/f/0", "capped"), ("k3/f/0", "capped")]
    assert run.schedule.ledger["k3/f/0"] == "capped"
    run.schedule.add(message("k3/f/0", T0 + 5000))  # skipped for good, not delayed
    assert run.outcomes["duplicate_key"] == 1


def test_caps_count_per_contact() -> None:
    run = Run(Config(caps=[Cap(max=1, per=3600)]))
    run.schedule.add(message("a/f/0", T0, contact="c1"))
    run.schedule.add(message("b/f/0", T0, contact="c2"))
    assert run.due(T0) == ["a/f/0", "b/f/0"]


# -- retention and erasure --------------------------------------------------------------------------------------------


def test_ledger_and_purchase_marks_expire_after_the_recovery_window() -> None:
    config = Config(recovery_window=1000, flows=[Flow(name="f", steps=[FlowStep(delay=100)])])
    run = Run(config)
    run.schedule.add(message("a/f/0", T0))
    run.schedule.cancel(Cancel(why="purchase", at=T0, cart_key="b"))
    assert run.due(T0) == ["a/f/0"]
    run.due(T0 + 1100)  # retention is the window plus the longest delay: not yet past it
    assert "a/f/0" in run.schedule.ledger and "b" in run.schedule.bought_carts
    run.due(T0 + 1101)
    assert "a/f/0" not in run.schedule.ledger and "b" not in run.schedule.bought_carts


def test_forget_drops_pending_messages_purchase_marks_and_cap_history() -> None:
    run = Run(Config(caps=[Cap(max=5, per=3600)]))
    run.schedule.add(message("a/f/0", T0))
    assert run.due(T0) == ["a/f/0"]
    run.schedule.add(message("b/f/0", T0 + 100))
    run.schedule.add(message("x/f/0", T0 + 100, contact="c2"))
    run.schedule.cancel(Cancel(why="purchase", at=T0, contact_key="c1"))
    run.schedule.add(message("c/f/0", T0 + 100, started=T0 + 1))
    assert run.schedule.forget(["c1"], ["zzz"]) == 1
    assert [m.key for m in run.schedule.messages()] == ["x/f/0"]
    assert "c1" not in run.schedule.bought_contacts and "c1" not in run.schedule.history


# -- the checkpoint -------------------------------------------------------------------------------------------------


def test_snapshot_round_trip_keeps_everything() -> None:
    config = Config(caps=[Cap(max=3, per=3600)])
    run = Run(config)
    run.schedule.add(message("a/f/0", T0 + 10))
    run.schedule.add(message("b/f/0", T0 + 500))
    run.schedule.add(message("c/f/0", T0 + 20))
    assert run.due(T0 + 10) == ["a/f/0"]
    run.schedule.attempts["c/f/0"] = 2
    run.schedule.add(message("c/f/0", T0 + 20), due=T0 + 900)  # a retry, due later than the message says
    run.schedule.cancel(Cancel(why="purchase", at=T0 + 5, cart_key="z", contact_key="c9"))
    held = [(message("h/f/0", T0 + 15), 1)]  # taken off the schedule, not settled yet
    data = run.schedule.snapshot(T0 + 10, held, [])

    again = Run(config)
    watermark, facts = again.schedule.restore(data)
    assert (watermark, facts) == (T0 + 10, [])
    assert [(m.key, again.schedule.due_of(m.key, m)) for m in again.schedule.messages()] == [
        ("h/f/0", T0 + 15), ("b/f/0", T0 + 500), ("c/f/0", T0 + 900),
    ]  # fmt: skip
    assert again.schedule.attempts == {"c/f/0": 2, "h/f/0": 1}
    assert again.schedule.ledger == run.schedule.ledger == {"a/f/0": "in_flight"}
    assert (again.schedule.bought_carts, again.schedule.bought_contacts) == ({"z": T0 + 5}, {"c9": T0 + 5})
    assert again.schedule.history == run.schedule.history
    assert again.outcomes == run.outcomes
    assert again.schedule.snapshot(T0 + 10, [], []) == data
    # And it goes on as the original would: the retry at its own time, with its attempts.
    assert [(m.key, a) for m, a, _ in again.schedule.pop_due(T0 + 1000)] == [("h/f/0", 1), ("b/f/0", 0), ("c/f/0", 2)]


def test_restore_of_nothing_is_empty() -> None:
    run = Run()
    run.schedule.add(message("a/f/0", T0))
    run.outcomes["sent"] = 3
    assert run.schedule.restore(None) == (float("-inf"), [])
    assert run.schedule.messages() == [] and run.schedule.ledger == {} and run.outcomes == Counter()


def test_a_snapshot_is_the_checkpoint_layout_older_versions_wrote() -> None:
    # Positional: checkpoints already in stores must restore. Field order and the trailing defaults are fixed.
    run = Run()
    run.schedule.add(message("a/f/0", T0))
    decoded = msgspec.msgpack.decode(run.schedule.snapshot(T0, [], []))
    assert isinstance(decoded, list) and len(decoded) == 9
    assert decoded[0] == T0 and decoded[1][0][1:] == [T0, 0] and decoded[6] == {"scheduled": 1}


_CH = ["email", "sms"]

# -- invariants -----------------------------------------------------------------------------------------------------

#: (what, cart, contact, seconds, channel): a message due that long after the watermark (its cart started at the
#: watermark), a purchase of a cart by a contact now, or the watermark moving on by that long.
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 2), st.integers(0, 2), st.integers(0, 3600), st.sampled_from(_CH)),
        st.tuples(st.just("buy"), st.integers(0, 2), st.integers(0, 2), st.just(0), st.just("")),
        st.tuples(st.just("tick"), st.just(0), st.just(0), st.integers(0, 1800), st.just("")),
    ),
    min_size=20,
    max_size=80,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(ops=_ops, cap=st.integers(0, 3), per=st.sampled_from([600, 3600]))
def test_never_two_for_one_key_never_after_purchase_and_caps_never_exceeded(
    ops: list[tuple[str, int, int, int, str]], cap: int, per: int
) -> None:
    """Whatever arrives in whatever order: a key is handed over at most once, nothing of a cart (or of a customer)
    started before a purchase seen is handed over after it, and no contact gets more than the cap in any window."""
    run = Run(Config(caps=[Cap(max=cap, per=per)] if cap else []))  # 0: no caps
    watermark = T0
    handed: list[Message] = []
    purchases: list[tuple[str, str, float]] = []  # cart, contact, at
    for op, cart, contact, seconds, channel in ops:
        if op == "add":
            run.schedule.add(message(f"cart{cart}/f/{seconds % 3}", watermark + seconds, contact=f"c{contact}",
                                     channel=channel, started=watermark))  # fmt: skip
        elif op == "buy":
            purchases.append((f"cart{cart}", f"c{contact}", watermark))
            run.schedule.cancel(Cancel(why="purchase", at=watermark, cart_key=f"cart{cart}", contact_key=f"c{contact}"))
        else:
            watermark += seconds
            due = run.schedule.pop_due(watermark)
            for m, attempt, _ in due:
                assert attempt == 0
                started = m.cart.started_at
                assert not [p for p in purchases if m.cart.cart_key == p[0] and started <= p[2]]
                assert not [p for p in purchases if m.recipient.contact_key == p[1] and started <= p[2]]
            handed.extend(m for m, _, _ in due)
    keys = [m.key for m in handed]
    assert len(keys) == len(set(keys))
    by_contact: dict[str, list[float]] = {}
    for m in handed:
        by_contact.setdefault(m.recipient.contact_key, []).append(m.due_at)
    for dues in by_contact.values():
        for t in dues:
            assert not cap or sum(1 for u in dues if t - per < u <= t) <= cap
