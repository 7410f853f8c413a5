"""Purchases, the send ledger (claims, fenced or by the pipeline lease), named leases and dead letters.

What stays global with several hosts: a claim is one transaction that checks the owner's right to send (the
partition's fencing epoch, or today's pipeline lease), the key, suppression and the purchases of the cart and of
the customer, recorded from any partition and any host, before it inserts. The ledger's primary key makes the
insert itself the arbiter: of any number of processes claiming one key at once, one inserts, the others find it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Final

from ...errors import StoreError
from .._dead_letters import DeadLetterRecord, missing_dead_letter
from .._leases import PIPELINE_LEASE, LeaseTaken, check_lease
from .._ledger import (
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
from .._privacy import contact_hash as _contact_hash
from ._partitions import FENCE, PartitionedJournal
from ._plumbing import Conn

__all__ = ["LEDGER_COLUMNS", "Ledger", "hold_contacts", "ledger_entry"]

LEDGER_COLUMNS: Final = "key, cart_key, contact_key, channel, state, owner, started_at, claimed_at, finished_at, error"


class Ledger(ClaimByMany, PartitionedJournal):
    """The ledger part of :class:`~recoverkit.store.postgres.PostgresStore`."""

    _salt: bytes

    def _hash(self, contact_key: str) -> str:
        return _contact_hash(self._salt, contact_key) if contact_key else ""

    # -- purchases ------------------------------------------------------------------------------------------

    def record_purchase(self, *, cart_key: str | None, contact_key: str | None, at: float) -> None:
        check_purchase(cart_key, contact_key)
        rows = [(kind, key, at) for kind, key in (("cart", cart_key), ("contact", contact_key)) if key is not None]

        hashed = self._hash(contact_key) if contact_key else ""

        def run(conn: Conn) -> None:
            hold_contacts(conn, [hashed])
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO purchases AS p (kind, key, at) VALUES (%s, %s, %s) "
                    "ON CONFLICT (kind, key) DO UPDATE SET at = greatest(p.at, excluded.at)",
                    rows,
                )

        self._write("record_purchase", run)

    # -- claims ---------------------------------------------------------------------------------------------

    def claim_many(self, requests: Sequence[ClaimRequest]) -> list[Claim]:
        """Claims under today's pipeline lease (:data:`~recoverkit.store.PIPELINE_LEASE`, judged at ``now``)."""
        for r in requests:
            check_claim(r.key, r.owner)
        hashes = [self._hash(r.contact_key) for r in requests]

        def run(conn: Conn) -> list[Claim]:
            hold_caps(conn, requests, hashes)
            answers: list[Claim] = []
            for r, hashed in zip(requests, hashes, strict=True):
                # FOR SHARE: a take-over of the lease (an update of its row) waits until these claims commit.
                lease = conn.execute(
                    "SELECT owner, expires_at FROM leases WHERE name = %s FOR SHARE", (PIPELINE_LEASE,)
                ).fetchone()
                if lease is None or lease[0] != r.owner or lease[1] <= r.now:
                    answers.append("not_owner")
                else:
                    answers.append(_claim(conn, r, hashed))
            return answers

        return self._write("claim", run) if requests else []

    def claim_fenced(self, partition: int, epoch: int, requests: Sequence[ClaimRequest]) -> list[Claim]:
        """:meth:`claim_many` for messages of ``partition``, as the owner holding its lease at ``epoch``.

        ``"not_owner"`` when ``request.owner`` does not hold the partition at ``epoch``, unexpired on the server's
        clock (``request.now`` is only recorded, as ``claimed_at`` when ``at`` is ``None``). The other answers
        are :meth:`claim`'s, checked against the purchases and suppressions of every partition.
        """
        self._check_partition("claim_fenced", partition)
        for r in requests:
            check_claim(r.key, r.owner)
        hashes = [self._hash(r.contact_key) for r in requests]

        def run(conn: Conn) -> list[Claim]:
            hold_caps(conn, requests, hashes)
            answers: list[Claim] = []
            for r, hashed in zip(requests, hashes, strict=True):
                if conn.execute(FENCE, (partition, r.owner, epoch)).fetchone() is None:
                    answers.append("not_owner")
                else:
                    answers.append(_claim(conn, r, hashed, partition))
            return answers

        return self._write("claim_fenced", run) if requests else []

    def finish(self, key: str, outcome: Outcome, *, now: float, error: str | None = None) -> None:
        check_outcome(outcome)
        error_or_none = self.finish_many([FinishRequest(key=key, outcome=outcome, now=now, error=error)])[0]
        if error_or_none is not None:
            raise error_or_none

    def finish_many(self, requests: Sequence[FinishRequest]) -> list[StoreError | None]:
        for r in requests:
            check_outcome(r.outcome)

        def run(conn: Conn) -> list[StoreError | None]:
            answers: list[StoreError | None] = []
            for r in requests:
                row = conn.execute("SELECT state FROM ledger WHERE key = %s FOR UPDATE", (r.key,)).fetchone()
                if row is None:
                    answers.append(missing_entry(r.key))
                elif row[0] not in FINISHABLE:
                    answers.append(cannot_finish(r.key, row[0]))
                else:
                    conn.execute(
                        "UPDATE ledger SET state = %s, finished_at = %s, error = %s WHERE key = %s",
                        (r.outcome, r.now, r.error, r.key),
                    )
                    answers.append(None)
            return answers

        return self._write("finish", run) if requests else []

    def ledger(self, states: Collection[LedgerState] | None = None) -> list[LedgerEntry]:
        check_states(states)
        wanted = None if states is None else sorted(set(states))

        def run(conn: Conn) -> list[LedgerEntry]:
            if wanted is None:
                rows = conn.execute(f"SELECT {LEDGER_COLUMNS} FROM ledger ORDER BY id").fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE state = ANY(%s) ORDER BY id", (wanted,)
                ).fetchall()
            return [ledger_entry(row) for row in rows]

        return self._read("ledger", run)

    def mark_unknown(self, owner: str | None = None) -> int:
        def run(conn: Conn) -> int:
            if owner is None:
                return conn.execute("UPDATE ledger SET state = 'unknown' WHERE state = 'sending'").rowcount
            return conn.execute(
                "UPDATE ledger SET state = 'unknown' WHERE state = 'sending' AND owner = %s", (owner,)
            ).rowcount

        return self._write("mark_unknown", run)

    def mark_unknown_in(self, partition: int, *, owner: str, epoch: int) -> int | None:
        """What a new owner of ``partition`` does on taking it: turn the ``"sending"`` entries that earlier owners
        claimed in it (:meth:`claim_fenced`) into ``"unknown"``, as :meth:`mark_unknown` does after a crash;
        how many. ``None``, changing nothing, unless ``owner`` holds the partition at ``epoch``: a stale owner must
        not touch the new owner's sends."""
        self._check_partition("mark_unknown_in", partition)

        def run(conn: Conn) -> int | None:
            if conn.execute(FENCE, (partition, owner, epoch)).fetchone() is None:
                return None
            return conn.execute(
                "UPDATE ledger SET state = 'unknown' WHERE state = 'sending' AND part = %s AND owner <> %s",
                (partition, owner),
            ).rowcount

        return self._write("mark_unknown_in", run)

    def resolve(self, key: str, outcome: Resolution) -> None:
        check_resolution(outcome)

        def run(conn: Conn) -> None:
            row = conn.execute("SELECT state FROM ledger WHERE key = %s FOR UPDATE", (key,)).fetchone()
            if row is None:
                raise missing_entry(key)
            if row[0] not in RESOLVABLE:
                raise cannot_resolve(key, row[0])
            if outcome == "retry":
                conn.execute("DELETE FROM ledger WHERE key = %s", (key,))
            else:
                conn.execute("UPDATE ledger SET state = 'sent' WHERE key = %s", (key,))

        self._write("resolve", run)

    # -- named leases (today's protocol; the caller's clock) ------------------------------------------------

    def acquire_lease(self, name: str, owner: str, *, ttl: float, now: float) -> bool:
        return self.take_lease(name, owner, ttl=ttl, now=now) is not None

    def take_lease(self, name: str, owner: str, *, ttl: float, now: float) -> LeaseTaken | None:
        check_lease(name, owner, ttl)

        def run(conn: Conn) -> LeaseTaken | None:
            # Insert if absent (waiting for a concurrent insert of the same name to finish), then lock the row.
            inserted = conn.execute(
                "INSERT INTO leases (name, owner, expires_at) VALUES (%s, %s, %s) ON CONFLICT (name) DO NOTHING",
                (name, owner, now + ttl),
            ).rowcount
            if inserted:
                return "taken"
            held = conn.execute("SELECT owner, expires_at FROM leases WHERE name = %s FOR UPDATE", (name,)).fetchone()
            if held is not None and held[0] != owner and held[1] > now:
                return None
            conn.execute("UPDATE leases SET owner = %s, expires_at = %s WHERE name = %s", (owner, now + ttl, name))
            return "renewed" if held is not None and held[0] == owner else "taken"

        return self._lease_write("acquire_lease", run)

    def release_lease(self, name: str, owner: str) -> None:
        self._lease_write(
            "release_lease",
            lambda conn: conn.execute("DELETE FROM leases WHERE name = %s AND owner = %s", (name, owner)),
        )

    def lease_holder(self, name: str, *, now: float) -> str | None:
        def run(conn: Conn) -> str | None:
            row = conn.execute("SELECT owner FROM leases WHERE name = %s AND expires_at > %s", (name, now)).fetchone()
            return None if row is None else str(row[0])

        return self._lease_read("lease_holder", run)

    # -- dead letters ---------------------------------------------------------------------------------------

    def add_dead_letter(
        self, key: str, data: bytes, *, error: str, attempts: int, permanent: bool, at: float, contact_key: str = ""
    ) -> None:
        hashed = self._hash(contact_key)

        def run(conn: Conn) -> None:
            hold_contacts(conn, [hashed])
            # Delete, then insert: a replaced letter moves to the end of the list, as the newest.
            conn.execute("DELETE FROM dead_letters WHERE key = %s", (key,))
            conn.execute(
                "INSERT INTO dead_letters (key, data, error, attempts, permanent, at, contact_key) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (key, bytes(data), error, attempts, bool(permanent), at, contact_key),
            )

        self._write("add_dead_letter", run)

    def dead_letters(self) -> list[DeadLetterRecord]:
        def run(conn: Conn) -> list[DeadLetterRecord]:
            rows = conn.execute(
                "SELECT key, data, error, attempts, permanent, at, contact_key FROM dead_letters WHERE NOT resent "
                "ORDER BY id"
            ).fetchall()
            return [
                DeadLetterRecord(key=k, data=d, error=e, attempts=n, permanent=p, at=at, contact_key=c)
                for k, d, e, n, p, at, c in rows
            ]

        return self._read("dead_letters", run)

    def mark_resent(self, key: str) -> None:
        def run(conn: Conn) -> None:
            if conn.execute("UPDATE dead_letters SET resent = true WHERE key = %s", (key,)).rowcount == 0:
                raise missing_dead_letter(key)

        self._write("mark_resent", run)


