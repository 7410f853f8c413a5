"""Small statistics the reports need, in plain Python: score intervals for proportions and their difference,
and percentiles.

The intervals are the ones Newcombe (1998) recommends for the sizes a shop's experiment has (tens to thousands
of carts, rates of a few percent): the **Wilson score interval** for one proportion, and for a difference of two
independent proportions his "method 10", the **hybrid score interval** built from the two Wilson intervals.
Unlike the textbook Wald interval (p ± z·√(p(1-p)/n)) neither collapses to a zero-width interval when a group has
no conversions at all, and their coverage stays close to the nominal level for small samples.

Reference: R. G. Newcombe, "Interval estimation for the difference between independent proportions: comparison
of eleven methods", Statistics in Medicine 17 (1998) 873-890.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Final

__all__ = ["DEFAULT_CONFIDENCE", "newcombe_interval", "percentile", "wilson_interval", "z_for"]

#: The confidence level of every interval in a report unless the caller asks for another.
DEFAULT_CONFIDENCE: Final = 0.95


def z_for(confidence: float) -> float:
    """The two-sided standard normal quantile for ``confidence`` (1.959963984540054 for 0.95).

    >>> round(z_for(0.95), 6)
    1.959964
    """
    if not 0.0 < confidence < 1.0:  # also refuses NaN
        raise ValueError(f"confidence={confidence!r}; expected a level strictly between 0 and 1, such as 0.95")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _check_counts(successes: int, trials: int) -> None:
    if not (0 <= successes <= trials):
        raise ValueError(f"expected 0 <= successes <= trials, got {successes} successes of {trials} trials")


def wilson_interval(successes: int, trials: int, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval for the proportion ``successes / trials``; ``(0.0, 1.0)`` for no trials.

    >>> low, high = wilson_interval(0, 20)
    >>> low, round(high, 4)
    (0.0, 0.1611)
    """
    _check_counts(successes, trials)
    if trials == 0:
        return 0.0, 1.0
    z = z_for(confidence)
    n, p = float(trials), successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # Exact at the edges: rounding must not leave 0 successes with a lower bound of 1e-17.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def newcombe_interval(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float, float]:
    """Newcombe's hybrid score interval for ``p_a - p_b``, the difference of two independent proportions.

    With ``(l_a, u_a)`` and ``(l_b, u_b)`` the Wilson intervals of the two proportions and ``d = p_a - p_b``::

        low  = d - sqrt((p_a - l_a)^2 + (u_b - p_b)^2)
        high = d + sqrt((u_a - p_a)^2 + (p_b - l_b)^2)

    Always inside [-1, 1] and always contains ``d``. A group without trials has no estimate: ``(-1.0, 1.0)``.

    Newcombe's own worked example, 56/70 against 48/80:

    >>> low, high = newcombe_interval(56, 70, 48, 80)
    >>> round(low, 4), round(high, 4)
    (0.0524, 0.3339)
    """
    _check_counts(successes_a, trials_a)
    _check_counts(successes_b, trials_b)
    if trials_a == 0 or trials_b == 0:
        return -1.0, 1.0
    p_a, p_b = successes_a / trials_a, successes_b / trials_b
    l_a, u_a = wilson_interval(successes_a, trials_a, confidence)
    l_b, u_b = wilson_interval(successes_b, trials_b, confidence)
    d = p_a - p_b
    low = d - math.sqrt((p_a - l_a) ** 2 + (u_b - p_b) ** 2)
    high = d + math.sqrt((u_a - p_a) ** 2 + (p_b - l_b) ** 2)
    return max(-1.0, min(low, d)), min(1.0, max(high, d))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) of ``values`` by linear interpolation between the closest ranks (the
    default of numpy and of spreadsheets' PERCENTILE.INC); ``None`` for no values.

    >>> percentile([1, 2, 3, 4], 50), percentile([10, 20, 30, 40, 50], 90)
    (2.5, 46.0)
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q={q!r}; expected a percentile between 0 and 100")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    below = math.floor(rank)
    above = min(below + 1, len(ordered) - 1)
    fraction = rank - below
    return float(ordered[below] + (ordered[above] - ordered[below]) * fraction)
