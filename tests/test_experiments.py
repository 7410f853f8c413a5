"""Experiments are recorded: every routed cart's group (treatment or holdout) and A/B variants reach the store,
once per cart and flow, so that uplift against the holdout can be measured later."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import T0, abandoned
from recoverkit import Config, Engine, EventClock, FakeClock, MemoryChannel, MemoryStore, SQLiteStore
from recoverkit.config import Condition, Flow, FlowStep, StoreConfig, Variant
from recoverkit.facts import Assignment
from test_route import RouteRun, contact, scored


def many_carts(n: int, **cart: Any) -> list[Any]:
    return [scored(abandoned(cart_key=f"cart-{i}", **cart)) for i in range(n)]


def assignments(run: RouteRun) -> list[Assignment]:
    return [x for x in run.out if type(x) is Assignment]


# -- route: what is assigned ------------------------------------------------------------------------------------


def test_every_routed_cart_gets_one_assignment_and_only_treatment_carts_get_messages() -> None:
    config = Config(flows=[Flow(name="f", holdout=0.3, steps=[FlowStep(delay=0)])])
    run = RouteRun(config).feed(contact(), *many_carts(500))
    by_cart = {a.cart_key: a for a in assignments(run)}
    assert len(by_cart) == len(assignments(run)) == 500
    messaged = {m.cart.cart_key for m in run.messages()}
    assert messaged == {k for k, a in by_cart.items() if a.group == "treatment"}
    held = [a for a in by_cart.values() if a.group == "holdout"]
    assert held and all(a.scope == "flow" and a.flow == "f" for a in held)
    assert len(held) == run.stage.holdout["f"]


def test_an_assignment_carries_what_the_engine_knew_when_it_decided() -> None:
    run = RouteRun(Config(flows=[Flow(name="f", steps=[FlowStep(delay=0)])])).feed(
        contact(), scored(abandoned(cart_key="c-9", at=60, value=4990, currency="EUR"))
    )
    (assignment,) = assignments(run)
    assert (assignment.cart_key, assignment.flow, assignment.group) == ("c-9", "f", "treatment")
    assert assignment.scope is None
    # (the helper's `at` counts from T0)
    assert (assignment.assigned_at, assignment.value, assignment.currency) == (T0 + 60, 4990, "EUR")
    assert assignment.contact_key and assignment.trigger == "inactivity" and 0 <= assignment.score <= 1


def test_the_global_holdout_is_drawn_among_carts_a_flow_would_take() -> None:
    # Only carts of at least 50.00 enter the flow: the others are not "held out", they were never eligible,
    # and counting them in the control group would compare unlike carts.
    big_carts = Condition(min_value=Decimal(50))
    config = Config(holdout=0.5, flows=[Flow(name="big", when=big_carts, steps=[FlowStep(delay=0)])])
    small = [scored(abandoned(cart_key=f"small-{i}", value=1000)) for i in range(200)]
    big = [scored(abandoned(cart_key=f"big-{i}", value=9000)) for i in range(200)]
    run = RouteRun(config).feed(contact(), *small, *big)
    recorded = assignments(run)
    assert {a.cart_key for a in recorded} == {f"big-{i}" for i in range(200)}
    held = [a for a in recorded if a.group == "holdout"]
    assert all(a.scope == "global" and a.flow == "big" for a in held)
    assert 70 < len(held) < 130 and run.stage.holdout["*"] == len(held) and run.stage.unrouted == 200


def test_variants_of_every_step_are_recorded_on_the_assignment_and_match_the_messages() -> None:
    variants = [Variant(name="a"), Variant(name="b", template="bold")]
    steps = [FlowStep(delay=0, variants=variants), FlowStep(delay=60), FlowStep(delay=120, variants=variants)]
    flow = Flow(name="f", steps=steps)
    run = RouteRun(Config(flows=[flow])).feed(contact(), *many_carts(200))
    by_cart = {a.cart_key: a for a in assignments(run)}
    for message in run.messages():
        recorded = by_cart[message.cart.cart_key].variants
        assert set(recorded) == {"0", "2"}
        assert recorded.get(str(message.step)) == message.variant
    assert {a.variants["0"] for a in by_cart.values()} == {"a", "b"}


@settings(max_examples=30, deadline=None)
@given(share=st.floats(min_value=0.0, max_value=1.0), seed=st.integers(0, 2**31), n=st.integers(1, 60))
def test_holdout_carts_are_never_messaged_and_assignment_is_deterministic(share: float, seed: int, n: int) -> None:
    config = Config(seed=seed, holdout=share, flows=[Flow(name="f", holdout=share / 2, steps=[FlowStep(delay=0)])])
    first = RouteRun(config).feed(contact(), *many_carts(n))
    again = RouteRun(config).feed(contact(), *many_carts(n))
    assert assignments(first) == assignments(again)
    held = {a.cart_key for a in assignments(first) if a.group == "holdout"}
    assert not held & {m.cart.cart_key for m in first.messages()}


# -- the store: written once, kept, forgotten ---------------------------------------------------------------------


def experiment_config(**overrides: Any) -> Config:
    fields: dict[str, Any] = {
        "abandon_after": 600,
        "holdout": 0.5,
        "store": StoreConfig(lease_ttl=1.0),  # a killed owner's lease lapses within a second
        "flows": [Flow(name="f", steps=[FlowStep(delay=0, variants=[Variant(name="a"), Variant(name="b")])])],
    }
    fields.update(overrides)
    return Config(**fields)


def shopper(i: int, t: float = T0) -> list[dict[str, Any]]:
    session = f"s{i}"
    return [
        {"event": "identify", "session_id": session, "customer_id": f"c{i}", "email": f"c{i}@example.com", "ts": t},
        {"event": "consent", "session_id": session, "granted": ["email"], "ts": t},
        {"event": "add_to_cart", "session_id": session, "ts": t, "currency": "EUR",
         "items": [{"item_id": "A", "price": "25.00"}]},
    ]  # fmt: skip


@pytest.mark.anyio
async def test_flush_returns_once_every_routed_cart_is_recorded_in_the_store() -> None:
    clock = FakeClock(T0)
    channel = MemoryChannel()
    store = MemoryStore()
    async with Engine(experiment_config(), channels={"email": channel}, clock=clock, store=store) as engine:
        for i in range(40):
            for event in shopper(i):
                engine.track(event)
        clock.advance(601)
        await engine.flush()
        recorded = store.assignments()
    assert len(recorded) == 40 == len({a.cart_key for a in recorded})
    treated = {a.cart_key for a in recorded if a.group == "treatment"}
    assert treated == {m.cart.cart_key for m in channel.sent}
    assert 0 < len(treated) < 40  # both groups are there
    sent_variants = {m.cart.cart_key: m.variant for m in channel.sent}
    assert all(a.variants["0"] == sent_variants[a.cart_key] for a in recorded if a.group == "treatment")


@pytest.mark.anyio
async def test_assignments_survive_a_restart_and_are_not_written_twice(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    clock = FakeClock(T0)
    config = experiment_config()
    async with Engine(config, channels={"email": MemoryChannel()}, clock=clock, store=db) as engine:
        for i in range(10):
            for event in shopper(i):
                engine.track(event)
        clock.advance(601)
        await engine.flush()
    # A second engine on the same file replays nothing new: the rows stay as they were.
    async with Engine(config, channels={"email": MemoryChannel()}, clock=clock, store=db) as engine:
        clock.advance(60)
        await engine.flush()
    with SQLiteStore(db) as store:
        rows = store.assignments()
        assert len(rows) == 10
        assert store.record_facts(rows) == 0  # a deterministic re-emission is ignored


@pytest.mark.slow
def test_assignments_routed_before_a_kill_are_in_the_store_or_the_checkpoint(tmp_path: Path) -> None:
    """A worker is SIGKILLed after its pipeline routed carts whose assignments it had not written yet, and after a
    checkpoint trimmed their events from the journal; the next engine on the file writes them from the checkpoint,
    and ends up with every assignment exactly once."""
    db = tmp_path / "state.db"
    script = textwrap.dedent(
        f"""
        import os, signal, anyio, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_experiments import experiment_config, shopper
        from recoverkit import Engine, FakeClock, MemoryChannel

        async def main():
            clock = FakeClock({T0!r})
            engine = Engine(experiment_config(), channels={{"email": MemoryChannel()}}, clock=clock, store={str(db)!r})
            async with engine:
                for i in range(30):
                    await engine.submit_many(shopper(i))
                clock.advance(601)
                await engine.flush()
                await engine.checkpoint()
                for i in range(30, 60):
                    await engine.submit_many(shopper(i, t={T0 + 601!r}))
                engine.dispatch._write_facts = lambda: None  # the crash comes before these are written
                clock.advance(601)
                await engine.flush()
                await engine.checkpoint()  # trims the journal: now only the checkpoint holds them
                os.kill(os.getpid(), signal.SIGKILL)

        anyio.run(main)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    with SQLiteStore(db) as store:
        assert len(store.assignments()) == 30  # the second half never reached the store

    async def recover() -> None:
        clock = FakeClock(T0 + 1300)
        async with Engine(experiment_config(), channels={"email": MemoryChannel()}, clock=clock, store=db) as engine:
            with anyio.fail_after(30):
                while not engine.is_owner:  # the dead worker's lease has to lapse first (real time)
                    await anyio.sleep(0.05)
            await engine.flush()

    anyio.run(recover)
    with SQLiteStore(db) as store:
        rows = store.assignments()
    assert sorted(a.cart_key for a in rows) == sorted(f"s{i}" for i in range(60))  # each exactly once


