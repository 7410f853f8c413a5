"""End to end through the example Django shop (examples/django_shop) and Django's test client.

Shoppers browse, fill carts and check out; the shop's recoverkit settings are used as they are, with three test
doubles swapped in the way a shop's own tests would (``override_settings(RECOVERKIT=...)``): a FakeClock moves the
recovery flows on ("30 seconds later" is instant), a MemoryChannel receives what would be e-mailed and a
MemoryStore shows what was recorded. The shop's flows (shopsite/recovery.py): abandoned after 20 s; a reminder 10 s
later; a last call with a 10% code 40 s after the abandonment; a failed payment gets its own flow, 15 s after it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

try:  # tests/contrib is a plain directory; should it become a package, its modules import relatively
    from django_support import setup
except ImportError:  # pragma: no cover
    from .django_support import setup

setup()

from django.test import Client  # noqa: E402
from shopsite import settings as shop_settings  # noqa: E402
from shopsite.recovery import ABANDON_AFTER, BASE_URL  # noqa: E402
from storefront.models import Cart  # noqa: E402

import recoverkit.contrib.django as rk_django  # noqa: E402
from recoverkit import FakeClock, MemoryChannel, MemoryStore, Message  # noqa: E402
from recoverkit.contrib.django import RecoverkitState  # noqa: E402

try:
    from django_support.fixtures import journal, no_engine_leak, rk, secrets_env
except ImportError:  # pragma: no cover
    from .django_support.fixtures import journal, no_engine_leak, rk, secrets_env

__all__ = ["no_engine_leak", "rk", "secrets_env"]  # fixtures used by name

ABANDONED = ABANDON_AFTER + 1  # a second more than the shop waits before a cart counts as abandoned


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def channel() -> MemoryChannel:
    return MemoryChannel()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def shop(rk: Callable[..., RecoverkitState], secrets_env: dict[str, str], clock: FakeClock, channel: MemoryChannel,
         store: MemoryStore) -> RecoverkitState:
    """The shop's own RECOVERKIT settings, with the test doubles in place of the store file and the outbox."""
    return rk(**{**shop_settings.RECOVERKIT, "STORE": store, "CHANNELS": {"email": channel}, "CLOCK": clock})


def later(clock: FakeClock, seconds: float) -> None:
    """Let the engine handle what the requests tracked, then move the shop's time on by ``seconds``."""
    rk_django.flush()
    clock.advance(seconds)
    rk_django.flush()


class Shopper:
    """One browser: its own cookies (recoverkit's session, and Django's, which holds the cart id)."""

    def __init__(self, email: str) -> None:
        self.client = Client()
        self.email = email

    def ok(self, response: Any, status: int = 200) -> Any:
        assert response.status_code == status, response.content[:500]
        return response

    def page(self, path: str) -> str:
        text: str = self.ok(self.client.get(path)).content.decode()
        return text

    def browse_and_fill_cart(self) -> None:
        self.page("/")
        assert "Enamel mug" in self.page("/product/MUG-1")
        self.ok(self.client.post("/cart/add", {"sku": "MUG-1"}), 302)
        self.ok(self.client.post("/cart/add", {"sku": "TEE-1"}), 302)
        assert "1 x Enamel mug" in self.page("/cart")

    def give_address(self, *, marketing: bool = True) -> None:
        self.page("/checkout/address")
        form = {"email": self.email, **({"marketing": "yes"} if marketing else {})}
        self.ok(self.client.post("/checkout/address", form), 302)

    def choose_shipping(self, option: str = "express") -> None:
        self.page("/checkout/shipping")
        self.ok(self.client.post("/checkout/shipping", {"shipping": option}), 302)

    def pay(self, card: str = "4242 4242 4242 4242") -> str:
        response = self.ok(self.client.post("/checkout/payment", {"card": card}), 302)
        number = response["Location"].rsplit("/", 1)[-1]
        assert f"Your order {number} is placed" in self.page(response["Location"])
        return number

    def leave_in_checkout(self) -> None:
        self.browse_and_fill_cart()
        self.give_address()
        self.choose_shipping()

    def follow(self, url: str) -> Any:
        """Open a link from a message: the shop's configured address, its path and query on the test client."""
        assert url.startswith(BASE_URL + "/cart/restore?t=")
        parts = urlsplit(url)
        return self.client.get(f"{parts.path}?{parts.query}")


