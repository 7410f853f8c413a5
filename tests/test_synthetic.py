"""recoverkit.synthetic: a deterministic, realistic, streaming event generator."""

from __future__ import annotations

import gzip
import itertools
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from recoverkit.events import (
    EVENT_KINDS,
    AddPaymentInfo,
    AddShippingInfo,
    AddToCart,
    BeginCheckout,
    Consent,
    Event,
    Identify,
    PaymentFailed,
    Purchase,
    ViewItem,
    decode_event,
)
from recoverkit.synthetic import generate_events, generate_jsonl, write_synthetic

SESSIONS = 2000


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return list(generate_events(SESSIONS, seed=7))


@pytest.fixture(scope="module")
def sessions(events: list[Event]) -> dict[str, list[Event]]:
    by_session: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_session[event.session_id].append(event)
    return by_session


def share(part: int, whole: int) -> float:
    return part / whole


def with_kind(groups: list[list[Event]], kind: type) -> list[list[Event]]:
    return [g for g in groups if any(isinstance(e, kind) for e in g)]


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not() -> None:
    first = list(generate_jsonl(300, seed=5))
    assert first == list(generate_jsonl(300, seed=5))
    assert first != list(generate_jsonl(300, seed=6))


def test_timestamps_never_go_backwards(events: list[Event]) -> None:
    times = [e.ts for e in events]
    assert all(isinstance(t, float) for t in times)
    assert times == sorted(times)  # type: ignore[type-var]
    assert times[0] == 1_767_225_600.0


def test_every_line_decodes_to_the_same_event() -> None:
    lines = list(generate_jsonl(SESSIONS, seed=7))
    assert [decode_event(line) for line in lines] == list(generate_events(SESSIONS, seed=7))
    assert all(b"\n" not in line for line in lines)


def test_exactly_the_requested_number_of_sessions(sessions: dict[str, list[Event]]) -> None:
    assert len(sessions) == SESSIONS
    assert list(generate_events(0)) == []
    assert len({e.session_id for e in generate_events(1)}) == 1


def test_sessions_last_less_than_an_hour(sessions: dict[str, list[Event]]) -> None:
    spans = [float(s[-1].ts) - float(s[0].ts) for s in sessions.values()]  # type: ignore[arg-type]
    assert max(spans) < 3600


def test_funnel_shares_are_roughly_as_documented(sessions: dict[str, list[Event]]) -> None:
    groups = list(sessions.values())
    views = [sum(isinstance(e, ViewItem) for e in g) for g in groups]
    assert min(views) >= 1 and max(views) <= 8
    carts = with_kind(groups, AddToCart)
    checkouts = with_kind(carts, BeginCheckout)
    shipping = with_kind(checkouts, AddShippingInfo)
    payment = with_kind(shipping, AddPaymentInfo)
    assert share(len(carts), len(groups)) == pytest.approx(0.35, abs=0.04)
    assert share(len(checkouts), len(carts)) == pytest.approx(0.50, abs=0.07)
    assert share(len(shipping), len(checkouts)) == pytest.approx(0.75, abs=0.08)
    assert share(len(payment), len(shipping)) == pytest.approx(0.70, abs=0.10)
    failed = with_kind(with_kind(groups, AddPaymentInfo), PaymentFailed)
    assert 0.02 < share(len(failed), len(with_kind(groups, AddPaymentInfo))) < 0.16
    assert share(len(with_kind(groups, Identify)), len(groups)) == pytest.approx(0.40, abs=0.05)
    present = {type(e).__struct_config__.tag for g in groups for e in g}
    # Every kind but the pages' checkout_signal, which only the shop with planted causes sends (its own tests).
    assert present == set(EVENT_KINDS) - {"checkout_signal"}


def test_about_45_percent_of_carts_are_bought_some_in_a_later_session(events: list[Event]) -> None:
    carts = {e.cart_id: e.session_id for e in events if isinstance(e, AddToCart)}
    purchases = [e for e in events if isinstance(e, Purchase)]
    assert all(p.cart_id in carts for p in purchases)
    assert len({p.cart_id for p in purchases}) == len(purchases)  # one order per cart
    assert share(len(purchases), len(carts)) == pytest.approx(0.45, abs=0.06)
    later = [p for p in purchases if p.session_id != carts[p.cart_id]]
    assert 0.1 < share(len(later), len(purchases)) < 0.7


def test_identified_customers_mostly_grant_email_and_some_sms(events: list[Event]) -> None:
    customers = {e.customer_id for e in events if isinstance(e, Identify)}
    granted: dict[str, set[str | None]] = defaultdict(set)
    for e in events:
        if isinstance(e, Consent):
            for channel in e.granted:
                assert e.customer_id not in granted[channel], "consent is granted once per customer"
                granted[channel].add(e.customer_id)
    assert share(len(granted["email"]), len(customers)) == pytest.approx(0.70, abs=0.08)
    assert 0 < len(granted["sms"]) < len(granted["email"])
    phones = {e.phone for e in events if isinstance(e, Identify) and e.customer_id in granted["sms"]}
    assert all(p is not None and p.startswith("+155501") and len(p) == 12 for p in phones)
    emails = {e.email for e in events if isinstance(e, Identify)}
    assert all(m is not None and m.endswith("@example.invalid") for m in emails)


def test_money_is_decimal_with_two_places_never_float(events: list[Event]) -> None:
    def check(amount: object) -> None:
        assert isinstance(amount, Decimal), f"{amount!r} is not a Decimal"
        assert amount.as_tuple().exponent == -2

    amounts = 0
    for event in events:
        for amount in (event.value, event.shipping):
            if amount is not None:
                check(amount)
                amounts += 1
        for item in event.items:
            check(item.price)
            assert event.currency == "EUR"
    assert amounts > len(events) / 2
    # Amounts are written as exact JSON numbers, so a decoder reads back the same two-decimal values.
    for line in itertools.islice(generate_jsonl(200, seed=7), 2000):
        decoded = decode_event(line)
        for item in decoded.items:
            check(item.price)
        if decoded.value is not None:
            check(decoded.value)


def test_it_streams_instead_of_building_everything_first() -> None:
    started = time.perf_counter()
    first = list(itertools.islice(generate_events(1_000_000), 1000))
    assert len(first) == 1000
    assert time.perf_counter() - started < 5  # scripting a million sessions up front would take minutes


def test_write_synthetic_writes_the_generated_lines(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.jsonl.gz"
    count = write_synthetic(path, 100, seed=2)
    lines = gzip.decompress(path.read_bytes()).splitlines()
    assert lines == list(generate_jsonl(100, seed=2)) and count == len(lines)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sessions": -1}, "sessions=-1"),
        ({"sessions": 10, "catalog_size": 0}, "catalog_size=0"),
        ({"sessions": 10, "currency": "eur"}, "currency='eur'"),
        ({"sessions": 10, "start": 1.7e12}, "start=1700000000000.0"),
    ],
)
def test_bad_arguments_are_rejected_with_the_value(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_events(**kwargs)  # type: ignore[arg-type]
