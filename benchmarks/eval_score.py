"""The conversion score on real data: the trained model against the default model and a logistic baseline.

Not a speed benchmark (though it measures scoring time): an honest evaluation of ``recoverkit train``'s model
family on the public datasets in ``../shared/data`` (``$RECOVERKIT_SHARED_DATA``; provenance and licences in
its README). Every model below is trained with :func:`recoverkit.train.fit` and scored by the pure-Python
:class:`recoverkit.model.Model` read back from its file, so the figures are those of what the engine runs.

0. **The default score on every dataset** (issue 16): the old and the shipped ``DefaultScorer`` on UCI mapped to
   engine features, Retailrocket's carts at their first add-to-cart and the REES46 slice's carts where they
   open, bought within 10 minutes, censored ones left out (read by ``recoverkit._dataset_features``), with
   DeLong intervals, against a logistic regression on the same inputs
   fitted on the *other* datasets (the figure for a dataset from weights that never saw it) and, as ceilings,
   models fitted in-sample. The docs' table comes from this part: ``--only default`` runs it alone (~20 s).
1. **UCI online shoppers** (12,330 sessions, 15.5% buy). *Split by time*: train on Feb-Oct (7,605 sessions),
   test on Nov-Dec (4,725; the holiday months, 20.7% buy); ``Month`` is not an input (a tree cannot learn
   anything about months it never saw). *Random*: stratified 5-fold cross-validation with ``Month``, for
   comparison with the published auROC 0.937 / auPR 0.754 (gradient boosting, 2023, random split).
   Baselines: logistic regression (log1p of counts, durations and page values, one-hot codes, standardised) and
   scikit-learn's unconstrained ``HistGradientBoostingClassifier`` (a ceiling: it cannot be exported to the
   file format). Scoring time per row: the pure-Python model vs the default model on engine features, and vs
   ``predict_proba`` of scikit-learn on one row. How much ``PageValues`` carries: it alone as the score (all
   sessions, and Nov-Dec), and the trained model without it, split by time and in the random CV.
2. **Retailrocket cart snapshots** (``prefix_dataset.parquet``, needs ``pyarrow``: skipped with the reason
   when it is missing). Split by visitor (visitor id % 10 < 7 trains). The trained model on all 14 snapshot
   features; the trained model on the engine's ``Features`` computed from the snapshot (no prices, so value 0;
   views, carts, session time); the default model on those ``Features``; logistic baseline. Figures on the
   snapshots at the first add-to-cart (k = 0) and on the later ones (k >= 1: the cart was not bought at once).
3. **Does the score pay its way?** On the same test visitors' carts (k = 0 and k = 1): give everyone the
   discount, or only carts scored below a threshold (the 30th, 50th, 70th percentile of the score), or only
   price-comparison carts (the default model's reason) below it. For each: discounts given, how many went to
   carts that converted anyway, how many converting carts were spared the discount (they still get the plain
   reminder), and how many of the carts that did not convert still got it (the ones a discount could win).
4. **Replayed events through the engine**: the REES46 slice and the Retailrocket 1,500-visitor sample,
   converted by :mod:`recoverkit.datasets`, replayed by :func:`recoverkit.replay.replay` with two
   configurations on the ``webhook`` channel at the moment of abandonment (delay 0): a discount flow for every
   cart, and a discount flow with ``when.max_score`` (the median default score) before a plain reminder flow.
   Messages are joined to what the carts did later (:mod:`recoverkit.history`). These event samples are tiny
   and the figures say so.

``--quick`` is a smoke run of a few seconds: every 8th UCI session and Retailrocket visitor, 20 boosting
rounds, 2 folds, fewer timing calls, and only the Retailrocket event sample replayed (the REES46 slice is
skipped, with the reason in the output). It runs the same code; its figures are indicative only and are not
the ones in docs/scoring.md. A part whose data is missing is skipped, with the reason, never failed.

Run from the repository root (``pyarrow`` is optional; without it part 2-3 is skipped):

    .venv/bin/python benchmarks/eval_score.py            # ~1-2 minutes on 2 cores
    .venv/bin/python benchmarks/eval_score.py --quick --json
    .venv/bin/python benchmarks/eval_score.py --only retailrocket --json
    .venv/bin/python benchmarks/eval_score.py --only default
"""

from __future__ import annotations

import csv
import importlib.metadata
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec
from _common import emit_json, machine, parser, print_header, quiet_logs, ratio, watchdog

from recoverkit._dataset_features import (
    LabelledCarts,
    rees46_carts,
    retailrocket_carts,
    retailrocket_snapshot_features,
    uci_carts,
)
from recoverkit.config import Condition, Config, Flow, FlowStep
from recoverkit.evaluation import Evaluation, evaluate, roc_auc_interval
from recoverkit.events import CheckoutStep
from recoverkit.history import abandonment_history
from recoverkit.model import Input, Model, ModelScorer, decode_model, encode_model, load_model
from recoverkit.replay import replay
from recoverkit.score import _WEIGHTS, DefaultScorer, Features
from recoverkit.train import feature_inputs, fit

