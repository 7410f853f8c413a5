"""The operator console as a plain ASGI app, for Starlette, FastAPI or any ASGI server (docs/console.md).

::

    from starlette.routing import Mount
    from recoverkit.console import RESEND, VIEW, Operator
    from recoverkit.contrib.asgi_console import ConsoleApp

    async def auth(scope):
        user = scope.get("user")                        # Starlette's AuthenticationMiddleware, say
        if user is None or not user.is_authenticated or not user.is_admin:
            return None                                  # 403
        return Operator(name=str(user.id), permissions=frozenset({VIEW, RESEND}))

    app = Starlette(routes=[..., Mount("/ops/recoverkit", app=ConsoleApp(auth, secret=os.environ["SECRET_KEY"]))],
                    middleware=[Middleware(RecoverkitMiddleware, settings=...)])

Never public: a request for which ``auth(scope)`` (plain or async) answers ``None``, or raises, gets 403. The
engine is, by default, the one :class:`~recoverkit.contrib.asgi.RecoverkitMiddleware` runs (on the server's loop
with lifespan, else its background engine); pass ``engine=`` to name another. Forms are protected by a signed
double-submit token keyed with ``secret`` (:class:`~recoverkit.console.CsrfTokens`). Pages are built in a worker
thread (the store is synchronous), never on the event loop. No Starlette needed here.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

import anyio.to_thread

from .._log import get_logger
from ..background import BackgroundEngine
from ..console import ConsoleRequest, ConsoleResponse, CsrfTokens, EngineAccess, Operator, handle, require_templates
from ..console._app import refused
from ..console._csrf import COOKIE, FIELD
from ..console._permissions import checked_operator

if TYPE_CHECKING:
    from typing import TypeAlias

    from ..engine import Engine

    #: The engine to show: one, or a function of the request's scope that finds it.
    EngineSource: TypeAlias = "Engine | BackgroundEngine | Callable[[Scope], Engine | BackgroundEngine | None]"

__all__ = ["ConsoleApp"]

_log = get_logger("recoverkit.contrib.asgi")

#: The most bytes a console form may have (a key and a token); a larger body gets 413.
MAX_FORM: Final = 64 * 1024
#: Where RecoverkitMiddleware leaves itself in the scope (recoverkit.contrib.asgi).
_MIDDLEWARE_KEY: Final = "recoverkit.middleware"

Scope = MutableMapping[str, Any]
Auth = Callable[[Scope], "Operator | Awaitable[Operator | None] | None"]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class ConsoleApp:
    """The console: ``ConsoleApp(auth, secret=...)``, mounted where you like (it reads ``root_path``)."""

    def __init__(self, auth: Auth, *, secret: str | bytes, engine: EngineSource | None = None) -> None:
        if not callable(auth):
            raise TypeError(f"ConsoleApp: expected `auth` to be a callable scope -> Operator | None, got "
                            f"{type(auth).__name__}")  # fmt: skip
        require_templates()  # without Jinja2: MissingExtraError naming the extra, now rather than at the first page
        self.auth = auth
        self.tokens = CsrfTokens(secret)  # raises ValueError naming the secret when it is too short
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # served alone: nothing to start; RecoverkitMiddleware runs the engine
            while True:
                kind = (await receive())["type"]
                if kind == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif kind == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        body = await _body(receive)
        if body is None:
            await _send(send, refused(413, "The form is too large."), None)
            return
        answer, cookie = await self._answer(scope, body)
        await _send(send, answer, cookie)

    async def _answer(self, scope: Scope, body: bytes) -> tuple[ConsoleResponse, str | None]:
        root_path, path = scope.get("root_path", ""), scope.get("path", "/")
        sub = path[len(root_path) :] if path.startswith(root_path) else path
        root = root_path.rstrip("/") + "/"
        cookies = _cookies(scope)
        session = cookies.get(COOKIE) or CsrfTokens.new_session()
        who = await self._operator(scope)
        name = who.name if who is not None else ""
        method = scope.get("method", "GET")
        form = dict(parse_qsl(body.decode("utf-8", "replace"))) if method == "POST" else {}
        request = ConsoleRequest(method=method, path=sub.lstrip("/"), form=form,
                                 query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))))  # fmt: skip
        access = self._access(scope)

        def run() -> ConsoleResponse:
            return handle(
                request, operator=who, access=access, root=root, csrf_field=FIELD,
                csrf_token=self.tokens.token(session, name),
                csrf_ok=method != "POST" or self.tokens.check(cookies.get(COOKIE), name, form.get(FIELD)),
            )  # fmt: skip

        answer = await anyio.to_thread.run_sync(run)
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = None if cookies.get(COOKIE) == session else (
            f"{COOKIE}={session}; Path={root}; HttpOnly; SameSite=Strict{secure}"
        )  # fmt: skip
        return answer, cookie

    async def _operator(self, scope: Scope) -> Operator | None:
        try:
            who = self.auth(scope)
            if inspect.isawaitable(who):  # a plain or an async hook, as the shop wrote it
                who = await who
        except Exception as exc:  # the shop's check failed: nobody is let in
            _log.error("console_authorize_failed", error=type(exc).__name__)
            return None
        return checked_operator(who)

    def _access(self, scope: Scope) -> Callable[[], EngineAccess | None]:
        """Where the worker thread finds the engine: this app's, or RecoverkitMiddleware's."""
        source = self.engine
        if source is None:
            middleware = scope.get(_MIDDLEWARE_KEY)
            if middleware is None:
                return lambda: None
            if middleware.engine is not None:
                source = middleware.engine
            else:
                background = middleware.background if middleware.background is not None else middleware._fallback()
                return lambda: _wrap(background.get())
        found = source(scope) if callable(source) and not _is_engine(source) else source
        return lambda: _wrap(found)


def _is_engine(value: Any) -> bool:
    from ..engine import Engine

    return isinstance(value, (Engine, BackgroundEngine))


def _wrap(engine: Any) -> EngineAccess | None:
    if engine is None:
        return None
    if isinstance(engine, BackgroundEngine):
        return EngineAccess.background(engine)
    return EngineAccess.on_loop(engine)  # an Engine on the loop whose worker thread calls the console


async def _body(receive: Receive) -> bytes | None:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return body
        body += bytes(message.get("body", b""))
        if len(body) > MAX_FORM:
            return None
        if not message.get("more_body", False):
            return body


def _cookies(scope: Scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header: as if there were none
                continue
            found.update({key: morsel.value for key, morsel in jar.items()})
    return found


async def _send(send: Send, answer: ConsoleResponse, cookie: str | None) -> None:
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    headers.append((b"content-length", str(len(answer.body)).encode()))
    if cookie is not None:
        headers.append((b"set-cookie", cookie.encode("latin-1")))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
