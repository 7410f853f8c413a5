"""WebhookChannel against a real HTTP server on 127.0.0.1, not a mocked transport."""

from __future__ import annotations

import hashlib
import hmac
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import msgspec
import pytest

from recoverkit.channels import Message, WebhookChannel
from recoverkit.errors import ConfigError, PermanentDeliveryError, TransientDeliveryError

from .contract import ChannelContract, make_message
from .http_server import Reply, Server, serving

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token"


@pytest.fixture
def server() -> Iterator[Server]:
    with serving(Reply(200)) as server:
        yield server


@pytest.fixture
async def channel(server: Server) -> AsyncIterator[WebhookChannel]:
    channel = WebhookChannel(f"{server.base_url}/hooks/cart?token={TOKEN}", timeout=5)
    yield channel
    await channel.aclose()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def verify(secret: bytes, header: str, body: bytes, tolerance: float = 300) -> bool:
    """The receiver's check, exactly as the webhook module docstring gives it."""
    fields = dict(part.partition("=")[::2] for part in header.split(","))
    timestamp = fields.get("t", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields.get("v1", ""))


class TestWebhookChannelContract(ChannelContract):
    @pytest.fixture
    async def channel(self, server: Server) -> AsyncIterator[WebhookChannel]:
        self.server = server
        channel = WebhookChannel(f"{server.base_url}/hooks/cart")
        yield channel
        await channel.aclose()

    def delivered_keys(self, channel: WebhookChannel) -> list[str]:
        return [request.headers["idempotency-key"] for request in self.server.requests]


async def test_posts_the_message_as_json_with_its_key_as_idempotency_key(
    server: Server, channel: WebhookChannel
) -> None:
    message = make_message(variant="B")
    await channel.send(message)
    [request] = server.requests
    assert request.path == f"/hooks/cart?token={TOKEN}"
    assert request.headers["idempotency-key"] == "cart-1/default/0"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("recoverkit/")
    assert "recoverkit-signature" not in request.headers
    assert msgspec.json.decode(request.body, type=Message) == message


async def test_a_retry_sends_the_same_idempotency_key(server: Server, channel: WebhookChannel) -> None:
    server.replies = [Reply(503)]
    with pytest.raises(TransientDeliveryError):
        await channel.send(make_message())
    await channel.send(make_message())
    assert [r.headers["idempotency-key"] for r in server.requests] == ["cart-1/default/0"] * 2


async def test_signature_verifies_with_the_documented_recipe(server: Server) -> None:
    channel = WebhookChannel(f"{server.base_url}/hooks", secret="whsec_test")
    try:
        await channel.send(make_message())
    finally:
        await channel.aclose()
    [request] = server.requests
    header = request.headers["recoverkit-signature"]
    assert header.startswith("t=") and ",v1=" in header
    assert verify(b"whsec_test", header, request.body)
    assert not verify(b"another-secret", header, request.body)
    assert not verify(b"whsec_test", header, request.body.replace(b"0.42", b"0.99"))


async def test_extra_headers_are_sent(server: Server) -> None:
    channel = WebhookChannel(server.base_url, headers={"Authorization": "Bearer abc", "User-Agent": "shop/2"})
    try:
        await channel.send(make_message())
    finally:
        await channel.aclose()
    [request] = server.requests
    assert request.headers["authorization"] == "Bearer abc"
    assert request.headers["user-agent"] == "shop/2"


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_2xx_is_success(server: Server, channel: WebhookChannel, status: int) -> None:
    server.replies = [Reply(status)]
    message = make_message()
    await channel.send(message)  # no error: delivered, and sent once (no retry within send)
    [request] = server.requests
    assert request.method == "POST" and request.path == f"/hooks/cart?token={TOKEN}"
    assert request.headers["idempotency-key"] == message.key
    assert msgspec.json.decode(request.body, type=Message) == message
    assert server.replies == []  # the server answered with the status under test, not its default 200


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
async def test_retryable_statuses_are_transient_and_named(
    server: Server, channel: WebhookChannel, status: int
) -> None:
    server.replies = [Reply(status)]
    with pytest.raises(TransientDeliveryError) as info:
        await channel.send(make_message())
    message = str(info.value)
    assert f"HTTP {status}" in message and server.where in message and "'cart-1/default/0'" in message
    assert TOKEN not in message and "/hooks/cart" not in message


