"""The console as one request handler, whatever the framework: a :class:`ConsoleRequest` in, a
:class:`ConsoleResponse` out (:func:`handle`).

The adapters (``recoverkit.contrib.django.console``, ``recoverkit.contrib.flask.console``,
``recoverkit.contrib.asgi_console``) authenticate (an :class:`~recoverkit.console.Operator`, or ``None``: 403),
check the form's CSRF token on a ``POST`` (the framework's own in Django, :class:`~recoverkit.console.CsrfTokens`
elsewhere) and find the process's engine; everything after that is here, so that the three behave alike.

==========================  ======  =====================================  ====================================
path (under the mount)      method  permission                             what
==========================  ======  =====================================  ====================================
(the root)                  GET     ``recoverkit.view``                    live figures
``carts?q=``                GET     ``recoverkit.view``                    carts and their messages, searchable
``dead-letters``            GET     ``recoverkit.view``                    dead letters
``dead-letters/resend``     POST    ``recoverkit.resend``                  resend one (form: ``key``)
``unknown``                 GET     ``recoverkit.view``                    the ledger's unknown outcomes
``unknown/resolve``         POST    ``recoverkit.resolve``                 settle one (form: ``key``, ``as``)
``customer``                GET     ``recoverkit.view``                    the forget and export forms
``customer/forget``         POST    ``recoverkit.forget``                  erase a customer (form: ``customer``)
``customer/export``         POST    ``recoverkit.export``                  download their data (JSON)
==========================  ======  =====================================  ====================================

Every page and action needs ``recoverkit.view`` too. Personal data is masked on every page unless the operator
holds ``recoverkit.view_personal_data``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import msgspec

from .._log import get_logger
from . import _actions, _figures, _lists
from ._pages import HEADERS, render
from ._permissions import EXPORT, FORGET, RESEND, RESOLVE, VIEW, VIEW_PERSONAL_DATA, Operator, PermissionDenied

if TYPE_CHECKING:
    from ._access import EngineAccess

__all__ = ["ConsoleRequest", "ConsoleResponse", "handle"]

_log = get_logger("recoverkit.console")

#: The pages in the header, in order: (path, label).
_NAV: Final = (("", "Overview"), ("carts", "Carts"), ("dead-letters", "Dead letters"), ("unknown", "Unknown outcomes"),
               ("customer", "Customers"))  # fmt: skip
_TITLES: Final = dict(_NAV) | {"": "Live figures", "customer": "Forget or export a customer"}


class ConsoleRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One request: ``path`` under the console's mount (``""``, ``"carts"``, ``"dead-letters/resend"``; no
    leading slash), the query's and the form's fields (first value of each)."""

    method: str
    path: str
    query: Mapping[str, str] = {}
    form: Mapping[str, str] = {}


