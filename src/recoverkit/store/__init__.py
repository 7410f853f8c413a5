"""Durable state: the journal, checkpoint, purchases, dispatch ledger, leases and dead letters of a pipeline.

:class:`Store` is the interface, the union of one small protocol per concern (:class:`JournalStore`,
:class:`CheckpointStore`, :class:`LeaseStore`, :class:`LedgerStore`, :class:`FactStore`, :class:`CodeStore`,
:class:`DeadLetterStore`, :class:`PrivacyStore`, :class:`StoreLifecycle`; see :mod:`recoverkit.store.base`);
:class:`SQLiteStore` keeps it in one SQLite file that the worker processes of a host share, and
:class:`MemoryStore` in memory, for tests. :class:`OnsiteStore` (not part of :class:`Store`) keeps the on-site
offers waiting for their visitors (:mod:`recoverkit.onsite`), and :class:`StateStore` (not part of it either) the
named state blobs a process hands over to the next (the purchase-path watcher's); the stores recoverkit ships
implement both.
:func:`check_database` and :func:`describe_database` read a store
file without changing it (``recoverkit db check`` and ``recoverkit db info``). ``Store.forget``,
``Store.export`` and ``Store.purge`` answer erasure and access requests and apply retention periods.

``PostgresStore`` (:mod:`recoverkit.store.postgres`, the ``postgres`` extra) keeps it in a PostgreSQL database
that the processes of several hosts share (``docs/scaling.md``). It is imported only when first named
(``from recoverkit.store import PostgresStore``), so this package imports without psycopg; it is left out of
``__all__`` for the same reason. :func:`is_store_url` tells a PostgreSQL URL from a file path wherever a store
is given as text, :func:`open_store_url` opens one and :func:`store_label` prints one without its password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._onsite import OnsiteChanges, OnsiteMark, OnsiteOffer, OnsiteStore
from ._state import SavedState, StateStore
from ._partitioned import (
    CheckpointAnswer,
    PartitionedStore,
    PartitionLease,
    PartitionStatus,
    partition_of,
)
from ._schema import Lease, StoreInfo, check_database, describe_database
from .base import (
    PIPELINE_LEASE,
    Assignment,
    AssignmentGroup,
    Checkpoint,
    CheckpointStore,
    Claim,
    ClaimRequest,
    CodeKind,
    CodeLimit,
    CodeRecord,
    CodeStore,
    ContactExport,
    Conversion,
    DeadLetterExport,
    DeadLetterRecord,
    DeadLetterStore,
    Fact,
    FactStore,
    FinishRequest,
    ForgetReport,
    HoldoutScope,
    IssueAnswer,
    JournalEntry,
    JournalStore,
    LeaseStore,
    LeaseTaken,
    LedgerEntry,
    LedgerState,
    LedgerStore,
    LinkVisit,
    MessageOutcome,
    Outcome,
    PrivacyStore,
    PurgeReport,
    RedeemOutcome,
    RedeemResult,
    Resolution,
    Store,
    StoreLifecycle,
    StoreStatistics,
)
from .memory import MemoryStore
from .sqlite import SQLiteStore, Synchronous

if TYPE_CHECKING:
    from .postgres import PostgresStore

#: How a store given as text is told to be a PostgreSQL database rather than a SQLite file's path.
_URL_SCHEMES = ("postgresql://", "postgres://")

__all__ = [
    "PIPELINE_LEASE",
    "Assignment",
    "AssignmentGroup",
    "Checkpoint",
    "CheckpointAnswer",
    "CheckpointStore",
    "Claim",
    "ClaimRequest",
    "CodeKind",
    "CodeLimit",
    "CodeRecord",
    "CodeStore",
    "ContactExport",
    "Conversion",
    "DeadLetterExport",
    "DeadLetterRecord",
    "DeadLetterStore",
    "Fact",
    "FactStore",
    "FinishRequest",
    "ForgetReport",
    "HoldoutScope",
    "IssueAnswer",
    "JournalEntry",
    "JournalStore",
    "Lease",
    "LeaseStore",
    "LeaseTaken",
    "LedgerEntry",
    "LedgerState",
    "LedgerStore",
    "LinkVisit",
    "MemoryStore",
    "MessageOutcome",
    "OnsiteChanges",
    "OnsiteMark",
    "OnsiteOffer",
    "OnsiteStore",
    "Outcome",
    "PartitionLease",
    "PartitionStatus",
    "PartitionedStore",
    "PrivacyStore",
    "PurgeReport",
    "RedeemOutcome",
    "RedeemResult",
    "Resolution",
    "SQLiteStore",
    "SavedState",
    "StateStore",
    "Store",
    "StoreInfo",
    "StoreLifecycle",
    "StoreStatistics",
    "Synchronous",
    "check_database",
    "describe_database",
    "is_store_url",
    "open_store_url",
    "partition_of",
    "store_label",
]


def is_store_url(value: object) -> bool:
    """Whether ``value`` names a PostgreSQL store (``postgresql://...`` or ``postgres://...``), not a file."""
    return isinstance(value, str) and value.lstrip().lower().startswith(_URL_SCHEMES)


def store_label(url: str) -> str:
    """``url`` without its password (in the authority or a ``password=`` parameter), to print or log."""
    parts = urlsplit(url.strip())
    netloc = parts.netloc
    if "@" in netloc:
        credentials, host = netloc.rsplit("@", 1)
        netloc = f"{credentials.split(':', 1)[0]}@{host}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def open_store_url(url: str) -> PostgresStore:
    """A :class:`~recoverkit.store.postgres.PostgresStore` on ``url``, whose schema ``recoverkit db init URL``
    made beforehand.

    Raises :class:`~recoverkit.errors.MissingExtraError` naming ``pip install 'recoverkit[postgres]'`` without
    psycopg, :class:`~recoverkit.errors.ConfigError` for a URL that is not one, and
    :class:`~recoverkit.errors.StoreError` (naming ``user@host:port/database``, never the password, and the fix)
    when the server cannot be used or holds no store of this version.
    """
    from .postgres import PostgresStore

    return PostgresStore(url.strip())


def __getattr__(name: str) -> Any:
    # PEP 562: PostgresStore imports psycopg, which a shop on SQLite need not have installed.
    if name == "PostgresStore":
        from .postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
