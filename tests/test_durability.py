"""Durable state in one process: restarts on the same SQLite file, the ledger, the purchase gate, the guard.

Real processes killed with SIGKILL are in test_crash.py, test_restart_timing.py and test_lease_processes.py;
these tests restart an engine in-process on a real file, with a fake clock, to pin down each rule.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import msgspec
import pytest

from helpers import T0
from recoverkit import Config, Engine, EventClock, FakeClock, Flow, FlowStep, MemoryChannel
from recoverkit.channels.base import Message
from recoverkit.config import StoreConfig
from recoverkit.errors import StoreError
from recoverkit.store import Checkpoint, MemoryStore, SQLiteStore

pytestmark = pytest.mark.anyio


def rewind(db: Path, checkpoint: Checkpoint) -> None:
    """Put back an older checkpoint, as if the process had died before writing the next one.

    A store never lets a checkpoint move back (save_checkpoint refuses), so this is surgery on the file.
    """
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE checkpoint SET position = ?, state = ?", (checkpoint.position, checkpoint.state))


def config(path: Path | None = None, **settings: Any) -> Config:
    settings.setdefault(
        "flows",
        [Flow(name="f", steps=[FlowStep(delay=0, channel="webhook"), FlowStep(delay=3600, channel="webhook")])],
    )
    store = settings.pop("store", StoreConfig(path=str(path) if path else None))
    return Config(abandon_after=600, store=store, **settings)


def add(session: str, t: float = 0.0, **fields: Any) -> dict[str, Any]:
    return {
        "event": "add_to_cart",
        "session_id": session,
        "ts": T0 + t,
        "currency": "EUR",
        "items": [{"item_id": "A", "price": "10.00", "quantity": 1}],
        **fields,
    }


def purchase(session: str, t: float, **fields: Any) -> dict[str, Any]:
    return {"event": "purchase", "session_id": session, "ts": T0 + t, "value": "10.00", "currency": "EUR", **fields}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


async def test_open_carts_and_scheduled_messages_survive_a_restart(db: Path) -> None:
    clock = FakeClock(T0)
    first = MemoryChannel()
    async with Engine(config(db), channels={"webhook": first}, clock=clock) as engine:
        for i in range(3):
            engine.track(add(f"s{i}"))
        engine.track(add("open", 500))
        clock.advance(601)
        await engine.flush()
        assert len(first.keys()) == 3  # step 0 of each abandoned cart
        assert len(engine.pending_messages()) == 3  # step 1, an hour later
    second = MemoryChannel()
    async with Engine(config(db), channels={"webhook": second}, clock=clock) as engine:
        assert [m.key for m in engine.pending_messages()] == [f"s{i}/f/1" for i in range(3)]
        assert engine.statistics().sessions == 4  # the open cart too
        clock.advance(3600)
        await engine.flush()
    assert sorted(second.keys()) == sorted([f"s{i}/f/1" for i in range(3)] + ["open/f/0"])


async def test_events_journaled_after_the_last_checkpoint_are_read_again_after_a_restart(db: Path) -> None:
    clock = FakeClock(T0)
    store = SQLiteStore(db)
    try:
        async with Engine(config(), channels={"webhook": MemoryChannel()}, clock=clock, store=store) as engine:
            engine.track(add("s1"))
            await engine.flush()
            assert await engine.checkpoint() == 1
            engine.track(add("s2"))
            await engine.flush()
            checkpoint = store.load_checkpoint()
        # Put the checkpoint back to what it was before s2, as if the process had died before its next one.
        assert checkpoint is not None
        rewind(db, checkpoint)
        assert store.read_events(0, 10) == []  # ...but the journal was trimmed up to the close: re-append s2
        store.append_events([b'{"event":"add_to_cart","session_id":"s2","ts":%f,"currency":"EUR",'
                             b'"items":[{"item_id":"A","price":"10.00","quantity":1}]}' % T0], now=T0)
        channel = MemoryChannel()
        async with Engine(config(), channels={"webhook": channel}, clock=clock, store=store) as engine:
            await engine.flush()  # the journal is read on the first tick
            assert engine.statistics().sessions == 2
            clock.advance(601)
            await engine.flush()
        assert sorted(channel.keys()) == ["s1/f/0", "s2/f/0"]
    finally:
        store.close()


async def test_a_checkpoint_trims_the_journal(db: Path) -> None:
    clock = FakeClock(T0)
    async with Engine(config(db), channels={"webhook": MemoryChannel()}, clock=clock) as engine:
        for i in range(10):
            engine.track(add(f"s{i}"))
        await engine.flush()
        assert engine.store.last_seq() == 10
        assert len(engine.store.read_events(0, 100)) == 10
        assert await engine.checkpoint() == 10
        assert engine.store.read_events(0, 100) == []
        assert engine.statistics().checkpoint_position == 10


async def test_a_message_sent_after_the_checkpoint_is_not_sent_again_from_it(db: Path) -> None:
    # The process dies after sending but before its next checkpoint: the restart restores a schedule that
    # still holds the message. The ledger refuses the key.
    clock = FakeClock(T0)
    store = SQLiteStore(db)
    channel = MemoryChannel()
    try:
        async with Engine(config(), channels={"webhook": channel}, clock=clock, store=store) as engine:
            engine.track(add("s1"))
            clock.advance(300)
            await engine.flush()
            await engine.checkpoint()
            stale = store.load_checkpoint()
            clock.advance(301)
            await engine.flush()
            assert channel.keys() == ["s1/f/0"]
        assert stale is not None
        rewind(db, stale)
        async with Engine(config(), channels={"webhook": channel}, clock=clock, store=store) as engine:
            clock.advance(3600)
            await engine.flush()
            assert engine.statistics().messages["duplicate_key"] == 1
        assert channel.keys() == ["s1/f/0", "s1/f/1"]
        assert [(e.key, e.state) for e in store.ledger()] == [("s1/f/0", "sent"), ("s1/f/1", "sent")]
    finally:
        store.close()


async def test_a_send_interrupted_by_a_crash_is_unknown_and_not_sent_again(db: Path) -> None:
    store = SQLiteStore(db)
    try:
        # What a process killed between claim and finish leaves behind: a "sending" entry of another owner.
        store.acquire_lease("pipeline", "dead-process", ttl=1, now=0.0)
        assert store.claim(
            "s1/f/0", cart_key="s1", contact_key="session:s1", channel="webhook", started_at=T0,
            owner="dead-process", now=0.5,
        ) == "claimed"  # fmt: skip
        clock = FakeClock(T0)
        channel = MemoryChannel()
        async with Engine(config(), channels={"webhook": channel}, clock=clock, store=store) as engine:
            engine.track(add("s1"))
            clock.advance(601)
            await engine.flush()
            assert engine.statistics().messages["duplicate_key"] == 1
        assert channel.keys() == []
        assert [(e.key, e.state) for e in store.ledger()] == [("s1/f/0", "unknown")]
    finally:
        store.close()


async def test_a_purchase_journaled_by_another_worker_stops_the_send_in_the_claim() -> None:
    # The purchase is recorded in the store when it is journaled, by whichever process accepted it: the owner's
    # claim refuses the message even though its pipeline has not read the purchase.
    store = MemoryStore()
    clock = FakeClock(T0)
    channel = MemoryChannel()
    owner = Engine(config(), channels={"webhook": channel}, clock=clock, store=store)
    worker = Engine(config(), channels={"webhook": MemoryChannel()}, clock=clock, store=store)
    async with owner, worker:
        assert owner.is_owner and not worker.is_owner
        owner.track(add("s1", 0, customer_id="c1"))
        await owner.flush()
        clock.advance(601)
        worker.track(purchase("s9", 590, customer_id="c1"))
        await worker.flush()  # journaled, not yet read by the owner's pipeline...
        assert owner.statistics().journal_behind == 0  # (the owner does not know of it yet)
        # ...and already recorded for the claim: a probe claim for any cart of c1 started before is refused.
        probe = store.claim(
            "probe", cart_key="x", contact_key="c1", channel="webhook", started_at=T0, owner=owner.owner,
            now=time.time(),
        )  # fmt: skip
        assert probe == "purchased"
        await owner.flush()
    assert channel.keys() == []  # and once read, the purchase converts the cart: it is never abandoned
    assert owner.statistics().abandonments == {}


async def test_the_claim_refuses_a_message_for_a_cart_bought_since(db: Path) -> None:
    store = SQLiteStore(db)
    clock = FakeClock(T0)
    channel = MemoryChannel()
    try:
        async with Engine(config(), channels={"webhook": channel}, clock=clock, store=store) as engine:
            engine.track(add("s1"))
            await engine.flush()
            store.record_purchase(cart_key="s1", contact_key=None, at=T0 + 10)  # e.g. another host saw it
            clock.advance(601)
            await engine.flush()
            assert engine.statistics().messages["cancelled_purchase"] == 1
        assert channel.keys() == []
        assert store.ledger() == []  # a refused claim writes nothing
    finally:
        store.close()


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_the_guard_can_veto_a_send(asynchronous: bool) -> None:
    asked: list[str] = []

    def decide(message: Message) -> bool:
        asked.append(message.key)
        return message.cart.session_id != "bought-elsewhere"

    async def decide_async(message: Message) -> bool:
        return decide(message)

    clock = FakeClock(T0)
    channel = MemoryChannel()
    guard = decide_async if asynchronous else decide
    async with Engine(config(), channels={"webhook": channel}, clock=clock, guard=guard) as engine:
        engine.track(add("ok"))
        engine.track(add("bought-elsewhere"))
        clock.advance(601)
        await engine.flush()
        assert engine.statistics().messages["vetoed"] == 1
        states = {e.key: e.state for e in engine.store.ledger()}
    assert sorted(asked) == ["bought-elsewhere/f/0", "ok/f/0"]
    assert channel.keys() == ["ok/f/0"]
    assert states == {"ok/f/0": "sent", "bought-elsewhere/f/0": "cancelled"}


async def test_a_guard_that_raises_is_retried_like_a_failed_send() -> None:
    calls = 0

    def flaky(message: Message) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("shop database unavailable")
        return True

    clock = FakeClock(T0)
    channel = MemoryChannel()
    cfg = config(flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="webhook")])])
    async with Engine(cfg, channels={"webhook": channel}, clock=clock, guard=flaky) as engine:
        engine.track(add("s1"))
        clock.advance(601)
        await engine.flush()
        assert channel.keys() == []
        clock.advance(3600)
        await engine.flush()
        ledger = engine.store.ledger()
    assert channel.keys() == ["s1/f/0"]
    assert [(e.key, e.state) for e in ledger] == [("s1/f/0", "sent")]


async def test_sync_durability_journals_before_track_returns(db: Path) -> None:
    cfg = config(store=StoreConfig(path=str(db), durability="sync"))
    async with Engine(cfg, channels={"webhook": MemoryChannel()}, clock=FakeClock(T0)) as engine:
        assert engine.track(add("s1")) is True
        assert engine.store.last_seq() == 1  # no tick, no flush: it is already in the file
        with SQLiteStore(db) as other:
            assert [e.seq for e in other.read_events(0, 10)] == [1]
        assert engine.track({"event": "add_to_cart"}) is False  # invalid: refused at once, and counted
        assert engine.statistics().events_invalid == {"missing_field": 1}


async def test_a_second_engine_on_the_same_store_only_journals_until_it_takes_over(db: Path) -> None:
    clock = FakeClock(T0)
    first_channel, second_channel = MemoryChannel(), MemoryChannel()
    cfg = config(db)
    first = Engine(cfg, channels={"webhook": first_channel}, clock=clock)
    second = Engine(cfg, channels={"webhook": second_channel}, clock=clock)
    stop_first = anyio.Event()

    async def run_first(*, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with first:
            task_status.started()
            await stop_first.wait()  # then closes: a last checkpoint, and the lease is released

    async with anyio.create_task_group() as tg:
        await tg.start(run_first)
        async with second:
            assert first.is_owner and not second.is_owner
            second.track(add("via-second"))
            await second.flush()
            await first.flush()
            assert first.statistics().sessions == 1  # read from the journal the other process wrote
            assert first.statistics().stages["ingest"].extra["read_back"] == 1
            stop_first.set()
            with anyio.fail_after(5):
                while first._state != "closed":
                    await anyio.sleep(0.001)
            await second._renew_lease()  # what its lease task does every lease_ttl / 5 seconds
            assert second.is_owner
            await second.flush()
            assert second.statistics().sessions == 1
            clock.advance(601)
            await second.flush()
    assert first_channel.keys() == []
    assert second_channel.keys() == ["via-second/f/0"]


async def test_a_replay_resumed_from_its_store_decides_as_one_uninterrupted_replay(tmp_path: Path) -> None:
    lines = [add(f"s{i}", i * 100.0) for i in range(20)] + [purchase("s3", 5000.0)]
    lines += [add(f"t{i}", 10_000 + i * 50.0) for i in range(20)]

    async def run(store: Path, chunks: list[list[dict[str, Any]]]) -> list[str]:
        keys: list[str] = []
        for chunk in chunks:
            channel = MemoryChannel()
            async with Engine(config(store), channels={"webhook": channel}, clock=EventClock()) as engine:
                await engine.submit_many(chunk)
                if chunk is chunks[-1]:
                    await engine.flush(end_of_input=True)
            keys += channel.keys()
        return keys

    whole = await run(tmp_path / "whole.db", [lines])
    pieces = await run(tmp_path / "pieces.db", [lines[:7], lines[7:25], lines[25:]])
    assert len(whole) > 10
    assert sorted(pieces) == sorted(whole)


async def test_a_backlog_larger_than_the_cache_waits_in_the_journal_and_is_read_back(db: Path) -> None:
    # Lossless overload: what the stages cannot take yet stays on disk, and memory holds a bounded window.
    cfg = config(db, batch_size=8, queue_batches=2)
    async with Engine(cfg, channels={"webhook": MemoryChannel()}, clock=FakeClock(T0)) as engine:
        await engine.submit_many([add(f"s{i}", float(i)) for i in range(3000)])  # more than the cache holds
        assert engine.journal.cached == 0
        await engine.flush()
        stats = engine.statistics()
        assert stats.sessions == 3000
        assert stats.stages["ingest"].extra["read_back"] == 3000
        assert stats.journal_behind == 0


SYNC_WORKER = """
import sys, time
from recoverkit import Config, Engine, FakeClock
from recoverkit.config import StoreConfig
from recoverkit.errors import StoreError
from recoverkit.channels import MemoryChannel
import anyio
import msgspec

