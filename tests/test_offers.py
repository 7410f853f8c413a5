"""Discount codes: their format, issuing with abuse limits, redeeming once, and the rate limit on guessing.

Time is passed in (``now``); nothing here sleeps. Most tests use a MemoryStore; the ones about what is stored
use a SQLiteStore file as well, since that is what a copy could leak.
"""

from __future__ import annotations

import doctest
import re
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import recoverkit._code_text
import recoverkit.offers
from recoverkit.errors import ConfigError, RecoverkitError
from recoverkit.offers import (
    ALPHABET,
    CodeBook,
    CodePolicy,
    CouponProvider,
    Offer,
    Redemption,
    Refused,
    client_bucket,
    discount_for,
    format_code,
    new_code,
    parse_code,
)
from recoverkit.store import MemoryStore, SQLiteStore
from recoverkit.store.base import CodeRecord

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86_400.0
SECRET = "test secret of at least thirty-two bytes"
TEN_PERCENT = Offer(kind="discount", name="10% off", percent=10, currency="EUR", min_value=2000, expires_at=T0 + DAY)
FIVE_OFF = Offer(kind="discount", name="5 off", amount=500, currency="EUR", expires_at=T0 + DAY)
FREE_SHIPPING = Offer(kind="free_shipping", name="Free shipping", expires_at=T0 + DAY)
CODE = re.compile(r"[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}")


@pytest.fixture
def book() -> Iterator[CodeBook]:
    store = MemoryStore()
    yield CodeBook(store, SECRET)
    store.close()


def issue(book: CodeBook, offer: Offer = TEN_PERCENT, **overrides: Any) -> Offer:
    """Issue ``offer`` for cart-1 of alice at T0 and return the offer with its code (failing if refused)."""
    fields: dict[str, Any] = {"cart_key": "cart-1", "contact_key": "alice", "now": T0}
    fields.update(overrides)
    issued = book.issue_sync(offer, **fields)
    assert isinstance(issued, Offer), issued
    assert issued.code is not None
    return issued


def redeem(book: CodeBook, code: str | None, **overrides: Any) -> Redemption:
    """Redeem ``code`` as alice from 203.0.113.9 for order o-1 of a 50.00 EUR cart, an hour after T0."""
    assert code is not None
    fields: dict[str, Any] = {
        "customer": "alice",
        "cart_value": 5000,
        "currency": "EUR",
        "order_id": "o-1",
        "client_key": "203.0.113.9",
        "now": T0 + 3600,
    }
    fields.update(overrides)
    return book.redeem_sync(code, **fields)


# -- the format of a code ----------------------------------------------------------------------------------------


def test_the_alphabet_has_32_unambiguous_symbols_so_a_12_symbol_code_has_60_bits() -> None:
    assert len(ALPHABET) == len(set(ALPHABET)) == 32
    assert not set("0O1I") & set(ALPHABET)
    assert set(ALPHABET) <= set(string.digits + string.ascii_uppercase)
    assert CodePolicy().length * 5 >= 60


def test_a_new_code_is_grouped_by_four_after_the_prefix() -> None:
    assert CODE.fullmatch(new_code())
    assert re.fullmatch(rf"SHOP-{CODE.pattern}-[{ALPHABET}]{{2}}", new_code(prefix="SHOP", length=14))


def test_format_code_groups_the_body() -> None:
    assert format_code("ABCDEFGHJKLM") == "ABCD-EFGH-JKLM"
    assert format_code("ABCDEFGHJKLMN", "X1") == "X1-ABCD-EFGH-JKLM-N"


@pytest.mark.parametrize(
    "typed",
    ["SHOP-7KQ2-MX9P-R4TW", "shop-7kq2-mx9p-r4tw", "SHOP7KQ2MX9PR4TW", "7KQ2-MX9P-R4TW", " 7kq2 mx9p r4tw ",
     "SHOP_7KQ2.MX9P R4TW"],
)  # fmt: skip
def test_parse_code_ignores_case_separators_and_the_prefix(typed: str) -> None:
    assert parse_code(typed, prefix="SHOP") == "7KQ2MX9PR4TW"


@pytest.mark.parametrize(
    "typed",
    ["", "7KQ2-MX9P-R4T", "7KQ2-MX9P-R4TWW", "7KQ2-MX9P-R4T0", "7KQ2-MX9P-R4TO", "7KQ2-MX9P-R4T1", "7KQ2-MX9P-R4TI",
     "SHOX-7KQ2-MX9P-R4TW", "7KQ2-MX9P-R4T€", "7" * 100_000],
)  # fmt: skip
def test_parse_code_refuses_what_cannot_be_a_code(typed: str) -> None:
    assert parse_code(typed, prefix="SHOP") is None


