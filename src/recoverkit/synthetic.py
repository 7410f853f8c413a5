"""A deterministic, realistic event stream of any length, for benchmarks, load tests and examples.

:func:`generate_events` plays a shop: shoppers arrive at random (about one session every 3 seconds, as a
shop with ~30,000 sessions a day), browse, fill carts, check out, fail, hesitate, come back hours later to
buy, log in, give consent and withdraw it. The same arguments always give the same events: all randomness
comes from one seeded :class:`random.Random`, whose sequences CPython keeps stable across versions. (A few
draws go through ``math.exp``; a platform whose C library rounds it differently in the last bit could, very
rarely, shift a price or a return time by a cent or a millisecond.)

The funnel, per session that is not a return visit (each share is of the step before):

=============================  =====================================================================
every session                  1-8 ``view_item`` (popular products more often); 60% start on a page_view
add to cart          ~37%      1-3 ``add_to_cart`` (quantity 1-3), 5% then ``remove_from_cart`` one line
begin checkout       50%       60% view the cart first; 10% hit a ``form_error``
add shipping info    75%       shipping 0.00-14.90 (free over 60.00)
add payment info     70%       8% get a ``payment_failed``, half of them retry and pay
purchase             95%       of those who paid: ~24% of carts are bought in the session
exit intent          ~13%      of carts left unbought, as their last event
return visit         28%       of carts left unbought: a later session (1 hour to 3 days later) with
                               the same ``cart_id`` views the cart, checks out and buys, so ~45% of
                               carts end in a purchase overall
=============================  =====================================================================

About 40% of sessions identify (``identify`` with ``customer_id`` ``c{n}``, e-mail
``c{n}@example.invalid``, a European locale and time zone): returning customers log in at the start, guests
give an address at checkout. A customer's first ``identify`` is followed by a ``consent``: 70% grant e-mail,
a quarter of those also SMS (with a phone number ``+155501nnnnn``); 2% of later log-ins withdraw e-mail.
Every event has ``currency`` (EUR by default), ``device`` and ``source``; cart events have a ``cart_id``
that follows the cart across sessions. Amounts are :class:`~decimal.Decimal` with two decimals.

Memory stays flat however many sessions are asked for: sessions are scripted when they start and merged by
time through a heap that holds only the sessions in progress (each lasts well under an hour) and the return
visits still to come.
"""

from __future__ import annotations

import heapq
import math
import os
import random
from collections.abc import Callable, Iterator
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
    encode_event,
)

__all__ = ["generate_events", "generate_jsonl", "write_synthetic"]

T = TypeVar("T")

_force_setattr: Final = msgspec.structs.force_setattr

#: 2026-01-01 00:00 UTC.
DEFAULT_START: Final = 1_767_225_600.0
_EPOCH_MIN: Final = 946_684_800.0  # 2000-01-01 and 2100-01-01: the event contract's range for ts
_EPOCH_MAX: Final = 4_102_444_800.0

# Funnel probabilities; the module docstring is their documentation, keep the two in step.
_MEAN_ARRIVAL_GAP: Final = 3.0  # seconds between session starts, on average (Poisson arrivals)
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
_RETURN_DELAY: Final = (3600.0, 72 * 3600.0)  # log-uniform between one hour and three days
_RECENT_CUSTOMERS: Final = 50_000  # log-ins are by one of the most recent customers

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


class _Cart:
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
        items: list[Item] | None = None,
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
            items=[] if items is None else items,
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


class _Shop:
    """The random shop behind :func:`generate_events`. All randomness comes from one seeded generator."""

    def __init__(self, seed: int, catalog_size: int, currency: str) -> None:
        self.rng = random.Random(seed)
        self.catalog = _catalog(catalog_size)
        self.currency = currency
        self.customers = _Customers()

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
            s.event(Consent, s.t + 0.5 + self.rng.random(), granted=granted, withdrawn=withdrawn)

    def view(self, s: _Session, item: Item) -> None:
        s.event(ViewItem, s.t + 5 + self.rng.random() * 85, value=item.price, items=[item])

    def new_session(self, k: int, t0: float) -> tuple[_Session, _Cart | None]:
        """Script session ``k`` starting at ``t0``; returns it and its cart when that is left unbought."""
        rng = self.rng
        s = _Session(f"s{k}", t0, self.currency, _pick(rng, _DEVICES), _pick(rng, _SOURCES))
        if rng.random() < _P_LANDING:
            s.event(PageView, t0, page_type=_pick(rng, _PAGE_TYPES))  # the session's first event
        customer: int | None = None
        if rng.random() < _P_LOGIN:
            known = bool(self.customers.flags) and rng.random() < _P_KNOWN_CUSTOMER
            customer = self.customers.known(rng) if known else self.customers.new(rng)
            self.identify(s, customer, first=not known)
        viewed = [self.product() for _ in range(_pick(rng, _VIEW_COUNTS))]
        for item in viewed:
            self.view(s, item)
        if rng.random() >= _P_CART:
            return s, None

        cart_id = f"k{k}"
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
                items=[line],
                cart_id=cart_id,
            )
        if len(lines) > 1 and rng.random() < _P_REMOVE:
            line = lines.pop()
            s.event(
                RemoveFromCart,
                s.t + 5 + rng.random() * 40,
                value=line.price * line.quantity,
                items=[line],
                cart_id=cart_id,
            )

        bought = False
        if rng.random() < _P_CHECKOUT:
            guest = customer is None and rng.random() < _P_GUEST_EMAIL
            bought, guest_customer = self.checkout(
                s, cart_id, lines, view_cart=rng.random() < _P_VIEW_CART, guest=guest, sure=False
            )
            customer = customer if guest_customer is None else guest_customer
        if bought:
            return s, None
        if rng.random() < _P_EXIT_INTENT:
            s.event(ExitIntent, s.t + 2 + rng.random() * 20, cart_id=cart_id)
        if rng.random() < _P_RETURN:
            return s, _Cart(cart_id, lines, customer, s.device)
        return s, None

    def return_session(self, k: int, t0: float, cart: _Cart) -> _Session:
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


