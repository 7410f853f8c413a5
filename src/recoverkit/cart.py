"""The cart as the stages after sessionize see it: an immutable snapshot taken when something happened.

The sessionizer keeps live carts in its own mutable form; whatever crosses a stage boundary is one of these
frozen Structs, so a later stage can hold on to it (a message scheduled for tomorrow) without it changing
underneath.
"""

from __future__ import annotations

import msgspec

from .events import CheckoutStep, contact_key

__all__ = ["CartLine", "CartSnapshot", "CheckoutSignals"]


class CartLine(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One product line; ``price`` is the unit price in integer minor units of the cart's currency."""

    item_id: str
    price: int
    quantity: int
    name: str | None = None
    category: str | None = None


class CheckoutSignals(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What the shop's pages said about a cart's visit (``checkout_signal`` events), added up.

    ``dead_clicks``, ``tab_aways`` and ``hidden_seconds`` are sums over every page; ``slow_steps`` counts the
    pages that were slow; ``longest_form_step`` is the longest time on one checkout form page (``checkout``,
    ``shipping`` or ``payment``), in seconds. A cart whose shop sends no such event has none at all
    (``CartSnapshot.signals is None``), which is not the same as signals that were all zero.
    """

    dead_clicks: int = 0
    slow_steps: int = 0
    tab_aways: int = 0
    hidden_seconds: float = 0.0
    longest_form_step: float = 0.0


class CartSnapshot(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A cart and what is known about the visit that built it, at one moment.

    ``value`` and ``shipping`` are integer minor units of ``currency``. ``cart_key`` is the shop's ``cart_id``
    when it sent one, else the session id: it is what idempotency keys and cancellations are built on.
    ``customer_id`` is ``None`` for an anonymous shopper.
    """

    cart_key: str
    session_id: str
    customer_id: str | None
    currency: str | None
    lines: tuple[CartLine, ...]
    value: int
    shipping: int | None
    step: CheckoutStep
    started_at: float
    checkout_at: float | None
    last_at: float
    views: int = 0
    item_views: int = 0
    payment_failures: int = 0
    form_errors: int = 0
    exit_intents: int = 0
    returning: bool = False
    device: str | None = None
    source: str | None = None
    #: The ``checkout_signal`` events' sums, ``None`` when the shop sent none for this cart.
    signals: CheckoutSignals | None = None

    @property
    def contact_key(self) -> str:
        """Whose consent and address apply: the customer when known, else the anonymous session."""
        return contact_key(self.session_id, self.customer_id)

    @property
    def quantity(self) -> int:
        """Number of units in the cart."""
        return sum(line.quantity for line in self.lines)
