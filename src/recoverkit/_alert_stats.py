"""The arithmetic of the purchase-path watcher: Poisson tails, and baselines that remember by hour of the week.

Nothing here knows about events; :mod:`recoverkit._alert_checks` names what is counted.
"""

from __future__ import annotations

import math
from collections import Counter
import itertools
from typing import Final

__all__ = ["HOURS_PER_WEEK", "MINUTES", "WARM_UP", "Baselines", "hour_of_week", "poisson_lower", "poisson_upper"]

#: The key every learnt minute adds 1 to, so a count per minute can be read back from the sums.
MINUTES: Final = "minutes"

HOURS_PER_WEEK: Final = 168
_WEEK: Final = 7 * 86_400
#: Minutes a baseline must have learnt before it is trusted (a weekly one: half that per hour, over past weeks).
WARM_UP: Final = 120
_MONDAY: Final = 4 * 86_400  # the epoch fell on a Thursday: hour-of-week 0 is Monday 00:00 UTC
_TAIL_STOP: Final = 1e-12  # stop summing a tail once its terms no longer matter at this relative size


def _roll(past: float, current: float, weeks: int) -> float:
    """The sum of earlier weeks seen ``weeks`` (>= 1) weeks after ``current``'s week: each week halves it."""
    return (past * 0.5 + current) * 0.5 ** (weeks - 1)


def hour_of_week(ts: float) -> int:
    """0 for Monday 00:00-00:59 UTC, 167 for Sunday 23:00-23:59 UTC."""
    return int((ts - _MONDAY) // 3600) % HOURS_PER_WEEK


class Baselines:
    """What is usual, per counted key: a recent baseline and one per hour of the week.

    The recent one is an exponentially weighted sum of every minute learnt (half-life ``half_life`` seconds);
    each hour of the week keeps a sum of the minutes learnt in that hour, halved every week, so last week
    weighs twice the week before. Sums are decayed lazily, when a key is read or learnt.
    """

    def __init__(self, half_life: float, min_baseline: float) -> None:
        self._decay_per_minute = 0.5 ** (60.0 / half_life)
        self._min = min_baseline
        self._recent: dict[str, tuple[float, int]] = {}  # key -> (sum, minute it was decayed to)
        self._squares: dict[str, tuple[float, int]] = {}  # key -> (sum of squared counts per minute, minute)
        # (key, hour of week) -> (sum of earlier weeks, sum of the latest week learnt, that week): only earlier
        # weeks are a baseline for an hour; the minutes of this week's hour are what is being judged.
        self._weekly: dict[tuple[str, int], tuple[float, float, int]] = {}

    def learn(self, minute: int, counts: Counter[str]) -> None:
        """Add the counts of ``minute`` (minutes since the epoch); minutes must come in increasing order."""
        decay, recent, weekly = self._decay_per_minute, self._recent, self._weekly
        how = hour_of_week(minute * 60.0)
        week = (minute * 60 - _MONDAY) // _WEEK
        squares = self._squares
        for key, count in itertools.chain(counts.items(), ((MINUTES, 1),)):
            value, at = recent.get(key, (0.0, minute))
            recent[key] = (value * decay ** (minute - at) + count, minute)
            value, at = squares.get(key, (0.0, minute))
            squares[key] = (value * decay ** (minute - at) + count * count, minute)
            slot = (key, how)
            past, current, seen = weekly.get(slot, (0.0, 0.0, week))
            if seen < week:  # a new week in this hour: last week's sum joins the past, halved per week since
                past, current = _roll(past, current, week - seen), 0.0
            weekly[slot] = (past, current + count, week)

    def _recent_sum(self, key: str, minute: int) -> float:
        value, at = self._recent.get(key, (0.0, minute))
        return float(value * self._decay_per_minute ** (minute - at))

    def _weekly_sum(self, key: str, ts: float) -> float:
        """The decayed sum of ``key`` in the hour of the week of ``ts``, over the weeks before that of ``ts``."""
        week = (int(ts) - _MONDAY) // _WEEK
        past, current, seen = self._weekly.get((key, hour_of_week(ts)), (0.0, 0.0, week))
        return past if seen >= week else _roll(past, current, week - seen)

    def ratio(self, numerator: str, denominator: str, ts: float) -> tuple[float, str] | None:
        """The usual ``numerator / denominator`` at ``ts`` and where it comes from ("hour of week" or
        "recent"), or ``None`` while neither baseline is trusted yet: a baseline needs ``min_baseline`` of the
        denominator and :data:`WARM_UP` minutes learnt (a few minutes of a busy shop hold enough events, but
        not enough of the rarer ones). Half an event is added to what was seen (and one to the denominator), so
        a step that never failed yet has a small usual failure rate, not none: failing then is news, not infinitely
        unlikely."""
        weekly_den = self._weekly_sum(denominator, ts)
        if weekly_den >= self._min and self._weekly_sum(MINUTES, ts) >= WARM_UP / 2:
            return (self._weekly_sum(numerator, ts) + 0.5) / (weekly_den + 1), "hour of week"
        minute = int(ts // 60)
        recent_den = self._recent_sum(denominator, minute)
        if recent_den >= self._min and self._recent_sum(MINUTES, minute) >= WARM_UP:
            return (self._recent_sum(numerator, minute) + 0.5) / (recent_den + 1), "recent"
        return None

    def dispersion(self, key: str, ts: float) -> float:
        """How much more ``key``'s count per minute varies than a Poisson count would (its variance over its mean,
        at least 1), from the recent baseline. Events that come in clumps (1-8 product views a session, 1-3
        add-to-carts) vary more than their number says; the checks divide counts by this before testing them."""
        minute = int(ts // 60)
        minutes = self._recent_sum(MINUTES, minute)
        total = self._recent_sum(key, minute)
        if minutes < WARM_UP or total <= 0:
            return 1.0
        value, at = self._squares.get(key, (0.0, minute))
        mean = total / minutes
        variance = float(value * self._decay_per_minute ** (minute - at)) / minutes - mean * mean
        return max(1.0, variance / mean)

    def weekly_rate(self, key: str, ts: float) -> float | None:
        """The usual count of ``key`` per minute in the hour of the week of ``ts``, once that hour has been
        learnt for a whole hour in earlier weeks, else ``None``."""
        minutes = self._weekly_sum(MINUTES, ts)
        if minutes < WARM_UP / 2:
            return None
        return self._weekly_sum(key, ts) / minutes


def poisson_lower(k: int, mean: float) -> float:
    """P(X <= k) for X ~ Poisson(mean), summed from ``k`` down while the terms still count.

    >>> round(poisson_lower(0, 2.0), 6)
    0.135335
    """
    if k < 0:
        return 0.0
    if mean <= 0 or k >= mean:  # at or above the mean: never a significant drop
        return 1.0
    log_mean, total = math.log(mean), 0.0
    for i in range(k, -1, -1):
        term = math.exp(-mean + i * log_mean - math.lgamma(i + 1))
        total += term
        if term < total * _TAIL_STOP:
            break
    return min(total, 1.0)


def poisson_upper(k: int, mean: float) -> float:
    """P(X >= k) for X ~ Poisson(mean), summed from ``k`` up while the terms still count.

    >>> round(poisson_upper(2, 0.5), 6)
    0.090204
    """
    if k <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    if k <= mean:  # at or below the mean: never a significant rise
        return 1.0
    log_mean, total, i = math.log(mean), 0.0, k
    while True:
        term = math.exp(-mean + i * log_mean - math.lgamma(i + 1))
        total += term
        if term < total * _TAIL_STOP:
            return min(total, 1.0)
        i += 1
