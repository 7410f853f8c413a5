"""The parts of a :class:`~recoverkit.store.SQLiteStore` the pipeline runs on: journal, checkpoint, leases,
and the send ledger with its purchases."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any, Final

from ..errors import StoreError
from ._checkpoint import Checkpoint, check_position
from ._journal import JournalEntry, check_read_limit
from ._leases import PIPELINE_LEASE, LeaseTaken, check_lease
from ._ledger import (
    FINISHABLE,
    RESOLVABLE,
    Claim,
    ClaimByMany,
    ClaimRequest,
    FinishRequest,
    LedgerEntry,
    LedgerState,
    Outcome,
    Resolution,
    cannot_finish,
    cannot_resolve,
    check_claim,
    check_outcome,
    check_purchase,
    check_resolution,
    check_states,
    missing_entry,
    over_cap,
)
from ._sqlite_file import SQLiteFile

__all__ = [
    "LEDGER_COLUMNS", "SQLiteCheckpoint", "SQLiteJournal", "SQLiteLeases", "SQLiteLedger", "admit", "head_of",
    "ledger_entry", "read_rows",
]  # fmt: skip

LEDGER_COLUMNS: Final = (
    "key, cart_key, contact_key, channel, state, owner, started_at, claimed_at, finished_at, error"
)


class SQLiteJournal(SQLiteFile):
    """:class:`~recoverkit.store.JournalStore`: partition 0 of the ``journal`` table, on a store of one partition
    (its head in ``journal_heads``: positions are never reused)."""

    def append_events(self, events: Sequence[bytes], *, now: float) -> int:
        self._one_sequence("append_events")
        if not events:
            return self.last_seq()
        return self._append("append_events", [(0, data) for data in events], now)[-1][1]

    def read_events(self, after: int, limit: int) -> list[JournalEntry]:
        check_read_limit(after, limit)
        self._one_sequence("read_events")
        return self._read("read_events", lambda conn: read_rows(conn, 0, after, limit))

    def trim_events(self, through: int) -> int:
        """Delete the journal through ``through``; after a :meth:`forget`, also :meth:`scrub` the file."""
        self._one_sequence("trim_events")
        return self._trim("trim_events", 0, through)

    def last_seq(self) -> int:
        self._one_sequence("last_seq")
        return self._read("last_seq", lambda conn: head_of(conn, 0))

    def _append(self, method: str, events: Sequence[tuple[int, bytes]], now: float) -> list[tuple[int, int]]:
        """Append ``(partition, data)`` events in one transaction; each event's ``(partition, position)``, in order.

        Each partition's head is advanced in the transaction that inserts its rows, under the file's write lock
        (``BEGIN IMMEDIATE``), so positions are handed out in commit order with no gap, in every process.
        """
        counts = Counter(part for part, _ in events)

        def run(conn: sqlite3.Connection) -> list[tuple[int, int]]:
            following: dict[int, int] = {}  # partition -> the position its next event gets
            for part, count in sorted(counts.items()):
                ((head,),) = conn.execute(
                    "UPDATE journal_heads SET last_position = last_position + ? WHERE part = ? RETURNING last_position",
                    (count, part),
                ).fetchall()
                following[part] = int(head) - count + 1
            placed = []
            rows = []
            for part, data in events:
                placed.append((part, following[part]))
                rows.append((part, following[part], data, now))
                following[part] += 1
            conn.executemany("INSERT INTO journal (part, seq, data, accepted_at) VALUES (?, ?, ?, ?)", rows)
            return placed

        return self._write(method, run)

    def _trim(self, method: str, partition: int, through: int) -> int:
        trimmed = self._write(
            method,
            lambda conn: conn.execute("DELETE FROM journal WHERE part = ? AND seq <= ?", (partition, through)).rowcount,
        )
        if self._scrub_due:
            self._scrub_after_forget()
        return trimmed


class SQLiteCheckpoint(SQLiteFile):
    """:class:`~recoverkit.store.CheckpointStore` in the one-row ``checkpoint`` table, on a store of one partition
    (a store of several keeps a checkpoint per partition instead)."""

    def save_checkpoint(self, position: int, state: bytes, *, now: float) -> bool:
        check_position(position)
        self._one_sequence("save_checkpoint")

        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT INTO checkpoint (id, position, state, saved_at) VALUES (1, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET position = excluded.position, state = excluded.state, "
                "saved_at = excluded.saved_at WHERE excluded.position >= checkpoint.position",
                (position, state, now),
            )
            return cursor.rowcount > 0

        return self._write("save_checkpoint", run)

    def load_checkpoint(self) -> Checkpoint | None:
        self._one_sequence("load_checkpoint")

        def run(conn: sqlite3.Connection) -> Checkpoint | None:
            row = conn.execute("SELECT position, state, saved_at FROM checkpoint WHERE id = 1").fetchone()
            return None if row is None else Checkpoint(position=row[0], state=row[1], saved_at=row[2])

        return self._read("load_checkpoint", run)


class SQLiteLeases(SQLiteFile):
    """:class:`~recoverkit.store.LeaseStore` in the ``leases`` table."""

    def acquire_lease(self, name: str, owner: str, *, ttl: float, now: float) -> bool:
        return self.take_lease(name, owner, ttl=ttl, now=now) is not None

    def take_lease(self, name: str, owner: str, *, ttl: float, now: float) -> LeaseTaken | None:
        check_lease(name, owner, ttl)

        def run(conn: sqlite3.Connection) -> LeaseTaken | None:
            held = conn.execute("SELECT owner, expires_at FROM leases WHERE name = ?", (name,)).fetchone()
            if held is not None and held[0] != owner and held[1] > now:
                return None
            conn.execute(
                "INSERT OR REPLACE INTO leases (name, owner, expires_at) VALUES (?, ?, ?)", (name, owner, now + ttl)
            )
            return "renewed" if held is not None and held[0] == owner else "taken"

        return self._write("acquire_lease", run)

    def release_lease(self, name: str, owner: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

        self._write("release_lease", run)

    def lease_holder(self, name: str, *, now: float) -> str | None:
        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT owner FROM leases WHERE name = ? AND expires_at > ?", (name, now)).fetchone()
            return None if row is None else str(row[0])

        return self._read("lease_holder", run)


class SQLiteLedger(ClaimByMany, SQLiteFile):
    """:class:`~recoverkit.store.LedgerStore` in the ``ledger`` and ``purchases`` tables; a claim reads
    ``leases`` and ``suppression`` in its transaction too."""

    def record_purchase(self, *, cart_key: str | None, contact_key: str | None, at: float) -> None:
        check_purchase(cart_key, contact_key)
        rows = [(kind, key, at) for kind, key in (("cart", cart_key), ("contact", contact_key)) if key is not None]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO purchases (kind, key, at) VALUES (?, ?, ?) "
                "ON CONFLICT (kind, key) DO UPDATE SET at = max(at, excluded.at)",
                rows,
            )

        self._write("record_purchase", run)

    def claim_many(self, requests: Sequence[ClaimRequest]) -> list[Claim]:
        for r in requests:
            check_claim(r.key, r.owner)
        hashes = [self._hash(r.contact_key) if r.contact_key else "" for r in requests]

        def run(conn: sqlite3.Connection) -> list[Claim]:
            # One transaction, under the file's write lock: nobody can claim a key between the checks and the
            # insert, in this process or another.
            return [_claim(conn, r, hashed) for r, hashed in zip(requests, hashes, strict=True)]

        return self._write("claim", run) if requests else []

    def finish(self, key: str, outcome: Outcome, *, now: float, error: str | None = None) -> None:
        check_outcome(outcome)
        error_or_none = self.finish_many([FinishRequest(key=key, outcome=outcome, now=now, error=error)])[0]
        if error_or_none is not None:
            raise error_or_none

    def finish_many(self, requests: Sequence[FinishRequest]) -> list[StoreError | None]:
        for r in requests:
            check_outcome(r.outcome)

        def run(conn: sqlite3.Connection) -> list[StoreError | None]:
            answers: list[StoreError | None] = []
            for r in requests:
                try:
                    state = _ledger_state(conn, r.key)
                except StoreError as exc:  # no entry: refused like the rest, the others still recorded
                    answers.append(exc)
                    continue
                if state not in FINISHABLE:
                    answers.append(cannot_finish(r.key, state))
                    continue
                conn.execute(
                    "UPDATE ledger SET state = ?, finished_at = ?, error = ? WHERE key = ?",
                    (r.outcome, r.now, r.error, r.key),
                )
                answers.append(None)
            return answers

        return self._write("finish", run) if requests else []

    def ledger(self, states: Collection[LedgerState] | None = None) -> list[LedgerEntry]:
        check_states(states)
        wanted = None if states is None else sorted(set(states))

        def run(conn: sqlite3.Connection) -> list[LedgerEntry]:
            if wanted is None:
                rows = conn.execute(f"SELECT {LEDGER_COLUMNS} FROM ledger ORDER BY rowid").fetchall()
            else:
                marks = ", ".join("?" * len(wanted))
                rows = conn.execute(
                    f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE state IN ({marks}) ORDER BY rowid", wanted
                ).fetchall()
            return [ledger_entry(row) for row in rows]

        return self._read("ledger", run)

    def mark_unknown(self, owner: str | None = None) -> int:
        def run(conn: sqlite3.Connection) -> int:
            if owner is None:
                return conn.execute("UPDATE ledger SET state = 'unknown' WHERE state = 'sending'").rowcount
            return conn.execute(
                "UPDATE ledger SET state = 'unknown' WHERE state = 'sending' AND owner = ?", (owner,)
            ).rowcount

        return self._write("mark_unknown", run)

    def resolve(self, key: str, outcome: Resolution) -> None:
        check_resolution(outcome)

        def run(conn: sqlite3.Connection) -> None:
            state = _ledger_state(conn, key)
            if state not in RESOLVABLE:
                raise cannot_resolve(key, state)
            if outcome == "retry":
                conn.execute("DELETE FROM ledger WHERE key = ?", (key,))
            else:
                conn.execute("UPDATE ledger SET state = 'sent' WHERE key = ?", (key,))

        self._write("resolve", run)


def _claim(conn: sqlite3.Connection, r: ClaimRequest, hashed: str) -> Claim:
    lease = conn.execute("SELECT owner, expires_at FROM leases WHERE name = ?", (PIPELINE_LEASE,)).fetchone()
    if lease is None or lease[0] != r.owner or lease[1] <= r.now:
        return "not_owner"
    return admit(conn, r, hashed, None)


def admit(conn: sqlite3.Connection, r: ClaimRequest, hashed: str, partition: int | None) -> Claim:
    """The checks after the owner's, in :meth:`SQLiteLedger.claim`'s order, and the insert (the caller's
    transaction); ``partition`` is the one whose owner claims (``claim_fenced``), ``None`` under the pipeline lease."""
    if conn.execute("SELECT 1 FROM ledger WHERE key = ?", (r.key,)).fetchone() is not None:
        return "duplicate"
    if hashed and conn.execute("SELECT 1 FROM suppression WHERE hash = ?", (hashed,)).fetchone() is not None:
        return "suppressed"
    bought = conn.execute(
        "SELECT 1 FROM purchases WHERE ((kind = 'cart' AND key = ?) OR (kind = 'contact' AND key = ?)) "
        "AND at >= ? LIMIT 1",
        (r.cart_key, r.contact_key, r.started_at),
    ).fetchone()
    if bought is not None:
        return "purchased"
    if r.caps:  # one writer at a time (BEGIN IMMEDIATE): the count and the insert cannot interleave with another
        claimed = conn.execute(
            "SELECT channel, claimed_at FROM ledger WHERE contact_key = ? AND state <> 'cancelled' AND claimed_at > ?",
            (r.contact_key, (r.now if r.at is None else r.at) - max(per for _, per, _ in r.caps)),
        ).fetchall()
        if over_cap(r, claimed):
            return "capped"
    claimed_at = r.at if r.at is not None else r.now
    conn.execute(
        "INSERT INTO ledger (key, cart_key, contact_key, channel, state, owner, started_at, claimed_at, part) "
        "VALUES (?, ?, ?, ?, 'sending', ?, ?, ?, ?)",
        (r.key, r.cart_key, r.contact_key, r.channel, r.owner, r.started_at, claimed_at, partition),
    )
    return "claimed"


def _ledger_state(conn: sqlite3.Connection, key: str) -> str:
    row = conn.execute("SELECT state FROM ledger WHERE key = ?", (key,)).fetchone()
    if row is None:
        raise missing_entry(key)
    return str(row[0])


def ledger_entry(row: tuple[Any, ...]) -> LedgerEntry:
    key, cart_key, contact_key, channel, state, owner, started_at, claimed_at, finished_at, error = row
    return LedgerEntry(
        key=key,
        cart_key=cart_key,
        contact_key=contact_key,
        channel=channel,
        state=state,
        owner=owner,
        started_at=started_at,
        claimed_at=claimed_at,
        finished_at=finished_at,
        error=error,
    )


# -- reading the journal, shared with the partitioned methods (_sqlite_partitions) ---------------------------------


def read_rows(conn: sqlite3.Connection, partition: int, after: int, limit: int) -> list[JournalEntry]:
    rows = conn.execute(
        "SELECT seq, data, accepted_at FROM journal WHERE part = ? AND seq > ? ORDER BY seq LIMIT ?",
        (partition, after, limit),
    ).fetchall()
    return [JournalEntry(seq=seq, data=data, accepted_at=at) for seq, data, at in rows]


def head_of(conn: sqlite3.Connection, partition: int) -> int:
    row = conn.execute("SELECT last_position FROM journal_heads WHERE part = ?", (partition,)).fetchone()
    return 0 if row is None else int(row[0])
