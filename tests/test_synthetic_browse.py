"""recoverkit.synthetic's "browse" mix and write_events: a shop's traffic for throughput benchmarks, of any size."""

from __future__ import annotations

import gzip
import itertools
import tracemalloc
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from recoverkit.events import Event, PageView, Purchase, decode_event
from recoverkit.synthetic import generate_events, generate_jsonl, write_events

SESSIONS = 5000


@pytest.fixture(scope="module")
def browse() -> list[Event]:
    # Whole sessions (no cut at a count), return visits included: the shares below are of complete carts.
    return list(generate_events(SESSIONS, seed=3, mix="browse"))


def kind_share(events: list[Event], kind: type) -> float:
    return sum(type(e) is kind for e in events) / len(events)


def test_most_browse_events_are_page_views(browse: list[Event]) -> None:
    assert 0.55 <= kind_share(browse, PageView) <= 0.72
    kinds = Counter(type(e).__name__ for e in browse)
    assert [kind for kind, _ in kinds.most_common(2)] == ["PageView", "ViewItem"]


def test_a_few_percent_of_browse_sessions_buy(browse: list[Event]) -> None:
    sessions = {e.session_id for e in browse}
    assert len(sessions) == SESSIONS
    bought = {e.session_id for e in browse if type(e) is Purchase}
    assert 0.015 <= len(bought) / len(sessions) <= 0.05
    assert kind_share(browse, Purchase) < 0.01


def test_most_browse_carts_are_abandoned(browse: list[Event]) -> None:
    kinds_by_cart: dict[str, set[str]] = defaultdict(set)
    for e in browse:
        if e.cart_id is not None:
            kinds_by_cart[e.cart_id].add(type(e).__name__)
    carts = len(kinds_by_cart)
    assert 0.08 <= carts / SESSIONS <= 0.16
    abandoned = sum("Purchase" not in kinds for kinds in kinds_by_cart.values())
    assert 0.6 <= abandoned / carts <= 0.9


def test_browse_is_deterministic_for_a_seed_and_differs_from_the_funnel() -> None:
    first = list(generate_jsonl(300, seed=5, mix="browse"))
    assert first == list(generate_jsonl(300, seed=5, mix="browse"))
    assert first != list(generate_jsonl(300, seed=6, mix="browse"))
    assert first != list(generate_jsonl(300, seed=5))
    # The default is the funnel, named or not: its bytes are pinned by test_synthetic and the doctests.
    assert list(generate_jsonl(300, seed=5)) == list(generate_jsonl(300, seed=5, mix="funnel"))


def test_browse_events_are_in_time_order_and_decode_to_themselves() -> None:
    events = list(generate_events(500, seed=2, mix="browse"))
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(events))  # type: ignore[operator]
    assert [decode_event(line) for line in generate_jsonl(500, seed=2, mix="browse")] == events


def test_an_unknown_mix_is_refused_naming_the_mixes() -> None:
    with pytest.raises(ValueError, match="mix='shop'; expected one of 'funnel', 'browse'"):
        generate_events(10, mix="shop")  # type: ignore[arg-type]


def test_write_events_writes_exactly_count_lines_the_same_each_time(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    assert write_events(a, 2_345, seed=4) == 2_345
    write_events(b, 2_345, seed=4)
    assert a.read_bytes() == b.read_bytes()
    lines = gzip.decompress(a.read_bytes()).splitlines()
    assert len(lines) == 2_345
    # The first events of the browse stream, cut at the count.
    assert lines == list(itertools.islice(generate_jsonl(2_345, seed=4, mix="browse"), 2_345))
    assert write_events(tmp_path / "none.jsonl", 0) == 0
    assert (tmp_path / "none.jsonl").read_bytes() == b""
    with pytest.raises(ValueError, match="count=-1"):
        write_events(tmp_path / "bad.jsonl", -1)


def test_write_events_streams_without_holding_the_events(tmp_path: Path) -> None:
    # 50,000 events are ~9 MB of JSON lines and several times that as Event objects; the writer holds neither.
    tracemalloc.start()
    try:
        write_events(tmp_path / "big.jsonl", 50_000, seed=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (tmp_path / "big.jsonl").stat().st_size > 8_000_000
    assert peak < 6_000_000, f"writing 50,000 events peaked at {peak:,} traced bytes"
