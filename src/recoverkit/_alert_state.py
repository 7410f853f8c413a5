"""The purchase-path watcher's whole state as bytes (:meth:`AlertWatcher.state`), and a watcher built from them
(:meth:`AlertWatcher.from_state`), so a new holder of the ``alerts`` lease goes on judging where the last one
stopped instead of relearning the shop for two hours (docs/alerts.md, "The saved state").

What is kept: the baselines (recent sums, squares, hour-of-week sums), the labels each family has met (the
32-value caps), the minutes counted but not judged yet, the minutes in the windows, the first minute not yet
judged and the clock, the open incidents, and the counters :meth:`AlertWatcher.statistics` reports. What is not:
the alerts already raised (they were delivered; :attr:`AlertWatcher.alerts` starts empty) and the sinks.

No personal data: every key is a count by step, page type, form field, error code or channel; never a session,
a customer or an address.

The encoding is msgpack of the Structs below, with a ``format`` number: a reader refuses a format it does not
know, naming it. A state written under another :class:`AlertsConfig` is restored under the new one: the
baselines are sums that do not depend on the settings (a new half-life decays them from then on), and the
window sums are rebuilt from the minutes kept; minutes that a shorter longest window no longer holds are learnt
(as they would have been), and a longer one is judged once it is whole again.
"""

from __future__ import annotations

import collections
from collections import Counter
from collections.abc import Callable
from typing import Any, Final, Protocol

import msgspec

from ._alert_checks import Finding, Labels
from ._alert_settings import AlertsConfig
from ._alert_stats import Baselines

__all__ = ["STATE_FORMAT", "StateFormatError", "dump", "load_into"]

#: The format :func:`dump` writes; :func:`load_into` reads this one only (a later version adds readers).
STATE_FORMAT: Final = 1


class StateFormatError(ValueError):
    """Raised by :meth:`AlertWatcher.from_state` for bytes that are not a watcher state it can read: an unknown
    ``format``, or not a state at all. The message names what was found and what was expected."""


class _IncidentState(msgspec.Struct, array_like=True, frozen=True):
    area: str
    since: float
    last_failed: float
    last_sent: float
    finding: Finding  # the watcher's own frozen dataclass: msgspec encodes and decodes it as it is
    checks: list[str]


class _BaselineState(msgspec.Struct, frozen=True, kw_only=True):
    recent: dict[str, tuple[float, int]]
    squares: dict[str, tuple[float, int]]
    weekly: list[tuple[str, int, float, float, int]]  # (key, hour of week, past weeks, latest week, that week)


class _Head(msgspec.Struct, kw_only=True):
    format: int


class WatcherState(msgspec.Struct, frozen=True, kw_only=True):
    """One watcher's state (format 1). ``minutes`` are the judged minutes still in the longest window, oldest
    first, the last of them ``next_minute - 1``; ``pending`` the minutes counted and not judged yet."""

    format: int = STATE_FORMAT
    windows: list[float]
    baselines: _BaselineState
    labels: dict[str, dict[str, str]]
    next_minute: int | None
    clock: float
    minutes: list[dict[str, int]]
    pending: dict[int, dict[str, int]]
    incidents: list[_IncidentState]
    counts: dict[str, int]


class _Incident(Protocol):
    area: str
    since: float
    last_failed: float
    last_sent: float
    finding: Finding
    checks: set[str]


class AlertWatcher(Protocol):
    """What this module reads and writes of :class:`recoverkit.alerts.AlertWatcher` (a Protocol, so that the
    watcher imports this module and not the other way round)."""

    config: AlertsConfig
    _baselines: Baselines
    _labels: Labels
    _lengths: list[int]
    _sums: list[Counter[str]]
    _minutes: collections.deque[Counter[str]]
    _pending: dict[int, Counter[str]]
    _next: int | None
    _clock: float
    _incidents: Any  # dict[str, the watcher's incident record]
    _counts: Counter[str]

    def _learning(self, minute: int) -> bool: ...


_ENCODER: Final = msgspec.msgpack.Encoder()
_HEAD: Final = msgspec.msgpack.Decoder(_Head)
_DECODER: Final = msgspec.msgpack.Decoder(WatcherState)


