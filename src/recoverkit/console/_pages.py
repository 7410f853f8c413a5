"""Rendering the console's pages: Jinja2 templates beside this module, sandboxed and autoescaped.

Server-rendered HTML with plain forms and a little inline CSS: no script, nothing fetched from elsewhere (the
adapters send a Content-Security-Policy that forbids both). Every value from data is escaped; the templates run
in Jinja2's immutable sandbox, so a template cannot reach into the objects it is given beyond reading them.
"""

from __future__ import annotations

import datetime as dt
import functools
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Final

from .._optional import require
from ..money import format_minor

if TYPE_CHECKING:
    import jinja2

__all__ = ["HEADERS", "render", "require_templates"]

#: Headers of every console page: never cached, never framed, nothing loaded but the page itself.
HEADERS: Final = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy",
     "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
)  # fmt: skip


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _money(amount: int | None, currency: str | None) -> str:
    if amount is None:
        return "-"
    return format_minor(amount, currency if currency and currency != "?" else None)


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f} pts"


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@functools.cache
def _environment() -> jinja2.Environment:
    jinja = require("jinja2", extra="templates", feature="the operator console (recoverkit.console)")
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    folder = files(__package__).joinpath("templates")

    def load(name: str) -> str | None:
        entry = folder.joinpath(name)
        return entry.read_text("utf-8") if entry.is_file() else None

    env = ImmutableSandboxedEnvironment(
        loader=jinja.FunctionLoader(load), autoescape=True, undefined=jinja.StrictUndefined,
    )  # fmt: skip
    env.globals.update(count=_count, money=_money, pct=_pct, points=_points, when=_when)
    return env


def render(name: str, **context: Any) -> bytes:
    """The page ``name`` (``overview``, ``carts``, ...) rendered with ``context``, as UTF-8."""
    return _environment().get_template(f"{name}.html.j2").render(**context).encode("utf-8")


def require_templates() -> None:
    """Load the templates now: a shop without Jinja2 learns it when the console is mounted (a
    :class:`~recoverkit.errors.MissingExtraError` naming the ``templates`` extra), not at the first page."""
    _environment()
