"""forget() and export(): erasure everywhere a customer's data sits, on a real SQLite file."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from helpers import T0
from recoverkit import Config, Engine, FakeClock, Flow, FlowStep, MemoryChannel
from recoverkit.config import StoreConfig
from recoverkit.errors import PermanentDeliveryError
from recoverkit.store import MemoryStore, SQLiteStore

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


PHONE = "+4915112345678"


def on_disk(directory: Path) -> bytes:
    """Every byte of every file the engine keeps: the store, its -wal and -shm, the dead-letter file."""
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file())


async def test_while_the_engine_runs_a_forget_leaves_no_address_in_any_file(tmp_path: Path) -> None:
    db, letters = tmp_path / "state.db", tmp_path / "dead.jsonl"
    clock = FakeClock(T0)
    failing = MemoryChannel()
    failing.fail_next(1, PermanentDeliveryError("mailbox does not exist"))
    async with Engine(
        config(db), channels={"email": failing}, clock=clock, owner="worker-a", dead_letters=letters
    ) as engine:
        events = customer_events("s1")
        events[0]["phone"] = PHONE
        for event in events:
            engine.track(event)
        clock.advance(601)
        await engine.flush()
        await engine.checkpoint()
        assert len(engine.dispatch.dead_letters) == 1
        data = on_disk(tmp_path)
        assert EMAIL.encode() in data and PHONE.encode() in data

        assert await engine.forget("c1") is True

        data = on_disk(tmp_path)  # the engine still runs: nothing waits for it to close
        assert EMAIL.encode() not in data and PHONE.encode() not in data
        assert isinstance(engine.store, SQLiteStore) and engine.store.last_scrub is not None
        assert engine.store.last_scrub.wal_truncated


CONFIG_TOML = """
abandon_after = 600
[[flows]]
name = "f"
steps = [{ delay = 0, channel = "email" }, { delay = 3600, channel = "email" }]
"""


@pytest.mark.slow
async def test_the_forget_command_erases_every_file_and_says_exactly_what_went(tmp_path: Path) -> None:
    db, letters, toml = tmp_path / "state.db", tmp_path / "dead.jsonl", tmp_path.parent / f"{tmp_path.name}.toml"
    toml.write_text(CONFIG_TOML)
    # On the wall clock less an abandonment, as the command runs on the wall clock: the cart is still open there.
    start = time.time() - 601
    clock = FakeClock(start)
    failing = MemoryChannel()
    failing.fail_next(1, PermanentDeliveryError("mailbox does not exist"))
    async with Engine(
        config(db), channels={"email": failing}, clock=clock, owner="shop", dead_letters=letters
    ) as engine:
        events = customer_events("s1", t=start - T0)
        events[0]["phone"] = PHONE
        for event in events:
            engine.track(event)
        clock.advance(601)
        await engine.flush()  # step 0 dead-lettered (store and file), step 1 pending
    assert EMAIL.encode() in letters.read_bytes()
    # The shop's engine is stopped: the command takes the lease and carries the forget out itself.
    done = subprocess.run(
        [sys.executable, "-m", "recoverkit", "forget", str(db), "c1", "--config", str(toml), "--dead-letters",
         str(letters)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "erased from the engine and the store:",
        "  carts (with their events in the journal): 1",
        "  contact details and consent: 1",
        "  pending messages: 1",
        "  dead letters in the store: 1",
        "  purchase records: 0",
        "  kept under a keyed hash (never the customer's keys): ledger entries 1, codes 0, facts 2",
        f"  dead letters in {letters}: 1",
        "  WAL: checkpointed into the main file and truncated; free pages zeroed",
    ]
    data = on_disk(tmp_path)
    assert EMAIL.encode() not in data and PHONE.encode() not in data


@pytest.mark.slow
async def test_the_forget_command_without_the_dead_letter_file_says_it_did_not_search_it(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    async with Engine(config(db), channels={"email": MemoryChannel()}, clock=FakeClock(T0)) as engine:
        engine.track(customer_events("s1")[0])
        await engine.flush()
    done = subprocess.run(
        [sys.executable, "-m", "recoverkit", "forget", str(db), "c1"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "  dead-letter file: none given (--dead-letters FILE), not searched" in done.stdout.splitlines()
    assert "dead letters are gone" not in done.stdout
