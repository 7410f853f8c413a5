from __future__ import annotations

import io
import logging
import shlex

import msgspec
import pytest

from recoverkit.channels import ConsoleChannel
from recoverkit.offers import Offer

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


FIELDS = ("key", "channel", "template", "value", "score", "reason", "to", "contact", "offer")


async def test_without_a_stream_it_logs_a_record_without_personal_data(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="recoverkit")
    await ConsoleChannel().send(make_message())
    [record] = caplog.records
    assert (record.name, record.levelno, record.event) == ("recoverkit.channels.console", logging.INFO,
                                                           "recovery_message")  # fmt: skip
    assert {name: getattr(record, name) for name in FIELDS if hasattr(record, name)} == {
        "key": "cart-1/default/0",
        "channel": "email",
        "template": "reminder-1",
        "value": "35.79 EUR",
        "score": 0.42,
        "reason": "price",
        "to": "j***@e***.com",
        "contact": "cu***",
    }
    assert record.getMessage().startswith("recovery_message key=cart-1/default/0 channel=email ")
    for secret in (EMAIL, PHONE, CUSTOMER_ID):
        assert secret not in record.getMessage()
        assert secret not in repr(vars(record))


async def test_the_log_names_the_offer_kind_and_never_its_code(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="recoverkit")
    offer = Offer(name="ten-off", kind="discount", percent=10, code="SAVE-7QX2-K9PM")
    await ConsoleChannel().send(make_message(offer=offer))
    [record] = caplog.records
    assert record.offer == "discount"
    assert "SAVE-7QX2-K9PM" not in record.getMessage() + repr(vars(record))


async def test_a_stream_shows_the_code_the_developer_would_send() -> None:
    stream = io.StringIO()
    offer = Offer(name="ten-off", kind="discount", percent=10, code="SAVE-7QX2")
    await ConsoleChannel(stream=stream).send(make_message(offer=offer))
    assert parse(stream.getvalue())["offer"] == "SAVE-7QX2"


async def test_without_a_stream_nothing_is_printed_when_logging_is_not_configured(
    capfd: pytest.CaptureFixture[str],
) -> None:
    await ConsoleChannel().send(make_message())
    assert capfd.readouterr() == ("", "")