@given(st.sampled_from(["", "SHOP", "X9"]), st.integers(12, 32))
def test_every_new_code_parses_back_to_its_body(prefix: str, length: int) -> None:
    code = new_code(prefix=prefix, length=length)
    body = parse_code(code, prefix=prefix, length=length)
    assert body is not None and len(body) == length and format_code(body, prefix) == code


# -- what a code takes off ---------------------------------------------------------------------------------------


def record(**fields: Any) -> CodeRecord:
    return CodeRecord(code_hash="h", cart_key="c", contact_key="p", issued_at=0, expires_at=1, **fields)


@pytest.mark.parametrize(
    ("fields", "cart_value", "discount"),
    [
        ({"kind": "discount", "percent": 10}, 5000, 500),
        ({"kind": "discount", "percent": 15}, 3333, 499),  # rounded down: never more than promised
        ({"kind": "discount", "percent": 100}, 1, 1),
        ({"kind": "discount", "amount": 500, "currency": "EUR"}, 5000, 500),
        ({"kind": "discount", "amount": 500, "currency": "EUR"}, 300, 300),  # never more than the cart
        ({"kind": "free_shipping"}, 5000, 0),
    ],
)
def test_discount_for_is_integer_and_never_more_than_the_cart(
    fields: dict[str, Any], cart_value: int, discount: int
) -> None:
    assert discount_for(record(**fields), cart_value) == discount


@given(st.integers(1, 100), st.integers(0, 10**15))
def test_a_percentage_discount_is_exact_integer_arithmetic(percent: int, cart_value: int) -> None:
    off = discount_for(record(kind="discount", percent=percent), cart_value)
    assert 0 <= off <= cart_value
    assert off * 100 <= cart_value * percent < (off + 1) * 100


# -- configuration -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prefix": "shop"}, "CodePolicy.prefix: expected 1 to 8 capital letters or digits"),
        ({"prefix": "TOOLONGPREFIX"}, "CodePolicy.prefix"),
        ({"length": 11}, "CodePolicy.length: expected an integer from 12 (60 bits) to 32, got 11"),
        ({"length": 33}, "CodePolicy.length"),
        ({"lifetime": 59}, "CodePolicy.lifetime: expected seconds from 60 to 90 days, got 59"),
        ({"lifetime": float("nan")}, "CodePolicy.lifetime"),
        ({"period": 0}, "CodePolicy.period: expected seconds > 0, got 0"),
        ({"per_contact": 0}, "CodePolicy.per_contact: expected an integer >= 1, or None for no limit, got 0"),
        ({"per_device": True}, "CodePolicy.per_device"),
        ({"attempts": 0}, "CodePolicy.attempts: expected an integer >= 1, got 0"),
        ({"attempt_window": 0}, "CodePolicy.attempt_window: expected seconds > 0, at most a day, got 0"),
    ],
)
def test_a_bad_policy_is_a_config_error_naming_field_value_and_expectation(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        CodePolicy(**fields)


def test_a_policy_decodes_from_config_data() -> None:
    policy = msgspec.convert({"prefix": "SHOP", "per_domain": 20, "shared_domains": ["gmail.com"]}, CodePolicy)
    assert (policy.prefix, policy.per_domain, policy.shared_domains) == ("SHOP", 20, frozenset({"gmail.com"}))
    with pytest.raises(msgspec.ValidationError, match=r"CodePolicy\.attempts"):
        msgspec.convert({"attempts": 0}, CodePolicy)


def test_a_short_secret_is_a_config_error_that_does_not_show_it() -> None:
    with pytest.raises(ConfigError, match="expected `secret` of at least 32 bytes, got 9 bytes") as info:
        CodeBook(MemoryStore(), "hunter2!!")
    assert "hunter2" not in str(info.value)


def test_a_store_without_the_code_methods_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="expected a store with the CodeStore methods, got dict"):
        CodeBook({}, SECRET)  # type: ignore[arg-type]


# -- issuing -----------------------------------------------------------------------------------------------------


def test_an_issued_offer_carries_a_fresh_code_and_keeps_its_terms(book: CodeBook) -> None:
    issued = issue(book)
    assert issued.code is not None and CODE.fullmatch(issued.code)
    assert msgspec.structs.replace(issued, code=None) == TEN_PERCENT
    assert book.statistics().issued == 1


