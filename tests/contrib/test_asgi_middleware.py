"""The ASGI middleware: lifespan (the engine on the server's loop, nested around the app's own lifespan), the
request's tracker and cookie, events from paths, websockets, the fallback without lifespan, containment and
restore links. Driven with Starlette's TestClient (a server in a thread) and, for the protocol's corner cases,
by calling the ASGI app directly on the test's own loop."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request, cookie_parser
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from recoverkit import FakeClock, MemoryChannel, MemoryStore
from recoverkit.contrib.asgi import (
    STATE_KEY,
    RecoverkitMiddleware,
    _cookie,
    _utm_source,
    get_engine,
    get_tracker,
    restore_cart,
)
from recoverkit.errors import ConfigError, LinkError
from recoverkit.integration import SESSION_COOKIE, is_session_id

with warnings.catch_warnings():
    # Starlette 1.x prefers the httpx2 package for its TestClient; with httpx it works the same but warns.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient

try:  # tests/contrib is a plain directory; should it become a package, its modules import relatively
    from flask_support import LINK_SECRET, ROOT, load_example, no_thread_leak
except ImportError:  # pragma: no cover
    from .flask_support import LINK_SECRET, ROOT, load_example, no_thread_leak

__all__ = ["no_thread_leak"]  # a fixture used by name

FLOW = {"abandon_after": 60, "flows": [{"name": "quick", "steps": [{"delay": 10, "channel": "email"}]}]}
CART = [{"item_id": "SKU-1", "price": "35.79", "quantity": 1}]
BASE_URL = "https://shop.example/cart/restore"


class Shop:
    """A Starlette app with its own lifespan, wrapped in the middleware; what happened is in ``log``."""

    def __init__(self, **settings: Any) -> None:
        self.channel = MemoryChannel()
        self.store = MemoryStore()
        self.clock = FakeClock()
        self.log: list[str] = []
        self.carts = {"cart-7": ["SKU-1"]}
        settings.setdefault("CHANNELS", {"email": self.channel})
        settings.setdefault("STORE", self.store)
        settings.setdefault("CLOCK", self.clock)
        settings.setdefault("CONFIG", FLOW)
        self.starlette = Starlette(routes=self.routes(), lifespan=self.lifespan)
        self.app = RecoverkitMiddleware(self.starlette, settings=settings)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.log.append(f"app starts, engine running: {self.app.engine is not None}")
        yield
        self.log.append(f"app stops, engine running: {self.app.engine is not None}")

    def routes(self) -> list[Any]:
        async def add(request: Request) -> Response:
            kept = get_tracker(request).add_to_cart(CART, currency="EUR", cart_id=request.query_params.get("cart"))
            return JSONResponse({"kept": kept})

        async def hello(request: Request) -> Response:
            tracker = get_tracker(request)
            tracker.identify(email="shopper@example.com")
            return JSONResponse({"kept": tracker.consent(granted=["email"])})

        async def sid(request: Request) -> Response:
            tracker = request.state.recoverkit
            return JSONResponse({"session_id": tracker.session_id})

        async def checkout(request: Request) -> Response:
            return HTMLResponse("<h1>checkout</h1>")

        async def api(request: Request) -> Response:
            return JSONResponse({"lines": []})

        async def missing(request: Request) -> Response:
            return PlainTextResponse("gone", status_code=404)

        async def flush(request: Request) -> Response:
            engine = get_engine(request)
            assert engine is not None
            await engine.flush()  # works only on the loop the engine runs on
            return JSONResponse({"accepted": engine.statistics().events_accepted})

        async def restore(request: Request) -> Response:
            async def load(key: str) -> list[str]:
                return self.carts[key]

            try:
                return JSONResponse({"lines": await restore_cart(request, load)})
            except LinkError as error:
                return JSONResponse({"problem": error.reason}, status_code=400)

        async def echo(websocket: WebSocket) -> None:
            await websocket.accept()
            scope = websocket.scope
            untouched = STATE_KEY not in scope.get("state", {}) and "recoverkit.middleware" not in scope
            await websocket.send_json({"untouched": untouched, "echo": await websocket.receive_text()})
            await websocket.close()

        return [
            Route("/add", add), Route("/hello", hello), Route("/sid", sid),
            Route("/checkout", checkout, methods=["GET", "POST"]),
            Route("/checkout/payment/card", checkout), Route("/api/cart", api), Route("/missing", missing),
            Route("/flush", flush), Route("/cart/restore", restore), WebSocketRoute("/ws", echo),
        ]

    def events(self) -> list[dict[str, Any]]:
        return [msgspec.json.decode(entry.data) for entry in self.store.read_events(0, 1000)]


@pytest.fixture
def shop(no_thread_leak: None) -> Iterator[Shop]:
    made = Shop(CHECKOUT_PATHS={"/checkout": "begin_checkout", "/missing": "view_cart"})
    yield made
    if made.app.background is not None:
        made.app.background.close()


def client_for(shop: Shop, base_url: str = "http://testserver") -> TestClient:
    return TestClient(shop.app, base_url=base_url)


def later(client: TestClient, shop: Shop, seconds: float) -> None:
    """On the server's loop (where the engine and its clock live): handle what was tracked, advance, handle."""
    engine = shop.app.engine
    assert engine is not None and client.portal is not None

    async def move() -> None:
        await engine.flush()
        shop.clock.advance(seconds)
        await engine.flush()

    client.portal.call(move)


