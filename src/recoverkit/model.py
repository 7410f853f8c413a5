"""A trained conversion model: the file ``recoverkit train`` writes, and the scorer the engine runs it with.

The file is JSON, versioned and self-describing (``docs/scoring.md`` shows one)::

    {"format": "recoverkit-model", "version": 1,
     "inputs": [{"name": "value", "feature": "value"}, {"name": "trigger=exit_intent", "feature": "trigger",
                "equals": "exit_intent"}, {"name": "item_views_per_line", "feature": "item_views", "per": "lines"}],
     "model": {"kind": "additive", "intercept": -1.7, "terms": [
         {"inputs": [0], "thresholds": [[12.5, 80.0]], "values": [0.1, -0.05, -0.2]},
         {"inputs": [0, 2], "thresholds": [[40.0], [3.5]], "values": [0.0, 0.1, -0.1, 0.3]}]},
     "calibration": {"kind": "isotonic", "x": [-3.1, 0.4], "y": [0.02, 0.61]},
     "monotone": {"step": 1}, "metadata": {...}}

**Inputs** say how each model input is read from :class:`~recoverkit.score.Features`: a field as a number
(booleans are 0 and 1), ``equals``: 1 when a text field has that value, else 0, or ``per``: a count divided by
another (at least 1). A generic model (``feature`` left out: the benchmarks' UCI model) reads rows of numbers
in input order instead.

**The model** is additive: an intercept plus terms, each a step function of one input or a table over a pair
of inputs. A term with thresholds ``t`` puts a value ``x`` in bin ``bisect_left(t, x)`` (``x <= t[0]`` is bin
0), and a pair's ``values`` are row-major over the first input's bins, then the second's. That is exactly what
a gradient-boosted tree ensemble whose every root-to-leaf path uses at most two inputs computes, collapsed
into one table per input or pair (:mod:`recoverkit.train` exports scikit-learn's ``HistGradientBoosting``
this way), so scoring is one binary search per term: a few microseconds in pure Python, no numpy.
Thresholds make monotone transformations of an input (``log1p``, caps) unnecessary.

**The calibration** maps the sum ``z`` to a probability: ``logistic`` (``1 / (1 + e^-z)``), ``platt``
(``1 / (1 + e^-(a z + b))``) or ``isotonic`` (linear interpolation between points ``(x, y)``, clipped at the
ends). **monotone** names inputs in which the probability never decreases (1) or never increases (-1) whatever
the other inputs are: a promise checked when the file is loaded.

:func:`load_model` reads and checks a file at start-up and returns a :class:`ModelScorer`, the
:class:`~recoverkit.score.Scorer` the engine uses (``model = "path"`` in the configuration); its likely
reasons come from the default model's rules. Every fault is a :class:`~recoverkit.errors.ConfigError` naming
the file, the key path (``model.terms[3].values``) and what was expected.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec

from ._validation import describe_value, split_error
from .cart import CartSnapshot
from .errors import ConfigError
from .score import Assessment, DefaultScorer, Features

__all__ = [
    "FORMAT",
    "VERSION",
    "Additive",
    "Input",
    "Isotonic",
    "Logistic",
    "Model",
    "ModelFile",
    "ModelScorer",
    "Platt",
    "Term",
    "decode_model",
    "encode_model",
    "load_model",
    "read_model",
]

FORMAT: Final = "recoverkit-model"
#: The file format version this recoverkit writes and reads.
VERSION: Final = 1
#: Slack for the monotonicity check: sums of the same table values in another order differ in the last bits.
_MONOTONE_SLACK: Final = 1e-12

_FEATURE_FIELDS: Final = Features.__struct_fields__
_TEXT_FIELDS: Final = frozenset(
    name for name, kind in zip(_FEATURE_FIELDS, msgspec.structs.fields(Features), strict=True) if kind.type is str
)
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Model file parts reject unknown keys: a file from a newer recoverkit must fail loudly, not half-load.
    Fields left at their defaults are not written, so that the file shows what matters."""


