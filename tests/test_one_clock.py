"""One clock: every time the engine records (outcomes, the ledger, dead letters, codes, facts, retention) is on the
engine's clock, so an event-time replay of a file records exactly the facts a live run would, every time.

In event time "now" is the watermark, and a send is instantaneous: a message handed over when the watermark
reached its due time was sent *at* its due time, however far the watermark had moved on by the time the
adapter answered (the input is read in chunks, and a chunk can move the watermark by days).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest

from recoverkit import Config, Engine, EventClock, FakeClock, Flow, FlowStep, MemoryChannel, MemoryStore
from recoverkit.analytics import load_facts, recovery
from recoverkit.channels.base import Message
from recoverkit.config import LinksConfig, OfferSpec
from recoverkit.errors import PermanentDeliveryError, TransientDeliveryError
from recoverkit.offers import CodeBook, redeem
from recoverkit.replay import replay
from recoverkit.store import SQLiteStore

pytestmark = pytest.mark.anyio

#: 2019-10-01T00:00:00Z: old data, years before the wall clock of any test run.
T2019 = 1_569_888_000.0
DAY = 86_400.0
SECRET = "one-clock-test-secret-" + "x" * 32

FLOW = Flow(
    name="cart-recovery",
    steps=[FlowStep(delay=900, channel="email", offer="ten"), FlowStep(delay=DAY, channel="email")],
)
CONFIG = Config(abandon_after=600, flows=[FLOW], offers={"ten": OfferSpec(kind="discount", name="10% off", percent=10)})


def line(kind: str, session: str, t: float, **fields: Any) -> bytes:
    return json.dumps({"event": kind, "session_id": session, "ts": T2019 + t, **fields}).encode()


def shopper(session: str, customer: str, t: float) -> list[bytes]:
    return [
        line("identify", session, t, customer_id=customer, email=f"{customer}@example.com"),
        line("consent", session, t, customer_id=customer, granted=["email"]),
        line("add_to_cart", session, t, currency="EUR", items=[{"item_id": "SKU-1", "price": "35.79"}]),
    ]


#: Sparse old data, as public exports are: "a" is abandoned (step 0 due at 1500 s) and buys at 5100 s, after its
#: first message; "b" and "c" come two and three days later, so the watermark jumps by days between chunks;
#: each of "b"'s sends fails once (retried), "c"'s are refused for good (dead letters). "d" ends the file at day 9.
EVENTS = [
    *shopper("a", "ca", 0),
    line("purchase", "a", 5100, customer_id="ca", transaction_id="o-a", value="35.79", currency="EUR"),
    *shopper("b", "cb", 2 * DAY),
    *shopper("c", "cc", 3 * DAY),
    line("page_view", "d", 9 * DAY),
]


class Provider(MemoryChannel):
    """A provider that fails the first attempt of each of "b"'s messages (transient) and refuses "c"'s for good."""

    def __init__(self) -> None:
        super().__init__(handler=self._answer)
        self._failed: set[str] = set()

    def _answer(self, message: Message) -> None:
        if message.cart.cart_key == "b" and message.key not in self._failed:
            self._failed.add(message.key)
            raise TransientDeliveryError("try again")
        if message.cart.cart_key == "c":
            raise PermanentDeliveryError("no such mailbox")


#: Every time-bearing row a replay leaves in its store, without what is random by design: the engine's owner id
#: (per process) and a code's hash (codes are drawn at random; their times and terms are compared).
DUMPS = {
    "ledger": "SELECT key, cart_key, contact_key, channel, state, started_at, claimed_at, finished_at, error "
    "FROM ledger ORDER BY key",
    "outcomes": "SELECT * FROM outcomes ORDER BY key, outcome",
    "conversions": "SELECT * FROM conversions ORDER BY cart_key, at",
    "assignments": "SELECT * FROM assignments ORDER BY cart_key, flow",
    "visits": "SELECT * FROM visits ORDER BY cart_key, at",
    "dead_letters": "SELECT key, error, attempts, permanent, at, contact_key FROM dead_letters ORDER BY key",
    "codes": "SELECT cart_key, contact_key, kind, percent, amount, currency, min_value, issued_at, expires_at, "
    "redeemed_at FROM codes ORDER BY cart_key, issued_at",
}


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as conn:
        return {table: conn.execute(query).fetchall() for table, query in DUMPS.items()}


async def replay_into(path: Path, channel: MemoryChannel | None = None) -> MemoryChannel:
    channel = channel if channel is not None else Provider()
    await replay(list(EVENTS), config=CONFIG, channels={"email": channel}, store=path)
    return channel


@pytest.fixture(autouse=True)
def code_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOVERKIT_CODE_SECRET", SECRET)


async def test_two_replays_of_one_file_record_identical_facts_ledger_and_letters_byte_for_byte(
    tmp_path: Path,
) -> None:
    await replay_into(tmp_path / "first.db")
    await replay_into(tmp_path / "second.db")
    first, second = dump(tmp_path / "first.db"), dump(tmp_path / "second.db")
    # The run did what the comparison needs: sends, a retry, a dead letter, a code, a conversion.
    states = [(row[0], row[4]) for row in first["ledger"]]
    assert states == [
        ("a/cart-recovery/0", "sent"), ("b/cart-recovery/0", "sent"), ("b/cart-recovery/1", "sent"),
        ("c/cart-recovery/0", "dead"), ("c/cart-recovery/1", "dead"),
    ]  # fmt: skip
    assert len(first["dead_letters"]) == 2 and len(first["codes"]) == 3 and len(first["conversions"]) == 1
    for table in DUMPS:
        assert repr(first[table]).encode() == repr(second[table]).encode(), table


async def test_every_recorded_time_of_a_replay_of_2019_data_is_in_2019(tmp_path: Path) -> None:
    await replay_into(tmp_path / "state.db")
    rows = dump(tmp_path / "state.db")
    times = [row[6] for row in rows["ledger"]] + [row[7] for row in rows["ledger"]]
    times += [row[4] for row in rows["dead_letters"]] + [row[7] for row in rows["codes"]]
    times += [row[6] for row in rows["outcomes"]]
    assert times and all(T2019 <= t <= T2019 + 10 * DAY for t in times), times


async def test_in_event_time_a_message_is_recorded_sent_at_its_due_time(tmp_path: Path) -> None:
    channel = await replay_into(tmp_path / "state.db")
    store = SQLiteStore(tmp_path / "state.db")
    try:
        sent = {o.key: o.at for o in store.outcomes() if o.outcome == "sent"}
        ledger = {e.key: (e.claimed_at, e.finished_at) for e in store.ledger()}
    finally:
        store.close()
    due = {m.key: m.due_at for m in channel.sent}
    assert due["a/cart-recovery/0"] == T2019 + 1500
    # "a": sent when due, although the chunk that made it due moved the watermark two days on.
    assert sent["a/cart-recovery/0"] == due["a/cart-recovery/0"]
    assert ledger["a/cart-recovery/0"] == (T2019 + 1500, T2019 + 1500)
    # "b": the first attempt failed at its due time; the retry went out after a backoff measured from it.
    retry_at = sent["b/cart-recovery/0"]
    assert due["b/cart-recovery/0"] < retry_at <= due["b/cart-recovery/0"] + 60
    assert ledger["b/cart-recovery/0"] == (retry_at, retry_at)


async def test_a_replay_credits_the_recovery_of_an_order_placed_after_the_message(tmp_path: Path) -> None:
    await replay_into(tmp_path / "state.db")
    store = SQLiteStore(tmp_path / "state.db")
    try:
        figures = recovery(load_facts(store))
    finally:
        store.close()
    # "a" got its first message at 1500 s and bought at 5100 s: recovered, by one order of 35.79 EUR.
    assert (figures.total.recovered_carts, figures.total.recovered_revenue) == (1, {"EUR": 3579})
    # Over time: each message on the day it was sent, not all of them on the day the stream ended.
    sent_per_day = {day.day: day.sent for day in figures.days if day.sent}
    assert sent_per_day == {"2019-10-01": 1, "2019-10-03": 1, "2019-10-04": 1}


async def test_a_code_offered_in_a_replay_of_2019_data_redeems_within_its_validity_in_event_time(
    tmp_path: Path,
) -> None:
    channel = await replay_into(tmp_path / "state.db")
    message = next(m for m in channel.sent if m.key == "a/cart-recovery/0")
    assert message.offer is not None and message.offer.code is not None, message.offer
    assert message.offer.expires_at == message.due_at + DAY  # valid for a day from when it was sent
    store = SQLiteStore(tmp_path / "state.db")
    try:
        book = CodeBook(store, SECRET, policy=CONFIG.codes)
        late = book.redeem_sync(message.offer.code, customer="ca", cart_value=3579, currency="EUR",
                                order_id="o-late", client_key="203.0.113.9", now=message.due_at + DAY)  # fmt: skip
        used = book.redeem_sync(message.offer.code, customer="ca", cart_value=3579, currency="EUR",
                                order_id="o-a", client_key="203.0.113.9", now=message.due_at + 3600)  # fmt: skip
    finally:
        store.close()
    assert (late.outcome, used.outcome) == ("expired", "valid")


async def test_retention_in_a_replay_of_old_data_purges_by_event_time_not_the_wall_clock(tmp_path: Path) -> None:
    # Old data that ends ten days after its dead letter: nothing is old enough, in event time, to go.
    async with Engine(CONFIG, channels={"email": Provider()}, clock=EventClock(), store=tmp_path / "s.db") as engine:
        await engine.submit_many(EVENTS)
        await engine.flush(end_of_input=True)
        report = await engine.purge()
        letters = engine.store.dead_letters()
        ledger = engine.store.ledger()
    assert (report.dead_letters, report.ledger_entries, report.facts) == (0, 0, 0)
    assert sorted(letter.key for letter in letters) == ["c/cart-recovery/0", "c/cart-recovery/1"]
    assert len(ledger) == 5


async def test_retention_in_a_replay_purges_what_is_old_in_event_time(tmp_path: Path) -> None:
    # The same data, then 34 quiet days: the dead letters (kept 30 days) go; facts and ledger (90 days) stay. The
    # engine purges by itself when its input ends (at the last whole hour of event time), so nothing is left for
    # an explicit purge to do.
    events = [*EVENTS, line("page_view", "e", 43 * DAY)]
    async with Engine(CONFIG, channels={"email": Provider()}, clock=EventClock(), store=tmp_path / "s.db") as engine:
        await engine.submit_many(events)
        await engine.flush(end_of_input=True)
        letters = engine.store.dead_letters()
        ledger = engine.store.ledger()
        report = await engine.purge()
    assert letters == []
    assert len(ledger) == 5
    assert (report.dead_letters, report.ledger_entries, report.facts) == (0, 0, 0)


@pytest.mark.slow
async def test_retention_keeps_in_a_replay_what_it_keeps_live(tmp_path: Path) -> None:
    # Live, the engine purges at each whole hour of its clock; a replay of the same events purges with the same
    # cut-offs, whatever its pace, and once more when its input ends. 33 days and 45 minutes after "c"'s dead
    # letters (kept 30 days), both runs have purged them, and kept the same ledger and facts.
    events = [*EVENTS, line("page_view", "e", 36 * DAY + 2700)]

    async def kept(engine: Engine) -> tuple[list[str], list[str], int]:
        store = engine.store
        return (sorted(d.key for d in store.dead_letters()), sorted(e.key for e in store.ledger()), len(store.outcomes()))

    async with Engine(CONFIG, channels={"email": Provider()}, clock=EventClock(), store=tmp_path / "r.db") as engine:
        await engine.submit_many(events)
        await engine.flush(end_of_input=True)
        replayed = await kept(engine)
    clock = FakeClock(T2019)
    async with Engine(CONFIG, channels={"email": Provider()}, clock=clock, store=tmp_path / "l.db") as engine:
        for raw in events:
            ts = json.loads(raw)["ts"]
            while clock.now() < ts:  # time passes as it does live: what falls due is sent when it falls due
                clock.advance(min(1800.0, ts - clock.now()))
                await engine.flush()
            engine.track(raw)
            await engine.flush()
        live = await kept(engine)
    assert replayed == live
    assert replayed[0] == []  # purged, not merely equal
    assert len(replayed[1]) == 5


async def test_live_the_ledger_and_outcomes_are_on_the_engine_clock() -> None:
    clock = FakeClock(T2019)  # a fake clock years from the wall clock: only its time may be recorded
    store = MemoryStore()
    channel = MemoryChannel()
    async with Engine(CONFIG, channels={"email": channel}, clock=clock, store=store, coupons=None) as engine:
        for raw in shopper("a", "ca", 0):
            engine.track(raw)
        await engine.flush()
        clock.advance(1500)
        await engine.flush()
        (entry,) = store.ledger()
        (outcome,) = [o for o in store.outcomes() if o.outcome == "sent"]
    assert (entry.claimed_at, entry.finished_at, outcome.at) == (T2019 + 1500,) * 3


async def test_track_stamps_an_event_without_ts_when_track_is_called() -> None:
    clock = FakeClock(T2019)
    channel = MemoryChannel()
    config = Config(abandon_after=600, flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="email")])])
    async with Engine(config, channels={"email": channel}, clock=clock) as engine:
        engine.track({"event": "identify", "session_id": "s", "customer_id": "c", "email": "c@example.com"})
        engine.track({"event": "consent", "session_id": "s", "customer_id": "c", "granted": ["email"]})
        engine.track({"event": "add_to_cart", "session_id": "s", "currency": "EUR",
                      "items": [{"item_id": "A", "price": "10.00"}]})  # fmt: skip
        clock.advance(600)  # the inbox is journaled on this tick, 600 s after track() was called
        await engine.flush()
        sent = list(channel.sent)
    # Abandoned 600 s after the add_to_cart, as tracked: not 600 s after the tick that journaled it.
    assert [(m.key, m.cart.last_at, m.due_at) for m in sent] == [("s/f/0", T2019, T2019 + 600)]


async def test_the_engines_code_book_and_links_check_expiry_on_the_engine_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A shop's test on a FakeClock (here in 2019): the checkout redeems without `now`, the restore view verifies
    # without `now`; both are checked on the engine's clock, on which the code and the link are a minute old.
    monkeypatch.setenv("RECOVERKIT_LINK_SECRET", "l" * 40)
    config = msgspec.structs.replace(CONFIG, links=LinksConfig(base_url="https://shop.example/cart/restore"))
    clock = FakeClock(T2019)
    channel = MemoryChannel()
    async with Engine(config, channels={"email": channel}, clock=clock, store=MemoryStore()) as engine:
        for raw in shopper("a", "ca", 0):
            engine.track(raw)
        await engine.flush()
        clock.advance(1500)
        await engine.flush()
        clock.advance(60)
        (message,) = channel.sent
        assert message.offer is not None and message.offer.code is not None and message.restore_url is not None
        token = parse_qs(urlsplit(message.restore_url).query)["t"][0]
        assert engine.links is not None and engine.links.verify(token).cart_key == "a"
        assert isinstance(engine.coupons, CodeBook)
        answer = redeem(message.offer.code, book=engine.coupons, customer_id="ca", cart_value=3579, currency="EUR",
                        order_id="o-1", client="203.0.113.9")  # fmt: skip
    assert answer.outcome == "valid"
