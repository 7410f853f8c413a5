"""HttpChannel against a real HTTP server on 127.0.0.1, and the example SMS provider's build function."""

from __future__ import annotations

import base64
import importlib.util
import socket
from collections.abc import AsyncIterator, Iterator
from email.utils import formatdate
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs

import msgspec
import pytest

from recoverkit.channels import HttpChannel, Message, RequestSpec
from recoverkit.errors import ConfigError, PermanentDeliveryError, TransientDeliveryError
from recoverkit.templates import Rendered, Templates

from .contract import CUSTOMER_ID, EMAIL, PHONE, ChannelContract, make_message
from .http_server import Reply, Server, serving

pytestmark = pytest.mark.anyio

TOKEN = "acct-s3cret"
EXAMPLE = Path(__file__).parents[2] / "examples" / "twilio_like_sms.py"
#: The contract's messages name the template "reminder-1": the shop's own, given as sources.
SOURCES = {
    "reminder-1.sms.txt": "{{ cart.value }} waiting: {{ restore_url or 'no link' }}",
    "reminder-1.push.txt": "Your {{ cart.quantity }} items are waiting",
    "broken.sms.txt": "{{ cart.vlaue }}",
}


@pytest.fixture
def server() -> Iterator[Server]:
    with serving(Reply(201, b'{"sid": "SM1"}')) as server:
        yield server


@pytest.fixture
def templates() -> Templates:
    return Templates(sources=SOURCES)


