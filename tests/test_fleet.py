"""The partitioned engine (recoverkit._fleet) on the stores every machine has: MemoryStore and SQLiteStore made
with several partitions run the same code path as PostgreSQL, and send what one sequence sends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from recoverkit import Config, Engine, EventClock, MemoryStore
from recoverkit._fleet import fair_share
from recoverkit.store import SQLiteStore
from recoverkit.synthetic import generate_jsonl
from replaying import KeyRecorder, channels_for, replay_keys, synthetic_lines


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return synthetic_lines(300, seed=5)


@pytest.fixture(scope="module")
def one_sequence(lines: list[bytes]) -> list[str]:
    keys, status, _ = anyio.run(replay_keys, lines, MemoryStore())
    assert status is None
    return keys


def test_memory_partitions_send_what_one_sequence_sends(lines: list[bytes], one_sequence: list[str]) -> None:
    store = MemoryStore(partitions=4)
    keys, status, stats = anyio.run(replay_keys, lines, store)
    assert status is not None and status["owned"] == [0, 1, 2, 3] and status["members"] == 1
    assert keys == one_sequence
    # The statistics add the partitions' figures up: every message sent is counted once.
    assert stats.messages.get("sent", 0) == len(keys)
    assert stats.stages["dispatch"].received > 0 and stats.owner is True  # taken inside, while running
    assert stats.events_accepted == len(lines)
    assert all(lease.owner is None for lease in store.partition_leases())


def test_sqlite_partitions_send_what_one_sequence_sends(
    tmp_path: Path, lines: list[bytes], one_sequence: list[str]
) -> None:
    with SQLiteStore(tmp_path / "shop.db", partitions=4) as store:
        keys, status, _ = anyio.run(replay_keys, lines, store)
        assert status is not None and status["owned"] == [0, 1, 2, 3]
        assert store.check() == []
    assert keys == one_sequence


def test_a_forget_reaches_every_partition(lines: list[bytes]) -> None:
    async def scenario() -> tuple[bool, dict[str, Any]]:
        store = MemoryStore(partitions=4)
        async with Engine(Config(), clock=EventClock(), store=store, deliver=False) as engine:
            await engine.submit_many(lines[:400])
            await engine.flush(end_of_input=True)
            customer = next(c for c in (engine.export(f"c{i}") for i in range(50)) if c["carts"])["customer_id"]
            done = await engine.forget(customer)
            return done, engine.export(customer)

    done, after = anyio.run(scenario)
    assert done is True  # this process owns every partition
    assert after["carts"] == [] and after["complete"] is True


@pytest.mark.parametrize(
    ("partitions", "members", "shares"),
    [(8, ["a"], [8]), (8, ["a", "b"], [4, 4]), (64, ["a", "b", "c"], [22, 21, 21]), (2, ["a", "b", "c"], [1, 1, 0])],
)
def test_fair_shares_add_up_to_every_partition(partitions: int, members: list[str], shares: list[int]) -> None:
    assert [fair_share(partitions, members, m) for m in members] == shares
    assert fair_share(partitions, ["b"], "a") == fair_share(partitions, ["a", "b"], "a")  # itself counted


def test_a_replay_refuses_a_partitioned_store_naming_what_it_expects(tmp_path: Path) -> None:
    from recoverkit.errors import StoreError
    from recoverkit.replay import replay

    source = tmp_path / "events.jsonl"
    source.write_bytes(b"".join(line if isinstance(line, bytes) else line.encode() for line in generate_jsonl(5)))
    with pytest.raises(StoreError, match="4 partitions; a replay reads and resumes one sequence"):
        anyio.run(lambda: replay(source, store=MemoryStore(partitions=4)))


def test_a_replay_journaled_by_two_writers_waits_for_the_slower(lines: list[bytes], one_sequence: list[str]) -> None:
    # Writer A journals its half of the sessions to the end before writer B starts on the other half. A partition's
    # watermark held to its own events would run to the end of A's half and take all of B's events as late; held
    # to the slowest writer's mark, it waits for B, and the messages are one sequence's.
    import msgspec

    half_a = {s for i, s in enumerate(sorted({msgspec.json.decode(x)["session_id"] for x in lines})) if i % 2 == 0}
    a_lines = [x for x in lines if msgspec.json.decode(x)["session_id"] in half_a]
    b_lines = [x for x in lines if msgspec.json.decode(x)["session_id"] not in half_a]

    async def scenario() -> tuple[list[str], int]:
        store = MemoryStore(partitions=4)
        config = Config()
        record = KeyRecorder()
        clock = EventClock
        async with (
            Engine(config, clock=clock(), store=store, owner="writer-a", pipeline=False) as a,
            Engine(config, clock=clock(), store=store, owner="writer-b", pipeline=False) as b,
            Engine(config, channels=channels_for(config, record), clock=clock(), store=store, owner="p") as p,
        ):
            for i in range(0, len(a_lines), 128):
                await a.submit_many(a_lines[i : i + 128])
            await anyio.sleep(0.3)  # the partitions read all of A's half meanwhile
            for i in range(0, len(b_lines), 128):
                await b.submit_many(b_lines[i : i + 128])
            await anyio.sleep(0.3)
            await p.flush(end_of_input=True)
            return sorted(record.keys), p.statistics().events_late

    keys, late = anyio.run(scenario)
    assert late == 0
    assert keys == one_sequence


def test_the_partitions_share_max_in_flight_out() -> None:
    # A store of 4 partitions and max_in_flight 8: each partition's dispatch gets 2, so no more than 8 deliveries
    # are ever under way in the process, however many carts fall due at once (each partition with all 8, 32 were).
    from recoverkit import FakeClock, Flow, FlowStep

    class Slow:
        def __init__(self) -> None:
            self.now = self.most = 0
            self.keys: list[str] = []

        async def send(self, message: Any) -> None:
            self.now += 1
            self.most = max(self.most, self.now)
            await anyio.sleep(0.01)
            self.now -= 1
            self.keys.append(message.key)

    flow = Flow(name="f", steps=[FlowStep(delay=0, channel="webhook")])
    config = Config(abandon_after=60, max_in_flight=8, flows=[flow])
    events = [
        {"event": "add_to_cart", "session_id": f"s{i}", "ts": 1_767_225_600.0 + i * 0.001, "currency": "EUR",
         "items": [{"item_id": "SKU-1", "price": "9.90", "quantity": 1}]}
        for i in range(200)
    ]  # fmt: skip

    async def scenario() -> Slow:
        clock, slow = FakeClock(1_767_225_600.0 + 5), Slow()
        async with Engine(config, channels={"webhook": slow}, clock=clock, store=MemoryStore(partitions=4)) as engine:
            await engine.submit_many(events)
            await engine.flush()
            clock.advance(3600)
            await engine.flush()
        return slow

    slow = anyio.run(scenario)
    assert len(set(slow.keys)) == 200
    assert 2 <= slow.most <= 8
