"""Partitions: a journal split by session, one lease and one checkpoint per partition (:class:`PartitionedStore`).

What several engine processes sharing one store need (issue 14, ``docs/scaling.md``):

- **Partitions.** An event belongs to partition :func:`partition_of` (its session id) out of the store's fixed
  number (:attr:`PartitionedStore.partitions`, set when the store is created). Everything about a session (its
  events, the carts, timers and schedule they build) is in one partition, so one owner at a time can run it.
- **Positions without gaps under concurrent writers.** Each partition's positions are 1, 2, 3, ... handed out in
  commit order: a reader that saw position *n* has seen every position below it, so reading ``position > last``
  never skips a row that commits later.
- **Leases with an epoch, on the store's clock.** A partition's lease says who owns it until when, judged by the
  store's clock (the database server's for PostgreSQL: the hosts' clocks may disagree, the server's is one; this
  host's for SQLite and memory, which one host shares). The epoch rises each time the lease passes to another
  owner (or is taken again after a release). Every write made as an owner (a checkpoint, a claim, marking the
  outcomes of a dead owner unknown) names the epoch it holds and is refused unless that owner holds the
  partition at that epoch, unexpired, when it commits: a stalled process that wakes up after losing its
  partition can write nothing.
- **Fenced checkpoints.** One per partition, written only by the current owner, never moved back.
- **Members.** Each engine process says it is alive (:meth:`PartitionedStore.heartbeat`), so that partitions
  can be spread evenly over the live ones, a process that joins gets its share and one that leaves hands its
  share over.
- **Writers' marks.** In event time (a replay), each process that journals says how far in event time it has
  written (:meth:`PartitionedStore.mark_writer`), so a partition's watermark is the minimum over the writers, not
  the latest event it has seen: one writer running ahead cannot make a partition fire a timer before a slower
  writer has written that session's last event.

What is global stays global: the ledger, purchases, suppressions, codes, facts and dead letters are the
:class:`~recoverkit.store.Store` protocols', shared by every partition. A fenced claim checks the customer's
purchases and suppression in every partition.

A store made with one partition is also today's one-sequence store: ``append_events``, ``read_events`` and
``save_checkpoint`` are partition 0's journal and a checkpoint beside it. On a store with more, those raise
:class:`~recoverkit.errors.StoreError` naming the partitioned methods.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import msgspec

from ._checkpoint import Checkpoint
from ._journal import JournalEntry
from ._ledger import Claim, ClaimRequest

__all__ = [
    "CheckpointAnswer",
    "PartitionLease",
    "PartitionStatus",
    "PartitionedStore",
    "check_partitions",
    "partition_of",
]

#: What :meth:`PartitionedStore.save_partition_checkpoint` answers: ``"saved"``; ``"behind"``, a checkpoint with
#: a higher position is stored (kept); ``"fenced"``, the caller does not hold the partition's lease at the epoch
#: it named (or it expired): nothing was written.
CheckpointAnswer = Literal["saved", "behind", "fenced"]

#: The most partitions a store may have: each is a lease, a head and a checkpoint, and an engine process
#: renews the leases it owns; thousands would only cost round trips.
MAX_PARTITIONS = 1024


def partition_of(session_id: str, partitions: int) -> int:
    """The partition (0 .. ``partitions`` - 1) of the events of ``session_id``: the same in every process.

    A keyed-free BLAKE2b hash (not Python's ``hash``, which is salted per process) of the id's UTF-8 bytes,
    modulo ``partitions``.
    """
    digest = hashlib.blake2b(session_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def check_partitions(partitions: object) -> int:
    """``partitions`` if it is a valid number of partitions for a new store, else :class:`ValueError`."""
    if isinstance(partitions, bool) or not isinstance(partitions, int) or not 1 <= partitions <= MAX_PARTITIONS:
        raise ValueError(f"expected `partitions` to be an integer from 1 to {MAX_PARTITIONS}, got {partitions!r}")
    return partitions


class PartitionLease(msgspec.Struct, frozen=True, kw_only=True):
    """A partition's lease as the store saw it: ``owner`` (``None`` when free, released or expired), its
    ``epoch`` (the fencing token) and when it expires, in epoch seconds of the store's clock."""

    partition: int
    owner: str | None
    epoch: int
    expires_at: float


class PartitionStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One partition as :meth:`PartitionedStore.partition_status` reports it: the ``head`` (highest position
    handed out), the ``checkpoint`` position (0 without one), the ``lag`` between them (events a new owner would
    replay), and the lease (``owner`` ``None`` when free or expired, judged by the store's clock)."""

    partition: int
    head: int
    checkpoint: int
    lag: int
    owner: str | None
    epoch: int


@runtime_checkable
class PartitionedStore(Protocol):
    """The partitioned journal, partition leases with their fencing epoch, fenced checkpoints and claims, and
    the members that share the partitions; see the module docstring for what each promises.

    Every method is one transaction, synchronous and thread-safe. A bad partition number, limit or ``ttl``
    raises :class:`ValueError` naming it.
    """

    @property
    def partitions(self) -> int:
        """How many partitions the journal has (fixed when the store was created)."""
        ...

    def partition_of(self, session_id: str) -> int:
        """The partition of ``session_id``'s events in this store (:func:`partition_of`)."""
        ...

    # -- the journal ------------------------------------------------------------------------------------------

    def append_keyed(self, events: Sequence[tuple[str, bytes]], *, now: float) -> list[tuple[int, int]]:
        """Append ``(session_id, data)`` events accepted at ``now``, each to its session's partition, in one
        transaction; return each event's ``(partition, position)``, in the order given.

        The events of one partition in one call get consecutive positions in the order given, above every
        position handed out before in that partition. No events: nothing written, ``[]``.
        """
        ...

    def append_to(self, events: Sequence[tuple[int, bytes]], *, now: float) -> list[tuple[int, int]]:
        """:meth:`append_keyed` with each event's partition given (an erasure request goes to every partition)."""
        ...

    def read_partition(self, partition: int, after: int, limit: int) -> list[JournalEntry]:
        """Up to ``limit`` (>= 1) events of ``partition`` with ``position > after``, by position (an entry's
        ``seq`` is its position)."""
        ...

    def partition_head(self, partition: int) -> int:
        """The highest position ever handed out in ``partition`` (0 for none), trimmed or not."""
        ...

    def partition_heads(self) -> list[int]:
        """Every partition's head, by partition, from one snapshot (how an owner learns what others appended)."""
        ...

    def trim_partition(self, partition: int, through: int) -> int:
        """Delete the events of ``partition`` with ``position <= through``; return how many. Positions are never
        reused."""
        ...

    # -- leases -----------------------------------------------------------------------------------------------

    def take_partition(self, partition: int, owner: str, *, ttl: float) -> PartitionLease | None:
        """Take or renew ``partition``'s lease for ``owner`` for ``ttl`` seconds of the store's clock.

        ``None`` when another owner holds it unexpired. Otherwise the lease, whose ``epoch`` is the one held
        before if ``owner`` held it last (renewed, even after it expired: nobody took it meanwhile, so nobody
        wrote with another epoch), and one higher if it passed from anyone else (or from a release): a process
        that finds its epoch changed lost the partition meanwhile and must restore from the checkpoint.
        """
        ...

    def release_partition(self, partition: int, owner: str) -> bool:
        """Give ``partition`` up at once if ``owner`` holds it (a clean shutdown hands it over without waiting for
        the lease to lapse); whether it did. The epoch stays: the next taker raises it."""
        ...

    def partition_leases(self) -> list[PartitionLease]:
        """Every partition's lease, by partition, judged now by the store's clock (``owner`` ``None`` if free)."""
        ...

    def partition_status(self) -> list[PartitionStatus]:
        """Every partition's head, checkpoint, lag and owner, by partition, from one snapshot."""
        ...

    def heartbeat(self, owner: str, *, ttl: float, now: float) -> list[str]:
        """Record ``owner`` as a live member until ``now + ttl`` and return the live members at ``now``, sorted.

        ``now`` is the caller's wall clock (membership only decides how partitions are spread, never who may
        write: that is the leases' job, on the store's clock).
        """
        ...

    def leave(self, owner: str) -> None:
        """``owner`` is no longer a member (a clean shutdown): the others take its share at once."""
        ...

    # -- writers' event time (replays from several processes) -------------------------------------------------

    def mark_writer(self, writer: str, mark: float) -> None:
        """Record that ``writer`` has committed every event it will write with an event time up to ``mark``
        (it writes in time order): a partition's event-time watermark may pass ``mark`` only once every writer's
        mark has. Marks only move forward (a lower one is ignored). ``-inf``: registered, nothing written yet."""
        ...

    def writer_marks(self) -> dict[str, float]:
        """Every writer's mark (see :meth:`mark_writer`)."""
        ...

    def drop_writer(self, writer: str) -> None:
        """``writer`` has written all it will (it closed): its mark no longer holds the others back."""
        ...

    # -- fenced writes ----------------------------------------------------------------------------------------

    def save_partition_checkpoint(
        self, partition: int, *, owner: str, epoch: int, position: int, state: bytes, now: float
    ) -> CheckpointAnswer:
        """Replace ``partition``'s checkpoint with ``state`` as of ``position``, if ``owner`` holds the partition
        at ``epoch`` (``"fenced"`` otherwise, writing nothing); a stored checkpoint with a higher position is
        kept (``"behind"``). See :data:`CheckpointAnswer`."""
        ...

    def load_partition_checkpoint(self, partition: int) -> Checkpoint | None:
        """``partition``'s last checkpoint, or ``None``."""
        ...

    def claim_fenced(self, partition: int, epoch: int, requests: Sequence[ClaimRequest]) -> list[Claim]:
        """:meth:`~recoverkit.store.LedgerStore.claim_many` for messages of ``partition``, as the owner holding
        its lease at ``epoch``: ``"not_owner"`` unless ``request.owner`` holds it at ``epoch``, unexpired on the
        store's clock. The other answers are ``claim``'s, checked against the purchases and suppressions of every
        partition."""
        ...

    def mark_unknown_in(self, partition: int, *, owner: str, epoch: int) -> int | None:
        """What a new owner of ``partition`` does on taking it: turn the ``"sending"`` ledger entries that earlier
        owners claimed in it into ``"unknown"``; how many. ``None``, changing nothing, unless ``owner`` holds the
        partition at ``epoch``."""
        ...
