"""Builders for the stage tests: events as ingest hands them on (``ts`` already a float), and stage outputs.

Times are seconds after :data:`T0`, so a test reads ``add("s1", 0)`` then ``advance(1800)``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final, TypeVar

from recoverkit.cart import CartLine, CartSnapshot
from recoverkit.config import Config
from recoverkit.events import AddToCart, BaseEvent, CheckoutStep, Item, PageView, RemoveFromCart
from recoverkit.sessionize import Abandoned, Sessionize

__all__ = ["T0", "SessionizeRun", "abandoned", "add", "event", "item", "page", "remove", "snapshot"]

#: 2026-01-01T00:00:00Z, the epoch of every test timeline.
T0: Final = 1_767_225_600.0

E = TypeVar("E", bound=BaseEvent)
T = TypeVar("T")


def item(item_id: str = "A", price: str = "10.00", qty: int = 1) -> Item:
    return Item(item_id=item_id, price=Decimal(price), quantity=qty)


def event(kind: type[E], session: str, t: float, **fields: Any) -> E:
    """Any event kind for ``session`` at ``T0 + t``."""
    return kind(session_id=session, ts=T0 + t, **fields)


def add(session: str, t: float, item_id: str = "A", price: str = "10.00", qty: int = 1, **fields: Any) -> AddToCart:
    fields.setdefault("currency", "EUR")
    return event(AddToCart, session, t, items=[item(item_id, price, qty)], **fields)


def remove(session: str, t: float, item_id: str = "A", qty: int = 1, **fields: Any) -> RemoveFromCart:
    return event(RemoveFromCart, session, t, items=[item(item_id, "0", qty)], **fields)


def page(session: str, t: float, **fields: Any) -> PageView:
    return event(PageView, session, t, **fields)


class SessionizeRun:
    """A :class:`Sessionize` driven by hand: ``feed`` events, ``advance`` the watermark, read ``out``."""

    def __init__(self, config: Config | None = None, **settings: Any) -> None:
        self.stage = Sessionize(config if config is not None else Config(**settings))
        self.out: list[Any] = []

    def feed(self, *events: BaseEvent) -> SessionizeRun:
        self.stage.handle(list(events), self.out)  # type: ignore[arg-type]
        return self

    def advance(self, t: float) -> SessionizeRun:
        self.stage.advance(T0 + t, self.out)
        return self

    def of(self, kind: type[T]) -> list[T]:
        return [x for x in self.out if type(x) is kind]

    @property
    def sessions(self) -> int:
        return int(self.stage.extra_statistics()["sessions"])


def snapshot(**overrides: Any) -> CartSnapshot:
    """A one-line 35.79 EUR cart of known customer ``cust-1`` that reached the cart step."""
    fields: dict[str, Any] = {
        "cart_key": "cart-1",
        "session_id": "s1",
        "customer_id": "cust-1",
        "currency": "EUR",
        "lines": (CartLine(item_id="A", price=3579, quantity=1),),
        "value": 3579,
        "shipping": None,
        "step": CheckoutStep.CART,
        "started_at": T0,
        "checkout_at": None,
        "last_at": T0 + 600,
    }
    fields.update(overrides)
    return CartSnapshot(**fields)


def abandoned(trigger: Any = "inactivity", at: float = 2400, **cart: Any) -> Abandoned:
    return Abandoned(cart=snapshot(**cart), trigger=trigger, at=T0 + at)
