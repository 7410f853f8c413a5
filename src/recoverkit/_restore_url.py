"""The rules a restore view's ``base_url`` must meet, shared by :func:`~recoverkit.config.load_config` (checked at
load time) and :class:`~recoverkit.links.RestoreLinks` (checked when built directly).

A module of its own so that ``config`` can check ``[links] base_url`` without importing ``links``, which
depends on ``config`` for :class:`~recoverkit.config.LinksConfig`.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl, urlsplit

from .errors import ConfigError

__all__ = ["PARAMETER", "check_base_url"]

#: The query parameter that carries the token.
PARAMETER: Final = "t"

_LOCAL_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})


def check_base_url(base_url: str) -> None:
    """Return if ``base_url`` is an absolute ``https://`` URL (``http://`` for localhost only) without user
    information, fragment, :data:`PARAMETER` query parameter or whitespace; else raise
    :class:`~recoverkit.errors.ConfigError` naming the rule it breaks."""

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"RestoreLinks: expected `base_url` to be {expected}, got {base_url!r}")

    if not isinstance(base_url, str):
        raise bad("a string")
    try:
        parts = urlsplit(base_url)
        host = parts.hostname
    except ValueError as exc:
        raise bad("an absolute URL") from exc
    if parts.scheme not in ("https", "http") or not host:
        raise bad("an absolute https:// URL such as 'https://shop.example/cart/restore'")
    if parts.scheme == "http" and host not in _LOCAL_HOSTS:
        raise bad("an https:// URL (plain http is allowed for localhost only: a link is a credential)")
    if parts.username is not None or parts.password is not None:
        raise bad("a URL without user information (an 'x@' before the host makes links look like phishing)")
    if parts.fragment:
        raise bad("a URL without a #fragment")
    if any(name == PARAMETER for name, _ in parse_qsl(parts.query, keep_blank_values=True)):
        raise bad(f"a URL without a {PARAMETER!r} query parameter (it carries the token)")
    if any(c.isspace() for c in base_url):
        raise bad("a URL without whitespace")
