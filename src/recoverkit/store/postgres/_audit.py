"""The audit log of a :class:`~recoverkit.store.postgres.PostgresStore` (:class:`~recoverkit.store.AuditStore`),
in the tables of :mod:`._audit_schema`.

Appends from every host stay one linear chain: an append locks the one ``audit_chain`` row (``FOR UPDATE``)
before it reads the head, so appends run one at a time, each after the last one committed.
"""

from __future__ import annotations

from collections.abc import Collection

import msgspec

from .._audit import (
    AuditAnchor,
    AuditEntry,
    AuditRecord,
    check_audit_query,
    check_before,
    check_entry,
    sealed,
)
from .._sqlite_audit_schema import AUDIT_COLUMNS, audit_record, select_audit
from ._audit_schema import audit_schema_problems, chain_of
from ._conninfo import Conn
from ._ledger import Ledger

__all__ = ["AuditPart"]


class AuditPart(Ledger):
    """The store's :class:`~recoverkit.store.AuditStore` methods."""

    def append_audit(self, entry: AuditEntry) -> AuditRecord:
        entry = check_entry("append_audit", entry)
        if entry.subject_kind == "customer":
            entry = msgspec.structs.replace(entry, subject=self._hash(entry.subject))

        def run(conn: Conn) -> AuditRecord:
            _, head = chain_of(conn, lock=True)
            record = sealed(head.seq + 1, entry, head.hash)
            conn.execute(
                f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (record.seq, record.at, record.actor, record.action, record.subject_kind, record.subject,
                 record.outcome, record.detail, record.prev_hash, record.hash),
            )  # fmt: skip
            conn.execute("UPDATE audit_chain SET head_seq = %s, head_hash = %s WHERE id = 1", (record.seq, record.hash))
            return record

        result: AuditRecord = self._write("append_audit", run)
        return result

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
            "%s", since=since, until=until, actions=actions, subject=subject, after_seq=after_seq, limit=limit
        )
        result: list[AuditRecord] = self._read(
            "audit_records", lambda conn: [audit_record(row) for row in conn.execute(query, args).fetchall()]
        )
        return result

    def audit_anchor(self) -> AuditAnchor:
        result: AuditAnchor = self._read("audit_anchor", lambda conn: chain_of(conn)[0])
        return result

    def audit_head(self) -> AuditAnchor:
        result: AuditAnchor = self._read("audit_head", lambda conn: chain_of(conn)[1])
        return result

    def audit_problems(self) -> list[str]:
        result: list[str] = self._read("audit_problems", audit_schema_problems)
        return result

    def trim_audit(self, *, before: float) -> int:
        check_before(before)

        def run(conn: Conn) -> int:
            _, head = chain_of(conn, lock=True)  # one trim or append at a time
            row = conn.execute("SELECT min(seq) FROM audit WHERE at >= %s", (before,)).fetchone()
            stop = row[0] if row is not None and row[0] is not None else head.seq + 1
            last = conn.execute(
                "SELECT seq, hash FROM audit WHERE seq < %s ORDER BY seq DESC LIMIT 1", (stop,)
            ).fetchone()
            if last is None:
                return 0
            conn.execute("UPDATE audit_chain SET anchor_seq = %s, anchor_hash = %s WHERE id = 1", (last[0], last[1]))
            return conn.execute("DELETE FROM audit WHERE seq <= %s", (last[0],)).rowcount

        result: int = self._write("trim_audit", run)
        return result
