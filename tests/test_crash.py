"""A replay worker SIGKILLed again and again sends every message once and loses no accepted event.

Real processes on real files: ``tests/workers/crash_worker.py`` replays a synthetic event file in event time on
a SQLite store, logging (fsynced) every call of its adapter. The reference is the same worker run once, never
killed, on its own store. The crashed run starts the worker on a fresh store, kills it with SIGKILL at a random
moment (seeded) after it has taken the pipeline lease, starts it again on the same files, and so on, until
:data:`KILLS` kills; then lets it finish. In event time a run's decisions do not depend on how its input was
batched or interrupted, so the crashed run must end where the reference did:

- no key in the sent log twice (the ledger is claimed before every adapter call);
- no key that the reference did not send (no spurious send, none after a purchase);
- the keys sent, plus the keys whose send a kill left ``unknown``, are exactly the reference's: a lost event,
  or one applied twice, would change them;
- the store file is intact, and its journal handed out exactly one seq per input line.

The last tests pin, in one process, two bugs found by killing the worker under heavier load (xfail until fixed).

The kill count and the other figures of the run are in every assertion message, in a report section of each
test (``pytest -rP`` shows it for passing tests) and in its properties (``--junitxml``).
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from recoverkit import ChannelPolicy, Config, Engine, EventClock, Flow, FlowStep
from recoverkit.channels.base import Message
from recoverkit.store import SQLiteStore, check_database
from recoverkit.synthetic import generate_jsonl

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and POSIX process handling")

WORKER = Path(__file__).parent / "workers" / "crash_worker.py"
SESSIONS = 3000
SEED = 1
#: Kills planned; the worker is then left to finish. Some may land after it finished: at least MIN_KILLS must hit.
KILLS = 6
MIN_KILLS = 5
#: A kill comes this many seconds (uniform, seeded) after the worker reports it holds the pipeline lease.
KILL_DELAY = (0.05, 1.0)
#: Seconds the worker sleeps after each chunk of 256 lines: the input lasts about 7 s, longer than KILLS times the
#: longest delay, so every kill lands on a worker with work left. Each send stays open a while, so that kills also
#: land between a claim and its outcome (unknown outcomes).
PACE = 0.1
SEND_LATENCY = 0.02
#: Seconds a worker may take to report a step (start-up, the lease of a killed worker expiring, finishing).
STEP_TIMEOUT = 30.0


@dataclass
class Run:
    """What one run (reference or crashed) left behind, read after its last worker exited."""

    sent: list[dict[str, Any]]
    ledger: dict[str, str]  # key -> state
    last_seq: int
    check: list[str]
    database: list[str]
    kills: int = 0
    lives: int = 1
    delays: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def sent_keys(self) -> set[str]:
        return {record["key"] for record in self.sent}

    def keys_in(self, state: str) -> set[str]:
        return {key for key, s in self.ledger.items() if s == state}

    def summary(self) -> str:
        states = dict(sorted(Counter(self.ledger.values()).items()))
        kills = (
            f"{self.kills} kills (at {', '.join(f'{d:.2f}' for d in self.delays)} s after taking the lease)"
            if self.kills
            else "never killed"
        )
        return f"{kills}, {self.lives} lives, {len(self.sent)} adapter calls, ledger {states}, {self.elapsed:.1f} s"


class Worker:
    """One life of the crash worker; its stdout is read by a thread so that waits can time out."""

    def __init__(self, events: Path, store: Path, sent: Path, *extra: str) -> None:
        self.stderr_path = store.with_name(f"{store.name}.stderr")
        with self.stderr_path.open("ab") as stderr:
            command = [sys.executable, str(WORKER), "--events", events, "--store", store, "--sent", sent, *extra]
            self.process = subprocess.Popen(list(map(str, command)), stdout=subprocess.PIPE, stderr=stderr, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, wanted: str) -> bool:
        """Wait until the worker prints ``wanted``; ``False`` if it exited first."""
        while True:
            try:
                line = self.lines.get(timeout=STEP_TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"the worker did not print {wanted!r} within {STEP_TIMEOUT} s") from None
            if line is None:
                return False
            if line == wanted:
                return True

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STEP_TIMEOUT)

    def finish(self) -> int:
        return self.process.wait(timeout=STEP_TIMEOUT)

    def errors(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-3000:]


def read_sent(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    # An empty line is where a worker closed off a record cut short by a kill; a cut record does not parse.
    return [msgspec.json.decode(line) for line in path.read_bytes().splitlines() if line.strip()]


def read_run(store: Path, sent: Path, **figures: Any) -> Run:
    with SQLiteStore(store) as s:
        ledger = {entry.key: entry.state for entry in s.ledger()}
        last_seq = s.last_seq()
        check = s.check()
    return Run(read_sent(sent), ledger, last_seq, check, check_database(store), **figures)


def purchases(events: Path) -> dict[str, float]:
    """The first purchase time of each cart, keyed as messages are (the cart id, else the session id)."""
    first: dict[str, float] = {}
    for line in events.read_bytes().splitlines():
        event = msgspec.json.decode(line)
        if event["event"] == "purchase":
            cart_key = event.get("cart_id") or event["session_id"]
            first[cart_key] = min(first.get(cart_key, event["ts"]), event["ts"])
    return first


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("crash") / "events.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in generate_jsonl(SESSIONS, seed=SEED)))
    return path


@pytest.fixture(scope="module")
def reference(events: Path) -> Run:
    store, sent = events.with_name("reference.db"), events.with_name("reference-sent.jsonl")
    started = time.monotonic()
    worker = Worker(events, store, sent)
    code = worker.finish()
    assert code == 0, f"the reference worker exited with {code}:\n{worker.errors()}"
    return read_run(store, sent, elapsed=time.monotonic() - started)


@pytest.fixture(scope="module")
def crashed(events: Path, reference: Run) -> Run:
    store, sent = events.with_name("crashed.db"), events.with_name("crashed-sent.jsonl")
    rng = random.Random(SEED)
    started = time.monotonic()
    kills, lives, delays = 0, 0, []
    extra = ("--pace", str(PACE), "--send-latency", str(SEND_LATENCY))
    while True:
        worker = Worker(events, store, sent, *extra)
        lives += 1
        try:
            if kills < KILLS and worker.wait_for("owner"):
                delay = rng.uniform(*KILL_DELAY)
                try:
                    worker.process.wait(timeout=delay)  # it may finish first: then that kill did not happen
                except subprocess.TimeoutExpired:
                    worker.kill()
                    kills += 1
                    delays.append(delay)
                    continue
            code = worker.finish()
        finally:
            worker.kill()  # never leave a worker behind, whatever went wrong
        assert code == 0, f"life {lives} of the worker exited with {code}:\n{worker.errors()}"
        break
    return read_run(store, sent, kills=kills, lives=lives, delays=delays, elapsed=time.monotonic() - started)


@pytest.fixture(scope="module")
def lines(events: Path) -> int:
    return len(events.read_bytes().splitlines())


@pytest.fixture(autouse=True)
def _figures(request: pytest.FixtureRequest) -> None:
    # Shown for passing tests too (``pytest -rP``), and kept in ``--junitxml`` reports, with or without ``-s``.
    for name in ("reference", "crashed"):
        if name in request.fixturenames:
            run: Run = request.getfixturevalue(name)
            request.node.add_report_section("call", name, run.summary())
            request.node.user_properties += [
                (f"{name}_kills", run.kills),
                (f"{name}_unknown_outcomes", len(run.keys_in("unknown"))),
            ]


@pytest.mark.slow
def test_the_reference_run_sends_a_few_hundred_messages_once_each(reference: Run) -> None:
    keys = [record["key"] for record in reference.sent]
    assert len(keys) >= 200, reference.summary()
    assert len(set(keys)) == len(keys), reference.summary()
    assert reference.ledger == dict.fromkeys(keys, "sent"), reference.summary()


@pytest.mark.slow
def test_the_worker_was_killed_at_random_moments_at_least_five_times(crashed: Run) -> None:
    assert crashed.kills >= MIN_KILLS, crashed.summary()
    assert crashed.lives == crashed.kills + 1, crashed.summary()


@pytest.mark.slow
def test_no_key_reaches_the_adapter_twice_across_kills(crashed: Run) -> None:
    calls = Counter(record["key"] for record in crashed.sent)
    twice = sorted(key for key, n in calls.items() if n > 1)
    assert twice == [], f"{len(twice)} keys sent more than once, e.g. {twice[:5]}; {crashed.summary()}"


@pytest.mark.slow
def test_every_key_sent_across_kills_was_sent_by_the_reference(crashed: Run, reference: Run) -> None:
    spurious = sorted(crashed.sent_keys - reference.sent_keys)
    assert spurious == [], f"{len(spurious)} keys the reference never sent, e.g. {spurious[:5]}; {crashed.summary()}"


@pytest.mark.slow
def test_keys_sent_or_left_unknown_across_kills_are_exactly_the_references(crashed: Run, reference: Run) -> None:
    # An unknown outcome is a send a kill interrupted between claim and finish: it may or may not have reached
    # the adapter, and is never sent again. Nothing else may be missing: a missing key is a lost event.
    outcome = crashed.sent_keys | crashed.keys_in("unknown")
    missing = sorted(reference.sent_keys - outcome)
    assert missing == [], f"{len(missing)} keys never sent, e.g. {missing[:5]}; {crashed.summary()}"
    assert outcome == reference.sent_keys, crashed.summary()


@pytest.mark.slow
def test_the_ledger_agrees_with_the_adapter_calls_across_kills(crashed: Run) -> None:
    # Every claimed key ended sent or unknown (event time: no purchase gate, no failures), and the ledger says
    # "sent" only of a call the log shows: the adapter's record is on disk before the engine hears of the send.
    assert set(crashed.ledger.values()) <= {"sent", "unknown"}, crashed.summary()
    assert crashed.keys_in("sent") <= crashed.sent_keys, crashed.summary()
    assert crashed.sent_keys <= set(crashed.ledger), crashed.summary()


@pytest.mark.slow
def test_the_store_file_is_intact_after_the_kills(crashed: Run) -> None:
    assert crashed.check == [], crashed.summary()
    assert crashed.database == [], crashed.summary()


@pytest.mark.slow
def test_every_line_was_journaled_exactly_once_across_kills(crashed: Run, reference: Run, lines: int) -> None:
    assert reference.last_seq == lines
    assert crashed.last_seq == lines, crashed.summary()


@pytest.mark.slow
@pytest.mark.parametrize("run", ["reference", "crashed"])
def test_no_message_is_due_after_its_cart_was_bought(run: str, request: pytest.FixtureRequest, events: Path) -> None:
    result: Run = request.getfixturevalue(run)
    bought = purchases(events)
    late = sorted(
        (record["key"], record["due_at"] - bought[cart])
        for record in result.sent
        if (cart := record["key"].rsplit("/", 2)[0]) in bought and record["due_at"] >= bought[cart]
    )
    assert late == [], f"{len(late)} messages due at or after the purchase, e.g. {late[:5]}; {result.summary()}"


# -- Two bugs of src found by killing the worker under a heavier load than the tests above use (``--pace 0.02``:
# messages queue for delivery slots), pinned here in one process. A send that hangs, and a close that gives up on
# it (``close_timeout``), leave the store as a kill would: the last checkpoint, written while a message waited for
# the channel's only delivery slot, and a claim without an outcome.

T0 = 1_767_225_600.0
ONE_SLOT = Config(
    abandon_after=600,
    channels={"webhook": ChannelPolicy(address="none", requires_consent=False, concurrency=1)},
    flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="webhook")])],
)
ITEMS = [{"item_id": "A", "price": "10.00", "quantity": 1}]


def add_to_cart(session: str, t: float) -> dict[str, Any]:
    return {"event": "add_to_cart", "session_id": session, "ts": T0 + t, "currency": "EUR", "items": ITEMS}


class Recorder:
    def __init__(self, *, hang: bool = False) -> None:
        self.keys: list[str] = []
        self.hang = hang
        self.called = anyio.Event()

    async def send(self, message: Message) -> None:
        self.keys.append(message.key)
        self.called.set()
        if self.hang:
            await anyio.sleep_forever()


async def replay(db: Path, events: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Replay ``events`` (none: a restart) to the end of input; the keys sent, and those still pending."""
    adapter = Recorder()
    async with Engine(ONE_SLOT, channels={"webhook": adapter}, clock=EventClock(), store=db) as engine:
        await engine.submit_many(events)
        await engine.flush(end_of_input=True)
        return adapter.keys, [m.key for m in engine.pending_messages()]


