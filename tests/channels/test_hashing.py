"""Identifiers normalised as Google's and Meta's documentation require, then SHA-256 hex."""

from __future__ import annotations

import hashlib

import pytest

from recoverkit.channels._hashing import e164, normalise_email, sha256_hex


def test_sha256_hex_is_the_lower_case_hex_digest_of_the_utf8_bytes() -> None:
    assert sha256_hex("jane@example.com") == hashlib.sha256(b"jane@example.com").hexdigest()
    assert sha256_hex("ü@example.com") == hashlib.sha256("ü@example.com".encode()).hexdigest()


def test_email_is_trimmed_and_lower_cased() -> None:
    assert normalise_email("  Jane.Doe@Example.COM\n") == "jane.doe@example.com"


@pytest.mark.parametrize("domain", ["gmail.com", "googlemail.com"])
def test_gmail_dots_are_removed_only_when_asked_and_only_before_the_at(domain: str) -> None:
    assert normalise_email(f"J.a.n.e@{domain}", gmail_dots=True) == f"jane@{domain}"
    assert normalise_email(f"J.a.n.e@{domain}") == f"j.a.n.e@{domain}"


def test_dots_of_other_domains_stay() -> None:
    assert normalise_email("j.ane@mail.example.com", gmail_dots=True) == "j.ane@mail.example.com"


@pytest.mark.parametrize("bad", ["", "jane", "jane@", "@example.com", "jane@example", "a b@example.com"])
def test_something_that_is_not_an_address_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(ValueError, match="name@domain.tld") as caught:
        normalise_email(bad)
    assert not bad or bad not in str(caught.value)


@pytest.mark.parametrize(
    ("written", "expected"),
    [("+49 170 1234567", "+491701234567"), ("+1 (415) 555-0100", "+14155550100"), ("0044 20 7946 0958", "+442079460958"),
     ("+33.6.12.34.56.78", "+33612345678")],
)
def test_phone_numbers_written_internationally_become_e164(written: str, expected: str) -> None:
    assert e164(written) == expected


@pytest.mark.parametrize("bad", ["0170 1234567", "+0170123456", "+49 170", "+49 170 1234567 890 12", "+49-170-CALL-ME"])
def test_national_short_long_or_lettered_numbers_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="international number") as caught:
        e164(bad)
    assert "1234567" not in str(caught.value)
