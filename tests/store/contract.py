"""What every store promises, as one test class each implementation's test module subclasses (saq's style).

A subclass implements :meth:`StoreContract.make_store`, opening a new, empty store in a given directory.
The ``store`` fixture opens one in ``tmp_path`` and closes it after the test. Times are seconds after
:data:`T0`, passed in explicitly: the store never reads a clock.
"""

from __future__ import annotations

import base64
import hashlib
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recoverkit.errors import StoreError
from recoverkit.store import (
    PIPELINE_LEASE,
    Assignment,
    Checkpoint,
    ClaimRequest,
    ContactExport,
    Conversion,
    DeadLetterExport,
    DeadLetterRecord,
    FinishRequest,
    ForgetReport,
    JournalEntry,
    LedgerEntry,
    LinkVisit,
    MessageOutcome,
    PurgeReport,
    Store,
)
from recoverkit.store.base import CodeLimit, CodeRecord, CodeStore, RedeemResult

__all__ = ["T0", "StoreContract", "claim", "new_code"]

#: 2026-01-01T00:00:00Z
T0 = 1_767_225_600.0
OWNER = "worker-1"


def claim(store: Store, key: str, **overrides: Any) -> str:
    """Claim ``key`` for cart ``cart-1`` / contact ``contact-1`` started at T0, as OWNER at T0 + 3600."""
    fields: dict[str, Any] = {
        "cart_key": "cart-1",
        "contact_key": "contact-1",
        "channel": "email",
        "started_at": T0,
        "owner": OWNER,
        "now": T0 + 3600,
    }
    fields.update(overrides)
    return store.claim(key, **fields)


def new_code(code_hash: str = "h1", **overrides: Any) -> CodeRecord:
    """A 10% code for cart ``cart-1`` / contact ``contact-1`` issued at T0, valid a day, on carts of 20.00 EUR."""
    fields: dict[str, Any] = {
        "cart_key": "cart-1",
        "contact_key": "contact-1",
        "kind": "discount",
        "percent": 10,
        "currency": "EUR",
        "min_value": 2000,
        "issued_at": T0,
        "expires_at": T0 + 86_400,
    }
    fields.update(overrides)
    return CodeRecord(code_hash=code_hash, **fields)


def redeem(store: Store, code_hash: str = "h1", **overrides: Any) -> RedeemResult:
    """Redeem ``code_hash`` as contact-1 for order o-1 of a 50.00 EUR cart at T0 + 3600."""
    fields: dict[str, Any] = {
        "contact_key": "contact-1",
        "cart_value": 5000,
        "currency": "EUR",
        "order_id": "o-1",
        "now": T0 + 3600,
    }
    fields.update(overrides)
    return store.redeem_code(code_hash, **fields)


def owned(store: Store, owner: str = OWNER, now: float = T0) -> Store:
    """``store`` with the pipeline lease held by ``owner`` for a day from ``now``."""
    assert store.acquire_lease(PIPELINE_LEASE, owner, ttl=86_400, now=now)
    return store


