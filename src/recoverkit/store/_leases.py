"""Leases: which of the processes sharing a store owns the pipeline (:class:`LeaseStore`)."""

from __future__ import annotations

from typing import Final, Literal, Protocol, runtime_checkable

__all__ = [
    "PIPELINE_LEASE",
    "LeaseStore",
    "LeaseTaken",
    "check_lease",
]

#: The lease a process must hold for :meth:`~recoverkit.store.LedgerStore.claim` to hand it a message.
PIPELINE_LEASE: Final = "pipeline"

#: How :meth:`LeaseStore.take_lease` got a lease: ``"renewed"``, it was ``owner``'s already (even if it had expired:
#: nobody else took it meanwhile); ``"taken"``, it was free, released, or another owner's and expired.
LeaseTaken = Literal["renewed", "taken"]


@runtime_checkable
class LeaseStore(Protocol):
    """Named leases with an owner and an expiry time.

    Guarantees: each call is one transaction, atomic across every process sharing the store, so at any ``now``
    at most one owner holds a lease. A lease is held while ``now < expires_at`` and void at ``expires_at``
    exactly. ``now`` is wall-clock epoch seconds passed in by the caller (never the engine's event time: leases
    are about processes, which live in wall time), and every process sharing a store must pass the same clock.
    :meth:`~recoverkit.store.LedgerStore.claim` checks :data:`PIPELINE_LEASE` in its own transaction: that is
    the fence that keeps a process that lost the lease from sending.
    """

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


def check_lease(name: str, owner: str, ttl: float) -> None:
    if not name or not owner:
        raise ValueError(f"acquire_lease: expected a non-empty `name` and `owner`, got {name!r} and {owner!r}")
    if not ttl > 0:  # also rejects NaN
        raise ValueError(f"acquire_lease: expected `ttl` > 0 seconds, got {ttl!r}")