def messages_to(channel: MemoryChannel, email: str) -> list[Message]:
    return [m for m in channel.sent if m.recipient.email == email]


def test_a_shopper_who_leaves_gets_a_reminder_then_a_code_and_the_link_brings_the_cart_back(
    shop: RecoverkitState, clock: FakeClock, channel: MemoryChannel
) -> None:
    alice = Shopper("alice@example.com")
    alice.leave_in_checkout()

    later(clock, ABANDONED + 10)
    [reminder] = messages_to(channel, "alice@example.com")
    assert (reminder.flow, reminder.step, reminder.template) == ("cart-recovery", 0, "cart-reminder")
    assert reminder.offer is None
    assert [(line.item_id, line.quantity) for line in reminder.cart.lines] == [("MUG-1", 1), ("TEE-1", 1)]
    assert reminder.cart.shipping == 990 and reminder.cart.currency == "EUR"  # minor units
    assert reminder.restore_url is not None

    later(clock, 30)
    last_call = messages_to(channel, "alice@example.com")[1]
    assert (last_call.flow, last_call.step, last_call.template) == ("cart-recovery", 1, "cart-last-call")
    assert last_call.offer is not None and last_call.offer.kind == "discount" and last_call.offer.percent == 10
    assert last_call.offer.code is not None and re.fullmatch(r"[2-9A-HJ-NP-Z-]{12,}", last_call.offer.code)

    # The shopper opens the e-mail on their phone: another browser, no cookies, and the cart comes back.
    assert last_call.restore_url is not None
    phone = Shopper("alice@example.com")
    restored = phone.follow(last_call.restore_url)
    assert restored.status_code == 302 and restored["Location"] == "/cart"
    page = phone.page("/cart")
    assert "Welcome back" in page and "1 x Enamel mug" in page and "1 x Organic cotton T-shirt" in page
    # The first message's link works just as well (links stay valid until they expire).
    assert Shopper("alice@example.com").follow(reminder.restore_url).status_code == 302


@pytest.mark.parametrize("device", ["same browser", "another device"])
def test_an_order_placed_after_following_the_link_stops_the_rest_of_the_sequence_and_is_recorded(
    shop: RecoverkitState, clock: FakeClock, channel: MemoryChannel, store: MemoryStore, device: str
) -> None:
    bob = Shopper("bob@example.com")
    bob.leave_in_checkout()
    later(clock, ABANDONED + 10)
    [reminder] = messages_to(channel, "bob@example.com")
    assert reminder.restore_url is not None

    browser = bob if device == "same browser" else Shopper("bob@example.com")
    assert browser.follow(reminder.restore_url).status_code == 302
    if device == "another device":
        browser.give_address()
        browser.choose_shipping("standard")
    order = browser.pay()

    later(clock, 3600)
    assert [m.key for m in messages_to(channel, "bob@example.com")] == [reminder.key]
    cart_key = reminder.key.split("/", 1)[0]
    [purchase] = [event for event in journal(store) if event["event"] == "purchase"]
    assert (purchase["transaction_id"], purchase["cart_id"], purchase["currency"]) == (order, cart_key, "EUR")
    visits = [e for e in journal(store) if e["event"] == "page_view" and e.get("page_type") == "cart_restore"]
    assert [visit["cart_id"] for visit in visits] == [cart_key]
    # The cart is ordered: its link now says so instead of opening it again.
    again = Shopper("bob@example.com").follow(reminder.restore_url)
    assert again.status_code == 410 and order in again.content.decode()


def test_a_shopper_who_buys_gets_nothing_while_one_who_leaves_is_reminded(
    shop: RecoverkitState, clock: FakeClock, channel: MemoryChannel
) -> None:
    buyer, leaver = Shopper("buyer@example.com"), Shopper("leaver@example.com")
    buyer.leave_in_checkout()
    leaver.leave_in_checkout()
    buyer.pay()

    later(clock, 3600)
    assert messages_to(channel, "buyer@example.com") == []
    assert [m.step for m in messages_to(channel, "leaver@example.com")] == [0, 1]


