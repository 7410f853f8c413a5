"""The records analytics reads live in recoverkit.facts; the store's old paths name the same classes."""

from __future__ import annotations

import msgspec

import recoverkit.store
import recoverkit.store.base
from recoverkit import facts
from recoverkit.facts import Assignment, Conversion, Fact, LinkVisit, MessageOutcome, fact_time


def test_store_paths_name_the_same_classes() -> None:
    for name in ("Assignment", "AssignmentGroup", "Conversion", "Fact", "HoldoutScope", "LinkVisit", "MessageOutcome"):
        assert getattr(recoverkit.store, name) is getattr(facts, name)
        assert getattr(recoverkit.store.base, name) is getattr(facts, name)


def test_fact_time_is_assigned_at_for_an_assignment_and_at_for_the_others() -> None:
    assignment = Assignment(
        cart_key="c", flow="f", group="treatment", contact_key="k", assigned_at=5.0, value=100
    )  # fmt: skip
    assert fact_time(assignment) == 5.0
    assert fact_time(Conversion(cart_key="c", contact_key="k", at=6.0)) == 6.0
    outcome = MessageOutcome(key="m", cart_key="c", contact_key="k", flow="f", step=0, outcome="sent", at=7.0)
    assert fact_time(outcome) == 7.0
    assert fact_time(LinkVisit(cart_key="c", at=8.0)) == 8.0


def test_a_fact_decodes_to_its_own_kind() -> None:
    visit = LinkVisit(cart_key="c", at=8.0)
    decoded = msgspec.json.decode(msgspec.json.encode(visit), type=Fact)
    assert decoded == visit
    assert type(decoded) is LinkVisit
