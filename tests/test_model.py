"""Model files: the format, its checks, the pure-Python scorer against scikit-learn, and the engine using one."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import T0
from recoverkit import Config, ConfigError, Engine, FakeClock, Flow, FlowStep, MemoryChannel, load_config
from recoverkit.config import Condition
from recoverkit.model import (
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
    load_model,
    read_model,
)
from recoverkit.score import DefaultScorer, Features
from recoverkit.train import Fitted, feature_inputs, fit

pytest.importorskip("sklearn", reason="the exactness tests compare with scikit-learn (pip install 'recoverkit[train]')")
np = pytest.importorskip("numpy")


def value_model(**overrides: Any) -> ModelFile:
    """A hand-made engine model: log-odds -2 for carts up to 100 in value, +2 above; Platt a=1, b=0."""
    fields: dict[str, Any] = {
        "format": "recoverkit-model",
        "version": 1,
        "inputs": [Input(name="value", feature="value"), Input(name="step", feature="step")],
        "model": Additive(intercept=0.0, terms=[Term(inputs=[0], thresholds=[[100.0]], values=[-2.0, 2.0])]),
        "calibration": Platt(a=1.0, b=0.0),
    }
    fields.update(overrides)
    return ModelFile(**fields)


def features(**overrides: Any) -> Features:
    fields: dict[str, Any] = {
        "value": 35.79, "lines": 1, "quantity": 1, "step": 1, "checkout_seconds": 0.0, "session_seconds": 60.0,
        "returning": False, "identified": True, "payment_failures": 0, "form_errors": 0, "exit_intent": False,
        "shipping_ratio": 0.0, "item_views": 2, "views": 3, "trigger": "inactivity",
    }  # fmt: skip
    fields.update(overrides)
    return Features(**fields)


def document(model: ModelFile) -> dict[str, Any]:
    return json.loads(encode_model(model))


def write(path: Path, data: dict[str, Any] | ModelFile) -> Path:
    path.write_bytes(encode_model(data) if isinstance(data, ModelFile) else json.dumps(data).encode())
    return path


# -- the file --------------------------------------------------------------------------------------------------


def test_a_model_file_round_trips_through_its_bytes(tmp_path: Path) -> None:
    model = value_model(
        calibration=Isotonic(x=[-2.0, 2.0], y=[0.1, 0.7]), monotone={"value": 1}, metadata={"trained_on": "x"}
    )
    assert decode_model(encode_model(model)) == model
    scorer = load_model(write(tmp_path / "m.json", model))
    assert scorer.spec == model


def test_defaults_are_left_out_of_the_file() -> None:
    text = encode_model(value_model()).decode()
    assert '"equals"' not in text and '"per"' not in text and '"metadata"' not in text


def test_the_scorer_computes_the_documented_sum_and_calibration(tmp_path: Path) -> None:
    scorer = load_model(write(tmp_path / "m.json", value_model(calibration=Platt(a=0.5, b=-1.0))))
    assert scorer.probability(features(value=50.0)) == pytest.approx(1 / (1 + math.exp(-(0.5 * -2.0 - 1.0))))
    assert scorer.probability(features(value=100.0)) == scorer.probability(features(value=50.0))  # x <= t: left
    assert scorer.probability(features(value=100.5)) == pytest.approx(1 / (1 + math.exp(-(0.5 * 2.0 - 1.0))))


def test_a_pair_table_is_read_row_major() -> None:
    model = Model(
        ModelFile(
            format="recoverkit-model", version=1, inputs=[Input(name="a"), Input(name="b")],
            model=Additive(intercept=0.0, terms=[Term(inputs=[0, 1], thresholds=[[0.0], [0.0, 1.0]],
                                                      values=[1, 2, 3, 4, 5, 6])]),
            calibration=Logistic(),
        )
    )  # fmt: skip
    rows = ([-1, -1], [-1, 0.5], [-1, 9], [1, -1], [1, 0.5], [1, 9])
    assert [model.margin(row) for row in rows] == [1, 2, 3, 4, 5, 6]


def test_isotonic_calibration_interpolates_and_clips() -> None:
    model = Model(value_model(calibration=Isotonic(x=[-1.0, 1.0], y=[0.2, 0.6])))
    assert [model.calibrate(z) for z in (-5.0, -1.0, 0.0, 0.5, 1.0, 7.0, math.nan)] == pytest.approx(
        [0.2, 0.2, 0.4, 0.5, 0.6, 0.6, 0.2]
    )


def test_the_logistic_calibration_never_overflows() -> None:
    model = Model(value_model(calibration=Logistic()))
    assert (model.calibrate(-1e6), model.calibrate(1e6)) == (0.0, 1.0)


def test_derived_inputs_are_read_from_the_features() -> None:
    spec = ModelFile(
        format="recoverkit-model", version=1, inputs=feature_inputs(), model=Additive(intercept=0.0, terms=[]),
        calibration=Logistic(),
    )  # fmt: skip
    row = ModelScorer(spec).row(features(item_views=9, lines=3, trigger="exit_intent"))
    names = [i.name for i in spec.inputs]
    assert row[names.index("item_views_per_line")] == 3.0
    assert (row[names.index("trigger=exit_intent")], row[names.index("trigger=payment_failed")]) == (1.0, 0.0)
    assert row[names.index("identified")] == 1.0
    assert ModelScorer(spec).row(features(item_views=4, lines=0))[names.index("item_views_per_line")] == 4.0


def test_the_reason_comes_from_the_default_rules(tmp_path: Path) -> None:
    scorer = load_model(write(tmp_path / "m.json", value_model()), shipping_shock_ratio=0.2)
    cases = [features(payment_failures=1), features(step=3, shipping_ratio=0.15),
             features(step=3, shipping_ratio=0.25), features(item_views=5)]  # fmt: skip
    # The shipping share of 0.15 is under the configured 0.2: the ratio given to load_model is the one used.
    reasons = ["payment_failure", "unknown", "shipping_cost", "price_comparison"]
    assert [scorer.score(None, f).reason for f in cases] == reasons  # type: ignore[arg-type]
    assert [DefaultScorer(0.2).reason(f) for f in cases] == reasons


# -- checks: every fault names the key ---------------------------------------------------------------------------


def _break(change: Any) -> dict[str, Any]:
    data = document(value_model(monotone={"value": 1}))
    change(data)
    return data


BROKEN = [
    ("values of the wrong length", lambda d: d["model"]["terms"][0].update(values=[1.0]), "model.terms[0].values",
     "expected 2"),
    ("a value that is not a number", lambda d: d["model"]["terms"][0]["values"].__setitem__(1, "x"),
     "model.terms[0].values[1]", "Expected `float`"),
    ("thresholds out of order", lambda d: d["model"]["terms"][0].update(thresholds=[[5.0, 1.0]], values=[0, 1, 2]),
     "model.terms[0].thresholds[0]", "increasing"),
    ("an input index out of range", lambda d: d["model"]["terms"][0].update(inputs=[7]), "model.terms[0].inputs[0]",
     "expected 0 to 1"),
    ("an unknown key", lambda d: d.update(extra=1), None, "unknown field `extra`"),
    ("a missing calibration", lambda d: d.pop("calibration"), None, "missing required field `calibration`"),
    ("an unknown calibration", lambda d: d.update(calibration={"kind": "magic"}), "calibration.kind",
     "expected one of ['logistic', 'platt', 'isotonic']"),
    ("a Platt slope that is not positive", lambda d: d.update(calibration={"kind": "platt", "a": 0, "b": 0}),
     "calibration", "a > 0"),
    ("a decreasing isotonic map", lambda d: d.update(calibration={"kind": "isotonic", "x": [0, 1], "y": [0.5, 0.1]}),
     "calibration.y", "never decreasing"),
    ("a newer format version", lambda d: d.update(version=2, novelty=True), "version", "expected version 1"),
    ("two inputs of one name", lambda d: d["inputs"][1].update(name="value"), "inputs[1].name", "twice"),
    ("a broken monotone promise", lambda d: d["model"]["terms"][0].update(values=[2.0, -2.0]), "monotone.value",
     "not increasing"),
    ("a monotone promise on no input", lambda d: d.update(monotone={"colour": 1}), "monotone.colour", "not an input"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "key", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_broken_file_is_a_config_error_naming_the_key(
    tmp_path: Path, change: Any, key: str | None, expected: str
) -> None:
    path = write(tmp_path / "m.json", _break(change))
    with pytest.raises(ConfigError) as info:
        load_model(path)
    where = f"invalid model file at `{key}`: " if key else "invalid model file: "  # a top-level key names itself
    assert where in str(info.value) and expected in str(info.value) and str(path) in str(info.value)


ENGINE_ONLY = [
    ("a feature that does not exist", Input(name="x", feature="colour"), "inputs[0].feature", "'colour' is not"),
    ("no feature at all", Input(name="x"), "inputs[0].feature", "reads no feature"),
    ("equals on a number", Input(name="x", feature="value", equals="a"), "inputs[0].equals", "is a number"),
    ("a text read as a number", Input(name="x", feature="trigger"), "inputs[0].feature", "is text"),
    ("per a text", Input(name="x", feature="value", per="trigger"), "inputs[0].per", "a number feature"),
]  # fmt: skip


@pytest.mark.parametrize(("item", "key", "expected"), [b[1:] for b in ENGINE_ONLY], ids=[b[0] for b in ENGINE_ONLY])
def test_an_engine_model_must_read_the_engines_features(tmp_path: Path, item: Input, key: str, expected: str) -> None:
    path = write(tmp_path / "m.json", value_model(inputs=[item, Input(name="step", feature="step")]))
    read_model(path)  # a generic model may name any input
    with pytest.raises(ConfigError) as info:
        load_model(path)
    assert f"at `{key}`" in str(info.value) and expected in str(info.value)


@pytest.mark.parametrize(("content", "expected"), [(b"{not json", "not a model file"), (None, "not found")])
def test_an_unreadable_file_is_a_config_error(tmp_path: Path, content: bytes | None, expected: str) -> None:
    path = tmp_path / "m.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=expected):
        load_model(path)


# -- exported from scikit-learn: the same numbers ---------------------------------------------------------------


def _synthetic_rows(n: int, seed: int) -> tuple[list[list[float]], list[int]]:
    """Feature rows of random carts and labels from a known rule with an interaction and a non-monotone step."""
    rng = np.random.default_rng(seed)
    spec = ModelFile(
        format="recoverkit-model", version=1, inputs=feature_inputs(), model=Additive(intercept=0.0, terms=[]),
        calibration=Logistic(),
    )  # fmt: skip
    reader = ModelScorer(spec)
    rows, labels = [], []
    for _ in range(n):
        f = features(
            value=float(rng.lognormal(3.5, 1.0)), lines=int(rng.integers(1, 5)), quantity=int(rng.integers(1, 8)),
            step=int(rng.integers(1, 5)), checkout_seconds=float(rng.exponential(200)),
            session_seconds=float(rng.exponential(900)), returning=bool(rng.random() < 0.3),
            identified=bool(rng.random() < 0.5), payment_failures=int(rng.random() < 0.05),
            form_errors=int(rng.integers(0, 3)), exit_intent=bool(rng.random() < 0.2),
            shipping_ratio=float(rng.uniform(0, 0.3)), item_views=int(rng.integers(0, 20)),
            views=int(rng.integers(0, 30)),
            trigger=str(rng.choice(["inactivity", "exit_intent", "payment_failed"])),
        )  # fmt: skip
        # Step 3 converts less than step 2 here: a monotone promise on step must hold against the data.
        z = -1.5 + {1: 0.0, 2: 1.2, 3: 0.4, 4: 1.5}[f.step] + 0.9 * f.returning - 0.004 * f.value * f.identified
        z += 0.8 * (f.shipping_ratio < 0.1) * (f.step >= 3) - 0.05 * f.item_views
        labels.append(int(rng.random() < 1 / (1 + math.exp(-z))))
        rows.append(reader.row(f))
    return rows, labels


@pytest.fixture(scope="module")
def engine_model() -> Fitted:
    rows, labels = _synthetic_rows(1500, seed=1)
    return fit(rows, labels, feature_inputs(), monotone={"step": 1, "returning": 1}, max_iter=80, pairs=4)


@pytest.fixture(scope="module")
def isotonic_model() -> Fitted:
    rows, labels = _synthetic_rows(1500, seed=2)
    return fit(rows, labels, feature_inputs(), calibration="isotonic", max_iter=60, pairs=3)


def _feature_values(fitted: Fitted) -> st.SearchStrategy[Features]:
    """Features drawn around and exactly on the model's thresholds, where a bin can be off by one."""
    cuts: dict[str, list[float]] = {}
    for term in fitted.model.model.terms:
        for index, thresholds in zip(term.inputs, term.thresholds, strict=True):
            cuts.setdefault(fitted.model.inputs[index].name, []).extend(thresholds)

    def number(name: str, low: float, high: float) -> st.SearchStrategy[float]:
        exact = st.sampled_from(cuts[name]) if cuts.get(name) else st.nothing()
        return st.one_of(exact, st.floats(low, high, allow_nan=False))

    def count(name: str, high: int) -> st.SearchStrategy[int]:
        return st.integers(0, high)

    return st.builds(
        Features, value=number("value", 0, 1e5), lines=count("lines", 6), quantity=count("quantity", 10),
        step=st.integers(1, 4), checkout_seconds=number("checkout_seconds", 0, 1e4),
        session_seconds=number("session_seconds", 0, 1e5), returning=st.booleans(), identified=st.booleans(),
        payment_failures=count("payment_failures", 3), form_errors=count("form_errors", 5), exit_intent=st.booleans(),
        shipping_ratio=number("shipping_ratio", 0, 2), item_views=count("item_views", 40), views=count("views", 60),
        trigger=st.sampled_from(["inactivity", "exit_intent", "payment_failed"]),
    )  # fmt: skip


