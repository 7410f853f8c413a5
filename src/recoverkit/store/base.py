"""The store interface: what recoverkit keeps so that a crash loses nothing and no message goes out twice.

A store holds nine things, each a small table, and :class:`Store` is the union of one small protocol per
concern, each in its own module with its records and the argument checks every backend shares:

=======================  ======================================================================================
:class:`JournalStore`    the **journal** of accepted events, numbered by ``seq`` (never reused, even after a
                         trim)
:class:`CheckpointStore` one **checkpoint**: the pipeline's state as of a journal ``position``; on restart the
                         engine loads it and replays the journal after ``position``
:class:`LeaseStore`      **leases**, so that among the processes sharing a store one owns the pipeline
                         (:data:`PIPELINE_LEASE`)
:class:`LedgerStore`     the dispatch **ledger** (one entry per idempotency key, claimed before a send and
                         finished after it) and the **purchases** by cart and by contact: the "never after
                         purchase" gate
:class:`FactStore`       the **facts** analytics reads (:mod:`recoverkit.facts`)
:class:`CodeStore`       the discount **codes** issued to contacts (:class:`CodeRecord`), by a keyed hash of the
                         code that the caller computes with a secret kept outside the store, and the **code
                         attempts** the rate limit on guessing counts (what :class:`recoverkit.offers.CodeBook`
                         needs)
:class:`DeadLetterStore` **dead letters**, as :mod:`recoverkit.deadletters` keeps them in memory, each with the
                         contact it was for
:class:`PrivacyStore`    **suppressions** (contacts who must not be written to again, kept as keyed hashes),
                         erasure, access requests and retention across all of the above
:class:`StoreLifecycle`  checking, counting and closing
=======================  ======================================================================================

Each protocol's docstring says what is atomic, what is fenced by the pipeline lease and what its clock
arguments mean. A backend implements them one by one (:class:`~recoverkit.store.SQLiteStore` and
:class:`~recoverkit.store.MemoryStore` are each a composition of one part per protocol), and
``tests/store/`` holds one contract suite per protocol that every backend subclasses.

Every method is synchronous and thread-safe; a write has been committed when it returns (for
:class:`~recoverkit.store.SQLiteStore`, durable as its ``synchronous`` setting says). Times are epoch seconds
passed in by the caller (``now``, ``at``), never read from a clock inside the store, so tests drive them.

Errors: a state that does not allow the operation raises :class:`~recoverkit.errors.StoreError` naming the key,
the state found and what was expected; a bad argument value raises :class:`ValueError`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..facts import Assignment, AssignmentGroup, Conversion, Fact, HoldoutScope, LinkVisit, MessageOutcome
from ._checkpoint import Checkpoint, CheckpointStore
from ._codes import CodeKind, CodeLimit, CodeRecord, CodeStore, IssueAnswer, LimitBy, RedeemOutcome, RedeemResult
from ._dead_letters import DeadLetterRecord, DeadLetterStore
from ._facts import FactStore
from ._journal import JournalEntry, JournalStore
from ._leases import PIPELINE_LEASE, LeaseStore, LeaseTaken
from ._ledger import Claim, ClaimRequest, FinishRequest, LedgerEntry, LedgerState, LedgerStore, Outcome, Resolution
from ._lifecycle import StoreLifecycle, StoreStatistics
from ._privacy import ContactExport, DeadLetterExport, ForgetReport, PrivacyStore, PurgeReport

# The argument checks and constants the backends share, re-exported under their old home for a backend written
# against it; new code imports them from the module of their concern.
from ._checkpoint import check_position as check_position  # isort: skip
from ._codes import (  # isort: skip
    CODE_KINDS as CODE_KINDS,
    LIMIT_ANSWERS as LIMIT_ANSWERS,
    LIMITS_BY as LIMITS_BY,
    check_attempt as check_attempt,
    check_code as check_code,
    check_count as check_count,
    check_limits as check_limits,
    check_redeem as check_redeem,
    judge_redemption as judge_redemption,
    limit_key as limit_key,
)
from ._dead_letters import missing_dead_letter as missing_dead_letter  # isort: skip
from ._facts import check_fact as check_fact  # isort: skip
from ._journal import check_read_limit as check_read_limit  # isort: skip
from ._leases import check_lease as check_lease  # isort: skip
from ._ledger import (  # isort: skip
    FINISHABLE as FINISHABLE,
    LEDGER_STATES as LEDGER_STATES,
    OUTCOMES as OUTCOMES,
    PURGEABLE as PURGEABLE,
    RESOLUTIONS as RESOLUTIONS,
    RESOLVABLE as RESOLVABLE,
    cannot_finish as cannot_finish,
    cannot_resolve as cannot_resolve,
    check_claim as check_claim,
    check_outcome as check_outcome,
    check_purchase as check_purchase,
    check_resolution as check_resolution,
    check_states as check_states,
    missing_entry as missing_entry,
)
from ._privacy import (  # isort: skip
    FORGOTTEN as FORGOTTEN,
    SALT_BYTES as SALT_BYTES,
    check_contact as check_contact,
    check_purge as check_purge,
    check_reason as check_reason,
    contact_hash as contact_hash,
    export_letter as export_letter,
)

__all__ = [
    "PIPELINE_LEASE",
    "Assignment",
    "AssignmentGroup",
    "Checkpoint",
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
    "LeaseStore",
    "LeaseTaken",
    "LedgerEntry",
    "LedgerState",
    "LedgerStore",
    "LimitBy",
    "LinkVisit",
    "MessageOutcome",
    "Outcome",
    "PrivacyStore",
    "PurgeReport",
    "RedeemOutcome",
    "RedeemResult",
    "Resolution",
    "Store",
    "StoreLifecycle",
    "StoreStatistics",
]


@runtime_checkable
class Store(
    JournalStore,
    CheckpointStore,
    LeaseStore,
    LedgerStore,
    FactStore,
    CodeStore,
    DeadLetterStore,
    PrivacyStore,
    StoreLifecycle,
    Protocol,
):
    """Durable state of one shop's pipeline, shared by the processes that run it: every protocol above in one.

    Implementations: :class:`~recoverkit.store.SQLiteStore` (a file, several processes on one host) and
    :class:`~recoverkit.store.MemoryStore` (for tests). Both pass the same contract tests, one suite per
    protocol. A part of recoverkit that needs only one concern asks for its protocol (the engine's code book
    takes a :class:`CodeStore`); the engine takes a whole :class:`Store`.
    """