def test_the_shop_prefix_comes_first(book: CodeBook) -> None:
    prefixed = CodeBook(book.store, SECRET, policy=CodePolicy(prefix="SHOP"))
    assert issue(prefixed).code.startswith("SHOP-")  # type: ignore[union-attr]


def test_the_store_keeps_a_keyed_hash_bound_to_contact_and_cart(book: CodeBook) -> None:
    issued = issue(book, device="device-9", email="alice@example.com")
    [stored] = book.store.export("alice").codes  # type: ignore[attr-defined]
    body = parse_code(issued.code or "")
    assert body is not None and stored.code_hash == book.code_hash(body)
    assert (stored.cart_key, stored.contact_key, stored.kind, stored.percent, stored.min_value) == (
        "cart-1", "alice", "discount", 10, 2000
    )  # fmt: skip
    assert body not in msgspec.json.encode(stored).decode()
    assert "device-9" not in (stored.device or "") and "example.com" not in (stored.domain or "")
    # the hash is keyed: another secret gives another one
    assert CodeBook(MemoryStore(), SECRET + "!").code_hash(body) != stored.code_hash


def test_a_copy_of_a_store_file_holds_no_usable_code(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SQLiteStore(path) as store:
        book = CodeBook(store, SECRET)
        codes = [issue(book, contact_key=f"c{n}").code for n in range(20)]
        assert redeem(book, codes[0], customer="c0").outcome == "valid"
    content = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for code in codes:
        body = parse_code(code or "")
        assert body is not None
        assert body.encode() not in content and (code or "").encode() not in content


@pytest.mark.parametrize("kind", ["payment_help", "substitute", "loyalty_bonus"])
def test_offers_without_codes_come_back_unchanged(book: CodeBook, kind: str) -> None:
    offer = Offer(kind=kind, name="help", points=100 if kind == "loyalty_bonus" else None)  # type: ignore[arg-type]
    assert book.issue_sync(offer, cart_key="c", contact_key="alice", now=T0) is offer
    assert book.store.count_codes(contact_key="alice", since=0) == 0


def test_an_offer_with_a_code_already_comes_back_unchanged_so_a_retried_send_draws_no_second(book: CodeBook) -> None:
    issued = issue(book)
    assert book.issue_sync(issued, cart_key="cart-1", contact_key="alice", now=T0 + 60) is issued
    assert book.store.count_codes(contact_key="alice", since=0) == 1


def test_an_offer_without_expiry_gets_the_policys_lifetime(book: CodeBook) -> None:
    issued = issue(book, msgspec.structs.replace(FIVE_OFF, expires_at=None))
    assert issued.expires_at == T0 + book.policy.lifetime


def test_an_expired_offer_is_refused(book: CodeBook) -> None:
    refused = book.issue_sync(TEN_PERCENT, cart_key="c", contact_key="alice", now=T0 + DAY)
    assert refused == Refused(reason="expired", detail="the offer expired before its code was issued")
    assert book.statistics().refused == {"expired": 1}


def test_an_offer_that_makes_no_valid_code_raises(book: CodeBook) -> None:
    with pytest.raises(ValueError, match="exactly one of `percent` and `amount`"):
        book.issue_sync(Offer(kind="discount", name="?", expires_at=T0 + DAY), cart_key="c", contact_key="a", now=T0)
    with pytest.raises(ValueError, match="needs the `currency`"):
        book.issue_sync(Offer(kind="discount", name="?", amount=5, expires_at=T0 + DAY), cart_key="c",
                        contact_key="a", now=T0)  # fmt: skip


def test_a_contact_gets_at_most_per_contact_codes_in_a_period(book: CodeBook) -> None:
    for n in range(3):
        issue(book, cart_key=f"cart-{n}", now=T0 + n)
    refused = book.issue_sync(TEN_PERCENT, cart_key="cart-9", contact_key="alice", now=T0 + 10)
    assert isinstance(refused, Refused) and refused.reason == "contact_limit"
    assert refused.detail == "3 codes were issued to this contact in the last 30 days, the most " \
                             "CodePolicy.per_contact allows"  # fmt: skip
    assert "alice" not in refused.detail
    issue(book, contact_key="bob", now=T0 + 10)  # others are not affected
    later = msgspec.structs.replace(TEN_PERCENT, expires_at=None)
    refused = book.issue_sync(later, cart_key="cart-9", contact_key="alice", now=T0 + 30 * DAY)
    assert isinstance(refused, Refused)  # the code issued at T0 is still in the period...
    issue(book, later, cart_key="cart-9", now=T0 + 30 * DAY + 1)  # ... and now it is not
    assert book.statistics().refused == {"contact_limit": 2}


def test_a_device_gets_at_most_per_device_codes(book: CodeBook) -> None:
    for n in range(5):
        issue(book, contact_key=f"c{n}", device="fingerprint-1")
    refused = book.issue_sync(TEN_PERCENT, cart_key="c", contact_key="c9", device="fingerprint-1", now=T0)
    assert isinstance(refused, Refused) and refused.reason == "device_limit"
    issue(book, contact_key="c9", device="fingerprint-2")


def test_the_domain_limit_counts_private_domains_case_blind_but_never_shared_ones() -> None:
    book = CodeBook(MemoryStore(), SECRET, policy=CodePolicy(per_domain=2, per_contact=None))
    issue(book, contact_key="a", email="a@Fraud.example")
    issue(book, contact_key="b", email="b@fraud.example.")
    refused = book.issue_sync(TEN_PERCENT, cart_key="c", contact_key="c", email="c@FRAUD.EXAMPLE", now=T0)
    assert isinstance(refused, Refused) and refused.reason == "domain_limit"
    for n in range(5):
        issue(book, contact_key=f"g{n}", email=f"g{n}@GMail.com")
    issue(book, contact_key="x", email="not an address")


def test_every_issue_draws_a_new_code_even_for_one_cart(book: CodeBook) -> None:
    first, second = issue(book), issue(book)
    assert first.code != second.code


def test_a_drawn_code_that_is_stored_already_is_drawn_again(book: CodeBook, monkeypatch: pytest.MonkeyPatch) -> None:
    bodies = iter(["AAAAAAAAAAAA", "AAAAAAAAAAAA", "BBBBBBBBBBBB"])
    monkeypatch.setattr(recoverkit.offers, "_draw", lambda length: next(bodies))
    assert issue(book).code == "AAAA-AAAA-AAAA"
    assert issue(book, contact_key="bob").code == "BBBB-BBBB-BBBB"


def test_a_random_source_that_only_repeats_itself_is_an_error(book: CodeBook, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recoverkit.offers, "_draw", lambda length: "A" * length)
    issue(book)
    with pytest.raises(RecoverkitError, match="4 freshly drawn codes were all stored already"):
        book.issue_sync(TEN_PERCENT, cart_key="c", contact_key="bob", now=T0)


# -- redeeming ---------------------------------------------------------------------------------------------------


def test_a_valid_code_gives_its_discount_once_and_names_the_recovered_cart(book: CodeBook) -> None:
    code = issue(book).code
    assert redeem(book, code) == Redemption(outcome="valid", discount=500, kind="discount", currency="EUR",
                                            cart_key="cart-1")  # fmt: skip
    assert redeem(book, code, order_id="o-2").outcome == "already_used"


def test_a_fixed_amount_and_free_shipping(book: CodeBook) -> None:
    assert redeem(book, issue(book, FIVE_OFF).code, cart_value=300).discount == 300
    shipping = redeem(book, issue(book, FREE_SHIPPING).code, order_id="o-2")
    assert (shipping.outcome, shipping.kind, shipping.discount) == ("valid", "free_shipping", 0)


def test_a_retried_checkout_of_the_same_order_is_valid_again(book: CodeBook) -> None:
    code = issue(book).code
    first = redeem(book, code)
    assert redeem(book, code, now=T0 + 3700) == first


def test_the_code_as_typed_by_a_person_is_accepted(book: CodeBook) -> None:
    code = issue(book).code or ""
    assert redeem(book, f"  {code.lower().replace('-', ' ')} ").outcome == "valid"


def test_another_customer_cannot_redeem_a_code(book: CodeBook) -> None:
    code = issue(book).code
    assert redeem(book, code, customer="mallory") == Redemption(outcome="unknown")
    assert redeem(book, code).outcome == "valid"


@pytest.mark.parametrize(("delay", "outcome"), [(DAY - 1, "valid"), (DAY, "expired"), (40 * DAY, "expired")])
def test_a_code_is_refused_from_its_expiry(book: CodeBook, delay: float, outcome: str) -> None:
    assert redeem(book, issue(book).code, now=T0 + delay).outcome == outcome


def test_a_code_is_refused_in_another_currency_and_below_its_minimum(book: CodeBook) -> None:
    code = issue(book).code
    assert redeem(book, code, currency="USD") == Redemption(outcome="wrong_currency")
    assert redeem(book, code, cart_value=1999) == Redemption(outcome="below_minimum", min_value=2000, currency="EUR")
    assert redeem(book, code, cart_value=2000).outcome == "valid"


@pytest.mark.parametrize("typed", ["", "HELLO", "0000-0000-0000", "2222-2222-2222"])
def test_a_code_never_issued_is_unknown(book: CodeBook, typed: str) -> None:
    issue(book)
    assert redeem(book, typed) == Redemption(outcome="unknown")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("customer", "", "non-empty `customer`"),
        ("order_id", "", "non-empty `order_id`"),
        ("client_key", "", "non-empty `client_key`"),
        ("cart_value", -1, "`cart_value` in minor units >= 0, got -1"),
        ("cart_value", 19.99, "got 19.99"),
    ],
)
def test_redeem_refuses_bad_arguments(book: CodeBook, field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        redeem(book, issue(book).code, **{field: value})


def test_statistics_count_outcomes(book: CodeBook) -> None:
    code = issue(book).code
    redeem(book, code, customer="mallory")
    redeem(book, code)
    redeem(book, code, order_id="o-2")
    assert book.statistics().redeemed == {"not_yours": 1, "valid": 1, "already_used": 1}


# -- the rate limit on guessing ------------------------------------------------------------------------------------


def guess(book: CodeBook, now: float, client: str = "198.51.100.7") -> str:
    return redeem(book, new_code(), client_key=client, now=now).outcome


def test_after_ten_failures_in_fifteen_minutes_a_client_is_rate_limited_even_with_a_good_code(book: CodeBook) -> None:
    code = issue(book).code
    assert [guess(book, T0 + n) for n in range(10)] == ["unknown"] * 10
    assert guess(book, T0 + 10) == "rate_limited"
    assert redeem(book, code, client_key="198.51.100.7", now=T0 + 11) == Redemption(outcome="rate_limited")
    assert redeem(book, code, now=T0 + 12).outcome == "valid"  # another client: not affected; nor was the code


def test_the_limit_lifts_as_failures_leave_the_window(book: CodeBook) -> None:
    for n in range(10):
        guess(book, T0 + n * 60)  # T0 .. T0 + 540
    assert guess(book, T0 + 899) == "rate_limited"
    assert guess(book, T0 + 900) == "unknown"  # the failure at T0 left the window; this one fills it again
    assert guess(book, T0 + 901) == "rate_limited"
    assert guess(book, T0 + 540 + 900) == "unknown"  # every earlier failure has left
    assert all(guess(book, T0 + 3000 + n) == "unknown" for n in range(9))


def test_rate_limited_requests_do_not_extend_the_lockout(book: CodeBook) -> None:
    for n in range(10):
        guess(book, T0 + n)
    assert all(guess(book, T0 + 10 + n) == "rate_limited" for n in range(100))
    assert guess(book, T0 + 900) == "unknown"


def test_another_customers_code_counts_as_a_guess_but_the_owners_mistakes_do_not(book: CodeBook) -> None:
    code = issue(book).code
    for n in range(20):  # the owner trying with too small a cart, then in the wrong currency
        assert redeem(book, code, cart_value=100, now=T0 + n).outcome == "below_minimum"
        assert redeem(book, code, currency="USD", now=T0 + n).outcome == "wrong_currency"
    for n in range(10):
        assert redeem(book, code, customer="mallory", client_key="evil", now=T0 + n).outcome == "unknown"
    assert redeem(book, code, customer="mallory", client_key="evil", now=T0 + 20).outcome == "rate_limited"
    assert redeem(book, code, now=T0 + 30).outcome == "valid"


def test_the_client_key_is_stored_as_a_keyed_hash(book: CodeBook) -> None:
    guess(book, T0, client="198.51.100.7")
    assert book.store.count_attempts("198.51.100.7", now=T0, window=900) == 0


def test_the_budget_and_window_are_the_policys() -> None:
    book = CodeBook(MemoryStore(), SECRET, policy=CodePolicy(attempts=2, attempt_window=60))
    assert [guess(book, T0 + n) for n in range(3)] == ["unknown", "unknown", "rate_limited"]
    assert guess(book, T0 + 60) == "unknown"


# -- properties ----------------------------------------------------------------------------------------------------


@settings(max_examples=10, deadline=None)
@given(st.integers(200, 600), st.sampled_from(["", "SHOP"]))
def test_codes_are_unique_over_many_issues(count: int, prefix: str) -> None:
    book = CodeBook(MemoryStore(), SECRET, policy=CodePolicy(prefix=prefix, per_contact=None, per_device=None))
    codes = [issue(book, contact_key=f"c{n % 7}", cart_key=f"cart-{n}").code for n in range(count)]
    assert len(set(codes)) == count
    assert book.statistics().issued == count


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(["alice", "bob", "mallory"]), st.integers(0, 2),
                  st.integers(0, 50), st.sampled_from([1000, 2500, 9000])),
        max_size=40,
    )
)  # fmt: skip
def test_a_code_is_accepted_for_one_order_only_by_its_customer_and_never_after_expiry(
    redemptions: list[tuple[int, str, int, int, int]],
) -> None:
    """Codes 0..3 go to alice, bob, alice, bob and expire 10, 20, 30, 40 hours after T0 (minimum 20.00 EUR);
    each redemption is (code, customer, order, hours after T0, cart value)."""
    book = CodeBook(MemoryStore(), SECRET, policy=CodePolicy(attempts=1000, per_contact=None))
    owners = ["alice", "bob", "alice", "bob"]
    expiry = [T0 + 3600 * 10 * (n + 1) for n in range(4)]
    codes = [issue(book, msgspec.structs.replace(TEN_PERCENT, expires_at=expiry[n]), contact_key=owners[n]).code
             for n in range(4)]  # fmt: skip
    orders: dict[int, str] = {}  # code -> the order it went to
    for n, customer, order_n, hours, value in redemptions:
        now, order = T0 + 3600 * hours, f"o{order_n}"
        got = redeem(book, codes[n], customer=customer, order_id=order, now=now, cart_value=value)
        if got.outcome == "valid":
            assert customer == owners[n]
            assert orders.setdefault(n, order) == order  # never a second order
            assert got.discount == value // 10
        else:
            assert got.discount == 0
        if customer != owners[n]:
            assert got.outcome == "unknown"  # as if there were no such code
        elif n not in orders and now >= expiry[n]:
            assert got.outcome == "expired"  # never after expiry
        elif n in orders and orders[n] != order:
            assert got.outcome == "already_used"
    store: MemoryStore = book.store  # type: ignore[assignment]
    for stored in store.export("alice").codes + store.export("bob").codes:
        assert stored.redeemed_at is None or stored.redeemed_at < stored.expires_at


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 11), st.integers(1, len(ALPHABET) - 1))
def test_a_code_with_one_symbol_changed_is_unknown(position: int, shift: int) -> None:
    book = CodeBook(MemoryStore(), SECRET)
    code = issue(book).code or ""
    body = parse_code(code) or ""
    # A shift, not a drawn symbol: what is drawn must not depend on the (random) code, or hypothesis cannot replay.
    symbol = ALPHABET[(ALPHABET.index(body[position]) + shift) % len(ALPHABET)]
    tampered = format_code(body[:position] + symbol + body[position + 1 :])
    assert redeem(book, tampered).outcome == "unknown"
    assert redeem(book, code).outcome == "valid"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet=ALPHABET, min_size=12, max_size=12), min_size=1, max_size=30))
