"""The records analytics reads: what the engine decided about each abandoned cart and how it ended.

The stages write these facts as they go (route: an :class:`Assignment` per cart and flow, a :class:`Conversion`
per purchase that closes a cart, a :class:`MessageOutcome` per step never scheduled; dispatch: a
:class:`MessageOutcome` per message; sessionize: a :class:`LinkVisit` per followed restore link) and a store keeps
them (:meth:`recoverkit.store.Store.record_facts`); the reports of
:mod:`recoverkit.analytics` read them back. Each fact is deterministic (what a replay of the same events writes
again), frozen, and tagged, so that a :data:`Fact` decodes to its own kind.

This module depends on nothing else in recoverkit, so that the stages and analytics can share the types without
depending on the store that keeps them.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "Assignment",
    "AssignmentGroup",
    "Conversion",
    "Fact",
    "HoldoutScope",
    "LinkVisit",
    "MessageOutcome",
    "fact_time",
]

# Facts, ledger entries, codes and dead letters are ``gc=False``: plain data that can form no reference cycle, and a
# store in memory keeps every one of them, which the garbage collector's full passes would otherwise walk.

#: Whether an abandoned cart got its flow's messages or was held out (see :class:`Assignment`).
AssignmentGroup = Literal["treatment", "holdout"]
#: Which holdout held a cart out: the shop-wide one (``Config.holdout``) or its flow's (``Flow.holdout``).
HoldoutScope = Literal["global", "flow"]


class Assignment(msgspec.Struct, frozen=True, kw_only=True, tag=True, gc=False):
    """The experiment group an abandoned cart was put in when it was routed: what uplift is measured from.

    Written once per cart and flow (a cart is in a flow at most once, as the ledger's keys are), whether the
    cart was messaged (``group="treatment"``) or held out (``"holdout"``; ``scope`` says whether by the shop-wide
    ``holdout`` or the flow's own). The assignment is deterministic (a keyed hash of the seed and the cart), so a
    replay writes the same rows. ``variants`` maps a step's index (as text) to the A/B variant the cart got.
    ``value`` is the cart's value in minor units of ``currency``; ``score``, ``reason`` and ``trigger`` are
    what the engine knew when it decided, so that analytics can compare like with like.
    """

    cart_key: str
    flow: str
    group: AssignmentGroup
    contact_key: str
    assigned_at: float
    value: int
    currency: str | None = None
    scope: HoldoutScope | None = None
    variants: dict[str, str] = {}
    score: float = 0.0
    reason: str = ""
    trigger: str = ""


class Conversion(msgspec.Struct, frozen=True, kw_only=True, tag=True, gc=False):
    """A cart converted at ``at``: bought in its own session (``own``, with the order's ``value`` in minor units
    of ``currency`` and ``transaction_id`` when the purchase event said), or closed by a purchase of its customer
    elsewhere. What recovered orders and uplift are counted from; one row per cart and time."""

    cart_key: str
    contact_key: str
    at: float
    own: bool = True
    value: int | None = None
    currency: str | None = None
    transaction_id: str | None = None


class MessageOutcome(msgspec.Struct, frozen=True, kw_only=True, tag=True, gc=False):
    """How one step of a flow ended for one cart: the final outcome of its message (``sent``, ``dead``,
    ``cancelled_purchase``, ``capped``, ``suppressed``, ...) or why it was never scheduled (``skipped_no_consent``,
    ``skipped_condition``, ...). ``key`` is the message's idempotency key. One row per key and outcome: a step
    cancelled because the shopper came back (``cancelled_resumed``) is routed again when the cart is abandoned
    again, and may then be sent; ``sent`` happens at most once per key (the ledger sees to that)."""

    key: str
    cart_key: str
    contact_key: str
    flow: str
    step: int
    outcome: str
    at: float
    channel: str | None = None
    variant: str | None = None
    offer: str | None = None
    offer_kind: str | None = None


class LinkVisit(msgspec.Struct, frozen=True, kw_only=True, tag=True, gc=False):
    """A cart-restore link was followed (the shop's restore view recorded a ``cart_restore`` page view)."""

    cart_key: str
    at: float


#: What :meth:`recoverkit.store.Store.record_facts` keeps, for analytics.
Fact = Assignment | Conversion | MessageOutcome | LinkVisit


def fact_time(fact: Fact) -> float:
    """When ``fact`` happened: an assignment's ``assigned_at``, any other fact's ``at``."""
    return fact.assigned_at if isinstance(fact, Assignment) else fact.at