@pytest.mark.anyio
async def test_forgetting_a_customer_pseudonymises_their_assignment_and_keeps_the_count() -> None:
    clock = FakeClock(T0)
    store = MemoryStore()
    async with Engine(experiment_config(), channels={"email": MemoryChannel()}, clock=clock, store=store) as engine:
        for i in range(4):
            for event in shopper(i):
                engine.track(event)
        clock.advance(601)
        await engine.flush()
        exported = engine.export("c1")
        assert [a["cart_key"] for a in exported["store"][0]["assignments"]] == ["s1"]
        assert await engine.forget("c1") is True
        rows = store.assignments()
    assert len(rows) == 4 and "c1" not in {a.contact_key for a in rows}


@pytest.mark.anyio
async def test_retention_purges_assignments_with_the_ledger() -> None:
    store = MemoryStore()
    old = Assignment(cart_key="old", flow="f", group="holdout", contact_key="c", assigned_at=1.0, value=1)
    store.record_facts([old])
    async with Engine(experiment_config(), channels={"email": MemoryChannel()}, store=store) as engine:
        report = await engine.purge()
    assert report.facts == 1 and store.assignments() == []


@pytest.mark.anyio
async def test_retention_ages_facts_on_the_engine_clock_so_a_replay_of_old_data_keeps_them() -> None:
    store = MemoryStore()
    day = 86_400.0
    store.record_facts([
        Assignment(cart_key="recent", flow="f", group="holdout", contact_key="c", assigned_at=T0 - 10 * day, value=1),
        Assignment(cart_key="ancient", flow="f", group="holdout", contact_key="c", assigned_at=T0 - 100 * day, value=1),
    ])  # fmt: skip
    channels = {"email": MemoryChannel()}
    async with Engine(experiment_config(), channels=channels, clock=EventClock(), store=store) as engine:
        await engine.submit({"event": "page_view", "session_id": "s", "ts": T0})
        await engine.flush(end_of_input=True)  # purges at the replay's last hour: "now" is its time, not today's
        kept = [a.cart_key for a in store.assignments()]
        report = await engine.purge()
    assert kept == ["recent"]
    assert report.facts == 0 and [a.cart_key for a in store.assignments()] == ["recent"]
