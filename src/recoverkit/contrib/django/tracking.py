"""The request's tracker: ``request.recoverkit``, :func:`get_tracker`, :func:`aget_tracker`, :func:`track`.

The tracker is a :class:`~recoverkit.integration.Tracker` (its methods never raise) whose customer id is read
lazily: ``str(request.user.pk)`` for an authenticated user when ``django.contrib.auth`` is installed, looked up the
first time an event (or the view) needs it, so a request whose view records nothing costs no session read and no
database query.

Async views: Django refuses database access on the event loop, so there the customer can only be looked up with
``await``. Call ``tracker = await aget_tracker(request)`` first; it looks the user up the async way
(``request.auser()``) and the tracker's events carry the customer id from then on. A tracker that needs the customer
on the event loop without it records the event as a guest's and logs ``customer_unresolved_on_event_loop`` once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any, Final

from asgiref.sync import sync_to_async
from django.apps import apps as django_apps  # type: ignore[import-untyped]
from django.utils.functional import empty  # type: ignore[import-untyped]

from ..._log import get_logger
from ...background import BackgroundEngine
from ...integration import EventSink, Tracker, load_customer, new_session_id
from ._state import get_state

__all__ = ["REQUEST_ATTRIBUTE", "RequestTracker", "aget_tracker", "flush", "get_engine", "get_tracker", "track"]

#: The attribute of the request that holds its tracker: ``request.recoverkit``.
REQUEST_ATTRIBUTE: Final = "recoverkit"

_log = get_logger("recoverkit.contrib.django")
# Tracker keeps customer_id in a slot; RequestTracker's property stores its value there.
_CUSTOMER_SLOT: Any = Tracker.__dict__["customer_id"]


class RequestTracker(Tracker):
    """A :class:`~recoverkit.integration.Tracker` bound to a Django request, whose :attr:`customer_id` is looked up
    from ``request.user`` when first read. Setting it (``identify(customer_id)``) replaces the looked-up value."""

    __slots__ = ("_request", "_resolved", "rotated")

    def __init__(
        self,
        sink: EventSink,
        session_id: str,
        *,
        request: Any,
        device: str | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__(sink, session_id, device=device, source=source)
        self._request = request
        self._resolved = False  # after super().__init__, whose customer_id = None marks it resolved
        #: Whether :meth:`rotate_session` gave this request a new session id (the middleware then sets the cookie).
        self.rotated = False

    @property
    def customer_id(self) -> str | None:
        """The customer's id: the authenticated user's primary key as text, or ``None`` for a guest."""
        if not self._resolved:
            self._resolve()
        value: str | None = _CUSTOMER_SLOT.__get__(self, Tracker)
        return value

    @customer_id.setter
    def customer_id(self, value: str | None) -> None:
        _CUSTOMER_SLOT.__set__(self, value)
        self._resolved = True

    def rotate_session(self) -> None:
        """Start a new session for the rest of the request, and a guest's: what recoverkit does when the user logs
        out, so that whoever uses the browser next is not taken for them. The middleware sets the new cookie."""
        self.session_id = new_session_id()
        self.customer_id = None
        self.rotated = True

    def _resolve(self) -> None:
        request = self._request
        if _on_event_loop():
            user = _loaded_user(request)
            if user is empty:
                # request.user would query the database from the event loop, which Django refuses: a guest, once.
                _log.warning("customer_unresolved_on_event_loop",
                             detail="call `tracker = await aget_tracker(request)` at the start of an async view")
                self.customer_id = None
                return
            self.customer_id = load_customer(lambda: _customer_of(user))
        else:
            self.customer_id = load_customer(lambda: _customer_of(getattr(request, "user", None)))

    async def aresolve(self) -> None:
        """Look the customer up without blocking the event loop (once; a no-op when already known)."""
        if self._resolved:
            return
        request = self._request
        auser = getattr(request, "auser", None)
        if callable(auser):  # Django 5.0+: the user is loaded natively async, and cached on the request
            try:
                user = await auser()
            except Exception as exc:  # the shop's auth backend: contained, logged without what it held
                _log.error("customer_loader_failed", error=type(exc).__name__)
                user = None
            self.customer_id = load_customer(lambda: _customer_of(user))
        else:
            await sync_to_async(self._resolve)()


def _on_event_loop() -> bool:
    # asyncio's own test, without the exception get_running_loop() raises (and costs) off the loop.
    return asyncio._get_running_loop() is not None


def _loaded_user(request: Any) -> Any:
    """The request's user if it is loaded already (no query needed), else ``empty``."""
    if "_acached_user" in vars(request):  # request.auser() ran
        return vars(request)["_acached_user"]
    user = getattr(request, "user", None)
    if user is None:
        return None
    wrapped = vars(user).get("_wrapped", None) if hasattr(user, "__dict__") else None
    return empty if wrapped is empty else user


