"""The checkout funnel from an event file: where shoppers drop out, how long each step takes, what gets in the way.

Steps, in order, named for the events that prove them (the engine's :class:`~recoverkit.events.CheckoutStep`):
``view_item`` → ``add_to_cart`` (or ``view_cart``) → ``begin_checkout`` → ``add_shipping_info`` →
``add_payment_info`` → ``purchase``.

Rules:

- a session (a visitor) **reaches** a step when it sends that step's event or a later step's, as a cart's step
  only moves forward in the engine: a "buy now" button that skips the cart still passed through it;
- a step no event of the file ever names is **not recorded** (REES46 has no checkout events, only views, carts
  and purchases): it is listed in ``unrecorded`` and left out of the funnel rather than shown as everyone
  dropping out there;
- the **time between steps** is measured from a session's first event of a step to its first event of any later
  step, for sessions that came to the step by its own event (not by skipping it); median and 90th percentile;
- **carts** are counted per cart (the shop's ``cart_id``, else the session) from ``add_to_cart`` on; a purchase
  ends a cart, and the next item added starts another;
- **friction** is counted over checkout sessions (sessions that reached ``begin_checkout`` or had a friction
  event): the share with a ``payment_failed``, with a ``form_error``, and the purchase rate of each;
- **segments** split the sessions by device, customer (``new``: a customer's first session in the events;
  ``returning``: a later one; ``anonymous``: no ``customer_id``), currency and traffic source (the first value a
  session's events give; ``unknown`` when none). Each dimension keeps its :data:`SEGMENT_VALUES` largest values;
  the rest are merged into ``other``;
- **bottlenecks**: in the whole funnel, the step with the largest drop-off from ``add_to_cart`` on (the part a
  checkout's design controls; the drop from viewing to carting is large in every shop and is a merchandising
  question), among steps at least :data:`MIN_ENTRANTS` sessions entered. In a segment, a step whose drop-off is
  significantly worse than the rest of the sessions' at the same step: the lower end of the 95% Newcombe
  interval of the difference is above zero, both sides having at least :data:`MIN_ENTRANTS` entrants.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Final

import msgspec

from ..config import Config
from ..events import CheckoutStep, Event, FormError, PaymentFailed, Purchase
from ..score import Scorer
from ._stats import newcombe_interval, percentile
from .abandonment import Abandonment, abandonment
from .sources import EventLog, EventSource

__all__ = [
    "DIMENSIONS", "MIN_ENTRANTS", "SEGMENT_VALUES", "STEPS", "CartStep", "Friction", "Funnel", "FunnelStep",
    "SegmentRow", "funnel",
]  # fmt: skip

#: Funnel step names, indexed by :class:`~recoverkit.events.CheckoutStep`.
STEPS: Final = ("view_item", "add_to_cart", "begin_checkout", "add_shipping_info", "add_payment_info", "purchase")
#: Least number of sessions entering a step for its drop-off to be weighed as a bottleneck.
MIN_ENTRANTS: Final = 20
#: Values kept per segment dimension; the smaller ones are merged into ``"other"``.
SEGMENT_VALUES: Final = 10
#: What sessions are split by.
DIMENSIONS: Final = ("device", "customer", "currency", "source")
_N: Final = len(STEPS)
_TOP_CODES: Final = 10


class FunnelStep(msgspec.Struct, frozen=True, kw_only=True):
    """One step of the session funnel: ``sessions`` reached it; ``conversion`` and ``drop_off`` are from the
    step before (``None`` for the first); ``median_seconds`` and ``p90_seconds`` the time it took from the step
    before, measured on ``timed`` sessions; ``bottleneck`` says why it is flagged, if it is."""

    step: str
    sessions: int
    conversion: float | None = None
    drop_off: float | None = None
    dropped: int = 0
    median_seconds: float | None = None
    p90_seconds: float | None = None
    timed: int = 0
    bottleneck: str | None = None


class CartStep(msgspec.Struct, frozen=True, kw_only=True):
    """Carts that reached ``step``, and the share of the step before's carts that did."""

    step: str
    carts: int
    conversion: float | None = None


