"""Request-thread CPU per tracked event through each framework integration, against the same app without recoverkit.

Three frameworks, each as two apps served in this one process by its own test client:

- **Django** (``django.test.Client``): ``SecurityMiddleware``, ``SessionMiddleware``, ``CommonMiddleware`` and
  ``AuthenticationMiddleware``, plus ``RecoverkitMiddleware`` in the recoverkit arm;
- **Flask** (Flask's test client): the app, plus ``Recoverkit(app)`` in the recoverkit arm;
- **ASGI** (a Starlette app through ``httpx.ASGITransport``): the app, plus ``RecoverkitMiddleware`` in the
  recoverkit arm. ``ASGITransport`` sends no lifespan, so the engine runs in a background thread as it does under a
  server without lifespan; under a server with lifespan it runs on the server's loop, where its CPU is the loop's.

Every request is a ``GET`` of ``/cart/`` from a desktop Chrome ``User-Agent``, answered with a small HTML page.
In the recoverkit arm the view records ``view_item`` and ``add_to_cart`` (one item each, with currency and cart
id) through the request's tracker, and ``CHECKOUT_PATHS = {"/cart/": "view_cart"}`` makes the middleware record
``view_cart``: three tracked events per request, as in the project issue's tiny shops. The bare arm's view does the
same work but records nothing. The view asks whether the visitor is logged in in both arms, as a shop's page does
to render its header (Django: ``request.user.is_authenticated``; Flask: the ``session``, with a ``SECRET_KEY``;
the ASGI app has no authentication), so the recoverkit arm's customer look-up finds the user loaded, as it would
in a shop, and the difference is recoverkit's own work. The Flask and ASGI recoverkit apps have a customer loader
that answers "a guest". The engine is the integrations' default (``MODE = "embedded"``, the in-memory store, one
``MemoryChannel``) in its own thread, so its CPU is not the request thread's.

Each request is timed alone with ``time.thread_time_ns()`` (CPU of the calling thread only: the engine's thread
and other processes on the machine do not count, waiting for the GIL does not count), around the server's side
only: Django's request handler (which runs the middleware chain and the view), Flask's ``wsgi_app``, the ASGI
app. What the test client does around it (building the request, reading ``Set-Cookie`` into its cookie jar) is a
browser's work, not the shop's, and is left out of both arms. The two arms alternate in blocks, so drift in the
machine's load hits both alike. The client's work between two requests leaves the CPU's caches cold for the next
one, as a server's parsing and a shop's views and templates do: the same code timed in a tight loop, its caches
warm, takes a half to a third of the time measured here. Two visitor kinds:

- ``returning``: the client keeps the session cookie (the common case: one cookie is minted per visit);
- ``new``: the client drops its cookies before every request, so each one mints a session id and sets the cookie.

Between requests the thread sleeps ``--idle-us`` (300 us by default), as a worker waits on the network: without
that, the request loop holds the GIL but for the interpreter's forced switches, the engine's thread falls two
ticks behind, and ``track()`` journals the inbox on the request thread itself (the journal's back-pressure; each
such event is counted as ``spilled``, and the report shows how many there were).

The report gives, per framework and visitor kind, the median (and mean) CPU per request of each arm, the
difference per request and per tracked event (the figure the project issue bounds at 5 us), the ratio
recoverkit / bare per request, and the events ``track()`` journaled itself (``spilled``). After the run each
engine is flushed and the script checks that it accepted exactly three events per recoverkit request.

Run from the repository root:

    .venv/bin/python benchmarks/bench_request_cpu.py             # 4,000 requests per arm and visitor kind
    .venv/bin/python benchmarks/bench_request_cpu.py --quick --json
    .venv/bin/python benchmarks/bench_request_cpu.py --frameworks django,flask --requests 10000
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import statistics
import sys
import time
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from _common import bounded, emit_json, machine, parser, print_header, quiet_logs, ratio, watchdog

from recoverkit import MemoryChannel

EVENTS_PER_REQUEST = 3
TARGET_US = 5.0
PATH = "/cart/"
ITEMS = [{"item_id": "SKU-1", "price": "35.79", "quantity": 1}]
PAGE = "<!doctype html><title>cart</title><p>Your cart</p>"
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
FLUSH_TIMEOUT = 60.0
FRAMEWORKS = ("django", "flask", "asgi")
VISITORS = ("returning", "new")


def recoverkit_settings() -> dict[str, Any]:
    return {"MODE": "embedded", "CHANNELS": {"email": MemoryChannel()}, "CHECKOUT_PATHS": {PATH: "view_cart"}}


class Timer:
    """Wraps the server's side of an app: each call's CPU time on this thread goes to ``samples`` (when set)."""

    def __init__(self) -> None:
        self.samples: list[int] | None = None

    def wrap(self, inner: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.thread_time_ns

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return inner(*args, **kwargs)
            finally:
                if self.samples is not None:
                    self.samples.append(clock() - start)

        return timed_call

    def wrap_asgi(self, app: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.thread_time_ns

        async def timed_app(scope: Any, receive: Any, send: Any) -> None:
            # The app runs in the client's task, on a loop that runs nothing else: thread CPU is the app's.
            start = clock()
            try:
                await app(scope, receive, send)
            finally:
                if self.samples is not None:
                    self.samples.append(clock() - start)

        return timed_app


class Arm:
    """One app of a pair: ``request()`` serves one GET of :data:`PATH` (its server side timed by ``timer``);
    ``clear()`` drops the client's cookies."""

    def __init__(self, request: Callable[[], Any], clear: Callable[[], None], timer: Timer) -> None:
        self.request = request
        self.clear = clear
        self.timer = timer


