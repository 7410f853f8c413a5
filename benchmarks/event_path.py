"""The way one event takes through recoverkit: the event's own path, and everything called on the way.

Issue 13 asks that an event go *down* the pipeline: from the integration's front through the engine, ingest,
sessionize, score, route and dispatch to the shop's channel adapter, without a stage calling back up into one
above it (or into the engine) on the way, and passing at most 12 modules. This script traces that path and
counts it, so the claim is a figure rather than a picture.

It sends one ``add_to_cart`` through :meth:`Tracker.track <recoverkit.integration.Tracker.track>` (the
integration's front: a ``Tracker`` takes any sink, so the engine's own ``track`` is given to it and no web
framework is needed) into an :class:`~recoverkit.Engine` on the in-memory store with a
:class:`~recoverkit.FakeClock` (no threads: every call runs on the event loop's thread), lets the cart be
abandoned, and traces with :func:`sys.setprofile` every call into a recoverkit function from ``Tracker.track``
until :meth:`WebhookChannel.send <recoverkit.channels.webhook.WebhookChannel.send>` is called (its HTTP client
is an ``httpx.MockTransport``; the engine's start and close are not traced). It reports two measures:

- **the event's own path**, what a reader follows: the functions that receive the event or what it becomes.
  At each traced call the function's arguments (``frame.f_locals`` at the call; the items of ``*args`` and
  the values of ``**kwargs`` each count as an argument) are inspected, one level into lists, tuples and
  batches (the pipeline's ``Batch.items``): a call is on the path when an argument is the event (a mapping
  with the traced ``session_id`` or ``cart_id``), journal bytes holding one of them, or a record of the cart
  (``CartSnapshot``, ``Abandoned``, ``Scored``, ``Message``, the session's state, the ``Tracker`` bound to the
  session; any ``msgspec.Struct``, dataclass or slotted object) whose fields, a few levels down, hold the
  traced session id or cart id. Helpers that are handed only a price, a time or the cart's key as a bare
  string (money, clock, config look-ups, key builders, logging) are not on it. The path's modules, rooms and
  functions are listed in order of first call.
  **The issue's aim is judged on this path**: at most 12 modules and no back-and-forth.
- **everything called**: every recoverkit function called while the event travels, helpers included (the
  measure this script first reported).

For each: ``modules``, how many of them are the pipeline's own (ranked below) rather than shared plumbing
(events, clock, the store, ``_pipeline``, logging, ...); ``rooms``, the modules with each package counted once
(``recoverkit.store``, ``recoverkit.dispatch``, the channels), as a package is one room however its files are
cut; ``functions``; ``back_and_forths``, the distinct calls (caller function -> callee function) from a module
into one above it in the pipeline order, or from any module other than the front's back into the front (for
the path: both caller and callee on the path).

The pipeline order: the front (the integration's ``Tracker``, ``engine`` and its rooms ``_assembly``,
``_ownership``, ``_runner``, and ``background``), then the way in (``journal`` and ``ingest``: the journal is
the ingest stage's source, so the two share a rank), ``sessionize``, ``score``, ``route``, ``dispatch``, the
channel adapters. Plumbing has no rank: calling it is never a back-and-forth, but plumbing calling up into the
front is.

The engine's upkeep tasks (the lease and checkpoint keepers, which wake on wall time whatever the event does)
are left out; the ticker is kept, as it journals the inbox and moves the clock through the stages.

The script runs against whichever recoverkit is imported, so the same script measures an older tree
(``PYTHONPATH=/path/to/old/src``); the header names the tree's source folder and its commit.

``--quick`` runs the same trace (it takes well under a second either way) and exists for the smoke test;
``--json`` prints one JSON document.

Run from the repository root:

    .venv/bin/python benchmarks/event_path.py
    .venv/bin/python benchmarks/event_path.py --json
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import anyio
import httpx
from _common import emit_json, machine, parser, print_header, quiet_logs, watchdog

import recoverkit
from recoverkit import Config, Engine, FakeClock, Flow, FlowStep
from recoverkit.channels.webhook import WebhookChannel
from recoverkit.integration import Tracker

MODULE_TARGET = 12
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
#: The traced cart's ids: long and unlikely, so that finding them in an argument's fields means this cart.
SESSION_ID = "s-event-path-4f1c9a"
CART_ID = "cart-event-path-4f1c9a"
TRACED_IDS = frozenset({SESSION_ID, CART_ID})
TRACED_BYTES = (SESSION_ID.encode(), CART_ID.encode())
#: How many levels of fields are looked through: Batch.items[i].abandoned.cart.session_id is the deepest.
FIELD_DEPTH = 4
#: Tasks that run on wall time whatever the event does; their calls are not the event's path.
UPKEEP_TASKS = frozenset({"recoverkit-lease", "recoverkit-checkpoints"})
FRONT = frozenset(
    {
        "recoverkit.integration",
        "recoverkit._tracker",
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
    """The module's place in the pipeline order (0: the front), or ``None`` for plumbing."""
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


