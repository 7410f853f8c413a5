"""``RecoverkitMiddleware``: the session cookie, ``request.recoverkit`` and the events a page load tells.

Add it to ``settings.MIDDLEWARE`` (anywhere after ``SecurityMiddleware``; its place relative to Django's session
and authentication middleware does not matter, since it reads ``request.user`` only when an event needs the
customer, by which time those have run). It runs in both of Django's modes: synchronously under WSGI, natively
async under ASGI (no thread hop for it), whichever the rest of the stack is.

On each request, all of it contained (recoverkit never fails the shop's request):

- the shopper's session id comes from the first-party cookie (``SESSION_COOKIE``, ``rk_sid`` by default); when it
  is missing, or is not an id recoverkit minted (a forged value), a new one is minted and set on the response
  (``HttpOnly``, ``SameSite=Lax``, ``Max-Age`` 30 days, ``Secure`` as ``COOKIE_SECURE`` says or, unset, when the
  request came over HTTPS), which then varies on ``Cookie``. Nothing is set in mode ``"off"``;
- ``request.recoverkit`` is the request's :class:`~recoverkit.contrib.django.tracking.RequestTracker`: the session
  id, the device class from ``User-Agent``, the traffic source from ``utm_source``, and the customer id looked up
  lazily from ``request.user``;
- after a ``GET`` answered with a 2xx, the event ``CHECKOUT_PATHS`` names for the path (``request.path_info``,
  longest prefix) is recorded; with ``TRACK_PAGE_VIEWS`` every other HTML page is a ``page_view`` (never a static
  or media file).
"""

from __future__ import annotations

from typing import Any, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings as django_settings  # type: ignore[import-untyped]
from django.utils.cache import patch_vary_headers  # type: ignore[import-untyped]

from ..._log import get_logger
from ...integration import SESSION_COOKIE_MAX_AGE, Tracker, device_of, is_session_id, new_session_id
from ._state import RecoverkitState, get_state
from .tracking import REQUEST_ATTRIBUTE, RequestTracker, inert_tracker

__all__ = ["RecoverkitMiddleware"]

_log = get_logger("recoverkit.contrib.django")


class _Attached:
    """recoverkit's part of one request, between the request and its response."""

    __slots__ = ("minted", "state", "tracker")

    def __init__(self, state: RecoverkitState | None, tracker: Tracker, minted: bool) -> None:
        self.state = state
        self.tracker = tracker
        self.minted = minted


class RecoverkitMiddleware:
    """The middleware (``"recoverkit.contrib.django.middleware.RecoverkitMiddleware"`` in ``MIDDLEWARE``); see the
    module docs for what it does on each request. Both sync and async capable."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self._async:
            return self.__acall__(request)
        attached = _attach(request)
        response = self.get_response(request)
        kind = _path_event(request, response, attached)
        # Synchronously, the tracker looks the customer up itself if the event needs it.
        _finish(request, response, attached, kind)
        return response

    async def __acall__(self, request: Any) -> Any:
        attached = _attach(request)
        response = await self.get_response(request)
        kind = _path_event(request, response, attached)
        if kind is not None and isinstance(attached.tracker, RequestTracker):
            try:
                await attached.tracker.aresolve()  # on the loop: only the async way may touch the session
            except Exception as exc:
                _log.error("request_hook_failed", error=type(exc).__name__)
        _finish(request, response, attached, kind)
        return response


def _attach(request: Any) -> _Attached:
    try:
        state = get_state()
        settings = state.settings
        value = request.COOKIES.get(settings.session_cookie)
        minted = not is_session_id(value)
        session_id = new_session_id() if minted else cast(str, value)
        tracker: Tracker = RequestTracker(
            state.sink(),
            session_id,
            request=request,
            # request.META, not request.headers or request.GET: those build a dict of every header and parse the
            # whole query string, per request, when nothing else asked for them.
            device=device_of(request.META.get("HTTP_USER_AGENT")),
            source=_utm_source(request),
        )
        attached = _Attached(state, tracker, minted and settings.mode != "off")
    except Exception as exc:  # never fail the shop's request because of recoverkit: the views get an inert tracker
        _log.error("request_setup_failed", error=type(exc).__name__)
        attached = _Attached(None, inert_tracker(), False)
    setattr(request, REQUEST_ATTRIBUTE, attached.tracker)
    return attached


def _utm_source(request: Any) -> str | None:
    """``request.GET.get("utm_source") or None``, without parsing a query string that cannot hold it."""
    if "GET" not in getattr(request, "__dict__", ()):  # not parsed yet (nor replaced by the shop's code)
        query = request.META.get("QUERY_STRING", "")
        # The key can only be there spelled out, or percent-encoded ("utm%5Fsource"): otherwise there is none.
        if "utm_source" not in query and "%" not in query:
            return None
    return request.GET.get("utm_source") or None


def _path_event(request: Any, response: Any, attached: _Attached) -> str | None:
    """The event this page load records, if any."""
    try:
        state = attached.state
        if state is None or state.settings.mode == "off":
            return None
        if request.method != "GET" or not 200 <= response.status_code < 300:
            return None
        kind = state.settings.path_event(request.path_info)
        if kind == "page_view" and not _is_page(request, response):
            return None
        return kind
    except Exception as exc:
        _log.error("request_hook_failed", error=type(exc).__name__)
        return None


def _finish(request: Any, response: Any, attached: _Attached, kind: str | None) -> None:
    try:
        if kind is not None:
            attached.tracker.track(kind)
        state = attached.state
        rotated = isinstance(attached.tracker, RequestTracker) and attached.tracker.rotated
        if (attached.minted or rotated) and state is not None and state.settings.mode != "off":
            settings = state.settings
            secure = settings.cookie_secure if settings.cookie_secure is not None else request.is_secure()
            response.set_cookie(
                settings.session_cookie,
                attached.tracker.session_id,
                max_age=SESSION_COOKIE_MAX_AGE,
                path="/",
                secure=secure,
                httponly=True,
                samesite="Lax",
            )
            # As Django does for its session and CSRF cookies: a response that gives a visitor their own id must
            # not be served from a cache to another visitor (Django's cache middleware skips such responses).
            patch_vary_headers(response, ("Cookie",))
    except Exception as exc:  # never fail the shop's response because of recoverkit
        _log.error("request_hook_failed", error=type(exc).__name__)


def _is_page(request: Any, response: Any) -> bool:
    # A page view is an HTML page a shopper looked at, not a stylesheet, an image, a download or a JSON call.
    if not str(response.get("Content-Type", "")).startswith("text/html"):
        return False
    path = request.path
    for prefix in (getattr(django_settings, "STATIC_URL", None), getattr(django_settings, "MEDIA_URL", None)):
        if isinstance(prefix, str) and prefix.startswith("/") and prefix != "/" and path.startswith(prefix):
            return False
    return True
