"""recoverkit.metrics: a scrape says what the engine's statistics say, from any thread, across take-overs.

Every scrape is parsed back with prometheus_client's own parser, so the tests check the exposition a Prometheus
server would read, not the collector's internals. The Grafana dashboard is checked against the names and labels
the collector exports.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from recoverkit import (
    BackgroundEngine,
    ChannelPolicy,
    Config,
    Engine,
    FakeClock,
    Flow,
    FlowStep,
    MemoryChannel,
    MemoryStore,
    PermanentDeliveryError,
)
from recoverkit._pipeline import StageStatistics
from recoverkit.engine import EngineStatistics
from recoverkit.metrics import EngineCollector, make_asgi_app, make_wsgi_app, register, start_http_server

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
ABANDON_AFTER = 60.0
DELAY = 30.0
STAGES = ["ingest", "sessionize", "score", "route", "dispatch"]
DASHBOARD = Path(__file__).parent.parent / "examples" / "grafana" / "recoverkit-dashboard.json"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def config() -> Config:
    """One email step ``DELAY`` after abandonment; quick retries."""
    return Config(
        abandon_after=ABANDON_AFTER,
        session_timeout=3600,
        flows=[Flow(name="f", steps=[FlowStep(delay=DELAY, channel="email")])],
        channels={"email": ChannelPolicy(address="email", backoff=1.0, backoff_max=4.0)},
    )


def shopper(session: str, customer: str) -> list[dict[str, Any]]:
    """A known customer who consented to email and put something in the cart."""
    return [
        {"event": "identify", "session_id": session, "customer_id": customer, "email": f"{customer}@example.com"},
        {"event": "consent", "session_id": session, "customer_id": customer, "granted": ["email"]},
        {"event": "add_to_cart", "session_id": session, "customer_id": customer, "currency": "EUR",
         "items": [{"item_id": "SKU-1", "price": "35.79"}]},
    ]  # fmt: skip


async def run_shop(engine: Engine, clock: FakeClock, email: MemoryChannel) -> None:
    """Three abandoned carts: one message sent at once, one sent after a failed attempt, one dead-lettered;
    two invalid events; a checkpoint."""
    for event in [*shopper("s1", "c1"), *shopper("s2", "c2"), *shopper("s3", "c3")]:
        assert engine.track(event)
    engine.track({"event": "teleport", "session_id": "s9"})
    engine.track(b'{"event": "add_to_cart", ')
    await engine.flush()
    email.fail_next(1)  # transient: retried
    email.fail_next(1, PermanentDeliveryError("mailbox c2@example.com does not exist"))
    clock.advance(ABANDON_AFTER + DELAY)
    await engine.flush()
    for _ in range(3):
        clock.advance(5)
        await engine.flush()
    await engine.checkpoint()


def parse(text: str | bytes) -> Samples:
    if isinstance(text, bytes):
        text = text.decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(registry: CollectorRegistry) -> Samples:
    return parse(generate_latest(registry))


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


def by(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: v for (n, labels), v in samples.items() if n == name}


def exported_names(collector: EngineCollector) -> dict[str, set[str]]:
    """Every sample name the collector can export, with the labels it carries (from the module's table)."""
    from recoverkit.metrics import _METRICS

    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    described = {(family.name, family.type) for family in collector.describe()}
    assert described == {(name.removesuffix("_total"), kind) for name, kind, _, _ in _METRICS}
    names: dict[str, set[str]] = {}
    for name, kind, label, _ in _METRICS:
        for suffix in suffixes[kind]:
            labels = {label} if isinstance(label, str) else set(label or ())
            names[name.removesuffix("_total") + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def has(samples: Samples, name: str) -> bool:
    return any(n == name for n, _ in samples)


@pytest.fixture
def email() -> MemoryChannel:
    return MemoryChannel()


# -- what a scrape says ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_scrape_reports_what_the_engine_statistics_say(email: MemoryChannel) -> None:
    clock = FakeClock(T0)
    async with Engine(config(), channels={"email": email}, clock=clock) as engine:
        registry = register(engine)
        await run_shop(engine, clock, email)
        samples = scrape(registry)
        stats = engine.statistics()
        store = engine.store.statistics()

    assert value(samples, "recoverkit_events_accepted_total") == stats.events_accepted == 9
    assert by(samples, "recoverkit_events_invalid_total", "reason") == stats.events_invalid
    assert stats.events_invalid == {"unknown_event": 1, "malformed_json": 1}
    assert value(samples, "recoverkit_events_overflow_total") == stats.events_overflow
    assert value(samples, "recoverkit_events_spilled_total") == stats.events_spilled
    assert value(samples, "recoverkit_events_late_total") == stats.events_late
    assert by(samples, "recoverkit_abandonments_total", "trigger") == stats.abandonments == {"inactivity": 3}
    assert by(samples, "recoverkit_abandonment_reasons_total", "reason") == stats.reasons
    assert sum(stats.reasons.values()) == 3
    messages = by(samples, "recoverkit_messages_total", "outcome")
    assert messages == stats.messages
    assert (messages["sent"], messages["failed_attempts"], messages["dead_lettered"]) == (2, 2, 1)
    assert value(samples, "recoverkit_dead_letters") == stats.dead_letters == 1
    assert value(samples, "recoverkit_open_sessions") == stats.sessions == 3
    assert value(samples, "recoverkit_pipeline_lease_owner") == 1
    assert value(samples, "recoverkit_pipeline_takeovers_total") == 1
    assert value(samples, "recoverkit_journal_behind_events") == stats.journal_behind == 0
    assert value(samples, "recoverkit_checkpoint_position") == stats.checkpoint_position == 9
    assert value(samples, "recoverkit_watermark_timestamp_seconds") == stats.watermark
    assert value(samples, "recoverkit_messages_pending") == stats.stages["dispatch"].extra["pending"]
    for metric, figure in [
        ("recoverkit_stage_items_received_total", "received"),
        ("recoverkit_stage_items_emitted_total", "emitted"),
        ("recoverkit_stage_errors_total", "errors"),
        ("recoverkit_stage_batches_total", "batches"),
        ("recoverkit_queue_depth_batches", "queue_depth"),
        ("recoverkit_queue_peak_batches", "queue_peak"),
        ("recoverkit_queue_capacity_batches", "queue_capacity"),
    ]:
        assert by(samples, metric, "stage") == {name: getattr(s, figure) for name, s in stats.stages.items()}, metric
    assert value(samples, "recoverkit_store_operations_total") == store.operations > 0
    assert value(samples, "recoverkit_store_commits_total") == store.commits
    assert value(samples, "recoverkit_store_failures_total") == store.failed
    for name in ("retries", "reconnects", "connection_errors", "unknown_outcomes"):  # a store in memory: none
        assert value(samples, f"recoverkit_store_{name}_total") == getattr(store, name) == 0, name
    assert stats.store == store  # the engine's statistics carry the store's


@pytest.mark.anyio
async def test_the_store_connection_counters_reach_the_engine_statistics_and_the_scrape() -> None:
    # PostgreSQL's counters, as its statistics() reports them (tests/store/test_postgres_reconnect.py makes them
    # rise on a real server): here a store in memory that says so, to check the way to the scrape alone.
    from recoverkit.store import StoreStatistics

    class Troubled(MemoryStore):
        def statistics(self) -> StoreStatistics:
            return StoreStatistics(
                operations=5, failed=1, commits=4, largest_group=1, retries=3, reconnects=2, connection_errors=6,
                unknown_outcomes=1,
            )  # fmt: skip

    async with Engine(config(), channels={"email": MemoryChannel()}, store=Troubled()) as engine:
        samples = scrape(register(engine))
        stats = engine.statistics()
    assert (stats.store.retries, stats.store.reconnects, stats.store.connection_errors) == (3, 2, 6)
    assert stats.store.unknown_outcomes == 1
    assert value(samples, "recoverkit_store_retries_total") == 3
    assert value(samples, "recoverkit_store_reconnects_total") == 2
    assert value(samples, "recoverkit_store_connection_errors_total") == 6
    assert value(samples, "recoverkit_store_unknown_outcomes_total") == 1


@pytest.mark.anyio
async def test_histograms_are_cumulative_with_inf_equal_to_the_count(email: MemoryChannel) -> None:
    clock = FakeClock(T0)
    async with Engine(config(), channels={"email": email}, clock=clock) as engine:
        registry = register(engine)
        await run_shop(engine, clock, email)
        samples = scrape(registry)
        stages = (engine.ingest, engine.sessionize, engine.score, engine.route, engine.dispatch)
        histograms = {("recoverkit_stage_batch_duration_seconds", stage.name): stage.latency for stage in stages}
        histograms["recoverkit_pipeline_latency_seconds", ""] = engine.dispatch.pipeline_latency
        histograms["recoverkit_send_lateness_seconds", ""] = engine.dispatch.send_lateness
    for (name, stage), histogram in histograms.items():
        labels = {"stage": stage} if stage else {}
        buckets = sorted(
            (float(dict(key)["le"]), v)
            for (n, key), v in samples.items()
            if n == f"{name}_bucket" and all(dict(key).get(k) == w for k, w in labels.items())
        )
        counts = [count for _, count in buckets]
        assert buckets[-1][0] == float("inf") and len(buckets) > 10
        assert counts == sorted(counts), f"{name} {stage}: buckets are not cumulative"
        assert counts[-1] == value(samples, f"{name}_count", **labels) == histogram.count
        assert value(samples, f"{name}_sum", **labels) == pytest.approx(histogram.total)
    assert value(samples, "recoverkit_send_lateness_seconds_count") == len(email.attempts) == 4  # one per attempt


def test_a_bucket_counts_every_duration_below_its_edge() -> None:
    engine = Engine(config(), channels={"email": MemoryChannel()})
    durations = [0.0, 3e-6, 0.0005, 0.003, 2.5, 2.5, 90.0, 10_000.0]
    for seconds in durations:
        engine.dispatch.send_lateness.record(seconds)
    samples = scrape(register(engine))
    buckets = by(samples, "recoverkit_send_lateness_seconds_bucket", "le")
    assert buckets.pop("+Inf") == len(durations)
    edges = sorted(float(le) for le in buckets)
    assert edges[0] == pytest.approx(0.001024) and edges[-1] == pytest.approx(4294.967296)
    for le, count in buckets.items():
        assert count == sum(1 for d in durations if d < float(le)), le
    assert value(samples, "recoverkit_send_lateness_seconds_sum") == pytest.approx(sum(durations))


@pytest.mark.anyio
async def test_labels_carry_no_personal_data(email: MemoryChannel) -> None:
    clock = FakeClock(T0)
    async with Engine(config(), channels={"email": email}, clock=clock) as engine:
        registry = register(engine)
        await run_shop(engine, clock, email)
        samples = scrape(registry)
    values = {v for _, labels in samples for _, v in labels}
    personal = [v for v in values if re.search(r"\b[sc][1-9]\b|example|SKU|@", v)]
    assert personal == []
    assert {label for _, labels in samples for label, _ in labels} <= {
        "stage", "reason", "trigger", "kind", "outcome", "le", "channel", "flow", "version",
    }  # fmt: skip


@pytest.mark.anyio
async def test_every_sample_belongs_to_a_described_family(email: MemoryChannel) -> None:
    clock = FakeClock(T0)
    async with Engine(config(), channels={"email": email}, clock=clock) as engine:
        collector = EngineCollector(engine)
        registry = CollectorRegistry()
        registry.register(collector)
        await run_shop(engine, clock, email)
        samples = scrape(registry)
    names = exported_names(collector)
    for name, labels in samples:
        assert name in names, name
        assert {label for label, _ in labels} == names[name], name


def test_an_engine_is_registered_once_per_registry() -> None:
    engine = Engine(config(), channels={"email": MemoryChannel()})
    registry = register(engine)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        register(engine, registry)


# -- counters across a take-over -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_counters_restored_by_a_take_over_count_on_from_zero(email: MemoryChannel) -> None:
    store = MemoryStore()
    clock = FakeClock(T0)
    async with Engine(config(), channels={"email": email}, clock=clock, store=store) as first:
        await run_shop(first, clock, email)
    # The next process restores the checkpoint, counters included; its metrics count only its own work.
    second = Engine(config(), channels={"email": email}, clock=clock, store=store)
    registry = register(second)  # before the start, as a web app registers at import
    before = scrape(registry)
    assert by(before, "recoverkit_abandonments_total", "trigger") == {}
    async with second:
        restored = scrape(registry)
        assert second.statistics().abandonments == {"inactivity": 3}
        assert by(restored, "recoverkit_abandonments_total", "trigger") == {"inactivity": 0}
        assert set(by(restored, "recoverkit_messages_total", "outcome").values()) == {0}
        assert value(restored, "recoverkit_pipeline_takeovers_total") == 1
        for event in shopper("s4", "c4"):
            second.track(event)
        await second.flush()
        clock.advance(ABANDON_AFTER + DELAY)
        await second.flush()
        samples = scrape(registry)
        stats = second.statistics()
    assert stats.abandonments == {"inactivity": 4} and stats.messages["sent"] == 3
    assert by(samples, "recoverkit_abandonments_total", "trigger") == {"inactivity": 1}
    assert value(samples, "recoverkit_messages_total", outcome="sent") == 1
    assert value(samples, "recoverkit_stage_items_received_total", stage="ingest") == 3
    assert stats.stages["ingest"].received == 12


def carried_statistics(outcomes: dict[str, int], restores: int, restoring: bool, restored: dict[str, int]) -> Any:
    def dispatch(counts: dict[str, int]) -> StageStatistics:
        return StageStatistics(
            name="dispatch", received=0, emitted=0, errors=0, batches=0, busy_seconds=0.0, queue_depth=0,
            queue_peak=0, queue_capacity=1, latency_p50=0.0, latency_p99=0.0, latency_max=0.0,
            extra={"outcomes": dict(counts)},
        )  # fmt: skip

    return EngineStatistics(
        events_accepted=0, events_invalid={}, events_overflow=0, events_spilled=0, events_late=0, sessions=0,
        abandonments={}, reasons={}, messages=dict(outcomes), dead_letters=0, watermark=0.0, owner=True,
        journal_behind=0, checkpoint_position=0, stages={"dispatch": dispatch(outcomes)}, restores=restores,
        restoring=restoring, restored={"dispatch": dispatch(restored)} if restores else {},
    )  # fmt: skip


Step = tuple[str, str, int]  # ("work", key, n) | ("restore", key, value) | ("scrape", "", 0) | ("mid", "", 0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("work"), st.sampled_from(["sent", "dead_lettered"]), st.integers(1, 5)),
            st.tuples(st.just("restore"), st.sampled_from(["sent", "dead_lettered"]), st.integers(0, 50)),
            st.tuples(st.sampled_from(["scrape", "mid"]), st.just(""), st.just(0)),
        ),
        max_size=40,
    )
)
def test_carried_counters_never_go_back_and_count_exactly_the_work_seen(steps: list[Step]) -> None:
    """Model: ``work`` adds to the engine's counter, ``restore`` replaces every counter with a checkpoint's value
    (a take-over), ``mid`` scrapes while a take-over is under way. What a scrape exports never goes back, and
    is the work done, less the work done after the last scrape before each take-over (that state was replaced
    before anyone saw it)."""
    from recoverkit.metrics import _Carried

    carried = _Carried()
    engine: dict[str, int] = {}
    restores = 0
    restored: dict[str, int] = {}
    done: dict[str, int] = {}
    unseen: dict[str, int] = {}  # work since the last scrape
    lost: dict[str, int] = {}
    exported: dict[str, float] = {}
    for kind, key, n in [*steps, ("scrape", "", 0)]:
        if kind == "work":
            engine[key] = engine.get(key, 0) + n
            done[key] = done.get(key, 0) + n
            unseen[key] = unseen.get(key, 0) + n
        elif kind == "restore":
            restored = {k: 0 for k in engine} | {key: n}
            engine, restores = dict(restored), restores + 1
            for k, v in unseen.items():
                lost[k] = lost.get(k, 0) + v
            unseen = {}
        else:
            carried.update(carried_statistics(engine, restores, kind == "mid", restored))
            values = {k: v for (family, k), v in carried.values.items() if family == "outcome"}
            assert all(values.get(k, 0) >= v for k, v in exported.items()), "a counter went back"
            exported = values
            if kind == "scrape":
                unseen = {}
                assert values == {k: done.get(k, 0) - lost.get(k, 0) for k in values}


