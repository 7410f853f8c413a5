"""Replay: the same engine over recorded events in event time, on handmade files and on real public data."""

from __future__ import annotations

import gzip
import io
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from recoverkit import Config, Engine, EventClock, Flow, FlowStep, MemoryChannel, Message, load_config
from recoverkit.datasets import demo_events_path, rees46_events, retailrocket_events, write_jsonl
from recoverkit.events import AddToCart, Event, Purchase
from recoverkit.journal import Journal
from recoverkit.replay import ReplaySummary, read_lines, replay
from recoverkit.store import MemoryStore
from recoverkit.synthetic import generate_jsonl
from shared_data import require_shared

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
CONFIG = Config(
    abandon_after=600,
    flows=[
        Flow(
            name="cart-recovery",
            steps=[FlowStep(delay=900, channel="email"), FlowStep(delay=86_400, channel="email")],
        )
    ],
)


def line(kind: str, session: str, t: float, **fields: Any) -> bytes:
    return json.dumps({"event": kind, "session_id": session, "ts": T0 + t, **fields}).encode()


def known(session: str, customer: str, t: float) -> list[bytes]:
    return [
        line("identify", session, t, customer_id=customer, email=f"{customer}@example.com"),
        line("consent", session, t, customer_id=customer, granted=["email"]),
    ]


def cart(session: str, t: float) -> bytes:
    return line("add_to_cart", session, t, currency="EUR", items=[{"item_id": "SKU-1", "price": "35.79"}])


#: Three carts over 5000 s: "a" is abandoned (step 0 sent at 1500 s, step 1 due after the end), "b" is bought,
#: "c" is abandoned by an anonymous shopper (no consent: both steps skipped); plus one line that is not JSON.
HANDMADE = [
    *known("a", "ca", 0),
    cart("a", 0),
    *known("b", "cb", 100),
    cart("b", 100),
    cart("c", 200),
    line("purchase", "b", 300, transaction_id="o-1"),
    b"{this is not json",
    line("page_view", "d", 5000),
]


@pytest.fixture
def handmade(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(HANDMADE) + b"\n\n")  # a blank line at the end, as editors leave it
    return path


def check_handmade(summary: ReplaySummary) -> None:
    assert (summary.events, summary.accepted, summary.invalid) == (10, 9, {"malformed_json": 1})
    assert (summary.carts, summary.converted) == (3, 1)
    assert summary.abandonments == {"inactivity": 2}
    assert summary.messages == {"cart-recovery/0/email": 1}
    assert summary.skipped == {"no_consent": 2}
    assert (summary.pending, summary.dead_letters, summary.late) == (1, 0, 0)
    assert (summary.first_event_at, summary.last_event_at) == (T0, T0 + 5000)


async def test_replay_of_a_jsonl_file_summarises_what_the_engine_decided(handmade: Path) -> None:
    check_handmade(await replay(handmade, config=CONFIG))


async def test_replay_of_a_gzip_file_gives_the_same_summary(handmade: Path, tmp_path: Path) -> None:
    packed = tmp_path / "events.jsonl.gz"
    packed.write_bytes(gzip.compress(handmade.read_bytes()))
    check_handmade(await replay(packed, config=CONFIG))


async def test_replay_of_a_binary_stream_gives_the_same_summary(handmade: Path) -> None:
    check_handmade(await replay(io.BytesIO(handmade.read_bytes()), config=CONFIG))


async def test_replay_of_lines_in_memory_gives_the_same_summary() -> None:
    check_handmade(await replay(list(HANDMADE), config=CONFIG))


async def test_a_replay_in_its_own_memory_decides_as_one_into_a_store_that_keeps_its_journal() -> None:
    # Without a store the lines go to the pipeline without a copy in the journal (nothing could resume from it);
    # with a store passed in, the journal keeps them. The decisions are the same, event for event.
    lines = list(generate_jsonl(300, seed=4))
    own = await replay(lines)
    kept_store = MemoryStore()
    kept = await replay(lines, store=kept_store)
    assert own.messages and own.abandonments  # the comparison means something
    for field in ("events", "accepted", "carts", "abandonments", "reasons", "converted", "messages", "skipped"):
        assert getattr(own, field) == getattr(kept, field), field
    assert kept_store.last_seq() == kept.accepted  # the store passed in did keep every event