# One heap entry per session in progress: (ts of its next event, session number, times, events, index).
# The session number breaks ties, so the lists are never compared.
_Active = tuple[float, int, list[float], list[Event], int]


def generate_events(
    sessions: int,
    *,
    seed: int = 0,
    start: float = DEFAULT_START,
    catalog_size: int = 5000,
    currency: str = "EUR",
) -> Iterator[Event]:
    """Yield the events of ``sessions`` shopping sessions in non-decreasing ``ts`` order.

    The first session starts at ``start`` (epoch seconds; 2026-01-01 00:00 UTC by default) and new ones
    follow about every 3 seconds, so 1,000 sessions span about 50 minutes plus the return visits, which
    come up to three days later. ``sessions`` counts return visits too. Session ids are ``s{k}``, cart ids
    ``k{k}``, order ids ``t{k}`` and customer ids ``c{n}``, numbered from 0 in order of creation. The same
    arguments give the same events; ``catalog_size`` products are the same whatever the seed. See the module
    docstring for the funnel. Memory use does not grow with ``sessions``.

    >>> events = list(generate_events(100, seed=1))
    >>> len(events), events[0].session_id, type(events[0]).__name__
    (578, 's0', 'Identify')
    >>> all(a.ts <= b.ts for a, b in zip(events, events[1:])) and events == list(generate_events(100, seed=1))
    True
    """
    if isinstance(sessions, bool) or not isinstance(sessions, int) or sessions < 0:
        raise ValueError(f"sessions={sessions!r}; expected a whole number of sessions, 0 or more")
    if isinstance(catalog_size, bool) or not isinstance(catalog_size, int) or not 1 <= catalog_size <= 99_999:
        raise ValueError(f"catalog_size={catalog_size!r}; expected a whole number from 1 to 99999")
    if not (len(currency) == 3 and currency.isascii() and currency.isupper() and currency.isalpha()):
        raise ValueError(f"currency={currency!r}; expected an ISO 4217 code such as 'EUR'")
    if not (math.isfinite(start) and _EPOCH_MIN <= start <= _EPOCH_MAX - 365 * 86400):
        raise ValueError(f"start={start!r}; expected epoch seconds between 2000 and 2099")
    return _generate(sessions, _Shop(seed, catalog_size, currency), float(start))


def _generate(sessions: int, shop: _Shop, start: float) -> Iterator[Event]:
    rng = shop.rng
    low, high = math.log(_RETURN_DELAY[0]), math.log(_RETURN_DELAY[1])
    active: list[_Active] = []
    returns: list[tuple[float, int, _Cart]] = []  # return visits still to come: (start, session, cart)
    created = 0
    reserved = 0  # return visits promised but not yet started; they count towards ``sessions``
    next_new = start
    inf = math.inf
    while True:
        # Start every session due before the earliest pending event, so nothing later is yielded first.
        while True:
            new_due = next_new if created + reserved < sessions else inf
            return_due = returns[0][0] if returns else inf
            due = return_due if return_due < new_due else new_due  # min() without a call: this runs per event
            if due == inf or (active and active[0][0] < due):
                break
            k = created
            created += 1
            if return_due <= new_due:
                cart = heapq.heappop(returns)[2]
                reserved -= 1
                s = shop.return_session(k, return_due, cart)
                left: _Cart | None = None
            else:
                s, left = shop.new_session(k, new_due)
                next_new = new_due + rng.expovariate(1.0 / _MEAN_ARRIVAL_GAP)
            if left is not None and created + reserved < sessions:
                reserved += 1
                heapq.heappush(returns, (round(s.t + math.exp(rng.uniform(low, high)), 3), k, left))
            heapq.heappush(active, (s.times[0], k, s.times, s.events, 0))
        if not active:
            return
        _, k, times, events, i = active[0]
        yield events[i]
        i += 1
        if i < len(events):
            heapq.heapreplace(active, (times[i], k, times, events, i))
        else:
            heapq.heappop(active)


def generate_jsonl(
    sessions: int,
    *,
    seed: int = 0,
    start: float = DEFAULT_START,
    catalog_size: int = 5000,
    currency: str = "EUR",
) -> Iterator[bytes]:
    """The events of :func:`generate_events` (same arguments), each encoded as one JSON line without newline.

    This is what a shop would send, ready for ``Engine.track`` or a file; :func:`write_synthetic` writes it.
    """
    encode = encode_event
    for event in generate_events(
        sessions, seed=seed, start=start, catalog_size=catalog_size, currency=currency
    ):
        yield encode(event)


def write_synthetic(path: str | os.PathLike[str], sessions: int, seed: int = 0) -> int:
    """Write :func:`generate_events` ``(sessions, seed=seed)`` to ``path`` as JSON lines; returns the count.

    The file is gzip-compressed when its name ends in ``.gz``, and byte-identical for the same arguments.
    """
    from .datasets import write_jsonl  # file handling lives with the other file formats

    return write_jsonl(generate_events(sessions, seed=seed), path)
