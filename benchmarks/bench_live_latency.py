"""Live mode, wall clock: how long after its due time a message reaches its adapter.

Set-up: a :class:`recoverkit.BackgroundEngine` (wall clock, uvloop when installed) with::

    Config(abandon_after=1.0, flows=[Flow(name="live", steps=[FlowStep(delay=0.5, channel="email")])])

and an adapter that records ``time.time() - message.due_at`` on entry to ``send``. ``--carts`` probe carts
(``identify`` with an e-mail address, ``consent`` to e-mail, ``add_to_cart`` with three items, no ``ts`` so
the engine stamps them on arrival) are created evenly over ``--spread`` seconds from the main thread, so due
times spread out the same way. Each is abandoned ``abandon_after`` after its last event and its message falls
due ``delay`` later.

Three measurements in the same run:

- baseline: asyncio's own timer accuracy, ``loop.call_at`` lateness on an idle uvloop loop, for the same
  number of timers spread over the same time (the floor any asyncio program lives with);
- baseline: the engine idle (only the probe carts);
- the engine under load: a feeder thread tracks synthetic events (``generate_events`` with ``ts`` removed, so
  they happen "now") at ``--load-rate`` events per second, looping over them, from before the first probe
  cart until the last probe message arrives. Synthetic shoppers who consented get messages too; their
  lateness is reported on its own line.

Lateness is reported as p50, p90, p99 and max in milliseconds, with ratios of the loaded engine's p99 to both
baselines. Target (project issue): p99 < 50 ms. A live engine advances its clock when a timer falls due, and
while events arrive at least every ``tick_interval`` (``Config.tick_interval``, default 10 ms): lateness is the
ticker's wake-up plus one pass through the pipeline. (The "idle" phase here tracks 2,000 probe carts in 3 s, so
its engine is seldom idle; ``benchmarks/bench_idle.py`` measures a truly idle engine's lateness and CPU.)

A phase waits for its probe messages at most ``spread + abandon_after + delay`` plus ``--patience`` seconds
(default 10); probe messages still missing then are reported as missing (their lateness exceeds that wait),
which happens when the engine cannot keep up with ``--load-rate`` on the machine: live, the watermark only
moves once ingest has read everything journaled before the tick, so a pipeline that falls behind its input
delays every timer. The loaded figures then say "not measured" rather than a p99.

``--quick`` is a smoke run of a few seconds: 100 probe carts over 0.3 s, ``abandon_after`` 0.3 s, delay
0.1 s, a load of 2,000 events/s, 3 s of patience; its figures are indicative only. Run from the repository
root:

    .venv/bin/python benchmarks/bench_live_latency.py         # 2,000 carts over 3 s, 20,000 events/s
    .venv/bin/python benchmarks/bench_live_latency.py --quick
    .venv/bin/python benchmarks/bench_live_latency.py --load-rate 50000 --tick-interval 0.005 --json
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import threading
import time
from typing import Any

import anyio
import msgspec
from _common import bounded, emit_json, machine, parser, percentiles, print_header, quiet_logs, ratio, watchdog

from recoverkit import BackgroundEngine, Config, Flow, FlowStep, Message, encode_event
from recoverkit.synthetic import generate_events

P99_TARGET_MS = 50.0
QS = (50, 90, 99)
PROBE_DOMAIN = "@probe.invalid"
_HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None
#: Seconds a step that should be quick (reading statistics, the feeder stopping) may take before the script
#: gives up with an error; closing the engine is bounded by its own drain timeout.
STEP_TIMEOUT = 10.0


class _LatenessChannel:
    """Records how late each message is on entry to ``send``; probe messages and load messages apart."""

    def __init__(self, expected: int) -> None:
        self.probe: list[float] = []
        self.load: list[float] = []
        self.expected = expected
        self.all_probes_in = threading.Event()

    async def send(self, message: Message) -> None:
        late = time.time() - message.due_at  # first thing: nothing of ours is counted as the engine's
        email = message.recipient.email
        if email is not None and email.endswith(PROBE_DOMAIN):
            self.probe.append(late)
            if len(self.probe) >= self.expected:
                self.all_probes_in.set()
        else:
            self.load.append(late)


class _GcWatch:
    """Counts garbage collections and their pauses while active: a full (generation 2) collection of the
    process stops every thread, the engine's included, and is the usual cause of a tail here."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.longest_ms = [0.0, 0.0, 0.0]
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        self.counts[generation] += 1
        self.longest_ms[generation] = max(self.longest_ms[generation], (time.perf_counter() - self._started) * 1e3)

    def __enter__(self) -> _GcWatch:
        gc.collect()  # start each phase with the garbage of set-up collected, so phases start alike
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)

    def figures(self) -> dict[str, Any]:
        return {"collections": self.counts, "longest_pause_ms": self.longest_ms}


