"""A small Flask shop instrumented with recoverkit, the way docs/flask.md tells a shop to do it.

Run it (from the repository root, with recoverkit and Flask installed):

    python examples/flask_shop/app.py          # or: flask --app examples/flask_shop/app.py run

then open http://127.0.0.1:5000, put something in the cart, start the checkout (give an e-mail address and tick
the box), and leave. About 30 seconds later the first recovery e-mail is printed on the console and shown at
http://127.0.0.1:5000/outbox, with a link that brings the cart back. See README.md beside this file.

What is demo-only: the waits are seconds instead of hours; carts live in a dict in this process (a shop keeps
them in its database); the secrets below are published in this file; the "e-mail provider" is DemoOutbox, which
prints. Everything recoverkit-related is what a real shop would write.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from flask import Flask, abort, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

import recoverkit
from recoverkit.contrib.flask import Recoverkit, current_session_id, restore_cart, tracker
from recoverkit.errors import LinkError
from recoverkit.offers import redeem
from recoverkit.onsite import OnsiteChannel

SHOP_NAME = "The Example Shop"
CURRENCY = "EUR"
PORT = int(os.environ.get("SHOP_PORT", "5000"))
#: Where restore links point: the shop's own configured address, never the Host header of some request.
BASE_URL = os.environ.get("SHOP_BASE_URL", f"http://127.0.0.1:{PORT}")

#: Published in this file, so worthless: a real shop generates each with
#: ``python -c 'import secrets; print(secrets.token_urlsafe(48))'`` and keeps it out of the code.
DEV_ONLY_SECRETS = {
    "RECOVERKIT_LINK_SECRET": "dev-only-link-secret-published-in-the-example-do-not-use",
    "RECOVERKIT_CODE_SECRET": "dev-only-code-secret-published-in-the-example-do-not-use",
}


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price: Decimal


PRODUCTS = {
    p.sku: p
    for p in (
        Product("MUG-1", "Enamel mug", Decimal("12.50")),
        Product("TEE-1", "Organic cotton T-shirt", Decimal("24.00")),
        Product("TOTE-1", "Canvas tote bag", Decimal("9.90")),
        Product("CAP-1", "Wool cap", Decimal("19.00")),
    )
}
#: Shipping options: label and cost. Express costs over 10% of a small cart: recoverkit calls that a shipping shock.
SHIPPING = {
    "standard": ("Standard, 3-5 days", Decimal("4.90")),
    "express": ("Express, next day", Decimal("9.90")),
}
#: Any card number ending in this is declined, to try the payment-failed flow.
DECLINED_CARD_SUFFIX = "0002"

#: Recovery flows with demo waits (seconds): abandoned after 20 s without activity; a reminder 10 s later, and
#: 40 s later a last call with a 10% code. A failed payment gets its own flow, 15 s after the failure.
ABANDON_AFTER = 20.0
RECOVERY_CONFIG: dict[str, Any] = {
    "abandon_after": ABANDON_AFTER,
    "payment_failed_after": 0,  # demo: at once (by default a shop waits 15 minutes for the shopper's own retry)
    "offers": {
        "ten-percent": {"kind": "discount", "name": "10% off your cart", "percent": 10, "valid_for": 3600},
        "pay-another-way": {"kind": "payment_help", "name": "Pay by bank transfer or PayPal instead"},
        "welcome-back": {"kind": "discount", "name": "10% off, today only", "percent": 10, "valid_for": 3600},
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
                # On-site, with the last call: waits for the shopper's next visit, for an hour (a banner with a
                # code, shown once; docs/onsite.md). It needs no address, so an anonymous shopper gets it too.
                {"delay": 40, "channel": "onsite", "template": "cart-reminder", "offer": "welcome-back"},
            ],
        },
    ],
    "links": {"base_url": f"{BASE_URL}/cart/restore", "max_age": 86_400},
}


# -- carts: server-side, keyed by an id kept in the Flask session ------------------------------------------------


@dataclass
class Cart:
    id: str
    lines: dict[str, int] = field(default_factory=dict)  # sku -> quantity
    email: str | None = None
    marketing: bool = False
    shipping: str | None = None
    order: str | None = None
    discount: Decimal = Decimal("0.00")

    def rows(self) -> list[tuple[Product, int, Decimal]]:
        return [(PRODUCTS[sku], qty, PRODUCTS[sku].price * qty) for sku, qty in self.lines.items()]

    @property
    def subtotal(self) -> Decimal:
        return sum((total for _, _, total in self.rows()), Decimal("0.00"))

    @property
    def shipping_cost(self) -> Decimal:
        return SHIPPING[self.shipping][1] if self.shipping else Decimal("0.00")

    @property
    def total(self) -> Decimal:
        return self.subtotal + self.shipping_cost - self.discount

    def items(self) -> list[dict[str, Any]]:
        """The cart's lines as recoverkit events carry them (prices as strings: amounts are never floats)."""
        return [item(product, qty) for product, qty, _ in self.rows()]


