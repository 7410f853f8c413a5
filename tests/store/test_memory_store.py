from __future__ import annotations

from pathlib import Path

from recoverkit.store import MemoryStore

from .contract import (
    T0,
    CheckpointContract,
    CodeContract,
    DeadLetterContract,
    FactContract,
    JournalContract,
    LeaseContract,
    LedgerContract,
    LifecycleContract,
    PrivacyContract,
)


class TestMemoryStoreContract(
    JournalContract,
    CheckpointContract,
    LeaseContract,
    LedgerContract,
    FactContract,
    CodeContract,
    DeadLetterContract,
    PrivacyContract,
    LifecycleContract,
):
    def make_store(self, directory: Path) -> MemoryStore:
        return MemoryStore()


def test_each_memory_store_is_separate() -> None:
    first, second = MemoryStore(), MemoryStore()
    first.append_events([b"a"], now=T0)
    assert second.last_seq() == 0


def test_stored_bytes_are_copies_of_what_was_given() -> None:
    store = MemoryStore()
    data = bytearray(b"abc")
    store.append_events([data], now=T0)
    data[0] = ord("z")
    assert store.read_events(0, 1)[0].data == b"abc"