def test_forged_codes_are_unknown_and_at_most_the_budget_is_tried(forgeries: list[str]) -> None:
    book = CodeBook(MemoryStore(), SECRET)
    issue(book)
    outcomes = [redeem(book, forged, now=T0 + n).outcome for n, forged in enumerate(forgeries)]
    assert outcomes[:10] == ["unknown"] * min(len(forgeries), 10)
    assert outcomes[10:] == ["rate_limited"] * max(len(forgeries) - 10, 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2000), st.booleans()), max_size=60))
def test_the_rate_limit_answers_as_a_sliding_window_of_failures(steps: list[tuple[int, bool]]) -> None:
    """Each step: seconds since the last one, and whether it is a guess (else the owner's valid code)."""
    book = CodeBook(MemoryStore(), SECRET, policy=CodePolicy(attempts=3, attempt_window=900, per_contact=None))
    failures: list[float] = []
    now = T0
    for delay, is_guess in steps:
        now += delay
        code = new_code() if is_guess else issue(book, now=now, offer=FIVE_OFF).code
        got = redeem(book, code, now=now, order_id=f"o{now}").outcome
        limited = len([at for at in failures if now - 900 < at <= now]) >= 3
        if limited:
            assert got == "rate_limited"
        else:
            assert got == ("unknown" if is_guess else "valid")
            if is_guess:
                failures.append(now)


