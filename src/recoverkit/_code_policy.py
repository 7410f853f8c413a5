"""How a :class:`~recoverkit.offers.CodeBook` makes codes and limits their abuse: :class:`CodePolicy`, checked
field by field when built. Re-exported by :mod:`recoverkit.offers`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Final, TypeGuard

import msgspec

from .errors import ConfigError

__all__ = ["SHARED_MAIL_DOMAINS", "CodePolicy", "duration_text", "is_int"]

#: Web-mail domains that countless unrelated people share: the per-domain limit does not apply to them.
SHARED_MAIL_DOMAINS: Final = frozenset(
    {
        "163.com", "aol.com", "gmail.com", "gmx.at", "gmx.de", "gmx.net", "googlemail.com", "hotmail.com",
        "icloud.com", "live.com", "mail.ru", "me.com", "msn.com", "outlook.com", "proton.me", "protonmail.com",
        "qq.com", "t-online.de", "web.de", "yahoo.com", "yandex.ru",
    }
)  # fmt: skip

_PREFIX: Final = re.compile(r"[A-Z0-9]{1,8}")
_DAY: Final = 86_400.0


class CodePolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How a :class:`~recoverkit.offers.CodeBook` makes codes and limits their abuse. Checked when built: a bad
    value raises :class:`~recoverkit.errors.ConfigError` naming the field, the value and what was expected.

    - ``prefix``: 1 to 8 capital letters or digits shown before the code (``"SHOP"``), or ``""``;
    - ``length``: symbols of randomness, 12 (60 bits) to 32;
    - ``lifetime``: seconds a code lives when the offer has no ``expires_at`` (1 minute to 90 days);
    - ``per_contact``, ``per_domain``, ``per_device``: at most this many codes issued per contact, per e-mail
      domain, per device within ``period`` seconds (``None``: no such limit). The per-domain limit, off by
      default, is for shops where many accounts on one private domain mean abuse; it never applies to the
      ``shared_domains``;
    - ``attempts`` failed redemptions per client within ``attempt_window`` seconds, after which the client is
      answered ``"rate_limited"``. The window is also how long the store keeps failed attempts.
    """

    prefix: str = ""
    length: int = 12
    lifetime: float = _DAY
    period: float = 30 * _DAY
    per_contact: int | None = 3
    per_domain: int | None = None
    per_device: int | None = 5
    shared_domains: frozenset[str] = SHARED_MAIL_DOMAINS
    attempts: int = 10
    attempt_window: float = 900.0

    def __post_init__(self) -> None:
        for field, holds, expected in _RULES:
            value = getattr(self, field)
            if not holds(value):
                raise ConfigError(f"CodePolicy.{field}: expected {expected}, got {value!r}")


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


def duration_text(seconds: float) -> str:
    for unit, size in (("days", _DAY), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"


def _is_limit(value: object) -> bool:
    return value is None or (is_int(value) and value >= 1)


#: Each field of :class:`CodePolicy` in the order it is checked, what its value must satisfy, and what an error
#: says was expected (tests match these words).
_RULES: Final[tuple[tuple[str, Callable[[Any], bool], str], ...]] = (
    ("prefix", lambda v: not v or _PREFIX.fullmatch(v) is not None, "1 to 8 capital letters or digits, or ''"),
    ("length", lambda v: is_int(v) and 12 <= v <= 32, "an integer from 12 (60 bits) to 32"),
    ("lifetime", lambda v: _is_number(v) and 60 <= v <= 90 * _DAY, "seconds from 60 to 90 days"),
    ("period", lambda v: _is_number(v) and 0 < v < math.inf, "seconds > 0"),
    ("per_contact", _is_limit, "an integer >= 1, or None for no limit"),
    ("per_domain", _is_limit, "an integer >= 1, or None for no limit"),
    ("per_device", _is_limit, "an integer >= 1, or None for no limit"),
    ("attempts", lambda v: is_int(v) and v >= 1, "an integer >= 1"),
    ("attempt_window", lambda v: _is_number(v) and 0 < v <= _DAY, "seconds > 0, at most a day"),
)
