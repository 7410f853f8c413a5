"""recoverkit in a Starlette app, through the pure ASGI middleware (FastAPI is the same: it is Starlette).

Run (uvicorn is not a recoverkit dependency):

    pip install uvicorn
    uvicorn examples.asgi_app:app        # or: python examples/asgi_app.py

then open http://127.0.0.1:8000/add?sku=MUG-1 and leave: about five seconds later the console shows the
reminder recoverkit would send. Open /buy instead and nothing is sent. The waits are shortened for the example.

The middleware starts the engine on uvicorn's own event loop when the server starts (lifespan) and drains it
when the server stops. With FastAPI: ``app = FastAPI(); app.add_middleware(RecoverkitMiddleware, settings=...)``
and ``tracker: Annotated[Tracker, Depends(get_tracker)]`` in a view's parameters.
"""

from __future__ import annotations

import sys

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

import recoverkit
from recoverkit.contrib.asgi import RecoverkitMiddleware, get_tracker

PRICES = {"MUG-1": "12.50", "TEE-1": "24.00"}

SETTINGS = {
    "CONFIG": recoverkit.Config(
        abandon_after=3.0,
        flows=[recoverkit.Flow(name="quick", steps=[recoverkit.FlowStep(delay=2.0, channel="email")])],
    ),
    "CHANNELS": {"email": recoverkit.ConsoleChannel(stream=sys.stdout)},
    # Recorded by the middleware itself when the page loads (a 2xx GET): no code in the view.
    "CHECKOUT_PATHS": {"/checkout": "begin_checkout"},
}


async def home(request: Request) -> Response:
    return PlainTextResponse("try /add?sku=MUG-1, then /checkout, then leave; or /buy\n")


async def add(request: Request) -> Response:
    sku = request.query_params.get("sku", "MUG-1")
    tracker = get_tracker(request)  # or request.state.recoverkit
    tracker.identify(email="shopper@example.com")  # a real shop: the shopper's own address, once known
    tracker.consent(granted=["email"])  # ... and only with their consent
    tracker.add_to_cart([{"item_id": sku, "price": PRICES.get(sku, "9.90")}], currency="EUR")
    return PlainTextResponse(f"{sku} added; leave now and watch the console\n")


async def checkout(request: Request) -> Response:
    return HTMLResponse("<h1>Checkout</h1><p>begin_checkout was recorded for this visit.</p>")


async def buy(request: Request) -> Response:
    get_tracker(request).purchase(transaction_id="EX-1", value="12.50", currency="EUR")
    return PlainTextResponse("bought; no reminder will be sent\n")


app = Starlette(
    routes=[Route("/", home), Route("/add", add), Route("/checkout", checkout), Route("/buy", buy)],
    middleware=[Middleware(RecoverkitMiddleware, settings=SETTINGS)],
)


if __name__ == "__main__":
    try:
        import uvicorn
    except ImportError:
        sys.exit("this example runs under uvicorn: pip install uvicorn")
    uvicorn.run(app, host="127.0.0.1", port=8000)