def _probe_events(i: int) -> list[bytes]:
    session, customer = f"probe-s{i}", f"probe-c{i}"
    items = [{"item_id": f"SKU-{(i * 31 + k * 977) % 5000:06d}", "price": "19.99", "quantity": 1} for k in range(3)]
    encode = msgspec.json.encode
    return [
        encode({"event": "identify", "session_id": session, "customer_id": customer,
                "email": f"p{i}{PROBE_DOMAIN}"}),
        encode({"event": "consent", "session_id": session, "customer_id": customer, "granted": ["email"]}),
        encode({"event": "add_to_cart", "session_id": session, "customer_id": customer, "currency": "EUR",
                "value": "59.97", "items": items}),
    ]  # fmt: skip


def _load_lines(sessions: int) -> list[bytes]:
    # Without ``ts`` the engine stamps each event on arrival, so the load behaves like live traffic: carts
    # are abandoned and messaged during the run instead of being days in the past.
    return [encode_event(msgspec.structs.replace(e, ts=None)) for e in generate_events(sessions, seed=1)]


def _ms(figures: dict[str, float]) -> dict[str, float]:
    return {k: v * 1e3 for k, v in figures.items()}


def engine_phase(
    config: Config, *, carts: int, spread: float, load: list[bytes] | None, load_rate: float, warmup: float,
    patience: float,
) -> dict[str, Any]:  # fmt: skip
    probes = [_probe_events(i) for i in range(carts)]
    channel = _LatenessChannel(expected=carts)
    bg = BackgroundEngine(config, channels={"email": channel}, close_at_exit=False)
    stop = threading.Event()
    fed = [0, 0]  # load events tracked: [accepted by track(), refused]

    def feed(lines: list[bytes]) -> None:
        track = bg.track
        period = 0.005  # a batch of events every 5 ms: smooth enough, and cheap to pace with sleep()
        per_period = load_rate * period
        started = time.perf_counter()
        sent = 0.0
        i, n = 0, len(lines)
        while not stop.is_set():
            due = (time.perf_counter() - started) * load_rate
            # Catch up after a late wake-up, but not all in one burst.
            count = int(min(due - sent, per_period * 4))
            for _ in range(count):
                if track(lines[i]):
                    fed[0] += 1
                else:
                    fed[1] += 1
                i = i + 1 if i + 1 < n else 0
            sent += count
            time.sleep(period)

    watch = _GcWatch().__enter__()
    try:
        bg.start()
        feeder = None
        feed_started = time.perf_counter()
        if load:
            feeder = threading.Thread(target=feed, args=(load,), name="load-feeder", daemon=True)
            feeder.start()
            time.sleep(warmup)

        started = time.perf_counter()
        for i, events in enumerate(probes):
            wait = started + i * spread / carts - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            for event in events:
                bg.track(event)
        waited = spread + config.abandon_after + config.flows[0].steps[0].delay + patience
        complete = channel.all_probes_in.wait(waited)
        stop.set()
        if feeder is not None:
            feeder.join(STEP_TIMEOUT)
            if feeder.is_alive():
                raise TimeoutError(f"the load feeder did not stop within {STEP_TIMEOUT:g} s")
        fed_seconds = time.perf_counter() - feed_started
        ticks = getattr(bg.engine._runner, "ticks", None)  # the ticker's wake-ups (recoverkit 0.2 counts them)
        stats = bounded(bg.statistics, STEP_TIMEOUT, "BackgroundEngine.statistics()")
    finally:
        stop.set()
        watch.__exit__()
        bg.close(timeout=5.0)  # bounded: what is still in the pipeline after 5 s is cancelled
    dispatch = stats.stages["dispatch"].extra
    return {
        "probe_carts": carts,
        "probe_messages": len(channel.probe),
        "complete": complete,
        "waited_s": waited,
        "probe_lateness_ms": _ms(percentiles(channel.probe, QS)),
        "load_messages": len(channel.load),
        "load_lateness_ms": _ms(percentiles(channel.load, QS)),
        "load_events_tracked": fed[0],
        "load_events_refused": fed[1],
        "load_events_per_second": fed[0] / fed_seconds if load else 0.0,
        "ticks_per_second": ticks / fed_seconds if isinstance(ticks, int) else None,
        "gc": watch.figures(),
        "events_accepted": stats.events_accepted,
        "events_invalid": sum(stats.events_invalid.values()),
        "events_overflow": stats.events_overflow,
        "messages": dict(stats.messages),
        # The engine's own (coarse, log-bucketed) view of the same thing, as a cross-check.
        "engine_send_lateness_p50_ms": dispatch["send_lateness_p50"] * 1e3,
        "engine_send_lateness_p99_ms": dispatch["send_lateness_p99"] * 1e3,
        "engine_pipeline_latency_p99_ms": dispatch["pipeline_latency_p99"] * 1e3,
    }


