"""The example Django shop on two "hosts" sharing one PostgreSQL: two separate gunicorn masters, two sync workers
each, every shopper's requests alternating between them as a load balancer without sticky sessions sends them.

Both masters run the example shop with ``SHOP_DATABASE_URL`` naming one database of a throwaway PostgreSQL cluster
(``tests/store/postgres_cluster.py``): the shop's tables, and recoverkit's store in its own schema, made first with
``recoverkit db init URL`` and named the way docs/django.md recommends, ``RECOVERKIT["STORE"] = {"DATABASE":
"default"}``. Every worker's engine journals what its requests record into the one journal; the one holding the
pipeline lease (on either host) runs the pipeline for both. The settings are the process tests'
(``django_support.process_settings``: files in a temporary folder, ``X-Worker`` on every response) with the
shop's database and store, a two-step flow in seconds (the reminder as soon as a cart is abandoned, 5 s after its
last event, a last call with a discount code 1 s later) and ``durability = "sync"`` (what a request recorded is
in PostgreSQL when its response goes out, so a host killed between two requests loses nothing accepted). They
are written to the test's folder as a module of their own, ``two_hosts_settings``.

Each shopper browses, fills a cart, gives an address with consent and chooses shipping, one request to one
master and the next to the other; buyers then pay through the other master than the one that recorded their
last cart event (as a payment provider's webhook lands on whichever host). The outbox (``DemoOutbox``, one JSON
line per message with the sending process's pid) and the store's ledger are then counted per cart and step.

Two runs: both masters up throughout; and three waves of shoppers, the host whose worker runs the pipeline (on
a partitioned store, partition 0) killed with ``kill -9`` (master and workers at once: a host lost) as soon as the
second wave has finished, before the second wave's messages are due, then restarted for the third. Each on a
store of one partition (one worker runs the pipeline, under the pipeline lease) and of eight (each worker's
engine runs its share of the partitions): ``partitions`` is ``recoverkit db init --partitions``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

try:  # tests/contrib is a plain directory; should it become a package, its modules import relatively
    from django_support import EXAMPLE
    from django_support.processes import process_env, read_outbox, wait_for
except ImportError:  # pragma: no cover
    from .django_support import EXAMPLE
    from .django_support.processes import process_env, read_outbox, wait_for

from store.postgres_cluster import Cluster, postgres_cluster  # noqa: F401 - the fixture is used by name

pytest.importorskip("psycopg", reason="the postgres extra is not installed (pip install '.[postgres]')")

from recoverkit.store import PIPELINE_LEASE
from recoverkit.store.postgres import PostgresStore

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("gunicorn") is None,
        reason="gunicorn is not installed (pip install gunicorn) - the multi-process test needs it",
    ),
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and POSIX process groups"),
]

#: The store's partition counts to run with (``recoverkit db init --partitions``).
PARTITIONS = [1, 8]
#: Long enough that a buyer's own requests, on a loaded 2-core machine, are never that far apart.
ABANDON_AFTER = 5.0
LAST_CALL_DELAY = 1.0
STEPS = (0, 1)
LEASE_TTL = 2.0
SHOPPERS = 40
WAVE = 14
#: Browsers at a time: more than the four workers, so that requests queue a little as they do under load.
BROWSERS = 6
_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')

SETTINGS = f'''"""The example shop on the PostgreSQL database SHOP_DATABASE_URL names, with recoverkit's store in it
(STORE = {{"DATABASE": "default"}}, from shopsite.settings): written by tests/contrib/test_django_two_hosts.py."""

from django_support.process_settings import *  # noqa: F403 - files in RK_TEST_DIR, X-Worker
from django_support.process_settings import RECOVERKIT as _PROCESS
from shopsite.recovery import RECOVERY_CONFIG
from shopsite.settings import DATABASES  # noqa: F401 - the shop's PostgreSQL database
from shopsite.settings import RECOVERKIT as _SHOP

RECOVERKIT = {{
    **_PROCESS,
    "STORE": _SHOP["STORE"],
    "CONFIG": {{
        "abandon_after": {ABANDON_AFTER},
        "tick_interval": 0.05,
        "store": {{"checkpoint_interval": 1, "lease_ttl": {LEASE_TTL}, "durability": "sync"}},
        "offers": RECOVERY_CONFIG["offers"],
        "flows": [{{"name": "cart-recovery", "steps": [
            {{"delay": 0, "channel": "email", "template": "cart-reminder"}},
            {{"delay": {LAST_CALL_DELAY}, "channel": "email", "template": "cart-last-call", "offer": "ten-percent"}},
        ]}}],
        "links": RECOVERY_CONFIG["links"],
    }},
}}
'''


class Master:
    """One "host": a gunicorn master with two sync workers, in a process group of its own (so that killing the
    group loses the host: master and workers at once)."""

    def __init__(self, name: str, env: dict[str, str], directory: Path, *, preload: bool) -> None:
        self.name = name
        self.log = directory / f"{name}.log"
        command = [
            sys.executable, "-m", "gunicorn", *(["--preload"] if preload else []), "--workers", "2",
            "--bind", "127.0.0.1:0", "--graceful-timeout", "30", "--timeout", "120", "--error-logfile", str(self.log),
            "--chdir", str(EXAMPLE), "shopsite.wsgi:application",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self.address = ""

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def ready(self) -> Master:
        found = wait_for(
            lambda: re.search(r"Listening at: (http://\S+)", self.text()), f"{self.name} to listen", timeout=120
        )
        self.address = found.group(1)
        wait_for(lambda: self.text().count("Booting worker") >= 2, f"{self.name}'s two workers", timeout=120)
        return self

    def workers(self) -> set[int]:
        return {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", self.text())}

    def kill(self) -> float:
        """``kill -9`` the host, master and workers at once; the wall time of the kill."""
        killed_at = time.time()
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)
        return killed_at

    def stop(self) -> int | None:
        """A graceful stop (SIGTERM: the workers drain their engines); the master's exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=120)
            finally:
                if self.process.poll() is None:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()
        return self.process.returncode


