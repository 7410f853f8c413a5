"""Live metrics for Prometheus: a collector that reads an engine's figures when it is scraped.

::

    import recoverkit.metrics

    registry = recoverkit.metrics.register(engine)      # a registry of its own; the global one is left alone
    wsgi_app = recoverkit.metrics.make_wsgi_app(engine)  # or make_asgi_app(engine): mount it at /metrics
    recoverkit.metrics.start_http_server(engine, 9464)  # or a port of its own (a dedicated worker)

The hot path pays nothing: every figure is read at scrape time from :meth:`recoverkit.Engine.statistics`, the
stages' latency histograms and the store's and code book's counters. ``engine`` is an
:class:`~recoverkit.Engine`, a :class:`~recoverkit.BackgroundEngine`, or a callable returning the engine to read
at each scrape (``None``: nothing to export now), for integrations that build their engine later. Needs
``prometheus-client``, imported only when a collector is built (``pip install 'recoverkit[metrics]'``).
docs/metrics.md lists every metric.

Guarantees and limits:

- **Per-process counters.** Every ``_total`` counter counts what this process's engine did since it was built,
  from zero, as Prometheus expects (``rate()`` takes a restart as a counter reset). Some of the engine's figures
  (events read and late, abandonments, reasons, skipped steps, message outcomes) are restored from the
  checkpoint when a process takes over the pipeline; the collector counts on from the restored values instead
  of jumping to them, so no counter goes backwards or counts another process's work. A process taking over after
  a crash handles the events journaled after the last checkpoint again, so what they cause is counted again
  (messages are not sent again: the ledger refuses them, under their own outcome).
- **Threads.** A BackgroundEngine is read through its portal, on the engine's thread (a scrape waits while that
  loop is blocked). An Engine scraped from another thread (``start_http_server`` beside an asyncio worker) is
  read directly: each figure is read whole, but figures of different stages may be a batch apart.
- **Closed or failing.** A closed engine exports its final figures. When reading fails (the engine is being
  closed, the callable raised), the last figures read are exported again, or nothing if there are none.
- **No personal data in labels, bounded.** Label values come from fixed sets (stages, triggers, reasons,
  outcomes) and the channel and flow names of the engine's configuration (any other name is exported as
  ``other``), never from ids, keys or addresses.
- **Figures that add up.** ``recoverkit_messages_scheduled_total`` counts each message once when it is
  scheduled, ``recoverkit_message_outcomes_total`` once when it ends (dispatch/_counts.py); the older
  ``recoverkit_messages_total`` mixes both with retries and offers and is kept, deprecated, for dashboards.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast

from ._alert_metrics import PurchasePathCollector
from ._log import get_logger
from ._pipeline import LatencyHistogram, StageStatistics
from .background import BackgroundEngine
from .config import Config
from .engine import Engine, EngineStatistics
from .offers import CodeBook, OfferStatistics
from .store.base import StoreStatistics

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

__all__ = ["EngineCollector", "EngineSource", "make_asgi_app", "make_wsgi_app", "register", "start_http_server"]

#: What a collector reads: an engine, or a callable returning the engine of the moment (or ``None``).
EngineSource: TypeAlias = Engine | BackgroundEngine | Callable[[], Engine | BackgroundEngine | None]

_log = get_logger("recoverkit.metrics")

_INSTALL_HINT: Final = (
    "recoverkit.metrics needs prometheus-client, which is not installed; install it with "
    "`pip install 'recoverkit[metrics]'`"
)


def _octaves(low: int, high: int) -> range:
    # LatencyHistogram has four buckets per octave, so every fourth bucket's upper edge is a power of two: the
    # bucket indexes whose edges are 2**low .. 2**high microseconds. Exported edges are fixed, so that every `le`
    # series exists from the first scrape (rate() loses the first increase of a series that appears later).
    return range(4 * low - 1, 4 * high, 4)


_BATCH_EDGES: Final = _octaves(3, 24)  # 8 µs .. 17 s per batch
_PIPELINE_EDGES: Final = _octaves(7, 26)  # 128 µs .. 67 s from ingest to dispatch
_LATENESS_EDGES: Final = _octaves(10, 32)  # 1 ms .. 72 min after the due time
_SESSIONIZE_GAUGES: Final = frozenset({"sessions", "customers", "timers"})  # in its extra figures, not counters

_Histogram: TypeAlias = tuple[dict[int, int], float]  # counts by bucket index, sum in seconds
_Names: TypeAlias = tuple[frozenset[str], frozenset[str]]  # channels, flows
#: The label value of a channel or flow the configuration does not name: labels stay bounded whatever the data.
OTHER: Final = "other"
_Key: TypeAlias = tuple[str, str]  # (family, label value)


def _import_prometheus() -> None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc


@dataclass(frozen=True)
class _Reading:
    """Everything one scrape exports, read in one go."""

    stats: EngineStatistics
    batch_latency: dict[str, _Histogram]
    pipeline_latency: _Histogram
    send_lateness: _Histogram
    store: StoreStatistics | None = None
    codes: OfferStatistics | None = None
    journal_end: int | None = None
    partitions: dict[str, Any] | None = None  # Engine.partitions: a partitioned store's share and counts
    names: _Names = frozenset(), frozenset()  # the channels and flows the configuration names


def _histogram(histogram: LatencyHistogram) -> _Histogram:
    return histogram.buckets(), histogram.total


_EMPTY: Final = _Reading(
    EngineStatistics(
        events_accepted=0, events_invalid={}, events_overflow=0, events_spilled=0, events_late=0, sessions=0,
        abandonments={}, reasons={}, messages={}, dead_letters=0, watermark=-math.inf, owner=False, journal_behind=0,
        checkpoint_position=0, stages={},
    ),
    {}, ({}, 0.0), ({}, 0.0), StoreStatistics(), OfferStatistics(),
)  # fmt: skip


def _carried(stages: Mapping[str, StageStatistics]) -> dict[_Key, int]:
    """The counters a checkpoint carries across restarts, by (family, label value)."""
    out: dict[_Key, int] = {}
    if (ingest := stages.get("ingest")) is not None:
        out["read", "ingest"] = ingest.received
        out["late", ""] = ingest.extra.get("late", 0)
    if (sessionize := stages.get("sessionize")) is not None:
        for key, value in sessionize.extra.items():
            if key.startswith("abandoned_"):
                out["abandoned", key.removeprefix("abandoned_")] = value
            elif key not in _SESSIONIZE_GAUGES:
                out["session", key] = value
    if (score := stages.get("score")) is not None:
        out.update((("reason", k), v) for k, v in score.extra.get("reasons", {}).items())
        out["scorer_failures", ""] = score.extra.get("scorer_failures", 0)
    if (route := stages.get("route")) is not None:
        out.update((("skipped", k), v) for k, v in route.extra.get("skipped", {}).items())
    if (dispatch := stages.get("dispatch")) is not None:
        out.update((("outcome", k), v) for k, v in dispatch.extra.get("outcomes", {}).items())
    return out


class _Carried:
    """Per-process counts of the counters a take-over replaces with the checkpoint's values."""

    def __init__(self) -> None:
        self._restores = 0
        self._base: dict[_Key, int] = {}  # the engine's value each counter counts on from
        self._start: dict[_Key, float] = {}  # the exported value at that point
        self._raw: dict[_Key, int] = {}
        self.values: dict[_Key, float] = {}

    def update(self, stats: EngineStatistics) -> None:
        if stats.restoring:
            return  # the stages' counters mix old and restored values: hold the figures until it is done
        raw = _carried(stats.stages)
        if stats.restores != self._restores:
            self._restores = stats.restores
            self._base, self._start, self._raw = _carried(stats.restored), dict(self.values), {}
        for key in raw.keys() | self.values.keys():
            value = raw.get(key, 0)
            if value < self._base.get(key, 0) or value < self._raw.get(key, 0):
                # Gone down without a take-over we saw (or below what was restored): count on from here.
                self._base[key], self._start[key] = value, self.values.get(key, 0.0)
            self.values[key] = self._start.get(key, 0.0) + value - self._base.get(key, 0)
            self._raw[key] = value


