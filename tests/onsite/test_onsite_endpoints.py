"""The on-site endpoint's answers over HTTP, in ASGI (Starlette's TestClient) and Flask (its test client): only the
visitor's own offer, reports only from its owner and only as JSON, the rate limit, the snippet."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from recoverkit import FakeClock, MemoryChannel
from recoverkit.contrib._onsite_http import handle
from recoverkit.contrib.asgi import RecoverkitMiddleware, get_engine, get_tracker
from recoverkit.contrib.asgi_onsite import onsite_routes
from recoverkit.onsite import OnsiteBoard, OnsiteChannel, RateLimit
from recoverkit.templates import Templates

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient

FLOW = {
    "abandon_after": 60,
    "offers": {"ten": {"kind": "discount", "name": "10% off", "percent": 10, "valid_for": 3600}},
    "flows": [{"name": "back", "steps": [{"delay": 0, "channel": "onsite", "template": "cart-reminder",
                                           "offer": "ten"}]}],
}  # fmt: skip


@pytest.fixture(autouse=True)
def _code_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOVERKIT_CODE_SECRET", "test-only-code-secret-of-at-least-32-bytes")


class AsgiShop:
    def __init__(self, store: Path) -> None:
        self.clock = FakeClock()

        async def add(request: Request) -> Response:
            get_tracker(request).add_to_cart([{"item_id": "MUG", "price": "10.00"}], currency="EUR", cart_id="c-1")
            return JSONResponse({})

        async def later(request: Request) -> Response:
            engine = get_engine(request)
            assert engine is not None
            await engine.flush()
            self.clock.advance(float(request.query_params["s"]))
            await engine.flush()
            return JSONResponse({})

        app = Starlette(routes=[Route("/add", add), Route("/later", later), *onsite_routes()])
        self.app = RecoverkitMiddleware(app, settings={
            "CHANNELS": {"email": MemoryChannel(), "onsite": OnsiteChannel()}, "STORE": str(store),
            "CLOCK": self.clock, "CONFIG": FLOW,
        })  # fmt: skip


class Visitors:
    """Two visitors through one client (one lifespan, one engine): each request carries one visitor's cookie."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.jars: dict[str, dict[str, str]] = {"shopper": {}, "other": {}}

    def request(self, who: str, method: str, url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("headers", {"Accept": "application/json"})  # as the snippet asks
        self.client.cookies.clear()
        for name, value in self.jars[who].items():
            self.client.cookies.set(name, value)
        response = self.client.request(method, url, **kwargs)
        self.jars[who].update(dict(self.client.cookies.items()))
        return response


@pytest.fixture
def asgi(tmp_path: Path) -> Iterator[Visitors]:
    shop = AsgiShop(tmp_path / "shop.db")
    with TestClient(shop.app) as client:
        yield Visitors(client)


def test_asgi_the_shopper_gets_their_offer_once_and_nobody_else_does(asgi: Visitors) -> None:
    asgi.request("shopper", "GET", "/add")
    assert asgi.request("other", "GET", "/recoverkit/onsite").json() == {"offer": None}
    asgi.request("shopper", "GET", "/later", params={"s": 120})
    assert asgi.request("other", "GET", "/recoverkit/onsite").json() == {"offer": None}
    answer = asgi.request("shopper", "GET", "/recoverkit/onsite")
    assert answer.headers["cache-control"] == "no-store"
    offer = answer.json()["offer"]
    assert offer["code"] in offer["html"] and 0 < offer["expires_in"] <= 3600
    assert asgi.request("shopper", "GET", "/recoverkit/onsite").json() == {"offer": None}
    # A report of another visitor's offer is refused, and changes nothing for its owner.
    stolen = asgi.request("other", "POST", "/recoverkit/onsite", json={"token": offer["token"], "mark": "dismissed"})
    assert stolen.status_code == 404
    mine = asgi.request("shopper", "POST", "/recoverkit/onsite", json={"token": offer["token"], "mark": "clicked"})
    assert mine.status_code == 204


def test_asgi_a_report_must_be_json(asgi: Visitors) -> None:
    form = asgi.request("shopper", "POST", "/recoverkit/onsite", data={"token": "t", "mark": "clicked"})
    assert form.status_code == 415
    shown = asgi.request("shopper", "POST", "/recoverkit/onsite", json={"token": "t", "mark": "shown"})
    assert shown.status_code == 400


def test_asgi_answers_the_offer_only_to_a_request_for_json(asgi: Visitors) -> None:
    page = asgi.request("shopper", "GET", "/recoverkit/onsite", headers={"Accept": "text/html,*/*;q=0.8"})
    assert page.status_code == 406 and page.json() == {"error": "expected Accept: application/json"}


def test_asgi_serves_the_snippet(asgi: Visitors) -> None:
    script = asgi.request("shopper", "GET", "/recoverkit/onsite.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "recoverkit:onsite" in script.text


def get(board: OnsiteBoard, session: str, client: str | None) -> tuple[int, list[tuple[str, str]], bytes]:
    """What the endpoint answers the snippet's GET for visitor ``session`` from ``client``."""
    return handle(board, "GET", script=False, content_type=None, accept="application/json", body=b"",
                  session_id=session, customer_id=None, client=client)  # fmt: skip


def test_over_the_rate_limit_the_answer_is_429_with_retry_after(tmp_path: Path) -> None:
    from recoverkit.store import SQLiteStore

    with SQLiteStore(tmp_path / "s.db") as store:
        board = OnsiteBoard(store, Templates(), clock=FakeClock(), visitor_limit=RateLimit(2, 60))
        answers = [get(board, "s", "10.0.0.1")[0] for _ in range(3)]
        assert answers == [200, 200, 429]
        status, headers, _ = get(board, "s", "10.0.0.1")
        assert status == 429 and ("Retry-After", "60") in headers


def test_a_failing_store_answers_503_and_never_raises(tmp_path: Path) -> None:
    from recoverkit.store import SQLiteStore

    store = SQLiteStore(tmp_path / "s.db")
    board = OnsiteBoard(store, Templates(), clock=FakeClock(), refresh=0)
    store.put_onsite  # noqa: B018 - the store works until it is closed
    store.close()
    board._waiting["s:s"] = float("inf")  # a visitor the process believes has an offer
    status, _, body = get(board, "s", None)
    assert (status, body) == (503, b'{"error": "unavailable"}')


def test_flask_answers_like_asgi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flask import Flask

    from recoverkit.contrib.flask import Recoverkit, tracker

    monkeypatch.setenv("RECOVERKIT_CODE_SECRET", "test-only-code-secret-of-at-least-32-bytes")
    clock = FakeClock()
    app = Flask(__name__)
    app.config.update(RECOVERKIT_CONFIG=FLOW, RECOVERKIT_STORE=str(tmp_path / "f.db"), RECOVERKIT_CLOCK=clock,
                      RECOVERKIT_CHANNELS={"onsite": OnsiteChannel()})  # fmt: skip
    rk = Recoverkit(app)

    @app.get("/add")
    def add() -> Any:
        tracker.add_to_cart([{"item_id": "MUG", "price": "10.00"}], currency="EUR", cart_id="c-1")
        return {}

    try:
        shopper, other = app.test_client(), app.test_client()
        shopper.get("/add")
        rk.flush(app)
        clock.advance(120)
        rk.flush(app)
        json_only = {"Accept": "application/json"}
        assert other.get("/recoverkit/onsite", headers=json_only).json == {"offer": None}
        assert shopper.get("/recoverkit/onsite").status_code == 406  # a navigation, not the snippet: not shown
        offer = shopper.get("/recoverkit/onsite", headers=json_only).json["offer"]
        assert offer["code"]
        assert other.post("/recoverkit/onsite", json={"token": offer["token"], "mark": "clicked"}).status_code == 404
        assert shopper.post("/recoverkit/onsite", json={"token": offer["token"], "mark": "clicked"}).status_code == 204
        assert shopper.get("/recoverkit/onsite.js").status_code == 200
    finally:
        rk.close(app)
