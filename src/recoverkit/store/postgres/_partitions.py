"""The partitioned journal, the per-partition leases with their fencing epoch, and per-partition checkpoints.

What is new with several hosts (issue 14), and how each promise is kept:

- **Partitions.** An event belongs to partition :func:`partition_of` (its session id) out of the store's fixed
  number. Everything about a session (its events, the carts, timers and schedule they build) is in one partition,
  so one owner at a time can run it.
- **Positions without gaps under concurrent writers.** Each partition has a counter row (``journal_heads``). An
  append locks the counters of the partitions it writes to (in partition order, so two appends never deadlock),
  advances them, and inserts its rows, in one transaction (one statement when it writes to one partition).
  Another append to
  the same partition waits on the row lock until this one commits, so positions are handed out in commit
  order: a reader that saw position *n* committed has seen every position below it, and reading
  ``position > last`` never skips a row that commits later (a ``bigserial`` does not give this: sequence
  values are taken before commit, and commits finish out of order). Appends to different partitions do not
  wait for each other.
- **Leases with an epoch, on the server's clock.** A partition's lease row says who owns it until when
  (``clock_timestamp()`` of the database server: the hosts' clocks may disagree, the server's is one). The
  epoch rises each time the lease passes to another owner (or is taken again after a release). Every write
  made as an owner (a checkpoint, a claim) names the epoch it holds and locks the lease row ``FOR SHARE`` while
  it checks owner, epoch and expiry: a new owner's take (an ``UPDATE`` of that row) waits until such a write
  has committed, and after the take every write carrying the old epoch is refused. A stalled process that
  wakes up after losing its partition can write nothing.
- **Fenced checkpoints.** One row per partition, written only by the current owner, never moved back.

The one-sequence methods of today's :class:`~recoverkit.store.Store` protocol (``append_events``,
``read_events``, ``save_checkpoint`` ...) are the journal of partition 0 of a store made with one partition;
on a store with more they raise :class:`~recoverkit.errors.StoreError` (the engine's use of partitions comes
next: ``docs/scaling.md``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Final

from ...errors import StoreError
from .._checkpoint import Checkpoint, check_position
from .._journal import JournalEntry, check_read_limit
from .._partition_args import check_window, check_writer
from .._partitioned import CheckpointAnswer, PartitionLease, PartitionStatus, partition_of
from ._plumbing import Conn, Plumbing

__all__ = ["PartitionedJournal"]

#: The named lease that says a member (an engine process) is alive.
_MEMBER: Final = "member:"
_WRITER: Final = "writer:"

#: The fence: the lease row of the partition, held by this owner at this epoch and unexpired on the server's
#: clock, locked FOR KEY SHARE so that no take-over can commit before the write that checked it. KEY SHARE, the
#: weakest row lock, conflicts only with FOR UPDATE, which a take-over takes first (see take_partition); the
#: owner's own renewal (a plain UPDATE of the expiry: FOR NO KEY UPDATE) does not wait for it. With FOR SHARE a
#: renewal queued behind every claim in flight, and thousands of messages falling due at once kept the owner from
#: renewing its lease for longer than the lease (CI, stop 22: 8 partitions lost, 497 of 4,000 messages late).
FENCE: Final = (
    "SELECT 1 FROM partition_leases WHERE part = %s AND owner = %s AND epoch = %s "
    "AND expires_at > clock_timestamp() FOR KEY SHARE"
)

#: Renewal by the owner that held the partition last (even after its lease expired: nobody took it meanwhile,
#: so nobody wrote with another epoch). A plain UPDATE of the expiry, which the claims in flight do not block.
_RENEW: Final = (
    "UPDATE partition_leases SET expires_at = clock_timestamp() + %(ttl)s * interval '1 second' "
    "WHERE part = %(part)s AND owner = %(owner)s RETURNING epoch, extract(epoch FROM expires_at)::float8"
)
#: A take-over locks the row FOR UPDATE first: that waits for every fenced write in flight (they hold it FOR KEY
#: SHARE) to commit or roll back, so none of the last owner's writes can commit after the epoch changed.
_LOCK_FOR_TAKE_OVER: Final = (
    "SELECT owner IS NULL OR expires_at <= clock_timestamp() FROM partition_leases WHERE part = %s FOR UPDATE"
)
_TAKE_OVER: Final = (
    "UPDATE partition_leases SET epoch = epoch + 1, owner = %(owner)s, "
    "expires_at = clock_timestamp() + %(ttl)s * interval '1 second' "
    "WHERE part = %(part)s RETURNING epoch, extract(epoch FROM expires_at)::float8"
)


#: An append over several partitions, first step: the counters locked and advanced; the events are then copied in
#: at the positions reserved (COPY: measured here, 64 events over 40 partitions took 1.7 ms this way against 2.6
#: ms as one INSERT ... SELECT FROM unnest statement). ``locked`` takes the counters' row locks in partition order
#: (ORDER BY under FOR UPDATE locks rows as the sort emits them) and the update touches only rows it emitted: two
#: appends never lock in opposite orders, so never deadlock.
_ADVANCE: Final = (
    "WITH v AS (SELECT * FROM unnest(%(parts)s::integer[], %(counts)s::bigint[]) AS v(part, n)), "
    "locked AS (SELECT part FROM journal_heads WHERE part = ANY(%(parts)s::integer[]) ORDER BY part FOR UPDATE) "
    "UPDATE journal_heads h SET last_position = h.last_position + v.n FROM v, locked "
    "WHERE h.part = v.part AND h.part = locked.part RETURNING h.part, h.last_position - v.n"
)
_COPY: Final = "COPY journal (part, position, data, accepted_at) FROM STDIN (FORMAT BINARY)"
#: An append to one partition (every append of one event): one statement, so autocommit makes it a transaction
#: without BEGIN and COMMIT round trips, and the counter's lock is held for its execution alone.
_APPEND_ONE: Final = (
    "WITH head AS (UPDATE journal_heads SET last_position = last_position + %(n)s WHERE part = %(part)s "
    "RETURNING last_position), "
    "inserted AS (INSERT INTO journal (part, position, data, accepted_at) "
    "SELECT %(part)s, head.last_position - %(n)s + e.rank, e.data, %(now)s FROM head, "
    "unnest(%(datas)s::bytea[]) WITH ORDINALITY AS e(data, rank)) "
    "SELECT %(part)s, last_position FROM head"
)


class PartitionedJournal(Plumbing):
    """The journal, leases and checkpoints of a partitioned store; see the module docstring."""

    # -- partitions -----------------------------------------------------------------------------------------

    def partition_of(self, session_id: str) -> int:
        """The partition of ``session_id``'s events in this store (:func:`partition_of`)."""
        return partition_of(session_id, self.partitions)

    def _check_partition(self, method: str, partition: int) -> None:
        if isinstance(partition, bool) or not isinstance(partition, int) or not 0 <= partition < self.partitions:
            raise ValueError(f"{method}: expected a partition from 0 to {self.partitions - 1}, got {partition!r}")

    def append_keyed(self, events: Sequence[tuple[str, bytes]], *, now: float) -> list[tuple[int, int]]:
        """Append ``(session_id, data)`` events accepted at ``now``, each to its session's partition, in one
        transaction; return each event's ``(partition, position)``, in the order given.

        The events of one partition in one call get consecutive positions in the order given, above every
        position handed out before in that partition; see the module docstring for why no reader ever sees a gap.
        """
        if not events:
            return []
        parts = [self.partition_of(session_id) for session_id, _ in events]
        return self._append(parts, [data for _, data in events], now)

    def append_to(self, events: Sequence[tuple[int, bytes]], *, now: float) -> list[tuple[int, int]]:
        """:meth:`append_keyed` with each event's partition given (an erasure request goes to every partition)."""
        if not events:
            return []
        for part, _ in events:
            self._check_partition("append_to", part)
        return self._append([part for part, _ in events], [data for _, data in events], now)

    def _append(self, parts: list[int], datas: list[bytes], now: float) -> list[tuple[int, int]]:
        counts = Counter(parts)
        order = sorted(counts)
        # Each event's rank among the events of its partition in this call (1, 2, ...): its position is the
        # partition's head before the call plus its rank.
        seen: Counter[int] = Counter()
        ranks = []
        for part in parts:
            seen[part] += 1
            ranks.append(seen[part])
        datas = [bytes(d) for d in datas]
        if len(order) == 1:
            one = {"part": order[0], "n": len(parts), "datas": datas, "now": float(now)}

            def run_one(conn: Conn) -> list[tuple[int, int]]:
                row = conn.execute(_APPEND_ONE, one, binary=True).fetchone()
                if row is None:
                    raise StoreError(f"append: partition {order[0]} is not in this store's {self.partitions}")
                base = int(row[1]) - len(parts)
                return [(order[0], base + rank) for rank in ranks]

            return self._write("append", run_one, transaction=False)
        advance = {"parts": order, "counts": [counts[p] for p in order]}

        def run(conn: Conn) -> list[tuple[int, int]]:
            bases: dict[int, int] = dict(conn.execute(_ADVANCE, advance, binary=True).fetchall())
            if len(bases) != len(order):
                raise StoreError(f"append: partitions {order} are not all in this store's {self.partitions}")
            placed = [(part, bases[part] + rank) for part, rank in zip(parts, ranks, strict=True)]
            with conn.cursor().copy(_COPY) as copy:
                copy.set_types(["int4", "int8", "bytea", "float8"])
                for (part, position), data in zip(placed, datas, strict=True):
                    copy.write_row((part, position, data, now))
            return placed

        return self._write("append", run)

    def read_partition(self, partition: int, after: int, limit: int) -> list[JournalEntry]:
        """Up to ``limit`` (>= 1) events of ``partition`` with ``position > after``, by position (``seq`` is the
        position)."""
        self._check_partition("read_partition", partition)
        check_window("read_partition", after, limit)
        return self._read(
            "read_partition",
            lambda conn: [
                JournalEntry(seq=position, data=data, accepted_at=at)
                for position, data, at in conn.execute(
                    "SELECT position, data, accepted_at FROM journal WHERE part = %s AND position > %s "
                    "ORDER BY position LIMIT %s",
                    (partition, after, limit),
                ).fetchall()
            ],
        )

    def partition_head(self, partition: int) -> int:
        """The highest position ever handed out in ``partition`` (0 for none), trimmed or not."""
        self._check_partition("partition_head", partition)
        return self._read("partition_head", lambda conn: _head(conn, partition))

    def partition_heads(self) -> list[int]:
        """Every partition's head, by partition, from one snapshot (how an owner learns what others appended)."""
        return self._read(
            "partition_heads",
            lambda conn: [int(h) for (h,) in conn.execute("SELECT last_position FROM journal_heads ORDER BY part")],
        )

    def trim_partition(self, partition: int, through: int) -> int:
        """Delete the events of ``partition`` with ``position <= through``; return how many. Positions are
        never reused."""
        self._check_partition("trim_partition", partition)
        return self._write(
            "trim_partition",
            lambda conn: conn.execute(
                "DELETE FROM journal WHERE part = %s AND position <= %s", (partition, through)
            ).rowcount,
        )

    # -- partition leases -----------------------------------------------------------------------------------

    def take_partition(self, partition: int, owner: str, *, ttl: float) -> PartitionLease | None:
        """Take or renew ``partition``'s lease for ``owner`` for ``ttl`` seconds of the server's clock.

        ``None`` when another owner holds it unexpired. Otherwise the lease, whose ``epoch`` is the one held
        before if ``owner`` held it last (renewed, even after it expired: nobody took it meanwhile, so nobody
        wrote with another epoch), and one higher if it passed from anyone else (or from a release): a process
        that finds its epoch changed lost the partition meanwhile and must restore from the checkpoint.
        """
        self._check_partition("take_partition", partition)
        if not owner:
            raise ValueError("take_partition: expected a non-empty `owner`, got ''")
        if not ttl > 0:  # also refuses NaN
            raise ValueError(f"take_partition: expected `ttl` > 0 seconds, got {ttl!r}")

        params = {"owner": owner, "ttl": float(ttl), "part": partition}

        def run(conn: Conn) -> PartitionLease | None:
            row = conn.execute(_RENEW, params).fetchone()
            if row is None:  # held by another, or free: a take-over, which waits for the last owner's writes
                free = conn.execute(_LOCK_FOR_TAKE_OVER, (partition,)).fetchone()
                if free is None or not free[0]:
                    return None
                row = conn.execute(_TAKE_OVER, params).fetchone()
                assert row is not None  # the row is locked: nothing can have removed it
            return PartitionLease(partition=partition, owner=owner, epoch=int(row[0]), expires_at=float(row[1]))

        return self._lease_write("take_partition", run)

    def release_partition(self, partition: int, owner: str) -> bool:
        """Give ``partition`` up at once if ``owner`` holds it (a clean shutdown hands it over without waiting
        for the lease to lapse); whether it did. The epoch stays: the next taker raises it."""
        self._check_partition("release_partition", partition)
        return self._lease_write(
            "release_partition",
            lambda conn: conn.execute(
                "UPDATE partition_leases SET owner = NULL, expires_at = '-infinity' WHERE part = %s AND owner = %s",
                (partition, owner),
            ).rowcount
            > 0,
        )

    def partition_leases(self) -> list[PartitionLease]:
        """Every partition's lease, by partition, judged now by the server's clock (``owner`` ``None`` if free)."""

        def run(conn: Conn) -> list[PartitionLease]:
            rows = conn.execute(
                "SELECT part, CASE WHEN expires_at > clock_timestamp() THEN owner END, epoch, "
                "extract(epoch FROM expires_at)::float8 FROM partition_leases ORDER BY part"
            ).fetchall()
            return [PartitionLease(partition=p, owner=o, epoch=int(e), expires_at=float(x)) for p, o, e, x in rows]

        return self._lease_read("partition_leases", run)

    def heartbeat(self, owner: str, *, ttl: float, now: float) -> list[str]:
        """Record ``owner`` as a live member until ``now + ttl``; the live members at ``now``, sorted. Kept as
        named leases (``member:<owner>``) on the caller's clock: membership only decides how partitions spread."""
        if not owner:
            raise ValueError("heartbeat: expected a non-empty `owner`, got ''")
        if not ttl > 0:
            raise ValueError(f"heartbeat: expected `ttl` > 0 seconds, got {ttl!r}")

        def run(conn: Conn) -> list[str]:
            conn.execute(
                "INSERT INTO leases (name, owner, expires_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at",
                (_MEMBER + owner, owner, now + ttl),
            )
            rows = conn.execute(
                "SELECT owner FROM leases WHERE name LIKE 'member:%%' AND expires_at > %s", (now,)
            ).fetchall()
            # Sorted here, not by ORDER BY: the database's collation may order text otherwise than every other
            # store (and every host's Python) does, and the members' order is how partitions are spread.
            return sorted(str(o) for (o,) in rows)

        return self._lease_write("heartbeat", run)

    def leave(self, owner: str) -> None:
        """``owner`` is no longer a member (a clean shutdown): the others take its share at once."""
        self._lease_write("leave", lambda conn: conn.execute("DELETE FROM leases WHERE name = %s", (_MEMBER + owner,)))

    def mark_writer(self, writer: str, mark: float) -> None:
        """See :meth:`~recoverkit.store.PartitionedStore.mark_writer` (a named lease ``writer:<name>``, the mark
        in its expiry; only moves forward)."""
        check_writer(writer, mark)
        self._write(
            "mark_writer",
            lambda conn: conn.execute(
                "INSERT INTO leases (name, owner, expires_at) VALUES (%s, %s, %s) ON CONFLICT (name) "
                "DO UPDATE SET expires_at = greatest(leases.expires_at, excluded.expires_at)",
                (_WRITER + writer, writer, float(mark)),
            ),
        )

    def writer_marks(self) -> dict[str, float]:
        def run(conn: Conn) -> dict[str, float]:
            rows = conn.execute("SELECT owner, expires_at FROM leases WHERE name LIKE 'writer:%%'").fetchall()
            return {str(owner): float(mark) for owner, mark in rows}

        return self._read("writer_marks", run)

    def drop_writer(self, writer: str) -> None:
        self._write("drop_writer", lambda conn: conn.execute("DELETE FROM leases WHERE name = %s", (_WRITER + writer,)))

    def partition_status(self) -> list[PartitionStatus]:
        """Every partition's head, checkpoint, lag and owner, by partition, from one snapshot (for operators:
        which partitions are owned, by whom, and how far behind their checkpoints are)."""

        def run(conn: Conn) -> list[PartitionStatus]:
            rows = conn.execute(
                "SELECT h.part, h.last_position, coalesce(c.position, 0), "
                "CASE WHEN l.expires_at > clock_timestamp() THEN l.owner END, l.epoch "
                "FROM journal_heads h JOIN partition_leases l USING (part) "
                "LEFT JOIN partition_checkpoints c USING (part) ORDER BY h.part"
            ).fetchall()
            return [
                PartitionStatus(partition=p, head=h, checkpoint=c, lag=max(h - c, 0), owner=o, epoch=e)
                for p, h, c, o, e in rows
            ]

        return self._read("partition_status", run)

    # -- partition checkpoints ------------------------------------------------------------------------------

    def save_partition_checkpoint(
        self, partition: int, *, owner: str, epoch: int, position: int, state: bytes, now: float
    ) -> CheckpointAnswer:
        """Replace ``partition``'s checkpoint with ``state`` as of ``position``, if ``owner`` holds the partition
        at ``epoch`` (``"fenced"`` otherwise, writing nothing); a stored checkpoint with a higher position is
        kept (``"behind"``). See :data:`CheckpointAnswer`."""
        self._check_partition("save_partition_checkpoint", partition)
        check_position(position)

        def run(conn: Conn) -> CheckpointAnswer:
            if conn.execute(FENCE, (partition, owner, epoch)).fetchone() is None:
                return "fenced"
            saved = conn.execute(
                "INSERT INTO partition_checkpoints AS c (part, position, state, saved_at, epoch) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (part) DO UPDATE SET position = excluded.position, "
                "state = excluded.state, saved_at = excluded.saved_at, epoch = excluded.epoch "
                "WHERE excluded.position >= c.position",
                (partition, position, bytes(state), now, epoch),
            ).rowcount
            return "saved" if saved else "behind"

        return self._write("save_partition_checkpoint", run)

    def load_partition_checkpoint(self, partition: int) -> Checkpoint | None:
        """``partition``'s last checkpoint, or ``None``."""
        self._check_partition("load_partition_checkpoint", partition)

        def run(conn: Conn) -> Checkpoint | None:
            row = conn.execute(
                "SELECT position, state, saved_at FROM partition_checkpoints WHERE part = %s", (partition,)
            ).fetchone()
            return None if row is None else Checkpoint(position=row[0], state=row[1], saved_at=row[2])

        return self._read("load_partition_checkpoint", run)

    # -- today's Store protocol: the journal as one sequence ------------------------------------------------

    def _one_sequence(self, method: str) -> None:
        if self.partitions != 1:
            raise StoreError(
                f"{method}: this store's journal has {self.partitions} partitions, so it has no single sequence; use "
                "the partitioned methods (append_keyed, read_partition, ...), or a store made with partitions=1"
            )

    def append_events(self, events: Sequence[bytes], *, now: float) -> int:
        self._one_sequence("append_events")
        if not events:
            return self.last_seq()
        return self._append([0] * len(events), list(events), now)[-1][1]

    def read_events(self, after: int, limit: int) -> list[JournalEntry]:
        self._one_sequence("read_events")
        check_read_limit(after, limit)  # named as read_events, which the caller called
        return self.read_partition(0, after, limit)

    def trim_events(self, through: int) -> int:
        self._one_sequence("trim_events")
        return self.trim_partition(0, through)

    def last_seq(self) -> int:
        self._one_sequence("last_seq")
        return self.partition_head(0)

    def save_checkpoint(self, position: int, state: bytes, *, now: float) -> bool:
        self._one_sequence("save_checkpoint")
        check_position(position)
        return self._write(
            "save_checkpoint",
            lambda conn: conn.execute(
                "INSERT INTO checkpoint AS c (id, position, state, saved_at) VALUES (1, %s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET position = excluded.position, state = excluded.state, "
                "saved_at = excluded.saved_at WHERE excluded.position >= c.position",
                (position, bytes(state), now),
            ).rowcount
            > 0,
        )

    def load_checkpoint(self) -> Checkpoint | None:
        self._one_sequence("load_checkpoint")

        def run(conn: Conn) -> Checkpoint | None:
            row = conn.execute("SELECT position, state, saved_at FROM checkpoint WHERE id = 1").fetchone()
            return None if row is None else Checkpoint(position=row[0], state=row[1], saved_at=row[2])

        return self._read("load_checkpoint", run)


def _head(conn: Conn, partition: int) -> int:
    row = conn.execute("SELECT last_position FROM journal_heads WHERE part = %s", (partition,)).fetchone()
    return 0 if row is None else int(row[0])
