"""The contract of :class:`~recoverkit.store.PrivacyStore`: data protection: keyed hashes, suppression, erasure, access
requests and retention.

See :mod:`tests.store.contract_base` for how a backend subclasses it."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from recoverkit.store import (
    PIPELINE_LEASE,
    ContactExport,
    DeadLetterExport,
    ForgetReport,
    PrivacyStore,
    PurgeReport,
    Store,
)

from .contract_base import OWNER, T0, StoreFixture, claim, owned

__all__ = ["PrivacyContract"]


class PrivacyContract(StoreFixture):
    """What every store promises as a :class:`~recoverkit.store.PrivacyStore`."""

    def test_satisfies_the_privacy_store_protocol(self, store: Store) -> None:
        assert isinstance(store, PrivacyStore)

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
