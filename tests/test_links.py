"""Signed cart-restore links: built from the configured URL only, refused when forged, tampered or expired.

Time is passed in (``now``); nothing here sleeps.
"""

from __future__ import annotations

import base64
import doctest
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import recoverkit.links
from recoverkit.clock import EventClock, FakeClock
from recoverkit.errors import ConfigError, LinkError, RecoverkitError
from recoverkit.links import DEFAULT_MAX_AGE, MAX_TOKEN_LENGTH, RestoreLinks, RestoreToken

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
SECRET = "test secret of at least thirty-two bytes"
OTHER_SECRET = b"another secret, also thirty-two bytes long"
BASE = "https://shop.example/cart/restore"

#: Text a cart key or contact key can be: anything encodable (no lone surrogates), not empty.
keys = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=80)


@pytest.fixture
def links() -> RestoreLinks:
    return RestoreLinks(SECRET, BASE)


def token_of(url: str) -> str:
    [token] = parse_qs(urlsplit(url).query)["t"]
    return token


def reason(links: RestoreLinks, token: str, now: float | None = T0 + 60, *, echo_check: bool = True) -> str:
    """Why ``links`` refuses ``token``; also checks that the message does not repeat the token (unless the token
    is arbitrary text, which may happen to be a word of the message)."""
    with pytest.raises(LinkError) as info:
        links.verify(token, now=now)
    if echo_check and isinstance(token, str) and len(token) >= 4:
        assert token not in str(info.value)
    return info.value.reason


# -- building ------------------------------------------------------------------------------------------------------


def test_a_link_is_the_configured_url_with_the_token(links: RestoreLinks) -> None:
    url = links.build("cart-42", now=T0)
    assert re.fullmatch(r"https://shop\.example/cart/restore\?t=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}", url)
    assert links.verify(token_of(url), now=T0).cart_key == "cart-42"


def test_the_shops_own_query_parameters_are_kept_byte_for_byte() -> None:
    links = RestoreLinks(SECRET, "https://shop.example/restore?lang=de&utm_source=mail%20x")
    url = links.build("cart-1", now=T0)
    assert url.startswith("https://shop.example/restore?lang=de&utm_source=mail%20x&t=")


@settings(max_examples=50)
@given(keys, st.one_of(st.none(), keys))
def test_links_are_built_only_from_the_configured_url(cart_key: str, contact_key: str | None) -> None:
    links = RestoreLinks(SECRET, BASE)
    parts = urlsplit(links.build(cart_key, contact_key=contact_key, now=T0))
    assert (parts.scheme, parts.netloc, parts.path, parts.fragment) == ("https", "shop.example", "/cart/restore", "")
    assert list(parse_qs(parts.query)) == ["t"]


def test_there_is_no_way_to_pass_a_host() -> None:
    with pytest.raises(TypeError):
        RestoreLinks(SECRET, BASE).build("cart-1", host="evil.example")  # type: ignore[call-arg]


def test_every_link_is_unique_even_for_one_cart_at_one_time(links: RestoreLinks) -> None:
    tokens = {links.token("cart-1", now=T0) for _ in range(100)}
    assert len(tokens) == 100
    assert len({links.verify(t, now=T0).nonce for t in tokens}) == 100


def test_a_token_is_short_enough_for_any_mail_client(links: RestoreLinks) -> None:
    assert len(links.token("c" * 64, contact_key="customer-123456", now=T0)) < 250


def test_building_needs_a_cart_key_that_is_text(links: RestoreLinks) -> None:
    with pytest.raises(ValueError, match="non-empty `cart_key`"):
        links.token("", now=T0)
    with pytest.raises(ValueError, match="valid Unicode text"):
        links.token("cart-\ud800", now=T0)


# -- verifying -----------------------------------------------------------------------------------------------------


@settings(max_examples=50)
@given(keys, st.one_of(st.none(), keys), st.integers(0, 10**10))
def test_a_token_verifies_to_what_it_was_built_with(cart_key: str, contact_key: str | None, issued: int) -> None:
    links = RestoreLinks(SECRET, BASE)
    restored = links.verify(links.token(cart_key, contact_key=contact_key, now=issued), now=issued)
    assert (restored.cart_key, restored.issued_at, restored.expires_at) == (
        cart_key, issued, issued + DEFAULT_MAX_AGE
    )  # fmt: skip
    assert (restored.contact_hash is None) == (contact_key is None)
    if contact_key is not None:
        assert links.is_for(restored, contact_key) and not links.is_for(restored, contact_key + "x")


def test_a_link_without_a_contact_is_for_nobody(links: RestoreLinks) -> None:
    assert not links.is_for(links.verify(links.token("cart-1", now=T0), now=T0), "alice")


def test_a_link_expires_at_its_expiry_time_exactly() -> None:
    links = RestoreLinks(SECRET, BASE, max_age=3600)
    token = links.token("cart-1", now=T0)
    assert links.verify(token, now=T0 + 3599.9).cart_key == "cart-1"
    assert reason(links, token, now=T0 + 3600) == "expired"
    assert reason(links, token, now=T0 + 10**9) == "expired"


