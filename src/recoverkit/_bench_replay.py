"""One input size of ``recoverkit bench`` (:mod:`recoverkit.bench`): the decoding baselines, timed in this process,
and ``recoverkit replay`` run in a child process of its own, so that its peak resident memory is the replay's alone.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from .events import Event
from .replay import read_lines

__all__ = ["SizeFigure", "StageFigure", "measure_size", "write_prefix"]

#: Lines decoded per timed chunk of the baselines: enough that the clock reads cost nothing, few enough that a
#: chunk of 10 M-event input is a few megabytes.
_CHUNK = 65_536


class StageFigure(msgspec.Struct, kw_only=True):
    """One stage of the best in-memory run: ``us_per_event`` is its busy time per event of the input."""

    name: str
    received: int
    batches: int
    busy_seconds: float
    us_per_event: float
    batch_p50_ms: float
    batch_p99_ms: float
    queue_peak: int
    queue_capacity: int


class SizeFigure(msgspec.Struct, kw_only=True):
    """The figures at one input size. ``ratio`` = replay / untyped decoding, ``typed_ratio`` = replay / typed
    decoding, both in events per second (best of ``runs``); ``peak_rss_mib`` is the highest of the in-memory
    replays' peaks. The ``sqlite_*`` figures are ``None`` unless SQLite was measured too."""

    events: int
    megabytes: float
    baseline_events_per_second: float
    typed_decode_events_per_second: float
    pipeline_events_per_second: float
    ratio: float
    typed_ratio: float
    peak_rss_mib: float
    runs: list[float]
    seconds: float
    stages: list[StageFigure]
    outside_stages_us_per_event: float
    pipeline_latency_p50_ms: float
    pipeline_latency_p99_ms: float
    abandonments: int
    messages: int
    sqlite_events_per_second: float | None = None
    sqlite_vs_memory: float | None = None
    sqlite_peak_rss_mib: float | None = None


def _decode_rates(path: Path) -> tuple[float, float, int]:
    """Untyped and typed msgspec decoding of every line of ``path``: events per second of each, and the lines.

    Chunks of lines are read, then decoded untyped, then typed, each timed on its own: reading is not timed, and
    the two decoders alternate through the file under the same conditions. A line a decoder refuses is timed
    like the others (a replay counts it as invalid).
    """
    untyped = msgspec.json.Decoder().decode
    typed = msgspec.json.Decoder(Event).decode
    spent_untyped = spent_typed = 0.0
    count = 0
    lines = read_lines(path)
    while chunk := list(itertools.islice(lines, _CHUNK)):
        count += len(chunk)
        started = time.perf_counter()
        for line in chunk:
            try:  # noqa: SIM105 - contextlib.suppress would cost more per line than the decoding being timed
                untyped(line)
            except msgspec.DecodeError:
                pass
        middle = time.perf_counter()
        for line in chunk:
            try:  # noqa: SIM105 - as above; a ValidationError is a DecodeError too
                typed(line)
            except msgspec.DecodeError:
                pass
        spent_untyped += middle - started
        spent_typed += time.perf_counter() - middle
    return (count / spent_untyped if spent_untyped else 0.0), (count / spent_typed if spent_typed else 0.0), count


class _Replay(msgspec.Struct, kw_only=True):
    """What one ``recoverkit replay`` child process reported, and its peak resident memory."""

    summary: dict[str, Any]
    peak_rss_mib: float

    @property
    def events_per_second(self) -> float:
        return float(self.summary["events_per_second"])


