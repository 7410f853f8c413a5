"""Recovery analytics from a store's facts: what the flows sent, what came back, what it cost.

The attribution rule (``docs/analytics.md`` explains why):

- an order **recovers** a cart when it is a conversion of that cart (bought in its own session, or closed by its
  customer's purchase elsewhere) placed strictly **after** a ``sent`` message of the cart and at most
  ``window`` seconds (5 days by default) after the latest such message before it. Orders before the first
  message, or later than the window, are not recovered. Each cart recovers at most once (its first such order);
- credit goes to the **last** message sent before the order (last touch): its flow, step, channel, offer and
  variant. A restore-link visit is credited the same way, except that a visit at the instant of the send counts
  (a link does not exist before its message, whereas an order placed at that instant may well have been under
  way already);
- revenue is summed per currency, never across currencies, and each order once, even when it closed two carts;
  an order whose value no purchase event gave is counted in ``revenue_unknown`` instead;
- the cost of a redeemed code: a fixed ``amount`` is known (capped at the order's value when that is known); a
  ``percent`` is applied to the value of the order it was redeemed for, looked up by transaction id in the
  conversions (the purchase event's ``value``: when a shop reports the value after the discount, the cost is
  understated by that share); free shipping, and a percent whose order is not found, are counted in
  ``discount_cost_unknown``. A code is credited to the cart's code-carrying message sent nearest its issue.

Recovered revenue is not what recovery *earned*: some of those shoppers would have come back anyway. The
holdout answers that; see :mod:`recoverkit.analytics.uplift`.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Final, Literal

import msgspec

from ..facts import LinkVisit, MessageOutcome
from ..offers import discount_for
from ..store.base import CodeRecord
from ._facts import CODE_OFFERS, DAY, Facts, Order, Orders, add_money, day_of

__all__ = [
    "DEFAULT_WINDOW", "CohortSummary", "DayRow", "Dimension", "MessageDay", "Recovery", "RecoveryRow", "recovery",
]  # fmt: skip

#: The attribution window unless the caller gives another: 5 days, in seconds.
DEFAULT_WINDOW: Final = 5 * DAY

#: What a :class:`RecoveryRow` is broken down by.
Dimension = Literal["all", "flow", "step", "channel", "offer", "variant"]
_ORDER: Final[dict[str, int]] = {"all": 0, "flow": 1, "step": 2, "channel": 3, "offer": 4, "variant": 5}
_Key = tuple[str, ...]
#: The outcomes recoverkit.onsite records after ``sent``: not ends of the step, but what the visitor did.
_ON_SITE: Final = frozenset({"shown", "clicked", "dismissed"})


class RecoveryRow(msgspec.Struct, frozen=True, kw_only=True):
    """Recovery figures of one flow, step, channel, offer or variant (``dimension``; the fields it is keyed by
    are set, the others ``None``), or of everything (``"all"``).

    ``outcomes`` counts the messages whose step ended (sent or not); ``not_sent`` counts the others by outcome
    (``skipped_no_consent``, ``cancelled_purchase``, ``capped``, ...); ``failed`` those that failed for good
    (``dead``). ``sent_carts`` is how many carts got at least one message here, ``link_carts`` how many of them
    then followed a restore link, ``recovered_carts`` how many were recovered (see the module docstring) by
    ``recovered_orders`` orders worth ``recovered_revenue`` (minor units, per currency). ``on_site`` counts what
    visitors did with on-site offers (``shown``, ``clicked``, ``dismissed``): not ends of a step, so in neither
    ``outcomes`` nor ``not_sent``.
    """

    dimension: Dimension
    flow: str | None = None
    step: int | None = None
    channel: str | None = None
    offer: str | None = None
    variant: str | None = None
    outcomes: int = 0
    sent: int = 0
    failed: int = 0
    not_sent: dict[str, int] = {}
    sent_carts: int = 0
    link_carts: int = 0
    recovered_carts: int = 0
    recovered_orders: int = 0
    recovered_revenue: dict[str, int] = {}
    revenue_unknown: int = 0
    codes_redeemed: int = 0
    discount_cost: dict[str, int] = {}
    discount_cost_unknown: int = 0
    on_site: dict[str, int] = {}

    @property
    def label(self) -> str:
        """How the row is named in tables: ``"winback / step 1 / b"``, ``"email"``, ``"all"``."""
        if self.dimension == "all":
            return "all"
        if self.dimension in ("flow", "step", "variant"):
            parts = [str(self.flow)]
            if self.step is not None:
                parts.append(f"step {self.step}")
            if self.variant is not None:
                parts.append(self.variant)
            return " / ".join(parts)
        return str(self.channel if self.dimension == "channel" else self.offer)


class DayRow(msgspec.Struct, frozen=True, kw_only=True):
    """One UTC day: messages sent that day, restore links followed, carts recovered by orders placed that day
    and their revenue per currency."""

    day: str
    sent: int = 0
    link_visits: int = 0
    recovered: int = 0
    revenue: dict[str, int] = {}


class MessageDay(msgspec.Struct, frozen=True, kw_only=True):
    """One UTC day of messages, by the day they were sent (:attr:`Recovery.by_sent_day`) or fell due
    (:attr:`Recovery.by_due_day`): ``sent`` messages of that day, ``carts`` the distinct carts they went to, and
    ``recovered`` the carts whose recovering order is credited to one of them (last touch), by orders worth
    ``revenue`` (minor units, per currency; each order once, on its crediting message's day). Unlike
    :class:`DayRow`, which dates a recovery by its order, this follows each day's messages to what they brought."""

    day: str
    sent: int = 0
    carts: int = 0
    recovered: int = 0
    revenue: dict[str, int] = {}


class CohortSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What a store alone can say about the funnel: only carts that were abandoned and entered a flow are
    recorded (not visits, nor carts that were bought straight away), so this is the end of the funnel only."""

    abandoned_carts: int
    treatment_carts: int
    holdout_carts: int
    by_reason: dict[str, int]
    by_trigger: dict[str, int]
    messaged_carts: int
    converted_carts: int
    recovered_carts: int
    note: str = (
        "From the store alone: carts that were abandoned and routed to a flow, and what became of them. Give "
        "--events to see the whole funnel."
    )


class Recovery(msgspec.Struct, frozen=True, kw_only=True):
    """Recovery figures: ``total`` (all flows), ``rows`` by flow, step, channel, offer and variant, ``days``
    over time, and the cohort's summary. ``window`` is the attribution window in seconds. ``by_sent_day`` and
    ``by_due_day`` follow each day's messages to the carts they recovered (:class:`MessageDay`); ``due_unknown``
    sent messages had no due time in the facts (:attr:`~recoverkit.analytics.Facts.due`) and are counted in
    ``by_due_day`` on the day they were sent."""

    window: float
    total: RecoveryRow
    rows: list[RecoveryRow]
    days: list[DayRow]
    cohort: CohortSummary
    codes_issued: int = 0
    by_sent_day: list[MessageDay] = []
    by_due_day: list[MessageDay] = []
    due_unknown: int = 0


class _Day:
    """Running figures of one day."""

    __slots__ = ("link_visits", "recovered", "revenue", "sent")

    def __init__(self) -> None:
        self.sent = self.link_visits = self.recovered = 0
        self.revenue: dict[str, int] = {}


class _MessageDay:
    """Running figures of one :class:`MessageDay`."""

    __slots__ = ("carts", "recovered", "revenue", "sent")

    def __init__(self) -> None:
        self.sent = self.recovered = 0
        self.carts: set[str] = set()
        self.revenue: dict[str, int] = {}

    def row(self, day: str) -> MessageDay:
        return MessageDay(day=day, sent=self.sent, carts=len(self.carts), recovered=self.recovered,
                          revenue=dict(sorted(self.revenue.items())))  # fmt: skip


class _Acc:
    """Running figures of one row."""

    __slots__ = ("codes", "cost", "cost_unknown", "failed", "links", "not_sent", "on_site", "orders", "outcomes",
                 "recovered", "sent", "sent_carts")  # fmt: skip

    def __init__(self) -> None:
        self.outcomes = self.sent = self.failed = self.codes = self.cost_unknown = 0
        self.not_sent: Counter[str] = Counter()
        self.on_site: Counter[str] = Counter()
        self.sent_carts: set[str] = set()
        self.links: set[str] = set()
        self.recovered: set[str] = set()
        self.orders: dict[str, Order] = {}
        self.cost: dict[str, int] = {}

    def row(self, key: _Key) -> RecoveryRow:
        revenue: dict[str, int] = {}
        unknown = 0
        for order in self.orders.values():
            if order.value is None:
                unknown += 1
            else:
                add_money(revenue, order.currency, order.value)
        return msgspec.structs.replace(
            _row_for(key), outcomes=self.outcomes, sent=self.sent, failed=self.failed,
            not_sent=dict(sorted(self.not_sent.items())), sent_carts=len(self.sent_carts), link_carts=len(self.links),
            recovered_carts=len(self.recovered), recovered_orders=len(self.orders),
            recovered_revenue=dict(sorted(revenue.items())), revenue_unknown=unknown, codes_redeemed=self.codes,
            discount_cost=dict(sorted(self.cost.items())), discount_cost_unknown=self.cost_unknown,
            on_site=dict(sorted(self.on_site.items())),
        )  # fmt: skip


def _row_for(key: _Key) -> RecoveryRow:
    """An empty row named by ``key`` (see _keys)."""
    dimension = key[0]
    if dimension == "flow":
        return RecoveryRow(dimension="flow", flow=key[1])
    if dimension == "step":
        return RecoveryRow(dimension="step", flow=key[1], step=int(key[2]))
    if dimension == "variant":
        return RecoveryRow(dimension="variant", flow=key[1], step=int(key[2]), variant=key[3])
    if dimension == "channel":
        return RecoveryRow(dimension="channel", channel=key[1])
    if dimension == "offer":
        return RecoveryRow(dimension="offer", offer=key[1])
    return RecoveryRow(dimension="all")


def _keys(outcome: MessageOutcome) -> list[_Key]:
    keys: list[_Key] = [
        ("all",), ("flow", outcome.flow), ("step", outcome.flow, str(outcome.step)),
        ("channel", outcome.channel or "-"), ("offer", outcome.offer or "none"),
    ]  # fmt: skip
    if outcome.variant is not None:
        keys.append(("variant", outcome.flow, str(outcome.step), outcome.variant))
    return keys


def _latest_before(
    sent: list[MessageOutcome], times: list[float], at: float, window: float, *, inclusive: bool = False
) -> MessageOutcome | None:
    """The last message of ``sent`` (sorted by time, ``times`` their times) strictly before ``at`` (or at it, when
    ``inclusive``), if ``at`` is within ``window`` of it."""
    i = (bisect.bisect_right if inclusive else bisect.bisect_left)(times, at)
    if i == 0:
        return None
    message = sent[i - 1]
    return message if at - message.at <= window else None


def recovery(facts: Facts, *, window: float = DEFAULT_WINDOW) -> Recovery:
    """Recovery figures of ``facts`` with the attribution ``window`` in seconds (see the module docstring)."""
    if not window > 0:  # also refuses NaN
        raise ValueError(f"window={window!r}; expected an attribution window in seconds > 0")
    orders = Orders(facts.conversions)
    tally = _Tally(window, facts.due)
    for outcome in sorted(facts.outcomes, key=lambda o: (o.at, o.key)):
        tally.outcome(outcome)
    for visit in sorted(facts.visits, key=lambda v: (v.at, v.cart_key)):
        tally.visit(visit)
    for cart in tally.sent_by_cart:
        tally.convert(cart, orders)
    accs = tally.accs
    _credit_codes(facts.codes, tally.sent_by_cart, orders, accs)
    total = accs[("all",)].row(("all",))
    ordered = sorted(accs.items(), key=lambda kv: (_ORDER[kv[0][0]], kv[0]))
    rows = [acc.row(key) for key, acc in ordered if key != ("all",)]
    day_rows = [
        DayRow(
            day=day, sent=d.sent, link_visits=d.link_visits, recovered=d.recovered,
            revenue=dict(sorted(d.revenue.items())),
        )
        for day, d in sorted(tally.days.items())
    ]
    return Recovery(
        window=window, total=total, rows=rows, days=day_rows, codes_issued=len(facts.codes),
        cohort=_cohort(facts, orders, window, set(tally.sent_by_cart), len(tally.recovered)),
        by_sent_day=[d.row(day) for day, d in sorted(tally.by_sent.items())],
        by_due_day=[d.row(day) for day, d in sorted(tally.by_due.items())], due_unknown=tally.due_unknown,
    )  # fmt: skip


class _Tally:
    """The running figures of :func:`recovery`: per row (``accs``), per day, and the messages sent per cart.

    Feed it every outcome first (in time order), then the link visits, then each messaged cart's orders.
    """

    def __init__(self, window: float, due: dict[str, float]) -> None:
        self.window = window
        self.due = due
        self.due_unknown = 0
        self.by_sent: dict[str, _MessageDay] = defaultdict(_MessageDay)
        self.by_due: dict[str, _MessageDay] = defaultdict(_MessageDay)
        self.accs: dict[_Key, _Acc] = defaultdict(_Acc)
        self.days: dict[str, _Day] = defaultdict(_Day)
        self.sent_by_cart: dict[str, list[MessageOutcome]] = defaultdict(list)
        self.times: dict[str, list[float]] = {}  # per cart, the times of sent_by_cart's messages
        self.recovered: set[str] = set()

    def outcome(self, outcome: MessageOutcome) -> None:
        if outcome.outcome in _ON_SITE:  # what a visitor did with an on-site offer (recoverkit.onsite)
            for key in _keys(outcome):
                self.accs[key].on_site[outcome.outcome] += 1
            return
        for key in _keys(outcome):
            acc = self.accs[key]
            acc.outcomes += 1
            if outcome.outcome == "sent":
                acc.sent += 1
                acc.sent_carts.add(outcome.cart_key)
            elif outcome.outcome == "dead":
                acc.failed += 1
            else:
                acc.not_sent[outcome.outcome] += 1
        if outcome.outcome == "sent":
            self.sent_by_cart[outcome.cart_key].append(outcome)
            self.times.setdefault(outcome.cart_key, []).append(outcome.at)
            self.days[day_of(outcome.at)].sent += 1
            if outcome.key not in self.due:
                self.due_unknown += 1
            for day in self._message_days(outcome):
                day.sent += 1
                day.carts.add(outcome.cart_key)

    def _message_days(self, message: MessageOutcome) -> tuple[_MessageDay, _MessageDay]:
        """The running figures of the day ``message`` was sent and of the day it fell due."""
        due = self.due.get(message.key, message.at)
        return self.by_sent[day_of(message.at)], self.by_due[day_of(due)]

    def visit(self, visit: LinkVisit) -> None:
        sent = self.sent_by_cart.get(visit.cart_key)
        if not sent:
            return
        # A link does not exist before its message: a visit at the very instant of the send followed it.
        message = _latest_before(sent, self.times[visit.cart_key], visit.at, self.window, inclusive=True)
        if message is not None:
            self.days[day_of(visit.at)].link_visits += 1
            for key in _keys(message):
                self.accs[key].links.add(visit.cart_key)

    def convert(self, cart: str, orders: Orders) -> None:
        """Credit the cart's first order within the window of a message to the latest message before it."""
        sent = self.sent_by_cart[cart]
        for conversion in orders.conversions_of(cart):
            message = _latest_before(sent, self.times[cart], conversion.at, self.window)
            if message is None:
                continue
            order = orders.order_of(conversion)
            self.recovered.add(cart)
            day = self.days[day_of(conversion.at)]
            day.recovered += 1
            counted = order.key in self.accs[("all",)].orders  # an order recovering two carts counts once
            if not counted and order.value is not None:
                add_money(day.revenue, order.currency, order.value)  # each order once, on the day it was placed
            for by in self._message_days(message):
                by.recovered += 1
                if not counted and order.value is not None:
                    add_money(by.revenue, order.currency, order.value)
            for key in _keys(message):
                self.accs[key].recovered.add(cart)
                self.accs[key].orders[order.key] = order
            return


def _credit_codes(
    codes: Iterable[CodeRecord], sent_by_cart: dict[str, list[MessageOutcome]], orders: Orders,
    accs: dict[_Key, _Acc],
) -> None:  # fmt: skip
    """Add each redeemed code's cost to the rows of the message that carried it (see the module docstring)."""
    for code in codes:
        if code.redeemed_at is None:
            continue
        carriers = [m for m in sent_by_cart.get(code.cart_key, ()) if m.offer_kind in CODE_OFFERS]
        keys: list[_Key] = [("all",)]
        if carriers:
            keys = _keys(min(carriers, key=lambda m: (abs(m.at - code.issued_at), m.at)))
        cost, currency = _code_cost(code, orders)
        for key in keys:
            acc = accs[key]
            acc.codes += 1
            if cost is None:
                acc.cost_unknown += 1
            else:
                add_money(acc.cost, currency, cost)


def _code_cost(code: CodeRecord, orders: Orders) -> tuple[int | None, str | None]:
    """What a redeemed code took off, in minor units, and its currency; ``(None, None)`` when unknown."""
    order = orders.by_transaction(code.redeemed_order) if code.redeemed_order else None
    if code.kind != "discount":
        return None, None  # free shipping: the shop waived its shipping, whose price the facts do not hold
    if code.amount is not None:
        cap = order.value if order is not None and order.value is not None else code.amount
        return min(code.amount, cap), code.currency
    if order is None or order.value is None:
        return None, None
    return discount_for(code, order.value), order.currency or code.currency


def _cohort(facts: Facts, orders: Orders, window: float, messaged: set[str], recovered: int) -> CohortSummary:
    first: dict[str, tuple[float, str, str, str]] = {}
    for a in sorted(facts.assignments, key=lambda a: (a.assigned_at, a.flow)):
        first.setdefault(a.cart_key, (a.assigned_at, a.group, a.reason or "unknown", a.trigger or "unknown"))
    groups = Counter(group for _, group, _, _ in first.values())
    converted = sum(1 for cart, (at, *_) in first.items() if orders.first_after(cart, at, within=window))
    return CohortSummary(
        abandoned_carts=len(first), treatment_carts=groups["treatment"], holdout_carts=groups["holdout"],
        by_reason=dict(Counter(r for _, _, r, _ in first.values()).most_common()),
        by_trigger=dict(Counter(t for *_, t in first.values()).most_common()),
        messaged_carts=len(messaged), converted_carts=converted, recovered_carts=recovered,
    )  # fmt: skip