PUBLISHED = {"auroc": 0.937, "aupr": 0.754}
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "June", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
UCI_NUMBERS = [
    "Administrative",
    "Administrative_Duration",
    "Informational",
    "Informational_Duration",
    "ProductRelated",
    "ProductRelated_Duration",
    "BounceRates",
    "ExitRates",
    "PageValues",
    "SpecialDay",
]
UCI_CODES = ["OperatingSystems", "Browser", "Region", "TrafficType"]
UCI_LOGGED = {"Administrative", "Administrative_Duration", "Informational", "Informational_Duration",
              "ProductRelated", "ProductRelated_Duration", "PageValues"}  # fmt: skip
PREFIX_FEATURES = ["cutoff_k", "view_count", "addtocart_count", "unique_items_count", "view_to_cart_ratio",
                   "seconds_since_first_event", "seconds_since_first_cart", "seconds_since_last_cart",
                   "seconds_since_previous_event", "inter_event_interval_mean", "events_after_cart",
                   "repeated_views_of_cart_items", "hour_of_day", "day_of_week"]  # fmt: skip
QUANTILES = (0.3, 0.5, 0.7)
#: ``--quick``: keep one UCI session (and one Retailrocket visitor) in this many; boosting rounds; CV folds.
QUICK_EVERY = 8
QUICK_SETTINGS: dict[str, Any] = {"max_iter": 20}
QUICK_FOLDS = 2


def data_dir() -> Path:
    configured = os.environ.get("RECOVERKIT_SHARED_DATA")
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "data"


def figures(ev: Evaluation) -> dict[str, Any]:
    return {"carts": ev.carts, "converted": ev.converted, "auroc": ev.auroc, "aupr": ev.aupr, "brier": ev.brier}


def exported(rows: Sequence[Sequence[float]], labels: Sequence[int], inputs: list[Input], **settings: Any) -> Model:
    """Fit, write to bytes and read back: the model as the engine would load it."""
    return Model(decode_model(encode_model(fit(rows, labels, inputs, **settings).model)))


# -- 0. the default score on every dataset -----------------------------------------------------------------------

#: The inputs of the default that these datasets measure (the rest are constant in all three: no checkout steps,
#: friction signals or known past buyers), for the logistic fits of part 0, each standardised within its dataset.
ENGAGEMENT = ("log1p_item_views", "log1p_session_minutes", "log1p_value")


def old_default_probability(f: Features) -> float:
    """The default model before issue 16, its "many views" penalty included: the baseline of part 0."""
    steps = {CheckoutStep.CHECKOUT: 0.6, CheckoutStep.SHIPPING: 0.9, CheckoutStep.PAYMENT: 1.3,
             CheckoutStep.PURCHASE: 1.3}  # fmt: skip
    z = -1.6 + steps.get(CheckoutStep(f.step), 0.0) + (0.8 if f.returning else 0.0) + (0.3 if f.identified else 0.0)
    z += -0.08 * math.log1p(f.value) + (0.4 if f.payment_failures else 0.0) - 0.2 * min(f.form_errors, 3)
    z -= (0.7 if f.shipping_ratio >= 0.1 else 0.0) + (0.3 if f.exit_intent else 0.0)
    z -= 0.4 if f.item_views >= 4 * max(f.lines, 1) else 0.0
    return 1.0 / (1.0 + math.exp(-(z + 0.1 * math.log1p(f.checkout_seconds / 60.0))))


def shipped_with_engagement(f: Features, sign: float) -> float:
    """The shipped default with its two engagement terms kept (``sign`` 1), dropped (0) or reversed (-1): no
    choice of their direction reaches the floor on all three datasets, which these rows show."""
    # The default without them scores the cart as if it had no views and no time (log1p(0) is 0): carts alike
    # in everything else get the very same score, so no rounding breaks their ties.
    p = DefaultScorer().probability(msgspec.structs.replace(f, item_views=0, session_seconds=0.0))
    views, minutes = math.log1p(f.item_views), math.log1p(f.session_seconds / 60.0)
    engagement = _WEIGHTS["log_item_views"] * views + _WEIGHTS["log_session_minutes"] * minutes
    z = math.log(p / (1.0 - p)) + sign * engagement
    return 1.0 / (1.0 + math.exp(-z))


def engagement_row(f: Features) -> list[float]:
    return [math.log1p(f.item_views), math.log1p(f.session_seconds / 60.0), math.log1p(f.value)]


def interval(labels: Sequence[bool], scores: Sequence[float]) -> dict[str, float]:
    auroc, low, high = roc_auc_interval(labels, scores)
    return {"auroc": auroc, "low": low, "high": high}


def default_datasets(root: Path, quick: bool) -> tuple[dict[str, LabelledCarts], dict[str, str]]:
    """The datasets of part 0 that are present (``--quick``: every 8th cart of the large ones), and why not."""
    readers: dict[str, tuple[Path, Callable[[Path], LabelledCarts]]] = {
        "uci": (root / "uci-online-shoppers-intention" / "online_shoppers_intention.csv", uci_carts),
        "retailrocket": (root / "retailrocket-cart-sessions-derived" / "prefix_dataset.parquet", retailrocket_carts),
        "rees46": (root / "rees46-multicategory-2019oct-prefix" / "2019-Oct.csv", rees46_carts),
    }
    data: dict[str, LabelledCarts] = {}
    skipped: dict[str, str] = {}
    for name, (path, read) in readers.items():
        if not path.exists():
            skipped[name] = f"{path} not found"
            continue
        try:
            carts = read(path)
        except ImportError as exc:
            skipped[name] = str(exc)
            continue
        if quick and len(carts.features) > 1000:
            carts = LabelledCarts(carts.features[::QUICK_EVERY], carts.converted[::QUICK_EVERY])
        data[name] = carts
    return data, skipped