def counts(engine: Any) -> tuple[int, int, int]:
    """The engine's events accepted, spilled (journaled by ``track()`` itself: request-thread work) and invalid."""
    if engine is None:
        return (0, 0, 0)
    stats = engine.statistics()
    return (stats.events_accepted, stats.events_spilled, sum(stats.events_invalid.values()))


class Pair:
    """The bare app and the recoverkit app of one framework, and how to flush and count the recoverkit engine."""

    def __init__(
        self, bare: Arm, recoverkit: Arm, accepted: Callable[[], tuple[int, int, int]], close: Callable[[], None]
    ) -> None:
        self.bare = bare
        self.recoverkit = recoverkit
        self.accepted = accepted
        self.close = close


def guest(*args: Any) -> None:
    """The customer loader of the Flask and ASGI apps: every visitor is a guest."""
    return None


def _shop_view_work(tracker: Any) -> None:
    # What the view does in both arms (the cart it would render); only the recoverkit arm records it.
    cart_id = "cart-7"
    if tracker is not None:
        tracker.view_item(ITEMS, currency="EUR")
        tracker.add_to_cart(ITEMS, currency="EUR", cart_id=cart_id)


# -- Django --------------------------------------------------------------------------------------------------------


def django_pair() -> Pair:
    import django
    from django.conf import settings

    urls = types.ModuleType("bench_request_cpu_urls")
    sys.modules[urls.__name__] = urls
    base_middleware = [
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-request-cpu-not-secret",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=urls.__name__,
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            "recoverkit.contrib.django",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        MIDDLEWARE=base_middleware,
        LOGGING_CONFIG=None,
        USE_TZ=True,
        RECOVERKIT=recoverkit_settings(),
    )
    django.setup()
    from django.http import HttpResponse
    from django.test import Client, override_settings
    from django.urls import path

    from recoverkit.contrib.django import flush as django_flush
    from recoverkit.contrib.django.tracking import REQUEST_ATTRIBUTE, get_engine

    def cart(request: Any) -> Any:
        if request.user.is_authenticated:  # the page's header: "Log in" or the customer's name
            raise AssertionError("the benchmark's visitors are guests")
        _shop_view_work(getattr(request, REQUEST_ATTRIBUTE, None))
        return HttpResponse(PAGE)

    urls.urlpatterns = [path(PATH.strip("/") + "/", cart)]  # type: ignore[attr-defined]

    def arm(middleware: list[str]) -> Arm:
        client = Client(HTTP_USER_AGENT=USER_AGENT)
        with override_settings(MIDDLEWARE=middleware):
            client.get(PATH)  # the handler loads its middleware chain now, and keeps it
        timer = Timer()
        client.handler = timer.wrap(client.handler)  # the client calls only handler(environ)
        return Arm(lambda: client.get(PATH), client.cookies.clear, timer)

    bare = arm(base_middleware)
    rk = arm([*base_middleware, "recoverkit.contrib.django.middleware.RecoverkitMiddleware"])

    def accepted() -> tuple[int, int, int]:
        bounded(django_flush, FLUSH_TIMEOUT, "Django engine flush")
        engine = get_engine()
        return counts(engine)

    def close() -> None:
        from recoverkit.contrib.django import close as django_close

        django_close()

    return Pair(bare, rk, accepted, close)


# -- Flask ---------------------------------------------------------------------------------------------------------