class StoreContract:
    """Subclass as ``class TestMyStore(StoreContract)`` and implement ``make_store``."""

    def make_store(self, directory: Path) -> Store:
        raise NotImplementedError("StoreContract subclasses must implement make_store(directory)")

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        store = self.make_store(tmp_path)
        try:
            yield store
        finally:
            store.close()

    def test_satisfies_the_store_protocol(self, store: Store) -> None:
        assert isinstance(store, Store)

    def test_a_new_store_is_empty(self, store: Store) -> None:
        assert store.last_seq() == 0
        assert store.read_events(0, 100) == []
        assert store.load_checkpoint() is None
        assert store.ledger() == []
        assert store.dead_letters() == []
        assert store.lease_holder(PIPELINE_LEASE, now=T0) is None

    # -- journal --------------------------------------------------------------------------------------------

    def test_append_returns_the_seq_of_the_last_event_and_numbers_events_consecutively(self, store: Store) -> None:
        assert store.append_events([b"a", b"b", b"c"], now=T0) == 3
        assert store.append_events([b"d"], now=T0 + 1) == 4
        assert store.append_events([b"e", b"f"], now=T0 + 2) == 6
        assert [e.seq for e in store.read_events(0, 100)] == [1, 2, 3, 4, 5, 6]
        assert store.last_seq() == 6

    def test_events_keep_their_bytes_and_the_time_they_were_accepted(self, store: Store) -> None:
        payload = bytes(range(256)) + b'{"event": "add_to_cart"}'
        store.append_events([payload, b""], now=T0 + 5)
        assert store.read_events(0, 10) == [
            JournalEntry(seq=1, data=payload, accepted_at=T0 + 5),
            JournalEntry(seq=2, data=b"", accepted_at=T0 + 5),
        ]

    def test_read_events_returns_entries_after_a_seq_in_ascending_order_up_to_limit(self, store: Store) -> None:
        store.append_events([str(i).encode() for i in range(1, 11)], now=T0)
        assert [e.seq for e in store.read_events(3, 4)] == [4, 5, 6, 7]
        assert [e.data for e in store.read_events(8, 100)] == [b"9", b"10"]
        assert store.read_events(10, 100) == []

    def test_appending_nothing_writes_nothing_and_returns_the_last_seq(self, store: Store) -> None:
        assert store.append_events([], now=T0) == 0
        store.append_events([b"a"], now=T0)
        assert store.append_events([], now=T0) == 1
        assert store.read_events(0, 10) == [JournalEntry(seq=1, data=b"a", accepted_at=T0)]

    def test_trim_deletes_entries_through_a_seq_and_counts_them(self, store: Store) -> None:
        store.append_events([b"a", b"b", b"c", b"d"], now=T0)
        assert store.trim_events(2) == 2
        assert [e.seq for e in store.read_events(0, 10)] == [3, 4]
        assert store.trim_events(2) == 0
        assert store.last_seq() == 4

    def test_seqs_are_never_reused_even_after_trimming_everything(self, store: Store) -> None:
        store.append_events([b"a", b"b"], now=T0)
        assert store.trim_events(store.last_seq()) == 2
        assert store.last_seq() == 2
        assert store.append_events([b"c"], now=T0) == 3
        assert store.read_events(0, 10) == [JournalEntry(seq=3, data=b"c", accepted_at=T0)]

    @pytest.mark.parametrize(("after", "limit"), [(0, 0), (0, -1), (-1, 10)])
    def test_read_events_rejects_a_bad_window(self, store: Store, after: int, limit: int) -> None:
        with pytest.raises(ValueError, match="read_events: expected"):
            store.read_events(after, limit)

    def test_concurrent_appends_from_threads_all_get_distinct_consecutive_seqs(self, store: Store) -> None:
        results: list[tuple[int, int]] = []  # (last seq, events in the call)
        lock = threading.Lock()

        def append(thread: int) -> None:
            for i in range(25):
                count = 1 + (thread + i) % 3
                last = store.append_events([f"{thread}-{i}-{j}".encode() for j in range(count)], now=T0)
                with lock:
                    results.append((last, count))

        threads = [threading.Thread(target=append, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seqs = [last - j for last, count in results for j in range(count)]
        assert sorted(seqs) == list(range(1, len(seqs) + 1))
        entries = store.read_events(0, 10_000)
        assert len(entries) == len(seqs) == store.last_seq()
        # the events of one call are consecutive, in the order given
        by_seq = {e.seq: e.data for e in entries}
        for last, count in results:
            names = [by_seq[s].decode().rsplit("-", 1) for s in range(last - count + 1, last + 1)]
            assert len({prefix for prefix, _ in names}) == 1
            assert [int(j) for _, j in names] == list(range(count))

    # -- checkpoint -----------------------------------------------------------------------------------------

    def test_save_checkpoint_replaces_the_previous_one(self, store: Store) -> None:
        store.save_checkpoint(10, b"state at 10", now=T0)
        store.save_checkpoint(25, b"state at 25", now=T0 + 60)
        assert store.load_checkpoint() == Checkpoint(position=25, state=b"state at 25", saved_at=T0 + 60)

    def test_a_checkpoint_never_moves_back(self, store: Store) -> None:
        assert store.save_checkpoint(25, b"state at 25", now=T0) is True
        assert store.save_checkpoint(10, b"stale state at 10", now=T0 + 60) is False
        assert store.load_checkpoint() == Checkpoint(position=25, state=b"state at 25", saved_at=T0)
        assert store.save_checkpoint(25, b"again at 25", now=T0 + 120) is True
        assert store.load_checkpoint() == Checkpoint(position=25, state=b"again at 25", saved_at=T0 + 120)

    def test_trimming_a_long_journal_in_steps_keeps_the_rest_in_order(self, store: Store) -> None:
        store.append_events([str(i).encode() for i in range(5000)], now=T0)
        for through in range(0, 5001, 250):
            store.trim_events(through)
            entries = store.read_events(0, 10)
            assert [e.seq for e in entries] == list(range(through + 1, min(through + 11, 5001)))
        assert store.check() == []

    def test_a_checkpoint_at_position_zero_with_empty_state_loads(self, store: Store) -> None:
        store.save_checkpoint(0, b"", now=T0)
        assert store.load_checkpoint() == Checkpoint(position=0, state=b"", saved_at=T0)

    def test_save_checkpoint_rejects_a_negative_position(self, store: Store) -> None:
        with pytest.raises(ValueError, match=r"position.*-1"):
            store.save_checkpoint(-1, b"", now=T0)

    # -- claims ---------------------------------------------------------------------------------------------

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

    # -- finish, ledger, mark_unknown, resolve ---------------------------------------------------------------

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

    # -- leases ---------------------------------------------------------------------------------------------

    def test_a_free_lease_is_acquired(self, store: Store) -> None:
        assert store.acquire_lease("pipeline", "w1", ttl=10, now=T0)
        assert store.lease_holder("pipeline", now=T0 + 9.9) == "w1"

    def test_a_held_lease_cannot_be_taken_by_another_owner(self, store: Store) -> None:
        store.acquire_lease("pipeline", "w1", ttl=10, now=T0)
        assert not store.acquire_lease("pipeline", "w2", ttl=10, now=T0 + 9.9)
        assert store.lease_holder("pipeline", now=T0 + 9.9) == "w1"

    def test_renewing_extends_the_lease_from_now(self, store: Store) -> None:
        store.acquire_lease("pipeline", "w1", ttl=10, now=T0)
        assert store.acquire_lease("pipeline", "w1", ttl=10, now=T0 + 8)
        assert store.lease_holder("pipeline", now=T0 + 17.9) == "w1"
        assert not store.acquire_lease("pipeline", "w2", ttl=10, now=T0 + 17.9)

    def test_a_lease_expires_at_its_expiry_time_and_can_then_be_taken(self, store: Store) -> None:
        store.acquire_lease("pipeline", "w1", ttl=10, now=T0)
        assert store.lease_holder("pipeline", now=T0 + 10) is None
        assert store.acquire_lease("pipeline", "w2", ttl=10, now=T0 + 10)
        assert store.lease_holder("pipeline", now=T0 + 11) == "w2"
        assert not store.acquire_lease("pipeline", "w1", ttl=10, now=T0 + 11)  # the old owner lost it

    def test_releasing_frees_the_lease(self, store: Store) -> None:
        store.acquire_lease("pipeline", "w1", ttl=10, now=T0)
        store.release_lease("pipeline", "w1")
        assert store.lease_holder("pipeline", now=T0) is None
        assert store.acquire_lease("pipeline", "w2", ttl=10, now=T0)

    def test_releasing_a_lease_held_by_another_owner_does_nothing(self, store: Store) -> None:
        store.acquire_lease("pipeline", "w1", ttl=10, now=T0)
        store.release_lease("pipeline", "w2")
        store.release_lease("never-taken", "w2")
        assert store.lease_holder("pipeline", now=T0) == "w1"

    def test_leases_of_different_names_are_independent(self, store: Store) -> None:
        assert store.acquire_lease("pipeline", "w1", ttl=10, now=T0)
        assert store.acquire_lease("compaction", "w2", ttl=10, now=T0)
        assert (store.lease_holder("pipeline", now=T0), store.lease_holder("compaction", now=T0)) == ("w1", "w2")

    def test_take_lease_says_taken_for_a_free_lease_and_renewed_for_the_owners_own(self, store: Store) -> None:
        assert store.take_lease("pipeline", "w1", ttl=10, now=T0) == "taken"
        assert store.take_lease("pipeline", "w1", ttl=10, now=T0 + 5) == "renewed"
        assert store.take_lease("pipeline", "w2", ttl=10, now=T0 + 14.9) is None
        assert store.lease_holder("pipeline", now=T0 + 14.9) == "w1"

    def test_an_expired_lease_nobody_took_meanwhile_is_renewed(self, store: Store) -> None:
        # A stall past the lease: the owner may carry on, as nobody else can have held it.
        store.take_lease("pipeline", "w1", ttl=10, now=T0)
        assert store.take_lease("pipeline", "w1", ttl=10, now=T0 + 60) == "renewed"
        assert store.lease_holder("pipeline", now=T0 + 69.9) == "w1"

    def test_a_lease_another_owner_held_meanwhile_is_taken_not_renewed(self, store: Store) -> None:
        store.take_lease("pipeline", "w1", ttl=10, now=T0)
        assert store.take_lease("pipeline", "w2", ttl=10, now=T0 + 10) == "taken"
        assert store.take_lease("pipeline", "w1", ttl=10, now=T0 + 20) == "taken"  # w2's expired: back, but taken

    def test_a_lease_another_owner_held_and_released_meanwhile_is_taken_not_renewed(self, store: Store) -> None:
        store.take_lease("pipeline", "w1", ttl=10, now=T0)
        store.take_lease("pipeline", "w2", ttl=10, now=T0 + 10)
        store.release_lease("pipeline", "w2")
        assert store.take_lease("pipeline", "w1", ttl=10, now=T0 + 11) == "taken"

    @pytest.mark.parametrize("ttl", [0.0, -1.0, float("nan")])
    def test_acquire_lease_rejects_a_ttl_that_is_not_positive(self, store: Store, ttl: float) -> None:
        with pytest.raises(ValueError, match="ttl"):
            store.acquire_lease("pipeline", "w1", ttl=ttl, now=T0)

    # -- dead letters ---------------------------------------------------------------------------------------

    def test_dead_letters_are_listed_in_the_order_they_were_added(self, store: Store) -> None:
        store.add_dead_letter("b/f/0", b'{"key":"b/f/0"}', error="PermanentDeliveryError: 550", attempts=1,
                              permanent=True, at=T0)  # fmt: skip
        store.add_dead_letter("a/f/0", b"{}", error="TimeoutError", attempts=5, permanent=False, at=T0 + 1)
        assert store.dead_letters() == [
            DeadLetterRecord(key="b/f/0", data=b'{"key":"b/f/0"}', error="PermanentDeliveryError: 550", attempts=1,
                             permanent=True, at=T0),
            DeadLetterRecord(key="a/f/0", data=b"{}", error="TimeoutError", attempts=5, permanent=False, at=T0 + 1),
        ]  # fmt: skip

    def test_a_dead_letter_added_again_replaces_the_old_one_at_the_end(self, store: Store) -> None:
        store.add_dead_letter("a", b"1", error="e1", attempts=1, permanent=False, at=T0)
        store.add_dead_letter("b", b"2", error="e2", attempts=1, permanent=False, at=T0)
        store.add_dead_letter("a", b"3", error="e3", attempts=2, permanent=True, at=T0 + 5)
        assert [(d.key, d.data, d.error, d.attempts, d.permanent) for d in store.dead_letters()] == [
            ("b", b"2", "e2", 1, False),
            ("a", b"3", "e3", 2, True),
        ]

    def test_a_resent_letter_leaves_the_list_and_marking_it_again_is_harmless(self, store: Store) -> None:
        store.add_dead_letter("a", b"1", error="e", attempts=1, permanent=False, at=T0)
        store.add_dead_letter("b", b"2", error="e", attempts=1, permanent=False, at=T0)
        store.mark_resent("a")
        store.mark_resent("a")
        assert [d.key for d in store.dead_letters()] == ["b"]

    def test_marking_an_unknown_dead_letter_resent_raises(self, store: Store) -> None:
        with pytest.raises(StoreError, match="no dead letter with key 'nope'"):
            store.mark_resent("nope")

    def test_a_letter_dead_again_after_a_resend_is_listed_again(self, store: Store) -> None:
        store.add_dead_letter("a", b"1", error="e", attempts=1, permanent=False, at=T0)
        store.mark_resent("a")
        store.add_dead_letter("a", b"1", error="e again", attempts=1, permanent=True, at=T0 + 9)
        assert [(d.key, d.error) for d in store.dead_letters()] == [("a", "e again")]

    def test_a_dead_letter_keeps_the_contact_it_was_for(self, store: Store) -> None:
        store.add_dead_letter("a", b"1", error="e", attempts=1, permanent=False, at=T0, contact_key="contact-1")
        store.add_dead_letter("b", b"2", error="e", attempts=1, permanent=False, at=T0)
        assert [(d.key, d.contact_key) for d in store.dead_letters()] == [("a", "contact-1"), ("b", "")]

    # -- hash_contact and suppression ---------------------------------------------------------------------------

    def test_hash_contact_is_a_stable_hex_sha256_hmac_per_contact(self, store: Store) -> None:
        first = store.hash_contact("alice@example.com")
        assert re.fullmatch(r"[0-9a-f]{64}", first)
        assert store.hash_contact("alice@example.com") == first
        assert store.hash_contact("bob@example.com") != first
        assert first != hashlib.sha256(b"alice@example.com").hexdigest()  # keyed, not a bare hash

    def test_hash_contact_differs_between_stores(self, store: Store, tmp_path: Path) -> None:
        (tmp_path / "other").mkdir()
        with self.make_store(tmp_path / "other") as other:
            assert other.hash_contact("alice@example.com") != store.hash_contact("alice@example.com")

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

    def test_a_claim_for_a_suppressed_contact_is_refused_and_writes_nothing(self, store: Store) -> None:
        store.acquire_lease(PIPELINE_LEASE, OWNER, ttl=1e6, now=T0)
        store.suppress("contact-1", reason="unsubscribed", at=T0)
        assert claim(store, "k1") == "suppressed"
        assert claim(store, "k2", contact_key="contact-2") == "claimed"
        assert [e.key for e in store.ledger()] == ["k2"]

    def test_a_suppressed_contact_is_suppressed_and_others_are_not(self, store: Store) -> None:
        assert not store.is_suppressed("contact-1")
        store.suppress("contact-1", reason="unsubscribed", at=T0)
        store.suppress("contact-1", reason="complaint", at=T0 + 1)  # harmless
        assert store.is_suppressed("contact-1")
        assert not store.is_suppressed("contact-2")

    @pytest.mark.parametrize("reason", ["", "   "])
    def test_suppress_needs_a_reason(self, store: Store, reason: str) -> None:
        with pytest.raises(ValueError, match=rf"suppress: expected a non-empty `reason`.*got {reason!r}"):
            store.suppress("contact-1", reason=reason, at=T0)
        assert not store.is_suppressed("contact-1")

    @pytest.mark.parametrize("method", ["hash_contact", "is_suppressed", "export", "suppress", "forget"])
    def test_methods_of_a_contact_refuse_an_empty_contact_key(self, store: Store, method: str) -> None:
        call: Any = getattr(store, method)
        extra: dict[str, dict[str, Any]] = {"suppress": {"reason": "unsubscribed", "at": T0}, "forget": {"at": T0}}
        kwargs = extra.get(method, {})
        with pytest.raises(ValueError, match=rf"{method}: expected a non-empty `contact_key`, got ''"):
            call("", **kwargs)

    # -- forget ---------------------------------------------------------------------------------------------

    def _two_contacts(self, store: Store) -> None:
        """contact-1: two ledger entries, two dead letters, a purchase; contact-2: one of each; one anonymous letter."""
        owned(store)
        claim(store, "c1/f/0", cart_key="c1", contact_key="contact-1")
        claim(store, "c2/f/0", cart_key="c2", contact_key="contact-2")
        claim(store, "c1/f/1", cart_key="c1", contact_key="contact-1")
        store.finish("c1/f/0", "sent", now=T0 + 3601)
        for key, contact in (("c1/f/1", "contact-1"), ("c2/f/0", "contact-2"), ("c1/f/2", "contact-1"), ("x", "")):
            store.add_dead_letter(key, b'{"to": "someone"}', error="e", attempts=1, permanent=True, at=T0 + 3700,
                                  contact_key=contact)  # fmt: skip
        store.record_purchase(cart_key="c1", contact_key="contact-1", at=T0 + 7200)
        store.record_purchase(cart_key=None, contact_key="contact-2", at=T0 + 7200)

    def test_forget_erases_letters_and_purchase_hashes_ledger_entries_and_suppresses(self, store: Store) -> None:
        self._two_contacts(store)
        report = store.forget("contact-1", at=T0 + 9000)
        assert report == ForgetReport(ledger_entries=2, dead_letters=2, purchases=1, already_forgotten=False)
        hashed = store.hash_contact("contact-1")
        assert [(e.key, e.contact_key, e.state) for e in store.ledger()] == [
            ("c1/f/0", hashed, "sent"),
            ("c2/f/0", "contact-2", "sending"),
            ("c1/f/1", hashed, "sending"),
        ]
        assert [(d.key, d.contact_key) for d in store.dead_letters()] == [("c2/f/0", "contact-2"), ("x", "")]
        assert store.is_suppressed("contact-1") and not store.is_suppressed("contact-2")
        export = store.export("contact-1")
        assert (export.purchased_at, export.dead_letters, export.suppressed) == (None, [], True)
        assert store.export("contact-2").purchased_at == T0 + 7200

    def test_a_forgotten_contacts_messages_are_still_never_sent_twice(self, store: Store) -> None:
        self._two_contacts(store)
        store.forget("contact-1", at=T0 + 9000)
        assert claim(store, "c1/f/0", cart_key="c1", contact_key="contact-1") == "duplicate"
        assert claim(store, "c1/f/9", cart_key="c1", contact_key="contact-1") == "suppressed"
        # the purchase of the cart is kept: it is no one's personal data, and it still blocks the cart
        assert claim(store, "c1/f/9", cart_key="c1", contact_key="contact-3") == "purchased"

    def test_forget_is_idempotent(self, store: Store) -> None:
        self._two_contacts(store)
        store.forget("contact-1", at=T0 + 9000)
        ledger, letters = store.ledger(), store.dead_letters()
        again = store.forget("contact-1", at=T0 + 9999)
        assert again == ForgetReport(ledger_entries=0, dead_letters=0, purchases=0, already_forgotten=True)
        assert (store.ledger(), store.dead_letters()) == (ledger, letters)
        assert store.is_suppressed("contact-1")

    def test_forgetting_a_contact_suppressed_for_another_reason_is_not_already_forgotten(self, store: Store) -> None:
        store.suppress("contact-1", reason="unsubscribed", at=T0)
        assert not store.forget("contact-1", at=T0 + 1).already_forgotten
        assert store.forget("contact-1", at=T0 + 2).already_forgotten

    def test_forgetting_an_unknown_contact_suppresses_it(self, store: Store) -> None:
        report = store.forget("never-seen", at=T0)
        assert report == ForgetReport(ledger_entries=0, dead_letters=0, purchases=0, already_forgotten=False)
        assert store.is_suppressed("never-seen")

    def test_forget_leaves_the_journal_alone(self, store: Store) -> None:
        store.append_events([b'{"customer_id": "contact-1"}'], now=T0)
        store.forget("contact-1", at=T0)
        assert [e.data for e in store.read_events(0, 10)] == [b'{"customer_id": "contact-1"}']

    # -- export ---------------------------------------------------------------------------------------------

    def test_export_gathers_ledger_letters_purchase_and_suppression_of_one_contact(self, store: Store) -> None:
        self._two_contacts(store)
        store.add_dead_letter("bin", b"\xff\x00", error="e", attempts=3, permanent=False, at=T0 + 3800,
                              contact_key="contact-1")  # fmt: skip
        store.mark_resent("c1/f/2")
        export = store.export("contact-1")
        assert export == ContactExport(
            contact_key="contact-1",
            ledger=[e for e in store.ledger() if e.contact_key == "contact-1"],
            dead_letters=[
                DeadLetterExport(key="c1/f/1", data={"to": "someone"}, encoding="json", error="e", attempts=1,
                                 permanent=True, at=T0 + 3700, resent=False),
                DeadLetterExport(key="c1/f/2", data={"to": "someone"}, encoding="json", error="e", attempts=1,
                                 permanent=True, at=T0 + 3700, resent=True),
                DeadLetterExport(key="bin", data=base64.b64encode(b"\xff\x00").decode(), encoding="base64",
                                 error="e", attempts=3, permanent=False, at=T0 + 3800, resent=False),
            ],
            purchased_at=T0 + 7200,
            suppressed=False,
        )  # fmt: skip
        assert [e.key for e in export.ledger] == ["c1/f/0", "c1/f/1"]

    def test_an_export_encodes_as_json(self, store: Store) -> None:
        self._two_contacts(store)
        store.add_dead_letter("bin", b"\x80", error="e", attempts=1, permanent=True, at=T0, contact_key="contact-1")
        decoded = msgspec.json.decode(msgspec.json.encode(store.export("contact-1")))
        assert decoded["contact_key"] == "contact-1"
        assert [d["encoding"] for d in decoded["dead_letters"]] == ["json", "json", "base64"]
        assert [e["key"] for e in decoded["ledger"]] == ["c1/f/0", "c1/f/1"]

    def test_the_export_of_an_unknown_contact_is_empty(self, store: Store) -> None:
        assert store.export("nobody") == ContactExport(
            contact_key="nobody", ledger=[], dead_letters=[], purchased_at=None, suppressed=False
        )

    # -- purge ----------------------------------------------------------------------------------------------

    def test_purge_deletes_ended_ledger_entries_claimed_before_the_cutoff(self, store: Store) -> None:
        owned(store)
        claim(store, "old-unknown", now=T0 + 10)
        claim(store, "new-unknown", now=T0 + 20)
        store.mark_unknown()
        for state in ("sent", "failed", "dead", "cancelled", "sending"):
            claim(store, f"old-{state}", now=T0 + 10)
            claim(store, f"new-{state}", now=T0 + 20)
            if state != "sending":
                store.finish(f"old-{state}", state, now=T0 + 30)  # type: ignore[arg-type]
                store.finish(f"new-{state}", state, now=T0 + 30)  # type: ignore[arg-type]
        report = store.purge(ledger_before=T0 + 20, purchases_before=0, dead_letters_before=0)
        assert report == PurgeReport(ledger_entries=4, purchases=0, dead_letters=0)
        assert [(e.key, e.state) for e in store.ledger() if e.key.startswith("old-")] == [
            ("old-unknown", "unknown"),
            ("old-sending", "sending"),
        ]
        assert len([e for e in store.ledger() if e.key.startswith("new-")]) == 6  # claimed at the cutoff: kept

    def test_a_purged_key_can_be_claimed_again(self, store: Store) -> None:
        owned(store)
        claim(store, "k")
        store.finish("k", "sent", now=T0 + 3601)
        store.purge(ledger_before=T0 + 3601, purchases_before=0, dead_letters_before=0)
        assert claim(store, "k") == "claimed"

    def test_purge_deletes_purchases_and_dead_letters_before_their_cutoffs(self, store: Store) -> None:
        owned(store)
        store.record_purchase(cart_key="old-cart", contact_key="old-contact", at=T0 - 10)
        store.record_purchase(cart_key="new-cart", contact_key="new-contact", at=T0)
        store.add_dead_letter("old", b"1", error="e", attempts=1, permanent=True, at=T0 - 10)
        store.add_dead_letter("old-resent", b"1", error="e", attempts=1, permanent=True, at=T0 - 10,
                              contact_key="c")  # fmt: skip
        store.mark_resent("old-resent")
        store.add_dead_letter("new", b"2", error="e", attempts=1, permanent=True, at=T0)
        report = store.purge(ledger_before=0, purchases_before=T0, dead_letters_before=T0)
        assert report == PurgeReport(ledger_entries=0, purchases=2, dead_letters=2)
        assert [d.key for d in store.dead_letters()] == ["new"]
        assert store.export("c").dead_letters == []
        for cart, contact, answer in (("old-cart", "x", "claimed"), ("new-cart", "y", "purchased"),
                                      ("z", "old-contact", "claimed"), ("w", "new-contact", "purchased")):
            assert claim(store, f"{cart}/{contact}", cart_key=cart, contact_key=contact, started_at=T0 - 20) == answer

    def test_purge_keeps_the_journal_and_suppressions(self, store: Store) -> None:
        store.append_events([b"a", b"b"], now=T0 - 86_400 * 365)
        store.suppress("contact-1", reason="unsubscribed", at=T0 - 86_400 * 365)
        store.forget("contact-2", at=T0 - 86_400 * 365)
        inf = float("inf")
        assert store.purge(ledger_before=inf, purchases_before=inf, dead_letters_before=inf) == PurgeReport(
            ledger_entries=0, purchases=0, dead_letters=0
        )
        assert [e.data for e in store.read_events(0, 10)] == [b"a", b"b"]
        assert store.is_suppressed("contact-1") and store.is_suppressed("contact-2")

    def test_purge_refuses_a_nan_cutoff(self, store: Store) -> None:
        with pytest.raises(ValueError, match=r"purge: expected `purchases_before` to be a time.*nan"):
            store.purge(ledger_before=T0, purchases_before=float("nan"), dead_letters_before=T0)

    # -- housekeeping ---------------------------------------------------------------------------------------

    def test_check_finds_nothing_wrong_with_a_store_in_use(self, store: Store) -> None:
        owned(store)
        store.append_events([b"a", b"b", b"c"], now=T0)
        store.trim_events(1)
        store.save_checkpoint(2, b"s", now=T0)
        store.record_purchase(cart_key="c", contact_key="p", at=T0)
        claim(store, "k")
        store.add_dead_letter("d", b"x", error="e", attempts=1, permanent=True, at=T0, contact_key="p")
        store.suppress("q", reason="unsubscribed", at=T0)
        store.forget("p", at=T0)
        store.purge(ledger_before=T0, purchases_before=T0, dead_letters_before=T0)
        assert store.check() == []

    def test_statistics_count_writes_and_the_writes_that_failed(self, store: Store) -> None:
        store.append_events([b"a"], now=T0)
        store.acquire_lease("pipeline", "w1", ttl=1, now=T0)
        with pytest.raises(StoreError):
            store.resolve("nope", "sent")
        store.read_events(0, 10)  # reads are not counted
        store.append_events([], now=T0)  # nor is appending nothing, which writes nothing
        stats = store.statistics()
        assert (stats.operations, stats.failed) == (3, 1)
        assert 1 <= stats.commits <= 3 and stats.largest_group >= 1

    def test_close_is_idempotent_and_a_closed_store_refuses_work(self, store: Store) -> None:
        store.close()
        store.close()
        with pytest.raises(StoreError, match=r"used after close\(\)"):
            store.append_events([b"a"], now=T0)
        with pytest.raises(StoreError, match=r"used after close\(\)"):
            store.last_seq()

    def test_the_context_manager_closes_the_store(self, tmp_path: Path) -> None:
        with self.make_store(tmp_path) as store:
            store.append_events([b"a"], now=T0)
        with pytest.raises(StoreError, match="close"):
            store.read_events(0, 1)

    # -- the guarantees, as a property ------------------------------------------------------------------------

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

    # -- codes ----------------------------------------------------------------------------------------------

    def test_satisfies_the_code_store_protocol(self, store: Store) -> None:
        assert isinstance(store, CodeStore)

    def test_an_issued_code_is_counted_and_exported_with_its_contact(self, store: Store) -> None:
        code = new_code(domain="d1", device="v1")
        assert store.issue_code(code) == "issued"
        assert store.count_codes(contact_key="contact-1", since=T0) == 1
        assert store.count_codes(domain="d1", device="v1", since=T0) == 1
        assert store.export("contact-1").codes == [code]
        assert store.export("contact-2").codes == []

    def test_a_second_code_with_the_same_hash_is_a_duplicate_and_changes_nothing(self, store: Store) -> None:
        assert store.issue_code(new_code("h1")) == "issued"
        assert store.issue_code(new_code("h1", contact_key="contact-2", percent=50)) == "duplicate"
        assert store.export("contact-1").codes == [new_code("h1")]
        assert store.count_codes(contact_key="contact-2", since=0) == 0

    def test_a_full_limit_refuses_the_code_and_names_the_field(self, store: Store) -> None:
        limits = [
            CodeLimit(by="contact", most=2, since=T0),
            CodeLimit(by="domain", most=3, since=T0),
            CodeLimit(by="device", most=4, since=T0),
        ]
        assert store.issue_code(new_code("a", domain="d", device="v"), limits=limits) == "issued"
        assert store.issue_code(new_code("b", domain="d", device="v"), limits=limits) == "issued"
        assert store.issue_code(new_code("c", domain="d", device="v"), limits=limits) == "contact_limit"
        assert store.issue_code(new_code("c", contact_key="p2", domain="d", device="v"), limits=limits) == "issued"
        assert store.issue_code(new_code("d", contact_key="p3", domain="d", device="v"), limits=limits) == (
            "domain_limit"
        )
        assert store.issue_code(new_code("d", contact_key="p3", domain="e", device="v"), limits=limits) == "issued"
        assert store.issue_code(new_code("e", contact_key="p4", domain="f", device="v"), limits=limits) == (
            "device_limit"
        )
        assert store.count_codes(device="v", since=0) == 4

    def test_codes_issued_before_a_limits_start_do_not_count(self, store: Store) -> None:
        limit = [CodeLimit(by="contact", most=1, since=T0 + 10)]
        assert store.issue_code(new_code("old", issued_at=T0 + 9), limits=limit) == "issued"
        assert store.issue_code(new_code("new", issued_at=T0 + 10), limits=limit) == "issued"
        assert store.issue_code(new_code("more", issued_at=T0 + 11), limits=limit) == "contact_limit"

    def test_a_limit_by_an_unknown_domain_or_device_does_not_apply(self, store: Store) -> None:
        limits = [CodeLimit(by="domain", most=1, since=0), CodeLimit(by="device", most=1, since=0)]
        for n in range(3):
            assert store.issue_code(new_code(f"h{n}", contact_key=f"p{n}"), limits=limits) == "issued"

    @pytest.mark.parametrize(
        ("overrides", "message"),
        [
            ({"code_hash": ""}, "non-empty `code_hash`"),
            ({"contact_key": ""}, "non-empty `cart_key` and `contact_key`"),
            ({"kind": "cashback"}, "expected `kind` to be one of"),
            ({"percent": 0}, "`percent` to be an integer from 1 to 100, got 0"),
            ({"percent": 101}, "got 101"),
            ({"percent": None}, "exactly one of `percent` and `amount`, got 0"),
            ({"amount": 500}, "exactly one of `percent` and `amount`, got 2"),
            ({"percent": None, "amount": -5}, "`amount` to be minor units > 0, got -5"),
            ({"kind": "free_shipping"}, "free_shipping code takes neither"),
            ({"percent": None, "amount": 500, "currency": None, "min_value": 0}, "needs the `currency`"),
            ({"currency": None}, "needs the `currency`"),
            ({"min_value": -1}, "`min_value` to be minor units >= 0, got -1"),
            ({"expires_at": T0}, "`expires_at` after `issued_at`"),
            ({"expires_at": float("nan")}, "`expires_at` after `issued_at`"),
            ({"redeemed_at": T0, "redeemed_order": "o"}, "expected a new code"),
        ],
    )
    def test_issue_code_refuses_a_record_that_is_not_a_valid_new_code(
        self, store: Store, overrides: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(ValueError, match=re.escape(message)):
            store.issue_code(new_code(**overrides))
        assert store.count_codes(contact_key="contact-1", since=0) == 0

    def test_issue_code_refuses_a_bad_limit(self, store: Store) -> None:
        with pytest.raises(ValueError, match="`most` to be an integer >= 1, got 0"):
            store.issue_code(new_code(), limits=[CodeLimit(by="contact", most=0, since=T0)])
        with pytest.raises(ValueError, match="limit `by` one of"):
            store.issue_code(new_code(), limits=[CodeLimit(by="ip", most=1, since=T0)])  # type: ignore[arg-type]

    def test_a_valid_redemption_marks_the_code_redeemed_for_the_order(self, store: Store) -> None:
        store.issue_code(new_code())
        result = redeem(store)
        redeemed = new_code(redeemed_at=T0 + 3600, redeemed_order="o-1")
        assert result == RedeemResult(outcome="valid", code=redeemed)
        assert store.export("contact-1").codes == [redeemed]

    def test_a_code_is_redeemed_for_one_order_only(self, store: Store) -> None:
        store.issue_code(new_code())
        assert redeem(store, order_id="o-1").outcome == "valid"
        again = redeem(store, order_id="o-2", now=T0 + 3700)
        assert again.outcome == "already_used"
        assert again.code is not None and again.code.redeemed_order == "o-1"

    def test_redeeming_again_for_the_same_order_is_valid_and_changes_nothing(self, store: Store) -> None:
        store.issue_code(new_code())
        first = redeem(store, now=T0 + 3600)
        assert redeem(store, now=T0 + 3700) == first
        assert redeem(store, now=T0 + 999_999) == first  # a retried checkout, even after the code expired

    def test_an_unknown_code_is_unknown(self, store: Store) -> None:
        store.issue_code(new_code("h1"))
        assert redeem(store, "h2") == RedeemResult(outcome="unknown", code=None)

    def test_another_contacts_code_is_not_yours_whatever_its_state(self, store: Store) -> None:
        store.issue_code(new_code("live"))
        store.issue_code(new_code("used"))
        redeem(store, "used")
        for code_hash in ("live", "used"):
            assert redeem(store, code_hash, contact_key="contact-2", order_id="o-9").outcome == "not_yours"
            assert redeem(store, code_hash, contact_key="contact-2", now=T0 + 10**6).outcome == "not_yours"
        assert redeem(store, "live").outcome == "valid"  # the stranger's tries used nothing up

    @pytest.mark.parametrize(("delay", "outcome"), [(86_399.9, "valid"), (86_400, "expired"), (10**7, "expired")])
    def test_a_code_is_void_from_its_expiry_time(self, store: Store, delay: float, outcome: str) -> None:
        store.issue_code(new_code())
        assert redeem(store, now=T0 + delay).outcome == outcome

    def test_a_code_is_redeemed_only_in_its_currency(self, store: Store) -> None:
        store.issue_code(new_code())
        assert redeem(store, currency="USD").outcome == "wrong_currency"
        assert redeem(store, currency=None).outcome == "wrong_currency"
        assert redeem(store, currency="EUR").outcome == "valid"

    def test_a_code_without_a_currency_is_redeemed_in_any(self, store: Store) -> None:
        store.issue_code(new_code("a", currency=None, min_value=0))
        store.issue_code(new_code("b", currency=None, min_value=0))
        assert redeem(store, "a", currency="JPY", cart_value=1).outcome == "valid"
        assert redeem(store, "b", currency=None, cart_value=0).outcome == "valid"

    def test_a_cart_below_the_minimum_is_refused_and_may_try_again(self, store: Store) -> None:
        store.issue_code(new_code(min_value=2000))
        assert redeem(store, cart_value=1999).outcome == "below_minimum"
        assert redeem(store, cart_value=2000).outcome == "valid"

    def test_outcomes_that_are_not_valid_write_nothing(self, store: Store) -> None:
        store.issue_code(new_code())
        for overrides in ({"currency": "USD"}, {"cart_value": 1}, {"now": T0 + 10**6}, {"contact_key": "x"}):
            assert redeem(store, **overrides).outcome != "valid"
        assert store.export("contact-1").codes == [new_code()]

    @pytest.mark.parametrize(
        ("overrides", "message"),
        [
            ({"code_hash": ""}, "non-empty `code_hash`"),
            ({"contact_key": ""}, "non-empty `contact_key`"),
            ({"order_id": ""}, "non-empty `order_id`"),
            ({"cart_value": -1}, "`cart_value` to be minor units >= 0, got -1"),
            ({"cart_value": 12.5}, "got 12.5"),
        ],
    )
    def test_redeem_code_refuses_bad_arguments(self, store: Store, overrides: dict[str, Any], message: str) -> None:
        fields = dict(overrides)  # the parameter is shared by every store's run: never change it
        code_hash = fields.pop("code_hash", "h1")
        with pytest.raises(ValueError, match=re.escape(message)):
            redeem(store, code_hash, **fields)

    def test_count_codes_counts_codes_issued_since_a_time_matching_every_filter(self, store: Store) -> None:
        store.issue_code(new_code("a", domain="d1", device="v1", issued_at=T0))
        store.issue_code(new_code("b", domain="d1", device="v2", issued_at=T0 + 5))
        store.issue_code(new_code("c", contact_key="p2", domain="d2", issued_at=T0 + 10))
        assert store.count_codes(contact_key="contact-1", since=T0) == 2
        assert store.count_codes(contact_key="contact-1", since=T0 + 1) == 1
        assert store.count_codes(domain="d1", device="v2", since=0) == 1
        assert store.count_codes(contact_key="p2", domain="d1", since=0) == 0
        with pytest.raises(ValueError, match="at least one of `contact_key`, `domain` and `device`"):
            store.count_codes(since=0)

    def test_attempts_are_counted_per_client_within_the_window(self, store: Store) -> None:
        assert [store.record_attempt("ip-1", now=T0 + t, window=60) for t in (0, 10, 20)] == [1, 2, 3]
        assert store.record_attempt("ip-2", now=T0 + 20, window=60) == 1
        assert store.count_attempts("ip-1", now=T0 + 20, window=60) == 3
        assert store.count_attempts("ip-1", now=T0 + 60, window=60) == 2  # the one at T0 left the window
        assert store.count_attempts("ip-1", now=T0 + 80, window=60) == 0
        assert store.count_attempts("ip-3", now=T0, window=60) == 0
        assert store.record_attempt("ip-1", now=T0 + 70, window=60) == 2  # T0 + 20 and T0 + 70

    def test_counting_attempts_writes_nothing(self, store: Store) -> None:
        store.record_attempt("ip-1", now=T0, window=60)
        before = store.statistics().operations
        store.count_attempts("ip-1", now=T0, window=60)
        store.count_codes(contact_key="p", since=0)
        assert store.statistics().operations == before

    @pytest.mark.parametrize(("client", "window"), [("", 60), ("ip", 0), ("ip", -1), ("ip", float("nan"))])
    def test_attempt_methods_refuse_bad_arguments(self, store: Store, client: str, window: float) -> None:
        with pytest.raises(ValueError, match="record_attempt: expected"):
            store.record_attempt(client, now=T0, window=window)
        with pytest.raises(ValueError, match="count_attempts: expected"):
            store.count_attempts(client, now=T0, window=window)

    def test_forget_hashes_the_contacts_codes_which_can_then_not_be_redeemed(self, store: Store) -> None:
        store.issue_code(new_code("a"))
        store.issue_code(new_code("b", contact_key="contact-2"))
        report = store.forget("contact-1", at=T0 + 10)
        assert report == ForgetReport(ledger_entries=0, dead_letters=0, purchases=0, already_forgotten=False, codes=1)
        hashed = store.hash_contact("contact-1")
        assert store.export("contact-1").codes == [new_code("a", contact_key=hashed)]
        assert store.count_codes(contact_key="contact-1", since=0) == 0
        assert redeem(store, "a").outcome == "not_yours"
        assert redeem(store, "b", contact_key="contact-2").outcome == "valid"
        assert store.forget("contact-1", at=T0 + 20).codes == 0

    def test_purge_deletes_codes_that_expired_before_the_cutoff(self, store: Store) -> None:
        store.issue_code(new_code("old", expires_at=T0 + 10))
        store.issue_code(new_code("used", expires_at=T0 + 10))
        redeem(store, "used", now=T0 + 5)
        store.issue_code(new_code("new", expires_at=T0 + 20))
        assert store.purge(ledger_before=0, purchases_before=0, dead_letters_before=0).codes == 0
        report = store.purge(ledger_before=0, purchases_before=0, dead_letters_before=0, codes_before=T0 + 20)
        assert report == PurgeReport(ledger_entries=0, purchases=0, dead_letters=0, codes=2)
        assert [c.code_hash for c in store.export("contact-1").codes] == ["new"]
        assert redeem(store, "old", now=T0).outcome == "unknown"
        with pytest.raises(ValueError, match="`codes_before` to be a time"):
            store.purge(ledger_before=0, purchases_before=0, dead_letters_before=0, codes_before=float("nan"))

    def test_check_finds_nothing_wrong_with_codes_in_use(self, store: Store) -> None:
        store.issue_code(new_code("a"))
        redeem(store, "a")
        store.record_attempt("ip", now=T0, window=60)
        store.forget("contact-1", at=T0)
        assert store.check() == []

    def test_threads_issuing_at_once_never_exceed_a_limit(self, store: Store) -> None:
        limit = [CodeLimit(by="contact", most=3, since=T0)]
        answers: list[str] = []
        lock = threading.Lock()

        def issue(n: int) -> None:
            answer = store.issue_code(new_code(f"h{n}"), limits=limit)
            with lock:
                answers.append(answer)

        threads = [threading.Thread(target=issue, args=(n,)) for n in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(answers) == ["contact_limit"] * 9 + ["issued"] * 3
        assert store.count_codes(contact_key="contact-1", since=0) == 3

    def test_threads_redeeming_one_code_for_different_orders_get_one_valid(self, store: Store) -> None:
        store.issue_code(new_code())
        outcomes: list[str] = []
        lock = threading.Lock()

        def attempt(n: int) -> None:
            outcome = redeem(store, order_id=f"o-{n}").outcome
            with lock:
                outcomes.append(outcome)

        threads = [threading.Thread(target=attempt, args=(n,)) for n in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["already_used"] * 11 + ["valid"]

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.differing_executors])
    @given(
        st.lists(
            st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(0, 3), st.integers(0, 40), st.integers(0, 3)),
            max_size=30,
        )
    )
    def test_a_code_is_redeemed_once_by_its_contact_before_it_expires(
        self, redemptions: list[tuple[int, int, int, int, int]]
    ) -> None:
        """Codes h0, h1, h2 belong to p0, p1, p0 and expire at 10, 20, 30 (minimum 20.00); each redemption is
        (code, contact, order, time, cart value in thousands of minor units)."""
        with tempfile.TemporaryDirectory() as tmp, self.make_store(Path(tmp)) as store:
            owners = {"h0": "p0", "h1": "p1", "h2": "p0"}
            expiry = {"h0": 10.0, "h1": 20.0, "h2": 30.0}
            for code_hash, contact in owners.items():
                store.issue_code(new_code(code_hash, contact_key=contact, issued_at=0, expires_at=expiry[code_hash]))
            redeemed: dict[str, tuple[str, float]] = {}  # code -> (order, time) of its one redemption
            for n, contact_n, order_n, now, value in redemptions:
                code_hash, contact, order = f"h{n}", f"p{contact_n}", f"o{order_n}"
                if contact != owners[code_hash]:
                    expected = "not_yours"
                elif code_hash in redeemed:
                    expected = "valid" if redeemed[code_hash][0] == order else "already_used"
                elif now >= expiry[code_hash]:
                    expected = "expired"
                elif value * 1000 < 2000:
                    expected = "below_minimum"
                else:
                    expected, redeemed[code_hash] = "valid", (order, now)
                got = redeem(store, code_hash, contact_key=contact, order_id=order, now=now, cart_value=value * 1000)
                assert got.outcome == expected
            for code in store.export("p0").codes + store.export("p1").codes:
                assert (code.redeemed_order, code.redeemed_at) == redeemed.get(code.code_hash, (None, None))

    # -- experiment assignments -------------------------------------------------------------------------------

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

    # -- conversions, outcomes, visits ------------------------------------------------------------------------

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
