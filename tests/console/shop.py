"""A small shop for the console's tests: a real engine (a BackgroundEngine on a SQLite file, a FakeClock) whose
email channel is a webhook to a real HTTP server on localhost, and a customer whose message was dead-lettered."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from recoverkit import BackgroundEngine, Config, FakeClock
from recoverkit.channels.webhook import WebhookChannel
from recoverkit.console import EngineAccess, Operator

__all__ = ["ADA", "ADA_PHONE", "BOB", "CONFIG", "T0", "Receiver", "Shop", "operator"]

T0 = 1_796_605_200.0  # 01:00 UTC: what a test does happens on one day
ADA = "ada.lovelace@example.com"
ADA_PHONE = "+44 20 7946 0321"
BOB = "bob@example.org"
#: Carts are abandoned after 10 minutes; the first message falls due an hour later.
CONFIG = Config(abandon_after=600)


def operator(name: str = "42", *permissions: str) -> Operator:
    return Operator(name=name, permissions=frozenset(permissions))


class Receiver:
    """A real HTTP server on localhost: the webhook channel's provider. Answers ``status``; records the
    ``Idempotency-Key`` of every POST it answered 2xx in ``received``."""

    def __init__(self, status: int = 400) -> None:
        self.status = status
        self.received: list[str] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                if 200 <= receiver.status < 300:
                    receiver.received.append(self.headers["Idempotency-Key"])
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/cart"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class Shop:
    """The engine and its provider; :meth:`abandon` makes a customer's cart abandoned and its message fail for
    good (the provider answers 400), so that it waits in the dead letters."""

    def __init__(
        self, path: Path, *, engine: Callable[[Receiver, FakeClock], BackgroundEngine] | None = None,
        config: Config = CONFIG,
    ) -> None:  # fmt: skip
        """``engine(receiver, clock)`` builds the engine (a framework's, say); by default a BackgroundEngine on
        ``path/state.db``, started here."""
        self.receiver = Receiver(400)
        self.clock = FakeClock(T0)
        if engine is None:
            self.background = BackgroundEngine(
                config, channels={"email": WebhookChannel(self.receiver.url)}, clock=self.clock,
                store=path / "state.db", close_at_exit=False,
            )  # fmt: skip
            self.background.start()
        else:
            self.background = engine(self.receiver, self.clock)
        self.access = EngineAccess.background(self.background)

    @property
    def store(self) -> Any:
        return self.background.engine.store

    def abandon(self, customer: str, email: str, *, cart: str, phone: str | None = None) -> None:
        now = self.clock.now()
        track = self.background.track
        contact: dict[str, Any] = {"email": email} | ({"phone": phone} if phone else {})
        assert track({"event": "identify", "session_id": f"s-{cart}", "ts": now, "customer_id": customer, **contact})
        assert track({"event": "consent", "session_id": f"s-{cart}", "ts": now, "customer_id": customer,
                      "granted": ["email"]})  # fmt: skip
        assert track({"event": "add_to_cart", "session_id": f"s-{cart}", "ts": now + 1, "customer_id": customer,
                      "cart_id": cart, "currency": "EUR",
                      "items": [{"item_id": "MUG-1", "price": "12.50", "quantity": 1}]})  # fmt: skip
        self.later(601)  # abandoned
        self.later(3601)  # the first step falls due, and the provider refuses it for good

    def buy(self, customer: str, *, cart: str, value: str) -> None:
        """The customer comes back and buys the cart."""
        assert self.background.track({
            "event": "purchase", "session_id": f"s-{cart}", "ts": self.clock.now(), "customer_id": customer,
            "cart_id": cart, "transaction_id": f"order-{cart}", "value": value, "currency": "EUR",
        })  # fmt: skip
        self.later(1)

    def later(self, seconds: float) -> None:
        self.background.flush()
        self.clock.advance(seconds)
        self.background.flush()

    def close(self) -> None:
        self.background.close()
        self.receiver.close()


def running_shop(path: Path) -> Iterator[Shop]:
    shop = Shop(path)
    try:
        yield shop
    finally:
        shop.close()