@pytest.fixture
async def channel(server: Server, templates: Templates) -> AsyncIterator[HttpChannel]:
    channel = HttpChannel(f"{server.base_url}/v1/{TOKEN}/messages", templates=templates, timeout=5)
    yield channel
    await channel.aclose()


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("twilio_like_sms", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def without(message: Message, **recipient: Any) -> Message:
    return msgspec.structs.replace(message, recipient=msgspec.structs.replace(message.recipient, **recipient))


class TestHttpChannelContract(ChannelContract):
    @pytest.fixture
    async def channel(self, server: Server) -> AsyncIterator[HttpChannel]:
        self.server = server
        channel = HttpChannel(f"{server.base_url}/messages", templates=Templates(sources=SOURCES))
        yield channel
        await channel.aclose()

    def delivered_keys(self, channel: HttpChannel) -> list[str]:
        return [request.headers["idempotency-key"] for request in self.server.requests]


async def test_posts_json_to_body_and_key_with_the_key_as_idempotency_key(
    server: Server, channel: HttpChannel
) -> None:
    await channel.send(make_message(restore_url="https://shop.example/r/1"))
    [request] = server.requests
    assert request.method == "POST" and request.path == f"/v1/{TOKEN}/messages"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == "cart-1/default/0"
    assert request.headers["user-agent"].startswith("recoverkit/")
    assert msgspec.json.decode(request.body) == {
        "to": PHONE,
        "body": "35.79 EUR waiting: https://shop.example/r/1",
        "key": "cart-1/default/0",
    }


async def test_push_sends_the_push_text_to_the_customer_id(server: Server, templates: Templates) -> None:
    channel = HttpChannel(server.base_url, kind="push", templates=templates)
    try:
        await channel.send(make_message(channel="push"))
    finally:
        await channel.aclose()
    assert msgspec.json.decode(server.requests[0].body) == {
        "to": CUSTOMER_ID,
        "body": "Your 3 items are waiting",
        "key": "cart-1/default/0",
    }


async def test_without_templates_the_built_in_sms_text_is_used(server: Server) -> None:
    channel = HttpChannel(server.base_url)
    try:
        await channel.send(make_message(template="cart-reminder"))
    finally:
        await channel.aclose()
    body = msgspec.json.decode(server.requests[0].body)
    assert body["body"] == "You left 3 items (35.79 EUR) in your cart."


@pytest.mark.parametrize(("kind", "field"), [("sms", "phone"), ("push", "customer_id")])
async def test_a_message_without_the_address_is_permanent_and_not_sent(
    server: Server, templates: Templates, kind: Any, field: str
) -> None:
    channel = HttpChannel(server.base_url, kind=kind, templates=templates)
    try:
        with pytest.raises(PermanentDeliveryError, match=rf"'cart-1/default/0' has no recipient {field}"):
            await channel.send(without(make_message(), **{field: None}))
    finally:
        await channel.aclose()
    assert server.requests == []


async def test_a_template_that_fails_is_permanent_and_named(server: Server, channel: HttpChannel) -> None:
    with pytest.raises(PermanentDeliveryError, match=r"broken\.sms\.txt line 1 .*has no attribute 'vlaue'"):
        await channel.send(make_message(template="broken"))
    assert server.requests == []


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
async def test_retryable_statuses_are_transient_and_named(server: Server, channel: HttpChannel, status: int) -> None:
    server.replies = [Reply(status)]
    with pytest.raises(TransientDeliveryError) as info:
        await channel.send(make_message())
    message = str(info.value)
    assert f"HTTP {status}" in message and server.where in message and "'cart-1/default/0'" in message
    assert TOKEN not in message and "a later retry may succeed" in message


async def test_retry_after_seconds_are_quoted_in_the_error(server: Server, channel: HttpChannel) -> None:
    server.replies = [Reply(429, b'{"message": "Too many requests"}', {"Retry-After": "30"})]
    quoted = r"HTTP 429 .*Too many requests.*; retry after 30 s \(Retry-"
    with pytest.raises(TransientDeliveryError, match=quoted) as info:
        await channel.send(make_message())
    assert info.value.retry_after == 30.0  # and handed to the engine, which waits that long before retrying


async def test_retry_after_as_an_http_date_is_read_as_seconds_from_now(server: Server, channel: HttpChannel) -> None:
    import time

    server.replies = [Reply(503, headers={"Retry-After": formatdate(time.time() + 120, usegmt=True)})]
    with pytest.raises(TransientDeliveryError, match=r"HTTP 503 .*; retry after 1(19|20|21) s") as info:
        await channel.send(make_message())
    assert "a later retry" not in str(info.value)


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 422])
async def test_other_statuses_are_permanent_and_quote_the_answer_without_the_number(
    server: Server, channel: HttpChannel, status: int
) -> None:
    answer = f'{{"code": 21211, "message": "The To number {PHONE} is not valid", "more": "{EMAIL}"}}'
    server.replies = [Reply(status, answer.encode())]
    with pytest.raises(PermanentDeliveryError) as info:
        await channel.send(make_message())
    message = str(info.value)
    assert f"HTTP {status}" in message and "'cart-1/default/0'" in message and "21211" in message
    assert "is not valid" in message and PHONE not in message and EMAIL not in message and TOKEN not in message


async def test_retry_statuses_can_be_chosen(server: Server, templates: Templates) -> None:
    channel = HttpChannel(server.base_url, templates=templates, retry_statuses={409})
    server.replies = [Reply(409), Reply(503)]
    try:
        with pytest.raises(TransientDeliveryError, match="HTTP 409"):
            await channel.send(make_message())
        with pytest.raises(PermanentDeliveryError, match="HTTP 503"):
            await channel.send(make_message())
    finally:
        await channel.aclose()


async def test_a_server_slower_than_the_timeout_is_transient(server: Server, templates: Templates) -> None:
    server.delay = 5.0
    channel = HttpChannel(f"{server.base_url}/{TOKEN}", templates=templates, timeout=0.2)
    try:
        with pytest.raises(TransientDeliveryError, match=r"timed out after 0\.2s") as info:
            await channel.send(make_message())
    finally:
        await channel.aclose()
    assert TOKEN not in str(info.value)


