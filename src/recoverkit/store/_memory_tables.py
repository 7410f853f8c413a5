"""The dicts a :class:`~recoverkit.store.MemoryStore` keeps its tables in, the one lock over them, and the
store's lifecycle; the per-concern parts build on it."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from ..errors import StoreError
from ..facts import Assignment, Conversion, LinkVisit, MessageOutcome
from ._checkpoint import Checkpoint
from ._codes import CodeRecord
from ._dead_letters import DeadLetterRecord
from ._journal import JournalEntry
from ._ledger import LedgerEntry
from ._lifecycle import StoreStatistics
from ._partition_args import no_single_sequence
from ._partitioned import check_partitions
from ._privacy import SALT_BYTES
from ._state import SavedState

__all__ = ["LeaseRow", "MemoryTables", "PartitionLog"]


class PartitionLog:
    """One partition's journal: its entries by position, the head (the highest position handed out) and the
    lowest position it may still hold (trims delete a prefix, so the positions kept run without gaps)."""

    __slots__ = ("entries", "first", "head")

    def __init__(self) -> None:
        self.entries: dict[int, JournalEntry] = {}  # insertion order is position order
        self.head = 0
        self.first = 1

    def append(self, data: bytes, now: float) -> int:
        self.head += 1
        self.entries[self.head] = JournalEntry(seq=self.head, data=bytes(data), accepted_at=now)
        return self.head

    def extend(self, datas: Sequence[bytes], now: float) -> int:
        """:meth:`append` each of ``datas``, in order, in one go; the head after them."""
        first = self.head + 1
        self.entries.update(
            (seq, JournalEntry(seq=seq, data=bytes(data), accepted_at=now))
            for seq, data in zip(range(first, first + len(datas)), datas, strict=True)
        )
        self.head += len(datas)
        return self.head

    def read(self, after: int, limit: int) -> list[JournalEntry]:
        if not self.entries:
            return []
        first = max(after + 1, self.first)
        last = min(first + limit - 1, self.head)
        return [self.entries[position] for position in range(first, last + 1)]

    def trim(self, through: int) -> int:
        # Pop by position, not by next(iter(...)): a dict keeps deleted slots at its front, so that would make
        # trimming quadratic.
        count = 0
        for position in range(self.first, min(through, self.head) + 1):
            if self.entries.pop(position, None) is not None:
                count += 1
        self.first = max(self.first, through + 1)
        return count

    def gap(self) -> str | None:
        """Why the positions kept are not one run up to the head, or ``None``."""
        positions = list(self.entries)
        if positions and positions != list(range(positions[0], self.head + 1)):
            return f"positions are not the run {positions[0]}..{self.head} without gaps"
        return None


class LeaseRow:
    """A partition's lease as kept: its owner (``None`` once released), epoch and expiry on the store's clock."""

    __slots__ = ("epoch", "expires_at", "owner")

    def __init__(self) -> None:
        self.owner: str | None = None
        self.epoch = 0
        self.expires_at = -math.inf

class MemoryTables:
    """Every table of a :class:`~recoverkit.store.MemoryStore` as a dict, under one lock, and the lifecycle.

    The parts are mixins of this class, not objects it delegates to, because several operations span tables
    under the one lock (a claim reads leases, suppressions and purchases; a forget rewrites nearly all of them),
    as one transaction spans tables in :class:`~recoverkit.store.SQLiteStore`.
    """

    def __init__(self, partitions: int = 1, *, clock: Callable[[], float] = time.time) -> None:
        self._partitions = check_partitions(partitions)
        #: The store's clock, which judges the partition leases (one process: one clock).
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False
        # With one partition, the one-sequence journal methods are partition 0's.
        self._logs = [PartitionLog() for _ in range(partitions)]
        self._partition_leases = [LeaseRow() for _ in range(partitions)]
        self._partition_checkpoints: dict[int, Checkpoint] = {}
        self._checkpoint: Checkpoint | None = None
        self._cart_purchases: dict[str, float] = {}
        self._contact_purchases: dict[str, float] = {}
        self._ledger: dict[str, LedgerEntry] = {}
        #: Contact key -> the keys of their ledger entries: a claim with caps counts one contact's entries, not
        #: every entry of the ledger (which grew a claim's cost with the ledger, a replay's with its square).
        self._ledger_of: dict[str, set[str]] = {}
        self._claimed_in: dict[str, int] = {}  # ledger key -> the partition whose owner claimed it (claim_fenced)
        self._leases: dict[str, tuple[str, float]] = {}  # name -> (owner, expires_at)
        self._letters: dict[str, tuple[DeadLetterRecord, bool]] = {}  # key -> (letter, resent)
        self._salt = os.urandom(SALT_BYTES)
        self._suppressed: dict[str, tuple[str, float]] = {}  # hash -> (reason, at)
        self._codes: dict[str, CodeRecord] = {}  # code_hash -> record
        # Facts for analytics, by natural key; the first fact of a key is kept.
        self._assignments: dict[tuple[str, str], Assignment] = {}  # (cart_key, flow)
        self._conversions: dict[tuple[str, float], Conversion] = {}  # (cart_key, at)
        self._outcomes: dict[tuple[str, str], MessageOutcome] = {}  # (message key, outcome)
        self._visits: dict[tuple[str, float], LinkVisit] = {}  # (cart_key, at)
        self._attempts: dict[str, list[float]] = {}  # client key -> times of failed redemptions
        self._states: dict[str, SavedState] = {}  # name -> the state last saved (store/_state.py)
        self._operations = 0
        self._failed = 0

    # Every method runs under the lock and checks that the store is open. Writes also count themselves.

    def _enter(self, write: bool) -> None:
        if self._closed:
            raise StoreError("MemoryStore was used after close()")
        if write:
            self._operations += 1

    def check(self) -> list[str]:
        """Check the invariants the dicts rely on; empty when they hold (they should, always)."""
        with self._lock:
            self._enter(write=False)
            problems = [
                f"journal partition {partition}: {gap}"
                for partition, log in enumerate(self._logs)
                if (gap := log.gap()) is not None
            ]
            problems += [
                f"ledger entry {key!r} is filed under key {entry.key!r}"
                for key, entry in self._ledger.items()
                if entry.key != key
            ]
            indexed = {(contact, key) for contact, keys in self._ledger_of.items() for key in keys}
            if indexed != {(entry.contact_key, key) for key, entry in self._ledger.items()}:
                problems.append("the ledger's index by contact does not match its entries")
            return problems

    @property
    def partitions(self) -> int:
        """How many partitions the journal has (fixed when the store was made)."""
        return self._partitions

    def _unindex(self, contact_key: str, key: str) -> None:
        """A ledger entry of ``contact_key`` is gone: it leaves the index by contact too."""
        keys = self._ledger_of.get(contact_key)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._ledger_of[contact_key]

    def _one_sequence(self, method: str) -> None:
        """Refuse a one-sequence journal or checkpoint method on a store of several partitions."""
        if self._partitions != 1:
            raise no_single_sequence(method, self._partitions)

    def statistics(self) -> StoreStatistics:
        with self._lock:
            done = self._operations - self._failed
            return StoreStatistics(
                operations=self._operations, failed=self._failed, commits=done, largest_group=min(done, 1)
            )

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
