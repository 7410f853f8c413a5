"""The PostgreSQL store: one database that the web processes and engines of every host share (issue 14).

:class:`PostgresStore` keeps what :class:`~recoverkit.store.SQLiteStore` keeps, in a PostgreSQL schema that
:func:`init` creates and migrates, and adds what several hosts need: a journal split into a fixed number of
partitions (by a hash of the session id, :func:`partition_of`), with positions that have no gaps under
concurrent writers; per-partition leases with an epoch that fences every write of a lapsed owner, judged by the
database server's clock; and fenced per-partition checkpoints and ledger claims. ``docs/scaling.md`` tells when
to use it and how.

Importing this package needs the ``postgres`` extra (``pip install 'recoverkit[postgres]'``); without it the
import raises :class:`~recoverkit.errors.MissingExtraError` naming it. ``import recoverkit`` never imports it.
"""

from __future__ import annotations

from ..._optional import require

# Before anything below imports psycopg, so that a shop without the extra hears which one to install.
require("psycopg", extra="postgres", feature="PostgresStore")
require("psycopg_pool", extra="postgres", feature="PostgresStore")

from .._partitioned import CheckpointAnswer, PartitionLease, PartitionStatus, partition_of  # noqa: E402
from ._schema import SCHEMA_VERSION, SchemaInfo, init  # noqa: E402
from ._store import PostgresStore  # noqa: E402

__all__ = [
    "SCHEMA_VERSION",
    "CheckpointAnswer",
    "PartitionLease",
    "PartitionStatus",
    "PostgresStore",
    "SchemaInfo",
    "init",
    "partition_of",
]
