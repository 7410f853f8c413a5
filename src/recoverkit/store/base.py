"""The store interface: what recoverkit keeps so that a crash loses nothing and no message goes out twice.

A store holds nine things, each a small table:

- the **journal** of accepted events, numbered by ``seq`` (1, 2, 3, ...; never reused, even after a trim);
- one **checkpoint**: the pipeline's state as of a journal ``position``; on restart the engine loads it and
  replays the journal after ``position``;
- **purchases** by cart and by contact: the "never after purchase" gate;
- the dispatch **ledger**: one entry per idempotency key, claimed before a send and finished after it;
- **leases**, so that among the processes sharing a store one owns the pipeline (:data:`PIPELINE_LEASE`);
- **dead letters**, as :mod:`recoverkit.deadletters` keeps them in memory, each with the contact it was for;
- **suppressions**: contacts who must not be written to again (unsubscribed, forgotten), kept as keyed hashes
  (:meth:`Store.hash_contact`), never as the contact keys themselves;
- **codes**: the discount codes issued to contacts (:class:`CodeRecord`), by a keyed hash of the code that the
  caller computes with a secret kept outside the store, so that a copy of the store holds no usable code;
- **code attempts**: when each client last failed to redeem a code, for the rate limit on guessing codes.

:class:`CodeStore` is the part of the interface about codes (what :class:`recoverkit.offers.CodeBook` needs);
:class:`Store` includes it.

Data protection: :meth:`Store.forget` erases a contact (a right-to-erasure request), :meth:`Store.export`
gathers what is kept about one (an access request), :meth:`Store.purge` deletes what has aged past a
retention period. Codes take part in all three.

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

import base64
import hashlib
import hmac
import math
from collections.abc import Collection, Sequence
from types import TracebackType
from typing import Any, Final, Literal, Protocol, Self, get_args, runtime_checkable

import msgspec

from ..errors import StoreError
from ..facts import Assignment, AssignmentGroup, Conversion, Fact, HoldoutScope, LinkVisit, MessageOutcome

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
    "Conversion",
    "DeadLetterExport",
    "DeadLetterRecord",
    "Fact",
    "FinishRequest",
    "ForgetReport",
    "HoldoutScope",
    "IssueAnswer",
    "JournalEntry",
    "LeaseTaken",
    "LedgerEntry",
    "LedgerState",
    "LinkVisit",
    "MessageOutcome",
    "Outcome",
    "PurgeReport",
    "RedeemOutcome",
    "RedeemResult",
    "Resolution",
    "Store",
    "StoreStatistics",
]

#: The lease a process must hold for :meth:`Store.claim` to hand it a message.
PIPELINE_LEASE: Final = "pipeline"

#: How :meth:`Store.take_lease` got a lease: ``"renewed"``, it was ``owner``'s already (even if it had expired:
#: nobody else took it meanwhile); ``"taken"``, it was free, released, or another owner's and expired.
LeaseTaken = Literal["renewed", "taken"]
#: What :meth:`Store.claim` answers; see there.
Claim = Literal["claimed", "duplicate", "purchased", "suppressed", "not_owner"]
#: How a send ended, as :meth:`Store.finish` records it; ``"unknown"``: the adapter was given up on while still
#: running, so the message may or may not have gone (settled by :meth:`Store.resolve`, as after a crash).
Outcome = Literal["sent", "failed", "dead", "cancelled", "unknown"]
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
#: States purge() may delete: a send that has ended. Never "sending" or "unknown": nobody knows yet whether
#: those reached the customer, and deleting them would let the key be claimed, and the message sent, again.
PURGEABLE: Final = ("sent", "failed", "dead", "cancelled")
#: Bytes of a store's salt (the key of hash_contact()): 256 bits, as strong as SHA-256 itself.
SALT_BYTES: Final = 32
#: The suppression reason forget() records; it replaces any earlier reason, being the stronger fact.
FORGOTTEN: Final = "forgotten"

#: What a code gives: money off the cart (``percent`` or ``amount``), or free shipping.
CodeKind = Literal["discount", "free_shipping"]
#: What :meth:`CodeStore.issue_code` answers; see there.
IssueAnswer = Literal["issued", "duplicate", "contact_limit", "domain_limit", "device_limit"]
#: What :meth:`CodeStore.redeem_code` answers; see there.
RedeemOutcome = Literal["valid", "expired", "already_used", "not_yours", "below_minimum", "wrong_currency", "unknown"]
#: Which field of a code a :class:`CodeLimit` counts by.
LimitBy = Literal["contact", "domain", "device"]

CODE_KINDS: Final[frozenset[str]] = frozenset(get_args(CodeKind))
LIMITS_BY: Final[frozenset[str]] = frozenset(get_args(LimitBy))
#: What issue_code() answers when a limit by each field is full.
LIMIT_ANSWERS: Final[dict[LimitBy, IssueAnswer]] = {
    "contact": "contact_limit", "domain": "domain_limit", "device": "device_limit"
}  # fmt: skip


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
    """A message that failed for good: ``data`` is the encoded message, the rest as in ``DeadLetter``.

    ``contact_key`` is the contact the message was for (``""`` when the caller did not say), so that
    :meth:`Store.forget` and :meth:`Store.export` find the letter.
    """

    key: str
    data: bytes
    error: str
    attempts: int
    permanent: bool
    at: float
    contact_key: str = ""


class ForgetReport(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`Store.forget` did: ``ledger_entries`` and ``codes`` rewritten to hold the contact's hash
    instead of its key, ``dead_letters`` and ``purchases`` deleted; ``already_forgotten`` when the contact had
    been forgotten before (then the counts are 0, unless entries were claimed or codes issued for the key since).
    """

    ledger_entries: int
    dead_letters: int
    purchases: int
    already_forgotten: bool
    codes: int = 0
    facts: int = 0


