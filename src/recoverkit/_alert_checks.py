"""What the purchase-path watcher counts, and the checks that judge a window of counts against the baseline.

Counted per minute of event time, under string keys:

- ``all``: every event; ``ev:<kind>``: the funnel's kinds (``ev:begin_checkout``, ``ev:purchase``, ...);
  ``page:<page_type>``: page views by page type.
- ``pay:fail`` and ``pay:code:<error_code>``: failed payments; ``form:<form_field>``: form errors by field.
- ``send:<channel>:all`` and ``send:<channel>:fail``: sends handed to a channel, and those that failed.

Page types, error codes, form fields and channels are shop-chosen text: each family keeps at most
:data:`MAX_LABELS` distinct values (later ones count as ``other``), so neither memory nor the alerts' text
grows with what a shop sends. The checks (one :class:`Finding` each when something is off):

========================  ===============================  ==========================================
check                     compares                         area (one incident per area at a time)
========================  ===============================  ==========================================
``payment_failures``      failed payments / attempts       ``payment``
``step_abandonment``      next step / this step, per step  ``payment`` (payment step), else ``checkout``
``form_errors``           errors on a field / checkouts    ``checkout``
``tracking``              a page type's share of events    ``tracking:<page type>``
``traffic``               all events per minute            ``traffic`` (needs a week of history)
``sends_failing``         failed sends / sends, per        ``channel:<name>``
                          channel
========================  ===============================  ==========================================

Each check is judged by how unlikely the window's count is if the baseline held: the tail of a Poisson count
with the usual mean (variance equal to the mean, more than a binomial's: counts of steps that follow one
another within a window are not a sample of one another), after dividing by the key's dispersion (events
that come in clumps vary more), below ``significance``; and by how far it is off (``min_ratio``).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable
from typing import Final

from ._alert_settings import AlertsConfig
from ._alert_stats import Baselines, poisson_lower, poisson_upper
from .events import (
    AddPaymentInfo,
    AddShippingInfo,
    AddToCart,
    BeginCheckout,
    Event,
    FormError,
    PageView,
    PaymentFailed,
    Purchase,
    ViewCart,
    ViewItem,
)

__all__ = ["MAX_LABELS", "Finding", "Labels", "evaluate", "keys_of"]

#: Distinct page types, error codes, form fields and channels kept per family; more are counted as ``other``.
MAX_LABELS: Final = 32
_MAX_LABEL_LENGTH: Final = 64

_KIND_KEYS: Final[dict[type, str]] = {
    ViewItem: "ev:view_item",
    AddToCart: "ev:add_to_cart",
    ViewCart: "ev:view_cart",
    BeginCheckout: "ev:begin_checkout",
    AddShippingInfo: "ev:add_shipping_info",
    AddPaymentInfo: "ev:add_payment_info",
    Purchase: "ev:purchase",
    PaymentFailed: "pay:fail",
}
# Steps of the funnel, in order: (key of the step, key of the next one, the step's name, who is counted).
_STEPS: Final = (
    ("ev:add_to_cart", "ev:begin_checkout", "cart step", "carts", "checkout"),
    ("ev:begin_checkout", "ev:add_shipping_info", "checkout step", "checkouts", "shipping"),
    ("ev:add_shipping_info", "ev:add_payment_info", "shipping step", "shipping choices", "payment"),
    ("ev:add_payment_info", "ev:purchase", "payment step", "payment attempts", "a purchase"),
)
# Kinds whose share of all events is watched for a sudden drop (tracking broken on those pages), besides page
# views by type. Later funnel steps are judged by step_abandonment instead: fewer of them is the funnel's news.
_TRACKED_KINDS: Final = ("ev:view_item", "ev:add_to_cart", "ev:view_cart", "ev:begin_checkout")
_ABSOLUTE_MARGIN: Final = 0.02  # a failure rate must also rise by 2 points: 0.1 % -> 0.3 % is not an incident


class Labels:
    """The distinct labels seen per family, at most :data:`MAX_LABELS` each (the rest are ``other``)."""

    def __init__(self) -> None:
        self._seen: dict[str, dict[str, str]] = {}

    def key(self, family: str, label: str) -> str:
        seen = self._seen.setdefault(family, {})
        key = seen.get(label)
        if key is None:
            key = f"{family}:{label[:_MAX_LABEL_LENGTH]}" if len(seen) < MAX_LABELS else f"{family}:other"
            if len(seen) < 4 * MAX_LABELS:  # remember a few overflowing labels too; beyond that, decide each time
                seen[label] = key
        return key

    def keys(self, family: str) -> set[str]:
        return set(self._seen.get(family, {}).values())


def keys_of(event: Event, labels: Labels) -> Iterable[str]:
    """The keys one event adds 1 to (besides ``all``)."""
    kind = _KIND_KEYS.get(type(event))
    if kind is not None:
        yield kind
        if isinstance(event, PaymentFailed):
            yield labels.key("pay:code", event.error_code or "unknown")
    elif isinstance(event, PageView):
        yield labels.key("page", event.page_type or "unknown")
    elif isinstance(event, FormError):
        yield labels.key("form", event.form_field or "unknown")


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """One check that failed on one window: what, how far off, and a sentence a shop owner can act on."""

    check: str
    area: str
    subject: str
    window: float
    observed: float
    usual: float
    count: int
    total: int
    p_value: float
    baseline: str
    explanation: str


def _pct(rate: float) -> str:
    value = rate * 100
    return f"{value:.0f} %" if value >= 10 or value == 0 else f"{value:.1f} %"


def _minutes(seconds: float) -> str:
    return f"in the last {seconds / 60:g} minutes"


class _Judge:
    """The tests every check shares, for one window at one time."""

    def __init__(self, window: Counter[str], seconds: float, ts: float, base: Baselines, cfg: AlertsConfig) -> None:
        self.window, self.seconds, self.ts, self.base, self.cfg = window, seconds, ts, base, cfg

    def rose(self, k: int, n: int, numerator: str, denominator: str) -> tuple[float, float, str] | None:
        """(p value, usual rate, baseline) when ``k`` of ``n`` is significantly and markedly above usual."""
        cfg = self.cfg
        if n < cfg.min_events or k < 3:
            return None
        usual = self.base.ratio(numerator, denominator, self.ts)
        if usual is None:
            return None
        rate, source = min(usual[0], 1.0), usual[1]
        if k / n < max(rate * cfg.min_ratio, rate + _ABSOLUTE_MARGIN):
            return None
        spread = self.base.dispersion(numerator, self.ts)
        p = poisson_upper(math.floor(k / spread), rate * n / spread)  # rounded towards the usual
        return (p, rate, source) if p <= cfg.significance else None

    def fell(self, k: int, n: int, numerator: str, denominator: str) -> tuple[float, float, str] | None:
        """(p value, usual rate, baseline) when ``k`` of ``n`` is significantly and markedly below usual."""
        cfg = self.cfg
        if n < cfg.min_events:
            return None
        usual = self.base.ratio(numerator, denominator, self.ts)
        if usual is None:
            return None
        rate, source = min(usual[0], 1.0), usual[1]
        if rate * n < cfg.min_events or k > rate * n / cfg.min_ratio:
            return None
        spread = self.base.dispersion(numerator, self.ts)
        p = poisson_lower(math.ceil(k / spread), rate * n / spread)  # rounded towards the usual
        return (p, rate, source) if p <= cfg.significance else None


def evaluate(
    window: Counter[str], seconds: float, ts: float, base: Baselines, cfg: AlertsConfig, labels: Labels
) -> list[Finding]:
    """Every check's finding on one window of ``seconds`` ending at ``ts`` (event time)."""
    judge = _Judge(window, seconds, ts, base, cfg)
    findings = [*_payments(judge), *_steps(judge), *_forms(judge, labels), *_tracking(judge, labels)]
    findings += _sends(judge, labels)
    traffic = _traffic(judge)
    if traffic is not None:
        findings.append(traffic)
    return findings


