"""Live, open carts, their timers and scheduled messages survive a SIGKILL: after a restart on the same SQLite
file each message is sent exactly once, never before it is due, and promptly (within 5 s of the restart) once
overdue.

Real processes on a real file, on the wall clock: ``tests/workers/live_worker.py`` runs a live engine
(``abandon_after=1``, one ``webhook`` step ``delay`` seconds after the abandonment, a checkpoint every 0.1 s, a
1 s lease) and takes ``track`` and ``status`` commands on stdin; its adapter logs (fsynced) each call with the
wall time it was made. A message for a cart tracked at ``t`` is due at ``t + 1 + delay``. A restarted worker
can take the pipeline over only once the killed one's lease has expired (within 1 s of the kill), which the
5 s budget includes. Waits poll with timeouts; the one fixed wait is "until the messages are overdue".
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from recoverkit.store import SQLiteStore

pytestmark = [
    pytest.mark.slow,  # real worker processes, killed and restarted, on real time
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and POSIX process handling"),
]

WORKER = Path(__file__).parent / "workers" / "live_worker.py"
CARTS = 5
ABANDON_AFTER = 1.0
#: The promise under test: an overdue message goes out within this many seconds of the restart.
PROMPT = 5.0
#: Seconds any one step may take (start-up, an answer, a condition polled for) before the test fails.
STEP_TIMEOUT = 15.0
POLL = 0.02


class LiveWorker:
    """One live worker process; answers are read by a thread so that every wait can time out."""

    def __init__(self, store: Path, sent: Path, delay: float) -> None:
        self.store = store
        self.stderr_path = store.with_name(f"{store.name}.stderr")
        command = [sys.executable, str(WORKER), "--store", str(store), "--sent", str(sent), "--delay", str(delay)]
        self.started_at = time.time()
        with self.stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True
            )
        assert self.process.stdin is not None
        self.stdin = self.process.stdin
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._line() == "ready", self.errors()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _line(self) -> str:
        try:
            line = self.lines.get(timeout=STEP_TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no answer from the worker within {STEP_TIMEOUT} s:\n{self.errors()}") from None
        assert line is not None, f"the worker exited ({self.process.poll()}):\n{self.errors()}"
        return line

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        self.stdin.write(msgspec.json.encode(command).decode() + "\n")
        self.stdin.flush()
        answer: dict[str, Any] = msgspec.json.decode(self._line())
        return answer

    def track(self, event: dict[str, Any]) -> None:
        assert self.ask({"track": event}) == {"tracked": True}

    def status(self) -> dict[str, Any]:
        return self.ask({"status": True})

    def wait_until(self, condition: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """Poll the worker's status until ``condition`` holds; return that status."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while not condition(status := self.status()):
            assert time.monotonic() < deadline, f"not {what} within {STEP_TIMEOUT} s: {status}"
            time.sleep(POLL)
        return status

    def kill(self) -> float:
        """SIGKILL the worker; return the wall time of the kill."""
        killed_at = time.time()
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STEP_TIMEOUT)
        self.stdin.close()
        return killed_at

    def close(self) -> int:
        """End the worker's input: it closes its engine cleanly and exits."""
        if not self.stdin.closed:
            self.stdin.close()
        return self.process.wait(timeout=STEP_TIMEOUT)

    def errors(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-3000:]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "state.db", tmp_path / "sent.jsonl"


@pytest.fixture
def start(files: tuple[Path, Path]) -> Iterator[Callable[[float], LiveWorker]]:
    started: list[LiveWorker] = []

    def start_worker(delay: float) -> LiveWorker:
        worker = LiveWorker(*files, delay)
        started.append(worker)
        return worker

    yield start_worker
    for worker in started:  # whatever happened in the test, leave no process behind
        worker.kill()


def add_to_cart(session: str, ts: float) -> dict[str, Any]:
    return {
        "event": "add_to_cart",
        "session_id": session,
        "ts": ts,
        "currency": "EUR",
        "items": [{"item_id": "A", "price": "10.00", "quantity": 1}],
    }


def open_carts(worker: LiveWorker) -> float:
    """Track :data:`CARTS` carts, stamped now, once the worker runs the pipeline; return their time."""
    worker.wait_until(lambda s: s["owner"], "the pipeline's owner")
    now = time.time()
    for i in range(CARTS):
        worker.track(add_to_cart(f"s{i}", now))
    return now


def checkpointed(worker: LiveWorker) -> dict[str, Any]:
    """Wait until a checkpoint covers everything the worker has read, and the store holds it."""
    position = worker.status()["position"]
    status = worker.wait_until(lambda s: s["checkpoint"] >= position, f"checkpointed up to {position}")
    with SQLiteStore(worker.store) as store:
        saved = store.load_checkpoint()
    assert saved is not None and saved.position >= position
    return status


def schedule_and_checkpoint(worker: LiveWorker) -> None:
    """Wait for the carts' messages to be scheduled, then for a checkpoint taken after that.

    A checkpoint is written only when events arrived since the last one: one event of another shopper after
    the abandonments makes sure the next covers the scheduled messages.
    """
    worker.wait_until(lambda s: s["pending"] == CARTS, f"{CARTS} messages scheduled")
    worker.track({"event": "page_view", "session_id": "other", "ts": time.time()})
    checkpointed(worker)