async def main():
    config = Config(store=StoreConfig(path=sys.argv[1], durability="sync"))
    async with Engine(config, channels={"email": MemoryChannel()}) as engine:
        for i in range(100_000):
            event = {"event": "page_view", "session_id": f"s{i}", "ts": 1767225600.0 + i}
            if not engine.track(event):
                raise SystemExit(f"refused {i}")
            print("ack", i, flush=True)  # acknowledged to the "request" only once track() returned

anyio.run(main)
"""


def test_with_sync_durability_every_event_track_accepted_survives_kill_9(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    db = tmp_path / "state.db"
    worker = subprocess.Popen(
        [sys.executable, "-c", SYNC_WORKER, str(db)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    acked = -1
    try:
        assert worker.stdout is not None
        for line in worker.stdout:  # the engine's own log lines may come between the acknowledgements
            if not line.startswith("ack "):
                continue
            acked = int(line.split()[1])
            if acked >= 300:
                break
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
        if worker.stdout is not None:
            worker.stdout.close()
    assert acked >= 300
    with SQLiteStore(db) as store:
        # Nothing was checkpointed or trimmed (30 s interval): the journal holds every event from the first on.
        journaled = {msgspec.json.decode(e.data)["session_id"] for e in store.read_events(0, 1_000_000)}
        assert {f"s{i}" for i in range(acked + 1)} <= journaled
        assert store.check() == []


async def test_an_owner_that_lost_its_lease_stops_and_sends_nothing() -> None:
    store = MemoryStore()
    clock = FakeClock(T0)
    channel = MemoryChannel()
    async with Engine(config(), channels={"webhook": channel}, clock=clock, store=store) as engine:
        engine.track(add("s1"))
        await engine.flush()
        # Another process takes the lease (this one stalled past its expiry, say).
        store.release_lease("pipeline", engine.owner)
        assert store.acquire_lease("pipeline", "another-worker", ttl=3600, now=time.time())
        await engine._renew_lease()  # what its lease task does every lease_ttl / 5 seconds
        assert not engine.is_owner and not engine.ingest.active
        clock.advance(601)
        await engine.flush()
        assert await engine.checkpoint() is None  # and it writes no state either
    assert channel.keys() == []
    assert store.ledger() == []


async def test_closing_while_a_periodic_checkpoint_is_due_closes_cleanly(db: Path) -> None:
    # The checkpoint task wakes on wall time; closing must win the race against it, every time.
    cfg = config(store=StoreConfig(path=str(db), checkpoint_interval=0.01))
    clock = FakeClock(T0)
    for round_ in range(15):
        async with Engine(cfg, channels={"webhook": MemoryChannel()}, clock=clock) as engine:
            for i in range(20):
                engine.track(add(f"r{round_}-{i}", float(i)))
            await engine.flush()
            engine._checkpoint_due = True
            await anyio.sleep(0.01 * (round_ % 5))
    with SQLiteStore(db) as store:
        assert store.check() == []


# -- accepted means kept: the inbox's budget and a store that refuses writes ------------------------------------


def view(session: str) -> dict[str, Any]:
    return {"event": "page_view", "session_id": session}


class FillingStore(MemoryStore):
    """A store in memory whose journal takes ``room`` more events and then refuses, as a full disk does (the
    same error SQLiteStore raises: a StoreError caused by SQLite's SQLITE_FULL); ``room = None`` makes room."""

    def __init__(self, room: int | None) -> None:
        super().__init__()
        self.room = room

    def append_events(self, events: Any, *, now: float) -> int:
        if self.room is not None:
            if len(events) > self.room:
                full = sqlite3.OperationalError("database or disk is full")
                full.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
                raise StoreError("state.db: append_events failed: database or disk is full") from full
            self.room -= len(events)
        return super().append_events(events, now=now)


async def test_the_inbox_holds_at_most_inbox_capacity_events_while_the_loop_is_behind() -> None:
    # No await between the calls: the engine's loop never runs, as when it is starved. track() journals the
    # inbox itself once it holds inbox_capacity events, so a kill -9 now could lose at most that many.
    async with Engine(config(), clock=FakeClock(T0)) as engine:
        capacity = engine.config.inbox_capacity
        assert capacity <= 4096  # the default bounds the loss; 1,000,000 once let a kill lose minutes of traffic
        results = [engine.track(view(f"s{i}")) for i in range(5 * capacity)]
        assert all(results)
        assert 0 < len(engine.journal.pending) <= capacity
        stats = engine.statistics()
        assert stats.events_accepted == stats.events_spilled == 5 * capacity - len(engine.journal.pending)
        await engine.flush()
        assert engine.statistics().events_accepted == 5 * capacity


async def test_an_event_older_than_two_ticks_in_the_inbox_makes_track_journal_it() -> None:
    async with Engine(config(tick_interval=0.02), clock=FakeClock(T0)) as engine:
        assert engine.track(view("old"))
        time.sleep(0.05)  # blocks the loop too: nothing drains the inbox meanwhile
        assert engine.track(view("new"))
        assert engine.statistics().events_accepted == 1  # "old" journaled by track(); "new" waits in the inbox
        assert [raw for raw, _ in engine.journal.pending] == [view("new")]


async def test_a_store_that_fills_up_keeps_what_fits_of_the_inbox_and_counts_the_rest() -> None:
    store = FillingStore(room=1000)
    # A minute's tick: the inbox's age budget (two ticks) does not make track() journal anything itself here.
    async with Engine(config(inbox_capacity=4096, tick_interval=60), store=store, clock=FakeClock(T0)) as engine:
        assert all(engine.track(view(f"s{i}")) for i in range(3000))  # all in the inbox: acknowledged
        await engine.flush()  # the drain: the store takes 1,000 of the 3,000
        stats = engine.statistics()
        assert (stats.events_accepted, stats.events_overflow) == (1000, 2000)
        kept = [msgspec.json.decode(entry.data)["session_id"] for entry in store.read_events(0, 5000)]
        assert kept == [f"s{i}" for i in range(1000)]  # the first thousand, in order: what fitted


async def test_while_the_store_refuses_writes_track_returns_false_and_true_again_once_it_takes_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FillingStore(room=0)
    async with Engine(config(), store=store, clock=FakeClock(T0)) as engine:
        with caplog.at_level("WARNING", logger="recoverkit"):
            assert engine.track(view("a"))  # in the inbox: the store's state is not known yet
            await engine.flush()  # the drain fails: "a" is counted, not silently gone
            assert engine.journal.refusing
            assert [engine.track(view(f"b{i}")) for i in range(3)] == [False, False, False]
            stats = engine.statistics()
            assert (stats.events_accepted, stats.events_overflow) == (0, 4)
            store.room = None  # space again
            assert engine.track(view("c"))  # journaled before it returned, which clears the flag
            assert not engine.journal.refusing and engine.statistics().events_accepted == 1
            assert engine.track(view("d"))  # and back to the inbox
            assert [raw for raw, _ in engine.journal.pending] == [view("d")]
        events = [getattr(record, "event", None) for record in caplog.records]
        assert "journal_overflow" in events or "journal_append_failed" in events
        assert "journal_writable_again" in events
