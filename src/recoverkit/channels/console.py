"""A channel for development: one line per message saying what would have been sent, addresses masked.

By default each message is a record of the ``recoverkit.channels.console`` logger (event ``recovery_message``,
level INFO, the fields as record attributes; see :mod:`recoverkit._log`), so it shows wherever the host's
logging configuration shows recoverkit's records and nowhere otherwise: recoverkit adds no handler and never
prints to standard output by itself. To see the lines without configuring logging, pass ``stream=``
(``sys.stderr``, an ``io.StringIO``) to get plain ``key=value`` lines there instead.

Each line carries the message key, channel, template, cart value, score and reason (and variant and offer when
set). Email addresses, phone numbers and customer ids are masked (``j***@e***.com``, ``***42``, ``cu***``):
a console is not a place for personal data. A discount code is a bearer credential, so the log names only the
offer's kind (``discount``); a ``stream``, which the developer chose to look at, shows the code itself.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TextIO

from .._log import get_logger
from ..money import format_minor
from .base import Message

__all__ = ["ConsoleChannel"]

_log = get_logger("recoverkit.channels.console")

# Values matching this are printed bare; anything else (spaces, quotes, newlines, '=') is JSON-quoted, which
# keeps a shop-supplied template name or reason from breaking the one-line-per-message guarantee.
_BARE = re.compile(r"[\w.,:;/@*+\-]+")


class ConsoleChannel:
    """Writes one line per message to the log (default) or to ``stream``; never fails a send.

    ``stream`` is written and flushed once per message and never closed: it belongs to the caller. The
    channel holds no resources and has no ``aclose()``.
    """

    def __init__(self, *, stream: TextIO | None = None) -> None:
        self._stream = stream

    async def send(self, message: Message) -> None:
        """Log or print ``message`` as one line (see the module docstring for the fields)."""
        if self._stream is None:
            if _log.is_enabled_for(logging.INFO):  # no masking or formatting when INFO is off
                _log.info("recovery_message", **_fields(message, code=False))
            return
        fields = _fields(message, code=True)
        self._stream.write(" ".join(["recovery_message", *(f"{k}={_render(v)}" for k, v in fields.items())]))
        self._stream.write("\n")
        self._stream.flush()


def _fields(message: Message, *, code: bool) -> dict[str, str | float | int]:
    recipient = message.recipient
    if recipient.email:
        to = _mask_email(recipient.email)
    elif recipient.phone:
        to = _mask_phone(recipient.phone)
    else:
        to = "-"
    fields: dict[str, str | float | int] = {
        "key": message.key,
        "channel": message.channel,
        "template": message.template,
        "value": format_minor(message.cart.value, message.cart.currency),
        "score": round(message.score, 3),
        "reason": message.reason,
        "to": to,
        # contact_key is the customer id when one is known, so it is masked like one.
        "contact": _mask_id(recipient.contact_key),
    }
    if message.variant is not None:
        fields["variant"] = message.variant
    if message.offer is not None:
        fields["offer"] = (message.offer.code if code else None) or message.offer.kind
    return fields


def _render(value: str | float | int) -> str:
    text = str(value)
    return text if _BARE.fullmatch(text) else json.dumps(text)


def _mask_email(email: str) -> str:
    """Keep the first letter of the mailbox and of the domain, and the top-level domain.

    >>> _mask_email("jane.doe@example.com")
    'j***@e***.com'
    >>> _mask_email("not-an-address")
    '***'
    """
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        return "***"
    name, dot, tld = domain.rpartition(".")
    if not dot or not name:
        return f"{local[0]}***@***"
    return f"{local[0]}***@{name[0]}***.{tld}"


def _mask_phone(phone: str) -> str:
    """Keep the last two digits of a number long enough that two digits do not identify it.

    >>> _mask_phone("+49 170 1234567")
    '***67'
    >>> _mask_phone("112")
    '***'
    """
    digits = [c for c in phone if c.isdigit()]
    return "***" + "".join(digits[-2:]) if len(digits) >= 6 else "***"


def _mask_id(value: str) -> str:
    """Keep the first two characters of an id long enough that they say little about it.

    >>> _mask_id("cust_8812")
    'cu***'
    >>> _mask_id("42")
    '***'
    """
    return value[:2] + "***" if len(value) > 4 else "***"
