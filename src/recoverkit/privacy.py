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

On disk. A :class:`~recoverkit.store.SQLiteStore` zeroes what it deletes and, after the checkpoint that
follows a forget, copies the WAL into the main file and truncates it (``SQLiteStore.scrub``), so no old page
image holds the customer. The dead-letter file is rewritten without their letters, under the lock its writers
share (:mod:`recoverkit.deadletters`).

Reporting. :func:`erase` is what ``recoverkit forget`` runs: it counts what the engine and the store hold about
the customer, carries out the forget, checks that nothing is left, and returns an :class:`Erasure` that says
exactly what went where; :func:`finish_erasure` adds the dead-letter file and the WAL.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import msgspec

from .errors import InvalidEvent
from .events import contact_key
from .items import Forget, Message

if TYPE_CHECKING:
    from .cart import CartSnapshot
    from .store._privacy import ContactExport

__all__ = ["FORGET_RECORD", "Erasure", "Forget", "decode_record", "encode_forget", "erase", "finish_erasure"]

#: How a forget record starts in the journal (see the module docstring for why it cannot be forged).
FORGET_RECORD: Final = b"\x00recoverkit:forget\x00"


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


# -- carrying out a request and saying what was erased (recoverkit forget) -----------------------------------------


class Erasure(msgspec.Struct, frozen=True, kw_only=True):
    """What a forget erased, place by place (:func:`erase`, :func:`finish_erasure`).

    ``carried_out`` is ``False`` when another process holds the pipeline lease: the request was journaled and
    that engine carries it out (then only ``dead_letter_file`` was done here). Deleted: ``carts`` (with their
    sessions' events), ``contact_details`` (addresses and consent), ``pending_messages``, ``store_dead_letters``,
    ``purchases``; kept under a keyed hash instead of the customer's keys: ``ledger_entries``, ``codes``,
    ``facts``. ``dead_letter_file`` is ``None`` when no file was given. ``wal_truncated`` is ``None`` when not
    checked (no SQLite file, or not carried out here); ``False`` with ``wal_frames_left`` when other processes
    still read an older snapshot. ``left`` names anything still found after the forget (empty when complete).
    """

    carried_out: bool
    carts: int = 0
    contact_details: int = 0
    pending_messages: int = 0
    store_dead_letters: int = 0
    purchases: int = 0
    ledger_entries: int = 0
    codes: int = 0
    facts: int = 0
    contact_keys: list[str] = []
    dead_letter_file: int | None = None
    wal_truncated: bool | None = None
    wal_frames_left: int = 0
    left: list[str] = []

    @property
    def complete(self) -> bool:
        """Carried out here, nothing left, and the WAL (if checked) truncated."""
        return self.carried_out and not self.left and self.wal_truncated is not False

    def lines(self, dead_letter_path: str | None = None) -> list[str]:
        """The report as lines of text for a terminal, without the customer's id or data."""
        if not self.carried_out:
            out = ["requested: a running engine holds this store; it erases the customer when it reads the request "
                   "(within seconds), and scrubs the file after its next checkpoint"]  # fmt: skip
        else:
            out = [
                "erased from the engine and the store:",
                f"  carts (with their events in the journal): {self.carts}",
                f"  contact details and consent: {self.contact_details}",
                f"  pending messages: {self.pending_messages}",
                f"  dead letters in the store: {self.store_dead_letters}",
                f"  purchase records: {self.purchases}",
                f"  kept under a keyed hash (never the customer's keys): ledger entries {self.ledger_entries}, "
                f"codes {self.codes}, facts {self.facts}",
            ]
        if self.dead_letter_file is None:
            out.append("  dead-letter file: none given (--dead-letters FILE), not searched")
        else:
            out.append(f"  dead letters in {dead_letter_path or 'the dead-letter file'}: {self.dead_letter_file}")
        if self.wal_truncated is True:
            out.append("  WAL: checkpointed into the main file and truncated; free pages zeroed")
        elif self.wal_truncated is False:
            out.append(f"  WAL: NOT truncated: {self.wal_frames_left} frames held by other processes reading the file; "
                       "run the command again once they are idle")  # fmt: skip
        out += [f"  LEFT: {what}" for what in self.left]
        return out


# What erase() needs of the engine, typed by shape rather than by class: the engine imports this module (for
# the journal's forget record), and naming Engine here, even only for the type checker, made the two import
# each other. Properties, so that the engine's plain attributes and read-only properties both qualify.
class _Carts(Protocol):
    def carts_of(self, customer_id: str) -> list[CartSnapshot]: ...


class _Contacts(Protocol):
    def contact_of(self, contact_key: str) -> dict[str, Any] | None: ...


