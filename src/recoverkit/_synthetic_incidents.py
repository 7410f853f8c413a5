"""Incidents injected into a synthetic event stream, to measure the purchase-path watcher (docs/alerts.md).

Each :class:`Incident` rewrites the events of :func:`recoverkit.synthetic.generate_events` from ``start`` for
``duration`` seconds the way the real fault would show in a shop's tracking:

- ``payment_down``: the payment provider is down. Every order that would have been placed fails instead: its
  ``purchase`` becomes a ``payment_failed`` with ``error_code`` ``provider_unavailable``, at the same time.
- ``form_broken``: a deploy broke one checkout form field (``target``, ``postal_code`` by default). Every
  checkout begun is rejected on that field (a ``form_error`` at the ``begin_checkout``'s time) and gets no
  further: the session's later shipping, payment and purchase events are dropped.
- ``tracking_lost``: tracking broke on one page type (``target``, a ``page_view``'s ``page_type``, or
  ``product`` for ``view_item``): those events are dropped.

The rewrite is a pure function of the stream, so the same events and incidents give the same output, and it
keeps the stream in time order (what it adds is stamped with the time of what it replaces or follows).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from collections.abc import Iterable, Iterator, Sequence
from typing import Final, Literal

from .events import (
    AddPaymentInfo,
    AddShippingInfo,
    BeginCheckout,
    Event,
    FormError,
    PageView,
    PaymentFailed,
    Purchase,
    ViewItem,
)

__all__ = ["Incident", "IncidentKind", "Injector", "inject"]

IncidentKind = Literal["payment_down", "form_broken", "tracking_lost"]
_KINDS: Final = ("payment_down", "form_broken", "tracking_lost")
_DEFAULT_TARGET: Final = {"payment_down": "", "form_broken": "postal_code", "tracking_lost": "category"}
_AFTER_CHECKOUT: Final = (AddShippingInfo, AddPaymentInfo, PaymentFailed, Purchase)


@dataclasses.dataclass(frozen=True, slots=True)
class Incident:
    """One fault from ``start`` (epoch seconds, event time) for ``duration`` seconds; see the module docstring."""

    kind: IncidentKind
    start: float
    duration: float
    target: str = ""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind={self.kind!r}; expected one of {', '.join(map(repr, _KINDS))}")
        if not self.duration > 0:
            raise ValueError(f"duration={self.duration!r}; expected a positive number of seconds")
        if not self.target:
            object.__setattr__(self, "target", _DEFAULT_TARGET[self.kind])

    @property
    def end(self) -> float:
        return self.start + self.duration

    def covers(self, ts: float) -> bool:
        return self.start <= ts < self.end


class Injector:
    """Rewrites a stream one event at a time (:meth:`feed`), for callers that also need the clean stream."""

    def __init__(self, incidents: Sequence[Incident]) -> None:
        self.incidents = tuple(incidents)
        self._blocked: dict[str, float] = {}  # sessions stopped by a broken form -> when

    def feed(self, event: Event) -> list[Event]:
        """What the shop's tracking sends instead of ``event`` (none, it, or it and more)."""
        ts = event.ts.timestamp() if isinstance(event.ts, datetime) else float(event.ts or 0.0)
        out: list[Event] = [event]
        for incident in self.incidents:
            out = [rewritten for each in out for rewritten in self._apply(incident, each, ts)]
        return out

    def _apply(self, incident: Incident, event: Event, ts: float) -> list[Event]:
        if incident.kind == "form_broken":
            if isinstance(event, _AFTER_CHECKOUT) and event.session_id in self._blocked:
                return []
            if isinstance(event, BeginCheckout) and incident.covers(ts):
                self._blocked[event.session_id] = ts
                if len(self._blocked) > 100_000:  # sessions last under an hour: forget the oldest half
                    for session in list(self._blocked)[:50_000]:
                        del self._blocked[session]
                error = FormError(session_id=event.session_id, customer_id=event.customer_id, ts=ts,
                                  currency=event.currency, cart_id=event.cart_id, device=event.device,
                                  source=event.source, form_field=incident.target, error_code="invalid")
                return [event, error]
            return [event]
        if not incident.covers(ts):
            return [event]
        if incident.kind == "payment_down":
            if isinstance(event, Purchase):
                return [PaymentFailed(session_id=event.session_id, customer_id=event.customer_id, ts=ts,
                                      currency=event.currency, value=event.value, cart_id=event.cart_id,
                                      device=event.device, source=event.source, error_code="provider_unavailable")]
            return [event]
        if isinstance(event, PageView) and event.page_type == incident.target:
            return []
        if isinstance(event, ViewItem) and incident.target == "product":
            return []
        return [event]


def inject(events: Iterable[Event], incidents: Sequence[Incident]) -> Iterator[Event]:
    """``events`` with ``incidents`` injected (see the module docstring)."""
    injector = Injector(incidents)
    for event in events:
        yield from injector.feed(event)