class Friction(msgspec.Struct, frozen=True, kw_only=True):
    """Friction signals over ``checkout_sessions``: sessions with at least one failed payment or form error,
    their shares, the events counted, the most frequent error codes and form fields, and the purchase rate of
    checkout sessions with each signal and with neither."""

    checkout_sessions: int
    payment_failure_sessions: int = 0
    payment_failures: int = 0
    payment_failure_rate: float | None = None
    form_error_sessions: int = 0
    form_errors: int = 0
    form_error_rate: float | None = None
    payment_error_codes: dict[str, int] = {}
    form_fields: dict[str, int] = {}
    purchase_rate_after_payment_failure: float | None = None
    purchase_rate_after_form_error: float | None = None
    purchase_rate_without_friction: float | None = None


class SegmentRow(msgspec.Struct, frozen=True, kw_only=True):
    """The funnel of one segment: ``sessions`` reaching each of the funnel's steps (in the order of
    :attr:`Funnel.steps`), the overall ``conversion`` (last step over first), friction rates and the steps
    flagged as significantly worse than in the other sessions (see the module docstring)."""

    dimension: str
    value: str
    sessions: list[int]
    conversion: float | None
    payment_failure_rate: float | None
    form_error_rate: float | None
    bottlenecks: list[str]


class Funnel(msgspec.Struct, frozen=True, kw_only=True):
    """The funnel of an event file: see the module docstring for every rule."""

    source: EventSource
    sessions: int
    steps: list[FunnelStep]
    unrecorded: list[str]
    carts: list[CartStep]
    friction: Friction
    segments: list[SegmentRow]
    abandonment: Abandonment


class _Visit:
    __slots__ = (
        "currency", "customer", "device", "explicit", "first_at", "form_errors", "payment_failures", "reach", "source",
    )  # fmt: skip

    def __init__(self, first_at: float) -> None:
        self.first_at = first_at
        self.device: str | None = None
        self.source: str | None = None
        self.currency: str | None = None
        self.customer: str | None = None
        self.explicit: list[float | None] = [None] * _N  # first event of exactly each step
        self.payment_failures = self.form_errors = 0
        self.reach: list[float | None] = []  # filled in once every event is seen: see _reaches

    def describe(self, event: Event) -> None:
        """Keep the first value the session's events give for each segment dimension."""
        self.device = self.device or event.device
        self.source = self.source or event.source
        self.currency = self.currency or event.currency
        self.customer = self.customer or event.customer_id

    @property
    def in_checkout(self) -> bool:
        """Whether the session counts for friction: it reached checkout or met friction on the way."""
        return self.reach[CheckoutStep.CHECKOUT] is not None or bool(self.payment_failures or self.form_errors)


class _Carts:
    """Carts from ``add_to_cart`` on, by the shop's cart id (else the session); a purchase ends a cart."""

    def __init__(self) -> None:
        self.open: dict[str, list[float | None]] = {}
        self.done: list[list[float | None]] = []
        self.sticky: dict[str, str] = {}  # session -> the shop's cart id, kept as the sessionizer keeps it

    def follow(self, event: Event) -> None:
        if event.cart_id is not None:
            self.sticky[event.session_id] = event.cart_id

    def reach(self, sid: str, step: int, ts: float, *, purchase: bool) -> None:
        key = self.sticky.get(sid, sid)
        cart = self.open.setdefault(key, [None] * _N)
        if cart[step] is None:
            cart[step] = ts
        if purchase:
            self.done.append(self.open.pop(key))
            self.sticky.pop(sid, None)  # a purchase ends the cart, and the session's cart id with it

    def steps(self, steps: Sequence[int]) -> list[CartStep]:
        cart_steps = [s for s in steps if s >= CheckoutStep.CART]
        cart_reach = [_reaches(c) for c in self.done + list(self.open.values())]
        cart_counts = [sum(1 for r in cart_reach if r[s] is not None) for s in cart_steps]
        return [
            CartStep(step=STEPS[s], carts=n, conversion=_share(n, cart_counts[i - 1]) if i else None)
            for i, (s, n) in enumerate(zip(cart_steps, cart_counts, strict=True))
        ]


