"""A small shop's events, written by hand, for the funnel and HTML report tests."""

from __future__ import annotations

from typing import Any

from helpers import T0

__all__ = ["EUR", "ITEM", "ev", "shop_events"]

EUR = {"currency": "EUR"}
ITEM = [{"item_id": "A", "price": "20.00"}]


def ev(kind: str, session: str, t: float, **fields: Any) -> dict[str, Any]:
    return {"event": kind, "session_id": session, "ts": T0 + t, **fields}


def shop_events() -> list[dict[str, Any]]:
    """Six sessions, by hand (times in seconds after T0):

    s1 mobile/newsletter, customer c1: every step, bought at 330.
    s2 desktop, anonymous: view 0, cart 100, checkout 400, payment fails at 500 and leaves.
    s3 mobile, anonymous: two product views, no cart.
    s4 desktop, c1 again (returning): straight to the cart at 1000 (no view_item), checkout 1100, a form error
       on the postal code at 1150, shipping 9.00 on a 20.00 cart at 1200, leaves.
    s5 tablet, anonymous: view 0, cart 50, leaves.
    s6: a page view at 5000, after every abandonment timer has run out.
    """
    return [
        ev("view_item", "s1", 0, customer_id="c1", device="mobile", source="newsletter", items=ITEM),
        ev("view_item", "s2", 0, device="desktop"),
        ev("view_item", "s3", 0, device="mobile"),
        ev("view_item", "s5", 0, device="tablet"),
        ev("view_item", "s3", 30),
        ev("add_to_cart", "s5", 50, items=ITEM, **EUR),
        ev("add_to_cart", "s1", 60, items=ITEM, **EUR),
        ev("add_to_cart", "s2", 100, items=ITEM, **EUR),
        ev("begin_checkout", "s1", 120),
        ev("add_shipping_info", "s1", 180, shipping="0.00"),
        ev("add_payment_info", "s1", 300),
        ev("purchase", "s1", 330, value="20.00", transaction_id="o-1", **EUR),
        ev("begin_checkout", "s2", 400),
        ev("payment_failed", "s2", 500, error_code="card_declined"),
        ev("add_to_cart", "s4", 1000, customer_id="c1", device="desktop", items=ITEM, **EUR),
        ev("begin_checkout", "s4", 1100),
        ev("form_error", "s4", 1150, form_field="postal_code"),
        ev("add_shipping_info", "s4", 1200, shipping="9.00"),
        ev("page_view", "s6", 5000),
    ]