# -- plugging in -----------------------------------------------------------------------------------------------------


class ShopCoupons:
    """A shop's own coupon system: every code is SAVE5, for anyone, any number of times."""

    async def issue(self, offer: Offer, *, cart_key: str, contact_key: str, now: float, email: str | None = None,
                    device: str | None = None) -> Offer | Refused:  # fmt: skip
        return msgspec.structs.replace(offer, code="SAVE5")

    async def redeem(self, code: str, *, customer: str, cart_value: int, currency: str | None, order_id: str,
                     client_key: str, now: float) -> Redemption:  # fmt: skip
        return Redemption(outcome="valid" if code == "SAVE5" else "unknown", discount=min(500, cart_value))


def test_the_code_book_and_a_shops_own_system_are_coupon_providers(book: CodeBook) -> None:
    assert isinstance(book, CouponProvider)
    assert isinstance(ShopCoupons(), CouponProvider)
    assert not isinstance(object(), CouponProvider)


@pytest.mark.anyio
async def test_the_async_methods_issue_and_redeem_through_the_store(book: CodeBook) -> None:
    providers: list[CouponProvider] = [book, ShopCoupons()]
    for provider in providers:
        issued = await provider.issue(TEN_PERCENT, cart_key="cart-1", contact_key="alice", now=T0)
        assert isinstance(issued, Offer) and issued.code is not None
        redemption = await provider.redeem(issued.code, customer="alice", cart_value=5000, currency="EUR",
                                           order_id="o-1", client_key="ip", now=T0 + 1)  # fmt: skip
        assert redemption.outcome == "valid" and redemption.discount == 500


