"""The purchase-path watcher's figures for Prometheus, registered beside the engine's (:mod:`recoverkit.metrics`).

Kept apart from the engine's collector: the watcher is optional and may run in another process than the
pipeline. Read at scrape time from :meth:`AlertWatcher.statistics`; nothing is added to the watcher's path.

=================================================  =======  ===============================================
metric                                             type     meaning
=================================================  =======  ===============================================
``recoverkit_purchase_path_incidents_open``        gauge    incidents open now, by ``check`` (the check that
                                                            opened it: ``payment_failures``, ...)
``recoverkit_purchase_path_alerts_total``          counter  alerts raised, by ``kind`` (``alert``,
                                                            ``reminder``, ``resolved``)
``recoverkit_purchase_path_events_total``          counter  events counted by the watcher
``recoverkit_purchase_path_events_late_total``     counter  events left out: their minute was judged already
``recoverkit_purchase_path_judgements_total``      counter  minutes of event time judged (stalls when nothing
                                                            feeds the watcher)
``recoverkit_purchase_path_watcher_running``       gauge    (engines with ``[alerts] enabled``) 1 in the one
                                                            process running the shop's watcher, 0 in the others
``recoverkit_purchase_path_events_missed_total``   counter  (where it runs) journal entries trimmed before the
                                                            watcher read them
=================================================  =======  ===============================================

With ``[alerts] enabled`` the engine runs the watcher itself (:mod:`recoverkit._alert_runner`), and
:func:`recoverkit.metrics.register` adds a :class:`PurchasePathCollector`: every process reports whether it runs
the watcher, and the one that does adds the watcher's figures, so the rules can tell "nobody watches" from
"all is fine".

Label values come from fixed sets (the six checks, the three kinds), never from page types or channel names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._alert_runner import watch_of
from ._alert_watcher import CHECKS, AlertWatcher
from ._optional import require

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["PurchasePathCollector", "WatcherCollector", "register_metrics"]


class WatcherCollector:
    """A prometheus_client collector reading one :class:`AlertWatcher` at each scrape."""

    def __init__(self, watcher: AlertWatcher) -> None:
        self._watcher = watcher

    def describe(self) -> list[Any]:
        return self.collect()

    def collect(self) -> list[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self._watcher.statistics()
        open_ = GaugeMetricFamily("recoverkit_purchase_path_incidents_open",
                                  "Purchase-path incidents open now, by the check that opened them", labels=["check"])
        for check in CHECKS:
            open_.add_metric([check], stats.open_by_check.get(check, 0))
        alerts = CounterMetricFamily("recoverkit_purchase_path_alerts", "Purchase-path alerts raised, by kind",
                                     labels=["kind"])
        for kind, count in (("alert", stats.alerts), ("reminder", stats.reminders), ("resolved", stats.resolved)):
            alerts.add_metric([kind], count)
        return [
            open_,
            alerts,
            CounterMetricFamily("recoverkit_purchase_path_events", "Events counted by the purchase-path watcher",
                                value=stats.events),
            CounterMetricFamily("recoverkit_purchase_path_events_late",
                                "Events the watcher left out: their minute was judged already", value=stats.late),
            CounterMetricFamily("recoverkit_purchase_path_judgements",
                                "Minutes of event time the purchase-path watcher has judged", value=stats.minutes),
        ]


class PurchasePathCollector:
    """A prometheus_client collector of the watcher an engine runs itself (``[alerts] enabled``), read at each
    scrape: nothing while ``[alerts]`` is off for it; else ``recoverkit_purchase_path_watcher_running`` (1 in the
    process holding the ``alerts`` lease, 0 in the others) and, where it is 1, the watcher's figures.

    ``engine`` is what :func:`recoverkit.metrics.register` takes: an engine, a ``BackgroundEngine`` (its
    ``engine``), or a callable returning either (or ``None``)."""

    def __init__(self, engine: object) -> None:
        self._source = engine

    def describe(self) -> list[Any]:
        return []  # the families come and go with the lease: nothing fixed to check for clashes

    def collect(self) -> list[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        source = self._source
        try:
            target = source() if callable(source) else source
        except Exception:  # noqa: BLE001 - the engine's collector reads the same source and logs its failure
            return []
        watch = None if target is None else watch_of(getattr(target, "engine", target))
        if watch is None:
            return []
        watcher = watch.watcher
        running = GaugeMetricFamily(
            "recoverkit_purchase_path_watcher_running",
            "Whether this process runs the shop's purchase-path watcher (the holder of the alerts lease)",
            value=0 if watcher is None else 1,
        )
        if watcher is None:
            return [running]
        feed = watch.feed
        missed = 0 if feed is None else sum(getattr(source, "missed", 0) for source in feed.sources)
        return [
            running,
            *WatcherCollector(watcher).collect(),
            CounterMetricFamily("recoverkit_purchase_path_events_missed",
                                "Journal entries trimmed before the watcher read them", value=missed),
        ]


def register_metrics(watcher: AlertWatcher, registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """Register ``watcher``'s figures on ``registry`` (by default a new one; never the global one unless given)
    and return it. Pass the registry :func:`recoverkit.metrics.register` returned to serve both on one endpoint.
    Needs ``prometheus-client`` (``pip install 'recoverkit[metrics]'``)."""
    client = require("prometheus_client", extra="metrics", feature="recoverkit.alerts.register_metrics")
    if registry is None:
        registry = client.CollectorRegistry()
    registry.register(WatcherCollector(watcher))
    return registry