def item(product: Product, quantity: int = 1) -> dict[str, Any]:
    return {"item_id": product.sku, "name": product.name, "price": str(product.price), "quantity": quantity}


class Carts:
    """Carts in a dict of this process: enough for the demo's one process. A shop keeps them in its database,
    so that any worker process (and the restore link, days later) finds them."""

    def __init__(self) -> None:
        self._carts: dict[str, Cart] = {}
        self._lock = threading.Lock()

    def new(self) -> Cart:
        # A random id: it travels in restore links, readable, so it must say nothing about the shopper.
        cart = Cart(id=secrets.token_urlsafe(12))
        with self._lock:
            self._carts[cart.id] = cart
        return cart

    def get(self, cart_id: str) -> Cart:
        with self._lock:
            return self._carts[cart_id]  # KeyError: no such cart


# -- the "e-mail provider" -----------------------------------------------------------------------------------------


class DemoOutbox:
    """A recoverkit channel adapter for the demo: renders each message with recoverkit's built-in templates, prints
    it and keeps the last 20 for the /outbox page. A shop's adapter would hand the rendered e-mail to its provider
    (recoverkit.SmtpChannel does that over SMTP)."""

    def __init__(self, stream: Any = None) -> None:
        self.templates = recoverkit.Templates(variables={"shop_name": SHOP_NAME})
        self.sent: deque[tuple[recoverkit.Message, recoverkit.Rendered]] = deque(maxlen=20)
        self._stream = stream if stream is not None else sys.stdout

    def check_templates(self, names: Iterable[str]) -> None:
        self.templates.check(names)  # the engine calls this at start-up: a broken template fails then

    async def send(self, message: recoverkit.Message) -> None:
        rendered = self.templates.render(message.template, message, kind="email")
        self.sent.appendleft((message, rendered))
        print(f"\n--- recovery e-mail {message.key} ---\nSubject: {rendered.subject}\n\n{rendered.text}\n---",
              file=self._stream, flush=True)


def _apply_code(cart: Cart) -> None:
    """Redeem the code the shopper brought (the on-site banner's, or one from an e-mail) for ``cart``'s order.

    recoverkit checks that the code is this shopper's (bound to their session or customer id), unexpired and
    unused; a code that is not valid is simply not applied."""
    code = session.pop("code", None)
    engine = rk.engine()
    if not code or engine is None:
        return
    cents = int(cart.subtotal * 100)  # the discount is on the items, not the shipping
    answer = redeem(code, book=engine.engine.coupons, cart_value=cents, currency=CURRENCY, order_id=cart.order or "",
                    client=request.remote_addr or "unknown", session_id=current_session_id())
    if answer.outcome == "valid":
        cart.discount = (Decimal(answer.discount) / 100).quantize(Decimal("0.01"))
        session["applied"] = f"Code {code} applied: -{cart.discount} EUR"


# -- the app ---------------------------------------------------------------------------------------------------------

