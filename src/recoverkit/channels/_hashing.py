"""Identifiers for ad audiences: normalised as each platform's public documentation requires, then SHA-256.

Both Google Ads Customer Match and Meta Custom Audiences match on the SHA-256 hex digest of a *normalised*
identifier; a value normalised differently from the platform's rule hashes differently and simply never matches.

- **Email** (both): surrounding whitespace removed, lower-cased. Google also documents, for Customer Match and
  enhanced conversions, removing every ``.`` before the ``@`` of ``gmail.com`` and ``googlemail.com`` addresses
  (``gmail_dots=True``); Meta documents no such rule, and its adapter leaves the dots.
- **Phone**: E.164. Google wants the ``+`` and the country code (``+491701234567``); Meta wants digits only,
  country code first, no ``+`` and no leading zeros (``491701234567``). A number is only accepted when written
  internationally (a leading ``+`` or ``00``): a national number (``0170 1234567``) does not say its country, and
  guessing one would upload someone else's number.

Normalising a value that is not an email address or phone number raises :class:`ValueError` saying what was
expected, never echoing the value (it is personal data).
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["e164", "normalise_email", "sha256_hex"]

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_GMAIL = frozenset({"gmail.com", "googlemail.com"})
#: What may separate a phone number's digits as people write them: spaces, dots, dashes, parentheses, slashes.
_PHONE_PUNCTUATION = re.compile(r"[\s().\-/]")


def sha256_hex(normalised: str) -> str:
    """The lower-case hex SHA-256 digest of ``normalised``'s UTF-8 bytes, as both platforms expect."""
    return hashlib.sha256(normalised.encode()).hexdigest()


def normalise_email(email: str, *, gmail_dots: bool = False) -> str:
    """``email`` trimmed and lower-cased; with ``gmail_dots``, dots before ``@gmail.com``/``@googlemail.com`` removed.

    >>> normalise_email("  Jane.Doe@GMail.com ", gmail_dots=True)
    'janedoe@gmail.com'
    >>> normalise_email("Jane.Doe@Example.com", gmail_dots=True)
    'jane.doe@example.com'
    """
    value = email.strip().lower()
    if not _EMAIL.fullmatch(value):
        raise ValueError("recipient email is not an address of the form name@domain.tld")
    if gmail_dots:
        local, _, domain = value.rpartition("@")
        if domain in _GMAIL:
            value = f"{local.replace('.', '')}@{domain}"
    return value


def e164(phone: str) -> str:
    """``phone`` as E.164 with its ``+`` (``"+491701234567"``); it must be written internationally.

    >>> e164("+49 (170) 123-4567")
    '+491701234567'
    >>> e164("0049 170 1234567")
    '+491701234567'
    """
    value = _PHONE_PUNCTUATION.sub("", phone.strip())
    if value.startswith("00"):
        value = "+" + value[2:]
    digits = value[1:]
    # E.164: at most 15 digits, and no country code starts with 0.
    if not value.startswith("+") or not digits.isdigit() or not 8 <= len(digits) <= 15 or digits[0] == "0":
        raise ValueError(
            "recipient phone is not an international number (expected '+' or '00', the country code, then "
            "8 to 15 digits in all)"
        )
    return value
