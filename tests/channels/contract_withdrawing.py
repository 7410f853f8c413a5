"""What an adapter that keeps lasting state (an ad audience) promises, as one test class each such adapter's test
module subclasses (see ``contract.py`` for the plain channel contract).

A subclass provides the fixture ``channel`` (built with ``members=":memory:"`` and a short ``linger``, pointed at
the far side) and implements :meth:`on_far_side` (how many members the far side's audience holds now),
:meth:`requests` (how many requests reached it) and :meth:`fail_next_transient`. :meth:`kept` and
:meth:`statistics` read what the adapter keeps; their defaults use
:class:`~recoverkit.channels.audiences.AudienceChannel`'s ``members`` and ``statistics()``, so an adapter built
on it needs nothing more, and one written from scratch overrides them. Shops writing their own audience adapter
subclass it the same way.
"""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
import pytest

from recoverkit.channels import Channel, Withdrawal, Withdrawing
from recoverkit.errors import PermanentDeliveryError, TransientDeliveryError

from .contract import make_message

__all__ = ["WithdrawingContract", "message_for"]


def message_for(n: int, *, email: str | None = None, phone: str | None = None) -> Any:
    """Message ``n`` for its own contact ``cust_<n>`` (an email by default), as an audience channel gets it."""
    message = make_message(f"cart-{n}/default/0", channel="google_ads")
    recipient = msgspec.structs.replace(
        message.recipient, contact_key=f"cust_{n}", customer_id=f"cust_{n}",
        email=email if email is not None or phone is not None else f"Shopper.{n}@Example.com ", phone=phone,
    )  # fmt: skip
    return msgspec.structs.replace(message, recipient=recipient)


def gone(n: int, why: str = "purchase") -> Withdrawal:
    return Withdrawal(why=why, contact_key=f"cust_{n}", at=1_700_010_000.0)  # type: ignore[arg-type]


@pytest.mark.anyio
class WithdrawingContract:
    @pytest.fixture
    def channel(self) -> Any:
        raise NotImplementedError("WithdrawingContract subclasses must define a `channel` fixture")

    def on_far_side(self, channel: Any) -> int:
        raise NotImplementedError

    def requests(self, channel: Any) -> int:
        raise NotImplementedError

    def fail_next_transient(self, channel: Any) -> None:
        """Make the far side's next request answer a transient failure (503, say)."""
        raise NotImplementedError

    def kept(self, channel: Any, contact_key: str) -> bool:
        """Whether the adapter still keeps anything about ``contact_key`` (hashes in its membership file)."""
        return channel.members.get(channel.membership_key, contact_key) is not None

    def statistics(self, channel: Any) -> dict[str, int]:
        """Members the adapter keeps as in the audience, and those whose removal is pending."""
        return dict(channel.statistics())

    async def test_is_a_channel_and_withdrawing(self, channel: Any) -> None:
        assert isinstance(channel, Channel) and isinstance(channel, Withdrawing)

    async def test_send_adds_the_recipient(self, channel: Any) -> None:
        await channel.send(message_for(1))
        assert self.on_far_side(channel) == 1
        assert self.statistics(channel) == {"members": 1, "removing": 0}

    async def test_purchase_removes_the_recipient_and_forgets_their_hashes(self, channel: Any) -> None:
        await channel.send(message_for(1))
        await channel.send(message_for(2))
        await channel.withdraw(gone(1))
        assert self.on_far_side(channel) == 1
        assert not self.kept(channel, "cust_1")
        assert self.statistics(channel) == {"members": 1, "removing": 0}

    @pytest.mark.parametrize("why", ["consent_withdrawn", "forget"])
    async def test_consent_withdrawal_and_forget_remove_too(self, channel: Any, why: str) -> None:
        await channel.send(message_for(1))
        await channel.withdraw(gone(1, why))
        assert self.on_far_side(channel) == 0
        assert not self.kept(channel, "cust_1")

    async def test_withdrawing_someone_never_added_makes_no_request(self, channel: Any) -> None:
        await channel.withdraw(gone(9))
        assert self.requests(channel) == 0

    async def test_sends_that_arrive_together_go_in_one_batch(self, channel: Any) -> None:
        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(channel.send, message_for(n))
        assert self.on_far_side(channel) == 20
        assert self.requests(channel) == self.requests_per_batch

    #: How many HTTP requests one batch takes (Google: create, addOperations, run).
    requests_per_batch = 1

    async def test_a_failed_removal_stays_pending_and_goes_with_the_next(self, channel: Any) -> None:
        await channel.send(message_for(1))
        await channel.send(message_for(2))
        self.fail_next_transient(channel)
        with pytest.raises(TransientDeliveryError):
            await channel.withdraw(gone(1))
        assert self.on_far_side(channel) == 2
        assert self.statistics(channel) == {"members": 1, "removing": 1}
        await channel.withdraw(gone(2))
        assert self.on_far_side(channel) == 0
        assert self.statistics(channel) == {"members": 0, "removing": 0}

    async def test_a_withdrawal_during_the_addition_removes_once_it_lands(self, channel: Any) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(channel.send, message_for(1))
            await anyio.sleep(0)  # the send is lingering for its batch
            await channel.withdraw(gone(1))
        assert self.on_far_side(channel) == 0
        assert self.statistics(channel) == {"members": 0, "removing": 0}

    async def test_a_recipient_without_email_or_phone_fails_permanently_without_a_request(self, channel: Any) -> None:
        message = message_for(1)
        message = msgspec.structs.replace(message, recipient=msgspec.structs.replace(message.recipient, email=None))
        with pytest.raises(PermanentDeliveryError, match="no email or phone"):
            await channel.send(message)
        assert self.requests(channel) == 0

    async def test_a_national_phone_number_is_refused_without_echoing_it(self, channel: Any) -> None:
        with pytest.raises(PermanentDeliveryError, match="international") as caught:
            await channel.send(message_for(1, phone="0170 1234567"))
        assert "1234567" not in str(caught.value)

    async def test_aclose_can_be_called_twice(self, channel: Any) -> None:
        await channel.send(message_for(1))
        await channel.aclose()
        await channel.aclose()
