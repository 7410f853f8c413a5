"""The contract of :class:`~recoverkit.store.JournalStore`: the journal: consecutive seqs never reused, reads in order,
trims, concurrent appends.

See :mod:`tests.store.contract_base` for how a backend subclasses it."""

from __future__ import annotations

import threading

import pytest

from recoverkit.store import (
    JournalEntry,
    JournalStore,
    Store,
)

from .contract_base import T0, StoreFixture

__all__ = ["JournalContract"]


class JournalContract(StoreFixture):
    """What every store promises as a :class:`~recoverkit.store.JournalStore`."""

    def test_satisfies_the_journal_store_protocol(self, store: Store) -> None:
        assert isinstance(store, JournalStore)

    def test_append_returns_the_seq_of_the_last_event_and_numbers_events_consecutively(self, store: Store) -> None:
        assert store.append_events([b"a", b"b", b"c"], now=T0) == 3
        assert store.append_events([b"d"], now=T0 + 1) == 4
        assert store.append_events([b"e", b"f"], now=T0 + 2) == 6
        assert [e.seq for e in store.read_events(0, 100)] == [1, 2, 3, 4, 5, 6]
        assert store.last_seq() == 6

    def test_events_keep_their_bytes_and_the_time_they_were_accepted(self, store: Store) -> None:
        payload = bytes(range(256)) + b'{"event": "add_to_cart"}'
        store.append_events([payload, b""], now=T0 + 5)
        assert store.read_events(0, 10) == [
            JournalEntry(seq=1, data=payload, accepted_at=T0 + 5),
            JournalEntry(seq=2, data=b"", accepted_at=T0 + 5),
        ]

    def test_read_events_returns_entries_after_a_seq_in_ascending_order_up_to_limit(self, store: Store) -> None:
        store.append_events([str(i).encode() for i in range(1, 11)], now=T0)
        assert [e.seq for e in store.read_events(3, 4)] == [4, 5, 6, 7]
        assert [e.data for e in store.read_events(8, 100)] == [b"9", b"10"]
        assert store.read_events(10, 100) == []

    def test_appending_nothing_writes_nothing_and_returns_the_last_seq(self, store: Store) -> None:
        assert store.append_events([], now=T0) == 0
        store.append_events([b"a"], now=T0)
        assert store.append_events([], now=T0) == 1
        assert store.read_events(0, 10) == [JournalEntry(seq=1, data=b"a", accepted_at=T0)]

    def test_trim_deletes_entries_through_a_seq_and_counts_them(self, store: Store) -> None:
        store.append_events([b"a", b"b", b"c", b"d"], now=T0)
        assert store.trim_events(2) == 2
        assert [e.seq for e in store.read_events(0, 10)] == [3, 4]
        assert store.trim_events(2) == 0
        assert store.last_seq() == 4

    def test_seqs_are_never_reused_even_after_trimming_everything(self, store: Store) -> None:
        store.append_events([b"a", b"b"], now=T0)
        assert store.trim_events(store.last_seq()) == 2
        assert store.last_seq() == 2
        assert store.append_events([b"c"], now=T0) == 3
        assert store.read_events(0, 10) == [JournalEntry(seq=3, data=b"c", accepted_at=T0)]

    @pytest.mark.parametrize(("after", "limit"), [(0, 0), (0, -1), (-1, 10)])
    def test_read_events_rejects_a_bad_window(self, store: Store, after: int, limit: int) -> None:
        with pytest.raises(ValueError, match="read_events: expected"):
            store.read_events(after, limit)

    def test_concurrent_appends_from_threads_all_get_distinct_consecutive_seqs(self, store: Store) -> None:
        results: list[tuple[int, int]] = []  # (last seq, events in the call)
        lock = threading.Lock()

        def append(thread: int) -> None:
            for i in range(25):
                count = 1 + (thread + i) % 3
                last = store.append_events([f"{thread}-{i}-{j}".encode() for j in range(count)], now=T0)
                with lock:
                    results.append((last, count))

        threads = [threading.Thread(target=append, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seqs = [last - j for last, count in results for j in range(count)]
        assert sorted(seqs) == list(range(1, len(seqs) + 1))
        entries = store.read_events(0, 10_000)
        assert len(entries) == len(seqs) == store.last_seq()
        # the events of one call are consecutive, in the order given
        by_seq = {e.seq: e.data for e in entries}
        for last, count in results:
            names = [by_seq[s].decode().rsplit("-", 1) for s in range(last - count + 1, last + 1)]
            assert len({prefix for prefix, _ in names}) == 1
            assert [int(j) for _, j in names] == list(range(count))

    def test_trimming_a_long_journal_in_steps_keeps_the_rest_in_order(self, store: Store) -> None:
        store.append_events([str(i).encode() for i in range(5000)], now=T0)
        for through in range(0, 5001, 250):
            store.trim_events(through)
            entries = store.read_events(0, 10)
            assert [e.seq for e in entries] == list(range(through + 1, min(through + 11, 5001)))
        assert store.check() == []
