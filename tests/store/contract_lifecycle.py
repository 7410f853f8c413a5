"""The contract of :class:`~recoverkit.store.StoreLifecycle`: the whole store and its lifecycle: the protocol, a new
store empty, check, statistics, close.

See :mod:`tests.store.contract_base` for how a backend subclasses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from recoverkit.errors import StoreError
from recoverkit.store import (
    PIPELINE_LEASE,
    Store,
    StoreLifecycle,
)

from .contract_base import T0, StoreFixture, claim, owned

__all__ = ["LifecycleContract"]


class LifecycleContract(StoreFixture):
    """What every store promises as a :class:`~recoverkit.store.StoreLifecycle`."""

    def test_satisfies_the_store_lifecycle_protocol(self, store: Store) -> None:
        assert isinstance(store, StoreLifecycle)

    def test_satisfies_the_store_protocol(self, store: Store) -> None:
        assert isinstance(store, Store)

    def test_a_new_store_is_empty(self, store: Store) -> None:
        assert store.last_seq() == 0
        assert store.read_events(0, 100) == []
        assert store.load_checkpoint() is None
        assert store.ledger() == []
        assert store.dead_letters() == []
        assert store.lease_holder(PIPELINE_LEASE, now=T0) is None

    def test_check_finds_nothing_wrong_with_a_store_in_use(self, store: Store) -> None:
        owned(store)
        store.append_events([b"a", b"b", b"c"], now=T0)
        store.trim_events(1)
        store.save_checkpoint(2, b"s", now=T0)
        store.record_purchase(cart_key="c", contact_key="p", at=T0)
        claim(store, "k")
        store.add_dead_letter("d", b"x", error="e", attempts=1, permanent=True, at=T0, contact_key="p")
        store.suppress("q", reason="unsubscribed", at=T0)
        store.forget("p", at=T0)
        store.purge(ledger_before=T0, purchases_before=T0, dead_letters_before=T0)
        assert store.check() == []

    def test_statistics_count_writes_and_the_writes_that_failed(self, store: Store) -> None:
        store.append_events([b"a"], now=T0)
        store.acquire_lease("pipeline", "w1", ttl=1, now=T0)
        with pytest.raises(StoreError):
            store.resolve("nope", "sent")
        store.read_events(0, 10)  # reads are not counted
        store.append_events([], now=T0)  # nor is appending nothing, which writes nothing
        stats = store.statistics()
        assert (stats.operations, stats.failed) == (3, 1)
        assert 1 <= stats.commits <= 3 and stats.largest_group >= 1

    def test_close_is_idempotent_and_a_closed_store_refuses_work(self, store: Store) -> None:
        store.close()
        store.close()
        with pytest.raises(StoreError, match=r"used after close\(\)"):
            store.append_events([b"a"], now=T0)
        with pytest.raises(StoreError, match=r"used after close\(\)"):
            store.last_seq()

    def test_the_context_manager_closes_the_store(self, tmp_path: Path) -> None:
        with self.make_store(tmp_path) as store:
            store.append_events([b"a"], now=T0)
        with pytest.raises(StoreError, match="close"):
            store.read_events(0, 1)
