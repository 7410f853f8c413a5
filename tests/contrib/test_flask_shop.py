"""End to end through the example Flask shop (examples/flask_shop/app.py) and Flask's test client.

Shoppers browse, fill carts and check out; the shop's FakeClock (``RECOVERKIT_CLOCK``) moves the recovery flows on
("30 seconds later" is instant) and a MemoryChannel receives what would be e-mailed. The shop's flows: abandoned
after 20 s; a reminder 10 s later; a last call with a 10% code 40 s after the abandonment; a failed payment gets
its own flow, 15 s after the failure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from recoverkit import FakeClock, MemoryChannel, Message

try:  # tests/contrib is a plain directory; should it become a package, its modules import relatively
    from flask_support import load_example, no_thread_leak, secrets_env
except ImportError:  # pragma: no cover
    from .flask_support import load_example, no_thread_leak, secrets_env

__all__ = ["no_thread_leak", "secrets_env"]  # fixtures used by name

shop = load_example("examples/flask_shop/app.py", "example_flask_shop")

ABANDONED = shop.ABANDON_AFTER + 1  # a second more than the shop waits before a cart counts as abandoned


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def channel() -> MemoryChannel:
    return MemoryChannel()


@pytest.fixture
def app(no_thread_leak: None, secrets_env: dict[str, str], clock: FakeClock,
        channel: MemoryChannel) -> Iterator[Flask]:
    app = shop.create_app({"TESTING": True, "RECOVERKIT_CHANNELS": {"email": channel}, "RECOVERKIT_CLOCK": clock})
    yield app
    shop.rk.close(app)


def later(app: Flask, clock: FakeClock, seconds: float) -> None:
    """Let the engine handle what the requests tracked, then move the shop's time on by ``seconds``."""
    shop.rk.flush(app)
    clock.advance(seconds)
    shop.rk.flush(app)


class Shopper:
    """One browser: its own cookies (recoverkit's session and Flask's, which holds the cart id)."""

    def __init__(self, app: Flask, email: str) -> None:
        self.client: FlaskClient = app.test_client()
        self.email = email

    def ok(self, response: Any, status: int = 200) -> Any:
        assert response.status_code == status, response.get_data(as_text=True)[:500]
        return response

    def browse_and_fill_cart(self) -> None:
        self.ok(self.client.get("/"))
        self.ok(self.client.get("/product/MUG-1"))
        self.ok(self.client.post("/cart/add", data={"sku": "MUG-1"}), 302)
        self.ok(self.client.post("/cart/add", data={"sku": "TEE-1"}), 302)
        assert "Enamel mug" in self.ok(self.client.get("/cart")).get_data(as_text=True)

    def give_address(self, *, marketing: bool = True) -> None:
        self.ok(self.client.get("/checkout/address"))
        form = {"email": self.email, **({"marketing": "yes"} if marketing else {})}
        self.ok(self.client.post("/checkout/address", data=form), 302)

    def choose_shipping(self, option: str = "express") -> None:
        self.ok(self.client.get("/checkout/shipping"))
        self.ok(self.client.post("/checkout/shipping", data={"shipping": option}), 302)

    def pay(self, card: str = "4242 4242 4242 4242") -> str:
        response = self.ok(self.client.post("/checkout/payment", data={"card": card}), 302)
        number = response.headers["Location"].rsplit("/", 1)[-1]
        assert f"Your order {number} is placed" in self.ok(self.client.get(response.headers["Location"])).get_data(
            as_text=True
        )
        return number

    def leave_in_checkout(self) -> None:
        self.browse_and_fill_cart()
        self.give_address()
        self.choose_shipping()

    def follow(self, url: str) -> Any:
        """Open a link from a message: the shop's configured address, the path and query on the test client."""
        assert url.startswith(shop.BASE_URL + "/cart/restore?t=")
        parts = urlsplit(url)
        return self.client.get(f"{parts.path}?{parts.query}")


def messages_to(channel: MemoryChannel, email: str) -> list[Message]:
    return [m for m in channel.sent if m.recipient.email == email]


def test_a_shopper_who_leaves_gets_a_reminder_then_a_code_and_the_link_brings_the_cart_back(
    app: Flask, clock: FakeClock, channel: MemoryChannel
) -> None:
    alice = Shopper(app, "alice@example.com")
    alice.leave_in_checkout()

    later(app, clock, ABANDONED + 10)
    [reminder] = messages_to(channel, "alice@example.com")
    assert (reminder.flow, reminder.step, reminder.template) == ("cart-recovery", 0, "cart-reminder")
    assert reminder.offer is None
    assert [(line.item_id, line.quantity) for line in reminder.cart.lines] == [("MUG-1", 1), ("TEE-1", 1)]
    assert reminder.cart.shipping == 990 and reminder.cart.currency == "EUR"  # minor units
    assert reminder.restore_url is not None

    later(app, clock, 30)
    last_call = messages_to(channel, "alice@example.com")[1]
    assert (last_call.flow, last_call.step, last_call.template) == ("cart-recovery", 1, "cart-last-call")
    assert last_call.offer is not None and last_call.offer.kind == "discount" and last_call.offer.percent == 10
    assert last_call.offer.code is not None and re.fullmatch(r"[2-9A-HJ-NP-Z-]{12,}", last_call.offer.code)

    # The shopper opens the e-mail on their phone: another browser, no cookies, and the cart comes back.
    assert last_call.restore_url is not None
    phone = Shopper(app, "alice@example.com")
    restored = phone.follow(last_call.restore_url)
    assert restored.status_code == 302 and restored.headers["Location"] == "/cart"
    page = phone.ok(phone.client.get("/cart")).get_data(as_text=True)
    assert "Welcome back" in page and "1 x Enamel mug" in page and "1 x Organic cotton T-shirt" in page
    # The first message's link works just as well (links stay valid until they expire).
    assert Shopper(app, "alice@example.com").follow(reminder.restore_url).status_code == 302