def test_the_examples_in_the_docstrings_run() -> None:
    # Codes as text (format_code, parse_code) live in recoverkit._code_text, re-exported by recoverkit.offers.
    results = [doctest.testmod(module) for module in (recoverkit.offers, recoverkit._code_text)]
    assert sum(r.attempted for r in results) >= 4 and sum(r.failed for r in results) == 0


# -- recoverkit.offers.redeem: the checkout's one call ----------------------------------------------------------


def checkout(issued_by: CodeBook, code: str | None, **overrides: Any) -> Redemption:
    """``recoverkit.offers.redeem`` as a checkout view calls it: alice's 50.00 EUR order o-1 from one IP."""
    assert code is not None
    fields: dict[str, Any] = {
        "book": issued_by, "customer_id": "alice", "cart_value": 5000, "currency": "EUR", "order_id": "o-1",
        "client": "203.0.113.9", "now": T0 + 3600,
    }  # fmt: skip
    fields.update(overrides)
    return recoverkit.offers.redeem(code, **fields)


def test_redeem_tells_valid_then_already_used_for_another_order(book: CodeBook) -> None:
    code = issue(book).code
    assert checkout(book, code) == Redemption(
        outcome="valid", discount=500, kind="discount", currency="EUR", cart_key="cart-1"
    )
    assert checkout(book, code).outcome == "valid"  # the same order again: a retried checkout
    assert checkout(book, code, order_id="o-2").outcome == "already_used"


