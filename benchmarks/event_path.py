"""The way one event takes through recoverkit: modules and functions on its path, and the back-and-forths.

Issue 13 asks that an event go *down* the pipeline: from the engine's front through ingest, sessionize, score,
route and dispatch to the shop's channel adapter, without a stage calling back up into one above it (or into
the engine) on the way. This script traces that path and counts it, so the claim is a figure rather than a
picture.

It runs one ``add_to_cart`` and its abandonment through an :class:`~recoverkit.Engine` on the in-memory store
with a :class:`~recoverkit.FakeClock` (no threads: every call runs on the event loop's thread), and traces
with :func:`sys.setprofile` every call into a recoverkit function from ``Engine.track`` until the adapter's
``send`` is called (the engine's start and close are not traced). It reports:

- ``modules``: the recoverkit modules called on the path, how many of them are the pipeline's own (ranked
  below) rather than shared plumbing (events, clock, the store, ``_pipeline``, logging, ...), and ``rooms``:
  the modules with each package counted once (``recoverkit.store``, ``recoverkit.dispatch``, the channels),
  as a package is one room however its files are cut;
- ``functions``: the distinct recoverkit functions called;
- ``back_and_forths``: the distinct calls (caller function -> callee function) from a module into one above it
  in the pipeline order, or from any module other than the engine's own back into the engine.

The pipeline order: the engine's front (``engine`` and its rooms ``_assembly``, ``_ownership``, ``_runner``,
and ``background``), then the way in (``journal`` and ``ingest``: the journal is the ingest stage's source, so
the two share a rank), ``sessionize``, ``score``, ``route``, ``dispatch``, the channel adapters. Plumbing has
no rank: calling it is never a back-and-forth, but plumbing calling up into the engine is.

The engine's upkeep tasks (the lease and checkpoint keepers, which wake on wall time whatever the event does)
are left out; the ticker is kept, as it journals the inbox and moves the clock through the stages.

Issue 13 aims at at most 12 modules and no back-and-forth. ``--quick`` runs the same trace (it takes well
under a second either way) and exists for the smoke test; ``--json`` prints one JSON document.

Run from the repository root:

    .venv/bin/python benchmarks/event_path.py
    .venv/bin/python benchmarks/event_path.py --json
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import anyio
from _common import emit_json, machine, parser, print_header, quiet_logs, watchdog

from recoverkit import Config, Engine, FakeClock, Flow, FlowStep, MemoryChannel, Message

MODULE_TARGET = 12
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
#: Tasks that run on wall time whatever the event does; their calls are not the event's path.
UPKEEP_TASKS = frozenset({"recoverkit-lease", "recoverkit-checkpoints"})
FRONT = frozenset(
    {
        "recoverkit.engine",
        "recoverkit._assembly",
        "recoverkit._ownership",
        "recoverkit._runner",
        "recoverkit.background",
    }
)
#: Rank in the pipeline order, by module name prefix; a module not listed is plumbing (no rank).
RANKS = (
    ("recoverkit.journal", 1),
    ("recoverkit.ingest", 1),
    ("recoverkit.sessionize", 2),
    ("recoverkit.score", 3),
    ("recoverkit.route", 4),
    ("recoverkit.dispatch", 5),
    ("recoverkit.channels", 6),
)


def rank(module: str) -> int | None:
    """The module's place in the pipeline order (0: the engine's front), or ``None`` for plumbing."""
    if module in FRONT:
        return 0
    for prefix, value in RANKS:
        if module == prefix or module.startswith(prefix + "."):
            return value
    return None


def goes_back(caller: str, callee: str) -> bool:
    """Whether a call from ``caller`` into ``callee`` (module names) goes back up the pipeline."""
    if callee in FRONT:
        return caller not in FRONT
    up, down = rank(caller), rank(callee)
    return up is not None and down is not None and down < up


@dataclass
class Trace:
    """What the profile hook saw: the functions called, and the edges that went back up."""

    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    back: Counter[tuple[str, str]] = field(default_factory=Counter)
    done: bool = False

    def hook(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or self.done:
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("recoverkit"):
            return
        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        if task is not None and task.get_name() in UPKEEP_TASKS:
            return
        name = frame.f_code.co_qualname
        self.calls[(module, name)] += 1
        caller = frame.f_back
        if caller is not None:
            caller_module = caller.f_globals.get("__name__", "")
            if caller_module.startswith("recoverkit") and goes_back(caller_module, module):
                edge = (f"{caller_module}:{caller.f_code.co_qualname}", f"{module}:{name}")
                self.back[edge] += 1
        if rank(module) == 6 and name.endswith(".send"):
            self.done = True  # the event has reached the shop's adapter: the path ends here


def config() -> Config:
    # The webhook channel needs neither consent nor an address: the one message goes out on abandonment.
    return Config(flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="webhook")])])


async def trace_one_event() -> tuple[Trace, list[Message]]:
    clock = FakeClock(T0)
    channel = MemoryChannel()
    trace = Trace()
    cart = {"event": "add_to_cart", "session_id": "s1", "items": [{"item_id": "SKU-1", "price": "9.99"}]}
    async with Engine(config(), channels={"webhook": channel}, clock=clock) as engine:
        sys.setprofile(trace.hook)
        try:
            engine.track(cart)
            await engine.flush()
            clock.advance(engine.config.abandon_after + 1)
            await engine.flush()
        finally:
            sys.setprofile(None)
    return trace, channel.sent


def measure() -> dict[str, Any]:
    started = time.perf_counter()
    trace, sent = anyio.run(trace_one_event, backend="asyncio")
    if len(sent) != 1 or not trace.done:
        raise SystemExit(f"event_path: expected one message sent for the abandoned cart, got {len(sent)}")
    modules = sorted({module for module, _ in trace.calls})
    rooms = sorted({".".join(m.split(".")[:2]) for m in modules})
    return {
        "modules": len(modules),
        "pipeline_modules": len([m for m in modules if rank(m) is not None]),
        "rooms": len(rooms),
        "functions": len(trace.calls),
        "back_and_forths": len(trace.back),
        "module_target": MODULE_TARGET,
        "module_target_met": len(modules) <= MODULE_TARGET,
        "room_list": rooms,
        "module_list": modules,
        "back_and_forth_list": [f"{a} -> {b}" for a, b in sorted(trace.back)],
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    p = parser(__doc__.split("\n\n")[0], timeout=120.0)
    args = p.parse_args()
    quiet_logs()
    watchdog(args.timeout, "event_path")
    info = machine(store="memory", clock="FakeClock", tracer="sys.setprofile")
    result = measure()
    if args.json:
        emit_json({"machine": info} | result)
        return
    print_header("The path of one add_to_cart to the adapter's send", info)
    print(
        f"modules:         {result['modules']} (pipeline modules {result['pipeline_modules']}; "
        f"target <= {MODULE_TARGET}: {'met' if result['module_target_met'] else 'NOT met'})"
    )
    print(f"rooms:           {result['rooms']} (a package counted once)")
    print(f"functions:       {result['functions']}")
    print(f"back-and-forths: {result['back_and_forths']} (target 0)")
    print()
    print("modules on the path:")
    for module in result["module_list"]:
        where = rank(module)
        print(f"  {module}{'' if where is None else f'  (rank {where})'}")
    if result["back_and_forth_list"]:
        print("\nback-and-forths (caller -> callee):")
        for edge in result["back_and_forth_list"]:
            print(f"  {edge}")


if __name__ == "__main__":
    main()
