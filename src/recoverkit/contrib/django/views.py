"""The cart-restore helper a shop's restore view calls: :func:`restore_cart`.

::

    from recoverkit.contrib.django.views import restore_cart
    from recoverkit.errors import LinkError

    def restore(request):
        try:
            cart = restore_cart(request, lambda key: Cart.objects.get(pk=key, order__isnull=True))
        except LinkError as error:         # error.reason: "malformed", "tampered" or "expired"
            return render(request, "link_problem.html", {"reason": error.reason}, status=400)
        except Cart.DoesNotExist:
            return render(request, "link_problem.html", {"reason": "gone"}, status=404)
        request.session["cart_id"] = cart.pk
        return redirect("cart")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ...integration import LINK_PARAMETER
from ...integration import restore_cart as shared_restore_cart
from ._state import get_state
from .tracking import get_tracker

__all__ = ["restore_cart"]

T = TypeVar("T")


def restore_cart(request: Any, load_cart: Callable[[str], T], token: str | None = None) -> T:
    """Verify the link's token (``request.GET["t"]`` unless given), return ``load_cart(cart_key)`` and record the
    visit (a ``page_view`` with ``page_type="cart_restore"`` and the link's ``cart_id``) with the request's tracker.

    Raises :class:`~recoverkit.errors.LinkError` (``error.reason``: ``"malformed"`` (no token too),
    ``"tampered"`` or ``"expired"``) before ``load_cart`` is called, for the view to answer with a friendly page;
    whatever ``load_cart`` raises (``Cart.DoesNotExist``) goes through, and nothing is recorded then; and
    :class:`~recoverkit.errors.ConfigError` when ``[links] base_url`` is not configured. Links are built from the
    configured ``base_url`` only, never from the request's ``Host`` header, and their expiry is judged on the
    engine's clock (``RECOVERKIT["CLOCK"]``, else the wall clock), the one they were built on.

    In an async view, call it through ``sync_to_async`` when ``load_cart`` queries the database.
    """
    state = get_state()
    if token is None:
        token = request.GET.get(LINK_PARAMETER)
    return shared_restore_cart(state.links, token, load_cart, tracker=get_tracker(request), now=state.clock.now())