# -- threads, HTTP, closing ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_http_scrape_from_another_thread_reads_the_engine(email: MemoryChannel) -> None:
    clock = FakeClock(T0)
    async with Engine(config(), channels={"email": email}, clock=clock) as engine:
        await run_shop(engine, clock, email)
        server, thread = start_http_server(engine, 0)
        try:
            assert server.server_address[0] == "127.0.0.1"
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{server.server_port}/metrics")
        finally:
            await anyio.to_thread.run_sync(server.shutdown)
            server.server_close()
        stats = engine.statistics()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = parse(response.text)
    assert value(samples, "recoverkit_events_accepted_total") == stats.events_accepted
    assert by(samples, "recoverkit_messages_total", "outcome") == stats.messages
    thread.join(timeout=5)
    assert not thread.is_alive()


@pytest.mark.anyio
async def test_wsgi_and_asgi_apps_serve_the_metrics(email: MemoryChannel) -> None:
    clock = FakeClock(T0)
    async with Engine(config(), channels={"email": email}, clock=clock) as engine:
        await run_shop(engine, clock, email)
        transport = httpx.ASGITransport(app=make_asgi_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            asgi = await client.get("/metrics")
        with httpx.Client(transport=httpx.WSGITransport(app=make_wsgi_app(engine)), base_url="http://shop") as sync:
            wsgi = sync.get("/metrics")
        stats = engine.statistics()
    for response in (asgi, wsgi):
        assert response.status_code == 200
        assert by(parse(response.text), "recoverkit_abandonments_total", "trigger") == stats.abandonments


@pytest.mark.anyio
async def test_scraping_while_the_engine_works_in_another_thread_is_safe(caplog: pytest.LogCaptureFixture) -> None:
    ROUNDS, CARTS = 12, 25
    clock = FakeClock(T0)
    webhook = Config(abandon_after=ABANDON_AFTER, flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="webhook")])])
    async with Engine(webhook, channels={"webhook": MemoryChannel()}, clock=clock) as engine:
        registry = register(engine)
        stop = threading.Event()
        scraped = threading.Event()  # set after every scrape
        scrapes: list[Samples] = []

        def scraper() -> None:
            while not stop.is_set():
                scrapes.append(scrape(registry))
                scraped.set()

        with caplog.at_level(logging.DEBUG, logger="recoverkit"):
            thread = threading.Thread(target=scraper)
            thread.start()
            try:
                for round_ in range(ROUNDS):
                    scraped.clear()
                    for i in range(CARTS):
                        engine.track({"event": "add_to_cart", "session_id": f"s{round_}-{i}",
                                      "items": [{"item_id": "SKU-1", "price": "9.99"}]})  # fmt: skip
                    # The scraper is not left to the scheduler: a loop that runs without pause starves a thread
                    # of the GIL (each release is taken back before the waiting thread wakes), which left it one
                    # scrape in a whole run. Waiting here for a scrape, with the loop free to run the stages on
                    # the events just tracked, puts at least one scrape in every round, beside the engine's work.
                    assert await anyio.to_thread.run_sync(scraped.wait, 30), "no scrape finished in 30 s"
                    clock.advance(ABANDON_AFTER / 2)
                    await engine.flush()
            finally:
                stop.set()
                await anyio.to_thread.run_sync(thread.join)
        stats = engine.statistics()
    assert [entry for entry in caplog.records if getattr(entry, "event", None) == "metrics_read_failed"] == []
    assert len(scrapes) >= ROUNDS
    for name, labels in [
        ("recoverkit_events_accepted_total", {}),
        ("recoverkit_abandonments_total", {"trigger": "inactivity"}),
        ("recoverkit_stage_items_received_total", {"stage": "sessionize"}),
    ]:
        key = (name, tuple(sorted(labels.items())))
        seen = [s[key] for s in scrapes if key in s]
        assert seen == sorted(seen), name
    # Each round moves the clock half the abandonment wait: every cart but the last two rounds' is abandoned.
    assert stats.events_accepted == ROUNDS * CARTS
    assert stats.abandonments["inactivity"] >= (ROUNDS - 2) * CARTS


