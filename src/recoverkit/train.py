"""Fitting a conversion model with scikit-learn and exporting it as a :mod:`recoverkit.model` file.

Training needs scikit-learn (``pip install 'recoverkit[train]'``), imported only when :func:`fit` runs;
scoring the file it produces needs nothing but recoverkit.

**The model** is scikit-learn's ``HistGradientBoostingClassifier`` constrained so that every root-to-leaf path
of every tree uses at most two inputs: all inputs on their own, plus the ``pairs`` pairs that a first, quick
fit found to interact most (by split gain, as EBM's FAST does). Such an ensemble is exactly an additive model
of one-input step functions and two-input tables, which is what the model file holds and what the engine
scores with one binary search per term. Optional ``monotone`` constraints (``{"step": 1}``) are passed to
the booster and become a promise in the file that :func:`~recoverkit.model.decode_model` checks.

**Rounds and calibration**: the booster is fitted on ``folds`` parts of the training rows; their out-of-fold
predictions choose the number of boosting rounds (up to ``max_iter``) with the least log loss, so a small
history gets a small model, and a map from margin to probability is fitted on the out-of-fold margins. Platt
scaling (a one-input logistic regression: two numbers) is the default: it keeps the ranking as it is and needs
little data. Isotonic regression can follow any monotone shape, but its flat steps tie carts the booster tells
apart (on the UCI data it cost 0.016 of auPR for no better Brier score). The final booster is fitted on all
training rows with the chosen number of rounds.

:func:`train_on_history` does it for a shop: the abandonments of :func:`recoverkit.history.abandonment_history`,
split by time, the engine's features as inputs (:func:`feature_inputs`), the trained and the default model
evaluated on the later share, and the facts in the file's ``metadata``. ``recoverkit train`` runs it.

The export is checked before it is returned: the pure-Python model must reproduce the booster's
``decision_function`` on the training rows to 1e-9, or :func:`fit` raises (a scikit-learn release that
changed its trees' layout is caught here, not in a shop's engine).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import msgspec

from .evaluation import Evaluation, evaluate
from .history import Example, History, split_by_time
from .model import (
    VERSION,
    Additive,
    Input,
    Isotonic,
    Logistic,
    Model,
    ModelFile,
    ModelScorer,
    Platt,
    Term,
    decode_model,
    encode_model,
)
from .score import DefaultScorer, Features

__all__ = [
    "DEFAULT_MONOTONE",
    "MIN_CLASS",
    "Fitted",
    "Split",
    "TrainReport",
    "feature_inputs",
    "fit",
    "require_sklearn",
    "train_on_history",
]

#: Fewer examples of either class than this in the training rows and :func:`fit` refuses.
MIN_CLASS: Final = 10
#: Largest difference allowed between the exported model's margins and the booster's own.
_EXPORT_TOLERANCE: Final = 1e-9
_INSTALL_HINT: Final = (
    "training a model needs scikit-learn, which is not installed; install it with `pip install 'recoverkit[train]'`"
)

Calibration = Literal["platt", "isotonic", "logistic"]


def require_sklearn() -> None:
    """Raise :class:`ImportError` with the install command when scikit-learn is missing."""
    try:
        import sklearn  # type: ignore[import-untyped]  # noqa: F401
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc


@dataclass
class Fitted:
    """What :func:`fit` made: the model file, and the scikit-learn objects it was exported from.

    ``estimator.decision_function`` gives the margins the file's model reproduces; ``calibrator`` maps them to
    probabilities (an ``IsotonicRegression``, a ``LogisticRegression`` on the margin for Platt, or ``None``).
    """

    model: ModelFile
    estimator: Any
    calibrator: Any
    pairs: list[tuple[str, str]] = field(default_factory=list)
    rounds: int = 0
    seconds: float = 0.0


def fit(
    rows: Sequence[Sequence[float]],
    labels: Sequence[bool | int],
    inputs: Sequence[Input],
    *,
    monotone: Mapping[str, int] | None = None,
    pairs: int = 12,
    max_iter: int = 300,
    learning_rate: float = 0.05,
    max_leaf_nodes: int = 4,
    min_samples_leaf: int = 20,
    calibration: Calibration = "platt",
    folds: int = 3,
    seed: int = 0,
    metadata: Mapping[str, Any] | None = None,
) -> Fitted:
    """Fit the model on ``rows`` (one list of numbers per example, in ``inputs`` order) and ``labels``.

    Raises :class:`ImportError` without scikit-learn and :class:`ValueError` for unusable data (fewer than
    :data:`MIN_CLASS` examples of a class, rows of the wrong length, non-finite numbers, unknown inputs in
    ``monotone``).
    """
    require_sklearn()
    import numpy as np

    if calibration not in ("platt", "isotonic", "logistic"):
        raise ValueError(f"calibration={calibration!r}; expected 'platt', 'isotonic' or 'logistic'")
    started = time.perf_counter()
    names = [i.name for i in inputs]
    x = np.asarray(rows, dtype=np.float64)
    y = np.asarray([1 if label else 0 for label in labels], dtype=np.int64)
    _check_data(x, y, names)
    promises = _promises(monotone, names)
    settings = {
        "max_iter": max_iter, "learning_rate": learning_rate, "max_leaf_nodes": max_leaf_nodes,
        "min_samples_leaf": min_samples_leaf, "monotonic_cst": [promises.get(n, 0) for n in names],
        "early_stopping": False, "random_state": seed,
    }  # fmt: skip
    chosen = _choose_pairs(x, y, pairs, settings) if pairs > 0 and len(names) > 1 else []
    constraints = [[i] for i in range(len(names))] + [list(p) for p in chosen]
    rounds, margins = _cross_fit(x, y, settings, constraints, folds, seed)
    estimator = _booster({**settings, "max_iter": rounds}, constraints).fit(x, y)
    calibrator, calibration_spec = _calibrate(calibration, margins, y)
    additive = _export(estimator, len(names))
    model = ModelFile(
        format="recoverkit-model",
        version=VERSION,
        inputs=list(inputs),
        model=additive,
        calibration=calibration_spec,
        monotone=dict(promises),  # type: ignore[arg-type]  # checked above: 1 or -1
        metadata=dict(metadata or {}),
    )
    _verify(model, estimator, x)
    pair_names = [(names[a], names[b]) for a, b in chosen]
    return Fitted(model, estimator, calibrator, pair_names, rounds, time.perf_counter() - started)


def _check_data(x: Any, y: Any, names: Sequence[str]) -> None:
    """Rows of one finite number per input, one label per row, and enough examples of each class."""
    import numpy as np

    if x.ndim != 2 or x.shape[0] != len(y) or x.shape[1] != len(names):
        raise ValueError(f"rows must be {len(y)} lists of {len(names)} numbers (one per input), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("rows must hold finite numbers only")
    positives = int(y.sum())
    negatives = len(y) - positives
    if min(positives, negatives) < MIN_CLASS:
        raise ValueError(
            f"too few examples to train on: {positives} converted and {negatives} not; expected at least "
            f"{MIN_CLASS} of each"
        )


def _promises(monotone: Mapping[str, int] | None, names: Sequence[str]) -> dict[str, int]:
    """The monotone promises, each an input's name and 1 or -1."""
    promises = dict(monotone or {})
    for name, direction in promises.items():
        if name not in names or direction not in (-1, 1):
            raise ValueError(f"monotone[{name!r}] = {direction!r}; expected an input name ({names}) and 1 or -1")
    return promises


