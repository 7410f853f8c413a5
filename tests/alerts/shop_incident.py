"""What the engine-run watcher's tests share: a shop's recent hours with a payment outage, and a webhook receiver.

:func:`recent_outage` is eight hours of the synthetic shop (seed 5, about 58,000 events) with the payment
provider down for 20 minutes at the sixth hour, moved in time (by whole minutes, so its minutes are the same) to
end just before now: a watcher that reads it raises exactly one alert for it, then its ``resolved`` notice
(``tests/alerts/test_feed.py`` checks the same events through a hand-wired feed).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec

from recoverkit.events import encode_event
from recoverkit.synthetic import DEFAULT_START, generate_events
from recoverkit._synthetic_incidents import Incident, inject

HOURS = 8
OUTAGE_AT = 6 * 3600  # seconds after the start
OUTAGE = 1200


def recent_outage(end: float | None = None) -> list[Any]:
    """The events, their last minute ending at or before ``end`` (default: now)."""
    stop = DEFAULT_START + HOURS * 3600
    events = itertools.takewhile(lambda e: float(e.ts or 0) < stop, generate_events(20_000, seed=5))
    events = inject(events, [Incident("payment_down", DEFAULT_START + OUTAGE_AT, OUTAGE)])
    shift = ((time.time() if end is None else end) - stop) // 60 * 60
    return [msgspec.structs.replace(e, ts=float(e.ts) + shift) for e in events]


def load(store: Any, events: list[Any], *, partitioned: bool = False) -> None:
    """Journal ``events`` in ``store`` as workers would have (by session into the partitions, if partitioned),
    in one transaction: a watcher already running sees none of them or all (were it to catch up half-way, it
    would move on to the wall clock's minute, hours past the rest, and count the rest as late)."""
    now = float(events[-1].ts)
    if partitioned:
        store.append_keyed([(e.session_id, encode_event(e)) for e in events], now=now)
    else:
        store.append_events([encode_event(e) for e in events], now=now)


class Hook:
    """A webhook receiver on localhost (a real HTTP server in a thread): keeps each alert's structured copy."""

    def __init__(self) -> None:
        received = self.received = []  # type: list[dict[str, Any]]
        lock = self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    received.append(json.loads(body)["recoverkit_alert"])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def kinds(self) -> list[tuple[str, str]]:
        """(kind, area) of every alert received, in order."""
        with self._lock:
            return [(a["kind"], a["area"]) for a in self.received]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def hook() -> Iterator[Hook]:
    receiver = Hook()
    try:
        yield receiver
    finally:
        receiver.close()


def wait_for(predicate: Any, timeout: float, what: str, describe: Any = None) -> None:
    """Poll ``predicate()`` until true; a timeout's message says what was awaited (and ``describe()``)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            detail = f"\n{describe()}" if describe is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{detail}")
        time.sleep(0.05)
