"""The model commands of the ``recoverkit`` CLI (:mod:`recoverkit.cli` registers them with :func:`add_commands`).

::

    recoverkit train EVENTS --out MODEL [--events-format F] [--config F] [--window SECONDS] [--test-share 0.25]
                     [--pairs 12] [--max-iter 300] [--monotone NAME=1|-1|none ...]
                     [--calibration platt|isotonic|logistic]
                     [--seed N] [--json]
    recoverkit evaluate EVENTS --model MODEL [--events-format F] [--config F] [--window SECONDS]
                     [--test-share S] [--json]

``train`` replays a shop's history (recoverkit JSON lines, or a REES46 / Retailrocket CSV) through the
engine's sessionize stage, labels every abandonment (bought within the window or not, :mod:`recoverkit.history`),
fits a model on the earlier share and writes it; it prints auROC, auPR, Brier score and a calibration table for
the trained and the default model on the later share. ``evaluate`` prints the same for a model file on any
history. Exit status 0 on success, 2 for usage errors (and a missing scikit-learn), 1 when the data cannot be
used (too few abandonments, a file that cannot be read).
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from ._cli_output import Out, Table, Ticker, escape
from .evaluation import Evaluation

__all__ = ["add_commands"]

_FORMATS = ["auto", "jsonl", "rees46", "retailrocket"]


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``train`` and ``evaluate`` on the CLI's subcommand parsers ``sub``."""
    p = sub.add_parser("train", help="fit the conversion model on a shop's history and write a model file")
    _history_arguments(p)
    p.add_argument("--out", required=True, help='the model file to write (JSON); load it with `model = "PATH"`')
    p.add_argument(
        "--test-share", type=float, default=0.25,
        help="the latest share of abandonments held out to evaluate on (default 0.25; 0: train on all)",
    )  # fmt: skip
    p.add_argument("--pairs", type=int, default=12, help="pairs of features allowed to interact (default 12)")
    p.add_argument("--max-iter", type=int, default=300, help="boosting rounds (default 300)")
    p.add_argument(
        "--monotone", action="append", metavar="NAME=1|-1|none",
        help="promise the score never falls (1) or never rises (-1) with a feature; repeatable; "
        "default step=1 and returning=1; `none` promises nothing",
    )  # fmt: skip
    p.add_argument("--calibration", choices=["platt", "isotonic", "logistic"], default="platt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="auROC, auPR and calibration of a model file (and the default) on a history")
    _history_arguments(p)
    p.add_argument("--model", required=True, help="the model file (from `recoverkit train`)")
    p.add_argument(
        "--test-share", type=float, default=1.0,
        help="evaluate on the latest share of abandonments only (default 1: all)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=_cmd_evaluate)


def _history_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("events", help="the history: .jsonl, .jsonl.gz, - for stdin, or a REES46/Retailrocket CSV")
    p.add_argument(
        "--events-format", choices=_FORMATS, default="auto",
        help="the format of EVENTS (default: told from its first line)",
    )  # fmt: skip
    p.add_argument("--config", help="TOML configuration file (its abandonment timers and recovery_window)")
    p.add_argument(
        "--window", type=float,
        help="seconds after an abandonment within which a purchase counts as converted (default: recovery_window)",
    )  # fmt: skip


def _history(args: argparse.Namespace) -> Any:
    from .config import Config, load_config
    from .history import abandonment_history

    config = load_config(args.config) if args.config else Config()
    return config, abandonment_history(args.events, config=config, format=args.events_format, window=args.window)


def _monotone(values: Sequence[str] | None) -> dict[str, int] | None:
    if values is None:
        return None
    promises: dict[str, int] = {}
    for value in values:
        if value == "none":
            continue
        name, _, direction = value.partition("=")
        if direction not in ("1", "+1", "-1"):
            raise ValueError(f"--monotone {value!r}; expected NAME=1, NAME=-1 or none")
        promises[name] = -1 if direction == "-1" else 1
    return promises


def _cmd_train(args: argparse.Namespace, console: Out, err: Out) -> int:
    from .train import require_sklearn, train_on_history

    try:
        require_sklearn()
    except ImportError as exc:
        err.error(str(exc))
        return 2
    if not 0 <= args.test_share < 1:
        err.error("--test-share must be at least 0 and below 1")
        return 2
    with Ticker(err, "train") as ticker:
        ticker.phase = "reading the history"
        config, history = _history(args)
        if not history.examples:
            err.error(_no_examples(history))
            return 1
        from .model import ModelScorer, encode_model
        from .score import DefaultScorer

        ticker.phase = f"fitting the model on {len(history.examples):,} abandonments"
        model, report = train_on_history(
            history, test_share=args.test_share, monotone=_monotone(args.monotone), pairs=args.pairs,
            max_iter=args.max_iter, calibration=args.calibration, seed=args.seed,
            shipping_shock_ratio=config.shipping_shock_ratio,
        )  # fmt: skip
    data = encode_model(model)
    _write_atomically(Path(args.out), data)
    scorer = ModelScorer(model, shipping_shock_ratio=config.shipping_shock_ratio)
    default = DefaultScorer(config.shipping_shock_ratio)
    sample = [e.features for e in history.examples[-500:]]
    timing = {"model": _micros(scorer.score, sample), "default": _micros(default.score, sample)}
    if args.json:
        document = {
            "model": str(args.out),
            "bytes": len(data),
            "score_microseconds": timing,
            **msgspec.to_builtins(report),
        }
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(document)) + b"\n")
        return 0
    _print_history(history, console)
    console.print(
        f"split by time: trained on {report.train.carts:,} abandonments up to {_when(report.train.last_at)} "
        f"({report.train.converted:,} converted)"
        + (
            f", tested on the {report.test.carts:,} after ({report.test.converted:,} converted)"
            if report.test is not None
            else "; no test share: nothing held out"
        )
    )
    pairs = ", ".join(f"{a} x {b}" for a, b in report.pairs) or "none"
    promises = ", ".join(f"{k} {'+' if v > 0 else '-'}" for k, v in report.monotone.items()) or "none"
    console.print(
        f"fitted in {report.seconds:.1f} s: {report.rounds} rounds, {report.terms} terms, {report.calibration} "
        f"calibration; pairs allowed to interact: {pairs}; monotone: {promises}"
    )
    if report.trained is not None and report.default is not None:
        _print_figures({"trained": report.trained, "default": report.default}, console, "the later share")
        if report.trained.auroc < report.default.auroc:
            console.print(
                f"[yellow]note:[/] on the later share the trained model ranks carts worse than the default model "
                f"(auROC {report.trained.auroc:.3f} vs {report.default.auroc:.3f}): keep the default, or train on a "
                "longer history"
            )
    console.print(
        f"wrote {escape(str(args.out))} ({len(data) / 1024:.0f} KB); scoring takes {timing['model']:.1f} µs per cart "
        f"(default model {timing['default']:.1f} µs) on this machine"
    )
    return 0