@pytest.fixture
def background() -> Iterator[tuple[BackgroundEngine, MemoryChannel]]:
    channel = MemoryChannel()
    webhook = Config(abandon_after=60, flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="webhook")])])
    engine = BackgroundEngine(webhook, channels={"webhook": channel}, close_at_exit=False)
    yield engine, channel
    engine.close(timeout=5)


def test_a_background_engine_is_read_on_its_own_thread(background: tuple[BackgroundEngine, MemoryChannel]) -> None:
    engine, channel = background
    for i in range(5):  # carts filled an hour ago: abandoned, and the message sent, once the watermark moves
        engine.track({"event": "add_to_cart", "session_id": f"s{i}", "ts": time.time() - 3600,
                      "items": [{"item_id": "SKU-1", "price": "9.99"}]})  # fmt: skip
    engine.track({"event": "teleport", "session_id": "s9"})
    deadline = time.monotonic() + 10
    while len(channel.sent) < 5 and time.monotonic() < deadline:
        engine.flush()
    registry = register(engine)
    read_on: list[int] = []
    statistics = engine.engine.statistics

    def spying() -> EngineStatistics:
        read_on.append(threading.get_ident())
        return statistics()

    engine.engine.statistics = spying  # type: ignore[method-assign]
    results: list[Samples] = []
    thread = threading.Thread(target=lambda: results.append(scrape(registry)))
    thread.start()
    thread.join(timeout=10)
    (samples,) = results
    stats = engine.statistics()
    assert read_on and all(ident not in (thread.ident, threading.get_ident()) for ident in read_on)
    assert value(samples, "recoverkit_events_accepted_total") == stats.events_accepted == 5
    assert by(samples, "recoverkit_events_invalid_total", "reason") == {"unknown_event": 1}
    assert by(samples, "recoverkit_abandonments_total", "trigger") == stats.abandonments == {"inactivity": 5}
    assert value(samples, "recoverkit_messages_total", outcome="sent") == stats.messages["sent"] == 5