async def test_a_transient_journal_keeps_nothing_in_the_store_and_hands_every_event_to_ingest() -> None:
    store = MemoryStore()
    journal = Journal(Config(), EventClock(), store)
    journal.transient = True
    lines = [line("page_view", f"s{i}", i) for i in range(3000)]  # more than the cache holds when it is bounded
    journal._hot_capacity = 1024
    for start in range(0, len(lines), 500):
        events, datas = journal.accept(lines[start : start + 500])
        assert journal.append(events, datas)
    assert (store.last_seq(), journal.last_seq) == (0, 3000)
    taken: list[Any] = []
    while (chunk := journal.take(len(taken))) is not None:
        taken.extend(chunk)
    assert [event.session_id for event in taken] == [f"s{i}" for i in range(3000)]


async def test_replay_hands_messages_to_the_given_channels() -> None:
    channel = MemoryChannel()
    await replay(list(HANDMADE), config=CONFIG, channels={"email": channel})
    assert channel.keys() == ["a/cart-recovery/0"]
    assert channel.sent[0].due_at == T0 + 1500
    assert channel.closed


async def test_replay_reports_messages_still_pending_when_the_input_ends() -> None:
    pending: list[Message] = []
    await replay(list(HANDMADE), config=CONFIG, pending_out=pending)
    assert [(m.key, m.due_at) for m in pending] == [("a/cart-recovery/1", T0 + 600 + 86_400)]


async def test_replay_writes_every_message_to_out_as_a_json_line(handmade: Path, tmp_path: Path) -> None:
    out = tmp_path / "messages.jsonl"
    await replay(handmade, config=CONFIG, out=out)
    (message,) = [msgspec.json.decode(raw, type=Message) for raw in out.read_bytes().splitlines()]
    assert (message.key, message.recipient.email) == ("a/cart-recovery/0", "ca@example.com")


async def test_replay_reports_progress_in_bytes_read(handmade: Path) -> None:
    seen: list[int] = []
    await replay(handmade, config=CONFIG, progress=seen.append)
    assert seen and seen[-1] == sum(len(raw) + 1 for raw in HANDMADE)


async def test_replay_of_an_empty_file_summarises_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    summary = await replay(empty)
    assert (summary.events, summary.carts, summary.messages, summary.first_event_at) == (0, 0, {}, None)


def test_read_lines_skips_blank_lines_and_strips_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    path.write_bytes(b'{"a": 1}\r\n\n   \n  {"b": 2}  \n')
    assert list(read_lines(path)) == [b'{"a": 1}', b'{"b": 2}']


async def test_two_replays_of_the_same_file_write_byte_identical_out_files(tmp_path: Path) -> None:
    events = tmp_path / "synthetic.jsonl"
    events.write_bytes(b"\n".join(generate_jsonl(300, seed=7)) + b"\n")
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    one = await replay(events, out=first)
    two = await replay(events, out=second)
    assert first.read_bytes() == second.read_bytes()
    assert sum(one.messages.values()) > 0
    assert first.read_bytes().count(b"\n") == sum(one.messages.values())
    assert one.messages == two.messages and one.abandonments == two.abandonments


async def test_replaying_again_to_the_same_out_file_replaces_its_content(
    handmade: Path, tmp_path: Path
) -> None:
    out = tmp_path / "messages.jsonl"
    await replay(handmade, config=CONFIG, out=out)
    first = out.read_bytes()
    summary = await replay(handmade, config=CONFIG, out=out)
    assert out.read_bytes() == first
    assert first.count(b"\n") == sum(summary.messages.values()) == 1


