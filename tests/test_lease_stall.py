"""A stall longer than the pipeline lease (a synchronous call blocking the loop, a long GC pause, CPU starvation)
on a real SQLite file: claims refused as ``not_owner`` never drop a message. When nobody else took the lease
meanwhile the engine carries on (the refused claims are retried, nothing is restored); when another owner held it,
the engine restores from the checkpoint; either way every message goes out exactly once. A restore racing
``flush()`` and ``close()`` lets both return."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from helpers import T0
from recoverkit import ChannelPolicy, Config, Engine, FakeClock, Flow, FlowStep, MemoryChannel
from recoverkit.channels.base import Message
from recoverkit.config import StoreConfig
from recoverkit.store import PIPELINE_LEASE, Checkpoint, LeaseTaken, SQLiteStore

pytestmark = pytest.mark.anyio

CARTS = 24
#: Past the 1 s lease (the shortest allowed), so that it lapses while the loop is blocked.
STALL = 1.3


@pytest.fixture
def anyio_backend() -> object:
    # About wall-clock leases, not the loop's flavour: one backend keeps the stalls' seconds to one run.
    return ("asyncio", {"use_uvloop": False})


def config(db: Path) -> Config:
    return Config(
        abandon_after=600,
        flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="hook")])],
        # One send at a time: the sends after the stall each make their own claim, after the lease lapsed.
        channels={"hook": ChannelPolicy(address="none", requires_consent=False, concurrency=1, timeout=5)},
        store=StoreConfig(path=str(db), lease_ttl=1),
    )


def add(session: str) -> dict[str, Any]:
    return {
        "event": "add_to_cart", "session_id": session, "ts": T0, "currency": "EUR",
        "items": [{"item_id": "A", "price": "10.00", "quantity": 1}],
    }  # fmt: skip


class SlowRenewals(SQLiteStore):
    """A file whose lease renewals take ``delay`` seconds (a slow or busy disk): after a stall, claims made while
    the renewal is on its way are refused as ``not_owner``, every time."""

    delay = 0.3

    def take_lease(self, name: str, owner: str, *, ttl: float, now: float) -> LeaseTaken | None:
        time.sleep(self.delay)  # in the store's worker thread, not on the loop
        return super().take_lease(name, owner, ttl=ttl, now=now)


class SlowRestore(SQLiteStore):
    """A file whose checkpoint takes ``delay`` seconds to load: a take-over is under way long enough for
    ``flush()`` and ``close()`` to be called while it is."""

    delay = 0.5

    def load_checkpoint(self) -> Checkpoint | None:
        time.sleep(self.delay)  # in the store's worker thread, not on the loop
        return super().load_checkpoint()


def steal(db: Path, *, ahead: float = 0.0) -> None:
    """Another worker takes the (expired) lease and gives it back, as one that took over and closed would.

    ``ahead`` seconds on its clock make the engine's lease look expired to it without stalling the engine."""
    thief = SQLiteStore(db)
    try:
        deadline = time.monotonic() + 5
        while not thief.acquire_lease(PIPELINE_LEASE, "thief", ttl=1, now=time.time() + ahead):
            assert time.monotonic() < deadline, "the engine's lease never expired"
            time.sleep(0.05)
        thief.release_lease(PIPELINE_LEASE, "thief")
    finally:
        thief.close()


async def stall_once(db: Path, store: SQLiteStore | None = None, *, stolen: bool = False) -> None:
    """Run CARTS messages through an engine on ``db`` whose adapter blocks the loop past the lease once (during
    which another worker takes the lease and gives it back, if ``stolen``), then check that each was sent exactly
    once and is ``sent`` in the ledger, and that the engine restored only if the lease was stolen."""
    stalls: list[str] = []

    def send(message: Message) -> None:
        # Blocks the event loop, as a synchronous SMTP call inside an async adapter would.
        if not stalls and message.cart.session_id == "s1":
            stalls.append(message.key)
            time.sleep(STALL)
            if stolen:
                steal(db)

    hook = MemoryChannel(handler=send)
    clock = FakeClock(T0)
    with anyio.fail_after(10):
        async with Engine(config(db), channels={"hook": hook}, clock=clock, store=store) as engine:
            for i in range(CARTS):
                engine.track(add(f"s{i}"))
            await engine.flush()
            await engine.checkpoint()
            clock.advance(600)
            await engine.flush()
            # The engine checked its lease (and restored if it was stolen); what it held back goes out now.
            deadline = time.monotonic() + 5
            while len(set(hook.keys())) < CARTS and time.monotonic() < deadline:
                clock.advance(1)
                await engine.flush()
                await anyio.sleep(0.05)
            stats = engine.statistics()
    reader = SQLiteStore(db)
    try:
        ledger = {e.key: e.state for e in reader.ledger()}
    finally:
        reader.close()
    keys = {f"s{i}/f/0" for i in range(CARTS)}
    assert stalls == ["s1/f/0"]
    assert sorted(hook.keys()) == sorted(set(hook.keys()))  # none twice
    assert set(hook.keys()) == keys  # none lost
    assert ledger == dict.fromkeys(keys, "sent")
    assert stats.lease_lapses == (1 if stolen else 0)
    assert stats.restores == (2 if stolen else 1)  # the start's take-over, and the restore after the theft