def test_a_closed_background_engine_exports_its_last_figures(
    background: tuple[BackgroundEngine, MemoryChannel],
) -> None:
    engine, _ = background
    registry = register(engine)
    for i in range(3):
        engine.track({"event": "view_item", "session_id": f"s{i}", "items": [{"item_id": "SKU-1"}]})
    engine.close(timeout=5)
    samples = scrape(registry)
    assert value(samples, "recoverkit_events_accepted_total") == 3
    assert value(samples, "recoverkit_pipeline_lease_owner") == 0


@pytest.mark.anyio
async def test_a_closed_engine_exports_its_final_figures(email: MemoryChannel) -> None:
    clock = FakeClock(T0)
    engine = Engine(config(), channels={"email": email}, clock=clock)
    registry = register(engine)
    async with engine:
        await run_shop(engine, clock, email)
    samples = scrape(registry)
    stats = engine.statistics()
    assert value(samples, "recoverkit_events_accepted_total") == stats.events_accepted == 9
    assert by(samples, "recoverkit_messages_total", "outcome") == stats.messages


def test_a_source_that_fails_exports_the_last_figures_read_or_nothing(caplog: pytest.LogCaptureFixture) -> None:
    engine = Engine(config(), channels={"email": MemoryChannel()})
    engine.track({"event": "view_item", "session_id": "s1", "items": [{"item_id": "SKU-1"}]})
    answers: list[Callable[[], Engine | None]] = [lambda: engine]

    def source() -> Engine | None:
        return answers[-1]()

    def broken() -> Engine:
        raise RuntimeError("the portal is not running")

    registry = register(source)
    first = scrape(registry)
    answers.append(broken)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="recoverkit"):
        assert scrape(registry) == first
        assert scrape(registry) == first
    assert [entry.event for entry in caplog.records] == ["metrics_read_failed"]  # once, not at every scrape
    answers.append(lambda: None)
    assert scrape(registry) == {}
    assert scrape(register(broken)) == {}


