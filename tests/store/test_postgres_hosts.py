"""Two hosts on one PostgreSQL store, as real processes on the wall clock: the promises hold across hosts.

Each "host" is ``tests/workers/pg_host_worker.py`` (its docstring has the protocol): a live engine opened with
``store=URL``, on a store made as ``recoverkit db init`` makes it, once with one partition (the host holding the
pipeline lease processes everything) and once with eight (each host runs its share; a customer's two sessions
are then in different partitions, so their consent, the cap and a purchase must cross partitions). Every host
journals what it tracks into the shared journal. The shoppers' events are split
between the hosts as a load balancer without sticky sessions splits them: a customer's cart (identify, then
add to cart) through one host, their consent (from their phone) and their second cart through the other, and a
buyer's purchase (a payment webhook) through the other host than the cart. The flow sends one email as soon as
a cart is abandoned (1 s after its last activity), capped at one per customer a week.

One scenario (:func:`scenario`, once per module) in three waves of shoppers: the first with both hosts up; the
second tracked through both, then the lease owner killed with ``kill -9`` before any of its messages is due;
the third through the survivor and a restarted host. The tests below each check one thing it observed: every
customer who left got exactly one message, whichever host their events went through (consent and cap are
global); no buyer got any; the survivor took the pipeline over within the lease time plus slack, and sent the
second wave's messages (none lost with the killed host, which had journaled them in PostgreSQL); the store is
consistent afterwards.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

from .postgres_cluster import postgres_cluster, postgres_url  # noqa: F401 - fixtures used by name

pytest.importorskip("psycopg", reason="the postgres extra is not installed (pip install '.[postgres]')")

from recoverkit.store.postgres import PostgresStore, init

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and POSIX process handling"),
]

WORKER = Path(__file__).resolve().parents[1] / "workers" / "pg_host_worker.py"
LEASE_TTL = 1.0  # as the worker configures it
#: What a take-over may take beyond the lease: polling the lease, restoring the checkpoint, a loaded 2-core CI.
TAKEOVER_SLACK = 2.0
#: Seconds any one step may take (start-up, an answer, a condition polled for) before the test fails.
STEP_TIMEOUT = 20.0
POLL = 0.02
SHOPPERS_PER_WAVE = 24
ITEMS = [{"item_id": "SKU-1", "price": "19.90", "quantity": 1}]


class Host:
    """One host's engine process; answers are read by a thread so that every wait can time out."""

    def __init__(self, url: str, sent: Path, name: str) -> None:
        self.name = name
        self.stderr_path = sent.with_name(f"{name}.stderr")
        command = [sys.executable, str(WORKER), "--url", url, "--sent", str(sent), "--name", name]
        with self.stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True
            )
        assert self.process.stdin is not None
        self.stdin = self.process.stdin
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def ready(self) -> Host:
        assert self._line() == "ready", self.errors()
        return self

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
            raise AssertionError(f"no answer from {self.name} within {STEP_TIMEOUT} s:\n{self.errors()}") from None
        assert line is not None, f"{self.name} exited ({self.process.poll()}):\n{self.errors()}"
        return line

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        self.stdin.write(msgspec.json.encode(command).decode() + "\n")
        self.stdin.flush()
        answer: dict[str, Any] = msgspec.json.decode(self._line())
        return answer

    def track(self, events: list[dict[str, Any]]) -> None:
        assert self.ask({"track": events}) == {"tracked": len(events)}, self.errors()

    def is_owner(self) -> bool:
        return bool(self.ask({"status": True})["owner"])

    def owned(self) -> int:
        """How many partitions this host runs (one-partition store: 1 while it holds the pipeline lease)."""
        return int(self.ask({"status": True})["owned"])

    def kill(self) -> float:
        """SIGKILL the host; return the wall time of the kill."""
        killed_at = time.time()
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STEP_TIMEOUT)
        self.stdin.close()
        return killed_at

    def close(self) -> int:
        """End the host's input: it closes its engine cleanly and exits."""
        if not self.stdin.closed:
            self.stdin.close()
        return self.process.wait(timeout=STEP_TIMEOUT)

    def errors(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-3000:]


