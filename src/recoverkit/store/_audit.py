"""The audit trail: who did what to which customer, cart or message, when, and how it ended (:class:`AuditStore`).

Every operator action (from the CLI today, from a console later: :mod:`recoverkit.audit` is the front both call)
is appended as one :class:`AuditRecord`. The log is **append-only**: no store has a method that changes or
deletes a record, except :meth:`AuditStore.trim_audit`, the retention pass, which deletes the oldest records
only (a prefix of the log) and keeps the hash of the last one it deleted as the log's **anchor**.

It is **hash-chained**: each record's ``hash`` is the SHA-256 of its own fields and of ``prev_hash``, the hash of
the record before it (or of the anchor), so a record changed, deleted from the middle or moved shows in
:func:`chain_problems` (``recoverkit db check``), naming the record where the chain breaks. A store also keeps the
log's **head** (the last seq and hash), so records deleted from the end show too. The chain is linear: records
are numbered 1, 2, 3 ... in the order their appends committed, whatever the number of processes and hosts
appending at once (each append takes the head in its transaction).

What the chain does not do: anyone who can write the store's tables can also recompute every hash after a
change; the chain shows a careless or partial edit, a lost row and a restore of an old backup, not a careful
forger with write access. Export the log (``recoverkit audit --jsonl``) somewhere the store's users cannot
write, and compare the last hash, to catch that too.

Personal data: a record names the customer it was about by the store's keyed hash of the customer id
(:meth:`~recoverkit.store.PrivacyStore.hash_contact`), never the id itself, so the log survives the customer's
erasure without holding them; ``detail`` has credentials taken out (:func:`recoverkit._redact.redact`).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Collection, Iterable
from typing import Final, Literal, Protocol, get_args, runtime_checkable

import msgspec

from .._redact import redact

__all__ = [
    "AUDIT_OUTCOMES",
    "GENESIS",
    "SUBJECT_KINDS",
    "AuditAnchor",
    "AuditEntry",
    "AuditOutcome",
    "AuditRecord",
    "AuditStore",
    "SubjectKind",
    "chain_problems",
    "check_audit_query",
    "check_before",
    "check_entry",
    "record_hash",
    "sealed",
]

#: What an action's outcome was: done, failed (an error stopped it), or refused (not allowed, nothing done).
AuditOutcome = Literal["ok", "failed", "refused"]
AUDIT_OUTCOMES: Final = frozenset(get_args(AuditOutcome))
#: What an action was about. ``customer``: stored as the store's keyed hash of the customer id.
SubjectKind = Literal["customer", "cart", "message", "config", "store"]
SUBJECT_KINDS: Final = frozenset(get_args(SubjectKind))
#: The ``prev_hash`` of the first record of a log that was never trimmed.
GENESIS: Final = "0" * 64

_ACTION: Final = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_ACTOR_LENGTH: Final = 200
_SUBJECT_LENGTH: Final = 500
#: detail is a short note (a resolution, a fingerprint, an error's first line), not a place for payloads.
_DETAIL_LENGTH: Final = 500
#: chain_problems stops listing after this many: a log rewritten from one point on breaks at every record.
_MAX_PROBLEMS: Final = 20


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One operator action, as a caller hands it to :meth:`AuditStore.append_audit`.

    ``actor``: who (``"cli:alice"``, ``"console:42"``, ``"engine:web-1"``); ``action``: what, lower case
    (``forget``, ``export``, ``resend``, ``resolve``, ``config.changed``); ``subject_kind`` and ``subject``: on
    which customer (its id: the store keeps its keyed hash), cart, message key, configuration or store;
    ``outcome``; ``detail``: a short note without personal data; ``at``: when, in epoch seconds on the caller's
    clock (the engine's, or the CLI's wall clock).
    """

    actor: str
    action: str
    subject_kind: SubjectKind
    subject: str
    outcome: AuditOutcome
    at: float
    detail: str = ""


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An :class:`AuditEntry` as the log keeps it: numbered (``seq``, from 1, without gaps) and chained
    (``prev_hash``, ``hash``: hex SHA-256, see :func:`record_hash`). For a customer, ``subject`` is the store's
    keyed hash of the customer id."""

    seq: int
    at: float
    actor: str
    action: str
    subject_kind: SubjectKind
    subject: str
    outcome: AuditOutcome
    detail: str
    prev_hash: str
    hash: str


class AuditAnchor(msgspec.Struct, frozen=True, kw_only=True):
    """A point of the chain: ``seq`` and ``hash`` of a record. The anchor of a log is the last record
    :meth:`AuditStore.trim_audit` deleted (``seq`` 0 and :data:`GENESIS` when none was); its head, the last one
    appended."""

    seq: int
    hash: str


@runtime_checkable
class AuditStore(Protocol):
    """The audit log of a store: appended to, read, verified and trimmed from its start; never changed.

    Guarantees: :meth:`append_audit` is one transaction that takes the log's head, so appends from any number of
    threads, processes and hosts are numbered in commit order, each chained to the one before. Reads see one
    snapshot. ``at`` comes from the caller; the store never reads a clock, and does not require times to rise
    (two hosts' clocks differ): the order of the log is ``seq``.
    """

    def append_audit(self, entry: AuditEntry) -> AuditRecord:
        """Append ``entry`` at the end of the log and return it as kept (its ``seq`` and hashes).

        A customer's id is replaced by its keyed hash; ``detail`` has credentials taken out. A bad field raises
        :class:`ValueError` naming it, its value and what was expected (:func:`check_entry`).
        """
        ...

    def audit_records(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        actions: Collection[str] | None = None,
        subject: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """The records in ``seq`` order after ``after_seq``: those at or after ``since`` and before ``until``,
        whose action is one of ``actions`` and whose stored ``subject`` is ``subject`` (a customer's: pass
        :meth:`~recoverkit.store.PrivacyStore.hash_contact` of its id); at most ``limit`` (``None``: all)."""
        ...

    def audit_anchor(self) -> AuditAnchor:
        """The log's anchor: the last record trimmed (``AuditAnchor(seq=0, hash=GENESIS)`` if none was)."""
        ...

    def audit_head(self) -> AuditAnchor:
        """The last record appended, as the store recorded it when appending (the anchor when the log is empty)."""
        ...

    def audit_problems(self) -> list[str]:
        """Where the chain is broken (:func:`chain_problems` from the anchor to the head), one sentence each;
        empty when every record is as it was appended. Part of the store's ``check()``."""
        ...

    def trim_audit(self, *, before: float) -> int:
        """Retention: delete, in one transaction, the oldest records, as long as they are dated before
        ``before`` (stopping at the first that is not, so the log keeps one run of seqs); move the anchor to
        the last one deleted; return how many went. The chain still verifies afterwards."""
        ...


def check_entry(method: str, entry: AuditEntry) -> AuditEntry:
    """``entry`` with credentials taken out of its ``detail``; :class:`ValueError` for a bad field."""
    fields: tuple[tuple[str, str, int], ...] = (
        ("actor", entry.actor, _ACTOR_LENGTH),
        ("subject", entry.subject, _SUBJECT_LENGTH),
    )
    for name, value, longest in fields:
        if not isinstance(value, str) or not value.strip() or len(value) > longest:
            raise ValueError(f"{method}: expected `{name}` to be non-empty text of at most {longest} characters, "
                             f"got {value!r}")  # fmt: skip
    if not isinstance(entry.action, str) or not _ACTION.fullmatch(entry.action):
        raise ValueError(
            f"{method}: expected `action` to be a lower-case name such as 'forget' or 'config.changed' (letters, "
            f"digits, '_', '.', '-'; at most 64), got {entry.action!r}"
        )
    if entry.subject_kind not in SUBJECT_KINDS:
        raise ValueError(
            f"{method}: expected `subject_kind` to be one of {sorted(SUBJECT_KINDS)}, got {entry.subject_kind!r}"
        )
    if entry.outcome not in AUDIT_OUTCOMES:
        raise ValueError(f"{method}: expected `outcome` to be one of {sorted(AUDIT_OUTCOMES)}, got {entry.outcome!r}")
    if not isinstance(entry.at, (int, float)) or isinstance(entry.at, bool) or not math.isfinite(entry.at):
        raise ValueError(f"{method}: expected `at` to be a time in epoch seconds, got {entry.at!r}")
    if not isinstance(entry.detail, str) or len(entry.detail) > _DETAIL_LENGTH:
        raise ValueError(f"{method}: expected `detail` to be text of at most {_DETAIL_LENGTH} characters, "
                         f"got {str(entry.detail)[:80]!r}...")  # fmt: skip
    return msgspec.structs.replace(entry, at=float(entry.at), detail=redact(entry.detail))


def check_before(before: float) -> None:
    if isinstance(before, bool) or not isinstance(before, (int, float)) or math.isnan(before):
        raise ValueError(f"trim_audit: expected `before` to be a time in epoch seconds, got {before!r}")


def check_audit_query(after_seq: int, limit: int | None) -> None:
    if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
        raise ValueError(f"audit_records: expected `after_seq` to be an integer >= 0, got {after_seq!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"audit_records: expected `limit` to be an integer >= 0 or None, got {limit!r}")


_encoder: Final = msgspec.json.Encoder()


def record_hash(seq: int, entry: AuditEntry | AuditRecord, prev_hash: str) -> str:
    """The hex SHA-256 a record's ``hash`` is: of the JSON array of its seq, fields and ``prev_hash``.

    A JSON array, not a concatenation: no field's text can be moved into its neighbour with the same hash.
    """
    document = [
        seq, entry.at, entry.actor, entry.action, entry.subject_kind, entry.subject, entry.outcome, entry.detail,
        prev_hash,
    ]  # fmt: skip
    return hashlib.sha256(_encoder.encode(document)).hexdigest()


def sealed(seq: int, entry: AuditEntry, prev_hash: str) -> AuditRecord:
    """``entry`` (checked, its subject as stored) as record ``seq`` after the record hashed ``prev_hash``."""
    return AuditRecord(
        seq=seq, at=entry.at, actor=entry.actor, action=entry.action, subject_kind=entry.subject_kind,
        subject=entry.subject, outcome=entry.outcome, detail=entry.detail, prev_hash=prev_hash,
        hash=record_hash(seq, entry, prev_hash),
    )  # fmt: skip


def chain_problems(anchor: AuditAnchor, records: Iterable[AuditRecord], head: AuditAnchor) -> list[str]:
    """Where the log ``records`` (in seq order, as stored) breaks the chain from ``anchor`` to ``head``.

    One sentence per problem, naming the record (its seq) and what was expected: a seq out of the run (a record
    deleted or moved), a ``prev_hash`` that is not the hash of the record before, a ``hash`` that does not match
    the record's content (changed after it was written), or a last record other than the head (records deleted
    from the end). At most 20 are listed.
    """
    found: list[str] = []
    expected_seq, previous = anchor.seq + 1, anchor.hash
    last = anchor
    for record in records:
        if len(found) >= _MAX_PROBLEMS:
            found.append(f"audit log: more problems after seq {record.seq} not listed")
            return found
        if record.seq != expected_seq:
            found.append(
                f"audit log: record seq {record.seq} follows seq {expected_seq - 1}; expected seq {expected_seq} "
                "(a record was deleted or moved)"
            )
        if record.prev_hash != previous:
            found.append(
                f"audit log: record seq {record.seq} has prev_hash {record.prev_hash[:16]}..., which is not the hash "
                f"of the record before it ({previous[:16]}...); expected the chain unbroken"
            )
        if record_hash(record.seq, record, record.prev_hash) != record.hash:
            found.append(
                f"audit log: record seq {record.seq} does not match its hash (changed after it was written); "
                "expected its content as appended"
            )
        expected_seq, previous = record.seq + 1, record.hash
        last = AuditAnchor(seq=record.seq, hash=record.hash)
    if last != head:
        found.append(
            f"audit log: the last record is seq {last.seq}, but the head records seq {head.seq} "
            f"({head.hash[:16]}...); expected them to be the same (records were deleted from the end)"
        )
    return found