# -- lifespan ------------------------------------------------------------------------------------------------------


def test_lifespan_runs_the_engine_around_the_apps_own_lifespan(shop: Shop) -> None:
    assert shop.app.engine is None
    with client_for(shop) as client:
        assert shop.app.engine is not None
        assert client.get("/add").json() == {"kept": True}
        assert client.get("/flush").json() == {"accepted": 1}  # the engine runs on the server's own loop
    assert shop.log == ["app starts, engine running: True", "app stops, engine running: True"]
    assert shop.app.engine is None and shop.channel.closed  # drained and closed after the app stopped
    assert shop.app.background is None  # no thread: the lifespan's engine did it all


def test_a_message_goes_out_once_the_fake_clock_has_moved_on(shop: Shop) -> None:
    with client_for(shop) as client:
        tracker = client.get("/sid").json()["session_id"]
        client.get("/hello")
        client.get("/add")
        later(client, shop, 30)
        assert shop.channel.sent == []  # not abandoned yet
        later(client, shop, 60)
        assert shop.channel.keys() == [f"{tracker}/quick/0"]


def test_a_server_can_run_the_lifespan_again(shop: Shop) -> None:
    for _ in range(2):
        with client_for(shop) as client:
            assert client.get("/add").json() == {"kept": True}
    assert len(shop.log) == 4


def test_a_configuration_error_fails_the_startup_not_a_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECOVERKIT_LINK_SECRET", raising=False)
    shop = Shop(CONFIG={**FLOW, "links": {"base_url": BASE_URL}})
    replies, error = anyio.run(drive_lifespan, shop.app)
    assert [reply["type"] for reply in replies] == ["lifespan.startup.failed"]
    assert "RECOVERKIT_LINK_SECRET" in replies[0]["message"] and error is None
    assert shop.log == []  # the app's own start-up never ran