def read_sent(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [msgspec.json.decode(line) for line in path.read_bytes().splitlines()]


def wait_for_sends(path: Path, count: int, timeout: float) -> None:
    """Wait until ``count`` sends are logged, or ``timeout`` seconds (the assertions then say what is missing)."""
    deadline = time.monotonic() + timeout
    while len(read_sent(path)) < count and time.monotonic() < deadline:
        time.sleep(POLL)


def sleep_until(when: float) -> None:
    time.sleep(max(0.0, when - time.time()))


def report(sent: list[dict[str, Any]], since: float, what: str) -> str:
    latencies = sorted(record["sent_at"] - since for record in sent)
    early = sorted(record["sent_at"] - record["due_at"] for record in sent)
    return (
        f"{len(sent)} sends; {what} to send: {', '.join(f'{x:.3f}' for x in latencies)} s; "
        f"sent - due: {', '.join(f'{x:.3f}' for x in early)} s"
    )


def assert_each_sent_once(request: pytest.FixtureRequest, sent: list[dict[str, Any]], pid: int, figures: str) -> None:
    request.node.add_report_section("call", "figures", figures)  # shown for passing tests with ``pytest -rP``
    calls = Counter(record["key"] for record in sent)
    assert calls == Counter({f"s{i}/f/0": 1 for i in range(CARTS)}), figures
    assert {record["pid"] for record in sent} == {pid}, figures  # all by the restarted worker
    early = [record for record in sent if record["sent_at"] < record["due_at"]]
    assert early == [], f"sent before due: {early}; {figures}"


def test_scheduled_messages_overdue_at_restart_are_sent_once_within_5_s(
    start: Callable[[float], LiveWorker], files: tuple[Path, Path], request: pytest.FixtureRequest
) -> None:
    log = files[1]
    delay = 2.0
    first = start(delay)
    t = open_carts(first)
    schedule_and_checkpoint(first)
    first.kill()
    assert read_sent(log) == [], "sent before the kill, ahead of the due time"
    sleep_until(t + ABANDON_AFTER + delay + 0.5)  # every message is overdue now

    restarted_at = time.time()
    second = start(delay)
    wait_for_sends(log, CARTS, timeout=PROMPT + 5)
    assert second.close() == 0, second.errors()
    sent = read_sent(log)  # after a clean close: anything sent twice would be here too
    figures = report(sent, restarted_at, "restart")
    assert_each_sent_once(request, sent, second.process.pid, figures)
    assert all(record["sent_at"] - restarted_at < PROMPT for record in sent), figures


def test_open_carts_abandoned_while_down_are_messaged_once_within_5_s_of_restart(
    start: Callable[[float], LiveWorker], files: tuple[Path, Path], request: pytest.FixtureRequest
) -> None:
    log = files[1]
    delay = 2.0
    first = start(delay)
    t = open_carts(first)
    status = checkpointed(first)
    first.kill()
    # The checkpoint holds open carts and their abandonment timers, not yet messages.
    assert status["pending"] == 0 and time.time() < t + ABANDON_AFTER, "the carts were abandoned before the kill"
    sleep_until(t + ABANDON_AFTER + delay + 0.5)

    restarted_at = time.time()
    second = start(delay)
    wait_for_sends(log, CARTS, timeout=PROMPT + 5)
    assert second.close() == 0, second.errors()
    sent = read_sent(log)
    figures = report(sent, restarted_at, "restart")
    assert_each_sent_once(request, sent, second.process.pid, figures)
    assert all(record["sent_at"] - restarted_at < PROMPT for record in sent), figures


def test_after_a_restart_before_the_due_time_nothing_is_sent_early_and_each_once(
    start: Callable[[float], LiveWorker], files: tuple[Path, Path], request: pytest.FixtureRequest
) -> None:
    log = files[1]
    delay = 7.0  # room for a start-up (slow on a loaded machine) and the lease to expire before anything is due
    first = start(delay)
    t = open_carts(first)
    due = t + ABANDON_AFTER + delay
    schedule_and_checkpoint(first)
    killed_at = first.kill()

    second = start(delay)
    second.wait_until(lambda s: s["owner"], "the pipeline's owner after the kill")
    took_over = time.time()
    assert took_over < due - 0.5, (
        f"the restarted worker took over {took_over - killed_at:.2f} s after the kill, too close to the due time "
        "to tell an early send from one on time"
    )
    assert second.status()["pending"] == CARTS  # restored from the checkpoint, still waiting
    wait_for_sends(log, CARTS, timeout=due - time.time() + PROMPT)
    assert second.close() == 0, second.errors()
    sent = read_sent(log)
    figures = report(sent, due, "due time") + f"; took over {took_over - killed_at:.3f} s after the kill"
    assert_each_sent_once(request, sent, second.process.pid, figures)
    assert all(record["sent_at"] - record["due_at"] < PROMPT for record in sent), figures
