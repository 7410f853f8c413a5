"""Erasure and access requests: ``forget(customer)`` and ``export(customer)``.

A customer's personal data sits in several places: the journal (their events), the pipeline's state (their
carts in sessionize, their addresses and consent in route, their pending messages in dispatch), and the
store's tables (ledger, dead letters, purchases). :meth:`recoverkit.Engine.forget` reaches all of them in order:

1. A forget **record** is appended to the journal like an event, by whichever process received the request.
   Journal records written by recoverkit itself start with a NUL byte, which no accepted event can (an event
   is journaled only after it decoded as JSON), so a shop's visitors cannot forge one through ``track()``.
2. The pipeline owner reads it in journal order and passes a :class:`Forget` item through every stage, each
   erasing what it holds: ingest drops the customer's events still in its reorder buffer, sessionize their
   sessions (and notes which sessions and carts those were), route their contact records, dispatch their
   pending messages; dispatch then has the store :meth:`~recoverkit.store.Store.forget` each of their contact
   keys (dead letters deleted, ledger rows pseudonymised, a keyed hash kept for suppression).
3. The next checkpoint no longer holds any of it, and trims the journal through the record: the customer's
   earlier events go with it. recoverkit checkpoints at once after a forget.

What is kept: the suppression hash (so the customer is never written to again) and pseudonymous ledger rows
(so no message is sent twice). Events the customer sends *after* the request are new data.
"""

from __future__ import annotations

from typing import Final

import msgspec

from .errors import InvalidEvent

__all__ = ["FORGET_RECORD", "Forget", "decode_record", "encode_forget"]

#: How a forget record starts in the journal (see the module docstring for why it cannot be forged).
FORGET_RECORD: Final = b"\x00recoverkit:forget\x00"


class Forget(msgspec.Struct, kw_only=True):
    """An erasure request for ``customer_id`` travelling through the pipeline.

    ``contact_keys`` and ``cart_keys`` are filled in by sessionize (every anonymous session stitched to the
    customer has its own contact key ``session:<id>``) so that later stages erase those too.
    """

    customer_id: str
    at: float
    contact_keys: list[str] = msgspec.field(default_factory=list)
    cart_keys: list[str] = msgspec.field(default_factory=list)


class _Record(msgspec.Struct, frozen=True):
    customer_id: str
    at: float


def encode_forget(customer_id: str, at: float) -> bytes:
    """The journal record of a request to forget ``customer_id`` (a non-empty string)."""
    if not isinstance(customer_id, str) or not customer_id.strip():
        raise ValueError(f"forget: expected a non-empty customer id, got {customer_id!r}")
    return FORGET_RECORD + msgspec.json.encode(_Record(customer_id, at))


def decode_record(data: bytes) -> Forget:
    """The :class:`Forget` of a journal record written by :func:`encode_forget`; ``InvalidEvent`` otherwise."""
    if not data.startswith(FORGET_RECORD):
        raise InvalidEvent("not a recoverkit journal record", reason="malformed_json")
    try:
        record = msgspec.json.decode(data[len(FORGET_RECORD) :], type=_Record)
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"damaged forget record: {exc}", reason="malformed_json") from exc
    return Forget(customer_id=record.customer_id, at=record.at, contact_keys=[record.customer_id])