def test_settings_are_checked_when_the_middleware_is_built() -> None:
    with pytest.raises(ConfigError, match=r"RecoverkitMiddleware settings\['MODE'\]: 'embeded' is not a mode"):
        RecoverkitMiddleware(Starlette(), settings={"MODE": "embeded"})


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"CHANNEL": {}}, "RecoverkitMiddleware settings['CHANNEL'] is not a recoverkit setting (did you mean "
         "'CHANNELS'?)"),
        ({"CONFIG": FLOW, "CHANNELS": {"sms": MemoryChannel()}},
         "RecoverkitMiddleware settings['CHANNELS']: the flow 'quick' step 0 uses channel 'email' but no adapter is "
         "configured for it (configured: ['sms']); add RecoverkitMiddleware settings['CHANNELS']['email'] = "
         "<adapter>"),
        ({"GUARD": "recoverkit.NoSuchGuard"}, "RecoverkitMiddleware settings['GUARD']: module 'recoverkit' has no "
         "attribute 'NoSuchGuard'"),
    ],
)
def test_what_the_engine_would_refuse_is_refused_when_the_middleware_is_built(
    settings: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        RecoverkitMiddleware(Starlette(), settings=settings)
    assert str(raised.value).startswith(says)


def test_an_engine_error_at_startup_names_the_settings_not_the_engine_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RECOVERKIT_CODE_SECRET", raising=False)
    config = {
        **FLOW,
        "offers": {"ten": {"kind": "discount", "name": "10% off", "percent": 10}},
        "flows": [{"name": "quick", "steps": [{"delay": 10, "offer": "ten"}]}],
    }
    shop = Shop(CONFIG=config)
    replies, error = anyio.run(drive_lifespan, shop.app)
    assert [reply["type"] for reply in replies] == ["lifespan.startup.failed"] and error is None
    message = replies[0]["message"]
    assert message.startswith("recoverkit: RecoverkitMiddleware settings: recoverkit cannot start: the flows make")
    assert "set RecoverkitMiddleware settings['COUPONS'] to <your CouponProvider>" in message
    assert "to Engine" not in message


# -- the lifespan protocol, driven directly ------------------------------------------------------------------------


async def drive_lifespan(
    app: Callable[..., Awaitable[None]], between: Callable[[], Awaitable[None]] | None = None
) -> tuple[list[dict[str, Any]], BaseException | None]:
    """Play a server's side of the lifespan protocol; the replies the app sent, and what it raised."""
    to_app, app_inbox = anyio.create_memory_object_stream[dict[str, Any]](10)
    app_outbox, from_app = anyio.create_memory_object_stream[dict[str, Any]](10)
    replies: list[dict[str, Any]] = []
    raised: list[BaseException] = []

    async def run_app() -> None:
        try:
            await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, app_inbox.receive,
                      app_outbox.send)
        except Exception as exc:
            raised.append(exc)
        finally:
            await app_outbox.aclose()

    async with to_app, app_inbox, app_outbox, from_app, anyio.create_task_group() as tg:
        tg.start_soon(run_app)
        await to_app.send({"type": "lifespan.startup"})
        async for reply in from_app:
            replies.append(reply)
            if reply["type"] == "lifespan.startup.complete":
                if between is not None:
                    await between()
                await to_app.send({"type": "lifespan.shutdown"})
            else:
                break
    return replies, raised[0] if raised else None