class _Scan:
    """One pass over the events: the sessions, the carts, the steps recorded and the friction counted."""

    def __init__(self) -> None:
        self.visits: dict[str, _Visit] = {}
        self.carts = _Carts()
        self.recorded: set[int] = set()
        self.codes: Counter[str] = Counter()
        self.fields: Counter[str] = Counter()

    def add(self, event: Event) -> None:
        ts: float = event.ts  # type: ignore[assignment]  # load_events made it a float
        sid = event.session_id
        visit = self.visits.get(sid)
        if visit is None:
            visit = self.visits[sid] = _Visit(ts)
        visit.describe(event)
        self.carts.follow(event)
        kind = type(event)
        if kind is PaymentFailed:
            visit.payment_failures += 1
            self.codes[event.error_code or "unknown"] += 1  # type: ignore[union-attr]
        elif kind is FormError:
            visit.form_errors += 1
            self.fields[event.form_field or "unknown"] += 1  # type: ignore[union-attr]
        step = kind.step
        if step is None:
            return
        self.recorded.add(step)
        if visit.explicit[step] is None:
            visit.explicit[step] = ts
        if step >= CheckoutStep.CART:
            self.carts.reach(sid, step, ts, purchase=kind is Purchase)


def _reaches(explicit: Sequence[float | None]) -> list[float | None]:
    """When each step was reached: the first event of it or of any later step."""
    reach: list[float | None] = [None] * _N
    soonest: float | None = None
    for step in range(_N - 1, -1, -1):
        t = explicit[step]
        if t is not None and (soonest is None or t < soonest):
            soonest = t
        reach[step] = soonest
    return reach


def funnel(
    log: EventLog, *, config: Config | None = None, scorer: Scorer | None = None, min_entrants: int = MIN_ENTRANTS
) -> Funnel:
    """The funnel of the events of ``log`` (:func:`~recoverkit.analytics.load_events`); ``config`` and ``scorer``
    are the engine's, for the abandonment figures (:func:`~recoverkit.analytics.abandonment`); ``min_entrants``
    is the least number of sessions entering a step for it to be weighed as a bottleneck."""
    if min_entrants < 1:
        raise ValueError(f"min_entrants={min_entrants!r}; expected at least 1 session")
    scan = _Scan()
    for event in log.events:
        scan.add(event)
    steps = sorted(scan.recorded)
    every = list(scan.visits.values())
    for visit in every:
        visit.reach = _reaches(visit.explicit)
    return Funnel(
        source=log.source,
        sessions=len(scan.visits),
        steps=_steps(every, steps, min_entrants),
        unrecorded=[STEPS[s] for s in range(_N) if s not in scan.recorded],
        carts=scan.carts.steps(steps),
        friction=_friction(every, scan.codes, scan.fields),
        segments=_segments(every, steps, min_entrants),
        abandonment=abandonment(log.events, config=config, scorer=scorer),
    )


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _counts(visits: Sequence[_Visit], steps: Sequence[int]) -> list[int]:
    return [sum(1 for v in visits if v.reach[s] is not None) for s in steps]


def _worst(counts: Sequence[int], steps: Sequence[int], least: int) -> int | None:
    """The index of the step with the largest drop-off from the cart on (see the module docstring), if any."""
    drops = {
        i: 1 - counts[i] / counts[i - 1]
        for i in range(1, len(steps))
        if counts[i - 1] >= least and steps[i - 1] >= CheckoutStep.CART
    }
    if not drops:  # no cart step in the data: weigh every step
        drops = {i: 1 - counts[i] / counts[i - 1] for i in range(1, len(steps)) if counts[i - 1] >= least}
    return max(drops, key=lambda i: (drops[i], -i)) if drops and max(drops.values()) > 0 else None


def _times(visits: Sequence[_Visit], before: int, step: int) -> list[float]:
    """Seconds from ``before`` to ``step``, for the sessions that came to ``before`` by its own event."""
    times = []
    for v in visits:
        start, end = v.explicit[before], v.reach[step]
        if start is not None and end is not None and start == v.reach[before]:
            times.append(end - start)
    return times


