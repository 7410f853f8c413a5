"""The Flask extension: one engine per process, a :class:`~recoverkit.integration.Tracker` per request.

What happens on a request (all of it contained: recoverkit never fails the shop's request):

- the shopper's session id comes from the first-party cookie (``SESSION_COOKIE``, ``rk_sid`` by default); when
  it is missing, or is not an id recoverkit minted (a forged value), a new one is minted and set on the
  response (``HttpOnly``, ``SameSite=Lax``, ``Secure`` as ``COOKIE_SECURE`` says or, unset, when the request
  came over HTTPS). Nothing is set in mode ``"off"``;
- the first use of :data:`tracker` (or :func:`current_tracker`) in the request builds the tracker: the customer
  id from the app's :meth:`Recoverkit.customer_loader`, the device class from ``User-Agent`` and the traffic
  source from ``utm_source``. Its events are stamped with the time of the request;
- after a ``GET`` answered with a 2xx, the event ``CHECKOUT_PATHS`` names for the path is recorded (a
  ``page_view`` only for HTML pages, never for ``static`` files).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar, cast

from flask import Flask, Request, Response, current_app, g, request
from werkzeug.local import LocalProxy

from ..._log import get_logger
from ...background import BackgroundEngine
from ...errors import ConfigError
from ...integration import (
    LINK_PARAMETER,
    SESSION_COOKIE_MAX_AGE,
    LazyEngine,
    Tracker,
    device_of,
    is_session_id,
    load_customer,
    new_session_id,
)
from ...integration import restore_cart as shared_restore_cart
from ._cli import cli
from ._onsite import onsite_channel
from ._onsite import register as register_onsite
from ._settings import settings_from_config
from ._state import EXTENSION_KEY, RecoverkitState, app_state

__all__ = ["EXTENSION_KEY", "Recoverkit", "RecoverkitState", "current_tracker", "restore_cart", "tracker"]

T = TypeVar("T")
CustomerLoader = Callable[[], object]
L = TypeVar("L", bound=CustomerLoader)

_G_KEY: Final = "_recoverkit_request"

_log = get_logger("recoverkit.contrib.flask")


class _RequestState:
    """recoverkit's part of one request, kept on ``flask.g``."""

    __slots__ = ("minted", "session_id", "tracker")

    def __init__(self, session_id: str, minted: bool, tracker: Tracker | None = None) -> None:
        self.session_id = session_id
        self.minted = minted
        self.tracker = tracker


class Recoverkit:
    """The Flask extension. ``Recoverkit(app)``, or ``rk = Recoverkit()`` then ``rk.init_app(app)`` in a factory.

    :meth:`init_app` validates the ``RECOVERKIT_*`` settings and builds the process's engine, so a broken
    configuration (a typo, a missing channel adapter, a missing secret) raises
    :class:`~recoverkit.errors.ConfigError` there, at start-up; it starts no thread (the engine's starts on the
    first event, in the process that records it, which makes ``gunicorn --preload`` safe). It registers the
    request hook and the ``flask recoverkit`` command group. One extension object may set up several apps.
    """

    def __init__(self, app: Flask | None = None) -> None:
        self._customer_loader: CustomerLoader | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Set ``app`` up: settings from ``app.config``, the engine, the request hook and the CLI group."""
        if EXTENSION_KEY in app.extensions:
            raise ConfigError(f"recoverkit is already set up on the Flask app {app.name!r}; call init_app once")
        settings = settings_from_config(app.config)
        engine = LazyEngine(settings)
        if settings.mode != "off":
            # Builds, does not start: the errors of a broken configuration surface now, naming the settings.
            engine.get()
        app.extensions[EXTENSION_KEY] = RecoverkitState(self, settings, engine)
        app.after_request(_after_request)
        app.cli.add_command(cli)
        if settings.mode != "off" and onsite_channel(app) is not None:
            register_onsite(app)  # GET/POST /recoverkit/onsite and the snippet (docs/onsite.md)

    def customer_loader(self, loader: L) -> L:
        """Register the function that tells the logged-in customer's id (``str`` or ``int``; ``None`` for a guest).

        It is called with no arguments, inside the request, the first time the tracker is used; an exception
        from it is logged (its type only) and the request goes on as a guest's::

            @rk.customer_loader
            def load_customer():
                return current_user.id if current_user.is_authenticated else None
        """
        self._customer_loader = loader
        return loader

    def load_customer(self) -> str | None:
        """The current customer's id from the registered loader, as a string (``None`` without a loader)."""
        loader = self._customer_loader
        return load_customer(loader) if loader is not None else None

    # -- for a shop's tests and scripts --------------------------------------------------------------------------

    @staticmethod
    def state(app: Flask | None = None) -> RecoverkitState:
        """The :class:`RecoverkitState` of ``app`` (default: the current app); ``RuntimeError`` if not set up."""
        return app_state(app if app is not None else current_app)

    def engine(self, app: Flask | None = None) -> BackgroundEngine | None:
        """The process's engine for ``app`` (built when first asked for; ``None`` in mode ``"off"``)."""
        return self.state(app).engine.get()

    def flush(self, app: Flask | None = None) -> None:
        """Block until everything tracked so far has been handled; with a FakeClock (``RECOVERKIT_CLOCK``),
        ``clock.advance(3600); rk.flush()`` fires what fell due in that hour. Nothing to do in mode ``"off"``."""
        engine = self.engine(app)
        if engine is not None:
            engine.flush()

    def close(self, app: Flask | None = None, timeout: float | None = None) -> None:
        """Drain and stop the engine of ``app`` (idempotent; later events are refused). An ``atexit`` hook does
        this when the process exits; call it in a test's teardown."""
        self.state(app).engine.close(timeout)