def room(module: str) -> str:
    """The room a module is in: ``recoverkit.<top>``, so a package counts once."""
    return ".".join(module.split(".")[:2])


def _field_values(value: object) -> list[object] | None:
    """The fields of a record (msgspec Struct, dataclass, slotted object), or ``None`` if it is not one.

    Objects with a ``__dict__`` only (stages, the engine, stores) are not records: their state holds every
    cart, so looking into it would put every call on the path.
    """
    names: tuple[str, ...] | None = getattr(type(value), "__struct_fields__", None)
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = tuple(f.name for f in dataclasses.fields(value))
    if names is None:
        slots = [s for klass in type(value).__mro__ for s in getattr(klass, "__slots__", ())]
        if not slots or hasattr(value, "__dict__"):
            return None
        names = tuple(slots)
    return [getattr(value, name, None) for name in names]


def holds_event(value: object, depth: int = FIELD_DEPTH, into_sequences: bool = True) -> bool:
    """Whether ``value`` is the traced event or what it became (see the module docstring).

    A bare id string is not: a helper handed only the cart's key (a key builder, a look-up) is plumbing.
    """
    if isinstance(value, str):
        return False
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return any(needle in data for needle in TRACED_BYTES)
    if isinstance(value, Mapping):
        return value.get("session_id") in TRACED_IDS or value.get("cart_id") in TRACED_IDS
    if isinstance(value, (list, tuple)):
        # One level into a list or tuple, not a list within a list (a table of every cart would qualify).
        return into_sequences and any(holds_event(v, depth, into_sequences=False) for v in value)
    if depth <= 0 or value is None or isinstance(value, (int, float)):
        return False
    fields = _field_values(value)
    return fields is not None and any(
        (v in TRACED_IDS) if isinstance(v, str) else holds_event(v, depth - 1, into_sequences) for v in fields
    )


def arguments(frame: FrameType) -> list[object]:
    """The values a function was called with: its parameters, the items of ``*args``, the values of ``**kw``.

    Read at the call event, before the body runs; a closure's free variables (also in ``f_locals``) are not
    arguments, and ``*args`` is opened so that ``call_store(method, messages)`` is seen as handed the messages.
    """
    code, values = frame.f_code, frame.f_locals
    named = code.co_argcount + code.co_kwonlyargcount
    found = [values.get(name) for name in code.co_varnames[:named]]
    extra = named
    if code.co_flags & inspect.CO_VARARGS:
        found.extend(values.get(code.co_varnames[extra]) or ())
        extra += 1
    if code.co_flags & inspect.CO_VARKEYWORDS:
        found.extend((values.get(code.co_varnames[extra]) or {}).values())
    return found


