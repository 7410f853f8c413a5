"""The synthetic shop with planted causes (``generate_events(..., causes=True)``): every cart that is left is
left for a reason drawn per shop, and the shopper behaves the way that reason makes people behave, so that
reason inference (:mod:`recoverkit.reasons`) can be measured against the truth.

The truth is the generator's side output (``truth``: session id -> cause), never an event field: the engine sees
only what a shop's pages would send. Causes, with the behaviour each plants (and the noise: not every cause
leaves a clean signal, and carts left for no cause sometimes show a weak one):

``shipping_cost``     checks out and sees shipping at 10-35% of the cart's value at the shipping step, then
                      leaves within a minute (a quarter with an exit intent); 10% see a cost of 6-10% only (a
                      shock is relative to what the shopper expected); 15% saw the cost on the checkout page and
                      left before the shop sent ``add_shipping_info`` (no signal).
``payment_failure``   enters payment details and is declined (``payment_failed``, a third twice); 10% pay
                      through a provider's own pages, where the shop never hears of the decline (no signal).
``form_friction``     rejected input (``form_error``, 65%), clicks that do nothing (45%), a page the shop
                      measures as slow (30%), long on one form page (median 5 minutes); 15% leave at an account
                      wall after half a minute with none of these (no signal). Leaves at checkout or shipping.
``price_comparison``  views the cart's products again and others (3-8 more product pages), and 75% go to other
                      tabs (1-4 times, 1-15 minutes away); leaves at the cart (80%) or the checkout page.
``none``              not ready, distrust, delivery time, returns policy: leaves anywhere; 10% show one short
                      tab-away, 5% one dead click.

Shoppers who buy go through checkout too, with the same page timings; 15% of those who reach payment are declined
once and pay on a retry after a delay (see ``_RETRY_DELAY``), which is the wait ``payment_failed_after`` must
cover. Their truth is ``payment_failure`` (an engine that abandons at once would call them abandoned).

Every page from the cart on ends with a ``checkout_signal`` (time on the page, dead clicks, tab-aways) as a
shop's page sends it on ``pagehide``; 10% of those sent from a phone as the shopper leaves are lost (the browser
does not always deliver a beacon from a page being closed).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from ._synthetic_shop import (
    _FORM_FIELDS,
    _FREE_SHIPPING_FROM,
    _P_GUEST_EMAIL,
    _PAYMENT_ERRORS,
    _PAYMENT_TYPES,
    _RETURN_SOURCES,
    _SHIPPING,
    _ZERO,
    Cart,
    Shop,
    _pick,
    _Session,
    _total,
)
from .events import (
    AddPaymentInfo,
    AddShippingInfo,
    BeginCheckout,
    CheckoutSignal,
    Event,
    ExitIntent,
    FormError,
    Item,
    PaymentFailed,
    Purchase,
    ViewCart,
)

__all__ = ["CAUSES", "CausedShop"]

#: The planted causes: the four reasons a flow can act on, and none.
CAUSES: Final = ("shipping_cost", "payment_failure", "form_friction", "price_comparison", "none")

# Shares of causes among carts left in checkout, from Baymard Institute's survey of reasons for abandonment during
# checkout (2023, US adults, several answers allowed; "just browsing" excluded): extra costs too high 48% and total
# cost not shown up front 21% (shipping_cost); an account required 26%, a long or complicated checkout 22%, errors
# or crashes 17% (form_friction); the card declined 4% (payment_failure); no trust in the site 25%, slow delivery
# 23%, returns policy 15%, too few payment methods 13% (none: nothing a message can fix from the page's signals).
# Comparing prices is asked outside checkout; Baymard puts "just browsing / comparing" at about half of all
# abandonments, of which we count a part. Normalised, as prior shares of the carts left:
_PRIOR: Final = {
    "shipping_cost": 0.30,
    "payment_failure": 0.06,
    "form_friction": 0.24,
    "price_comparison": 0.16,
    "none": 0.24,
}
_SHOP_SPREAD: Final = 0.35  # each shop's share of a cause is the prior times e^N(0, 0.35), renormalised
# Baymard's average documented cart abandonment rate is 70.19% (49 studies); shops spread around it.
_ABANDON_RATE: Final = (0.62, 0.80)
_P_DECLINED: Final = 0.15  # of buyers who reach payment: card declines are about one attempt in 7-10
_P_SECOND_DECLINE: Final = 0.33
# Seconds from a decline to the retry's purchase: most shoppers re-type the card or pick another method within a
# couple of minutes (log-normal, median 75 s, p90 about 3.5 minutes); 10% go and find another card or call the
# bank first (5-20 minutes). An assumption: no public dataset we have records payment retries (docs/scoring.md).
_RETRY_MEDIAN: Final = 75.0
_RETRY_SIGMA: Final = 0.8
_P_SLOW_RETRY: Final = 0.10
_SLOW_RETRY: Final = (300.0, 1200.0)
_P_LOST_BEACON: Final = 0.10  # of the last page's signal, sent from a phone as the page closes


class CausedShop(Shop):
    """:class:`~recoverkit._synthetic_shop.Shop` whose carts are left for planted causes; ``truth`` (when given)
    gets each such session's cause, and ``payment_failure`` for buyers who were declined first."""

    def __init__(self, seed: int, catalog_size: int, currency: str, truth: dict[str, str] | None) -> None:
        super().__init__(seed, catalog_size, currency, "funnel")
        rng = self.rng
        weights = {cause: share * math.exp(rng.gauss(0.0, _SHOP_SPREAD)) for cause, share in _PRIOR.items()}
        total = sum(weights.values())
        #: This shop's shares of causes among the carts left, and its abandonment rate.
        self.shares = {cause: weight / total for cause, weight in weights.items()}
        self.abandon_rate = rng.uniform(*_ABANDON_RATE)
        self._cumulative = list(_cumulative(self.shares))
        self.truth = truth
        self.start_session = self.new_session

    def draw_cause(self) -> str:
        r = self.rng.random()
        return next((cause for cause, edge in self._cumulative if r < edge), "none")

    def new_session(self, k: int, t0: float) -> tuple[_Session, Cart | None]:
        rng = self.rng
        s, customer, cart_id, lines = self.arrive(k, t0)
        if not lines:
            return s, None
        cause = self.draw_cause() if rng.random() < self.abandon_rate else None
        visit = _Visit(self, s, cart_id, lines, customer)
        if cause is None:
            declined = visit.buy()
            if declined and self.truth is not None:
                self.truth[s.session_id] = "payment_failure"
            return s, None
        getattr(visit, cause)()
        if self.truth is not None:
            self.truth[s.session_id] = cause
        return s, self.leave(s, cart_id, lines, visit.customer)

    def return_session(self, k: int, t0: float, cart: Cart) -> _Session:
        """The shopper of an abandoned ``cart`` is back and buys (declined first as often as any buyer)."""
        rng = self.rng
        s = _Session(f"s{k}", t0, self.currency, cart.device, _pick(rng, _RETURN_SOURCES))
        if cart.customer is not None:
            self.identify(s, cart.customer, first=False)
        for line in cart.lines[: _pick(rng, (1, 1, 2))]:
            self.view(s, self.catalog[int(line.item_id[4:])])
        if _Visit(self, s, cart.cart_id, cart.lines, cart.customer).buy() and self.truth is not None:
            self.truth[s.session_id] = "payment_failure"
        return s