async def test_connection_refused_is_transient(templates: Templates) -> None:
    port = closed_port()
    channel = HttpChannel(f"http://127.0.0.1:{port}/{TOKEN}", templates=templates)
    try:
        with pytest.raises(TransientDeliveryError, match=rf"127\.0\.0\.1:{port} .*ConnectError") as info:
            await channel.send(make_message())
    finally:
        await channel.aclose()
    assert TOKEN not in str(info.value)


async def test_a_build_function_shapes_the_request(server: Server, templates: Templates) -> None:
    def build(message: Message, rendered: Rendered) -> RequestSpec:
        return RequestSpec(
            content=rendered.text.encode(),
            content_type="text/plain; charset=utf-8",
            headers={"X-Campaign": message.flow},
            params={"to": message.recipient.phone or ""},
            method="PUT",
        )

    channel = HttpChannel(server.base_url + "/send", templates=templates, build=build)
    try:
        await channel.send(make_message())
    finally:
        await channel.aclose()
    [request] = server.requests
    assert request.method == "PUT" and request.path == "/send?to=%2B49+170+1234567"
    assert request.headers["content-type"] == "text/plain; charset=utf-8"
    assert request.headers["x-campaign"] == "default"
    assert request.body == b"35.79 EUR waiting: no link"


async def test_a_build_function_that_raises_fails_the_message_permanently(
    server: Server, templates: Templates
) -> None:
    def build(message: Message, rendered: Rendered) -> RequestSpec:
        raise KeyError(message.recipient.phone)

    channel = HttpChannel(server.base_url, templates=templates, build=build)
    try:
        with pytest.raises(PermanentDeliveryError, match=r"build function .* 'cart-1/default/0': KeyError") as info:
            await channel.send(make_message())
    finally:
        await channel.aclose()
    assert PHONE not in str(info.value) and server.requests == []


async def test_a_build_function_may_decide_a_failure_itself(server: Server, templates: Templates) -> None:
    def build(message: Message, rendered: Rendered) -> RequestSpec:
        raise TransientDeliveryError("provider quota not yet refilled")

    channel = HttpChannel(server.base_url, templates=templates, build=build)
    try:
        with pytest.raises(TransientDeliveryError, match="provider quota not yet refilled"):
            await channel.send(make_message())
    finally:
        await channel.aclose()


async def test_a_build_function_must_return_a_request_spec(server: Server, templates: Templates) -> None:
    channel = HttpChannel(server.base_url, templates=templates, build=lambda message, rendered: {"to": "x"})  # type: ignore[arg-type,return-value]
    try:
        with pytest.raises(PermanentDeliveryError, match=r"returned dict .*; expected a RequestSpec"):
            await channel.send(make_message())
    finally:
        await channel.aclose()


async def test_a_build_function_may_not_set_the_idempotency_header(server: Server, templates: Templates) -> None:
    def build(message: Message, rendered: Rendered) -> RequestSpec:
        return RequestSpec(json={}, headers={"Idempotency-Key": "mine"})

    channel = HttpChannel(server.base_url, templates=templates, build=build)
    try:
        with pytest.raises(PermanentDeliveryError, match="may not set 'Idempotency-Key'"):
            await channel.send(make_message())
    finally:
        await channel.aclose()


async def test_auth_and_headers_are_sent_and_the_idempotency_header_can_be_renamed(
    server: Server, templates: Templates
) -> None:
    channel = HttpChannel(
        server.base_url,
        templates=templates,
        auth=("AC123", TOKEN),
        headers={"X-Shop": "demo"},
        idempotency_header="X-Request-Id",
    )
    try:
        await channel.send(make_message())
    finally:
        await channel.aclose()
    headers = server.requests[0].headers
    assert headers["authorization"] == "Basic " + base64.b64encode(f"AC123:{TOKEN}".encode()).decode()
    assert headers["x-shop"] == "demo" and headers["x-request-id"] == "cart-1/default/0"
    assert "idempotency-key" not in headers