class Input(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """One model input: ``feature`` read as a number, or 1/0 when it ``equals`` a text, or divided ``per``
    another feature (at least 1). Without ``feature`` the input is a column of a generic row."""

    name: _Name
    feature: str | None = None
    equals: str | None = None
    per: str | None = None


class Term(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A step function of one input, or a table over two (``values`` row-major, first input's bins first)."""

    inputs: Annotated[list[int], msgspec.Meta(min_length=1, max_length=2)]
    thresholds: list[list[float]]
    values: list[float]


class Additive(
    _Strict,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
    tag="additive",
    tag_field="kind",
):
    """``intercept`` plus the value of every term."""

    intercept: float
    terms: list[Term]


class Logistic(
    _Strict,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
    tag="logistic",
    tag_field="kind",
):
    """``1 / (1 + e^-z)``: the model's own log-odds, uncalibrated."""


class Platt(
    _Strict,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
    tag="platt",
    tag_field="kind",
):
    """``1 / (1 + e^-(a z + b))`` with ``a > 0``."""

    a: float
    b: float


class Isotonic(
    _Strict,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
    tag="isotonic",
    tag_field="kind",
):
    """Linear interpolation between the points ``(x[i], y[i])``; below ``x[0]`` it is ``y[0]``, above the last
    ``x`` the last ``y``. ``x`` strictly increasing, ``y`` non-decreasing within [0, 1]."""

    x: Annotated[list[float], msgspec.Meta(min_length=1)]
    y: Annotated[list[float], msgspec.Meta(min_length=1)]


class ModelFile(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """The whole file. ``metadata`` is free-form: what it was trained on, when, sizes and test metrics."""

    format: Literal["recoverkit-model"]
    version: int
    inputs: Annotated[list[Input], msgspec.Meta(min_length=1)]
    model: Additive
    calibration: Logistic | Platt | Isotonic
    monotone: dict[str, Literal[-1, 1]] = msgspec.field(default_factory=dict)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


_decoder: Final = msgspec.json.Decoder(ModelFile)
#: msgspec says "Invalid value" for an unknown tag; the message adds what is known.
_KINDS: Final = {"calibration.kind": ["logistic", "platt", "isotonic"], "model.kind": ["additive"]}
_encoder: Final = msgspec.json.Encoder()


def encode_model(model: ModelFile) -> bytes:
    """The file's bytes: indented JSON, so that a person can read it and a diff shows what changed."""
    return msgspec.json.format(_encoder.encode(model), indent=1) + b"\n"


def decode_model(data: bytes | str, *, source: str = "<model>") -> ModelFile:
    """Decode and check a model file's content (any kind of model: generic or for the engine's features).

    Raises :class:`ConfigError` naming ``source``, the key path and what was expected.
    """
    try:
        model = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        what, path = split_error(str(exc))
        version = _version_of(data)
        if version is not None and version != VERSION:
            raise ConfigError(_version_message(source, version)) from exc
        if path is None:
            raise ConfigError(f"{source}: invalid model file: {what}") from exc
        key = path.removeprefix("$").removeprefix(".") or "the top level"
        if key in _KINDS:
            what = f"{what}; expected one of {_KINDS[key]}"
        value = describe_value(lambda: msgspec.json.decode(data), path)
        raise ConfigError(f"{source}: invalid model file at `{key}`: {what} (value: {value})") from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source}: not a model file: {exc}; expected the JSON `recoverkit train` writes") from exc
    if model.version != VERSION:
        raise ConfigError(_version_message(source, model.version))
    _check(model, source)
    return model


def _version_of(data: bytes | str) -> int | None:
    try:
        version = msgspec.json.decode(data).get("version")
    except (msgspec.DecodeError, AttributeError):
        return None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def _version_message(source: str, version: int) -> str:
    newer = "a newer" if version > VERSION else "an older"
    return (
        f"{source}: invalid model file at `version`: the file has format version {version}, written by {newer} "
        f"recoverkit; expected version {VERSION} (train the model again with this recoverkit)"
    )


def read_model(path: str | Path) -> Model:
    """Read, check and compile a model file for scoring rows of numbers (see :class:`Model`)."""
    return Model(_read(path))


def load_model(path: str | Path, *, shipping_shock_ratio: float = 0.1) -> ModelScorer:
    """Read and check a model file written by ``recoverkit train``; return the engine's scorer for it.

    Every input must read a :class:`~recoverkit.score.Features` field. ``shipping_shock_ratio`` is the
    configuration's, for the likely reasons (the default model's rules). Raises :class:`ConfigError`.
    """
    return ModelScorer(_read(path), shipping_shock_ratio=shipping_shock_ratio, source=str(path))


def _read(path: str | Path) -> ModelFile:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"{p}: model file not found; expected a file written by `recoverkit train`") from exc
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read model file: {exc}") from exc
    return decode_model(data, source=str(p))


# -- checks ---------------------------------------------------------------------------------------------------


def _fail(source: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: invalid model file at `{key}`: {message}")


def _finite(values: Sequence[float]) -> bool:
    return all(math.isfinite(v) for v in values)


def _check(model: ModelFile, source: str) -> None:
    """What the decoder's types cannot say: sizes agree, thresholds increase, the calibration increases,
    the monotone promises hold."""
    names = [i.name for i in model.inputs]
    for k, name in enumerate(names):
        if names.index(name) != k:
            raise _fail(source, f"inputs[{k}].name", f"{name!r} appears twice; expected unique input names")
    if not math.isfinite(model.model.intercept):
        raise _fail(source, "model.intercept", "expected a finite number")
    for t, term in enumerate(model.model.terms):
        _check_term(term, f"model.terms[{t}]", len(names), source)
    _check_calibration(model.calibration, source)
    for name, direction in model.monotone.items():
        if name not in names:
            raise _fail(source, f"monotone.{name}", f"not an input; expected one of {names}")
        broken = _monotone_violation(model.model, names.index(name), direction)
        if broken is not None:
            word = "increasing" if direction > 0 else "decreasing"
            raise _fail(source, f"monotone.{name}", f"the model is not {word} in `{name}` ({broken})")


def _check_term(term: Term, where: str, n: int, source: str) -> None:
    """One term reads distinct inputs among the ``n``, with increasing thresholds and a value for every bin."""
    for k, index in enumerate(term.inputs):
        if not 0 <= index < n:
            raise _fail(source, f"{where}.inputs[{k}]", f"{index} is not an input; expected 0 to {n - 1}")
    if len(set(term.inputs)) != len(term.inputs):
        raise _fail(source, f"{where}.inputs", f"{term.inputs} names an input twice; expected distinct inputs")
    if len(term.thresholds) != len(term.inputs):
        raise _fail(
            source, f"{where}.thresholds", f"{len(term.thresholds)} lists; expected one per input "
            f"({len(term.inputs)})",
        )  # fmt: skip
    size = 1
    for k, cuts in enumerate(term.thresholds):
        if not _finite(cuts) or any(a >= b for a, b in pairwise(cuts)):
            raise _fail(source, f"{where}.thresholds[{k}]", "expected finite numbers in increasing order")
        size *= len(cuts) + 1
    if len(term.values) != size:
        bins = " x ".join(str(len(c) + 1) for c in term.thresholds)
        raise _fail(source, f"{where}.values", f"{len(term.values)} values; expected {size} ({bins} bins)")
    if not _finite(term.values):
        raise _fail(source, f"{where}.values", "expected finite numbers")


def _check_calibration(calibration: Logistic | Platt | Isotonic, source: str) -> None:
    """Platt's slope is positive; an isotonic map's points increase and its probabilities never decrease
    (the plain logistic has nothing to check)."""
    if isinstance(calibration, Platt):
        if not (math.isfinite(calibration.a) and calibration.a > 0 and math.isfinite(calibration.b)):
            raise _fail(source, "calibration", f"a={calibration.a}, b={calibration.b}; expected finite a > 0 and b")
    elif isinstance(calibration, Isotonic):
        xs, ys = calibration.x, calibration.y
        if len(xs) != len(ys):
            raise _fail(source, "calibration.y", f"{len(ys)} points; expected as many as `x` ({len(xs)})")
        if not _finite(xs) or any(a >= b for a, b in pairwise(xs)):
            raise _fail(source, "calibration.x", "expected finite numbers in increasing order")
        if any(not 0.0 <= y <= 1.0 for y in ys) or any(a > b for a, b in pairwise(ys)):
            raise _fail(source, "calibration.y", "expected probabilities in [0, 1], never decreasing")


def _monotone_violation(model: Additive, index: int, direction: int) -> str | None:
    """Where the model's sum fails to move with input ``index`` in ``direction`` for some other inputs.

    Terms of different partner inputs vary independently, so the sum moves the right way for every input
    combination exactly when, across each threshold of ``index``, the worst change of every term adds up
    to at least zero.
    """
    terms = [t for t in model.terms if index in t.inputs]
    cuts = sorted({c for t in terms for c in t.thresholds[t.inputs.index(index)]})
    # One point in each bin of the union of thresholds: bins of every term are unions of these.
    points = [*cuts, math.inf]
    for b in range(len(points) - 1):
        total = 0.0
        for term in terms:
            total += min(_deltas(term, index, points[b], points[b + 1], direction))
        if total < -_MONOTONE_SLACK:
            return f"from x <= {points[b]:g} to above it the probability can move the other way by {-total:.3g}"
    return None


def _deltas(term: Term, index: int, low: float, high: float, direction: int) -> list[float]:
    """``direction`` x (value at ``high`` - value at ``low``) of ``term`` for every bin of its other input."""
    axis = term.inputs.index(index)
    lo = bisect_left(term.thresholds[axis], low)
    hi = bisect_left(term.thresholds[axis], high)
    if len(term.inputs) == 1:
        return [direction * (term.values[hi] - term.values[lo])]
    width = len(term.thresholds[1]) + 1
    others = len(term.thresholds[1 - axis]) + 1
    if axis == 0:
        return [direction * (term.values[hi * width + o] - term.values[lo * width + o]) for o in range(others)]
    return [direction * (term.values[o * width + hi] - term.values[o * width + lo]) for o in range(others)]


# -- scoring --------------------------------------------------------------------------------------------------


class Model:
    """A checked model file compiled for scoring: :meth:`margin` and :meth:`probability` of a row.

    ``row`` holds the inputs in the file's order, unless ``positions`` says where each input is in the row
    (the engine's scorer reads them straight from a Features tuple). Inputs should be finite numbers.
    """

    def __init__(self, spec: ModelFile, positions: Sequence[int] | None = None) -> None:
        self.spec = spec
        where = list(positions) if positions is not None else list(range(len(spec.inputs)))
        self._intercept = spec.model.intercept
        self._singles: list[tuple[int, list[float], list[float]]] = []
        self._pairs: list[tuple[int, list[float], int, list[float], int, list[float]]] = []
        for term in spec.model.terms:
            if len(term.inputs) == 1:
                self._singles.append((where[term.inputs[0]], term.thresholds[0], term.values))
            else:
                a, b = term.inputs
                first, second = term.thresholds
                self._pairs.append((where[a], first, where[b], second, len(second) + 1, term.values))
        calibration = spec.calibration
        self._platt = (calibration.a, calibration.b) if isinstance(calibration, Platt) else None
        self._isotonic = (calibration.x, calibration.y) if isinstance(calibration, Isotonic) else None

    def margin(self, row: Sequence[Any]) -> float:
        """The model's sum for ``row``: log-odds before calibration."""
        z = self._intercept
        for i, cuts, values in self._singles:
            z += values[bisect_left(cuts, row[i])]
        for i, first, j, second, width, values in self._pairs:
            z += values[bisect_left(first, row[i]) * width + bisect_left(second, row[j])]
        return z

    def probability(self, row: Sequence[Any]) -> float:
        """The calibrated probability for ``row``, in [0, 1]."""
        return self.calibrate(self.margin(row))

    def calibrate(self, z: float) -> float:
        """Map a margin to a probability with the file's calibration."""
        if self._isotonic is not None:
            xs, ys = self._isotonic
            if not z > xs[0]:  # also NaN: the lowest probability, never an error
                return ys[0]
            if z >= xs[-1]:
                return ys[-1]
            k = bisect_right(xs, z)
            x0, y0 = xs[k - 1], ys[k - 1]
            return (ys[k] - y0) / (xs[k] - x0) * (z - x0) + y0
        if self._platt is not None:
            z = self._platt[0] * z + self._platt[1]
        return _sigmoid(z)


def _sigmoid(z: float) -> float:
    # Two forms so that math.exp never overflows, however large |z| is.
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class ModelScorer:
    """The :class:`~recoverkit.score.Scorer` of a trained model: probability from the model file, likely reason
    from the default model's rules (:meth:`DefaultScorer.reason`), so that flows keyed on reasons behave the same
    whichever model scores.

    Build it with :func:`load_model`. Scoring reads the features as one tuple and does one binary search per
    term: a few microseconds in pure Python (``benchmarks/eval_score.py`` measures it).
    """

    def __init__(self, spec: ModelFile, *, shipping_shock_ratio: float = 0.1, source: str = "<model>") -> None:
        positions, self._equals, self._per = _plan(spec, source)
        self._model = Model(spec, positions)  # reads the features tuple, not rows in input order
        self.spec = spec
        self._reasons = DefaultScorer(shipping_shock_ratio)
        self._positions = positions
        self._extended = bool(self._equals or self._per)

    def _row(self, features: Features) -> tuple[Any, ...]:
        row = msgspec.structs.astuple(features)
        if self._extended:
            extra = [1.0 if row[i] == text else 0.0 for i, text in self._equals]
            extra += [row[i] / (row[j] if row[j] > 1 else 1) for i, j in self._per]
            row += tuple(extra)
        return row

    def row(self, features: Features) -> list[float]:
        """The model inputs of ``features`` in the file's order, as numbers (what training fits on)."""
        row = self._row(features)
        return [float(row[p]) for p in self._positions]

    def probability(self, features: Features) -> float:
        """The calibrated conversion probability of an abandoned cart with ``features``."""
        return self._model.calibrate(self._model.margin(self._row(features)))

    def score(self, cart: CartSnapshot, features: Features) -> Assessment:
        return Assessment(
            self._model.calibrate(self._model.margin(self._row(features))), self._reasons.reason(features)
        )


def _plan(spec: ModelFile, source: str) -> tuple[list[int], list[tuple[int, str]], list[tuple[int, int]]]:
    """Where each input is in the features tuple extended by the derived inputs; checks every input is one
    the engine can compute."""
    fields = list(_FEATURE_FIELDS)
    positions: list[int] = []
    equals: list[tuple[int, str]] = []
    per: list[tuple[int, int]] = []
    for k, item in enumerate(spec.inputs):
        index = fields.index(_checked_feature(item, f"inputs[{k}]", fields, source))
        if item.equals is not None:
            positions.append(len(fields) + len(equals))
            equals.append((index, item.equals))
        elif item.per is not None:
            per.append((index, fields.index(item.per)))
            positions.append(-len(per))  # placed after the ``equals`` inputs, below
        else:
            positions.append(index)
    base = len(fields) + len(equals)
    positions = [base - p - 1 if p < 0 else p for p in positions]
    return positions, equals, per


def _checked_feature(item: Input, where: str, fields: list[str], source: str) -> str:
    """The feature an input reads, once it is checked: a text feature through ``equals``, a number as it is or
    ``per`` another number."""
    expected = f"expected one of {fields}"
    if item.feature is None:
        raise _fail(source, f"{where}.feature", f"missing: input {item.name!r} reads no feature; {expected}")
    if item.feature not in fields:
        raise _fail(source, f"{where}.feature", f"{item.feature!r} is not a feature; {expected}")
    text = item.feature in _TEXT_FIELDS
    if item.equals is not None and item.per is not None:
        raise _fail(source, where, "both `equals` and `per`; expected at most one")
    if item.equals is not None:
        if not text:
            raise _fail(source, f"{where}.equals", f"`{item.feature}` is a number; `equals` needs a text feature")
        return item.feature
    if text:
        raise _fail(source, f"{where}.feature", f"`{item.feature}` is text; expected `equals` with it")
    if item.per is not None and (item.per not in fields or item.per in _TEXT_FIELDS):
        numbers = [f for f in fields if f not in _TEXT_FIELDS]
        raise _fail(source, f"{where}.per", f"{item.per!r}; expected a number feature, one of {numbers}")
    return item.feature