def _cmd_evaluate(args: argparse.Namespace, console: Out, err: Out) -> int:
    from .evaluation import evaluate
    from .history import split_by_time
    from .model import load_model
    from .score import DefaultScorer

    if not 0 < args.test_share <= 1:
        err.error("--test-share must be above 0 and at most 1")
        return 2
    with Ticker(err, "evaluate") as ticker:
        ticker.phase = "reading the history"
        config, history = _history(args)
        scorer = load_model(args.model, shipping_shock_ratio=config.shipping_shock_ratio)
        if not history.examples:
            err.error(_no_examples(history))
            return 1
        examples = history.examples if args.test_share == 1 else split_by_time(history.examples, args.test_share)[1]
        ticker.phase = f"scoring {len(examples):,} abandonments"
        labels = [e.converted for e in examples]
        default = DefaultScorer(config.shipping_shock_ratio)
        figures = {
            "model": evaluate(labels, [scorer.probability(e.features) for e in examples]),
            "default": evaluate(labels, [default.probability(e.features) for e in examples]),
        }
    if args.json:
        document = {"abandonments": history.abandonments, "censored": history.censored, **figures}
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(document)) + b"\n")
        return 0
    _print_history(history, console)
    share = "all of them" if args.test_share == 1 else f"the latest {args.test_share:.0%}"
    _print_figures(figures, console, f"{share}: {len(examples):,} abandonments")
    return 0


