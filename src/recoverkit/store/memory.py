"""``MemoryStore``: the store in a few dicts, for tests. It keeps nothing across a restart."""

from __future__ import annotations

# The store is a composition of one part per protocol of recoverkit.store.base (and the partitioned one), each a
# mixin of MemoryTables (the dicts, the lock and the lifecycle), in the modules named after what they keep.
from ._memory_audit import MemoryAudit
from ._memory_onsite import MemoryOnsite
from ._memory_partitions import MemoryPartitions
from ._memory_pipeline import MemoryCheckpoint, MemoryJournal, MemoryLeases, MemoryLedger
from ._memory_records import MemoryCodes, MemoryDeadLetters, MemoryFacts, MemoryPrivacy
from ._memory_state import MemoryStates
from ._memory_tables import MemoryTables

__all__ = ["MemoryStore"]


class MemoryStore(
    # First: the on-site offers' forget() adds a contact's waiting offers to the privacy part's erasure, and the
    # audit log's __init__ passes every argument on to the others'.
    MemoryOnsite,
    MemoryStates,
    MemoryAudit,
    MemoryPartitions,
    MemoryJournal,
    MemoryCheckpoint,
    MemoryLeases,
    MemoryLedger,
    MemoryFacts,
    MemoryCodes,
    MemoryDeadLetters,
    MemoryPrivacy,
    MemoryTables,
):
    """A :class:`~recoverkit.store.Store` and :class:`~recoverkit.store.PartitionedStore` held in memory:
    thread-safe, fast, and gone with the process.

    It answers exactly as :class:`~recoverkit.store.SQLiteStore` does (both pass the same contract tests), so a
    shop's tests and recoverkit's own can use it in place of a file. One lock serialises every method. Each
    instance draws its own salt, so :meth:`hash_contact` differs between instances.

    ``partitions`` (1 to 1024, else :class:`ValueError`) is the journal's number of partitions, fixed for the
    store's life; with one, the one-sequence methods (``append_events``, ``save_checkpoint`` ...) are partition 0's
    journal and a checkpoint beside it, and with more they raise :class:`~recoverkit.errors.StoreError`. ``clock``
    (epoch seconds) judges the partition leases: tests pass a clock they move by hand to make a lease expire at
    once.
    """