@dataclass
class Trace:
    """What the profile hook saw: the functions called, those on the event's path, and the back-and-forths.

    ``calls`` and ``path`` keep the order of first call (a ``Counter`` keeps insertion order).
    """

    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    back: Counter[tuple[str, str]] = field(default_factory=Counter)
    path: Counter[tuple[str, str]] = field(default_factory=Counter)
    path_back: Counter[tuple[str, str]] = field(default_factory=Counter)
    done: bool = False

    def hook(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or self.done:
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("recoverkit") or in_upkeep():
            return
        name = frame.f_code.co_qualname
        key = (module, name)
        self.calls[key] += 1
        on_path = any(holds_event(v) for v in arguments(frame))
        if on_path:
            self.path[key] += 1
        if frame.f_back is not None:
            self._caller(frame.f_back, key, on_path)
        if rank(module) == 6 and name.endswith(".send"):
            self.done = True  # the event has reached the shop's adapter: the path ends here

    def _caller(self, caller: FrameType, callee: tuple[str, str], on_path: bool) -> None:
        """Count the call from ``caller`` into ``callee`` if it goes back up (on the path: both ends on it)."""
        caller_module = caller.f_globals.get("__name__", "")
        if not caller_module.startswith("recoverkit") or not goes_back(caller_module, callee[0]):
            return
        caller_key = (caller_module, caller.f_code.co_qualname)
        edge = (f"{caller_module}:{caller_key[1]}", f"{callee[0]}:{callee[1]}")
        self.back[edge] += 1
        if on_path and caller_key in self.path:
            self.path_back[edge] += 1


def in_upkeep() -> bool:
    """Whether the running task is one of the engine's upkeep tasks (their calls are not the event's)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return False
    return task is not None and task.get_name() in UPKEEP_TASKS


def config() -> Config:
    # The webhook channel needs neither consent nor an address: the one message goes out on abandonment.
    return Config(flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="webhook")])])


async def trace_one_event() -> tuple[Trace, list[httpx.Request]]:
    clock = FakeClock(T0)
    posted: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        posted.append(request)
        return httpx.Response(204)

    trace = Trace()
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        channel = WebhookChannel("https://shop.example/recoverkit", client=client)
        async with Engine(config(), channels={"webhook": channel}, clock=clock) as engine:
            tracker = Tracker(engine.track, SESSION_ID)
            sys.setprofile(trace.hook)
            try:
                tracker.add_to_cart([{"item_id": "SKU-1", "price": "9.99"}], cart_id=CART_ID)
                await engine.flush()
                clock.advance(engine.config.abandon_after + 1)
                await engine.flush()
            finally:
                sys.setprofile(None)
    return trace, posted


def _figures(calls: Counter[tuple[str, str]], back: Counter[tuple[str, str]], *, ordered: bool) -> dict[str, Any]:
    """Modules, rooms, functions and back-and-forths of a set of calls; lists in first-call order or sorted."""
    modules = list(dict.fromkeys(module for module, _ in calls))
    rooms = list(dict.fromkeys(room(m) for m in modules))
    if not ordered:
        modules, rooms = sorted(modules), sorted(rooms)
    return {
        "modules": len(modules),
        "pipeline_modules": len([m for m in modules if rank(m) is not None]),
        "rooms": len(rooms),
        "functions": len(calls),
        "back_and_forths": len(back),
        "room_list": rooms,
        "module_list": modules,
        "back_and_forth_list": [f"{a} -> {b}" for a, b in sorted(back)],
    }


def tree() -> dict[str, str]:
    """The recoverkit source measured: its folder and, when it is a git checkout, its commit."""
    where = Path(recoverkit.__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "-C", str(where), "log", "-1", "--format=%h %s"], capture_output=True, text=True, timeout=10
        )
        commit = done.stdout.strip()[:72] if done.returncode == 0 else "not a git checkout"
    except (OSError, subprocess.SubprocessError):
        commit = "git unavailable"
    return {"source": str(where), "commit": commit}


def measure() -> dict[str, Any]:
    started = time.perf_counter()
    trace, posted = anyio.run(trace_one_event, backend="asyncio")
    if len(posted) != 1 or not trace.done:
        raise SystemExit(f"event_path: expected one message sent for the abandoned cart, got {len(posted)}")
    path = _figures(trace.path, trace.path_back, ordered=True)
    path["function_list"] = [f"{module}:{name}" for module, name in trace.path]
    return {
        "start": "recoverkit.integration.Tracker.track",
        "end": "recoverkit.channels.webhook.WebhookChannel.send",
        "event_path": path,
        "everything_called": _figures(trace.calls, trace.back, ordered=False),
        "module_target": MODULE_TARGET,
        "module_target_met": path["modules"] <= MODULE_TARGET,
        "back_and_forth_target_met": path["back_and_forths"] == 0,
        "seconds": time.perf_counter() - started,
    }


def _print_figures(title: str, figures: dict[str, Any], *, aim: bool) -> None:
    print(title)
    target = ""
    if aim:
        met = figures["modules"] <= MODULE_TARGET
        target = f"; target <= {MODULE_TARGET}: {'met' if met else 'NOT met'}"
    print(f"  modules:         {figures['modules']} (pipeline modules {figures['pipeline_modules']}{target})")
    print(f"  rooms:           {figures['rooms']} (a package counted once)")
    print(f"  functions:       {figures['functions']}")
    back = figures["back_and_forths"]
    print(f"  back-and-forths: {back}" + (f" (target 0: {'met' if back == 0 else 'NOT met'})" if aim else ""))


def main() -> None:
    p = parser(__doc__.split("\n\n")[0], timeout=120.0)
    args = p.parse_args()
    quiet_logs()
    watchdog(args.timeout, "event_path")
    info = machine(store="memory", clock="FakeClock", tracer="sys.setprofile") | tree()
    result = measure()
    if args.json:
        emit_json({"machine": info} | result)
        return
    print_header("The path of one add_to_cart from Tracker.track to WebhookChannel.send", info)
    path, everything = result["event_path"], result["everything_called"]
    _print_figures("the event's own path (the functions handed the event or what it becomes):", path, aim=True)
    _print_figures("everything called (helpers included):", everything, aim=False)
    print("\nthe event's path, in order of first call:")
    for function in path["function_list"]:
        module = function.split(":")[0]
        where = rank(module)
        print(f"  {function}{'' if where is None else f'  (rank {where})'}")
    for title, figures in (("on the event's path", path), ("among everything called", everything)):
        if figures["back_and_forth_list"]:
            print(f"\nback-and-forths {title} (caller -> callee):")
            for edge in figures["back_and_forth_list"]:
                print(f"  {edge}")
    print("\nmodules called (everything):")
    for module in everything["module_list"]:
        where = rank(module)
        marker = "  *" if module in path["module_list"] else "   "
        print(f"{marker} {module}{'' if where is None else f'  (rank {where})'}")
    print("  (* on the event's path)")


if __name__ == "__main__":
    main()