@pytest.mark.anyio
async def test_a_journal_writer_exports_no_pipeline_figures_and_the_owner_sees_its_events(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    clock = FakeClock(T0)
    async with (
        Engine(config(), channels={"email": MemoryChannel()}, clock=clock, store=path) as owner,
        Engine(config(), channels={"email": MemoryChannel()}, clock=clock, store=path, pipeline=False) as writer,
    ):
        for event in shopper("s1", "c1"):
            await writer.submit(event)
        owner_samples = scrape(register(owner))
        writer_samples = scrape(register(writer))
        assert owner.statistics().journal_behind == 0  # it counts only what it journaled itself
        assert value(owner_samples, "recoverkit_journal_behind_events") == 3
        await owner.flush()
        assert value(scrape(register(owner)), "recoverkit_journal_behind_events") == 0
    assert value(writer_samples, "recoverkit_pipeline_lease_owner") == 0
    assert value(writer_samples, "recoverkit_events_accepted_total") == 3
    for owner_only in ["recoverkit_journal_behind_events", "recoverkit_open_sessions", "recoverkit_messages_pending"]:
        assert not has(writer_samples, owner_only) and has(owner_samples, owner_only), owner_only
    assert value(owner_samples, "recoverkit_pipeline_lease_owner") == 1


# -- living in a host process ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_global_default_registry_is_left_alone(email: MemoryChannel) -> None:
    before = [family.name for family in REGISTRY.collect()]
    async with Engine(config(), channels={"email": email}, clock=FakeClock(T0)) as engine:
        register(engine)
        make_wsgi_app(engine)
        make_asgi_app(engine)
        server, _ = start_http_server(engine, 0)
        await anyio.to_thread.run_sync(server.shutdown)
        server.server_close()
    after = [family.name for family in REGISTRY.collect()]
    assert after == before
    assert b"recoverkit_" not in generate_latest(REGISTRY)


def test_without_prometheus_client_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine(config(), channels={"email": MemoryChannel()})
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # what `import` finds when it is not installed
    with pytest.raises(ImportError, match=re.escape("pip install 'recoverkit[metrics]'")):
        EngineCollector(engine)
    with pytest.raises(ImportError, match=re.escape("recoverkit[metrics]")):
        register(engine)


def test_the_module_imports_without_prometheus_client() -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "import recoverkit, recoverkit.metrics\n"
        "try:\n    recoverkit.metrics.register(recoverkit.Engine())\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "pip install 'recoverkit[metrics]'" in result.stdout


# -- the Grafana dashboard -------------------------------------------------------------------------------------


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_the_dashboard_queries_only_metrics_the_collector_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = exported_names(EngineCollector(Engine(config(), channels={"email": MemoryChannel()})))
    expressions = dashboard_expressions(dashboard)
    used: set[str] = set()
    for expr in expressions:
        metrics = set(re.findall(r"\brecoverkit_\w+", expr))
        assert metrics, expr
        unknown = metrics - names.keys()
        assert unknown == set(), f"{expr}: not exported: {unknown}"
        used |= metrics
        # Every label an expression groups by is one the metrics it reads carry (or a target label).
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            for label in (g.strip() for g in group.split(",")):
                assert all(label in names[m] | {"instance", "job"} for m in metrics), f"{expr}: {label}"
        if "histogram_quantile" in expr:
            assert all(m.endswith("_bucket") for m in metrics) and "le" in expr, expr
    assert {
        "recoverkit_events_accepted_total", "recoverkit_events_invalid_total", "recoverkit_queue_depth_batches",
        "recoverkit_abandonments_total", "recoverkit_messages_scheduled_total", "recoverkit_message_outcomes_total",
        "recoverkit_dead_letters",
        "recoverkit_stage_batch_duration_seconds_bucket", "recoverkit_send_lateness_seconds_bucket",
        "recoverkit_journal_behind_events", "recoverkit_pipeline_lease_owner",
    } <= used  # fmt: skip
    assert any("histogram_quantile(0.5," in e and "stage_batch" in e for e in expressions)
    assert any("histogram_quantile(0.99," in e and "stage_batch" in e for e in expressions)
    assert any("histogram_quantile(0.99," in e and "send_lateness" in e for e in expressions)


def test_the_dashboard_is_a_grafana_dashboard_on_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        assert all(t["datasource"] == panel["datasource"] for t in panel["targets"]), panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:  # no two panels overlap on the 24-column grid
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[x, y]}"
                cells[x, y] = panel["title"]