class EngineCollector:
    """A Prometheus collector of one engine's figures, read at each scrape (see the module docstring).

    Register it on a registry of your own (:func:`register` does): registering it on prometheus_client's global
    ``REGISTRY`` would put recoverkit's metrics in every exposition of the host process, so that is left to a
    caller who wants it. Raises :class:`ImportError` naming the extra to install without prometheus-client.
    """

    def __init__(self, engine: EngineSource) -> None:
        _import_prometheus()
        self._source = engine
        self._lock = threading.Lock()  # prometheus_client's HTTP server scrapes from a thread per request
        self._engine: weakref.ref[Engine] | None = None
        self._carried = _Carried()
        self._last: _Reading | None = None
        self._failing = False
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    def describe(self) -> list[Metric]:
        """The metric families, without meaningful samples: lets a registry refuse clashing names."""
        return _families(_EMPTY, {})

    def collect(self) -> list[Metric]:
        """The metric families with the engine's current figures (none when there is no engine to read)."""
        with self._lock:
            reading = self._read()
            carried = dict(self._carried.values)
        return [] if reading is None else _families(reading, carried)

    def _read(self) -> _Reading | None:
        source = self._source
        try:
            target = source if isinstance(source, (Engine, BackgroundEngine)) else source()
            if target is None:
                return None
            core = target.engine if isinstance(target, BackgroundEngine) else target
            stats = target.statistics()  # a BackgroundEngine reads it on its own thread
            stages = (core.ingest, core.sessionize, core.score, core.route, core.dispatch)
            reading = _Reading(
                stats,
                {stage.name: _histogram(stage.latency) for stage in stages},
                _histogram(core.dispatch.pipeline_latency),
                _histogram(core.dispatch.send_lateness),
                _optional(core.store.statistics),
                _optional(core.coupons.statistics) if isinstance(core.coupons, CodeBook) else None,
                _optional(core.store.last_seq) if stats.owner and core.partitions is None else None,
                core.partitions,
                _names(core.config),
            )
        except Exception as exc:
            if not self._failing:
                _log.warning("metrics_read_failed", error=type(exc).__name__)
            self._failing = True
            return self._last
        self._failing = False
        if self._engine is None or self._engine() is not core:
            self._engine, self._carried = weakref.ref(core), _Carried()  # a new engine counts from zero
        self._carried.update(stats)
        self._last = reading
        return reading