def hold_caps(conn: Conn, requests: Sequence[ClaimRequest], hashes: list[str]) -> None:
    """Take, until the transaction ends, an exclusive advisory lock per contact whose claim checks caps, in one
    order (so two transactions never wait for each other in a cycle): counting a customer's entries and adding
    one must not interleave with another claim for the same customer."""
    wanted = sorted({h for r, h in zip(requests, hashes, strict=True) if r.caps and h})
    if wanted:
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(h, 1)) FROM unnest(%s::text[]) AS h", (wanted,))


def hold_contacts(conn: Conn, hashes: list[str]) -> None:
    """Take, until the transaction ends, a shared advisory lock on each contact (by its keyed hash, never its key)
    that the transaction writes a row for; :meth:`~Records.forget` takes the same lock exclusively.

    Why: PostgreSQL runs transactions side by side (SQLite's one writer runs them one after another). Without
    this, a claim (or a fact, a code, a dead letter, a purchase) in flight while ``forget`` runs would commit a
    row holding the contact's key that ``forget`` did not see, and the erasure would miss it. With it, ``forget``
    waits for the writes already under way and then sees them, and a write that starts after ``forget`` waits
    for it to commit and then sees the suppression in its next statement.
    """
    wanted = sorted({h for h in hashes if h})
    if wanted:
        conn.execute(
            "SELECT pg_advisory_xact_lock_shared(hashtextextended(h, 0)) FROM unnest(%s::text[]) AS h", (wanted,)
        )


