"""Ingest, through a running engine: validation, the bounded inbox, event-time order, stamping times."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recoverkit import Config, Engine, EventClock, FakeClock, MemoryChannel
from recoverkit.events import BaseEvent

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def view(session: str, t: float | None = None, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event": "view_item",
        "session_id": session,
        "items": [{"item_id": "SKU-1"}],
        **fields,
    }
    if t is not None:
        event["ts"] = T0 + t
    return event


def spy_on_sessionize(engine: Engine) -> list[BaseEvent]:
    """Record every event ingest hands to the sessionizer, in the order it hands them."""
    seen: list[BaseEvent] = []
    handle = engine.sessionize.handle

    def recording(items: list[Any], out: list[Any]) -> None:
        seen.extend(items)
        handle(items, out)

    engine.sessionize.handle = recording  # type: ignore[method-assign]
    return seen


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def live(clock: FakeClock) -> AsyncIterator[Engine]:
    async with Engine(Config(), channels={"email": MemoryChannel()}, clock=clock) as engine:
        yield engine


def replaying(**settings: Any) -> Engine:
    return Engine(Config(**settings), channels={"email": MemoryChannel()}, clock=EventClock())


# -- validation ----------------------------------------------------------------------------------------------


async def test_invalid_events_are_counted_by_reason(live: Engine) -> None:
    for raw in [
        b"{not json",
        {"event": "add-to-cart", "session_id": "s1"},
        {"event": "add_to_cart"},
        {"event": "add_to_cart", "session_id": "s1", "items": [{"item_id": "a", "quantity": "3"}]},
        {"event": "add_to_cart", "session_id": "s1", "currency": "eur"},
        b'{"event": "exit_intent", "session_id": "s1", "padding": "' + b"x" * 70_000 + b'"}',
    ]:
        assert live.track(raw) is True  # accepted into the inbox; validated later
    await live.flush()
    assert live.statistics().events_invalid == {
        "malformed_json": 1,
        "unknown_event": 1,
        "missing_field": 1,
        "wrong_type": 1,
        "bad_value": 1,
        "too_large": 1,
    }


async def test_valid_events_around_invalid_ones_are_still_processed(live: Engine) -> None:
    seen = spy_on_sessionize(live)
    live.track(view("s1"))
    live.track(b"garbage")
    live.track(view("s2"))
    await live.flush()
    assert [event.session_id for event in seen] == ["s1", "s2"]
    stats = live.statistics()
    assert (stats.events_accepted, stats.events_invalid) == (2, {"malformed_json": 1})


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [(None, "wrong_type"), (object(), "wrong_type"), (12, "wrong_type"), ("x" * 10_000_000, "too_large")],
    ids=["none", "object", "int", "10MB-string"],
)
async def test_track_never_raises_on_garbage(live: Engine, garbage: Any, reason: str) -> None:
    assert live.track(garbage) is True
    await live.flush()
    assert live.statistics().events_invalid == {reason: 1}


async def test_a_timestamp_in_milliseconds_is_refused_as_bad_value(live: Engine) -> None:
    live.track(view("s1", ts=T0 * 1000))
    await live.flush()
    stats = live.statistics()
    assert (stats.events_accepted, stats.events_invalid) == (0, {"bad_value": 1})


async def test_a_struct_built_with_nonsense_is_counted_not_raised(live: Engine) -> None:
    from recoverkit.events import ViewItem

    live.track(ViewItem(session_id="s1", ts="yesterday"))  # type: ignore[arg-type]  # Structs trust the caller
    live.track(view("s2"))
    await live.flush()
    stats = live.statistics()
    assert (stats.events_accepted, stats.events_invalid) == (1, {"bad_value": 1})


async def test_invalid_events_are_logged_without_their_content(live: Engine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="recoverkit")
    live.track(
        {"event": "identify", "session_id": "s1", "email": "jane.doe@example.com", "phone": 4917012345}
    )
    await live.flush()
    assert "invalid_event" in [getattr(record, "event", None) for record in caplog.records]
    logged = "\n".join(record.getMessage() + repr(vars(record)) for record in caplog.records)
    assert "jane.doe" not in logged
    assert "4917012345" not in logged


# -- the bounded inbox ---------------------------------------------------------------------------------------


async def test_beyond_inbox_capacity_track_journals_the_inbox_itself(clock: FakeClock) -> None:
    # Lossless overload: a full inbox does not refuse events, track() journals it from the calling thread (the
    # three queued, in order) and queues its own event in the emptied inbox.
    async with Engine(Config(inbox_capacity=3), channels={"email": MemoryChannel()}, clock=clock) as engine:
        results = [engine.track(view(f"s{i}")) for i in range(5)]  # no await: nothing drains the inbox
        assert results == [True] * 5
        stats = engine.statistics()
        assert (stats.events_spilled, stats.events_overflow, len(engine.journal.pending)) == (3, 0, 2)
        await engine.flush()
        assert engine.statistics().events_accepted == 5
        assert engine.statistics().sessions == 5


async def test_the_inbox_takes_events_again_once_drained(clock: FakeClock) -> None:
    async with Engine(Config(inbox_capacity=2), channels={"email": MemoryChannel()}, clock=clock) as engine:
        assert [engine.track(view("s1")) for _ in range(3)] == [True, True, True]
        assert engine.statistics().events_spilled == 2
        await engine.flush()
        assert len(engine.journal.pending) == 0
        assert engine.track(view("s1")) is True
        assert engine.statistics().events_spilled == 2


async def test_a_closed_engine_refuses_and_counts_events(clock: FakeClock) -> None:
    engine = Engine(Config(), channels={"email": MemoryChannel()}, clock=clock)
    async with engine:
        pass
    assert engine.track(view("s1")) is False
    assert engine.statistics().events_overflow == 1


async def test_events_tracked_before_start_are_handled_once_it_runs(clock: FakeClock) -> None:
    engine = Engine(Config(), channels={"email": MemoryChannel()}, clock=clock)
    assert engine.track(view("s1")) is True
    async with engine:
        await engine.flush()
        assert engine.statistics().events_accepted == 1


# -- time ----------------------------------------------------------------------------------------------------


async def test_events_without_ts_are_stamped_with_the_clock(live: Engine, clock: FakeClock) -> None:
    seen = spy_on_sessionize(live)
    clock.advance(42.5)
    live.track(view("s1"))
    await live.flush()
    assert [event.ts for event in seen] == [T0 + 42.5]


async def test_rfc3339_timestamps_reach_the_sessionizer_as_epoch_seconds(live: Engine) -> None:
    seen = spy_on_sessionize(live)
    live.track(view("s1", ts="2026-01-01T01:00:00+01:00"))
    await live.flush()
    assert [event.ts for event in seen] == [T0]


async def test_out_of_order_events_within_lateness_reach_the_sessionizer_in_time_order() -> None:
    engine = replaying(allowed_lateness=60)
    seen = spy_on_sessionize(engine)
    offsets = [0, 30, 10, 50, 20, 5, 45, 40]
    async with engine:
        await engine.submit_many([view(f"s{i}", t) for i, t in enumerate(offsets)])
        await engine.flush(end_of_input=True)
    assert [event.ts for event in seen] == sorted(T0 + t for t in offsets)
    assert engine.statistics().events_late == 0


async def test_events_are_held_back_until_the_watermark_passes_them() -> None:
    engine = replaying(allowed_lateness=60)
    seen = spy_on_sessionize(engine)
    async with engine:
        await engine.submit_many([view("a", 0), view("b", 50), view("c", 100)])
        await engine.flush()
        assert [event.session_id for event in seen] == ["a"]  # the watermark is 100 - 60 = 40
        await engine.submit_many([view("d", 45)])  # after the watermark: still put in its place, not late
        await engine.flush(end_of_input=True)
    assert [event.session_id for event in seen] == ["a", "d", "b", "c"]
    assert engine.statistics().events_late == 0


async def test_purchase_sorts_after_cart_activity_of_the_same_second() -> None:
    engine = replaying()
    seen = spy_on_sessionize(engine)
    async with engine:
        await engine.submit_many(
            [{"event": "purchase", "session_id": "s1", "ts": T0}, view("s1", 0), view("s1", 0)]
        )
        await engine.flush(end_of_input=True)
    assert [type(event).__name__ for event in seen] == ["ViewItem", "ViewItem", "Purchase"]


async def test_events_later_than_the_lateness_are_counted_late_but_still_applied() -> None:
    engine = replaying(allowed_lateness=10)
    seen = spy_on_sessionize(engine)
    async with engine:
        await engine.submit_many([view("a", 0), view("b", 100)])
        await engine.flush()  # watermark 90: a is released
        await engine.submit_many([view("late", 50)])
        await engine.flush(end_of_input=True)
    assert [event.session_id for event in seen] == ["a", "late", "b"]
    stats = engine.statistics()
    assert (stats.events_late, stats.events_accepted) == (1, 3)


async def test_in_a_replay_events_without_ts_take_the_latest_event_time() -> None:
    engine = replaying()
    seen = spy_on_sessionize(engine)
    async with engine:
        await engine.submit_many([view("a", 100), view("b", 20), view("c")])
        await engine.flush(end_of_input=True)
    assert {event.session_id: event.ts for event in seen}["c"] == T0 + 100


async def test_in_a_replay_a_first_event_without_ts_is_refused() -> None:
    engine = replaying()
    async with engine:
        await engine.submit_many([view("a"), view("b", 0)])
        await engine.flush(end_of_input=True)
    stats = engine.statistics()
    assert (stats.events_accepted, stats.events_invalid) == (1, {"missing_field": 1})


async def test_ingest_statistics_show_the_journal_position_and_reorder_buffer() -> None:
    engine = replaying(allowed_lateness=60)
    async with engine:
        engine.track(view("a", 0))
        engine.track(view("b", 100))
        assert len(engine.journal.pending) == 2
        await engine.flush()
        extra = engine.statistics().stages["ingest"].extra
        assert (len(engine.journal.pending), extra["reorder_buffer"], extra["position"]) == (0, 1, 2)
        assert engine.statistics().events_accepted == 2



# -- the reorder buffer, alone: events in order skip the heap, and the order out is the same either way --------

@given(
    batches=st.lists(
        st.tuples(st.lists(st.tuples(st.integers(0, 40), st.booleans()), max_size=12), st.integers(0, 50)),
        max_size=8,
    )
)
@settings(max_examples=300, deadline=None)
def test_the_reorder_buffer_releases_what_a_sorted_list_would(
    batches: list[tuple[list[tuple[int, bool]], int]],
) -> None:
    """Batches of events in any order, with the watermark moving between them: each release gives exactly what
    sorting everything held by (time, purchase last, arrival) and cutting at the watermark gives, whether the
    events waited in the in-order part or in the heap."""
    from recoverkit._pipeline import Lease
    from recoverkit.events import Purchase, ViewItem
    from recoverkit.ingest import Ingest

    ingest = Ingest(Config(), EventClock(), None, None, Lease())  # type: ignore[arg-type]  # no store is used
    held: list[tuple[float, bool, int, str]] = []  # the model
    n = 0
    for batch, mark in [*batches, ([], 10**6)]:
        events = []
        for t, bought in batch:
            events.append((Purchase if bought else ViewItem)(session_id=f"s{n}", ts=T0 + t))
            held.append((T0 + t, bought, n, f"s{n}"))
            n += 1
        ingest._accept(events)
        held.sort()
        due = [entry for entry in held if entry[0] <= T0 + mark]
        held = held[len(due) :]
        assert [event.session_id for event in ingest._release(T0 + mark)] == [entry[3] for entry in due]
    assert ingest._held() == []
