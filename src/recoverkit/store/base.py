"""The store interface: what recoverkit keeps so that a crash loses nothing and no message goes out twice.

A store holds six things, each a small table:

- the **journal** of accepted events, numbered by ``seq`` (1, 2, 3, ...; never reused, even after a trim);
- one **checkpoint**: the pipeline's state as of a journal ``position``; on restart the engine loads it and
  replays the journal after ``position``;
- **purchases** by cart and by contact: the "never after purchase" gate;
- the dispatch **ledger**: one entry per idempotency key, claimed before a send and finished after it;
- **leases**, so that among the processes sharing a store one owns the pipeline (:data:`PIPELINE_LEASE`);
- **dead letters**, as :mod:`recoverkit.deadletters` keeps them in memory.

Every method is synchronous and thread-safe; a write has been committed when it returns (for
:class:`~recoverkit.store.SQLiteStore`, durable as its ``synchronous`` setting says). Times are epoch seconds
passed in by the caller (``now``, ``at``), never read from a clock inside the store, so tests drive them.

Errors: a state that does not allow the operation raises :class:`~recoverkit.errors.StoreError` naming the key,
the state found and what was expected; a bad argument value raises :class:`ValueError`.

A ledger entry moves between states like this (``finish`` and ``resolve`` raise ``StoreError`` from any other)::

    method             from                 to
    claim()            (no entry)           sending
    finish()           sending, unknown     sent, failed, dead, cancelled
    mark_unknown()     sending              unknown      (a restart: did the send reach the provider?)
    resolve("sent")    unknown, failed      sent
    resolve("retry")   unknown, failed      (no entry: the key can be claimed again)
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from types import TracebackType
from typing import Final, Literal, Protocol, Self, get_args, runtime_checkable

import msgspec

from ..errors import StoreError

__all__ = [
    "PIPELINE_LEASE",
    "Checkpoint",
    "Claim",
    "DeadLetterRecord",
    "JournalEntry",
    "LedgerEntry",
    "LedgerState",
    "Outcome",
    "Resolution",
    "Store",
    "StoreStatistics",
]

#: The lease a process must hold for :meth:`Store.claim` to hand it a message.
PIPELINE_LEASE: Final = "pipeline"

#: What :meth:`Store.claim` answers; see there.
Claim = Literal["claimed", "duplicate", "purchased", "not_owner"]
#: How a send ended, as :meth:`Store.finish` records it.
Outcome = Literal["sent", "failed", "dead", "cancelled"]
#: What a person (or the engine) decided about an ``unknown`` or ``failed`` entry; see :meth:`Store.resolve`.
Resolution = Literal["sent", "retry"]
#: Every state a ledger entry can be in.
LedgerState = Literal["sending", "sent", "failed", "dead", "cancelled", "unknown"]

OUTCOMES: Final[frozenset[str]] = frozenset(get_args(Outcome))
RESOLUTIONS: Final[frozenset[str]] = frozenset(get_args(Resolution))
LEDGER_STATES: Final[frozenset[str]] = frozenset(get_args(LedgerState))
#: States from which finish() may record an outcome: a send in progress, or one a restart lost track of.
FINISHABLE: Final = ("sending", "unknown")
#: States resolve() accepts: the sender does not know whether it went out, or it failed.
RESOLVABLE: Final = ("unknown", "failed")


class JournalEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One accepted event: its ``seq`` in the journal, its raw bytes, and when it was accepted."""

    seq: int
    data: bytes
    accepted_at: float


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """The pipeline's ``state`` as of journal seq ``position`` (every event up to it is reflected in it)."""

    position: int
    state: bytes
    saved_at: float


class LedgerEntry(msgspec.Struct, frozen=True, kw_only=True):
    """The ledger's record of one idempotency key.

    ``started_at`` is when the cart was started (what purchases are compared with), ``claimed_at`` when the
    entry was claimed, ``finished_at`` when :meth:`Store.finish` recorded its outcome (``None`` before, and for
    entries settled by :meth:`Store.resolve`), ``error`` what the last failure said.
    """

    key: str
    cart_key: str
    contact_key: str
    channel: str
    state: LedgerState
    owner: str
    started_at: float
    claimed_at: float
    finished_at: float | None = None
    error: str | None = None


class DeadLetterRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A message that failed for good: ``data`` is the encoded message, the rest as in ``DeadLetter``."""

    key: str
    data: bytes
    error: str
    attempts: int
    permanent: bool
    at: float


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
class Store(Protocol):
    """Durable state of one shop's pipeline, shared by the processes that run it.

    Implementations: :class:`~recoverkit.store.SQLiteStore` (a file, several processes on one host) and
    :class:`~recoverkit.store.MemoryStore` (for tests). Both pass the same contract tests.
    """

    # -- journal --------------------------------------------------------------------------------------------

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

    # -- checkpoint -----------------------------------------------------------------------------------------

    def save_checkpoint(self, position: int, state: bytes, *, now: float) -> None:
        """Replace the checkpoint, atomically, with ``state`` as of journal seq ``position`` (>= 0)."""
        ...

    def load_checkpoint(self) -> Checkpoint | None:
        """The last checkpoint saved, or ``None`` if there is none."""
        ...

    # -- purchases and the ledger ---------------------------------------------------------------------------

    def record_purchase(self, *, cart_key: str | None, contact_key: str | None, at: float) -> None:
        """Record a purchase of ``cart_key`` and/or by ``contact_key`` at ``at`` (at least one of them).

        Only the latest purchase time per key is kept: that is the one :meth:`claim` compares with.
        """
        ...

    def claim(
        self,
        key: str,
        *,
        cart_key: str,
        contact_key: str,
        channel: str,
        started_at: float,
        owner: str,
        now: float,
    ) -> Claim:
        """Claim ``key`` for sending; only ``"claimed"`` allows the caller to hand the message to an adapter.

        The answers, checked in this order in one transaction (so that of any number of threads and processes
        racing for a key, exactly one is told ``"claimed"``):

        - ``"not_owner"``: ``owner`` does not hold :data:`PIPELINE_LEASE`, or it expired at ``now``;
        - ``"duplicate"``: ``key`` is in the ledger already, in any state;
        - ``"purchased"``: a purchase of ``cart_key`` or by ``contact_key`` was recorded at or after
          ``started_at`` (the cart's start);
        - ``"claimed"``: an entry in state ``"sending"`` was recorded for ``owner``.

        Only ``"claimed"`` writes anything.
        """
        ...

    def finish(self, key: str, outcome: Outcome, *, now: float, error: str | None = None) -> None:
        """Record how the send of ``key`` ended. The entry must be ``"sending"`` or ``"unknown"``."""
        ...

    def ledger(self, states: Collection[LedgerState] | None = None) -> list[LedgerEntry]:
        """The ledger entries in the given ``states`` (all of them for ``None``), in the order they were claimed."""
        ...

    def mark_unknown(self, owner: str | None = None) -> int:
        """Turn every ``"sending"`` entry (of ``owner``, or of anyone) into ``"unknown"``; return how many.

        What a restart after a crash does: a send that was in progress may or may not have reached the
        provider, and nobody may guess which. Entries stay ``"unknown"`` until :meth:`resolve` or
        :meth:`finish` settles them, and their keys are not claimed again meanwhile.
        """
        ...

    def resolve(self, key: str, outcome: Resolution) -> None:
        """Settle an ``"unknown"`` or ``"failed"`` entry: ``"sent"`` records it as sent, ``"retry"`` deletes it so
        the key can be claimed again."""
        ...

    # -- leases ---------------------------------------------------------------------------------------------

    def acquire_lease(self, name: str, owner: str, *, ttl: float, now: float) -> bool:
        """Take lease ``name`` for ``owner`` until ``now + ttl`` if it is free, expired or ``owner``'s already.

        Returns whether ``owner`` holds it now. Renew well before ``ttl`` runs out: a lease expires at its
        expiry time exactly, and another owner may take it from then on.
        """
        ...

    def release_lease(self, name: str, owner: str) -> None:
        """Give up lease ``name`` if ``owner`` holds it; otherwise (expired and taken, never held) do nothing."""
        ...

    def lease_holder(self, name: str, *, now: float) -> str | None:
        """Who holds lease ``name`` at ``now``, or ``None`` if nobody does (never taken, released, expired)."""
        ...

    # -- dead letters ---------------------------------------------------------------------------------------

    def add_dead_letter(
        self, key: str, data: bytes, *, error: str, attempts: int, permanent: bool, at: float
    ) -> None:
        """Keep a message that failed for good; a letter already kept under ``key`` is replaced."""
        ...

    def dead_letters(self) -> list[DeadLetterRecord]:
        """The dead letters not yet re-sent, in the order they were added."""
        ...

    def mark_resent(self, key: str) -> None:
        """Record that the dead letter ``key`` was delivered by a re-send: it leaves :meth:`dead_letters`.

        Marking a letter twice is harmless; a key that was never dead-lettered raises ``StoreError``.
        """
        ...

    # -- housekeeping ---------------------------------------------------------------------------------------

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


# -- argument checks shared by the implementations, so that both reject the same values the same way ----------


def check_read_limit(after: int, limit: int) -> None:
    if limit < 1:
        raise ValueError(f"read_events: expected `limit` >= 1, got {limit!r}")
    if after < 0:
        raise ValueError(f"read_events: expected `after` >= 0, got {after!r}")


def check_position(position: int) -> None:
    if position < 0:
        raise ValueError(f"save_checkpoint: expected `position` >= 0 (a journal seq), got {position!r}")


def check_purchase(cart_key: str | None, contact_key: str | None) -> None:
    if cart_key is None and contact_key is None:
        raise ValueError("record_purchase: expected a `cart_key` or a `contact_key`, got neither")


def check_outcome(outcome: str) -> None:
    if outcome not in OUTCOMES:
        raise ValueError(f"finish: expected `outcome` to be one of {sorted(OUTCOMES)}, got {outcome!r}")


def check_resolution(outcome: str) -> None:
    if outcome not in RESOLUTIONS:
        raise ValueError(f"resolve: expected `outcome` to be one of {sorted(RESOLUTIONS)}, got {outcome!r}")


def check_states(states: Collection[str] | None) -> None:
    if states is None:
        return
    if isinstance(states, str):  # "sent" would otherwise read as the states "s", "e", "n", "t"
        raise ValueError(f"ledger: expected a collection of states, got the string {states!r}")
    unknown = sorted(set(states) - LEDGER_STATES)
    if unknown:
        raise ValueError(f"ledger: unknown states {unknown}, expected some of {sorted(LEDGER_STATES)}")


def check_lease(name: str, owner: str, ttl: float) -> None:
    if not name or not owner:
        raise ValueError(f"acquire_lease: expected a non-empty `name` and `owner`, got {name!r} and {owner!r}")
    if not ttl > 0:  # also rejects NaN
        raise ValueError(f"acquire_lease: expected `ttl` > 0 seconds, got {ttl!r}")


def check_claim(key: str, owner: str) -> None:
    if not key:
        raise ValueError("claim: expected a non-empty idempotency `key`, got ''")
    if not owner:
        raise ValueError("claim: expected a non-empty `owner`, got ''")


def missing_entry(key: str) -> StoreError:
    return StoreError(f"no ledger entry for key {key!r}: it was never claimed, or resolved for a retry")


def cannot_finish(key: str, state: str) -> StoreError:
    return StoreError(
        f"cannot finish key {key!r}: its ledger entry is {state!r}, expected one of {list(FINISHABLE)} "
        "(an entry is finished once)"
    )


def cannot_resolve(key: str, state: str) -> StoreError:
    return StoreError(
        f"cannot resolve key {key!r}: its ledger entry is {state!r}, expected one of {list(RESOLVABLE)}"
    )


def missing_dead_letter(key: str) -> StoreError:
    return StoreError(f"no dead letter with key {key!r}")