def _claim(conn: Conn, r: ClaimRequest, hashed: str, partition: int | None = None) -> Claim:
    """The checks after the owner's, in :meth:`Store.claim`'s order, and the insert (the caller's transaction)."""
    hold_contacts(conn, [hashed])  # before the suppression check, which then sees a forget() that committed
    if conn.execute("SELECT 1 FROM ledger WHERE key = %s", (r.key,)).fetchone() is not None:
        return "duplicate"
    if hashed and conn.execute("SELECT 1 FROM suppression WHERE hash = %s", (hashed,)).fetchone() is not None:
        return "suppressed"
    bought = conn.execute(
        "SELECT 1 FROM purchases WHERE ((kind = 'cart' AND key = %s) OR (kind = 'contact' AND key = %s)) "
        "AND at >= %s LIMIT 1",
        (r.cart_key, r.contact_key, r.started_at),
    ).fetchone()
    if bought is not None:
        return "purchased"
    if r.caps:
        # The caller holds the contact's cap lock (hold_caps) to the end of its transaction, so two claims for one
        # customer in different partitions count each other: the second waits, then sees the first's entry.
        claimed = conn.execute(
            "SELECT channel, claimed_at FROM ledger WHERE contact_key = %s AND state <> 'cancelled' "
            "AND claimed_at > %s",
            (r.contact_key, (r.now if r.at is None else r.at) - max(per for _, per, _ in r.caps)),
        ).fetchall()
        if over_cap(r, claimed):
            return "capped"
    claimed_at = r.now if r.at is None else r.at
    inserted = conn.execute(
        "INSERT INTO ledger (key, cart_key, contact_key, channel, state, owner, started_at, claimed_at, part) "
        "VALUES (%s, %s, %s, %s, 'sending', %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
        (r.key, r.cart_key, r.contact_key, r.channel, r.owner, r.started_at, claimed_at, partition),
    ).rowcount
    # Nothing inserted: another transaction claimed the key since the check above, and committed first.
    return "claimed" if inserted else "duplicate"


def ledger_entry(row: tuple[Any, ...]) -> LedgerEntry:
    key, cart_key, contact_key, channel, state, owner, started_at, claimed_at, finished_at, error = row
    return LedgerEntry(
        key=key, cart_key=cart_key, contact_key=contact_key, channel=channel, state=state, owner=owner,
        started_at=started_at, claimed_at=claimed_at, finished_at=finished_at, error=error,
    )  # fmt: skip