def flask_pair() -> Pair:
    from flask import Flask, session

    from recoverkit.contrib.flask import Recoverkit, tracker

    def app(with_recoverkit: bool) -> tuple[Flask, Recoverkit | None]:
        flask_app = Flask(f"bench_{'recoverkit' if with_recoverkit else 'bare'}")
        flask_app.config["SECRET_KEY"] = "bench-request-cpu-not-secret"
        ext = None
        if with_recoverkit:
            for key, value in recoverkit_settings().items():
                flask_app.config[f"RECOVERKIT_{key}"] = value
            ext = Recoverkit(flask_app)
            ext.customer_loader(guest)

        @flask_app.get(PATH)
        def cart() -> str:
            if session.get("user_id") is not None:  # the page's header: "Log in" or the customer's name
                raise AssertionError("the benchmark's visitors are guests")
            _shop_view_work(tracker if with_recoverkit else None)
            return PAGE

        return flask_app, ext

    def arm(flask_app: Flask) -> Arm:
        timer = Timer()
        flask_app.wsgi_app = timer.wrap(flask_app.wsgi_app)  # type: ignore[method-assign]
        client = flask_app.test_client()
        client.environ_base["HTTP_USER_AGENT"] = USER_AGENT
        client.get(PATH)
        return Arm(lambda: client.get(PATH), client._cookies.clear, timer)

    bare_app, _ = app(False)
    rk_app, ext = app(True)
    assert ext is not None

    def accepted() -> tuple[int, int, int]:
        bounded(lambda: ext.flush(rk_app), FLUSH_TIMEOUT, "Flask engine flush")
        engine = ext.engine(rk_app)
        return counts(engine)

    return Pair(arm(bare_app), arm(rk_app), accepted, lambda: ext.close(rk_app))


# -- ASGI ----------------------------------------------------------------------------------------------------------


def asgi_pair() -> Pair:
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from recoverkit.contrib.asgi import STATE_KEY, RecoverkitMiddleware

    async def cart(request: Request) -> HTMLResponse:
        _shop_view_work(getattr(request.state, STATE_KEY, None))
        return HTMLResponse(PAGE)

    def starlette() -> Starlette:
        return Starlette(routes=[Route(PATH, cart)])

    loop = asyncio.new_event_loop()
    middleware = RecoverkitMiddleware(starlette(), settings=recoverkit_settings(), customer_loader=guest)
    # Without lifespan the middleware logs lifespan_missing once and runs a background engine: expected here.
    logging.getLogger("recoverkit.contrib.asgi").setLevel(logging.ERROR)

    def arm(app: Any) -> Arm:
        timer = Timer()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=timer.wrap_asgi(app)),
            base_url="http://testserver",
            headers={"User-Agent": USER_AGENT},
        )
        loop.run_until_complete(client.get(PATH))
        return Arm(lambda: loop.run_until_complete(client.get(PATH)), client.cookies.clear, timer)

    def accepted() -> tuple[int, int, int]:
        background = middleware.background
        if background is None:
            return (0, 0, 0)
        engine = background.get()
        if engine is None:
            return (0, 0, 0)
        bounded(engine.flush, FLUSH_TIMEOUT, "ASGI engine flush")
        return counts(engine)

    def close() -> None:
        if middleware.background is not None:
            middleware.background.close()
        loop.close()

    return Pair(arm(starlette()), arm(middleware), accepted, close)


# -- measuring -----------------------------------------------------------------------------------------------------


def timed(arm: Arm, count: int, new_visitor: bool, out: list[int], idle: float = 0.0) -> None:
    request, clear = arm.request, arm.clear
    arm.timer.samples = out
    try:
        for _ in range(count):
            if new_visitor:
                clear()
            request()
            if idle:
                time.sleep(idle)
    finally:
        arm.timer.samples = None
    if len(out) < count:
        raise RuntimeError(f"{count} requests were made but {len(out)} reached the app")


def blocks(total: int, block: int) -> Iterator[int]:
    while total > 0:
        yield min(block, total)
        total -= block


