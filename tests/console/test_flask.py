"""The console in Flask: a blueprint behind the shop's ``authorize``, with real requests through Flask's test
client, on the console's shop (a real engine, a real webhook provider)."""

from __future__ import annotations

import html
import re

import pytest
from flask import Flask, Request
from flask.testing import FlaskClient

from recoverkit.console import RESEND, VIEW, VIEW_PERSONAL_DATA, CsrfTokens, Operator
from recoverkit.contrib.flask.console import console_blueprint

from .shop import ADA, Shop

KEY = "cart-1/cart-recovery/0"
SECRET = "a-flask-secret-key-for-tests"
#: The shop's own sign-in, as a test stands in for it: who is asking, and what they may do.
USERS = {
    "viewer": Operator(name="7", permissions=frozenset({VIEW})),
    "ops": Operator(name="42", permissions=frozenset({VIEW, VIEW_PERSONAL_DATA, RESEND})),
}


def authorize(request: Request) -> Operator | None:
    return USERS.get(request.headers.get("X-Test-User", ""))


@pytest.fixture
def client(shop: Shop) -> FlaskClient:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True)
    app.register_blueprint(console_blueprint(authorize, engine=lambda: shop.background), url_prefix="/ops/recoverkit")
    return app.test_client()


def token_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


def test_nobody_signed_in_gets_403_on_every_page(client: FlaskClient) -> None:
    for path in ("/ops/recoverkit/", "/ops/recoverkit/dead-letters", "/ops/recoverkit/carts"):
        assert client.get(path).status_code == 403
    assert client.post("/ops/recoverkit/dead-letters/resend", data={"key": KEY}).status_code == 403


def test_a_viewer_sees_masked_data_and_cannot_resend(shop: Shop, client: FlaskClient) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    shop.receiver.status = 200
    page = client.get("/ops/recoverkit/dead-letters", headers={"X-Test-User": "viewer"})
    assert page.status_code == 200 and KEY in page.text and ADA not in page.text and "a***@e***.com" in page.text
    assert 'href="/ops/recoverkit/carts"' in page.text
    assert "csrf_token" not in page.text  # no form: the viewer may not resend
    cookie = client.get_cookie("rk_console", path="/ops/recoverkit/")
    assert cookie is not None
    token = CsrfTokens(SECRET).token(cookie.value, "7")  # a valid token all the same: the permission still stops it
    refused = client.post("/ops/recoverkit/dead-letters/resend", headers={"X-Test-User": "viewer"},
                          data={"key": KEY, "csrf_token": token})  # fmt: skip
    assert refused.status_code == 403 and shop.receiver.received == []


def test_an_operator_resends_once_with_the_page_s_token(shop: Shop, client: FlaskClient) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    shop.receiver.status = 200
    ops = {"X-Test-User": "ops"}
    page = client.get("/ops/recoverkit/dead-letters", headers=ops)
    assert ADA in html.unescape(page.text)
    cookie = page.headers["Set-Cookie"]
    assert "rk_console=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/ops/recoverkit/" in cookie
    form = {"key": KEY, "csrf_token": token_of(page.text)}
    sent = client.post("/ops/recoverkit/dead-letters/resend", headers=ops, data=form)
    assert sent.status_code == 200 and f"{KEY}: re-sent" in sent.text
    again = client.post("/ops/recoverkit/dead-letters/resend", headers=ops, data=form)
    assert again.status_code == 409
    assert shop.receiver.received == [KEY]


def test_a_post_without_the_token_or_from_another_session_is_refused(shop: Shop, client: FlaskClient) -> None:
    shop.abandon("c1", ADA, cart="cart-1")
    shop.receiver.status = 200
    ops = {"X-Test-User": "ops"}
    token = token_of(client.get("/ops/recoverkit/dead-letters", headers=ops).text)
    missing = client.post("/ops/recoverkit/dead-letters/resend", headers=ops, data={"key": KEY})
    assert missing.status_code == 403 and "CSRF token" in missing.text
    client.delete_cookie("rk_console", path="/ops/recoverkit/")  # another browser, the same token (a forged form)
    forged = client.post("/ops/recoverkit/dead-letters/resend", headers=ops, data={"key": KEY, "csrf_token": token})
    assert forged.status_code == 403
    assert shop.receiver.received == [] and [r.key for r in shop.store.dead_letters()] == [KEY]


def test_a_failing_authorize_lets_nobody_in(shop: Shop) -> None:
    def broken(request: Request) -> Operator | None:
        raise RuntimeError("the user database is down")

    app = Flask(__name__)
    app.config["SECRET_KEY"] = SECRET
    app.register_blueprint(console_blueprint(broken, engine=lambda: shop.background), url_prefix="/ops")
    assert app.test_client().get("/ops/").status_code == 403


def test_without_a_secret_the_console_says_what_to_set(shop: Shop) -> None:
    app = Flask(__name__)
    app.register_blueprint(console_blueprint(authorize, engine=lambda: shop.background), url_prefix="/ops")
    answer = app.test_client().get("/ops/", headers={"X-Test-User": "ops"})
    assert answer.status_code == 500 and "SECRET_KEY" in html.unescape(answer.text)


def test_a_form_too_large_is_refused_unread(shop: Shop, client: FlaskClient) -> None:
    answer = client.post("/ops/recoverkit/dead-letters/resend", headers={"X-Test-User": "ops"},
                         data={"key": "k" * 70_000})  # fmt: skip
    assert answer.status_code == 413 and shop.receiver.attempts == 0
