"""Shared helpers for the scripts in ``benchmarks/``: argument parsing, the machine header, percentiles.

Not a benchmark itself. The scripts import it as ``_common`` because Python puts the script's own folder
first on ``sys.path`` when it runs ``python benchmarks/<name>.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import structlog

from recoverkit.bench import machine_info

__all__ = ["emit_json", "machine", "parser", "percentiles", "print_header", "quiet_logs", "ratio"]


def quiet_logs() -> None:
    """Send recoverkit's logs to stderr, warnings and up only, so ``--json`` output on stdout stays clean.

    structlog's configuration is process-global: the library leaves it to the host, and here the script is
    the host.
    """
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has: ``--quick`` and ``--json``."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few seconds: smaller sizes, for a smoke run")
    p.add_argument("--json", action="store_true", help="print the results as one JSON document on stdout")
    return p


def machine(**extra: Any) -> dict[str, str]:
    """:func:`recoverkit.bench.machine_info` plus whatever the script wants to state about its set-up."""
    return machine_info() | {k.replace("_", " "): str(v) for k, v in extra.items()}


def print_header(title: str, info: dict[str, str]) -> None:
    print(title)
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    print()


def percentiles(samples: Sequence[float] | Iterable[float], qs: Sequence[float]) -> dict[str, float]:
    """Nearest-rank percentiles (``p50``, ``p99.9``, ...) and ``max`` of ``samples``; NaN when empty."""
    data = sorted(samples)
    out: dict[str, float] = {}
    for q in qs:
        key = f"p{q:g}"
        if not data:
            out[key] = math.nan
            continue
        rank = max(math.ceil(q / 100.0 * len(data)), 1)
        out[key] = data[rank - 1]
    out["max"] = data[-1] if data else math.nan
    return out


def ratio(a: float, b: float) -> float:
    """``a / b``, or NaN when ``b`` is zero or unknown (a ratio to a zero baseline means nothing)."""
    if not b or math.isnan(b) or math.isnan(a):
        return math.nan
    return a / b


def emit_json(document: dict[str, Any]) -> None:
    # NaN is not JSON; write null instead so any JSON reader accepts the document.
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    json.dump(clean(document), sys.stdout, indent=2)
    sys.stdout.write("\n")