@pytest.mark.anyio
async def test_a_bare_asgi_app_without_lifespan_support_still_gets_an_engine_for_its_life() -> None:
    async def bare(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError(f"unsupported scope {scope['type']}")
        await PlainTextResponse("ok")(scope, receive, send)

    channel = MemoryChannel()
    middleware = RecoverkitMiddleware(bare, settings={"CHANNELS": {"email": channel}, "CONFIG": FLOW})
    seen: list[bool] = []

    async def while_running() -> None:
        seen.append(middleware.engine is not None)

    replies, error = await drive_lifespan(middleware, while_running)
    assert [r["type"] for r in replies] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert error is None and seen == [True]
    assert middleware.engine is None and channel.closed


@pytest.mark.anyio
async def test_the_apps_failed_startup_is_passed_on_and_the_engine_closed() -> None:
    @contextlib.asynccontextmanager
    async def failing(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("the shop's database is down")
        yield  # pragma: no cover

    channel = MemoryChannel()
    middleware = RecoverkitMiddleware(Starlette(lifespan=failing),
                                      settings={"CHANNELS": {"email": channel}, "CONFIG": FLOW})
    replies, error = await drive_lifespan(middleware)
    assert [r["type"] for r in replies] == ["lifespan.startup.failed"]
    assert "the shop's database is down" in replies[0]["message"]
    assert isinstance(error, RuntimeError)  # raised as the app raised it, not wrapped
    assert middleware.engine is None and channel.closed


@pytest.mark.anyio
async def test_a_whole_shopping_session_on_the_servers_loop() -> None:
    """Lifespan and requests on one loop, as uvicorn runs them, with httpx's ASGI transport."""
    shop = Shop()

    async def shopping() -> None:
        transport = httpx.ASGITransport(app=shop.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            session_id = (await client.get("/sid")).json()["session_id"]
            assert (await client.get("/hello")).json() == {"kept": True}
            assert (await client.get("/add")).json() == {"kept": True}
        engine = shop.app.engine
        assert engine is not None
        await engine.flush()
        shop.clock.advance(90)
        await engine.flush()
        assert shop.channel.keys() == [f"{session_id}/quick/0"]

    replies, error = await drive_lifespan(shop.app, shopping)
    assert error is None and replies[-1]["type"] == "lifespan.shutdown.complete"


# -- the request's tracker and cookie ------------------------------------------------------------------------------


def test_the_tracker_is_in_request_state_and_the_session_cookie_is_set(shop: Shop) -> None:
    with client_for(shop) as client:
        response = client.get("/sid")
        [cookie] = response.headers.get_list("set-cookie")
        value = cookie.split(";", 1)[0].removeprefix(f"{SESSION_COOKIE}=")
        assert is_session_id(value) and value == response.json()["session_id"]
        assert {"HttpOnly", "Path=/", "SameSite=Lax", "Max-Age=2592000"} <= {p.strip() for p in cookie.split(";")}
        assert "Secure" not in cookie

        again = client.get("/sid")  # the cookie came back: reused, not set again
        assert again.json()["session_id"] == value and again.headers.get_list("set-cookie") == []


@pytest.mark.parametrize("forged", ["admin", "a" * 23, "", "x" * 21 + "!"])
def test_a_forged_cookie_is_replaced(shop: Shop, forged: str) -> None:
    with client_for(shop) as client:
        response = client.get("/sid", headers={"cookie": f"{SESSION_COOKIE}={forged}"})
        minted = response.json()["session_id"]
        assert minted != forged and is_session_id(minted)
        assert response.headers["set-cookie"].startswith(f"{SESSION_COOKIE}={minted};")


@pytest.mark.parametrize(
    ("setting", "base_url", "secure"),
    [(None, "http://testserver", False), (None, "https://testserver", True), (True, "http://testserver", True),
     (False, "https://testserver", False)],
)
def test_the_cookie_is_secure_as_configured_or_as_the_request_is(setting: bool | None, base_url: str,
                                                                  secure: bool) -> None:
    shop = Shop(COOKIE_SECURE=setting)
    with client_for(shop, base_url) as client:
        assert ("; Secure" in client.get("/sid").headers["set-cookie"]) is secure


def test_events_carry_the_session_customer_device_source_and_the_time_of_the_request() -> None:
    class Header(AuthenticationBackend):
        async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
            user = conn.headers.get("x-user")
            return (AuthCredentials(["customer"]), SimpleUser(user)) if user else None

    def customer(conn: HTTPConnection) -> str | None:
        return conn.user.display_name if conn.user.is_authenticated else None

    shop = Shop()
    # Authentication runs inside the middleware: the loader is asked at the first event, when it has run.
    shop.app.app = AuthenticationMiddleware(shop.starlette, backend=Header())
    shop.app.customer_loader = customer
    iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"
    with client_for(shop) as client:
        at = shop.clock.now()
        client.get("/add?utm_source=newsletter&cart=c-1", headers={"x-user": "cust-9", "user-agent": iphone})
        client.get("/add")  # a guest
        later(client, shop, 120)
        member, guest = shop.events()  # read while the engine runs: closing checkpoints and trims the journal
    assert (member["customer_id"], member["cart_id"], member["device"], member["source"]) == (
        "cust-9", "c-1", "mobile", "newsletter")
    assert member["ts"] == at and "customer_id" not in guest


def test_a_failing_customer_loader_makes_a_guest_and_never_fails_the_request(shop: Shop) -> None:
    def broken(conn: HTTPConnection) -> str:
        raise RuntimeError("db down")

    shop.app.customer_loader = broken
    with client_for(shop) as client:
        assert client.get("/add").json() == {"kept": True}
        later(client, shop, 0)
        assert "customer_id" not in shop.events()[0]


# -- events from paths ---------------------------------------------------------------------------------------------


def kinds(client: TestClient, shop: Shop) -> list[str]:
    later(client, shop, 0)
    return [event["event"] for event in shop.events()]


def test_checkout_paths_are_recorded_on_a_successful_get_only(shop: Shop) -> None:
    with client_for(shop) as client:
        client.post("/checkout")
        client.head("/checkout")
        assert client.get("/missing").status_code == 404
        assert kinds(client, shop) == []
        client.get("/checkout")
        assert kinds(client, shop) == ["begin_checkout"]


def test_page_views_are_html_pages_only() -> None:
    shop = Shop(TRACK_PAGE_VIEWS=True)
    with client_for(shop) as client:
        client.get("/api/cart")
        assert kinds(client, shop) == []
        client.get("/checkout")
        assert kinds(client, shop) == ["page_view"]


@pytest.mark.anyio
async def test_checkout_paths_are_the_apps_own_under_a_root_path() -> None:
    shop = Shop(CHECKOUT_PATHS={"/checkout": "begin_checkout"})

    async def mounted() -> None:
        transport = httpx.ASGITransport(app=shop.app, root_path="/shop")
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            assert (await client.get("/shop/checkout")).status_code == 200
        assert shop.app.engine is not None
        await shop.app.engine.flush()
        assert [event["event"] for event in shop.events()] == ["begin_checkout"]

    _, error = await drive_lifespan(shop.app, mounted)
    assert error is None


# -- websockets ----------------------------------------------------------------------------------------------------


def test_websockets_pass_through_untouched(shop: Shop) -> None:
    with client_for(shop) as client, client.websocket_connect("/ws") as websocket:
        websocket.send_text("hello")
        assert websocket.receive_json() == {"untouched": True, "echo": "hello"}


# -- without lifespan ----------------------------------------------------------------------------------------------


def test_without_lifespan_a_background_engine_takes_over_and_warns_once(
    no_thread_leak: None, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()  # advanced from this thread while the background engine's loop runs in its own
    shop = Shop(CLOCK=clock)
    try:
        client = client_for(shop)  # no `with`: no lifespan, like uvicorn --lifespan off
        with caplog.at_level(logging.DEBUG, logger="recoverkit"):
            session_id = client.get("/sid").json()["session_id"]
            assert client.get("/hello").json() == {"kept": True}
            assert client.get("/add").json() == {"kept": True}
        warned = [record.event for record in caplog.records if record.levelno == logging.WARNING]
        assert warned == ["lifespan_missing"]
        assert shop.app.engine is None and shop.app.background is not None
        engine = shop.app.background.get()
        assert engine is not None
        engine.flush()
        clock.advance(90)
        engine.flush()
        assert shop.channel.keys() == [f"{session_id}/quick/0"]
    finally:
        if shop.app.background is not None:
            shop.app.background.close()


def test_once_the_lifespan_engine_stopped_events_are_refused_not_sent_elsewhere(shop: Shop) -> None:
    with client_for(shop):
        pass
    assert shop.app.track({"event": "page_view", "session_id": "s"}) is False
    assert shop.app.background is None


# -- containment ---------------------------------------------------------------------------------------------------


def test_a_broken_engine_never_fails_a_request(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("broken")

    with client_for(shop) as client:
        assert shop.app.engine is not None
        monkeypatch.setattr(shop.app.engine, "track", broken)
        assert client.get("/add").json() == {"kept": False}
        response = client.get("/checkout")
        assert response.status_code == 200 and response.text == "<h1>checkout</h1>"
        monkeypatch.setattr(shop.app.settings, "path_event", broken)
        assert client.get("/checkout").status_code == 200


def test_a_failure_preparing_the_request_leaves_views_an_inert_tracker(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(user_agent: str | None) -> str:
        raise RuntimeError("broken")

    monkeypatch.setattr("recoverkit.contrib.asgi.device_of", broken)
    with client_for(shop) as client:
        response = client.get("/add")
        assert response.status_code == 200 and response.json() == {"kept": False}
        assert "set-cookie" not in response.headers


def test_mode_off_records_nothing_and_sets_no_cookie() -> None:
    shop = Shop(MODE="off")
    with client_for(shop) as client:
        response = client.get("/add")
        assert response.json() == {"kept": False} and "set-cookie" not in response.headers
        assert shop.app.engine is None
    assert shop.log == ["app starts, engine running: False", "app stops, engine running: False"]


# -- restore links -------------------------------------------------------------------------------------------------


def test_restore_cart_loads_the_linked_cart_and_records_the_visit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOVERKIT_LINK_SECRET", LINK_SECRET)
    shop = Shop(CONFIG={**FLOW, "links": {"base_url": BASE_URL, "max_age": 3600}})
    with client_for(shop) as client:
        links = shop.app.links
        assert links is not None
        good = links.build("cart-7", now=shop.clock.now()).removeprefix("https://shop.example")
        assert client.get(good).json() == {"lines": ["SKU-1"]}
        assert client.get("/cart/restore").json() == {"problem": "malformed"}
        assert client.get(good[:-3] + ("xyz" if not good.endswith("xyz") else "abc")).json() == {"problem": "tampered"}
        later(client, shop, 3600)  # the link's max_age on the configured clock
        assert client.get(good).json() == {"problem": "expired"}
        [visit] = shop.events()  # bad links recorded nothing
        assert (visit["event"], visit["page_type"], visit["cart_id"]) == ("page_view", "cart_restore", "cart-7")


@pytest.mark.anyio
async def test_restore_cart_takes_a_plain_function_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOVERKIT_LINK_SECRET", LINK_SECRET)
    restored: list[str] = []

    async def view(scope: Any, receive: Any, send: Any) -> None:
        restored.append(await restore_cart(Request(scope), lambda key: key.upper()))
        await PlainTextResponse("ok")(scope, receive, send)

    middleware = RecoverkitMiddleware(view, settings={"MODE": "off", "CONFIG": {"links": {"base_url": BASE_URL}}})
    links = middleware.links
    assert links is not None
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url="http://shop") as client:
        assert (await client.get(links.build("cart-7").removeprefix("https://shop.example"))).status_code == 200
    assert restored == ["CART-7"]


# -- Starlette's and FastAPI's ways of adding middleware -----------------------------------------------------------


@pytest.mark.parametrize("how", ["Middleware(...)", "add_middleware"])
def test_added_the_starlette_and_fastapi_way(no_thread_leak: None, how: str) -> None:
    channel = MemoryChannel()
    settings = {"CHANNELS": {"email": channel}, "CONFIG": FLOW}

    async def add(request: Request) -> Response:
        kept = get_tracker(request).add_to_cart(CART, currency="EUR")
        engine = get_engine(request)
        assert engine is not None
        await engine.flush()
        return JSONResponse({"kept": kept, "accepted": engine.statistics().events_accepted})

    if how == "add_middleware":  # FastAPI: app.add_middleware(RecoverkitMiddleware, settings=...)
        app = Starlette(routes=[Route("/add", add)])
        app.add_middleware(RecoverkitMiddleware, settings=settings)
    else:
        app = Starlette(routes=[Route("/add", add)], middleware=[Middleware(RecoverkitMiddleware, settings=settings)])
    with TestClient(app) as client:
        response = client.get("/add")
        assert response.json() == {"kept": True, "accepted": 1}
        assert response.headers["set-cookie"].startswith(SESSION_COOKIE)
    assert channel.closed


def test_get_tracker_without_the_middleware_says_how_to_add_it() -> None:
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    with pytest.raises(RuntimeError, match="add RecoverkitMiddleware"):
        get_tracker(request)


# -- the example and packaging -------------------------------------------------------------------------------------


def test_the_example_app_serves_and_records(no_thread_leak: None) -> None:
    example = load_example("examples/asgi_app.py", "example_asgi_app")
    with TestClient(example.app) as client:
        home = client.get("/")
        assert home.status_code == 200 and home.headers["set-cookie"].startswith(SESSION_COOKIE)
        assert client.get("/add?sku=MUG-1").text.startswith("MUG-1 added")
        assert client.get("/checkout").status_code == 200
        assert client.get("/buy").status_code == 200


def test_recoverkit_imports_without_starlette_and_says_how_to_install_it() -> None:
    script = (
        "import sys; sys.modules['starlette'] = None\n"
        "import recoverkit, recoverkit.integration, recoverkit.contrib\n"
        "try:\n    import recoverkit.contrib.asgi\nexcept ImportError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "pip install 'recoverkit[asgi]'" in done.stdout


def test_importing_recoverkit_imports_no_web_framework() -> None:
    script = (
        "import sys, recoverkit, recoverkit.integration\n"
        "print(sorted({'flask', 'starlette', 'django'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.stdout.strip() == "[]", done.stderr


# -- reading the request cheaply, as Starlette and urllib read it ------------------------------------------------------


@given(st.lists(st.sampled_from(["rk_sid", "=", ";", " ", '"', "\\", "abc", "rk_sid2", "x", "\t"]), max_size=16)
       .map("".join))  # fmt: skip
def test_the_session_cookie_is_read_as_starlettes_cookie_parser_reads_it(header: str) -> None:
    assert _cookie(header, "rk_sid") == cookie_parser(header).get("rk_sid")


@given(st.lists(st.sampled_from(["utm_source", "utm%5Fsource", "utm%5fsource", "=", "&", ";", "+", "%", "ads",
                                 "x", "%41", "utm"]), max_size=12).map("".join))  # fmt: skip
def test_the_traffic_source_is_read_as_parse_qs_reads_it(query: str) -> None:
    from urllib.parse import parse_qs

    values = parse_qs(query).get("utm_source")
    assert _utm_source(query.encode("latin-1")) == (values[0] or None if values else None)