def _sklearn_probabilities(fitted: Fitted, rows: list[list[float]]) -> tuple[Any, Any]:
    margins = fitted.estimator.decision_function(np.asarray(rows))
    if isinstance(fitted.model.calibration, Platt):
        return margins, fitted.calibrator.predict_proba(margins.reshape(-1, 1))[:, 1]
    return margins, fitted.calibrator.predict(margins)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_exported_model_gives_sklearns_probabilities(engine_model: Fitted, data: st.DataObject) -> None:
    batch = data.draw(st.lists(_feature_values(engine_model), min_size=1, max_size=30))
    scorer = ModelScorer(engine_model.model)
    model = Model(engine_model.model)
    rows = [scorer.row(f) for f in batch]
    margins, expected = _sklearn_probabilities(engine_model, rows)
    for f, row, z, p in zip(batch, rows, margins.tolist(), expected.tolist(), strict=True):
        assert model.margin(row) == pytest.approx(z, abs=1e-9)
        assert scorer.probability(f) == pytest.approx(p, abs=1e-9)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_isotonic_calibration_matches_sklearn(isotonic_model: Fitted, data: st.DataObject) -> None:
    assert isinstance(isotonic_model.model.calibration, Isotonic)
    batch = data.draw(st.lists(_feature_values(isotonic_model), min_size=1, max_size=30))
    scorer = ModelScorer(isotonic_model.model)
    rows = [scorer.row(f) for f in batch]
    _, expected = _sklearn_probabilities(isotonic_model, rows)
    assert [scorer.probability(f) for f in batch] == pytest.approx(expected.tolist(), abs=1e-9)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_scores_are_probabilities_and_keep_the_monotone_promises(engine_model: Fitted, data: st.DataObject) -> None:
    assert engine_model.model.monotone == {"step": 1, "returning": 1}
    scorer = ModelScorer(engine_model.model)
    f = data.draw(_feature_values(engine_model))
    p = scorer.probability(f)
    assert 0.0 <= p <= 1.0
    further = msgspec.structs.replace(f, step=data.draw(st.integers(f.step, 4)))
    assert scorer.probability(further) >= p - 1e-12
    if not f.returning:
        assert scorer.probability(msgspec.structs.replace(f, returning=True)) >= p - 1e-12