def _booster(settings: Mapping[str, Any], constraints: list[list[int]]) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier  # type: ignore[import-untyped]

    return HistGradientBoostingClassifier(interaction_cst=constraints, **settings)


def _choose_pairs(x: Any, y: Any, count: int, settings: Mapping[str, Any]) -> list[tuple[int, int]]:
    """The ``count`` pairs of inputs whose joint splits gained most in a quick fit allowing every pair."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    quick = dict(settings) | {"max_iter": max(settings["max_iter"] // 2, 20)}
    probe = HistGradientBoostingClassifier(interaction_cst="pairwise", **quick).fit(x, y)
    gains: dict[tuple[int, int], float] = {}
    for (predictor,) in probe._predictors:  # one tree per iteration for a binary classifier
        nodes = predictor.nodes
        stack: list[tuple[int, frozenset[int]]] = [(0, frozenset())]
        while stack:
            index, above = stack.pop()
            node = nodes[index]
            if node["is_leaf"]:
                continue
            feature = int(node["feature_idx"])
            if above and feature not in above:
                (other,) = above  # paths use at most two inputs under "pairwise"
                key = (min(feature, other), max(feature, other))
                gains[key] = gains.get(key, 0.0) + float(node["gain"])
            used = above | {feature}
            stack.append((int(node["left"]), used))
            stack.append((int(node["right"]), used))
    ranked = sorted(gains.items(), key=lambda kv: (-kv[1], kv[0]))
    return [pair for pair, _ in ranked[:count]]


def _cross_fit(
    x: Any, y: Any, settings: Mapping[str, Any], constraints: list[list[int]], folds: int, seed: int
) -> tuple[int, Any]:
    """The number of rounds with the least out-of-fold log loss, and the out-of-fold margins after that many.

    One booster per fold with ``max_iter`` rounds; their staged predictions on the held-out rows give the loss of
    every smaller number of rounds at no extra fitting.
    """
    import numpy as np
    from sklearn.model_selection import StratifiedKFold  # type: ignore[import-untyped]

    sign = 2 * y - 1
    loss = np.zeros(settings["max_iter"])
    parts = []
    splitter = StratifiedKFold(n_splits=max(folds, 2), shuffle=True, random_state=seed)
    for train, held in splitter.split(x, y):
        part = _booster(settings, constraints).fit(x[train], y[train])
        for k, z in enumerate(part.staged_decision_function(x[held])):
            loss[k] += float(np.logaddexp(0.0, -sign[held] * z).sum())
        parts.append((part, held))
    used = min(int(part.n_iter_) for part, _ in parts)  # a booster stops early when no split gains
    best = int(np.argmin(loss[:used])) + 1
    margins = np.zeros(len(y))
    for part, held in parts:
        for k, z in enumerate(part.staged_decision_function(x[held])):
            if k + 1 == best:
                margins[held] = z
                break
    return best, margins


def _calibrate(kind: str, margins: Any, y: Any) -> tuple[Any, Logistic | Platt | Isotonic]:
    """Fit the map from out-of-fold ``margins`` to probabilities."""
    if kind == "logistic":
        return None, Logistic()
    from sklearn.isotonic import IsotonicRegression  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    if kind == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(margins, y)
        return iso, Isotonic(x=[float(v) for v in iso.X_thresholds_], y=[float(v) for v in iso.y_thresholds_])
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(margins.reshape(-1, 1), y)
    a, b = float(platt.coef_[0][0]), float(platt.intercept_[0])
    if not a > 0:  # the margins do not rank at all: no calibration can make them increase
        raise ValueError(f"the model does not rank the training rows (Platt slope {a:.3g}); expected a positive slope")
    return platt, Platt(a=a, b=b)


def _export(estimator: Any, n_inputs: int) -> Additive:
    """Collapse the booster's trees into one table per input or pair of inputs.

    Every leaf is a box: per input on its path, an interval ``(low, high]``. Leaves whose paths use the same
    inputs add into one table whose thresholds are all their boxes' bounds; a table cell gets a leaf's value
    when the cell lies in the box. Uses scikit-learn's ``_predictors`` (private): :func:`_verify` checks the
    result against the public ``decision_function``.
    """
    import numpy as np

    intercept = float(np.ravel(estimator._baseline_prediction)[0])
    leaves: dict[tuple[int, ...], list[_Leaf]] = {}
    for (predictor,) in estimator._predictors:
        for box, value in _leaves(predictor.nodes):
            key = tuple(sorted(box))
            if not key:
                intercept += value
            else:
                leaves.setdefault(key, []).append((box, value))
    terms: list[Term] = []
    for key in sorted(leaves, key=lambda k: (len(k), k)):
        if len(key) > 2 or not all(0 <= k < n_inputs for k in key):
            raise ValueError(f"a tree path uses inputs {key}; expected at most two (interaction constraints)")
        terms.append(_table(key, leaves[key]))
    return Additive(intercept=intercept, terms=terms)


#: A leaf of a tree: its box (per input on its path, the interval ``(low, high]``) and its value.
_Leaf = tuple[dict[int, tuple[float, float]], float]


def _leaves(nodes: Any) -> list[_Leaf]:
    """Every leaf of one tree, with its box."""
    import numpy as np

    found: list[_Leaf] = []
    stack: list[tuple[int, dict[int, tuple[float, float]]]] = [(0, {})]
    while stack:
        index, box = stack.pop()
        node = nodes[index]
        if node["is_leaf"]:
            found.append((box, float(node["value"])))
            continue
        if node["is_categorical"]:
            raise ValueError("categorical splits cannot be exported; expected numeric inputs only")
        feature, cut = int(node["feature_idx"]), float(node["num_threshold"])
        low, high = box.get(feature, (-np.inf, np.inf))
        stack.append((int(node["left"]), box | {feature: (low, min(high, cut))}))
        stack.append((int(node["right"]), box | {feature: (max(low, cut), high)}))
    return found


def _table(key: tuple[int, ...], group: list[_Leaf]) -> Term:
    """The term of the inputs ``key``: thresholds at every bound of the group's boxes, each cell the sum of the
    values of the boxes it lies in."""
    import numpy as np

    cuts = [sorted({b for box, _ in group for b in box[k] if np.isfinite(b)}) for k in key]
    table = np.zeros([len(c) + 1 for c in cuts])
    for box, value in group:
        spans = []
        for k, c in zip(key, cuts, strict=True):
            low, high = box[k]
            # Cell i holds x in (c[i-1], c[i]]: the box (low, high] covers cells after low up to high.
            first = 0 if low == -np.inf else c.index(low) + 1
            last = len(c) if high == np.inf else c.index(high)
            spans.append(slice(first, last + 1))
        table[tuple(spans)] += value
    return Term(inputs=list(key), thresholds=cuts, values=[float(v) for v in table.ravel()])


def _verify(model: ModelFile, estimator: Any, x: Any) -> None:
    """The file loads (every check of :func:`decode_model`) and reproduces the booster's margins."""
    compiled = Model(decode_model(encode_model(model), source="<trained model>"))
    sample = x[:: max(len(x) // 2000, 1)]
    expected = estimator.decision_function(sample)
    for row, want in zip(sample.tolist(), expected.tolist(), strict=True):
        got = compiled.margin(row)
        if abs(got - want) > _EXPORT_TOLERANCE * max(1.0, abs(want)):
            raise RuntimeError(
                f"the exported model gives margin {got!r} where scikit-learn gives {want!r}; this scikit-learn "
                "version lays out its trees differently from what recoverkit expects"
            )


def feature_inputs() -> list[Input]:
    """The inputs a model of the engine's :class:`~recoverkit.score.Features` is trained on: every number
    feature, the trigger as two indicators (inactivity is neither) and product views per cart line."""
    numbers = [name for name in Features.__struct_fields__ if name != "trigger"]
    return [
        *(Input(name=name, feature=name) for name in numbers),
        Input(name="trigger=exit_intent", feature="trigger", equals="exit_intent"),
        Input(name="trigger=payment_failed", feature="trigger", equals="payment_failed"),
        Input(name="item_views_per_line", feature="item_views", per="lines"),
    ]


class Split(msgspec.Struct, frozen=True, kw_only=True):
    """One side of the split by time: how many abandonments, how many converted, from when to when."""

    carts: int
    converted: int
    first_at: float | None
    last_at: float | None


class TrainReport(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`train_on_history` did: the data, the split, and both models' figures on the later share
    (``None`` without a test share)."""

    events: int
    abandonments: int
    censored: int
    window: float
    train: Split
    test: Split | None
    trained: Evaluation | None
    default: Evaluation | None
    terms: int
    rounds: int
    pairs: list[tuple[str, str]]
    calibration: str
    monotone: dict[str, int]
    seconds: float


#: The promises an engine model makes unless told otherwise: the further into checkout, and a past buyer, never
#: score lower (everything else equal). Both are among the best established facts about abandonment.
DEFAULT_MONOTONE: Final = {"step": 1, "returning": 1}


def train_on_history(
    history: History,
    *,
    test_share: float = 0.25,
    monotone: Mapping[str, int] | None = None,
    shipping_shock_ratio: float = 0.1,
    **settings: Any,
) -> tuple[ModelFile, TrainReport]:
    """Train an engine model on the earlier ``1 - test_share`` of ``history`` and evaluate it, and the default
    model, on the later rest. ``settings`` go to :func:`fit`; ``monotone`` defaults to :data:`DEFAULT_MONOTONE`.
    """
    from . import __version__

    train, test = split_by_time(history.examples, test_share)
    inputs = feature_inputs()
    reader = ModelScorer(_blank(inputs))
    promises = dict(DEFAULT_MONOTONE if monotone is None else monotone)
    started = time.perf_counter()
    fitted = fit(
        [reader.row(e.features) for e in train], [e.converted for e in train], inputs, monotone=promises, **settings
    )
    seconds = time.perf_counter() - started
    trained = default = None
    if test:
        labels = [e.converted for e in test]
        scorer = ModelScorer(fitted.model, shipping_shock_ratio=shipping_shock_ratio)
        baseline = DefaultScorer(shipping_shock_ratio)
        trained = evaluate(labels, [scorer.probability(e.features) for e in test])
        default = evaluate(labels, [baseline.probability(e.features) for e in test])
    report = TrainReport(
        events=history.source.events, abandonments=history.abandonments, censored=history.censored,
        window=history.window, train=_split(train), test=_split(test) if test else None, trained=trained,
        default=default, terms=len(fitted.model.model.terms), rounds=fitted.rounds, pairs=fitted.pairs,
        calibration=type(fitted.model.calibration).__name__.lower(), monotone=promises, seconds=seconds,
    )  # fmt: skip
    import sklearn

    metadata = {
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "recoverkit": __version__,
        "scikit_learn": sklearn.__version__,
        "source": msgspec.to_builtins(history.source),
        "window_seconds": history.window,
        "settings": {"test_share": test_share, **settings},
        "report": {k: v for k, v in msgspec.to_builtins(report).items() if k not in ("trained", "default")},
        "test_metrics": {
            name: {"auroc": ev.auroc, "aupr": ev.aupr, "brier": ev.brier, "base_rate": ev.base_rate}
            for name, ev in (("trained", trained), ("default", default))
            if ev is not None
        },
    }
    # msgspec writes NaN (a figure undefined when the test share holds one class only) as null.
    model = msgspec.structs.replace(fitted.model, metadata=metadata)
    return model, report


def _blank(inputs: list[Input]) -> ModelFile:
    # A model with no terms, used only for its reader of the inputs (ModelScorer.row).
    return ModelFile(
        format="recoverkit-model", version=VERSION, inputs=inputs, model=Additive(intercept=0.0, terms=[]),
        calibration=Logistic(),
    )  # fmt: skip


def _split(examples: Sequence[Example]) -> Split:
    return Split(
        carts=len(examples),
        converted=sum(1 for e in examples if e.converted),
        first_at=examples[0].at if examples else None,
        last_at=examples[-1].at if examples else None,
    )