@dataclass
class Visit:
    """One shopper's browser: which master and worker served each request, when, and what they bought."""

    number: int
    buys: bool
    email: str = ""
    masters: list[str] = field(default_factory=list)
    workers: list[int] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)
    order: str | None = None
    #: The master that recorded the last cart event (shipping), and the one that recorded the purchase.
    cart_master: str = ""
    paid_master: str = ""
    #: Wall time when the payment's response came back: the purchase was in PostgreSQL by then (sync).
    paid_at: float = 0.0

    def longest_quiet(self) -> float:
        """An upper bound of the longest time between two of this shopper's events: from the start of a request
        to the end of the next."""
        return max(
            (after[1] - before[0] for before, after in zip(self.spans, self.spans[1:], strict=False)), default=0.0
        )


def shop(masters: list[Master], number: int, *, buys: bool) -> Visit:
    """One shopper in a new browser (one cookie jar for both masters, which share the host name): request ``k``
    goes to ``masters[(number + k) % len(masters)]``; a buyer's payment goes to the other master than their
    shipping step."""
    import httpx

    visit = Visit(number, buys, email=f"shopper-{number}@example.com")
    with httpx.Client(timeout=60, headers={"Connection": "close"}) as browser:

        def request(k: int, method: str, path: str, status: int, form: dict[str, str] | None = None) -> httpx.Response:
            master = masters[(number + k) % len(masters)]
            started = time.monotonic()
            response = browser.request(method, master.address + path, data=form)
            visit.spans.append((started, time.monotonic()))
            assert response.status_code == status, (
                master.name,
                method,
                path,
                response.status_code,
                response.text[:300],
            )
            visit.masters.append(master.name)
            visit.workers.append(int(response.headers["X-Worker"]))
            return response

        def token(response: httpx.Response) -> str:
            found = _TOKEN.search(response.text)
            assert found is not None, response.text[:300]
            return found.group(1)

        csrf = token(request(0, "GET", "/", 200))
        request(1, "POST", "/cart/add", 302, {"sku": "MUG-1", "csrfmiddlewaretoken": csrf})
        request(2, "POST", "/cart/add", 302, {"sku": "TEE-1", "csrfmiddlewaretoken": csrf})
        assert "Enamel mug" in request(3, "GET", "/cart", 200).text
        page = request(4, "GET", "/checkout/address", 200)
        request(
            5,
            "POST",
            "/checkout/address",
            302,
            {"email": visit.email, "marketing": "yes", "csrfmiddlewaretoken": token(page)},
        )
        page = request(6, "GET", "/checkout/shipping", 200)
        request(7, "POST", "/checkout/shipping", 302, {"shipping": "express", "csrfmiddlewaretoken": token(page)})
        visit.cart_master = visit.masters[-1]
        if buys:
            page = request(7, "GET", "/checkout/payment", 200)  # the same master: the next request is the other's
            paid = request(
                8, "POST", "/checkout/payment", 302, {"card": "4242 4242 4242 4242", "csrfmiddlewaretoken": token(page)}
            )
            visit.paid_at, visit.paid_master = time.time(), visit.masters[-1]
            visit.order = paid.headers["Location"].rsplit("/", 1)[-1]
            assert visit.order in request(9, "GET", paid.headers["Location"], 200).text
    return visit


