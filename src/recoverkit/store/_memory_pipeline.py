"""The parts of a :class:`~recoverkit.store.MemoryStore` the pipeline runs on: journal, checkpoint, leases, and
the send ledger with its purchases."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import msgspec

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
from ._memory_tables import MemoryTables
from ._privacy import contact_hash

__all__ = ["MemoryCheckpoint", "MemoryJournal", "MemoryLeases", "MemoryLedger"]


class MemoryJournal(MemoryTables):
    """:class:`~recoverkit.store.JournalStore`: partition 0's journal, on a store of one partition."""

    def append_events(self, events: Sequence[bytes], *, now: float) -> int:
        self._one_sequence("append_events")
        with self._lock:
            self._enter(write=bool(events))  # appending nothing is a read, as in SQLiteStore
            return self._logs[0].extend(events, now)

    def read_events(self, after: int, limit: int) -> list[JournalEntry]:
        check_read_limit(after, limit)
        self._one_sequence("read_events")
        with self._lock:
            self._enter(write=False)
            return self._logs[0].read(after, limit)

    def trim_events(self, through: int) -> int:
        self._one_sequence("trim_events")
        with self._lock:
            self._enter(write=True)
            return self._logs[0].trim(through)

    def last_seq(self) -> int:
        self._one_sequence("last_seq")
        with self._lock:
            self._enter(write=False)
            return self._logs[0].head


class MemoryCheckpoint(MemoryTables):
    """:class:`~recoverkit.store.CheckpointStore`: one attribute, on a store of one partition (beside partition
    0's journal; a store of several keeps a checkpoint per partition instead)."""

    def save_checkpoint(self, position: int, state: bytes, *, now: float) -> bool:
        check_position(position)
        self._one_sequence("save_checkpoint")
        with self._lock:
            self._enter(write=True)
            if self._checkpoint is not None and self._checkpoint.position > position:
                return False
            self._checkpoint = Checkpoint(position=position, state=bytes(state), saved_at=now)
            return True

    def load_checkpoint(self) -> Checkpoint | None:
        self._one_sequence("load_checkpoint")
        with self._lock:
            self._enter(write=False)
            return self._checkpoint


class MemoryLeases(MemoryTables):
    """:class:`~recoverkit.store.LeaseStore` in a dict by name."""

    def acquire_lease(self, name: str, owner: str, *, ttl: float, now: float) -> bool:
        return self.take_lease(name, owner, ttl=ttl, now=now) is not None

    def take_lease(self, name: str, owner: str, *, ttl: float, now: float) -> LeaseTaken | None:
        check_lease(name, owner, ttl)
        with self._lock:
            self._enter(write=True)
            held = self._leases.get(name)
            if held is not None and held[0] != owner and held[1] > now:
                return None
            self._leases[name] = (owner, now + ttl)
            return "renewed" if held is not None and held[0] == owner else "taken"

    def release_lease(self, name: str, owner: str) -> None:
        with self._lock:
            self._enter(write=True)
            held = self._leases.get(name)
            if held is not None and held[0] == owner:
                del self._leases[name]

    def lease_holder(self, name: str, *, now: float) -> str | None:
        with self._lock:
            self._enter(write=False)
            held = self._leases.get(name)
            return held[0] if held is not None and held[1] > now else None