def _names(config: Config) -> _Names:
    """The channels (declared, built in, or named by a flow step) and flows of ``config``: the only label values
    of ``channel`` and ``flow``; anything else is exported as :data:`OTHER`."""
    from .config import DEFAULT_CHANNELS

    channels = {*config.channels, *DEFAULT_CHANNELS, *(step.channel for flow in config.flows for step in flow.steps)}
    return frozenset(channels), frozenset(flow.name for flow in config.flows)


def _message_values(r: _Reading) -> dict[str, _Values]:
    """Messages scheduled by (channel, flow) and their final outcomes by (outcome, channel, flow), with names the
    configuration does not know folded into ``other`` (dispatch/_counts.py)."""
    stages = r.stats.stages
    figures = stages["dispatch"].extra.get("messages", {}) if "dispatch" in stages else {}
    channels, flows = r.names
    scheduled: dict[tuple[str, ...], float] = {}
    for channel, by_flow in figures.get("scheduled", {}).items():
        for flow, n in by_flow.items():
            key = (channel if channel in channels else OTHER, flow if flow in flows else OTHER)
            scheduled[key] = scheduled.get(key, 0) + n
    ended: dict[tuple[str, ...], float] = {}
    for outcome, by_channel in figures.get("ended", {}).items():
        for channel, by_flow in by_channel.items():
            for flow, n in by_flow.items():
                labels = (outcome, channel if channel in channels else OTHER, flow if flow in flows else OTHER)
                ended[labels] = ended.get(labels, 0) + n
    return {"recoverkit_messages_scheduled_total": scheduled, "recoverkit_message_outcomes_total": ended}


