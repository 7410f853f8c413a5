"""The shop's views, instrumented with recoverkit the way docs/django.md describes: ``get_tracker(request)`` where
the shop knows what happened, always with the shop's own ``cart_id``, and ``restore_cart`` in the restore view.
Nothing else is needed: the middleware keeps the session cookie, knows logged-in customers and records
``begin_checkout`` when the first checkout page loads (``CHECKOUT_PATHS`` in settings.py)."""

from __future__ import annotations

import re
import secrets

from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from recoverkit.contrib.django import get_tracker
from recoverkit.contrib.django.views import restore_cart
from recoverkit.errors import LinkError

from .models import CURRENCY, SHIPPING, Cart, CartLine, Order, Product
from .outbox import read_outbox

#: Any card number ending in this is declined, to try the payment-failed flow.
DECLINED_CARD_SUFFIX = "0002"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_CART_KEY = "cart_id"


def current_cart(request: HttpRequest, *, create: bool = False) -> Cart | None:
    """The shopper's open cart (its id is in the Django session, so guests have one too)."""
    cart_id = request.session.get(_CART_KEY)
    cart = Cart.objects.filter(pk=cart_id, order__isnull=True).first() if cart_id else None
    if cart is None and create:
        cart = Cart.objects.create()
        request.session[_CART_KEY] = cart.pk
    return cart


def _cart_or_none(request: HttpRequest) -> Cart | None:
    cart = current_cart(request)
    return cart if cart is not None and cart.lines.exists() else None


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "storefront/index.html", {"products": Product.objects.all(), "cart": current_cart(request)})


@require_GET
def product(request: HttpRequest, sku: str) -> HttpResponse:
    found = get_object_or_404(Product, pk=sku)
    get_tracker(request).view_item([found.item()], currency=CURRENCY)
    return render(request, "storefront/product.html", {"product": found})


@require_POST
def add_to_cart(request: HttpRequest) -> HttpResponse:
    found = Product.objects.filter(pk=request.POST.get("sku", "")).first()
    if found is None:
        return HttpResponse("No such product.", status=400)
    with transaction.atomic():
        cart = current_cart(request, create=True)
        assert cart is not None
        line, created = CartLine.objects.get_or_create(cart=cart, product=found)
        if not created:
            line.quantity += 1
            line.save(update_fields=["quantity"])
        cart.save(update_fields=["updated_at"])
    # cart_id: recovery is keyed on the shop's cart, so the restore link names it and an order placed from another
    # device still stops the messages.
    get_tracker(request).add_to_cart([found.item()], currency=CURRENCY, cart_id=cart.pk)
    messages.success(request, f"{found.name} is in your cart.")
    return redirect("cart")


@require_POST
def remove_from_cart(request: HttpRequest) -> HttpResponse:
    cart = current_cart(request)
    if cart is not None:
        line = cart.lines.select_related("product").filter(product_id=request.POST.get("sku", "")).first()
        if line is not None:
            line.delete()
            get_tracker(request).remove_from_cart([line.product.item(line.quantity)], currency=CURRENCY,
                                                  cart_id=cart.pk)
    return redirect("cart")


@require_GET
def cart_page(request: HttpRequest) -> HttpResponse:
    cart = _cart_or_none(request)
    if cart is not None:
        # The whole cart: after a restore on another device, recoverkit learns it from here.
        get_tracker(request).view_cart(cart.items(), currency=CURRENCY, cart_id=cart.pk)
    return render(request, "storefront/cart.html", {"cart": cart, "rows": cart.rows() if cart else []})


@require_GET
def restore(request: HttpRequest) -> HttpResponse:
    """The cart-restore view the links in recovery messages point to (``/cart/restore?t=...``)."""
    try:
        cart = restore_cart(request, lambda key: Cart.objects.get(pk=key))  # checks ?t=, loads, records the visit
    except LinkError as error:  # error.reason: "malformed", "tampered" or "expired"
        return render(request, "storefront/link_problem.html", {"reason": error.reason}, status=400)
    except Cart.DoesNotExist:
        return render(request, "storefront/link_problem.html", {"reason": "gone"}, status=404)
    order = Order.objects.filter(cart=cart).first()
    if order is not None:
        return render(request, "storefront/link_problem.html", {"reason": "ordered", "order": order}, status=410)
    request.session[_CART_KEY] = cart.pk
    messages.success(request, "Welcome back! Your cart is just as you left it.")
    return redirect("cart")