class MemoryLedger(ClaimByMany, MemoryTables):
    """:class:`~recoverkit.store.LedgerStore` in dicts by key; a claim reads the leases and the
    suppressions under the same lock."""

    def record_purchase(self, *, cart_key: str | None, contact_key: str | None, at: float) -> None:
        check_purchase(cart_key, contact_key)
        with self._lock:
            self._enter(write=True)
            for table, key in ((self._cart_purchases, cart_key), (self._contact_purchases, contact_key)):
                if key is not None:
                    table[key] = max(at, table.get(key, at))

    def _claim(self, r: ClaimRequest) -> Claim:
        check_claim(r.key, r.owner)
        with self._lock:
            self._enter(write=True)
            lease = self._leases.get(PIPELINE_LEASE)
            if lease is None or lease[0] != r.owner or lease[1] <= r.now:
                return "not_owner"
            return self._admit(r, None)

    def _admit(self, r: ClaimRequest, partition: int | None) -> Claim:
        """The checks after the owner's, in :meth:`claim`'s order, and the entry (the caller holds the lock);
        ``partition`` is the one whose owner claims (:meth:`claim_fenced`), ``None`` under the pipeline lease."""
        if r.key in self._ledger:
            return "duplicate"
        if r.contact_key and contact_hash(self._salt, r.contact_key) in self._suppressed:
            return "suppressed"
        bought_cart = self._cart_purchases.get(r.cart_key)
        bought_contact = self._contact_purchases.get(r.contact_key)
        if (bought_cart is not None and bought_cart >= r.started_at) or (
            bought_contact is not None and bought_contact >= r.started_at
        ):
            return "purchased"
        if r.caps:
            ledger = self._ledger
            claimed = [
                (e.channel, e.claimed_at)
                for e in (ledger[key] for key in self._ledger_of.get(r.contact_key, ()))
                if e.state != "cancelled"
            ]
            if over_cap(r, claimed):
                return "capped"
        self._ledger[r.key] = LedgerEntry(
            key=r.key, cart_key=r.cart_key, contact_key=r.contact_key, channel=r.channel, state="sending",
            owner=r.owner, started_at=r.started_at, claimed_at=r.now if r.at is None else r.at,
        )  # fmt: skip
        self._ledger_of.setdefault(r.contact_key, set()).add(r.key)
        if partition is None:
            self._claimed_in.pop(r.key, None)  # a key retried (resolve) and claimed again
        else:
            self._claimed_in[r.key] = partition
        return "claimed"

    def finish(self, key: str, outcome: Outcome, *, now: float, error: str | None = None) -> None:
        check_outcome(outcome)
        with self._lock:
            self._enter(write=True)
            entry = self._entry(key)
            if entry.state not in FINISHABLE:
                self._failed += 1
                raise cannot_finish(key, entry.state)
            self._ledger[key] = msgspec.structs.replace(entry, state=outcome, finished_at=now, error=error)

    def claim_many(self, requests: Sequence[ClaimRequest]) -> list[Claim]:
        # Each claim is atomic under the lock; nothing is gained by holding it across them in memory.
        return [self._claim(r) for r in requests]

    def finish_many(self, requests: Sequence[FinishRequest]) -> list[StoreError | None]:
        answers: list[StoreError | None] = []
        for r in requests:
            try:
                self.finish(r.key, r.outcome, now=r.now, error=r.error)
            except StoreError as exc:
                answers.append(exc)
            else:
                answers.append(None)
        return answers

    def ledger(self, states: Collection[LedgerState] | None = None) -> list[LedgerEntry]:
        check_states(states)
        with self._lock:
            self._enter(write=False)
            return [e for e in self._ledger.values() if states is None or e.state in states]

    def mark_unknown(self, owner: str | None = None) -> int:
        with self._lock:
            self._enter(write=True)
            count = 0
            for key, entry in self._ledger.items():
                if entry.state == "sending" and (owner is None or entry.owner == owner):
                    self._ledger[key] = msgspec.structs.replace(entry, state="unknown")
                    count += 1
            return count

    def resolve(self, key: str, outcome: Resolution) -> None:
        check_resolution(outcome)
        with self._lock:
            self._enter(write=True)
            entry = self._entry(key)
            if entry.state not in RESOLVABLE:
                self._failed += 1
                raise cannot_resolve(key, entry.state)
            if outcome == "retry":
                del self._ledger[key]
                self._unindex(entry.contact_key, key)
                self._claimed_in.pop(key, None)
            else:
                self._ledger[key] = msgspec.structs.replace(entry, state="sent")

    def _entry(self, key: str) -> LedgerEntry:
        entry = self._ledger.get(key)
        if entry is None:
            self._failed += 1
            raise missing_entry(key)
        return entry
