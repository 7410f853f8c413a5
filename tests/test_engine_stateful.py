"""The engine as a state machine: whatever the order of events, clock moves and restarts, no key is sent twice
and nothing is sent after a purchase the engine has seen.

Hypothesis drives a live engine (fake clock, an engine loop in a portal thread, a store shared across
restarts) with cart activity, identifications, purchases (own session, or another session of the same
customer), time passing and restarts (a clean close, or a "crash": the engine is abandoned after its last
checkpoint is put back, so that it restarts from older state). After every step it checks what the adapter
received.
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from helpers import T0
from recoverkit import Config, Engine, FakeClock, Flow, FlowStep
from recoverkit.channels.base import Message
from recoverkit.config import StoreConfig
from recoverkit.store import SQLiteStore

SESSIONS = ("s0", "s1", "s2")
CUSTOMERS = ("u0", "u1")
STEPS = [FlowStep(delay=0, channel="webhook"), FlowStep(delay=600, channel="webhook")]


class Recorder:
    """An adapter that notes every call with the clock's time."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[tuple[Message, float]] = []

    async def send(self, message: Message) -> None:
        self.calls.append((message, self.clock.now()))


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.db = Path(self.tmp.name) / "state.db"
        self.config = Config(
            abandon_after=300,
            session_timeout=300,
            recovery_window=3600,
            flows=[Flow(name="f", steps=STEPS)],
            store=StoreConfig(ledger_days=1),
        )
        self.clock = FakeClock(T0)
        self.recorder = Recorder(self.clock)
        self.store = SQLiteStore(self.db)
        self.portal_cm = start_blocking_portal(backend="asyncio")
        self.portal: BlockingPortal = self.portal_cm.__enter__()
        self.engine: Engine | None = None
        self.customer_of: dict[str, str] = {}
        # ("cart" | "contact", key, purchase time, adapter calls made before the engine had seen it)
        self.purchases: list[tuple[str, str, float, int]] = []
        self._open()

    def _open(self) -> None:
        engine = Engine(self.config, channels={"webhook": self.recorder}, clock=self.clock, store=self.store)
        # The engine's task group must live in one task of the portal's loop, from start to close.
        self.engine_cm = self.portal.wrap_async_context_manager(engine)
        self.engine_cm.__enter__()
        self.engine = engine

    def _close(self) -> None:
        self.engine_cm.__exit__(None, None, None)

    def _track(self, event: dict[str, Any]) -> None:
        assert self.engine is not None
        self.engine.track({"ts": self.clock.now(), **event})
        self.portal.call(self.engine.flush)

    # -- rules ------------------------------------------------------------------------------------------------

    @rule(session=st.sampled_from(SESSIONS), item=st.sampled_from(("A", "B")))
    def add_to_cart(self, session: str, item: str) -> None:
        line = {"item_id": item, "price": "10.00", "quantity": 1}
        self._track({"event": "add_to_cart", "session_id": session, "currency": "EUR", "items": [line]})

    @rule(session=st.sampled_from(SESSIONS), customer=st.sampled_from(CUSTOMERS))
    def identify(self, session: str, customer: str) -> None:
        self._track({"event": "identify", "session_id": session, "customer_id": customer})
        self.customer_of.setdefault(session, customer)

    @rule(session=st.sampled_from(SESSIONS), other_session=st.booleans())
    def purchase(self, session: str, other_session: bool) -> None:
        customer = self.customer_of.get(session)
        event: dict[str, Any] = {"event": "purchase", "session_id": session, "value": "10.00", "currency": "EUR"}
        if other_session and customer is not None:
            event["session_id"] = f"checkout-{session}"  # bought from another device, logged in
            event["customer_id"] = customer
        elif customer is not None:
            event["customer_id"] = customer
        before = len(self.recorder.calls)
        now = self.clock.now()
        self._track(event)  # returns once the engine has handled it
        if event["session_id"] == session:
            self.purchases.append(("cart", session, now, before))
        if customer is not None:
            self.purchases.append(("contact", customer, now, before))

    @rule(seconds=st.sampled_from((1.0, 60.0, 299.0, 301.0, 600.0, 3600.0)))
    def advance(self, seconds: float) -> None:
        assert self.engine is not None
        self.clock.advance(seconds)
        self.portal.call(self.engine.flush)

    @rule()
    def checkpoint(self) -> None:
        assert self.engine is not None
        self.portal.call(self.engine.checkpoint)

    @rule()
    def restart(self) -> None:
        self._close()
        self._open()

    @precondition(lambda self: self.store.load_checkpoint() is not None)
    @rule()
    def crash_back_to_the_last_checkpoint(self) -> None:
        # What a kill -9 leaves: the last checkpoint, the journal after it, the ledger as it is. The engine is
        # closed (so that its loop lets go of the store), then the checkpoint it wrote at close is put back.
        assert self.engine is not None
        saved = self.store.load_checkpoint()
        assert saved is not None
        journal = self.store.read_events(saved.position, 100_000)
        self._close()
        with contextlib.closing(sqlite3.connect(self.db)) as conn, conn:
            conn.execute("UPDATE checkpoint SET position = ?, state = ?", (saved.position, saved.state))
            conn.executemany(
                "INSERT OR IGNORE INTO journal (seq, data, accepted_at) VALUES (?, ?, ?)",
                [(e.seq, e.data, e.accepted_at) for e in journal],
            )
        self._open()

    # -- invariants -------------------------------------------------------------------------------------------

    @invariant()
    def no_key_is_sent_twice(self) -> None:
        keys = [m.key for m, _ in self.recorder.calls]
        assert len(keys) == len(set(keys)), keys

    @invariant()
    def nothing_is_sent_after_a_purchase_the_engine_has_seen(self) -> None:
        for index, (message, _) in enumerate(self.recorder.calls):
            started = message.cart.started_at
            for kind, key, bought_at, calls_before in self.purchases:
                mine = key == (message.cart.cart_key if kind == "cart" else message.recipient.contact_key)
                # A call made after the engine had handled the purchase, for a cart started before it.
                assert not (mine and started <= bought_at and index >= calls_before), (message.key, kind, key)

    def teardown(self) -> None:
        try:
            if self.engine is not None:
                self._close()
        finally:
            self.portal_cm.__exit__(None, None, None)
            self.store.close()
            self.tmp.cleanup()


@pytest.mark.slow
def test_the_engine_never_sends_a_key_twice_or_after_a_purchase_whatever_happens() -> None:
    run_state_machine_as_test(
        EngineMachine,
        settings=settings(
            max_examples=25, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck)
        ),
    )
