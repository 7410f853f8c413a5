"""The cart a session holds, as the sessionize stage keeps it: mutable records small enough for 100,000s of
open carts, the checkpoint they are saved in, what each cart event does to the lines (add, remove, a checkout
step), a cart moving from one session to another, and the frozen :class:`~recoverkit.cart.CartSnapshot` a cart
crosses to the next stage as.

Only the sessionize stage uses these; the rules that decide when a cart moves, closes or is abandoned are in
the stage (``_stage``), ``_stitching`` and ``_abandon_timers``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

import msgspec

from ..cart import CartLine, CartSnapshot, CheckoutSignals
from ..events import (
    AddPaymentInfo,
    AddShippingInfo,
    AddToCart,
    BeginCheckout,
    CheckoutSignal,
    CheckoutStep,
    Item,
    RemoveFromCart,
    ViewCart,
    contact_key,
)
from ..items import Trigger
from ..money import to_minor

__all__ = [
    "CART_EDITS",
    "NO_DETAIL",
    "CartEdit",
    "Detail",
    "Line",
    "Session",
    "State",
    "add_items",
    "add_signal",
    "cart_key",
    "clear_cart",
    "contact_of",
    "detail_of",
    "lines_of",
    "merge_signals",
    "move_cart",
    "new_line",
    "pack_lines",
    "purchased_at",
    "remove_items",
    "snapshot",
    "take_checkout_step",
]


class Line(msgspec.Struct, gc=False, array_like=True):
    # Mutable twin of CartLine. gc=False: lines and sessions never form reference cycles, and leaving them
    # out of the garbage collector saves 16 bytes each and the collector's time on 100,000s of carts.
    item_id: str
    price: int
    quantity: int
    name: str | None
    category: str | None


class Detail(msgspec.Struct, gc=False, array_like=True):
    # What only some sessions have: a checkout begun, its troubles, a declared value or shipping, a purchase.
    # Kept apart, and None until one of them is set, so that the most common session (browsing, or a cart
    # waiting) is 56 bytes smaller: at 100,000s of open carts, memory is the cost that counts.
    shipping: int | None = None
    declared_value: int | None = None
    checkout_at: float | None = None
    purchased_at: float | None = None
    payment_failures: int = 0
    form_errors: int = 0
    exit_intents: int = 0
    signals: CheckoutSignals | None = None


class Session(msgspec.Struct, gc=False, array_like=True):
    # ``lines`` is the cart packed (see pack_lines), replaced whole by every edit: most carts wait, abandoned, far
    # longer than they change, and packed a three-line cart takes about 120 bytes where its line structs, their
    # tuple and their prices took over 300. One bytes object is also nothing for the garbage collector to track.
    # A list only in a checkpoint written before lines were packed, until restore() packs it. The fields are a
    # checkpoint's layout (by position): sessionize._legacy reads the layout before ``detail`` existed.
    session_id: str
    started_at: float
    last_at: float
    deadline: float
    timer_at: float = math.inf
    customer_id: str | None = None
    cart_id: str | None = None
    currency: str | None = None
    lines: bytes | list[Line] | None = None
    step: int = 0
    trigger: Trigger = "inactivity"
    abandoned: bool = False
    views: int = 0
    item_views: int = 0
    device: str | None = None
    source: str | None = None
    detail: Detail | None = None


#: A session's detail when it has none: read, never written.
NO_DETAIL: Final = Detail()


def detail_of(session: Session) -> Detail:
    """``session``'s detail, to write: created on first use."""
    detail = session.detail
    if detail is None:
        detail = session.detail = Detail()
    return detail


def purchased_at(session: Session) -> float | None:
    """When ``session``'s cart was last bought, or ``None``."""
    detail = session.detail
    return None if detail is None else detail.purchased_at


class State(msgspec.Struct, array_like=True):
    """The stage's checkpoint (fields by position: renaming one keeps old checkpoints readable)."""

    watermark: float
    sessions: list[Session]  # least recently active first, as the stage's dict keeps them
    customers: dict[str, tuple[str, ...]]
    buyers: list[tuple[str, float]]
    counts: dict[str, int]


_pack: Final = msgspec.msgpack.Encoder().encode
_unpack: Final = msgspec.msgpack.Decoder(list[Line]).decode


