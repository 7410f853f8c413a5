"""The shop-facing event contract: what a shop sends, decoded once at the edge into typed Structs.

An event is a JSON object with ``event`` naming its kind (GA4 e-commerce names where GA4 has one)::

    {"event": "add_to_cart", "session_id": "s-81f2", "ts": "2026-11-23T09:14:03Z",
     "currency": "EUR", "items": [{"item_id": "SKU-1", "price": "35.79", "quantity": 1}]}

Every kind shares the common fields of :class:`BaseEvent`; a few kinds add their own (``identify`` carries
contact details, ``consent`` the channels granted or withdrawn). Unknown fields are ignored, never an error, so
a shop can forward its analytics payloads unchanged. Amounts are decoded as :class:`~decimal.Decimal` straight
from the JSON text and turned into integer minor units by the sessionizer; they are never floats.

:func:`decode_event` turns bytes, ``str``, ``dict`` or an already-built Struct into an :data:`Event` or raises
:class:`~recoverkit.errors.InvalidEvent` naming the field, the value and what was expected. See
``docs/events.md`` for the full reference.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar, Final, Literal, Union, cast, get_args

import msgspec

from ._validation import describe_value, split_error
from .errors import InvalidEvent

__all__ = [
    "CUSTOMER_WIDE",
    "EVENT_KINDS",
    "MAX_AMOUNT",
    "MAX_EVENT_BYTES",
    "RESTORE_PAGE",
    "AddPaymentInfo",
    "AddShippingInfo",
    "AddToCart",
    "BaseEvent",
    "BeginCheckout",
    "CheckoutSignal",
    "CheckoutStep",
    "Consent",
    "Event",
    "ExitIntent",
    "FormError",
    "Identify",
    "Item",
    "PageView",
    "PaymentFailed",
    "Purchase",
    "RemoveFromCart",
    "ViewCart",
    "ViewItem",
    "contact_key",
    "decode_event",
    "encode_event",
]

#: The ``page_type`` of the ``page_view`` a shop's cart-restore view records: a recovery link was followed.
RESTORE_PAGE: Final = "cart_restore"
#: Events larger than this (in bytes of JSON) are rejected as ``too_large`` before they are parsed.
MAX_EVENT_BYTES: Final = 64 * 1024
#: Largest accepted amount in major units; bigger numbers are a bug or an attack, not an order.
MAX_AMOUNT: Final = Decimal(10) ** 12
_ZERO: Final = Decimal(0)
_MAX_ITEMS: Final = 500

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_Text = Annotated[str, msgspec.Meta(max_length=256)]
_Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]
_ChannelName = Annotated[str, msgspec.Meta(pattern="^[a-z][a-z0-9_-]{0,31}$")]
_Timestamp = Union[float, Annotated[datetime, msgspec.Meta(tz=True)], None]


def _check_amounts(event: BaseEvent) -> None:
    """Refuse an amount out of range, naming its JSON path (Decimal has no msgspec constraints).

    Checked once after decoding, not in a ``__post_init__``: a hook would run in Python for every event and
    every item, page views included, where only a few kinds ever carry amounts. The common case (no amount at
    all) costs three attribute reads; an amount, two comparisons (NaN fails them: it is unordered).
    """
    value, shipping, items = event.value, event.shipping, event.items
    if value is None and shipping is None and not items:
        return
    low, high = _ZERO, MAX_AMOUNT
    try:
        if value is not None and not low <= value <= high:
            raise _amount_error("$.value", value)
        if shipping is not None and not low <= shipping <= high:
            raise _amount_error("$.shipping", shipping)
        for item in items:
            price = item.price
            if not low <= price <= high:
                raise _amount_error(f"$.items[{items.index(item)}].price", price)
    except InvalidOperation:  # a NaN compared under a context that traps it (the default one does)
        where, amount = next(
            (path, amount) for path, amount in _amounts(event) if amount is not None and amount.is_nan()
        )
        raise _amount_error(where, amount) from None


def _amounts(event: BaseEvent) -> Iterator[tuple[str, Decimal | None]]:
    yield "$.value", event.value
    yield "$.shipping", event.shipping
    for index, item in enumerate(event.items):
        yield f"$.items[{index}].price", item.price


def _amount_error(where: str, value: Decimal | None) -> InvalidEvent:
    return InvalidEvent(
        f"expected a finite amount between 0 and {MAX_AMOUNT}, got {value} at `{where}`",
        reason="bad_value",
        field=where,
    )


class CheckoutStep(enum.IntEnum):
    """How far a cart got, in funnel order. A cart's step only ever moves forward."""

    BROWSE = 0
    CART = 1
    CHECKOUT = 2
    SHIPPING = 3
    PAYMENT = 4
    PURCHASE = 5


