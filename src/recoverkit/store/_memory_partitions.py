"""The part of a :class:`~recoverkit.store.MemoryStore` that makes it a :class:`~recoverkit.store.PartitionedStore`:
a journal per partition, partition leases with their epoch on the store's clock, fenced checkpoints and claims,
and the members.

Every method holds the store's one lock for its whole length, which is what a transaction is here: positions are
handed out under it (so in commit order, without gaps), and a fenced write checks the lease and writes before
anyone can take the partition over.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from ._checkpoint import Checkpoint, check_position
from ._journal import JournalEntry
from ._ledger import Claim, ClaimRequest, check_claim
from ._memory_pipeline import MemoryLedger
from ._partition_args import check_partition, check_taker, check_window, check_writer
from ._partitioned import CheckpointAnswer, PartitionLease, PartitionStatus, partition_of

__all__ = ["MEMBER", "MemoryPartitions"]

#: The prefix of the named lease that says a member (an engine process) is alive, as in the other stores.
MEMBER: Final = "member:"
WRITER: Final = "writer:"


class MemoryPartitions(MemoryLedger):
    """:class:`~recoverkit.store.PartitionedStore` in lists by partition; see the module docstring."""

    def partition_of(self, session_id: str) -> int:
        """The partition of ``session_id``'s events in this store (:func:`~recoverkit.store.partition_of`)."""
        return partition_of(session_id, self._partitions)

    def _check(self, method: str, partition: int) -> None:
        check_partition(method, partition, self._partitions)

    # -- the journal --------------------------------------------------------------------------------------------

    def append_keyed(self, events: Sequence[tuple[str, bytes]], *, now: float) -> list[tuple[int, int]]:
        return self._append([(self.partition_of(session), data) for session, data in events], now)

    def append_to(self, events: Sequence[tuple[int, bytes]], *, now: float) -> list[tuple[int, int]]:
        for partition, _ in events:
            self._check("append_to", partition)
        return self._append(events, now)

    def _append(self, events: Sequence[tuple[int, bytes]], now: float) -> list[tuple[int, int]]:
        with self._lock:
            self._enter(write=bool(events))
            return [(partition, self._logs[partition].append(data, now)) for partition, data in events]

    def read_partition(self, partition: int, after: int, limit: int) -> list[JournalEntry]:
        self._check("read_partition", partition)
        check_window("read_partition", after, limit)
        with self._lock:
            self._enter(write=False)
            return self._logs[partition].read(after, limit)

    def partition_head(self, partition: int) -> int:
        self._check("partition_head", partition)
        with self._lock:
            self._enter(write=False)
            return self._logs[partition].head

    def partition_heads(self) -> list[int]:
        with self._lock:
            self._enter(write=False)
            return [log.head for log in self._logs]

    def trim_partition(self, partition: int, through: int) -> int:
        self._check("trim_partition", partition)
        with self._lock:
            self._enter(write=True)
            return self._logs[partition].trim(through)

    # -- leases -------------------------------------------------------------------------------------------------

    def take_partition(self, partition: int, owner: str, *, ttl: float) -> PartitionLease | None:
        self._check("take_partition", partition)
        check_taker("take_partition", owner, ttl)
        with self._lock:
            self._enter(write=True)
            lease = self._partition_leases[partition]
            now = self._clock()
            if lease.owner is not None and lease.owner != owner and lease.expires_at > now:
                return None
            if lease.owner != owner:  # passed from another owner, or taken again after a release
                lease.epoch += 1
                lease.owner = owner
            lease.expires_at = now + ttl
            return PartitionLease(partition=partition, owner=owner, epoch=lease.epoch, expires_at=lease.expires_at)

    def release_partition(self, partition: int, owner: str) -> bool:
        self._check("release_partition", partition)
        with self._lock:
            self._enter(write=True)
            lease = self._partition_leases[partition]
            if lease.owner is None or lease.owner != owner:
                return False
            lease.owner = None
            lease.expires_at = float("-inf")
            return True

    def partition_leases(self) -> list[PartitionLease]:
        with self._lock:
            self._enter(write=False)
            now = self._clock()
            return [
                PartitionLease(
                    partition=partition,
                    owner=lease.owner if lease.expires_at > now else None,
                    epoch=lease.epoch,
                    expires_at=lease.expires_at,
                )
                for partition, lease in enumerate(self._partition_leases)
            ]

    def partition_status(self) -> list[PartitionStatus]:
        with self._lock:
            self._enter(write=False)
            now = self._clock()
            status = []
            for partition, (log, lease) in enumerate(zip(self._logs, self._partition_leases, strict=True)):
                saved = self._partition_checkpoints.get(partition)
                checkpoint = 0 if saved is None else saved.position
                status.append(
                    PartitionStatus(
                        partition=partition,
                        head=log.head,
                        checkpoint=checkpoint,
                        lag=max(log.head - checkpoint, 0),
                        owner=lease.owner if lease.expires_at > now else None,
                        epoch=lease.epoch,
                    )
                )
            return status

    def heartbeat(self, owner: str, *, ttl: float, now: float) -> list[str]:
        check_taker("heartbeat", owner, ttl)
        with self._lock:
            self._enter(write=True)
            self._leases[MEMBER + owner] = (owner, now + ttl)
            return sorted(
                held
                for name, (held, expires_at) in self._leases.items()
                if name.startswith(MEMBER) and expires_at > now
            )

    def leave(self, owner: str) -> None:
        with self._lock:
            self._enter(write=True)
            self._leases.pop(MEMBER + owner, None)

    # -- writers' marks (kept as named leases "writer:<name>", the mark in the expiry) ---------------------------

    def mark_writer(self, writer: str, mark: float) -> None:
        check_writer(writer, mark)
        with self._lock:
            self._enter(write=True)
            held = self._leases.get(WRITER + writer)
            if held is None or mark > held[1]:
                self._leases[WRITER + writer] = (writer, mark)

    def writer_marks(self) -> dict[str, float]:
        with self._lock:
            self._enter(write=False)
            return {held: mark for name, (held, mark) in self._leases.items() if name.startswith(WRITER)}

    def drop_writer(self, writer: str) -> None:
        with self._lock:
            self._enter(write=True)
            self._leases.pop(WRITER + writer, None)

    # -- fenced writes ------------------------------------------------------------------------------------------

    def _holds(self, partition: int, owner: str, epoch: int) -> bool:
        """The fence (the caller holds the lock): ``owner`` holds ``partition`` at ``epoch``, unexpired now."""
        lease = self._partition_leases[partition]
        return lease.owner == owner and lease.epoch == epoch and lease.expires_at > self._clock()

    def save_partition_checkpoint(
        self, partition: int, *, owner: str, epoch: int, position: int, state: bytes, now: float
    ) -> CheckpointAnswer:
        self._check("save_partition_checkpoint", partition)
        check_position(position)
        with self._lock:
            self._enter(write=True)
            if not self._holds(partition, owner, epoch):
                return "fenced"
            saved = self._partition_checkpoints.get(partition)
            if saved is not None and saved.position > position:
                return "behind"
            self._partition_checkpoints[partition] = Checkpoint(position=position, state=bytes(state), saved_at=now)
            return "saved"

    def load_partition_checkpoint(self, partition: int) -> Checkpoint | None:
        self._check("load_partition_checkpoint", partition)
        with self._lock:
            self._enter(write=False)
            return self._partition_checkpoints.get(partition)

    def claim_fenced(self, partition: int, epoch: int, requests: Sequence[ClaimRequest]) -> list[Claim]:
        self._check("claim_fenced", partition)
        for r in requests:
            check_claim(r.key, r.owner)
        if not requests:
            return []
        with self._lock:
            self._enter(write=True)
            return [
                self._admit(r, partition) if self._holds(partition, r.owner, epoch) else "not_owner" for r in requests
            ]

    def mark_unknown_in(self, partition: int, *, owner: str, epoch: int) -> int | None:
        self._check("mark_unknown_in", partition)
        with self._lock:
            self._enter(write=True)
            if not self._holds(partition, owner, epoch):
                return None
            count = 0
            for key, entry in self._ledger.items():
                if entry.state == "sending" and entry.owner != owner and self._claimed_in.get(key) == partition:
                    self._ledger[key] = msgspec.structs.replace(entry, state="unknown")
                    count += 1
            return count
