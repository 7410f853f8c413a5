"""The funnel of an event file: exact counts and times on a hand-built file, the rules for skipped and unrecorded
steps, carts, friction, segments and bottlenecks, and abandonment reasons as the engine decides them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from analytics.shop import EUR, ITEM, ev, shop_events
from helpers import T0
from recoverkit.analytics import Funnel, funnel, load_events
from recoverkit.analytics.sources import sniff_format
from recoverkit.config import Config


def write(path: Path, events: list[dict[str, Any]], *extra: str) -> Path:
    path.write_text("\n".join([*(json.dumps(e) for e in events), *extra]) + "\n")
    return path


@pytest.fixture
def shop(tmp_path: Path) -> Funnel:
    # Shuffled on purpose (the file is not in time order), with a broken line and an event without a time.
    events = shop_events()
    path = write(tmp_path / "shop.jsonl", events[::-1], '{"event": "view_item", "session_id": "sX"}', "{not json")
    return funnel(load_events(path), min_entrants=1)


def test_sessions_reaching_each_step_follow_the_furthest_step_rule(shop: Funnel) -> None:
    # s4 never viewed an item but reached the cart: it passed through the view step, as a cart's step only
    # moves forward. s6 has no step event at all: a session, but in no step.
    assert shop.sessions == 6
    assert [(s.step, s.sessions) for s in shop.steps] == [
        ("view_item", 5), ("add_to_cart", 4), ("begin_checkout", 3), ("add_shipping_info", 2),
        ("add_payment_info", 1), ("purchase", 1),
    ]  # fmt: skip
    assert [s.conversion for s in shop.steps] == [None, 0.8, 0.75, pytest.approx(2 / 3), 0.5, 1.0]
    assert [s.dropped for s in shop.steps] == [0, 1, 1, 1, 1, 0]
    assert shop.unrecorded == []


def test_time_between_steps_is_measured_only_for_sessions_that_came_by_the_step(shop: Funnel) -> None:
    by = {s.step: s for s in shop.steps}
    # view -> cart: s1 60 s, s2 100 s, s5 50 s (s4 skipped the view: not timed).
    assert (by["add_to_cart"].timed, by["add_to_cart"].median_seconds) == (3, 60.0)
    assert by["add_to_cart"].p90_seconds == pytest.approx(92.0)  # 60 + 0.8 * (100 - 60)
    # cart -> checkout: s1 60, s2 300, s4 100.
    assert (by["begin_checkout"].median_seconds, by["begin_checkout"].p90_seconds) == (100.0, pytest.approx(260.0))
    # checkout -> shipping: s1 60, s4 100; shipping -> payment: s1 120; payment -> purchase: s1 30.
    assert (by["add_shipping_info"].median_seconds, by["add_shipping_info"].p90_seconds) == (80.0, pytest.approx(96.0))
    assert (by["add_payment_info"].median_seconds, by["purchase"].median_seconds) == (120.0, 30.0)


def test_events_that_cannot_be_placed_in_time_are_counted_not_used(shop: Funnel) -> None:
    assert shop.source.skipped == {"malformed_json": 1, "no_time": 1}
    assert shop.source.events == len(shop_events())
    assert (shop.source.first_at, shop.source.last_at) == (T0, T0 + 5000)


def test_the_largest_drop_from_the_cart_on_is_flagged_as_the_bottleneck(shop: Funnel) -> None:
    flagged = [(s.step, s.bottleneck) for s in shop.steps if s.bottleneck]
    assert flagged == [("add_payment_info", "largest drop-off")]  # half of those at shipping went no further


def test_no_step_is_flagged_when_too_few_sessions_entered_it(tmp_path: Path) -> None:
    found = funnel(load_events(write(tmp_path / "e.jsonl", shop_events())))  # the default: 20 entrants
    assert [s.bottleneck for s in found.steps] == [None] * 6


def test_carts_are_counted_from_the_cart_step(shop: Funnel) -> None:
    assert [(c.step, c.carts) for c in shop.carts] == [
        ("add_to_cart", 4), ("begin_checkout", 3), ("add_shipping_info", 2), ("add_payment_info", 1), ("purchase", 1)
    ]


def test_friction_is_counted_over_checkout_sessions(shop: Funnel) -> None:
    f = shop.friction
    assert (f.checkout_sessions, f.payment_failure_sessions, f.form_error_sessions) == (3, 1, 1)
    assert f.payment_failure_rate == f.form_error_rate == pytest.approx(1 / 3)
    assert (f.payment_error_codes, f.form_fields) == ({"card_declined": 1}, {"postal_code": 1})
    assert (f.purchase_rate_after_payment_failure, f.purchase_rate_after_form_error) == (0.0, 0.0)
    assert f.purchase_rate_without_friction == 1.0


def test_segments_split_sessions_by_device_customer_currency_and_source(shop: Funnel) -> None:
    seg = {(r.dimension, r.value): r for r in shop.segments}
    assert seg["device", "mobile"].sessions == [2, 1, 1, 1, 1, 1]  # s1 and s3
    assert seg["device", "mobile"].conversion == 0.5
    assert seg["device", "desktop"].sessions == [2, 2, 2, 1, 0, 0]  # s2 and s4
    assert seg["device", "desktop"].payment_failure_rate == 0.5
    assert seg["device", "unknown"].sessions == [0] * 6  # s6 said nothing
    # c1's first session is new, their second returning; sessions without a customer are anonymous.
    assert seg["customer", "new"].sessions == [1] * 6
    assert seg["customer", "returning"].sessions == [1, 1, 1, 1, 0, 0]
    assert seg["customer", "anonymous"].sessions[:2] == [3, 2]
    assert seg["currency", "EUR"].sessions[:2] == [4, 4] and seg["currency", "unknown"].sessions[0] == 1
    assert seg["source", "newsletter"].sessions[-1] == 1 and seg["source", "unknown"].sessions[0] == 4


def test_abandonment_reasons_come_from_the_engine_replayed_in_event_time(shop: Funnel) -> None:
    a = shop.abandonment
    # s2 left after a failed payment (at once), s4 after a 9.00 shipping on a 20.00 cart, s5 for no known reason.
    assert (a.carts, a.abandonments, a.abandoned_carts) == (4, 3, 3)
    assert [(r.reason, r.abandonments) for r in a.by_reason] == [
        ("payment_failure", 1), ("shipping_cost", 1), ("unknown", 1)
    ]
    assert a.by_trigger == {"inactivity": 2, "payment_failed": 1}
    assert a.by_step == {"cart": 1, "checkout": 1, "shipping": 1}
    assert all(r.value == {"EUR": 2000} for r in a.by_reason)
    assert (a.converted_own, a.converted_elsewhere, a.came_back, a.open_at_end) == (1, 0, 0, 0)


def test_the_engine_timers_come_from_the_config(tmp_path: Path) -> None:
    path = write(tmp_path / "e.jsonl", shop_events())
    patient = funnel(load_events(path), config=Config(abandon_after=3 * 3600, session_timeout=3 * 3600))
    # With three hours to wait, only the failed payment is an abandonment before the events end; the others
    # are still open (censored).
    assert (patient.abandonment.abandonments, patient.abandonment.open_at_end) == (1, 2)


def test_a_cart_left_and_bought_later_counts_as_came_back(tmp_path: Path) -> None:
    events = [
        ev("add_to_cart", "s1", 0, items=ITEM, **EUR),
        ev("view_cart", "s1", 4000),  # back after the 30 minutes: the cart was abandoned at 1800 and resumes
        ev("purchase", "s1", 4100, value="20.00", **EUR),
    ]
    a = funnel(load_events(write(tmp_path / "e.jsonl", events))).abandonment
    assert (a.abandonments, a.came_back, a.by_reason[0].came_back, a.converted_own) == (1, 1, 1, 1)


def test_steps_no_event_names_are_left_out_not_shown_as_drop_off(tmp_path: Path) -> None:
    # Like REES46: views, carts and purchases only. A purchase without a cart event still passed the cart step.
    events = [
        ev("view_item", "a", 0), ev("add_to_cart", "a", 10, items=ITEM, **EUR), ev("purchase", "a", 20, **EUR),
        ev("view_item", "b", 0), ev("purchase", "b", 30, **EUR),
        ev("view_item", "c", 0), ev("add_to_cart", "c", 40, items=ITEM, **EUR),
        ev("view_item", "d", 0),
    ]  # fmt: skip
    found = funnel(load_events(write(tmp_path / "e.jsonl", events)))
    assert [(s.step, s.sessions) for s in found.steps] == [("view_item", 4), ("add_to_cart", 3), ("purchase", 2)]
    assert found.unrecorded == ["begin_checkout", "add_shipping_info", "add_payment_info"]
    # To the cart: a 10 s, b 30 s (its purchase took it past the cart), c 40 s. To the purchase: only a came by
    # the cart (10 s); b skipped it, so its time from a cart it never showed is not known.
    assert [(s.step, s.median_seconds, s.timed) for s in found.steps[1:]] == [
        ("add_to_cart", 30.0, 3), ("purchase", 10.0, 1)
    ]


def test_a_cart_followed_across_sessions_by_its_cart_id_is_one_cart(tmp_path: Path) -> None:
    events = [
        ev("add_to_cart", "s1", 0, cart_id="k1", items=ITEM, **EUR),
        ev("begin_checkout", "s2", 86_400, cart_id="k1"),  # the next day, on another device
        ev("purchase", "s2", 86_500, **EUR),
        ev("add_to_cart", "s2", 86_600, items=ITEM, **EUR),  # a new cart after the purchase, in the session
    ]
    found = funnel(load_events(write(tmp_path / "e.jsonl", events)))
    assert [(c.step, c.carts) for c in found.carts] == [("add_to_cart", 2), ("begin_checkout", 1), ("purchase", 1)]
    assert [(s.step, s.sessions) for s in found.steps] == [("add_to_cart", 2), ("begin_checkout", 1), ("purchase", 1)]


def test_a_segment_significantly_worse_at_a_step_is_flagged(tmp_path: Path) -> None:
    events = []
    for i in range(30):  # mobile: 5 of 30 carts go on to checkout; desktop: 25 of 30
        for device, goes_on in (("mobile", i < 5), ("desktop", i < 25)):
            session = f"{device}-{i}"
            events.append(ev("add_to_cart", session, i, device=device, items=ITEM, **EUR))
            if goes_on:
                events.append(ev("begin_checkout", session, i + 1))
    found = funnel(load_events(write(tmp_path / "e.jsonl", events)))
    seg = {(r.dimension, r.value): r for r in found.segments}
    assert seg["device", "mobile"].bottlenecks == ["begin_checkout"]
    assert seg["device", "desktop"].bottlenecks == []
    assert seg["currency", "EUR"].bottlenecks == []  # everyone: no "rest" to be worse than


def test_small_segment_values_are_merged_into_other(tmp_path: Path) -> None:
    events = [ev("view_item", f"s{i}", i, source=f"src-{i:02d}") for i in range(12)]
    found = funnel(load_events(write(tmp_path / "e.jsonl", events)))
    sources = [r.value for r in found.segments if r.dimension == "source"]
    assert len(sources) == 11 and sources[-1] == "other"
    assert next(r for r in found.segments if r.value == "other").sessions == [2]


def test_gzip_and_period_bounds(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl.gz"
    path.write_bytes(gzip.compress("\n".join(json.dumps(e) for e in shop_events()).encode()))
    log = load_events(path, since=T0 + 100, until=T0 + 1100)
    assert log.source.format == "jsonl"
    assert all(T0 + 100 <= e.ts < T0 + 1100 for e in log.events)  # type: ignore[operator]
    assert log.source.skipped == {"outside_period": len(shop_events()) - len(log.events)}


def test_the_format_is_told_from_the_first_line(tmp_path: Path) -> None:
    rees = tmp_path / "r.csv"
    rees.write_text("event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n")
    rocket = tmp_path / "rr.csv"
    rocket.write_text("timestamp,visitorid,event,itemid,transactionid\n")
    other = tmp_path / "x.csv"
    other.write_text("a,b,c\n")
    assert (sniff_format(rees), sniff_format(rocket)) == ("rees46", "retailrocket")
    assert sniff_format(write(tmp_path / "e.jsonl", shop_events())) == "jsonl"
    with pytest.raises(ValueError, match="cannot tell the format"):
        sniff_format(other)


def test_events_already_in_memory_are_accepted(tmp_path: Path) -> None:
    lines = [json.dumps(e).encode() for e in shop_events()]
    from_lines = funnel(load_events(lines), min_entrants=1)
    from_file = funnel(load_events(write(tmp_path / "e.jsonl", shop_events())), min_entrants=1)
    assert from_lines.steps == from_file.steps and from_lines.abandonment == from_file.abandonment