class Item(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """One line of a cart: ``price`` is the unit price in major units of the event's currency."""

    item_id: _Id
    price: Decimal = Decimal(0)
    quantity: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    name: _Text | None = None
    category: _Text | None = None


class BaseEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True, tag_field="event"):
    """Fields every event kind shares.

    ``ts`` is an RFC 3339 timestamp with a time zone or epoch seconds; when absent the engine's clock stamps
    the event on arrival. After ingest, ``ts`` is always a ``float`` of epoch seconds.
    """

    #: The funnel step this kind of event proves a cart reached (``None``: it says nothing about the step).
    step: ClassVar[CheckoutStep | None] = None

    session_id: _Id
    customer_id: _Id | None = None
    ts: _Timestamp = None
    currency: _Currency | None = None
    value: Decimal | None = None
    # A tuple, not a list: a missing field decodes to the one empty tuple, where a list default would give every
    # page view its own empty list to track; 10,000s of events in flight made each young collection walk 12,000
    # lists.
    items: Annotated[tuple[Item, ...], msgspec.Meta(max_length=_MAX_ITEMS)] = ()
    shipping: Decimal | None = None
    transaction_id: _Id | None = None
    cart_id: _Id | None = None
    #: Optional segment hints for analytics: device class ("mobile") and traffic source ("newsletter").
    device: _Text | None = None
    source: _Text | None = None


class PageView(BaseEvent, frozen=True, kw_only=True, gc=False, tag="page_view"):
    """Any page view. ``page_type`` ("product", "cart", "checkout", ...) helps reason detection."""

    page_type: _Text | None = None


class ViewItem(BaseEvent, frozen=True, kw_only=True, gc=False, tag="view_item"):
    """A product page was viewed (``items`` names the product)."""

    step = CheckoutStep.BROWSE


class AddToCart(BaseEvent, frozen=True, kw_only=True, gc=False, tag="add_to_cart"):
    """Items were added to the cart; ``quantity`` is the number added."""

    step = CheckoutStep.CART


class RemoveFromCart(BaseEvent, frozen=True, kw_only=True, gc=False, tag="remove_from_cart"):
    """Items were removed from the cart; ``quantity`` is the number removed."""


class ViewCart(BaseEvent, frozen=True, kw_only=True, gc=False, tag="view_cart"):
    """The cart page was viewed; ``items``, when given, is the whole cart and replaces what is known."""

    step = CheckoutStep.CART


class BeginCheckout(BaseEvent, frozen=True, kw_only=True, gc=False, tag="begin_checkout"):
    """Checkout started; ``items``, when given, is the whole cart."""

    step = CheckoutStep.CHECKOUT


class AddShippingInfo(BaseEvent, frozen=True, kw_only=True, gc=False, tag="add_shipping_info"):
    """A shipping option was chosen; ``shipping`` is its cost, shown to the shopper."""

    step = CheckoutStep.SHIPPING
    shipping_tier: _Text | None = None


class AddPaymentInfo(BaseEvent, frozen=True, kw_only=True, gc=False, tag="add_payment_info"):
    """Payment details were entered."""

    step = CheckoutStep.PAYMENT
    payment_type: _Text | None = None


class Purchase(BaseEvent, frozen=True, kw_only=True, gc=False, tag="purchase"):
    """An order was placed. Closes the cart and cancels every pending recovery for it and its customer."""

    step = CheckoutStep.PURCHASE


