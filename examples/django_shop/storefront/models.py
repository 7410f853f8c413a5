"""Products, carts and orders. Carts are rows, keyed by a random id that the shop sends to recoverkit as
``cart_id``: the restore link carries it, and the restore view loads the cart by it, on any device."""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

from django.db import models

CURRENCY = "EUR"
#: Shipping options: label and cost. Express costs over 10% of a small cart: recoverkit calls that a shipping shock.
SHIPPING = {
    "standard": ("Standard, 3-5 days", Decimal("4.90")),
    "express": ("Express, next day", Decimal("9.90")),
}


def new_cart_id() -> str:
    # Random: the id travels in restore links, readable, so it must say nothing about the shopper.
    return secrets.token_urlsafe(12)


class Product(models.Model):
    sku = models.CharField(primary_key=True, max_length=32)
    name = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    def item(self, quantity: int = 1) -> dict[str, Any]:
        """This product as a line of a recoverkit event (prices as strings: amounts are never floats)."""
        return {"item_id": self.sku, "name": self.name, "price": str(self.price), "quantity": quantity}


class Cart(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=new_cart_id, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    email = models.EmailField(blank=True)
    marketing = models.BooleanField(default=False)
    shipping = models.CharField(max_length=16, blank=True, choices=[(k, v[0]) for k, v in SHIPPING.items()])

    def __str__(self) -> str:
        return f"cart {self.id}"

    def rows(self) -> list[tuple[Product, int, Decimal]]:
        return [(line.product, line.quantity, line.product.price * line.quantity)
                for line in self.lines.select_related("product").order_by("product__name")]

    @property
    def subtotal(self) -> Decimal:
        return sum((total for _, _, total in self.rows()), Decimal("0.00"))

    @property
    def shipping_cost(self) -> Decimal:
        return SHIPPING[self.shipping][1] if self.shipping else Decimal("0.00")

    @property
    def total(self) -> Decimal:
        return self.subtotal + self.shipping_cost

    def items(self) -> list[dict[str, Any]]:
        """The whole cart as recoverkit events carry it."""
        return [product.item(quantity) for product, quantity, _ in self.rows()]


class CartLine(models.Model):
    cart = models.ForeignKey(Cart, related_name="lines", on_delete=models.CASCADE)
    product = models.ForeignKey(Product, on_delete=models.PROTECT)
    quantity = models.PositiveIntegerField(default=1)

    class Meta:
        constraints = (models.UniqueConstraint(fields=("cart", "product"), name="one_line_per_product"),)


class Order(models.Model):
    number = models.CharField(primary_key=True, max_length=16)
    cart = models.OneToOneField(Cart, related_name="order", on_delete=models.PROTECT)
    total = models.DecimalField(max_digits=10, decimal_places=2)
    shipping_cost = models.DecimalField(max_digits=8, decimal_places=2)
    placed_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"order {self.number}"
