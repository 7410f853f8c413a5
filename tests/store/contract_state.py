"""The contract of :class:`~recoverkit.store.StateStore`: named state blobs, one row per name, fenced by a lease."""

from __future__ import annotations

from typing import Any

import pytest

from recoverkit.store import SavedState, StateStore
from recoverkit.store._state import MAX_STATE_BYTES

from .contract_base import T0, StoreFixture

__all__ = ["StateContract"]

LEASE = "alerts"


class StateContract(StoreFixture):
    def test_the_built_in_store_is_a_state_store(self, store: Any) -> None:
        assert isinstance(store, StateStore)

    def test_nothing_saved_loads_as_none(self, store: Any) -> None:
        assert store.load_state("watcher") is None

    def test_a_saved_state_loads_back_whole_with_its_time(self, store: Any) -> None:
        blob = bytes(range(256)) * 300  # every byte value, 76,800 bytes
        assert store.save_state("watcher", blob, now=T0) is True
        assert store.load_state("watcher") == SavedState(name="watcher", state=blob, saved_at=T0, owner=None)

    def test_a_save_replaces_the_last_one_under_its_name_only(self, store: Any) -> None:
        store.save_state("watcher", b"one", now=T0)
        store.save_state("other", b"other", now=T0 + 1)
        store.save_state("watcher", b"two", now=T0 + 2)
        assert store.load_state("watcher") == SavedState(name="watcher", state=b"two", saved_at=T0 + 2, owner=None)
        assert store.load_state("other").state == b"other"

    def test_an_empty_state_is_a_state(self, store: Any) -> None:
        store.save_state("watcher", b"", now=T0)
        assert store.load_state("watcher").state == b""

    def test_a_fenced_save_is_written_while_its_owner_holds_the_lease(self, store: Any) -> None:
        assert store.acquire_lease(LEASE, "w-1", ttl=10, now=T0)
        assert store.save_state("watcher", b"w-1", now=T0 + 5, lease=LEASE, owner="w-1") is True
        assert store.load_state("watcher") == SavedState(name="watcher", state=b"w-1", saved_at=T0 + 5, owner="w-1")

    def test_a_holder_that_lost_the_lease_never_overwrites_the_new_holders_save(self, store: Any) -> None:
        assert store.acquire_lease(LEASE, "w-1", ttl=10, now=T0)
        assert store.acquire_lease(LEASE, "w-2", ttl=10, now=T0 + 10)  # w-1's expired at T0 + 10 exactly
        assert store.save_state("watcher", b"w-2", now=T0 + 11, lease=LEASE, owner="w-2") is True
        # w-1, stalled, wakes up believing its clock: refused whatever time it passes.
        assert store.save_state("watcher", b"w-1", now=T0 + 9, lease=LEASE, owner="w-1") is False
        assert store.save_state("watcher", b"w-1", now=T0 + 12, lease=LEASE, owner="w-1") is False
        assert store.load_state("watcher").state == b"w-2"

    def test_a_fenced_save_is_refused_once_the_lease_expired_or_was_released(self, store: Any) -> None:
        assert store.acquire_lease(LEASE, "w-1", ttl=10, now=T0)
        assert store.save_state("watcher", b"late", now=T0 + 10, lease=LEASE, owner="w-1") is False
        store.release_lease(LEASE, "w-1")
        assert store.save_state("watcher", b"gone", now=T0 + 1, lease=LEASE, owner="w-1") is False
        assert store.save_state("watcher", b"never", now=T0, lease="never-taken", owner="w-1") is False
        assert store.load_state("watcher") is None

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            ({"name": ""}, r"expected `name` to be a non-empty string"),
            ({"name": "x" * 201}, r"at most 200 characters"),
            ({"state": "text"}, r"expected `state` to be bytes, got str"),
            ({"now": float("nan")}, r"expected `now` to be epoch seconds, got nan"),
            ({"lease": LEASE}, r"expected `lease` and `owner` both \(non-empty\) or neither, got 'alerts' and None"),
            ({"owner": "w-1"}, r"`lease` and `owner` both"),
            ({"lease": "", "owner": "w-1"}, r"`lease` and `owner` both"),
        ],
    )
    def test_bad_arguments_are_refused_naming_them(
        self, store: Any, arguments: dict[str, Any], message: str
    ) -> None:
        call: dict[str, Any] = {"name": "watcher", "state": b"x", "now": T0, **arguments}
        with pytest.raises(ValueError, match=message):
            store.save_state(call.pop("name"), call.pop("state"), **call)
        assert store.load_state("watcher") is None

    def test_a_state_over_the_limit_is_refused_naming_the_limit(self, store: Any) -> None:
        with pytest.raises(ValueError, match=rf"at most {MAX_STATE_BYTES} bytes, got {MAX_STATE_BYTES + 1}"):
            store.save_state("watcher", b"x" * (MAX_STATE_BYTES + 1), now=T0)
