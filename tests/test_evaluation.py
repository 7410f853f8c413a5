"""The score figures: the same numbers as scikit-learn, ties handled, undefined cases are NaN."""

from __future__ import annotations

import doctest
import math
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

import recoverkit.evaluation
from recoverkit.evaluation import (
    average_precision,
    brier_score,
    calibration_table,
    evaluate,
    roc_auc,
    roc_auc_interval,
)

metrics = pytest.importorskip("sklearn.metrics", reason="compares with scikit-learn (pip install 'recoverkit[train]')")

# Scores on a coarse grid, so that ties (where implementations differ) are common.
labelled = st.lists(st.tuples(st.booleans(), st.integers(0, 10).map(lambda k: k / 10)), min_size=2, max_size=60).filter(
    lambda rows: 0 < sum(y for y, _ in rows) < len(rows)
)


@pytest.mark.slow
@given(labelled)
def test_auroc_auprc_and_brier_agree_with_sklearn(rows: list[tuple[bool, float]]) -> None:
    labels, scores = [y for y, _ in rows], [s for _, s in rows]
    assert roc_auc(labels, scores) == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-12)
    expected = metrics.average_precision_score(labels, scores)
    assert average_precision(labels, scores) == pytest.approx(expected, abs=1e-12)
    assert brier_score(labels, scores) == pytest.approx(metrics.brier_score_loss(labels, scores), abs=1e-12)


def test_a_perfect_ranking_and_a_reversed_one() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert average_precision([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0


def test_one_class_only_leaves_the_ranking_figures_undefined() -> None:
    result = evaluate([1, 1, 1], [0.2, 0.5, 0.9])
    assert math.isnan(result.auroc) and math.isnan(result.aupr)
    assert result.brier == pytest.approx((0.64 + 0.25 + 0.01) / 3)


def test_nan_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([0, 1], [0.5, math.nan])


@given(labelled, st.integers(1, 12))
def test_the_calibration_table_covers_every_cart_once_and_never_splits_a_tie(
    rows: list[tuple[bool, float]], bins: int
) -> None:
    table = calibration_table([y for y, _ in rows], [s for _, s in rows], bins)
    assert sum(r.carts for r in table) == len(rows) and len(table) <= bins
    assert all(a.high < b.low for a, b in pairwise(table))
    assert sum(r.observed * r.carts for r in table) == pytest.approx(sum(y for y, _ in rows))


def test_the_calibration_table_compares_predicted_with_observed() -> None:
    table = calibration_table([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9], bins=2)
    assert [(r.carts, r.predicted, r.observed) for r in table] == [(2, pytest.approx(0.15), 0.0), (2, 0.8, 1.0)]


def test_the_docstring_examples_run() -> None:
    result = doctest.testmod(recoverkit.evaluation)
    assert result.attempted > 0 and result.failed == 0


def _delong_by_pairs(labels: list[bool], scores: list[float]) -> tuple[float, float]:
    """DeLong's auROC and variance from its definition: every converting cart against every other."""
    pos = [s for y, s in zip(labels, scores, strict=True) if y]
    neg = [s for y, s in zip(labels, scores, strict=True) if not y]

    def psi(a: float, b: float) -> float:
        return 1.0 if a > b else 0.5 if a == b else 0.0

    v10 = [sum(psi(p, q) for q in neg) / len(neg) for p in pos]
    v01 = [sum(psi(p, q) for p in pos) / len(pos) for q in neg]
    auc = sum(v10) / len(pos)
    s10 = sum((v - auc) ** 2 for v in v10) / (len(pos) - 1)
    s01 = sum((v - auc) ** 2 for v in v01) / (len(neg) - 1)
    return auc, s10 / len(pos) + s01 / len(neg)


two_of_each = labelled.filter(lambda rows: 2 <= sum(y for y, _ in rows) <= len(rows) - 2)


@given(two_of_each)
def test_the_auroc_interval_is_delongs_from_its_definition(rows: list[tuple[bool, float]]) -> None:
    labels, scores = [y for y, _ in rows], [s for _, s in rows]
    auc, variance = _delong_by_pairs(labels, scores)
    got, low, high = roc_auc_interval(labels, scores)
    half = 1.959963984540054 * math.sqrt(variance)
    assert got == pytest.approx(auc, abs=1e-12) and got == pytest.approx(roc_auc(labels, scores), abs=1e-12)
    assert low == pytest.approx(max(0.0, auc - half), abs=1e-9)
    assert high == pytest.approx(min(1.0, auc + half), abs=1e-9)


def test_the_auroc_interval_narrows_with_more_carts_and_covers_a_bootstrap() -> None:
    import random

    rng = random.Random(7)
    labels = [rng.random() < 0.3 for _ in range(3000)]
    scores = [rng.gauss(0.6 if y else 0.0, 1.0) for y in labels]
    auc, low, high = roc_auc_interval(labels, scores)
    _, small_low, small_high = roc_auc_interval(labels[:300], scores[:300])
    assert low < auc < high and high - low < small_high - small_low
    # A percentile bootstrap over carts agrees on the width to within a fifth.
    resampled = []
    for _ in range(200):
        idx = [rng.randrange(len(labels)) for _ in labels]
        resampled.append(roc_auc([labels[i] for i in idx], [scores[i] for i in idx]))
    resampled.sort()
    assert resampled[194] - resampled[5] == pytest.approx(high - low, rel=0.2)


def test_the_auroc_interval_is_undefined_for_one_class_and_refuses_a_bad_level() -> None:
    assert all(math.isnan(v) for v in roc_auc_interval([1, 1], [0.2, 0.3]))
    with pytest.raises(ValueError, match=r"level=1\.5; expected a number between 0 and 1"):
        roc_auc_interval([0, 1], [0.1, 0.2], level=1.5)