def test_lowering_max_age_shortens_the_links_already_sent() -> None:
    token = RestoreLinks(SECRET, BASE, max_age=7 * 86_400).token("cart-1", now=T0)
    shorter = RestoreLinks(SECRET, BASE, max_age=3600)
    assert shorter.verify(token, now=T0 + 3599).cart_key == "cart-1"
    assert reason(shorter, token, now=T0 + 3600) == "expired"


def test_the_expired_message_says_until_when_and_not_the_token(links: RestoreLinks) -> None:
    token = links.token("cart-1", now=T0)
    with pytest.raises(LinkError, match=rf"restore link expired: it was valid until {T0 + 604_800}") as info:
        links.verify(token, now=T0 + 10**7)
    assert token not in str(info.value) and "cart-1" not in str(info.value)


def test_a_link_signed_with_another_secret_is_tampered(links: RestoreLinks) -> None:
    forged = RestoreLinks(OTHER_SECRET, BASE).token("cart-1", now=T0)
    assert reason(links, forged) == "tampered"


def test_another_carts_payload_under_a_valid_signature_is_tampered(links: RestoreLinks) -> None:
    mine, theirs = links.token("cart-mine", now=T0), links.token("cart-theirs", now=T0)
    spliced = theirs.partition(".")[0] + "." + mine.partition(".")[2]
    assert reason(links, spliced) == "tampered"


REPLACEMENTS = "ABCxyz019-_.=+/%~ é"


@settings(max_examples=200)
@given(st.integers(0, 10**6), st.integers(0, len(REPLACEMENTS) - 1))
def test_any_one_character_changed_is_refused_never_read_as_another_cart(where: int, which: int) -> None:
    links = RestoreLinks(SECRET, BASE)
    token = links.token("cart-1", contact_key="alice", now=T0)
    # Drawn independently of the (random) token, so that hypothesis can replay an example.
    position = where % len(token)
    replacement = REPLACEMENTS[which]
    if replacement == token[position]:
        replacement = REPLACEMENTS[(which + 1) % len(REPLACEMENTS)]
    tampered = token[:position] + replacement + token[position + 1 :]
    assert reason(links, tampered) in ("tampered", "malformed")


@settings(max_examples=100)
@given(st.text(max_size=300))
def test_arbitrary_text_is_never_a_valid_token(text: str) -> None:
    assert reason(RestoreLinks(SECRET, BASE), text, echo_check=False) in ("tampered", "malformed")


def test_a_non_canonical_spelling_of_the_signature_is_refused(links: RestoreLinks) -> None:
    token = links.token("cart-1", now=T0)
    body, _, signature = token.partition(".")
    signature_bytes = base64.urlsafe_b64decode(signature + "=")
    variants = [
        signature[:-1] + c
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        if c != signature[-1] and base64.urlsafe_b64decode(signature[:-1] + c + "=") == signature_bytes
    ]
    assert len(variants) == 3  # 43 characters hold 258 bits for 256: the last one has 2 spare bits
    for variant in variants:
        assert reason(links, f"{body}.{variant}") == "tampered"


@pytest.mark.parametrize(
    "token",
    ["", "abc", "abc.", ".abc", "a.b.c", "abc def.ghi", "abc.d=f", "é.é", "x" * (MAX_TOKEN_LENGTH + 1)],
)
def test_what_is_not_a_token_is_malformed(links: RestoreLinks, token: str) -> None:
    assert reason(links, token) == "malformed"


def test_a_non_string_token_is_malformed(links: RestoreLinks) -> None:
    assert reason(links, None) == "malformed"  # type: ignore[arg-type]


def test_a_signed_token_of_another_version_is_malformed(links: RestoreLinks, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recoverkit.links, "_VERSION", 2)
    token = links.token("cart-1", now=T0)
    monkeypatch.undo()
    assert reason(links, token) == "malformed"


def test_a_signed_token_whose_content_cannot_be_read_is_malformed(links: RestoreLinks) -> None:
    body = base64.urlsafe_b64encode(msgspec.msgpack.encode(["not", "a", "payload"])).rstrip(b"=").decode()
    signed = f"{body}.{links._signature(links._sign_key, body)}"
    assert reason(links, signed) == "malformed"


def test_a_link_error_is_a_recoverkit_error_and_a_value_error() -> None:
    assert issubclass(LinkError, RecoverkitError) and issubclass(LinkError, ValueError)


# -- the view helper -----------------------------------------------------------------------------------------------


def test_restore_cart_loads_the_cart_of_a_valid_token(links: RestoreLinks) -> None:
    loaded: list[str] = []

    def load(cart_key: str) -> dict[str, Any]:
        loaded.append(cart_key)
        return {"cart": cart_key}

    assert links.restore_cart(links.token("cart-7", now=T0), load, now=T0 + 1) == {"cart": "cart-7"}
    assert loaded == ["cart-7"]