def test_without_the_promise_the_same_data_gives_a_model_that_is_not_monotone_in_step() -> None:
    # The monotone test above can fail: the data's step effect is not monotone, only the constraint makes it so.
    rows, labels = _synthetic_rows(1500, seed=1)
    free = fit(rows, labels, feature_inputs(), max_iter=80, pairs=4)
    scorer = ModelScorer(free.model)
    by_step = [scorer.probability(features(step=s, value=20.0)) for s in (1, 2, 3, 4)]
    assert by_step[2] < by_step[1]


def test_fit_refuses_too_few_examples_of_a_class() -> None:
    rows, _ = _synthetic_rows(200, seed=3)
    with pytest.raises(ValueError, match="too few examples"):
        fit(rows, [1] * 5 + [0] * (len(rows) - 5), feature_inputs())


# -- in the engine -----------------------------------------------------------------------------------------------


def _flows(threshold: float) -> list[Flow]:
    return [
        Flow(name="likely", when=Condition(min_score=threshold), steps=[FlowStep(delay=0, channel="webhook")]),
        Flow(name="unlikely", steps=[FlowStep(delay=0, channel="webhook")]),
    ]


def _cart(session: str, price: str) -> dict[str, Any]:
    return {"event": "add_to_cart", "session_id": session, "currency": "EUR",
            "items": [{"item_id": "A", "price": price}]}  # fmt: skip


