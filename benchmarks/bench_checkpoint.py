"""Checkpoints of a large state: how long the engine's event loop stops while one is written, and restore time.

A running engine writes a checkpoint every ``store.checkpoint_interval`` seconds. At 100,000 open carts its state
is about 22 MB; while it is encoded and copied, nothing else runs on the event loop: no delivery, no ``track()``
hand-off, no lease renewal. The script fills an :class:`recoverkit.Engine` (store in memory, abandonment an hour
away so every cart stays open) with ``--carts`` open three-item carts (36-character session ids, one in three
with a customer id, products from a 5,000-item catalogue, as ``recoverkit.bench.measure_cart_memory``), then
measures, with a probe task on the same loop that asks to wake every 0.5 ms and records how late it wakes:

- baseline, in the same run: the same state checkpointed in one go on the loop, as recoverkit did before
  checkpoints were written in parts (``Sessionize.snapshot()`` and one ``msgspec.msgpack.encode`` of the
  checkpoint's envelope): the pause it causes is the whole encoding and copy;
- ``engine.checkpoint()`` ``--repeat`` times: its duration and the probe's longest and p99 pause during it;
- restore: a new sessionizer's ``restore()`` of the state written, best of three (the issue's target: under
  0.5 s at 100,000 carts).

Targets (issue 15): a loop stall of at most 5 ms at 100,000 open carts; restore under 0.5 s. The probe's own
wake-up lateness on an idle loop is measured first and reported as the floor. ``--quick``: 20,000 carts, 2
checkpoints. Run from the repository root:

    .venv/bin/python benchmarks/bench_checkpoint.py
    .venv/bin/python benchmarks/bench_checkpoint.py --quick --json
"""

from __future__ import annotations

import gc
import time
from decimal import Decimal
from typing import Any

import anyio
import msgspec
from _common import emit_json, has_uvloop, machine, parser, percentiles, print_header, quiet_logs, watchdog

from recoverkit import Config, Engine
from recoverkit._ownership import CHECKPOINT_FORMAT, _CheckpointBlob
from recoverkit.events import AddToCart, Item
from recoverkit.sessionize import Sessionize

TARGET_STALL_MS = 5.0
TARGET_RESTORE_S = 0.5
PROBE_EVERY = 0.0005
QS = (50, 99)


def carts(count: int) -> list[AddToCart]:
    catalog = [
        Item(item_id=f"SKU-{n:06d}", price=Decimal(f"{(n % 400) + 1}.99"), quantity=1, name=f"Product {n}")
        for n in range(5000)
    ]
    start = time.time() - 60
    return [
        AddToCart(
            session_id=f"{i:08x}-4f1c-4b7a-9c2e-{i * 7919 % 16**12:012x}",
            customer_id=f"customer-{i}" if i % 3 == 0 else None,
            ts=start + i * 1e-4,
            currency="EUR",
            items=tuple(catalog[(i * 31 + k * 977) % len(catalog)] for k in range(3)),
        )
        for i in range(count)
    ]


class Probe:
    """Asks to wake every :data:`PROBE_EVERY` seconds and records how late it woke, while ``on``."""

    def __init__(self) -> None:
        self.late: list[float] = []
        self.on = False
        self.stop = False

    async def run(self) -> None:
        while not self.stop:
            asked = time.perf_counter()
            await anyio.sleep(PROBE_EVERY)
            if self.on:
                self.late.append(max(time.perf_counter() - asked - PROBE_EVERY, 0.0))  # timers may fire early

    async def during(self, work: Any) -> tuple[float, list[float]]:
        """Run ``await work()`` with the probe recording; (seconds it took, the probe's lateness meanwhile)."""
        self.late = []
        await anyio.sleep(0.01)  # the probe is waiting on the loop before the work starts
        self.on = True
        started = time.perf_counter()
        await work()
        took = time.perf_counter() - started
        await anyio.sleep(2 * PROBE_EVERY)  # the probe's wake-up that the work delayed is counted too
        self.on = False
        return took, self.late


def _ms(samples: list[float]) -> dict[str, float]:
    return {k: v * 1000 for k, v in percentiles(samples, QS).items()}


