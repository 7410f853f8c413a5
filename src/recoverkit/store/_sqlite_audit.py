"""The audit log of a :class:`~recoverkit.store.SQLiteStore` (:class:`~recoverkit.store.AuditStore`), in the
``audit`` and ``audit_chain`` tables (:mod:`._sqlite_audit_schema`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection

import msgspec

from ._audit import AuditAnchor, AuditEntry, AuditRecord, check_audit_query, check_before, check_entry, sealed
from ._sqlite_audit_schema import anchor_of, audit_file_problems, audit_record, head_of, select_audit
from ._sqlite_file import SQLiteFile

__all__ = ["SQLiteAudit"]


class SQLiteAudit(SQLiteFile):
    """Appends run in the file's write transaction (``BEGIN IMMEDIATE``), which every process takes one at a
    time: the head read there is the last record committed, so the chain stays linear across processes."""

    def append_audit(self, entry: AuditEntry) -> AuditRecord:
        entry = check_entry("append_audit", entry)
        if entry.subject_kind == "customer":
            entry = msgspec.structs.replace(entry, subject=self._hash(entry.subject))

        def run(conn: sqlite3.Connection) -> AuditRecord:
            head = head_of(conn)
            record = sealed(head.seq + 1, entry, head.hash)
            conn.execute(
                "INSERT INTO audit (seq, at, actor, action, subject_kind, subject, outcome, detail, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.seq, record.at, record.actor, record.action, record.subject_kind, record.subject,
                 record.outcome, record.detail, record.prev_hash, record.hash),
            )  # fmt: skip
            conn.execute("UPDATE audit_chain SET head_seq = ?, head_hash = ? WHERE id = 1", (record.seq, record.hash))
            return record

        return self._write("append_audit", run)

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
        check_audit_query(after_seq, limit)
        query, args = select_audit(
            "?", since=since, until=until, actions=actions, subject=subject, after_seq=after_seq, limit=limit
        )
        return self._read("audit_records", lambda conn: [audit_record(row) for row in conn.execute(query, args)])

    def audit_anchor(self) -> AuditAnchor:
        return self._read("audit_anchor", anchor_of)

    def audit_head(self) -> AuditAnchor:
        return self._read("audit_head", head_of)

    def audit_problems(self) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            conn.execute("BEGIN")  # one snapshot: the head and the records of the same commit
            try:
                return audit_file_problems(conn)
            finally:
                conn.execute("COMMIT")

        return self._read("audit_problems", run)

    def trim_audit(self, *, before: float) -> int:
        check_before(before)

        def run(conn: sqlite3.Connection) -> int:
            # The first record kept: trimming stops there, so that the log stays one run of seqs.
            row = conn.execute("SELECT min(seq) FROM audit WHERE at >= ?", (before,)).fetchone()
            stop = row[0] if row[0] is not None else head_of(conn).seq + 1
            last = conn.execute(
                "SELECT seq, hash FROM audit WHERE seq < ? ORDER BY seq DESC LIMIT 1", (stop,)
            ).fetchone()
            if last is None:
                return 0
            # The anchor moves first: the trigger lets only records at or below it go.
            conn.execute("UPDATE audit_chain SET anchor_seq = ?, anchor_hash = ? WHERE id = 1", (last[0], last[1]))
            return conn.execute("DELETE FROM audit WHERE seq <= ?", (last[0],)).rowcount

        return self._write("trim_audit", run)