def _optional(read: Callable[[], Any]) -> Any:
    # The store's figures are extras: a store that fails (or was closed) leaves them out, not the whole scrape.
    try:
        return read()
    except Exception:
        return None


def _after_fork(ref: weakref.ref[EngineCollector]) -> None:
    collector = ref()
    if collector is not None:
        collector._lock = threading.Lock()  # a scrape thread of the parent may have held it at the fork


#: Every metric: name, type, label (None: unlabelled) and help. Counters are per process (module docstring);
#: gauges marked "owner" are exported by the process holding the pipeline lease only (elsewhere they are stale).
_METRICS: Final[tuple[tuple[str, str, str | tuple[str, ...] | None, str], ...]] = (
    ("recoverkit_info", "gauge", "version", "1, with the version of recoverkit as a label."),
    ("recoverkit_events_accepted_total", "counter", None, "Events this process validated and journaled."),
    ("recoverkit_events_invalid_total", "counter", "reason", "Events this process refused as invalid, by reason."),
    ("recoverkit_events_overflow_total", "counter", None, "Events not kept (the store failed, the engine closed)."),
    ("recoverkit_events_spilled_total", "counter", None, "Events track() journaled itself: the inbox was full."),
    ("recoverkit_events_late_total", "counter", None, "Events older than the watermark when the pipeline read them."),
    ("recoverkit_abandonments_total", "counter", "trigger", "Carts found abandoned, by trigger."),
    ("recoverkit_abandonment_reasons_total", "counter", "reason", "Abandoned carts scored, by likely reason."),
    ("recoverkit_session_changes_total", "counter", "kind", "Session changes (carts, converted, resumed, ...)."),
    ("recoverkit_scorer_failures_total", "counter", None, "Carts the shop's scorer failed on (default model used)."),
    ("recoverkit_steps_skipped_total", "counter", "reason", "Flow steps not scheduled for a cart, by reason."),
    ("recoverkit_messages_scheduled_total", "counter", ("channel", "flow"), "Messages scheduled, each once."),
    (
        "recoverkit_message_outcomes_total",
        "counter",
        ("outcome", "channel", "flow"),
        "Final outcome of each message scheduled (sent, dead, cancelled_*, ...), each once.",
    ),
    (
        "recoverkit_messages_total",
        "counter",
        "outcome",
        "Deprecated: everything dispatch counts, mixed (scheduled, retries, offers, outcomes); do not sum it.",
    ),
    ("recoverkit_pipeline_takeovers_total", "counter", None, "Pipeline take-overs (restored from a checkpoint)."),
    ("recoverkit_stage_items_received_total", "counter", "stage", "Items each stage received."),
    ("recoverkit_stage_items_emitted_total", "counter", "stage", "Items each stage passed on."),
    ("recoverkit_stage_errors_total", "counter", "stage", "Items a stage failed to handle (logged and skipped)."),
    ("recoverkit_stage_batches_total", "counter", "stage", "Batches each stage handled."),
    ("recoverkit_store_operations_total", "counter", None, "Writes made through this process's store."),
    ("recoverkit_store_failures_total", "counter", None, "Writes through this process's store that failed."),
    ("recoverkit_store_commits_total", "counter", None, "Transactions this process's store committed."),
    ("recoverkit_store_retries_total", "counter", None, "Store operations tried again (lost connection, conflict)."),
    ("recoverkit_store_reconnects_total", "counter", None, "Broken store connections discarded and replaced."),
    ("recoverkit_store_connection_errors_total", "counter", None, "Store tries that failed for want of a connection."),
    ("recoverkit_store_unknown_outcomes_total", "counter", None, "Store writes cut while committing (not retried)."),
    ("recoverkit_codes_issued_total", "counter", None, "Discount codes this process's code book issued."),
    ("recoverkit_codes_refused_total", "counter", "reason", "Discount codes the code book refused, by reason."),
    ("recoverkit_codes_redeemed_total", "counter", "outcome", "Code redemptions, by outcome."),
    ("recoverkit_queue_depth_batches", "gauge", "stage", "Batches waiting in the queue in front of each stage."),
    ("recoverkit_queue_peak_batches", "gauge", "stage", "The most batches that ever waited in front of each stage."),
    ("recoverkit_queue_capacity_batches", "gauge", "stage", "The most batches the queue in front of a stage holds."),
    ("recoverkit_pipeline_lease_owner", "gauge", None, "1 when this process holds the pipeline lease, else 0."),
    ("recoverkit_partitions_owned", "gauge", None, "Journal partitions this process runs (a partitioned store)."),
    ("recoverkit_partition_share", "gauge", None, "Partitions this process should run: its fair share."),
    ("recoverkit_partition_members", "gauge", None, "Engine processes alive among those sharing the partitions."),
    ("recoverkit_partitions_taken_total", "counter", None, "Partitions this process took over."),
    ("recoverkit_partitions_handed_over_total", "counter", None, "Partitions this process gave up while running."),
    ("recoverkit_partitions_lost_total", "counter", None, "Partitions whose lease passed on under this process."),
    ("recoverkit_dead_letters", "gauge", None, "Messages in this process's dead-letter list."),
    ("recoverkit_open_sessions", "gauge", None, "Shoppers' sessions the pipeline holds (owner)."),
    ("recoverkit_messages_pending", "gauge", None, "Messages scheduled and not yet due (owner)."),
    ("recoverkit_messages_in_flight", "gauge", None, "Messages being delivered (owner)."),
    ("recoverkit_journal_behind_events", "gauge", None, "Journaled events the pipeline has not read yet (owner)."),
    ("recoverkit_checkpoint_position", "gauge", None, "Journal position the last checkpoint covers (owner)."),
    ("recoverkit_watermark_timestamp_seconds", "gauge", None, "The pipeline's watermark, Unix time (owner)."),
    ("recoverkit_stage_batch_duration_seconds", "histogram", "stage", "Time a stage spent on one batch."),
    ("recoverkit_pipeline_latency_seconds", "histogram", None, "Time from ingest making a batch to dispatch done."),
    ("recoverkit_send_lateness_seconds", "histogram", None, "Time from a message's due time to its hand-over."),
)

