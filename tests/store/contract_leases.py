"""The contract of :class:`~recoverkit.store.LeaseStore`: leases: one holder at a time, void at expiry, renewed or
taken.

See :mod:`tests.store.contract_base` for how a backend subclasses it."""

from __future__ import annotations

import pytest

from recoverkit.store import (
    LeaseStore,
    Store,
)

from .contract_base import T0, StoreFixture

__all__ = ["LeaseContract"]


class LeaseContract(StoreFixture):
    """What every store promises as a :class:`~recoverkit.store.LeaseStore`."""

    def test_satisfies_the_lease_store_protocol(self, store: Store) -> None:
        assert isinstance(store, LeaseStore)

    def test_a_free_lease_is_acquired(self, store: Store) -> None:
        assert store.acquire_lease("pipeline", "w1", ttl=10, now=T0)
        assert store.lease_holder("pipeline", now=T0 + 9.9) == "w1"

    def test_a_held_lease_cannot_be_taken_by_another_owner(self, store: Store) -> None:
        store.acquire_lease("pipeline", "w1", ttl=10, now=T0)
        assert not store.acquire_lease("pipeline", "w2", ttl=10, now=T0 + 9.9)
        assert store.lease_holder("pipeline", now=T0 + 9.9) == "w1"

    def test_renewing_extends_the_lease_from_now(self, store: Store) -> None:
        store.acquire_lease("pipeline", "w1", ttl=10, now=T0)
        assert store.acquire_lease("pipeline", "w1", ttl=10, now=T0 + 8)
        assert store.lease_holder("pipeline", now=T0 + 17.9) == "w1"
        assert not store.acquire_lease("pipeline", "w2", ttl=10, now=T0 + 17.9)

    def test_a_lease_expires_at_its_expiry_time_and_can_then_be_taken(self, store: Store) -> None:
        store.acquire_lease("pipeline", "w1", ttl=10, now=T0)
        assert store.lease_holder("pipeline", now=T0 + 10) is None
        assert store.acquire_lease("pipeline", "w2", ttl=10, now=T0 + 10)
        assert store.lease_holder("pipeline", now=T0 + 11) == "w2"
        assert not store.acquire_lease("pipeline", "w1", ttl=10, now=T0 + 11)  # the old owner lost it

    def test_releasing_frees_the_lease(self, store: Store) -> None:
        store.acquire_lease("pipeline", "w1", ttl=10, now=T0)
        store.release_lease("pipeline", "w1")
        assert store.lease_holder("pipeline", now=T0) is None
        assert store.acquire_lease("pipeline", "w2", ttl=10, now=T0)

    def test_releasing_a_lease_held_by_another_owner_does_nothing(self, store: Store) -> None:
        store.acquire_lease("pipeline", "w1", ttl=10, now=T0)
        store.release_lease("pipeline", "w2")
        store.release_lease("never-taken", "w2")
        assert store.lease_holder("pipeline", now=T0) == "w1"

    def test_leases_of_different_names_are_independent(self, store: Store) -> None:
        assert store.acquire_lease("pipeline", "w1", ttl=10, now=T0)
        assert store.acquire_lease("compaction", "w2", ttl=10, now=T0)
        assert (store.lease_holder("pipeline", now=T0), store.lease_holder("compaction", now=T0)) == ("w1", "w2")

    def test_take_lease_says_taken_for_a_free_lease_and_renewed_for_the_owners_own(self, store: Store) -> None:
        assert store.take_lease("pipeline", "w1", ttl=10, now=T0) == "taken"
        assert store.take_lease("pipeline", "w1", ttl=10, now=T0 + 5) == "renewed"
        assert store.take_lease("pipeline", "w2", ttl=10, now=T0 + 14.9) is None
        assert store.lease_holder("pipeline", now=T0 + 14.9) == "w1"

    def test_an_expired_lease_nobody_took_meanwhile_is_renewed(self, store: Store) -> None:
        # A stall past the lease: the owner may carry on, as nobody else can have held it.
        store.take_lease("pipeline", "w1", ttl=10, now=T0)
        assert store.take_lease("pipeline", "w1", ttl=10, now=T0 + 60) == "renewed"
        assert store.lease_holder("pipeline", now=T0 + 69.9) == "w1"

    def test_a_lease_another_owner_held_meanwhile_is_taken_not_renewed(self, store: Store) -> None:
        store.take_lease("pipeline", "w1", ttl=10, now=T0)
        assert store.take_lease("pipeline", "w2", ttl=10, now=T0 + 10) == "taken"
        assert store.take_lease("pipeline", "w1", ttl=10, now=T0 + 20) == "taken"  # w2's expired: back, but taken

    def test_a_lease_another_owner_held_and_released_meanwhile_is_taken_not_renewed(self, store: Store) -> None:
        store.take_lease("pipeline", "w1", ttl=10, now=T0)
        store.take_lease("pipeline", "w2", ttl=10, now=T0 + 10)
        store.release_lease("pipeline", "w2")
        assert store.take_lease("pipeline", "w1", ttl=10, now=T0 + 11) == "taken"

    @pytest.mark.parametrize("ttl", [0.0, -1.0, float("nan")])
    def test_acquire_lease_rejects_a_ttl_that_is_not_positive(self, store: Store, ttl: float) -> None:
        with pytest.raises(ValueError, match="ttl"):
            store.acquire_lease("pipeline", "w1", ttl=ttl, now=T0)
