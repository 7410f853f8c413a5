"""The console as a plain ASGI app, mounted in Starlette beside RecoverkitMiddleware, whose engine runs on the
server's own loop (lifespan): driven with Starlette's TestClient, a real webhook provider on localhost."""

from __future__ import annotations

import html
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from recoverkit import FakeClock
from recoverkit.channels.webhook import WebhookChannel
from recoverkit.console import RESEND, VIEW, VIEW_PERSONAL_DATA, Operator
from recoverkit.contrib.asgi import RecoverkitMiddleware
from recoverkit.contrib.asgi_console import ConsoleApp

from .shop import ADA, CONFIG, T0, Receiver

with warnings.catch_warnings():
    # Starlette 1.x prefers the httpx2 package for its TestClient; with httpx it works the same but warns.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient

KEY = "cart-1/cart-recovery/0"
USERS = {
    "viewer": Operator(name="7", permissions=frozenset({VIEW})),
    "ops": Operator(name="42", permissions=frozenset({VIEW, VIEW_PERSONAL_DATA, RESEND})),
}


async def auth(scope: Any) -> Operator | None:
    headers = dict(scope["headers"])
    return USERS.get(headers.get(b"x-test-user", b"").decode())


class Shop:
    def __init__(self, path: Path) -> None:
        self.receiver = Receiver(400)
        self.clock = FakeClock(T0)
        console = ConsoleApp(auth, secret="an-asgi-secret-for-the-tests")
        settings = {"CONFIG": CONFIG, "STORE": str(path / "state.db"), "CLOCK": self.clock,
                    "CHANNELS": {"email": WebhookChannel(self.receiver.url)}}  # fmt: skip
        self.app = RecoverkitMiddleware(Starlette(routes=[Mount("/ops/recoverkit", app=console)]), settings=settings)
        self.client = TestClient(self.app)

    def abandon(self, customer: str, email: str, *, cart: str) -> None:
        engine = self.app.engine
        assert engine is not None and self.client.portal is not None
        now = self.clock.now()
        for event in (
            {"event": "identify", "session_id": "s1", "ts": now, "customer_id": customer, "email": email},
            {"event": "consent", "session_id": "s1", "ts": now, "customer_id": customer, "granted": ["email"]},
            {"event": "add_to_cart", "session_id": "s1", "ts": now + 1, "customer_id": customer, "cart_id": cart,
             "currency": "EUR", "items": [{"item_id": "MUG-1", "price": "12.50", "quantity": 1}]},
        ):  # fmt: skip
            assert engine.track(event)

        async def later() -> None:
            for seconds in (601, 3601):
                await engine.flush()
                self.clock.advance(seconds)
                await engine.flush()

        self.client.portal.call(later)


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    made = Shop(tmp_path)
    try:
        with made.client:  # the lifespan: the engine runs on the test server's loop
            yield made
    finally:
        made.receiver.close()


def test_nobody_signed_in_gets_403(shop: Shop) -> None:
    assert shop.client.get("/ops/recoverkit/").status_code == 403
    assert shop.client.post("/ops/recoverkit/dead-letters/resend", data={"key": KEY}).status_code == 403


def test_the_overview_reads_the_engine_on_the_server_s_loop(shop: Shop) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    page = shop.client.get("/ops/recoverkit/", headers={"x-test-user": "viewer"})
    assert page.status_code == 200 and '<b id="dead">1</b>' in page.text and '<b id="open-carts">1</b>' in page.text
    assert 'href="/ops/recoverkit/dead-letters"' in page.text


def test_a_viewer_sees_masked_data(shop: Shop) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    page = shop.client.get("/ops/recoverkit/dead-letters", headers={"x-test-user": "viewer"})
    assert KEY in page.text and ADA not in html.unescape(page.text) and "a***@e***.com" in page.text


def test_an_operator_resends_once_and_a_post_without_the_token_is_refused(shop: Shop) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    shop.receiver.status = 200
    ops = {"x-test-user": "ops"}
    page = shop.client.get("/ops/recoverkit/dead-letters", headers=ops)
    assert ADA in html.unescape(page.text)
    assert "HttpOnly; SameSite=Strict" in page.headers["set-cookie"]
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None
    missing = shop.client.post("/ops/recoverkit/dead-letters/resend", headers=ops, data={"key": KEY})
    assert missing.status_code == 403 and shop.receiver.received == []
    form = {"key": KEY, "csrf_token": found.group(1)}
    sent = shop.client.post("/ops/recoverkit/dead-letters/resend", headers=ops, data=form)
    assert sent.status_code == 200 and f"{KEY}: re-sent" in sent.text
    assert shop.client.post("/ops/recoverkit/dead-letters/resend", headers=ops, data=form).status_code == 409
    assert shop.receiver.received == [KEY]


def test_a_short_secret_is_refused_when_the_app_is_built() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        ConsoleApp(auth, secret="short")


def test_a_form_too_large_is_refused(shop: Shop) -> None:
    answer = shop.client.post("/ops/recoverkit/dead-letters/resend", headers={"x-test-user": "ops"},
                              data={"key": "k" * 70_000})  # fmt: skip
    assert answer.status_code == 413 and shop.receiver.attempts == 0
