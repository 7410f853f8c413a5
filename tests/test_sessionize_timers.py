"""The sessionize stage's timers alone, with plain calls on session records: no events, no stage, no loop."""

from __future__ import annotations

import math

from recoverkit.config import Config
from recoverkit.sessionize._abandon_timers import AbandonTimers, abandons
from recoverkit.sessionize._cart import Line, Session

CONFIG = Config(
    abandon_after=600, exit_intent_after=120, payment_failed_after=30, session_timeout=900, recovery_window=3000
)


def session(session_id: str = "s1", *, at: float = 0.0, cart: bool = False) -> Session:
    lines = (Line(item_id="A", price=1000, quantity=1, name=None, category=None),) if cart else None
    return Session(session_id=session_id, started_at=at, last_at=at, deadline=math.inf, lines=lines)


def due(timers: AbandonTimers, limit: float, *sessions: Session, inclusive: bool = True) -> list[tuple[float, str]]:
    held = {s.session_id: s for s in sessions}
    return [(at, s.session_id) for at, s in timers.due(limit, held, inclusive=inclusive)]


def test_activity_on_a_cart_arms_abandon_after_past_the_last_activity() -> None:
    timers, s = AbandonTimers(CONFIG), session(cart=True, at=100)
    timers.touch(s, 100)
    assert (s.deadline, s.trigger) == (700, "inactivity")
    assert due(timers, 699, s) == [] and due(timers, 700, s) == [(700, "s1")]


def test_activity_without_a_cart_arms_the_session_timeout() -> None:
    timers, s = AbandonTimers(CONFIG), session(at=100)
    timers.touch(s, 100)
    assert s.deadline == 1000


def test_an_event_older_than_the_last_activity_moves_no_deadline() -> None:
    timers, s = AbandonTimers(CONFIG), session(cart=True, at=100)
    timers.touch(s, 100)
    timers.touch(s, 50)
    assert s.deadline == 700


def test_a_later_deadline_pushes_no_entry_and_the_old_one_re_arms_when_it_pops() -> None:
    timers, s = AbandonTimers(CONFIG), session(cart=True)
    timers.arm(s, 600)
    timers.arm(s, 900)
    assert len(timers) == 1
    assert due(timers, 600, s) == []  # the entry at 600 popped and re-armed itself at 900
    assert s.timer_at == 900 and due(timers, 900, s) == [(900, "s1")]


def test_an_earlier_deadline_pushes_an_entry_and_the_later_one_is_skipped() -> None:
    timers, s = AbandonTimers(CONFIG), session(cart=True)
    timers.arm(s, 900)
    timers.arm(s, 300)
    assert len(timers) == 2
    assert due(timers, 10_000, s) == [(300, "s1")]  # the 900 entry is no longer the session's timer


def test_a_yielded_session_is_disarmed() -> None:
    timers, s = AbandonTimers(CONFIG), session(cart=True)
    timers.arm(s, 300)
    assert due(timers, 300, s) == [(300, "s1")]
    assert s.timer_at == math.inf and len(timers) == 0


def test_exclusive_limits_leave_a_timer_due_exactly_at_the_limit() -> None:
    timers, s = AbandonTimers(CONFIG), session(cart=True)
    timers.arm(s, 300)
    assert due(timers, 300, s, inclusive=False) == []
    assert due(timers, 300, s, inclusive=True) == [(300, "s1")]


def test_timers_of_sessions_no_longer_held_are_skipped() -> None:
    timers, gone, kept = AbandonTimers(CONFIG), session("gone"), session("kept")
    timers.arm(gone, 100)
    timers.arm(kept, 200)
    assert due(timers, 1000, kept) == [(200, "kept")]


def test_due_timers_come_earliest_first() -> None:
    timers = AbandonTimers(CONFIG)
    sessions = [session(f"s{n}") for n in range(3)]
    for s, at in zip(sessions, (500, 100, 300), strict=True):
        timers.arm(s, at)
    assert due(timers, 1000, *sessions) == [(100, "s1"), (300, "s2"), (500, "s0")]


def test_exit_intent_shortens_the_wait_only_for_a_cart_and_only_when_sooner() -> None:
    timers = AbandonTimers(CONFIG)
    with_cart, without = session("cart", cart=True), session("none")
    for s in (with_cart, without):
        timers.exit_intent(s, 0)
    assert (with_cart.deadline, with_cart.trigger) == (120, "exit_intent")
    assert (without.deadline, without.trigger) == (900, "inactivity")
    short = AbandonTimers(Config(abandon_after=60, exit_intent_after=120))
    soon = session(cart=True)
    short.exit_intent(soon, 0)
    assert (soon.deadline, soon.trigger) == (60, "inactivity")


def test_a_failed_payment_arms_payment_failed_after_for_a_cart() -> None:
    timers = AbandonTimers(CONFIG)
    with_cart, without = session("cart", cart=True, at=10), session("none", at=10)
    for s in (with_cart, without):
        timers.payment_failed(s, 10)
    assert (with_cart.deadline, with_cart.trigger) == (40, "payment_failed")
    assert (without.deadline, without.trigger) == (910, "inactivity")


def test_activity_after_a_shortened_wait_restores_the_inactivity_wait() -> None:
    timers, s = AbandonTimers(CONFIG), session(cart=True)
    timers.exit_intent(s, 0)
    s.last_at = 50
    timers.touch(s, 50)
    assert (s.deadline, s.trigger) == (650, "inactivity")


def test_an_abandoned_cart_is_kept_for_the_recovery_window_and_a_bought_one_for_the_session_timeout() -> None:
    timers, left, bought = AbandonTimers(CONFIG), session("left", at=100), session("bought", at=100)
    timers.abandoned(left)
    timers.bought(bought, 200)
    assert (left.deadline, bought.deadline) == (3100, 1100)


def test_a_due_timer_abandons_only_a_cart_not_yet_abandoned() -> None:
    empty, held, gone = session("empty"), session("held", cart=True), session("gone", cart=True)
    gone.abandoned = True
    assert [abandons(s) for s in (empty, held, gone)] == [False, True, False]


def test_compaction_keeps_one_entry_per_armed_session_once_stale_entries_pile_up() -> None:
    timers, live = AbandonTimers(CONFIG), session("live")
    timers.arm(live, 5000)
    for n in range(1025):
        timers.arm(session(f"gone-{n}"), 100 + n)
    timers.compact({"live": live})
    assert len(timers) == 1026  # not above 2 * 1 + 1024: left alone
    timers.arm(session("one-more"), 50)
    timers.compact({"live": live})
    assert [(t.due, t.session_id) for t in timers.heap] == [(5000, "live")]


def test_a_rebuild_holds_one_entry_per_armed_session() -> None:
    timers, armed, idle = AbandonTimers(CONFIG), session("armed"), session("idle")
    armed.timer_at = armed.deadline = 700
    timers.rebuild({"armed": armed, "idle": idle})
    assert [(t.due, t.session_id) for t in timers.heap] == [(700, "armed")] and due(timers, 700, armed, idle) == [(700, "armed")]
