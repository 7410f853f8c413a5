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

**The "browse" mix** (``mix="browse"``) is a shop's traffic as its analytics sees it, for throughput benchmarks:
every session lands on a ``page_view`` and looks at 1-16 more pages, about a third of them product pages
(``view_item``); 16% of sessions that saw a product add to cart (about 12% of all sessions), 40% of those check
out (the funnel above from there), and 10% of the carts left come back to buy. So about 63% of events are page
views and 26% product views, about three quarters of carts are abandoned, and about 3% of sessions end in a
purchase (0.4% of events). :func:`write_events` writes the first
``count`` events of it (or of the funnel) to a file, at any size.

Memory stays flat however many sessions are asked for: sessions are scripted when they start and merged by
time through a heap that holds only the sessions in progress (each lasts well under an hour) and the return
visits still to come.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
from collections.abc import Iterator
from typing import Final, Literal

from ._synthetic_causes import CAUSES, CausedShop
from ._synthetic_shop import MEAN_ARRIVAL_GAP, MIXES, RETURN_DELAY, Cart, Shop
from .events import Event, encode_event

__all__ = ["CAUSES", "Mix", "generate_events", "generate_jsonl", "write_events", "write_synthetic"]

#: Which shop :func:`generate_events` plays: ``"funnel"`` (the default: every session looks at products, a third
#: fill a cart) or ``"browse"`` (mostly page views; see the module docstring).
Mix = Literal["funnel", "browse"]

#: 2026-01-01 00:00 UTC.
DEFAULT_START: Final = 1_767_225_600.0
_EPOCH_MIN: Final = 946_684_800.0  # 2000-01-01 and 2100-01-01: the event contract's range for ts
_EPOCH_MAX: Final = 4_102_444_800.0

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
    mix: Mix = "funnel",
    causes: bool = False,
    truth: dict[str, str] | None = None,
) -> Iterator[Event]:
    """Yield the events of ``sessions`` shopping sessions in non-decreasing ``ts`` order.

    The first session starts at ``start`` (epoch seconds; 2026-01-01 00:00 UTC by default) and new ones
    follow about every 3 seconds, so 1,000 sessions span about 50 minutes plus the return visits, which
    come up to three days later. ``sessions`` counts return visits too. Session ids are ``s{k}``, cart ids
    ``k{k}``, order ids ``t{k}`` and customer ids ``c{n}``, numbered from 0 in order of creation. The same
    arguments give the same events; ``catalog_size`` products are the same whatever the seed. See the module
    docstring for the funnel, and for the ``"browse"`` ``mix``, whose events differ from the first session on.
    Memory use does not grow with ``sessions``.

    ``causes=True`` plays a shop whose carts are left for planted causes (shipping cost, payment failure, form
    friction, price comparison, or none), each with the behaviour it causes and the ``checkout_signal`` events a
    shop's pages send (see :mod:`recoverkit._synthetic_causes`); its events differ from the first cart on, and
    it has no ``"browse"`` mix. ``truth``, when given, is filled as the events are generated with the cause of
    every session that left its cart (``"none"`` for no cause), and ``"payment_failure"`` for sessions whose
    payment was declined before they bought: the generator's side output, which no event carries. It is
    complete once the iterator is exhausted.

    >>> events = list(generate_events(100, seed=1))
    >>> len(events), events[0].session_id, type(events[0]).__name__
    (578, 's0', 'Identify')
    >>> all(a.ts <= b.ts for a, b in zip(events, events[1:])) and events == list(generate_events(100, seed=1))
    True
    """
    _check_sizes(sessions, catalog_size)
    _check_shop(start, currency, mix, causes=causes, truth=truth)
    shop = CausedShop(seed, catalog_size, currency, truth) if causes else Shop(seed, catalog_size, currency, mix)
    return _generate(sessions, shop, float(start))


def _check_sizes(sessions: int, catalog_size: int) -> None:
    """Refuse a number :func:`generate_events` cannot play, naming the argument, its value and what was expected."""
    if isinstance(sessions, bool) or not isinstance(sessions, int) or sessions < 0:
        raise ValueError(f"sessions={sessions!r}; expected a whole number of sessions, 0 or more")
    if isinstance(catalog_size, bool) or not isinstance(catalog_size, int) or not 1 <= catalog_size <= 99_999:
        raise ValueError(f"catalog_size={catalog_size!r}; expected a whole number from 1 to 99999")


def _check_shop(start: float, currency: str, mix: str, *, causes: bool, truth: object) -> None:
    """Refuse a shop :func:`generate_events` cannot play, naming the argument, its value and what was expected."""
    if not (len(currency) == 3 and currency.isascii() and currency.isupper() and currency.isalpha()):
        raise ValueError(f"currency={currency!r}; expected an ISO 4217 code such as 'EUR'")
    if not (math.isfinite(start) and _EPOCH_MIN <= start <= _EPOCH_MAX - 365 * 86400):
        raise ValueError(f"start={start!r}; expected epoch seconds between 2000 and 2099")
    if mix not in MIXES:
        raise ValueError(f"mix={mix!r}; expected one of {', '.join(map(repr, MIXES))}")
    if causes and mix != "funnel":
        raise ValueError(f"mix={mix!r} with causes=True; expected mix='funnel' (the causes play out in checkout)")
    if truth is not None and not causes:
        raise ValueError("truth given with causes=False; expected causes=True (only planted causes are known)")


def _generate(sessions: int, shop: Shop, start: float) -> Iterator[Event]:
    rng = shop.rng
    low, high = math.log(RETURN_DELAY[0]), math.log(RETURN_DELAY[1])
    active: list[_Active] = []
    returns: list[tuple[float, int, Cart]] = []  # return visits still to come: (start, session, cart)
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
                left: Cart | None = None
            else:
                s, left = shop.start_session(k, new_due)
                next_new = new_due + rng.expovariate(1.0 / MEAN_ARRIVAL_GAP)
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
    mix: Mix = "funnel",
) -> Iterator[bytes]:
    """The events of :func:`generate_events` (same arguments), each encoded as one JSON line without newline.

    This is what a shop would send, ready for ``Engine.track`` or a file; :func:`write_synthetic` writes it.
    """
    encode = encode_event
    for event in generate_events(
        sessions, seed=seed, start=start, catalog_size=catalog_size, currency=currency, mix=mix
    ):
        yield encode(event)


def write_synthetic(path: str | os.PathLike[str], sessions: int, seed: int = 0) -> int:
    """Write :func:`generate_events` ``(sessions, seed=seed)`` to ``path`` as JSON lines; returns the count.

    The file is gzip-compressed when its name ends in ``.gz``, and byte-identical for the same arguments.
    """
    from .datasets import write_jsonl  # file handling lives with the other file formats

    return write_jsonl(generate_events(sessions, seed=seed), path)


def write_events(path: str | os.PathLike[str], count: int, *, mix: Mix = "browse", seed: int = 0) -> int:
    """Write the first ``count`` events of :func:`generate_events` ``(count, seed=seed, mix=mix)`` to ``path`` as
    JSON lines (gzip-compressed when the name ends in ``.gz``); returns ``count``.

    For throughput benchmarks at a given number of events (``recoverkit bench --write-events``): the events of a
    stretch of time, cut where the count is reached, so the last sessions are cut short too. Every session has
    at least one event, so ``count`` sessions always give enough. Written as it is generated, so memory stays
    flat at 10 million events as at 1,000; the same arguments give the same bytes.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count={count!r}; expected a whole number of events, 0 or more")
    from .datasets import write_jsonl

    return write_jsonl(itertools.islice(generate_events(count, seed=seed, mix=mix), count), path)