def timer_phase(*, timers: int, spread: float, lead: float) -> dict[str, Any]:
    """``loop.call_at`` lateness on an idle loop: ``timers`` timers due evenly over ``spread`` seconds."""
    lateness: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = anyio.Event()

        def fire(due: float) -> None:
            lateness.append(time.time() - due)
            if len(lateness) == timers:
                done.set()

        base = time.time() + lead
        for i in range(timers):
            due = base + i * spread / timers
            loop.call_at(loop.time() + (due - time.time()), fire, due)
        with anyio.move_on_after(lead + spread + 10.0):
            await done.wait()

    with _GcWatch() as watch:
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": _HAS_UVLOOP})
    return {
        "timers": timers,
        "fired": len(lateness),
        "lateness_ms": _ms(percentiles(lateness, QS)),
        "gc": watch.figures(),
    }


def run(
    *, carts: int, spread: float, abandon_after: float, delay: float, tick: float, load_rate: float,
    sessions: int, warmup: float, gc_freeze: bool, patience: float, lead: float,
) -> dict[str, Any]:  # fmt: skip
    config = Config(
        abandon_after=abandon_after,
        tick_interval=tick,
        flows=[Flow(name="live", steps=[FlowStep(delay=delay, channel="email")])],
    )
    load = _load_lines(sessions)
    gc.collect()
    tracked = len(gc.get_objects())
    if gc_freeze:
        # What pre-forking servers are advised to do after start-up: move everything alive now out of the
        # collector's reach, so full collections only walk what the requests create.
        gc.collect()
        gc.freeze()
    timer = timer_phase(timers=carts, spread=spread, lead=lead)
    idle = engine_phase(config, carts=carts, spread=spread, load=None, load_rate=0.0, warmup=0.0, patience=patience)
    loaded = engine_phase(
        config, carts=carts, spread=spread, load=load, load_rate=load_rate, warmup=warmup, patience=patience
    )
    t99 = timer["lateness_ms"]["p99"]
    i99 = idle["probe_lateness_ms"]["p99"]
    l99 = loaded["probe_lateness_ms"]["p99"]
    return {
        "settings": {
            "carts": carts,
            "spread_s": spread,
            "abandon_after_s": abandon_after,
            "step_delay_s": delay,
            "tick_interval_s": tick,
            "load_rate_target": load_rate,
            "load_synthetic_sessions": sessions,
            "load_synthetic_events": len(load),
            "warmup_s": warmup,
            "patience_s": patience,
            "gc_freeze": gc_freeze,
            "objects_tracked_by_gc_at_start": tracked,
        },
        "asyncio_call_at": timer,
        "engine_idle": idle,
        "engine_loaded": loaded,
        "ratios_p99": {
            "loaded_vs_idle": ratio(l99, i99),
            "loaded_vs_call_at": ratio(l99, t99),
            "idle_vs_call_at": ratio(i99, t99),
        },
        "targets": {
            "p99_ms": P99_TARGET_MS,
            "loaded_p99_met": bool(loaded["complete"]) and l99 < P99_TARGET_MS,
            "idle_p99_met": bool(idle["complete"]) and i99 < P99_TARGET_MS,
        },
    }


