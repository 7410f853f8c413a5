"""The contract of :class:`~recoverkit.store.CodeStore`: codes: issued within their limits, redeemed once by their
contact before they expire, attempts counted.

See :mod:`tests.store.contract_base` for how a backend subclasses it."""

from __future__ import annotations

import re
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recoverkit.store import (
    CodeLimit,
    CodeStore,
    ForgetReport,
    PurgeReport,
    RedeemResult,
    Store,
)

from .contract_base import T0, StoreFixture, new_code, redeem

__all__ = ["CodeContract"]


class CodeContract(StoreFixture):
    """What every store promises as a :class:`~recoverkit.store.CodeStore`."""

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
