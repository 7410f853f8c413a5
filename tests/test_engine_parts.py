"""The engine's parts: the one store runner, purchases recorded ahead for the claims, ingest owning its way in,
and ownership holding the one lease fact ingest reads."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from recoverkit import Config, Engine, EventClock, FakeClock, MemoryChannel
from recoverkit._purchases import Purchases, purchase_keys
from recoverkit._store_runner import StoreRunner
from recoverkit.config import StoreConfig
from recoverkit.events import Purchase
from recoverkit.store import MemoryStore, SQLiteStore

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def cart(session: str, **fields: Any) -> dict[str, Any]:
    items = [{"item_id": "SKU-1", "price": "9.99"}]
    return {"event": "add_to_cart", "session_id": session, "items": items, **fields}


def bought(session: str, **fields: Any) -> Purchase:
    return Purchase(session_id=session, ts=T0, **fields)


# -- the store runner -------------------------------------------------------------------------------------------


async def test_the_store_runner_calls_a_store_in_memory_on_the_loops_thread() -> None:
    runner = StoreRunner(MemoryStore())
    assert runner.inline
    assert await runner(threading.get_ident) == threading.get_ident()


async def test_the_store_runner_calls_a_store_on_disk_in_a_worker_thread(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s.db") as store:
        runner = StoreRunner(store)
        assert not runner.inline
        assert await runner(threading.get_ident) != threading.get_ident()


async def test_the_store_runner_counts_and_times_every_call_also_a_failing_one() -> None:
    runner = StoreRunner(MemoryStore())

    def fails() -> None:
        raise ValueError("no")

    await runner(lambda a, *, b: a + b, 1, b=2)
    with pytest.raises(ValueError):
        await runner(fails)
    assert runner.calls == 2 and runner.seconds >= 0.0


async def test_the_engine_and_its_stages_share_one_store_runner_and_report_its_calls() -> None:
    engine = Engine(channels={"email": MemoryChannel()}, clock=FakeClock(T0))
    assert engine.dispatch._call is engine.call_store  # dispatch reaches the store the same way
    async with engine:
        await engine.submit(cart("s1"))
        await engine.flush()
        stats = engine.statistics()
    assert 0 < stats.store_calls <= engine.call_store.calls  # closing makes more (the last checkpoint)


# -- purchases for the claims -----------------------------------------------------------------------------------


def test_a_purchase_is_keyed_by_its_cart_id_else_its_session_and_by_its_contact() -> None:
    assert purchase_keys(bought("s1")) == ("s1", "session:s1")
    assert purchase_keys(bought("s1", cart_id="c9", customer_id="u1")) == ("c9", "u1")


def test_purchases_are_recorded_ahead_only_when_asked_to() -> None:
    store = MemoryStore()
    Purchases(store, ahead=False).record([bought("s1")])
    assert store.export("session:s1").purchased_at is None
    Purchases(store, ahead=True).record([bought("s1")])
    assert store.export("session:s1").purchased_at is not None


async def test_live_the_journal_records_a_purchase_before_the_pipeline_reads_it() -> None:
    store = MemoryStore()
    async with Engine(channels={"email": MemoryChannel()}, clock=FakeClock(T0), store=store, pipeline=True) as live:
        live.track({"event": "purchase", "session_id": "s1", "ts": T0})
        await live.ingest.journal_inbox()  # journaled, not yet read by the stages
        assert store.export("session:s1").purchased_at is not None


async def test_a_replay_in_event_time_leaves_purchases_to_the_pipeline() -> None:
    store = MemoryStore()
    async with Engine(channels={"email": MemoryChannel()}, clock=EventClock(), store=store) as replay:
        await replay.submit({"event": "purchase", "session_id": "s1", "ts": T0})
        assert store.export("session:s1").purchased_at is None


# -- ingest owns its way in -------------------------------------------------------------------------------------


async def test_ingest_journals_the_inbox_in_a_process_that_does_not_run_the_pipeline(tmp_path: Path) -> None:
    cfg = Config(store=StoreConfig(path=str(tmp_path / "s.db")))
    async with Engine(cfg, channels={"email": MemoryChannel()}, clock=FakeClock(T0), pipeline=False) as writer:
        writer.track(cart("s1"))
        await writer.ingest.journal_inbox()
        assert not writer.journal.pending and not writer.ingest.active
        assert writer.statistics().events_accepted == 1
    with SQLiteStore(tmp_path / "s.db") as store:
        assert store.last_seq() == 1


async def test_ingest_reads_while_this_process_holds_the_lease_and_stops_when_ownership_stands_down() -> None:
    async with Engine(channels={"email": MemoryChannel()}, clock=FakeClock(T0)) as engine:
        assert engine.is_owner and engine.ingest.active
        engine._ownership.stand_down(None)
        assert not engine.is_owner and not engine.ingest.active


async def test_a_stage_hands_the_loop_on_between_steps_of_a_large_batch() -> None:
    # Thousands of timers falling due at once fan out into one batch; handled whole, each stage held the event
    # loop for hundreds of milliseconds (the lease's renewal waited its turn). Handled in steps of HANDLE_STEP, in
    # order, with the loop free between them; a batch of ingest's size goes whole.
    import anyio

    from recoverkit._pipeline import HANDLE_STEP, Batch, Stage

    ticks: list[int] = []

    class Doubler(Stage):
        name = "doubler"

        def handle(self, items: list[Any], out: list[Any]) -> None:
            ticks.append(len(items))
            out.extend(2 * i for i in items)

        def snapshot(self) -> bytes:
            return b""

        def restore(self, state: bytes | None) -> None:
            pass

    stage, seen = Doubler(), []

    async def other_task() -> None:
        while True:
            seen.append(len(ticks))
            await anyio.lowlevel.checkpoint()

    items = list(range(3 * HANDLE_STEP + 1))
    async with anyio.create_task_group() as tg:
        tg.start_soon(other_task)
        await anyio.lowlevel.checkpoint()
        await stage.process(Batch(items, 1.0, 0.0), None)
        await stage.process(Batch(list(range(256)), 2.0, 0.0), None)
        tg.cancel_scope.cancel()
    assert ticks == [HANDLE_STEP, HANDLE_STEP, HANDLE_STEP, 1, 256]
    assert {1, 2, 3} <= set(seen)  # the other task ran between the steps
    assert stage.received == len(items) + 256 and stage.emitted == len(items) + 256 and stage.watermark == 2.0


async def test_a_journal_in_memory_is_trimmed_in_steps_through_the_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    import recoverkit._ownership as ownership

    monkeypatch.setattr(ownership, "TRIM_STEP", 3)
    store = MemoryStore()
    trims: list[int] = []
    trim = store.trim_events
    monkeypatch.setattr(store, "trim_events", lambda through: trims.append(through) or trim(through))
    async with Engine(channels={"email": MemoryChannel()}, clock=FakeClock(T0), store=store) as engine:
        await engine.submit_many([cart(f"s{n}", ts=T0 + n) for n in range(10)])
        await engine.flush()
        position = await engine.checkpoint()
        assert position == 10 and trims == [3, 6, 9, 10]
        assert store.read_events(0, 100) == []  # everything through the checkpoint, nothing more
        await engine.submit_many([cart(f"t{n}", ts=T0 + 20 + n) for n in range(4)])
        await engine.flush()
        trims.clear()
        assert await engine.checkpoint() == 14 and trims == [13, 14]  # from the last checkpoint on
        assert store.read_events(0, 100) == []