rk = Recoverkit()
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """The shop. Without ``test_config`` it is the demo (dev-only secrets, the printing outbox); a test passes its
    own settings (``RECOVERKIT_CHANNELS``, ``RECOVERKIT_CLOCK``, ...) and sets the secrets itself."""
    app = Flask(__name__, root_path=str(Path(__file__).parent))
    outbox = DemoOutbox()
    # Deleted when the process exits: the demo's recoverkit state lasts one run, as it would in memory.
    scratch = tempfile.mkdtemp(prefix="example-shop-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    app.config.update(
        SECRET_KEY="dev-only-flask-secret-key",  # signs the Flask session cookie; a real shop's is secret
        RECOVERKIT_CONFIG=RECOVERY_CONFIG,
        RECOVERKIT_CHANNELS={"email": outbox},
        # On-site offers wait in the store, which every worker process (and host) must share: a file here, a
        # fresh one per run of the demo. A shop points this at its own file, or at its PostgreSQL URL.
        RECOVERKIT_STORE=os.environ.get("SHOP_STORE") or str(Path(scratch) / "rk.db"),
        # begin_checkout is recorded by recoverkit itself when the first checkout page loads:
        RECOVERKIT_CHECKOUT_PATHS={"/checkout/address": "begin_checkout"},
        # RECOVERKIT_TRACK_PAGE_VIEWS stays off here: a page view is activity, and watching /outbox in the same
        # browser would count as coming back to the cart (which stops its reminders).
    )
    if test_config is None:
        for name, value in DEV_ONLY_SECRETS.items():
            os.environ.setdefault(name, value)
    else:
        app.config.update(test_config)
    # The on-site channel renders its banner with the shop's name; a test may pass its own adapter.
    channels = dict(app.config["RECOVERKIT_CHANNELS"])
    channels.setdefault("onsite", OnsiteChannel(templates=recoverkit.Templates(variables={"shop_name": SHOP_NAME})))
    app.config["RECOVERKIT_CHANNELS"] = channels
    rk.init_app(app)  # validates the settings and builds the engine; its thread starts with the first event
    app.extensions["shop.carts"] = Carts()
    app.extensions["shop.outbox"] = outbox
    _routes(app)
    return app


def _carts(app: Flask) -> Carts:
    carts: Carts = app.extensions["shop.carts"]
    return carts