_Values: TypeAlias = Mapping[str, float] | Mapping[tuple[str, ...], float] | float | None


def _values(r: _Reading, carried: Mapping[_Key, float]) -> dict[str, _Values]:
    """Each counter's and gauge's samples: a value, values by label, or ``None`` (no sample)."""
    s, stages, owner = r.stats, r.stats.stages, r.stats.owner

    def carried_of(family: str) -> dict[str, float]:
        return {label: value for (name, label), value in carried.items() if name == family}

    def per_stage(figure: str) -> dict[str, float]:
        return {name: getattr(stage, figure) for name, stage in stages.items()}

    dispatch = stages["dispatch"].extra if owner and "dispatch" in stages else {}
    from . import __version__

    return {
        "recoverkit_info": {__version__: 1.0},
        **_message_values(r),
        "recoverkit_events_accepted_total": s.events_accepted,
        "recoverkit_events_invalid_total": s.events_invalid,
        "recoverkit_events_overflow_total": s.events_overflow,
        "recoverkit_events_spilled_total": s.events_spilled,
        "recoverkit_events_late_total": carried.get(("late", "")),
        "recoverkit_abandonments_total": carried_of("abandoned"),
        "recoverkit_abandonment_reasons_total": carried_of("reason"),
        "recoverkit_session_changes_total": carried_of("session"),
        "recoverkit_scorer_failures_total": carried.get(("scorer_failures", "")),
        "recoverkit_steps_skipped_total": carried_of("skipped"),
        "recoverkit_messages_total": carried_of("outcome"),
        "recoverkit_pipeline_takeovers_total": s.restores,
        "recoverkit_stage_items_received_total": per_stage("received") | carried_of("read"),  # ingest's carries over
        "recoverkit_stage_items_emitted_total": per_stage("emitted"),
        "recoverkit_stage_errors_total": per_stage("errors"),
        "recoverkit_stage_batches_total": per_stage("batches"),
        **_plug_in_values(r),
        "recoverkit_queue_depth_batches": per_stage("queue_depth"),
        "recoverkit_queue_peak_batches": per_stage("queue_peak"),
        "recoverkit_queue_capacity_batches": per_stage("queue_capacity"),
        "recoverkit_pipeline_lease_owner": float(owner),
        "recoverkit_dead_letters": s.dead_letters,
        "recoverkit_open_sessions": s.sessions if owner else None,
        "recoverkit_messages_pending": dispatch.get("pending"),
        "recoverkit_messages_in_flight": dispatch.get("in_flight"),
        "recoverkit_journal_behind_events": _behind(r),
        "recoverkit_checkpoint_position": s.checkpoint_position if owner else None,
        "recoverkit_watermark_timestamp_seconds": s.watermark if owner and math.isfinite(s.watermark) else None,
    }


