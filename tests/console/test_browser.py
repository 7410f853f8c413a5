"""The console in a real browser (Debian's chromium, driven over WebDriver) on a small Flask shop: a real HTTP
server on localhost, the shop's own sign-in, a real engine on a SQLite file whose webhook provider is a real HTTP
server. An operator without the permission gets 403 and never sees unmasked data; a resend goes out exactly once,
however many times the button is clicked; forget removes what it says."""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, Request, redirect, session
from werkzeug.serving import make_server

from onsite.webdriver import Browser, require_chromedriver
from recoverkit.console import FORGET, RESEND, VIEW, VIEW_PERSONAL_DATA, Operator
from recoverkit.contrib.flask.console import console_blueprint

from .shop import ADA, BOB, Shop

pytestmark = pytest.mark.slow

KEY = "cart-1/cart-recovery/0"
#: The shop's staff, as its own user database would say.
STAFF = {
    "clerk": Operator(name="3", permissions=frozenset()),
    "viewer": Operator(name="7", permissions=frozenset({VIEW})),
    "ops": Operator(name="42", permissions=frozenset({VIEW, VIEW_PERSONAL_DATA, RESEND, FORGET})),
}


def authorize(request: Request) -> Operator | None:
    return STAFF.get(session.get("user", ""))


@pytest.fixture
def site(shop: Shop) -> Iterator[str]:
    require_chromedriver()
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "the-browser-test-shop-secret"
    app.register_blueprint(console_blueprint(authorize, engine=lambda: shop.background), url_prefix="/ops/recoverkit")

    @app.get("/login/<name>")
    def login(name: str) -> object:
        session["user"] = name
        return redirect("/ops/recoverkit/")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="console-shop", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Tabs]:
    with Tabs(tmp_path / "profile") as opened:
        yield opened


class Tabs(Browser):
    """:class:`Browser` with the W3C window commands the double click needs."""

    def window(self) -> str:
        return str(self._call("GET", self._session + "/window"))

    def new_window(self) -> str:
        handle = str(self._call("POST", self._session + "/window/new", {"type": "tab"})["handle"])
        self.switch(handle)
        return handle

    def switch(self, handle: str) -> None:
        self._call("POST", self._session + "/window", {"handle": handle})


def status(browser: Browser) -> int:
    """The HTTP status of the page the browser shows."""
    return int(browser.script("return performance.getEntriesByType('navigation')[0].responseStatus"))


def source(browser: Browser) -> str:
    return html.unescape(browser.page())


def test_without_the_permission_403_and_never_an_unmasked_address(shop: Shop, site: str, browser: Tabs) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    browser.go(site + "/ops/recoverkit/dead-letters")
    assert status(browser) == 403 and "Sign in" in browser.text("#error")
    browser.go(site + "/login/clerk")
    assert status(browser) == 403 and "recoverkit.view" in browser.text("#error")
    browser.go(site + "/login/viewer")
    for page in ("", "carts", "dead-letters", "carts?q=cart-1", "customer"):
        browser.go(f"{site}/ops/recoverkit/{page}")
        assert status(browser) == 200
        assert ADA not in source(browser) and "lovelace" not in source(browser)
    browser.go(site + "/ops/recoverkit/dead-letters")
    assert "a***@e***.com" in browser.text("#letters") and browser.find("#letters button") == []
    browser.go(site + "/ops/recoverkit/carts?q=lovelace")  # no finding a customer by an address one may not see
    assert "cart-1" not in browser.text("#carts")


def test_a_resend_goes_out_exactly_once_however_often_it_is_clicked(shop: Shop, site: str, browser: Tabs) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    shop.receiver.status = 200
    browser.go(site + "/login/ops")
    browser.go(site + "/ops/recoverkit/dead-letters")
    assert ADA in browser.text("#letters")
    first = browser.window()
    second = browser.new_window()  # the same page open in a second tab, its button still there
    browser.go(site + "/ops/recoverkit/dead-letters")
    browser.switch(first)
    browser.click("#letters button")
    browser.wait(lambda: browser.find("#result"), "the resend's answer")
    assert browser.text("#result") == f"{KEY}: re-sent" and status(browser) == 200
    assert browser.find("#letters button") == []  # the letter has left the list
    browser.switch(second)
    browser.click("#letters button")  # the stale page's button: a second click
    browser.wait(lambda: browser.find("#result"), "the second resend's answer")
    assert "nothing was sent" in browser.text("#result") and status(browser) == 409
    assert shop.receiver.received == [KEY]
    assert shop.store.dead_letters() == []


def test_forget_removes_the_customer_from_the_store(shop: Shop, site: str, browser: Tabs) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    shop.abandon("c2", BOB, cart="cart-2")
    browser.go(site + "/login/ops")
    browser.go(site + "/ops/recoverkit/customer")
    browser.type("#forget input[name=customer]", "c1")
    browser.click("#forget button")
    browser.wait(lambda: browser.find("#result"), "the forget's answer")
    assert "the customer was forgotten" in browser.text("#result")
    assert "dead letters: 1" in browser.text("#result")
    store = shop.store
    assert [r.contact_key for r in store.dead_letters()] == ["c2"]
    assert store.is_suppressed("c1") and all(e.contact_key != "c1" for e in store.ledger())  # kept as a hash
    exported = shop.background.export("c1")
    assert exported["contact"] is None and exported["carts"] == []
    browser.go(site + "/ops/recoverkit/carts?q=lovelace")
    assert "cart-1" not in browser.text("#carts")