def test_redeem_tells_expired_and_not_this_customers(book: CodeBook) -> None:
    code = issue(book).code
    assert checkout(book, code, now=T0 + DAY).outcome == "expired"
    assert checkout(book, code, customer_id="mallory").outcome == "unknown"


def test_redeem_finds_a_code_sent_to_the_session_of_a_shopper_who_logged_in_since(book: CodeBook) -> None:
    code = issue(book, contact_key="session:s1").code
    assert checkout(book, code, customer_id="alice").outcome == "unknown"
    assert checkout(book, code, customer_id="alice", session_id="s1").outcome == "valid"
    assert checkout(book, code, customer_id=None, session_id="s1").outcome == "valid"
    assert checkout(book, code, customer_id=None, session_id="s2").outcome == "unknown"


def test_redeem_is_rate_limited_against_guessing_per_client(book: CodeBook) -> None:
    code = issue(book).code
    guesses = [checkout(book, new_code(), now=T0 + n).outcome for n in range(10)]
    assert guesses == ["unknown"] * 10
    assert checkout(book, code, now=T0 + 11).outcome == "rate_limited"  # even with the right code now
    assert checkout(book, code, client="198.51.100.7", now=T0 + 12).outcome == "valid"  # another client is not


def test_a_request_trying_both_ids_is_one_guess_against_the_budget(book: CodeBook) -> None:
    code = issue(book, contact_key="mallory").code
    for n in range(5):
        assert checkout(book, new_code(), session_id="s9", now=T0 + n).outcome == "unknown"
    for n in range(5):  # someone else's code, tried as the customer and as the session: still one guess each
        assert checkout(book, code, session_id="s9", now=T0 + 10 + n).outcome == "unknown"
    assert checkout(book, code, session_id="s9", now=T0 + 20).outcome == "rate_limited"
    assert book.statistics().redeemed == {"unknown": 5, "not_yours": 5, "rate_limited": 1}


