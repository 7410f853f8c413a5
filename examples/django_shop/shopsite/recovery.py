"""The shop's recovery flows: what goes into ``settings.RECOVERKIT["CONFIG"]``.

Demo waits, in seconds: a cart is abandoned after 20 s without activity; a reminder goes 10 s later, and 40 s after
the abandonment a last call with a 10% code. A failed payment gets its own flow, 15 s after the failure. A shop waits
30 minutes before a cart counts as abandoned and an hour or more before the first message (docs/configuration.md).
"""

from __future__ import annotations

import os
from typing import Any

PORT = int(os.environ.get("SHOP_PORT", "8000"))
#: Where restore links point: the shop's own configured address, never the Host header of some request.
BASE_URL = os.environ.get("SHOP_BASE_URL", f"http://127.0.0.1:{PORT}")
ABANDON_AFTER = 20.0

RECOVERY_CONFIG: dict[str, Any] = {
    "abandon_after": ABANDON_AFTER,
    "payment_failed_after": 0,  # demo: at once (by default a shop waits 15 minutes for the shopper's own retry)
    "offers": {
        "ten-percent": {"kind": "discount", "name": "10% off your cart", "percent": 10, "valid_for": 3600},
        "pay-another-way": {"kind": "payment_help", "name": "Pay by bank transfer or PayPal instead"},
    },
    "flows": [
        {
            "name": "payment-failed",
            "when": {"triggers": ["payment_failed"]},
            "steps": [{"delay": 15, "channel": "email", "template": "cart-reminder", "offer": "pay-another-way"}],
        },
        {
            "name": "cart-recovery",
            "steps": [
                {"delay": 10, "channel": "email", "template": "cart-reminder"},
                {"delay": 40, "channel": "email", "template": "cart-last-call", "offer": "ten-percent"},
            ],
        },
    ],
    "links": {"base_url": f"{BASE_URL}/cart/restore", "max_age": 86_400},
}
