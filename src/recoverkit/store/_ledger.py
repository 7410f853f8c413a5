"""The send ledger and the purchases it is checked against: no message twice, none after a purchase
(:class:`LedgerStore`).

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
from typing import Final, Literal, Protocol, get_args, runtime_checkable

import msgspec

from ..errors import StoreError

__all__ = [
    "FINISHABLE",
    "LEDGER_STATES",
    "OUTCOMES",
    "PURGEABLE",
    "RESOLUTIONS",
    "RESOLVABLE",
    "Claim",
    "ClaimByMany",
    "ClaimRequest",
    "FinishRequest",
    "LedgerEntry",
    "LedgerState",
    "LedgerStore",
    "Outcome",
    "Resolution",
    "cannot_finish",
    "cannot_resolve",
    "check_claim",
    "check_outcome",
    "check_purchase",
    "check_resolution",
    "check_states",
    "missing_entry",
    "over_cap",
]

#: What :meth:`LedgerStore.claim` answers; see there.
Claim = Literal["claimed", "duplicate", "purchased", "suppressed", "capped", "not_owner"]
#: How a send ended, as :meth:`LedgerStore.finish` records it; ``"unknown"``: the adapter was given up on while still
#: running, so the message may or may not have gone (settled by :meth:`LedgerStore.resolve`, as after a crash).
Outcome = Literal["sent", "failed", "dead", "cancelled", "unknown"]
#: What a person (or the engine) decided about an ``unknown`` or ``failed`` entry; see :meth:`LedgerStore.resolve`.
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


class LedgerEntry(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The ledger's record of one idempotency key.

    ``started_at`` is when the cart was started (what purchases are compared with), ``claimed_at`` when the
    entry was claimed, ``finished_at`` when :meth:`LedgerStore.finish` recorded its outcome (``None`` before, and for
    entries settled by :meth:`LedgerStore.resolve`), ``error`` what the last failure said.
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


class ClaimRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The arguments of one :meth:`LedgerStore.claim`, for :meth:`LedgerStore.claim_many`."""

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
    #: Frequency caps the ledger enforces for this claim, across every process: ``(max, per, channel)``, at most
    #: ``max`` entries for ``contact_key`` (on ``channel``, or any channel when ``None``) claimed within the ``per``
    #: seconds up to ``claimed_at``. A partitioned engine passes its configured caps, since a customer's carts may
    #: be in several partitions; one pipeline keeps its caps itself and passes none.
    caps: tuple[tuple[int, float, str | None], ...] = ()


class ClaimByMany:
    """:meth:`LedgerStore.claim` as a :meth:`LedgerStore.claim_many` of one request: what every backend's claim
    is (mixed in by a class that defines ``claim_many``)."""

    def claim_many(self, requests: Sequence[ClaimRequest]) -> list[Claim]:
        raise NotImplementedError  # the class mixing this in defines it

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
        request = ClaimRequest(
            key=key, cart_key=cart_key, contact_key=contact_key, channel=channel, started_at=started_at, owner=owner,
            now=now, at=at,
        )  # fmt: skip
        return self.claim_many([request])[0]


def over_cap(r: ClaimRequest, claimed: Sequence[tuple[str, float]]) -> bool:
    """Whether claiming ``r`` would exceed one of ``r.caps``, given the ``(channel, claimed_at)`` of the entries
    already in the ledger for ``r.contact_key`` (every state but ``cancelled``)."""
    at = r.now if r.at is None else r.at
    for limit, per, channel in r.caps:
        since = at - per
        used = sum(1 for ch, when in claimed if when > since and (channel is None or ch == channel))
        if (channel is None or channel == r.channel) and used >= limit:
            return True
    return False


class FinishRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The arguments of one :meth:`LedgerStore.finish`, for :meth:`LedgerStore.finish_many`."""

    key: str
    outcome: Outcome
    now: float
    error: str | None = None


@runtime_checkable
class LedgerStore(Protocol):
    """The dispatch ledger (one entry per idempotency key, claimed before a send and finished after it) and
    the purchases, by cart and by contact, that :meth:`claim` checks: the "never after purchase" gate.

    Guarantees: each call is one transaction (``claim_many`` and ``finish_many`` one for all their requests),
    atomic across every process sharing the store: of any number of callers racing for a key exactly one is
    told ``"claimed"``. :meth:`claim` is fenced by the lease: it refuses (``"not_owner"``) an owner that does
    not hold :data:`~recoverkit.store.PIPELINE_LEASE` at ``now``, in the same transaction, so a process that
    lost the pipeline cannot send. It also refuses a suppressed contact
    (:meth:`~recoverkit.store.PrivacyStore.suppress`). The clock arguments: ``now`` is wall-clock epoch
    seconds, the clock leases are checked on; ``at`` (claims, purchases) and ``started_at`` are on the engine's
    clock (event time in a replay), and are what purchases are compared with.
    """

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
        at: float | None = None,
    ) -> Claim:
        """Claim ``key`` for sending; only ``"claimed"`` allows the caller to hand the message to an adapter.

        The entry's ``claimed_at`` is ``at`` (the engine's clock; ``None``: ``now``, the wall clock the lease is
        checked on).

        The answers, checked in this order in one transaction (so that of any number of threads and processes
        racing for a key, exactly one is told ``"claimed"``):

        - ``"not_owner"``: ``owner`` does not hold :data:`~recoverkit.store.PIPELINE_LEASE`, or it expired at ``now``;
        - ``"duplicate"``: ``key`` is in the ledger already, in any state;
        - ``"suppressed"``: ``contact_key`` was suppressed (:meth:`suppress`, :meth:`forget`): never again;
        - ``"purchased"``: a purchase of ``cart_key`` or by ``contact_key`` was recorded at or after
          ``started_at`` (the cart's start);
        - ``"capped"``: (only with ``caps``, see :class:`ClaimRequest`) one of them is used up for ``contact_key``;
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