def _behind(r: _Reading) -> float | None:
    """Events journaled that the pipeline has not read yet (owner only)."""
    if not r.stats.owner:
        return None
    # The engine counts what this process journaled; the store's journal end covers every process's events.
    stages = r.stats.stages
    position = stages["ingest"].extra.get("position", 0) if "ingest" in stages else 0
    return max(r.stats.journal_behind, (r.journal_end or 0) - position)


def _plug_in_values(r: _Reading) -> dict[str, _Values]:
    """The store's and the code issuer's counters, ``None`` when the plug-in does not count them."""
    return {
        "recoverkit_store_operations_total": r.store.operations if r.store else None,
        "recoverkit_store_failures_total": r.store.failed if r.store else None,
        "recoverkit_store_commits_total": r.store.commits if r.store else None,
        "recoverkit_store_retries_total": r.store.retries if r.store else None,
        "recoverkit_store_reconnects_total": r.store.reconnects if r.store else None,
        "recoverkit_store_connection_errors_total": r.store.connection_errors if r.store else None,
        "recoverkit_store_unknown_outcomes_total": r.store.unknown_outcomes if r.store else None,
        "recoverkit_codes_issued_total": r.codes.issued if r.codes else None,
        "recoverkit_codes_refused_total": r.codes.refused if r.codes else None,
        "recoverkit_codes_redeemed_total": r.codes.redeemed if r.codes else None,
        **_partition_values(r.partitions),
    }


_PARTITION_FAMILIES: Final = (
    "recoverkit_partitions_owned", "recoverkit_partition_share", "recoverkit_partition_members",
    "recoverkit_partitions_taken_total", "recoverkit_partitions_handed_over_total", "recoverkit_partitions_lost_total",
)  # fmt: skip


def _partition_values(status: dict[str, Any] | None) -> dict[str, _Values]:
    """What a partitioned engine says of its share (``None``, left out, with a one-sequence store)."""
    if status is None:
        return dict.fromkeys(_PARTITION_FAMILIES)
    return {
        "recoverkit_partitions_owned": len(status["owned"]),
        "recoverkit_partition_share": status["share"],
        "recoverkit_partition_members": status["members"],
        "recoverkit_partitions_taken_total": status["taken"],
        "recoverkit_partitions_handed_over_total": status["handed_over"],
        "recoverkit_partitions_lost_total": status["lost"],
    }