def default_score(root: Path, quick: bool) -> dict[str, Any]:
    """Part 0: per dataset, the old and the shipped default against models fitted to it and to the others."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    data, skipped = default_datasets(root, quick)
    out: dict[str, Any] = {name: {"skipped": why} for name, why in skipped.items()}
    settings: dict[str, Any] = QUICK_SETTINGS if quick else {}
    reader = ModelScorer(_blank(feature_inputs()))
    shipped = DefaultScorer()

    def standardised(name: str) -> Any:
        # Each dataset on its own scale (no labels used): pooled raw, UCI's long sessions and lower base rate
        # would teach "many views, few purchases" across datasets, which says nothing about carts within one.
        x = np.asarray([engagement_row(f) for f in data[name].features])
        sd = x.std(axis=0)
        return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)

    def logistic(on: list[str]) -> Any:
        # One intercept per dataset (its base rate); a constant shift does not change the ranking elsewhere.
        codes = np.asarray([[float(name == d) for d in on] for name in on for _ in data[name].features])
        x = np.hstack([np.vstack([standardised(name) for name in on]), codes])
        y = np.asarray([v for name in on for v in data[name].converted], dtype=int)
        return LogisticRegression(max_iter=1000, fit_intercept=False).fit(x, y)

    def margin(model: Any, name: str) -> list[float]:
        return (standardised(name) @ model.coef_[0][: len(ENGAGEMENT)]).tolist()

    for name, carts in data.items():
        y = carts.converted
        x = [engagement_row(f) for f in carts.features]
        rows = [reader.row(f) for f in carts.features]
        trained = exported(rows, [int(v) for v in y], feature_inputs(), **settings)
        out[name] = {
            "carts": len(y), "converted": sum(y), "returning": sum(f.returning for f in carts.features),
            "alone": {n: interval(y, [r[i] for r in x]) for i, n in enumerate(ENGAGEMENT)},
            "old_default": interval(y, [old_default_probability(f) for f in carts.features]),
            "shipped_default": interval(y, [shipped.probability(f) for f in carts.features]),
            "without_engagement": interval(y, [shipped_with_engagement(f, 0.0) for f in carts.features]),
            "engagement_reversed": interval(y, [shipped_with_engagement(f, -1.0) for f in carts.features]),
            "in_sample_logistic": interval(y, margin(logistic([name]), name)),
            "in_sample_recoverkit": interval(y, [trained.probability(r) for r in rows]),
        }  # fmt: skip
        others = [other for other in data if other != name]
        if others:
            model = logistic(others)
            coefficients = model.coef_[0][: len(ENGAGEMENT)].tolist()
            out[name]["fitted_on_the_others"] = {
                **interval(y, margin(model, name)),
                "on": others, "coefficients": dict(zip(ENGAGEMENT, coefficients, strict=True)),
            }  # fmt: skip
    return out


# -- 1. UCI -----------------------------------------------------------------------------------------------------


def load_uci(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def uci_row(s: dict[str, str], month: bool) -> list[float]:
    row = [float(s[n]) for n in UCI_NUMBERS]
    row += [float(MONTHS.index(s["Month"]))] if month else []
    row += [float(s[n]) for n in UCI_CODES]
    flags = [s["VisitorType"] == "Returning_Visitor", s["VisitorType"] == "New_Visitor", s["Weekend"] == "TRUE"]
    return row + [float(flag) for flag in flags]


def uci_inputs(month: bool) -> list[Input]:
    names = [*UCI_NUMBERS, *(["Month"] if month else []), *UCI_CODES, "returning_visitor", "new_visitor", "weekend"]
    return [Input(name=n) for n in names]


def logistic_baseline(train: Any, y_train: Any, test: Any, names: list[str]) -> Any:
    """Logistic regression as a careful analyst would set it up: log1p of skewed counts, one-hot codes."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    logged = [i for i, n in enumerate(names) if n in UCI_LOGGED or n.startswith(("view", "addtocart", "seconds"))]
    coded = [i for i, n in enumerate(names) if n in (*UCI_CODES, "Month")]
    plain = [i for i in range(len(names)) if i not in logged and i not in coded]
    prep = ColumnTransformer([
        ("log", make_pipeline(FunctionTransformer(lambda x: np.log1p(np.clip(x, 0, None))), StandardScaler()), logged),
        ("codes", OneHotEncoder(handle_unknown="ignore"), coded),
        ("plain", StandardScaler(), plain),
    ])  # fmt: skip
    model = make_pipeline(prep, LogisticRegression(max_iter=3000)).fit(train, y_train)
    return model.predict_proba(test)[:, 1]


def unconstrained(train: Any, y_train: Any, test: Any) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=0).fit(train, y_train).predict_proba(test)[:, 1]


