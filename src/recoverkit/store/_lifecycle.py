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
    """Counters of a store's writes since it was opened, and of its connection troubles.

    ``operations`` write calls made, ``failed`` of them raised, ``commits`` transactions committed;
    ``largest_group`` is the most operations one commit carried (the group commit of
    :class:`~recoverkit.store.SQLiteStore`; 1 for a store that commits each write alone).

    A store reached over a network (``PostgresStore``) also counts, over its reads and writes: ``retries``,
    operations tried again (after a lost connection or a conflict with another transaction, when nothing of the
    failed try can have been applied); ``reconnects``, broken connections it discarded and replaced;
    ``connection_errors``, tries that failed because the connection was lost or could not be had; and
    ``unknown_outcomes``, writes whose connection was lost while they committed (raised, not retried: they may or
    may not have been applied). The others leave them at 0.
    """

    operations: int = 0
    failed: int = 0
    commits: int = 0
    largest_group: int = 0
    retries: int = 0
    reconnects: int = 0
    connection_errors: int = 0
    unknown_outcomes: int = 0


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