def _customer_of(user: Any) -> str | None:
    if user is None or not _auth_installed():
        return None
    if not user.is_authenticated:
        return None
    return str(user.pk)


# (the registry's app configs, whether django.contrib.auth is among them): apps.is_installed() walks every app on
# each call; the registry replaces its dict of app configs whenever the installed apps change (a test's
# override_settings(INSTALLED_APPS=...)), so the answer holds for as long as the dict is the same object.
_auth_answer: tuple[object, bool] | None = None


def _auth_installed() -> bool:
    global _auth_answer
    configs = django_apps.app_configs
    answer = _auth_answer
    if answer is not None and answer[0] is configs:
        return answer[1]
    installed: bool = django_apps.is_installed("django.contrib.auth")  # raises while the registry is not ready
    _auth_answer = (configs, installed)
    return installed


def _refuse(event: Mapping[str, Any]) -> bool:
    return False


def inert_tracker() -> Tracker:
    """A tracker that records nothing (every method returns ``False``): what a view gets when recoverkit could not
    set the request up, so that the view never fails because of it."""
    return Tracker(_refuse, new_session_id())


def get_tracker(request: Any) -> Tracker:
    """The request's tracker (``request.recoverkit``), set by :class:`~recoverkit.contrib.django.middleware.
    RecoverkitMiddleware`.

    Never raises: without the middleware (the system check ``recoverkit.W001`` warns of that) the view gets a
    tracker that records nothing, and ``middleware_missing`` is logged.
    """
    tracker = getattr(request, REQUEST_ATTRIBUTE, None)
    if isinstance(tracker, Tracker):
        return tracker
    _log.error("middleware_missing",
               detail="add 'recoverkit.contrib.django.middleware.RecoverkitMiddleware' to settings.MIDDLEWARE")
    tracker = inert_tracker()
    with contextlib.suppress(Exception):  # an object that takes no attributes: the view still gets the tracker
        setattr(request, REQUEST_ATTRIBUTE, tracker)
    return tracker


async def aget_tracker(request: Any) -> Tracker:
    """:func:`get_tracker` for async views: also looks the customer up, the async way, so that the tracker's
    events carry the customer id without touching the database from the event loop."""
    tracker = get_tracker(request)
    if isinstance(tracker, RequestTracker):
        await tracker.aresolve()
    return tracker


def track(request: Any, event: str, **fields: Any) -> bool:
    """Record ``event`` (a kind from ``docs/events.md``) with ``fields`` for the request's shopper:
    ``track(request, "add_to_cart", items=[...], currency="EUR", cart_id=cart.pk)``. Never raises; returns whether
    the event was kept."""
    return get_tracker(request).track(event, **fields)


def get_engine() -> BackgroundEngine | None:
    """The process's :class:`~recoverkit.BackgroundEngine` (built at start-up, its thread started by the first
    event; ``None`` in mode ``"off"`` or once closed): for ``statistics()`` on a health page, or ``forget()`` and
    ``export()`` in an admin view. Raises :class:`~recoverkit.errors.ConfigError` if the settings are broken."""
    return get_state().engine.get()


def flush() -> None:
    """Block until everything tracked so far has been handled. With a ``FakeClock`` in ``RECOVERKIT["CLOCK"]``,
    ``clock.advance(3600); flush()`` fires what fell due in that hour (a shop's tests). Nothing to do in mode
    ``"off"``; in a process that does not run the pipeline it only journals what was tracked."""
    engine = get_engine()
    if engine is not None:
        engine.flush()
