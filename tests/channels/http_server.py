"""A real HTTP server for the adapter tests: records every request and answers as the test tells it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple


class Recorded(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


class Reply(NamedTuple):
    status: int
    body: bytes = b""
    headers: dict[str, str] = {}  # noqa: RUF012 - NamedTuple defaults are per-class constants, never mutated


class Handler(BaseHTTPRequestHandler):
    server: Server

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.requests.append(Recorded(self.command, self.path, headers, body))
        if self.server.delay:
            self.server.release.wait(self.server.delay)
        reply = self.server.replies.pop(0) if self.server.replies else self.server.default
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_POST = do_PUT = do_PATCH = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


class Server(ThreadingHTTPServer):
    """Records every request and answers with the next of ``replies`` (``default`` when none is left)."""

    def __init__(self, default: Reply) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.default = default
        self.requests: list[Recorded] = []
        self.replies: list[Reply] = []
        self.delay = 0.0
        self.release = threading.Event()  # set at teardown so a delayed handler ends at once

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def where(self) -> str:
        return self.base_url.removeprefix("http://")

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a delayed answer goes to a client that already timed out and hung up


@contextmanager
def serving(default: Reply) -> Iterator[Server]:
    """A server on a free local port, in a thread, for the length of the block."""
    server = Server(default)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        thread.join()
        server.server_close()  # joins the handler threads too