def uci(path: Path, quick: bool) -> dict[str, Any]:
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    sessions = load_uci(path)
    if quick:
        sessions = sessions[::QUICK_EVERY]
    settings: dict[str, Any] = QUICK_SETTINGS if quick else {}
    labels = np.asarray([s["Revenue"] == "TRUE" for s in sessions], dtype=int)
    month = np.asarray([MONTHS.index(s["Month"]) for s in sessions])
    out: dict[str, Any] = {"sessions": len(sessions), "converted": int(labels.sum()), "quick": quick}

    # Split by time.
    inputs = uci_inputs(month=False)
    x = np.asarray([uci_row(s, month=False) for s in sessions])
    train, test = month <= MONTHS.index("Oct"), month > MONTHS.index("Oct")
    started = time.perf_counter()
    fitted = fit(x[train].tolist(), labels[train].tolist(), inputs, **settings)
    fit_seconds = time.perf_counter() - started
    model = Model(decode_model(encode_model(fitted.model)))
    ours = [model.probability(r) for r in x[test].tolist()]
    names = [i.name for i in inputs]
    y_test = labels[test].tolist()
    logistic = logistic_baseline(x[train], labels[train], x[test], names).tolist()
    out["time_split"] = {
        "train": "Feb-Oct", "test": "Nov-Dec", "train_sessions": int(train.sum()), "test_sessions": int(test.sum()),
        "test_converted": int(labels[test].sum()), "fit_seconds": fit_seconds,
        "terms": len(model.spec.model.terms), "file_bytes": len(encode_model(model.spec)),
        "recoverkit": figures(evaluate(y_test, ours)),
        "logistic": figures(evaluate(y_test, logistic)),
        "unconstrained_hgb": figures(evaluate(y_test, unconstrained(x[train], labels[train], x[test]).tolist())),
        "calibration": {
            "recoverkit": msgspec.to_builtins(evaluate(y_test, ours, bins=5).calibration),
            "logistic": msgspec.to_builtins(evaluate(y_test, logistic, bins=5).calibration),
        },
    }  # fmt: skip

    out["time_split"]["recoverkit_interval"] = interval(y_test, ours)
    out["page_values"] = page_values(sessions, x, labels, train, settings)

    # Scoring time: the exported model per row, against the default model and scikit-learn on one row.
    rows = x[test].tolist()[: 200 if quick else 2000]
    features = [_engine_features(i) for i in range(len(rows))]
    default = DefaultScorer()
    single = [x[test][i : i + 1] for i in range(20 if quick else 200)]
    timing = {
        "recoverkit_model": _per_call(lambda: [model.probability(r) for r in rows], len(rows)),
        "default_model": _per_call(lambda: [default.probability(f) for f in features], len(features)),
        "sklearn_predict_proba_one_row": _per_call(
            lambda: [fitted.estimator.predict_proba(r) for r in single], len(single), repeat=2
        ),
    }
    out["scoring_microseconds"] = timing
    # Speed as ratios to baselines timed in the same run: the default model is what the engine runs without
    # a model file; scikit-learn is what one would run without the export.
    out["scoring_ratios"] = {
        "recoverkit_model_vs_default_model": ratio(timing["recoverkit_model"], timing["default_model"]),
        "sklearn_one_row_vs_recoverkit_model": ratio(
            timing["sklearn_predict_proba_one_row"], timing["recoverkit_model"]
        ),
    }

    # Random stratified 5-fold cross-validation, with Month, as the published figure was obtained.
    inputs_m = uci_inputs(month=True)
    xm = np.asarray([uci_row(s, month=True) for s in sessions])
    folds = StratifiedKFold(QUICK_FOLDS if quick else 5, shuffle=True, random_state=0)
    per: dict[str, list[Evaluation]] = {"recoverkit": [], "recoverkit_without_page_values": [], "logistic": [],
                                        "unconstrained_hgb": []}  # fmt: skip
    names_m = [i.name for i in inputs_m]
    keep = [i for i, name in enumerate(names_m) if name != "PageValues"]
    for tr, te in folds.split(xm, labels):
        model_m = exported(xm[tr].tolist(), labels[tr].tolist(), inputs_m, **settings)
        y = labels[te].tolist()
        per["recoverkit"].append(evaluate(y, [model_m.probability(r) for r in xm[te].tolist()]))
        without = exported(xm[tr][:, keep].tolist(), labels[tr].tolist(), [inputs_m[i] for i in keep], **settings)
        per["recoverkit_without_page_values"].append(
            evaluate(y, [without.probability(r) for r in xm[te][:, keep].tolist()])
        )
        per["logistic"].append(evaluate(y, logistic_baseline(xm[tr], labels[tr], xm[te], names_m).tolist()))
        per["unconstrained_hgb"].append(evaluate(y, unconstrained(xm[tr], labels[tr], xm[te]).tolist()))
    out["random_cv"] = {
        "folds": folds.get_n_splits(),
        **{name: _summary(evs) for name, evs in per.items()},
        "published": PUBLISHED,
    }
    return out


def page_values(sessions: list[dict[str, str]], x: Any, labels: Any, train: Any, settings: dict[str, Any]) -> Any:
    """How much of UCI's figure PageValues carries: it alone as the score, and the time split without it."""
    values = [float(s["PageValues"]) for s in sessions]
    y = labels.tolist()
    test = ~train
    inputs = uci_inputs(month=False)
    column = [i.name for i in inputs].index("PageValues")
    keep = [i for i in range(len(inputs)) if i != column]
    model = exported(x[train][:, keep].tolist(), labels[train].tolist(), [inputs[i] for i in keep], **settings)
    return {
        "alone_all_sessions": interval(y, values),
        "alone_nov_dec": interval(labels[test].tolist(), [v for v, t in zip(values, test, strict=True) if t]),
        "time_split_without": interval(
            labels[test].tolist(), [model.probability(r) for r in x[test][:, keep].tolist()]
        ),
    }


