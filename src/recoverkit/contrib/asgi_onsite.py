"""The on-site endpoint for Starlette and FastAPI (:mod:`recoverkit.onsite`, docs/onsite.md).

Mount it beside :class:`~recoverkit.contrib.asgi.RecoverkitMiddleware`, which knows the visitor::

    from recoverkit.contrib.asgi_onsite import onsite_routes
    app = Starlette(routes=[..., *onsite_routes()], middleware=[Middleware(RecoverkitMiddleware, settings=...)])

FastAPI: ``app.router.routes.extend(onsite_routes())``. The endpoint answers for the visitor of the request
only (the middleware's session cookie and customer loader); the store and the templates are reached in a
worker thread, never on the event loop.
"""

from __future__ import annotations

import threading
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..onsite import OnsiteBoard, OnsiteChannel
from ._onsite_http import DEFAULT_PATH, MAX_BODY, handle
from .asgi import _load_customer, _middleware, get_engine, get_tracker

__all__ = ["onsite_endpoint", "onsite_routes"]

_lock = threading.Lock()
_boards: dict[int, tuple[Any, OnsiteBoard]] = {}  # id(middleware) -> (the engine it was built on, the board)


def _board(request: Request) -> OnsiteBoard | None:
    middleware = _middleware(request.scope)
    engine = get_engine(request)
    channels = middleware.settings.channels or {}
    channel = next((c for c in channels.values() if isinstance(c, OnsiteChannel)), None)
    if engine is None or channel is None:
        return None
    with _lock:
        held = _boards.get(id(middleware))
        if held is None or held[0] is not engine:
            held = (engine, OnsiteBoard(engine.store, channel.templates, clock=middleware.clock))
            _boards[id(middleware)] = held
        return held[1]


async def onsite_endpoint(request: Request) -> Response:
    """``GET``/``POST`` the visitor's offer; ``.js`` paths answer the snippet."""
    script = request.url.path.endswith(".js")
    board = None if script else _board(request)
    body = b""
    if request.method == "POST":
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                break
    middleware = _middleware(request.scope)
    loader = middleware.customer_loader
    customer = _load_customer(loader, request.scope) if loader is not None else None
    session = get_tracker(request).session_id
    client = request.client.host if request.client is not None else None

    def run() -> tuple[int, list[tuple[str, str]], bytes]:
        return handle(
            board, request.method, script=script,
            content_type=request.headers.get("content-type"), accept=request.headers.get("accept"), body=body,
            session_id=session,
            customer_id=customer, client=client,
        )  # fmt: skip

    status, headers, payload = await anyio.to_thread.run_sync(run)
    return Response(payload, status_code=status, headers=dict(headers))


def onsite_routes(path: str = DEFAULT_PATH) -> list[Route]:
    """The endpoint's routes: ``path`` (``GET``, ``POST``) and ``path + ".js"`` (the snippet)."""
    return [
        Route(path, onsite_endpoint, methods=["GET", "POST"], name="recoverkit_onsite"),
        Route(path + ".js", onsite_endpoint, methods=["GET"], name="recoverkit_onsite_js"),
    ]
