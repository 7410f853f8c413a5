"""The contract of :class:`~recoverkit.store.FactStore`: facts for analytics: round trips, the first fact of a key
kept, time windows, erasure and retention.

See :mod:`tests.store.contract_base` for how a backend subclasses it."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from recoverkit.facts import Assignment, Conversion, LinkVisit, MessageOutcome
from recoverkit.store import (
    FactStore,
    Store,
)

from .contract_base import T0, StoreFixture

__all__ = ["FactContract"]


class FactContract(StoreFixture):
    """What every store promises as a :class:`~recoverkit.store.FactStore`."""

    def test_satisfies_the_fact_store_protocol(self, store: Store) -> None:
        assert isinstance(store, FactStore)

    @staticmethod
    def assignment(cart: str, flow: str = "f", **fields: Any) -> Assignment:
        values: dict[str, Any] = {
            "group": "treatment", "contact_key": "contact-1", "assigned_at": T0, "value": 2500, "currency": "EUR",
        }  # fmt: skip
        values.update(fields)
        return Assignment(cart_key=cart, flow=flow, **values)

    def test_assignments_round_trip_with_every_field(self, store: Store) -> None:
        a = self.assignment(
            "cart-1", group="holdout", scope="global", variants={"0": "a", "2": "b"}, score=0.25, reason="payment",
            trigger="exit_intent", currency=None,
        )  # fmt: skip
        assert store.record_facts([a]) == 1
        assert store.assignments() == [a]

    def test_the_first_assignment_of_a_cart_and_flow_is_kept(self, store: Store) -> None:
        first = self.assignment("cart-1", group="treatment")
        assert store.record_facts([first, self.assignment("cart-1", group="holdout")]) == 1
        assert store.record_facts([self.assignment("cart-1", assigned_at=T0 + 5)]) == 0
        assert store.record_facts([self.assignment("cart-1", flow="other")]) == 1
        assert [(a.flow, a.group, a.assigned_at) for a in store.assignments()] == [
            ("f", "treatment", T0), ("other", "treatment", T0),
        ]  # fmt: skip
        assert store.record_facts([]) == 0

    def test_assignments_are_read_by_time_window_oldest_first(self, store: Store) -> None:
        store.record_facts([self.assignment(f"cart-{i}", assigned_at=T0 + 10 * (5 - i)) for i in range(5)])
        assert [a.cart_key for a in store.assignments()] == ["cart-4", "cart-3", "cart-2", "cart-1", "cart-0"]
        assert [a.cart_key for a in store.assignments(since=T0 + 10, until=T0 + 40)] == ["cart-4", "cart-3", "cart-2"]

    def test_record_facts_refuses_an_assignment_it_could_not_keep(self, store: Store) -> None:
        with pytest.raises(ValueError, match="cart_key"):
            store.record_facts([self.assignment("")])
        with pytest.raises(ValueError, match="group"):
            store.record_facts([self.assignment("cart-1", group="control")])
        assert store.assignments() == []

    def test_forget_pseudonymises_assignments_and_export_lists_them(self, store: Store) -> None:
        store.record_facts([self.assignment("cart-1"), self.assignment("cart-2", contact_key="someone-else")])
        assert [a.cart_key for a in store.export("contact-1").assignments] == ["cart-1"]
        report = store.forget("contact-1", at=T0 + 1)
        assert report.facts == 1
        kept = {a.cart_key: a.contact_key for a in store.assignments()}
        assert kept == {"cart-1": store.hash_contact("contact-1"), "cart-2": "someone-else"}
        assert [a.cart_key for a in store.export("contact-1").assignments] == ["cart-1"]  # found by its hash

    def test_purge_deletes_facts_dated_before_the_cutoff_only_when_asked(self, store: Store) -> None:
        store.record_facts([
            self.assignment("old", assigned_at=T0), self.assignment("new", assigned_at=T0 + 99),
            Conversion(cart_key="old", contact_key="c", at=T0), LinkVisit(cart_key="old", at=T0),
            self.outcome("old/f/0", at=T0), self.outcome("new/f/0", at=T0 + 99),
        ])  # fmt: skip
        cutoffs = {"ledger_before": T0 + 50, "purchases_before": T0 + 50, "dead_letters_before": T0 + 50}
        assert store.purge(**cutoffs).facts == 0
        assert store.purge(**cutoffs, facts_before=T0 + 50).facts == 4
        assert [a.cart_key for a in store.assignments()] == ["new"]
        assert store.conversions() == [] and store.visits() == []
        assert [o.key for o in store.outcomes()] == ["new/f/0"]

    @staticmethod
    def outcome(key: str, **fields: Any) -> MessageOutcome:
        cart, flow, step = key.split("/")
        values: dict[str, Any] = {
            "cart_key": cart, "contact_key": "contact-1", "flow": flow, "step": int(step), "outcome": "sent",
            "at": T0, "channel": "email",
        }  # fmt: skip
        values.update(fields)
        return MessageOutcome(key=key, **values)

    def test_every_kind_of_fact_round_trips_and_the_first_of_a_key_is_kept(self, store: Store) -> None:
        conversion = Conversion(
            cart_key="cart-1", contact_key="contact-1", at=T0 + 5, value=4990, currency="EUR", transaction_id="o-1"
        )
        elsewhere = Conversion(cart_key="cart-2", contact_key="contact-1", at=T0 + 5, own=False)
        sent = self.outcome("cart-1/f/0", variant="b", offer="ten", offer_kind="discount")
        skipped = self.outcome("cart-1/f/1", outcome="skipped_no_consent", channel=None)
        visit = LinkVisit(cart_key="cart-1", at=T0 + 2)
        assert store.record_facts([conversion, elsewhere, sent, skipped, visit]) == 5
        again = [
            msgspec.structs.replace(conversion, value=1), msgspec.structs.replace(sent, at=T0 + 9), visit,
        ]  # fmt: skip
        assert store.record_facts(again) == 0
        assert store.conversions() == [conversion, elsewhere]
        assert store.outcomes() == [sent, skipped]
        assert store.visits() == [visit]
        assert store.visits(since=T0 + 3) == [] and store.outcomes(until=T0) == []
        # A step cancelled when the shopper came back is routed again if the cart is abandoned again: both stay.
        resent = self.outcome("cart-1/f/1", outcome="sent", at=T0 + 99)
        assert store.record_facts([resent]) == 1
        assert [(o.key, o.outcome) for o in store.outcomes()] == [
            ("cart-1/f/0", "sent"), ("cart-1/f/1", "skipped_no_consent"), ("cart-1/f/1", "sent"),
        ]  # fmt: skip

    def test_forget_pseudonymises_conversions_and_outcomes_and_export_lists_them(self, store: Store) -> None:
        store.record_facts([
            Conversion(cart_key="cart-1", contact_key="contact-1", at=T0, value=100, currency="EUR"),
            self.outcome("cart-1/f/0"),
        ])  # fmt: skip
        exported = store.export("contact-1")
        assert [c.cart_key for c in exported.conversions] == ["cart-1"] and len(exported.outcomes) == 1
        assert store.forget("contact-1", at=T0 + 1).facts == 2
        hashed = store.hash_contact("contact-1")
        assert {c.contact_key for c in store.conversions()} == {o.contact_key for o in store.outcomes()} == {hashed}

    def test_record_facts_refuses_what_it_could_not_keep(self, store: Store) -> None:
        with pytest.raises(ValueError, match="cart_key"):
            store.record_facts([LinkVisit(cart_key="", at=T0)])
        with pytest.raises(ValueError, match="`key` and `outcome`"):
            store.record_facts([self.outcome("c/f/0", outcome="")])
        with pytest.raises(TypeError, match="expected Assignment, Conversion, MessageOutcome or LinkVisit"):
            store.record_facts(["fact"])  # type: ignore[list-item]
        assert store.outcomes() == [] and store.visits() == []