async def measure(count: int, repeat: int) -> dict[str, Any]:
    config = Config(abandon_after=3600, session_timeout=7200)
    probe = Probe()
    async with Engine(config) as engine, anyio.create_task_group() as group:
        group.start_soon(probe.run)
        events = carts(count)
        for start in range(0, count, 5000):
            await engine.submit_many(events[start : start + 5000])
        await engine.flush()
        del events
        gc.collect()
        open_carts = engine.sessionize.open_carts()
        if open_carts != count:
            raise RuntimeError(f"expected {count} open carts, the engine holds {open_carts}")
        _, idle = await probe.during(lambda: anyio.sleep(0.2))

        async def one_go() -> None:
            states = {"sessionize": engine.sessionize.snapshot()}
            msgspec.msgpack.encode(_CheckpointBlob(CHECKPOINT_FORMAT, engine.owner, states))

        baseline_s, baseline_late = await probe.during(one_go)
        runs = []
        for _ in range(repeat):
            took, late = await probe.during(engine.checkpoint)
            runs.append({"seconds": took, "pause_ms": _ms(late)})
        state = engine.sessionize.snapshot()
        probe.stop = True
    restores = []
    for _ in range(3):
        stage = Sessionize(config)
        started = time.perf_counter()
        stage.restore(state)
        restores.append(time.perf_counter() - started)
        if stage.open_carts() != count:
            raise RuntimeError(f"restored {stage.open_carts()} open carts, expected {count}")
    worst = max(run["pause_ms"]["max"] for run in runs)
    return {
        "carts": count,
        "state_mb": len(state) / 1e6,
        "probe_floor_ms": _ms(idle),
        "baseline": {"seconds": baseline_s, "pause_ms": _ms(baseline_late)},
        "checkpoints": runs,
        "worst_pause_ms": worst,
        "stall_ratio_to_baseline": worst / (max(baseline_late) * 1000) if baseline_late else None,
        "restore_s": min(restores),
        "targets": {"stall_ms": TARGET_STALL_MS, "restore_s": TARGET_RESTORE_S},
    }


def main() -> None:
    p = parser(__doc__ or "", timeout=600)
    p.add_argument("--carts", type=int, default=None, help="open carts (default 100,000; --quick 20,000)")
    p.add_argument("--repeat", type=int, default=None, help="checkpoints measured (default 5; --quick 2)")
    args = p.parse_args()
    watchdog(args.timeout, "bench_checkpoint")
    quiet_logs()
    count = args.carts or (20_000 if args.quick else 100_000)
    repeat = args.repeat or (2 if args.quick else 5)
    info = machine()
    result = anyio.run(measure, count, repeat, backend="asyncio", backend_options={"use_uvloop": has_uvloop()})
    info = machine() | {"load average at the start": info["load average"]}
    if args.json:
        emit_json({"machine": info, **result})
        return
    print_header("recoverkit benchmark: checkpoints of a large state", info)
    floor, base = result["probe_floor_ms"], result["baseline"]
    print(f"{result['carts']:,} open carts, state {result['state_mb']:.1f} MB; probe floor on an idle loop: "
          f"p99 {floor['p99']:.2f} ms, max {floor['max']:.2f} ms")
    print(f"baseline, checkpoint encoded in one go on the loop: {base['seconds'] * 1000:.0f} ms, "
          f"longest loop pause {base['pause_ms']['max']:.1f} ms")
    for n, run in enumerate(result["checkpoints"], 1):
        pause = run["pause_ms"]
        print(f"engine.checkpoint() #{n}: {run['seconds'] * 1000:.0f} ms, loop pause p50 {pause['p50']:.2f} ms, "
              f"p99 {pause['p99']:.2f} ms, max {pause['max']:.1f} ms")
    met = "met" if result["worst_pause_ms"] <= TARGET_STALL_MS else "not met"
    print(f"longest pause {result['worst_pause_ms']:.1f} ms = {result['stall_ratio_to_baseline']:.2f} x the baseline's "
          f"(target <= {TARGET_STALL_MS:g} ms: {met})")
    met = "met" if result["restore_s"] < TARGET_RESTORE_S else "not met"
    print(f"restore of the sessionizer's state: {result['restore_s'] * 1000:.0f} ms (target < 0.5 s: {met})")


if __name__ == "__main__":
    main()
