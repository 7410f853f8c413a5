"""The shop's catalogue, as ``substitute`` offers see it: products to suggest instead of, or beside, a cart's.

A ``substitute`` offer (see :mod:`recoverkit.offers`) names products from the shop's catalogue: a cheaper
product like the one the shopper hesitated over (``kind="substitute"``), or one that goes with what is in the
cart (``kind="complement"``), which any offer may also show beside it (``complements`` in the offer's
configuration: "goes well with"). recoverkit does not know the shop's products; the shop passes an object with one
method, :class:`Catalogue`, to the engine (``Engine(catalogue=...)``), and the engine asks it just before the
message is sent, after the ledger claim, so that only a message that goes out costs a catalogue query.

:class:`StaticCatalogue` is the reference implementation: a fixed list of :class:`Product`\\ s, kept in memory.
It serves small shops whose catalogue fits in a list, and tests.

Guarantees the engine gives around a catalogue: a ``suggest`` that raises or takes longer than the channel's
``timeout`` does not stop the message, which goes without the offer (counted as ``offer_catalogue_failed``);
suggestions that are not :class:`Suggestion`\\ s with an integer price in the cart's currency are left out
(``offer_catalogue_invalid``), and an offer left with no suggestion is dropped (``offer_no_suggestions``).
Prices are integer minor units, never floats.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable

import msgspec

from .cart import CartLine, CartSnapshot

__all__ = ["Catalogue", "Product", "StaticCatalogue", "SuggestKind", "Suggestion"]

#: What a ``substitute`` offer suggests: a cheaper product like one in the cart, or one that goes with it.
SuggestKind = Literal["substitute", "complement"]


class Suggestion(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One product a message suggests. ``price`` is the unit price in integer minor units of ``currency``
    (the cart's); ``url`` the product page, when the shop has one for messages."""

    item_id: str
    name: str
    price: int
    currency: str | None
    url: str | None = None


@runtime_checkable
class Catalogue(Protocol):
    """Where ``substitute`` offers find their products: implemented by the shop, passed as
    ``Engine(catalogue=...)``.

    ``suggest`` returns at most ``limit`` :class:`Suggestion`\\ s for ``cart``, best first, priced in the cart's
    currency, none of them already in the cart; an empty sequence when it has nothing to suggest. It is called
    from the engine's event loop, once per message that is sent (a retry reuses the first answer), and is given
    the channel's ``timeout``: query a database or a search service, but do not block the loop (run a blocking
    client with :func:`anyio.to_thread.run_sync`). Raising is allowed: the message then goes without the offer.
    """

    async def suggest(self, cart: CartSnapshot, *, kind: SuggestKind, limit: int) -> Sequence[Suggestion]:
        """Up to ``limit`` products to suggest for ``cart``, of ``kind``."""
        ...


class Product(msgspec.Struct, frozen=True, kw_only=True):
    """A product of a :class:`StaticCatalogue`: ``prices`` in integer minor units per currency
    (``{"EUR": 1999, "USD": 2199}``); it is suggested only for carts in a currency it has a price in."""

    item_id: str
    name: str
    category: str | None = None
    prices: dict[str, int] = msgspec.field(default_factory=dict)
    url: str | None = None


class StaticCatalogue:
    """A :class:`Catalogue` over a fixed list of ``products``, in memory: the reference implementation and the
    test double.

    - ``"substitute"``: products cheaper than the cart's most expensive line (by unit price), in that line's
      category (the line's ``category``, else the category of the product with its ``item_id``), nearest in
      price first, so the first suggestion is the closest thing to what the shopper wanted. A line without a
      known category gets no substitutes.
    - ``"complement"``: for each cart line, most expensive first, the products ``complements`` pairs with its
      ``item_id`` (``{"sku-mug": ["sku-coaster", "sku-spoon"]}``), in the order given.

    Products already in the cart, and products without a price in the cart's currency, are never suggested.
    Ties are broken by ``item_id``, so the same cart always gets the same suggestions.

    >>> import anyio
    >>> from recoverkit.cart import CartLine, CartSnapshot
    >>> catalogue = StaticCatalogue([
    ...     Product(item_id="mug-xl", name="XL mug", category="mugs", prices={"EUR": 2500}),
    ...     Product(item_id="mug", name="Mug", category="mugs", prices={"EUR": 1500}),
    ... ])
    >>> cart = CartSnapshot(cart_key="c", session_id="s", customer_id=None, currency="EUR",
    ...                     lines=(CartLine(item_id="mug-xl", price=2500, quantity=1),), value=2500, shipping=None,
    ...                     step=0, started_at=0.0, checkout_at=None, last_at=0.0)
    >>> [s.name for s in anyio.run(lambda: catalogue.suggest(cart, kind="substitute", limit=3))]
    ['Mug']
    """

    def __init__(self, products: Iterable[Product], *, complements: Mapping[str, Sequence[str]] | None = None) -> None:
        self._products: dict[str, Product] = {}
        for product in products:
            if product.item_id in self._products:
                raise ValueError(f"StaticCatalogue: expected unique item ids, got {product.item_id!r} twice")
            for currency, price in product.prices.items():
                if not (isinstance(price, int) and not isinstance(price, bool) and price >= 0):
                    raise ValueError(
                        f"StaticCatalogue: product {product.item_id!r} price in {currency}: expected integer minor "
                        f"units >= 0, got {price!r}"
                    )
            self._products[product.item_id] = product
        self._complements = {item: tuple(others) for item, others in (complements or {}).items()}
        #: How many times ``suggest`` was called, for tests.
        self.calls = 0

    async def suggest(self, cart: CartSnapshot, *, kind: SuggestKind, limit: int) -> Sequence[Suggestion]:
        """See :class:`StaticCatalogue`."""
        self.calls += 1
        return self.suggest_sync(cart, kind=kind, limit=limit)

    def suggest_sync(self, cart: CartSnapshot, *, kind: SuggestKind, limit: int) -> list[Suggestion]:
        """What :meth:`suggest` answers, without awaiting."""
        if limit < 1 or not cart.lines:
            return []
        in_cart = {line.item_id for line in cart.lines}
        currency = cart.currency
        if kind == "substitute":
            candidates = self._substitutes(cart.lines, currency)
        else:
            candidates = self._complements_of(cart.lines)
        found: list[Suggestion] = []
        for product in candidates:
            price = product.prices.get(currency) if currency is not None else None
            if price is None or product.item_id in in_cart or any(s.item_id == product.item_id for s in found):
                continue
            found.append(
                Suggestion(item_id=product.item_id, name=product.name, price=price, currency=currency, url=product.url)
            )
            if len(found) == limit:
                break
        return found

    def _substitutes(self, lines: Sequence[CartLine], currency: str | None) -> list[Product]:
        top = max(lines, key=lambda line: (line.price, line.item_id))
        known = self._products.get(top.item_id)
        category = top.category if top.category is not None else (known.category if known else None)
        if category is None or currency is None:
            return []
        cheaper = [
            p for p in self._products.values()
            if p.category == category and p.prices.get(currency, top.price) < top.price
        ]  # fmt: skip
        return sorted(cheaper, key=lambda p: (-p.prices[currency], p.item_id))

    def _complements_of(self, lines: Sequence[CartLine]) -> list[Product]:
        ordered = sorted(lines, key=lambda line: (-line.price, line.item_id))
        return [
            self._products[other]
            for line in ordered
            for other in self._complements.get(line.item_id, ())
            if other in self._products
        ]
