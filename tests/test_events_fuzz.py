"""Fuzzing decode_event where tests/test_events.py does not reach: sizes, nesting, encodings, top-level types, keys.

``test_events.py`` already feeds random bytes, random text and random event-shaped dicts, and checks that only
:class:`~recoverkit.errors.InvalidEvent` escapes. Random bytes almost never form JSON that is well nested,
huge, or valid apart from its encoding, so these properties build such payloads on purpose. The example tests
after them pin the faults this fuzzing found (now fixed), each with a minimal example.
"""

from __future__ import annotations

import json
from datetime import UTC
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recoverkit import Config, FakeClock
from recoverkit.errors import InvalidEvent
from recoverkit.events import EVENT_KINDS, MAX_EVENT_BYTES, Event, Item, PageView, decode_event
from recoverkit.journal import Journal
from recoverkit.store import MemoryStore

_REASONS = {"malformed_json", "unknown_event", "wrong_type", "missing_field", "too_large", "bad_value"}
_KINDS: tuple[type, ...] = (*Event.__args__, Item)  # type: ignore[attr-defined]
_EVENT_FIELDS = frozenset({name for kind in _KINDS for name in kind.__struct_fields__} | {"event"})
PAGE_VIEW = b'{"event":"page_view","session_id":"s1"}'


def refused(data: Any) -> InvalidEvent | None:
    """``None`` if ``data`` decodes, else the InvalidEvent; any other exception fails the test."""
    try:
        decode_event(data)
    except InvalidEvent as exc:
        assert exc.reason in _REASONS
        assert "\n" not in str(exc)
        return exc
    return None


# -- size ---------------------------------------------------------------------------------------------------

_FORMS = {
    "bytes": lambda b: b,
    "bytearray": bytearray,
    "memoryview": memoryview,
    "str": lambda b: b.decode("ascii"),
}


@settings(max_examples=100, deadline=None)
@given(st.integers(MAX_EVENT_BYTES - 64, MAX_EVENT_BYTES + 64), st.sampled_from(sorted(_FORMS)))
def test_an_event_is_parsed_up_to_the_size_limit_and_refused_as_too_large_beyond(size: int, form: str) -> None:
    head = b'{"event":"page_view","session_id":"s1","padding":"'
    data = head + b"x" * (size - len(head) - 2) + b'"}'
    assert len(data) == size
    exc = refused(_FORMS[form](data))
    if size > MAX_EVENT_BYTES:
        assert exc is not None and exc.reason == "too_large" and exc.field is None
    else:
        assert exc is None


@pytest.mark.parametrize("size", [MAX_EVENT_BYTES + 1, 1 << 20, 16 << 20])
@pytest.mark.parametrize("filler", [b"[", b" ", b"\xff"], ids=["nesting", "blank", "not-utf8"])
def test_a_huge_payload_is_refused_as_too_large_with_a_short_message(size: int, filler: bytes) -> None:
    exc = refused(filler * size)
    assert exc is not None and exc.reason == "too_large"
    assert str(size) in str(exc) and len(str(exc)) < 120


@pytest.mark.parametrize("form", ["str", "memoryview-of-uint32"])
def test_the_size_limit_counts_bytes_whatever_the_form(form: str) -> None:
    if form == "str":
        data: Any = '{"event":"page_view","session_id":"s1","x":"' + "€" * 60_000 + '"}'
        assert len(data.encode()) > MAX_EVENT_BYTES >= len(data)
    else:
        raw = b'{"event":"page_view","session_id":"s1","x":"'
        raw += b" " * (-(len(raw) + 2) % 4 + 4 * 20_000) + b'"}'
        data = memoryview(raw).cast("I")
        assert data.nbytes > MAX_EVENT_BYTES >= len(data)
    exc = refused(data)
    assert exc is not None and exc.reason == "too_large"


# -- nesting --------------------------------------------------------------------------------------------------


def _nest(depth: int, kind: str) -> str:
    opening, closing = ("[", "]") if kind == "array" else ('{"a":', "}")
    return opening * depth + "true" + closing * depth