@pytest.mark.parametrize(("header", "seconds"), [("120", 120.0), (None, None), ("soon", None)])
async def test_a_retry_after_header_is_handed_to_the_engine(
    server: Server, channel: WebhookChannel, header: str | None, seconds: float | None
) -> None:
    server.replies = [Reply(429, headers={"Retry-After": header} if header is not None else {})]
    with pytest.raises(TransientDeliveryError) as info:
        await channel.send(make_message())
    assert info.value.retry_after == seconds


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 410, 422])
async def test_other_statuses_are_permanent_and_named(
    server: Server, channel: WebhookChannel, status: int
) -> None:
    server.replies = [Reply(status)]
    with pytest.raises(PermanentDeliveryError) as info:
        await channel.send(make_message())
    message = str(info.value)
    assert f"HTTP {status}" in message and server.where in message and "'cart-1/default/0'" in message
    assert TOKEN not in message


async def test_a_server_slower_than_the_timeout_is_transient(server: Server) -> None:
    server.delay = 5.0
    channel = WebhookChannel(f"{server.base_url}/hooks?token={TOKEN}", timeout=0.2)
    try:
        with pytest.raises(TransientDeliveryError, match=r"timed out after 0\.2s") as info:
            await channel.send(make_message())
    finally:
        await channel.aclose()
    assert isinstance(info.value.__cause__, httpx.TimeoutException)
    assert server.where in str(info.value) and TOKEN not in str(info.value)


async def test_connection_refused_is_transient() -> None:
    port = closed_port()
    channel = WebhookChannel(f"http://127.0.0.1:{port}/hooks?token={TOKEN}")
    try:
        with pytest.raises(TransientDeliveryError, match=rf"127\.0\.0\.1:{port} .*ConnectError") as info:
            await channel.send(make_message())
    finally:
        await channel.aclose()
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert TOKEN not in str(info.value)


async def test_a_client_passed_in_is_used_and_left_open(server: Server) -> None:
    async with httpx.AsyncClient(headers={"X-Shop": "demo"}) as client:
        channel = WebhookChannel(server.base_url, client=client)
        await channel.send(make_message())
        await channel.aclose()
        assert not client.is_closed
    assert server.requests[0].headers["x-shop"] == "demo"


async def test_send_after_aclose_is_a_permanent_failure(server: Server, channel: WebhookChannel) -> None:
    await channel.aclose()
    with pytest.raises(
        PermanentDeliveryError, match=rf"{server.where} is closed; message 'cart-1/default/0'"
    ):
        await channel.send(make_message())
    assert server.requests == []


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ftp://example.com/hook", "'ftp://example.com/...'"),
        ("hooks.example.com/cart", "'hooks.example.com/...'"),
        ("http://", "'http://'"),
        ("", "''"),
        ("http://example.com:port/hook", "'http://example.com:port/...'"),
    ],
)
def test_a_bad_url_is_a_config_error_naming_it(url: str, shown: str) -> None:
    with pytest.raises(ConfigError, match="expected an absolute http:// or https:// URL with a host") as info:
        WebhookChannel(url)
    assert shown in str(info.value)


def test_a_bad_url_config_error_hides_tokens_and_credentials() -> None:
    with pytest.raises(ConfigError) as info:
        WebhookChannel(f"ftp://user:{TOKEN}@example.com/hooks/{TOKEN}?token={TOKEN}")
    assert TOKEN not in str(info.value) and "user" not in str(info.value)
    assert "'ftp://example.com/...'" in str(info.value)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "10", True])
def test_a_bad_timeout_is_a_config_error(timeout: Any) -> None:
    with pytest.raises(ConfigError, match=r"timeout must be a positive number of seconds, got"):
        WebhookChannel("https://hooks.example.com/", timeout=timeout)


@pytest.mark.parametrize("name", ["Idempotency-Key", "content-type", "Recoverkit-Signature"])
def test_headers_may_not_replace_the_ones_the_channel_sets(name: str) -> None:
    with pytest.raises(ConfigError, match=f"may not set '{name}'"):
        WebhookChannel("https://hooks.example.com/", headers={name: "x"})


@pytest.mark.parametrize("secret", ["", b"", 42])
def test_an_empty_or_wrong_type_secret_is_a_config_error(secret: Any) -> None:
    with pytest.raises(ConfigError, match="secret must be a non-empty str or bytes"):
        WebhookChannel("https://hooks.example.com/", secret=secret)


def test_repr_names_the_host_only() -> None:
    assert repr(WebhookChannel(f"https://hooks.example.com/x?token={TOKEN}")) == (
        "WebhookChannel(host='hooks.example.com')"
    )
