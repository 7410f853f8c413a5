"""The partitioned engine on PostgreSQL (src/recoverkit/_fleet.py): a store made with several partitions, one
pipeline per partition owned, the same messages as on one sequence (tests/store/postgres_cluster.py starts the
server)."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import msgspec
import pytest

from recoverkit import Config, Engine, EventClock, MemoryStore
from replaying import KeyRecorder, channels_for, replay_keys, synthetic_lines

from .postgres_cluster import postgres_cluster, postgres_url  # noqa: F401 - fixtures used by name

pytest.importorskip("psycopg", reason="the postgres extra is not installed (pip install '.[postgres]')")

from recoverkit.store.postgres import PostgresStore, init


def test_eight_partitions_in_one_process(postgres_url: str) -> None:  # noqa: F811
    lines = synthetic_lines(300, seed=5)
    init(postgres_url, partitions=8)
    with PostgresStore(postgres_url) as store:
        partitioned, status, _ = anyio.run(replay_keys, lines, store)
        assert status is not None and status["owned"] == list(range(8)) and status["share"] == 8
        assert partitioned and len(set(partitioned)) == len(partitioned)
        assert store.ledger(["sending", "unknown"]) == []
        assert sorted(e.key for e in store.ledger(["sent"])) == partitioned
        assert store.check() == []
        assert all(lease.owner is None for lease in store.partition_leases())  # handed over at close
        assert all(s.lag == 0 and s.head > 0 for s in store.partition_status())  # read to the end, checkpointed


@pytest.mark.parametrize(("carts", "seed"), [(300, 5), (800, 11)])
def test_eight_partitions_send_what_one_sequence_sends(postgres_url: str, carts: int, seed: int) -> None:  # noqa: F811
    # Each partition's watermark is its own events', yet the decisions match: a session's events are all in its
    # partition, and what crosses sessions (a customer's consent and address, a purchase closing their other
    # carts or the shop's cart id) is mirrored into every partition (recoverkit.journal.MIRRORED).
    lines = synthetic_lines(carts, seed=seed)
    in_memory, _, _ = anyio.run(replay_keys, lines, MemoryStore())
    init(postgres_url, partitions=8)
    with PostgresStore(postgres_url) as store:
        partitioned, _, _ = anyio.run(replay_keys, lines, store)
    assert in_memory and partitioned == in_memory


def _config(**store: float) -> Config:
    return msgspec.convert({"store": store}, Config)


async def _engines(
    lines: list[bytes], url: str, schema: str, count: int
) -> tuple[list[str], list[dict[str, Any] | None]]:
    """``count`` engines (owners) on one store: the first takes every partition and reads the first half of the
    input; the others join, and the partitions are handed over until each has its share, while the second half
    goes in through the first."""
    config = _config(lease_ttl=1.0)
    record = KeyRecorder()
    channels = channels_for(config, record)
    async with contextlib.AsyncExitStack() as stack:
        stores = [stack.enter_context(PostgresStore(url, schema=schema)) for _ in range(count)]
        engines = [
            await stack.enter_async_context(
                Engine(config, channels=channels, clock=EventClock(), store=stores[0], owner="e0")
            )
        ]
        half = len(lines) // 2
        for i in range(0, half, 128):
            await engines[0].submit_many(lines[i : min(i + 128, half)])
        for k in range(1, count):
            engines.append(
                await stack.enter_async_context(
                    Engine(config, channels=channels, clock=EventClock(), store=stores[k], owner=f"e{k}")
                )
            )
        share = 8 // count
        with anyio.fail_after(20):
            while any(e.partitions is None or len(e.partitions["owned"]) != share for e in engines):
                await anyio.sleep(0.05)
        statuses = [e.partitions for e in engines]
        for i in range(half, len(lines), 128):
            await engines[0].submit_many(lines[i : i + 128])
        for engine in engines:
            await engine.flush(end_of_input=True)
    return sorted(record.keys), statuses


@pytest.mark.parametrize("count", [2, 4])
def test_engines_joining_take_their_share_and_the_messages_stay_the_same(
    postgres_url: str,  # noqa: F811
    count: int,
) -> None:
    lines = synthetic_lines(300, seed=5)
    init(postgres_url, partitions=8)
    with PostgresStore(postgres_url) as store:
        alone, _, _ = anyio.run(replay_keys, lines, store)
    init(postgres_url, partitions=8, schema="many")
    together, statuses = anyio.run(_engines, lines, postgres_url, "many", count)
    owned = sorted(part for status in statuses if status is not None for part in status["owned"])
    assert owned == list(range(8))
    assert statuses[0] is not None and statuses[0]["handed_over"] == 8 - 8 // count
    assert together == alone


@pytest.mark.slow
def test_a_backlog_of_thousands_due_at_once_never_loses_the_leases(postgres_url: str) -> None:  # noqa: F811
    # After an outage, thousands of timers fall due at once: claiming them all takes far longer than the lease
    # (6-35 s here against 3 s). Claims go in short transactions (one per round trip of the delivery slots), the
    # lease is renewed by its own task on a connection of its own, without waiting for the claims in flight (they
    # hold the lease row FOR KEY SHARE, which a renewal does not wait for), and the stages hand the event loop on
    # between steps of a large batch: so no partition lapses, nothing is restored, and every message goes once.
    # The lease is 3 s, not the shortest (1 s): with 4,000 deliveries in flight the loop itself lagged up to 1.8 s
    # on this 2-core VM at load 9, and a loop stalled past the lease loses it by design (tests/test_lease_stall.py).
    from recoverkit import FakeClock, Flow, FlowStep, StoreConfig

    count = 4000
    config = Config(
        abandon_after=60,
        store=StoreConfig(lease_ttl=3.0, checkpoint_interval=0.5),
        flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="webhook")])],
    )
    events = [
        {"event": "add_to_cart", "session_id": f"s{i}", "ts": 1_767_225_600.0 + i * 0.001, "currency": "EUR",
         "items": [{"item_id": "SKU-1", "price": "9.90", "quantity": 1}]}
        for i in range(count)
    ]  # fmt: skip
    init(postgres_url, partitions=8)

    async def scenario() -> tuple[list[str], Any, dict[str, Any] | None, float]:
        clock = FakeClock(1_767_225_600.0 + 5)
        record = KeyRecorder()
        with PostgresStore(postgres_url) as store:
            async with Engine(config, channels={"webhook": record}, clock=clock, store=store) as engine:
                for i in range(0, count, 500):
                    await engine.submit_many(events[i : i + 500])
                await engine.flush()
                clock.advance(3600)  # every cart's timer and message fall due together
                started = anyio.current_time()
                await engine.flush()
                took = anyio.current_time() - started
                return sorted(record.keys), engine.statistics(), engine.partitions, took

    keys, stats, status, took = anyio.run(scenario)
    assert len(keys) == count and len(set(keys)) == count
    assert status is not None and status["lost"] == 0 and len(status["owned"]) == 8
    assert stats.lease_lapses == 0 and stats.restores == 8  # the 8 first take-overs, none since
    assert took > 0