def _no_examples(history: Any) -> str:
    if history.abandonments and history.censored == history.abandonments:
        return (
            f"all {history.abandonments:,} abandonments are censored: the events end before their "
            f"{history.window / 3600:g}-hour window does; give a shorter --window (seconds) or a longer history"
        )
    return f"no abandoned carts in {history.source.path}; expected a history with carts left unbought"


def _print_history(history: Any, console: Out) -> None:
    source = history.source
    labelled = len(history.examples)
    converted = sum(1 for e in history.examples if e.converted)
    console.print(
        f"read {source.events:,} events ({source.format}) from {_when(source.first_at)} to {_when(source.last_at)} UTC"
        + (f"; skipped {sum(source.skipped.values()):,}" if source.skipped else "")
    )
    console.print(
        f"{history.abandonments:,} abandonments; {history.censored:,} censored (the events end within their "
        f"{history.window / 3600:g}-hour window); {labelled:,} labelled, {converted:,} converted "
        f"({converted / labelled:.1%})"
        if labelled
        else f"{history.abandonments:,} abandonments, none labelled"
    )


#: Fewer carts than this on either side and the figures are printed with a warning: they could be chance.
_FEW = 30


def _print_figures(figures: dict[str, Evaluation], console: Out, on: str) -> None:
    table = Table(title=f"on {on}")
    for col in ("score", "carts", "converted", "auROC", "auPR", "Brier", "Brier of the base rate"):
        table.add_column(col, justify="left" if col == "score" else "right")
    for name, ev in figures.items():
        table.add_row(
            name, f"{ev.carts:,}", f"{ev.converted:,}", _num(ev.auroc), _num(ev.aupr), _num(ev.brier, 4),
            _num(ev.base_rate * (1 - ev.base_rate), 4),
        )  # fmt: skip
    console.print(table)
    first = next(iter(figures.values()))
    if min(first.converted, first.carts - first.converted) < _FEW:
        console.print(
            f"[yellow]note:[/] {first.converted:,} converted and {first.carts - first.converted:,} not: with fewer "
            f"than {_FEW} on a side these figures could well be chance"
        )
    for name, ev in figures.items():
        table = Table(title=f"calibration of the {name} score: carts in ten groups by score")
        for col in ("score from", "to", "carts", "predicted", "converted"):
            table.add_column(col, justify="right")
        for r in ev.calibration:
            table.add_row(f"{r.low:.3f}", f"{r.high:.3f}", f"{r.carts:,}", f"{r.predicted:.3f}", f"{r.observed:.3f}")
        console.print(table)


def _micros(score: Callable[[Any, Any], Any], features: Sequence[Any]) -> float:
    """Mean microseconds per call of ``score(None, features)`` over ``features``, best of three passes."""
    if not features:
        return math.nan
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        for f in features:
            score(None, f)
        best = min(best, time.perf_counter() - started)
    return best / len(features) * 1e6


def _write_atomically(path: Path, data: bytes) -> None:
    # An engine starting meanwhile must read the old model or the new one, never half of one. os.open with mode
    # 0o666 leaves the permissions to the umask, as a plain open() would.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _when(ts: float | None) -> str:
    # cli.py has the same helper; importing it from there would make the two modules import each other.
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _num(value: float, digits: int = 3) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"
