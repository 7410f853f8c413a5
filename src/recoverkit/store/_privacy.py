"""Data protection: suppressions, erasure, access requests and retention across every table (:class:`PrivacyStore`).

Suppressions are kept as keyed hashes (:meth:`PrivacyStore.hash_contact`), never as the contact keys themselves.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from typing import Any, Final, Literal, Protocol, runtime_checkable

import msgspec

from ..facts import Assignment, Conversion, MessageOutcome
from ._codes import CodeRecord
from ._ledger import LedgerEntry

__all__ = [
    "FORGOTTEN",
    "SALT_BYTES",
    "ContactExport",
    "DeadLetterExport",
    "ForgetReport",
    "PrivacyStore",
    "PurgeReport",
    "check_contact",
    "check_purge",
    "check_reason",
    "contact_hash",
    "export_letter",
]

#: Bytes of a store's salt (the key of hash_contact()): 256 bits, as strong as SHA-256 itself.
SALT_BYTES: Final = 32
#: The suppression reason forget() records; it replaces any earlier reason, being the stronger fact.
FORGOTTEN: Final = "forgotten"


class ForgetReport(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`PrivacyStore.forget` did: ``ledger_entries`` and ``codes`` rewritten to hold the contact's hash
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
    """How many rows :meth:`PrivacyStore.purge` deleted from each table."""

    ledger_entries: int
    purchases: int
    dead_letters: int
    codes: int = 0
    facts: int = 0


class DeadLetterExport(msgspec.Struct, frozen=True, kw_only=True):
    """A dead letter as :meth:`PrivacyStore.export` shows it.

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
    """Everything a store keeps about one contact (:meth:`PrivacyStore.export`); encodable with ``msgspec.json``.

    ``ledger`` holds the entries claimed for the contact in claim order, including those :meth:`PrivacyStore.forget`
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


@runtime_checkable
class PrivacyStore(Protocol):
    """Suppressions (contacts who must not be written to again), erasure (:meth:`forget`), access requests
    (:meth:`export`) and retention (:meth:`purge`); the last three reach into every table of the store.

    Guarantees: :meth:`forget` and :meth:`purge` are each one transaction, atomic across every process sharing
    the store; :meth:`export` reads one snapshot. A suppression is permanent and checked by
    :meth:`~recoverkit.store.LedgerStore.claim` in its own transaction. None of them is fenced by the lease (an
    erasure request may arrive in any process). ``at`` is when a suppression or an erasure happened, epoch
    seconds passed in by the caller; the ``*_before`` bounds of :meth:`purge` are on the clock the rows were
    dated with (the engine's).
    """

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