async def test_without_an_idempotency_header_none_is_sent(server: Server, templates: Templates) -> None:
    channel = HttpChannel(server.base_url, templates=templates, idempotency_header=None)
    try:
        await channel.send(make_message())
    finally:
        await channel.aclose()
    assert "idempotency-key" not in server.requests[0].headers


async def test_send_after_aclose_is_a_permanent_failure(server: Server, channel: HttpChannel) -> None:
    await channel.aclose()
    with pytest.raises(PermanentDeliveryError, match=rf"{server.where} is closed; message 'cart-1/default/0'"):
        await channel.send(make_message())
    assert server.requests == []


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"url": "ftp://sms.example/send"}, r"url 'ftp://sms\.example/\.\.\.' has scheme 'ftp'"),
        ({"url": f"sms.example/{TOKEN}"}, "expected an absolute http:// or https:// URL"),
        ({"kind": "email"}, "kind must be 'sms' or 'push', got 'email'"),
        ({"build": "form"}, "build must be a function"),
        ({"timeout": 0}, "timeout must be a positive number of seconds, got 0"),
        ({"headers": {"Content-Length": "1"}}, "may not set 'Content-Length'"),
        ({"headers": {"Idempotency-Key": "1"}}, "may not set 'Idempotency-Key'"),
        ({"headers": {"X-A": "1\r\nX-B: 2"}}, "one-line str values"),
        ({"retry_statuses": {200}}, "retry_statuses must be HTTP statuses from 300 to 599, got 200"),
        ({"idempotency_header": "Bad Header"}, "idempotency_header must be a header name or None"),
    ],
)
def test_bad_options_are_config_errors_naming_the_value(options: dict[str, Any], match: str) -> None:
    url = options.pop("url", "https://sms.example/send")
    with pytest.raises(ConfigError, match=match) as info:
        HttpChannel(url, **options)
    assert TOKEN not in str(info.value)


def test_repr_names_the_host_and_kind_only() -> None:
    assert repr(HttpChannel(f"https://sms.example/{TOKEN}", kind="push")) == (
        "HttpChannel(host='sms.example', kind='push')"
    )


# The example provider's build function (examples/twilio_like_sms.py): unit-tested, then sent to the local
# server; never to the network.


def test_the_example_builds_a_form_with_an_e164_number(example: ModuleType) -> None:
    spec = example.build_sms(make_message(), Rendered(text="Your cart is waiting"), sender="MyShop")
    assert spec == RequestSpec(form={"To": "+491701234567", "From": "MyShop", "Body": "Your cart is waiting"})


def test_the_example_refuses_a_message_without_a_phone_number(example: ModuleType) -> None:
    with pytest.raises(PermanentDeliveryError, match="'cart-1/default/0' has no phone number"):
        example.build_sms(without(make_message(), phone=None), Rendered(text="x"), sender="MyShop")


def test_the_example_channel_posts_to_the_account_url_with_basic_auth(example: ModuleType) -> None:
    channel = example.sms_channel("AC123", TOKEN, "MyShop")
    assert isinstance(channel, HttpChannel)
    assert repr(channel) == "HttpChannel(host='api.sms-provider.example', kind='sms')"


async def test_the_example_build_sends_a_form_encoded_request(
    server: Server, templates: Templates, example: ModuleType
) -> None:
    channel = HttpChannel(
        f"{server.base_url}/Accounts/AC123/Messages.json",
        templates=templates,
        build=lambda message, rendered: example.build_sms(message, rendered, sender="MyShop"),
        auth=("AC123", TOKEN),
    )
    try:
        await channel.send(make_message())
    finally:
        await channel.aclose()
    [request] = server.requests
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.body.decode()) == {
        "To": ["+491701234567"],
        "From": ["MyShop"],
        "Body": ["35.79 EUR waiting: no link"],
    }
    assert request.headers["idempotency-key"] == "cart-1/default/0"
