"""Memory per open cart (three items) at several sizes, against bare dicts holding the same data.

For each size (default 10,000, 100,000 and 300,000 open carts) four measurements run, each in a fresh child
process so that one cannot leave memory behind for the next and each peak RSS is its own:

- recoverkit, traced: :func:`recoverkit.bench.measure_cart_memory` - bytes the sessionizer holds per open
  cart, measured with ``tracemalloc`` (the figure ``recoverkit bench`` reports);
- baseline, traced: the same events, the same procedure, but each cart kept as a bare ``dict`` in a
  ``dict`` keyed by session id: ``{"session_id", "currency", "started_at", "last_at", "lines": [three
  {"item_id", "price" (int, minor units), "quantity", "name", "category"} dicts]}``. That is the cart data
  alone, with no timer or other session state, i.e. a naive representation's lower bound; product ids and
  names are shared with the catalogue as recoverkit's are;
- recoverkit and baseline again without ``tracemalloc`` (it slows allocation and its own bookkeeping would
  swamp RSS): resident memory grown per cart (``/proc/self/statm`` before and after) and the child's peak
  RSS (``resource.getrusage``), which includes the interpreter and the imports present at start.

Sessions ids are 36-character UUID-like strings and products come from a 5,000-item catalogue, as in
``measure_cart_memory``. Ratios are recoverkit / baseline (below 1: recoverkit holds less).
Target (issue 15): at most 400 bytes per open cart with three items at 100,000 open carts (the traced figure).

``--quick`` measures at 2,000 and 5,000 open carts: a smoke run of a few seconds; at such sizes fixed costs
weigh on the figures, so they are indicative only. Each child must report within ``CHILD_TIMEOUT`` seconds and
the whole run within ``--timeout``, else the script stops with a message. Run from the repository root:

    .venv/bin/python benchmarks/bench_memory.py               # 10k, 100k and 300k open carts
    .venv/bin/python benchmarks/bench_memory.py --quick       # 2k and 5k
    .venv/bin/python benchmarks/bench_memory.py --sizes 50000 200000 --json
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from _common import emit_json, machine, parser, print_header, quiet_logs, ratio, watchdog

from recoverkit import Config
from recoverkit.bench import measure_cart_memory
from recoverkit.events import AddToCart, Item
from recoverkit.sessionize import Sessionize

TARGET_BYTES = 400
TARGET_CARTS = 100_000
ITEMS = 3
_CHUNK = 10_000
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
#: Seconds one child measurement may take (300,000 traced carts take well under a minute on 2 cores).
CHILD_TIMEOUT = 300.0


# -- the carts: the same events as recoverkit.bench.measure_cart_memory ------------------------------------


def _catalog() -> list[Item]:
    return [
        Item(item_id=f"SKU-{n:06d}", price=Decimal(f"{(n % 400) + 1}.99"), quantity=1, name=f"Product {n}")
        for n in range(5000)
    ]


def _chunks(carts: int, catalog: list[Item]) -> Iterator[list[AddToCart]]:
    for start in range(0, carts, _CHUNK):
        yield [
            AddToCart(
                session_id=f"{i:08x}-4f1c-4b7a-9c2e-{i * 7919 % 16**12:012x}",
                ts=1_767_225_600.0 + i * 0.01,
                currency="EUR",
                items=[catalog[(i * 31 + k * 977) % len(catalog)] for k in range(ITEMS)],
            )
            for i in range(start, min(start + _CHUNK, carts))
        ]


def _naive_add(store: dict[str, dict[str, Any]], events: list[AddToCart]) -> None:
    for event in events:
        store[event.session_id] = {
            "session_id": event.session_id,
            "currency": event.currency,
            "started_at": event.ts,
            "last_at": event.ts,
            "lines": [
                {
                    "item_id": item.item_id,
                    "price": int(item.price * 100),  # minor units, as recoverkit keeps them
                    "quantity": item.quantity,
                    "name": item.name,
                    "category": item.category,
                }
                for item in event.items
            ],
        }


def _naive_builder(carts: int) -> tuple[Callable[[list[AddToCart]], None], Callable[[], int]]:
    store: dict[str, dict[str, Any]] = {}
    return (lambda events: _naive_add(store, events)), (lambda: len(store))


def _recoverkit_builder(carts: int) -> tuple[Callable[[list[AddToCart]], None], Callable[[], int]]:
    # The same stage and settings as measure_cart_memory, which offers no way to run without tracemalloc.
    stage = Sessionize(Config(max_sessions=carts * 2))
    out: list[Any] = []

    def add(events: list[AddToCart]) -> None:
        stage.handle(events, out)  # type: ignore[arg-type]
        out.clear()

    return add, stage.open_carts


_BUILDERS = {"recoverkit": _recoverkit_builder, "baseline": _naive_builder}


# -- the measurements, one per child process -----------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * _PAGE


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def _traced_baseline(carts: int) -> float:
    catalog = _catalog()
    add, count = _naive_builder(carts)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for events in _chunks(carts, catalog):
            add(events)
            del events
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    if count() != carts:
        raise RuntimeError(f"expected {carts} carts, found {count()}")
    return (after - before) / carts


def _untraced(which: str, carts: int) -> dict[str, float]:
    catalog = _catalog()
    add, count = _BUILDERS[which](carts)
    gc.collect()
    start_rss = _rss_bytes()
    for events in _chunks(carts, catalog):
        add(events)
        del events
    gc.collect()
    grown = _rss_bytes() - start_rss
    if count() != carts:
        raise RuntimeError(f"expected {carts} open carts, found {count()}")
    return {
        "rss_bytes_per_cart": grown / carts,
        "start_rss_mb": start_rss / 1e6,
        "peak_rss_mb": _peak_rss_bytes() / 1e6,
    }


def _child(task: tuple[str, str, int], conn: Any) -> None:
    which, how, carts = task
    try:
        started = time.perf_counter()
        if how == "traced":
            value: Any = measure_cart_memory(carts, ITEMS) if which == "recoverkit" else _traced_baseline(carts)
            result: dict[str, Any] = {"traced_bytes_per_cart": value}
        else:
            result = _untraced(which, carts)
        result["seconds"] = time.perf_counter() - started
        conn.send(("ok", result))
    except BaseException as exc:  # report it in the parent, with the measurement it belongs to
        conn.send(("error", f"{which}/{how}/{carts}: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _in_child(ctx: Any, task: tuple[str, str, int]) -> dict[str, Any]:
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(task, send))
    process.start()
    send.close()
    try:
        if not receive.poll(CHILD_TIMEOUT):
            raise TimeoutError(f"the child measuring {'/'.join(map(str, task))} gave no result in {CHILD_TIMEOUT:g} s")
        status, payload = receive.recv()  # EOFError if the child died without a word (killed, out of memory)
    finally:
        process.join(5.0)
        if process.is_alive():
            process.kill()
            process.join()
    if status != "ok":
        raise RuntimeError(payload)
    return payload  # type: ignore[no-any-return]


def run(sizes: list[int]) -> dict[str, Any]:
    # fork: cheap, and the child starts with recoverkit already imported; spawn where fork does not exist.
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    rows: list[dict[str, Any]] = []
    for carts in sizes:
        rk = _in_child(ctx, ("recoverkit", "traced", carts)) | _in_child(ctx, ("recoverkit", "rss", carts))
        base = _in_child(ctx, ("baseline", "traced", carts)) | _in_child(ctx, ("baseline", "rss", carts))
        rows.append(
            {
                "carts": carts,
                "recoverkit": rk,
                "baseline": base,
                "ratio_traced": ratio(rk["traced_bytes_per_cart"], base["traced_bytes_per_cart"]),
                "ratio_rss": ratio(rk["rss_bytes_per_cart"], base["rss_bytes_per_cart"]),
                "ratio_peak_rss": ratio(rk["peak_rss_mb"], base["peak_rss_mb"]),
            }
        )
    at_target = next((r for r in rows if r["carts"] == TARGET_CARTS), None)
    return {
        "settings": {"sizes": sizes, "items_per_cart": ITEMS},
        "rows": rows,
        "targets": {
            "bytes_per_cart": TARGET_BYTES,
            "at_carts": TARGET_CARTS,
            "measured_at_target_size": at_target is not None,
            "met": None if at_target is None else at_target["recoverkit"]["traced_bytes_per_cart"] <= TARGET_BYTES,
        },
    }


def report(doc: dict[str, Any]) -> None:
    header = (
        f"{'open carts':>10}  {'traced B/cart':>14} {'baseline':>9} {'ratio':>6}"
        f"   {'RSS B/cart':>11} {'baseline':>9} {'ratio':>6}"
        f"   {'peak RSS MB':>11} {'baseline':>9} {'ratio':>6}"
    )
    print("recoverkit (sessionizer) vs baseline (bare dicts), 3 items per cart; ratio = recoverkit / baseline")
    print(header)
    print("-" * len(header))
    for r in doc["rows"]:
        rk, base = r["recoverkit"], r["baseline"]
        print(
            f"{r['carts']:>10,}  {rk['traced_bytes_per_cart']:>14,.0f} {base['traced_bytes_per_cart']:>9,.0f}"
            f" {r['ratio_traced']:>6.2f}"
            f"   {rk['rss_bytes_per_cart']:>11,.0f} {base['rss_bytes_per_cart']:>9,.0f}"
            f" {r['ratio_rss']:>6.2f}"
            f"   {rk['peak_rss_mb']:>11,.0f} {base['peak_rss_mb']:>9,.0f}"
            f" {r['ratio_peak_rss']:>6.2f}"
        )
    start = doc["rows"][0]["recoverkit"]["start_rss_mb"] if doc["rows"] else 0.0
    print(f"(peak RSS includes the interpreter and imports: about {start:,.0f} MB before the first cart)")
    t = doc["targets"]
    if t["measured_at_target_size"]:
        row = next(r for r in doc["rows"] if r["carts"] == t["at_carts"])
        value = row["recoverkit"]["traced_bytes_per_cart"]
        print(
            f"\ntarget: < {t['bytes_per_cart']} bytes per open cart at {t['at_carts']:,} open carts: "
            f"{value:,.0f} bytes - {'met' if t['met'] else 'NOT met'}"
        )
    else:
        print(
            f"\ntarget: < {t['bytes_per_cart']} bytes per open cart at {t['at_carts']:,} open carts: "
            "not measured at that size"
        )


def main() -> None:
    p = parser(__doc__.split("\n\n")[0], timeout=1200.0)
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        help="open carts to measure at (default 10000 100000 300000; 2000 5000 with --quick)",
    )
    args = p.parse_args()
    quiet_logs()
    watchdog(args.timeout, "bench_memory")
    sizes = args.sizes or ([2_000, 5_000] if args.quick else [10_000, 100_000, 300_000])
    info = machine()
    doc = {"machine": info} | run(sizes)
    if args.json:
        emit_json(doc)
        return
    print_header("recoverkit benchmark: memory per open cart", info)
    report(doc)


if __name__ == "__main__":
    main()