class PurgeReport(msgspec.Struct, frozen=True, kw_only=True):
    """How many rows :meth:`Store.purge` deleted from each table."""

    ledger_entries: int
    purchases: int
    dead_letters: int
    codes: int = 0
    facts: int = 0


class CodeRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One discount code as a store keeps it: never the code itself, only ``code_hash``.

    ``code_hash`` is a keyed hash of the code (:class:`~recoverkit.offers.CodeBook` makes it with a secret the
    store never sees); ``cart_key`` is the cart whose recovery issued it, ``contact_key`` the contact it is bound
    to (only they can redeem it). A ``"discount"`` takes ``percent`` (1..100) or ``amount`` (minor units of
    ``currency``) off, exactly one of them; a ``"free_shipping"`` code has neither. ``min_value`` is the least
    cart value, in minor units of ``currency``, it may be redeemed on; ``currency`` is ``None`` only for a code
    without an ``amount`` or a minimum, which any currency may redeem. The code is void from ``expires_at`` on.
    ``domain`` and ``device`` are opaque keys the abuse limits count by (``CodeBook`` stores keyed hashes of the
    e-mail domain and the device id), ``None`` when unknown. ``redeemed_at`` and ``redeemed_order`` are set by
    the one redemption a code allows.
    """

    code_hash: str
    cart_key: str
    contact_key: str
    kind: CodeKind
    issued_at: float
    expires_at: float
    percent: int | None = None
    amount: int | None = None
    currency: str | None = None
    min_value: int = 0
    domain: str | None = None
    device: str | None = None
    redeemed_at: float | None = None
    redeemed_order: str | None = None


class CodeLimit(msgspec.Struct, frozen=True, kw_only=True):
    """At most ``most`` codes issued at or after ``since`` with the same ``by`` (contact, domain, device) as the
    code being issued; see :meth:`CodeStore.issue_code`."""

    by: LimitBy
    most: int
    since: float


class RedeemResult(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`CodeStore.redeem_code` found: the ``outcome`` and the code's record (``None`` for ``"unknown"``;
    for ``"valid"``, the record as redeemed)."""

    outcome: RedeemOutcome
    code: CodeRecord | None = None


