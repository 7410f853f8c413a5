"""The contract of :class:`~recoverkit.store.LedgerStore`: the ledger: a claim fenced by the lease, never two claims of
a key, never a claim after a purchase, and the states an entry moves through.

See :mod:`tests.store.contract_base` for how a backend subclasses it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recoverkit.errors import StoreError
from recoverkit.store import (
    PIPELINE_LEASE,
    ClaimRequest,
    FinishRequest,
    LedgerEntry,
    LedgerStore,
    Store,
)

from .contract_base import OWNER, T0, StoreFixture, claim, owned

__all__ = ["LedgerContract"]


class LedgerContract(StoreFixture):
    """What every store promises as a :class:`~recoverkit.store.LedgerStore`."""

    def test_satisfies_the_ledger_store_protocol(self, store: Store) -> None:
        assert isinstance(store, LedgerStore)

    def test_the_first_claim_of_a_key_records_it_as_sending(self, store: Store) -> None:
        owned(store)
        assert claim(store, "cart-1/f/0", channel="sms", started_at=T0 - 5, now=T0 + 7) == "claimed"
        assert store.ledger() == [
            LedgerEntry(
                key="cart-1/f/0",
                cart_key="cart-1",
                contact_key="contact-1",
                channel="sms",
                state="sending",
                owner=OWNER,
                started_at=T0 - 5,
                claimed_at=T0 + 7,
            )
        ]

    @pytest.mark.parametrize("state", ["sending", "sent", "failed", "dead", "cancelled", "unknown"])
    def test_a_key_already_in_the_ledger_is_a_duplicate_in_any_state(self, store: Store, state: str) -> None:
        owned(store)
        claim(store, "k")
        if state == "unknown":
            store.mark_unknown()
        elif state != "sending":
            store.finish("k", state, now=T0 + 3601)  # type: ignore[arg-type]
        assert claim(store, "k") == "duplicate"
        assert claim(store, "k", cart_key="other", contact_key="other") == "duplicate"
        assert [e.state for e in store.ledger()] == [state]

    def test_without_the_lease_a_claim_is_not_owner(self, store: Store) -> None:
        assert claim(store, "k") == "not_owner"
        assert store.ledger() == []

    def test_a_claim_by_another_owner_than_the_lease_holder_is_not_owner(self, store: Store) -> None:
        owned(store, "worker-2")
        assert claim(store, "k") == "not_owner"
        assert store.ledger() == []

    def test_a_claim_at_or_after_the_lease_expiry_is_not_owner(self, store: Store) -> None:
        assert store.acquire_lease(PIPELINE_LEASE, OWNER, ttl=30, now=T0)
        assert claim(store, "k1", now=T0 + 29.999) == "claimed"
        assert claim(store, "k2", now=T0 + 30) == "not_owner"
        assert claim(store, "k3", now=T0 + 31) == "not_owner"

    def test_not_owner_is_answered_before_duplicate(self, store: Store) -> None:
        owned(store)
        claim(store, "k")
        store.release_lease(PIPELINE_LEASE, OWNER)
        assert claim(store, "k") == "not_owner"

    @pytest.mark.parametrize("delay", [0.0, 1.0, 86_400.0])
    def test_a_purchase_of_the_cart_at_or_after_its_start_blocks_the_claim(self, store: Store, delay: float) -> None:
        owned(store)
        store.record_purchase(cart_key="cart-1", contact_key=None, at=T0 + delay)
        assert claim(store, "k", started_at=T0) == "purchased"
        assert store.ledger() == []  # "purchased" writes nothing

    @pytest.mark.parametrize("delay", [0.0, 120.0])
    def test_a_purchase_by_the_contact_at_or_after_the_cart_start_blocks_the_claim(
        self, store: Store, delay: float
    ) -> None:
        owned(store)
        store.record_purchase(cart_key="another-cart", contact_key="contact-1", at=T0 + delay)
        assert claim(store, "k", started_at=T0) == "purchased"

    def test_a_purchase_before_the_cart_started_does_not_block_it(self, store: Store) -> None:
        owned(store)
        store.record_purchase(cart_key="cart-1", contact_key="contact-1", at=T0 - 0.001)
        assert claim(store, "k", started_at=T0) == "claimed"

    def test_purchases_of_other_carts_and_contacts_do_not_block(self, store: Store) -> None:
        owned(store)
        store.record_purchase(cart_key="cart-2", contact_key="contact-2", at=T0 + 10)
        assert claim(store, "k") == "claimed"

    def test_the_latest_purchase_time_is_kept(self, store: Store) -> None:
        owned(store)
        store.record_purchase(cart_key="cart-1", contact_key=None, at=T0 + 50)
        store.record_purchase(cart_key="cart-1", contact_key=None, at=T0 - 50)  # older, arriving late
        assert claim(store, "k", started_at=T0) == "purchased"
        store.record_purchase(cart_key=None, contact_key="contact-9", at=T0 - 50)
        store.record_purchase(cart_key=None, contact_key="contact-9", at=T0 + 50)
        assert claim(store, "k9", cart_key="cart-9", contact_key="contact-9", started_at=T0) == "purchased"

    def test_duplicate_is_answered_before_purchased(self, store: Store) -> None:
        owned(store)
        claim(store, "k")
        store.record_purchase(cart_key="cart-1", contact_key=None, at=T0 + 10)
        assert claim(store, "k") == "duplicate"

    def test_record_purchase_needs_a_cart_or_a_contact(self, store: Store) -> None:
        with pytest.raises(ValueError, match=r"cart_key.*contact_key.*neither"):
            store.record_purchase(cart_key=None, contact_key=None, at=T0)

    def test_claim_rejects_an_empty_key(self, store: Store) -> None:
        owned(store)
        with pytest.raises(ValueError, match="non-empty idempotency `key`"):
            claim(store, "")

    @pytest.mark.parametrize("outcome", ["sent", "failed", "dead", "cancelled"])
    def test_finish_records_the_outcome_its_time_and_error(self, store: Store, outcome: str) -> None:
        owned(store)
        claim(store, "k")
        store.finish("k", outcome, now=T0 + 3602, error="TimeoutError: no answer")  # type: ignore[arg-type]
        (entry,) = store.ledger()
        assert (entry.state, entry.finished_at, entry.error) == (outcome, T0 + 3602, "TimeoutError: no answer")

    def test_finish_settles_an_unknown_entry_whose_send_did_return(self, store: Store) -> None:
        owned(store)
        claim(store, "k")
        store.mark_unknown()
        store.finish("k", "sent", now=T0 + 4000)
        assert [(e.state, e.finished_at) for e in store.ledger()] == [("sent", T0 + 4000)]

    def test_finishing_an_entry_twice_raises_naming_the_key_and_state(self, store: Store) -> None:
        owned(store)
        claim(store, "cart-1/f/0")
        store.finish("cart-1/f/0", "sent", now=T0 + 3601)
        with pytest.raises(StoreError, match=r"cannot finish key 'cart-1/f/0'.*'sent'.*\['sending', 'unknown'\]"):
            store.finish("cart-1/f/0", "failed", now=T0 + 3602)
        assert [e.state for e in store.ledger()] == ["sent"]

    def test_finishing_a_key_that_was_never_claimed_raises(self, store: Store) -> None:
        with pytest.raises(StoreError, match="no ledger entry for key 'nope'"):
            store.finish("nope", "sent", now=T0)

    def test_finish_rejects_an_unknown_outcome(self, store: Store) -> None:
        owned(store)
        claim(store, "k")
        with pytest.raises(ValueError, match=r"outcome.*'delivered'"):
            store.finish("k", "delivered", now=T0)  # type: ignore[arg-type]

    def test_ledger_lists_entries_in_claim_order_filtered_by_state(self, store: Store) -> None:
        owned(store)
        for key in ("c", "a", "b", "d"):
            claim(store, key)
        store.finish("a", "sent", now=T0 + 3601)
        store.finish("d", "dead", now=T0 + 3601)
        assert [e.key for e in store.ledger()] == ["c", "a", "b", "d"]
        assert [e.key for e in store.ledger({"sending"})] == ["c", "b"]
        assert [e.key for e in store.ledger(["dead", "sent"])] == ["a", "d"]
        assert store.ledger(()) == []

    def test_ledger_rejects_unknown_states_and_a_bare_string(self, store: Store) -> None:
        with pytest.raises(ValueError, match=r"unknown states \['pending'\]"):
            store.ledger({"sent", "pending"})  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="got the string 'sent'"):
            store.ledger("sent")  # type: ignore[arg-type]

    def test_mark_unknown_turns_every_sending_entry_unknown(self, store: Store) -> None:
        owned(store)
        for key in ("a", "b", "c"):
            claim(store, key)
        store.finish("b", "sent", now=T0 + 3601)
        assert store.mark_unknown() == 2
        assert [(e.key, e.state) for e in store.ledger()] == [("a", "unknown"), ("b", "sent"), ("c", "unknown")]
        assert store.mark_unknown() == 0

    def test_mark_unknown_of_an_owner_leaves_other_owners_entries(self, store: Store) -> None:
        owned(store, "w1")
        claim(store, "a", owner="w1")
        store.release_lease(PIPELINE_LEASE, "w1")
        owned(store, "w2")
        claim(store, "b", owner="w2")
        assert store.mark_unknown("w1") == 1
        assert [(e.key, e.state) for e in store.ledger()] == [("a", "unknown"), ("b", "sending")]

    @pytest.mark.parametrize("state", ["unknown", "failed"])
    def test_resolve_retry_deletes_the_entry_so_the_key_can_be_claimed_again(self, store: Store, state: str) -> None:
        owned(store)
        claim(store, "k")
        if state == "unknown":
            store.mark_unknown()
        else:
            store.finish("k", "failed", now=T0 + 3601)
        store.resolve("k", "retry")
        assert store.ledger() == []
        assert claim(store, "k") == "claimed"

    @pytest.mark.parametrize("state", ["unknown", "failed"])
    def test_resolve_sent_records_the_entry_as_sent(self, store: Store, state: str) -> None:
        owned(store)
        claim(store, "k")
        if state == "unknown":
            store.mark_unknown()
        else:
            store.finish("k", "failed", now=T0 + 3601)
        store.resolve("k", "sent")
        assert [e.state for e in store.ledger()] == ["sent"]
        assert claim(store, "k") == "duplicate"

    @pytest.mark.parametrize("state", ["sending", "sent", "dead", "cancelled"])
    def test_resolve_refuses_entries_that_are_not_unknown_or_failed(self, store: Store, state: str) -> None:
        owned(store)
        claim(store, "cart-1/f/0")
        if state != "sending":
            store.finish("cart-1/f/0", state, now=T0 + 3601)  # type: ignore[arg-type]
        with pytest.raises(
            StoreError, match=rf"cannot resolve key 'cart-1/f/0'.*'{state}'.*\['unknown', 'failed'\]"
        ):
            store.resolve("cart-1/f/0", "retry")
        assert [e.state for e in store.ledger()] == [state]

    def test_resolving_a_key_that_is_not_in_the_ledger_raises(self, store: Store) -> None:
        with pytest.raises(StoreError, match="no ledger entry for key 'nope'"):
            store.resolve("nope", "sent")

    def test_resolve_rejects_an_unknown_outcome(self, store: Store) -> None:
        with pytest.raises(ValueError, match=r"resolve.*'failed'"):
            store.resolve("k", "failed")  # type: ignore[arg-type]

    def test_claim_many_answers_as_claims_one_by_one_in_order(self, store: Store) -> None:
        store.acquire_lease(PIPELINE_LEASE, OWNER, ttl=1e6, now=T0)
        store.record_purchase(cart_key="bought", contact_key=None, at=T0 + 10)

        def request(key: str, cart: str = "cart-1", owner: str = OWNER) -> ClaimRequest:
            return ClaimRequest(
                key=key, cart_key=cart, contact_key="contact-1", channel="email", started_at=T0, owner=owner,
                now=T0 + 60,
            )  # fmt: skip

        answers = store.claim_many(
            [request("a"), request("a"), request("b", cart="bought"), request("c", owner="intruder"), request("d")]
        )
        assert answers == ["claimed", "duplicate", "purchased", "not_owner", "claimed"]
        assert [e.key for e in store.ledger()] == ["a", "d"]
        assert store.claim_many([]) == []

    def test_finish_many_records_each_and_returns_the_refusals(self, store: Store) -> None:
        store.acquire_lease(PIPELINE_LEASE, OWNER, ttl=1e6, now=T0)
        assert claim(store, "a") == "claimed" and claim(store, "b") == "claimed"
        answers = store.finish_many(
            [
                FinishRequest(key="a", outcome="sent", now=T0 + 1),
                FinishRequest(key="a", outcome="sent", now=T0 + 2),  # finished once only
                FinishRequest(key="missing", outcome="sent", now=T0 + 3),
                FinishRequest(key="b", outcome="failed", now=T0 + 4, error="timeout"),
            ]
        )
        assert [type(a).__name__ for a in answers] == ["NoneType", "StoreError", "StoreError", "NoneType"]
        assert [(e.key, e.state, e.finished_at, e.error) for e in store.ledger()] == [
            ("a", "sent", T0 + 1, None),
            ("b", "failed", T0 + 4, "timeout"),
        ]

    # Each implementation's subclass runs this one method: "differing executors" is the point here, and an
    # example that failed for one store is a fine first try for another.
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.differing_executors])
    @given(
        st.lists(
            st.one_of(
                st.tuples(st.just("claim"), st.integers(0, 3), st.integers(0, 1), st.integers(0, 3)),
                st.tuples(st.just("purchase"), st.sampled_from(["cart", "contact"]), st.integers(0, 3),
                          st.integers(0, 4)),
                st.tuples(st.just("finish"), st.integers(0, 3), st.sampled_from(["sent", "failed", "dead"])),
                st.tuples(st.just("resolve"), st.integers(0, 3), st.sampled_from(["sent", "retry"])),
                st.tuples(st.just("crash")),
            ),
            max_size=40,
        )
    )  # fmt: skip
    def test_never_two_claims_of_a_key_and_never_a_claim_after_a_purchase(self, ops: list[tuple[Any, ...]]) -> None:
        """Key k belongs to cart k, whose contact is p0 or p1 and which started at time s."""
        with tempfile.TemporaryDirectory() as tmp, self.make_store(Path(tmp)) as store:
            owned(store, now=0)
            purchases: dict[tuple[str, str], float] = {}
            live: set[str] = set()  # keys in the ledger, as far as the answers so far tell
            for op in ops:
                if op[0] == "claim":
                    _, k, p, started = op
                    cart, contact = f"c{k}", f"p{p}"
                    got = store.claim(f"k{k}", cart_key=cart, contact_key=contact, channel="email",
                                      started_at=started, owner=OWNER, now=10)  # fmt: skip
                    bought = max(purchases.get(("cart", cart), -1), purchases.get(("contact", contact), -1))
                    if f"k{k}" in live:
                        assert got == "duplicate"
                    elif bought >= started:
                        assert got == "purchased"
                    else:
                        assert got == "claimed"
                        live.add(f"k{k}")
                elif op[0] == "purchase":
                    _, kind, n, at = op
                    name = f"c{n}" if kind == "cart" else f"p{n % 2}"
                    store.record_purchase(cart_key=name if kind == "cart" else None,
                                          contact_key=name if kind == "contact" else None, at=at)  # fmt: skip
                    purchases[(kind, name)] = max(at, purchases.get((kind, name), at))
                elif op[0] == "finish":
                    states = {e.key: e.state for e in store.ledger()}
                    key = f"k{op[1]}"
                    if states.get(key) in ("sending", "unknown"):
                        store.finish(key, op[2], now=11)
                    else:
                        with pytest.raises(StoreError):
                            store.finish(key, op[2], now=11)
                elif op[0] == "resolve":
                    states = {e.key: e.state for e in store.ledger()}
                    key = f"k{op[1]}"
                    if states.get(key) in ("unknown", "failed"):
                        store.resolve(key, op[2])
                        if op[2] == "retry":
                            live.discard(key)
                    else:
                        with pytest.raises(StoreError):
                            store.resolve(key, op[2])
                else:
                    store.mark_unknown()
                assert {e.key for e in store.ledger()} == live
            assert store.check() == []

    # -- caps carried by a claim (a partitioned engine's: a customer's carts may be in several partitions) ----

    def _capped_claim(self, store: Store, key: str, *, at: float, channel: str = "email", **more: Any) -> str:
        request = ClaimRequest(
            key=key, cart_key=more.pop("cart_key", key.split("/")[0]), contact_key=more.pop("contact_key", "contact-1"),
            channel=channel, started_at=T0, owner=OWNER, now=T0 + 10, at=at,
            caps=more.pop("caps", ((1, 86_400.0, None),)),
        )  # fmt: skip
        return store.claim_many([request])[0]

    def test_a_claim_over_its_cap_is_refused_as_capped_and_writes_nothing(self, store: Store) -> None:
        owned(store)
        assert self._capped_claim(store, "cart-1/f/0", at=T0 + 100) == "claimed"
        before = store.ledger()
        # Another cart of the same customer (another partition, say), within the day: over the cap.
        assert self._capped_claim(store, "cart-2/f/0", at=T0 + 200) == "capped"
        assert store.ledger() == before
        # Another customer is not affected; after the window the customer may be written to again.
        assert self._capped_claim(store, "cart-3/f/0", at=T0 + 200, contact_key="contact-2") == "claimed"
        assert self._capped_claim(store, "cart-2/f/1", at=T0 + 100 + 86_400 + 1) == "claimed"

    def test_a_cap_on_one_channel_counts_only_that_channel(self, store: Store) -> None:
        owned(store)
        caps = ((1, 3600.0, "sms"),)
        assert self._capped_claim(store, "cart-1/f/0", at=T0 + 100, channel="sms", caps=caps) == "claimed"
        assert self._capped_claim(store, "cart-2/f/0", at=T0 + 110, channel="email", caps=caps) == "claimed"
        assert self._capped_claim(store, "cart-3/f/0", at=T0 + 120, channel="sms", caps=caps) == "capped"

    def test_an_entry_resolved_for_a_retry_no_longer_counts_and_a_forget_leaves_the_ledger_consistent(
        self, store: Store
    ) -> None:
        owned(store)
        assert self._capped_claim(store, "cart-1/f/0", at=T0 + 100) == "claimed"
        assert self._capped_claim(store, "cart-2/f/0", at=T0 + 200) == "capped"
        store.mark_unknown()
        store.resolve("cart-1/f/0", "retry")  # the entry is deleted: the customer is under the cap again
        assert self._capped_claim(store, "cart-2/f/0", at=T0 + 200) == "claimed"
        store.forget("contact-1", at=T0 + 300)  # its entries are filed under its hash from now on
        assert self._capped_claim(store, "cart-3/f/0", at=T0 + 400, contact_key="contact-2") == "claimed"
        assert store.check() == []

    def test_cancelled_entries_do_not_count_and_without_caps_nothing_is_capped(self, store: Store) -> None:
        owned(store)
        assert self._capped_claim(store, "cart-1/f/0", at=T0 + 100) == "claimed"
        store.finish("cart-1/f/0", "cancelled", now=T0 + 101)
        assert self._capped_claim(store, "cart-2/f/0", at=T0 + 200) == "claimed"
        assert self._capped_claim(store, "cart-3/f/0", at=T0 + 300, caps=()) == "claimed"  # one pipeline's caps