class _Queued(Protocol):
    def pending(self) -> list[Message]: ...

    def waiting(self) -> list[Message]: ...


class _Exports(Protocol):
    def export(self, contact_key: str) -> ContactExport: ...


class _Erasing(Protocol):
    """A :class:`~recoverkit.Engine`, as far as :func:`erase` uses it."""

    @property
    def is_owner(self) -> bool: ...

    @property
    def sessionize(self) -> _Carts: ...

    @property
    def route(self) -> _Contacts: ...

    @property
    def dispatch(self) -> _Queued: ...

    @property
    def store(self) -> _Exports: ...

    async def forget(self, customer_id: str) -> bool: ...


async def erase(engine: _Erasing, customer_id: str) -> Erasure:
    """Carry out ``engine.forget(customer_id)`` and count what went; see :class:`Erasure`.

    In the process holding the pipeline lease, the counts are taken from the engine's state and the store just
    before, and everything is looked for again just after (what is found is listed in ``left``). Elsewhere the
    request is only journaled: ``carried_out=False``.
    """
    if not engine.is_owner:
        await engine.forget(customer_id)
        return Erasure(carried_out=False, contact_keys=[customer_id])
    before = _holding(engine, customer_id)
    if not await engine.forget(customer_id):
        return Erasure(carried_out=False, contact_keys=[customer_id])  # lost the lease meanwhile
    after = _holding(engine, customer_id, keys=before["contact_keys"])
    left = [f"{name}: {count}" for name, count in after.items() if name != "contact_keys" and count]
    fields = {name: count for name, count in before.items() if name != "contact_keys"}
    return Erasure(carried_out=True, contact_keys=before["contact_keys"], left=left, **fields)


def _holding(engine: _Erasing, customer_id: str, keys: list[str] | None = None) -> dict[str, Any]:
    """How much the engine and its store hold under ``customer_id`` (and its sessions' contact keys)."""
    carts = engine.sessionize.carts_of(customer_id)
    if keys is None:
        keys = [customer_id] + [contact_key(cart.session_id) for cart in carts]
    return {"contact_keys": keys, "carts": len(carts), **_held_by_stages(engine, keys), **_held_in_store(engine, keys)}


def _held_by_stages(engine: _Erasing, keys: list[str]) -> dict[str, int]:
    """What the pipeline's stages hold in memory under ``keys``: contact details, messages to send."""
    return {
        "contact_details": sum(engine.route.contact_of(key) is not None for key in keys),
        # pending() lists the messages not yet due; those due and waiting for a delivering engine (a maintenance
        # engine delivers nothing) are held just the same, and erased just the same.
        "pending_messages": sum(
            m.recipient.contact_key in keys for m in (*engine.dispatch.pending(), *engine.dispatch.waiting())
        ),
    }


def _held_in_store(engine: _Erasing, keys: list[str]) -> dict[str, int]:
    """What the engine's store holds under ``keys``, as its export shows it."""
    exports = [engine.store.export(key) for key in keys]
    return {
        "store_dead_letters": sum(len(e.dead_letters) for e in exports),
        "purchases": sum(e.purchased_at is not None for e in exports),
        # Entries already pseudonymised carry the hash, not the key: only those still under the key count.
        "ledger_entries": sum(entry.contact_key == e.contact_key for e in exports for entry in e.ledger),
        "codes": sum(code.contact_key == e.contact_key for e in exports for code in e.codes),
        "facts": sum(
            sum(a.contact_key == e.contact_key for a in e.assignments)
            + sum(c.contact_key == e.contact_key for c in e.conversions)
            + sum(o.contact_key == e.contact_key for o in e.outcomes)
            for e in exports
        ),
    }


def finish_erasure(erasure: Erasure, *, store: str | Path | None, dead_letters: str | Path | None) -> Erasure:
    """Erase the contact keys of ``erasure`` from the dead-letter file ``dead_letters`` (if given), and, when
    the forget was carried out here on the SQLite file ``store``, scrub that file; return the completed report.

    Run it once the engine that carried out the forget is closed. The dead-letter file is rewritten under the
    lock its writers share, so it is safe beside a running engine too.
    """
    from .deadletters import DeadLetters

    changes: dict[str, Any] = {}
    if dead_letters is not None:
        changes["dead_letter_file"] = DeadLetters(dead_letters).forget(set(erasure.contact_keys))
    if erasure.carried_out and store is not None:
        from .store import SQLiteStore

        with SQLiteStore(store) as opened:
            scrub = opened.scrub()
        changes.update(wal_truncated=scrub.wal_truncated, wal_frames_left=scrub.wal_frames_left)
    return msgspec.structs.replace(erasure, **changes)