def _families(r: _Reading, carried: Mapping[_Key, float]) -> list[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.utils import floatToGoString

    le = cast(Callable[[float], str], floatToGoString)  # how prometheus_client itself writes `le` (untyped)
    values = _values(r, carried)
    histograms: dict[str, tuple[dict[str, _Histogram], range]] = {
        "recoverkit_stage_batch_duration_seconds": (r.batch_latency, _BATCH_EDGES),
        "recoverkit_pipeline_latency_seconds": ({"": r.pipeline_latency}, _PIPELINE_EDGES),
        "recoverkit_send_lateness_seconds": ({"": r.send_lateness}, _LATENESS_EDGES),
    }
    out: list[Metric] = []
    for name, kind, label, doc in _METRICS:
        labels = [label] if isinstance(label, str) else list(label or ())
        if kind == "histogram":
            histogram = HistogramMetricFamily(name, doc, labels=labels, unit="seconds")
            series, edges = histograms[name]
            for value, (counts, total) in sorted(series.items()):
                # Cumulative: an `le` bucket counts every duration up to its edge; +Inf counts them all.
                buckets = [
                    (le(LatencyHistogram.upper_edge(e)), sum(n for i, n in counts.items() if i <= e)) for e in edges
                ]
                buckets.append(("+Inf", sum(counts.values())))
                histogram.add_metric([value] if label else [], buckets, total)
            out.append(histogram)
            continue
        family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, doc, labels=labels)
        sample = values[name]
        if isinstance(sample, Mapping):
            for values_of, number in sorted(sample.items()):
                family.add_metric(list(values_of) if isinstance(values_of, tuple) else [str(values_of)], number)
        elif sample is not None:
            family.add_metric([], sample)
        out.append(family)
    return out


def register(engine: EngineSource, registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """Register an :class:`EngineCollector` for ``engine`` on ``registry`` and return the registry.

    By default a new registry, never prometheus_client's global ``REGISTRY`` (pass it to choose it). One engine
    per registry: a second collector's metric names clash (``ValueError: Duplicated timeseries``).
    """
    collector = EngineCollector(engine)
    if registry is None:
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry()
    registry.register(collector)
    registry.register(PurchasePathCollector(engine))  # [alerts] enabled: the watcher the engine runs (docs/alerts.md)
    return registry


def make_wsgi_app(engine: EngineSource, *, registry: CollectorRegistry | None = None) -> Callable[..., Any]:
    """A WSGI app serving ``engine``'s metrics (and the rest of ``registry``, if given) at any path it is mounted at."""
    from prometheus_client import make_wsgi_app as make

    return make(register(engine, registry))


def make_asgi_app(engine: EngineSource, *, registry: CollectorRegistry | None = None) -> Callable[..., Any]:
    """An ASGI app serving ``engine``'s metrics (and the rest of ``registry``, if given); mount it at /metrics."""
    from prometheus_client import make_asgi_app as make

    return make(register(engine, registry))


def start_http_server(
    engine: EngineSource, port: int, addr: str = "127.0.0.1", *, registry: CollectorRegistry | None = None
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``engine``'s metrics over HTTP at ``addr:port`` from a daemon thread; returns the server and thread.

    Loopback by default: pass ``addr="0.0.0.0"`` to let a Prometheus on another host scrape it. Port 0 picks a
    free port (``server.server_port``). Stop it with ``server.shutdown(); server.server_close()``. A thread does
    not survive a fork: start it in the process that serves (a worker, gunicorn's ``post_fork``), not before.
    """
    from prometheus_client import start_http_server as start

    return start(port, addr, registry=register(engine, registry))
