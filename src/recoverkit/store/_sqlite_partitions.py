"""The part of a :class:`~recoverkit.store.SQLiteStore` that makes it a :class:`~recoverkit.store.PartitionedStore`:
the journal by partition, partition leases with their epoch on this host's clock, fenced checkpoints and claims,
and the members.

How each promise is kept. Every write is one ``BEGIN IMMEDIATE`` transaction (a group commit puts several in one,
each in its savepoint), which takes the file's write lock first, so the writers of every process run one at a
time:

- **Positions without gaps.** An append advances its partitions' heads (``journal_heads``) and inserts its rows in
  one transaction; the next writer starts after it committed, so positions are handed out in commit order.
- **Leases on one clock.** The processes sharing a file run on one host, so the lease's expiry is judged by
  ``time.time()``, read inside the transaction.
- **Fenced writes.** A checkpoint, a claim or marking a dead owner's sends checks owner, epoch and expiry in the
  transaction that writes: a take-over is another write transaction, so it runs wholly before or after, and
  after it every write carrying the old epoch is refused.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Sequence
from typing import Final

from ._checkpoint import Checkpoint, check_position
from ._journal import JournalEntry
from ._ledger import Claim, ClaimRequest, check_claim
from ._partition_args import check_partition, check_taker, check_window, check_writer
from ._partitioned import CheckpointAnswer, PartitionLease, PartitionStatus, partition_of
from ._sqlite_pipeline import SQLiteJournal, SQLiteLedger, admit, head_of, read_rows

__all__ = ["MEMBER", "SQLitePartitions"]

#: The prefix of the named lease that says a member (an engine process) is alive, as in the other stores.
MEMBER: Final = "member:"
WRITER: Final = "writer:"

#: The fence: ``owner`` holds the partition at ``epoch``, unexpired at the time given.
_FENCE: Final = "SELECT 1 FROM partition_leases WHERE part = ? AND owner = ? AND epoch = ? AND expires_at > ?"


class SQLitePartitions(SQLiteJournal, SQLiteLedger):
    """:class:`~recoverkit.store.PartitionedStore` in the ``journal``, ``journal_heads``, ``partition_leases`` and
    ``partition_checkpoints`` tables; see the module docstring."""

    def partition_of(self, session_id: str) -> int:
        """The partition of ``session_id``'s events in this store (:func:`~recoverkit.store.partition_of`)."""
        return partition_of(session_id, self._partitions)

    def _check(self, method: str, partition: int) -> None:
        check_partition(method, partition, self._partitions)

    # -- the journal --------------------------------------------------------------------------------------------

    def append_keyed(self, events: Sequence[tuple[str, bytes]], *, now: float) -> list[tuple[int, int]]:
        if not events:
            return []
        return self._append("append_keyed", [(self.partition_of(session), data) for session, data in events], now)

    def append_to(self, events: Sequence[tuple[int, bytes]], *, now: float) -> list[tuple[int, int]]:
        for partition, _ in events:
            self._check("append_to", partition)
        return self._append("append_to", events, now) if events else []

    def read_partition(self, partition: int, after: int, limit: int) -> list[JournalEntry]:
        self._check("read_partition", partition)
        check_window("read_partition", after, limit)
        return self._read("read_partition", lambda conn: read_rows(conn, partition, after, limit))

    def partition_head(self, partition: int) -> int:
        self._check("partition_head", partition)
        return self._read("partition_head", lambda conn: head_of(conn, partition))

    def partition_heads(self) -> list[int]:
        return self._read(
            "partition_heads",
            lambda conn: [int(h) for (h,) in conn.execute("SELECT last_position FROM journal_heads ORDER BY part")],
        )

    def trim_partition(self, partition: int, through: int) -> int:
        """Delete the events of ``partition`` through ``through``; after a :meth:`forget`, also :meth:`scrub`."""
        self._check("trim_partition", partition)
        return self._trim("trim_partition", partition, through)

    # -- leases -------------------------------------------------------------------------------------------------

    def take_partition(self, partition: int, owner: str, *, ttl: float) -> PartitionLease | None:
        self._check("take_partition", partition)
        check_taker("take_partition", owner, ttl)

        def run(conn: sqlite3.Connection) -> PartitionLease | None:
            now = time.time()
            held, epoch, expires_at = conn.execute(
                "SELECT owner, epoch, expires_at FROM partition_leases WHERE part = ?", (partition,)
            ).fetchone()
            if held is not None and held != owner and expires_at > now:
                return None
            if held != owner:  # passed from another owner, or taken again after a release
                epoch += 1
            conn.execute(
                "UPDATE partition_leases SET owner = ?, epoch = ?, expires_at = ? WHERE part = ?",
                (owner, epoch, now + ttl, partition),
            )
            return PartitionLease(partition=partition, owner=owner, epoch=int(epoch), expires_at=now + ttl)

        return self._write("take_partition", run)

    def release_partition(self, partition: int, owner: str) -> bool:
        self._check("release_partition", partition)
        return self._write(
            "release_partition",
            lambda conn: (
                conn.execute(
                    "UPDATE partition_leases SET owner = NULL, expires_at = ? WHERE part = ? AND owner = ?",
                    (-math.inf, partition, owner),
                ).rowcount
                > 0
            ),
        )

    def partition_leases(self) -> list[PartitionLease]:
        def run(conn: sqlite3.Connection) -> list[PartitionLease]:
            rows = conn.execute("SELECT part, owner, epoch, expires_at FROM partition_leases ORDER BY part").fetchall()
            now = time.time()
            return [
                PartitionLease(partition=p, owner=o if x > now else None, epoch=int(e), expires_at=float(x))
                for p, o, e, x in rows
            ]

        return self._read("partition_leases", run)

    def partition_status(self) -> list[PartitionStatus]:
        def run(conn: sqlite3.Connection) -> list[PartitionStatus]:
            rows = conn.execute(
                "SELECT h.part, h.last_position, coalesce(c.position, 0), l.owner, l.expires_at, l.epoch "
                "FROM journal_heads h JOIN partition_leases l ON l.part = h.part "
                "LEFT JOIN partition_checkpoints c ON c.part = h.part ORDER BY h.part"
            ).fetchall()
            now = time.time()
            return [
                PartitionStatus(
                    partition=p, head=h, checkpoint=c, lag=max(h - c, 0), owner=o if x > now else None, epoch=e
                )
                for p, h, c, o, x, e in rows
            ]

        return self._read("partition_status", run)

    def heartbeat(self, owner: str, *, ttl: float, now: float) -> list[str]:
        check_taker("heartbeat", owner, ttl)

        def run(conn: sqlite3.Connection) -> list[str]:
            conn.execute(
                "INSERT OR REPLACE INTO leases (name, owner, expires_at) VALUES (?, ?, ?)",
                (MEMBER + owner, owner, now + ttl),
            )
            rows = conn.execute(
                "SELECT owner FROM leases WHERE substr(name, 1, ?) = ? AND expires_at > ?", (len(MEMBER), MEMBER, now)
            ).fetchall()
            return sorted(str(o) for (o,) in rows)

        return self._write("heartbeat", run)

    def leave(self, owner: str) -> None:
        self._write("leave", lambda conn: conn.execute("DELETE FROM leases WHERE name = ?", (MEMBER + owner,)))

    # -- writers' marks (kept as named leases "writer:<name>", the mark in the expiry) ---------------------------

    def mark_writer(self, writer: str, mark: float) -> None:
        check_writer(writer, mark)
        self._write(
            "mark_writer",
            lambda conn: conn.execute(
                "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)",
                (WRITER + writer, writer, mark),
            ),
        )

    def writer_marks(self) -> dict[str, float]:
        def run(conn: sqlite3.Connection) -> dict[str, float]:
            rows = conn.execute(
                "SELECT owner, expires_at FROM leases WHERE substr(name, 1, ?) = ?", (len(WRITER), WRITER)
            ).fetchall()
            return {str(owner): float(mark) for owner, mark in rows}

        return self._read("writer_marks", run)

    def drop_writer(self, writer: str) -> None:
        self._write("drop_writer", lambda conn: conn.execute("DELETE FROM leases WHERE name = ?", (WRITER + writer,)))

    # -- fenced writes ------------------------------------------------------------------------------------------

    def save_partition_checkpoint(
        self, partition: int, *, owner: str, epoch: int, position: int, state: bytes, now: float
    ) -> CheckpointAnswer:
        self._check("save_partition_checkpoint", partition)
        check_position(position)

        def run(conn: sqlite3.Connection) -> CheckpointAnswer:
            if conn.execute(_FENCE, (partition, owner, epoch, time.time())).fetchone() is None:
                return "fenced"
            saved = conn.execute(
                "INSERT INTO partition_checkpoints (part, position, state, saved_at, epoch) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (part) DO UPDATE SET position = excluded.position, state = excluded.state, "
                "saved_at = excluded.saved_at, epoch = excluded.epoch "
                "WHERE excluded.position >= partition_checkpoints.position",
                (partition, position, bytes(state), now, epoch),
            ).rowcount
            return "saved" if saved else "behind"

        return self._write("save_partition_checkpoint", run)

    def load_partition_checkpoint(self, partition: int) -> Checkpoint | None:
        self._check("load_partition_checkpoint", partition)

        def run(conn: sqlite3.Connection) -> Checkpoint | None:
            row = conn.execute(
                "SELECT position, state, saved_at FROM partition_checkpoints WHERE part = ?", (partition,)
            ).fetchone()
            return None if row is None else Checkpoint(position=row[0], state=row[1], saved_at=row[2])

        return self._read("load_partition_checkpoint", run)

    def claim_fenced(self, partition: int, epoch: int, requests: Sequence[ClaimRequest]) -> list[Claim]:
        self._check("claim_fenced", partition)
        for r in requests:
            check_claim(r.key, r.owner)
        hashes = [self._hash(r.contact_key) if r.contact_key else "" for r in requests]

        def run(conn: sqlite3.Connection) -> list[Claim]:
            answers: list[Claim] = []
            for r, hashed in zip(requests, hashes, strict=True):
                if conn.execute(_FENCE, (partition, r.owner, epoch, time.time())).fetchone() is None:
                    answers.append("not_owner")
                else:
                    answers.append(admit(conn, r, hashed, partition))
            return answers

        return self._write("claim_fenced", run) if requests else []

    def mark_unknown_in(self, partition: int, *, owner: str, epoch: int) -> int | None:
        self._check("mark_unknown_in", partition)

        def run(conn: sqlite3.Connection) -> int | None:
            if conn.execute(_FENCE, (partition, owner, epoch, time.time())).fetchone() is None:
                return None
            return conn.execute(
                "UPDATE ledger SET state = 'unknown' WHERE state = 'sending' AND part = ? AND owner <> ?",
                (partition, owner),
            ).rowcount

        return self._write("mark_unknown_in", run)