def test_redeem_uses_the_wall_clock_when_no_time_is_given(book: CodeBook) -> None:
    now = time.time()
    offer = issue(book, msgspec.structs.replace(TEN_PERCENT, expires_at=now + DAY), now=now)
    assert checkout(book, offer.code, now=None).outcome == "valid"


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"customer_id": None}, ValueError, "expected `customer_id` or `session_id`"),
        ({"customer_id": "", "session_id": ""}, ValueError, "expected `customer_id` or `session_id`"),
        ({"order_id": ""}, ValueError, "expected a non-empty `order_id`"),
        ({"client": ""}, ValueError, "expected a non-empty `client_key`"),
        ({"cart_value": 49.99}, ValueError, "expected `cart_value` in minor units >= 0, got 49.99"),
        ({"book": MemoryStore()}, TypeError, "expected `book` to be the CodeBook that issued the code, got Memory"),
    ],
)
def test_redeem_refuses_what_it_cannot_check(
    book: CodeBook, overrides: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        checkout(book, "ABCD-EFGH-JKLM", **overrides)


# -- nothing for guessers: one budget per address or /64, one answer for every code that is not yours ---------------


@pytest.mark.parametrize(
    ("spellings", "same"),
    [
        (["2001:db8:1:2::1", "2001:DB8:1:2:0:0:0:1", "2001:0db8:0001:0002::0001", "[2001:db8:1:2::1]:443"], True),
        (["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", "fe80::1%eth0", "2001:db8:1:2::1%2"], False),
        (["2001:db8:1:2::1", "2001:db8:1:2::abcd:9", "2001:db8:1:2:8000::"], True),  # one /64
        (["203.0.113.9", "::ffff:203.0.113.9", "203.0.113.9:51234", " 203.0.113.9 "], True),
        (["2001:db8:1:2::1", "2001:db8:1:3::1"], False),  # neighbouring /64s
        (["203.0.113.9", "203.0.113.10"], False),
    ],
)
def test_client_bucket_is_one_per_ipv4_address_and_per_ipv6_slash_64(spellings: list[str], same: bool) -> None:
    buckets = {client_bucket(spelling) for spelling in spellings}
    assert (len(buckets) == 1) is same, buckets


def test_a_key_that_is_no_address_is_its_own_bucket() -> None:
    assert client_bucket("session-token-abc") == "session-token-abc"
    assert client_bucket("::1::") == "::1::"


def test_every_spelling_and_address_of_one_ipv6_slash_64_shares_one_guessing_budget(book: CodeBook) -> None:
    code = issue(book).code
    spellings = [f"2001:db8:aa:bb::{n:x}" for n in range(5)] + [
        "2001:DB8:AA:BB:0:0:0:1", "2001:0db8:00aa:00bb:0000:0000:0000:0002", "[2001:db8:aa:bb::3]:443",
        "2001:db8:aa:bb:ffff::1", "2001:db8:aa:bb::4%eth0",
    ]  # fmt: skip
    assert [guess(book, T0 + n, client=spelling) for n, spelling in enumerate(spellings)] == ["unknown"] * 10
    assert guess(book, T0 + 10, client="2001:db8:aa:bb:1234:5678:9abc:def0") == "rate_limited"
    assert redeem(book, code, client_key="2001:db8:aa:bb::99", now=T0 + 11).outcome == "rate_limited"
    assert redeem(book, code, client_key="2001:db8:aa:bc::1", now=T0 + 12).outcome == "valid"  # the next /64


@pytest.mark.parametrize(
    "state",
    ["live", "expired", "redeemed", "small cart", "other currency"],
)
def test_a_code_of_another_customer_answers_exactly_as_no_code_whatever_its_state(book: CodeBook, state: str) -> None:
    code = issue(book).code
    later = {"expired": T0 + 2 * DAY}.get(state, T0 + 3600)
    if state == "redeemed":
        assert redeem(book, code, order_id="o-alice").outcome == "valid"
    extra: dict[str, Any] = {"small cart": {"cart_value": 100}, "other currency": {"currency": "USD"}}.get(state, {})
    stranger = redeem(book, code, customer="mallory", client_key="198.51.100.1", now=later, **extra)
    nothing = redeem(book, new_code(), customer="mallory", client_key="198.51.100.2", now=later, **extra)
    assert stranger == nothing == Redemption(outcome="unknown")
    assert msgspec.json.encode(stranger) == msgspec.json.encode(nothing)