class Identify(BaseEvent, frozen=True, kw_only=True, gc=False, tag="identify"):
    """The session's shopper became known. Stitches the session to ``customer_id``.

    ``email`` and ``phone`` are personal data: they are kept only to address messages and never logged.
    ``timezone`` is an IANA name (``Europe/Berlin``) used for quiet hours.
    """

    email: Annotated[str, msgspec.Meta(max_length=320)] | None = None
    phone: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    locale: Annotated[str, msgspec.Meta(max_length=35)] | None = None
    timezone: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class Consent(BaseEvent, frozen=True, kw_only=True, gc=False, tag="consent"):
    """Marketing consent per channel (``"email"``, ``"sms"``, ``"push"``, ...), granted or withdrawn.

    Withdrawal stops everything pending for that channel at once.
    """

    granted: Annotated[tuple[_ChannelName, ...], msgspec.Meta(max_length=32)] = ()
    withdrawn: Annotated[tuple[_ChannelName, ...], msgspec.Meta(max_length=32)] = ()


class PaymentFailed(BaseEvent, frozen=True, kw_only=True, gc=False, tag="payment_failed"):
    """A payment attempt failed. Makes the cart an abandonment candidate at once."""

    error_code: _Text | None = None
    payment_type: _Text | None = None


class FormError(BaseEvent, frozen=True, kw_only=True, gc=False, tag="form_error"):
    """A checkout form rejected input. ``form_field`` names the field (never its value)."""

    form_field: _Text | None = None
    error_code: _Text | None = None


class ExitIntent(BaseEvent, frozen=True, kw_only=True, gc=False, tag="exit_intent"):
    """The shopper looks about to leave (cursor left the window, tab hidden): abandonment comes sooner."""


#: The pages a :class:`CheckoutSignal` can be about: the funnel's steps before the purchase, by name.
SignalStep = Literal["browse", "cart", "checkout", "shipping", "payment"]
#: A day: no shopper spends longer on one page, so a larger figure is a unit mistake (milliseconds), not data.
_StepSeconds = Annotated[float, msgspec.Meta(ge=0, le=86_400)]
_Count = Annotated[int, msgspec.Meta(ge=0, le=10_000)]


class CheckoutSignal(BaseEvent, frozen=True, kw_only=True, gc=False, tag="checkout_signal"):
    """How a page of the funnel went for the shopper, sent by the shop's page as the shopper leaves it (on
    ``pagehide``, or when the next step loads). Every field is optional; send what the page measures.

    ``checkout_step`` names the page (``"cart"``, ``"checkout"``, ``"shipping"``, ``"payment"``, or ``"browse"``
    for a product page); ``seconds_on_step`` the time on it; ``dead_clicks`` clicks that did nothing (on a
    disabled button, on text that looks like a link); ``tab_aways`` how often the page was hidden (another tab,
    another app) and ``hidden_seconds`` for how long in all; ``slow`` that the page itself was slow (the shop's
    own measure, such as a request over 3 seconds). These are the signals that tell a reason apart (see
    :mod:`recoverkit.reasons`); a shop that sends none still gets the reasons its other events show.
    """

    checkout_step: SignalStep | None = None
    seconds_on_step: _StepSeconds | None = None
    dead_clicks: _Count = 0
    tab_aways: _Count = 0
    hidden_seconds: _StepSeconds = 0.0
    slow: bool = False


Event = Union[
    PageView,
    ViewItem,
    AddToCart,
    RemoveFromCart,
    ViewCart,
    BeginCheckout,
    AddShippingInfo,
    AddPaymentInfo,
    Purchase,
    Identify,
    Consent,
    PaymentFailed,
    FormError,
    ExitIntent,
    CheckoutSignal,
]
"""Any accepted event; dispatch on its type (``type(ev) is AddToCart``) or its ``event`` tag."""

#: The kinds whose news reaches beyond their session when they name a customer (a purchase: or the shop's cart
#: id): an address, consent, a purchase that closes the customer's other carts. A partitioned journal writes them
#: into every partition (:meth:`recoverkit.journal.Journal._write_keyed`), where sessionize reads them as news.
CUSTOMER_WIDE: frozenset[type[BaseEvent]] = frozenset({Identify, Consent, Purchase})