def shop_wave(masters: list[Master], numbers: range) -> list[Visit]:
    """Shoppers ``numbers`` at ``BROWSERS`` at a time; every third one buys."""
    with ThreadPoolExecutor(max_workers=BROWSERS) as browsers:
        return list(browsers.map(lambda n: shop(masters, n, buys=n % 3 == 0), numbers))


@dataclass
class Run:
    """What a run saw, for the assertions."""

    visits: list[Visit]
    messages: list[dict[str, Any]]
    #: The store's ledger: key -> state.
    ledger: dict[str, str]
    dead_letters: int
    problems: list[str]
    exit_codes: dict[str, int | None]
    served_by: dict[str, set[int]]
    seconds: float
    killed: str = ""
    takeover_s: float = 0.0
    #: Messages for the second wave's shoppers that the survivor sent after the kill.
    sent_after_kill: int = 0

    @property
    def leavers(self) -> list[Visit]:
        return [visit for visit in self.visits if not visit.buys]

    def slow_buyers(self) -> int:
        """Buyers whose own requests were once further apart than the abandonment wait (a loaded machine): their
        cart really was abandoned meanwhile, so a message before they paid is right."""
        return sum(visit.buys and visit.longest_quiet() >= ABANDON_AFTER - 0.25 for visit in self.visits)

    def per_step(self) -> Counter[tuple[str, int]]:
        return Counter((message["to"], message["step"]) for message in self.messages)


class Shop:
    """The shop's PostgreSQL database with recoverkit's store in it, and the masters serving it."""

    def __init__(self, cluster: Cluster, directory: Path, partitions: int) -> None:
        self.directory = directory
        self.cluster = cluster
        self.database = cluster.create_database()
        self.url = cluster.url(self.database)
        (directory / "two_hosts_settings.py").write_text(SETTINGS)
        self.env = process_env(
            directory, "embedded", DJANGO_SETTINGS_MODULE="two_hosts_settings", SHOP_DATABASE_URL=self.url
        )
        self.env["PYTHONPATH"] = os.pathsep.join((str(directory), self.env["PYTHONPATH"]))
        self.masters: list[Master] = []
        # What an operator runs once, from a deploy step: the store's schema, then the shop's tables; and the
        # settings check, which names the store the settings point at (the shop's database).
        self._run([sys.executable, "-m", "recoverkit", "db", "init", self.url, "--partitions", str(partitions)])
        self._run([sys.executable, str(EXAMPLE / "manage.py"), "migrate", "--no-input"])
        self.checked = self._run([sys.executable, str(EXAMPLE / "manage.py"), "recoverkit", "check"]).stdout

    def _run(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=180, check=False)
        assert done.returncode == 0, (command[1:4], done.stdout, done.stderr)
        return done

    def start(self, name: str, *, preload: bool) -> Master:
        master = Master(name, self.env, self.directory, preload=preload)
        self.masters.append(master)
        return master.ready()

    def outbox(self) -> list[dict[str, Any]]:
        return read_outbox(self.directory / "outbox.jsonl")

    def wait_until_handled(self, store: PostgresStore, visits: list[Visit]) -> None:
        """Until every shopper who left has both messages, and the pipeline has recorded every purchase and every
        message it sent: no event is then left that could cause a message (the approach of
        test_django_gunicorn.py: wait for the pipeline's own records, not for a pause to pass). A send a killed
        host had in flight counts as handled once the ledger says ``unknown``: it is never sent again."""
        wanted = {(visit.email, step) for visit in visits if not visit.buys for step in STEPS}
        orders = {visit.order for visit in visits if visit.buys}

        def unknown() -> set[str]:
            return {entry.key for entry in store.ledger(["unknown"])}

        def everyone_left_is_messaged() -> bool:
            outbox = self.outbox()
            missing = wanted - {(message["to"], message["step"]) for message in outbox}
            return not missing or len(missing) <= len(unknown() - {message["key"] for message in outbox})

        def pipeline_handled_everyone() -> bool:
            converted = {conversion.transaction_id for conversion in store.conversions()}
            sent = {outcome.key for outcome in store.outcomes() if outcome.outcome == "sent"}
            outbox = {message["key"] for message in self.outbox()}
            return orders <= converted and (outbox <= sent or outbox <= sent | unknown())

        wait_for(everyone_left_is_messaged, "both messages for every shopper who left", timeout=240)
        wait_for(pipeline_handled_everyone, "the pipeline to record every purchase and message", timeout=240)

    def runners(self, store: PostgresStore) -> list[Master | None]:
        """Per partition, the master one of whose workers runs it (holds an unexpired lease on it), or ``None``:
        on a one-partition store the pipeline lease's holder, on more each partition's lease owner."""
        now = time.time()
        leases = sorted(store.partition_leases(), key=lambda lease: lease.partition)
        if len(leases) <= 1:
            owners = [store.lease_holder(PIPELINE_LEASE, now=now)]
        else:
            owners = [lease.owner for lease in leases]  # None once expired, by the server's clock
        return [None if owner is None else self._master_of(owner) for owner in owners]

    def _master_of(self, owner: str) -> Master:
        pid = int(owner.split(":")[-2])  # Engine.owner: host:pid:random
        return next(master for master in self.masters if pid in master.workers())

    def finish(self, store: PostgresStore, visits: list[Visit], started: float) -> Run:
        self.wait_until_handled(store, visits)
        exit_codes = {master.name: master.stop() for master in self.masters if master.process.returncode is None}
        for master in self.masters:
            text = master.text()
            assert "Traceback" not in text and "Exception" not in text, (master.name, text[-3000:])
        return Run(
            visits=visits,
            messages=self.outbox(),
            ledger={entry.key: entry.state for entry in store.ledger()},
            dead_letters=len(store.dead_letters()),
            problems=store.check(),
            exit_codes=exit_codes,
            served_by={master.name: master.workers() for master in self.masters},
            seconds=round(time.monotonic() - started, 1),
        )

    def close(self) -> None:
        for master in self.masters:
            if master.process.poll() is None:
                os.killpg(master.process.pid, signal.SIGKILL)
                master.process.wait()
        self.cluster.drop_database(self.database)


