"""The Flask benchmark shop (see ``shop.py`` for its endpoints and events), served by gunicorn as
``flask_app:create_app()`` from this folder. With ``BENCH_RECOVERKIT=1`` it is instrumented as docs/flask.md says
(the ``Recoverkit`` extension, ``tracker`` in the views); with ``0`` it is the same shop without recoverkit.
"""

from __future__ import annotations

import os
import secrets

import shop
from flask import Flask, abort, jsonify, render_template, request, session
from flask.typing import ResponseReturnValue
from jinja2 import DictLoader
from werkzeug.wrappers import Response

if shop.RECOVERKIT:
    from recoverkit.contrib.flask import Recoverkit, tracker

    rk = Recoverkit()


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "bench-only-flask-secret-key"  # signs the session cookie that holds the cart
    # Loaded templates are compiled once and cached, as a shop's template files are.
    app.jinja_loader = DictLoader(
        {
            "product.html": shop.PRODUCT_PAGE,
            "cart.html": shop.CART_PAGE,
            "checkout.html": shop.CHECKOUT_PAGE,
            "order.html": shop.ORDER_PAGE,
        }
    )
    if shop.RECOVERKIT:
        app.config.update(
            RECOVERKIT_STORE=shop.store_path(),
            RECOVERKIT_CHANNELS={"email": shop.NullChannel()},
            RECOVERKIT_TRACK_PAGE_VIEWS=True,
        )
        rk.init_app(app)
    _routes(app)
    return app


def _routes(app: Flask) -> None:
    tracking = shop.RECOVERKIT

    @app.after_request
    def worker_header(response: Response) -> Response:
        response.headers["X-Worker"] = str(os.getpid())
        return response

    def lines() -> dict[str, int]:
        cart: dict[str, int] = session.get("lines", {})
        return cart

    @app.get("/product/<sku>")
    def product(sku: str) -> ResponseReturnValue:
        if sku not in shop.PRODUCTS:
            abort(404)
        name, price = shop.PRODUCTS[sku]
        if tracking:
            tracker.view_item([shop.item(sku)], currency=shop.CURRENCY)
        return render_template("product.html", sku=sku, name=name, price=price, count=sum(lines().values()))

    @app.post("/cart/add")
    def add_to_cart() -> ResponseReturnValue:
        sku = request.form.get("sku", "")
        if sku not in shop.PRODUCTS:
            abort(400)
        cart = dict(lines())
        cart[sku] = cart.get(sku, 0) + 1
        session["lines"] = cart
        cart_id = session.setdefault("cart_id", secrets.token_urlsafe(9))
        if tracking:
            shop.track_added(tracker, sku, cart, cart_id)
        return render_template("cart.html", rows=shop.cart_rows(cart), subtotal=shop.subtotal(cart))

    @app.post("/checkout")
    def checkout() -> ResponseReturnValue:
        cart, cart_id = lines(), session.get("cart_id")
        email, option = request.form.get("email", ""), request.form.get("shipping", "")
        if not cart or "@" not in email or option not in shop.SHIPPING:
            abort(400)
        session["email"], session["shipping"] = email, option
        subtotal = shop.subtotal(cart)
        if tracking:
            shop.track_checkout(tracker, cart, cart_id, email, option)
        total = subtotal + shop.SHIPPING[option]
        return render_template("checkout.html", email=email, shipping=option, total=total)

    @app.post("/checkout/purchase")
    def purchase() -> ResponseReturnValue:
        cart, cart_id, option = lines(), session.get("cart_id"), session.get("shipping")
        if not cart or option not in shop.SHIPPING:
            abort(400)
        shipping = shop.SHIPPING[option]
        total = shop.subtotal(cart) + shipping
        number = f"B-{secrets.randbelow(10**9):09d}"
        if tracking:
            shop.track_purchase(tracker, cart, cart_id, number, total, option)
        session.clear()
        return render_template("order.html", number=number, total=total)

    @app.get("/_bench/stats")
    def stats() -> ResponseReturnValue:
        return jsonify(shop.engine_figures(rk.engine() if tracking else None))