def contact_key(session_id: str, customer_id: str | None = None) -> str:
    """Whose consent, address and codes apply: ``customer_id`` when known, else ``"session:<session_id>"``.

    The one spelling of the key every stage and the store use for a shopper. The ``session:`` prefix keeps an
    anonymous session's key apart from any customer id; ``contact_key(session_id)`` is the key a session had
    (or has) as an anonymous shopper, even after it was stitched to a customer.

    >>> contact_key("s-81f2"), contact_key("s-81f2", "cust-7")
    ('session:s-81f2', 'cust-7')
    """
    return customer_id if customer_id is not None else f"session:{session_id}"

_EVENT_TYPES: Final[tuple[type[BaseEvent], ...]] = Event.__args__  # type: ignore[attr-defined]
#: Every accepted ``event`` name, sorted.
# Read from each struct's config: msgspec.inspect.type_info would resolve every field's type, tens of
# milliseconds of `import recoverkit` for a handful of strings.
EVENT_KINDS: Final[tuple[str, ...]] = tuple(sorted(str(t.__struct_config__.tag) for t in _EVENT_TYPES))

# Built once: constructing decoders is the expensive part (msgspec's own performance advice).
_decoder: Final = msgspec.json.Decoder(Event)
_encoder: Final = msgspec.json.Encoder(decimal_format="number")
_untyped: Final = msgspec.json.Decoder()
# Measures a dict as the JSON it stands for; Decimal and datetime values encode as the strings a shop sends.
_measure: Final = msgspec.json.Encoder()

# Fields whose values are personal data: errors about them never repeat the value.
_PERSONAL: Final = frozenset({"email", "phone", "customer_id", "session_id", "transaction_id", "cart_id"})
_EPOCH_MIN: Final = 946_684_800.0  # 2000-01-01
_EPOCH_MAX: Final = 4_102_444_800.0  # 2100-01-01


def encode_event(event: Event) -> bytes:
    """Encode an event as the JSON a shop would send (amounts as JSON numbers)."""
    return _encoder.encode(event)


def decode_event(data: bytes | bytearray | memoryview | str | Mapping[str, Any] | BaseEvent) -> Event:
    """Validate ``data`` and return the typed event.

    Accepts raw JSON (``bytes``/``str``), a ``dict`` as a web framework hands it over, or a Struct built in
    Python (trusted, returned unchanged). Raises :class:`~recoverkit.errors.InvalidEvent` whose message names
    the field, the offending value (redacted for personal fields) and what was expected.

    What this accepts, the engine accepts, in every form: the size limit counts a ``dict`` as the JSON it
    stands for, and ``ts`` is held to the engine's range (epoch seconds between 2000 and 2100, so a time in
    milliseconds is refused here, not later). The one check left to the engine needs its state: an event
    without ``ts`` takes the engine's time, and a replay refuses one that comes before any event time is known.

    >>> decode_event(b'{"event": "exit_intent", "session_id": "s1"}')
    ExitIntent(session_id='s1', customer_id=None, ts=None, currency=None, value=None, items=(), ...)
    """
    if type(data) is bytes and len(data) <= MAX_EVENT_BYTES:
        # The common form (a line of a file, a request body), first and with nothing else on its way: the rest
        # of this function is the general case, and the errors.
        try:
            event: Event = _decoder.decode(data)
        except (RecursionError, msgspec.ValidationError, msgspec.DecodeError, UnicodeError):
            pass  # decoded again by _decode_text, which explains each
        else:
            ts = event.ts
            if ts is not None and not (type(ts) is float and _EPOCH_MIN <= ts <= _EPOCH_MAX):
                normalize_timestamp(ts, 0.0)
            if event.value is not None or event.shipping is not None or event.items:
                _check_amounts(event)
            return event
    if isinstance(data, BaseEvent):
        _check_ts(data.ts)
        _check_amounts(data)  # a Struct built in Python is held to the amounts' range as JSON is
        return data  # type: ignore[return-value]  # every BaseEvent subclass is a member of Event
    if isinstance(data, (bytes, bytearray, memoryview, str)):
        return _decode_text(data)
    if isinstance(data, Mapping):
        return _decode_mapping(data)
    raise InvalidEvent(
        f"cannot decode an event from {type(data).__name__}; expected bytes, str, dict or a recoverkit event",
        reason="wrong_type",
    )