@pytest.mark.slow
async def test_a_stall_past_the_lease_with_the_lease_still_ours_retries_and_does_not_restore(tmp_path: Path) -> None:
    await stall_once(tmp_path / "rk.db")


@pytest.mark.slow
async def test_a_stall_while_another_worker_held_the_lease_restores_and_drops_no_message(tmp_path: Path) -> None:
    await stall_once(tmp_path / "rk.db", stolen=True)


@pytest.mark.slow
async def test_claims_refused_after_a_stall_are_held_and_sent_after_the_restore(tmp_path: Path) -> None:
    db = tmp_path / "rk.db"
    store = SlowRenewals(db)
    try:
        await stall_once(db, store)
    finally:
        store.close()


async def until(engine: Engine, lapses: int) -> None:
    with anyio.fail_after(5):
        while engine.statistics().lease_lapses < lapses:
            await anyio.sleep(0.01)


@pytest.mark.slow
async def test_flush_and_close_during_a_restore_return_and_send_each_message_once(tmp_path: Path) -> None:
    db = tmp_path / "rk.db"
    store = SlowRestore(db)
    gate, started = anyio.Event(), anyio.Event()

    async def send(message: Message) -> None:
        if message.cart.session_id == "s0" and not gate.is_set():
            started.set()
            await gate.wait()  # in flight, with flush() waiting for it, while the lease is stolen

    hook = MemoryChannel(handler=send)
    clock = FakeClock(T0)
    flushed: list[str] = []
    try:
        with anyio.fail_after(20):
            async with Engine(config(db), channels={"hook": hook}, clock=clock, store=store) as engine:
                for i in range(CARTS):
                    engine.track(add(f"s{i}"))
                await engine.flush()
                await engine.checkpoint()
                clock.advance(600)

                async def flush(name: str) -> None:
                    await engine.flush()
                    flushed.append(name)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(flush, "waiting on a send")
                    await started.wait()
                    await anyio.to_thread.run_sync(functools.partial(steal, db, ahead=2))
                    await until(engine, 1)  # the engine saw the theft; the restore is on its way (a slow load)
                    tg.start_soon(flush, "called during the restore")
                    await anyio.sleep(0.1)
                    gate.set()
                assert sorted(flushed) == ["called during the restore", "waiting on a send"]
                deadline = time.monotonic() + 5
                while len(set(hook.keys())) < CARTS and time.monotonic() < deadline:
                    clock.advance(1)
                    await engine.flush()
                assert engine.statistics().restores == 2
                # Again, and close at once: the take-over races closing, which wins without an error.
                await anyio.to_thread.run_sync(functools.partial(steal, db, ahead=2))
                await until(engine, 2)
            stats = engine.statistics()
    finally:
        store.close()
    reader = SQLiteStore(db)
    try:
        ledger = {e.key: e.state for e in reader.ledger()}
        holder = reader.lease_holder(PIPELINE_LEASE, now=time.time())
    finally:
        reader.close()
    keys = {f"s{i}/f/0" for i in range(CARTS)}
    assert sorted(hook.keys()) == sorted(keys)  # each once, none lost
    assert ledger == dict.fromkeys(keys, "sent")  # s0 was marked unknown by the restore, then finished as sent
    assert stats.lease_lapses == 2 and stats.restores == 2  # the second take-over was abandoned for closing
    assert holder is None  # given back at close, so that another worker need not wait for it to expire


@pytest.mark.slow
async def test_flush_returns_once_the_claims_refused_in_a_stall_are_sent(tmp_path: Path) -> None:
    db = tmp_path / "rk.db"
    stalls: list[str] = []

    def send(message: Message) -> None:
        if not stalls and message.cart.session_id == "s1":
            stalls.append(message.key)
            time.sleep(STALL)  # the sends behind this one claim after the lease expired: refused and held

    hook = MemoryChannel(handler=send)
    clock = FakeClock(T0)
    store = SlowRenewals(db)  # claims made while the renewal after the stall is on its way are refused
    try:
        with anyio.fail_after(10):
            async with Engine(config(db), channels={"hook": hook}, clock=clock, store=store) as engine:
                for i in range(CARTS):
                    engine.track(add(f"s{i}"))
                await engine.flush()
                clock.advance(600)
                await engine.flush()  # one flush: it waits for the lease check and the held messages' sends
                sent = sorted(hook.keys())
                stats = engine.statistics()
    finally:
        store.close()
    assert stats.messages.get("not_owner", 0) > 0  # claims were refused, so the stall did lapse the lease
    assert sent == sorted(f"s{i}/f/0" for i in range(CARTS))