def _request_state(state: RecoverkitState, req: Request) -> _RequestState:
    current = g.get(_G_KEY)
    if isinstance(current, _RequestState):
        return current
    value = req.cookies.get(state.settings.session_cookie)
    if is_session_id(value):
        current = _RequestState(cast(str, value), minted=False)
    else:  # missing, or not an id recoverkit minted: never trusted, replaced
        current = _RequestState(new_session_id(), minted=True)
    setattr(g, _G_KEY, current)
    return current


def current_session_id() -> str:
    """The session id of the current request's visitor (minted, and set on the response, when it has none)."""
    return _request_state(app_state(current_app), _current_request()).session_id


def _current_request() -> Request:
    # The request itself, found once through the proxy (werkzeug's documented _get_current_object), so that
    # what follows reads its attributes directly instead of looking it up again on every one.
    return cast(Request, cast(Any, request)._get_current_object())


def current_tracker() -> Tracker:
    """The :class:`~recoverkit.integration.Tracker` of the current request (built on first use).

    Raises ``RuntimeError`` outside a request, or when recoverkit is not set up on the app; its methods never
    raise.
    """
    # Every use of the `tracker` proxy comes here: once built, the request's tracker is found in one look-up.
    # (Only recoverkit's code, after finding its state on the app, puts a _RequestState on `g`.)
    current = g.get(_G_KEY)
    if isinstance(current, _RequestState) and current.tracker is not None:
        return current.tracker
    state = app_state(current_app)
    try:
        req = _current_request()
        current = _request_state(state, req)
        if current.tracker is None:
            current.tracker = Tracker(
                state.engine.sink(),
                current.session_id,
                customer_id=state.extension.load_customer(),
                device=device_of(req.headers.get("User-Agent")),
                source=_utm_source(req),
            )
        return current.tracker
    except Exception as exc:  # never fail the shop's view because of recoverkit: it gets a tracker recording nothing
        _log.error("tracker_setup_failed", error=type(exc).__name__)
        inert = Tracker(_refuse, new_session_id())
        setattr(g, _G_KEY, _RequestState(inert.session_id, minted=False, tracker=inert))
        return inert


def _utm_source(req: Request) -> str | None:
    """``request.args.get("utm_source") or None``, without parsing a query string that cannot hold it."""
    if "args" not in req.__dict__:  # not parsed yet
        query = req.query_string
        # The key can only be there spelled out, or percent-encoded ("utm%5Fsource"): otherwise there is none.
        if b"utm_source" not in query and b"%" not in query:
            return None
    return req.args.get("utm_source") or None


def _refuse(event: Mapping[str, Any]) -> bool:
    return False


#: The current request's tracker: ``from recoverkit.contrib.flask import tracker``, then
#: ``tracker.add_to_cart([...], currency="EUR", cart_id=cart.id)`` in a view.
tracker: Tracker = cast(Tracker, LocalProxy(current_tracker))


def restore_cart(load_cart: Callable[[str], T], token: str | None = None) -> T:
    """What a shop's cart-restore view calls: verify the link's token (``request.args["t"]`` by default), return
    ``load_cart(cart_key)`` and record the visit (a ``page_view`` with ``page_type="cart_restore"``).

    Raises :class:`~recoverkit.errors.LinkError` (``error.reason``: ``"malformed"``, ``"tampered"``,
    ``"expired"``) before ``load_cart`` is called, for the view to answer with a friendly page; and
    :class:`~recoverkit.errors.ConfigError` when ``[links] base_url`` is not configured. Links are built from the
    configured base URL only, never from the request's ``Host`` header. Expiry is judged on the engine's clock
    (``RECOVERKIT_CLOCK``, else the wall clock), the one the link was built on.
    """
    state = app_state(current_app)
    if token is None:
        token = request.args.get(LINK_PARAMETER)
    # Verified on the engine's clock (RECOVERKIT_CLOCK), the one the link was built on: in a shop's test with a
    # FakeClock, "eight days later" finds the link expired, and a link built at fake time is not.
    return shared_restore_cart(state.links, token, load_cart, tracker=current_tracker(), now=state.clock.now())


def _after_request(response: Response) -> Response:
    try:
        state = app_state(current_app)
        settings = state.settings
        if settings.mode == "off":
            return response
        req = _current_request()
        current = _request_state(state, req)
        if req.method == "GET" and 200 <= response.status_code < 300:
            kind = settings.path_event(req.path)
            if kind is not None and (kind != "page_view" or _is_page(response, req)):
                (current.tracker or current_tracker()).track(kind)
        if current.minted:
            secure = settings.cookie_secure if settings.cookie_secure is not None else req.is_secure
            response.set_cookie(
                settings.session_cookie,
                current.session_id,
                max_age=SESSION_COOKIE_MAX_AGE,
                path="/",
                secure=secure,
                httponly=True,
                samesite="Lax",
            )
    except Exception as exc:  # never fail the shop's response because of recoverkit
        _log.error("request_hook_failed", error=type(exc).__name__)
    return response


def _is_page(response: Response, req: Request) -> bool:
    # A page view is an HTML page a shopper looked at, not a stylesheet, an image or a JSON call.
    # Blueprints serve their static files from "<blueprint>.static".
    return response.mimetype == "text/html" and (req.endpoint or "").rpartition(".")[2] != "static"