@pytest.mark.parametrize("kind", ["forged", "expired", "malformed"])
def test_restore_cart_never_loads_a_cart_for_a_bad_token(links: RestoreLinks, kind: str) -> None:
    token = {
        "forged": RestoreLinks(OTHER_SECRET, BASE).token("cart-7", now=T0),
        "expired": links.token("cart-7", now=T0),
        "malformed": "garbage",
    }[kind]

    def load(cart_key: str) -> str:
        raise AssertionError("load_cart was called for a bad token")

    with pytest.raises(LinkError):
        links.restore_cart(token, load, now=T0 + DEFAULT_MAX_AGE)


def test_without_now_the_wall_clock_is_used(links: RestoreLinks) -> None:
    assert links.verify(links.token("cart-1")).cart_key == "cart-1"
    assert reason(links, links.token("cart-1", now=T0 - 10 * DEFAULT_MAX_AGE), now=None) == "expired"


def test_without_now_the_given_clock_is_used_for_building_and_checking() -> None:
    clock = FakeClock(1_569_888_000.0)  # 2019: years before the wall clock
    links = RestoreLinks(SECRET, BASE, clock=clock)
    token = links.token("cart-1")
    assert links.verify(token).issued_at == 1_569_888_000
    clock.advance(DEFAULT_MAX_AGE - 1)
    assert links.verify(token).cart_key == "cart-1"
    clock.advance(1)
    assert reason(links, token, now=None) == "expired"


def test_an_event_clock_without_a_time_yet_falls_back_to_the_wall_clock() -> None:
    links = RestoreLinks(SECRET, BASE, clock=EventClock())
    assert links.verify(links.token("cart-1")).cart_key == "cart-1"


# -- secrets and rotation ------------------------------------------------------------------------------------------


def test_links_signed_with_a_previous_secret_are_accepted_after_rotation() -> None:
    old = RestoreLinks(OTHER_SECRET, BASE).token("cart-1", contact_key="alice", now=T0)
    rotated = RestoreLinks(SECRET, BASE, previous_secrets=[OTHER_SECRET])
    restored = rotated.verify(old, now=T0)
    assert restored.cart_key == "cart-1" and rotated.is_for(restored, "alice")
    assert reason(RestoreLinks(SECRET, BASE), old) == "tampered"  # once the old secret is dropped
    new = rotated.token("cart-1", now=T0)
    assert RestoreLinks(SECRET, BASE).verify(new, now=T0).cart_key == "cart-1"  # new links use the new secret


def test_a_short_secret_is_a_config_error_that_does_not_show_it() -> None:
    with pytest.raises(ConfigError, match="expected `secret` of at least 32 bytes, got 7 bytes") as info:
        RestoreLinks("s3cr3t!", BASE)
    assert "s3cr3t" not in str(info.value)
    with pytest.raises(ConfigError, match="expected `previous_secrets` of at least 32 bytes, got 3 bytes"):
        RestoreLinks(SECRET, BASE, previous_secrets=[b"old"])
    with pytest.raises(ConfigError, match="a list of secrets, got one secret"):
        RestoreLinks(SECRET, BASE, previous_secrets=SECRET)  # a str is a sequence of str: caught at run time


def test_the_repr_never_shows_the_secret(links: RestoreLinks) -> None:
    assert SECRET not in repr(links) and BASE in repr(links)


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("shop.example/restore", "an absolute https:// URL"),
        ("/cart/restore", "an absolute https:// URL"),
        ("ftp://shop.example/restore", "an absolute https:// URL"),
        ("http://shop.example/restore", "plain http is allowed for localhost only"),
        ("https://user:pw@shop.example/restore", "without user information"),
        ("https://shop.example@evil.example/restore", "without user information"),
        ("https://shop.example/restore#top", "without a #fragment"),
        ("https://shop.example/restore?t=1", "without a 't' query parameter"),
        ("https://shop.example/re store", "without whitespace"),
        ("https://[::1/restore", "an absolute URL"),
    ],
)
def test_a_bad_base_url_is_a_config_error_naming_it(base_url: str, expected: str) -> None:
    pattern = rf"`base_url` to be .*{re.escape(expected)}.*got {re.escape(repr(base_url))}"
    with pytest.raises(ConfigError, match=pattern):
        RestoreLinks(SECRET, base_url)


@pytest.mark.parametrize("base_url", ["http://localhost:8000/restore", "http://127.0.0.1/r", "https://shop.example"])
def test_local_http_and_a_bare_origin_are_accepted(base_url: str) -> None:
    assert RestoreLinks(SECRET, base_url).build("c", now=T0).startswith(base_url + "?t=")


@pytest.mark.parametrize("max_age", [0, 59, 91 * 86_400, float("nan"), float("inf"), True])
def test_max_age_must_be_a_minute_to_ninety_days(max_age: float) -> None:
    with pytest.raises(ConfigError, match="`max_age` to be seconds from 60 to 90 days"):
        RestoreLinks(SECRET, BASE, max_age=max_age)


def test_restore_token_is_plain_data(links: RestoreLinks) -> None:
    restored = links.verify(links.token("cart-1", now=T0), now=T0)
    assert msgspec.convert(msgspec.to_builtins(restored), RestoreToken) == restored


def test_the_examples_in_the_docstrings_run() -> None:
    result = doctest.testmod(recoverkit.links)
    assert result.attempted >= 3 and result.failed == 0