def _routes(app: Flask) -> None:
    carts = _carts(app)

    def current_cart(create: bool = False) -> Cart | None:
        cart_id = session.get("cart_id")
        if cart_id is not None:
            try:
                cart = carts.get(cart_id)
            except KeyError:
                cart = None
            if cart is not None and cart.order is None:
                return cart
        if not create:
            return None
        cart = carts.new()
        session["cart_id"] = cart.id
        return cart

    def cart_or_home() -> Cart:
        cart = current_cart()
        if cart is None or not cart.lines:
            abort(redirect(url_for("index")))  # nothing to check out
        return cart

    @app.get("/")
    def index() -> str:
        return render_template("index.html", products=PRODUCTS.values(), cart=current_cart())

    @app.get("/product/<sku>")
    def product(sku: str) -> str:
        found = PRODUCTS.get(sku) or abort(404)
        tracker.view_item([item(found)], currency=CURRENCY)
        return render_template("product.html", product=found, cart=current_cart())

    @app.post("/cart/add")
    def add_to_cart() -> Response:
        found = PRODUCTS.get(request.form.get("sku", "")) or abort(400)
        cart = current_cart(create=True)
        assert cart is not None
        cart.lines[found.sku] = cart.lines.get(found.sku, 0) + 1
        # cart_id: recovery is keyed on the shop's cart, so the restore link names it and an order placed from
        # another device still stops the messages.
        tracker.add_to_cart([item(found)], currency=CURRENCY, cart_id=cart.id)
        flash(f"{found.name} is in your cart.")
        return redirect(request.form.get("next") or url_for("cart_page"))

    @app.post("/cart/remove")
    def remove_from_cart() -> Response:
        cart = cart_or_home()
        sku = request.form.get("sku", "")
        quantity = cart.lines.pop(sku, 0)
        if quantity:
            tracker.remove_from_cart([item(PRODUCTS[sku], quantity)], currency=CURRENCY, cart_id=cart.id)
        return redirect(url_for("cart_page"))

    @app.get("/cart")
    def cart_page() -> str:
        cart = current_cart()
        if cart is not None and cart.lines:
            # The whole cart: after a restore on another device, recoverkit learns it from here.
            tracker.view_cart(cart.items(), currency=CURRENCY, cart_id=cart.id)
        return render_template("cart.html", cart=cart)

    @app.get("/cart/restore")
    def restore() -> Response | tuple[str, int]:
        try:
            cart = restore_cart(carts.get)  # checks ?t=..., loads the cart, records the visit
        except LinkError as error:
            return render_template("link_problem.html", reason=error.reason), 400
        except KeyError:
            return render_template("link_problem.html", reason="gone"), 404
        if cart.order is not None:
            return render_template("link_problem.html", reason="ordered", order=cart.order), 410
        session["cart_id"] = cart.id
        flash("Welcome back! Your cart is just as you left it.")
        return redirect(url_for("cart_page"))

    @app.get("/cart/apply-code")
    def apply_code() -> Response:
        """Where the on-site banner's button leads: the code is kept for the checkout, checked when paying."""
        code = request.args.get("code", "").strip()[:40]
        if code:
            session["code"] = code
            flash(f"Code {code} will be applied at checkout.")
        return redirect(url_for("cart_page"))

    @app.route("/checkout/address", methods=["GET", "POST"])
    def address() -> Response | str:
        cart = cart_or_home()
        error = None
        if request.method == "POST":
            email = request.form.get("email", "").strip()
            if not _EMAIL.fullmatch(email):
                error = "Please enter a valid e-mail address."
                tracker.form_error(form_field="email", error_code="invalid", cart_id=cart.id)  # never the value
            else:
                cart.email, cart.marketing = email, request.form.get("marketing") == "yes"
                tracker.identify(email=email)
                # Consent is the shopper's, per channel: unticking the box later withdraws it, which stops
                # whatever recoverkit had scheduled for this shopper on that channel.
                if cart.marketing:
                    tracker.consent(granted=["email"])
                else:
                    tracker.consent(withdrawn=["email"])
                return redirect(url_for("shipping"))
        return render_template("address.html", cart=cart, error=error)

    @app.route("/checkout/shipping", methods=["GET", "POST"])
    def shipping() -> Response | str:
        cart = cart_or_home()
        if cart.email is None:
            return redirect(url_for("address"))
        if request.method == "POST":
            option = request.form.get("shipping", "")
            if option in SHIPPING:
                cart.shipping = option
                tracker.add_shipping_info(shipping=str(SHIPPING[option][1]), shipping_tier=option,
                                          currency=CURRENCY, value=str(cart.subtotal), cart_id=cart.id)
                return redirect(url_for("payment"))
        return render_template("shipping.html", cart=cart, options=SHIPPING)

    @app.route("/checkout/payment", methods=["GET", "POST"])
    def payment() -> Response | tuple[str, int] | str:
        cart = cart_or_home()
        if cart.shipping is None:
            return redirect(url_for("shipping"))
        if request.method == "POST":
            card = re.sub(r"\D", "", request.form.get("card", ""))
            tracker.add_payment_info(payment_type="card", cart_id=cart.id)
            if len(card) < 12 or card.endswith(DECLINED_CARD_SUFFIX):
                # The card number itself goes nowhere near recoverkit.
                tracker.payment_failed(payment_type="card", error_code="card_declined", cart_id=cart.id)
                return render_template("payment.html", cart=cart, error="Your card was declined."), 402
            cart.order = f"EX-{secrets.randbelow(10**6):06d}"
            _apply_code(cart)
            tracker.purchase(transaction_id=cart.order, value=str(cart.total), shipping=str(cart.shipping_cost),
                             currency=CURRENCY, items=cart.items(), cart_id=cart.id)
            session.pop("cart_id", None)
            return redirect(url_for("order", number=cart.order))
        return render_template("payment.html", cart=cart, error=None, code=session.get("code"))

    @app.get("/order/<number>")
    def order(number: str) -> str:
        return render_template("order.html", number=number, applied=session.pop("applied", None))

    @app.get("/outbox")
    def outbox() -> str:
        """The demo's "mailbox": what recoverkit sent, newest first (a real shop has no such page)."""
        sent = list(app.extensions["shop.outbox"].sent)
        return render_template("outbox.html", sent=sent)


if __name__ == "__main__":
    shop = create_app()
    print(f"{SHOP_NAME} on {BASE_URL}: fill a cart, start the checkout, leave for half a minute, then open "
          f"{BASE_URL}/outbox", flush=True)
    shop.run(host="127.0.0.1", port=PORT)
