"""Durable state: the journal, checkpoint, purchases, dispatch ledger, leases and dead letters of a pipeline.

:class:`Store` is the interface (see :mod:`recoverkit.store.base` for what each method promises);
:class:`SQLiteStore` keeps it in one SQLite file that the worker processes of a host share, and
:class:`MemoryStore` in memory, for tests. :func:`check_database` and :func:`describe_database` read a store
file without changing it (``recoverkit db check`` and ``recoverkit db info``). ``Store.forget``,
``Store.export`` and ``Store.purge`` answer erasure and access requests and apply retention periods.
"""

from ._schema import Lease, StoreInfo, check_database, describe_database
from .base import (
    PIPELINE_LEASE,
    Assignment,
    AssignmentGroup,
    Checkpoint,
    Claim,
    ClaimRequest,
    CodeKind,
    CodeLimit,
    CodeRecord,
    CodeStore,
    ContactExport,
    DeadLetterExport,
    DeadLetterRecord,
    FinishRequest,
    ForgetReport,
    HoldoutScope,
    IssueAnswer,
    JournalEntry,
    LedgerEntry,
    LedgerState,
    Outcome,
    PurgeReport,
    RedeemOutcome,
    RedeemResult,
    Resolution,
    Store,
    StoreStatistics,
)
from .memory import MemoryStore
from .sqlite import SQLiteStore, Synchronous

__all__ = [
    "PIPELINE_LEASE",
    "Assignment",
    "AssignmentGroup",
    "Checkpoint",
    "Claim",
    "ClaimRequest",
    "CodeKind",
    "CodeLimit",
    "CodeRecord",
    "CodeStore",
    "ContactExport",
    "DeadLetterExport",
    "DeadLetterRecord",
    "FinishRequest",
    "ForgetReport",
    "HoldoutScope",
    "IssueAnswer",
    "JournalEntry",
    "Lease",
    "LedgerEntry",
    "LedgerState",
    "MemoryStore",
    "Outcome",
    "PurgeReport",
    "RedeemOutcome",
    "RedeemResult",
    "Resolution",
    "SQLiteStore",
    "Store",
    "StoreInfo",
    "StoreStatistics",
    "Synchronous",
    "check_database",
    "describe_database",
]
