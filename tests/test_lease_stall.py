"""A stall longer than the pipeline lease (a synchronous call blocking the loop, a long GC pause, CPU starvation)
on a real SQLite file: claims refused as ``not_owner`` never drop a message; the engine notices that its lease
lapsed, restores from the checkpoint, and every message goes out exactly once or is in the ledger."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from helpers import T0
from recoverkit import ChannelPolicy, Config, Engine, FakeClock, Flow, FlowStep, MemoryChannel
from recoverkit.channels.base import Message
from recoverkit.config import StoreConfig
from recoverkit.store import SQLiteStore

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

    def acquire_lease(self, name: str, owner: str, *, ttl: float, now: float) -> bool:
        time.sleep(self.delay)  # in the store's worker thread, not on the loop
        return super().acquire_lease(name, owner, ttl=ttl, now=now)


async def stall_once(db: Path, store: SQLiteStore | None = None) -> None:
    """Run CARTS messages through an engine on ``db`` whose adapter blocks the loop past the lease once, then
    check that each was sent exactly once and is ``sent`` in the ledger."""
    stalls: list[str] = []

    def send(message: Message) -> None:
        # Blocks the event loop, as a synchronous SMTP call inside an async adapter would.
        if not stalls and message.cart.session_id == "s1":
            stalls.append(message.key)
            time.sleep(STALL)

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
            # The engine noticed the lapse and restored; what it held back goes out now.
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
    assert stats.lease_lapses == 1


@pytest.mark.slow
async def test_a_stall_past_the_lease_drops_no_message(tmp_path: Path) -> None:
    await stall_once(tmp_path / "rk.db")


@pytest.mark.slow
async def test_claims_refused_after_a_stall_are_held_and_sent_after_the_restore(tmp_path: Path) -> None:
    db = tmp_path / "rk.db"
    store = SlowRenewals(db)
    try:
        await stall_once(db, store)
    finally:
        store.close()