def measure(pair: Pair, requests: int, visitor: str, block: int, idle: float) -> dict[str, Any]:
    new_visitor = visitor == "new"
    bare: list[int] = []
    rk: list[int] = []
    # Warm-up, untimed: caches, the engine's thread, the allocator.
    timed(pair.bare, 50, new_visitor, [])
    timed(pair.recoverkit, 50, new_visitor, [])
    before = pair.accepted()
    for k, n in enumerate(blocks(requests, block)):
        # Alternate which arm goes first, so that neither always follows the other's garbage.
        first, second = (pair.bare, bare), (pair.recoverkit, rk)
        for arm, out in (first, second) if k % 2 == 0 else (second, first):
            timed(arm, n, new_visitor, out, idle)
    after = pair.accepted()
    accepted, spilled, invalid = (a - b for a, b in zip(after, before, strict=True))
    bare_med = statistics.median(bare) / 1000
    rk_med = statistics.median(rk) / 1000
    bare_mean = statistics.fmean(bare) / 1000
    rk_mean = statistics.fmean(rk) / 1000
    return {
        "requests": len(rk),
        "events_accepted": accepted,
        "events_expected": len(rk) * EVENTS_PER_REQUEST,
        "events_spilled": spilled,
        "events_invalid": invalid,
        "bare_us_per_request": {"p50": bare_med, "mean": bare_mean},
        "recoverkit_us_per_request": {"p50": rk_med, "mean": rk_mean},
        "added_us_per_request": {"p50": rk_med - bare_med, "mean": rk_mean - bare_mean},
        "added_us_per_event": {
            "p50": (rk_med - bare_med) / EVENTS_PER_REQUEST,
            "mean": (rk_mean - bare_mean) / EVENTS_PER_REQUEST,
        },
        "ratio_per_request": {"p50": ratio(rk_med, bare_med), "mean": ratio(rk_mean, bare_mean)},
    }


BUILDERS: dict[str, Callable[[], Pair]] = {"django": django_pair, "flask": flask_pair, "asgi": asgi_pair}
PACKAGES = {"django": "django", "flask": "flask", "asgi": "starlette"}


def main() -> int:
    p = parser(__doc__ or "", timeout=900)
    p.add_argument("--requests", type=int, default=4000, help="timed requests per arm and visitor kind")
    p.add_argument("--block", type=int, default=200, help="requests per arm before the arms alternate")
    p.add_argument(
        "--idle-us",
        type=float,
        default=300.0,
        help="microseconds the request thread sleeps between requests (a worker waiting on the network), which lets "
        "the engine's thread take the GIL and drain its inbox; 0: back to back (default 300)",
    )
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="comma-separated subset of django,flask,asgi")
    args = p.parse_args()
    watchdog(args.timeout, "bench_request_cpu.py")
    quiet_logs()
    warnings.simplefilter("ignore", DeprecationWarning)  # frameworks' own deprecations are not the benchmark's
    requests = 300 if args.quick else args.requests
    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    unknown = sorted(set(frameworks) - set(FRAMEWORKS))
    if unknown:
        p.error(f"unknown frameworks {unknown}; expected some of {list(FRAMEWORKS)}")
    versions = {PACKAGES[f]: importlib.metadata.version(PACKAGES[f]) for f in frameworks}
    if "asgi" in frameworks:
        versions["httpx"] = importlib.metadata.version("httpx")
    info = machine(
        **versions, requests_per_arm=requests, events_per_request=EVENTS_PER_REQUEST, idle_us=f"{args.idle_us:g}"
    )
    if not args.json:
        print_header("bench_request_cpu: request-thread CPU per tracked event, recoverkit against the bare app", info)
    results: dict[str, dict[str, Any]] = {}
    ok = True
    for name in frameworks:
        pair = BUILDERS[name]()
        try:
            idle = args.idle_us / 1e6
            results[name] = {visitor: measure(pair, requests, visitor, args.block, idle) for visitor in VISITORS}
        finally:
            pair.close()
        for visitor, r in results[name].items():
            if r["events_accepted"] != r["events_expected"] or r["events_invalid"]:
                ok = False
                print(
                    f"{name}/{visitor}: the engine accepted {r['events_accepted']} events, expected "
                    f"{r['events_expected']} ({r['events_invalid']} invalid)",
                    file=sys.stderr,
                )
            if not args.json:
                print(
                    f"{name:6} {visitor:9}  bare {r['bare_us_per_request']['p50']:7.1f} us/req   "
                    f"recoverkit {r['recoverkit_us_per_request']['p50']:7.1f} us/req   "
                    f"added {r['added_us_per_request']['p50']:6.1f} us/req = "
                    f"{r['added_us_per_event']['p50']:5.2f} us/event (mean {r['added_us_per_event']['mean']:5.2f})   "
                    f"ratio {r['ratio_per_request']['p50']:.3f}   spilled {r['events_spilled']}/{r['events_accepted']}"
                )
    if args.json:
        emit_json({"machine": info, "target_us_per_event": TARGET_US, "results": results, "checks_passed": ok})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