class ConsoleResponse(msgspec.Struct, kw_only=True):
    """What to answer: status, headers and body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


class _Page:
    """What every page of one request shares: the operator, the links, the CSRF token for its forms."""

    def __init__(self, operator: Operator, root: str, csrf_field: str, csrf_token: str, page: str) -> None:
        self.operator, self.root, self.page = operator, root, page
        self.common: dict[str, Any] = {
            "operator": operator.name, "personal": operator.can(VIEW_PERSONAL_DATA), "page": page,
            "nav": [(path, self.url(path), label) for path, label in _NAV], "url": self.url,
            "csrf_field": csrf_field, "csrf_token": csrf_token, "result": None,
            "can_resend": operator.can(RESEND), "can_resolve": operator.can(RESOLVE),
            "can_forget": operator.can(FORGET), "can_export": operator.can(EXPORT),
        }  # fmt: skip

    def url(self, path: str) -> str:
        return self.root + path

    def __call__(self, template: str, status: int = 200, **context: Any) -> ConsoleResponse:
        title = _TITLES.get(self.page.split("/")[0], "recoverkit")
        body = render(template, **{**self.common, "title": title, **context})
        return ConsoleResponse(status=status, headers=list(HEADERS), body=body)


def refused(status: int, message: str) -> ConsoleResponse:
    """A page that says why the request was refused, without anything the operator may not see."""
    body = render("error", title="Refused" if status == 403 else "Error", message=message, nav=[], page="",
                  operator="", personal=False, result=None)  # fmt: skip
    return ConsoleResponse(status=status, headers=list(HEADERS), body=body)


def handle(
    request: ConsoleRequest,
    *,
    operator: Operator | None,
    access: Callable[[], EngineAccess | None],
    root: str,
    csrf_field: str,
    csrf_token: str,
    csrf_ok: bool,
) -> ConsoleResponse:
    """Answer ``request`` for ``operator`` (``None``: nobody signed in, 403). ``access`` gives the process's
    engine (``None`` when recoverkit is off here: 503); ``root`` is the console's URL with a trailing slash;
    ``csrf_ok`` says whether a ``POST`` carried a valid token (``False``: 403, nothing done). Never raises."""
    if operator is None:
        return refused(403, "Sign in as an operator of the shop to use the recoverkit console.")
    if not operator.can(VIEW):
        return refused(403, f"You do not hold the permission {VIEW!r} that the recoverkit console needs.")
    route = _ROUTES.get(request.path.strip("/"))
    if route is None:
        return refused(404, "No such page in the recoverkit console.")
    method, run = route
    if request.method != method:
        response = refused(405, f"This address answers {method} only.")
        response.headers.append(("Allow", method))
        return response
    if method == "POST" and not csrf_ok:
        return refused(403, "The form's CSRF token is missing or does not match this session: reload the page and "
                       "submit the form again. Nothing was done.")  # fmt: skip
    found = access()
    if found is None:
        return refused(503, 'recoverkit runs no engine in this process (mode "off").')
    page = _Page(operator, root, csrf_field, csrf_token, request.path.strip("/"))
    try:
        return run(found, page, request)
    except PermissionDenied as exc:
        return refused(403, f"You do not hold the permission {exc.permission!r} this needs. Nothing was done.")
    except ValueError as exc:
        return refused(400, str(exc))
    except Exception as exc:
        _log.exception("console_failed", path=request.path.strip("/"), error=type(exc).__name__)
        return refused(500, f"The console could not answer ({type(exc).__name__}); see the log.")


def _overview(access: EngineAccess, page: _Page, request: ConsoleRequest) -> ConsoleResponse:
    return page("overview", f=_figures.live_figures(access))


def _carts(access: EngineAccess, page: _Page, request: ConsoleRequest) -> ConsoleResponse:
    query = request.query.get("q", "")[:200]
    return page("carts", carts=_lists.search_carts(access, page.operator, query), query=query)


def _letters(access: EngineAccess, page: _Page, request: ConsoleRequest, result: Any = None) -> ConsoleResponse:
    status = 200 if result is None or result.ok else 409
    return page("letters", status, letters=_lists.dead_letter_rows(access, page.operator), result=result)


def _resend(access: EngineAccess, page: _Page, request: ConsoleRequest) -> ConsoleResponse:
    result = _actions.resend(access, page.operator, request.form.get("key", ""))
    return _letters(access, page, request, result)


def _unknown(access: EngineAccess, page: _Page, request: ConsoleRequest, result: Any = None) -> ConsoleResponse:
    status = 200 if result is None or result.ok else 409
    return page("unknown", status, entries=_lists.unknown_rows(access, page.operator), result=result)


def _resolve(access: EngineAccess, page: _Page, request: ConsoleRequest) -> ConsoleResponse:
    result = _actions.resolve(access, page.operator, request.form.get("key", ""), request.form.get("as", ""))
    return _unknown(access, page, request, result)


def _customer(access: EngineAccess, page: _Page, request: ConsoleRequest) -> ConsoleResponse:
    return page("customer")


def _forget(access: EngineAccess, page: _Page, request: ConsoleRequest) -> ConsoleResponse:
    result = _actions.forget(access, page.operator, request.form.get("customer", ""))
    return page("customer", 200 if result.ok else 409, result=result)


def _export(access: EngineAccess, page: _Page, request: ConsoleRequest) -> ConsoleResponse:
    body = _actions.export(access, page.operator, request.form.get("customer", ""))
    headers = [
        ("Content-Type", "application/json"), ("Content-Disposition", 'attachment; filename="recoverkit-export.json"'),
        ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
    ]  # fmt: skip
    return ConsoleResponse(status=200, headers=headers, body=body)


_Run = Callable[["EngineAccess", _Page, ConsoleRequest], ConsoleResponse]
_ROUTES: Final[dict[str, tuple[str, _Run]]] = {
    "": ("GET", _overview),
    "carts": ("GET", _carts),
    "dead-letters": ("GET", _letters),
    "dead-letters/resend": ("POST", _resend),
    "unknown": ("GET", _unknown),
    "unknown/resolve": ("POST", _resolve),
    "customer": ("GET", _customer),
    "customer/forget": ("POST", _forget),
    "customer/export": ("POST", _export),
}