@pytest.fixture
def shop_on(postgres_cluster: Cluster, tmp_path: Path) -> Iterator[Any]:  # noqa: F811
    made: list[Shop] = []

    def make(partitions: int) -> Shop:
        made.append(Shop(postgres_cluster, tmp_path, partitions))
        return made[-1]

    try:
        yield make
    finally:
        for shop_ in made:
            shop_.close()


def assert_the_promises_held(run: Run) -> None:
    """Every shopper who left: each flow step once, or, for a send the killed host had in flight, left ``unknown``
    in the ledger for an operator; buyers: nothing after paying, and nothing at all unless their own requests were
    further apart than the abandonment wait; one ledger entry per cart and step; no dead letter; the store's
    check clean."""
    per_step = run.per_step()
    for visit in run.leavers:
        assert all(per_step[visit.email, step] <= 1 for step in STEPS), (visit.email, per_step)
    missing = [(visit.email, step) for visit in run.leavers for step in STEPS if per_step[visit.email, step] == 0]
    sent_keys = {message["key"] for message in run.messages}
    assert len(sent_keys) == len(run.messages)  # never the same message twice
    # A step no outbox line shows must be a send the killed host left in flight: 'unknown', never claimed again.
    assert len(missing) == len({key for key, state in run.ledger.items() if state == "unknown"} - sent_keys), missing
    for visit in run.visits:
        if not visit.buys:
            continue
        theirs = [message for message in run.messages if message["to"] == visit.email]
        # Sent before the purchase was recorded (its response came back after its commit), or never.
        assert all(message["sent_at"] < visit.paid_at for message in theirs), (visit.email, theirs)
        if visit.longest_quiet() < ABANDON_AFTER - 0.25:
            assert theirs == [], (visit.email, visit.longest_quiet(), theirs)
        assert visit.paid_master != visit.cart_master  # the purchase came through the other host
    assert sent_keys <= set(run.ledger)
    assert len(run.ledger) == len(run.messages) + len(missing)  # one claim per cart and step, none made twice
    assert set(run.ledger.values()) <= {"sent", "unknown"}
    assert run.dead_letters == 0
    assert run.problems == []


