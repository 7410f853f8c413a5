"""The partitions of a SQLite store file (issue 14): the schema migration that brings them, the number of
partitions a file has and how a new file gets its number, and what :meth:`SQLiteStore.check` verifies of them.

The number of partitions is the number of rows of ``journal_heads`` (one per partition, 0 .. n - 1), written
once, in the transaction that creates the file's tables: a session's partition is a hash of its id modulo that
number, so changing it would move sessions between partitions under their owners. A file made before partitions
has one, and its journal is partition 0's, positions unchanged.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Final

from ..errors import StoreError

__all__ = ["V5", "count_partitions", "partition_problems", "seed_partitions", "set_new_partitions", "want_partitions"]

#: Migration 5 (the script; ``_schema`` runs it and seeds partition 0). Rebuilds the journal by partition and
#: seq, the position in the partition (a rowid table: the events are blobs of any size), keeping every event as
#: partition 0's at its seq.
V5: Final = """
-- A partition's head: the highest position handed out in it, advanced in the transaction that appends. Writers
-- take the file's write lock at BEGIN IMMEDIATE, one at a time, so positions are handed out in commit order and a
-- reader that saw position n has seen every position below it.
CREATE TABLE journal_heads (
    part INTEGER PRIMARY KEY CHECK (part >= 0),
    last_position INTEGER NOT NULL DEFAULT 0 CHECK (last_position >= 0)
);
ALTER TABLE journal RENAME TO journal_before_partitions;
-- seq is the event's position in its partition. part defaults to 0 and a row inserted without a seq (by hand:
-- the store always gives one) gets its partition's next, so SQL written for the journal before partitions
-- still means the same on a store of one partition.
CREATE TABLE journal (
    part INTEGER NOT NULL DEFAULT 0 CHECK (part >= 0),
    seq INTEGER CHECK (seq >= 1),
    data BLOB NOT NULL,
    accepted_at REAL NOT NULL,
    PRIMARY KEY (part, seq)
);
CREATE TRIGGER journal_next_seq AFTER INSERT ON journal WHEN NEW.seq IS NULL BEGIN
    UPDATE journal_heads SET last_position = last_position + 1 WHERE part = NEW.part;
    UPDATE journal SET seq = (SELECT last_position FROM journal_heads WHERE part = NEW.part) WHERE rowid = NEW.rowid;
END;
INSERT INTO journal (part, seq, data, accepted_at)
    SELECT 0, seq, data, accepted_at FROM journal_before_partitions ORDER BY seq;
DROP TABLE journal_before_partitions;
-- A partition's lease on this host's clock; epoch rises each time another owner takes it (or it is taken again
-- after a release) and fences the writes of the previous owner. owner is NULL when released or never taken.
CREATE TABLE partition_leases (
    part INTEGER PRIMARY KEY CHECK (part >= 0),
    owner TEXT,
    epoch INTEGER NOT NULL DEFAULT 0,
    expires_at REAL NOT NULL
);
-- A checkpoint per partition, written by the owner holding the lease at epoch, never moved back.
CREATE TABLE partition_checkpoints (
    part INTEGER PRIMARY KEY CHECK (part >= 0),
    position INTEGER NOT NULL CHECK (position >= 0),
    state BLOB NOT NULL,
    saved_at REAL NOT NULL,
    epoch INTEGER NOT NULL
);
-- The partition whose owner claimed an entry (claim_fenced); NULL under the pipeline lease.
ALTER TABLE ledger ADD COLUMN part INTEGER;
CREATE INDEX ledger_sending_by_part ON ledger (part) WHERE state = 'sending';
"""


def seed_partitions(conn: sqlite3.Connection, head: int) -> None:
    """Partition 0's head (``head``: the journal's last seq before migration 5) and its free lease."""
    conn.execute("INSERT INTO journal_heads (part, last_position) VALUES (0, ?)", (head,))
    conn.execute("INSERT INTO partition_leases (part, owner, epoch, expires_at) VALUES (0, NULL, 0, ?)", (-math.inf,))


def set_new_partitions(conn: sqlite3.Connection, partitions: int) -> None:
    """Give a file whose tables this transaction created (with partition 0 only) its ``partitions``."""
    rest = [(part,) for part in range(1, partitions)]
    conn.executemany("INSERT INTO journal_heads (part, last_position) VALUES (?, 0)", rest)
    conn.executemany(
        "INSERT INTO partition_leases (part, owner, epoch, expires_at) VALUES (?, NULL, 0, ?)",
        [(part, -math.inf) for (part,) in rest],
    )


def count_partitions(conn: sqlite3.Connection) -> int:
    """How many partitions the (migrated) file open on ``conn`` has."""
    return int(conn.execute("SELECT count(*) FROM journal_heads").fetchone()[0])


def want_partitions(conn: sqlite3.Connection, path: str, partitions: int) -> None:
    """:class:`StoreError` with the fix unless the file open on ``conn`` has ``partitions``."""
    existing = count_partitions(conn)
    if existing != partitions:
        raise StoreError(
            f"{path} has {existing} journal partitions, and their number is fixed when a store is created (a "
            f"session's partition is a hash of its id modulo that number); got partitions={partitions}: pass "
            f"partitions={existing} (or None, to take the file's number), or create a new store file for {partitions}"
        )


def partition_problems(conn: sqlite3.Connection) -> list[str]:
    """Problems in the partition tables of the file open on ``conn``, one sentence each (see ``problems``)."""
    found: list[str] = []
    partitions = count_partitions(conn)
    for table in ("journal_heads", "partition_leases"):  # names of ours
        count, low, high = conn.execute(f"SELECT count(*), min(part), max(part) FROM {table}").fetchone()
        if (count, low, high) != (partitions, 0, partitions - 1):
            found.append(f"{table} has rows for {count} partitions ({low}..{high}); expected 0..{partitions - 1}")
    # Every partition's journal is one run of positions, trimmed from the front only, never past its head.
    rows = conn.execute(
        "SELECT j.part, count(*), min(j.seq), max(j.seq), h.last_position FROM journal j "
        "LEFT JOIN journal_heads h ON h.part = j.part GROUP BY j.part ORDER BY j.part"
    ).fetchall()
    for part, count, low, high, head in rows:
        if head is None or high > head:
            found.append(f"journal partition {part} holds position {high}, past its head {head}")
        if count != high - low + 1:
            found.append(f"journal partition {part} has a gap: {count} events between positions {low} and {high}")
    return found