def pack_lines(lines: list[Line]) -> bytes | None:
    """``lines`` as a session keeps them: packed, or ``None`` for no line (a session without a cart)."""
    return _pack(lines) if lines else None


def lines_of(session: Session) -> list[Line]:
    """The session's cart lines, unpacked (new objects: editing them changes nothing until packed again)."""
    held = session.lines
    if held is None:
        return []
    return _unpack(held) if isinstance(held, bytes) else list(held)


def new_line(item: Item, price: int) -> Line:
    """A cart line for ``item`` at ``price`` minor units."""
    return Line(item_id=item.item_id, price=price, quantity=item.quantity, name=item.name, category=item.category)


def cart_key(session: Session) -> str:
    """The key the session's cart goes by downstream: the shop's ``cart_id``, else the session id."""
    return session.cart_id if session.cart_id is not None else session.session_id


def contact_of(session: Session) -> str:
    """The contact key of the session's shopper: its customer's id once stitched, else the session's own."""
    return contact_key(session.session_id, session.customer_id)


def clear_cart(session: Session) -> None:
    """Leave ``session`` without a cart (bought, or moved to another session); the shopper's own counts stay."""
    session.cart_id = None
    session.lines = None
    session.abandoned = False
    session.step = CheckoutStep.BROWSE
    bought = purchased_at(session)  # the shopper's, not the cart's: it stays
    session.detail = None if bought is None else Detail(purchased_at=bought)
    session.trigger = "inactivity"


#: The pages whose time counts towards ``CheckoutSignals.longest_form_step``: where the shopper fills in forms.
_FORM_STEPS: Final = frozenset({"checkout", "shipping", "payment"})


def add_signal(signals: CheckoutSignals | None, event: CheckoutSignal) -> CheckoutSignals:
    """``signals`` with ``event``'s added (a new object: snapshots already taken keep theirs)."""
    held = signals if signals is not None else _NO_SIGNALS
    seconds = event.seconds_on_step
    longest = held.longest_form_step
    if seconds is not None and event.checkout_step in _FORM_STEPS and seconds > longest:
        longest = seconds
    return CheckoutSignals(
        dead_clicks=held.dead_clicks + event.dead_clicks,
        slow_steps=held.slow_steps + event.slow,
        tab_aways=held.tab_aways + event.tab_aways,
        hidden_seconds=held.hidden_seconds + event.hidden_seconds,
        longest_form_step=longest,
    )


def merge_signals(a: CheckoutSignals | None, b: CheckoutSignals | None) -> CheckoutSignals | None:
    """The signals of two carts merged into one: sums add up, the longest form page is the longer."""
    if a is None or b is None:
        return a if b is None else b
    return CheckoutSignals(
        dead_clicks=a.dead_clicks + b.dead_clicks,
        slow_steps=a.slow_steps + b.slow_steps,
        tab_aways=a.tab_aways + b.tab_aways,
        hidden_seconds=a.hidden_seconds + b.hidden_seconds,
        longest_form_step=max(a.longest_form_step, b.longest_form_step),
    )


_NO_SIGNALS: Final = CheckoutSignals()


# -- what a cart event does to the lines -----------------------------------------------------------------------
#
# Each edit returns whether it started a cart (the session held none), for the stage's ``carts`` count. Prices
# become integer minor units of the session's currency as they arrive.


def add_items(session: Session, event: AddToCart, ts: float) -> bool:
    """Add ``event``'s items: an item already in the cart gains the quantity and takes the new price."""
    started = session.lines is None
    lines = lines_of(session)
    currency = session.currency
    for item in event.items:
        price = to_minor(item.price, currency)
        for line in lines:
            if line.item_id == item.item_id:
                line.quantity += item.quantity
                line.price = price
                break
        else:
            lines.append(new_line(item, price))
    session.lines = pack_lines(lines)
    if session.step < CheckoutStep.CART:
        session.step = CheckoutStep.CART
    return started


def remove_items(session: Session, event: RemoveFromCart, ts: float) -> bool:
    """Take ``event``'s quantities off; a line at zero goes, and a cart with no line left is no cart."""
    if session.lines:
        lines = lines_of(session)
        for item in event.items:
            for line in lines:
                if line.item_id == item.item_id:
                    line.quantity -= item.quantity
                    break
        session.lines = pack_lines([line for line in lines if line.quantity > 0])
    return False


