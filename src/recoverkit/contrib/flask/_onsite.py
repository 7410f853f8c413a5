"""The on-site endpoint in Flask: registered by :meth:`Recoverkit.init_app` when an ``onsite`` channel
(:class:`~recoverkit.onsite.OnsiteChannel`) is configured; see :mod:`recoverkit.contrib._onsite_http`."""

from __future__ import annotations

import os
import threading

from flask import Flask, Response, current_app, request

from ...onsite import OnsiteBoard, OnsiteChannel
from .._onsite_http import DEFAULT_PATH, MAX_BODY, handle
from ._state import app_state

__all__ = ["board", "onsite_channel", "register"]

_BOARD_KEY = "recoverkit.onsite"
_lock = threading.Lock()


def onsite_channel(app: Flask) -> OnsiteChannel | None:
    """The app's on-site channel adapter, if one is configured."""
    channels = app_state(app).settings.channels or {}
    return next((c for c in channels.values() if isinstance(c, OnsiteChannel)), None)


def board(app: Flask) -> OnsiteBoard | None:
    """The process's :class:`OnsiteBoard` for ``app`` (built on first use, again in a forked child)."""
    state = app_state(app)
    engine = state.engine.get()
    channel = onsite_channel(app)
    if engine is None or channel is None:
        return None
    with _lock:
        held = app.extensions.get(_BOARD_KEY)
        if held is not None and held[0] == os.getpid() and held[1] is engine:
            found: OnsiteBoard = held[2]
            return found
        made = OnsiteBoard(engine.engine.store, channel.templates, clock=state.clock)
        app.extensions[_BOARD_KEY] = (os.getpid(), engine, made)
        return made


def _endpoint(script: bool) -> Response:
    from ._extension import current_session_id  # the request's session: the extension's module owns it

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    found = None if script else board(app)
    state = app_state(app)
    status, headers, body = handle(
        found, request.method, script=script, content_type=request.content_type,
        accept=request.headers.get("Accept"),
        body=request.stream.read(MAX_BODY + 1) if request.method == "POST" else b"",
        session_id=current_session_id(), customer_id=state.extension.load_customer(),
        client=request.remote_addr,
    )  # fmt: skip
    response = Response(body, status=status)
    for name, value in headers:
        response.headers[name] = value
    return response


def register(app: Flask, path: str = DEFAULT_PATH) -> None:
    """Add ``GET/POST <path>`` and ``GET <path>.js`` to ``app``."""
    app.add_url_rule(path, "recoverkit_onsite", lambda: _endpoint(False), methods=["GET", "POST"])
    app.add_url_rule(path + ".js", "recoverkit_onsite_js", lambda: _endpoint(True), methods=["GET"])
