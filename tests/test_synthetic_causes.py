"""The synthetic shop with planted causes: every cart left has a known cause, the behaviour it plants is there
to see, and the truth is the generator's side output, never in an event."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from recoverkit.events import CheckoutSignal, Event, PaymentFailed, Purchase, decode_event, encode_event
from recoverkit.synthetic import CAUSES, generate_events


@pytest.fixture(scope="module")
def shop() -> tuple[list[Event], dict[str, str]]:
    truth: dict[str, str] = {}
    return list(generate_events(3000, seed=7, causes=True, truth=truth)), truth


def test_the_same_seed_gives_the_same_events_and_truth(shop: tuple[list[Event], dict[str, str]]) -> None:
    events, truth = shop
    again: dict[str, str] = {}
    assert list(generate_events(3000, seed=7, causes=True, truth=again)) == events
    assert again == truth
    assert list(generate_events(3000, seed=8, causes=True)) != events


def test_events_are_in_time_order_and_valid_as_a_shop_sends_them(shop: tuple[list[Event], dict[str, str]]) -> None:
    events, _ = shop
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(events))  # type: ignore[operator]
    assert all(decode_event(encode_event(e)) == e for e in events)


def test_every_cause_is_planted_in_a_share_of_the_carts_left(shop: tuple[list[Event], dict[str, str]]) -> None:
    events, truth = shop
    counts = Counter(truth.values())
    assert set(counts) == set(CAUSES)
    sessions = {e.session_id for e in events}
    assert set(truth) <= sessions
    left = sum(counts.values())
    for cause in CAUSES:
        assert counts[cause] / left > 0.03, counts


def test_the_truth_is_in_no_event(shop: tuple[list[Event], dict[str, str]]) -> None:
    events, _ = shop
    text = b"\n".join(encode_event(e) for e in events)
    for cause in ("shipping_cost", "form_friction", "price_comparison", "payment_failure"):
        assert cause.encode() not in text


def by_session(events: list[Event]) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = {}
    for e in events:
        out.setdefault(e.session_id, []).append(e)
    return out


def test_each_cause_leaves_its_behaviour_most_of_the_time(shop: tuple[list[Event], dict[str, str]]) -> None:
    events, truth = shop
    sessions = by_session(events)

    def share(cause: str, test: object) -> float:
        ids = [s for s, c in truth.items() if c == cause]
        return sum(1 for s in ids if test(sessions[s])) / len(ids)  # type: ignore[operator]

    def signals(evs: list[Event]) -> list[CheckoutSignal]:
        return [e for e in evs if type(e) is CheckoutSignal]

    assert share("payment_failure", lambda evs: any(type(e) is PaymentFailed for e in evs)) > 0.8
    assert share("price_comparison", lambda evs: any(s.tab_aways for s in signals(evs))) > 0.6
    friction = share(
        "form_friction",
        lambda evs: (
            any(type(e).__name__ == "FormError" for e in evs)
            or any(s.dead_clicks or s.slow or (s.seconds_on_step or 0) > 240 for s in signals(evs))
        ),
    )
    assert 0.7 < friction < 1.0  # not every cause leaves a clean signal (an account wall leaves none)
    # Carts left for no cause mostly carry nothing, but some show a weak signal.
    weak = share("none", lambda evs: any(s.tab_aways or s.dead_clicks for s in signals(evs)))
    assert 0.03 < weak < 0.35


def test_buyers_declined_first_are_known_and_mostly_pay_within_minutes(
    shop: tuple[list[Event], dict[str, str]],
) -> None:
    events, truth = shop
    sessions = by_session(events)
    retried = [s for s, c in truth.items() if c == "payment_failure" and any(type(e) is Purchase for e in sessions[s])]
    assert retried
    delays = []
    for s in retried:
        failed = next(e.ts for e in sessions[s] if type(e) is PaymentFailed)
        bought = next(e.ts for e in sessions[s] if type(e) is Purchase)
        delays.append(bought - failed)  # type: ignore[operator]
    delays.sort()
    assert 0 < delays[len(delays) // 2] < 300  # the median retry pays within five minutes


def test_the_plain_funnel_is_unchanged_by_the_option() -> None:
    assert list(generate_events(200, seed=1)) == list(generate_events(200, seed=1, causes=False))


def test_causes_need_the_funnel_mix_and_truth_needs_causes() -> None:
    with pytest.raises(ValueError, match="mix='browse' with causes=True"):
        generate_events(10, causes=True, mix="browse")
    with pytest.raises(ValueError, match="truth given with causes=False"):
        generate_events(10, truth={})