def take_checkout_step(
    session: Session, event: ViewCart | BeginCheckout | AddShippingInfo | AddPaymentInfo, ts: float
) -> bool:
    """Record a cart or checkout page: the whole cart when the shop sends items, the declared value and shipping,
    the furthest step reached (it never goes back) and when checkout began."""
    started = False
    currency = session.currency
    if event.items:  # on these steps the shop sends the whole cart: it replaces what we pieced together
        started = session.lines is None
        session.lines = pack_lines([new_line(item, to_minor(item.price, currency)) for item in event.items])
    if event.value is not None:
        detail_of(session).declared_value = to_minor(event.value, currency)
    if event.shipping is not None:
        detail_of(session).shipping = to_minor(event.shipping, currency)
    step = type(event).step
    if step is not None and step > session.step:
        session.step = step
    if step is not None and step >= CheckoutStep.CHECKOUT and (session.detail or NO_DETAIL).checkout_at is None:
        detail_of(session).checkout_at = ts
    return started


CartEdit = Callable[[Session, Any, float], bool]

#: The events that change a cart's lines, each with its edit.
CART_EDITS: dict[type[Any], CartEdit] = {
    AddToCart: add_items,
    RemoveFromCart: remove_items,
    ViewCart: take_checkout_step,
    BeginCheckout: take_checkout_step,
    AddShippingInfo: take_checkout_step,
    AddPaymentInfo: take_checkout_step,
}


def move_cart(owner: Session, into: Session) -> None:
    """Merge ``owner``'s cart into the cart ``into`` holds and leave ``owner`` without one.

    An item in both keeps ``into``'s line, which is the newer; what ``into`` knows of currency, shipping and the
    declared value wins; the checkout progress is the furthest of the two, its start the earlier, and the cart's
    start the earlier too (a purchase since then counts); friction signals add up.
    """
    if into.lines is None:
        into.lines = owner.lines
    elif owner.lines:
        lines = lines_of(into)
        held = {line.item_id for line in lines}
        into.lines = pack_lines([*(line for line in lines_of(owner) if line.item_id not in held), *lines])
    into.currency = into.currency or owner.currency
    into.step = max(into.step, owner.step)
    into.started_at = min(into.started_at, owner.started_at)
    if owner.detail is not None:
        _merge_detail(owner.detail, detail_of(into))
    clear_cart(owner)


def _merge_detail(owner: Detail, into: Detail) -> None:
    """:func:`move_cart`'s part for the cart's detail (the purchase time is the shopper's: it does not move)."""
    if into.shipping is None:
        into.shipping = owner.shipping
    if into.declared_value is None:
        into.declared_value = owner.declared_value
    if owner.checkout_at is not None and (into.checkout_at is None or owner.checkout_at < into.checkout_at):
        into.checkout_at = owner.checkout_at
    into.payment_failures += owner.payment_failures
    into.form_errors += owner.form_errors
    into.exit_intents += owner.exit_intents
    into.signals = merge_signals(into.signals, owner.signals)


def snapshot(session: Session, *, returning: bool) -> CartSnapshot:
    """The session's cart, frozen, as it crosses to the next stage (``returning``: the customer bought before)."""
    lines = tuple(
        CartLine(item_id=ln.item_id, price=ln.price, quantity=ln.quantity, name=ln.name, category=ln.category)
        for ln in lines_of(session)
        if ln.quantity > 0
    )
    computed = sum(line.price * line.quantity for line in lines)
    detail = session.detail or NO_DETAIL
    return CartSnapshot(
        cart_key=cart_key(session),
        session_id=session.session_id,
        customer_id=session.customer_id,
        currency=session.currency,
        lines=lines,
        value=computed or detail.declared_value or 0,
        shipping=detail.shipping,
        step=CheckoutStep(session.step),
        started_at=session.started_at,
        checkout_at=detail.checkout_at,
        last_at=session.last_at,
        views=session.views,
        item_views=session.item_views,
        payment_failures=detail.payment_failures,
        form_errors=detail.form_errors,
        exit_intents=detail.exit_intents,
        returning=returning,
        device=session.device,
        source=session.source,
        signals=detail.signals,
    )
