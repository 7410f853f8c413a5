"""One shared copy of the few strings every session or contact repeats.

Each event decodes its own copy of ``"EUR"``, ``"mobile"`` or ``"email"``; a session or contact that keeps the
copy for days keeps 50-60 bytes a value that one shared string would cost once. :func:`shared` hands back the
interpreter's interned copy. CPython frees an interned string once nothing else holds it, so values a shop makes
up (a campaign's ``utm_source``) do not pile up.
"""

from __future__ import annotations

from sys import intern

__all__ = ["shared"]


def shared(value: str) -> str:
    """The interned copy of ``value``; a ``str`` subclass (a shop may pass one in a dict or a Struct, and
    ``sys.intern`` refuses them) is returned as it is."""
    return intern(value) if type(value) is str else value
