"""The argument checks the :class:`~recoverkit.store.PartitionedStore` backends in memory and in SQLite share, so
that each refuses a bad partition, owner or ``ttl`` with the same message (PostgreSQL's says the same)."""

from __future__ import annotations

from ..errors import StoreError

__all__ = ["check_partition", "check_taker", "check_window", "check_writer", "no_single_sequence"]


def check_partition(method: str, partition: object, partitions: int) -> None:
    """:class:`ValueError` naming ``method`` and the value unless ``partition`` is one of 0 .. ``partitions`` - 1."""
    if isinstance(partition, bool) or not isinstance(partition, int) or not 0 <= partition < partitions:
        raise ValueError(f"{method}: expected a partition from 0 to {partitions - 1}, got {partition!r}")


def check_taker(method: str, owner: str, ttl: float) -> None:
    """:class:`ValueError` unless ``owner`` is a non-empty string and ``ttl`` a number of seconds above 0."""
    if not isinstance(owner, str) or not owner:
        raise ValueError(f"{method}: expected a non-empty `owner`, got {owner!r}")
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:  # `not >` also refuses NaN
        raise ValueError(f"{method}: expected `ttl` > 0 seconds, got {ttl!r}")


def no_single_sequence(method: str, partitions: int) -> StoreError:
    """What a one-sequence method (``append_events``, ``read_events``, ``save_checkpoint`` ...) raises on a store
    of several partitions, naming the methods to use instead."""
    return StoreError(
        f"{method}: this store's journal has {partitions} partitions, so it has no single sequence; use the "
        "partitioned methods (append_keyed, read_partition, save_partition_checkpoint, ...), or a store made with "
        "partitions=1"
    )


def check_window(method: str, after: int, limit: int) -> None:
    """:class:`ValueError` naming ``method`` unless ``limit`` >= 1 and ``after`` >= 0 (a read of a partition)."""
    if limit < 1:
        raise ValueError(f"{method}: expected `limit` >= 1, got {limit!r}")
    if after < 0:
        raise ValueError(f"{method}: expected `after` >= 0, got {after!r}")


def check_writer(writer: str, mark: float) -> None:
    """:class:`ValueError` unless ``writer`` is a non-empty string and ``mark`` an event time or ``-inf`` (not NaN)."""
    if not isinstance(writer, str) or not writer:
        raise ValueError(f"mark_writer: expected a non-empty `writer`, got {writer!r}")
    if isinstance(mark, bool) or not isinstance(mark, int | float) or mark != mark or mark == float("inf"):
        raise ValueError(f"mark_writer: expected `mark` to be an event time (epoch seconds) or -inf, got {mark!r}")
