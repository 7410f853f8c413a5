"""The on-site endpoint for Django (:mod:`recoverkit.onsite`, docs/onsite.md): one synchronous view.

::

    # urls.py
    from recoverkit.contrib.django.onsite import onsite_urls
    urlpatterns = [..., *onsite_urls()]          # /recoverkit/onsite and /recoverkit/onsite.js

It answers for the visitor of the request only (the middleware's session cookie and ``request.user``), needs
:class:`~recoverkit.contrib.django.middleware.RecoverkitMiddleware`, and is exempt from Django's CSRF check:
a report must come as ``application/json``, which no cross-site form can send (see
:mod:`recoverkit.contrib._onsite_http`), and it can only mark the visitor's own offer.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from django.http import HttpResponse  # type: ignore[import-untyped]
from django.urls import path  # type: ignore[import-untyped]

from ...onsite import OnsiteBoard, OnsiteChannel
from .._onsite_http import DEFAULT_PATH, MAX_BODY, handle
from ._state import get_state
from .tracking import get_tracker

__all__ = ["onsite_script", "onsite_urls", "onsite_view"]

_lock = threading.Lock()
_held: list[tuple[int, Any, OnsiteBoard]] = []  # (pid, the engine it was built on, the board)


def _board() -> OnsiteBoard | None:
    state = get_state()
    engine = state.engine.get()
    channels = state.settings.channels or {}
    channel = next((c for c in channels.values() if isinstance(c, OnsiteChannel)), None)
    if engine is None or channel is None:
        return None
    with _lock:
        if _held and _held[0][0] == os.getpid() and _held[0][1] is engine:
            return _held[0][2]
        board = OnsiteBoard(engine.engine.store, channel.templates, clock=state.clock)
        _held[:] = [(os.getpid(), engine, board)]
        return board


def _respond(request: Any, script: bool) -> Any:
    tracker = get_tracker(request)
    body = request.read(MAX_BODY + 1) if request.method == "POST" else b""
    status, headers, payload = handle(
        None if script else _board(), request.method, script=script, content_type=request.content_type,
        accept=request.META.get("HTTP_ACCEPT"), body=body, session_id=tracker.session_id,
        customer_id=tracker.customer_id, client=request.META.get("REMOTE_ADDR"),
    )  # fmt: skip
    response = HttpResponse(payload, status=status)
    for name, value in headers:
        response[name] = value
    return response


def onsite_view(request: Any) -> Any:
    """``GET`` the visitor's offer, ``POST`` a click or dismissal (exempt from the CSRF check: see the module)."""
    return _respond(request, script=False)


onsite_view.csrf_exempt = True  # type: ignore[attr-defined]  # what django's @csrf_exempt sets


def onsite_script(request: Any) -> Any:
    """The snippet."""
    return _respond(request, script=True)


def onsite_urls(prefix: str = DEFAULT_PATH.lstrip("/")) -> list[Any]:
    """The URL patterns: ``prefix`` (the endpoint) and ``prefix + ".js"`` (the snippet)."""
    return [
        path(prefix, onsite_view, name="recoverkit_onsite"),
        path(prefix + ".js", onsite_script, name="recoverkit_onsite_js"),
    ]
