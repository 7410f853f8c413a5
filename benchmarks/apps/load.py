"""The load generator that drives the benchmark shops: shoppers with their cookies, HTTP/1.1 over raw sockets,
a closed loop (as fast as answers come back) and an open loop (requests due at fixed times, latency from the due
time). Used by ``benchmarks/bench_app.py``; its docstring describes the method.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from _common import percentiles

#: Events each step records (shop.py); the benchmark compares their sum with the engines' counters.
EVENTS = {"product": 2, "add": 2, "checkout": 4, "purchase": 2}
SKUS = [f"SKU-{n:02d}" for n in range(1, 21)]
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
#: Every socket operation gives up after this long: a stuck server fails the run instead of hanging it.
SOCKET_TIMEOUT = 60.0
#: What a phase returns: requests answered with 200, seconds from its start to its last answer, every latency (s),
#: and figures of its own.
Phase = tuple[int, float, list[float], dict[str, Any]]


class Connection:
    """One HTTP/1.1 client connection over a raw socket: a request line, a few headers, the answer read by its
    ``Content-Length``. Reconnects when the server closed the connection (``Connection: close``)."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.host = f"{host}:{port}".encode()
        self.sock: socket.socket | None = None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def request(self, method: str, path: str, body: bytes, cookie: str) -> tuple[int, list[bytes], bytes, bytes]:
        """Status, ``Set-Cookie`` values, ``X-Worker`` and the body of the answer."""
        reused = self.sock is not None
        try:
            return self._exchange(method, path, body, cookie)
        except (TimeoutError, ConnectionError):
            self.close()
            if not reused:
                raise
            return self._exchange(method, path, body, cookie)  # a kept-alive connection the server had closed

    def _exchange(self, method: str, path: str, body: bytes, cookie: str) -> tuple[int, list[bytes], bytes, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=SOCKET_TIMEOUT)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = [
            f"{method} {path} HTTP/1.1".encode(),
            b"Host: " + self.host,
            b"User-Agent: " + USER_AGENT.encode(),
            b"Accept: text/html",
        ]
        if cookie:
            head.append(b"Cookie: " + cookie.encode())
        if body or method == "POST":
            head += [b"Content-Type: application/x-www-form-urlencoded", b"Content-Length: %d" % len(body)]
        self.sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        buffer = b""
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            buffer += self._recv()
        lines = buffer[:end].split(b"\r\n")
        rest = buffer[end + 4 :]
        status = int(lines[0].split(None, 2)[1])
        length, close, cookies, worker = -1, lines[0].startswith(b"HTTP/1.0"), [], b""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                close = value.strip().lower() == b"close"
            elif name == b"set-cookie":
                cookies.append(value.strip())
            elif name == b"x-worker":
                worker = value.strip()
        if length < 0:  # no length: the body runs to the end of the connection
            while chunk := self.sock.recv(65536):
                rest += chunk
            close, length = True, len(rest)
        while len(rest) < length:
            rest += self._recv()
        if close:
            self.close()
        return status, cookies, worker, rest[:length]

    def _recv(self) -> bytes:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection before the end of its answer")
        return chunk


@dataclass
class Shopper:
    """One visitor's journey and cookie jar; ``steps`` are (step name, method, path, body)."""

    steps: list[tuple[str, str, str, bytes]]
    cookies: dict[str, str] = field(default_factory=dict)
    done: int = 0

    @classmethod
    def number(cls, n: int) -> Shopper:
        sku = SKUS[n % len(SKUS)]
        steps = [
            ("product", "GET", f"/product/{sku}", b""),
            ("add", "POST", "/cart/add", f"sku={sku}".encode()),
            ("checkout", "POST", "/checkout", f"email=shopper-{n}%40example.com&shipping=standard".encode()),
        ]
        if n % 3 == 2:  # one in three buys; the others leave after the checkout step
            steps.append(("purchase", "POST", "/checkout/purchase", b"card=4242424242424242"))
        return cls(steps)

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def keep(self, set_cookies: list[bytes]) -> None:
        for raw in set_cookies:
            pair, _, attributes = raw.decode("latin-1").partition(";")
            name, _, value = pair.strip().partition("=")
            if not value or value == '""' or "max-age=0" in attributes.lower():
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value


