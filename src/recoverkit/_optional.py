"""Optional dependencies: imported where they are used, and when missing, named with the extra that installs them.

recoverkit's base install holds what the engine needs (anyio, msgspec, cachetools; and structlog, for now). The
parts that not every shop uses come as extras (``docs/install.md``)::

    smtp       aiosmtplib, jinja2   SmtpChannel
    http       httpx, jinja2        WebhookChannel, HttpChannel (which renders templates)
    templates  jinja2               Templates on their own, recoverkit preview, recoverkit report --format html
    cli        rich                 the command line's tables and colours
    uvloop     uvloop               the engine's event loop when it is installed
    postgres   psycopg, psycopg-pool  PostgreSQLStore, the store several hosts share (docs/scaling.md)

besides those for the integrations and tools (django, flask, asgi, metrics, train).

A module of recoverkit that uses one of them binds the name with :func:`deferred` instead of importing it, so
``import recoverkit`` imports none of them (a guard in ``tests/test_optional_deps.py``), and calls
:func:`require` where the feature is first used (a channel's constructor), so a shop without the extra learns it
at start-up, with the command to run, rather than at the first send.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from .errors import MissingExtraError

__all__ = ["deferred", "require"]


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """The module ``module``, imported; or :class:`~recoverkit.errors.MissingExtraError` naming ``extra``.

    ``feature`` is what the user reached for (``"SmtpChannel"``), as they would recognise it. Any
    :class:`ImportError` counts, not only the module's absence: a half-installed package (its own dependency
    missing) is mended by the same ``pip install``, and its error stays visible as the cause.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        absent = isinstance(exc, ModuleNotFoundError) and exc.name == module
        state = "which is not installed" if absent else f"which fails to import ({exc})"
        raise MissingExtraError(
            f"{feature} needs the {module} package, {state}; install recoverkit's {extra!r} extra: "
            f"pip install 'recoverkit[{extra}]' (from a clone of the repository: pip install '.[{extra}]')",
            name=module,
            extra=extra,
            feature=feature,
        ) from exc


class _Deferred:
    """Stands for a module until an attribute is first read, then imports it through :func:`require`.

    For modules a file uses in many places (``aiosmtplib.SMTPResponseException`` in every ``except``): the file
    keeps reading ``aiosmtplib.X`` and only its import line changes. Type checkers see the real module (the
    binding is under ``if TYPE_CHECKING``), so nothing is lost in checking.
    """

    __slots__ = ("_extra", "_feature", "_loaded", "_module")

    def __init__(self, module: str, extra: str, feature: str) -> None:
        self._module = module
        self._extra = extra
        self._feature = feature
        self._loaded: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        # Only reached for names the proxy itself lacks, so its own slots never recurse here.
        loaded = self._loaded
        if loaded is None:
            loaded = self._loaded = require(self._module, extra=self._extra, feature=self._feature)
        return getattr(loaded, attribute)

    def __repr__(self) -> str:
        state = "imported" if self._loaded is not None else "not imported yet"
        return f"<deferred module {self._module!r} ({state}; extra {self._extra!r})>"


def deferred(module: str, *, extra: str, feature: str) -> Any:
    """A stand-in for ``module`` that imports it on first attribute access (see :class:`_Deferred`).

    Typed ``Any`` because callers bind it only outside ``TYPE_CHECKING``, where the real ``import`` is.
    """
    return _Deferred(module, extra, feature)
