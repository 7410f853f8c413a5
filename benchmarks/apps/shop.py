"""What the two benchmark shops (``flask_app.py``, ``django_app.py``) share: the catalogue, the pages, the cart kept
in the framework's signed-cookie session, and the settings read from the environment.

Both shops serve the same four endpoints, the steps of a purchase, and record what a shop instrumented as
docs/flask.md and docs/django.md say would record (``TRACK_PAGE_VIEWS`` on, so the integration records a
``page_view`` for every HTML page a ``GET`` answers):

- ``GET /product/<sku>``: ``page_view`` (recorded by the integration), ``view_item``;
- ``POST /cart/add`` (form: ``sku``): ``add_to_cart``, ``view_cart`` (the whole cart: the answer is the cart page);
- ``POST /checkout`` (form: ``email``, ``shipping``), one step for address and shipping: ``begin_checkout``,
  ``identify``, ``consent``, ``add_shipping_info``;
- ``POST /checkout/purchase``: ``add_payment_info``, ``purchase``.

``GET /_bench/stats`` answers the serving process's engine statistics as JSON (no event), for the benchmark's
checks. Every answer carries ``X-Worker: <pid>``, so the load generator knows which worker served it.

Environment: ``BENCH_RECOVERKIT`` (``1``: recoverkit installed the way a shop installs it; ``0``: the same shop
without it, recoverkit not even imported), ``BENCH_STORE`` (the SQLite file every worker shares: the embedded
default a shop deploys with several worker processes). Nothing else is configured: recoverkit's default flows,
and a channel that sends nothing (nothing falls due within a run: a cart is abandoned after 30 minutes).
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

#: Whether this process runs with recoverkit. Read once at import, as a shop's settings are.
RECOVERKIT = os.environ.get("BENCH_RECOVERKIT", "0") == "1"
CURRENCY = "EUR"
SHIPPING = {"standard": Decimal("4.90"), "express": Decimal("9.90")}

#: sku -> (name, price). Twenty products, so carts differ.
PRODUCTS: dict[str, tuple[str, Decimal]] = {
    f"SKU-{n:02d}": (f"Product {n}", Decimal(f"{5 + n * 3}.{n * 7 % 100:02d}")) for n in range(1, 21)
}


def item(sku: str, quantity: int = 1) -> dict[str, Any]:
    """A line as recoverkit's events carry it (the price as a string: amounts are never floats)."""
    name, price = PRODUCTS[sku]
    return {"item_id": sku, "name": name, "price": str(price), "quantity": quantity}


def cart_items(lines: dict[str, int]) -> list[dict[str, Any]]:
    return [item(sku, quantity) for sku, quantity in lines.items()]


def subtotal(lines: dict[str, int]) -> Decimal:
    return sum((PRODUCTS[sku][1] * quantity for sku, quantity in lines.items()), Decimal("0.00"))


# -- what each journey step tracks, the same in both frameworks (``tracker``: the request's recoverkit tracker) --


def track_added(tracker: Any, sku: str, cart: dict[str, int], cart_id: str) -> None:
    tracker.add_to_cart([item(sku)], currency=CURRENCY, cart_id=cart_id)
    tracker.view_cart(cart_items(cart), currency=CURRENCY, cart_id=cart_id)


def track_checkout(tracker: Any, cart: dict[str, int], cart_id: str | None, email: str, option: str) -> None:
    value = str(subtotal(cart))
    tracker.begin_checkout(currency=CURRENCY, value=value, cart_id=cart_id)
    tracker.identify(email=email)
    tracker.consent(granted=["email"])
    tracker.add_shipping_info(
        shipping=str(SHIPPING[option]), shipping_tier=option, currency=CURRENCY, value=value, cart_id=cart_id
    )


def track_purchase(
    tracker: Any, cart: dict[str, int], cart_id: str | None, number: str, total: Decimal, option: str
) -> None:
    tracker.add_payment_info(payment_type="card", cart_id=cart_id)
    tracker.purchase(
        transaction_id=number,
        value=str(total),
        shipping=str(SHIPPING[option]),
        currency=CURRENCY,
        items=cart_items(cart),
        cart_id=cart_id,
    )


def store_path() -> str:
    path = os.environ.get("BENCH_STORE")
    if not path:
        raise RuntimeError("BENCH_STORE is not set: the benchmark passes the SQLite file the workers share")
    return path


class NullChannel:
    """The shop's e-mail adapter, standing in for its provider's client: nothing falls due during a run."""

    async def send(self, message: Any) -> None:
        return None


# The pages, as Jinja2 and Django templates both read them (only {{ }} and {% for %}/{% if %} tags).
PRODUCT_PAGE = """<!doctype html><html><head><title>{{ name }}</title></head><body>
<h1>{{ name }}</h1><p class="price">{{ price }} EUR</p>
<form method="post" action="/cart/add"><input type="hidden" name="sku" value="{{ sku }}">
<button>Add to cart</button></form>
<p>Your cart: {{ count }} item{% if count != 1 %}s{% endif %}</p></body></html>
"""
CART_PAGE = """<!doctype html><html><head><title>Your cart</title></head><body><h1>Your cart</h1><table>
{% for row in rows %}<tr><td>{{ row.name }}</td><td>{{ row.quantity }}</td><td>{{ row.price }}</td></tr>{% endfor %}
</table><p>Subtotal: {{ subtotal }} EUR</p><a href="/checkout">Check out</a></body></html>
"""
CHECKOUT_PAGE = """<!doctype html><html><head><title>Payment</title></head><body><h1>Payment</h1>
<p>{{ email }}, shipping {{ shipping }}: {{ total }} EUR</p>
<form method="post" action="/checkout/purchase"><input name="card"><button>Pay</button></form></body></html>
"""
ORDER_PAGE = """<!doctype html><html><head><title>Thank you</title></head><body><h1>Order {{ number }}</h1>
<p>{{ total }} EUR. Thank you!</p></body></html>
"""


def cart_rows(lines: dict[str, int]) -> list[dict[str, Any]]:
    return [
        {"name": PRODUCTS[sku][0], "quantity": quantity, "price": PRODUCTS[sku][1] * quantity}
        for sku, quantity in lines.items()
    ]


def engine_figures(engine: Any) -> dict[str, Any]:
    """What ``GET /_bench/stats`` answers: this process's id and, with recoverkit, its engine's event counters and
    how far behind the shared journal it is (the pipeline owner reads what every worker journals)."""
    figures: dict[str, Any] = {"pid": os.getpid(), "recoverkit": engine is not None}
    if engine is not None:
        s = engine.statistics()
        figures.update(
            accepted=s.events_accepted,
            invalid=sum(s.events_invalid.values()),
            overflow=s.events_overflow,
            owner=s.owner,
            journal_behind=s.journal_behind,
        )
    return figures
