"""recoverkit in a plain WSGI application (what Django and Flask are underneath).

Run: python examples/wsgi_app.py   then open http://127.0.0.1:8000/add?sku=SKU-1 and wait ~5 seconds.

`BackgroundEngine` runs the engine's event loop in a daemon thread, started on first use; `track()` only
appends to an in-memory queue, so the request never waits for recoverkit. The waits are shortened for the
example.
"""

from __future__ import annotations

import sys
from urllib.parse import parse_qs
from wsgiref.simple_server import make_server

import recoverkit

engine = recoverkit.BackgroundEngine(
    recoverkit.Config(
        abandon_after=3.0,
        flows=[recoverkit.Flow(name="quick", steps=[recoverkit.FlowStep(delay=1.0, channel="email")])],
    ),
    channels={"email": recoverkit.ConsoleChannel(stream=sys.stdout)},
)


def app(environ, start_response):  # type: ignore[no-untyped-def]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    session = environ.get("REMOTE_ADDR", "anonymous")  # a real shop uses its session key
    if environ["PATH_INFO"] == "/add":
        engine.track({"event": "identify", "session_id": session, "customer_id": session,
                      "email": "shopper@example.com"})  # fmt: skip
        engine.track({"event": "consent", "session_id": session, "granted": ["email"]})
        engine.track({"event": "add_to_cart", "session_id": session, "currency": "EUR",
                      "items": [{"item_id": query.get("sku", ["SKU-1"])[0], "price": "12.50"}]})  # fmt: skip
        body = b"added; leave now and watch the console\n"
    elif environ["PATH_INFO"] == "/buy":
        engine.track({"event": "purchase", "session_id": session, "value": "12.50", "currency": "EUR"})
        body = b"bought; no reminder will be sent\n"
    else:
        body = b"try /add?sku=SKU-1 or /buy\n"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


if __name__ == "__main__":
    with make_server("127.0.0.1", 8000, app) as server:
        print("serving on http://127.0.0.1:8000")
        try:
            server.serve_forever()
        finally:
            engine.close()
