"""The random shop behind :func:`recoverkit.synthetic.generate_events`: its catalogue, its customers, and the
script of each session (browse, fill a cart, check out, fail, leave, come back to buy). :mod:`recoverkit.synthetic`
documents the funnel these tables and probabilities make, and merges the scripted sessions into one stream.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Final, TypeVar

import msgspec

from .events import (
    AddPaymentInfo,
    AddShippingInfo,
    AddToCart,
    BeginCheckout,
    Consent,
    Event,
    ExitIntent,
    FormError,
    Identify,
    Item,
    PageView,
    PaymentFailed,
    Purchase,
    RemoveFromCart,
    ViewCart,
    ViewItem,
)

__all__ = ["MEAN_ARRIVAL_GAP", "MIXES", "RETURN_DELAY", "Cart", "Shop"]

T = TypeVar("T")

_force_setattr: Final = msgspec.structs.force_setattr

# Funnel probabilities; recoverkit.synthetic's docstring is their documentation, keep the two in step.
MEAN_ARRIVAL_GAP: Final = 3.0  # seconds between session starts, on average (Poisson arrivals)
_P_LANDING: Final = 0.60
_P_LOGIN: Final = 0.27  # returning customers who log in as the session starts
_P_KNOWN_CUSTOMER: Final = 0.70  # a log-in is by an existing customer (else a new account)
_P_CART: Final = 0.37  # a little over 35% so that, with return visits counted, ~35% of sessions add to cart
_P_REMOVE: Final = 0.05
_P_CHECKOUT: Final = 0.50
_P_VIEW_CART: Final = 0.60
_P_GUEST_EMAIL: Final = 0.70  # guests at checkout who type an e-mail address
_P_FORM_ERROR: Final = 0.10
_P_SHIPPING: Final = 0.75
_P_PAYMENT: Final = 0.70
_P_PAYMENT_FAILED: Final = 0.08
_P_RETRY_PAYS: Final = 0.50
_P_COMPLETE: Final = 0.95
_P_EXIT_INTENT: Final = 0.13
_P_RETURN: Final = 0.28
_P_EMAIL_CONSENT: Final = 0.70
_P_SMS_CONSENT: Final = 0.25  # of those granting e-mail
_P_PHONE_ONLY: Final = 0.20  # customers who give a phone number without SMS consent
_P_WITHDRAW: Final = 0.02
RETURN_DELAY: Final = (3600.0, 72 * 3600.0)  # log-uniform between one hour and three days
_RECENT_CUSTOMERS: Final = 50_000  # log-ins are by one of the most recent customers

# The "browse" mix: a shop's traffic as analytics sees it. Most sessions only look around, so most events are page
# views; few start a cart and most of those carts are left; a few percent of sessions buy. recoverkit.synthetic's
# docstring documents it too.
MIXES: Final = ("funnel", "browse")
_BROWSE_PAGES: Final = (1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 7, 8, 10, 12, 16)  # pages after the landing page
_P_BROWSE_PRODUCT: Final = 0.35  # a page after the landing page is a product page (view_item)
_P_BROWSE_CART: Final = 0.16  # of sessions that saw a product: about 12% of all sessions
_P_BROWSE_CHECKOUT: Final = 0.40
_P_BROWSE_RETURN: Final = 0.10
_BROWSE_PAGE_TYPES: Final = ("category", "category", "category", "search", "search", "home", "content")

_VIEW_COUNTS: Final = (1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 5, 5, 6, 7, 8)
_ADD_COUNTS: Final = (1, 1, 1, 1, 2, 2, 3)
_QUANTITIES: Final = (1,) * 17 + (2, 2, 3)
_DEVICES: Final = ("mobile",) * 12 + ("desktop",) * 7 + ("tablet",)
_SOURCES: Final = (
    "direct",
    "direct",
    "organic",
    "organic",
    "organic",
    "paid",
    "paid",
    "newsletter",
    "social",
    "referral",
)
_RETURN_SOURCES: Final = ("direct", "direct", "organic", "paid")
_PAGE_TYPES: Final = ("home", "home", "category", "category", "search", "landing")
_LOCALES: Final = (
    ("de-DE", "Europe/Berlin"),
    ("fr-FR", "Europe/Paris"),
    ("nl-NL", "Europe/Amsterdam"),
    ("es-ES", "Europe/Madrid"),
    ("it-IT", "Europe/Rome"),
    ("en-IE", "Europe/Dublin"),
    ("de-AT", "Europe/Vienna"),
    ("fi-FI", "Europe/Helsinki"),
    ("pt-PT", "Europe/Lisbon"),
)
_SHIPPING: Final = (
    ("standard", Decimal("4.90")),
    ("standard", Decimal("4.90")),
    ("economy", Decimal("2.99")),
    ("express", Decimal("9.90")),
    ("next_day", Decimal("14.90")),
    ("pickup", Decimal("0.00")),
)
_FREE_SHIPPING_FROM: Final = Decimal("60.00")
_ZERO: Final = Decimal("0.00")
_PAYMENT_TYPES: Final = ("card", "card", "card", "paypal", "paypal", "klarna", "apple_pay")
_PAYMENT_ERRORS: Final = (
    "card_declined",
    "card_declined",
    "insufficient_funds",
    "authentication_failed",
    "expired_card",
)
_FORM_FIELDS: Final = ("postal_code", "postal_code", "email", "phone", "address_line1", "card_number")

_CATEGORIES: Final = (
    ("apparel.shoes", ("Runner", "Trail", "Canvas", "Leather", "Court"), "sneakers", 3_000, 16_000),
    ("apparel.jacket", ("Rain", "Down", "Denim", "Softshell"), "jacket", 4_000, 25_000),
    ("home.kitchen", ("Steel", "Ceramic", "Cast-iron", "Bamboo"), "pan", 1_500, 9_000),
    ("home.textile", ("Linen", "Cotton", "Wool", "Velvet"), "cushion", 900, 4_500),
    ("electronics.audio", ("Wireless", "Studio", "Travel", "Sport"), "headphones", 2_500, 35_000),
    ("electronics.accessories", ("USB-C", "Fast", "Compact", "Magnetic"), "charger", 900, 5_000),
    ("beauty.skincare", ("Hydrating", "Vitamin C", "Night", "Mineral"), "cream", 700, 6_000),
    ("sports.fitness", ("Yoga", "Grip", "Foam", "Resistance"), "mat", 1_200, 8_000),
    ("books.fiction", ("Paperback", "Hardcover", "Collector's", "Illustrated"), "novel", 800, 3_500),
    ("toys.games", ("Family", "Strategy", "Party", "Puzzle"), "game", 1_500, 6_000),
)


def _catalog(size: int) -> list[Item]:
    """The shop's products, the same for every seed: a benchmark with another seed sees the same shop."""
    rng = random.Random(f"recoverkit-catalog-{size}")
    items = []
    for i in range(size):
        category, adjectives, noun, low, high = _CATEGORIES[i % len(_CATEGORIES)]
        # Prices are log-uniform within the category and end the way shop prices do (.99, .95, .90, .00).
        cents = int(math.exp(rng.uniform(math.log(low), math.log(high))))
        cents = cents // 100 * 100 + rng.choice((99, 95, 90, 0))
        name = f"{rng.choice(adjectives)} {noun} {i // len(_CATEGORIES) + 1}"
        items.append(
            Item(item_id=f"SKU-{i:05d}", price=Decimal(cents).scaleb(-2), name=name, category=category)
        )
    return items