def _cumulative(shares: dict[str, float]) -> list[tuple[str, float]]:
    edges, running = [], 0.0
    for cause, share in shares.items():
        running += share
        edges.append((cause, running))
    return edges


class _Visit:
    """One cart's way through checkout: the pages, and the ``checkout_signal`` each sends as it is left."""

    def __init__(self, shop: CausedShop, s: _Session, cart_id: str, lines: list[Item], customer: int | None) -> None:
        self.shop, self.rng, self.s = shop, shop.rng, s
        self.cart_id, self.lines, self.customer = cart_id, lines, customer
        self.total = _total(lines)
        self.shipping: Decimal | None = None

    # -- pages ------------------------------------------------------------------------------------------------

    def page(self, kind: Callable[..., Event], dwell: float, **own: object) -> float:
        """Open a page of ``kind`` (a step event with the whole cart) after ``dwell`` seconds; the time it opened."""
        s = self.s
        s.event(kind, s.t + dwell, self.total, self.lines, self.shipping, None, self.cart_id, **own)
        return s.t

    def leave_page(
        self,
        step: str,
        opened: float,
        *,
        last: bool = False,
        dead: int = 0,
        tabs: int = 0,
        hidden: float = 0.0,
        slow: bool = False,
    ) -> None:
        """The shopper leaves the page opened at ``opened``: its ``checkout_signal``, unless the beacon is lost."""
        s, rng = self.s, self.rng
        if last and s.device == "mobile" and rng.random() < _P_LOST_BEACON:
            return
        s.event(
            CheckoutSignal,
            s.t + 0.2 + rng.random(),
            cart_id=self.cart_id,
            checkout_step=step,
            seconds_on_step=round(max(s.t - opened, 0.0) + hidden, 3),
            dead_clicks=dead,
            tab_aways=tabs,
            hidden_seconds=round(hidden, 3),
            slow=slow,
        )

    def cart(self) -> None:
        opened = self.page(ViewCart, 3 + self.rng.random() * 20)
        self.s.t += 5 + self.rng.random() * 30
        self.leave_page("cart", opened, tabs=self.noise_tab(), hidden=0.0)

    def checkout(self, dwell: float) -> float:
        opened = self.page(BeginCheckout, 3 + self.rng.random() * 10)
        if self.customer is None and self.rng.random() < _P_GUEST_EMAIL:
            self.customer = self.shop.customers.new(self.rng)
            self.shop.identify(self.s, self.customer, first=True)
        self.s.t = max(self.s.t, opened + dwell)
        return opened

    def shipping_step(self, cost: Decimal | None = None, dwell: float = 0.0) -> float:
        tier, shown = _pick(self.rng, _SHIPPING)
        if cost is None:
            cost = _ZERO if self.total >= _FREE_SHIPPING_FROM and tier != "next_day" else shown
        self.shipping = cost
        opened = self.page(AddShippingInfo, 20 + self.rng.random() * 60, shipping_tier=tier)
        self.s.t += dwell or 10 + self.rng.random() * 40
        return opened

    def payment_step(self) -> tuple[float, str]:
        payment = _pick(self.rng, _PAYMENT_TYPES)
        opened = self.page(AddPaymentInfo, 20 + self.rng.random() * 60, payment_type=payment)
        return opened, payment

    def decline(self, payment: str) -> None:
        s = self.s
        s.event(
            PaymentFailed,
            s.t + 3 + self.rng.random() * 15,
            value=self.total,
            cart_id=self.cart_id,
            error_code=_pick(self.rng, _PAYMENT_ERRORS),
            payment_type=payment,
        )

    def noise_tab(self) -> int:
        return 1 if self.rng.random() < 0.10 else 0

    def form_dwell(self) -> float:
        return 30 + self.rng.random() * 90  # filling in a checkout page: 0.5-2 minutes

    # -- a buyer ---------------------------------------------------------------------------------------------

    def buy(self) -> bool:
        """Check out and pay (perhaps after a decline and a retry); whether the payment was declined first."""
        rng, s = self.rng, self.s
        if rng.random() < 0.6:
            self.cart()
        opened = self.checkout(self.form_dwell())
        if rng.random() < 0.05:
            s.event(FormError, s.t + 5, cart_id=self.cart_id, form_field=_pick(rng, _FORM_FIELDS), error_code="invalid")
        self.leave_page("checkout", opened, tabs=self.noise_tab())
        opened = self.shipping_step()
        self.leave_page("shipping", opened)
        opened, payment = self.payment_step()
        declined = rng.random() < _P_DECLINED
        if declined:
            self.decline(payment)
            s.t += _retry_delay(rng) - 10  # the purchase comes about 10 s after the retry's payment details
            payment = _pick(rng, _PAYMENT_TYPES)
            self.page(AddPaymentInfo, 1.0, payment_type=payment)
        s.event(
            Purchase,
            s.t + 5 + rng.random() * 10,
            value=self.total,
            items=self.lines,
            shipping=self.shipping,
            transaction_id=f"t{self.cart_id[1:]}",
            cart_id=self.cart_id,
        )
        return declined

    # -- the causes ------------------------------------------------------------------------------------------

    def shipping_cost(self) -> None:
        rng = self.rng
        if rng.random() < 0.6:
            self.cart()
        opened = self.checkout(self.form_dwell())
        if rng.random() < 0.15:  # the cost was on the checkout page: they leave before any shipping event
            self.leave_page("checkout", opened, last=True)
            return
        if rng.random() < 0.05:  # a typo in the address, put right: noise, not why they leave
            self.s.event(FormError, self.s.t + 5, cart_id=self.cart_id, form_field="postal_code", error_code="invalid")
        self.leave_page("checkout", opened)
        share = rng.uniform(0.06, 0.10) if rng.random() < 0.10 else rng.uniform(0.10, 0.35)
        cost = (self.total * Decimal(str(round(share, 3)))).quantize(Decimal("0.01"), ROUND_HALF_UP)
        opened = self.shipping_step(cost, dwell=5 + rng.random() * 50)
        if rng.random() < 0.25:
            self.s.event(ExitIntent, self.s.t + 1, cart_id=self.cart_id)
        self.leave_page("shipping", opened, last=True)

    def payment_failure(self) -> None:
        rng = self.rng
        if rng.random() < 0.6:
            self.cart()
        opened = self.checkout(self.form_dwell())
        self.leave_page("checkout", opened)
        opened = self.shipping_step()
        self.leave_page("shipping", opened)
        opened, payment = self.payment_step()
        if rng.random() < 0.10:  # declined on the provider's own pages: the shop never hears of it
            self.s.t += 30 + rng.random() * 120
            self.leave_page("payment", opened, last=True)
            return
        self.decline(payment)
        if rng.random() < _P_SECOND_DECLINE:
            self.s.t += 20 + rng.random() * 60
            payment = _pick(rng, _PAYMENT_TYPES)
            self.page(AddPaymentInfo, 1.0, payment_type=payment)
            self.decline(payment)
        self.s.t += 5 + rng.random() * 60
        self.leave_page("payment", opened, last=True)

    def form_friction(self) -> None:
        rng, s = self.rng, self.s
        if rng.random() < 0.5:
            self.cart()
        if rng.random() < 0.15:  # an account wall: they leave the checkout page at once, no signal but leaving
            opened = self.checkout(20 + rng.random() * 30)
            self.leave_page("checkout", opened, last=True)
            return
        # Long on the page: log-normal, median 5 minutes (people fill in a checkout page in 1-2).
        opened = self.checkout(300 * math.exp(rng.gauss(0.0, 0.5)))
        for _ in range(rng.randint(1, 4) if rng.random() < 0.65 else 0):
            s.event(
                FormError,
                s.t + 5 + rng.random() * 30,
                cart_id=self.cart_id,
                form_field=_pick(rng, _FORM_FIELDS),
                error_code="invalid",
            )
        dead = rng.randint(3, 8) if rng.random() < 0.45 else 0
        slow = rng.random() < 0.30
        if rng.random() < 0.35:  # they get past the first page and give up on the next
            self.leave_page("checkout", opened)
            opened = self.shipping_step(dwell=60 + rng.random() * 120)
            self.leave_page("shipping", opened, last=True, dead=dead, slow=slow)
            return
        self.leave_page("checkout", opened, last=True, dead=dead, slow=slow)

    def price_comparison(self) -> None:
        rng, shop = self.rng, self.shop
        for line in self.lines:
            for _ in range(rng.randint(1, 2)):
                shop.view(self.s, line)
        for _ in range(rng.randint(1, 4)):
            shop.view(self.s, shop.product())
        tabs = rng.randint(1, 4) if rng.random() < 0.75 else 0
        hidden = sum(60 * math.exp(rng.uniform(0.0, math.log(15))) for _ in range(tabs))
        opened = self.page(ViewCart, 3 + rng.random() * 20)
        self.s.t += 10 + rng.random() * 60
        if rng.random() < 0.8:
            self.leave_page("cart", opened, last=True, tabs=tabs, hidden=hidden)
            return
        self.leave_page("cart", opened)
        opened = self.checkout(20 + rng.random() * 60)
        self.leave_page("checkout", opened, last=True, tabs=tabs, hidden=hidden)

    def none(self) -> None:
        rng = self.rng
        weak_tab = rng.random() < 0.10
        dead = 1 if rng.random() < 0.05 else 0
        hidden = 5 + rng.random() * 35 if weak_tab else 0.0
        where = rng.random()
        opened = self.page(ViewCart, 3 + rng.random() * 20)
        self.s.t += 5 + rng.random() * 40
        if where < 0.5:
            self.leave_page("cart", opened, last=True, tabs=int(weak_tab), hidden=hidden, dead=dead)
            return
        self.leave_page("cart", opened)
        opened = self.checkout(self.form_dwell())
        if where < 0.8:
            self.leave_page("checkout", opened, last=True, tabs=int(weak_tab), hidden=hidden, dead=dead)
            return
        self.leave_page("checkout", opened)
        opened = self.shipping_step()
        if where < 0.95:
            self.leave_page("shipping", opened, last=True, tabs=int(weak_tab), hidden=hidden, dead=dead)
            return
        self.leave_page("shipping", opened)
        opened, _ = self.payment_step()
        self.s.t += 20 + self.rng.random() * 60
        self.leave_page("payment", opened, last=True, tabs=int(weak_tab), hidden=hidden, dead=dead)


def _retry_delay(rng: random.Random) -> float:
    """Seconds from a decline to the purchase of the retry that pays (see ``_RETRY_MEDIAN``)."""
    if rng.random() < _P_SLOW_RETRY:
        return rng.uniform(*_SLOW_RETRY)
    return _RETRY_MEDIAN * math.exp(rng.gauss(0.0, _RETRY_SIGMA))
