"""Shared helpers that turn msgspec validation errors into messages a person can act on."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["describe_value", "split_error"]

_PATH = re.compile(r" - at `(\$[^`]*)`$")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")


def split_error(text: str) -> tuple[str, str | None]:
    """Split msgspec's ``"Expected `int`, got `str` - at `$.a[2]`"`` into the complaint and the path."""
    match = _PATH.search(text)
    if match is None:
        return text, None
    return text[: match.start()], match.group(1)


def describe_value(root: Callable[[], Any], path: str, *, personal: frozenset[str] = frozenset()) -> str:
    """Show the value at a msgspec JSON path of the document ``root()`` returns, errors only (slow path).

    Values under a key in ``personal`` are redacted: error messages end up in logs.
    """
    try:
        node = root()
        key: str | int = "$"
        for m in _STEP.finditer(path):
            key = m.group(1) if m.group(1) is not None else int(m.group(2))
            node = node[key]
    except Exception:  # the value cannot be found again (for example the document itself was odd)
        return "a value that could not be shown"
    if key in personal:
        return "a redacted value (personal data)"
    try:
        shown = repr(node)
    except RecursionError:  # a value nested deeper than repr() can go
        return "a deeply nested value"
    return shown if len(shown) <= 60 else shown[:57] + "..."