class _Customers:
    """Customers known so far, as flag words: no per-customer objects, so millions stay cheap."""

    EMAIL: Final = 1
    SMS: Final = 2
    PHONE: Final = 4

    def __init__(self) -> None:
        self.flags: list[int] = []

    def new(self, rng: random.Random) -> int:
        flags = 0
        if rng.random() < _P_EMAIL_CONSENT:
            flags |= self.EMAIL
            if rng.random() < _P_SMS_CONSENT:
                flags |= self.SMS | self.PHONE
        if not flags & self.PHONE and rng.random() < _P_PHONE_ONLY:
            flags |= self.PHONE
        self.flags.append(flags)
        return len(self.flags) - 1

    def known(self, rng: random.Random) -> int:
        count = len(self.flags)
        return rng.randrange(max(0, count - _RECENT_CUSTOMERS), count)


class Cart:
    """An abandoned cart waiting for its return visit."""

    __slots__ = ("cart_id", "customer", "device", "lines")

    def __init__(self, cart_id: str, lines: list[Item], customer: int | None, device: str) -> None:
        self.cart_id = cart_id
        self.lines = lines
        self.customer = customer
        self.device = device


class _Session:
    """Builds one session's events with a running clock; ``times`` mirrors the events' ``ts``."""

    __slots__ = ("currency", "customer", "device", "events", "session_id", "source", "start", "t", "times")

    def __init__(self, session_id: str, start: float, currency: str, device: str, source: str) -> None:
        self.session_id = session_id
        self.start = start
        self.t = start
        self.currency = currency
        self.device = device
        self.source = source
        self.customer: str | None = None
        self.events: list[Event] = []
        self.times: list[float] = []

    def event(
        self,
        kind: Callable[..., Event],
        t: float,
        value: Decimal | None = None,
        items: Sequence[Item] | None = None,
        shipping: Decimal | None = None,
        transaction_id: str | None = None,
        cart_id: str | None = None,
        **own: object,
    ) -> None:
        """Add a ``kind`` event at about ``t`` with the fields every event of the session shares.

        The first event is stamped at the session's start, the others at ``t`` to the millisecond and strictly
        after the one before. ``own`` are the fields only ``kind`` has, such as ``page_type``.
        """
        times = self.times
        if not times:
            t = self.start
        else:
            t = round(t, 3)  # millisecond resolution, like browser clocks
            if t <= times[-1]:
                t = times[-1] + 0.001
        self.t = t
        times.append(t)
        event = kind(
            session_id=self.session_id,
            customer_id=self.customer,
            ts=t,
            currency=self.currency,
            value=value,
            items=() if items is None else tuple(items),
            shipping=shipping,
            transaction_id=transaction_id,
            cart_id=cart_id,
            device=self.device,
            source=self.source,
        )
        # Not ``kind(..., **own)``: CPython unpacks a keyword dict before calling a Struct, and that made the
        # whole generator ~20% slower. force_setattr is msgspec's way to finish a frozen Struct before anyone
        # else sees it; __post_init__ has already run, and it checks only the amounts, which are not ``own``.
        if own:
            for name, field_value in own.items():
                _force_setattr(event, name, field_value)
        self.events.append(event)


