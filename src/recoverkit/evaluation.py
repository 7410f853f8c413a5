"""How good a conversion score is: auROC, auPR, Brier score and a calibration table, in pure Python.

Used by ``recoverkit train`` and ``recoverkit evaluate`` (no scikit-learn needed to evaluate a model file) and by
``benchmarks/eval_score.py``. The figures agree with scikit-learn's ``roc_auc_score``,
``average_precision_score`` and ``brier_score_loss`` (the tests check it): tied scores count as half
right in auROC, and auPR is average precision over the distinct scores.

- **auROC**: the chance that a converting cart is scored above a non-converting one (0.5 is a coin).
- **auPR** (average precision): precision averaged over the converting carts as the threshold goes down; a
  score that knows nothing gets the base rate.
- **Brier score**: the mean squared difference between the probability and what happened (0 or 1); lower is
  better, and always guessing the base rate ``r`` gets ``r (1 - r)``.
- **Calibration table**: the carts in ``bins`` groups of about equal size by score; in each, the mean
  predicted probability next to the share that converted. A calibrated score has the two close.

Each is ``nan`` when it is undefined (no carts, or only one class for auROC and auPR).

:func:`roc_auc_interval` adds an interval to auROC by DeLong's method (DeLong, DeLong and Clarke-Pearson,
1988): the variance of the Mann-Whitney statistic from each cart's placement among the other class, with no
resampling, so it costs one sort however many carts there are.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from statistics import NormalDist

import msgspec

__all__ = [
    "CalibrationRow",
    "Evaluation",
    "average_precision",
    "brier_score",
    "calibration_table",
    "evaluate",
    "roc_auc",
    "roc_auc_interval",
]


class CalibrationRow(msgspec.Struct, frozen=True, kw_only=True):
    """Carts whose score lies in [``low``, ``high``]: how many, mean predicted probability, share converted."""

    low: float
    high: float
    carts: int
    predicted: float
    observed: float


class Evaluation(msgspec.Struct, frozen=True, kw_only=True):
    """A score's figures on one set of carts; ``base_rate`` is the share that converted."""

    carts: int
    converted: int
    base_rate: float
    auroc: float
    aupr: float
    brier: float
    calibration: list[CalibrationRow]


def _checked(labels: Sequence[bool | int], scores: Sequence[float]) -> list[tuple[float, bool]]:
    if len(labels) != len(scores):
        raise ValueError(f"{len(labels)} labels and {len(scores)} scores; expected one score per label")
    pairs = [(float(s), bool(y)) for y, s in zip(labels, scores, strict=True)]
    if any(math.isnan(s) for s, _ in pairs):
        raise ValueError("a score is NaN; expected numbers")
    return pairs


