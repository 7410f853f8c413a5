"""The purchase-path watcher: counts the event stream per minute of event time, judges every minute's windows
against the baselines (:mod:`recoverkit._alert_checks`), and turns failed checks into incidents, one alert each.

Time is event time throughout. A minute is judged once the watcher's clock is ``lateness`` past its end; the
clock is the latest event time observed, or a later time given to :meth:`AlertWatcher.advance` (a live engine's
clock, so a total loss of events is still noticed). Events for a minute already judged are counted as late and
left out. So a replay of a journal or a file raises exactly the alerts the live run raised, at the same event
times, as long as every event reached the live watcher within ``lateness`` of its ``ts`` (a live clock is never
behind the events it stamps, so such an event is never late live, nor in the replay, whose clock is the latest
event time before it).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from . import _alert_state as _state
from ._alert_checks import Finding, Labels, evaluate, keys_of
from ._alert_settings import AlertsConfig
from ._alert_sinks import Alert, AlertDelivery, AlertSink
from ._alert_stats import Baselines
from ._log import get_logger
from .events import BaseEvent, decode_event

__all__ = ["CHECKS", "AlertWatcher", "WatcherStatistics"]

#: The checks an incident can be opened by (docs/alerts.md; the metrics' ``check`` label takes these values).
CHECKS: Final = ("payment_failures", "step_abandonment", "form_errors", "tracking", "traffic", "sends_failing")

_log = get_logger("recoverkit.alerts")

_MINUTE: Final = 60
#: While an incident is open the baselines learn nothing (what is broken must not become usual), but for at
#: most this long: a change that lasts longer is the new normal, and the watcher relearns it.
_FREEZE_LIMIT: Final = 6 * 3600.0
_KEPT_ALERTS: Final = 1000  # the most recent alerts kept in memory for AlertWatcher.alerts (bounded)


@dataclasses.dataclass(slots=True)
class _Incident:
    area: str
    since: float
    last_failed: float
    last_sent: float
    finding: Finding
    checks: set[str]


@dataclasses.dataclass(frozen=True, slots=True)
class WatcherStatistics:
    """What a watcher has seen: events counted and late, minutes judged, alerts raised, incidents open (their
    areas, and how many per check that opened them)."""

    events: int
    late: int
    minutes: int
    alerts: int
    reminders: int
    resolved: int
    open_incidents: tuple[str, ...]
    open_by_check: dict[str, int]
    delivery: dict[str, int]


class AlertWatcher:
    """Watches the purchase path and raises an alert when it breaks; see :mod:`recoverkit.alerts`.

    Feed it with :meth:`observe` (events, as Structs or anything :func:`~recoverkit.events.decode_event`
    takes), :meth:`observe_send` (a channel's sends) and, live, :meth:`advance` (the engine's clock). Every
    alert is written as a warning record to the ``recoverkit.alerts`` logger and handed to ``sinks`` (from a
    thread of its own unless ``deliver_in_thread=False``). Thread-safe: one lock around each call.
    """

    def __init__(
        self,
        config: AlertsConfig | None = None,
        *,
        sinks: Sequence[AlertSink] = (),
        deliver_in_thread: bool = True,
    ) -> None:
        cfg = self.config = config if config is not None else AlertsConfig()
        self._delivery = AlertDelivery(sinks, thread=deliver_in_thread)
        self._lock = threading.Lock()
        self._labels = Labels()
        self._baselines = Baselines(cfg.baseline_half_life, cfg.min_baseline)
        self._lengths = [round(seconds / _MINUTE) for seconds in cfg.windows]
        self._sums: list[Counter[str]] = [Counter() for _ in self._lengths]
        self._minutes: collections.deque[Counter[str]] = collections.deque()
        self._pending: dict[int, Counter[str]] = {}
        self._next: int | None = None  # the first minute not yet judged; None until the first event
        self._clock = -math.inf
        self._incidents: dict[str, _Incident] = {}
        self._alerts: collections.deque[Alert] = collections.deque(maxlen=_KEPT_ALERTS)
        self._counts = Counter[str]()

    # -- feeding -----------------------------------------------------------------------------------------------

    def observe(self, event: Any) -> list[Alert]:
        """Count one event (its ``ts`` is its time; an event without one is refused: the journal stamps every
        event, so a missing ``ts`` means the caller skipped it) and judge the minutes it completes.

        Returns the alerts raised on the way (usually none). Raises
        :class:`~recoverkit.errors.InvalidEvent` for an event :func:`~recoverkit.events.decode_event` refuses.
        """
        if not isinstance(event, BaseEvent):
            event = decode_event(event)
        ts = event.ts
        if isinstance(ts, datetime):
            ts = ts.timestamp()
        if ts is None:
            raise ValueError(f"event {type(event).__name__} has no `ts`; expected the time the journal stamped")
        with self._lock:
            if self._count(ts, ("all", *keys_of(event, self._labels))):
                self._counts["events"] += 1
            return self._move_to(ts)

    def observe_send(self, channel: str, ok: bool, at: float, *, catch_up: bool = False) -> list[Alert]:
        """Count one send to ``channel`` at ``at`` (the engine's clock), failed unless ``ok``.

        With ``catch_up``, a send whose minute was judged already is counted in the first minute not yet judged
        instead of as late: for outcomes read back from the store, which the sending process records once the
        send ended (after the channel's timeout, for a provider that hangs), possibly later than ``lateness``."""
        with self._lock:
            if catch_up and self._next is not None and at < self._next * _MINUTE:
                at = float(self._next * _MINUTE)
            key = self._labels.key("send", channel)
            self._count(at, (f"{key}:all", f"{key}:fail") if not ok else (f"{key}:all",))
            return self._move_to(at)

    def advance(self, now: float) -> list[Alert]:
        """Move the clock to ``now`` (a live engine's clock) and judge the minutes that completes. Before the
        first event nothing happens: the watcher's first minute is its first event's, live and in a replay."""
        with self._lock:
            return self._move_to(now) if self._next is not None else []

    def finish(self, end: float | None = None) -> list[Alert]:
        """Judge every minute up to ``end`` (default: the last event's minute), as if time had moved on by
        ``lateness``: the end of a replay."""
        with self._lock:
            if self._next is None:
                return []
            last = max(self._clock, end if end is not None else -math.inf)
            return self._move_to(last + self.config.lateness + _MINUTE)

    # -- the saved state -------------------------------------------------------------------------------------------

    def state(self) -> bytes:
        """The watcher's whole state as bytes (baselines, labels, the minutes counted and in the windows, open
        incidents, statistics; not the alerts already raised, nor the sinks): :meth:`from_state` builds a watcher
        that, fed the rest of the stream, raises exactly the alerts this one would. Holds no personal data."""
        with self._lock:
            return _state.dump(self)

    @classmethod
    def from_state(
        cls,
        state: bytes,
        config: AlertsConfig | None = None,
        *,
        sinks: Sequence[AlertSink] = (),
        deliver_in_thread: bool = True,
        windows: bool = True,
    ) -> AlertWatcher:
        """A watcher going on from ``state`` (:meth:`state`) under ``config`` (which may differ from the one the
        state was written under: the baselines are kept, the new settings apply from now on; see
        :mod:`recoverkit._alert_state`). Raises :class:`~recoverkit.alerts.StateFormatError` naming the ``format``
        for a state it cannot read. ``windows=False`` keeps the baselines, labels, open incidents and statistics
        but not the minutes: for a state whose stream cannot be resumed where it was saved (events lost in
        between), the watcher starts its minutes at its first event and judges each window once it is whole."""
        watcher = cls(config, sinks=sinks, deliver_in_thread=deliver_in_thread)
        _state.load_into(watcher, state, _Incident, windows=windows)
        return watcher

    def close(self, timeout: float = 10.0) -> None:
        """Deliver the alerts still queued for the sinks (at most ``timeout`` seconds) and stop delivering."""
        self._delivery.close(timeout)

    # -- reading -----------------------------------------------------------------------------------------------

    @property
    def alerts(self) -> list[Alert]:
        """The alerts raised so far (the last 1,000), oldest first."""
        with self._lock:
            return list(self._alerts)

    def statistics(self) -> WatcherStatistics:
        with self._lock:
            c = self._counts
            return WatcherStatistics(
                events=c["events"], late=c["late"], minutes=c["minutes"], alerts=c["alert"],
                reminders=c["reminder"], resolved=c["resolved"], open_incidents=tuple(sorted(self._incidents)),
                open_by_check=dict(Counter(i.finding.check for i in self._incidents.values())),
                delivery=dict(self._delivery.statistics),
            )

    # -- the minute machine --------------------------------------------------------------------------------------

    def _count(self, ts: float, keys: Sequence[str]) -> bool:
        minute = int(ts // _MINUTE)
        if self._next is None:
            self._next = minute
        elif minute < self._next:
            self._counts["late"] += 1
            return False
        bucket = self._pending.get(minute)
        if bucket is None:
            bucket = self._pending[minute] = Counter()
        for key in keys:
            bucket[key] += 1
        return True

    def _move_to(self, now: float) -> list[Alert]:
        if now > self._clock:
            self._clock = now
        raised: list[Alert] = []
        if self._next is None:  # nothing counted yet: the first minute is the first event's
            return raised
        closable = int((self._clock - self.config.lateness) // _MINUTE)  # minutes ending at or before this
        while self._next < closable:
            raised += self._judge(self._next)
            self._next += 1
        return raised

    def _judge(self, minute: int) -> list[Alert]:
        counts = self._pending.pop(minute, None) or Counter()
        self._counts["minutes"] += 1
        self._minutes.append(counts)
        for length, total in zip(self._lengths, self._sums, strict=True):
            total.update(counts)
            if len(self._minutes) > length:
                total.subtract(self._minutes[-length - 1])
        if len(self._minutes) > self._lengths[-1]:
            leaving = self._minutes.popleft()
            if self._learning(minute):
                self._baselines.learn(minute - self._lengths[-1], leaving)
        end = float((minute + 1) * _MINUTE)
        findings: dict[str, Finding] = {}
        for length, total in zip(self._lengths, self._sums, strict=True):
            if len(self._minutes) < length:
                continue  # a window is judged once it is whole
            for finding in evaluate(total, float(length * _MINUTE), end, self._baselines, self.config, self._labels):
                best = findings.get(finding.area)
                if best is None or finding.p_value < best.p_value:
                    findings[finding.area] = finding
        return self._incidents_at(end, findings, {f.area: f.check for f in findings.values()})

    def _learning(self, minute: int) -> bool:
        now = (minute + 1) * _MINUTE
        return not any(now - incident.since < _FREEZE_LIMIT for incident in self._incidents.values())

    def _incidents_at(self, end: float, findings: dict[str, Finding], checks: dict[str, str]) -> list[Alert]:
        cfg, raised = self.config, []
        for area, finding in sorted(findings.items()):
            incident = self._incidents.get(area)
            if incident is None:
                incident = self._incidents[area] = _Incident(area, end, end, end, finding, {checks[area]})
                raised.append(self._raise("alert", incident, finding, end))
                continue
            incident.last_failed = end
            incident.checks.add(checks[area])
            if end - incident.last_sent >= cfg.realert_after:
                incident.last_sent = end
                raised.append(self._raise("reminder", incident, finding, end))
        for area in sorted(self._incidents):
            incident = self._incidents[area]
            if area not in findings and end - incident.last_failed >= cfg.resolve_after:
                del self._incidents[area]
                raised.append(self._raise("resolved", incident, incident.finding, end))
        return raised

    def _raise(self, kind: str, incident: _Incident, finding: Finding, end: float) -> Alert:
        if kind == "resolved":
            minutes = (incident.last_failed - incident.since) / _MINUTE
            text = f"{incident.area}: back to usual after about {minutes:.0f} minutes ({finding.explanation})"
        else:
            text = finding.explanation
        alert = Alert(
            kind=kind,  # type: ignore[arg-type]  # one of the three literals, chosen above
            incident=f"{incident.area}@{int(incident.since)}", area=incident.area, check=finding.check,
            subject=finding.subject, at=end, since=incident.since, text=text, window=finding.window,
            observed=finding.observed, usual=finding.usual, count=finding.count, total=finding.total,
            p_value=finding.p_value, baseline=finding.baseline,
        )
        self._counts[kind] += 1
        self._alerts.append(alert)
        if kind == "resolved":
            _log.info("purchase_path_resolved", incident=alert.incident, area=alert.area, text=text)
        else:
            _log.warning(f"purchase_path_{kind}", incident=alert.incident, area=alert.area, check=alert.check,
                         text=text, at=alert.at)
        self._delivery.put(alert)
        return alert
