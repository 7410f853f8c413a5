"""recoverkit in the shop's own processes: a small Flask shop and a small Django shop under gunicorn, each with and
without recoverkit, in one run (issue 15's goal "In the shop's process").

**The shops** (``benchmarks/apps/``, described in ``apps/shop.py``): four endpoints, the steps of a purchase
(product page, add to cart, one checkout step, purchase), instrumented through recoverkit's real integrations
(``recoverkit.contrib.flask``'s extension and ``tracker``; ``recoverkit.contrib.django``'s app, middleware and
``get_tracker``) with ``TRACK_PAGE_VIEWS`` on, so a request records 2 to 4 events (2.6 on average over the
journeys below). recoverkit's configuration is the embedded default as a shop with several workers deploys it:
the default flows, one SQLite store file (in a temporary folder) shared by the workers, one of which holds the
pipeline lease. The baseline is the same shop without recoverkit (``BENCH_RECOVERKIT=0``: recoverkit is not even
imported, its middleware or extension not installed).

**The server**: gunicorn, ``--workers 2`` (the machine's cores; ``--workers``), its default ``sync`` worker
(``--worker-class``, ``--threads``), no ``--preload`` (``--preload`` to add it), started afresh for every
configuration, from this Python (``--commit REV`` runs the servers on recoverkit's ``src/`` as of a commit,
exported to a temporary folder, instead of the working tree).

**The load** comes from this script: threads, each with its own HTTP/1.1 connection (raw sockets, a few
microseconds of parsing per answer, so the generator takes as little of the shared cores as it can; keep-alive
when the server offers it, which gunicorn's ``sync`` worker does not). Shoppers keep their cookies (the shop's
session, recoverkit's ``rk_sid``) for their whole journey: product page, add to cart, checkout step, then two in
three leave (abandoned carts, as most are) and the third buys. Journeys interleave as the threads take them.

**Phases**, for each app and each configuration (``without`` and ``with`` recoverkit, interleaved: the order
alternates from one round to the next, ``--repeat`` rounds):

1. warm-up (``--warmup`` s, closed loop, until both workers have answered);
2. saturation: closed loop, ``--concurrency`` (8) connections sending back to back for ``--duration`` s:
   requests per second, latency p50/p99 per request;
3. fixed rates, open loop: requests are due at fixed intervals (``--rates`` req/s, or by default 25 %, 50 % and
   75 % of the first round's saturation throughput without recoverkit, the same rates for both configurations),
   sent by a pool of 32 threads, and each latency runs from the time the request was *due*, not sent, so a
   server that falls behind is charged for the wait (no coordinated omission). Requests still unsent
   ``--duration`` / 2 (at least 2) seconds after the last one was due are counted as late by at least that
   much; the phase is then marked incomplete;
4. after ``--settle`` s of quiet: each worker's resident memory (``VmRSS``), and, with recoverkit, the engines'
   event counters (``GET /_bench/stats``), polled until every event the requests tracked is accepted and the
   pipeline owner has read the whole journal (``catch_up_seconds``);
5. idle: each worker's CPU over ``--idle`` (20) s with no traffic, as % of one core, from the scheduler's
   nanoseconds per thread (``/proc/<pid>/task/*/schedstat``: an idle engine's few milliseconds are below the
   clock tick that ``/proc/<pid>/stat`` counts in), or from ``/proc/<pid>/stat`` when that says more (it keeps
   the time of threads that ended during the window). The engines hold the open carts of the phases before by then.

**CPU per request**: the user plus system time of gunicorn's master and its workers (``/proc/<pid>/stat``) over
the measured window, divided by the requests completed in it. The load generator's own CPU per request is shown
too: it shares the machine's cores, so at saturation its work dilutes every difference; the server-CPU ratio says
what a server with the cores to itself would keep.

**Figures**: per phase, throughput, latency and CPU per request are the median of the rounds (the best
saturation throughput is shown too). The ratios with / without are taken round by round (the two configurations
ran one after the other, under about the same load on a shared machine), median of the rounds. The goals, each
printed as met or not met:

- with recoverkit, a shop keeps at least 0.85x its saturation throughput without it, judged on server CPU per
  request at saturation (without / with): the throughput a server with the cores to itself would keep. The
  measured throughput ratio is printed beside it, with the share of the time the servers' threads were runnable
  but waited for a core (``/proc/<pid>/task/*/schedstat``): on a machine shared with other work (Linux schedules
  each session as a group, and the servers run in sessions of their own) the throughput a server reaches follows
  the share of the cores the scheduler gives it, which moves from one phase to the next and favours a process
  whose threads wake often (an engine on a fixed tick); when the servers waited for a core much of the time, that
  ratio measured the machine, not recoverkit;
- at most 10 MB (10^6 bytes) more resident memory per worker (median of the rounds' differences);
- an idle worker with an engine uses under 0.5 % of a core (the busier worker; median of the rounds).

Request-thread CPU per tracked event (goal: 5 us) is ``bench_request_cpu.py``'s; this script shows the server CPU
that recoverkit adds per tracked event over all threads (request and engine), an upper bound for it.

Run from the repository root (gunicorn, Flask and Django are in the ``test`` extra, as in requirements/test.txt):

    .venv/bin/python benchmarks/bench_app.py                 # 3 rounds, 5 s phases: ~10 minutes
    .venv/bin/python benchmarks/bench_app.py --quick --json  # 1 round, 1 s phases: indicative only
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from _common import emit_json, machine, parser, percentiles, print_header, ratio, watchdog
from apps.load import Connection, Phase, Traffic, closed_loop, open_loop

HERE = Path(__file__).resolve().parent
APPS_DIR = HERE / "apps"
#: gunicorn's application spec for each shop, from APPS_DIR.
APPS = {"flask": "flask_app:create_app()", "django": "django_app:application"}
ARMS = ("without", "with")
CLK_TCK = os.sysconf("SC_CLK_TCK")
OPEN_LOOP_THREADS = 32
GOAL_THROUGHPUT = 0.85
GOAL_ADDED_MB = 10.0
GOAL_IDLE_PERCENT = 0.5


# -- /proc ---------------------------------------------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    """User plus system CPU time of ``pid`` so far, in clock ticks (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (gunicorn's workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(entry))
    return sorted(found)


def memory_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak) of ``pid``, in kB."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0])
    return out


def threads_scheduled(pid: int) -> dict[str, tuple[int, int]]:
    """For each thread of ``pid``: nanoseconds it has run, and spent runnable but waiting for a core
    (``/proc/<pid>/task/<tid>/schedstat``; empty once the process is gone)."""
    out = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                fields = f.read().split()
        except OSError:
            continue  # a thread that ended meanwhile
        out[f"{pid}/{tid}"] = (int(fields[0]), int(fields[1]))
    return out


def scheduled_since(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """Nanoseconds run and waited since ``before``, summed over the threads alive at ``after`` (a thread started
    meanwhile counts from zero). A thread that ended meanwhile is left out: its last moments are lost, which is
    why idle CPU also reads ``/proc/<pid>/stat``, which keeps the time of ended threads."""
    ran = waited = 0
    for tid, (r, w) in after.items():
        r0, w0 = before.get(tid, (0, 0))
        ran, waited = ran + r - r0, waited + w - w0
    return ran, waited


def loadavg() -> float:
    return os.getloadavg()[0]


# -- the server ----------------------------------------------------------------------------------------------------


@dataclass
class Server:
    """One gunicorn running one shop, with or without recoverkit."""

    app: str
    arm: str
    process: subprocess.Popen[bytes]
    host: str
    port: int
    log: Path

    @property
    def master(self) -> int:
        return self.process.pid

    def workers(self) -> list[int]:
        return children(self.master)

    def cpu(self) -> int:
        return sum(cpu_ticks(pid) for pid in (self.master, *self.workers()))

    def scheduled(self) -> dict[str, tuple[int, int]]:
        return {tid: v for pid in (self.master, *self.workers()) for tid, v in threads_scheduled(pid).items()}


def gunicorn_options() -> list[str]:
    # gunicorn 24+ opens a control socket in the home folder, one path for every gunicorn on the machine; the
    # benchmark's servers need none, and must not disturb another's.
    from gunicorn.config import KNOWN_SETTINGS

    return ["--no-control-socket"] if any("--no-control-socket" in s.cli for s in KNOWN_SETTINGS if s.cli) else []


def start_server(app: str, arm: str, folder: Path, args: Any, pythonpath: str | None) -> Server:
    log = folder / f"gunicorn-{app}-{arm}.log"
    log.unlink(missing_ok=True)
    env = {
        **os.environ,
        "BENCH_RECOVERKIT": "1" if arm == "with" else "0",
        "BENCH_STORE": str(folder / f"recoverkit-{app}.db"),
    }
    for suffix in ("", "-wal", "-shm"):  # a fresh store for each server: no state carried over from a round before
        (folder / f"recoverkit-{app}.db{suffix}").unlink(missing_ok=True)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(args.workers),
        "--worker-class",
        args.worker_class,
        "--threads",
        str(args.threads),
        "--bind",
        "127.0.0.1:0",
        "--chdir",
        str(APPS_DIR),
        "--error-logfile",
        str(log),
        "--graceful-timeout",
        "30",
        "--timeout",
        "120",
        *gunicorn_options(),
        *(["--preload"] if args.preload else []),
        APPS[app],
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while True:
        text = log.read_text() if log.exists() else ""
        found = re.search(r"Listening at: http://([\d.]+):(\d+)", text)
        if found and text.count("Booting worker") >= args.workers:
            return Server(app, arm, process, found.group(1), int(found.group(2)), log)
        if process.poll() is not None or time.monotonic() > deadline:
            stop_server_process(process)
            raise RuntimeError(f"gunicorn for {app} ({arm} recoverkit) did not start:\n{text[-3000:]}")
        time.sleep(0.05)


def stop_server_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the master (the workers drain their engines), SIGKILL to its process group after 45 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(45)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the session start_server made for this server alone
            process.wait(10)


@contextmanager
def running(app: str, arm: str, folder: Path, args: Any, pythonpath: str | None) -> Iterator[Server]:
    server = start_server(app, arm, folder, args, pythonpath)
    try:
        yield server
    finally:
        stop_server_process(server.process)


# -- measured phases ---------------------------------------------------------------------------------------------------


def measured(server: Server, traffic: Traffic, run: Callable[[], Phase]) -> dict[str, Any]:
    """Run ``run()`` (a phase of the load generator) between two readings of the server's and this process's CPU."""
    workers_before = server.workers()
    errors_before = len(traffic.errors)
    processes = [server.master, *workers_before]
    by_process_before = [cpu_ticks(pid) for pid in processes]
    cpu_before, client_before, load_before = server.cpu(), time.process_time(), loadavg()
    scheduled_before = server.scheduled()
    requests, seconds, latencies, extra = run()
    cpu_after, client_after = server.cpu(), time.process_time()
    by_process = {str(pid): cpu_ticks(pid) - before for pid, before in zip(processes, by_process_before, strict=True)}
    ran, waited = scheduled_since(scheduled_before, server.scheduled())
    return {
        "requests": requests,
        "seconds": seconds,
        "requests_per_second": requests / seconds if seconds > 0 else float("nan"),
        "latency_ms": {k: v * 1e3 for k, v in percentiles(latencies, (50, 90, 99)).items()},
        "server_cpu_us_per_request": (cpu_after - cpu_before) / CLK_TCK / requests * 1e6 if requests else None,
        "client_cpu_us_per_request": (client_after - client_before) / requests * 1e6 if requests else None,
        # The same, process by process (the master first): which worker's CPU recoverkit's cost lands in.
        "cpu_us_per_request_by_process": {pid: t / CLK_TCK / requests * 1e6 for pid, t in by_process.items()}
        if requests
        else {},
        # Of the time the server's threads wanted a core, the share they waited for one: high when other work on
        # the machine took the cores, and then the throughput measured the machine's load as much as the server.
        "waiting_for_a_core_percent": waited / (ran + waited) * 100 if ran + waited > 0 else float("nan"),
        "errors": len(traffic.errors) - errors_before,
        "workers_restarted": server.workers() != workers_before,
        "load_average": round((load_before + loadavg()) / 2, 2),
        **extra,
    }


def saturation(server: Server, traffic: Traffic, seconds: float, concurrency: int) -> dict[str, Any]:
    return measured(server, traffic, lambda: closed_loop(traffic, seconds, concurrency))


def fixed_rate(server: Server, traffic: Traffic, rate: float, seconds: float) -> dict[str, Any]:
    return measured(server, traffic, lambda: open_loop(traffic, rate, seconds, OPEN_LOOP_THREADS))


def warm_up(traffic: Traffic, seconds: float, workers: int) -> None:
    """Closed loop for ``seconds``, then on until every worker has answered (each builds its engine lazily)."""
    closed_loop(traffic, seconds, 4)  # not measured
    deadline = time.monotonic() + 30
    while len(traffic.workers_seen) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only workers {sorted(traffic.workers_seen)} answered the warm-up")
        closed_loop(traffic, 0.2, 4)


def engine_counters(server: Server, workers: int) -> dict[str, Any]:
    """``GET /_bench/stats`` until every worker has answered: each engine's event counters."""
    by_pid: dict[int, dict[str, Any]] = {}
    connection = Connection(server.host, server.port)
    for _ in range(200):
        status, _, _, body = connection.request("GET", "/_bench/stats", b"", "")
        if status != 200:
            raise RuntimeError(f"/_bench/stats answered {status}")
        answer = json.loads(body)
        by_pid[answer["pid"]] = answer
        if len(by_pid) >= workers:
            break
    connection.close()
    return {str(pid): answer for pid, answer in sorted(by_pid.items())}


def caught_up(server: Server, workers: int, tracked: int, patience: float = 60.0) -> tuple[dict[str, Any], float]:
    """The engines' counters once they have journaled every event tracked and the pipeline owner has read the whole
    journal (or after ``patience`` seconds), and the seconds that took: idle is measured from there, not while the
    owner still works through the load's backlog."""
    started = time.monotonic()
    while True:
        counters = engine_counters(server, workers)
        accepted = sum(c["accepted"] for c in counters.values())
        behind = sum(c["journal_behind"] for c in counters.values() if c["owner"])
        waited = time.monotonic() - started
        if (accepted >= tracked and behind == 0) or waited > patience:
            return counters, waited
        time.sleep(0.25)


def idle_cpu(server: Server, seconds: float) -> dict[str, float]:
    """Each worker's CPU over ``seconds`` of no traffic, as % of one core: the scheduler's nanoseconds (an idle
    engine's few milliseconds are below the 10 ms in which ``/proc/<pid>/stat`` counts), or that count if it is
    larger (a thread that ended during the window, such as an idle worker thread of anyio's, keeps its time there)."""
    workers = server.workers()
    before = {pid: (threads_scheduled(pid), cpu_ticks(pid)) for pid in workers}
    time.sleep(seconds)
    out = {}
    for pid in workers:
        ran, _ = scheduled_since(before[pid][0], threads_scheduled(pid))
        ticks = cpu_ticks(pid) - before[pid][1]
        out[str(pid)] = max(ran / 1e9, ticks / CLK_TCK) / seconds * 100
    return out


# -- one configuration, one round ----------------------------------------------------------------------------------


def measure(server: Server, args: Any, rates: Sequence[float] | None) -> tuple[dict[str, Any], list[float]]:
    """Every phase against one running server; the rates used (computed from saturation when ``rates`` is None)."""
    traffic = Traffic(server.host, server.port)
    warm_up(traffic, args.warmup, args.workers)
    result: dict[str, Any] = {"saturation": saturation(server, traffic, args.duration, args.concurrency)}
    if rates is None:
        rates = [round(result["saturation"]["requests_per_second"] * f, 1) for f in args.fractions]
    result["rates"] = [fixed_rate(server, traffic, rate, args.duration) for rate in rates]
    time.sleep(args.settle)
    workers = server.workers()
    memory = {str(pid): memory_kb(pid) for pid in workers}
    result["rss_mb"] = {pid: m["VmRSS"] * 1024 / 1e6 for pid, m in memory.items()}
    result["peak_rss_mb"] = {pid: m["VmHWM"] * 1024 / 1e6 for pid, m in memory.items()}
    if server.arm == "with":
        result["counters"], result["catch_up_seconds"] = caught_up(server, args.workers, traffic.events_tracked())
        time.sleep(min(args.settle, 1.0))  # the stats calls woke the engines
    else:
        result["counters"], result["catch_up_seconds"] = {}, 0.0
    result["idle_percent_of_core"] = idle_cpu(server, args.idle)
    result["served"] = dict(traffic.served)
    result["events_tracked"] = traffic.events_tracked() if server.arm == "with" else 0
    result["requests_by_worker"] = {w.decode(): n for w, n in sorted(traffic.workers_seen.items())}
    result["errors"] = traffic.errors[:20]
    result["error_count"] = len(traffic.errors)
    return result, list(rates)


def checks(run: dict[str, Any], arm: str) -> dict[str, bool]:
    phases = [run["saturation"], *run["rates"]]
    out = {
        "no_errors": run["error_count"] == 0,
        "no_worker_restarted": not any(p["workers_restarted"] for p in phases),
        "every_worker_served": len(run["requests_by_worker"]) >= len(run["rss_mb"]),
    }
    if arm == "with":
        counters = run["counters"].values()
        out["every_event_accepted"] = sum(c["accepted"] for c in counters) == run["events_tracked"]
        out["none_invalid_or_refused"] = all(c["invalid"] == 0 and c["overflow"] == 0 for c in counters)
        out["one_pipeline_owner"] = sum(bool(c["owner"]) for c in counters) == 1
    return out


# -- the whole run -------------------------------------------------------------------------------------------------


def export_source(commit: str, folder: Path) -> str:
    """recoverkit's ``src/`` as of ``commit``, unpacked under ``folder``; the path to put first on PYTHONPATH."""
    root = Path(__file__).resolve().parents[1]
    archive = folder / "src.tar"
    subprocess.run(
        ["git", "-C", str(root), "archive", "--format=tar", "-o", str(archive), commit, "src/recoverkit"], check=True
    )
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later: refuse members that leave the folder
            tar.extractall(folder / "export", filter="data")
        else:
            tar.extractall(folder / "export")
    return str(folder / "export" / "src")


def source_description(commit: str | None) -> str:
    root = Path(__file__).resolve().parents[1]

    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *argv], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    if commit:
        return f"{git('rev-parse', '--short', commit)} (exported with --commit {commit})"
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "src/recoverkit").splitlines()
    import recoverkit

    where = Path(recoverkit.__file__).resolve().parent
    suffix = f" + uncommitted changes in {len(dirty)} file(s) under src/recoverkit" if dirty else ""
    return f"{head}{suffix} ({where})"