@require_http_methods(["GET", "POST"])
def address(request: HttpRequest) -> HttpResponse:
    cart = _cart_or_none(request)
    if cart is None:
        return redirect("index")  # nothing to check out
    tracker = get_tracker(request)
    error = None
    if request.method == "POST":
        email = request.POST.get("email", "").strip()
        if not _EMAIL.fullmatch(email):
            error = "Please enter a valid e-mail address."
            tracker.form_error(form_field="email", error_code="invalid", cart_id=cart.pk)  # the field, never its value
        else:
            cart.email, cart.marketing = email, request.POST.get("marketing") == "yes"
            cart.save(update_fields=["email", "marketing", "updated_at"])
            tracker.identify(email=email)
            # Consent is the shopper's, per channel: unticking the box later withdraws it, which stops whatever
            # recoverkit had scheduled for this shopper on that channel.
            if cart.marketing:
                tracker.consent(granted=["email"])
            else:
                tracker.consent(withdrawn=["email"])
            return redirect("checkout-shipping")
    return render(request, "storefront/address.html", {"cart": cart, "error": error}, status=400 if error else 200)


@require_http_methods(["GET", "POST"])
def shipping(request: HttpRequest) -> HttpResponse:
    cart = _cart_or_none(request)
    if cart is None:
        return redirect("index")
    if not cart.email:
        return redirect("checkout-address")
    if request.method == "POST":
        option = request.POST.get("shipping", "")
        if option in SHIPPING:
            cart.shipping = option
            cart.save(update_fields=["shipping", "updated_at"])
            get_tracker(request).add_shipping_info(shipping=str(SHIPPING[option][1]), shipping_tier=option,
                                                   currency=CURRENCY, value=str(cart.subtotal), cart_id=cart.pk)
            return redirect("checkout-payment")
    options = [(key, label, cost) for key, (label, cost) in SHIPPING.items()]
    return render(request, "storefront/shipping.html", {"cart": cart, "options": options})


@require_http_methods(["GET", "POST"])
def payment(request: HttpRequest) -> HttpResponse:
    cart = _cart_or_none(request)
    if cart is None:
        return redirect("index")
    if not cart.shipping:
        return redirect("checkout-shipping")
    context = {"cart": cart, "rows": cart.rows(), "error": None}
    if request.method == "POST":
        tracker = get_tracker(request)
        card = re.sub(r"\D", "", request.POST.get("card", ""))
        tracker.add_payment_info(payment_type="card", cart_id=cart.pk)
        if len(card) < 12 or card.endswith(DECLINED_CARD_SUFFIX):
            # The card number itself goes nowhere near recoverkit.
            tracker.payment_failed(payment_type="card", error_code="card_declined", cart_id=cart.pk)
            context["error"] = "Your card was declined."
            return render(request, "storefront/payment.html", context, status=402)
        placed = Order.objects.create(number=f"EX-{secrets.randbelow(10**8):08d}", cart=cart, total=cart.total,
                                      shipping_cost=cart.shipping_cost)
        # Stops every recovery message for this cart, and for this shopper's other carts.
        tracker.purchase(transaction_id=placed.number, value=str(placed.total), shipping=str(placed.shipping_cost),
                         currency=CURRENCY, items=cart.items(), cart_id=cart.pk)
        request.session.pop(_CART_KEY, None)
        return redirect("order", number=placed.number)
    return render(request, "storefront/payment.html", context)


@require_GET
def order(request: HttpRequest, number: str) -> HttpResponse:
    placed = Order.objects.filter(pk=number).first()
    if placed is None:
        raise Http404("no such order")
    return render(request, "storefront/order.html", {"order": placed})


@require_GET
def outbox(request: HttpRequest) -> HttpResponseBase:
    """The demo's mailbox: what recoverkit sent, newest first (a real shop has no such page)."""
    return render(request, "storefront/outbox.html", {"sent": read_outbox()})
