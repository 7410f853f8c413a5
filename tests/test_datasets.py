"""recoverkit.datasets: public datasets converted to events, JSON lines files and the bundled demo stream."""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from decimal import Decimal
from importlib.resources import files
from pathlib import Path

import pytest

from recoverkit.datasets import (
    ConversionStats,
    DatasetError,
    demo_events,
    demo_events_path,
    read_jsonl,
    rees46_events,
    retailrocket_events,
    write_jsonl,
)
from recoverkit.events import (
    AddToCart,
    Consent,
    Event,
    Identify,
    Purchase,
    ViewItem,
    decode_event,
    encode_event,
)
from shared_data import require_shared

REES46 = "rees46-multicategory-2019oct-prefix/2019-Oct.csv"
RETAILROCKET = "retailrocket-events-sample-1500-visitors/events.csv"
REES46_HEADER = (
    "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"
)
RR_HEADER = "timestamp,visitorid,event,itemid,transactionid\n"


def kinds(events: list[Event]) -> Counter[str]:
    return Counter(type(e).__name__ for e in events)


def assert_sorted_and_round_trips(events: list[Event]) -> None:
    times = [e.ts for e in events]
    assert all(isinstance(t, float) for t in times) and times == sorted(times)  # type: ignore[type-var]
    for event in events:
        assert decode_event(encode_event(event)) == event


@pytest.fixture(scope="module")
def rees46_csv() -> Path:
    return require_shared(REES46)


@pytest.fixture(scope="module")
def rees46_rows(rees46_csv: Path) -> list[dict[str, str]]:
    with open(rees46_csv, newline="", encoding="utf-8") as f:
        return [row for row in csv.DictReader(f) if row.get("user_session")]


@pytest.fixture(scope="module")
def rees46(rees46_csv: Path) -> tuple[list[Event], ConversionStats]:
    stats = ConversionStats()
    return list(rees46_events(rees46_csv, stats=stats)), stats


@pytest.fixture(scope="module")
def retailrocket_csv() -> Path:
    return require_shared(RETAILROCKET)


@pytest.fixture(scope="module")
def retailrocket(retailrocket_csv: Path) -> tuple[list[Event], ConversionStats]:
    stats = ConversionStats()
    return list(retailrocket_events(retailrocket_csv, stats=stats)), stats


# ----------------------------------------------------------------------------------------------- REES46


def test_rees46_has_one_event_per_complete_row(
    rees46: tuple[list[Event], ConversionStats], rees46_rows: list[dict[str, str]]
) -> None:
    events, _ = rees46
    csv_kinds = Counter(row["event_type"] for row in rees46_rows)
    assert csv_kinds == {"view": 17055, "cart": 165, "purchase": 214}
    counted = kinds(events)
    assert counted["ViewItem"] == csv_kinds["view"]
    assert counted["AddToCart"] == csv_kinds["cart"]
    assert counted["Purchase"] == csv_kinds["purchase"]


def test_rees46_drops_the_truncated_last_row_as_incomplete(
    rees46: tuple[list[Event], ConversionStats],
) -> None:
    _, stats = rees46
    assert (stats.rows, stats.incomplete, stats.skipped) == (17_435, 1, 0)


def test_rees46_synthesizes_one_identify_and_consent_per_user(
    rees46: tuple[list[Event], ConversionStats], rees46_rows: list[dict[str, str]]
) -> None:
    events, stats = rees46
    users = {row["user_id"] for row in rees46_rows}
    identifies = [e for e in events if isinstance(e, Identify)]
    consents = [e for e in events if isinstance(e, Consent)]
    assert len(identifies) == len(consents) == len(users) == 4504
    assert {e.customer_id for e in identifies} == users
    assert all(e.email == f"user-{e.customer_id}@example.invalid" and e.phone is None for e in identifies)
    assert all(e.granted == ("email",) and e.withdrawn == () for e in consents)
    assert stats.events == len(events) == 17_434 + 2 * 4504


def test_rees46_contacts_come_just_before_each_users_first_event(
    rees46: tuple[list[Event], ConversionStats],
) -> None:
    events, _ = rees46
    seen: set[str | None] = set()
    for i, event in enumerate(events):
        if event.customer_id in seen:
            continue
        seen.add(event.customer_id)
        identify, consent, first = events[i : i + 3]
        assert isinstance(identify, Identify) and isinstance(consent, Consent)
        assert not isinstance(first, (Identify, Consent))
        assert identify.ts == consent.ts == first.ts
        assert identify.session_id == consent.session_id == first.session_id