# Depths stay within what the interpreter's recursion limit allows on pytest's stack, where an unknown field
# still decodes; deeper nesting is refused, see the example tests below.
_depths = st.integers(0, 300)
_kinds = st.sampled_from(["array", "object"])
_KNOWN_PLACES = ["event", "session_id", "ts", "value", "currency", "items", "items[0]", "items[0].price"]


def _event_with(place: str, value: str) -> str:
    if place.startswith("items[0]"):
        inner = value if place == "items[0]" else '{"item_id":"A","price":' + value + "}"
        return '{"event":"add_to_cart","session_id":"s1","items":[' + inner + "]}"
    fields = {"event": '"page_view"', "session_id": '"s1"', place: value}
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"


@settings(max_examples=150, deadline=None)
@given(_depths, _kinds, st.sampled_from(["bytes", "str"]))
def test_nesting_under_an_unknown_field_is_ignored(depth: int, kind: str, form: str) -> None:
    text = _event_with("extra", _nest(depth, kind))
    assert refused(text.encode() if form == "bytes" else text) is None


@settings(max_examples=150, deadline=None)
@given(_depths, _kinds, st.sampled_from([*_KNOWN_PLACES, "top"]), st.sampled_from(["bytes", "dict"]))
def test_nesting_in_place_of_a_known_field_or_the_event_is_refused(
    depth: int, kind: str, place: str, form: str
) -> None:
    text = _nest(depth, kind) if place == "top" else _event_with(place, _nest(depth, kind))
    data = json.loads(text) if form == "dict" else text.encode()
    exc = refused(data)
    assert exc is not None
    if place == "top" and (kind == "array" or depth == 0):
        assert exc.reason == "wrong_type"


def _nested_list(depth: int) -> Any:
    value: Any = True
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [1000, 10_000])
@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize("form", ["bytes", "str"])
def test_deep_nesting_under_an_unknown_field_raises_nothing_but_invalid_event(depth: int, kind: str, form: str) -> None:
    text = _event_with("extra", _nest(depth, kind))  # 1,000 arrays is a 2 KB event
    refused(text.encode() if form == "bytes" else text)


@pytest.mark.parametrize("place", ["event", "session_id", "items", "extra"])
def test_a_deeply_nested_value_in_a_dict_raises_nothing_but_invalid_event(place: str) -> None:
    # Built in Python: json.loads itself cannot go this deep. The message must not repr() it whole either.
    refused({"event": "page_view", "session_id": "s1", place: _nested_list(2000)})


# -- encodings ------------------------------------------------------------------------------------------------


def _string_spans(data: bytes) -> list[range]:
    """Byte ranges of the JSON strings in ``data`` (no escapes in the documents used here), quotes included."""
    quotes = [i for i, byte in enumerate(data) if byte == ord('"')]
    return [range(a, b + 1) for a, b in zip(quotes[::2], quotes[1::2], strict=True)]


