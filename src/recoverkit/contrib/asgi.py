"""recoverkit for ASGI apps (Starlette, FastAPI): a pure ASGI middleware that runs the engine on the server's loop.

::

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from recoverkit.contrib.asgi import RecoverkitMiddleware, get_tracker

    app = Starlette(routes=[...], middleware=[
        Middleware(RecoverkitMiddleware, settings={"CHANNELS": {"email": "myshop.mail.RecoveryEmail"}}),
    ])
    # FastAPI: app.add_middleware(RecoverkitMiddleware, settings={...})

    async def add_to_cart(request):
        get_tracker(request).add_to_cart([{"item_id": "SKU-1", "price": "35.79"}], currency="EUR", cart_id=cart.id)

Guarantees:

- **Lifespan.** On ``lifespan.startup`` the middleware builds and starts an async :class:`~recoverkit.Engine` on the
  server's own event loop, before the wrapped app's own start-up runs; a configuration error fails the start-up
  (``lifespan.startup.failed``, the server exits) instead of the first request. When the wrapped app has finished
  its shutdown, the engine drains what was accepted, finishes deliveries in flight (at most ``CLOSE_TIMEOUT``
  seconds) and closes, and only then is ``lifespan.shutdown.complete`` passed on to the server. The wrapped app
  sees every lifespan message, so Starlette's and FastAPI's own lifespan keep working; a bare ASGI app that does
  not speak lifespan (it raises on the scope) is covered by the middleware, which answers the server itself.
- **Without lifespan** (``uvicorn --lifespan off``, a server that does not implement it): the first request
  that records an event starts a per-process :class:`~recoverkit.BackgroundEngine` in a thread instead (fork-safe,
  drained by an ``atexit`` hook), and logs ``lifespan_missing`` once. Events are never lost for want of a
  lifespan; run with lifespan in production all the same, so that shutdown drains in order.
- **Requests.** ``scope["state"]["recoverkit"]`` holds the request's :class:`~recoverkit.integration.Tracker`
  (``request.state.recoverkit`` in Starlette; :func:`get_tracker`). The session id comes from the first-party
  cookie (``rk_sid``); a missing or forged one is replaced by a new id, set on the response (``HttpOnly``,
  ``SameSite=Lax``, ``Secure`` per ``COOKIE_SECURE`` or the request's scheme). After a ``GET`` answered with a
  2xx, the event ``CHECKOUT_PATHS`` names for the path is recorded (a ``page_view`` only for an HTML response).
  Nothing recoverkit does can fail a request: every step is contained and logged without personal data.
- **WebSockets** and any other scope type pass through untouched.

Paths in ``CHECKOUT_PATHS`` are the app's own (without the ``root_path`` it is mounted under).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Final, Literal, TypeVar, cast
from urllib.parse import parse_qs

import anyio
import anyio.abc

try:
    from starlette.requests import HTTPConnection, cookie_parser
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "recoverkit.contrib.asgi needs Starlette, which is not installed; install it with "
        "`pip install 'recoverkit[asgi]'` (FastAPI installs it too)"
    ) from exc

from .._log import get_logger
from ..clock import Clock, WallClock
from ..engine import Engine
from ..events import RESTORE_PAGE
from ..integration import (
    LINK_PARAMETER,
    SESSION_COOKIE_MAX_AGE,
    EventSink,
    IntegrationSettings,
    LazyEngine,
    Tracker,
    device_of,
    is_session_id,
    load_customer,
    new_session_id,
)
from ..integration import restore_cart as shared_restore_cart
from ..links import RestoreLinks

__all__ = [
    "STATE_KEY",
    "CustomerLoader",
    "RecoverkitMiddleware",
    "get_engine",
    "get_tracker",
    "restore_cart",
    "scope_tracker",
]

T = TypeVar("T")
#: Tells the logged-in customer's id (``str`` or ``int``; ``None`` for a guest) from the request's connection.
CustomerLoader = Callable[[HTTPConnection], object]

#: The key of the request's tracker in ``scope["state"]`` (``request.state.recoverkit``).
STATE_KEY: Final = "recoverkit"
_SCOPE_KEY: Final = "recoverkit.middleware"
_FINAL_LIFESPAN: Final = frozenset(
    {"lifespan.startup.failed", "lifespan.shutdown.complete", "lifespan.shutdown.failed"}
)

_log = get_logger("recoverkit.contrib.asgi")


class RecoverkitMiddleware:
    """The middleware: ``RecoverkitMiddleware(app, settings)``; see the module docs for what it guarantees.

    ``settings`` is an :class:`~recoverkit.integration.IntegrationSettings` or a mapping of its keys
    (``{"MODE": "embedded", "CHANNELS": {...}, "CHECKOUT_PATHS": {...}}``), validated here, so a typo raises
    :class:`~recoverkit.errors.ConfigError` when the app is built. ``customer_loader`` is called with the
    request's :class:`~starlette.requests.HTTPConnection` the first time the request's tracker records an event
    (so an authentication middleware inside this one has run by then); an exception from it is logged (its type
    only) and the request goes on as a guest's.

    ``engine`` is the lifespan's engine while it runs, ``background`` the fallback engine of a server without
    lifespan (``None`` until one was needed).
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: IntegrationSettings | Mapping[str, Any] | None = None,
        *,
        customer_loader: CustomerLoader | None = None,
    ) -> None:
        self.app = app
        if isinstance(settings, IntegrationSettings):
            self.settings = settings
        else:
            self.settings = IntegrationSettings.from_mapping(settings, source="RecoverkitMiddleware settings")
        self.customer_loader = customer_loader
        self.engine: Engine | None = None
        self.background: LazyEngine | None = None
        #: The clock events are stamped with and links verified on: the CLOCK setting, else the wall clock.
        self.clock: Clock = self.settings.clock if self.settings.clock is not None else WallClock()
        # "none": no lifespan seen (yet), requests fall back to a BackgroundEngine; "lifespan": the server runs
        # one, and events outside its engine's life (during shutdown) are refused rather than sent elsewhere.
        self._lifespan: Literal["none", "lifespan"] = "none"
        self._lock = threading.Lock()  # sync views run in worker threads and may build the fallback at once
        self._config_links: RestoreLinks | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._run_lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    # -- events ------------------------------------------------------------------------------------------------

    def track(self, event: Mapping[str, Any]) -> bool:
        """Hand ``event`` to the engine, stamped with the current time; never raises, ``False`` if not kept."""
        if self.settings.mode == "off":
            return False
        if "ts" not in event:
            # Stamped now, when the request happened, not when the engine's next tick journals it.
            event = {**event, "ts": self.clock.now()}
        return self._deliver(event)

    def _track_own(self, event: dict[str, Any]) -> bool:
        """:meth:`track` for the request trackers' events: new dicts of their own, stamped in place, not copied."""
        if self.settings.mode == "off":
            return False
        if "ts" not in event:
            event["ts"] = self.clock.now()
        return self._deliver(event)

    def _deliver(self, event: Mapping[str, Any]) -> bool:
        engine = self.engine
        if engine is not None:
            return engine.track(event)
        if self._lifespan == "lifespan":
            return False  # the server's lifespan engine is starting or has stopped: nothing else may send
        return self._fallback().track(event)

    def _fallback(self) -> LazyEngine:
        background = self.background
        if background is None:
            with self._lock:
                if self.background is None:
                    _log.warning(
                        "lifespan_missing",
                        detail="the server sent no lifespan events; recoverkit runs its engine in a background "
                        "thread instead (enable lifespan, e.g. uvicorn --lifespan on, to run it on the server's loop)",
                    )
                    self.background = LazyEngine(self.settings)
                background = self.background
        return background

    @property
    def links(self) -> RestoreLinks | None:
        """The cart-restore links (``None`` when ``[links] base_url`` is not configured)."""
        engine = self.engine
        if engine is not None:
            return engine.links
        # No engine running here (no lifespan, mode "off"): the same links, from the same settings and secret.
        if self._config_links is None:
            self._config_links = self.settings.links()
        return self._config_links

    # -- HTTP --------------------------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            tracker, minted = self._prepare(scope)
        except Exception as exc:  # never fail the shop's request because of recoverkit
            _log.error("request_setup_failed", error=type(exc).__name__)
            # The views still find a tracker; it records nothing.
            tracker, minted = Tracker(_refuse, new_session_id()), False
            scope.setdefault("state", {})[STATE_KEY] = tracker
            scope[_SCOPE_KEY] = self

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                try:
                    self._on_response_start(scope, message, tracker, minted)
                except Exception as exc:
                    _log.error("response_hook_failed", error=type(exc).__name__)
            await send(message)

        await self.app(scope, receive, send_wrapper)

    def _prepare(self, scope: Scope) -> tuple[Tracker, bool]:
        cookie, user_agent = _cookie_and_agent(scope)
        value = _cookie(cookie, self.settings.session_cookie)
        minted = not is_session_id(value)
        session_id = new_session_id() if minted else cast(str, value)
        tracker = _RequestTracker(
            self._track_own,
            session_id,
            scope=scope,
            loader=self.customer_loader,
            device=device_of(user_agent),
            source=_utm_source(scope.get("query_string", b"")),
        )
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state[STATE_KEY] = tracker
        scope[_SCOPE_KEY] = self
        return tracker, minted and self.settings.mode != "off"

    def _on_response_start(self, scope: Scope, message: Message, tracker: Tracker, minted: bool) -> None:
        settings = self.settings
        if settings.mode == "off":
            return
        status = int(message.get("status", 0))
        if scope.get("method") == "GET" and 200 <= status < 300:
            kind = settings.path_event(_app_path(scope))
            if kind is not None and (kind != "page_view" or _is_html(message)):
                tracker.track(kind)
        if minted:
            secure = settings.cookie_secure if settings.cookie_secure is not None else scope.get("scheme") == "https"
            cookie = (
                f"{settings.session_cookie}={tracker.session_id}; Max-Age={SESSION_COOKIE_MAX_AGE}; Path=/; "
                f"HttpOnly; SameSite=Lax{'; Secure' if secure else ''}"
            )
            message["headers"] = [*message.get("headers", ()), (b"set-cookie", cookie.encode("latin-1"))]

    # -- lifespan ----------------------------------------------------------------------------------------------

    async def _run_lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        startup = await receive()
        if self.settings.mode == "off" or startup.get("type") != "lifespan.startup":
            await self.app(scope, _replaying(startup, receive), send)
            return
        self._lifespan = "lifespan"
        try:
            engine = self.settings.new_engine()
        except Exception as exc:  # a configuration error: the server must not start half-configured
            await send({"type": "lifespan.startup.failed", "message": f"recoverkit: {exc}"})
            return
        stop = anyio.Event()
        stopped = anyio.Event()
        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            try:
                await tg.start(self._hold, engine, stop, stopped)
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": f"recoverkit: {exc}"})
                return

            async def stop_engine() -> None:
                stop.set()
                await stopped.wait()

            sent: list[str] = []

            async def send_app(message: Message) -> None:
                sent.append(message["type"])
                if message["type"] in _FINAL_LIFESPAN:
                    await stop_engine()  # the app has stopped (or failed to start): drain before telling the server
                await send(message)

            try:
                await self.app(scope, _replaying(startup, receive), send_app)
            except Exception as exc:
                if sent:
                    error = exc  # raised below, outside the task group, as the app raised it
                else:
                    # A bare ASGI app that does not speak lifespan raises on the scope: answer for it.
                    _log.info("lifespan_unsupported_by_app", error=type(exc).__name__)
                    await send({"type": "lifespan.startup.complete"})
                    await receive()  # lifespan.shutdown
                    await stop_engine()
                    await send({"type": "lifespan.shutdown.complete"})
            finally:
                stop.set()  # the app returned (or the server cancelled us): the engine drains and closes
        if error is not None:
            raise error

    async def _hold(
        self,
        engine: Engine,
        stop: anyio.Event,
        stopped: anyio.Event,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        # The engine is entered and left in this one task, as anyio requires, whichever task the app's lifespan
        # sends its messages from.
        started = False
        try:
            async with engine:
                self.engine = engine
                started = True
                task_status.started()
                await stop.wait()
                self.engine = None
        except Exception:
            if not started:
                raise  # start() reports it: the start-up fails
            # A pipeline failure stops recoverkit, never the shop: later events are refused (and counted).
            _log.exception("engine_failed")
        finally:
            self.engine = None
            stopped.set()


class _RequestTracker(Tracker):
    """A tracker that asks the customer loader once, at its first event (when authentication has run)."""

    __slots__ = ("_loader", "_scope")

    def __init__(
        self,
        sink: EventSink,
        session_id: str,
        *,
        scope: Scope,
        loader: CustomerLoader | None,
        device: str | None,
        source: str | None,
    ) -> None:
        super().__init__(sink, session_id, device=device, source=source)
        self._scope = scope
        self._loader = loader

    def track(self, event: str, **fields: Any) -> bool:
        loader = self._loader
        if loader is not None:
            self._loader = None
            if self.customer_id is None:
                self.customer_id = _load_customer(loader, self._scope)
        return super().track(event, **fields)


def _load_customer(loader: CustomerLoader, scope: Scope) -> str | None:
    return load_customer(lambda: loader(HTTPConnection(scope)))


def _refuse(event: Mapping[str, Any]) -> bool:
    return False


def _replaying(first: Message, receive: Receive) -> Receive:
    """``receive`` that gives ``first`` (already read by the middleware) once, then reads on."""
    pending: list[Message] = [first]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay


def _cookie_and_agent(scope: Scope) -> tuple[str, str | None]:
    """The ``Cookie`` header (``""`` without one) and the ``User-Agent`` of a request; only these two are decoded."""
    cookies: list[str] = []
    user_agent: str | None = None
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.lower()
        if name == b"cookie":
            cookies.append(raw_value.decode("latin-1"))
        elif name == b"user-agent":
            user_agent = raw_value.decode("latin-1")  # the last one, if a client sent several
    # HTTP/2 may split the cookie header in several; RFC 9113 joins them with "; ".
    return "; ".join(cookies), user_agent


def _cookie(header: str, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header, as Starlette's ``cookie_parser`` reads it (the last of
    that name wins, its value unquoted), without parsing the other cookies."""
    if name not in header:  # its name must be there as it is: a cookie's name is never unquoted
        return None
    found: str | None = None
    for pair in header.split(";"):
        key, equals, value = pair.partition("=")
        if equals and key.strip() == name:
            found = pair
    if found is None:
        return None
    value = found.partition("=")[2].strip()
    # cookie_parser unquotes only a value in double quotes; anything else it keeps as it is.
    return value if value[:1] != '"' else cookie_parser(found).get(name)


def _utm_source(query: bytes) -> str | None:
    """The first ``utm_source`` of a query string, or ``None``; parsed only when it may be there."""
    # The key can only be there spelled out, or percent-encoded ("utm%5Fsource"): otherwise there is none.
    if b"utm_source" not in query and b"%" not in query:
        return None
    values = parse_qs(query.decode("latin-1")).get("utm_source")
    return values[0] or None if values else None


def _app_path(scope: Scope) -> str:
    path = str(scope.get("path", "/"))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


def _is_html(message: Message) -> bool:
    # A page view is an HTML page a shopper looked at, not a stylesheet, an image or a JSON call.
    for name, value in message.get("headers", ()):
        if name.lower() == b"content-type":
            return bytes(value).lower().startswith(b"text/html")
    return False


# -- for views -------------------------------------------------------------------------------------------------


def scope_tracker(scope: MutableMapping[str, Any]) -> Tracker:
    """The tracker :class:`RecoverkitMiddleware` put in an HTTP ``scope``; ``RuntimeError`` when there is none."""
    tracker = (scope.get("state") or {}).get(STATE_KEY)
    if not isinstance(tracker, Tracker):
        raise RuntimeError(
            "this request has no recoverkit tracker: add RecoverkitMiddleware to the app (Starlette: "
            "middleware=[Middleware(RecoverkitMiddleware, ...)], FastAPI: app.add_middleware(RecoverkitMiddleware, "
            "...)); websocket connections have none"
        )
    return tracker


def get_tracker(request: HTTPConnection) -> Tracker:
    """The request's tracker (``request.state.recoverkit``); its methods never raise.

    Usable as a FastAPI dependency: ``tracker: Annotated[Tracker, Depends(get_tracker)]``.
    """
    return scope_tracker(request.scope)


def _middleware(scope: MutableMapping[str, Any]) -> RecoverkitMiddleware:
    middleware = scope.get(_SCOPE_KEY)
    if not isinstance(middleware, RecoverkitMiddleware):
        scope_tracker(scope)  # raises with the explanation
        raise RuntimeError("this request went through no RecoverkitMiddleware")
    return middleware


def get_engine(request: HTTPConnection) -> Engine | None:
    """The engine the lifespan started (``await get_engine(request).forget(customer_id)`` in an admin view);
    ``None`` while none runs (a server without lifespan, mode ``"off"``, shutdown)."""
    return _middleware(request.scope).engine


async def restore_cart(
    request: HTTPConnection,
    load_cart: Callable[[str], Awaitable[T]] | Callable[[str], T],
    token: str | None = None,
) -> T:
    """What a shop's cart-restore view awaits: verify the link's token (``?t=...`` by default), return
    ``load_cart(cart_key)`` (a function or a coroutine function) and record the visit (a ``page_view`` with
    ``page_type="cart_restore"``).

    Raises :class:`~recoverkit.errors.LinkError` (``error.reason``: ``"malformed"``, ``"tampered"``,
    ``"expired"``) before ``load_cart`` is called, for the view to answer with a friendly page; and
    :class:`~recoverkit.errors.ConfigError` when ``[links] base_url`` is not configured. Links are built from the
    configured base URL only, never from the request's ``Host`` header. Expiry is judged on the engine's clock
    (the ``CLOCK`` setting, else the wall clock), the one the link was built on.
    """
    middleware = _middleware(request.scope)
    if token is None:
        token = request.query_params.get(LINK_PARAMETER)
    # Verified on the engine's clock (the CLOCK setting), the one the link was built on; loaded below, since
    # load_cart may be a coroutine function here.
    cart_key = shared_restore_cart(middleware.links, token, lambda key: key, now=middleware.clock.now())
    loaded = load_cart(cart_key)
    cart = cast(T, await loaded if inspect.isawaitable(loaded) else loaded)
    get_tracker(request).track("page_view", page_type=RESTORE_PAGE, cart_id=cart_key)
    return cart