def test_rees46_without_synthetic_contacts_has_only_behaviour(rees46_csv: Path) -> None:
    events = list(rees46_events(rees46_csv, synthesize_contacts=False))
    assert len(events) == 17_434
    assert set(kinds(events)) == {"ViewItem", "AddToCart", "Purchase"}


def test_rees46_maps_ids_sessions_and_prices_exactly(
    rees46: tuple[list[Event], ConversionStats], rees46_rows: list[dict[str, str]]
) -> None:
    events, _ = rees46
    behaviour = [e for e in events if not isinstance(e, (Identify, Consent))]
    assert {e.session_id for e in behaviour} == {row["user_session"] for row in rees46_rows}
    assert len({e.session_id for e in behaviour}) == 5066
    first = behaviour[0]
    assert isinstance(first, ViewItem)
    assert (first.session_id, first.customer_id, first.ts) == (
        "72d76fde-8bb3-4e00-8c23-a032dfed738c",
        "541312140",
        1_569_888_000.0,
    )
    assert first.currency == "USD" and first.value == Decimal("35.79")
    item = first.items[0]
    assert (item.item_id, item.price, item.quantity, item.name, item.category) == (
        "44600062",
        Decimal("35.79"),
        1,
        "shiseido",
        None,
    )
    # Prices keep the CSV's digits: no float ever came near them.
    prices = Counter(row["price"] for row in rees46_rows)
    assert Counter(str(e.items[0].price) for e in behaviour) == prices


def test_rees46_names_items_from_brand_and_category(rees46: tuple[list[Event], ConversionStats]) -> None:
    events, _ = rees46
    phone = next(e for e in events if e.items and e.items[0].category == "electronics.smartphone")
    assert phone.items[0].name is not None and phone.items[0].name.endswith(" smartphone")


def test_rees46_purchases_get_deterministic_unique_transaction_ids(
    rees46: tuple[list[Event], ConversionStats], rees46_csv: Path
) -> None:
    events, _ = rees46
    ids = [e.transaction_id for e in events if isinstance(e, Purchase)]
    assert len(set(ids)) == len(ids) == 214
    assert all(tid is not None and tid.rsplit("-", 1)[1].isdigit() for tid in ids)
    again = [e.transaction_id for e in rees46_events(rees46_csv) if isinstance(e, Purchase)]
    assert again == ids


def test_rees46_events_are_sorted_and_round_trip(rees46: tuple[list[Event], ConversionStats]) -> None:
    assert_sorted_and_round_trips(rees46[0])


def test_rees46_sorts_rows_that_are_out_of_order(tmp_path: Path) -> None:
    path = tmp_path / "unsorted.csv"
    path.write_text(
        REES46_HEADER
        + "2019-10-01 00:00:09 UTC,cart,2,20,,acme,5.00,7,s-b\n"
        + "2019-10-01 00:00:01 UTC,view,1,10,,acme,3.50,7,s-a\n"
    )
    events = list(rees46_events(path))
    assert [type(e) for e in events] == [Identify, Consent, ViewItem, AddToCart]
    assert events[0].session_id == "s-a"


def test_rees46_malformed_row_raises_naming_file_line_column_and_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        REES46_HEADER
        + "2019-10-01 00:00:00 UTC,view,1,10,,acme,3.50,7,s-a\n"
        + "2019-10-01 00:00:01 UTC,view,1,10,,acme,12,34,7,s-a\n"  # an unquoted comma in the price
        + "2019-10-01 00:00:02 UTC,view,1,10,,acme,abc,7,s-a\n"
    )
    with pytest.raises(DatasetError) as raised:
        list(rees46_events(path))
    assert raised.value.line == 3 and str(path) in str(raised.value) and "line 3" in str(raised.value)

    path.write_text(REES46_HEADER + "2019-10-01 00:00:02 UTC,view,1,10,,acme,abc,7,s-a\n")
    with pytest.raises(
        DatasetError, match=r"line 2, column `price`: got 'abc'; expected a decimal price"
    ) as e:
        list(rees46_events(path))
    assert (e.value.column, e.value.value) == ("price", "abc")


