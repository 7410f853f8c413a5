"""One partition of a partitioned store, seen as the one-sequence :class:`~recoverkit.store.Store` a pipeline runs on.

Why: the pipeline (ingest, the five stages, ownership with its lease, checkpoints and restores, dispatch with its
claims) is written against one journal, one checkpoint and one :data:`~recoverkit.store.PIPELINE_LEASE`. A
partitioned engine (:mod:`recoverkit._fleet`) runs one such pipeline per partition it owns, each on a
:class:`PartitionView`, so there is one code path for one partition or many, and every promise the pipeline
keeps on one sequence it keeps per partition:

=============================  ================================================================================
the pipeline calls             the view does, on partition ``p``
=============================  ================================================================================
``read_events``, ``trim``,     ``read_partition(p)``, ``trim_partition(p)``, ``partition_head(p)``
``last_seq``, ``append``       (``append_to(p)``: only erasure requests are journaled from inside a pipeline)
``take_lease(PIPELINE)``       ``take_partition(p)``, remembering the epoch: ``"renewed"`` while the epoch is
                               the one this view took, ``"taken"`` when it changed (someone else held it since,
                               so the state must be restored), as :meth:`~recoverkit.store.LeaseStore.take_lease`
                               promises
``release_lease``,             ``release_partition(p)``; the partition's owner on the store's clock
``lease_holder``
``claim``, ``claim_many``      ``claim_fenced(p, epoch)``: refused (``"not_owner"``) unless this view's epoch is
                               still the partition's
``mark_unknown``               ``mark_unknown_in(p, epoch)``: only what earlier owners of ``p`` claimed
``save_checkpoint``,           the fenced per-partition checkpoint; a fenced save raises
``load_checkpoint``            :class:`~recoverkit.errors.StoreError` (the caller must not trim after it)
``purge``                      partition 0's pipeline purges the global tables; the others report nothing
``close``                      nothing: the partitioned engine closes the store it shares
=============================  ================================================================================

Everything else (the ledger's other calls, purchases, codes, facts, dead letters, privacy) is global and goes to
the store unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, cast

import msgspec

from ..errors import StoreError
from ._checkpoint import Checkpoint
from ._journal import JournalEntry
from ._leases import PIPELINE_LEASE, LeaseTaken
from ._ledger import Claim, ClaimByMany, ClaimRequest
from ._partitioned import PartitionedStore
from ._privacy import PurgeReport
from .base import Store

__all__ = ["FencedError", "PartitionView", "SharedStore", "is_partitioned"]


class FencedError(StoreError):
    """A write as a partition's owner was refused: the partition passed to another owner (the lease's epoch moved
    on). Expected after a stall past the lease; the writer must stop acting as owner."""


class SharedStore(Store, PartitionedStore, Protocol):
    """A store several engine processes share: every :class:`~recoverkit.store.Store` protocol and partitions."""


def is_partitioned(store: object) -> bool:
    """Whether ``store`` has a journal in more than one partition (so needs the partitioned engine)."""
    return isinstance(getattr(store, "partitions", 1), int) and getattr(store, "partitions", 1) > 1


class PartitionView(ClaimByMany):
    """Partition ``partition`` of ``store`` as a one-sequence store; see the module docstring.

    One view serves one pipeline (one owner): the epoch it remembers is the one its pipeline holds. Thread-safe
    as the store is (the epoch is written only from the lease renewal, which one task runs).
    """

    def __init__(self, store: SharedStore, partition: int) -> None:
        if not 0 <= partition < store.partitions:
            raise ValueError(f"PartitionView: expected a partition from 0 to {store.partitions - 1}, got {partition!r}")
        self.base = store
        self.partition = partition
        #: The epoch this view's owner holds the partition at (``None``: not taken, or lost).
        self.epoch: int | None = None
        self.owner: str | None = None
        #: The frequency caps every claim carries (``(max, per, channel)``, the engine's ``config.caps``).
        self.caps: tuple[tuple[int, float, str | None], ...] = ()

    @property
    def partitions(self) -> int:
        """1: a view is one sequence (its journal is one partition's)."""
        return 1

    def as_store(self) -> Store:
        """This view, typed as the :class:`~recoverkit.store.Store` it stands in for (the methods it does not
        define are the store's, through ``__getattr__``)."""
        return cast(Store, self)

    def __getattr__(self, name: str) -> Any:
        # Only called for what this class does not define: the global tables, shared by every partition.
        return getattr(self.base, name)

    def __repr__(self) -> str:
        return f"PartitionView({self.base!r}, partition={self.partition}, epoch={self.epoch})"

    # -- the journal ------------------------------------------------------------------------------------------

    def append_events(self, events: Sequence[bytes], *, now: float) -> int:
        if not events:
            return self.last_seq()
        return self.base.append_to([(self.partition, data) for data in events], now=now)[-1][1]

    def read_events(self, after: int, limit: int) -> list[JournalEntry]:
        return self.base.read_partition(self.partition, after, limit)

    def trim_events(self, through: int) -> int:
        return self.base.trim_partition(self.partition, through)

    def last_seq(self) -> int:
        return self.base.partition_head(self.partition)

    # -- the lease --------------------------------------------------------------------------------------------

    def take_lease(self, name: str, owner: str, *, ttl: float, now: float) -> LeaseTaken | None:
        if name != PIPELINE_LEASE:
            return self.base.take_lease(name, owner, ttl=ttl, now=now)
        lease = self.base.take_partition(self.partition, owner, ttl=ttl)
        if lease is None:
            return None
        renewed = self.epoch == lease.epoch and self.owner == owner
        self.epoch, self.owner = lease.epoch, owner
        return "renewed" if renewed else "taken"

    def acquire_lease(self, name: str, owner: str, *, ttl: float, now: float) -> bool:
        return self.take_lease(name, owner, ttl=ttl, now=now) is not None

    def release_lease(self, name: str, owner: str) -> None:
        if name != PIPELINE_LEASE:
            self.base.release_lease(name, owner)
            return
        self.base.release_partition(self.partition, owner)
        self.epoch = None

    def lease_holder(self, name: str, *, now: float) -> str | None:
        if name != PIPELINE_LEASE:
            return self.base.lease_holder(name, now=now)
        return self.base.partition_leases()[self.partition].owner

    # -- fenced writes ----------------------------------------------------------------------------------------

    def claim_many(self, requests: Sequence[ClaimRequest]) -> list[Claim]:
        if self.epoch is None:
            return ["not_owner"] * len(requests)
        if self.caps:  # a customer's carts may be in several partitions: the ledger counts across them
            requests = [msgspec.structs.replace(r, caps=self.caps) for r in requests]
        return self.base.claim_fenced(self.partition, self.epoch, requests)

    def mark_unknown(self, owner: str | None = None) -> int:
        if self.epoch is None or self.owner is None:
            return 0
        # None: the partition passed to someone else meanwhile; their take-over marks it, not this one.
        return self.base.mark_unknown_in(self.partition, owner=self.owner, epoch=self.epoch) or 0

    def save_checkpoint(self, position: int, state: bytes, *, now: float) -> bool:
        if self.epoch is None or self.owner is None:
            raise StoreError(f"partition {self.partition}: no checkpoint written, this process does not own it")
        answer = self.base.save_partition_checkpoint(
            self.partition, owner=self.owner, epoch=self.epoch, position=position, state=state, now=now
        )
        if answer == "fenced":
            # Raised, not answered False: "superseded" lets the caller trim the journal, and a fenced write
            # says nothing about what the stored checkpoint covers.
            raise FencedError(
                f"partition {self.partition}: checkpoint refused, the partition passed to another owner "
                f"(epoch {self.epoch} is no longer its lease)"
            )
        return answer == "saved"

    def load_checkpoint(self) -> Checkpoint | None:
        return self.base.load_partition_checkpoint(self.partition)

    # -- global work done once --------------------------------------------------------------------------------

    def purge(self, **windows: Any) -> PurgeReport:
        """The store's :meth:`~recoverkit.store.PrivacyStore.purge` (same arguments), in partition 0's pipeline
        only: the tables are global, and one owner purges them for all."""
        if self.partition != 0:
            return PurgeReport(ledger_entries=0, purchases=0, dead_letters=0)
        return self.base.purge(**windows)

    def close(self) -> None:
        """Nothing: the store is shared by every partition and closed by the engine that opened it."""
