"""The on-site look-up on the request path: a page view of a visitor nothing waits for, against a store query.

Every page with the snippet asks "is there something for this visitor?". The look-up answers a visitor the
process does not know to have an offer from memory, with no store round trip; this measures that answer against
the baseline a naive look-up would pay on every page view (one ``onsite_for`` query on the same SQLite store, in
the same run), and the answer for a visitor who has an offer (the store query, the mark, the rendering).

    .venv/bin/python benchmarks/bench_onsite.py            # 20,000 offers waiting, 20,000 page views
    .venv/bin/python benchmarks/bench_onsite.py --quick --json
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import emit_json, machine, parser, percentiles, print_header, quiet_logs, ratio, watchdog

from recoverkit.clock import WallClock
from recoverkit.onsite import OnsiteBoard, RateLimit
from recoverkit.store import SQLiteStore
from recoverkit.store._onsite import OnsiteOffer
from recoverkit.templates import Templates

TEMPLATE = {"cart-reminder.onsite.html": "<p>Welcome back: {{ cart.value }}</p>"}


def _offer(i: int, now: float) -> OnsiteOffer:
    import msgspec

    from recoverkit.templates import sample_message

    message = msgspec.structs.replace(sample_message("onsite"), key=f"cart-{i}/f/0")
    return OnsiteOffer(
        token=f"token-{i:08d}", key=message.key, cart_key=f"cart-{i}", contact_key=f"session:s-{i}",
        session_id=f"s-{i}", customer_id=None, started_at=now - 600, put_at=now, expires_at=now + 3600, shows=1,
        message=msgspec.json.encode(message),
    )  # fmt: skip


def _timed(calls: int, fn: Any) -> list[float]:
    samples = []
    for i in range(calls):
        started = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - started)
    return samples


def run(offers: int, views: int, directory: Path) -> dict[str, Any]:
    clock = WallClock()
    now = clock.now()
    with SQLiteStore(directory / "onsite.db") as store:
        for i in range(offers):
            store.put_onsite(_offer(i, now))
        unlimited = RateLimit(10**9, 60.0)
        board = OnsiteBoard(store, Templates(sources=TEMPLATE, builtin=False), clock=clock, refresh=60.0,
                            visitor_limit=unlimited, client_limit=unlimited)  # fmt: skip
        board.answer(session_id="warm-up", customer_id=None)  # the first refresh reads what waits
        baseline = _timed(views, lambda i: store.onsite_for(session_id=f"nobody-{i}", customer_id=None, now=now))
        nothing = _timed(views, lambda i: board.answer(session_id=f"nobody-{i}", customer_id=None))
        shown = min(views, offers)
        waiting = _timed(shown, lambda i: board.answer(session_id=f"s-{i}", customer_id=None))
        assert board.from_store == shown, "every visitor with an offer asked the store once"
    qs = (50, 99)
    per = {name: sum(s) / len(s) for name, s in (("baseline", baseline), ("nothing", nothing), ("waiting", waiting))}
    return {
        "settings": {"offers": offers, "views": views},
        "baseline_store_query_us": per["baseline"] * 1e6,
        "nothing_waiting_us": per["nothing"] * 1e6,
        "offer_waiting_us": per["waiting"] * 1e6,
        "nothing_waiting_over_baseline": ratio(per["nothing"], per["baseline"]),
        "offer_waiting_over_baseline": ratio(per["waiting"], per["baseline"]),
        "percentiles_us": {
            name: {k: v * 1e6 for k, v in percentiles(s, qs).items()}
            for name, s in (("baseline", baseline), ("nothing", nothing), ("waiting", waiting))
        },
        "store_round_trips": {"nothing_waiting": 0, "offer_waiting": shown},
    }


def main() -> None:
    p = parser(__doc__.split("\n\n")[0], timeout=300.0)
    p.add_argument("--offers", type=int, help="offers waiting in the store (default 20,000; 1,000 with --quick)")
    p.add_argument("--views", type=int, help="page views per phase (default 20,000; 2,000 with --quick)")
    args = p.parse_args()
    quiet_logs()
    watchdog(args.timeout, "bench_onsite")
    offers = args.offers if args.offers is not None else (1_000 if args.quick else 20_000)
    views = args.views if args.views is not None else (2_000 if args.quick else 20_000)
    info = machine(load_average=" ".join(f"{x:.2f}" for x in os.getloadavg()), store="SQLite file")
    with tempfile.TemporaryDirectory(prefix="bench-onsite-") as directory:
        doc = {"machine": info} | run(offers, views, Path(directory))
    if args.json:
        emit_json(doc)
        return
    print_header("recoverkit benchmark: the on-site look-up on the request path", info)
    print(f"{offers:,} offers waiting; {views:,} page views per phase (means, then p50 / p99, microseconds)\n")
    rows = (
        ("baseline: one onsite_for query per page view", "baseline", doc["baseline_store_query_us"], 1.0),
        ("look-up, visitor nothing waits for", "nothing", doc["nothing_waiting_us"],
         doc["nothing_waiting_over_baseline"]),
        ("look-up, visitor with an offer (shown)", "waiting", doc["offer_waiting_us"],
         doc["offer_waiting_over_baseline"]),
    )  # fmt: skip
    for label, key, mean, times in rows:
        pct = doc["percentiles_us"][key]
        print(f"{label:<48}{mean:>10.1f}{pct['p50']:>10.1f}{pct['p99']:>10.1f}   x{times:.3f} of baseline")


if __name__ == "__main__":
    main()
