"""forget() and export(): erasure everywhere a customer's data sits, on a real SQLite file."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest

from helpers import T0
from recoverkit import Config, Engine, FakeClock, Flow, FlowStep, MemoryChannel
from recoverkit.config import StoreConfig
from recoverkit.errors import PermanentDeliveryError
from recoverkit.store import MemoryStore

pytestmark = pytest.mark.anyio

EMAIL = "ada@example.invalid"


def config(db: Path | None) -> Config:
    steps = [FlowStep(delay=0, channel="email"), FlowStep(delay=3600, channel="email")]
    return Config(
        abandon_after=600,
        flows=[Flow(name="f", steps=steps)],
        store=StoreConfig(path=str(db) if db else None),
    )


def customer_events(session: str, customer: str = "c1", t: float = 0.0) -> list[dict[str, Any]]:
    base = {"session_id": session, "ts": T0 + t}
    return [
        {"event": "identify", **base, "customer_id": customer, "email": EMAIL},
        {"event": "consent", **base, "customer_id": customer, "granted": ["email"]},
        {
            "event": "add_to_cart",
            **base,
            "customer_id": customer,
            "currency": "EUR",
            "items": [{"item_id": "A", "price": "10.00", "quantity": 1}],
        },
    ]


def file_rows(db: Path) -> bytes:
    """Every journal row and the checkpoint, as the file holds them."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT data FROM journal").fetchall()
        rows += conn.execute("SELECT state FROM checkpoint").fetchall()
    return b"".join(bytes(row[0]) for row in rows)


async def test_forget_erases_the_customer_from_the_pipeline_the_journal_and_the_store(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    clock = FakeClock(T0)
    failing = MemoryChannel()
    failing.fail_next(1, PermanentDeliveryError("mailbox does not exist"))  # step 0 becomes a dead letter
    # A fixed owner name: the default one ends in random hex, which can contain "c1" and be found below.
    async with Engine(config(db), channels={"email": failing}, clock=clock, owner="worker-a") as engine:
        for event in customer_events("s1"):
            engine.track(event)
        clock.advance(601)
        await engine.flush()
        await engine.checkpoint()
        engine.track(customer_events("s2")[2])  # more activity after the checkpoint: in the journal only
        await engine.flush()
        assert len(engine.pending_messages()) == 1
        assert len(engine.dispatch.dead_letters) == 1
        assert EMAIL.encode() in file_rows(db)

        assert await engine.forget("c1") is True

        assert engine.pending_messages() == []
        assert engine.sessionize.carts_of("c1") == []
        assert engine.route.contact_of("c1") is None
        assert len(engine.dispatch.dead_letters) == 0
        assert EMAIL.encode() not in file_rows(db)
        assert b"c1" not in file_rows(db)
        exported = engine.export("c1")
        assert exported["carts"] == [] and exported["contact"] is None and exported["pending_messages"] == []
        assert exported["store"][0]["dead_letters"] == [] and exported["store"][0]["suppressed"] is True
        assert engine.store.ledger()[0].contact_key != "c1"  # pseudonymised, still there: never twice

        # The customer comes back: their events are new data, but they are never written to again.
        for event in customer_events("s3", t=700):
            engine.track(event)
        clock.advance(1200)
        await engine.flush()
        assert engine.statistics().messages["suppressed"] == 1
    assert failing.keys() == []


async def test_a_forget_received_by_another_worker_is_carried_out_by_the_owner() -> None:
    store = MemoryStore()
    clock = FakeClock(T0)
    owner = Engine(config(None), channels={"email": MemoryChannel()}, clock=clock, store=store)
    worker = Engine(config(None), channels={"email": MemoryChannel()}, clock=clock, store=store)
    async with owner, worker:
        for event in customer_events("s1"):
            owner.track(event)
        await owner.flush()
        assert owner.sessionize.carts_of("c1") != []
        assert await worker.forget("c1") is False  # journaled for the owner
        await owner.flush()
        assert owner.sessionize.carts_of("c1") == []
        assert owner.route.contact_of("c1") is None
        assert store.is_suppressed("c1")


async def test_export_returns_what_the_engine_and_the_store_hold_as_json() -> None:
    clock = FakeClock(T0)
    async with Engine(config(None), channels={"email": MemoryChannel()}, clock=clock) as engine:
        for event in customer_events("s1"):
            engine.track(event)
        clock.advance(601)
        await engine.flush()
        exported = engine.export("c1")
    assert exported["complete"] is True
    assert [cart["session_id"] for cart in exported["carts"]] == ["s1"]
    assert exported["contact"]["email"] == EMAIL
    assert exported["contact"]["consent"] == {"email": True}
    assert [m["key"] for m in exported["pending_messages"]] == ["s1/f/1"]
    assert [e["key"] for e in exported["store"][0]["ledger"]] == ["s1/f/0"]
    msgspec.json.encode(exported)  # JSON-ready


async def test_a_forget_record_cannot_be_forged_through_track() -> None:
    clock = FakeClock(T0)
    async with Engine(config(None), channels={"email": MemoryChannel()}, clock=clock) as engine:
        for event in customer_events("s1"):
            engine.track(event)
        engine.track(b'\x00recoverkit:forget\x00["c1", 1767225600.0]')
        await engine.flush()
        assert engine.statistics().events_invalid == {"malformed_json": 1}
        assert engine.sessionize.carts_of("c1") != []


@pytest.mark.parametrize("bad", ["", "   ", None, 42])
async def test_forget_and_export_refuse_an_empty_or_non_string_id(bad: Any) -> None:
    async with Engine(config(None), channels={"email": MemoryChannel()}, clock=FakeClock(T0)) as engine:
        with pytest.raises(ValueError, match="customer id"):
            await engine.forget(bad)
        with pytest.raises(ValueError, match="customer id"):
            engine.export(bad)
