"""The operator console in Flask: a blueprint behind a check the shop supplies (docs/console.md).

::

    from recoverkit.console import EXPORT, FORGET, RESEND, RESOLVE, VIEW, Operator
    from recoverkit.contrib.flask.console import console_blueprint

    def authorize(request):
        if not current_user.is_authenticated or not current_user.is_admin:
            return None                                   # 403
        return Operator(name=str(current_user.id), permissions=frozenset({VIEW, RESEND, RESOLVE}))

    app.register_blueprint(console_blueprint(authorize), url_prefix="/ops/recoverkit")

Never public: a request for which ``authorize`` answers ``None`` (or raises) gets 403. The engine is the app's
:class:`~recoverkit.contrib.flask.Recoverkit` extension's unless ``engine`` is given. Forms are protected by a
signed double-submit token (:class:`~recoverkit.console.CsrfTokens`) keyed with ``secret`` (default: the app's
``SECRET_KEY``, which must then be set).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from flask import Blueprint, Request, Response, current_app, request

from ..._log import get_logger
from ...background import BackgroundEngine
from ...console import ConsoleRequest, CsrfTokens, EngineAccess, Operator, handle, require_templates
from ...console._app import refused
from ...console._csrf import COOKIE, FIELD
from ...console._permissions import checked_operator
from ...errors import ConfigError
from ._state import app_state

__all__ = ["console_blueprint"]

_log = get_logger("recoverkit.contrib.flask")

#: The most bytes a console form may have (a key and a token); a larger one gets 413.
MAX_FORM: Final = 64 * 1024

Authorize = Callable[[Request], Operator | None]


def console_blueprint(
    authorize: Authorize,
    *,
    name: str = "recoverkit_console",
    secret: str | bytes | None = None,
    engine: Callable[[], BackgroundEngine | None] | None = None,
) -> Blueprint:
    """The console as a blueprint named ``name``; register it under the URL prefix of your choice.

    ``authorize(request)`` returns the signed-in :class:`~recoverkit.console.Operator`, or ``None`` (403);
    ``secret`` keys the CSRF tokens (default ``app.config["SECRET_KEY"]``); ``engine`` returns the process's
    :class:`~recoverkit.BackgroundEngine` (default: the ``Recoverkit`` extension's). Without Jinja2 this raises
    :class:`~recoverkit.errors.MissingExtraError` naming the ``templates`` extra.
    """
    if not callable(authorize):
        raise TypeError(f"console_blueprint: expected `authorize` to be a callable request -> Operator | None, "
                        f"got {type(authorize).__name__}")  # fmt: skip
    require_templates()
    blueprint = Blueprint(name, __name__)
    tokens: list[CsrfTokens] = []

    def csrf() -> CsrfTokens:
        if not tokens:
            key = secret if secret is not None else current_app.config.get("SECRET_KEY")
            if not key:
                raise ConfigError("the recoverkit console needs a secret for its CSRF tokens: set app.config"
                                  "['SECRET_KEY'] or pass console_blueprint(..., secret=...)")  # fmt: skip
            tokens.append(CsrfTokens(key))
        return tokens[0]

    def access() -> EngineAccess | None:
        found = engine() if engine is not None else app_state(current_app).engine.get()
        return EngineAccess.background(found) if found is not None else None

    def page(path: str = "") -> Response:
        # Checked here rather than with request.max_content_length, which Flask 3.0 (our lowest) cannot set.
        if request.method == "POST" and (request.content_length or 0) > MAX_FORM:
            return _respond(refused(413, "The form is too large."))
        who = _operator(authorize)
        session = request.cookies.get(COOKIE) or CsrfTokens.new_session()
        root = request.path[: len(request.path) - len(path)] if path else request.path
        if not root.endswith("/"):
            root += "/"
        try:
            signer = csrf()
        except (ConfigError, ValueError) as exc:
            _log.error("console_misconfigured", error=str(exc))
            return _respond(refused(500, str(exc)))
        name_ = who.name if who is not None else ""
        posted = request.form.get(FIELD) if request.method == "POST" else None
        answer = handle(
            ConsoleRequest(method=request.method, path=path, query=request.args.to_dict(),
                           form=request.form.to_dict() if request.method == "POST" else {}),
            operator=who, access=access, root=root, csrf_field=FIELD, csrf_token=signer.token(session, name_),
            csrf_ok=request.method != "POST" or signer.check(request.cookies.get(COOKIE), name_, posted),
        )  # fmt: skip
        response = _respond(answer)
        if request.cookies.get(COOKIE) != session:
            response.set_cookie(COOKIE, session, path=root, httponly=True, samesite="Strict", secure=request.is_secure)
        return response

    blueprint.add_url_rule("/", "index", page, methods=["GET", "POST"], strict_slashes=False)
    blueprint.add_url_rule("/<path:path>", "page", page, methods=["GET", "POST"])
    return blueprint


def _operator(authorize: Authorize) -> Operator | None:
    try:
        who = authorize(request)
    except Exception as exc:  # the shop's check failed: nobody is let in
        _log.error("console_authorize_failed", error=type(exc).__name__)
        return None
    return checked_operator(who)


def _respond(answer: Any) -> Response:
    response = Response(answer.body, status=answer.status)
    for header, value in answer.headers:
        response.headers[header] = value
    return response