def _payments(judge: _Judge) -> list[Finding]:
    w = judge.window
    n, k = w["ev:add_payment_info"], w["pay:fail"]
    k = min(k, n)
    verdict = judge.rose(k, n, "pay:fail", "ev:add_payment_info")
    if verdict is None:
        return []
    p, usual, source = verdict
    text = f"payment step: {_pct(k / n)} of attempts failed {_minutes(judge.seconds)}, usually {_pct(usual)}"
    codes = _codes_up(judge, n)
    if codes:
        text += "; " + ", ".join(codes) + " up"
    return [Finding("payment_failures", "payment", "payment step", judge.seconds, k / n, usual, k, n, p, source, text)]


def _codes_up(judge: _Judge, attempts: int) -> list[str]:
    """The error codes (at most two) that account for the rise, most first."""
    rises = []
    for key, count in judge.window.items():
        if not key.startswith("pay:code:"):
            continue
        usual = judge.base.ratio(key, "ev:add_payment_info", judge.ts)
        expected = attempts * (usual[0] if usual is not None else 0.0)
        if count >= 2 * expected + 2:
            rises.append((count - expected, key.removeprefix("pay:code:")))
    return [code for _, code in sorted(rises, key=lambda rise: (-rise[0], rise[1]))[:2]]


def _steps(judge: _Judge) -> list[Finding]:
    findings, w = [], judge.window
    for step, following, name, who, reached in _STEPS:
        n = w[step]
        k = min(w[following], n)
        verdict = judge.fell(k, n, following, step)
        if verdict is None:
            continue
        p, usual, source = verdict
        area = "payment" if step == "ev:add_payment_info" else "checkout"
        text = (
            f"{name}: {_pct(1 - k / n)} of {who} did not go on to {reached} {_minutes(judge.seconds)}, "
            f"usually {_pct(1 - usual)}"
        )
        findings.append(Finding("step_abandonment", area, name, judge.seconds, k / n, usual, k, n, p, source, text))
    return findings


