"""Taking bearer credentials out of text that came from outside, before it is stored or logged.

A provider that refuses a message often quotes it back ("invalid body: 'Your code SHOP-7KQ2-MX9P-R4TW, your
cart: https://shop.example/cart/restore?t=...'"), and dispatch keeps the error in the ledger's ``error``
column and in the dead letter. Whoever reads those could redeem the code or open the cart, so
:func:`redact` replaces credentials with :data:`REDACTED` first, in two ways:

- **The message's own credentials** (:func:`credentials_of`: its discount code and the token of its restore
  link) wherever they appear, however a provider spelled them: a code in any case, with or without its
  dashes or spaces, a token URL-encoded, and either one cut short. Any run of at least :data:`CODE_WINDOW`
  symbols of the code (40 bits) or :data:`TOKEN_WINDOW` characters of the token is taken out, extended as far
  as it matches, so a quote a provider truncated mid-code goes too.
- **Credential-shaped text** whatever message it belongs to (:data:`_PATTERNS`): the value of a ``t=``
  parameter, a signed token (``<payload>.<signature>``, also a JWT), a code in recoverkit's format,
  ``Bearer``/``Basic`` credentials, and the values of fields named like secrets (``api_key``, ``token``,
  ``password``, ``coupon``, or ``code`` when the value has a letter: numeric error codes stay readable).

What stays is the rest of the provider's answer: its status, its error code and its words, which is what a
person needs to understand the failure. Redaction cannot know a shop's own secret formats beyond these; an
adapter quoting such a secret should leave it out of its exceptions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from .channels.base import Message

__all__ = ["CODE_WINDOW", "REDACTED", "TOKEN_WINDOW", "credentials_of", "redact"]

#: What a credential is replaced with.
REDACTED: Final = "[redacted]"
#: The shortest run of a code's symbols (separators ignored) that is taken out: 8 symbols, 40 bits; shorter
#: runs turn up in ordinary text by chance.
CODE_WINDOW: Final = 8
#: The shortest run of a restore token's characters that is taken out (72 bits of base64).
TOKEN_WINDOW: Final = 12

_TOKEN_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
# recoverkit's code alphabet (no 0/O, no 1/I), in groups of four after an optional prefix.
_CODE_SYMBOL: Final = "[2-9A-HJ-NP-Z]"
_PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # A restore link's token (or any t= parameter), also URL-encoded: the parameter name stays.
    (re.compile(r"((?:[?&;]|%3[Ff]|%26)t(?:=|%3[Dd]))[A-Za-z0-9_.~%-]+"), rf"\1{REDACTED}"),
    # A signed token: base64url payload, a dot, a base64url signature (restore tokens, JWTs' last two parts).
    (re.compile(r"[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{32,}"), REDACTED),
    # A code in recoverkit's format: SHOP-7KQ2-MX9P-R4TW, 7KQ2 MX9P R4TW.
    (
        re.compile(rf"\b(?:[A-Z0-9]{{1,8}}-)?{_CODE_SYMBOL}{{4}}(?:[- ]?{_CODE_SYMBOL}{{4}}){{2,7}}\b"),
        REDACTED,
    ),
    # Authorization header values.
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1\2{REDACTED}"),
    # Fields named like secrets, in JSON, forms or prose: "api_key": "...", token=..., password: ...
    (
        re.compile(
            r"(?i)(\b(?:api[_-]?key|access[_-]?token|auth[_-]?token|refresh[_-]?token|token|secret|password|passwd)"
            r"\b[\"']?\s*[:=]\s*[\"']?)[^\"'&\s,;}]+"
        ),
        rf"\1{REDACTED}",
    ),
    # Codes by field name, when the value has a letter: {"code": 21211} is a provider's error code, not a coupon.
    (
        re.compile(
            r"(?i)(\b(?:code|coupon|coupon[_-]?code|discount[_-]?code|promo[_-]?code|voucher)\b[\"']?\s*[:=]\s*[\"']?)"
            r"(?=[^\"'&\s,;}]*[A-Za-z])[^\"'&\s,;}]+"
        ),
        rf"\1{REDACTED}",
    ),
)


def credentials_of(message: Message) -> list[str]:
    """The bearer credentials ``message`` carries: its offer's code and its restore link's token, if any."""
    found: list[str] = []
    offer = message.offer
    if offer is not None and offer.code:
        found.append(offer.code)
    if message.restore_url:
        tokens = parse_qs(urlsplit(message.restore_url).query).get("t", [])
        found += [token for token in tokens if token]
        if not tokens:  # not a link of ours: take the whole URL as the credential
            found.append(message.restore_url)
    return found


def redact(text: str, credentials: Iterable[str] = ()) -> str:
    """``text`` with ``credentials`` and credential-shaped text replaced by :data:`REDACTED` (see the module).

    A credential with letters and digits only apart from ``-``, ``.``, ``_`` and spaces, and no lower case, is
    taken as a code (matched in any case, separators ignored); anything else as a token (matched exactly).

    >>> redact("HTTP 400: bad body 'use shop-7kq2-mx9p-r4tw now'", ["SHOP-7KQ2-MX9P-R4TW"])
    "HTTP 400: bad body 'use [redacted] now'"
    """
    spans: list[tuple[int, int]] = []
    for credential in credentials:
        if credential:
            spans += _occurrences(text, credential)
    if spans:
        text = _replace(text, spans)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _same(text: str) -> str:
    return text


def _is_code(credential: str) -> bool:
    return credential == credential.upper() and all(c.isalnum() or c in "-._ " for c in credential)


def _occurrences(text: str, credential: str) -> list[tuple[int, int]]:
    """Spans of ``text`` holding a run of ``credential`` at least a window long, each as long as it matches."""
    keep: Callable[[str], bool]
    fold: Callable[[str], str]
    if _is_code(credential):
        keep, fold, window = str.isalnum, str.upper, CODE_WINDOW
    else:
        keep, fold, window = _TOKEN_CHARS.__contains__, _same, TOKEN_WINDOW
    wanted = "".join(fold(c) for c in credential if keep(c))
    seen, where = _folded(text, keep, fold)
    window = min(window, len(wanted))
    if window == 0:
        return []
    return _spans(_marks(seen, wanted, window), where)


def _folded(text: str, keep: Callable[[str], bool], fold: Callable[[str], str]) -> tuple[str, list[int]]:
    """The text as the credential's characters only (a code's separators dropped), with where each came from.

    Folding may lengthen a character ("ß".upper() is "SS"): each folded character keeps its source's place.
    """
    where: list[int] = []
    folded: list[str] = []
    for i, c in enumerate(text):
        if keep(c):
            f = fold(c)
            folded.append(f)
            where += [i] * len(f)
    return "".join(folded), where


def _marks(seen: str, wanted: str, window: int) -> bytearray:
    """One byte per character of ``seen``, set where a run of ``wanted`` at least ``window`` long lies."""
    marked = bytearray(len(seen))
    for start in range(len(wanted) - window + 1):
        piece = wanted[start : start + window]
        at = seen.find(piece)
        while at >= 0:
            # Extend the match both ways as far as text and credential agree (a quote cut short, or longer).
            left, right = at, at + window
            c_left, c_right = start, start + window
            while left > 0 and c_left > 0 and seen[left - 1] == wanted[c_left - 1]:
                left, c_left = left - 1, c_left - 1
            while right < len(seen) and c_right < len(wanted) and seen[right] == wanted[c_right]:
                right, c_right = right + 1, c_right + 1
            marked[left:right] = b"\x01" * (right - left)
            at = seen.find(piece, at + 1)
    return marked


def _spans(marked: bytearray, where: list[int]) -> list[tuple[int, int]]:
    """The runs of ``marked`` as spans of the original text."""
    spans: list[tuple[int, int]] = []
    index = 0
    while index < len(marked):
        if marked[index]:
            end = index
            while end < len(marked) and marked[end]:
                end += 1
            spans.append((where[index], where[end - 1] + 1))
            index = end
        else:
            index += 1
    return spans


def _replace(text: str, spans: list[tuple[int, int]]) -> str:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out: list[str] = []
    last = 0
    for start, end in merged:
        out += [text[last:start], REDACTED]
        last = end
    out.append(text[last:])
    return "".join(out)
