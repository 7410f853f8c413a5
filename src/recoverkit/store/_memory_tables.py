"""The dicts a :class:`~recoverkit.store.MemoryStore` keeps its tables in, the one lock over them, and the
store's lifecycle; the per-concern parts build on it."""

from __future__ import annotations

import os
import threading
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
from ._privacy import SALT_BYTES

__all__ = ["MemoryTables"]

class MemoryTables:
    """Every table of a :class:`~recoverkit.store.MemoryStore` as a dict, under one lock, and the lifecycle.

    The parts are mixins of this class, not objects it delegates to, because several operations span tables
    under the one lock (a claim reads leases, suppressions and purchases; a forget rewrites nearly all of them),
    as one transaction spans tables in :class:`~recoverkit.store.SQLiteStore`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._journal: dict[int, JournalEntry] = {}  # insertion order is seq order
        self._last_seq = 0
        self._first_seq = 1  # the lowest seq the journal may still hold
        self._checkpoint: Checkpoint | None = None
        self._cart_purchases: dict[str, float] = {}
        self._contact_purchases: dict[str, float] = {}
        self._ledger: dict[str, LedgerEntry] = {}
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
            problems: list[str] = []
            seqs = list(self._journal)
            if seqs and seqs != list(range(seqs[0], self._last_seq + 1)):
                problems.append(f"journal seqs are not the run {seqs[0]}..{self._last_seq} without gaps")
            problems += [
                f"ledger entry {key!r} is filed under key {entry.key!r}"
                for key, entry in self._ledger.items()
                if entry.key != key
            ]
            return problems

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