def _decode_text(data: bytes | bytearray | memoryview | str) -> Event:
    """:func:`decode_event` of JSON text, with every error explained."""
    size = _size_in_bytes(data)
    if size > MAX_EVENT_BYTES:
        raise InvalidEvent(
            f"event is {size} bytes; expected at most {MAX_EVENT_BYTES} bytes of JSON",
            reason="too_large",
        )
    try:
        # Bound to a typed name rather than cast: msgspec < 0.23 types a Union decoder's result as Any,
        # newer releases as the Union itself, and a cast is redundant (an error) under the latter.
        event: Event = _decoder.decode(data)
    except RecursionError as exc:
        raise _too_deep() from exc
    except msgspec.ValidationError as exc:
        raise _explain(exc, lambda: _untyped.decode(data), text=data) from exc
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"malformed JSON: {exc}; expected one JSON object", reason="malformed_json") from exc
    except UnicodeError as exc:
        # Lone surrogates in a str (UnicodeEncodeError), or bytes that are not UTF-8 inside a string field
        # (UnicodeDecodeError: msgspec checks the encoding of a string's bytes only as it decodes it).
        position = getattr(exc, "start", "?")
        raise InvalidEvent(
            f"malformed JSON: the text is not valid Unicode ({getattr(exc, 'reason', exc)} at position "
            f"{position}); expected one JSON object in UTF-8",
            reason="malformed_json",
        ) from exc
    _check_ts(event.ts)
    _check_amounts(event)
    return event


def _decode_mapping(data: Mapping[str, Any]) -> Event:
    """:func:`decode_event` of a ``dict``, held to the types of the JSON it stands for."""
    _check_mapping_size(data)
    try:
        # Strict: a dict is held to the types of the JSON it stands for ("3" is not a quantity).
        converted = cast(Event, msgspec.convert(data, Event))
    except msgspec.ValidationError as exc:
        raise _explain(exc, lambda: data) from exc
    except RecursionError as exc:
        raise _too_deep() from exc
    _check_ts(converted.ts)
    _check_amounts(converted)
    return converted


def _size_in_bytes(data: bytes | bytearray | memoryview | str) -> int:
    """The size of ``data`` in bytes of JSON, as MAX_EVENT_BYTES counts it, whatever its form."""
    if isinstance(data, str):
        if len(data) * 4 <= MAX_EVENT_BYTES:  # no character takes more than 4 bytes of UTF-8: surely small
            return len(data)
        return len(data.encode("utf-8", "surrogatepass"))
    if isinstance(data, memoryview):
        return data.nbytes
    return len(data)


def _check_ts(ts: float | datetime | None) -> None:
    """Refuse a ``ts`` that ingest would refuse, with the same message (the common case costs two comparisons)."""
    if ts is not None and not (type(ts) is float and _EPOCH_MIN <= ts <= _EPOCH_MAX):
        normalize_timestamp(ts, 0.0)


def _check_mapping_size(data: Mapping[str, Any]) -> None:
    """Hold a ``dict`` to the size limit of the JSON it stands for, and refuse text that is not Unicode.

    Encoding is a small part of what converting a dict costs, and it is the one way to count as the bytes
    form counts: unknown keys included. A value JSON cannot hold (an object under an unknown key, which
    conversion ignores) leaves the dict unmeasured; conversion refuses any such value under a known key.
    """
    try:
        size = len(_measure.encode(data))
    except RecursionError as exc:
        raise _too_deep() from exc
    except UnicodeEncodeError as exc:
        where = _find_unencodable(data) or "$"
        raise InvalidEvent(
            f"`{where}` is not valid Unicode text ({exc.reason}); expected text that can be written as UTF-8",
            reason="bad_value",
            field=where if where != "$" else None,
        ) from exc
    except (TypeError, ValueError, OverflowError):
        return
    if size > MAX_EVENT_BYTES:
        raise InvalidEvent(
            f"event is {size} bytes as JSON; expected at most {MAX_EVENT_BYTES} bytes", reason="too_large"
        )