@pytest.mark.slow
async def test_the_bundled_demo_replays_to_the_same_messages_twice(tmp_path: Path) -> None:
    config = load_config(demo_events_path().with_name("demo.toml"))
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    await replay(demo_events_path(), config=config, out=first)
    await replay(demo_events_path(), config=config, out=second)
    assert first.read_bytes() == second.read_bytes() != b""


# -- real data -----------------------------------------------------------------------------------------------


def expected_carts(events: Iterable[Event]) -> int:
    """Carts as the sessionizer defines them, computed independently from the input.

    A session's add_to_cart opens a cart unless one is open; a purchase closes the session's cart and the open
    carts of the customer's other sessions, and cart activity at or before that purchase's time is ignored.
    So a session that buys and then fills its cart again has two carts: the count is at least the number of
    sessions with an add_to_cart, and more by the re-openings.
    """
    carts = 0
    open_carts: set[str] = set()
    closed_at: dict[str, float] = {}
    sessions_of: dict[str, set[str]] = defaultdict(set)
    for event in events:
        session, ts = event.session_id, event.ts
        assert isinstance(ts, float)
        if event.customer_id is not None:
            sessions_of[event.customer_id].add(session)
        if session in closed_at and ts <= closed_at[session] and type(event) in (AddToCart, Purchase):
            continue
        if type(event) is AddToCart and session not in open_carts:
            carts += 1
            open_carts.add(session)
        elif type(event) is Purchase:
            customer_sessions = sessions_of[event.customer_id] if event.customer_id else set()
            for other in {session} | {s for s in customer_sessions if s in open_carts}:
                open_carts.discard(other)
                closed_at[other] = ts
    return carts


def assert_no_message_after_purchase(messages: list[Message], events: list[Event]) -> None:
    """No message was due at or after a purchase of its cart, or of its customer since the cart began."""
    by_session: dict[str, list[float]] = defaultdict(list)
    by_customer: dict[str, list[float]] = defaultdict(list)
    for event in events:
        if type(event) is Purchase:
            assert isinstance(event.ts, float)
            by_session[event.session_id].append(event.ts)
            if event.customer_id is not None:
                by_customer[event.customer_id].append(event.ts)
    for message in messages:
        cart = message.cart
        bought = by_session[cart.session_id] + by_customer[message.recipient.contact_key]
        assert not [ts for ts in bought if cart.started_at <= ts <= message.due_at], message.key


async def replay_dataset(events: list[Event], tmp_path: Path, config: Config) -> tuple[ReplaySummary, bytes]:
    source = tmp_path / "events.jsonl.gz"
    write_jsonl(events, source)
    out = tmp_path / f"messages-{len(list(tmp_path.iterdir()))}.jsonl"
    summary = await replay(source, config=config, out=out)
    return summary, out.read_bytes()


@pytest.fixture(scope="module")
def rees46() -> list[Event]:
    return list(rees46_events(require_shared("rees46-multicategory-2019oct-prefix/2019-Oct.csv")))


@pytest.fixture(scope="module")
def retailrocket() -> list[Event]:
    return list(retailrocket_events(require_shared("retailrocket-events-sample-1500-visitors/events.csv")))


@pytest.mark.slow
async def test_rees46_slice_replays_with_sane_figures(rees46: list[Event], tmp_path: Path) -> None:
    config = load_config(demo_events_path().with_name("demo.toml"))  # waits sized for a 3-hour slice
    summary, out = await replay_dataset(rees46, tmp_path, config)
    messages = [msgspec.json.decode(raw, type=Message) for raw in out.splitlines()]

    assert (summary.events, summary.invalid, summary.late) == (len(rees46), {}, 0)
    sessions_with_cart = len({e.session_id for e in rees46 if type(e) is AddToCart})
    assert summary.carts == expected_carts(rees46) >= sessions_with_cart
    assert 0 < sum(summary.abandonments.values()) <= summary.carts
    assert summary.converted >= sum(1 for e in rees46 if type(e) is Purchase) // 2
    assert len(messages) == sum(summary.messages.values()) > 0
    assert len({m.key for m in messages}) == len(messages)  # never two messages for one step
    assert_no_message_after_purchase(messages, rees46)
    for message in messages:
        assert message.recipient.email is not None and message.recipient.email.endswith("@example.invalid")
        assert message.due_at <= summary.last_event_at  # type: ignore[operator]

    again, out_again = await replay_dataset(rees46, tmp_path, config)
    assert out_again == out
    assert (again.abandonments, again.messages, again.pending) == (
        summary.abandonments,
        summary.messages,
        summary.pending,
    )


