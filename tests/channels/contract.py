"""What every channel adapter promises, as one test class each adapter's test module subclasses (saq's style).

A subclass provides a ``channel`` fixture (closing the channel in its teardown if it holds resources) and
:meth:`ChannelContract.delivered_keys`, which reads back the keys of what actually reached the far side (a
list, a file, an HTTP server). Shops writing their own adapter can subclass it the same way.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from recoverkit.cart import CartLine, CartSnapshot
from recoverkit.channels.base import Channel, Message, Recipient
from recoverkit.events import CheckoutStep
from recoverkit.offers import Offer

FREESHIP = Offer(kind="free_shipping", name="Free shipping", code="FREESHIP")

__all__ = ["ChannelContract", "make_message"]

EMAIL = "jane.doe@example.com"
PHONE = "+49 170 1234567"
CUSTOMER_ID = "cust_8812"


def make_message(key: str = "cart-1/default/0", **overrides: Any) -> Message:
    """A realistic message: a two-line EUR cart (35.79 EUR) for a known customer with an email and phone."""
    cart = CartSnapshot(
        cart_key="cart-1",
        session_id="sess-1",
        customer_id=CUSTOMER_ID,
        currency="EUR",
        lines=(
            CartLine(item_id="sku-1", price=1999, quantity=1, name="Mug", category="kitchen"),
            CartLine(item_id="sku-2", price=790, quantity=2, name="Coaster"),
        ),
        value=3579,
        shipping=490,
        step=CheckoutStep.SHIPPING,
        started_at=1_700_000_000.0,
        checkout_at=1_700_000_600.0,
        last_at=1_700_000_900.0,
        views=7,
        item_views=3,
    )
    recipient = Recipient(
        contact_key=CUSTOMER_ID, customer_id=CUSTOMER_ID, email=EMAIL, phone=PHONE, locale="de-DE"
    )
    fields: dict[str, Any] = {
        "key": key,
        "flow": "default",
        "step": 0,
        "channel": "email",
        "template": "reminder-1",
        "due_at": 1_700_002_700.0,
        "abandoned_at": 1_700_000_900.0,
        "trigger": "abandoned",
        "score": 0.42,
        "reason": "price",
        "cart": cart,
        "recipient": recipient,
    }
    fields.update(overrides)
    return Message(**fields)


@pytest.mark.anyio
class ChannelContract:
    """Subclass as ``class TestMyChannel(ChannelContract)``; override ``channel`` and ``delivered_keys``."""

    @pytest.fixture
    def channel(self) -> Any:
        raise NotImplementedError("ChannelContract subclasses must define a `channel` fixture")

    def delivered_keys(self, channel: Any) -> list[str]:
        """Keys of the messages that reached the far side, in arrival order."""
        raise NotImplementedError("ChannelContract subclasses must implement delivered_keys()")

    async def test_satisfies_the_channel_protocol(self, channel: Any) -> None:
        assert isinstance(channel, Channel)

    async def test_send_delivers_a_message_once(self, channel: Any) -> None:
        await channel.send(make_message())
        assert self.delivered_keys(channel) == ["cart-1/default/0"]

    async def test_send_keeps_the_keys_of_several_messages_in_order(self, channel: Any) -> None:
        keys = ["cart-1/default/0", "cart-1/default/1", "cart-2/winback/0"]
        for key in keys:
            await channel.send(make_message(key))
        assert self.delivered_keys(channel) == keys

    async def test_send_does_not_mutate_the_message(self, channel: Any) -> None:
        message = make_message(variant="B", offer=FREESHIP)
        before = msgspec.json.encode(message)
        await channel.send(message)
        assert msgspec.json.encode(message) == before
        assert message == make_message(variant="B", offer=FREESHIP)

    async def test_aclose_can_be_called_twice(self, channel: Any) -> None:
        aclose = getattr(channel, "aclose", None)
        if aclose is None:
            pytest.skip(f"{type(channel).__name__} has no aclose()")
        await channel.send(make_message())
        await aclose()
        await aclose()