def _pick(rng: random.Random, options: tuple[T, ...] | list[T]) -> T:
    # Random.choice draws random bits until they give an index in range; for these short tables scaling one
    # random() is just as uniform (the bias is below 2**-40) and twice as fast, and choosing is a good part
    # of the generator's time.
    return options[int(rng.random() * len(options))]


def _total(lines: list[Item]) -> Decimal:
    return sum((line.price * line.quantity for line in lines), _ZERO)


class Shop:
    """The random shop behind :func:`generate_events`. All randomness comes from one seeded generator."""

    def __init__(self, seed: int, catalog_size: int, currency: str, mix: str = "funnel") -> None:
        self.rng = random.Random(seed)
        self.catalog = _catalog(catalog_size)
        self.currency = currency
        self.customers = _Customers()
        #: Scripts a session that is not a return visit: ``(k, t0) -> (session, cart left to come back to)``.
        self.start_session = self.browse_session if mix == "browse" else self.new_session

    def product(self) -> Item:
        # Squaring a uniform number makes low indexes (the best sellers) far more likely: a long tail.
        r = self.rng.random()
        return self.catalog[int(r * r * len(self.catalog))]

    def identify(self, s: _Session, n: int, *, first: bool) -> None:
        flags = self.customers.flags[n]
        customer_id = f"c{n}"
        s.customer = customer_id
        locale, tz = _LOCALES[n * 7919 % len(_LOCALES)]
        phone = f"+155501{n % 100_000:05d}" if flags & _Customers.PHONE else None
        s.event(
            Identify,
            s.t + 1 + self.rng.random() * 4,
            email=f"c{n}@example.invalid",
            phone=phone,
            locale=locale,
            timezone=tz,
        )
        granted: list[str] = []
        withdrawn: list[str] = []
        if first:
            if flags & _Customers.EMAIL:
                granted.append("email")
            if flags & _Customers.SMS:
                granted.append("sms")
        elif flags & _Customers.EMAIL and self.rng.random() < _P_WITHDRAW:
            self.customers.flags[n] = flags & ~_Customers.EMAIL
            withdrawn.append("email")
        if granted or withdrawn:
            s.event(Consent, s.t + 0.5 + self.rng.random(), granted=tuple(granted), withdrawn=tuple(withdrawn))

    def view(self, s: _Session, item: Item) -> None:
        s.event(ViewItem, s.t + 5 + self.rng.random() * 85, value=item.price, items=(item,))

    def arrive(self, k: int, t0: float) -> tuple[_Session, int | None, str, list[Item]]:
        """Session ``k`` from ``t0`` up to its cart: landing, log-in, product views, and the cart filled (``lines``
        empty when the shopper adds nothing). What happens to the cart is the caller's (``new_session`` here, the
        planted causes in :mod:`recoverkit._synthetic_causes`); both draw from the same stream in the same order."""
        rng = self.rng
        s = _Session(f"s{k}", t0, self.currency, _pick(rng, _DEVICES), _pick(rng, _SOURCES))
        if rng.random() < _P_LANDING:
            s.event(PageView, t0, page_type=_pick(rng, _PAGE_TYPES))  # the session's first event
        customer = self.log_in(s)
        viewed = [self.product() for _ in range(_pick(rng, _VIEW_COUNTS))]
        for item in viewed:
            self.view(s, item)
        if rng.random() >= _P_CART:
            return s, customer, "", []
        cart_id = f"k{k}"
        return s, customer, cart_id, self.fill_cart(s, cart_id, viewed)

    def new_session(self, k: int, t0: float) -> tuple[_Session, Cart | None]:
        """Script session ``k`` starting at ``t0``; returns it and its cart when that is left unbought."""
        rng = self.rng
        s, customer, cart_id, lines = self.arrive(k, t0)
        if not lines:
            return s, None
        bought = False
        if rng.random() < _P_CHECKOUT:
            guest = customer is None and rng.random() < _P_GUEST_EMAIL
            bought, guest_customer = self.checkout(
                s, cart_id, lines, view_cart=rng.random() < _P_VIEW_CART, guest=guest, sure=False
            )
            customer = customer if guest_customer is None else guest_customer
        if bought:
            return s, None
        return s, self.leave(s, cart_id, lines, customer)

    def browse_session(self, k: int, t0: float) -> tuple[_Session, Cart | None]:
        """Session ``k`` of the "browse" mix, starting at ``t0``: a landing page, then pages of which about a third
        are product pages; rarely a cart, and that cart mostly left. Returns it and its cart when left unbought.
        """
        rng = self.rng
        s = _Session(f"s{k}", t0, self.currency, _pick(rng, _DEVICES), _pick(rng, _SOURCES))
        s.event(PageView, t0, page_type=_pick(rng, _PAGE_TYPES))
        customer = self.log_in(s)
        viewed: list[Item] = []
        for _ in range(_pick(rng, _BROWSE_PAGES)):
            if rng.random() < _P_BROWSE_PRODUCT:
                item = self.product()
                viewed.append(item)
                self.view(s, item)
            else:
                s.event(PageView, s.t + 5 + rng.random() * 55, page_type=_pick(rng, _BROWSE_PAGE_TYPES))
        if not viewed or rng.random() >= _P_BROWSE_CART:
            return s, None
        cart_id = f"k{k}"
        lines = self.fill_cart(s, cart_id, viewed)
        if rng.random() < _P_BROWSE_CHECKOUT:
            guest = customer is None and rng.random() < _P_GUEST_EMAIL
            bought, guest_customer = self.checkout(
                s, cart_id, lines, view_cart=rng.random() < _P_VIEW_CART, guest=guest, sure=False
            )
            if bought:
                return s, None
            customer = customer if guest_customer is None else guest_customer
        return s, self.leave(s, cart_id, lines, customer, _P_BROWSE_RETURN)

    def log_in(self, s: _Session) -> int | None:
        """Perhaps a customer logs in as the session starts (an existing one, or a new account); their number."""
        rng = self.rng
        if rng.random() >= _P_LOGIN:
            return None
        known = bool(self.customers.flags) and rng.random() < _P_KNOWN_CUSTOMER
        customer = self.customers.known(rng) if known else self.customers.new(rng)
        self.identify(s, customer, first=not known)
        return customer

    def fill_cart(self, s: _Session, cart_id: str, viewed: list[Item]) -> list[Item]:
        """Add 1-3 lines, mostly products just viewed, and sometimes remove the last again; the cart's lines."""
        rng = self.rng
        lines: list[Item] = []
        for _ in range(_pick(rng, _ADD_COUNTS)):
            product = _pick(rng, viewed) if rng.random() < 0.7 else self.product()
            quantity = _pick(rng, _QUANTITIES)
            line = product if quantity == 1 else msgspec.structs.replace(product, quantity=quantity)
            lines.append(line)
            s.event(
                AddToCart,
                s.t + 3 + rng.random() * 27,
                value=line.price * quantity,
                items=(line,),
                cart_id=cart_id,
            )
        if len(lines) > 1 and rng.random() < _P_REMOVE:
            line = lines.pop()
            s.event(
                RemoveFromCart,
                s.t + 5 + rng.random() * 40,
                value=line.price * line.quantity,
                items=(line,),
                cart_id=cart_id,
            )
        return lines

    def leave(
        self, s: _Session, cart_id: str, lines: list[Item], customer: int | None, p_return: float = _P_RETURN
    ) -> Cart | None:
        """The shopper leaves the cart unbought, perhaps with an exit intent; the cart if they will come back
        (with probability ``p_return``)."""
        rng = self.rng
        if rng.random() < _P_EXIT_INTENT:
            s.event(ExitIntent, s.t + 2 + rng.random() * 20, cart_id=cart_id)
        if rng.random() < p_return:
            return Cart(cart_id, lines, customer, s.device)
        return None

    def return_session(self, k: int, t0: float, cart: Cart) -> _Session:
        """Script session ``k``: the shopper of an abandoned ``cart`` is back on the same device and buys."""
        rng = self.rng
        s = _Session(f"s{k}", t0, self.currency, cart.device, _pick(rng, _RETURN_SOURCES))
        if cart.customer is not None:
            self.identify(s, cart.customer, first=False)  # still logged in, or logs in again
        for line in cart.lines[: _pick(rng, (1, 1, 2))]:
            self.view(s, self.catalog[int(line.item_id[4:])])  # the product itself, not the cart line
        guest = cart.customer is None and rng.random() < _P_GUEST_EMAIL
        self.checkout(s, cart.cart_id, cart.lines, view_cart=True, guest=guest, sure=True)
        return s

    def checkout(
        self, s: _Session, cart_id: str, lines: list[Item], *, view_cart: bool, guest: bool, sure: bool
    ) -> tuple[bool, int | None]:
        """Script checkout from the cart page on; returns whether the order was placed and the new guest.

        ``guest``: the shopper types an e-mail address on the checkout page and becomes a new customer.
        ``sure``: a returning shopper who came back to buy; every step is taken and a failed payment is
        retried successfully.
        """
        rng = self.rng
        total = _total(lines)
        if view_cart:
            s.event(ViewCart, s.t + 3 + rng.random() * 20, value=total, items=lines, cart_id=cart_id)
        s.event(BeginCheckout, s.t + 3 + rng.random() * 20, value=total, items=lines, cart_id=cart_id)
        new_customer = None
        if guest:
            new_customer = self.customers.new(rng)
            self.identify(s, new_customer, first=True)
        if rng.random() < _P_FORM_ERROR:
            s.event(
                FormError,
                s.t + 10 + rng.random() * 50,
                cart_id=cart_id,
                form_field=_pick(rng, _FORM_FIELDS),
                error_code="invalid",
            )
        if not sure and rng.random() >= _P_SHIPPING:
            return False, new_customer
        tier, cost = _pick(rng, _SHIPPING)
        if total >= _FREE_SHIPPING_FROM and tier != "next_day":
            cost = _ZERO
        s.event(
            AddShippingInfo,
            s.t + 20 + rng.random() * 100,
            value=total,
            items=lines,
            shipping=cost,
            cart_id=cart_id,
            shipping_tier=tier,
        )
        if not sure and rng.random() >= _P_PAYMENT:
            return False, new_customer
        payment = _pick(rng, _PAYMENT_TYPES)
        s.event(
            AddPaymentInfo,
            s.t + 20 + rng.random() * 100,
            value=total,
            items=lines,
            shipping=cost,
            cart_id=cart_id,
            payment_type=payment,
        )
        if rng.random() < _P_PAYMENT_FAILED:
            s.event(
                PaymentFailed,
                s.t + 3 + rng.random() * 15,
                value=total,
                cart_id=cart_id,
                error_code=_pick(rng, _PAYMENT_ERRORS),
                payment_type=payment,
            )
            if not sure and rng.random() >= _P_RETRY_PAYS:
                return False, new_customer
            payment = _pick(rng, _PAYMENT_TYPES)
            s.event(
                AddPaymentInfo,
                s.t + 20 + rng.random() * 60,
                value=total,
                items=lines,
                shipping=cost,
                cart_id=cart_id,
                payment_type=payment,
            )
        if not sure and rng.random() >= _P_COMPLETE:
            return False, new_customer
        s.event(
            Purchase,
            s.t + 5 + rng.random() * 25,
            value=total,
            items=lines,
            shipping=cost,
            transaction_id=f"t{cart_id[1:]}",
            cart_id=cart_id,
        )
        return True, new_customer
