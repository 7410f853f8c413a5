"""The journal: every accepted event, numbered, kept until a checkpoint covers it (:class:`JournalStore`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import msgspec

__all__ = [
    "JournalEntry",
    "JournalStore",
    "check_read_limit",
]

class JournalEntry(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One accepted event: its ``seq`` in the journal, its raw bytes, and when it was accepted.

    ``gc=False``: it holds no references that could form a cycle, and a journal in memory holds many.
    """

    seq: int
    data: bytes
    accepted_at: float


@runtime_checkable
class JournalStore(Protocol):
    """The journal of accepted events, numbered by ``seq`` (1, 2, 3, ...; never reused, even after a trim).

    Guarantees: each call is one transaction. An append is committed when it returns (durable as the backend
    says), and the events of one call get consecutive seqs above every seq handed out before, by any process
    sharing the store. A read sees every append committed before it started. Appends are not fenced by the
    pipeline lease (every process accepts events); the lease holder trims, once a checkpoint covers the seqs
    trimmed (see :class:`~recoverkit.store.CheckpointStore`). ``now`` is when the events were accepted, in epoch
    seconds passed in by the caller: the store never reads a clock.
    """

    def append_events(self, events: Sequence[bytes], *, now: float) -> int:
        """Append ``events`` (accepted at ``now``) and return the seq of the last one.

        The events of one call get consecutive seqs, above every seq handed out before; they are committed
        when this returns. With no events nothing is written and :meth:`last_seq` is returned.
        """
        ...

    def read_events(self, after: int, limit: int) -> list[JournalEntry]:
        """Up to ``limit`` (>= 1) entries with ``seq > after``, in ascending seq order."""
        ...

    def trim_events(self, through: int) -> int:
        """Delete the entries with ``seq <= through``; return how many were deleted. Seqs are not reused."""
        ...

    def last_seq(self) -> int:
        """The highest seq ever handed out (0 for a new store), whether or not it was trimmed since."""
        ...


def check_read_limit(after: int, limit: int) -> None:
    if limit < 1:
        raise ValueError(f"read_events: expected `limit` >= 1, got {limit!r}")
    if after < 0:
        raise ValueError(f"read_events: expected `after` >= 0, got {after!r}")