def _replay_child(path: Path, *, store: Path | None, config: str | None, workdir: Path) -> _Replay:
    """Run ``recoverkit replay path --json`` (``--store``, ``--config`` when given) in a child process.

    Its peak resident set size comes from ``wait4()``'s resource usage of that one child, so it is the replay's
    whole process alone. The child imports the same recoverkit as this process.
    """
    import recoverkit

    command = [sys.executable, "-m", "recoverkit", "replay", os.fspath(path), "--json", "--no-progress"]
    if config is not None:
        command += ["--config", os.fspath(config)]
    if store is not None:
        command += ["--store", os.fspath(store)]
    package_root = str(Path(recoverkit.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    out_path, err_path = workdir / "replay.out", workdir / "replay.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        try:
            _, status, usage = os.wait4(child.pid, 0)
        except BaseException:
            child.kill()
            child.wait()
            raise
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen, so it never waits
    if child.returncode != 0:
        tail = err_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"`{' '.join(command)}` exited with status {child.returncode}:\n{tail}")
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    peak = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    return _Replay(summary=msgspec.json.decode(out_path.read_bytes()), peak_rss_mib=peak)


def _stages(summary: dict[str, Any], events: int) -> tuple[list[StageFigure], float]:
    """The per-stage figures of a replay's summary, and its microseconds per event spent outside the stages."""
    stages = [
        StageFigure(
            name=s["name"],
            received=s["received"],
            batches=s["batches"],
            busy_seconds=s["busy_seconds"],
            us_per_event=s["busy_seconds"] * 1e6 / events if events else 0.0,
            batch_p50_ms=s["latency_p50"] * 1e3,
            batch_p99_ms=s["latency_p99"] * 1e3,
            queue_peak=s["queue_peak"],
            queue_capacity=s["queue_capacity"],
        )
        for s in summary["statistics"]["stages"].values()
    ]
    rate = summary["events_per_second"]
    total = 1e6 / rate if rate else 0.0
    return stages, max(total - sum(s.us_per_event for s in stages), 0.0)


def measure_size(
    path: Path,
    *,
    repeat: int,
    stores: Sequence[str],
    config: str | None,
    workdir: Path,
    on_step: Callable[[str], None],
) -> SizeFigure:
    """Decode and replay ``path`` ``repeat`` times, interleaved; the figures of the best run of each."""
    untyped = typed = 0.0
    events = 0
    memory: list[_Replay] = []
    sqlite: list[_Replay] = []
    for run in range(1, repeat + 1):
        on_step(f"run {run} of {repeat}: decoding")
        u, t, events = _decode_rates(path)
        untyped, typed = max(untyped, u), max(typed, t)
        on_step(f"run {run} of {repeat}: replay in memory")
        memory.append(_replay_child(path, store=None, config=config, workdir=workdir))
        if "sqlite" in stores:
            on_step(f"run {run} of {repeat}: replay into SQLite")
            database = workdir / f"replay-{run}.db"
            sqlite.append(_replay_child(path, store=database, config=config, workdir=workdir))
            for leftover in workdir.glob(f"{database.name}*"):  # the database and its -wal, -shm files
                leftover.unlink()
    best = max(memory, key=lambda r: r.events_per_second)
    summary = best.summary
    stages, outside = _stages(summary, summary["events"])
    dispatch = summary["statistics"]["stages"]["dispatch"]["extra"]
    rate = best.events_per_second
    sqlite_rate = max(r.events_per_second for r in sqlite) if sqlite else None
    return SizeFigure(
        events=events,
        megabytes=_text_bytes(path) / 1e6,
        baseline_events_per_second=untyped,
        typed_decode_events_per_second=typed,
        pipeline_events_per_second=rate,
        ratio=rate / untyped if untyped else 0.0,
        typed_ratio=rate / typed if typed else 0.0,
        peak_rss_mib=max(r.peak_rss_mib for r in memory),
        runs=[r.events_per_second for r in memory],
        seconds=summary["seconds"],
        stages=stages,
        outside_stages_us_per_event=outside,
        pipeline_latency_p50_ms=dispatch["pipeline_latency_p50"] * 1e3,
        pipeline_latency_p99_ms=dispatch["pipeline_latency_p99"] * 1e3,
        abandonments=sum(summary["abandonments"].values()),
        messages=sum(summary["messages"].values()),
        sqlite_events_per_second=sqlite_rate,
        sqlite_vs_memory=sqlite_rate / rate if sqlite_rate is not None and rate else None,
        sqlite_peak_rss_mib=max(r.peak_rss_mib for r in sqlite) if sqlite else None,
    )


def _text_bytes(path: Path) -> int:
    """Bytes of text in ``path``: its size, or its decompressed size when it is gzip-compressed."""
    if path.suffix != ".gz":
        return path.stat().st_size
    return sum(len(line) + 1 for line in read_lines(path))


def write_prefix(source: Path, target: Path, count: int) -> int:
    """The first ``count`` lines of ``source`` (``.gz`` or not) to ``target``, uncompressed; lines written."""
    written = 0
    lines = read_lines(source)
    with open(target, "wb") as out:
        while chunk := list(itertools.islice(lines, min(_CHUNK, count - written))):
            out.write(b"\n".join(chunk) + b"\n")
            written += len(chunk)
    return written
