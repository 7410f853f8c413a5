"""A Flask app for the tests that run real processes (``flask recoverkit worker``, gunicorn ``--preload``).

Configured from the environment: ``RK_TEST_STORE`` (the shared SQLite file), ``RK_TEST_OUTBOX`` (a JSON-lines
file the email channel appends each message to, with the pid of the process that sent it), ``RK_TEST_MODE``. A
cart is abandoned half a second after the last event and its one message is due at once, so a test waits a second
or two of wall time, not half an hour.

``GET /add`` makes the visitor a consenting shopper with a cart and answers with the pid of the process that
served it.
"""

from __future__ import annotations

import os

import msgspec
from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

from recoverkit import Message
from recoverkit.contrib.flask import Recoverkit, tracker

rk = Recoverkit()


class Outbox:
    """Appends one line per message and closes the file at once, so a test can read it while processes run
    (JsonLinesChannel buffers until it is closed)."""

    def __init__(self, path: str) -> None:
        self.path = path

    async def send(self, message: Message) -> None:
        line = msgspec.json.encode({"key": message.key, "pid": os.getpid(), "email": message.recipient.email})
        with open(self.path, "ab") as file:
            file.write(line + b"\n")


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        RECOVERKIT_MODE=os.environ.get("RK_TEST_MODE", "embedded"),
        RECOVERKIT_STORE=os.environ["RK_TEST_STORE"],
        RECOVERKIT_CHANNELS={"email": Outbox(os.environ["RK_TEST_OUTBOX"])},
        RECOVERKIT_CONFIG={
            "abandon_after": 0.5,
            "tick_interval": 0.05,
            "store": {"checkpoint_interval": 1, "lease_ttl": 2},
            "flows": [{"name": "now", "steps": [{"delay": 0, "channel": "email"}]}],
        },
        RECOVERKIT_CLOSE_TIMEOUT=5,
    )
    rk.init_app(app)

    @app.get("/add")
    def add() -> ResponseReturnValue:
        tracker.identify(email="shopper@example.com")
        tracker.consent(granted=["email"])
        tracker.add_to_cart([{"item_id": "SKU-1", "price": "12.50"}], currency="EUR")
        return jsonify(pid=os.getpid(), session_id=tracker.session_id)

    return app
