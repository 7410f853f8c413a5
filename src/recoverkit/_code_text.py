"""What a code looks like as text: symbols of :data:`ALPHABET` in groups of four after an optional shop prefix
(``SHOP-7KQ2-MX9P-R4TW``), drawn with :mod:`secrets`, and read back from whatever a shopper typed.
Re-exported by :mod:`recoverkit.offers`, which describes the codes' guarantees.
"""

from __future__ import annotations

import re
import secrets
from typing import Final

__all__ = ["ALPHABET", "draw", "format_code", "new_code", "parse_code"]

#: The symbols of a code: digits and capital letters without ``0``, ``O``, ``1`` and ``I``, which readers
#: confuse. 32 of them, so each symbol carries 5 bits.
ALPHABET: Final = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
_SYMBOLS: Final = frozenset(ALPHABET)
_GROUP: Final = 4
_SEPARATORS: Final = re.compile(r"[\s\-_.]+")
#: Longer input is not a code (and is not worth normalising): refused before any work.
_MAX_INPUT: Final = 100


def format_code(body: str, prefix: str = "") -> str:
    """``body`` in groups of four after ``prefix``: ``format_code("7KQ2MX9PR4TW", "SHOP")`` is
    ``"SHOP-7KQ2-MX9P-R4TW"``.

    >>> format_code("7KQ2MX9PR4TW", "SHOP")
    'SHOP-7KQ2-MX9P-R4TW'
    """
    groups = [body[i : i + _GROUP] for i in range(0, len(body), _GROUP)]
    return "-".join([prefix, *groups] if prefix else groups)


def draw(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def new_code(*, length: int = 12, prefix: str = "") -> str:
    """A fresh code of ``length`` symbols of :data:`ALPHABET` (``5 * length`` bits, from :mod:`secrets`), formatted
    by :func:`format_code`."""
    return format_code(draw(length), prefix)


def parse_code(text: str, *, length: int = 12, prefix: str = "") -> str | None:
    """The body of the code a shopper typed (``length`` symbols, no prefix, no separators), or ``None`` when
    ``text`` cannot be a code of this format.

    Case, spaces, dashes, underscores and dots are ignored, as is the prefix (typed or not), so that
    ``"shop 7kq2 mx9p r4tw"`` and ``"7KQ2MX9PR4TW"`` are the same code.

    >>> parse_code("shop 7kq2-mx9p-r4tw", prefix="SHOP")
    '7KQ2MX9PR4TW'
    """
    if len(text) > _MAX_INPUT:
        return None
    compact = _SEPARATORS.sub("", text).upper()
    if prefix and len(compact) == len(prefix) + length and compact.startswith(prefix):
        compact = compact[len(prefix) :]
    if len(compact) != length or not _SYMBOLS.issuperset(compact):
        return None
    return compact
