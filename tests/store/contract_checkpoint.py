"""The contract of :class:`~recoverkit.store.CheckpointStore`: the checkpoint: replaced whole, never moved back.

See :mod:`tests.store.contract_base` for how a backend subclasses it."""

from __future__ import annotations

import pytest

from recoverkit.store import (
    Checkpoint,
    CheckpointStore,
    Store,
)

from .contract_base import T0, StoreFixture

__all__ = ["CheckpointContract"]


class CheckpointContract(StoreFixture):
    """What every store promises as a :class:`~recoverkit.store.CheckpointStore`."""

    def test_satisfies_the_checkpoint_store_protocol(self, store: Store) -> None:
        assert isinstance(store, CheckpointStore)

    def test_save_checkpoint_replaces_the_previous_one(self, store: Store) -> None:
        store.save_checkpoint(10, b"state at 10", now=T0)
        store.save_checkpoint(25, b"state at 25", now=T0 + 60)
        assert store.load_checkpoint() == Checkpoint(position=25, state=b"state at 25", saved_at=T0 + 60)

    def test_a_checkpoint_never_moves_back(self, store: Store) -> None:
        assert store.save_checkpoint(25, b"state at 25", now=T0) is True
        assert store.save_checkpoint(10, b"stale state at 10", now=T0 + 60) is False
        assert store.load_checkpoint() == Checkpoint(position=25, state=b"state at 25", saved_at=T0)
        assert store.save_checkpoint(25, b"again at 25", now=T0 + 120) is True
        assert store.load_checkpoint() == Checkpoint(position=25, state=b"again at 25", saved_at=T0 + 120)

    def test_a_checkpoint_at_position_zero_with_empty_state_loads(self, store: Store) -> None:
        store.save_checkpoint(0, b"", now=T0)
        assert store.load_checkpoint() == Checkpoint(position=0, state=b"", saved_at=T0)

    def test_save_checkpoint_rejects_a_negative_position(self, store: Store) -> None:
        with pytest.raises(ValueError, match=r"position.*-1"):
            store.save_checkpoint(-1, b"", now=T0)