def test_a_shopper_who_withdrew_consent_gets_nothing(
    shop: RecoverkitState, clock: FakeClock, channel: MemoryChannel
) -> None:
    changed_mind, consenting = Shopper("changed@example.com"), Shopper("consenting@example.com")
    changed_mind.leave_in_checkout()  # ticked the box ...
    changed_mind.give_address(marketing=False)  # ... then went back and unticked it
    consenting.leave_in_checkout()

    later(clock, 3600)
    assert messages_to(channel, "changed@example.com") == []
    assert len(messages_to(channel, "consenting@example.com")) == 2


def test_a_shopper_who_withdraws_consent_after_the_first_message_gets_no_more(
    shop: RecoverkitState, clock: FakeClock, channel: MemoryChannel
) -> None:
    dan = Shopper("dan@example.com")
    dan.leave_in_checkout()
    later(clock, ABANDONED + 10)
    assert len(messages_to(channel, "dan@example.com")) == 1
    dan.give_address(marketing=False)
    later(clock, 3600)
    assert len(messages_to(channel, "dan@example.com")) == 1


def test_a_shopper_who_never_consented_gets_nothing(
    shop: RecoverkitState, clock: FakeClock, channel: MemoryChannel
) -> None:
    silent = Shopper("silent@example.com")
    silent.browse_and_fill_cart()
    silent.give_address(marketing=False)
    silent.choose_shipping()
    later(clock, 3600)
    assert channel.sent == []


def test_a_declined_payment_gets_the_payment_help_flow(
    shop: RecoverkitState, clock: FakeClock, channel: MemoryChannel
) -> None:
    carol = Shopper("carol@example.com")
    carol.leave_in_checkout()
    declined = carol.ok(carol.client.post("/checkout/payment", {"card": "4000 0000 0000 0002"}), 402)
    assert "declined" in declined.content.decode()

    later(clock, 16)
    [help_message] = messages_to(channel, "carol@example.com")
    assert (help_message.flow, help_message.trigger) == ("payment-failed", "payment_failed")
    assert help_message.offer is not None and help_message.offer.kind == "payment_help"


def test_the_checkout_page_load_is_recorded_by_the_middleware(
    shop: RecoverkitState, store: MemoryStore
) -> None:
    erin = Shopper("erin@example.com")
    erin.browse_and_fill_cart()
    erin.page("/checkout/address")
    kinds = [event["event"] for event in journal(store)]
    assert kinds == ["view_item", "add_to_cart", "add_to_cart", "view_cart", "begin_checkout"]


@pytest.mark.parametrize("query", ["", "?t=garbage", "?t=" + "A" * 2000])
def test_a_malformed_link_gets_a_friendly_page(shop: RecoverkitState, query: str) -> None:
    response = Client().get("/cart/restore" + query)
    assert response.status_code == 400
    assert "your e-mail program may have cut it" in response.content.decode()


def test_a_forged_or_expired_link_gets_a_friendly_page_and_never_a_cart(
    shop: RecoverkitState, clock: FakeClock, channel: MemoryChannel
) -> None:
    dave = Shopper("dave@example.com")
    dave.leave_in_checkout()
    later(clock, ABANDONED + 10)
    [reminder] = messages_to(channel, "dave@example.com")
    assert reminder.restore_url is not None

    # The right format, but not signed by the shop: refused before any cart is loaded.
    token = reminder.restore_url.split("t=", 1)[1]
    body, signature = token.split(".")
    forged = f"{body}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    stranger = Shopper("stranger@example.com")
    response = stranger.client.get(f"/cart/restore?t={forged}")
    assert response.status_code == 400 and "cannot trust it" in response.content.decode()
    assert "Enamel mug" not in stranger.page("/cart")

    clock.advance(86_400)  # the shop's links work for a day, on the shop's clock
    expired = Shopper("dave@example.com").follow(reminder.restore_url)
    assert expired.status_code == 400 and "expired" in expired.content.decode()


def test_a_link_to_a_cart_the_shop_no_longer_has_gets_a_friendly_page(
    shop: RecoverkitState, clock: FakeClock, channel: MemoryChannel
) -> None:
    fay = Shopper("fay@example.com")
    fay.leave_in_checkout()
    later(clock, ABANDONED + 10)
    [reminder] = messages_to(channel, "fay@example.com")
    assert reminder.restore_url is not None
    Cart.objects.filter(pk=reminder.key.split("/", 1)[0]).delete()  # the shop cleaned up old carts
    response = Shopper("fay@example.com").follow(reminder.restore_url)
    assert response.status_code == 404 and "no longer there" in response.content.decode()