async def test_retailrocket_sample_replays_without_prices_and_still_detects_abandonment(
    retailrocket: list[Event], tmp_path: Path
) -> None:
    summary, out = await replay_dataset(retailrocket, tmp_path, Config())
    assert (summary.events, summary.invalid) == (len(retailrocket), {})
    assert summary.carts == expected_carts(retailrocket)
    assert summary.carts == len({e.session_id for e in retailrocket if type(e) is AddToCart})
    abandoned = sum(summary.abandonments.values())
    assert 0 < abandoned <= summary.carts
    # The sample has no contacts and no consent: every message step is skipped, none is sent.
    assert (summary.messages, out) == ({}, b"")
    assert summary.skipped == {"no_consent": abandoned * len(Config().flows[0].steps)}
    statistics = summary.statistics.stages["score"].extra
    assert statistics["scorer_failures"] == 0  # carts worth 0 are scored, not rejected


async def sent_keys(lines: list[bytes], chunk: int) -> list[str]:
    """The keys a replay sends when its input reaches the engine ``chunk`` events at a time."""
    channel = MemoryChannel()
    engine = Engine(Config(), channels={"email": channel}, clock=EventClock())
    async with engine:
        for i in range(0, len(lines), chunk):
            await engine.submit_many(lines[i : i + chunk])
            await engine.flush()
        await engine.flush(end_of_input=True)
    return sorted(channel.keys())


@pytest.mark.slow
async def test_what_a_replay_sends_does_not_depend_on_how_its_input_is_batched() -> None:
    lines = list(generate_jsonl(400, seed=1))
    one_by_one = await sent_keys(lines, 1)
    assert one_by_one  # the comparison means something
    assert await sent_keys(lines, len(lines)) == one_by_one


# -- invalid lines, broken input, resuming -------------------------------------------------------------------


async def test_invalid_lines_are_reported_with_their_line_number_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    millis = json.dumps({"event": "page_view", "session_id": "a", "ts": T0 * 1000}).encode()
    path.write_bytes(b"\n".join([cart("a", 0), b"", b"{nope", line("page_view", "a", 10), b"  ", millis]) + b"\n")
    seen: list[tuple[int, str]] = []
    summary = await replay(path, config=CONFIG, on_invalid=lambda n, exc: seen.append((n, exc.reason)))
    assert seen == [(3, "malformed_json"), (6, "bad_value")]
    assert (summary.lines, summary.accepted, summary.invalid) == (4, 2, {"malformed_json": 1, "bad_value": 1})


async def test_an_event_without_ts_before_any_event_time_is_reported_at_its_line() -> None:
    untimed = json.dumps({"event": "page_view", "session_id": "s"}).encode()
    seen: list[tuple[int, str, str | None]] = []
    summary = await replay(
        [untimed, cart("a", 0), untimed], config=CONFIG, on_invalid=lambda n, e: seen.append((n, e.reason, e.field))
    )
    assert seen == [(1, "missing_field", "$.ts")]
    assert summary.accepted == 2


def halves(lines: list[bytes], tmp_path: Path) -> tuple[Path, Path]:
    whole = tmp_path / "whole.jsonl.gz"
    whole.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    return whole, cut