@pytest.mark.anyio
async def test_the_engine_loads_the_configured_model_and_routes_on_its_score(tmp_path: Path) -> None:
    path = write(tmp_path / "m.json", value_model())
    channel = MemoryChannel()
    clock = FakeClock(T0)
    # The default model scores both carts below 0.5; the model puts the 150-euro cart at 0.88.
    async with Engine(Config(model=str(path), flows=_flows(0.5)), channels={"webhook": channel}, clock=clock) as engine:
        engine.track(_cart("small", "20.00"))
        engine.track(_cart("large", "150.00"))
        await engine.flush()
        clock.advance(1801)
        await engine.flush()
    by_cart = {m.cart.cart_key: m for m in channel.sent}
    assert (by_cart["large"].flow, by_cart["small"].flow) == ("likely", "unlikely")
    assert by_cart["large"].score == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert DefaultScorer().probability(features(value=150.0)) < 0.5


def test_a_model_named_in_a_toml_file_is_loaded_by_the_engine(tmp_path: Path) -> None:
    model = write(tmp_path / "m.json", value_model())
    toml = tmp_path / "shop.toml"
    toml.write_text(f'model = "{model}"\n')
    engine = Engine(load_config(toml), channels={"email": MemoryChannel()}, clock=FakeClock(T0))
    assert isinstance(engine.score._scorer, ModelScorer)


def test_a_broken_model_file_stops_the_engine_at_start_up(tmp_path: Path) -> None:
    data = document(value_model())
    data["model"]["terms"][0]["values"] = [1.0, 2.0, 3.0]
    path = write(tmp_path / "m.json", data)
    with pytest.raises(ConfigError, match=r"m\.json: invalid model file at `model\.terms\[0\]\.values`"):
        Engine(Config(model=str(path)), channels={"email": MemoryChannel()}, clock=FakeClock(T0))


def test_a_scorer_passed_in_wins_over_the_configured_model(tmp_path: Path) -> None:
    missing = str(tmp_path / "absent.json")  # never read: the scorer given is used
    engine = Engine(Config(model=missing), channels={"email": MemoryChannel()}, clock=FakeClock(T0),
                    scorer=DefaultScorer())  # fmt: skip
    assert isinstance(engine.score._scorer, DefaultScorer)