def report(doc: dict[str, Any]) -> None:
    s = doc["settings"]
    print(
        f"{s['carts']:,} probe carts over {s['spread_s']:g} s; abandon_after {s['abandon_after_s']:g} s, "
        f"step delay {s['step_delay_s']:g} s; tick_interval {s['tick_interval_s'] * 1e3:g} ms; load target "
        f"{s['load_rate_target']:,.0f} events/s from {s['load_synthetic_events']:,} synthetic events "
        f"(looped); {s['objects_tracked_by_gc_at_start']:,} objects tracked by gc"
        f"{', frozen' if s['gc_freeze'] else ''}\n"
    )
    header = f"{'lateness after due time':<44}" + "".join(f"{h:>10}" for h in ("count", "p50", "p90", "p99", "max"))
    print(header + "   (ms)")
    print("-" * (len(header) + 7))

    def row(label: str, count: int, f: dict[str, float]) -> None:
        print(f"{label:<44}{count:>10,}" + "".join(f"{f[k]:>10.2f}" for k in ("p50", "p90", "p99", "max")))

    t, idle, loaded = doc["asyncio_call_at"], doc["engine_idle"], doc["engine_loaded"]
    row("baseline: loop.call_at, idle loop", t["fired"], t["lateness_ms"])
    row("baseline: engine idle, probe messages", idle["probe_messages"], idle["probe_lateness_ms"])
    row(
        f"engine at {loaded['load_events_per_second']:,.0f} ev/s, probe messages",
        loaded["probe_messages"],
        loaded["probe_lateness_ms"],
    )
    row("  same run, load shoppers' messages", loaded["load_messages"], loaded["load_lateness_ms"])
    r = doc["ratios_p99"]
    print(
        f"\np99 ratios: loaded / idle engine {r['loaded_vs_idle']:.2f}x, "
        f"loaded / call_at {r['loaded_vs_call_at']:.1f}x, idle engine / call_at {r['idle_vs_call_at']:.1f}x"
    )
    for name, phase in (("call_at", t), ("idle", idle), ("loaded", loaded)):
        g = phase["gc"]
        print(
            f"{name}: garbage collections during the phase (gen 0/1/2) "
            f"{'/'.join(str(c) for c in g['collections'])}, "
            f"longest full (gen 2) pause {g['longest_pause_ms'][2]:.1f} ms"
        )
    for name, phase in (("idle", idle), ("loaded", loaded)):
        missing = phase["probe_carts"] - phase["probe_messages"]
        print(
            f"{name}: engine's own send_lateness histogram p50 "
            f"{phase['engine_send_lateness_p50_ms']:.1f} ms, "
            f"p99 {phase['engine_send_lateness_p99_ms']:.1f} ms; "
            f"batch ingest->dispatch p99 {phase['engine_pipeline_latency_p99_ms']:.1f} ms; "
            f"events accepted {phase['events_accepted']:,}, "
            f"overflow {phase['events_overflow']:,}; probe messages missing {missing}; "
            f"ticker wake-ups/s {_rate(phase['ticks_per_second'])}"
        )
    for name, phase in (("idle", idle), ("loaded", loaded)):
        if not phase["complete"]:
            print(
                f"{name}: NOT MEASURED: {phase['probe_carts'] - phase['probe_messages']:,} of "
                f"{phase['probe_carts']:,} probe messages had not reached the adapter after "
                f"{phase['waited_s']:.1f} s; the engine did not keep up (accepted "
                f"{phase['events_accepted']:,} events); lower --load-rate or raise --patience"
            )
    t = doc["targets"]
    print(
        f"\ntarget: p99 < {t['p99_ms']:g} ms under load: {_p99(loaded)} - "
        f"{'met' if t['loaded_p99_met'] else 'NOT met'} (idle: {_p99(idle)} - "
        f"{'met' if t['idle_p99_met'] else 'NOT met'})"
    )