def _steps(visits: Sequence[_Visit], steps: Sequence[int], least: int) -> list[FunnelStep]:
    counts = _counts(visits, steps)
    worst = _worst(counts, steps, least)
    rows = []
    for i, step in enumerate(steps):
        if i == 0:
            rows.append(FunnelStep(step=STEPS[step], sessions=counts[0]))
            continue
        times = _times(visits, steps[i - 1], step)
        conversion = _share(counts[i], counts[i - 1])
        rows.append(
            FunnelStep(
                step=STEPS[step], sessions=counts[i], conversion=conversion,
                drop_off=None if conversion is None else 1 - conversion, dropped=counts[i - 1] - counts[i],
                median_seconds=percentile(times, 50), p90_seconds=percentile(times, 90), timed=len(times),
                bottleneck="largest drop-off" if i == worst else None,
            )
        )
    return rows


def _friction(visits: Sequence[_Visit], codes: Counter[str], fields: Counter[str]) -> Friction:
    checkout = [v for v in visits if v.in_checkout]
    failed = [v for v in checkout if v.payment_failures]
    errors = [v for v in checkout if v.form_errors]
    smooth = [v for v in checkout if not (v.payment_failures or v.form_errors)]

    def bought(group: Sequence[_Visit]) -> float | None:
        return _share(sum(1 for v in group if v.explicit[CheckoutStep.PURCHASE] is not None), len(group))

    return Friction(
        checkout_sessions=len(checkout), payment_failure_sessions=len(failed),
        payment_failures=sum(v.payment_failures for v in checkout),
        payment_failure_rate=_share(len(failed), len(checkout)),
        form_error_sessions=len(errors), form_errors=sum(v.form_errors for v in checkout),
        form_error_rate=_share(len(errors), len(checkout)), payment_error_codes=dict(codes.most_common(_TOP_CODES)),
        form_fields=dict(fields.most_common(_TOP_CODES)), purchase_rate_after_payment_failure=bought(failed),
        purchase_rate_after_form_error=bought(errors), purchase_rate_without_friction=bought(smooth),
    )  # fmt: skip


def _segment_of(visit: _Visit, dimension: str, first_seen: dict[str, float]) -> str:
    if dimension == "customer":
        if visit.customer is None:
            return "anonymous"
        return "returning" if visit.first_at > first_seen[visit.customer] else "new"
    value = getattr(visit, dimension)
    return "unknown" if value is None else str(value)


def _groups(visits: Sequence[_Visit], dimension: str, first_seen: dict[str, float]) -> dict[str, list[_Visit]]:
    """The sessions by their value of ``dimension``: the largest :data:`SEGMENT_VALUES`, the rest as ``other``."""
    groups: dict[str, list[_Visit]] = defaultdict(list)
    for v in visits:
        groups[_segment_of(v, dimension, first_seen)].append(v)
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    kept = dict(ranked[:SEGMENT_VALUES])
    if len(ranked) > SEGMENT_VALUES:
        kept["other"] = [v for _, group in ranked[SEGMENT_VALUES:] for v in group]
    return kept


def _flagged(counts: Sequence[int], overall: Sequence[int], steps: Sequence[int], least: int) -> list[str]:
    """The steps where a segment drops off significantly more than the rest of the sessions."""
    flagged = []
    for i in range(1, len(steps)):
        n1, n2 = counts[i - 1], overall[i - 1] - counts[i - 1]
        k1, k2 = n1 - counts[i], n2 - (overall[i] - counts[i])
        if n1 >= least and n2 >= least and newcombe_interval(k1, n1, k2, n2)[0] > 0:
            flagged.append(STEPS[steps[i]])
    return flagged


def _segments(visits: Sequence[_Visit], steps: Sequence[int], least: int) -> list[SegmentRow]:
    first_seen: dict[str, float] = {}
    for v in visits:
        if v.customer is not None:
            first_seen[v.customer] = min(v.first_at, first_seen.get(v.customer, v.first_at))
    overall = _counts(visits, steps)
    rows = []
    for dimension in DIMENSIONS:
        for value, group in _groups(visits, dimension, first_seen).items():
            counts = _counts(group, steps)
            checkout = [v for v in group if v.in_checkout]
            rows.append(
                SegmentRow(
                    dimension=dimension, value=value, sessions=counts,
                    conversion=_share(counts[-1], counts[0]) if counts else None,
                    payment_failure_rate=_share(sum(1 for v in checkout if v.payment_failures), len(checkout)),
                    form_error_rate=_share(sum(1 for v in checkout if v.form_errors), len(checkout)),
                    bottlenecks=_flagged(counts, overall, steps, least),
                )
            )
    return rows