def roc_auc(labels: Sequence[bool | int], scores: Sequence[float]) -> float:
    """Area under the ROC curve (Mann-Whitney: mean rank of the positives, ties at their mean rank).

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])  # one of the four pairs is ordered wrongly
    0.75
    >>> roc_auc([0, 1], [0.5, 0.5])  # a tie counts half
    0.5
    """
    pairs = sorted(_checked(labels, scores))
    positives = sum(1 for _, y in pairs if y)
    negatives = len(pairs) - positives
    if not positives or not negatives:
        return math.nan
    rank_sum = 0.0
    i = 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        mean_rank = (i + 1 + j) / 2  # ranks i+1 .. j share their mean
        rank_sum += mean_rank * sum(1 for _, y in pairs[i:j] if y)
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def roc_auc_interval(
    labels: Sequence[bool | int], scores: Sequence[float], *, level: float = 0.95
) -> tuple[float, float, float]:
    """auROC with DeLong's normal-approximation interval: ``(auroc, low, high)``, the bounds clipped to [0, 1].

    Each converting cart's placement is the share of non-converting carts scored below it (a tie counts half),
    and each non-converting cart's the share of converting carts scored above it; their means are the auROC
    and their variances give its standard error. The interval is for the carts as a sample of carts like
    them: on a few dozen carts it is wide, and an auROC near 0 or 1 makes the normal approximation rough.
    All three are ``nan`` when auROC is undefined.

    >>> auroc, low, high = roc_auc_interval([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> auroc, round(low, 3), high  # two carts of each kind: the interval spans most of [0, 1]
    (0.75, 0.057, 1.0)
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level}; expected a number between 0 and 1")
    pairs = _checked(labels, scores)
    positives = sorted(s for s, y in pairs if y)
    negatives = sorted(s for s, y in pairs if not y)
    m, n = len(positives), len(negatives)
    if not m or not n:
        return (math.nan, math.nan, math.nan)
    # Below plus half of the ties: (bisect_left + bisect_right) / 2 counts exactly that.
    v10 = [(bisect_left(negatives, s) + bisect_right(negatives, s)) / (2 * n) for s in positives]
    v01 = [1.0 - (bisect_left(positives, s) + bisect_right(positives, s)) / (2 * m) for s in negatives]
    auroc = math.fsum(v10) / m
    s10 = math.fsum((v - auroc) ** 2 for v in v10) / (m - 1) if m > 1 else 0.0
    s01 = math.fsum((v - auroc) ** 2 for v in v01) / (n - 1) if n > 1 else 0.0
    half = NormalDist().inv_cdf(0.5 + level / 2) * math.sqrt(s10 / m + s01 / n)
    return (auroc, max(0.0, auroc - half), min(1.0, auroc + half))


def average_precision(labels: Sequence[bool | int], scores: Sequence[float]) -> float:
    """Average precision: sum over distinct scores, highest first, of (recall gained) x (precision there).

    >>> average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])  # (1/2) x 1 + (1/2) x 2/3
    0.8333333333333333
    """
    pairs = sorted(_checked(labels, scores), key=lambda p: -p[0])
    positives = sum(1 for _, y in pairs if y)
    if not positives or positives == len(pairs):
        return math.nan
    total = 0.0
    seen = hits = 0
    i = 0
    while i < len(pairs):
        j = i
        gained = 0
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            gained += pairs[j][1]
            j += 1
        seen += j - i
        hits += gained
        total += (gained / positives) * (hits / seen)
        i = j
    return total


def brier_score(labels: Sequence[bool | int], probabilities: Sequence[float]) -> float:
    """Mean of (probability - outcome)^2."""
    pairs = _checked(labels, probabilities)
    if not pairs:
        return math.nan
    return sum((p - (1.0 if y else 0.0)) ** 2 for p, y in pairs) / len(pairs)


def calibration_table(
    labels: Sequence[bool | int], probabilities: Sequence[float], bins: int = 10
) -> list[CalibrationRow]:
    """Carts sorted by probability, cut into ``bins`` groups of nearly equal size (ties kept together)."""
    if bins < 1:
        raise ValueError(f"bins={bins}; expected 1 or more")
    pairs = sorted(_checked(labels, probabilities))
    rows: list[CalibrationRow] = []
    start = 0
    n = len(pairs)
    for b in range(1, bins + 1):
        end = max(round(b * n / bins), start)
        while 0 < end < n and pairs[end][0] == pairs[end - 1][0]:
            end += 1  # a tie is never split across two rows
        group = pairs[start:end]
        if group:
            rows.append(
                CalibrationRow(
                    low=group[0][0],
                    high=group[-1][0],
                    carts=len(group),
                    predicted=sum(p for p, _ in group) / len(group),
                    observed=sum(1 for _, y in group if y) / len(group),
                )
            )
        start = end
    return rows


def evaluate(labels: Sequence[bool | int], probabilities: Sequence[float], *, bins: int = 10) -> Evaluation:
    """All the figures of one score on one set of carts."""
    n = len(labels)
    converted = sum(1 for y in labels if y)
    return Evaluation(
        carts=n,
        converted=converted,
        base_rate=converted / n if n else math.nan,
        auroc=roc_auc(labels, probabilities),
        aupr=average_precision(labels, probabilities),
        brier=brier_score(labels, probabilities),
        calibration=calibration_table(labels, probabilities, bins),
    )