class Traffic:
    """The shoppers of one server: journeys in progress, taken by whichever thread is free, and what was served."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.ready: deque[Shopper] = deque()
        self.numbers = itertools.count()
        self.lock = threading.Lock()
        self.served: dict[str, int] = dict.fromkeys(EVENTS, 0)
        self.workers_seen: dict[bytes, int] = {}
        self.errors: list[str] = []

    def step(self, connection: Connection) -> bool:
        """Send one shopper's next request; whether it was answered with 200."""
        try:
            shopper = self.ready.popleft()
        except IndexError:
            shopper = Shopper.number(next(self.numbers))
        name, method, path, body = shopper.steps[shopper.done]
        try:
            status, set_cookies, worker, _ = connection.request(method, path, body, shopper.cookie_header())
        except OSError as exc:
            connection.close()
            with self.lock:
                self.errors.append(f"{method} {path}: {type(exc).__name__}: {exc}")
            return False
        with self.lock:
            self.workers_seen[worker] = self.workers_seen.get(worker, 0) + 1
            if status == 200:
                self.served[name] += 1
            else:
                self.errors.append(f"{method} {path}: status {status}")
        if status != 200:
            return False
        shopper.keep(set_cookies)
        shopper.done += 1
        if shopper.done < len(shopper.steps):
            self.ready.append(shopper)
        return True

    def events_tracked(self) -> int:
        return sum(EVENTS[name] * count for name, count in self.served.items())


def run_threads(count: int, target: Callable[[int], None], seconds: float, what: str) -> None:
    """``target(k)`` in ``count`` daemon threads; raises ``TimeoutError`` if one is still running after ``seconds``."""
    threads = [threading.Thread(target=target, args=(k,), name=f"{what}-{k}", daemon=True) for k in range(count)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + seconds
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0.0))
        if t.is_alive():
            raise TimeoutError(f"{t.name} did not finish its {what} within {seconds:g} s")


def closed_loop(traffic: Traffic, seconds: float, concurrency: int) -> Phase:
    """``concurrency`` connections, each sending its next request as soon as the last one is answered for
    ``seconds``; latency from each request's sending to the end of its answer."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    start = time.perf_counter()
    stop_at = start + seconds
    ends = [start] * concurrency

    def client(k: int) -> None:
        connection = Connection(traffic.host, traffic.port)
        mine = latencies[k]
        now = time.perf_counter()
        while now < stop_at:
            ok = traffic.step(connection)
            done = time.perf_counter()
            if ok:
                mine.append(done - now)
            now = done
        ends[k] = now
        connection.close()

    run_threads(concurrency, client, seconds + 2 * SOCKET_TIMEOUT, "closed-loop")
    merged = [x for part in latencies for x in part]
    return len(merged), max(ends) - start, merged, {"concurrency": concurrency}


def open_loop(traffic: Traffic, rate: float, seconds: float, threads: int) -> Phase:
    """Requests due every ``1 / rate`` s, sent by whichever of the pool's threads is free; latency from the due
    time. Requests not yet sent ``grace`` s after the last due time are counted late by at least that much."""
    slots = max(int(rate * seconds), 1)
    grace = max(seconds / 2, 2.0)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    send_lag: list[list[float]] = [[] for _ in range(threads)]
    unsent = [0] * threads
    counter = itertools.count()
    start = time.perf_counter() + 0.05  # every thread started by then
    give_up = start + seconds + grace
    ends = [start] * threads

    def client(k: int) -> None:
        connection = Connection(traffic.host, traffic.port)
        while (i := next(counter)) < slots:
            due = start + i / rate
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
                now = time.perf_counter()
            elif now > give_up:
                unsent[k] += 1
                latencies[k].append(give_up - due)  # a lower bound: it was never sent
                continue
            send_lag[k].append(now - due)
            if traffic.step(connection):
                ends[k] = time.perf_counter()
                latencies[k].append(ends[k] - due)
        connection.close()

    run_threads(threads, client, seconds + grace + 2 * SOCKET_TIMEOUT, "open-loop")
    merged = [x for part in latencies for x in part]
    lags = [x for part in send_lag for x in part]
    requests = len(merged) - sum(unsent)
    extra = {
        "rate": rate,
        "unsent": sum(unsent),
        "complete": sum(unsent) == 0,
        "send_lag_ms_p99": percentiles(lags, (99,))["p99"] * 1e3,
    }
    return requests, max(ends) - start, merged, extra
