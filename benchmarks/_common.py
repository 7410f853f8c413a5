"""Shared helpers for the scripts in ``benchmarks/``: argument parsing, the machine header, percentiles.

Not a benchmark itself. The scripts import it as ``_common`` because Python puts the script's own folder
first on ``sys.path`` when it runs ``python benchmarks/<name>.py``.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from recoverkit.bench import machine_info

__all__ = [
    "bounded",
    "emit_json",
    "has_uvloop",
    "machine",
    "parser",
    "percentiles",
    "print_header",
    "quiet_logs",
    "ratio",
    "watchdog",
]

T = TypeVar("T")


def quiet_logs() -> None:
    """Show recoverkit's log records of level WARNING and up on stderr, so ``--json`` output on stdout stays clean.

    recoverkit logs through the standard :mod:`logging` module under the ``recoverkit`` logger and configures
    nothing itself (the host does); here the script is the host. Only that logger is touched.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("recoverkit")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)


def parser(description: str, *, timeout: float) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has: ``--quick``, ``--json`` and ``--timeout``.

    ``timeout`` is the default of ``--timeout``: the seconds after which the script gives up (see
    :func:`watchdog`); pick it well above the script's normal run time.
    """
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few seconds: smaller sizes, for a smoke run")
    p.add_argument("--json", action="store_true", help="print the results as one JSON document on stdout")
    p.add_argument(
        "--timeout",
        type=float,
        default=timeout,
        help=f"give up (exit code 3) after this many seconds; 0: never (default {timeout:g})",
    )
    return p


def watchdog(seconds: float, script: str) -> None:
    """End the process with exit code 3 and a message on stderr if it is still running after ``seconds``.

    A benchmark must fail loudly rather than hang: a stuck ``flush()`` or a lost wake-up in the engine blocks
    a thread that nothing else can interrupt, and a non-daemon thread (anyio's portal thread) would keep the
    interpreter from exiting. ``os._exit`` ends it whatever the threads are doing. ``seconds <= 0`` disables it.
    """
    if seconds <= 0:
        return

    def expire() -> None:
        print(f"{script}: did not finish within {seconds:g} s (--timeout); stopping.", file=sys.stderr, flush=True)
        # Where every thread was stuck: the one thing worth having from a hang.
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os._exit(3)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def bounded(fn: Callable[[], T], seconds: float, what: str) -> T:
    """``fn()``, run in a daemon thread; raises ``TimeoutError`` naming ``what`` if it takes over ``seconds``.

    For blocking calls into the engine (``flush()``, ``statistics()``) that could wait forever if the engine
    were stuck: the script fails with a message instead. The thread is left behind on a timeout; it is a
    daemon, so it does not keep the process alive.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def call() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # handed to the caller below
            error.append(exc)

    thread = threading.Thread(target=call, name=f"bounded: {what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"{what} did not return within {seconds:g} s")
    if error:
        raise error[0]
    return result[0]


def run_threads(
    target: Callable[[int], object], count: int, start_line: threading.Barrier, *, seconds: float, what: str
) -> float:
    """Run ``target(k)`` in ``count`` request threads released together by ``start_line`` (which the threads
    wait on, and this function too, so it has ``count + 1`` parties); return the seconds from release to the last
    thread's end.

    The threads are daemons joined with a deadline: a stuck or dead request thread fails the script with a
    ``TimeoutError`` naming it instead of keeping the process alive after the failure was reported.
    """
    threads = [threading.Thread(target=target, args=(k,), name=f"request-{k}", daemon=True) for k in range(count)]
    for t in threads:
        t.start()
    start_line.wait()
    started = time.perf_counter()
    deadline = time.monotonic() + seconds
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0.0))
        if t.is_alive():
            raise TimeoutError(f"{t.name} did not finish its {what} within {seconds:g} s")
    return time.perf_counter() - started


def has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


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
