"""The event contract at the edge: what decode_event accepts, and what it says about what it refuses."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recoverkit.errors import InvalidEvent
from recoverkit.events import (
    EVENT_KINDS,
    MAX_EVENT_BYTES,
    AddToCart,
    ExitIntent,
    Identify,
    Item,
    PageView,
    decode_event,
    encode_event,
    normalize_timestamp,
)

ADD = {
    "event": "add_to_cart",
    "session_id": "s-81f2",
    "ts": "2026-11-23T09:14:03Z",
    "currency": "EUR",
    "items": [{"item_id": "SKU-1", "price": "35.79", "quantity": 1}],
}
EPOCH_2026_11_23_09_14_03 = 1_795_425_243.0


def add(**changes: Any) -> dict[str, Any]:
    event = json.loads(json.dumps(ADD))
    event.update(changes)
    return event


def item(**changes: Any) -> dict[str, Any]:
    return {"item_id": "SKU-1", "price": "35.79", "quantity": 1, **changes}


def refuse(data: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        decode_event(data)
    return info.value


def as_bytes(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


# -- what is accepted ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "form", [as_bytes, lambda e: json.dumps(e), lambda e: e], ids=["bytes", "str", "dict"]
)
def test_decode_event_reads_bytes_str_and_dict_alike(form: Any) -> None:
    event = decode_event(form(ADD))
    assert event == AddToCart(
        session_id="s-81f2",
        ts=datetime.fromisoformat("2026-11-23T09:14:03+00:00"),
        currency="EUR",
        items=(Item(item_id="SKU-1", price=Decimal("35.79"), quantity=1),),
    )


def test_decode_event_reads_bytearray_and_memoryview() -> None:
    raw = as_bytes(ADD)
    assert decode_event(bytearray(raw)) == decode_event(memoryview(raw)) == decode_event(raw)


def test_decode_event_returns_a_struct_unchanged() -> None:
    event = ExitIntent(session_id="s1", ts=1_767_225_600.0)
    assert decode_event(event) is event


def test_prices_are_exact_decimals_never_floats() -> None:
    event = decode_event(b'{"event":"add_to_cart","session_id":"s","items":[{"item_id":"a","price":35.79}]}')
    assert event.items[0].price == Decimal("35.79")


def test_rfc3339_timestamp_with_an_offset_is_accepted() -> None:
    event = decode_event(add(ts="2026-11-23T10:14:03+01:00"))
    assert isinstance(event.ts, datetime)
    assert event.ts.timestamp() == EPOCH_2026_11_23_09_14_03


def test_epoch_seconds_timestamp_is_accepted_as_a_float() -> None:
    event = decode_event(add(ts=1_795_425_243))
    assert event.ts == EPOCH_2026_11_23_09_14_03
    assert type(event.ts) is float


def test_unknown_extra_fields_are_ignored() -> None:
    event = decode_event(add(gclid="abc", page_location="https://shop.example/cart", nested={"x": [1]}))
    assert event == decode_event(ADD)


def test_every_event_kind_decodes_with_only_a_session_id() -> None:
    for kind in EVENT_KINDS:
        event = decode_event({"event": kind, "session_id": "s1"})
        assert msgspec.inspect.type_info(type(event)).tag == kind  # type: ignore[attr-defined]


def test_encode_event_round_trips_through_decode_event() -> None:
    event = decode_event(add(ts=1_795_425_243.5))
    assert decode_event(encode_event(event)) == event


# -- what is refused, and what the message says --------------------------------------------------------------


def test_malformed_json_is_refused_as_malformed_json() -> None:
    exc = refuse(b'{"event": "add_to_cart", "session_id": ')
    assert (exc.reason, exc.field) == ("malformed_json", None)
    assert "malformed JSON" in str(exc) and "expected one JSON object" in str(exc)


def test_a_json_value_that_is_not_an_object_is_refused_as_wrong_type() -> None:
    exc = refuse(b"[1, 2]")
    assert exc.reason == "wrong_type"
    assert "object" in str(exc)


def test_unknown_kind_is_refused_and_the_message_lists_the_kinds() -> None:
    exc = refuse(add(event="checkout_complete"))
    assert (exc.reason, exc.field) == ("unknown_event", "$.event")
    message = str(exc)
    assert "checkout_complete" in message
    assert all(kind in message for kind in EVENT_KINDS)


def test_missing_kind_is_refused_as_missing_field() -> None:
    event = add()
    del event["event"]
    exc = refuse(event)
    assert (exc.reason, exc.field) == ("missing_field", "$.event")


@pytest.mark.parametrize("form", [as_bytes, lambda e: e], ids=["bytes", "dict"])
def test_quantity_as_a_string_is_refused_as_wrong_type(form: Any) -> None:
    exc = refuse(form(add(items=[item(quantity="3")])))
    assert (exc.reason, exc.field) == ("wrong_type", "$.items[0].quantity")
    message = str(exc)
    assert "$.items[0].quantity" in message  # the place
    assert "'3'" in message  # the value
    assert "Expected `int`" in message  # what was expected


def test_missing_session_id_is_refused_naming_the_field() -> None:
    event = add()
    del event["session_id"]
    exc = refuse(as_bytes(event))
    assert (exc.reason, exc.field) == ("missing_field", "$.session_id")
    assert "$.session_id" in str(exc)


@pytest.mark.parametrize("form", [bytes, lambda b: b.decode()], ids=["bytes", "str"])
def test_an_event_over_max_event_bytes_is_refused_before_parsing(form: Any) -> None:
    raw = as_bytes(add(padding="x" * MAX_EVENT_BYTES))
    exc = refuse(form(raw))
    assert (exc.reason, exc.field) == ("too_large", None)
    assert str(len(raw)) in str(exc) and str(MAX_EVENT_BYTES) in str(exc)


def test_an_event_of_exactly_max_event_bytes_is_parsed() -> None:
    raw = as_bytes(add(padding=""))
    raw = as_bytes(add(padding="x" * (MAX_EVENT_BYTES - len(raw))))
    assert len(raw) == MAX_EVENT_BYTES
    assert decode_event(raw).session_id == "s-81f2"


@pytest.mark.parametrize(
    ("price", "shown"),
    [("-1", "-1"), ("NaN", "NaN"), ("Infinity", "Infinity"), ("1e15", "1E+15")],
    ids=["negative", "nan", "infinite", "huge"],
)
def test_a_price_outside_the_accepted_range_is_refused_at_its_path(price: str, shown: str) -> None:
    exc = refuse(as_bytes(add(items=[item(), item(price=price)])))
    assert (exc.reason, exc.field) == ("bad_value", "$.items[1].price")
    message = str(exc)
    assert "$.items[1].price" in message and shown in message
    assert "expected a finite amount between 0 and" in message


def test_a_negative_order_value_is_refused_at_its_path() -> None:
    exc = refuse(add(value=-5))
    assert (exc.reason, exc.field) == ("bad_value", "$.value")


@pytest.mark.parametrize("currency", ["eur", "EURO", "E1R", ""])
def test_a_currency_that_is_not_three_capitals_is_refused(currency: str) -> None:
    exc = refuse(as_bytes(add(currency=currency)))
    assert (exc.reason, exc.field) == ("bad_value", "$.currency")
    assert repr(currency) in str(exc) and "[A-Z]{3}" in str(exc)


def test_a_naive_datetime_is_refused_asking_for_a_time_zone() -> None:
    exc = refuse(as_bytes(add(ts="2026-11-23T09:14:03")))
    assert (exc.reason, exc.field) == ("bad_value", "$.ts")
    assert "timezone" in str(exc) and "2026-11-23T09:14:03" in str(exc)


@pytest.mark.parametrize("form", [as_bytes, lambda e: json.dumps(e), lambda e: e], ids=["bytes", "str", "dict"])
def test_a_timestamp_in_milliseconds_is_refused_with_a_hint(form: Any) -> None:
    # The engine refuses it at ingest; decode_event, which a shop uses to test its payloads, must refuse it too.
    exc = refuse(form(add(ts=1_795_425_243_000)))
    assert (exc.reason, exc.field) == ("bad_value", "$.ts")
    assert "milliseconds" in str(exc)


@pytest.mark.parametrize("ts", [12.0, "1999-12-31T23:59:59Z", "2100-01-01T00:00:01Z"])
def test_a_timestamp_outside_2000_to_2100_is_refused_by_decode_event(ts: Any) -> None:
    exc = refuse(as_bytes(add(ts=ts)))
    assert (exc.reason, exc.field) == ("bad_value", "$.ts")
    assert "between 2000 and 2100" in str(exc)


def test_a_struct_built_in_python_with_a_time_in_milliseconds_is_refused() -> None:
    exc = refuse(ExitIntent(session_id="s", ts=1_795_425_243_000.0))
    assert (exc.reason, exc.field) == ("bad_value", "$.ts")


def test_a_dict_over_max_event_bytes_is_refused_as_its_json_would_be() -> None:
    big = add(items=[item(item_id=f"SKU-{i}", name="n" * 200) for i in range(300)])
    assert len(as_bytes(big)) > MAX_EVENT_BYTES
    assert refuse(as_bytes(big)).reason == "too_large"
    exc = refuse(big)
    assert (exc.reason, exc.field) == ("too_large", None)
    assert str(MAX_EVENT_BYTES) in str(exc)


def test_a_dict_padded_by_an_unknown_key_counts_the_key_as_its_json_does() -> None:
    padded = add(padding="x" * MAX_EVENT_BYTES)
    assert refuse(as_bytes(padded)).reason == "too_large"
    assert refuse(padded).reason == "too_large"


@pytest.mark.parametrize("field", ["ts", "session_id", "currency", "unknown_key"])
def test_a_lone_surrogate_in_a_dict_is_refused_as_invalid_event_naming_the_field(field: str) -> None:
    exc = refuse(add(**{field: "\ud800"}))
    assert exc.reason == "bad_value"
    assert exc.field == f"$.{field}"
    assert "Unicode" in str(exc)


@pytest.mark.parametrize(
    ("first", "second"), [("add_to_cart", "identify"), ("bogus", "exit_intent"), ("exit_intent", "bogus")]
)
def test_an_event_key_given_twice_is_refused_naming_both_values(first: str, second: str) -> None:
    text = f'{{"event": "{first}", "event": "{second}", "session_id": "s"}}'
    exc = refuse(text.encode())
    assert (exc.reason, exc.field) == ("bad_value", "$.event")
    message = str(exc)
    assert "2 times" in message and repr(first) in message and repr(second) in message
    assert "unknown event kind" not in message


def test_a_timestamp_before_2000_is_refused_without_the_milliseconds_hint() -> None:
    with pytest.raises(InvalidEvent) as info:
        normalize_timestamp(12.0, now=0.0)
    assert "milliseconds" not in str(info.value)
    assert "between 2000 and 2100" in str(info.value)


def test_normalize_timestamp_stamps_a_missing_time_with_now() -> None:
    assert normalize_timestamp(None, now=1_767_225_600.0) == 1_767_225_600.0


def test_normalize_timestamp_turns_an_aware_datetime_into_epoch_seconds() -> None:
    when = datetime.fromisoformat("2026-11-23T09:14:03+00:00")
    assert normalize_timestamp(when, now=0.0) == EPOCH_2026_11_23_09_14_03


@pytest.mark.parametrize(
    ("changes", "field", "secret"),
    [
        ({"event": "identify", "email": "jane.doe@" + "x" * 320 + ".com"}, "$.email", "jane.doe"),
        ({"event": "identify", "phone": "+49 170 1234567 ext 1234567890123"}, "$.phone", "170 1234567"),
        ({"customer_id": 8812}, "$.customer_id", "8812"),
        ({"session_id": "s" * 300}, "$.session_id", "sss"),
        ({"transaction_id": ""}, "$.transaction_id", "''"),
        ({"cart_id": 99887766}, "$.cart_id", "99887766"),
    ],
    ids=["email", "phone", "customer_id", "session_id", "transaction_id", "cart_id"],
)
def test_personal_values_are_redacted_from_the_message(
    changes: dict[str, Any], field: str, secret: str
) -> None:
    exc = refuse(as_bytes(add(**changes)))
    assert exc.field == field
    message = str(exc)
    assert field in message and "redacted" in message
    assert secret not in message


def test_the_message_never_quotes_a_long_value_in_full() -> None:
    exc = refuse(add(device=["x" * 1000]))
    assert exc.field == "$.device"
    assert len(str(exc)) < 200


@pytest.mark.parametrize("data", [None, 42, 4.2, object(), ["add_to_cart"], ("a",)])
def test_other_python_objects_are_refused_as_wrong_type(data: Any) -> None:
    exc = refuse(data)
    assert exc.reason == "wrong_type"
    assert type(data).__name__ in str(exc)


def test_a_str_that_is_not_valid_unicode_is_refused_as_malformed_json() -> None:
    exc = refuse('{"event": "exit_intent", "session_id": "\ud800"}')
    assert exc.reason == "malformed_json"


def test_identify_keeps_contact_details_for_addressing() -> None:
    event = decode_event(
        {"event": "identify", "session_id": "s", "email": "jane@example.com", "locale": "de-DE"}
    )
    assert isinstance(event, Identify)
    assert (event.email, event.locale) == ("jane@example.com", "de-DE")


def test_page_view_keeps_its_page_type() -> None:
    event = decode_event({"event": "page_view", "session_id": "s", "page_type": "checkout"})
    assert event == PageView(session_id="s", page_type="checkout")


# -- fuzzing: nothing but InvalidEvent ever escapes ----------------------------------------------------------

_FIELDS = [
    "event", "session_id", "customer_id", "ts", "currency", "value", "items", "shipping", "transaction_id",
    "cart_id", "item_id", "price", "quantity", "name", "email", "phone", "granted", "withdrawn", "page_type",
]  # fmt: skip
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(
        [*EVENT_KINDS, "EUR", "2026-11-23T09:14:03Z", "2026-11-23T09:14:03", "35.79", "NaN", ""]
    )
    | st.text(max_size=20)
)
_json_ish = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=20,
)
_events = st.fixed_dictionaries(
    {"event": st.sampled_from(EVENT_KINDS) | _scalars},
    optional={name: _json_ish for name in _FIELDS[1:]},
)


def _only_invalid_event(data: Any) -> None:
    try:
        decode_event(data)
    except InvalidEvent as exc:
        assert exc.reason in {
            "malformed_json",
            "unknown_event",
            "wrong_type",
            "missing_field",
            "too_large",
            "bad_value",
        }
        assert "\n" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_nothing_but_invalid_event(data: bytes) -> None:
    _only_invalid_event(data)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec=None), max_size=100))
def test_arbitrary_text_raises_nothing_but_invalid_event(data: str) -> None:
    _only_invalid_event(data)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(_events)
def test_arbitrary_json_ish_dicts_raise_nothing_but_invalid_event(data: dict[str, Any]) -> None:
    _only_invalid_event(data)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(_events)
def test_arbitrary_json_ish_documents_raise_nothing_but_invalid_event(data: dict[str, Any]) -> None:
    try:
        raw = json.dumps(data, allow_nan=True).encode()
    except (ValueError, OverflowError):
        return
    _only_invalid_event(raw)
