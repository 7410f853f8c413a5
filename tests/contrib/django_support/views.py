"""Small views for the middleware's tests: each does one thing with the request's tracker."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model, login, logout
from django.http import HttpRequest, HttpResponse, JsonResponse

from recoverkit.contrib.django import aget_tracker, get_tracker, track
from recoverkit.contrib.django.views import restore_cart
from recoverkit.errors import LinkError

CART = [{"item_id": "SKU-1", "price": "35.79", "quantity": 1}]
#: The carts the /t/restore view can load.
CARTS = {"cart-7": ["SKU-1"]}


def sid(request: HttpRequest) -> JsonResponse:
    tracker = get_tracker(request)
    return JsonResponse({"session_id": tracker.session_id, "customer_id": tracker.customer_id})


def add(request: HttpRequest) -> JsonResponse:
    kept = get_tracker(request).add_to_cart(CART, currency="EUR", cart_id=request.GET.get("cart"))
    return JsonResponse({"kept": kept})


def idle(request: HttpRequest) -> HttpResponse:
    return HttpResponse("<p>nothing tracked here</p>")


def checkout(request: HttpRequest) -> HttpResponse:
    return HttpResponse("<h1>checkout</h1>")


def api(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"lines": []})


def missing(request: HttpRequest) -> HttpResponse:
    return HttpResponse("gone", status=404)


def moved(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status=302, headers={"Location": "/"})


def broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the shop's own bug")


def log_in(request: HttpRequest, user_id: int) -> HttpResponse:
    login(request, get_user_model().objects.get(pk=user_id), backend="django.contrib.auth.backends.ModelBackend")
    return HttpResponse("welcome")


def log_out(request: HttpRequest) -> HttpResponse:
    logout(request)
    return HttpResponse("goodbye")


def shop(request: HttpRequest, customer: str) -> JsonResponse:
    """A consenting, identified shopper with a cart, in one request."""
    tracker = get_tracker(request)
    tracker.identify(customer, email=f"{customer}@example.com")
    tracker.consent(granted=["email"])
    track(request, "add_to_cart", items=[{"item_id": "SKU-1", "price": "9.90"}], currency="EUR",
          cart_id=f"cart-{customer}")
    return JsonResponse({"session_id": tracker.session_id})


def restore(request: HttpRequest) -> JsonResponse:
    try:
        return JsonResponse({"lines": restore_cart(request, CARTS.__getitem__)})
    except LinkError as error:
        return JsonResponse({"problem": error.reason}, status=400)


async def async_add(request: HttpRequest) -> JsonResponse:
    tracker = await aget_tracker(request)
    kept = tracker.add_to_cart(CART, currency="EUR", cart_id=request.GET.get("cart"))
    return JsonResponse({"kept": kept, "session_id": tracker.session_id, "customer_id": tracker.customer_id})


async def async_sid(request: HttpRequest) -> JsonResponse:
    tracker = await aget_tracker(request)
    return JsonResponse({"session_id": tracker.session_id, "customer_id": tracker.customer_id})


async def async_guess(request: HttpRequest) -> JsonResponse:
    """An async view that forgets aget_tracker: its event is a guest's, and nothing fails."""
    tracker: Any = get_tracker(request)
    kept = tracker.add_to_cart(CART, currency="EUR")
    return JsonResponse({"kept": kept, "customer_id": tracker.customer_id})


async def async_checkout(request: HttpRequest) -> HttpResponse:
    return HttpResponse("<h1>checkout</h1>")
