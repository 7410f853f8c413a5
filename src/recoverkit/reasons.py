"""Why a cart was left: the default reason inference, rules over a cart's :class:`~recoverkit.items.Features`.

A reason is only as good as the signal behind it, so the rules run in order of how certain each signal is and
answer ``"unknown"`` when none is there:

===================  =====================================================================================
``payment_failure``  a ``payment_failed`` was seen: the shop's payment provider said so.
``form_friction``    the pages said the checkout was hard going: ``dead_clicks`` clicks that did nothing (3), a
                     page the shop measured as slow, or one checkout form page that took ``slow_form_seconds``
                     (4 minutes; people fill in a checkout page in 1-2) or more. Before shipping cost: these
                     are what the shopper went through, where a high shipping share is only what every shopper
                     at that step saw.
``shipping_cost``    the cart got no further than the shipping step, and shipping was at least
                     ``shipping_shock_ratio`` (10%) of the cart's value when the shopper saw it. A shopper who
                     went on to enter payment details accepted the cost: the cost is not why they left.
``form_friction``    a form rejected input (``form_error``). After shipping cost: a shopper who got past the
                     rejected form to the shipping step had overcome it.
``price_comparison`` the cart got no further than the checkout's first page, and the shopper went elsewhere to
                     look: ``tab_aways`` (2) or ``hidden_seconds`` (60 s) away from the shop; or, before
                     checkout, ``item_views`` of 3 per cart line or more.
``unknown``          none of the above.
===================  =====================================================================================

The thresholds were set by reasoning about what each behaviour looks like (the figures in brackets), and the
order of the rules checked on synthetic shops with planted causes, on training seeds kept apart from the ones
``benchmarks/eval_reasons.py`` reports (this order: macro-F1 0.855 there; every friction signal before shipping
cost 0.845, every one after it 0.828).
Its per-cause precision and recall are in ``docs/scoring.md`` ("Reasons"). Most signals beyond
``payment_failed`` and ``form_error`` come from the shop's ``checkout_signal`` events (``docs/events.md``): a
shop that sends none gets reasons from its other events only, and more ``unknown``.
"""

from __future__ import annotations

from typing import Final

import msgspec

from .events import CheckoutStep
from .items import Features, Reason

__all__ = ["ReasonRules", "infer_reason"]


class ReasonRules(msgspec.Struct, frozen=True, kw_only=True):
    """The thresholds of the default reason rules (see the module docstring for what each one means)."""

    shipping_shock_ratio: float = 0.1
    dead_clicks: int = 3
    slow_form_seconds: float = 240.0
    tab_aways: int = 2
    hidden_seconds: float = 60.0
    item_views_per_line: int = 3

    def reason(self, f: Features) -> Reason:
        """The most likely reason ``f``'s cart was left, in order of how certain the signal is."""
        if f.payment_failures:
            return "payment_failure"
        if f.dead_clicks >= self.dead_clicks or f.slow_steps or f.longest_form_step >= self.slow_form_seconds:
            return "form_friction"
        step = f.step
        if step == CheckoutStep.SHIPPING and f.shipping_ratio >= self.shipping_shock_ratio:
            return "shipping_cost"
        if f.form_errors:
            return "form_friction"
        if step <= CheckoutStep.CHECKOUT and (f.tab_aways >= self.tab_aways or f.hidden_seconds >= self.hidden_seconds):
            return "price_comparison"
        if step <= CheckoutStep.CART and f.item_views >= self.item_views_per_line * max(f.lines, 1):
            return "price_comparison"
        return "unknown"


_DEFAULT: Final = ReasonRules()


def infer_reason(features: Features, rules: ReasonRules = _DEFAULT) -> Reason:
    """The default reason for a cart with ``features`` (what :class:`~recoverkit.score.DefaultScorer` answers).

    A shop's own :class:`~recoverkit.score.Scorer` may call it to keep the default reasons beside its own
    probability.
    """
    return rules.reason(features)
