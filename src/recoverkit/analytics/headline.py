"""The headline figures an owner reads first: what recovery brought back, at what rate, per recipient, what it
added against the holdout (with its interval), what the codes cost and who unsubscribed.

Every figure is of the period's cohort (the carts assigned in the period, :func:`~recoverkit.analytics.load_facts`)
and is computed from :func:`~recoverkit.analytics.recovery` and :func:`~recoverkit.analytics.uplift` of the same
facts, so that the headline and the details never disagree:

- **recovered revenue**: the value of the orders that recovered a cart (the attribution rule), per currency;
- **recovery rate**: carts recovered over carts that were sent at least one message;
- **revenue per recipient**: recovered revenue over the contacts sent at least one message about a cart in that
  currency (rounded to the minor unit);
- **incremental revenue**: against the shop-wide holdout, with its interval and verdict (``too_small``: the
  interval includes zero, or the holdout is too small; the figure is then not significant). ``None`` without a
  holdout or without order values: there is no honest figure to give;
- **discount cost**: the cost of the codes redeemed (known costs per currency; ``discount_cost_unknown`` counts
  codes whose cost the facts cannot tell: free shipping, or a percentage whose order is not found);
- **unsubscribes**: contacts of the cohort who withdrew their consent to a channel while one of their messages
  was pending on it (``cancelled_consent_withdrawn`` outcomes). The facts record a withdrawal only when it stopped
  a message: a contact who withdrew with nothing pending is not counted, so this is a lower bound.
"""

from __future__ import annotations

import msgspec

from ._facts import Facts
from .recovery import Recovery
from .uplift import Uplift, Verdict

__all__ = ["UNSUBSCRIBED", "Headline", "HeadlineMoney", "headline_figures"]

#: The message outcome recorded when a consent withdrawal stopped a pending message (route's ``Cancel`` reason).
UNSUBSCRIBED = "cancelled_consent_withdrawn"


class HeadlineMoney(msgspec.Struct, frozen=True, kw_only=True):
    """The money figures of one currency, in its minor units (see the module docstring): ``recipients`` is how
    many contacts were sent a message about a cart in ``currency``; ``incremental`` with ``low``..``high`` and
    ``verdict`` come from the shop-wide holdout (all ``None`` when there is none; the figures alone ``None`` when
    no recovered order in ``currency`` had a value to go by)."""

    currency: str
    recovered: int
    recipients: int
    per_recipient: int | None
    incremental: int | None
    low: int | None
    high: int | None
    verdict: Verdict | None
    discount_cost: int


class Headline(msgspec.Struct, frozen=True, kw_only=True):
    """The headline of one period (see the module docstring); money per currency in ``money``, never summed
    across currencies. ``carts`` is the size of the cohort (carts routed to a flow in the period): 0 means the
    period has no facts at all, and nothing to compare with."""

    carts: int
    recipients: int
    messaged_carts: int
    recovered_carts: int
    recovery_rate: float | None
    unsubscribes: int
    codes_redeemed: int
    discount_cost_unknown: int
    revenue_unknown: int
    money: list[HeadlineMoney]


def headline_figures(facts: Facts, found: Recovery, measured: Uplift) -> Headline:
    """The headline of ``facts``, from their :func:`~recoverkit.analytics.recovery` ``found`` and
    :func:`~recoverkit.analytics.uplift` ``measured`` (see the module docstring)."""
    currency_of = {a.cart_key: a.currency or "?" for a in facts.assignments}
    recipients: dict[str, set[str]] = {}
    for o in facts.outcomes:
        if o.outcome == "sent":
            recipients.setdefault(currency_of.get(o.cart_key, "?"), set()).add(o.contact_key)
    total = found.total
    return Headline(
        carts=len(currency_of), recipients=len(set().union(*recipients.values())), messaged_carts=total.sent_carts,
        recovered_carts=total.recovered_carts,
        recovery_rate=total.recovered_carts / total.sent_carts if total.sent_carts else None,
        unsubscribes=len({o.contact_key for o in facts.outcomes if o.outcome == UNSUBSCRIBED}),
        codes_redeemed=total.codes_redeemed, discount_cost_unknown=total.discount_cost_unknown,
        revenue_unknown=total.revenue_unknown, money=_money(found, measured, recipients, set(currency_of.values())),
    )  # fmt: skip


def _money(
    found: Recovery, measured: Uplift, recipients: dict[str, set[str]], cart_currencies: set[str]
) -> list[HeadlineMoney]:
    """One :class:`HeadlineMoney` per currency of the cohort's carts, orders or codes."""
    top = next((r for r in measured.rows if r.flow == "*" and r.scope == "global"), None)
    incremental = {r.currency: r for r in top.revenue} if top is not None else {}
    total = found.total
    rows = []
    for currency in sorted({*total.recovered_revenue, *total.discount_cost, *recipients, *cart_currencies}):
        recovered = total.recovered_revenue.get(currency, 0)
        n = len(recipients.get(currency, ()))
        inc = incremental.get(currency)
        rows.append(
            HeadlineMoney(
                currency=currency, recovered=recovered, recipients=n, per_recipient=round(recovered / n) if n else None,
                incremental=inc.value if inc else None, low=inc.low if inc else None, high=inc.high if inc else None,
                verdict=top.verdict if top is not None else None, discount_cost=total.discount_cost.get(currency, 0),
            )
        )  # fmt: skip
    return rows