def _rate(value: float | None) -> str:
    return "not counted" if value is None else f"{value:,.0f}"


def _p99(phase: dict[str, Any]) -> str:
    if not phase["complete"]:
        return f"not measured (messages missing after {phase['waited_s']:.1f} s)"
    return f"{phase['probe_lateness_ms']['p99']:.2f} ms"


def main() -> None:
    p = parser(__doc__.split("\n\n")[0], timeout=300.0)
    p.add_argument("--carts", type=int, help="probe carts per phase (default 2,000; 100 with --quick)")
    p.add_argument("--spread", type=float, help="seconds over which probe carts are created (default 3; 0.3 --quick)")
    p.add_argument("--abandon-after", type=float, help="Config.abandon_after, seconds (default 1.0; 0.3 --quick)")
    p.add_argument("--delay", type=float, help="the flow step's delay, seconds (default 0.5; 0.1 --quick)")
    p.add_argument("--tick-interval", type=float, default=Config().tick_interval, help="Config.tick_interval (s)")
    p.add_argument("--load-rate", type=float, help="background events per second (default 20,000; 2,000 --quick)")
    p.add_argument("--sessions", type=int, help="synthetic sessions for the load (default 10,000; 500 --quick)")
    p.add_argument(
        "--patience",
        type=float,
        help="seconds a phase waits for its last probe message beyond its due time (default 10; 3 --quick)",
    )
    p.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after set-up, as pre-forking servers do")
    args = p.parse_args()
    quiet_logs()
    watchdog(args.timeout, "bench_live_latency")
    quick = args.quick
    carts = args.carts if args.carts is not None else (100 if quick else 2_000)
    spread = args.spread if args.spread is not None else (0.3 if quick else 3.0)
    abandon_after = args.abandon_after if args.abandon_after is not None else (0.3 if quick else 1.0)
    delay = args.delay if args.delay is not None else (0.1 if quick else 0.5)
    sessions = args.sessions if args.sessions is not None else (500 if quick else 10_000)
    load_rate = args.load_rate if args.load_rate is not None else (2_000.0 if quick else 20_000.0)
    patience = args.patience if args.patience is not None else (3.0 if quick else 10.0)
    info = machine(event_loop="uvloop" if _HAS_UVLOOP else "asyncio")
    doc = {"machine": info} | run(
        carts=carts,
        spread=spread,
        abandon_after=abandon_after,
        delay=delay,
        tick=args.tick_interval,
        load_rate=load_rate,
        sessions=sessions,
        warmup=0.2 if quick else 1.0,
        gc_freeze=args.gc_freeze,
        patience=patience,
        lead=0.2 if quick else 0.5,
    )
    if args.json:
        emit_json(doc)
        return
    print_header("recoverkit benchmark: live mode, lateness of a due message at its adapter", info)
    report(doc)


if __name__ == "__main__":
    main()
