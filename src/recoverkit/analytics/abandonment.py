"""Why carts were left, as the engine itself decides it: the events replayed through the sessionize and score
stages in event time, not a second definition of abandonment.

The stages are the engine's own (:class:`~recoverkit.sessionize.Sessionize` with ``event_time=True`` and
:class:`~recoverkit.score.Score`), driven directly: the same timers (``abandon_after``, exit intent, failed
payment), the same stitching of sessions to customers, the same likely reasons. At the end of the events the
watermark moves to the last event time, as a replay's does: carts still open then are censored (counted in
``open_at_end``), not abandoned.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Final

import msgspec

from ..config import Config
from ..events import CheckoutStep, Event
from ..score import Score, Scored, Scorer
from ..sessionize import Abandoned, Converted, Sessionize
from ._facts import add_money

__all__ = ["Abandonment", "ReasonRow", "abandonment"]

#: Events handed to the stages at a time; any size gives the same result in event time (timers due before an
#: event fire before it is handled), this one keeps the output lists short.
_CHUNK: Final = 4096
_STEP_NAMES: Final = {
    CheckoutStep.BROWSE: "browse", CheckoutStep.CART: "cart", CheckoutStep.CHECKOUT: "checkout",
    CheckoutStep.SHIPPING: "shipping", CheckoutStep.PAYMENT: "payment", CheckoutStep.PURCHASE: "purchase",
}  # fmt: skip


class ReasonRow(msgspec.Struct, frozen=True, kw_only=True):
    """Abandonments with one likely ``reason``: how many, their ``share`` of all, how many of those carts were
    bought later in the events (``came_back``), and the value left in them (minor units, per currency)."""

    reason: str
    abandonments: int
    share: float
    came_back: int
    value: dict[str, int]


class Abandonment(msgspec.Struct, frozen=True, kw_only=True):
    """What the engine made of the events' carts.

    ``carts`` is how many carts the sessionizer opened, ``abandonments`` how many times a cart was found
    abandoned (a cart that resumes and is left again counts twice), ``abandoned_carts`` how many distinct carts
    that was; ``by_trigger`` what gave it away, ``by_step`` how far the cart had got. ``converted_own`` carts
    were bought in their session, ``converted_elsewhere`` closed by their customer's purchase in another;
    ``came_back`` abandoned carts were bought afterwards anyway (without any message: these are events);
    ``open_at_end`` carts were still open when the events ended (censored).
    """

    carts: int
    abandonments: int
    abandoned_carts: int
    by_reason: list[ReasonRow]
    by_trigger: dict[str, int]
    by_step: dict[str, int]
    converted_own: int
    converted_elsewhere: int
    came_back: int
    open_at_end: int


def abandonment(events: Sequence[Event], *, config: Config | None = None, scorer: Scorer | None = None) -> Abandonment:
    """Replay ``events`` (sorted by time, each ``ts`` a float, as :func:`~recoverkit.analytics.load_events`
    returns them) through the engine's sessionize and score stages and count what they decided.

    ``config`` gives the timers (``abandon_after``, ...) and the shipping-shock ratio; ``scorer`` a shop's
    model, as the engine would use it (the default model otherwise).
    """
    config = config if config is not None else Config()
    sessionize = Sessionize(config, event_time=True)
    score = Score(scorer, shipping_shock_ratio=config.shipping_shock_ratio)
    out: list[object] = []
    for i in range(0, len(events), _CHUNK):
        sessionize.handle(events[i : i + _CHUNK], out)
    if events:
        sessionize.advance(float(events[-1].ts), out)  # type: ignore[arg-type]  # ts is a float here
    handed: list[object] = []
    score.handle([x for x in out if type(x) is Abandoned], handed)
    converted = [x for x in out if type(x) is Converted]
    counts = _Counts(converted)
    for item in handed:
        if type(item) is Scored:
            counts.add(item)
    total = sum(counts.reasons.values())
    return Abandonment(
        carts=sessionize.counts["carts"], abandonments=total, abandoned_carts=len(counts.abandoned_carts),
        by_reason=counts.rows(total), by_trigger=dict(sorted(counts.triggers.items())),
        by_step=dict(sorted(counts.steps.items())), converted_own=sum(1 for c in converted if c.own),
        converted_elsewhere=sum(1 for c in converted if not c.own), came_back=len(counts.came_back),
        open_at_end=sessionize.open_carts(),
    )  # fmt: skip


class _Counts:
    """The scored abandonments counted by reason, trigger and step, with the carts bought afterwards anyway."""

    def __init__(self, converted: Sequence[Converted]) -> None:
        self.conversions: dict[str, list[float]] = defaultdict(list)
        for c in converted:
            self.conversions[c.cart_key].append(c.at)
        self.reasons: Counter[str] = Counter()
        self.back: Counter[str] = Counter()
        self.values: dict[str, dict[str, int]] = defaultdict(dict)
        self.triggers: Counter[str] = Counter()
        self.steps: Counter[str] = Counter()
        self.abandoned_carts: set[str] = set()
        self.came_back: set[str] = set()

    def add(self, item: Scored) -> None:
        left = item.abandoned
        cart = left.cart
        self.reasons[item.reason] += 1
        self.triggers[left.trigger] += 1
        self.steps[_STEP_NAMES.get(cart.step, str(int(cart.step)))] += 1
        add_money(self.values[item.reason], cart.currency, cart.value)
        self.abandoned_carts.add(cart.cart_key)
        if any(at > left.at for at in self.conversions.get(cart.cart_key, ())):
            self.back[item.reason] += 1
            self.came_back.add(cart.cart_key)

    def rows(self, total: int) -> list[ReasonRow]:
        """One row per reason, the most frequent first."""
        return [
            ReasonRow(
                reason=reason, abandonments=n, share=n / total, came_back=self.back[reason],
                value=dict(sorted(self.values[reason].items())),
            )
            for reason, n in sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
