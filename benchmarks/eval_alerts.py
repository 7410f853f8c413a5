"""Alerts when the purchase path breaks: detection time and false alarms on simulated weeks (issue 17, section 3).

Not a speed benchmark: an evaluation of :mod:`recoverkit.alerts` on the synthetic shop
(:mod:`recoverkit.synthetic`, about 30,000 sessions and 185,000 events a day). For each seed, a week is played
through two watchers at once with the default ``[alerts]`` settings: one sees the clean stream, the other the
same stream with three incidents injected (:mod:`recoverkit._synthetic_incidents`) after the first day, at
hours drawn from the seed:

- the payment provider down for 20 minutes (every order fails with ``provider_unavailable``);
- one checkout form field broken by a deploy for two hours (every checkout rejected on it, none goes on);
- tracking lost on one page type for two hours.

It reports, per incident, the delay from its start to the alert in its area (event time), and every other
alert as a false alarm: on the clean weeks, and on the incident weeks outside the incidents' areas. Targets:
every incident detected within 10 minutes, at most one false alarm per simulated week.

    .venv/bin/python benchmarks/eval_alerts.py                 # 3 seeds x 7 days: ~3-6 minutes on 2 cores
    .venv/bin/python benchmarks/eval_alerts.py --seeds 1-5 --jobs 2
    .venv/bin/python benchmarks/eval_alerts.py --quick --json  # 1 seed x 2 days, a smoke run
"""

from __future__ import annotations

import concurrent.futures
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit_json, machine, parser, print_header, quiet_logs, watchdog  # noqa: E402

from recoverkit._alert_eval import WeekResult, evaluate_week  # noqa: E402

TARGET_DELAY = 600.0
TARGET_FALSE_ALARMS_PER_WEEK = 1.0


def _seeds(text: str) -> list[int]:
    if "-" in text:
        low, high = text.split("-", 1)
        return list(range(int(low), int(high) + 1))
    return [int(part) for part in text.split(",") if part]


def _run(seed: int, days: float) -> tuple[WeekResult, float]:
    started = time.perf_counter()
    result = evaluate_week(seed, days=days)
    return result, time.perf_counter() - started


def _document(results: list[tuple[WeekResult, float]], days: float, quick: bool) -> dict[str, Any]:
    weeks = len(results) * days / 7
    incidents = [
        {"seed": r.seed, "kind": d.incident.kind, "target": d.incident.target, "start": d.incident.start,
         "area": d.area, "delay_s": d.delay}
        for r, _ in results for d in r.detections
    ]
    delays = [i["delay_s"] for i in incidents]
    false_clean = [{"seed": r.seed, "at": a.at, "text": a.text} for r, _ in results for a in r.false_alarms_clean]
    false_incident = [
        {"seed": r.seed, "at": a.at, "text": a.text} for r, _ in results for a in r.false_alarms_with_incidents
    ]
    detected = [d for d in delays if d is not None]
    return {
        "quick": quick,
        "days_per_run": days,
        "seeds": [r.seed for r, _ in results],
        "simulated_weeks": weeks,
        "events": sum(r.events for r, _ in results),
        "seconds": sum(s for _, s in results),
        "incidents": incidents,
        "detected": len(detected),
        "injected": len(incidents),
        "max_delay_s": max(detected) if detected else None,
        "false_alarms_clean": false_clean,
        "false_alarms_with_incidents": false_incident,
        "false_alarms_per_week_clean": len(false_clean) / weeks if weeks else None,
        "false_alarms_per_week_with_incidents": len(false_incident) / weeks if weeks else None,
        "targets": {
            "all_detected_within_10_min": all(d is not None and d <= TARGET_DELAY for d in delays),
            "at_most_one_false_alarm_per_week": all(
                len(r.false_alarms_clean) <= TARGET_FALSE_ALARMS_PER_WEEK * r.days / 7
                and len(r.false_alarms_with_incidents) <= TARGET_FALSE_ALARMS_PER_WEEK * r.days / 7
                for r, _ in results
            ) if not quick else None,
        },
    }


def main() -> int:
    p = parser(__doc__.split("\n\n")[0], timeout=3600)
    p.add_argument("--seeds", default="1-3", help="seeds to simulate: '1-3' or '1,4,9' (default 1-3)")
    p.add_argument("--days", type=float, default=7.0, help="days per simulated run (default 7)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (default 1)")
    args = p.parse_args()
    watchdog(args.timeout, "eval_alerts.py")
    quiet_logs()
    seeds, days = (_seeds(args.seeds), args.days) if not args.quick else ([1], 2.0)
    info = machine(seeds=",".join(map(str, seeds)), days=days)
    if not args.json:
        print_header("Purchase-path alerts: incidents detected and false alarms on simulated weeks", info)
    with concurrent.futures.ProcessPoolExecutor(max(1, args.jobs)) as pool:
        results = list(pool.map(_run, seeds, [days] * len(seeds)))
    doc = _document(results, days, args.quick) | {"machine": info}
    if args.json:
        emit_json(doc)
        return 0
    for incident in doc["incidents"]:
        delay = "NOT DETECTED" if incident["delay_s"] is None else f"{incident['delay_s'] / 60:.1f} min"
        print(f"seed {incident['seed']}: {incident['kind']:<14} {incident['target'] or '-':<12} -> {delay}")
    print()
    print(f"detected {doc['detected']} of {doc['injected']}; longest delay "
          f"{(doc['max_delay_s'] or 0) / 60:.1f} min (target <= 10)")
    print(f"false alarms: {len(doc['false_alarms_clean'])} on {doc['simulated_weeks']:g} clean simulated weeks, "
          f"{len(doc['false_alarms_with_incidents'])} on the same weeks with incidents (target <= 1 per week)")
    for alarm in doc["false_alarms_clean"] + doc["false_alarms_with_incidents"]:
        print(f"  seed {alarm['seed']} at {time.strftime('%a %H:%M', time.gmtime(alarm['at']))}: {alarm['text']}")
    print(f"{doc['events']:,} events in {doc['seconds']:.0f} s of runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
