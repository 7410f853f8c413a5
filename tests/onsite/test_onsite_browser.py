"""On-site offers in a real browser (Debian's chromium, driven over WebDriver) on the example Flask shop.

The shop runs on a real HTTP server on localhost with a SQLite store and a FakeClock: "the shopper leaves for a
minute" is ``clock.advance``, everything else is the browser: cookies, the snippet's fetch, the banner, the
click that applies the code at checkout, the order, and the visit after it where nothing shows.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from recoverkit import FakeClock, MemoryChannel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contrib"))
from flask_support import load_example, no_thread_leak, secrets_env

from .webdriver import Browser, require_chromedriver

__all__ = ["no_thread_leak", "secrets_env"]  # fixtures used by name

pytestmark = pytest.mark.slow

shop = load_example("examples/flask_shop/app.py", "example_flask_shop")


class Shop:
    def __init__(self, app: Flask, clock: FakeClock, base: str) -> None:
        self.app, self.clock, self.base = app, clock, base

    def later(self, seconds: float) -> None:
        shop.rk.flush(self.app)
        self.clock.advance(seconds)
        shop.rk.flush(self.app)

    def leave(self) -> None:
        """The shopper is away long enough for the cart to be abandoned and the on-site step to fall due."""
        self.later(shop.ABANDON_AFTER + 1)
        self.later(45)


@pytest.fixture
def running(no_thread_leak: None, secrets_env: dict[str, str], tmp_path: Path) -> Iterator[Shop]:
    require_chromedriver()
    clock = FakeClock()
    app = shop.create_app({
        "TESTING": True, "RECOVERKIT_CHANNELS": {"email": MemoryChannel()}, "RECOVERKIT_CLOCK": clock,
        "RECOVERKIT_STORE": str(tmp_path / "shop.db"),
    })  # fmt: skip
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="example-shop", daemon=True)
    thread.start()
    try:
        yield Shop(app, clock, f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join(10)
        shop.rk.close(app)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    with Browser(tmp_path / "profile") as opened:
        yield opened


def fill_cart(browser: Browser, base: str) -> None:
    browser.go(base + "/product/MUG-1")
    browser.click("form button")
    browser.wait(lambda: "is in your cart" in browser.page(), "the cart to take the mug")


def snippet_asked(browser: Browser) -> bool:
    entries = browser.script("return performance.getEntriesByType('resource').map(e => e.name + ' ' + e.responseEnd)")
    return any("/recoverkit/onsite " in entry and not entry.endswith(" 0") for entry in entries)


def asked(browser: Browser) -> str:
    """What the endpoint answers the page's visitor, asked as the snippet asks (from the page, for JSON)."""
    return str(
        browser.script(
            "var r = new XMLHttpRequest(); r.open('GET', '/recoverkit/onsite', false);"
            "r.setRequestHeader('Accept', 'application/json'); r.send(); return r.responseText;"
        )
    )


def no_banner_after_the_snippet_asked(browser: Browser, base: str) -> None:
    browser.go(base + "/")
    browser.wait(lambda: snippet_asked(browser), "the snippet's request to finish")
    assert browser.find("#rk-onsite") == []


def the_banner(browser: Browser, base: str) -> str:
    browser.go(base + "/")
    browser.wait(lambda: browser.find("#rk-onsite .rk-onsite-code"), "the on-site banner")
    return browser.text("#rk-onsite .rk-onsite-code")


def test_an_anonymous_shopper_comes_back_sees_the_banner_uses_the_code_and_then_sees_nothing(
    running: Shop, browser: Browser, tmp_path: Path
) -> None:
    base = running.base
    fill_cart(browser, base)
    running.leave()

    code = the_banner(browser, base)
    assert code and "The Example Shop" in browser.text("#rk-onsite")
    assert "Valid for" in browser.text("#rk-onsite .rk-onsite-countdown")
    # Another visitor, in another browser, gets nothing: not the banner, not the code.
    with Browser(tmp_path / "other-profile") as other:
        no_banner_after_the_snippet_asked(other, base)
        assert asked(other) == '{"offer":null}'
        other.go(base + "/recoverkit/onsite")  # a navigation (a link from anywhere) is not the snippet: refused
        assert "expected Accept: application/json" in other.page()

    browser.click("#rk-onsite .rk-onsite-apply")
    browser.wait(lambda: browser.url().endswith("/cart"), "the click to lead to the cart")
    assert f"Code {code} will be applied at checkout." in browser.page()
    browser.go(base + "/checkout/address")
    browser.type("input[name=email]", "buyer@example.com")
    browser.click("form button")
    browser.wait(lambda: "/checkout/shipping" in browser.url(), "the shipping step")
    browser.click("form button")
    browser.wait(lambda: "/checkout/payment" in browser.url(), "the payment step")
    assert browser.text("#code") == code
    browser.type("input[name=card]", "4242424242424242")
    browser.click("form button")
    browser.wait(lambda: "/order/" in browser.url(), "the order page")
    assert browser.text("#applied") == f"Code {code} applied: -1.25 EUR"  # 10% of the 12.50 EUR mug

    # Shown once and used: nothing afterwards, on any page.
    no_banner_after_the_snippet_asked(browser, base)
    assert asked(browser) == '{"offer":null}'
    outcomes = {(o.outcome, o.channel) for o in _store(running).outcomes()}
    assert {("sent", "onsite"), ("shown", "onsite"), ("clicked", "onsite")} <= outcomes


def test_an_order_placed_on_another_device_withdraws_the_offer_before_it_is_shown(
    running: Shop, browser: Browser
) -> None:
    base = running.base
    fill_cart(browser, base)
    running.leave()
    store = _store(running)
    [waiting] = store.onsite_for(session_id=browser.cookies()["rk_sid"], customer_id=None, now=running.clock.now())
    # The same cart is bought from the shopper's phone (another session): the shop tracks the purchase there.
    engine = shop.rk.engine(running.app)
    assert engine is not None
    assert engine.track({
        "event": "purchase", "session_id": "phone-session", "cart_id": waiting.cart_key, "transaction_id": "EX-1",
        "value": "17.40", "currency": "EUR",
    })  # fmt: skip
    running.later(1)
    no_banner_after_the_snippet_asked(browser, base)
    assert asked(browser) == '{"offer":null}'


def test_a_dismissed_banner_stays_away(running: Shop, browser: Browser) -> None:
    base = running.base
    fill_cart(browser, base)
    running.leave()
    the_banner(browser, base)
    browser.click("#rk-onsite .rk-onsite-dismiss")
    browser.wait(lambda: not browser.find("#rk-onsite"), "the banner to go")
    no_banner_after_the_snippet_asked(browser, base)
    outcomes = {o.outcome for o in _store(running).outcomes() if o.channel == "onsite"}
    assert "dismissed" in outcomes and "clicked" not in outcomes


def _store(running: Shop) -> Any:
    engine = shop.rk.engine(running.app)
    assert engine is not None
    return engine.engine.store
