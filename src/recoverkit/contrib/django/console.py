"""The operator console in Django, behind the admin's login, ``is_staff`` and named permissions (docs/console.md).

::

    # urls.py
    path("ops/recoverkit/", include("recoverkit.contrib.django.console_urls")),

A visitor who is not signed in is sent to the login page (``settings.LOGIN_URL``); a signed-in user who is not
active staff gets 403. A staff user holds the console permissions their Django permissions grant: ``recoverkit.view``,
``recoverkit.view_personal_data``, ``recoverkit.resend``, ``recoverkit.resolve``, ``recoverkit.forget`` and
``recoverkit.export`` (a superuser holds all). Those six permissions are created by ``manage.py migrate`` (after
``django.contrib.auth``'s own, see :func:`create_permissions`) under a content type ``recoverkit.console`` that has
no table: no migration and no model of recoverkit's in the shop's database. Grant them in the admin or with
``user.user_permissions.add(...)``.

Forms carry Django's own CSRF token and the view is ``csrf_protect``-ed, so a forged ``POST`` gets Django's 403
whether or not ``CsrfViewMiddleware`` is installed.
"""

from __future__ import annotations

from typing import Any, Final

from django.http import HttpResponse  # type: ignore[import-untyped]
from django.middleware.csrf import get_token  # type: ignore[import-untyped]
from django.views.decorators.csrf import csrf_protect  # type: ignore[import-untyped]

from ...console import PERMISSIONS, ConsoleRequest, EngineAccess, Operator, handle
from ._state import get_state

__all__ = ["CONTENT_TYPE_MODEL", "console_view", "create_permissions", "operator_of"]

#: The model name of the content type the console's permissions hang on (app label ``recoverkit``).
CONTENT_TYPE_MODEL: Final = "console"
_APP_LABEL: Final = "recoverkit"


def operator_of(user: Any) -> Operator | None:
    """The console :class:`~recoverkit.console.Operator` of a signed-in Django ``user``: active staff only, with
    the ``recoverkit.*`` permissions it holds; ``None`` for anyone else."""
    if user is None or not user.is_authenticated or not user.is_active or not user.is_staff:
        return None
    return Operator(name=str(user.pk), permissions=frozenset(p for p in PERMISSIONS if user.has_perm(p)))


def _access() -> EngineAccess | None:
    engine = get_state().engine.get()
    return EngineAccess.background(engine) if engine is not None else None


@csrf_protect  # type: ignore[untyped-decorator]
def console_view(request: Any, path: str = "") -> Any:
    """Every console page and action (``path`` under the mount, see :func:`recoverkit.console.handle`)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        # Imported here: django.contrib.auth.views loads the auth models, which need the apps ready, and this
        # module is imported before they are (the URLconf, or a tool walking the package).
        from django.contrib.auth.views import redirect_to_login  # type: ignore[import-untyped]

        return redirect_to_login(request.get_full_path())
    root = request.path[: len(request.path) - len(path)] if path else request.path
    answer = handle(
        ConsoleRequest(method=request.method, path=path, query=request.GET.dict(),
                       form=request.POST.dict() if request.method == "POST" else {}),
        operator=operator_of(user), access=_access, root=root if root.endswith("/") else root + "/",
        csrf_field="csrfmiddlewaretoken", csrf_token=get_token(request), csrf_ok=True,  # csrf_protect checked it
    )  # fmt: skip
    response = HttpResponse(answer.body, status=answer.status)
    for name, value in answer.headers:
        response[name] = value
    return response


def create_permissions(sender: Any = None, *, apps: Any = None, using: str = "default", **kwargs: Any) -> None:
    """Create the console's six permissions (idempotent): a ``post_migrate`` receiver that acts once
    ``django.contrib.auth`` has migrated (the app connects it in ``ready()``)."""
    if sender is None or getattr(sender, "label", None) != "auth" or apps is None:
        return
    try:
        content_types = apps.get_model("contenttypes", "ContentType")
        permissions = apps.get_model("auth", "Permission")
    except LookupError:  # contenttypes not installed: Django's permissions are not in use
        return
    kind, _ = content_types.objects.using(using).get_or_create(app_label=_APP_LABEL, model=CONTENT_TYPE_MODEL)
    for permission, description in PERMISSIONS.items():
        codename = permission.removeprefix(f"{_APP_LABEL}.")
        found = permissions.objects.using(using).filter(content_type=kind, codename=codename).first()
        if found is None:
            permissions.objects.using(using).create(content_type=kind, codename=codename, name=description[:255])