# -- the recipes of docs/metrics.md ----------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_asgi_recipe_reads_the_lifespan_engine() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    with warnings.catch_warnings():
        # Starlette 1.x prefers the httpx2 package for its TestClient; with httpx it works the same but warns.
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
        from starlette.testclient import TestClient

    from recoverkit.contrib.asgi import RecoverkitMiddleware, get_tracker

    async def add_to_cart(request: Request) -> PlainTextResponse:
        get_tracker(request).add_to_cart([{"item_id": "SKU-1", "price": "9.99"}], currency="EUR")
        return PlainTextResponse("ok")

    shop = Starlette(
        routes=[
            Route("/cart", add_to_cart, methods=["POST"]),
            Mount("/metrics", app=make_asgi_app(lambda: app.engine)),
        ]
    )
    app = RecoverkitMiddleware(shop, settings={"CHANNELS": {"email": MemoryChannel()}})
    with TestClient(app) as client:
        assert client.post("/cart").status_code == 200

        def accepted() -> bool:
            samples = parse(client.get("/metrics").text)
            return samples.get(("recoverkit_events_accepted_total", ())) == 1

        wait_for(accepted)
        samples = parse(client.get("/metrics").text)
        assert value(samples, "recoverkit_pipeline_lease_owner") == 1
    assert client.get("/metrics").text == ""  # the lifespan's engine is gone: nothing to export


