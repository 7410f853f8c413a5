"""``MemoryStore``: the store in a few dicts, for tests. It keeps nothing across a restart."""

from __future__ import annotations

# The store is a composition of one part per protocol of recoverkit.store.base, each a mixin of MemoryTables
# (the dicts, the lock and the lifecycle), in the modules named after what they keep.
from ._memory_pipeline import MemoryCheckpoint, MemoryJournal, MemoryLeases, MemoryLedger
from ._memory_records import MemoryCodes, MemoryDeadLetters, MemoryFacts, MemoryPrivacy
from ._memory_tables import MemoryTables

__all__ = ["MemoryStore"]


class MemoryStore(
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
    """A :class:`~recoverkit.store.Store` held in memory: thread-safe, fast, and gone with the process.

    It answers exactly as :class:`~recoverkit.store.SQLiteStore` does (both pass the same contract tests), so a
    shop's tests and recoverkit's own can use it in place of a file. One lock serialises every method. Each
    instance draws its own salt, so :meth:`hash_contact` differs between instances.
    """
