"""The on-site endpoint, whatever the framework: one request in, (status, headers, body) out.

``GET <path>`` answers the visitor's offer (``{"offer": {...}}`` or ``{"offer": null}``) and counts it shown;
``POST <path>`` with ``{"token": ..., "mark": "clicked" | "dismissed"}`` records what the visitor did (204, or
404 when the token is not theirs or no longer on); ``GET <path>.js`` serves the snippet. Every answer is
``no-store`` (an offer is one visitor's), JSON is ``nosniff``. The offer is answered only to a request that
asks for ``Accept: application/json`` (406 otherwise), which a link or a top-level navigation from another site
does not, so no other site can use up a visitor's showing; a report must come as ``Content-Type:
application/json``, which a cross-site form cannot send and a cross-site script cannot send without a CORS
pre-flight that is never granted. Over the rate limit: 429 with ``Retry-After``.
"""

from __future__ import annotations

from typing import Final

from .._log import get_logger
from ..onsite import OnsiteBoard, answer_json, mark_request, snippet

__all__ = ["DEFAULT_PATH", "Reply", "handle"]

#: Where the endpoints answer by default; the snippet is at the same path plus ``.js``.
DEFAULT_PATH: Final = "/recoverkit/onsite"
#: The most bytes a report's body may have.
MAX_BODY: Final = 1024

Reply = tuple[int, list[tuple[str, str]], bytes]

_log = get_logger("recoverkit.contrib.onsite")
_JSON: Final = [
    ("Content-Type", "application/json"), ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
]  # fmt: skip
_SCRIPT: Final = [
    ("Content-Type", "text/javascript; charset=utf-8"), ("Cache-Control", "public, max-age=300"),
    ("X-Content-Type-Options", "nosniff"),
]  # fmt: skip


def _error(status: int, text: str, extra: list[tuple[str, str]] | None = None) -> Reply:
    return status, [*_JSON, *(extra or [])], b'{"error": "' + text.encode() + b'"}'


def handle(
    board: OnsiteBoard | None,
    method: str,
    *,
    script: bool,
    content_type: str | None,
    accept: str | None,
    body: bytes,
    session_id: str | None,
    customer_id: str | None,
    client: str | None,
) -> Reply:
    """Answer one request to the endpoint (``script``: the ``.js`` path); never raises. Without a ``board``
    (no on-site channel, or no engine in this process) there is never an offer."""
    try:
        if script:
            if method not in ("GET", "HEAD"):
                return _error(405, "method not allowed", [("Allow", "GET, HEAD")])
            return 200, list(_SCRIPT), snippet().encode("utf-8")
        if method not in ("GET", "POST"):
            return _error(405, "method not allowed", [("Allow", "GET, POST")])
        if board is None:
            return (200, list(_JSON), answer_json(None)) if method == "GET" else _error(404, "no such offer")
        if board.limited(session_id, customer_id, client):
            return _error(429, "too many requests", [("Retry-After", "60")])
        if method == "GET":
            if "application/json" not in (accept or "").lower():
                return _error(406, "expected Accept: application/json")
            answer = board.answer(session_id=session_id, customer_id=customer_id)
            return 200, list(_JSON), answer_json(answer)
        if (content_type or "").split(";")[0].strip().lower() != "application/json":
            return _error(415, "expected application/json")
        report = mark_request(body) if len(body) <= MAX_BODY else None
        if report is None:
            return _error(400, 'expected {"token": "...", "mark": "clicked" or "dismissed"}')
        if board.mark(report[0], report[1], session_id=session_id, customer_id=customer_id):
            return 204, [("Cache-Control", "no-store")], b""
        return _error(404, "no such offer")
    except Exception as exc:  # never fail the shop's page because of recoverkit: the snippet shows nothing
        _log.error("onsite_endpoint_failed", error=type(exc).__name__)
        return _error(503, "unavailable")
