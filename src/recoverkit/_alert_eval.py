"""Measuring the purchase-path watcher on simulated weeks: incidents injected, and the same weeks clean.

:func:`evaluate_week` plays ``days`` of the synthetic shop (:mod:`recoverkit.synthetic`) through two watchers
at once: one sees the clean stream, the other the stream with three incidents injected
(:mod:`recoverkit._synthetic_incidents`): the payment provider down for 20 minutes, one checkout form field
broken by a deploy for two hours, tracking lost on one page type for two hours. They start on the second day
(the first is the watcher's to learn the shop), spread over the rest, at hours drawn from the seed.

An incident is detected when an alert opens in its area (``payment``; ``checkout``; ``tracking:page:<type>``)
at or after its start and no later than its end plus the longest window; the delay is from its start. Any
other alert is a false alarm: on the clean stream every alert is one.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from typing import Final

from ._alert_settings import AlertsConfig
from ._alert_sinks import Alert
from ._alert_watcher import AlertWatcher
from ._synthetic_incidents import Incident, Injector
from .synthetic import DEFAULT_START, generate_events

__all__ = ["Detection", "WeekResult", "evaluate_week", "incidents_for"]

_DAY: Final = 86_400.0
_SESSIONS_PER_DAY: Final = 86_400 / 3.0  # synthetic.MEAN_ARRIVAL_GAP
_PAGE_TYPES: Final = ("home", "category", "search", "landing")


@dataclasses.dataclass(frozen=True, slots=True)
class Detection:
    """One injected incident and when (event time, seconds after its start) an alert in its area opened."""

    incident: Incident
    area: str
    delay: float | None  # None: not detected


@dataclasses.dataclass(frozen=True, slots=True)
class WeekResult:
    """One simulated stretch of ``days``: detections, and the alerts that were not (false alarms)."""

    seed: int
    days: float
    events: int
    detections: tuple[Detection, ...]
    false_alarms_with_incidents: tuple[Alert, ...]
    false_alarms_clean: tuple[Alert, ...]


def incidents_for(seed: int, days: float, start: float = DEFAULT_START) -> list[Incident]:
    """The three incidents of a simulated stretch, after its first day, at hours drawn from ``seed``."""
    rng = random.Random(f"recoverkit-incidents-{seed}")
    span = (days - 1) * _DAY / 3  # each incident gets a third of the time after the first day
    kinds = [("payment_down", 1200.0, ""), ("form_broken", 7200.0, rng.choice(("postal_code", "email", "phone"))),
             ("tracking_lost", 7200.0, rng.choice(_PAGE_TYPES))]
    incidents = []
    for index, (kind, duration, target) in enumerate(kinds):
        offset = _DAY + index * span + rng.uniform(0.1, 0.9) * max(span - duration, 0.0)
        incidents.append(Incident(kind, round(start + offset), duration, target))  # type: ignore[arg-type]
    return incidents


def _area(incident: Incident) -> str:
    return {"payment_down": "payment", "form_broken": "checkout"}.get(incident.kind, f"tracking:page:{incident.target}")


def evaluate_week(seed: int, *, days: float = 7.0, config: AlertsConfig | None = None) -> WeekResult:
    """Play ``days`` of the synthetic shop with ``seed`` through a clean and an incident watcher."""
    incidents = incidents_for(seed, days, DEFAULT_START)
    clean, broken, count = _play(seed, days, incidents, config)
    opened = [alert for alert in broken.alerts if alert.kind == "alert"]
    detections: list[Detection] = []
    explained: set[int] = set()
    longest = max((config or AlertsConfig()).windows)
    for incident in incidents:
        area = _area(incident)
        hits = [a for a in opened if a.area == area and incident.start <= a.at <= incident.end + longest]
        detections.append(Detection(incident, area, hits[0].at - incident.start if hits else None))
        explained.update(id(hit) for hit in hits)
    return WeekResult(
        seed=seed, days=days, events=count, detections=tuple(detections),
        false_alarms_with_incidents=tuple(a for a in opened if id(a) not in explained),
        false_alarms_clean=tuple(a for a in clean.alerts if a.kind == "alert"),
    )


def _play(
    seed: int, days: float, incidents: list[Incident], config: AlertsConfig | None
) -> tuple[AlertWatcher, AlertWatcher, int]:
    """The clean and the incident watcher after ``days`` of the shop; and how many events the clean one saw."""
    end = DEFAULT_START + days * _DAY
    clean = AlertWatcher(config, deliver_in_thread=False)
    broken = AlertWatcher(config, deliver_in_thread=False)
    injector = Injector(incidents)
    count = 0
    stream = generate_events(int(days * _SESSIONS_PER_DAY * 1.2) + 100, seed=seed, start=DEFAULT_START)
    for event in itertools.takewhile(lambda e: isinstance(e.ts, float) and e.ts < end, stream):
        count += 1
        clean.observe(event)
        for each in injector.feed(event):
            broken.observe(each)
    clean.finish(end)
    broken.finish(end)
    return clean, broken, count
