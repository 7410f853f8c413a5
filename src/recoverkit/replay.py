"""Replay: run the very same engine over a recorded event file, in event time.

The file is JSON lines (``.jsonl``, ``.jsonl.gz`` or ``-`` for stdin), one event per line, as a shop would
send them. The engine runs on an :class:`~recoverkit.clock.EventClock`: timers fire when the events' own
timestamps pass them, so a day of events replays in seconds and the same file always gives the same
decisions. Every message the engine would send is handed to the given channels (by default: counted, and
written as a JSON line when ``out`` is given). Carts still open when the file ends are censored, not
abandoned, and messages not yet due then are reported as pending.
"""

from __future__ import annotations

import gzip
import io
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, BinaryIO

import msgspec

from .channels.base import Channel, Message
from .channels.jsonl import JsonLinesChannel
from .clock import EventClock
from .config import Config
from .engine import Engine, EngineStatistics
from .errors import InvalidEvent
from .events import decode_event
from .score import Scorer
from .store.base import Store

__all__ = ["ReplaySummary", "read_lines", "replay"]

_CHUNK_LINES = 1024


class ReplaySummary(msgspec.Struct, kw_only=True):
    """What a replay did. ``messages`` counts sent messages by ``"flow/step/channel"``."""

    events: int
    accepted: int
    invalid: dict[str, int]
    late: int
    carts: int
    abandonments: dict[str, int]
    reasons: dict[str, int]
    converted: int
    messages: dict[str, int]
    skipped: dict[str, int]
    pending: int
    dead_letters: int
    first_event_at: float | None
    last_event_at: float | None
    seconds: float
    events_per_second: float
    statistics: EngineStatistics


class _Recorder:
    """Counts what dispatch hands over, then passes it to the real adapter (if any)."""

    def __init__(self, inner: Channel | None) -> None:
        self.inner = inner
        self.counts: Counter[str] = Counter()

    async def send(self, message: Message) -> None:
        if self.inner is not None:
            await self.inner.send(message)
        self.counts[f"{message.flow}/{message.step}/{message.channel}"] += 1


def read_lines(source: str | Path | IO[bytes] | list[bytes]) -> Iterator[bytes]:
    """Yield the non-empty lines of a ``.jsonl``/``.jsonl.gz`` file, a binary stream, stdin for ``"-"``, or
    a list of lines already in memory (benchmarks)."""
    if isinstance(source, list):
        yield from source
        return
    opened: IO[bytes] | None = None  # the file we opened, which closing a GzipFile does not close
    if isinstance(source, (str, Path)):
        if str(source) == "-":
            stream: IO[bytes] = sys.stdin.buffer
        else:
            path = Path(source)
            raw = opened = path.open("rb")
            magic = raw.peek(2)[:2] if isinstance(raw, io.BufferedReader) else b""
            stream = gzip.GzipFile(fileobj=raw) if magic == b"\x1f\x8b" else raw  # type: ignore[assignment]
    else:
        stream = source
    try:
        for line in stream:
            line = line.strip()
            if line:
                yield line
    finally:
        if opened is not None:
            stream.close()
            opened.close()


async def replay(
    source: str | Path | IO[bytes] | list[bytes],
    *,
    config: Config | None = None,
    out: str | Path | BinaryIO | None = None,
    channels: Mapping[str, Channel] | None = None,
    scorer: Scorer | None = None,
    progress: Callable[[int], None] | None = None,
    pending_out: list[Message] | None = None,
    store: Store | str | Path | None = None,
    resume: bool = False,
) -> ReplaySummary:
    """Replay ``source`` through a fresh engine in event time and summarise what it decided.

    ``store`` keeps the replay's state (a SQLite path or a Store; by default ``config.store.path``, else
    memory). With ``resume=True`` a replay that was interrupted (even by ``kill -9``) carries on where it
    stopped: the first events of ``source``, as many as the store's journal has accepted, are skipped, and
    the rest are submitted. Use one store per input file for this: the journal's count is all it goes by.

    ``out`` receives every message as a JSON line (personal data included: it is what would be sent); a file
    named by ``out`` is overwritten, so that it holds this replay's messages and nothing else.
    ``channels`` replaces the adapters (each is still counted); ``progress`` is called with the number of
    bytes read so far, for progress bars; ``pending_out``, when given, receives the messages still scheduled
    when the input ended.
    """
    config = config if config is not None else Config()
    used = sorted({ch for f in config.flows for s in f.steps for ch in (s.channel, s.fallback) if ch})
    if isinstance(out, (str, Path)) and str(out) != "-":
        Path(out).write_bytes(b"")  # JsonLinesChannel appends (right for live); a replay starts afresh
    sink: Channel | None = JsonLinesChannel(out) if out is not None else None
    # Recorders have no aclose(): the adapters behind them are closed here, once each, after the engine.
    recorders = {name: _Recorder(channels[name] if channels and name in channels else sink) for name in used}
    engine = Engine(config, channels=recorders, clock=EventClock(), scorer=scorer, store=store)
    started = time.perf_counter()
    first = last = None
    read = 0
    async with engine:
        skip = engine.store.last_seq() if resume else 0
        chunk: list[bytes] = []
        for line in read_lines(source):
            if skip:
                read += len(line) + 1
                if _valid(line):
                    skip -= 1
                continue
            chunk.append(line)
            read += len(line) + 1
            if len(chunk) >= _CHUNK_LINES:
                await engine.submit_many(chunk)
                chunk = []
                if progress is not None:
                    progress(read)
        if chunk:
            await engine.submit_many(chunk)
        await engine.flush(end_of_input=True)
        if progress is not None:
            progress(read)
        stats = engine.statistics()
        first = engine.ingest.first_event_at
        last = engine.ingest.last_event_at
        still = engine.pending_messages()
        pending = len(still)
        if pending_out is not None:
            pending_out.extend(still)
    for adapter in {id(r.inner): r.inner for r in recorders.values() if r.inner is not None}.values():
        close = getattr(adapter, "aclose", None)
        if close is not None:
            await close()
    seconds = time.perf_counter() - started
    counts: Counter[str] = Counter()
    for recorder in recorders.values():
        counts.update(recorder.counts)
    events = stats.events_accepted + sum(stats.events_invalid.values())
    return ReplaySummary(
        events=events,
        accepted=stats.events_accepted,
        invalid=stats.events_invalid,
        late=stats.events_late,
        carts=engine.sessionize.counts["carts"],
        abandonments=stats.abandonments,
        reasons=stats.reasons,
        converted=engine.sessionize.counts["converted"],
        messages=dict(sorted(counts.items())),
        skipped=dict(engine.route.skipped),
        pending=pending,
        dead_letters=stats.dead_letters,
        first_event_at=first,
        last_event_at=last,
        seconds=seconds,
        events_per_second=events / seconds if seconds > 0 else 0.0,
        statistics=stats,
    )


def _valid(line: bytes) -> bool:
    """Whether ingest would have accepted ``line`` (so that it took a journal seq)."""
    try:
        decode_event(line)
    except InvalidEvent:
        return False
    return True


def summary_to_jsonable(summary: ReplaySummary) -> Any:
    """The summary as plain JSON-ready data."""
    return msgspec.to_builtins(summary)