async def replay_until_stuck(db: Path, events: list[dict[str, Any]], *, end_of_input: bool) -> None:
    """Replay ``events`` with the first send hanging; checkpoint while the second waits for the slot; give up."""
    adapter = Recorder(hang=True)
    engine = Engine(ONE_SLOT, channels={"webhook": adapter}, clock=EventClock(), store=db)
    engine.close_timeout = 0.2
    async with engine:
        await engine.submit_many(events)
        await adapter.called.wait()
        if end_of_input:
            with anyio.move_on_after(0.2):
                await engine.flush(end_of_input=True)  # cannot finish; the end of input has gone through
        await engine.checkpoint()
    assert adapter.keys == ["s1/f/0"]


@pytest.mark.anyio
async def test_a_message_due_before_a_purchase_still_waiting_for_a_slot_at_a_crash_is_sent_after_restart(
    tmp_path: Path,
) -> None:
    events = [
        add_to_cart("s1", 0),
        add_to_cart("s2", 0),  # its message is due at 600 s
        {"event": "purchase", "session_id": "s2", "ts": T0 + 5000, "value": "10.00", "currency": "EUR"},
        {"event": "page_view", "session_id": "x", "ts": T0 + 10_000},
    ]
    assert await replay(tmp_path / "reference.db", events) == (["s1/f/0", "s2/f/0"], [])
    db = tmp_path / "state.db"
    await replay_until_stuck(db, events, end_of_input=False)
    sent, pending = await replay(db, [])
    assert (sent, pending) == (["s2/f/0"], [])
    with SQLiteStore(db) as store:
        assert {e.key: e.state for e in store.ledger()} == {"s1/f/0": "unknown", "s2/f/0": "sent"}


@pytest.mark.anyio
async def test_a_message_due_at_the_end_of_input_still_waiting_for_a_slot_at_a_crash_is_sent_after_restart(
    tmp_path: Path,
) -> None:
    events = [add_to_cart("s1", 0), add_to_cart("s2", 0), {"event": "page_view", "session_id": "x", "ts": T0 + 10_000}]
    assert await replay(tmp_path / "reference.db", events) == (["s1/f/0", "s2/f/0"], [])
    db = tmp_path / "state.db"
    await replay_until_stuck(db, events, end_of_input=True)
    sent, pending = await replay(db, [])
    assert (sent, pending) == (["s2/f/0"], [])
    with SQLiteStore(db) as store:
        assert {e.key: e.state for e in store.ledger()} == {"s1/f/0": "unknown", "s2/f/0": "sent"}
