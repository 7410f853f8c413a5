from __future__ import annotations

import anyio
import msgspec
import pytest

from recoverkit.channels import MemoryChannel, Message
from recoverkit.errors import PermanentDeliveryError, TransientDeliveryError

from .contract import ChannelContract, make_message

pytestmark = pytest.mark.anyio


class TestMemoryChannelContract(ChannelContract):
    @pytest.fixture
    def channel(self) -> MemoryChannel:
        return MemoryChannel()

    def delivered_keys(self, channel: MemoryChannel) -> list[str]:
        return channel.keys()


async def test_sent_holds_the_messages_themselves_in_order() -> None:
    channel = MemoryChannel()
    first, second = make_message("a/default/0"), make_message("b/default/0")
    await channel.send(first)
    await channel.send(second)
    assert channel.sent == [first, second]


async def test_fail_next_raises_transient_by_default_then_recovers() -> None:
    channel = MemoryChannel()
    channel.fail_next(2)
    message = make_message()
    for _ in range(2):
        with pytest.raises(TransientDeliveryError, match="cart-1/default/0"):
            await channel.send(message)
    await channel.send(message)
    assert channel.keys() == ["cart-1/default/0"]
    assert channel.attempts == [message, message, message]


async def test_fail_next_raises_the_given_exception() -> None:
    channel = MemoryChannel()
    rejected = PermanentDeliveryError("invalid address")
    channel.fail_next(2, rejected)
    for _ in range(2):
        with pytest.raises(PermanentDeliveryError) as info:
            await channel.send(make_message())
        assert info.value is rejected
    assert channel.sent == []


async def test_fail_next_calls_queue_up_in_order() -> None:
    channel = MemoryChannel()
    channel.fail_next(1)
    channel.fail_next(1, PermanentDeliveryError("rejected"))
    with pytest.raises(TransientDeliveryError):
        await channel.send(make_message())
    with pytest.raises(PermanentDeliveryError):
        await channel.send(make_message())
    await channel.send(make_message())
    assert len(channel.sent) == 1


def test_fail_next_rejects_a_negative_count() -> None:
    with pytest.raises(ValueError, match="n >= 0, got -1"):
        MemoryChannel().fail_next(-1)


async def test_a_sync_handler_that_raises_fails_the_send() -> None:
    def handler(message: Message) -> None:
        if message.recipient.email == "bounce@example.com":
            raise PermanentDeliveryError("mailbox does not exist")

    channel = MemoryChannel(handler)
    recipient = msgspec.structs.replace(make_message().recipient, email="bounce@example.com")
    bouncing = make_message("b/default/0", recipient=recipient)
    with pytest.raises(PermanentDeliveryError):
        await channel.send(bouncing)
    await channel.send(make_message())
    assert channel.keys() == ["cart-1/default/0"]
    assert channel.attempts == [bouncing, make_message()]


async def test_an_async_handler_is_awaited_before_the_message_counts_as_sent() -> None:
    release = anyio.Event()

    async def handler(message: Message) -> None:
        await release.wait()

    channel = MemoryChannel(handler)
    async with anyio.create_task_group() as tg:
        tg.start_soon(channel.send, make_message())
        await anyio.wait_all_tasks_blocked()
        assert channel.sent == []
        release.set()
    assert channel.keys() == ["cart-1/default/0"]


async def test_clear_forgets_messages_and_pending_failures() -> None:
    channel = MemoryChannel()
    await channel.send(make_message())
    channel.fail_next(3)
    channel.clear()
    assert channel.sent == [] and channel.attempts == []
    await channel.send(make_message())
    assert channel.keys() == ["cart-1/default/0"]


async def test_aclose_marks_the_channel_closed() -> None:
    channel = MemoryChannel()
    assert not channel.closed
    await channel.aclose()
    assert channel.closed