@pytest.mark.parametrize(
    ("row", "column"),
    [
        ("yesterday,view,1,10,,acme,3.50,7,s-a", "event_time"),
        ("2019-10-01 00:00:00 UTC,wishlist,1,10,,acme,3.50,7,s-a", "event_type"),
        ("2019-10-01 00:00:00 UTC,view,1,10,,acme,-1,7,s-a", "price"),
        ("2019-10-01 00:00:00 UTC,view,1,10,,acme,NaN,7,s-a", "price"),
        ("2019-10-01 00:00:00 UTC,view,1,10,,acme,3.50,seven,s-a", "user_id"),
        ("2019-10-01 00:00:00 UTC,view,,10,,acme,3.50,7,s-a", "product_id"),
    ],
)
def test_rees46_skip_mode_counts_malformed_rows(tmp_path: Path, row: str, column: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(REES46_HEADER + row + "\n" + "2019-10-01 00:00:05 UTC,view,1,10,,acme,3.50,8,s-b\n")
    stats = ConversionStats()
    events = list(rees46_events(path, on_error="skip", stats=stats))
    assert [type(e) for e in events] == [Identify, Consent, ViewItem]
    assert stats.skipped == 1 and f"column `{column}`" in stats.problems[0]
    with pytest.raises(DatasetError, match=f"line 2, column `{column}`"):
        list(rees46_events(path))


def test_wrong_header_is_rejected_before_any_row(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DatasetError, match=r"line 1 .* expected the header 'event_time,event_type"):
        list(rees46_events(path))
    with pytest.raises(DatasetError, match="expected the header 'timestamp,visitorid"):
        list(retailrocket_events(path))


def test_on_error_must_be_raise_or_skip(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(REES46_HEADER)
    with pytest.raises(ValueError, match="on_error='ignore'; expected 'raise' or 'skip'"):
        rees46_events(path, on_error="ignore")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- Retailrocket


def independent_sessions(path: Path, gap_seconds: float = 1800.0) -> dict[tuple[str, int], str]:
    """Session of every (visitor, timestamp ms), computed the plain way, for comparison."""
    by_visitor: dict[str, list[int]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            by_visitor.setdefault(row["visitorid"], []).append(int(row["timestamp"]))
    sessions = {}
    for visitor, times in by_visitor.items():
        k, last = 0, None
        for ms in sorted(times):
            if last is None or (ms - last) / 1000 > gap_seconds:
                k += 1
            last = ms
            sessions[(visitor, ms)] = f"rr-{visitor}-{k}"
    return sessions


def test_retailrocket_converts_every_row(
    retailrocket: tuple[list[Event], ConversionStats], retailrocket_csv: Path
) -> None:
    events, stats = retailrocket
    with open(retailrocket_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == stats.rows == 2771 and stats.skipped == stats.incomplete == 0
    csv_kinds = Counter(row["event"] for row in rows)
    counted = kinds(events)
    assert counted["ViewItem"] == csv_kinds["view"]
    assert counted["AddToCart"] == csv_kinds["addtocart"]
    # One purchase per order: rows sharing a transaction id are one order with several items.
    orders = {(row["visitorid"], row["transactionid"]) for row in rows if row["event"] == "transaction"}
    purchases = [e for e in events if isinstance(e, Purchase)]
    assert len(purchases) == len(orders) == 12
    assert sum(len(p.items) for p in purchases) == csv_kinds["transaction"] == 14
    assert {p.transaction_id for p in purchases} == {str(int(float(tid))) for _, tid in orders}


def test_retailrocket_sessions_match_a_plain_30_minute_gap_split(
    retailrocket: tuple[list[Event], ConversionStats], retailrocket_csv: Path
) -> None:
    events, _ = retailrocket
    expected = independent_sessions(retailrocket_csv)
    assert len({e.session_id for e in events}) == len(set(expected.values())) == 1911
    for event in events:
        assert event.session_id == expected[(str(event.customer_id), round(event.ts * 1000))]  # type: ignore[operator]
    carts = {e.session_id for e in events if isinstance(e, AddToCart)}
    bought = {e.session_id for e in events if isinstance(e, Purchase)}
    assert (len(carts), len(carts - bought)) == (43, 34)  # the figures in ../shared/data/README.md


def test_retailrocket_events_are_sorted_and_round_trip(
    retailrocket: tuple[list[Event], ConversionStats],
) -> None:
    events, _ = retailrocket
    assert_sorted_and_round_trips(events)
    assert all(item.price == 0 for e in events for item in e.items)  # the dataset has no prices
    assert all(e.currency is None and e.value is None for e in events)


def test_retailrocket_does_not_rely_on_file_order(retailrocket_csv: Path, tmp_path: Path) -> None:
    lines = retailrocket_csv.read_text().splitlines(keepends=True)
    shuffled = tmp_path / "events.csv"
    shuffled.write_text(lines[0] + "".join(reversed(lines[1:])))
    original = list(retailrocket_events(retailrocket_csv))
    assert sorted(map(encode_event, retailrocket_events(shuffled))) == sorted(map(encode_event, original))


def test_retailrocket_session_gap_is_configurable(retailrocket_csv: Path) -> None:
    events = list(retailrocket_events(retailrocket_csv, session_gap=600.0))
    assert len({e.session_id for e in events}) == len(
        set(independent_sessions(retailrocket_csv, 600).values())
    )
    with pytest.raises(ValueError, match="session_gap=0"):
        retailrocket_events(retailrocket_csv, session_gap=0)


def test_retailrocket_malformed_rows(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        RR_HEADER
        + "1433221332117,257597,view,355908,\n"
        + "1433221332117,257597,transaction,355908,\n"  # a transaction without its id
        + "1433221332117,257597,addtocart,355908,\n"
    )
    with pytest.raises(DatasetError, match="line 3, column `transactionid`") as raised:
        list(retailrocket_events(path))
    assert raised.value.line == 3
    stats = ConversionStats()
    assert len(list(retailrocket_events(path, on_error="skip", stats=stats))) == 2
    assert stats.skipped == 1


# ------------------------------------------------------------------------------------------ JSON lines


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_write_jsonl_round_trips_and_is_reproducible(tmp_path: Path, name: str) -> None:
    from recoverkit.synthetic import generate_events

    events = list(generate_events(50, seed=3))
    path = tmp_path / name
    assert write_jsonl(events, path) == len(events)
    assert list(read_jsonl(path)) == events
    first = path.read_bytes()
    write_jsonl(events, path)
    assert path.read_bytes() == first
    raw = gzip.decompress(first) if name.endswith(".gz") else first
    assert raw.count(b"\n") == len(events) and raw.endswith(b"\n")


def test_read_jsonl_names_the_line_of_an_invalid_event(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        b'{"event": "view_item", "session_id": "s1"}\n\n{"event": "teleport", "session_id": "s1"}\n'
    )
    with pytest.raises(DatasetError, match=r"events.jsonl, line 3: unknown event kind"):
        list(read_jsonl(path))


def test_read_jsonl_of_a_truncated_gz_names_the_file_and_how_far_it_got(tmp_path: Path) -> None:
    packed = gzip.compress(b"".join(b'{"event": "view_item", "session_id": "s%d"}\n' % i for i in range(5000)))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])
    read = []
    with pytest.raises(DatasetError, match=r"cut.jsonl.gz: could not be read to the end: .*truncated") as info:
        read.extend(read_jsonl(path))
    assert 0 < len(read) == info.value.line < 5000
    assert f"read {len(read):,} line(s) whole" in str(info.value)


# ------------------------------------------------------------------------------------------- demo file

DEMO_COUNTS = {"view_item": 10_577, "identify": 2_585, "consent": 2_585, "purchase": 135, "add_to_cart": 99}


def test_demo_file_is_bundled_inside_the_package() -> None:
    path = demo_events_path()
    assert path.is_file() and path.name == "demo-events.jsonl.gz"
    assert path.parent == Path(str(files("recoverkit") / "data"))
    assert (path.parent / "ATTRIBUTION.md").is_file()


def test_demo_file_decodes_fully_with_the_documented_content() -> None:
    events = list(demo_events())
    assert events == list(read_jsonl(demo_events_path()))
    assert Counter(e.__struct_config__.tag for e in events) == DEMO_COUNTS
    assert len({e.session_id for e in events}) == 2860
    assert_sorted_and_round_trips(events)
    identify, consent, view = events[:3]
    assert isinstance(identify, Identify) and identify.email == "user-541312140@example.invalid"
    assert isinstance(consent, Consent) and consent.granted == ("email",)
    assert isinstance(view, ViewItem) and view.items[0].item_id == "44600062"
    assert events[0].ts == 1_569_888_000.0  # 2019-10-01 00:00:00 UTC
    assert all(
        e.email is not None and e.email.endswith("@example.invalid")
        for e in events
        if isinstance(e, Identify)
    )


def test_attribution_documents_source_terms_and_synthetic_content() -> None:
    text = (demo_events_path().parent / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for needle in ("REES46", "Open CDP", "kaggle.com", "attribution", "synthetic", "example.invalid", "USD"):
        assert needle in text
    total = sum(DEMO_COUNTS.values())
    assert f"{total:,} events" in text
    for count in DEMO_COUNTS.values():
        assert f"{count:,}" in text
    assert f"{demo_events_path().stat().st_size:,} bytes" in text


def test_demo_file_is_what_the_documented_recipe_builds(rees46_csv: Path, tmp_path: Path) -> None:
    from recoverkit.datasets import _write_demo_file

    rebuilt = tmp_path / "demo-events.jsonl.gz"
    _write_demo_file(rees46_csv, rebuilt)
    assert list(read_jsonl(rebuilt)) == list(demo_events())