def test_the_flask_recipe_reads_the_process_engine() -> None:
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from recoverkit.contrib.flask import Recoverkit, tracker

    app = Flask(__name__)
    app.config.update(RECOVERKIT_CHANNELS={"email": MemoryChannel()})
    rk = Recoverkit(app)

    @app.post("/cart")
    def add_to_cart() -> str:
        tracker.add_to_cart([{"item_id": "SKU-1", "price": "9.99"}], currency="EUR")
        return "ok"

    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {"/metrics": make_wsgi_app(lambda: rk.engine(app))}
    )
    client = app.test_client()
    try:
        assert client.post("/cart").status_code == 200
        rk.flush(app)
        samples = parse(client.get("/metrics").get_data(as_text=True))
        engine = rk.engine(app)
        assert engine is not None
        assert value(samples, "recoverkit_events_accepted_total") == engine.statistics().events_accepted == 1
    finally:
        rk.close(app)


def test_the_docs_name_only_metrics_the_collector_exports_and_list_them_all() -> None:
    collector = EngineCollector(Engine(config(), channels={"email": MemoryChannel()}))
    families = {f.name + ("_total" if f.type == "counter" else ""): f.type for f in collector.describe()}
    text = (Path(__file__).parent.parent / "docs" / "metrics.md").read_text()
    mentioned = set(re.findall(r"\brecoverkit_\w+", text))
    assert mentioned - exported_names(collector).keys() - families.keys() == set()
    table = dict(re.findall(r"^\| `(recoverkit_\w+)` \| (\w+) \|", text, re.MULTILINE))
    assert table == families  # every metric is in the reference table, with its type


@pytest.mark.anyio
async def test_a_partitioned_engine_exports_its_share_of_the_partitions(email: MemoryChannel) -> None:
    clock = FakeClock(T0)
    async with Engine(config(), channels={"email": email}, clock=clock, store=MemoryStore(partitions=4)) as engine:
        collector = EngineCollector(engine)
        registry = CollectorRegistry()
        registry.register(collector)
        await run_shop(engine, clock, email)
        samples = scrape(registry)
    assert samples["recoverkit_partitions_owned", ()] == 4
    assert samples["recoverkit_partition_share", ()] == 4
    assert samples["recoverkit_partition_members", ()] == 1
    assert samples["recoverkit_partitions_taken_total", ()] == 4
    assert samples["recoverkit_partitions_lost_total", ()] == 0
    assert email.sent  # the shop's carts were recovered through the partitions


