"""Guards as a Django shop writes them, for the guard tests: plain functions asking the shop's own database
through the ORM ("has this customer ordered since the cart was started?"), as docs/durability.md shows."""

from __future__ import annotations

from datetime import UTC, datetime

from recoverkit import Message


def has_not_ordered_since(message: Message) -> bool:
    """``False`` (veto) when the cart (the example shop's carts are keyed by the session) has an order placed
    since it was started. A synchronous ORM query: Django refuses it on an event loop."""
    from storefront.models import Order

    since = datetime.fromtimestamp(message.cart.started_at, UTC)
    return not Order.objects.filter(cart_id=message.cart.session_id, placed_at__gte=since).exists()


def broken(message: Message) -> bool:
    """A guard with a bug: a query on a field the model does not have (Django raises ``FieldError``)."""
    from storefront.models import Order

    return not Order.objects.filter(customer=message.cart.session_id).exists()


class NotOrdered:
    """A guard given as a class: built with no arguments, its instances are called."""

    def __call__(self, message: Message) -> bool:
        return has_not_ordered_since(message)
