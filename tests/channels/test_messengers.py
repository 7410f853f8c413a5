"""WhatsApp (Cloud API template messages) and Messenger (Send API) against a local server that plays the Graph API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest

from recoverkit.channels import MessengerChannel, WhatsAppChannel, WhatsAppTemplate
from recoverkit.errors import ConfigError, PermanentDeliveryError, TransientDeliveryError
from recoverkit.offers import Offer
from recoverkit.templates import Templates

from .contract import PHONE, ChannelContract, make_message
from .http_server import Reply
from .platform_server import TOKEN, Platform, graph_error, platform

pytestmark = pytest.mark.anyio

NUMBER_ID = "106540352242922"
PAGE_ID = "102938475610"
TEMPLATES = {"reminder-1": WhatsAppTemplate(name="cart_reminder", languages=("de", "en_US"),
                                            body=("first_item", "cart_value"))}
SOURCES = {"reminder-1.sms.txt": "{{ key }}: your {{ cart.quantity }} items are waiting"}


@pytest.fixture
def far() -> Iterator[Platform]:
    with platform() as server:
        yield server


def whatsapp(far: Platform, **options: Any) -> WhatsAppChannel:
    options.setdefault("templates", TEMPLATES)
    return WhatsAppChannel(NUMBER_ID, access_token=TOKEN, base_url=f"{far.base_url}/graph/v21.0", **options)


def messenger(far: Platform, **options: Any) -> MessengerChannel:
    options.setdefault("psid", lambda message: "24681357")
    options.setdefault("templates", Templates(sources=SOURCES))
    return MessengerChannel(PAGE_ID, access_token=TOKEN, base_url=f"{far.base_url}/graph/v21.0", **options)


class TestWhatsAppContract(ChannelContract):
    @pytest.fixture
    async def channel(self, far: Platform) -> AsyncIterator[WhatsAppChannel]:
        self.far = far
        channel = whatsapp(far)
        yield channel
        await channel.aclose()

    def delivered_keys(self, channel: Any) -> list[str]:
        return [body["biz_opaque_callback_data"] for body in self.far.whatsapp]


class TestMessengerContract(ChannelContract):
    @pytest.fixture
    async def channel(self, far: Platform) -> AsyncIterator[MessengerChannel]:
        self.far = far
        channel = messenger(far)
        yield channel
        await channel.aclose()

    def delivered_keys(self, channel: Any) -> list[str]:
        return [body["message"]["text"].split(":")[0] for body in self.far.messenger]


# -- WhatsApp ------------------------------------------------------------------------------------------------------


async def test_whatsapp_sends_the_documented_template_message(far: Platform) -> None:
    channel = whatsapp(far)
    await channel.send(make_message())
    await channel.aclose()
    (request,) = far.requests
    assert (request.method, request.path) == ("POST", f"/graph/v21.0/{NUMBER_ID}/messages")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.body) == {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "491701234567", "type": "template",
        "biz_opaque_callback_data": "cart-1/default/0",
        "template": {"name": "cart_reminder", "language": {"code": "de"}, "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Mug"}, {"type": "text", "text": "35.79 EUR"}]},
        ]},
    }  # fmt: skip
    assert far.refused == []


async def test_whatsapp_picks_the_language_from_the_locale_else_the_default(far: Platform) -> None:
    channel = whatsapp(far)
    for locale in ("en-US", "fr-FR", None):
        message = make_message(f"c/{locale}/0")
        await channel.send(msgspec.structs.replace(
            message, recipient=msgspec.structs.replace(message.recipient, locale=locale)))
    await channel.aclose()
    assert [b["template"]["language"]["code"] for b in far.whatsapp] == ["en_US", "en_US", "en_US"]


async def test_whatsapp_components_function_builds_buttons(far: Platform) -> None:
    def components(message: Any) -> list[dict[str, Any]]:
        return [{"type": "button", "sub_type": "url", "index": "0",
                 "parameters": [{"type": "text", "text": message.cart.cart_key}]}]

    channel = whatsapp(far, components=components)
    await channel.send(make_message())
    await channel.aclose()
    assert far.whatsapp[0]["template"]["components"][0]["parameters"] == [{"type": "text", "text": "cart-1"}]


async def test_whatsapp_a_missing_parameter_fails_permanently_before_any_request(far: Platform) -> None:
    channel = whatsapp(far, templates={"reminder-1": WhatsAppTemplate(name="code", body=("offer_code",))})
    with pytest.raises(PermanentDeliveryError, match="no offer_code"):
        await channel.send(make_message())
    await channel.send(make_message(offer=Offer(kind="percent", name="10 %", code="SAVE10", percent=10)))
    await channel.aclose()
    assert len(far.requests) == 1


@pytest.mark.parametrize("code", [130429, 131048, 131056, 4, 80007])
async def test_whatsapp_rate_limits_are_transient(far: Platform, code: int) -> None:
    channel = whatsapp(far)
    far.fail_next.append(graph_error("Rate limit hit", code, 400))
    with pytest.raises(TransientDeliveryError, match="rate limited"):
        await channel.send(make_message())
    await channel.aclose()


async def test_whatsapp_outside_the_window_or_unreachable_is_permanent_and_says_why(far: Platform) -> None:
    channel = whatsapp(far)
    far.fail_next.append(graph_error(f"Message undeliverable to {PHONE}", 131026, 400))
    with pytest.raises(PermanentDeliveryError, match="cannot receive") as caught:
        await channel.send(make_message())
    await channel.aclose()
    assert "1234567" not in str(caught.value) and TOKEN not in str(caught.value)


async def test_whatsapp_a_5xx_is_transient_with_retry_after(far: Platform) -> None:
    channel = whatsapp(far)
    far.fail_next.append(Reply(503, b"<html>busy</html>", {"Retry-After": "12"}))
    with pytest.raises(TransientDeliveryError) as caught:
        await channel.send(make_message())
    await channel.aclose()
    assert caught.value.retry_after == 12.0


async def test_whatsapp_needs_an_international_phone(far: Platform) -> None:
    channel = whatsapp(far)
    message = make_message()
    for phone in (None, "0170 1234567"):
        with pytest.raises(PermanentDeliveryError):
            await channel.send(msgspec.structs.replace(
                message, recipient=msgspec.structs.replace(message.recipient, phone=phone)))
    await channel.aclose()
    assert far.requests == []


def test_whatsapp_check_templates_names_the_missing_template(far: Platform) -> None:
    with pytest.raises(ConfigError, match=r"\['winback'\]"):
        whatsapp(far).check_templates(["reminder-1", "winback"])


@pytest.mark.parametrize(
    ("options", "match"),
    [({"templates": {}}, "templates"), ({"templates": {"x": "cart_reminder"}}, "WhatsAppTemplate"),
     ({"templates": {"x": WhatsAppTemplate(name="t", body=("password",))}}, "password")],  # type: ignore[arg-type]
)
def test_whatsapp_bad_options_are_config_errors(far: Platform, options: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        whatsapp(far, **options)


# -- Messenger -----------------------------------------------------------------------------------------------------


async def test_messenger_sends_an_update_to_the_psid(far: Platform) -> None:
    async def psid(message: Any) -> str:
        return "24681357"

    channel = messenger(far, psid=psid)
    await channel.send(make_message())
    await channel.aclose()
    (request,) = far.requests
    assert request.path == f"/graph/v21.0/{PAGE_ID}/messages"
    assert json.loads(request.body) == {
        "recipient": {"id": "24681357"}, "messaging_type": "UPDATE",
        "message": {"text": "cart-1/default/0: your 3 items are waiting"},
    }  # fmt: skip


async def test_messenger_message_tag_is_sent_with_its_tag(far: Platform) -> None:
    channel = messenger(far, messaging_type="MESSAGE_TAG", tag="POST_PURCHASE_UPDATE")
    await channel.send(make_message())
    await channel.aclose()
    assert far.messenger[0]["tag"] == "POST_PURCHASE_UPDATE" and far.refused == []


async def test_messenger_outside_the_window_is_permanent_and_says_so(far: Platform) -> None:
    channel = messenger(far)
    far.fail_next.append(graph_error("This message is sent outside of allowed window.", 10, 400, subcode=2018278))
    with pytest.raises(PermanentDeliveryError, match="24-hour window"):
        await channel.send(make_message())
    await channel.aclose()


async def test_messenger_without_a_psid_fails_permanently_and_a_failing_lookup_transiently(far: Platform) -> None:
    def broken(message: Any) -> str:
        raise OSError("database down")

    for psid, error in ((lambda message: None, PermanentDeliveryError), (broken, TransientDeliveryError)):
        channel = messenger(far, psid=psid)
        with pytest.raises(error):
            await channel.send(make_message())
        await channel.aclose()
    assert far.requests == []


async def test_messenger_rate_limit_is_transient(far: Platform) -> None:
    channel = messenger(far)
    far.fail_next.append(graph_error("(#613) Calls to this api have exceeded the rate limit.", 613, 400))
    with pytest.raises(TransientDeliveryError, match="rate limited"):
        await channel.send(make_message())
    await channel.aclose()


@pytest.mark.parametrize(
    ("options", "match"),
    [({"messaging_type": "MESSAGE_TAG"}, "tag"), ({"tag": "ACCOUNT_UPDATE"}, "tag"),
     ({"messaging_type": "MESSAGE_TAG", "tag": "SHOPPING"}, "tag"), ({"psid": "24681357"}, "psid"),
     ({"messaging_type": "PROMO"}, "messaging_type")],
)
def test_messenger_bad_options_are_config_errors(far: Platform, options: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        messenger(far, **options)
