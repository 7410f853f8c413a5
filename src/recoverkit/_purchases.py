"""How a purchase reaches dispatch's claims ahead of the pipeline: :class:`Purchases`.

"Never after purchase" (see :mod:`recoverkit.dispatch`) is enforced where a message is claimed: the store's
claim refuses a message for a cart that was bought, or for a contact who bought since the cart was abandoned.
Live, the pipeline may lag behind the journal by a tick or a backlog, so a claim made from its state could
miss a purchase the shop has already reported. The journal therefore records each purchase in the store's
purchase table as it journals it, before the events themselves (a crash between the two leaves a purchase
recorded early, which is harmless; never a journaled purchase the claim does not know about).

A replay in event time records nothing ahead: there the pipeline itself knows *when* in event time a
purchase happened, and a purchase later in the file must not stop a message due before it.

The keys are the ones claims look purchases up by: the cart (the shop's ``cart_id``, else the session) and
the contact (:func:`recoverkit.events.contact_key`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .events import Purchase, contact_key
from .store.base import Store

__all__ = ["Purchases", "purchase_keys"]


def purchase_keys(purchase: Purchase) -> tuple[str, str]:
    """The cart key and the contact key a claim looks ``purchase`` up by."""
    cart = purchase.cart_id if purchase.cart_id is not None else purchase.session_id
    return cart, contact_key(purchase.session_id, purchase.customer_id)


class Purchases:
    """Records purchases in ``store`` ahead of the pipeline (``ahead``: live), for the claims; see the module.

    :meth:`record` blocks for the store's writes: the journal calls it from the thread that journals.
    """

    __slots__ = ("ahead", "store")

    def __init__(self, store: Store, *, ahead: bool) -> None:
        self.store = store
        #: Whether purchases are recorded as they are journaled (live) rather than left to the pipeline.
        self.ahead = ahead

    def record(self, events: Iterable[Any]) -> None:
        """Record every purchase among ``events`` (no-op unless :attr:`ahead`); the store's errors propagate."""
        if not self.ahead:
            return
        for event in events:
            if type(event) is Purchase:
                cart, contact = purchase_keys(event)
                self.store.record_purchase(cart_key=cart, contact_key=contact, at=event.ts)  # type: ignore[arg-type]
