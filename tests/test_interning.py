"""Strings a session or contact repeats are shared (recoverkit._interning), and a shop's str subclasses still work."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from helpers import T0, SessionizeRun
from recoverkit import Config
from recoverkit._interning import shared
from recoverkit.events import AddToCart, Item, decode_event
from recoverkit.route import Route
from recoverkit.sessionize import Abandoned, ContactChanged


class Marked(str):
    """A str subclass, as a web framework may hand over (sys.intern refuses these)."""


def test_shared_gives_one_copy_of_equal_strings_and_leaves_subclasses_alone() -> None:
    a, b = "".join(["mob", "ile"]), "".join(["mo", "bile"])
    assert a is not b and shared(a) is shared(b)
    marked = Marked("mobile")
    assert shared(marked) is marked


def test_sessions_from_decoded_events_share_their_currency_device_and_source() -> None:
    lines = [
        msgspec.json.encode(
            {"event": "add_to_cart", "session_id": f"s{n}", "ts": T0 + n, "currency": "EUR", "device": "mobile",
             "source": "newsletter", "items": [{"item_id": "A", "price": "10.00"}]}
        )
        for n in range(3)
    ]  # fmt: skip
    run = SessionizeRun(abandon_after=1800).feed(*(decode_event(line) for line in lines)).advance(T0 + 10_000)
    carts = [a.cart for a in run.of(Abandoned)]
    assert len(carts) == 3 and carts[0].currency == "EUR" and carts[0].device == "mobile"
    assert all(c.currency is carts[0].currency and c.device is carts[0].device for c in carts)
    assert all(c.source is carts[0].source for c in carts)


def test_events_whose_strings_are_subclasses_of_str_are_handled_as_any_other() -> None:
    # The engine's journal refuses such events in a dict (counted as invalid), but a Struct built in Python may
    # carry them to the stages, which must not fail on them (sys.intern would raise).
    cart = AddToCart(
        session_id="s1", ts=T0, currency=Marked("EUR"), device=Marked("mobile"), source=Marked("ads"),
        items=(Item(item_id="A", price=Decimal("10.00")),),
    )  # fmt: skip
    run = SessionizeRun(abandon_after=1800).feed(cart)
    run.advance(T0 + 10_000)
    assert run.stage.statistics().errors == 0
    ((left,),) = ([a.cart for a in run.of(Abandoned)],)
    assert (left.currency, left.device, left.source) == ("EUR", "mobile", "ads")
    route = Route(Config())
    key = "cust-1"
    change = ContactChanged(
        contact_key=key, at=T0, customer_id=key, email="a@example.com", locale=Marked("en-GB"),
        timezone=Marked("Europe/London"), granted=(Marked("email"),),
    )  # fmt: skip
    route.handle([change], [])
    assert route.statistics().errors == 0
    contact = route._contacts[key]  # contact_of() encodes it, and msgspec encodes no str subclass (as the journal)
    assert contact.locale == "en-GB" and contact.consent == {"email": True}
