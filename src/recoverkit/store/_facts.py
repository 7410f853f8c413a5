"""Facts for analytics as a store keeps them (:class:`FactStore`); the records are :mod:`recoverkit.facts`'."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..facts import Assignment, Conversion, Fact, LinkVisit, MessageOutcome

__all__ = [
    "FactStore",
    "check_fact",
]

@runtime_checkable
class FactStore(Protocol):
    """The facts the engine records for analytics (:mod:`recoverkit.facts`) and the readers the reports use.

    Guarantees: :meth:`record_facts` is one transaction, and the first fact of each natural key is kept, so
    writing the same facts again (a restart, a replay: they are deterministic) changes nothing. Not fenced by
    the lease, for the same reason: any process writes the same rows. Times (``assigned_at``, ``at``, and the
    readers' ``since`` and ``until``) are on the engine's clock: event time in a replay.
    """

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