def _find_unencodable(node: Any, path: str = "$", depth: int = 0) -> str | None:
    """The JSON path of the first string (key or value) under ``node`` that UTF-8 cannot encode (errors only)."""
    if depth > 64:
        return None
    if isinstance(node, str):
        try:
            node.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(node, Mapping):
        for key, value in node.items():
            step = f"{path}.{key}" if isinstance(key, str) and key.isidentifier() else f"{path}[{key!r}]"
            if isinstance(key, str) and _find_unencodable(key, step, depth + 1) is not None:
                return step
            found = _find_unencodable(value, step, depth + 1)
            if found is not None:
                return found
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            found = _find_unencodable(value, f"{path}[{index}]", depth + 1)
            if found is not None:
                return found
    return None


def _event_tags(text: bytes | bytearray | memoryview | str) -> list[Any]:
    """Every value of a top-level ``event`` key in ``text``, in order (errors only: the decoder keeps one)."""
    try:
        document = json.loads(text if isinstance(text, str) else bytes(text), object_pairs_hook=lambda p: p)
    except (ValueError, RecursionError):
        return []
    return [value for key, value in document if key == "event"] if isinstance(document, list) else []


def _too_deep() -> InvalidEvent:
    # A 2 KB document of nested arrays is enough to exhaust the decoder's recursion: refuse it as what it is.
    return InvalidEvent("event is nested too deeply; expected a flat JSON object", reason="too_large")


def normalize_timestamp(ts: float | datetime | None, now: float) -> float:
    """Epoch seconds for an event's ``ts``; ``now`` when absent. Raises :class:`InvalidEvent` when absurd."""
    if ts is None:
        return now
    value = ts.timestamp() if isinstance(ts, datetime) else float(ts)
    if not (math.isfinite(value) and _EPOCH_MIN <= value <= _EPOCH_MAX):
        hint = " (it looks like milliseconds)" if _EPOCH_MIN * 1000 <= value <= _EPOCH_MAX * 1000 else ""
        raise InvalidEvent(
            f"`$.ts` is {value!r}{hint}; expected epoch seconds between 2000 and 2100 or an RFC 3339 time",
            reason="bad_value",
            field="$.ts",
        )
    return value


def _explain(
    exc: msgspec.ValidationError, raw: Any, *, text: bytes | bytearray | memoryview | str | None = None
) -> InvalidEvent:
    """Turn msgspec's message into one that also names the offending value and the expectation.

    ``text`` is the JSON the event came as, if any: only there can a key be given twice.
    """
    what, path = split_error(str(exc))
    if path == "$.event" and what.startswith("Invalid value"):
        return _bad_kind(raw, text)
    if what.startswith("Object missing required field"):
        name = what.split("`")[1] if "`" in what else "?"
        where = f"{path}.{name}" if path else f"$.{name}"
        return InvalidEvent(f"missing required field `{where}`", reason="missing_field", field=where)
    reason = "wrong_type" if what.startswith("Expected `") and ", got `" in what else "bad_value"
    if path == "$.checkout_step" and what.startswith("Invalid enum value"):
        what = f"Expected one of {', '.join(get_args(SignalStep))}"
    if path is None:
        return InvalidEvent(f"{what}", reason=reason)
    shown = describe_value(raw, path, personal=_PERSONAL)
    return InvalidEvent(f"{what} at `{path}` (value: {shown})", reason=reason, field=path)


def _bad_kind(raw: Any, text: bytes | bytearray | memoryview | str | None) -> InvalidEvent:
    """The error for a `$.event` the decoder refused: given more than once, or not a kind it knows."""
    if text is not None:
        # The decoder reads the first `event` and rejects a second that differs; a dict keeps the last. Either
        # value alone would make a message that contradicts itself ("unknown kind 'identify'"): name both.
        tags = _event_tags(text)
        if len(tags) > 1:
            shown = ", ".join(_short(tag) for tag in tags[:4])
            return InvalidEvent(
                f"`$.event` is given {len(tags)} times ({shown}); expected exactly one event kind",
                reason="bad_value",
                field="$.event",
            )
    # The sender's text, so shown as a shortened repr: it must not add lines or kilobytes to a log.
    return InvalidEvent(
        f"unknown event kind at `$.event`: {describe_value(raw, '$.event')}; "
        f"expected one of {', '.join(EVENT_KINDS)}",
        reason="unknown_event",
        field="$.event",
    )


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."
