"""The audit log in PostgreSQL: its schema migration and the check ``PostgresStore.check()`` runs (the store's
part is :mod:`._audit`; this module imports nothing of the store's machinery, so that ``_schema`` can use it).

Appends from every host stay one linear chain: an append locks the one ``audit_chain`` row (``FOR UPDATE``)
before it reads the head, so appends run one at a time, each after the last one committed. Triggers refuse an
``UPDATE`` of a record, and a ``DELETE`` of one the anchor has not passed (only :meth:`trim_audit` moves it).
"""

from __future__ import annotations

from typing import Final

from ...errors import StoreError
from .._audit import GENESIS, AuditAnchor, chain_problems
from .._sqlite_audit_schema import AUDIT_COLUMNS, audit_record
from ._conninfo import Conn

__all__ = ["AUDIT_MIGRATION", "audit_schema_problems", "chain_of"]

#: The migration that adds the audit log (appended to recoverkit.store.postgres._schema.MIGRATIONS).
AUDIT_MIGRATION: Final = f"""
    CREATE TABLE audit (
        seq bigint PRIMARY KEY CHECK (seq >= 1), at double precision NOT NULL, actor text NOT NULL,
        action text NOT NULL, subject_kind text NOT NULL, subject text NOT NULL, outcome text NOT NULL,
        detail text NOT NULL, prev_hash text NOT NULL, hash text NOT NULL
    );
    CREATE INDEX audit_at ON audit (at);
    CREATE TABLE audit_chain (
        id integer PRIMARY KEY CHECK (id = 1), anchor_seq bigint NOT NULL, anchor_hash text NOT NULL,
        head_seq bigint NOT NULL, head_hash text NOT NULL
    );
    INSERT INTO audit_chain VALUES (1, 0, '{GENESIS}', 0, '{GENESIS}');
    CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            RAISE EXCEPTION 'the audit log is append-only: its records are never changed';
        END IF;
        IF OLD.seq > (SELECT anchor_seq FROM audit_chain WHERE id = 1) THEN
            RAISE EXCEPTION 'the audit log is append-only: only trim_audit deletes its oldest records';
        END IF;
        RETURN OLD;
    END $$;
    CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
        FOR EACH ROW EXECUTE FUNCTION audit_append_only();
"""


def chain_of(conn: Conn, lock: bool = False) -> tuple[AuditAnchor, AuditAnchor]:
    row = conn.execute(
        "SELECT anchor_seq, anchor_hash, head_seq, head_hash FROM audit_chain WHERE id = 1"
        + (" FOR UPDATE" if lock else "")
    ).fetchone()
    if row is None:
        raise StoreError("table audit_chain has lost its one row (the audit log's anchor and head)")
    return AuditAnchor(seq=int(row[0]), hash=row[1]), AuditAnchor(seq=int(row[2]), hash=row[3])


def audit_schema_problems(conn: Conn) -> list[str]:
    """Where the audit log breaks its chain; the records are read up to the head read first (see
    :func:`recoverkit.store._sqlite_audit_schema.audit_file_problems`)."""
    (count,) = conn.execute("SELECT count(*) FROM audit_chain").fetchone() or (0,)
    if count != 1:
        return ["table audit_chain does not have its one row; expected the audit log's anchor and head"]
    anchor, head = chain_of(conn)
    cursor = conn.execute(f"SELECT {AUDIT_COLUMNS} FROM audit WHERE seq <= %s ORDER BY seq", (head.seq,))
    return chain_problems(anchor, (audit_record(row) for row in cursor), head)