def shopper_events(customer: str, *, buyer: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The events of one customer: those through the cart's host, and those through the other host."""
    web, phone = f"{customer}.web", f"{customer}.phone"
    cart_host = [
        {"event": "identify", "session_id": web, "customer_id": customer, "email": f"{customer}@example.com"},
        {"event": "add_to_cart", "session_id": web, "customer_id": customer, "currency": "EUR", "items": ITEMS},
    ]
    other_host = [
        {"event": "consent", "session_id": phone, "customer_id": customer, "granted": ["email"]},
        {"event": "add_to_cart", "session_id": phone, "customer_id": customer, "currency": "EUR", "items": ITEMS},
    ]
    if buyer:  # the payment provider's webhook lands on the other host than the cart
        other_host.append({"event": "purchase", "session_id": web, "customer_id": customer, "currency": "EUR"})
    return cart_host, other_host


@dataclass
class Observed:
    """What the scenario saw, for the tests to check."""

    leavers: set[str] = field(default_factory=set)
    buyers: set[str] = field(default_factory=set)
    #: Customer -> the adapter calls for them, ``(key, host, pid)``.
    sent: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    killed: str = ""
    killed_pid: int = 0
    wave_two: set[str] = field(default_factory=set)
    takeover_s: float = 0.0
    ledger_states: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    exit_codes: list[int] = field(default_factory=list)


def track_wave(wave: int, hosts: tuple[Host, Host], observed: Observed) -> set[str]:
    """Track a wave of shoppers split across ``hosts``; return its customers."""
    customers: set[str] = set()
    through: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    for i in range(SHOPPERS_PER_WAVE):
        customer = f"w{wave}-c{i}"
        buyer = i % 3 == 0
        (observed.buyers if buyer else observed.leavers).add(customer)
        customers.add(customer)
        cart_host, other_host = shopper_events(customer, buyer=buyer)
        first, second = (0, 1) if i % 2 == 0 else (1, 0)  # half the carts through each host
        through[first].extend(cart_host)
        through[second].extend(other_host)
    hosts[0].track(through[0])
    hosts[1].track(through[1])
    return customers


def read_sent(path: Path) -> dict[str, list[tuple[str, str, str]]]:
    sent: dict[str, list[tuple[str, str, str]]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, host, pid = line.split(" ")
            sent.setdefault(key.split(".", 1)[0], []).append((key, host, pid))
    return sent


def wait_for(condition: Callable[[], bool], what: str, timeout: float = STEP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not {what} within {timeout} s"
        time.sleep(POLL)


def wait_for_messages(sent_log: Path, customers: set[str]) -> None:
    wait_for(lambda: customers <= set(read_sent(sent_log)), f"messaged: {sorted(customers - set(read_sent(sent_log)))}")


@pytest.fixture(scope="module", params=[1, 8], ids=["one-partition", "eight-partitions"])
def scenario(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres_cluster: Any  # noqa: F811
) -> Iterator[Observed]:
    partitions: int = request.param
    name = postgres_cluster.create_database()
    url = postgres_cluster.url(name)
    sent_log = tmp_path_factory.mktemp("hosts") / "sent.log"
    hosts: list[Host] = []
    observed = Observed()
    try:
        # init(), what `recoverkit db init URL` runs: main() here would leave its stderr handler on the
        # "recoverkit" logger for the rest of the session (conftest restores it per test, not per module).
        init(url, partitions=partitions)
        hosts = [Host(url, sent_log, "host-a"), Host(url, sent_log, "host-b")]
        a, b = (host.ready() for host in hosts)
        if partitions == 1:
            wait_for(lambda: a.is_owner() or b.is_owner(), "one host owning the pipeline")
            assert not (a.is_owner() and b.is_owner())
        else:  # the partitions spread evenly over the two hosts
            wait_for(lambda: a.owned() == b.owned() == partitions // 2, "the partitions spread over both hosts")

        wave1 = track_wave(1, (a, b), observed)
        wait_for_messages(sent_log, wave1 & observed.leavers)

        # Wave two journaled through both hosts, then the owner killed before any of its messages is due.
        observed.wave_two = track_wave(2, (a, b), observed)
        owner, survivor = (a, b) if a.owned() else (b, a)
        observed.killed, observed.killed_pid = owner.name, owner.process.pid
        killed_at = owner.kill()
        wait_for(lambda: survivor.owned() == partitions, f"{survivor.name} owning every partition after the kill")
        observed.takeover_s = time.time() - killed_at

        # The killed host comes back (a new process) and both take wave three.
        restarted = Host(url, sent_log, f"{owner.name}-restarted")
        hosts.append(restarted)
        restarted.ready()
        if partitions > 1:  # the newcomer gets its share, handed over by the survivor
            wait_for(lambda: restarted.owned() == partitions // 2, "the restarted host taking its share")
        wave3 = track_wave(3, (survivor, restarted), observed)
        wait_for_messages(sent_log, (observed.wave_two | wave3) & observed.leavers)
        time.sleep(1.5)  # any second message or message to a buyer would be due by now
        observed.sent = read_sent(sent_log)
        observed.exit_codes = [survivor.close(), restarted.close()]
        with PostgresStore(url) as store:
            observed.ledger_states = Counter(entry.state for entry in store.ledger())
            observed.problems = store.check()
        observed.info = {"takeover_s": round(observed.takeover_s, 2), "partitions": partitions}
        yield observed
    finally:
        for host in hosts:
            if host.process.poll() is None:
                host.kill()
        postgres_cluster.drop_database(name)


def test_every_customer_who_left_got_exactly_one_message_whichever_host_their_events_went_through(
    scenario: Observed,
) -> None:
    # Two carts each, through two hosts, consent through the other: one message (the cap), and it needed the
    # consent and address that reached the owner through the other host.
    assert {c: len(calls) for c, calls in scenario.sent.items() if len(calls) != 1} == {}
    assert scenario.leavers <= set(scenario.sent)


def test_no_buyer_got_a_message(scenario: Observed) -> None:
    assert sorted(scenario.buyers & set(scenario.sent)) == []
    assert set(scenario.sent) == scenario.leavers


def test_the_survivor_took_over_within_the_lease_time_and_lost_nothing(scenario: Observed) -> None:
    assert scenario.takeover_s <= LEASE_TTL + TAKEOVER_SLACK, scenario.info
    wave_two = scenario.wave_two & scenario.leavers
    assert wave_two <= set(scenario.sent)  # the killed host's events were in PostgreSQL, not in its memory
    senders = {pid for customer in wave_two for (_, _, pid) in scenario.sent[customer]}
    assert str(scenario.killed_pid) not in senders


def test_the_store_is_consistent_after_the_run(scenario: Observed) -> None:
    assert scenario.problems == []
    # Every message finished; a send the killed owner had in flight would be 'unknown', and it had none.
    assert scenario.ledger_states == Counter({"sent": len(scenario.leavers)})
    assert scenario.exit_codes == [0, 0]
