"""The Django benchmark shop (see ``shop.py`` for its endpoints and events) in one module, served by gunicorn as
``django_app:application`` from this folder. With ``BENCH_RECOVERKIT=1`` it is instrumented as docs/django.md says
(``recoverkit.contrib.django`` installed, ``RecoverkitMiddleware`` last, ``get_tracker(request)`` in the views);
with ``0`` it is the same shop without recoverkit.

The middleware is what a small shop keeps: sessions (signed cookies, so any worker reads the cart) and
``CommonMiddleware``. CSRF protection is left out: the load generator posts forms without fetching a token first.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import django
import shop
from django.conf import settings

_PAGES = {
    "product.html": shop.PRODUCT_PAGE,
    "cart.html": shop.CART_PAGE,
    "checkout.html": shop.CHECKOUT_PAGE,
    "order.html": shop.ORDER_PAGE,
}

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-only-django-secret-key-published-here-do-not-use",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["recoverkit.contrib.django"] if shop.RECOVERKIT else [],
    MIDDLEWARE=[
        f"{__name__}.worker_header",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        *(["recoverkit.contrib.django.middleware.RecoverkitMiddleware"] if shop.RECOVERKIT else []),
    ],
    SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
    TEMPLATES=[
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            # Compiled once and cached, as a shop's template files are.
            "OPTIONS": {
                "loaders": [
                    ("django.template.loaders.cached.Loader", [("django.template.loaders.locmem.Loader", _PAGES)])
                ]
            },
        }
    ],
    DATABASES={},
    USE_TZ=True,
    **(
        {"RECOVERKIT": {"STORE": shop.store_path(), "CHANNELS": {"email": shop.NullChannel}, "TRACK_PAGE_VIEWS": True}}
        if shop.RECOVERKIT
        else {}
    ),
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402 - after settings.configure()
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse  # noqa: E402
from django.shortcuts import render  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.http import require_GET, require_POST  # noqa: E402

if shop.RECOVERKIT:
    from recoverkit.contrib.django import get_engine, get_tracker


def worker_header(get_response: Any) -> Any:
    """Middleware: which worker served the request (the load generator checks that both have)."""
    pid = str(os.getpid())  # built in each worker, after gunicorn forked it

    def middleware(request: HttpRequest) -> HttpResponse:
        response: HttpResponse = get_response(request)
        response["X-Worker"] = pid
        return response

    return middleware


def _lines(request: HttpRequest) -> dict[str, int]:
    lines: dict[str, int] = request.session.get("lines", {})
    return lines


@require_GET
def product(request: HttpRequest, sku: str) -> HttpResponse:
    if sku not in shop.PRODUCTS:
        return HttpResponse("No such product.", status=404)
    name, price = shop.PRODUCTS[sku]
    if shop.RECOVERKIT:
        get_tracker(request).view_item([shop.item(sku)], currency=shop.CURRENCY)
    context = {"sku": sku, "name": name, "price": price, "count": sum(_lines(request).values())}
    return render(request, "product.html", context)


@require_POST
def add_to_cart(request: HttpRequest) -> HttpResponse:
    sku = request.POST.get("sku", "")
    if sku not in shop.PRODUCTS:
        return HttpResponseBadRequest("No such product.")
    cart = dict(_lines(request))
    cart[sku] = cart.get(sku, 0) + 1
    request.session["lines"] = cart
    cart_id = request.session.setdefault("cart_id", secrets.token_urlsafe(9))
    if shop.RECOVERKIT:
        shop.track_added(get_tracker(request), sku, cart, cart_id)
    return render(request, "cart.html", {"rows": shop.cart_rows(cart), "subtotal": shop.subtotal(cart)})


@require_POST
def checkout(request: HttpRequest) -> HttpResponse:
    cart, cart_id = _lines(request), request.session.get("cart_id")
    email, option = request.POST.get("email", ""), request.POST.get("shipping", "")
    if not cart or "@" not in email or option not in shop.SHIPPING:
        return HttpResponseBadRequest("Nothing to check out.")
    request.session["email"], request.session["shipping"] = email, option
    subtotal = shop.subtotal(cart)
    if shop.RECOVERKIT:
        shop.track_checkout(get_tracker(request), cart, cart_id, email, option)
    total = subtotal + shop.SHIPPING[option]
    return render(request, "checkout.html", {"email": email, "shipping": option, "total": total})


@require_POST
def purchase(request: HttpRequest) -> HttpResponse:
    cart, cart_id, option = _lines(request), request.session.get("cart_id"), request.session.get("shipping")
    if not cart or option not in shop.SHIPPING:
        return HttpResponseBadRequest("Nothing to pay for.")
    shipping = shop.SHIPPING[option]
    total = shop.subtotal(cart) + shipping
    number = f"B-{secrets.randbelow(10**9):09d}"
    if shop.RECOVERKIT:
        shop.track_purchase(get_tracker(request), cart, cart_id, number, total, option)
    request.session.flush()
    return render(request, "order.html", {"number": number, "total": total})


@require_GET
def stats(request: HttpRequest) -> HttpResponse:
    return JsonResponse(shop.engine_figures(get_engine() if shop.RECOVERKIT else None))


urlpatterns = [
    path("product/<str:sku>", product),
    path("cart/add", add_to_cart),
    path("checkout", checkout),
    path("checkout/purchase", purchase),
    path("_bench/stats", stats),
]
application = get_wsgi_application()
