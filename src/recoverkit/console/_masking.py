"""Masking personal data on the server, before anything reaches a page.

An operator without :data:`~recoverkit.console.VIEW_PERSONAL_DATA` sees ``j***@e***.com`` for an address and
``+33 6** ** ** 78``-like shapes for a phone number: enough to tell two customers apart on a call, not enough to
write to them. Free text (a provider's error) has every address and phone number in it masked the same way.
Identifiers (customer ids, cart keys, message keys) are not masked: they are what an operator searches with and
acts on, and the audit log names them too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["PERSONAL_FIELDS", "mask_email", "mask_fields", "mask_phone", "mask_text", "mask_value"]

#: Field names whose values are personal data wherever they appear (a contact record, an export's rows).
PERSONAL_FIELDS: Final = frozenset(
    {"email", "phone", "name", "first_name", "last_name", "full_name", "address", "address1", "address2",
     "street", "city", "postcode", "postal_code", "zip"}
)  # fmt: skip

_EMAIL: Final = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")
# An international number (a leading +), as the CLI's redaction finds them: a bare run of digits is more often an
# order number or a time than a phone number, and identifiers must stay readable.
_PHONE: Final = re.compile(r"\+\d[\d ()./-]{5,}\d")
_MASK: Final = "***"


def mask_email(email: str) -> str:
    """``jane.doe@example.com`` -> ``j***@e***.com``: the first letters and the top-level domain stay."""
    local, _, domain = email.partition("@")
    if not domain:
        return _MASK
    host, dot, tld = domain.rpartition(".")
    masked_host = (host[:1] + _MASK) if dot else (domain[:1] + _MASK)
    return f"{local[:1]}{_MASK}@{masked_host}{dot}{tld if dot else ''}"


def mask_phone(phone: str) -> str:
    """Every digit but the last two replaced by ``*`` (a leading ``+`` and the separators stay)."""
    digits = sum(ch.isdigit() for ch in phone)
    seen = 0
    out = []
    for ch in phone:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen > digits - 2 else "*")
        else:
            out.append(ch)
    return "".join(out)


def mask_value(field: str, value: Any) -> Any:
    """``value`` masked as the personal-data field ``field`` (a string; other values are replaced whole)."""
    if value is None or value == "":
        return value
    if not isinstance(value, str):
        return _MASK
    if field == "email" or _EMAIL.fullmatch(value):
        return mask_email(value)
    if field == "phone":
        return mask_phone(value)
    return value[:1] + _MASK


def mask_text(text: str) -> str:
    """``text`` with every e-mail address and international phone number (``+...``) in it masked."""
    text = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


def mask_fields(data: Any) -> Any:
    """A copy of JSON-like ``data`` (dicts, lists, scalars) with the values of :data:`PERSONAL_FIELDS` masked and
    addresses and phone numbers in other strings masked too."""
    if isinstance(data, Mapping):
        return {k: mask_value(k, v) if k in PERSONAL_FIELDS else mask_fields(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [mask_fields(v) for v in data]
    if isinstance(data, str):
        return mask_text(data)
    return data
