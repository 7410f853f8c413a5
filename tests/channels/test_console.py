from __future__ import annotations

import io
import shlex

import msgspec
import pytest
import structlog

from recoverkit.channels import ConsoleChannel

from .contract import CUSTOMER_ID, EMAIL, PHONE, ChannelContract, make_message

pytestmark = pytest.mark.anyio


def parse(line: str) -> dict[str, str]:
    """Fields of a ``recovery_message k=v ...`` line; quoted values are JSON strings, which shlex unquotes."""
    event, *pairs = shlex.split(line)
    assert event == "recovery_message"
    return dict(pair.split("=", 1) for pair in pairs)


class TestConsoleChannelContract(ChannelContract):
    @pytest.fixture
    def channel(self) -> ConsoleChannel:
        self.stream = io.StringIO()
        return ConsoleChannel(stream=self.stream)

    def delivered_keys(self, channel: ConsoleChannel) -> list[str]:
        return [parse(line)["key"] for line in self.stream.getvalue().splitlines()]


async def test_stream_line_shows_what_would_be_sent() -> None:
    stream = io.StringIO()
    await ConsoleChannel(stream=stream).send(make_message(variant="B"))
    fields = parse(stream.getvalue())
    assert fields == {
        "key": "cart-1/default/0",
        "channel": "email",
        "template": "reminder-1",
        "value": "35.79 EUR",
        "score": "0.42",
        "reason": "price",
        "to": "j***@e***.com",
        "contact": "cu***",
        "variant": "B",
    }


async def test_stream_line_never_contains_personal_data() -> None:
    stream = io.StringIO()
    channel = ConsoleChannel(stream=stream)
    await channel.send(make_message())
    recipient = msgspec.structs.replace(make_message().recipient, email=None)
    await channel.send(make_message(recipient=recipient))
    output = stream.getvalue()
    for secret in (EMAIL, "jane", "example", PHONE, "1234567", CUSTOMER_ID, "8812"):
        assert secret not in output
    assert "to=***67" in output  # the phone, masked, when there is no email


async def test_recipient_without_address_is_shown_as_a_dash() -> None:
    stream = io.StringIO()
    recipient = msgspec.structs.replace(make_message().recipient, email=None, phone=None)
    await ConsoleChannel(stream=stream).send(make_message(recipient=recipient))
    assert parse(stream.getvalue())["to"] == "-"


async def test_a_newline_in_a_shop_supplied_field_keeps_one_line_per_message() -> None:
    stream = io.StringIO()
    await ConsoleChannel(stream=stream).send(make_message(template="reminder\nsecond line", reason='a "b"'))
    assert stream.getvalue().count("\n") == 1
    fields = parse(stream.getvalue())
    assert fields["template"] == "reminder\\nsecond line"  # JSON escape kept: shlex does not decode it
    assert fields["reason"] == 'a "b"'


async def test_without_a_stream_it_logs_through_structlog_without_personal_data() -> None:
    with structlog.testing.capture_logs() as logs:
        await ConsoleChannel().send(make_message())
    assert logs == [
        {
            "event": "recovery_message",
            "log_level": "info",
            "key": "cart-1/default/0",
            "channel": "email",
            "template": "reminder-1",
            "value": "35.79 EUR",
            "score": 0.42,
            "reason": "price",
            "to": "j***@e***.com",
            "contact": "cu***",
        }
    ]
    for secret in (EMAIL, PHONE, CUSTOMER_ID):
        assert secret not in repr(logs)