def assert_requests_alternated(run: Run) -> None:
    for visit in run.visits:
        assert len(set(visit.masters)) == 2, (visit.email, visit.masters)
    workers = set().union(*run.served_by.values())
    assert {pid for visit in run.visits for pid in visit.workers} <= workers


@pytest.mark.timeout(600)
@pytest.mark.parametrize("partitions", PARTITIONS)
def test_each_abandoned_cart_is_messaged_once_per_step_across_two_gunicorn_hosts(shop_on: Any, partitions: int) -> None:
    started = time.monotonic()
    shop_ = shop_on(partitions)
    shop_.start("host-a", preload=True)
    shop_.start("host-b", preload=False)
    visits = shop_wave(shop_.masters, range(SHOPPERS))
    with PostgresStore(shop_.url) as store:
        run = shop_.finish(store, visits, started)

    assert f"/{shop_.database}" in shop_.checked, shop_.checked  # STORE = {"DATABASE": "default"}: the shop's own
    assert_requests_alternated(run)
    assert_the_promises_held(run)
    leavers = run.leavers
    left = {visit.email for visit in leavers}
    assert {k: n for k, n in run.per_step().items() if k[0] in left} == {(e, step): 1 for e in left for step in STEPS}
    assert Counter(run.ledger.values()) == Counter({"sent": len(run.messages)})
    assert run.exit_codes == {"host-a": 0, "host-b": 0}
    senders = {message["pid"] for message in run.messages}
    assert senders <= run.served_by["host-a"] | run.served_by["host-b"]
    print(
        f"\n{partitions} partition(s): {len(visits)} shoppers ({len(leavers)} left, {run.slow_buyers()} buyers slower "
        f"than the abandonment wait), {len(run.messages)} messages from {len(senders)} worker(s), {run.seconds} s"
    )


@pytest.mark.timeout(600)
@pytest.mark.parametrize("partitions", PARTITIONS)
def test_a_host_killed_mid_run_loses_no_message_and_sends_none_twice(shop_on: Any, partitions: int) -> None:
    started = time.monotonic()
    shop_ = shop_on(partitions)
    a = shop_.start("host-a", preload=True)
    b = shop_.start("host-b", preload=False)
    with PostgresStore(shop_.url) as store:
        visits = shop_wave([a, b], range(WAVE))
        visits += shop_wave([a, b], range(WAVE, 2 * WAVE))
        # The second wave is in PostgreSQL, its messages not yet due (5 s after each cart's last event): lose the
        # host running the pipeline (on a partitioned store, partition 0) now.
        owner = wait_for(lambda: shop_.runners(store)[0], "an owner of partition 0")
        survivor = b if owner is a else a
        killed_at = owner.kill()
        wait_for(
            lambda: set(shop_.runners(store)) == {survivor},
            "the survivor to run every partition",
            timeout=LEASE_TTL + 30,
        )
        takeover_s = time.time() - killed_at
        restarted = shop_.start(f"{owner.name}-restarted", preload=owner is a)
        visits += shop_wave([survivor, restarted], range(2 * WAVE, 3 * WAVE))
        run = shop_.finish(store, visits, started)
    run.killed, run.takeover_s = owner.name, round(takeover_s, 2)
    second_wave_emails = {f"shopper-{n}@example.com" for n in range(WAVE, 2 * WAVE)}
    run.sent_after_kill = sum(m["sent_at"] > killed_at and m["to"] in second_wave_emails for m in run.messages)

    assert_the_promises_held(run)
    # The second wave's carts were not lost with the killed host: what its requests recorded was in PostgreSQL, and
    # the survivor sent what fell due after the kill (every step of every cart is accounted for above: sent once,
    # or 'unknown' for a send the killed host had in flight).
    assert run.sent_after_kill > 0
    assert run.takeover_s <= LEASE_TTL + 3.0, run.takeover_s
    assert run.exit_codes == {survivor.name: 0, restarted.name: 0}
    print(
        f"\n{partitions} partition(s), {run.killed} killed: {len(visits)} shoppers ({len(run.leavers)} left, "
        f"{run.slow_buyers()} buyers slower than the abandonment wait), {len(run.messages)} messages "
        f"({run.sent_after_kill} of the second wave's sent after the kill), ledger {Counter(run.ledger.values())}, "
        f"take-over {run.takeover_s} s, {run.seconds} s"
    )