def _forms(judge: _Judge, labels: Labels) -> list[Finding]:
    findings, w = [], judge.window
    n = w["ev:begin_checkout"]
    for key in sorted(labels.keys("form")):
        k = w[key]
        verdict = judge.rose(k, n, key, "ev:begin_checkout")
        if verdict is None:
            continue
        p, usual, source = verdict
        field = key.removeprefix("form:")
        text = (
            f"checkout form: field {field} rejected {_pct(k / n)} of checkouts {_minutes(judge.seconds)}, "
            f"usually {_pct(usual)}"
        )
        findings.append(Finding("form_errors", "checkout", f"form field {field}", judge.seconds, k / n, usual, k, n, p,
                                source, text))
    return findings


def _tracking(judge: _Judge, labels: Labels) -> list[Finding]:
    findings, w = [], judge.window
    n = w["all"]
    for key in [*sorted(labels.keys("page")), *_TRACKED_KINDS]:
        k = w[key]
        verdict = judge.fell(k, n, key, "all")
        if verdict is None:
            continue
        p, usual, source = verdict
        page = f"page type {key.removeprefix('page:')}" if key.startswith("page:") else key.removeprefix("ev:")
        text = (
            f"tracking: {page}: {k} events {_minutes(judge.seconds)}, usually about {usual * n:.0f} "
            f"({_pct(usual)} of all events); tracking may be broken on these pages"
        )
        findings.append(Finding("tracking", f"tracking:{key}", page, judge.seconds, k / n, usual, k, n, p, source, text))
    return findings


def _traffic(judge: _Judge) -> Finding | None:
    cfg, k = judge.cfg, judge.window["all"]
    # What the same stretch of the week usually brings, hour by hour: a window across 08:00 on a shop that wakes
    # up at 08:00 expects the night's rate before and the day's after.
    expected, t = 0.0, judge.ts - judge.seconds
    while t < judge.ts:
        until = min(judge.ts, (t // 3600 + 1) * 3600)
        per_minute = judge.base.weekly_rate("all", t)
        if per_minute is None:
            return None
        expected += per_minute * (until - t) / 60
        t = until
    if expected < cfg.min_events or k > expected / cfg.min_ratio:
        return None
    spread = judge.base.dispersion("all", judge.ts)
    p = poisson_lower(math.ceil(k / spread), expected / spread)
    if p > cfg.significance:
        return None
    text = (
        f"tracking: {k} events {_minutes(judge.seconds)}, usually about {expected:.0f} at this hour of the week; "
        "tracking may be broken"
    )
    return Finding("traffic", "traffic", "all events", judge.seconds, k / expected, 1.0, k, round(expected), p,
                   "hour of week", text)


def _sends(judge: _Judge, labels: Labels) -> list[Finding]:
    findings, w = [], judge.window
    for key in sorted(labels.keys("send")):
        channel, failed, sends = key.removeprefix("send:"), f"{key}:fail", f"{key}:all"
        k, n = w[failed], w[sends]
        verdict = judge.rose(k, n, failed, sends)
        if verdict is None:
            continue
        p, usual, source = verdict
        text = f"channel {channel}: {_pct(k / n)} of sends failed {_minutes(judge.seconds)}, usually {_pct(usual)}"
        findings.append(Finding("sends_failing", f"channel:{channel}", f"channel {channel}", judge.seconds, k / n,
                                usual, k, n, p, source, text))
    return findings
