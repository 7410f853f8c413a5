"""Builders for the stage tests: events as ingest hands them on (``ts`` already a float), and stage outputs.

Times are seconds after :data:`T0`, so a test reads ``add("s1", 0)`` then ``advance(1800)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Final, TypeVar

from recoverkit.cart import CartLine, CartSnapshot
from recoverkit.config import Config
from recoverkit.events import AddToCart, BaseEvent, CheckoutStep, Item, PageView, RemoveFromCart
from recoverkit.sessionize import Abandoned, Sessionize

__all__ = [
    "T0",
    "SessionizeRun",
    "abandoned",
    "add",
    "event",
    "item",
    "legacy_checkpoint",
    "loop_turns_during",
    "page",
    "remove",
    "snapshot",
]

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


_NO_DETAIL: Final = [None, None, None, None, 0, 0, 0, None]


def legacy_checkpoint(state: bytes, *, signals: bool = True, packed: bool = True) -> bytes:
    """A sessionize checkpoint (``Sessionize.snapshot()``) rewritten in the layouts older versions wrote: each
    session an array of 24 fields with its detail inline (23 without ``signals``, as before checkout signals;
    its lines as arrays of line arrays unless ``packed``, as before lines were packed)."""
    import msgspec

    from recoverkit.sessionize._legacy import _Session

    watermark, sessions, customers, buyers, counts = msgspec.msgpack.decode(state)
    old = []
    for fields in sessions:
        (session_id, started, last, deadline, timer, customer, cart_id, currency, lines, step, trigger, abandoned_,
         views, item_views, device, source, detail) = fields  # fmt: skip
        shipping, declared, checkout_at, bought, failures, errors, exits, signals_ = detail or _NO_DETAIL
        row = [
            session_id, started, last, deadline, timer, customer, cart_id, currency, lines, shipping, declared, step,
            checkout_at, trigger, abandoned_, bought, views, item_views, failures, errors, exits, device, source,
            signals_,
        ]  # fmt: skip
        assert len(row) == len(_Session.__struct_fields__)
        if not packed and lines is not None:
            row[8] = msgspec.msgpack.decode(lines)  # the packed lines are an array of line arrays
        if not signals:
            assert row[-1] is None, "a session with checkout signals has no layout without them"
            row.pop()
        old.append(row)
    return msgspec.msgpack.encode([watermark, old, customers, buyers, counts])


def loop_turns_during(take: Callable[[], Awaitable[bytes]]) -> tuple[bytes, int]:
    """Run ``await take()`` (a stage's ``snapshot_soon``) on a new event loop beside a task that counts its own
    turns; what ``take`` returned and how many times the loop ran that task meanwhile (so, at least, how many
    times ``take`` let the loop run)."""
    import anyio

    turns = 0

    async def count() -> None:
        nonlocal turns
        while True:
            await anyio.sleep(0)
            turns += 1

    async def run() -> tuple[bytes, int]:
        async with anyio.create_task_group() as group:
            group.start_soon(count)
            await anyio.sleep(0)
            started = turns
            state = await take()
            group.cancel_scope.cancel()
        return state, turns - started

    return anyio.run(run)