@pytest.mark.parametrize("device", ["same browser", "another device"])
def test_an_order_placed_after_following_the_link_stops_the_rest_of_the_sequence(
    app: Flask, clock: FakeClock, channel: MemoryChannel, device: str
) -> None:
    bob = Shopper(app, "bob@example.com")
    bob.leave_in_checkout()
    later(app, clock, ABANDONED + 10)
    [reminder] = messages_to(channel, "bob@example.com")
    assert reminder.restore_url is not None

    browser = bob if device == "same browser" else Shopper(app, "bob@example.com")
    assert browser.follow(reminder.restore_url).status_code == 302
    if device == "another device":
        browser.give_address()
        browser.choose_shipping("standard")
    order = browser.pay()

    later(app, clock, 3600)
    assert [m.key for m in messages_to(channel, "bob@example.com")] == [reminder.key]
    # The cart is ordered: its link now says so instead of opening it again.
    again = Shopper(app, "bob@example.com").follow(reminder.restore_url)
    assert again.status_code == 410 and order in again.get_data(as_text=True)


def test_a_shopper_who_buys_gets_nothing_while_one_who_leaves_is_reminded(
    app: Flask, clock: FakeClock, channel: MemoryChannel
) -> None:
    buyer, leaver = Shopper(app, "buyer@example.com"), Shopper(app, "leaver@example.com")
    buyer.leave_in_checkout()
    leaver.leave_in_checkout()
    buyer.pay()

    later(app, clock, 3600)
    assert messages_to(channel, "buyer@example.com") == []
    assert [m.step for m in messages_to(channel, "leaver@example.com")] == [0, 1]


def test_a_shopper_who_withdrew_consent_gets_nothing(
    app: Flask, clock: FakeClock, channel: MemoryChannel
) -> None:
    changed_mind, consenting = Shopper(app, "changed@example.com"), Shopper(app, "consenting@example.com")
    changed_mind.leave_in_checkout()  # ticked the box ...
    changed_mind.give_address(marketing=False)  # ... then went back and unticked it
    consenting.leave_in_checkout()

    later(app, clock, 3600)
    assert messages_to(channel, "changed@example.com") == []
    assert len(messages_to(channel, "consenting@example.com")) == 2


def test_a_shopper_who_never_consented_gets_nothing(
    app: Flask, clock: FakeClock, channel: MemoryChannel
) -> None:
    silent = Shopper(app, "silent@example.com")
    silent.browse_and_fill_cart()
    silent.give_address(marketing=False)
    silent.choose_shipping()
    later(app, clock, 3600)
    assert channel.sent == []


def test_a_declined_payment_gets_the_payment_help_flow(
    app: Flask, clock: FakeClock, channel: MemoryChannel
) -> None:
    carol = Shopper(app, "carol@example.com")
    carol.leave_in_checkout()
    declined = carol.ok(carol.client.post("/checkout/payment", data={"card": "4000 0000 0000 0002"}), 402)
    assert "declined" in declined.get_data(as_text=True)

    later(app, clock, 16)
    [help_message] = messages_to(channel, "carol@example.com")
    assert (help_message.flow, help_message.trigger) == ("payment-failed", "payment_failed")
    assert help_message.offer is not None and help_message.offer.kind == "payment_help"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "cut"),  # no token at all
        ("?t=garbage", "cut"),
        ("?t=" + "A" * 2000, "cut"),
    ],
)
def test_a_malformed_link_gets_a_friendly_page(app: Flask, query: str, reason: str) -> None:
    response = app.test_client().get("/cart/restore" + query)
    assert response.status_code == 400
    assert "your e-mail program may have cut it" in response.get_data(as_text=True)


def test_a_tampered_or_expired_link_gets_a_friendly_page_and_never_a_cart(
    app: Flask, clock: FakeClock, channel: MemoryChannel
) -> None:
    dave = Shopper(app, "dave@example.com")
    dave.leave_in_checkout()
    later(app, clock, ABANDONED + 10)
    [reminder] = messages_to(channel, "dave@example.com")
    assert reminder.restore_url is not None

    # Another cart key, signed with the right format but not by the shop: refused before any cart is loaded.
    token = reminder.restore_url.split("t=", 1)[1]
    body, signature = token.split(".")
    forged = f"{body}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    stranger = Shopper(app, "stranger@example.com")
    response = stranger.client.get(f"/cart/restore?t={forged}")
    assert response.status_code == 400 and "Sorry" in response.get_data(as_text=True)
    assert "Enamel mug" not in stranger.ok(stranger.client.get("/cart")).get_data(as_text=True)

    clock.advance(86_400)  # the shop's links work for a day, on the shop's clock
    expired = Shopper(app, "dave@example.com").follow(reminder.restore_url)
    assert expired.status_code == 400 and "expired" in expired.get_data(as_text=True)


def test_a_link_to_a_cart_the_shop_no_longer_has_gets_a_friendly_page(
    app: Flask, clock: FakeClock, channel: MemoryChannel
) -> None:
    erin = Shopper(app, "erin@example.com")
    erin.leave_in_checkout()
    later(app, clock, ABANDONED + 10)
    [reminder] = messages_to(channel, "erin@example.com")
    app.extensions["shop.carts"]._carts.clear()  # the shop lost its carts (a restart of the demo's dict)
    assert reminder.restore_url is not None
    response = Shopper(app, "erin@example.com").follow(reminder.restore_url)
    assert response.status_code == 404 and "no longer there" in response.get_data(as_text=True)
