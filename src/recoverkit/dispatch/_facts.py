"""Dispatch's side writer of analytics facts: what the stages decided, written to the store beside the pipeline.

The facts themselves (:mod:`recoverkit.facts`) come from the stages before (assignments, conversions, steps
never scheduled, restore links followed) and from dispatch (every message's final outcome). They are gathered
here and written by one background task at a time; until written they are part of dispatch's checkpoint, so a
fact is in the store or in the checkpoint whatever moment a crash picks. The store keeps the first fact of a
key, so writing one twice is harmless. A write that fails keeps the facts for the next one and never stops the
stage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio.abc

from .._log import Logger
from ..facts import Fact, MessageOutcome
from ..items import Message
from ..store.base import Store
from ._counts import MessageCounts

if TYPE_CHECKING:
    from .._store_runner import StoreCall

__all__ = ["FactWriter"]


class FactWriter:
    """Gathers facts (:meth:`add`, :meth:`ended`) and writes them to ``store`` through ``call``.

    ``outcomes`` is the stage's counter of message outcomes; ``written`` is called after every write (done or
    failed), for ``flush()`` barriers waiting on it.
    """

    def __init__(
        self, store: Store, call: StoreCall, log: Logger, outcomes: Counter[str], written: Callable[[], None]
    ) -> None:
        self._store = store
        self._call = call
        self._log = log
        self._outcomes = outcomes
        self._written = written
        #: Final outcomes counted by channel and flow (the stage shares its Schedule's).
        self.counts = MessageCounts()
        #: Facts not yet written, oldest first (part of the checkpoint).
        self.pending: list[Fact] = []
        #: A write is under way (it picks up what is added meanwhile).
        self.writing = False

    def add(self, fact: Fact) -> None:
        self.pending.append(fact)

    def ended(self, message: Message, outcome: str, at: float) -> None:
        """Count a message's final outcome and keep it as a fact, dated ``at`` (on the engine's clock)."""
        self._outcomes[outcome] += 1
        self.counts.end(message, outcome)
        self.pending.append(outcome_of(message, outcome, at))

    def start(self, task_group: anyio.abc.TaskGroup | None) -> None:
        """Start writing the facts gathered so far, unless a write is under way (it picks them up)."""
        if self.pending and not self.writing and task_group is not None:
            self.writing = True
            task_group.start_soon(self._record, name="recoverkit-facts")

    async def _record(self) -> None:
        # Written while the snapshot still holds them (the store keeps the first fact of a key, so a second write
        # is harmless): a fact is in the store or in the checkpoint whatever moment a crash picks.
        pending = self.pending  # a restore replaces the list: then this write's work is done
        try:
            while pending and pending is self.pending:
                batch = list(pending)
                try:
                    await self._call(self._store.record_facts, batch)
                except Exception as exc:  # kept for the next batch to try again; never stops the stage
                    self._log.error("facts_not_recorded", count=len(batch), error=str(exc))
                    return
                del pending[: len(batch)]
        finally:
            self.writing = False
            self._written()

    def take(self, contact_keys: set[str]) -> list[Fact]:
        """Remove and return the facts not yet written that name one of ``contact_keys`` (an erasure writes them
        to the store first, for its forget to pseudonymise them with the rest)."""
        theirs = [f for f in self.pending if getattr(f, "contact_key", None) in contact_keys]
        self.pending[:] = [f for f in self.pending if getattr(f, "contact_key", None) not in contact_keys]
        return theirs

    def restore(self, facts: list[Fact]) -> None:
        """Replace the facts not yet written (a new list: a write under way of the old ones stops)."""
        self.pending = list(facts)


def outcome_of(message: Message, outcome: str, at: float) -> MessageOutcome:
    """The fact that ``message`` ended with ``outcome`` at ``at`` (on the engine's clock)."""
    offer = message.offer
    return MessageOutcome(
        key=message.key, cart_key=message.cart.cart_key, contact_key=message.recipient.contact_key,
        flow=message.flow, step=message.step, outcome=outcome, at=at, channel=message.channel,
        variant=message.variant, offer=offer.name if offer is not None else None,
        offer_kind=offer.kind if offer is not None else None,
    )  # fmt: skip
