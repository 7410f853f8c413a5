"""``recoverkit train`` and ``evaluate`` on a shop's history, ``replay --model``, and the UCI shoppers data."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from recoverkit.cart import CartSnapshot
from recoverkit.cli import main
from recoverkit.evaluation import roc_auc
from recoverkit.model import Input, ModelScorer, encode_model, load_model, read_model
from recoverkit.score import DefaultScorer, Features, features_of
from recoverkit.sessionize import Abandoned
from recoverkit.synthetic import write_synthetic
from recoverkit.train import fit, require_sklearn
from shared_data import require_shared

pytest.importorskip("sklearn", reason="training needs scikit-learn (pip install 'recoverkit[train]')")

DAY = "86400"  # the synthetic shop's return visits come within three days; a day's window keeps most examples
FAST = ["--window", DAY, "--max-iter", "60"]  # a small history needs few rounds; keeps each test to a second or two


@pytest.fixture(scope="module")
def history_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("history") / "events.jsonl"
    write_synthetic(path, 3000, seed=0)  # ~800 abandonments, a quarter of them bought later
    return path


def test_train_writes_a_model_the_engine_loads_and_prints_both_models_figures(
    history_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.json"
    assert main(["train", str(history_file), "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    for expected in ("abandonments", "split by time", "auROC", "auPR", "Brier", "trained", "default",
                     "calibration of the trained score", f"wrote {out}"):  # fmt: skip
        assert expected in printed
    scorer = load_model(out)
    meta = scorer.spec.metadata
    assert meta["source"]["format"] == "jsonl" and meta["window_seconds"] == 86400
    assert set(meta["test_metrics"]) == {"trained", "default"}
    assert 0.5 < meta["test_metrics"]["trained"]["auroc"] <= 1
    assert scorer.spec.monotone == {"step": 1, "returning": 1}


def test_train_json_reports_the_split_and_the_figures(
    history_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.json"
    assert main(["train", str(history_file), "--out", str(out), *FAST, "--json", "--monotone", "none",
                 "--pairs", "2", "--calibration", "isotonic"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["train"]["carts"] + report["test"]["carts"] == report["abandonments"] - report["censored"]
    assert report["train"]["last_at"] <= report["test"]["first_at"]
    assert report["trained"]["carts"] == report["default"]["carts"] == report["test"]["carts"]
    assert len(report["pairs"]) == 2 and report["monotone"] == {} and report["calibration"] == "isotonic"
    assert report["score_microseconds"]["model"] > 0
    assert load_model(out).spec.monotone == {}


@pytest.mark.slow
def test_evaluate_scores_a_history_with_a_model_file(
    history_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.json"
    assert main(["train", str(history_file), "--out", str(out), *FAST, "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)["trained"]
    assert main(["evaluate", str(history_file), "--model", str(out), "--window", DAY, "--test-share", "0.25",
                 "--json"]) == 0  # fmt: skip
    figures = json.loads(capsys.readouterr().out)
    assert figures["model"]["auroc"] == pytest.approx(trained["auroc"])  # the same later share, the same model
    assert figures["model"]["carts"] == figures["default"]["carts"] == trained["carts"]


@pytest.mark.slow
def test_replay_with_model_scores_messages_with_it(history_file: Path, tmp_path: Path) -> None:
    model = tmp_path / "model.json"
    assert main(["train", str(history_file), "--out", str(model), *FAST, "--json"]) == 0
    messages = tmp_path / "messages.jsonl"
    assert main(["replay", str(history_file), "--model", str(model), "--out", str(messages), "--json"]) == 0
    sent = [json.loads(line) for line in messages.read_text().splitlines()]
    assert sent
    scorer, default = load_model(model), DefaultScorer()
    for m in sent[:20]:
        assert m["score"] == pytest.approx(scorer.probability(_features_of_message(m)))
    assert any(m["score"] != pytest.approx(default.probability(_features_of_message(m))) for m in sent)


def _features_of_message(message: dict[str, Any]) -> Features:
    cart = msgspec.convert(message["cart"], CartSnapshot)
    return features_of(Abandoned(cart=cart, trigger=message["trigger"], at=message["abandoned_at"]))


def test_train_on_a_history_too_short_for_its_window_says_so(
    history_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Default window: the recovery window, 7 days, longer than the whole history.
    assert main(["train", str(history_file), "--out", str(tmp_path / "m.json")]) == 1
    err = capsys.readouterr().err
    assert "censored" in err and "--window" in err
    assert not (tmp_path / "m.json").exists()


def test_train_without_scikit_learn_says_how_to_install_it(
    history_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'recoverkit\[train\]'"):
        require_sklearn()
    assert main(["train", str(history_file), "--out", str(tmp_path / "m.json"), *FAST]) == 2
    assert "pip install 'recoverkit[train]'" in capsys.readouterr().err


# -- UCI online shoppers: real sessions, split by month ----------------------------------------------------------

_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "June", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_NUMBERS = ["Administrative", "Administrative_Duration", "Informational", "Informational_Duration", "ProductRelated",
            "ProductRelated_Duration", "BounceRates", "ExitRates", "PageValues", "SpecialDay", "OperatingSystems",
            "Browser", "Region", "TrafficType"]  # fmt: skip
#: Measured: 0.836 auROC on Nov-Dec after training on Feb-Oct with the settings below (0.826-0.829 with the
#: defaults, docs/scoring.md); the floor leaves room for other scikit-learn versions, and is above the 0.80 of a
#: logistic regression on the same split.
UCI_AUROC_FLOOR = 0.81
#: Fewer rounds and pairs than the defaults: a quarter of the fitting (3.5 s instead of 13.6 s on one thread)
#: for a model that still has to rank real shoppers. benchmarks/eval_score.py measures the default settings.
UCI_SETTINGS: dict[str, Any] = {"max_iter": 60, "pairs": 2}


@pytest.mark.slow
def test_the_model_ranks_uci_shoppers_of_later_months(tmp_path: Path) -> None:
    path = require_shared("uci-online-shoppers-intention/online_shoppers_intention.csv")
    with open(path, newline="") as f:
        sessions = list(csv.DictReader(f))
    names = [*_NUMBERS, "returning_visitor", "new_visitor", "weekend"]

    def row(s: dict[str, str]) -> list[float]:
        flags = [s["VisitorType"] == "Returning_Visitor", s["VisitorType"] == "New_Visitor", s["Weekend"] == "TRUE"]
        return [float(s[n]) for n in _NUMBERS] + [float(x) for x in flags]

    train = [s for s in sessions if _MONTHS.index(s["Month"]) <= _MONTHS.index("Oct")]
    test = [s for s in sessions if _MONTHS.index(s["Month"]) > _MONTHS.index("Oct")]
    inputs = [Input(name=n) for n in names]
    fitted = fit([row(s) for s in train], [s["Revenue"] == "TRUE" for s in train], inputs, **UCI_SETTINGS)
    model_path = tmp_path / "uci.json"
    model_path.write_bytes(encode_model(fitted.model))
    model = read_model(model_path)
    auroc = roc_auc([s["Revenue"] == "TRUE" for s in test], [model.probability(row(s)) for s in test])
    assert auroc > UCI_AUROC_FLOOR
    with pytest.raises(Exception, match="reads no feature"):
        ModelScorer(fitted.model)  # a generic model is not one the engine can run