class DeadLetterExport(msgspec.Struct, frozen=True, kw_only=True):
    """A dead letter as :meth:`Store.export` shows it.

    ``data`` is the stored message decoded from JSON (``encoding == "json"``) or, when it is not JSON, its
    bytes in standard base64 (``encoding == "base64"``). ``resent`` letters are listed too: they are still
    kept.
    """

    key: str
    data: Any
    encoding: Literal["json", "base64"]
    error: str
    attempts: int
    permanent: bool
    at: float
    resent: bool


class ContactExport(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a store keeps about one contact (:meth:`Store.export`); encodable with ``msgspec.json``.

    ``ledger`` holds the entries claimed for the contact in claim order, including those :meth:`Store.forget`
    rewrote (their ``contact_key`` is then the contact's hash); ``purchased_at`` is the latest purchase
    recorded by the contact (``None`` if none); ``suppressed`` whether the contact may no longer be written to;
    ``codes`` the codes issued to the contact (forgotten ones included), by issue time.
    """

    contact_key: str
    ledger: list[LedgerEntry]
    dead_letters: list[DeadLetterExport]
    purchased_at: float | None
    suppressed: bool
    codes: list[CodeRecord] = []
    assignments: list[Assignment] = []
    conversions: list[Conversion] = []
    outcomes: list[MessageOutcome] = []


class ClaimRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The arguments of one :meth:`Store.claim`, for :meth:`Store.claim_many`."""

    key: str
    cart_key: str
    contact_key: str
    channel: str
    started_at: float
    owner: str
    now: float
    #: The time recorded as ``claimed_at``, on the engine's clock (event time in a replay); ``None``: ``now``.
    #: ``now`` is always the wall clock, because the lease it is checked against is.
    at: float | None = None


class FinishRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The arguments of one :meth:`Store.finish`, for :meth:`Store.finish_many`."""

    key: str
    outcome: Outcome
    now: float
    error: str | None = None


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
class CodeStore(Protocol):
    """The codes part of a store: issuing and redeeming single-use codes, and the counts the abuse limits and
    the rate limit on guessing read. Every method is one transaction, as in :class:`Store`.

    A store sees only keyed hashes of codes (and whatever keys the caller passes for domains, devices and
    clients); making them, and keeping their secret out of the store, is the caller's part
    (:class:`~recoverkit.offers.CodeBook`).
    """

    def issue_code(self, code: CodeRecord, *, limits: Sequence[CodeLimit] = ()) -> IssueAnswer:
        """Store the new, unredeemed ``code`` unless a check refuses it; only ``"issued"`` writes anything.

        The checks, in this order, in the transaction that inserts (so that of any number of threads and
        processes issuing at once, no limit is ever exceeded):

        - ``"duplicate"``: a code with the same ``code_hash`` is stored already (the caller draws a new code);
        - ``"contact_limit"``, ``"domain_limit"``, ``"device_limit"``: for the first of ``limits`` that is
          full, there are ``limit.most`` codes or more issued at or after ``limit.since`` with the same
          ``contact_key``, ``domain`` or ``device`` as ``code`` (a limit by a field that is ``None`` on
          ``code`` does not apply);
        - ``"issued"``: the code was stored.

        Raises :class:`ValueError` for a record that is not a valid new code (see :class:`CodeRecord`).
        """
        ...

    def redeem_code(
        self, code_hash: str, *, contact_key: str, cart_value: int, currency: str | None, order_id: str, now: float
    ) -> RedeemResult:
        """Redeem the code stored under ``code_hash`` for ``order_id``, if it may be; in one transaction.

        The outcomes, checked in this order (so that nothing about the state of a code is told to anyone but
        the contact it is bound to):

        - ``"unknown"``: no code is stored under ``code_hash``;
        - ``"not_yours"``: the code is bound to another ``contact_key``;
        - ``"already_used"``: the code was redeemed for another order. Redeeming again for the order it was
          redeemed for answers ``"valid"`` again, changing nothing: a retried checkout request is not refused;
        - ``"expired"``: ``now`` is at or after the code's ``expires_at``;
        - ``"wrong_currency"``: the code has a ``currency`` and ``currency`` is another;
        - ``"below_minimum"``: ``cart_value`` (minor units) is below the code's ``min_value``;
        - ``"valid"``: the code is now redeemed, at ``now``, for ``order_id``; no other order can redeem it.

        Only ``"valid"`` writes anything.
        """
        ...

    def count_codes(
        self,
        *,
        since: float,
        contact_key: str | None = None,
        domain: str | None = None,
        device: str | None = None,
    ) -> int:
        """How many codes were issued at or after ``since`` with the given ``contact_key``, ``domain`` and
        ``device`` (all of those given; at least one must be)."""
        ...

    def record_attempt(self, client_key: str, *, now: float, window: float) -> int:
        """Record a failed redemption by ``client_key`` at ``now``; return how many it made in the ``window``
        seconds up to ``now``, this one included.

        Attempts are counted when ``now - window < at <= now``. Attempts older than the window are deleted,
        of every client, so the window is how long the store keeps them: use one window per store.
        """
        ...

    def count_attempts(self, client_key: str, *, now: float, window: float) -> int:
        """How many failed redemptions ``client_key`` made in the ``window`` seconds up to ``now`` (as
        :meth:`record_attempt` counts them); writes nothing."""
        ...


@runtime_checkable
class Store(CodeStore, Protocol):
    """Durable state of one shop's pipeline, shared by the processes that run it.

    Implementations: :class:`~recoverkit.store.SQLiteStore` (a file, several processes on one host) and
    :class:`~recoverkit.store.MemoryStore` (for tests). Both pass the same contract tests. The methods about
    codes are :class:`CodeStore`'s.
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

    def save_checkpoint(self, position: int, state: bytes, *, now: float) -> bool:
        """Replace the checkpoint, atomically, with ``state`` as of journal seq ``position`` (>= 0).

        A checkpoint never moves back: if the one stored has a higher ``position`` (a process that lost the
        pipeline lease wrote it, or the new owner has not caught up with it yet) it is kept and ``False``
        returned. So after any save, trimming the journal through ``position`` is safe: the stored checkpoint
        covers every event up to it.
        """
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

    # -- facts for analytics --------------------------------------------------------------------------------

    def record_facts(self, facts: Sequence[Fact]) -> int:
        """Keep facts for analytics (:class:`Assignment`, :class:`Conversion`, :class:`MessageOutcome`,
        :class:`LinkVisit`), in one transaction; return how many were new.

        Each kind has a natural key (an assignment: cart and flow; a conversion: cart and time; an outcome: the
        message key and the outcome; a visit: cart and time) and the first fact of a key is kept, so the engine may
        write the same facts again after a restart (it does: they are deterministic).
        """
        ...

    def assignments(self, *, since: float | None = None, until: float | None = None) -> list[Assignment]:
        """The assignments made at ``since`` <= ``assigned_at`` < ``until`` (either bound optional), oldest
        first: the denominators of uplift against the holdout."""
        ...

    def conversions(self, *, since: float | None = None, until: float | None = None) -> list[Conversion]:
        """The conversions at ``since`` <= ``at`` < ``until``, oldest first."""
        ...

    def outcomes(self, *, since: float | None = None, until: float | None = None) -> list[MessageOutcome]:
        """The message outcomes recorded at ``since`` <= ``at`` < ``until``, oldest first."""
        ...

    def visits(self, *, since: float | None = None, until: float | None = None) -> list[LinkVisit]:
        """The restore-link visits at ``since`` <= ``at`` < ``until``, oldest first."""
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
        at: float | None = None,
    ) -> Claim:
        """Claim ``key`` for sending; only ``"claimed"`` allows the caller to hand the message to an adapter.

        The entry's ``claimed_at`` is ``at`` (the engine's clock; ``None``: ``now``, the wall clock the lease is
        checked on).

        The answers, checked in this order in one transaction (so that of any number of threads and processes
        racing for a key, exactly one is told ``"claimed"``):

        - ``"not_owner"``: ``owner`` does not hold :data:`PIPELINE_LEASE`, or it expired at ``now``;
        - ``"duplicate"``: ``key`` is in the ledger already, in any state;
        - ``"suppressed"``: ``contact_key`` was suppressed (:meth:`suppress`, :meth:`forget`): never again;
        - ``"purchased"``: a purchase of ``cart_key`` or by ``contact_key`` was recorded at or after
          ``started_at`` (the cart's start);
        - ``"claimed"``: an entry in state ``"sending"`` was recorded for ``owner``.

        Only ``"claimed"`` writes anything.
        """
        ...

    def finish(self, key: str, outcome: Outcome, *, now: float, error: str | None = None) -> None:
        """Record how the send of ``key`` ended. The entry must be ``"sending"`` or ``"unknown"``."""
        ...

    def claim_many(self, requests: Sequence[ClaimRequest]) -> list[Claim]:
        """:meth:`claim` each request, in order, and answer as those calls would; committed together.

        What a dispatcher with many messages due at once uses: one round trip instead of one per message.
        """
        ...

    def finish_many(self, requests: Sequence[FinishRequest]) -> list[StoreError | None]:
        """:meth:`finish` each request, in order, committed together; a request :meth:`finish` would refuse gets
        its ``StoreError`` in the answer (the others are recorded all the same), ``None`` the rest."""
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

    def take_lease(self, name: str, owner: str, *, ttl: float, now: float) -> LeaseTaken | None:
        """:meth:`acquire_lease`, saying how: ``None`` when another owner holds ``name`` at ``now``, else
        ``"renewed"`` when the lease was ``owner``'s already, ``"taken"`` when it was not (free, released, or
        another owner's and expired).

        ``"renewed"`` is also the answer when ``owner``'s lease had expired and nobody took it meanwhile: any
        other owner taking it replaces the holder, so ``owner`` holding it again in one answer means nobody else
        held it since ``owner`` last did. A process that expects ``"renewed"`` and gets ``"taken"`` knows that
        someone else may have held it in between (the engine then restores from the checkpoint).
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
        self, key: str, data: bytes, *, error: str, attempts: int, permanent: bool, at: float, contact_key: str = ""
    ) -> None:
        """Keep a message that failed for good; a letter already kept under ``key`` is replaced.

        ``contact_key`` names the contact the message was for. Pass it: a letter kept without one (``""``)
        holds the contact's address in ``data`` but is found by neither :meth:`forget` nor :meth:`export`.
        """
        ...

    def dead_letters(self) -> list[DeadLetterRecord]:
        """The dead letters not yet re-sent, in the order they were added."""
        ...

    def mark_resent(self, key: str) -> None:
        """Record that the dead letter ``key`` was delivered by a re-send: it leaves :meth:`dead_letters`.

        Marking a letter twice is harmless; a key that was never dead-lettered raises ``StoreError``.
        """
        ...

    # -- data protection and retention ----------------------------------------------------------------------

    def hash_contact(self, contact_key: str) -> str:
        """The hex HMAC-SHA256 of ``contact_key`` (non-empty), keyed with this store's secret salt.

        The same key always gives the same hash in one store (for :class:`~recoverkit.store.SQLiteStore`:
        in one file, across processes and restarts), and different hashes in different stores. Being keyed,
        a hash cannot be matched to its contact by hashing a list of candidate keys or addresses without the
        store's salt; with the store file, it can: the file itself must be protected.
        """
        ...

    def suppress(self, contact_key: str, *, reason: str, at: float) -> None:
        """Record that ``contact_key`` must not be written to again, for ``reason`` (free text, non-empty:
        ``"unsubscribed"``, ``"complaint"``...), as of ``at``.

        Only the hash (:meth:`hash_contact`) is stored. Suppression is permanent: :meth:`purge` keeps it and
        nothing lifts it. A contact suppressed already keeps its first reason and time.
        """
        ...

    def is_suppressed(self, contact_key: str) -> bool:
        """Whether ``contact_key`` (non-empty) was suppressed, by :meth:`suppress` or :meth:`forget`.

        :meth:`claim` checks it too, in its transaction (answering ``"suppressed"``).
        """
        ...

    def forget(self, contact_key: str, *, at: float) -> ForgetReport:
        """Erase ``contact_key`` (non-empty) from the store, in one transaction, and suppress it.

        - its dead letters (by their ``contact_key``) are deleted: their ``data`` holds its address;
        - its purchase (the ``contact_key`` row of purchases; purchases of carts are kept) is deleted;
        - its ledger entries are kept, with ``contact_key`` replaced by :meth:`hash_contact`: their keys are
          what keeps the messages already sent from being sent again (:meth:`claim` answers ``"duplicate"``);
        - its codes are kept, with ``contact_key`` replaced by :meth:`hash_contact` in the same way: they can
          no longer be redeemed by the contact key (``"not_yours"``), nor by anyone else;
        - its facts for analytics (assignments, conversions, message outcomes) are kept the same way: the
          experiment's counts must not change when someone leaves;
        - a suppression with reason ``"forgotten"`` is recorded as of ``at`` (replacing an earlier reason).

        Idempotent: forgetting again finds nothing left to erase and changes nothing. The journal is not
        touched: events naming the contact stay until the engine trims them once a checkpoint covers them.
        """
        ...

    def export(self, contact_key: str) -> ContactExport:
        """Everything kept about ``contact_key`` (non-empty): ledger entries, dead letters, purchase time,
        suppression, codes; see :class:`~recoverkit.store.ContactExport`. Read from one snapshot of the store."""
        ...

    def purge(
        self,
        *,
        ledger_before: float,
        purchases_before: float,
        dead_letters_before: float,
        codes_before: float | None = None,
        facts_before: float | None = None,
    ) -> PurgeReport:
        """Delete, in one transaction, what is older than the retention periods; return how many rows went.

        - ledger entries claimed before ``ledger_before`` that have ended (``sent``, ``failed``, ``dead``,
          ``cancelled``); ``sending`` and ``unknown`` entries are kept whatever their age. A purged key can be
          claimed again, so ``ledger_before`` must be older than the start of any cart still in a flow;
        - purchases (of carts and by contacts) recorded at a time before ``purchases_before``; a cart started
          before the purchase could then be claimed, so the same holds for ``purchases_before``;
        - dead letters added before ``dead_letters_before``, re-sent or not;
        - codes that expired before ``codes_before`` (``None``: no code is purged), redeemed or not. A purged
          code cannot be redeemed (``"unknown"``), but it no longer counts towards the limits of
          :meth:`issue_code`, so ``codes_before`` must be older than the start of the longest limit period;
        - facts for analytics (:meth:`record_facts`) dated before ``facts_before`` (``None``: none is purged).

        The journal is not purged by age: an event not yet applied to a checkpoint must never be dropped;
        the engine trims it (:meth:`trim_events`) once a checkpoint covers it. Suppressions are never purged.
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


def check_contact(method: str, contact_key: str) -> None:
    if not contact_key:
        raise ValueError(f"{method}: expected a non-empty `contact_key`, got {contact_key!r}")


def check_reason(reason: str) -> None:
    if not reason.strip():
        raise ValueError(f"suppress: expected a non-empty `reason` such as 'unsubscribed', got {reason!r}")


def check_purge(
    ledger_before: float,
    purchases_before: float,
    dead_letters_before: float,
    codes_before: float | None = None,
    facts_before: float | None = None,
) -> None:
    for name, value in (
        ("ledger_before", ledger_before),
        ("purchases_before", purchases_before),
        ("dead_letters_before", dead_letters_before),
        ("codes_before", 0.0 if codes_before is None else codes_before),
        ("facts_before", 0.0 if facts_before is None else facts_before),
    ):
        if math.isnan(value):  # compares false with everything: the purge would silently delete nothing
            raise ValueError(f"purge: expected `{name}` to be a time in epoch seconds, got {value!r}")


def check_fact(fact: Fact) -> None:
    """Refuse a fact a store could not keep (the engine builds them; this guards other callers)."""
    if not isinstance(fact, (Assignment, Conversion, MessageOutcome, LinkVisit)):
        expected = "Assignment, Conversion, MessageOutcome or LinkVisit"
        raise TypeError(f"record_facts: expected {expected}, got {type(fact).__name__}")
    if not fact.cart_key:
        raise ValueError(f"record_facts: {type(fact).__name__} `cart_key` must be non-empty")
    at = fact.assigned_at if isinstance(fact, Assignment) else fact.at
    if math.isnan(at):
        raise ValueError(f"record_facts: {type(fact).__name__} time must be epoch seconds, got nan")
    if isinstance(fact, Assignment):
        if not fact.flow:
            raise ValueError("record_facts: Assignment `flow` must be non-empty")
        if fact.group not in ("treatment", "holdout"):
            raise ValueError(f"record_facts: Assignment `group` {fact.group!r}; expected 'treatment' or 'holdout'")
    elif isinstance(fact, MessageOutcome) and (not fact.key or not fact.outcome):
        raise ValueError("record_facts: MessageOutcome `key` and `outcome` must be non-empty")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_code(code: CodeRecord) -> None:
    """Raise ValueError unless ``code`` is a consistent, unredeemed new code (see CodeRecord)."""
    where = f"issue_code: code for cart {code.cart_key!r}"
    if not code.code_hash:
        raise ValueError("issue_code: expected a non-empty `code_hash`, got ''")
    if not code.cart_key or not code.contact_key:
        raise ValueError(
            f"issue_code: expected a non-empty `cart_key` and `contact_key`, got {code.cart_key!r} and "
            f"{code.contact_key!r}"
        )
    if code.kind not in CODE_KINDS:
        raise ValueError(f"{where}: expected `kind` to be one of {sorted(CODE_KINDS)}, got {code.kind!r}")
    if code.percent is not None and not (_is_int(code.percent) and 1 <= code.percent <= 100):
        raise ValueError(f"{where}: expected `percent` to be an integer from 1 to 100, got {code.percent!r}")
    if code.amount is not None and not (_is_int(code.amount) and code.amount > 0):
        raise ValueError(f"{where}: expected `amount` to be minor units > 0, got {code.amount!r}")
    given = (code.percent is not None) + (code.amount is not None)
    if code.kind == "discount" and given != 1:
        raise ValueError(f"{where}: a discount takes exactly one of `percent` and `amount`, got {given}")
    if code.kind == "free_shipping" and given:
        raise ValueError(f"{where}: a free_shipping code takes neither `percent` nor `amount`")
    if not (_is_int(code.min_value) and code.min_value >= 0):
        raise ValueError(f"{where}: expected `min_value` to be minor units >= 0, got {code.min_value!r}")
    if code.currency is None and (code.amount is not None or code.min_value):
        raise ValueError(f"{where}: an `amount` or a `min_value` needs the `currency` it is in, got None")
    if not code.issued_at < code.expires_at:  # also refuses NaN
        raise ValueError(
            f"{where}: expected `expires_at` after `issued_at`, got {code.expires_at!r} and {code.issued_at!r}"
        )
    if code.redeemed_at is not None or code.redeemed_order is not None:
        raise ValueError(f"{where}: expected a new code, got one redeemed (`redeemed_at` {code.redeemed_at!r})")


def check_limits(limits: Sequence[CodeLimit]) -> None:
    for limit in limits:
        if limit.by not in LIMITS_BY:
            raise ValueError(f"issue_code: expected a limit `by` one of {sorted(LIMITS_BY)}, got {limit.by!r}")
        if not (_is_int(limit.most) and limit.most >= 1):
            raise ValueError(f"issue_code: expected a limit's `most` to be an integer >= 1, got {limit.most!r}")
        if math.isnan(limit.since):
            raise ValueError(
                f"issue_code: expected a limit's `since` to be a time in epoch seconds, got {limit.since!r}"
            )


def limit_key(code: CodeRecord, by: LimitBy) -> str | None:
    """The value of ``code`` a limit by ``by`` counts codes with (``None``: the limit does not apply)."""
    return code.contact_key if by == "contact" else code.domain if by == "domain" else code.device


def check_redeem(code_hash: str, contact_key: str, cart_value: int, order_id: str) -> None:
    if not code_hash:
        raise ValueError("redeem_code: expected a non-empty `code_hash`, got ''")
    if not contact_key:
        raise ValueError("redeem_code: expected a non-empty `contact_key`, got ''")
    if not order_id:
        raise ValueError("redeem_code: expected a non-empty `order_id`, got ''")
    if not (_is_int(cart_value) and cart_value >= 0):
        raise ValueError(f"redeem_code: expected `cart_value` to be minor units >= 0, got {cart_value!r}")


def judge_redemption(
    code: CodeRecord | None, *, contact_key: str, cart_value: int, currency: str | None, order_id: str, now: float
) -> RedeemOutcome:
    """The outcome of redeeming ``code`` as :meth:`CodeStore.redeem_code` orders the checks; both stores use it."""
    if code is None:
        return "unknown"
    if code.contact_key != contact_key:
        return "not_yours"
    if code.redeemed_order is not None:
        return "valid" if code.redeemed_order == order_id else "already_used"
    if not now < code.expires_at:  # void at expires_at exactly, as leases are; NaN is never in time either
        return "expired"
    if code.currency is not None and currency != code.currency:
        return "wrong_currency"
    if cart_value < code.min_value:
        return "below_minimum"
    return "valid"


def check_count(contact_key: str | None, domain: str | None, device: str | None, since: float) -> None:
    if contact_key is None and domain is None and device is None:
        raise ValueError("count_codes: expected at least one of `contact_key`, `domain` and `device`, got none")
    if math.isnan(since):
        raise ValueError(f"count_codes: expected `since` to be a time in epoch seconds, got {since!r}")


def check_attempt(method: str, client_key: str, now: float, window: float) -> None:
    if not client_key:
        raise ValueError(f"{method}: expected a non-empty `client_key`, got ''")
    if not window > 0 or math.isinf(window):  # also refuses NaN
        raise ValueError(f"{method}: expected `window` to be seconds > 0, got {window!r}")
    if math.isnan(now):
        raise ValueError(f"{method}: expected `now` to be a time in epoch seconds, got {now!r}")


def contact_hash(salt: bytes, contact_key: str) -> str:
    """The keyed hash both stores compute; "surrogatepass" so that any str hashes, even one with lone surrogates."""
    return hmac.new(salt, contact_key.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def export_letter(
    key: str, data: bytes, *, error: str, attempts: int, permanent: bool, at: float, resent: bool
) -> DeadLetterExport:
    try:
        decoded: Any = msgspec.json.decode(data)
        encoding: Literal["json", "base64"] = "json"
    except msgspec.DecodeError:
        decoded, encoding = base64.b64encode(data).decode("ascii"), "base64"
    return DeadLetterExport(
        key=key, data=decoded, encoding=encoding, error=error, attempts=attempts, permanent=permanent, at=at,
        resent=resent,
    )  # fmt: skip