async def test_a_truncated_gzip_replays_what_it_holds_and_a_resume_with_the_whole_file_decides_as_one_run(
    tmp_path: Path,
) -> None:
    from recoverkit.replay import IncompleteReplay

    lines = list(generate_jsonl(400, seed=11))
    whole, cut = halves(lines, tmp_path)
    reference = MemoryChannel()
    await replay(whole, store=tmp_path / "ref.db", channels={"email": reference})
    first, second = MemoryChannel(), MemoryChannel()
    with pytest.raises(IncompleteReplay) as info:
        await replay(cut, store=tmp_path / "s.db", channels={"email": first})
    broken = info.value
    assert str(cut) in str(broken) and "truncated" in str(broken)
    assert 0 < broken.line < len(lines) and broken.summary.lines == broken.line
    assert broken.summary.accepted == broken.line and broken.summary.processed == broken.line
    summary = await replay(whole, store=tmp_path / "s.db", channels={"email": second}, resume=True)
    assert summary.resumed_after == broken.line and summary.lines == len(lines)
    assert sorted(first.keys() + second.keys()) == sorted(reference.keys())
    assert len(reference.keys()) > 20


async def test_a_resume_carries_on_the_event_time_of_events_without_ts(tmp_path: Path) -> None:
    # An event without ts happens at the latest event time so far: a resume must know it from the skipped lines.
    untimed = [json.dumps({"event": "page_view", "session_id": f"u{i}"}).encode() for i in range(5)]
    lines = [*known("a", "ca", 0), cart("a", 0), *untimed, line("page_view", "z", 5000)]
    summary = await replay(lines[:3], config=CONFIG, store=tmp_path / "s.db")
    assert summary.accepted == 3
    resumed = await replay(lines, config=CONFIG, store=tmp_path / "s.db", resume=True)
    assert resumed.invalid == {}
    assert (resumed.resumed_after, resumed.accepted) == (3, len(lines))


async def test_a_resume_with_a_shorter_file_than_the_journal_is_refused(tmp_path: Path) -> None:
    from recoverkit.datasets import DatasetError

    await replay(list(HANDMADE), config=CONFIG, store=tmp_path / "s.db")
    with pytest.raises(DatasetError, match=r"has 3 valid events, but the journal of .*s\.db holds 9"):
        await replay(list(HANDMADE[:3]), config=CONFIG, store=tmp_path / "s.db", resume=True)


@pytest.mark.slow
async def test_a_replay_waits_for_a_lease_that_another_process_keeps_renewing_then_gives_up(
    tmp_path: Path,
) -> None:
    import threading
    import time

    from recoverkit.errors import StoreError
    from recoverkit.store import SQLiteStore
    from recoverkit.store.base import PIPELINE_LEASE

    db = tmp_path / "s.db"
    stop = threading.Event()
    other = SQLiteStore(db)
    other.acquire_lease(PIPELINE_LEASE, "elsewhere:1:x", ttl=0.5, now=time.time())

    def keep_renewing() -> None:  # another replay, alive, on the same store
        while not stop.wait(0.1):
            other.acquire_lease(PIPELINE_LEASE, "elsewhere:1:x", ttl=0.5, now=time.time())

    renewer = threading.Thread(target=keep_renewing)
    renewer.start()
    told: list[str] = []
    try:
        with pytest.raises(StoreError, match="still held by elsewhere:1:x after"):
            await replay(list(HANDMADE), config=CONFIG, store=db, resume=True, on_wait=told.append, lease_wait=1.5)
    finally:
        stop.set()
        renewer.join()
        other.close()
    assert len(told) == 1 and "waiting for the pipeline lease" in told[0] and "elsewhere:1:x" in told[0]
    with SQLiteStore(db) as store:
        assert store.last_seq() == 0  # it journaled nothing that the other process would have decided on


async def test_the_out_file_is_readable_by_its_owner_only(handmade: Path, tmp_path: Path) -> None:
    # It holds every message with the shoppers' addresses; the umask must not make it world-readable.
    import os
    import stat

    out = tmp_path / "messages.jsonl"
    previous = os.umask(0o022)
    try:
        await replay(handmade, config=CONFIG, out=out)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_bytes().count(b"\n") >= 1
