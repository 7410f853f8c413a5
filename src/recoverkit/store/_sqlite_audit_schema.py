"""The audit log in a SQLite store file: its schema migration, and the queries that the store
(:mod:`._sqlite_audit`) and the file checks (:func:`recoverkit.store._schema.problems`, ``recoverkit db check``)
share. It imports nothing of the store's machinery, so that the schema module can use it."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator
from typing import Any, Final

from ._audit import GENESIS, AuditAnchor, AuditRecord, chain_problems

__all__ = [
    "AUDIT_COLUMNS",
    "V_AUDIT",
    "anchor_of",
    "audit_file_problems",
    "audit_record",
    "chain_of",
    "head_of",
    "select_audit",
]

#: The migration that adds the audit log (see recoverkit.store._audit).
V_AUDIT: Final = f"""
-- The audit log: one row per operator action, numbered in commit order (each append runs under the file's write
-- lock) and chained by hash. Never updated; deleted only from its start by trim_audit, which moves the anchor
-- first: the triggers refuse anything else.
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY CHECK (seq >= 1),
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_by_time ON audit (at);
-- One row: the anchor (the last record trimmed) and the head (the last record appended).
CREATE TABLE audit_chain (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    anchor_seq INTEGER NOT NULL,
    anchor_hash TEXT NOT NULL,
    head_seq INTEGER NOT NULL,
    head_hash TEXT NOT NULL
);
INSERT INTO audit_chain (id, anchor_seq, anchor_hash, head_seq, head_hash) VALUES (1, 0, '{GENESIS}', 0, '{GENESIS}');
CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: its records are never changed');
END;
CREATE TRIGGER audit_trim_only BEFORE DELETE ON audit
    WHEN OLD.seq > (SELECT anchor_seq FROM audit_chain WHERE id = 1) BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: only trim_audit deletes its oldest records');
END;
"""

AUDIT_COLUMNS: Final = "seq, at, actor, action, subject_kind, subject, outcome, detail, prev_hash, hash"


def audit_record(row: tuple[Any, ...]) -> AuditRecord:
    seq, at, actor, action, kind, subject, outcome, detail, prev_hash, hashed = row
    return AuditRecord(
        seq=int(seq), at=float(at), actor=actor, action=action, subject_kind=kind, subject=subject, outcome=outcome,
        detail=detail, prev_hash=prev_hash, hash=hashed,
    )  # fmt: skip


def select_audit(
    mark: str,
    *,
    since: float | None,
    until: float | None,
    actions: Collection[str] | None,
    subject: str | None,
    after_seq: int,
    limit: int | None,
) -> tuple[str, list[Any]]:
    """The query of ``audit_records`` and its arguments, with ``mark`` the driver's placeholder (``?``, ``%s``)."""
    where: list[str] = [f"seq > {mark}"]
    args: list[Any] = [after_seq]
    if since is not None:
        where.append(f"at >= {mark}")
        args.append(since)
    if until is not None:
        where.append(f"at < {mark}")
        args.append(until)
    if actions is not None:
        wanted = sorted(set(actions))
        if not wanted:
            where.append("0 = 1")
        else:
            where.append(f"action IN ({', '.join([mark] * len(wanted))})")
            args += wanted
    if subject is not None:
        where.append(f"subject = {mark}")
        args.append(subject)
    query = f"SELECT {AUDIT_COLUMNS} FROM audit WHERE {' AND '.join(where)} ORDER BY seq"
    if limit is not None:
        query += f" LIMIT {int(limit):d}"
    return query, args


def anchor_of(conn: sqlite3.Connection) -> AuditAnchor:
    return chain_of(conn)[0]


def head_of(conn: sqlite3.Connection) -> AuditAnchor:
    return chain_of(conn)[1]


def chain_of(conn: sqlite3.Connection) -> tuple[AuditAnchor, AuditAnchor]:
    """The anchor and the head, read together (one row, one statement)."""
    row = conn.execute("SELECT anchor_seq, anchor_hash, head_seq, head_hash FROM audit_chain WHERE id = 1").fetchone()
    if row is None:
        raise sqlite3.DatabaseError("table audit_chain has lost its one row (the audit log's anchor and head)")
    return AuditAnchor(seq=int(row[0]), hash=row[1]), AuditAnchor(seq=int(row[2]), hash=row[3])


def _records(conn: sqlite3.Connection, through: int) -> Iterator[AuditRecord]:
    for row in conn.execute(f"SELECT {AUDIT_COLUMNS} FROM audit WHERE seq <= ? ORDER BY seq", (through,)):
        yield audit_record(row)


def audit_file_problems(conn: sqlite3.Connection) -> list[str]:
    """Where the audit log of the file open on ``conn`` breaks its chain (see :func:`chain_problems`).

    The records are read up to the head read first, so that a record appended meanwhile (when ``conn`` reads
    outside a transaction) is not taken for one the head does not know.
    """
    if conn.execute("SELECT count(*) FROM audit_chain").fetchone()[0] != 1:
        return ["table audit_chain does not have its one row; expected the audit log's anchor and head"]
    anchor, head = chain_of(conn)
    return chain_problems(anchor, _records(conn, head.seq), head)