def dump(watcher: AlertWatcher) -> bytes:
    """``watcher``'s state; the caller holds its lock."""
    base: Baselines = watcher._baselines
    incidents = [
        _IncidentState(i.area, i.since, i.last_failed, i.last_sent, i.finding,
                       sorted(i.checks))
        for i in _incidents(watcher)
    ]
    state = WatcherState(
        windows=list(watcher.config.windows),
        baselines=_BaselineState(
            recent=dict(base._recent), squares=dict(base._squares),
            weekly=[(key, how, past, current, week) for (key, how), (past, current, week) in base._weekly.items()],
        ),
        labels={family: dict(seen) for family, seen in watcher._labels._seen.items()},
        next_minute=watcher._next,
        clock=watcher._clock,
        minutes=[dict(counts) for counts in watcher._minutes],
        pending={minute: dict(counts) for minute, counts in watcher._pending.items()},
        incidents=incidents,
        counts=dict(watcher._counts),
    )
    return _ENCODER.encode(state)


def _load_baselines(base: Baselines, state: _BaselineState) -> None:
    base._recent = {key: (float(v), int(at)) for key, (v, at) in state.recent.items()}
    base._squares = {key: (float(v), int(at)) for key, (v, at) in state.squares.items()}
    base._weekly = {(key, how): (past, current, week) for key, how, past, current, week in state.weekly}


def _incidents(watcher: AlertWatcher) -> list[_Incident]:
    return list(watcher._incidents.values())


def decode(blob: bytes) -> WatcherState:
    """The state in ``blob``; :class:`StateFormatError` when it is not one of :data:`STATE_FORMAT`."""
    try:
        head = _HEAD.decode(blob)
    except msgspec.DecodeError as exc:
        raise StateFormatError(f"watcher state: expected a msgpack map with a `format` field, got: {exc}") from exc
    if head.format != STATE_FORMAT:
        raise StateFormatError(
            f"watcher state: unknown `format` {head.format!r}, expected {STATE_FORMAT} (written by another "
            "version of recoverkit; the watcher relearns the shop instead)"
        )
    try:
        return _DECODER.decode(blob)
    except msgspec.DecodeError as exc:
        raise StateFormatError(f"watcher state (format {STATE_FORMAT}) does not decode: {exc}") from exc


def load_into(watcher: AlertWatcher, blob: bytes, incident: Callable[..., Any], *, windows: bool = True) -> None:
    """Give a new ``watcher`` (nothing observed yet) the state in ``blob``, under the watcher's own config;
    ``incident`` builds the watcher's record of an open incident (passed in: this module never imports the
    watcher's, so the import goes one way). With ``windows=False`` the minutes (counted, in the windows, the
    clock) are left out: the watcher starts its minutes at its first event, with the baselines, labels, open
    incidents and statistics of the state."""
    state = decode(blob)
    base: Baselines = watcher._baselines
    _load_baselines(base, state.baselines)
    labels = Labels()
    labels._seen = {family: dict(seen) for family, seen in state.labels.items()}
    watcher._labels = labels
    watcher._counts = Counter(state.counts)
    watcher._incidents = {
        i.area: incident(i.area, i.since, i.last_failed, i.last_sent, i.finding,
                         set(i.checks))
        for i in state.incidents
    }
    if windows:
        _load_minutes(watcher, state)


def _load_minutes(watcher: AlertWatcher, state: WatcherState) -> None:
    base = watcher._baselines
    watcher._next, watcher._clock = state.next_minute, state.clock
    watcher._pending = {minute: Counter(counts) for minute, counts in state.pending.items()}
    minutes = [Counter(counts) for counts in state.minutes]
    longest = watcher._lengths[-1]
    if state.next_minute is not None:
        # Minutes the new longest window no longer holds leave it now, learnt as _judge would have learnt them.
        first = state.next_minute - len(minutes)
        while len(minutes) > longest:
            leaving = minutes.pop(0)
            if watcher._learning(first + longest):
                base.learn(first, leaving)
            first += 1
    watcher._minutes = collections.deque(minutes)
    for length, total in zip(watcher._lengths, watcher._sums, strict=True):
        total.clear()
        for counts in minutes[-length:]:
            total.update(counts)
