"""Django system checks (``manage.py check``; also run by ``runserver`` and ``migrate``).

``ready()`` already refuses broken settings, so that a WSGI server, which runs no checks, never serves with them;
these checks report what ``ready()`` cannot refuse:

- ``recoverkit.E001``: ``settings.RECOVERKIT`` is invalid (it was changed after start-up);
- ``recoverkit.E002``: restore links are configured but cannot be checked (their secret is missing or short), in
  mode ``"off"``, where no engine is built to notice;
- ``recoverkit.W001``: ``RecoverkitMiddleware`` is not in ``MIDDLEWARE``, so views get trackers that record
  nothing and no page load is recorded;
- ``recoverkit.W002`` (``--deploy``): ``COOKIE_SECURE`` is false while Django's session cookie is secure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from django.conf import settings as django_settings  # type: ignore[import-untyped]
from django.core import checks  # type: ignore[import-untyped]
from django.utils.module_loading import import_string  # type: ignore[import-untyped]

from ...errors import ConfigError
from ._settings import SOURCE, settings_from_django

__all__ = ["MIDDLEWARE_PATH", "check_deployment", "check_middleware", "check_settings"]

#: The middleware's import path, as ``settings.MIDDLEWARE`` names it.
MIDDLEWARE_PATH: Final = "recoverkit.contrib.django.middleware.RecoverkitMiddleware"


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``recoverkit.E001`` and ``recoverkit.E002``."""
    try:
        settings = settings_from_django(getattr(django_settings, "RECOVERKIT", None))
    except ConfigError as exc:
        return [checks.Error(str(exc), hint="see docs/django.md#settings", id="recoverkit.E001")]
    try:
        settings.links()
    except ConfigError as exc:
        return [checks.Error(f"{SOURCE}['CONFIG']: restore links cannot be checked: {exc}",
                             hint="set the secret in the environment of every process that serves the shop",
                             id="recoverkit.E002")]
    return []


def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``recoverkit.W001``."""
    if any(_is_ours(entry) for entry in getattr(django_settings, "MIDDLEWARE", None) or ()):
        return []
    return [checks.Warning(
        "RecoverkitMiddleware is not in settings.MIDDLEWARE: views get trackers that record nothing, no session "
        "cookie is set and no page load is recorded",
        hint=f"add {MIDDLEWARE_PATH!r} to settings.MIDDLEWARE",
        id="recoverkit.W001",
    )]


def check_deployment(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``recoverkit.W002`` (deployment checks only)."""
    value = getattr(django_settings, "RECOVERKIT", None)
    secure = value.get("COOKIE_SECURE") if isinstance(value, Mapping) else None
    if secure is False and getattr(django_settings, "SESSION_COOKIE_SECURE", False):
        return [checks.Warning(
            f"{SOURCE}['COOKIE_SECURE'] is False while SESSION_COOKIE_SECURE is True: recoverkit's session cookie "
            "would be sent over plain HTTP",
            hint=f"remove {SOURCE}['COOKIE_SECURE'] (it then follows the request) or set it to True",
            id="recoverkit.W002",
        )]
    return []


def _is_ours(entry: object) -> bool:
    if entry == MIDDLEWARE_PATH:
        return True
    if not isinstance(entry, str):
        return False
    from .middleware import RecoverkitMiddleware  # a subclass of it counts too

    try:
        cls = import_string(entry)
    except ImportError:
        return False  # Django's own start-up reports a middleware that cannot be imported
    return isinstance(cls, type) and issubclass(cls, RecoverkitMiddleware)
