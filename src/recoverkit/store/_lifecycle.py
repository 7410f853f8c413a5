"""What every store has besides its tables: a health check, counters, and closing (:class:`StoreLifecycle`)."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import msgspec

__all__ = [
    "StoreLifecycle",
    "StoreStatistics",
]

class StoreStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Counters of a store's writes since it was opened.

    ``operations`` write calls made, ``failed`` of them raised, ``commits`` transactions committed;
    ``largest_group`` is the most operations one commit carried (the group commit of
    :class:`~recoverkit.store.SQLiteStore`; 1 for a store that commits each write alone).
    """

    operations: int = 0
    failed: int = 0
    commits: int = 0
    largest_group: int = 0


@runtime_checkable
class StoreLifecycle(Protocol):
    """Checking, counting and closing a store; usable as a context manager that closes it on exit.

    Guarantees: :meth:`close` is idempotent; after it the store's methods (all but :meth:`statistics` and
    :meth:`close`) raise :class:`~recoverkit.errors.StoreError`, and writes other threads had already queued
    when it was called are committed first.
    """

    def check(self) -> list[str]:
        """Problems found in the stored data, one sentence each; empty when the store is healthy."""
        ...

    def statistics(self) -> StoreStatistics:
        """Counters of the writes made through this store object."""
        ...

    def close(self) -> None:
        """Release the store's resources; calling it again does nothing. The store cannot be used after."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