def _engine_features(i: int) -> Features:
    return Features(
        value=20.0 + i % 200, lines=1 + i % 3, quantity=1 + i % 4, step=1 + i % 4, checkout_seconds=float(i % 600),
        session_seconds=float(i % 3600), returning=i % 3 == 0, identified=i % 2 == 0, payment_failures=i % 7 == 0,
        form_errors=i % 5, exit_intent=i % 4 == 0, shipping_ratio=(i % 20) / 100, item_views=i % 12, views=i % 20,
        trigger="inactivity",
    )  # fmt: skip


def _per_call(run: Callable[[], Any], calls: int, repeat: int = 5) -> float:
    best = math.inf
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best / calls * 1e6


def _summary(evs: list[Evaluation]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("auroc", "aupr", "brier"):
        values = [getattr(e, key) for e in evs]
        out[key] = {"mean": statistics.fmean(values), "sd": statistics.pstdev(values), "min": min(values),
                    "max": max(values)}  # fmt: skip
    return out


# -- 2 and 3. Retailrocket snapshots -----------------------------------------------------------------------------


def load_prefix(path: Path) -> list[dict[str, Any]] | str:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return "pyarrow is not installed (pip install pyarrow, or put a copy on PYTHONPATH); it reads the parquet file"
    return list(pq.read_table(path).to_pylist())


#: What the engine would know of a snapshot's cart (no prices, at the cart step, identified).
prefix_features = retailrocket_snapshot_features


def prefix_row(s: dict[str, Any]) -> list[float]:
    return [float(s[n]) if s[n] is not None else -1.0 for n in PREFIX_FEATURES]  # -1: no previous event yet


def retailrocket(path: Path, sample: Path, quick: bool) -> dict[str, Any]:
    import numpy as np

    snapshots = load_prefix(path)
    if isinstance(snapshots, str):
        return {"skipped": snapshots}
    if quick:
        # Whole visitors, chosen so that the split by visitor id % 10 keeps its proportions.
        snapshots = [s for s in snapshots if (s["visitorid"] // 10) % QUICK_EVERY == 0]
    settings: dict[str, Any] = QUICK_SETTINGS if quick else {}
    # The 1,500-visitor event sample (part 4) is replayed with the engine-features model: none of its visitors
    # may be among those the model learnt from.
    held_out = set()
    if sample.exists():
        with open(sample, newline="") as f:
            held_out = {int(row["visitorid"]) for row in csv.DictReader(f)}
    train = [s for s in snapshots if s["visitorid"] % 10 < 7 and s["visitorid"] not in held_out]
    test = [s for s in snapshots if s["visitorid"] % 10 >= 7]
    reader = ModelScorer(_blank(feature_inputs()))
    started = time.perf_counter()
    on_all = exported([prefix_row(s) for s in train], [s["y"] for s in train],
                      [Input(name=n) for n in PREFIX_FEATURES], **settings)  # fmt: skip
    on_features = fit([reader.row(prefix_features(s)) for s in train], [s["y"] for s in train], feature_inputs(),
                      **settings)  # fmt: skip
    seconds = time.perf_counter() - started
    engine_model = ModelScorer(decode_model(encode_model(on_features.model)))
    default = DefaultScorer()
    scores: dict[str, list[float]] = {
        "recoverkit_all_features": [on_all.probability(prefix_row(s)) for s in test],
        "recoverkit_engine_features": [engine_model.probability(prefix_features(s)) for s in test],
        "default_engine_features": [default.probability(prefix_features(s)) for s in test],
        "logistic_all_features": logistic_baseline(
            np.asarray([prefix_row(s) for s in train]), np.asarray([s["y"] for s in train]),
            np.asarray([prefix_row(s) for s in test]), PREFIX_FEATURES,
        ).tolist(),
    }  # fmt: skip
    out: dict[str, Any] = {
        "engine_model": on_features.model, "quick": quick, "sample_visitors_left_out_of_training": len(held_out),
        "snapshots": len(snapshots), "train_snapshots": len(train), "test_snapshots": len(test),
        "train_visitors": len({s["visitorid"] for s in train}), "test_visitors": len({s["visitorid"] for s in test}),
        "fit_seconds": seconds,
    }  # fmt: skip
    for label, keep in (("k0", lambda s: s["cutoff_k"] == 0), ("k1plus", lambda s: s["cutoff_k"] >= 1)):
        idx = [i for i, s in enumerate(test) if keep(s)]
        y = [test[i]["y"] for i in idx]
        out[label] = {name: figures(evaluate(y, [v[i] for i in idx])) for name, v in scores.items()}
    reasons = [default.reason(prefix_features(s)) for s in test]
    out["pays_its_way"] = {
        label: policies(
            [test[i]["y"] for i in idx],
            {name: [scores[name][i] for i in idx] for name in ("recoverkit_all_features", "recoverkit_engine_features",
                                                                 "default_engine_features")},
            [reasons[i] for i in idx],
        )
        for label, idx in (
            ("k0", [i for i, s in enumerate(test) if s["cutoff_k"] == 0]),
            ("k1", [i for i, s in enumerate(test) if s["cutoff_k"] == 1]),
        )
    }  # fmt: skip
    return out


def _blank(inputs: list[Input]) -> Any:
    from recoverkit.model import Additive, Logistic, ModelFile

    return ModelFile(format="recoverkit-model", version=1, inputs=inputs, model=Additive(intercept=0.0, terms=[]),
                     calibration=Logistic())  # fmt: skip


def policies(labels: list[int], scores: dict[str, list[float]], reasons: list[str]) -> dict[str, Any]:
    """Who gets the discount under each rule, and what that means for carts that converted anyway."""
    n, converting = len(labels), sum(labels)
    rows = [_policy("everyone", [True] * n, labels)]
    for name, values in scores.items():
        cuts = sorted(values)
        for q in QUANTILES:
            t = cuts[min(int(q * n), n - 1)]
            rows.append(_policy(f"{name} < p{round(q * 100)}", [v < t for v in values], labels))
        t = cuts[min(int(0.5 * n), n - 1)]
        rows.append(
            _policy(
                f"{name} < p50 and price_comparison",
                [v < t and r == "price_comparison" for v, r in zip(values, reasons, strict=True)],
                labels,
            )
        )
    return {"carts": n, "converted": converting, "rules": rows}


def _policy(name: str, discount: list[bool], labels: list[int]) -> dict[str, Any]:
    given = sum(discount)
    anyway = sum(1 for d, y in zip(discount, labels, strict=True) if d and y)
    converting = sum(labels)
    lost = len(labels) - converting
    return {
        "rule": name, "discounts": given, "to_converted_anyway": anyway,
        "converted_anyway_rate": anyway / given if given else math.nan,
        "converting_spared": converting - anyway, "converting_spared_share": (converting - anyway) / converting,
        "not_converting_reached": given - anyway,
        "not_converting_reached_share": (given - anyway) / lost if lost else math.nan,
    }  # fmt: skip


# -- 4. replayed events --------------------------------------------------------------------------------------------


class _Collect:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, message: Any) -> None:
        self.sent.append(message)


def replayed(csv_path: Path, fmt: str, config: Config, window: float, models: dict[str, Any]) -> dict[str, Any]:
    """Replay a dataset through the engine under each rule; count discounts and which of them were wasted."""
    from recoverkit import datasets

    events = list(datasets.rees46_events(csv_path) if fmt == "rees46" else datasets.retailrocket_events(csv_path))
    history = abandonment_history(events, config=config, window=window)
    labels = {(e.cart_key, e.at): e.converted for e in history.examples}
    out: dict[str, Any] = {
        "events": len(events), "abandonments": history.abandonments, "censored": history.censored,
        "labelled": len(history.examples), "converted": sum(labels.values()), "window_hours": window / 3600,
    }  # fmt: skip
    if not history.examples:
        return out
    step = [FlowStep(delay=0, channel="webhook")]
    lines = [msgspec.json.encode(e) for e in events]
    rules: dict[str, Config] = {"everyone": msgspec.structs.replace(config, flows=[Flow(name="discount", steps=step)])}
    for name, path in models.items():
        scorer = load_model(path) if path is not None else DefaultScorer(config.shipping_shock_ratio)
        scores = [scorer.probability(e.features) for e in history.examples]
        out[f"{name}_model"] = figures(evaluate([e.converted for e in history.examples], scores))
        threshold = statistics.median(scores)
        flows = [Flow(name="discount", when=Condition(max_score=threshold), steps=step),
                 Flow(name="reminder", steps=step)]  # fmt: skip
        rules[f"{name} score <= {threshold:.3f} (median)"] = msgspec.structs.replace(
            config, flows=flows, model=str(path) if path is not None else None
        )
    for rule, setting in rules.items():
        out[rule] = _replay_rule(lines, setting, labels)
    return out


def _replay_rule(lines: list[bytes], config: Config, labels: dict[tuple[str, float], bool]) -> dict[str, Any]:
    collect: _Collect = _Collect()
    pending: list[Any] = []

    async def run() -> None:
        await replay(lines, config=config, channels={"webhook": collect}, pending_out=pending)

    anyio.run(run)
    messages = [m for m in collect.sent + pending if (m.cart.cart_key, m.abandoned_at) in labels]
    discounts = [m for m in messages if m.flow == "discount"]
    anyway = sum(1 for m in discounts if labels[(m.cart.cart_key, m.abandoned_at)])
    converting = sum(labels.values())
    return {
        "messages": len(messages), "discounts": len(discounts), "to_converted_anyway": anyway,
        "converting_spared": converting - anyway, "not_converting_reached": len(discounts) - anyway,
    }  # fmt: skip


def replays(root: Path, engine_model: Any, quick: bool) -> dict[str, Any]:
    import tempfile

    rees46 = root / "rees46-multicategory-2019oct-prefix" / "2019-Oct.csv"
    rr = root / "retailrocket-events-sample-1500-visitors" / "events.csv"
    out: dict[str, Any] = {}
    if quick:
        # 17,000 rows, replayed twice: most of a quick run's time for a figure the full run gives anyway.
        out["rees46_slice"] = {"skipped": "--quick replays the Retailrocket sample only"}
    elif rees46.exists():
        # The slice covers under three hours and its carts are abandoned in the last 20 minutes: the demo's
        # 10-minute abandonment and a 10-minute window are all it allows.
        out["rees46_slice"] = replayed(rees46, "rees46", Config(abandon_after=600), 600.0, {"default": None})
    else:
        out["rees46_slice"] = {"skipped": f"{rees46} not found"}
    if not rr.exists():
        out["retailrocket_sample"] = {"skipped": f"{rr} not found"}
    else:
        models: dict[str, Any] = {"default": None}
        with tempfile.TemporaryDirectory() as tmp:
            if engine_model is not None:
                path = Path(tmp) / "retailrocket-model.json"
                path.write_bytes(encode_model(engine_model))
                models["trained (snapshots)"] = path
            out["retailrocket_sample"] = replayed(rr, "retailrocket", Config(), 7 * 86400.0, models)
    return out


# -- printing ------------------------------------------------------------------------------------------------------


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def report_default(part: dict[str, Any]) -> None:
    print("0. The default score per dataset: auROC [DeLong 95%]; each cart where it opens (UCI: every session;")
    print("   REES46: bought within 10 min, the last 10 min censored); 'fitted on the others': logistic on the")
    print("   engagement inputs of the other datasets")
    rows = ("old_default", "shipped_default", "without_engagement", "engagement_reversed", "fitted_on_the_others",
            "in_sample_logistic", "in_sample_recoverkit")  # fmt: skip
    for name, d in part.items():
        if "skipped" in d:
            print(f"   {name}: skipped: {d['skipped']}")
            continue
        print(f"   {name}: {d['carts']:,} carts, {d['converted']:,} bought, {d['returning']:,} of a returning buyer")
        for row in rows:
            if row in d:
                v = d[row]
                print(f"     {row:24s} {_f(v['auroc'])} [{_f(v['low'])}-{_f(v['high'])}]")
        alone = ", ".join(f"{k} {_f(v['auroc'])}" for k, v in d["alone"].items())
        print(f"     each input alone: {alone}")
        if "fitted_on_the_others" in d:
            o = d["fitted_on_the_others"]
            coefficients = ", ".join(f"{k} {v:+.2f}" for k, v in o["coefficients"].items())
            print(f"     fitted on {' + '.join(o['on'])}: standardised coefficients {coefficients}")
    print()


def report(doc: dict[str, Any]) -> None:
    if "default" in doc:
        report_default(doc["default"])
    u = doc.get("uci")
    if u is not None:
        t = u["time_split"]
        print(
            f"1. UCI online shoppers, split by time: train {t['train']} ({t['train_sessions']:,} sessions), test "
            f"{t['test']} ({t['test_sessions']:,}, {t['test_converted']:,} bought); Month not an input"
        )
        print(f"   {'model':32s} {'auROC':>7s} {'auPR':>7s} {'Brier':>7s}")
        for name in ("recoverkit", "logistic", "unconstrained_hgb"):
            r = t[name]
            print(f"   {name:32s} {_f(r['auroc']):>7s} {_f(r['aupr']):>7s} {_f(r['brier'], 4):>7s}")
        print(
            f"   recoverkit model: {t['terms']} terms, {t['file_bytes'] / 1024:.0f} KB file, fitted in "
            f"{t['fit_seconds']:.1f} s"
        )
        for name, rows in t["calibration"].items():
            cells = ", ".join(f"{r['predicted']:.2f}->{r['observed']:.2f}" for r in rows)
            print(f"   calibration {name} (5 groups, predicted->bought): {cells}")
        v, pv = t["recoverkit_interval"], u["page_values"]
        print(f"   recoverkit auROC [DeLong 95%]: {_f(v['auroc'])} [{_f(v['low'])}-{_f(v['high'])}]")
        cells = [f"{label} {_f(pv[key]['auroc'])} [{_f(pv[key]['low'])}-{_f(pv[key]['high'])}]"
                 for label, key in (("alone, all sessions", "alone_all_sessions"), ("alone, Nov-Dec", "alone_nov_dec"),
                                    ("recoverkit by time without it", "time_split_without"))]  # fmt: skip
        print(f"   PageValues: {'; '.join(cells)}")
        c = u["random_cv"]
        print(
            f"   random stratified {c['folds']}-fold CV with Month (mean ± sd [min-max]); published "
            f"{PUBLISHED['auroc']} / {PUBLISHED['aupr']}"
        )
        for name in ("recoverkit", "recoverkit_without_page_values", "logistic", "unconstrained_hgb"):
            a, p = c[name]["auroc"], c[name]["aupr"]
            print(
                f"   {name:32s} auROC {a['mean']:.3f} ± {a['sd']:.3f} [{a['min']:.3f}-{a['max']:.3f}]  "
                f"auPR {p['mean']:.3f} ± {p['sd']:.3f} [{p['min']:.3f}-{p['max']:.3f}]"
            )
        s, q = u["scoring_microseconds"], u["scoring_ratios"]
        print(
            f"   scoring, µs per call: recoverkit model {s['recoverkit_model']:.2f}, default model "
            f"{s['default_model']:.2f}, scikit-learn predict_proba on one row "
            f"{s['sklearn_predict_proba_one_row']:.0f}"
        )
        print(
            f"   recoverkit model / default model {q['recoverkit_model_vs_default_model']:.2f}x; "
            f"scikit-learn one row / recoverkit model {q['sklearn_one_row_vs_recoverkit_model']:,.0f}x"
        )
        print()
    r = doc.get("retailrocket")
    if r is not None:
        if "skipped" in r:
            print(f"2-3. Retailrocket snapshots: skipped: {r['skipped']}\n")
        else:
            print(
                f"2. Retailrocket cart snapshots, split by visitor: {r['train_visitors']:,} visitors train, "
                f"{r['test_visitors']:,} test ({r['test_snapshots']:,} snapshots)"
            )
            for label in ("k0", "k1plus"):
                first = next(iter(r[label].values()))
                print(f"   {label}: {first['carts']:,} snapshots, {first['converted']:,} converted")
                for name, v in r[label].items():
                    print(f"   {name:32s} {_f(v['auroc']):>7s} {_f(v['aupr']):>7s} {_f(v['brier'], 4):>7s}")
            print("3. Who gets the discount (test visitors' carts)")
            for label, p in r["pays_its_way"].items():
                print(
                    f"   {label}: {p['carts']:,} carts, {p['converted']:,} converted anyway "
                    f"({p['converted'] / p['carts']:.1%})"
                )
                print(
                    f"   {'rule':58s} {'discounts':>9s} {'to conv.':>9s} {'rate':>6s} {'conv. spared':>12s} "
                    f"{'not-conv. reached':>17s}"
                )
                for row in p["rules"]:
                    print(
                        f"   {row['rule']:58s} {row['discounts']:9,d} {row['to_converted_anyway']:9,d} "
                        f"{_f(row['converted_anyway_rate'], 3):>6s} {row['converting_spared_share']:12.1%} "
                        f"{row['not_converting_reached_share']:17.1%}"
                    )
            print()
    for name, v in doc.get("replays", {}).items():
        if "skipped" in v:
            print(f"4. {name}: skipped: {v['skipped']}")
            continue
        hours = v["window_hours"]
        window = f"{hours:g} h" if hours >= 1 else f"{hours * 60:g} min"
        print(
            f"4. {name} replayed: {v['events']:,} events, {v['abandonments']} abandonments, {v['censored']} "
            f"censored, {v['labelled']} labelled, {v['converted']} bought within {window}"
        )
        for key, m in v.items():
            if isinstance(m, dict) and "auroc" in m:
                print(f"   {key}: auROC {_f(m['auroc'])}, auPR {_f(m['aupr'])}")
        for key, m in v.items():
            if isinstance(m, dict) and "discounts" in m:
                print(
                    f"   {key:46s} messages {m['messages']}, discounts {m['discounts']}, to carts bought anyway "
                    f"{m['to_converted_anyway']}, bought carts spared {m['converting_spared']}"
                )


def main() -> None:
    p = parser(__doc__.split("\n\n")[0], timeout=1800.0)
    p.add_argument("--data", type=Path, default=None, help="the shared data directory (default ../shared/data)")
    p.add_argument("--only", choices=["default", "uci", "retailrocket", "replays"], help="run one part")
    args = p.parse_args()
    quiet_logs()
    watchdog(args.timeout, "eval_score")
    root = args.data or data_dir()
    versions = {}
    for package in ("scikit-learn", "numpy", "pyarrow"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    # OpenMP threads change scikit-learn's fit times a lot on a small or busy machine: say what was used.
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    info = machine(**{k.replace("-", "_"): v for k, v in versions.items()}, omp_num_threads=threads, data=str(root))
    doc: dict[str, Any] = {"machine": info}
    started = time.perf_counter()
    if args.only in (None, "default"):
        doc["default"] = default_score(root, args.quick)
    uci_path = root / "uci-online-shoppers-intention" / "online_shoppers_intention.csv"
    if args.only in (None, "uci"):
        doc["uci"] = uci(uci_path, args.quick) if uci_path.exists() else {"skipped": f"{uci_path} not found"}
    prefix = root / "retailrocket-cart-sessions-derived" / "prefix_dataset.parquet"
    if args.only in (None, "retailrocket"):
        sample = root / "retailrocket-events-sample-1500-visitors" / "events.csv"
        found = prefix.exists()
        doc["retailrocket"] = retailrocket(prefix, sample, args.quick) if found else {"skipped": f"{prefix} not found"}
    # The trained engine-features model goes to the replays (part 4), never into the report: it is a
    # ModelFile, not JSON. The report keeps a summary of it.
    engine_model = doc.get("retailrocket", {}).pop("engine_model", None)
    if engine_model is not None:
        doc["retailrocket"]["engine_model"] = {
            "inputs": len(engine_model.inputs),
            "terms": len(engine_model.model.terms),
            "file_bytes": len(encode_model(engine_model)),
        }
    if args.only in (None, "replays"):
        doc["replays"] = replays(root, engine_model, args.quick)
    doc["seconds"] = time.perf_counter() - started
    if args.json:
        emit_json(doc)
        return
    print_header("recoverkit conversion score on real data (benchmarks/eval_score.py)", info)
    if "skipped" in doc.get("uci", {}):
        print(f"1. UCI: skipped: {doc['uci']['skipped']}")
        doc.pop("uci")
    report(doc)
    print(f"\n{doc['seconds']:.0f} s")


if __name__ == "__main__":
    main()