def run_all(args: Any, folder: Path, pythonpath: str | None) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    rates: dict[str, list[float] | None] = {app: list(args.rates) if args.rates else None for app in args.apps}
    for r in range(args.repeat):
        order = ARMS if r % 2 == 0 else ARMS[::-1]  # without first in round 0, so its saturation sets the rates
        apps = args.apps if r % 2 == 0 else args.apps[::-1]
        for app in apps:
            for arm in order:
                print(f"round {r + 1}/{args.repeat}: {app}, {arm} recoverkit", file=sys.stderr, flush=True)
                with running(app, arm, folder, args, pythonpath) as server:
                    result, used = measure(server, args, rates[app])
                rates[app] = used
                rounds.append({"round": r, "app": app, "arm": arm, **result, "checks": checks(result, arm)})
    return {"rounds": rounds, "rates": rates}


def _median(values: Sequence[float | None]) -> float:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else float("nan")


def summarise(rounds: list[dict[str, Any]], apps: Sequence[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for app in apps:
        arms: dict[str, Any] = {}
        for arm in ARMS:
            runs = [r for r in rounds if r["app"] == app and r["arm"] == arm]
            sat = [r["saturation"] for r in runs]
            arms[arm] = {
                "saturation": {
                    "requests_per_second_best": max(s["requests_per_second"] for s in sat),
                    "requests_per_second_median": _median([s["requests_per_second"] for s in sat]),
                    "p50_ms": _median([s["latency_ms"]["p50"] for s in sat]),
                    "p99_ms": _median([s["latency_ms"]["p99"] for s in sat]),
                    "server_cpu_us_per_request": _median([s["server_cpu_us_per_request"] for s in sat]),
                    "client_cpu_us_per_request": _median([s["client_cpu_us_per_request"] for s in sat]),
                    "waiting_for_a_core_percent": _median([s["waiting_for_a_core_percent"] for s in sat]),
                },
                "rates": [
                    {
                        "rate": phases[0]["rate"],
                        "achieved_per_second": _median([p["requests_per_second"] for p in phases]),
                        "p50_ms": _median([p["latency_ms"]["p50"] for p in phases]),
                        "p99_ms": _median([p["latency_ms"]["p99"] for p in phases]),
                        "server_cpu_us_per_request": _median([p["server_cpu_us_per_request"] for p in phases]),
                        "complete": all(p["complete"] for p in phases),
                    }
                    for phases in zip(*(r["rates"] for r in runs), strict=True)
                ],
                "rss_mb_mean_per_worker": _median([statistics.fmean(r["rss_mb"].values()) for r in runs]),
                "idle_percent_busier_worker": _median([max(r["idle_percent_of_core"].values()) for r in runs]),
                "catch_up_seconds": _median([r["catch_up_seconds"] for r in runs]),
                "cpu_us_per_request_split": {
                    phase: {
                        part: _median([_split(r, phase)[part] for r in runs])
                        for part in ("master", "pipeline_owner", "other_workers")
                    }
                    for phase in ("saturation", "lowest_rate")
                },
            }
        paired = [
            (w, x)
            for w in rounds
            for x in rounds
            if w["app"] == x["app"] == app and w["round"] == x["round"] and (w["arm"], x["arm"]) == ARMS
        ]
        added = _median(
            [statistics.fmean(x["rss_mb"].values()) - statistics.fmean(w["rss_mb"].values()) for w, x in paired]
        )
        without, with_ = arms["without"]["saturation"], arms["with"]["saturation"]
        events_per_request = _mean_events_per_request(rounds, app)
        cpu_added = with_["server_cpu_us_per_request"] - without["server_cpu_us_per_request"]
        summary[app] = {
            **arms,
            "events_per_request": events_per_request,
            # Each round's with / without (run one after the other, so under about the same load), median of the
            # rounds; and the best throughput of all rounds with, over the best without.
            "ratios": {
                "throughput": _median(
                    [
                        ratio(x["saturation"]["requests_per_second"], w["saturation"]["requests_per_second"])
                        for w, x in paired
                    ]
                ),
                "server_cpu": _median(
                    [
                        ratio(
                            w["saturation"]["server_cpu_us_per_request"], x["saturation"]["server_cpu_us_per_request"]
                        )
                        for w, x in paired
                    ]
                ),
                "throughput_best": ratio(with_["requests_per_second_best"], without["requests_per_second_best"]),
            },
            "server_cpu_added_us_per_request": cpu_added,
            "server_cpu_added_us_per_event": cpu_added / events_per_request if events_per_request else float("nan"),
            "rss_added_mb_per_worker": added,
        }
    return summary


def _split(run: dict[str, Any], phase: str) -> dict[str, float | None]:
    """Server CPU per request of one phase, by process: the master, the worker holding the pipeline lease (with
    recoverkit), and the other workers together."""
    figures = run["saturation"] if phase == "saturation" else run["rates"][0]
    by_process = list(figures["cpu_us_per_request_by_process"].items())
    if not by_process:
        return {"master": None, "pipeline_owner": None, "other_workers": None}
    owners = {pid for pid, c in run["counters"].items() if c["owner"]}
    workers = by_process[1:]
    return {
        "master": by_process[0][1],
        "pipeline_owner": sum(v for pid, v in workers if pid in owners) if owners else None,
        "other_workers": sum(v for pid, v in workers if pid not in owners),
    }


def _mean_events_per_request(rounds: list[dict[str, Any]], app: str) -> float:
    served = [r for r in rounds if r["app"] == app and r["arm"] == "with"]
    requests = sum(sum(r["served"].values()) for r in served)
    return sum(r["events_tracked"] for r in served) / requests if requests else float("nan")


def goals(summary: dict[str, Any]) -> dict[str, Any]:
    apps = list(summary)
    throughput = {app: summary[app]["ratios"] for app in apps}
    added = {app: summary[app]["rss_added_mb_per_worker"] for app in apps}
    idle = {app: summary[app]["with"]["idle_percent_busier_worker"] for app in apps}
    return {
        "throughput": {
            "goal": f">= {GOAL_THROUGHPUT}x saturation throughput without recoverkit",
            "figures": throughput,
            # Judged on server CPU per request (what a server with the cores to itself keeps); see the docstring.
            "met": all(t["server_cpu"] >= GOAL_THROUGHPUT for t in throughput.values()),
        },
        "memory": {
            "goal": f"<= {GOAL_ADDED_MB:g} MB added per worker",
            "figures": added,
            "met": all(v <= GOAL_ADDED_MB for v in added.values()),
        },
        "idle": {
            "goal": f"idle engine < {GOAL_IDLE_PERCENT} % of a core",
            "figures": idle,
            "met": all(v < GOAL_IDLE_PERCENT for v in idle.values()),
        },
    }


# -- the report ----------------------------------------------------------------------------------------------------


def report(doc: dict[str, Any]) -> None:
    s = doc["settings"]
    print(
        f"gunicorn: {s['workers']} workers ({s['worker_class']}), {s['repeat']} round(s), {s['duration']:g} s per "
        f"phase, saturation with {s['concurrency']} connections; recoverkit measured: {doc['measured_source']}"
    )
    print(
        f"load average (1 min) at start {doc['load_average']['start']:.2f}, at end "
        f"{doc['load_average']['end']:.2f}, during the phases {doc['load_average']['phases']}"
    )
    for app, fig in doc["summary"].items():
        print(f"\n{app}: {fig['events_per_request']:.2f} tracked events per request")
        print(
            f"  {'saturation':<30}{'req/s best':>11}{'median':>9}{'p50 ms':>9}{'p99 ms':>9}{'server CPU/req':>16}"
            f"{'client CPU/req':>16}{'waited for a core':>19}"
        )
        for arm in ARMS:
            sat = fig[arm]["saturation"]
            print(
                f"  {arm + ' recoverkit':<30}{sat['requests_per_second_best']:>11.0f}"
                f"{sat['requests_per_second_median']:>9.0f}{sat['p50_ms']:>9.2f}{sat['p99_ms']:>9.2f}"
                f"{sat['server_cpu_us_per_request']:>13.0f} us{sat['client_cpu_us_per_request']:>13.0f} us"
                f"{sat['waiting_for_a_core_percent']:>17.0f} %"
            )
        r = fig["ratios"]
        print(
            f"  with / without (median of the rounds): throughput {r['throughput']:.2f} (best of all rounds: "
            f"{r['throughput_best']:.2f}), server CPU per request {r['server_cpu']:.2f}; recoverkit adds "
            f"{fig['server_cpu_added_us_per_request']:.0f} us of server CPU per request, "
            f"{fig['server_cpu_added_us_per_event']:.0f} us per tracked event (all threads)"
        )
        split = fig["with"]["cpu_us_per_request_split"]
        bare_workers = fig["without"]["cpu_us_per_request_split"]["saturation"]["other_workers"]
        print(
            "  with recoverkit, server CPU per request by process: "
            + "; ".join(
                f"{phase.replace('_', ' ')}: pipeline owner {split[phase]['pipeline_owner']:.0f} us, the other "
                f"worker(s) {split[phase]['other_workers']:.0f} us, master {split[phase]['master']:.0f} us"
                for phase in ("saturation", "lowest_rate")
            )
            + f" (without recoverkit, the workers together: {bare_workers:.0f} us at saturation)"
        )
        print(
            f"  {'fixed rate (open loop)':<30}{'req/s':>11}{'done/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'server CPU/req':>16}"
        )
        for arm in ARMS:
            for row in fig[arm]["rates"]:
                late = "" if row["complete"] else "  fell behind: some requests never sent"
                print(
                    f"  {arm + ' recoverkit':<30}{row['rate']:>11.0f}{row['achieved_per_second']:>9.0f}"
                    f"{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['server_cpu_us_per_request']:>13.0f} us{late}"
                )
        print(
            f"  per worker: RSS {fig['without']['rss_mb_mean_per_worker']:.1f} MB without, "
            f"{fig['with']['rss_mb_mean_per_worker']:.1f} MB with (+{fig['rss_added_mb_per_worker']:.1f} MB); "
            f"idle CPU of the busier worker {fig['without']['idle_percent_busier_worker']:.2f} % of a core "
            f"without, {fig['with']['idle_percent_busier_worker']:.2f} % with (measured once the engines had "
            f"caught up with the load, {fig['with']['catch_up_seconds']:.1f} s after its end + {s['settle']:g} s)"
        )
    print("\ngoals:")
    g = doc["goals"]
    t = ", ".join(
        f"{app} {v['server_cpu']:.2f} by server CPU per request (measured throughput {v['throughput']:.2f})"
        for app, v in g["throughput"]["figures"].items()
    )
    print(f"  {g['throughput']['goal']}: {t}: {'met' if g['throughput']['met'] else 'NOT MET'}")
    m = ", ".join(f"{app} {v:+.1f} MB" for app, v in g["memory"]["figures"].items())
    print(f"  {g['memory']['goal']}: {m}: {'met' if g['memory']['met'] else 'NOT MET'}")
    i = ", ".join(f"{app} {v:.2f} %" for app, v in g["idle"]["figures"].items())
    print(f"  {g['idle']['goal']}: {i}: {'met' if g['idle']['met'] else 'NOT MET'}")
    print("  request-thread CPU per tracked event <= 5 us: measured by bench_request_cpu.py, not here")
    failed = doc["failed_checks"]
    print("\nchecks: " + ("all passed" if not failed else "FAILED: " + "; ".join(failed)))


def main() -> None:
    p = parser(__doc__.split("\n\n")[0], timeout=1800.0)
    p.add_argument("--apps", default="flask,django", help="which shops, comma-separated (default flask,django)")
    p.add_argument("--repeat", type=int, help="rounds (default 3; 1 with --quick)")
    p.add_argument("--duration", type=float, help="seconds per measured phase (default 5; 1 with --quick)")
    p.add_argument("--warmup", type=float, help="seconds of warm-up per server (default 2; 0.5 with --quick)")
    p.add_argument("--rates", help="fixed rates in requests/s, comma-separated (default: fractions of saturation)")
    p.add_argument(
        "--fractions",
        help="fixed rates as fractions of the first saturation without recoverkit "
        "(default 0.25,0.5,0.75; 0.5 with --quick)",
    )
    p.add_argument("--concurrency", type=int, default=8, help="connections at saturation (default 8)")
    p.add_argument("--settle", type=float, help="seconds of quiet before memory and idle (default 2; 0.5 --quick)")
    p.add_argument("--idle", type=float, help="seconds over which idle CPU is measured (default 20; 1 with --quick)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    p.add_argument("--worker-class", default="sync", help="gunicorn worker class (default sync)")
    p.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker (gthread; default 1)")
    p.add_argument("--preload", action="store_true", help="gunicorn --preload")
    p.add_argument("--commit", help="run the servers on src/recoverkit as of this commit (git archive)")
    args = p.parse_args()
    watchdog(args.timeout, "bench_app")
    args.apps = [a for a in args.apps.split(",") if a]
    unknown = sorted(set(args.apps) - set(APPS))
    if unknown:
        p.error(f"unknown app(s) {unknown}; expected some of {sorted(APPS)}")
    quick = args.quick
    args.repeat = max(args.repeat if args.repeat is not None else (1 if quick else 3), 1)
    args.duration = args.duration if args.duration is not None else (1.0 if quick else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if quick else 2.0)
    args.settle = args.settle if args.settle is not None else (0.5 if quick else 2.0)
    args.idle = args.idle if args.idle is not None else (1.0 if quick else 20.0)
    args.rates = [float(x) for x in args.rates.split(",")] if args.rates else None
    args.fractions = [float(x) for x in (args.fractions or ("0.5" if quick else "0.25,0.5,0.75")).split(",")]
    for module in ("gunicorn", *args.apps):
        if importlib.util.find_spec(module) is None:
            p.error(f"{module} is not installed: pip install -e '.[test]' (gunicorn, Flask and Django are there)")

    load_start = loadavg()
    with tempfile.TemporaryDirectory(prefix="bench_app-") as tmp:
        folder = Path(tmp)
        pythonpath = export_source(args.commit, folder) if args.commit else None
        measured_source = source_description(args.commit)
        results = run_all(args, folder, pythonpath)
    rounds = results["rounds"]
    summary = summarise(rounds, args.apps)
    failed = [
        f"round {r['round'] + 1} {r['app']} {r['arm']}: {name}"
        for r in rounds
        for name, ok in r["checks"].items()
        if not ok
    ]
    phase_loads = [ph["load_average"] for r in rounds for ph in (r["saturation"], *r["rates"])]
    info = machine(
        gunicorn=version("gunicorn"),
        flask=version("flask"),
        django=version("django"),
        workers=f"{args.workers} {args.worker_class}",
    )
    doc = {
        "benchmark": "app",
        "machine": info,
        "measured_source": measured_source,
        "settings": {
            "apps": args.apps,
            "repeat": args.repeat,
            "duration": args.duration,
            "warmup": args.warmup,
            "rates": results["rates"],
            "fractions": args.fractions,
            "concurrency": args.concurrency,
            "open_loop_threads": OPEN_LOOP_THREADS,
            "settle": args.settle,
            "idle": args.idle,
            "workers": args.workers,
            "worker_class": args.worker_class,
            "threads": args.threads,
            "preload": args.preload,
            "quick": quick,
        },
        "load_average": {
            "start": load_start,
            "end": loadavg(),
            "phases": f"{min(phase_loads):.1f}-{max(phase_loads):.1f}",
        },
        "summary": summary,
        "goals": goals(summary),
        "rounds": rounds,
        "failed_checks": failed,
    }
    if args.json:
        emit_json(doc)
    else:
        print_header(
            "recoverkit benchmark: a Flask and a Django shop under gunicorn, with and without recoverkit", info
        )
        report(doc)
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
