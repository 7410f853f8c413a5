"""The console's lists: carts and their messages (searchable), dead letters, and the ledger's unknown outcomes.

Every row is built on the server with personal data already masked unless the operator may see it
(:data:`~recoverkit.console.VIEW_PERSONAL_DATA`): the unmasked value never reaches the page. Rows name carts,
contacts and messages by their keys (the shop's cart and customer ids), which the operator searches with and
acts on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

import msgspec

from .._log import get_logger
from .._redact import redact
from ..channels.base import Message
from ._masking import mask_email, mask_phone, mask_text
from ._permissions import VIEW_PERSONAL_DATA, Operator

if TYPE_CHECKING:
    from ..store.base import LedgerEntry
    from ._access import EngineAccess

__all__ = ["CartRow", "LetterRow", "MessageRow", "dead_letter_rows", "search_carts", "unknown_rows"]

#: Carts listed at most on one page (the newest first).
MAX_CARTS: Final = 100
#: How far back the carts' facts are read, in seconds (the analytics period of the overview).
LOOKBACK: Final = 30 * 86_400.0
#: The longest error text shown.
ERROR_WIDTH: Final = 300

_log = get_logger("recoverkit.console")


class MessageRow(msgspec.Struct, frozen=True, kw_only=True):
    """One message of a cart: ``state`` is the ledger's (``scheduled`` for one not due yet, ``dead letter``
    for one waiting for a resend); ``email``/``phone`` masked unless the operator may see them."""

    key: str
    channel: str
    state: str
    at: float | None
    email: str | None = None
    phone: str | None = None
    error: str = ""


class CartRow(msgspec.Struct, frozen=True, kw_only=True):
    """A cart the engine acted on: its customer (contact key), what it was worth, its flow and group (treatment
    or holdout), whether it was bought, and its messages."""

    cart_key: str
    contact_key: str
    at: float
    value: int | None = None
    currency: str | None = None
    flow: str = ""
    group: str = ""
    bought: bool = False
    messages: list[MessageRow] = []


class LetterRow(msgspec.Struct, frozen=True, kw_only=True):
    """A dead letter waiting for a resend."""

    key: str
    channel: str
    contact_key: str
    attempts: int
    at: float
    permanent: bool
    error: str
    email: str | None = None
    phone: str | None = None


def _addresses(message: Message, operator: Operator) -> tuple[str | None, str | None]:
    email, phone = message.recipient.email, message.recipient.phone
    if operator.can(VIEW_PERSONAL_DATA):
        return email, phone
    return (mask_email(email) if email else None), (mask_phone(phone) if phone else None)


def _error(text: str | None, operator: Operator) -> str:
    """A stored error, shown: credentials out always (already redacted when stored; again in case), addresses
    masked unless the operator may see them, cut to :data:`ERROR_WIDTH`."""
    if not text:
        return ""
    shown = redact(text)
    return (shown if operator.can(VIEW_PERSONAL_DATA) else mask_text(shown))[:ERROR_WIDTH]


def dead_letter_messages(access: EngineAccess) -> list[tuple[Message, LetterRow]]:
    """The store's dead letters with their messages decoded (a letter this version cannot read is skipped and
    logged by key)."""
    found = []
    for record in access.store.dead_letters():
        try:
            message = msgspec.json.decode(record.data, type=Message)
        except msgspec.DecodeError:
            _log.error("console_dead_letter_unreadable", key=record.key)
            continue
        row = LetterRow(
            key=record.key, channel=message.channel, contact_key=record.contact_key or message.recipient.contact_key,
            attempts=record.attempts, at=record.at, permanent=record.permanent, error=record.error,
        )  # fmt: skip
        found.append((message, row))
    return found


def dead_letter_rows(access: EngineAccess, operator: Operator) -> list[LetterRow]:
    """The dead letters, newest first, as ``operator`` may see them."""
    rows = []
    for message, row in dead_letter_messages(access):
        email, phone = _addresses(message, operator)
        rows.append(msgspec.structs.replace(row, email=email, phone=phone, error=_error(row.error, operator)))
    return sorted(rows, key=lambda r: r.at, reverse=True)


def unknown_rows(access: EngineAccess, operator: Operator) -> list[LedgerEntry]:
    """The ledger entries a person must settle: ``unknown`` (did the send reach the provider?) and ``failed``
    (between two attempts), oldest first, their errors as ``operator`` may see them."""
    entries = access.store.ledger(["unknown", "failed"])
    return [msgspec.structs.replace(e, error=_error(e.error, operator)) for e in entries]


def search_carts(access: EngineAccess, operator: Operator, query: str = "") -> list[CartRow]:
    """The carts whose key, customer or message key contains ``query`` (case-insensitive; an operator who may
    see personal data also finds carts by e-mail address or phone number), newest first, at most
    :data:`MAX_CARTS`. An empty query lists the newest carts."""
    store = access.store
    since = access.clock.now() - LOOKBACK
    carts: dict[str, CartRow] = {}
    for a in store.assignments(since=since):
        carts[a.cart_key] = CartRow(
            cart_key=a.cart_key, contact_key=a.contact_key, at=a.assigned_at, value=a.value, currency=a.currency,
            flow=a.flow, group=a.group,
        )  # fmt: skip
    bought = {c.cart_key for c in store.conversions(since=since)}
    messages: dict[str, list[MessageRow]] = {}
    searchable: dict[str, list[str]] = {}
    for entry in store.ledger():
        _add(carts, messages, searchable, entry.cart_key, entry.contact_key, entry.claimed_at,
             MessageRow(key=entry.key, channel=entry.channel, state=entry.state, at=entry.claimed_at,
                        error=_error(entry.error, operator)))  # fmt: skip
    for message, state, at in _messages_with_addresses(access):
        email, phone = _addresses(message, operator)
        row = MessageRow(key=message.key, channel=message.channel, state=state, at=at, email=email, phone=phone)
        _add(carts, messages, searchable, message.cart.cart_key, message.recipient.contact_key, at, row)
        if operator.can(VIEW_PERSONAL_DATA):
            searchable[message.cart.cart_key] += [a for a in (message.recipient.email, message.recipient.phone) if a]
    needle = query.strip().lower()
    found = []
    for key, cart in carts.items():
        rows = _merged(messages.get(key, []))
        words = [key, cart.contact_key, *(m.key for m in rows), *searchable.get(key, [])]
        if needle and not any(needle in w.lower() for w in words):
            continue
        found.append(msgspec.structs.replace(cart, bought=key in bought, messages=rows))
    found.sort(key=lambda c: c.at, reverse=True)
    return found[:MAX_CARTS]


def _add(
    carts: dict[str, CartRow], messages: dict[str, list[MessageRow]], searchable: dict[str, list[str]],
    cart_key: str, contact_key: str, at: float, row: MessageRow,
) -> None:  # fmt: skip
    if cart_key not in carts:
        carts[cart_key] = CartRow(cart_key=cart_key, contact_key=contact_key, at=at)
    messages.setdefault(cart_key, []).append(row)
    searchable.setdefault(cart_key, [])


def _messages_with_addresses(access: EngineAccess) -> Iterable[tuple[Message, str, float]]:
    """The messages that hold a recipient's address: those scheduled (in the process running the pipeline)
    and the dead letters."""
    try:
        pending = access.pending_messages() if access.statistics().owner else []
    except Exception as exc:  # the store's rows are still worth showing
        _log.error("console_pending_failed", error=type(exc).__name__)
        pending = []
    for message in pending:
        yield message, "scheduled", message.due_at
    for message, row in dead_letter_messages(access):
        yield message, "dead letter", row.at


def _merged(rows: list[MessageRow]) -> list[MessageRow]:
    """One row per message key: the ledger's state, with the address a scheduled message or letter holds."""
    by_key: dict[str, MessageRow] = {}
    for row in rows:
        seen = by_key.get(row.key)
        if seen is None:
            by_key[row.key] = row
        elif row.email or row.phone:
            state = "dead letter" if row.state == "dead letter" else seen.state
            by_key[row.key] = msgspec.structs.replace(seen, email=row.email, phone=row.phone, state=state)
    return sorted(by_key.values(), key=lambda r: r.key)