_not_utf8 = st.sampled_from([b"\x80", b"\xe9", b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xfe\xff"])


@settings(max_examples=200, deadline=None)
@given(st.data(), _not_utf8)
def test_bytes_that_are_not_utf8_outside_strings_are_malformed_json(data: st.DataObject, bad: bytes) -> None:
    document = b'{"event":"add_to_cart","session_id":"s1","items":[{"item_id":"A","quantity":2}],"ts":1767225600}'
    inside = {i for span in _string_spans(document) for i in span if i != span.start}
    at = data.draw(st.sampled_from([i for i in range(len(document) + 1) if i not in inside]))
    exc = refused(document[:at] + bad + document[at:])
    assert exc is not None and exc.reason == "malformed_json"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32", "utf-8-sig", "cp500"])
def test_an_event_in_another_encoding_is_malformed_json(encoding: str) -> None:
    exc = refused(PAGE_VIEW.decode().encode(encoding))
    assert exc is not None and exc.reason == "malformed_json"


@pytest.mark.parametrize(
    "document",
    [
        b'{"event":"page_view","session_id":"caf\xe9"}',
        b'{"event":"page_vi\xe9w","session_id":"s1"}',
        b'{"event":"page_view","session_id":"s1","currency":"EU\xe9"}',
        b'{"event":"add_to_cart","session_id":"s1","items":[{"item_id":"\x80"}]}',
    ],
    ids=["session_id", "event", "currency", "item_id"],
)
def test_invalid_utf8_inside_a_string_field_is_malformed_json(document: bytes) -> None:
    exc = refused(document)
    assert exc is not None and exc.reason == "malformed_json"


# -- the top level ---------------------------------------------------------------------------------------------

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=15,
)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.one_of(_json_scalars, st.lists(_json_values, max_size=4)))
def test_json_that_is_not_an_object_is_refused_as_wrong_type(value: Any) -> None:
    exc = refused(json.dumps(value).encode())
    assert exc is not None and exc.reason == "wrong_type" and exc.field is None


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(
        st.lists(_json_values, max_size=3),
        st.tuples(_json_scalars),
        st.integers(),
        st.floats(),
        st.none(),
        st.frozensets(st.integers(), max_size=3),
        st.decimals(allow_nan=True),
        st.datetimes(),
    )
)
def test_a_python_value_that_is_not_a_mapping_is_refused_as_wrong_type(value: Any) -> None:
    exc = refused(value)
    assert exc is not None and exc.reason == "wrong_type" and exc.field is None


# -- random keys and values ---------------------------------------------------------------------------------------

_python_extras = (
    st.binary(max_size=8)
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.datetimes()
    | st.tuples(_json_scalars, _json_scalars)
    | st.frozensets(st.integers(), max_size=3)
)
_values = _json_values | _python_extras | st.sampled_from([*EVENT_KINDS, "EUR", "35.79", "2026-11-23T09:14:03Z"])
_keys = st.text(max_size=12) | st.sampled_from(sorted(_EVENT_FIELDS))


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=8))
def test_a_dict_of_random_keys_and_values_raises_nothing_but_invalid_event(data: dict[str, Any]) -> None:
    refused(data)
    try:
        raw = json.dumps(data).encode()
    except (TypeError, ValueError):
        return
    refused(raw)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=12).filter(lambda k: k not in _EVENT_FIELDS), _values, max_size=6))
def test_unknown_keys_never_change_the_decoded_event(extra: dict[str, Any]) -> None:
    base = {"event": "add_to_cart", "session_id": "s1", "items": [{"item_id": "A", "price": "35.79"}]}
    expected = decode_event(base)
    assert decode_event({**extra, **base}) == expected
    try:
        raw = json.dumps({**extra, **base}).encode()
    except (TypeError, ValueError):
        return
    assert decode_event(raw) == decode_event(json.dumps(base).encode())


def test_the_fixtures_decode() -> None:
    assert isinstance(decode_event(PAGE_VIEW), PageView)
    assert _event_with("items[0].price", '"35.79"').startswith('{"event":"add_to_cart"')
    assert decode_event(json.loads(_event_with("items[0].price", '"35.79"'))).items[0].price == Decimal("35.79")


# -- decode_event agrees with the engine ---------------------------------------------------------------------

_timestamps = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(10**15), max_value=10**15)
    | st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())
    | st.sampled_from([946_684_800, 946_684_799.9, 4_102_444_800, 4_102_444_800.1, 1_795_425_243_000])
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(_timestamps, st.sampled_from(["bytes", "dict"]))
def test_decode_event_accepts_a_timestamp_exactly_when_the_engine_does(ts: Any, form: str) -> None:
    # What a shop checks with decode_event must be what track() will keep: one rule, not two.
    document = {"event": "page_view", "session_id": "s1", "ts": ts}
    data: Any = json.dumps(document).encode() if form == "bytes" else document
    journal = Journal(Config(), FakeClock(1_767_225_600.0), MemoryStore())
    accepted, _ = journal.accept([data])
    assert (refused(data) is None) == bool(accepted), (ts, dict(journal.invalid))
