"""Reading an event file for the funnel: recoverkit's JSON lines, or a public dataset's CSV export.

The same readers as the rest of recoverkit: JSON lines (``.jsonl``, ``.jsonl.gz``, ``-`` for stdin) through
:func:`recoverkit.replay.read_lines` and :func:`recoverkit.events.decode_event`, exactly as ``recoverkit replay``
reads them; the REES46 and Retailrocket CSV exports through the converters of :mod:`recoverkit.datasets`.

Events are held in memory and sorted as the engine's ingest orders them in event time (time, then cart activity
before a purchase of the same instant, then file order), so the funnel sees what the engine would see. That
needs memory in proportion to the file: split multi-gigabyte exports by time first.
"""

from __future__ import annotations

import gzip
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, get_args

import msgspec

from ..errors import InvalidEvent
from ..events import Event, Purchase, decode_event, normalize_timestamp
from ..replay import read_lines

__all__ = ["EventFormat", "EventLog", "EventSource", "load_events", "sniff_format"]

#: What an event file holds: recoverkit JSON lines, or a dataset's CSV (``auto``: tell from its first line).
EventFormat = Literal["auto", "jsonl", "rees46", "retailrocket"]
FORMATS: Final = get_args(EventFormat)


class EventSource(msgspec.Struct, frozen=True, kw_only=True):
    """What was read: the file, its format, how many events were used, and how many were not (invalid, by
    reason; ``no_time``: JSON lines without ``ts``, which cannot be placed in event time; ``outside_period``:
    before ``since`` or from ``until`` on), and the first and last event times used."""

    path: str
    format: str
    events: int
    skipped: dict[str, int]
    first_at: float | None
    last_at: float | None


@dataclass
class EventLog:
    """Events sorted as ingest orders them, each with a float ``ts``, and where they came from."""

    events: list[Event]
    source: EventSource
    skipped: Counter[str] = field(default_factory=Counter)


def sniff_format(path: str | Path) -> EventFormat:
    """Tell a file's format from its first non-empty line: a JSON object (or nothing) is ``jsonl``; a CSV header naming
    ``user_session`` is REES46, one naming ``visitorid`` Retailrocket. Raises :class:`ValueError` otherwise."""
    if str(path) == "-":
        return "jsonl"
    with open(path, "rb") as raw:
        magic = raw.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    with opener(path, "rb") as stream:
        first = b""
        for line in stream:
            if line.strip():
                first = line.strip()
                break
    if not first or first.startswith(b"{"):  # an empty file is an empty stream of events
        return "jsonl"
    header = first.decode("utf-8", "replace").lower()
    if "user_session" in header and "event_type" in header:
        return "rees46"
    if "visitorid" in header and "transactionid" in header:
        return "retailrocket"
    raise ValueError(
        f"{path}: cannot tell the format from its first line {header[:80]!r}; expected recoverkit JSON lines or "
        "the CSV header of REES46 (event_time,event_type,...,user_session) or Retailrocket "
        "(timestamp,visitorid,event,itemid,transactionid); name it with --events-format"
    )


def _from_jsonl(source: str | Path | list[bytes], skipped: Counter[str]) -> Iterable[Event]:
    for line in read_lines(source):
        try:
            event = decode_event(line)
        except InvalidEvent as exc:
            skipped[exc.reason] += 1
            continue
        timed = _timed(event, skipped)
        if timed is not None:
            yield timed


def _timed(event: Event, skipped: Counter[str]) -> Event | None:
    """``event`` with its ``ts`` as epoch seconds, as ingest makes it; ``None`` (counted) when it has no usable
    time: without ``ts`` it would take the clock's time on arrival, which a file does not have."""
    if event.ts is None:
        skipped["no_time"] += 1
        return None
    try:
        ts = normalize_timestamp(event.ts, math.nan)
    except InvalidEvent as exc:
        skipped[exc.reason] += 1
        return None
    return event if event.ts == ts and type(event.ts) is float else msgspec.structs.replace(event, ts=ts)


def load_events(
    source: str | Path | list[bytes] | Iterable[Event],
    *,
    format: EventFormat = "auto",
    since: float | None = None,
    until: float | None = None,
) -> EventLog:
    """Read ``source`` (a path, ``"-"``, JSON lines already in memory, or events already decoded) and keep the
    events at ``since`` <= ``ts`` < ``until``, sorted as the engine's ingest orders them.

    Invalid JSON lines are skipped and counted by reason, as ``recoverkit replay`` counts them; malformed CSV rows
    are skipped and counted as ``invalid_row``.
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r}; expected one of {', '.join(FORMATS)}")
    skipped: Counter[str] = Counter()
    name = str(source) if isinstance(source, str | Path) else "<memory>"
    kind, events = _reader(source, format, skipped)
    kept = _in_order(events, since, until, skipped)
    ordered = [x[3] for x in kept]
    first = kept[0][0] if kept else None
    last = kept[-1][0] if kept else None
    info = EventSource(
        path=name, format=kind, events=len(ordered), skipped=dict(sorted(skipped.items())), first_at=first,
        last_at=last,
    )  # fmt: skip
    return EventLog(events=ordered, source=info, skipped=skipped)


def _reader(
    source: str | Path | list[bytes] | Iterable[Event], format: EventFormat, skipped: Counter[str]
) -> tuple[str, Iterable[Event]]:
    """The kind of ``source`` and its events, each with a float ``ts`` (the others counted in ``skipped``)."""
    if isinstance(source, str | Path):
        kind = sniff_format(source) if format == "auto" else format
        return kind, _from_file(source, kind, skipped)
    if isinstance(source, list) and all(isinstance(x, bytes) for x in source):
        return "jsonl", _from_jsonl(source, skipped)
    return "events", _with_times(source, skipped)  # type: ignore[arg-type]


def _in_order(
    events: Iterable[Event], since: float | None, until: float | None, skipped: Counter[str]
) -> list[tuple[float, int, int, Event]]:
    """The events at ``since`` <= ``ts`` < ``until`` in ingest's order, each keyed by (time, purchase last, file
    order); the others counted as ``outside_period``."""
    kept: list[tuple[float, int, int, Event]] = []
    for n, event in enumerate(events):
        ts: float = event.ts  # type: ignore[assignment]  # every reader makes it a float
        if (since is not None and ts < since) or (until is not None and ts >= until):
            skipped["outside_period"] += 1
            continue
        kept.append((ts, 1 if type(event) is Purchase else 0, n, event))  # ingest's order; see ingest._rank
    kept.sort(key=lambda x: x[:3])
    return kept


def _from_file(path: str | Path, kind: str, skipped: Counter[str]) -> Iterable[Event]:
    if kind == "jsonl":
        return _from_jsonl(path, skipped)
    from ..datasets import ConversionStats, rees46_events, retailrocket_events

    stats = ConversionStats()
    convert = rees46_events if kind == "rees46" else retailrocket_events
    converted = [e for e in (_timed(x, skipped) for x in convert(path, on_error="skip", stats=stats)) if e is not None]
    if stats.skipped:
        skipped["invalid_row"] += stats.skipped
    if stats.incomplete:
        skipped["incomplete_row"] += stats.incomplete
    return converted


def _with_times(events: Iterable[Event], skipped: Counter[str]) -> Iterable[Event]:
    for event in events:
        timed = _timed(event, skipped)
        if timed is not None:
            yield timed