@pytest.mark.anyio
async def test_an_engine_on_one_sequence_exports_no_partition_figures(email: MemoryChannel) -> None:
    async with Engine(config(), channels={"email": email}, clock=FakeClock(T0)) as engine:
        registry = CollectorRegistry()
        registry.register(EngineCollector(engine))
        samples = scrape(registry)
    assert not [name for name, _ in samples if name.startswith("recoverkit_partition")]


# -- metrics that add up -----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_scheduled_messages_add_up_to_their_outcomes_and_what_is_pending(email: MemoryChannel) -> None:
    clock = FakeClock(T0)
    async with Engine(config(), channels={"email": email}, clock=clock) as engine:
        registry = register(engine)
        await run_shop(engine, clock, email)
        for event in shopper("s4", "c4"):  # one more abandoned cart, its message not yet due
            engine.track(event)
        await engine.flush()
        clock.advance(ABANDON_AFTER + 1)
        await engine.flush()
        samples = scrape(registry)
    scheduled = by(samples, "recoverkit_messages_scheduled_total", "flow")
    outcomes = by(samples, "recoverkit_message_outcomes_total", "outcome")
    assert scheduled == {"f": 4}
    assert outcomes == {"sent": 2, "dead": 1}  # the retried message ended once, as sent
    pending = value(samples, "recoverkit_messages_pending")
    assert pending == 1
    assert sum(scheduled.values()) == sum(outcomes.values()) + pending + value(samples, "recoverkit_messages_in_flight")
    assert set(by(samples, "recoverkit_message_outcomes_total", "channel")) == {"email"}
    # The old counter mixes them: summing it counts each message more than once.
    assert sum(by(samples, "recoverkit_messages_total", "outcome").values()) > sum(scheduled.values())


@pytest.mark.anyio
async def test_a_channel_or_flow_the_configuration_does_not_name_is_counted_as_other(email: MemoryChannel) -> None:
    async with Engine(config(), channels={"email": email}, clock=FakeClock(T0)) as engine:
        registry = register(engine)
        # A message restored from a checkpoint written under an older configuration, ended here.
        engine.dispatch._schedule.counts.ended["sent", "carrier-pigeon", "winter-sale-2019"] += 1
        engine.dispatch._schedule.counts.scheduled["email", "winter-sale-2019"] += 1
        samples = scrape(registry)
    assert value(samples, "recoverkit_messages_scheduled_total", channel="email", flow="other") == 1
    assert value(samples, "recoverkit_message_outcomes_total", outcome="sent", channel="other", flow="other") == 1


def test_the_info_metric_names_the_version() -> None:
    from recoverkit import __version__

    samples = scrape(register(Engine(config(), channels={"email": MemoryChannel()})))
    assert value(samples, "recoverkit_info", version=__version__) == 1


@pytest.mark.anyio
async def test_messages_cancelled_by_a_purchase_or_a_forget_still_add_up(email: MemoryChannel) -> None:
    two_steps = Config(
        abandon_after=ABANDON_AFTER,
        session_timeout=3600,
        flows=[Flow(name="f", steps=[FlowStep(delay=DELAY, channel="email"), FlowStep(delay=600, channel="email")])],
        channels={"email": ChannelPolicy(address="email")},
    )
    clock = FakeClock(T0)
    async with Engine(two_steps, channels={"email": email}, clock=clock) as engine:
        registry = register(engine)
        for n in range(1, 5):
            for event in shopper(f"s{n}", f"c{n}"):
                engine.track(event)
        await engine.flush()
        clock.advance(ABANDON_AFTER + DELAY + 1)  # the first step of each cart is sent
        await engine.flush()
        engine.track({"event": "purchase", "session_id": "s2", "customer_id": "c2", "ts": clock.now()})
        await engine.flush()
        await engine.forget("c3")
        clock.advance(1)
        await engine.flush()
        samples = scrape(registry)
    scheduled = sum(by(samples, "recoverkit_messages_scheduled_total", "flow").values())
    outcomes = by(samples, "recoverkit_message_outcomes_total", "outcome")
    pending = value(samples, "recoverkit_messages_pending")
    assert scheduled == 8
    # The second steps: s2's cancelled by the purchase, c3's by the erasure, s1's and s4's still pending.
    assert outcomes == {"sent": 4, "cancelled_purchase": 1, "cancelled_forgotten": 1}
    assert pending == 2
    assert scheduled == sum(outcomes.values()) + pending + value(samples, "recoverkit_messages_in_flight")
