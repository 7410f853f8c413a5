"""Bearer credentials (discount codes, restore-link tokens) never reach the ledger, the dead letters or the file,
even when a provider quotes the message back in its error answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import T0, snapshot
from recoverkit import Config, Engine, FakeClock
from recoverkit._redact import REDACTED, credentials_of, redact
from recoverkit.channels.base import Message, Recipient
from recoverkit.channels.http import HttpChannel
from recoverkit.offers import ALPHABET, Offer, format_code

CODE = "SHOP-7KQ2-MX9P-R4TW"
TOKEN = "lgHZJGNhcnQtMc5pVvsAzmlX_-Q2xBwzpFpXrGm8.IVaEPe1HjqNA8lP0EEWYKSYhWgjimbhlc4G95Lv9iQw"
PHONE = "+4915112345678"
SECRETS = {"RECOVERKIT_CODE_SECRET": "c" * 40, "RECOVERKIT_LINK_SECRET": "l" * 40}


# -- the function ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [CODE, CODE.lower(), "SHOP7KQ2MX9PR4TW", "7KQ2-MX9P-R4TW", "shop 7kq2 mx9p r4tw", "SHOP-7KQ2-MX9P-R4"],
)
def test_the_messages_code_goes_however_the_provider_spelled_it(spelling: str) -> None:
    said = redact(f"HTTP 400: invalid body 'Your code {spelling}, see you soon'", [CODE])
    assert said == f"HTTP 400: invalid body 'Your code {REDACTED}, see you soon'"


@pytest.mark.parametrize(
    "quoted",
    [
        f"https://shop.example/cart/restore?t={TOKEN}",
        f"https%3A%2F%2Fshop.example%2Fcart%2Frestore%3Ft%3D{TOKEN}",
        TOKEN[:30],  # cut short by the provider's quote
        TOKEN[-20:],
    ],
)
def test_the_messages_restore_token_goes_whole_encoded_or_cut_short(quoted: str) -> None:
    said = redact(f"rejected: {quoted} ...", [TOKEN])
    assert TOKEN[:12] not in said and TOKEN[-12:] not in said and REDACTED in said


def test_credential_shaped_text_goes_without_knowing_the_message() -> None:
    text = (
        f'{{"body": "cart https://shop.example/cart/restore?t={TOKEN} code {CODE}", "to": "{PHONE}", '
        '"error": {"code": 21211, "message": "invalid"}} Authorization: Bearer sk_live_abcdefgh12345 '
        "api_key=key-123456 coupon=SAVE10NOW"
    )
    said = redact(text)
    for secret in (TOKEN, CODE, "sk_live_abcdefgh12345", "key-123456", "SAVE10NOW"):
        assert secret not in said
    assert '"code": 21211' in said and "invalid" in said  # the provider's own error code and words stay


def test_text_without_credentials_is_unchanged() -> None:
    text = "sms provider at api.example answered HTTP 503 for message 'cart-42/cart-recovery/0'; retry after 30 s"
    assert redact(text, [CODE, TOKEN]) == text


@given(st.text(alphabet=ALPHABET, min_size=12, max_size=12), st.text(max_size=40), st.text(max_size=40))
def test_any_code_in_any_surroundings_is_taken_out(body: str, before: str, after: str) -> None:
    code = format_code(body, "SHOP")
    said = redact(before + code + after, [code])
    compact = "".join(c for c in said.upper() if c.isalnum())
    assert body not in compact


def test_credentials_of_a_message_are_its_code_and_its_token() -> None:
    message = Message(
        key="s1/f/0", flow="f", step=0, channel="sms", template="t", due_at=T0, abandoned_at=T0, trigger="idle",
        score=0.5, reason="", cart=snapshot(), recipient=Recipient(contact_key="c1"),
        offer=Offer(kind="discount", name="10%", percent=10, code=CODE),
        restore_url=f"https://shop.example/cart/restore?x=1&t={TOKEN}",
    )  # fmt: skip
    assert credentials_of(message) == [CODE, TOKEN]


# -- the engine, with a provider that echoes the request -----------------------------------------------------------


def sms_config() -> Config:
    return Config.from_dict(
        {
            "abandon_after": 600,
            "offers": {"ten": {"kind": "discount", "name": "10% off", "percent": 10, "valid_for": 3600}},
            "flows": [{"name": "f", "steps": [{"delay": 0, "channel": "sms", "offer": "ten"}]}],
            "links": {"base_url": "https://shop.example/cart/restore"},
        }
    )


def events(session: str) -> list[dict[str, Any]]:
    base = {"session_id": session, "ts": T0, "customer_id": f"c-{session}"}
    return [
        {"event": "identify", **base, "phone": PHONE},
        {"event": "consent", **base, "granted": ["sms"]},
        {
            "event": "add_to_cart",
            **base,
            "currency": "EUR",
            "items": [{"item_id": "A", "price": "50.00", "quantity": 1}],
        },
    ]


@pytest.mark.anyio
async def test_a_provider_echoing_the_request_leaves_no_code_or_token_in_ledger_letters_or_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    sent: list[dict[str, Any]] = []

    def provider(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body)
        # What real SMS gateways do on a validation error: quote the request back.
        echo = {"to": body["to"], "text": body["body"]}
        return httpx.Response(400, json={"error": "invalid sender", "request": echo})

    client = httpx.AsyncClient(transport=httpx.MockTransport(provider))
    channel = HttpChannel("https://sms.example/send", kind="sms", client=client)
    db, letters = tmp_path / "state.db", tmp_path / "dead.jsonl"
    clock = FakeClock(T0)
    async with Engine(sms_config(), channels={"sms": channel}, clock=clock, store=db, dead_letters=letters) as engine:
        for session in ("s1", "s2", "s3"):
            for event in events(session):
                engine.track(event)
        clock.advance(601)
        await engine.flush()
        ledger = engine.store.ledger()
        stored = engine.store.dead_letters()
        files = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(("state.db", "dead")))
    await client.aclose()
    assert len(sent) == 3 and len(ledger) == 3 and len(stored) == 3
    for body in sent:
        code = next((w.rstrip(".,") for w in body["body"].split() if w.count("-") >= 2), None)
        assert code is not None, body
        token = body["body"].partition("?t=")[2].split()[0]
        assert len(code) >= 12 and len(token) > 40, body  # the provider did get both: they were there to leak
        for kept in (*(entry.error or "" for entry in ledger), *(letter.error for letter in stored)):
            assert "HTTP 400" in kept and "invalid sender" in kept  # the reason stays readable
            assert code not in kept and token[:12] not in kept and token[-12:] not in kept
        assert code.encode() not in files and token[-12:].encode() not in files
