"""What the PostgreSQL store adds for several hosts, on a real server and with real processes: a partitioned
journal with no gap under concurrent writers, partition leases whose epoch fences a lapsed owner, and the
errors of a bad start (tests/store/postgres_cluster.py starts the server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recoverkit.errors import ConfigError, MissingExtraError, StoreError
from recoverkit.store import ClaimRequest

from .postgres_cluster import Cluster, postgres_cluster, postgres_url  # noqa: F401 - fixtures used by name

pytest.importorskip("psycopg", reason="the postgres extra is not installed (pip install '.[postgres]')")

import psycopg  # noqa: E402

from recoverkit.store.postgres import SCHEMA_VERSION, PostgresStore, init, partition_of  # noqa: E402

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def store4(postgres_url: str) -> Iterator[PostgresStore]:  # noqa: F811 - the fixture
    init(postgres_url, partitions=4)
    with PostgresStore(postgres_url) as store:
        yield store


def _python(script: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


# -- the partitioned journal -----------------------------------------------------------------------------------


def test_partition_of_is_stable_and_spreads_sessions() -> None:
    assert partition_of("session-1", 64) == partition_of("session-1", 64)
    counts = [0] * 8
    for n in range(8000):
        counts[partition_of(f"s-{n}", 8)] += 1
    assert min(counts) > 800  # 1000 each on average


def test_events_go_to_their_sessions_partition_with_consecutive_positions(store4: PostgresStore) -> None:
    events = [(f"s{n % 5}", f"e{n}".encode()) for n in range(20)]
    placed = store4.append_keyed(events, now=1.0)
    assert [p for p, _ in placed] == [store4.partition_of(s) for s, _ in events]
    for partition in range(4):
        mine = [(pos, data) for (p, pos), (_, data) in zip(placed, events, strict=True) if p == partition]
        read = store4.read_partition(partition, 0, 100)
        assert [(e.seq, e.data) for e in read] == mine
        assert [pos for pos, _ in mine] == list(range(1, len(mine) + 1))
        assert store4.partition_head(partition) == len(mine)
    assert store4.check() == []


def test_positions_are_never_reused_after_a_trim(store4: PostgresStore) -> None:
    part = store4.partition_of("s")
    store4.append_keyed([("s", b"a"), ("s", b"b")], now=1.0)
    assert store4.trim_partition(part, 2) == 2
    assert store4.append_keyed([("s", b"c")], now=1.0) == [(part, 3)]
    assert [e.seq for e in store4.read_partition(part, 0, 10)] == [3]


def test_the_one_sequence_methods_refuse_a_store_of_several_partitions(store4: PostgresStore) -> None:
    with pytest.raises(StoreError, match="4 partitions, so it has no single sequence"):
        store4.append_events([b"a"], now=1.0)
    with pytest.raises(StoreError, match="no single sequence"):
        store4.load_checkpoint()


_WRITER = """
import sys
from recoverkit.store.postgres import PostgresStore
url, writer, batches = sys.argv[1], sys.argv[2], int(sys.argv[3])
with PostgresStore(url) as store:
    for b in range(batches):
        size = 1 + (b * 7 + len(writer)) % 5
        store.append_keyed([(f"{writer}-s{(b + i) % 13}", f"{writer}:{b}:{i}".encode()) for i in range(size)], now=b)
print("done", flush=True)
"""


@pytest.mark.slow
def test_a_reader_following_each_partition_skips_nothing_and_reads_nothing_twice_under_concurrent_writers(
    postgres_url: str,  # noqa: F811 - the fixture
) -> None:
    """Three writer processes append to 4 partitions at once while this process follows every partition with
    "position > last": each partition is read as positions 1, 2, 3... with no hole and no repeat, and ends
    holding exactly the events written."""
    init(postgres_url, partitions=4)
    writers = [_python(_WRITER, postgres_url, f"w{n}", "150") for n in range(3)]
    seen: dict[int, list[int]] = {p: [] for p in range(4)}
    datas: list[bytes] = []
    with PostgresStore(postgres_url) as store:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            running = any(w.poll() is None for w in writers)
            for p in range(4):
                after = seen[p][-1] if seen[p] else 0
                for entry in store.read_partition(p, after, 50):
                    seen[p].append(entry.seq)
                    datas.append(entry.data)
            if not running and all(len(seen[p]) == store.partition_head(p) for p in range(4)):
                break
        for w in writers:
            out, err = w.communicate(timeout=30)
            assert w.returncode == 0, err
        for p in range(4):
            assert seen[p] == list(range(1, store.partition_head(p) + 1))
        assert store.check() == []
    expected = {
        f"w{n}:{b}:{i}".encode() for n in range(3) for b in range(150) for i in range(1 + (b * 7 + 2) % 5)
    }
    assert len(datas) == len(set(datas)) == len(expected)
    assert set(datas) == expected


# -- partition leases and fencing ------------------------------------------------------------------------------


def test_a_lease_is_renewed_at_the_same_epoch_and_refused_to_another_owner(store4: PostgresStore) -> None:
    first = store4.take_partition(0, "a", ttl=30)
    assert first is not None and first.owner == "a"
    again = store4.take_partition(0, "a", ttl=30)
    assert again is not None and again.epoch == first.epoch and again.expires_at >= first.expires_at
    assert store4.take_partition(0, "b", ttl=30) is None
    assert [lease.owner for lease in store4.partition_leases()] == ["a", None, None, None]


def test_an_expired_lease_passes_to_another_owner_with_the_next_epoch(store4: PostgresStore) -> None:
    first = store4.take_partition(1, "a", ttl=0.2)
    assert first is not None
    time.sleep(0.3)  # the server's clock decides
    taken = store4.take_partition(1, "b", ttl=30)
    assert taken is not None and taken.epoch == first.epoch + 1


def test_a_release_hands_the_partition_over_at_once(store4: PostgresStore) -> None:
    first = store4.take_partition(2, "a", ttl=30)
    assert first is not None
    assert store4.release_partition(2, "a") is True
    assert store4.release_partition(2, "a") is False
    taken = store4.take_partition(2, "b", ttl=30)
    assert taken is not None and taken.epoch == first.epoch + 1


def test_checkpoints_are_fenced_by_the_epoch_and_never_move_back(store4: PostgresStore) -> None:
    lease = store4.take_partition(0, "a", ttl=30)
    assert lease is not None
    save = store4.save_partition_checkpoint
    assert save(0, owner="a", epoch=lease.epoch, position=5, state=b"s5", now=1.0) == "saved"
    assert save(0, owner="a", epoch=lease.epoch, position=4, state=b"s4", now=2.0) == "behind"
    assert save(0, owner="a", epoch=lease.epoch - 1, position=9, state=b"old", now=3.0) == "fenced"
    assert save(0, owner="b", epoch=lease.epoch, position=9, state=b"b", now=3.0) == "fenced"
    checkpoint = store4.load_partition_checkpoint(0)
    assert checkpoint is not None and (checkpoint.position, checkpoint.state) == (5, b"s5")
    assert store4.load_partition_checkpoint(1) is None


def test_fenced_claims_need_the_current_epoch_and_see_purchases_of_every_partition(store4: PostgresStore) -> None:
    lease = store4.take_partition(3, "a", ttl=30)
    assert lease is not None

    def request(key: str, contact: str = "p1") -> ClaimRequest:
        return ClaimRequest(key=key, cart_key=f"cart-{key}", contact_key=contact, channel="email", started_at=10.0,
                            owner="a", now=20.0)  # fmt: skip

    assert store4.claim_fenced(3, lease.epoch + 1, [request("k1")]) == ["not_owner"]
    store4.record_purchase(cart_key=None, contact_key="p2", at=15.0)  # recorded by whoever saw it
    assert store4.claim_fenced(3, lease.epoch, [request("k1"), request("k1"), request("k2", "p2")]) == [
        "claimed", "duplicate", "purchased",
    ]  # fmt: skip


def test_a_new_owner_marks_the_sends_its_predecessor_left_in_flight_unknown(store4: PostgresStore) -> None:
    old = store4.take_partition(1, "a", ttl=0.2)
    assert old is not None

    def request(key: str, owner: str) -> ClaimRequest:
        return ClaimRequest(key=key, cart_key=f"cart-{key}", contact_key="p", channel="email", started_at=0.0,
                            owner=owner, now=1.0)  # fmt: skip

    assert store4.claim_fenced(1, old.epoch, [request("k1", "a"), request("k2", "a")]) == ["claimed", "claimed"]
    store4.finish("k2", "sent", now=2.0)
    time.sleep(0.3)
    new = store4.take_partition(1, "b", ttl=30)
    assert new is not None
    assert store4.mark_unknown_in(1, owner="a", epoch=old.epoch) is None  # the stale owner changes nothing
    assert store4.mark_unknown_in(1, owner="b", epoch=new.epoch) == 1
    assert {e.key: e.state for e in store4.ledger()} == {"k1": "unknown", "k2": "sent"}


def test_partition_status_shows_heads_checkpoints_lag_and_owners(store4: PostgresStore) -> None:
    part = store4.partition_of("s")
    store4.append_keyed([("s", b"a"), ("s", b"b"), ("s", b"c")], now=1.0)
    lease = store4.take_partition(part, "a", ttl=30)
    assert lease is not None
    store4.save_partition_checkpoint(part, owner="a", epoch=lease.epoch, position=1, state=b"", now=1.0)
    status = {s.partition: s for s in store4.partition_status()}
    assert sorted(status) == [0, 1, 2, 3]
    mine = status[part]
    assert (mine.head, mine.checkpoint, mine.lag, mine.owner, mine.epoch) == (3, 1, 2, "a", lease.epoch)
    assert all(s.owner is None and s.head == 0 for p, s in status.items() if p != part)


_STALLED = """
import sys
from recoverkit.store import ClaimRequest
from recoverkit.store.postgres import PostgresStore
with PostgresStore(sys.argv[1]) as store:
    lease = store.take_partition(0, "stalled", ttl=0.5)
    print(lease.epoch, flush=True)
    sys.stdin.readline()  # SIGSTOPped here, past its lease; another process takes the partition meanwhile
    print(store.save_partition_checkpoint(0, owner="stalled", epoch=lease.epoch, position=1, state=b"x", now=0))
    request = ClaimRequest(key="k", cart_key="c", contact_key="p", channel="email", started_at=0, owner="stalled",
                           now=0)
    print(store.claim_fenced(0, lease.epoch, [request])[0])
    print(store.take_partition(0, "stalled", ttl=5))
"""


@pytest.mark.slow
def test_an_owner_stalled_past_its_lease_has_every_write_refused_after_the_takeover(
    store4: PostgresStore, postgres_url: str  # noqa: F811 - the fixture
) -> None:
    child = _python(_STALLED, postgres_url)
    try:
        assert child.stdout is not None and child.stdin is not None
        epoch = int(child.stdout.readline())
        os.kill(child.pid, signal.SIGSTOP)
        time.sleep(0.8)
        taken = store4.take_partition(0, "new-owner", ttl=30)
        assert taken is not None and taken.epoch == epoch + 1
        os.kill(child.pid, signal.SIGCONT)
        out, err = child.communicate("go\n", timeout=30)
        assert child.returncode == 0, err
    finally:
        if child.poll() is None:
            child.kill()
    assert out.split("\n")[:3] == ["fenced", "not_owner", "None"]
    assert store4.load_partition_checkpoint(0) is None
    assert store4.ledger() == []


# -- a bad start -------------------------------------------------------------------------------------------------


def test_a_missing_schema_is_refused_with_the_fix(postgres_url: str) -> None:  # noqa: F811 - the fixture
    with pytest.raises(StoreError, match=r"no recoverkit store in schema 'recoverkit'.*init\(url"):
        PostgresStore(postgres_url)


def test_a_schema_newer_than_the_code_is_refused_with_the_fix(postgres_url: str) -> None:  # noqa: F811
    init(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE recoverkit.meta SET value = %s WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match=r"newer than this recoverkit knows.*upgrade recoverkit"):
        PostgresStore(postgres_url)
    with pytest.raises(StoreError, match="upgrade recoverkit"):
        init(postgres_url)


def test_init_is_idempotent_and_keeps_the_number_of_partitions(postgres_url: str) -> None:  # noqa: F811
    assert init(postgres_url, partitions=8).partitions == 8
    assert init(postgres_url, partitions=8).version == SCHEMA_VERSION
    with pytest.raises(StoreError, match="has 8 partitions.*fixed"):
        init(postgres_url, partitions=4)
    with pytest.raises(ConfigError, match="partitions"):
        init(postgres_url, partitions=0)


def test_concurrent_inits_of_one_store_agree(postgres_url: str) -> None:  # noqa: F811 - the fixture
    """Deploy steps on several hosts may run init() at once: an advisory lock makes them take turns."""
    answers: list[object] = []

    def run() -> None:
        try:
            answers.append(init(postgres_url, partitions=16))
        except Exception as exc:  # noqa: BLE001 - collected, then asserted absent
            answers.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [getattr(a, "partitions", a) for a in answers] == [16] * 4
    with PostgresStore(postgres_url) as store:
        assert store.partitions == 16 and store.check() == []


def test_an_unreachable_server_is_named_without_the_password(postgres_cluster: Cluster) -> None:  # noqa: F811
    url = f"postgresql://shop:s3cret-pw@/nowhere?host={postgres_cluster.directory}/missing&port=5432"
    with pytest.raises(StoreError) as caught:
        PostgresStore(url, connect_timeout=2)
    message = str(caught.value)
    assert "s3cret-pw" not in message and "shop@" in message and "`url`" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_url_that_is_not_one_is_a_config_error_without_its_text() -> None:
    with pytest.raises(ConfigError, match="not a PostgreSQL connection URL") as caught:
        PostgresStore("host=x password=hunter2 bogus")
    assert "hunter2" not in str(caught.value)


def test_a_user_without_privileges_is_told_what_it_needs(
    postgres_cluster: Cluster, postgres_url: str  # noqa: F811 - the fixtures
) -> None:
    init(postgres_url)
    postgres_cluster.admin("DROP ROLE IF EXISTS nopriv")
    postgres_cluster.admin("CREATE ROLE nopriv LOGIN")
    url = postgres_url.replace("postgresql://recoverkit@", "postgresql://nopriv@")
    with pytest.raises(StoreError, match=r"(?s)nopriv@.*needs USAGE and CREATE on schema 'recoverkit'"):
        PostgresStore(url)


def test_a_gap_in_a_partition_is_reported_by_check(store4: PostgresStore, postgres_url: str) -> None:  # noqa: F811
    store4.append_keyed([("s", b"a"), ("s", b"b"), ("s", b"c")], now=1.0)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DELETE FROM recoverkit.journal WHERE position = 2")
    part = store4.partition_of("s")
    assert store4.check() == [f"journal partition {part} has a gap: 2 events between positions 1 and 3"]


def test_without_psycopg_the_import_names_the_extra() -> None:
    script = """
    import sys
    sys.modules["psycopg"] = None
    try:
        import recoverkit.store.postgres
    except ImportError as exc:
        print(type(exc).__name__, exc)
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": SRC},
    ).stdout  # fmt: skip
    assert out.startswith("MissingExtraError PostgresStore needs the psycopg package")
    assert "pip install 'recoverkit[postgres]'" in out
    assert MissingExtraError.__name__ in out


@pytest.mark.slow
def test_after_a_database_restart_the_store_reconnects_and_loses_nothing_committed(
    postgres_cluster: Cluster, store4: PostgresStore  # noqa: F811 - the fixtures
) -> None:
    placed = store4.append_keyed([("s", b"before")], now=1.0)
    postgres_cluster.stop("fast")
    postgres_cluster.start()
    time.sleep(1.2)  # the pooled connection has sat idle long enough to be pinged, found broken and replaced
    assert store4.append_keyed([("s", b"after")], now=2.0) == [(placed[0][0], 2)]
    assert [e.data for e in store4.read_partition(placed[0][0], 0, 10)] == [b"before", b"after"]


# -- erasure while other writes are under way ------------------------------------------------------------------


def test_forget_waits_for_a_write_for_the_contact_under_way_and_erases_it(
    store4: PostgresStore, postgres_url: str  # noqa: F811 - the fixtures
) -> None:
    """A claim holds a shared lock on its contact while it writes (another transaction stands for it here, its
    row not yet committed when forget() starts): forget() waits for it, then pseudonymises the row it wrote."""
    hashed = store4.hash_contact("alice@example.com")
    done = threading.Event()
    with psycopg.connect(postgres_url) as conn:  # not autocommit: one transaction until commit()
        conn.execute("SELECT pg_advisory_xact_lock_shared(hashtextextended(%s, 0))", (hashed,))
        conn.execute(
            "INSERT INTO recoverkit.ledger (key, cart_key, contact_key, channel, state, owner, started_at, claimed_at) "
            "VALUES ('k1', 'c1', 'alice@example.com', 'email', 'sending', 'w', 0, 0)"
        )
        forgetting = threading.Thread(target=lambda: (store4.forget("alice@example.com", at=1.0), done.set()))
        forgetting.start()
        assert not done.wait(0.5)  # forget() waits for the write under way
        conn.commit()
    forgetting.join(10)
    assert done.is_set()
    assert [entry.contact_key for entry in store4.ledger()] == [hashed]


def test_a_claim_that_waited_for_forget_sees_the_suppression(
    store4: PostgresStore, postgres_url: str  # noqa: F811 - the fixtures
) -> None:
    store4.acquire_lease("pipeline", "w", ttl=1e9, now=0)
    hashed = store4.hash_contact("bob@example.com")
    answers: list[str] = []
    with psycopg.connect(postgres_url) as conn:  # stands for a forget() under way: the exclusive lock held
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (hashed,))
        conn.execute("INSERT INTO recoverkit.suppression (hash, reason, at) VALUES (%s, 'forgotten', 0)", (hashed,))
        claiming = threading.Thread(
            target=lambda: answers.append(
                store4.claim("k2", cart_key="c2", contact_key="bob@example.com", channel="email", started_at=0,
                             owner="w", now=1)  # fmt: skip
            )
        )
        claiming.start()
        time.sleep(0.5)
        assert answers == []  # waiting for the forget() to commit
        conn.commit()
    claiming.join(10)
    assert answers == ["suppressed"]
    assert store4.ledger() == []


# -- races between processes -------------------------------------------------------------------------------------

_RACER = """
import sys, time
from recoverkit.store import ClaimRequest
from recoverkit.store.postgres import PostgresStore
url, name, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
with PostgresStore(url) as store:
    time.sleep(max(0.0, start - time.time()))  # every racer starts at the same moment
    lease = store.take_partition(0, name, ttl=30)
    print("lease", lease.epoch if lease else None, flush=True)
    requests = [ClaimRequest(key=f"k{n}", cart_key=f"c{n}", contact_key=f"p{n}", channel="email", started_at=0,
                             owner="shared", now=1) for n in range(60)]
    for r in requests:
        print("claim", r.key, store.claim_many([r])[0], flush=True)
"""


@pytest.mark.slow
def test_racing_processes_get_one_lease_and_one_claim_per_key(
    store4: PostgresStore, postgres_url: str  # noqa: F811 - the fixtures
) -> None:
    """Four processes race for one free partition (one wins, at the next epoch) and claim the same 60 keys under
    one pipeline lease at once: each key is claimed by exactly one of them, the others told "duplicate"."""
    store4.acquire_lease("pipeline", "shared", ttl=1e9, now=0)
    start = f"{time.time() + 2.5:.3f}"
    racers = [_python(_RACER, postgres_url, f"racer-{n}", start) for n in range(4)]
    outputs = []
    for racer in racers:
        out, err = racer.communicate(timeout=60)
        assert racer.returncode == 0, err
        outputs.append(out.splitlines())
    epochs = [line.split()[1] for lines in outputs for line in lines if line.startswith("lease")]
    assert sorted(epochs) == ["1", "None", "None", "None"]
    claims = [line.split()[1:] for lines in outputs for line in lines if line.startswith("claim")]
    claimed = sorted(key for key, answer in claims if answer == "claimed")
    assert claimed == sorted(f"k{n}" for n in range(60))
    assert sorted({answer for _, answer in claims}) == ["claimed", "duplicate"]
    assert len(store4.ledger()) == 60


def test_an_owner_frozen_mid_transaction_does_not_block_the_take_over(postgres_url: str) -> None:  # noqa: F811
    # The owner's fenced write holds the lease row FOR SHARE until it commits; a process frozen (SIGSTOP, a frozen
    # VM) between its statements keeps that lock. The server ends a session idle in a transaction after
    # IDLE_IN_TRANSACTION_MS, so the take-over waits about that long, not for as long as the owner stays frozen.
    from recoverkit.store.postgres._partitions import FENCE
    from recoverkit.store.postgres._plumbing import IDLE_IN_TRANSACTION_MS

    init(postgres_url, partitions=2)
    with PostgresStore(postgres_url) as frozen, PostgresStore(postgres_url) as taker:
        lease = frozen.take_partition(0, "frozen", ttl=0.5)
        assert lease is not None
        with frozen._pool.connection() as conn:  # the owner's transaction, stopped after its fence
            conn.execute("BEGIN")
            assert conn.execute(FENCE, (0, "frozen", lease.epoch)).fetchone() is not None
            time.sleep(0.6)  # the lease expires while the owner is "frozen"
            began = time.monotonic()
            taken = taker.take_partition(0, "taker", ttl=5)
            waited = time.monotonic() - began
            assert taken is not None and taken.epoch == lease.epoch + 1
            assert waited < IDLE_IN_TRANSACTION_MS / 1000 + 3.0
            with pytest.raises(psycopg.Error):  # woken, the frozen owner finds its session ended
                conn.execute("COMMIT")


def test_the_owner_renews_while_its_own_fenced_writes_are_in_flight(postgres_url: str) -> None:  # noqa: F811
    # A claim holds the lease row FOR KEY SHARE until it commits. The owner's renewal must not wait for it: with
    # thousands of messages falling due at once, claims follow each other without a gap, and a renewal queued
    # behind them lost the lease (CI, stop 22). A take-over must still wait for it (the fence).
    from recoverkit.store.postgres._partitions import FENCE

    init(postgres_url, partitions=2)
    with PostgresStore(postgres_url) as owner, PostgresStore(postgres_url) as taker:
        lease = owner.take_partition(0, "owner", ttl=0.5)
        assert lease is not None
        with psycopg.connect(postgres_url, autocommit=True) as conn:  # the owner's claim, fenced and in flight
            conn.execute(f"SET search_path TO {owner.schema}")
            conn.execute("BEGIN")
            assert conn.execute(FENCE, (0, "owner", lease.epoch)).fetchone() is not None
            began = time.monotonic()
            renewed = owner.take_partition(0, "owner", ttl=0.5)
            assert time.monotonic() - began < 0.4  # not blocked: before, it waited for the claim's COMMIT
            assert renewed is not None and renewed.epoch == lease.epoch
            time.sleep(0.6)  # the lease lapses while the claim is still open

            taken: list[object] = []
            thread = threading.Thread(target=lambda: taken.append(taker.take_partition(0, "taker", ttl=5)))
            thread.start()
            thread.join(0.5)
            assert thread.is_alive() and not taken  # the take-over waits for the fenced write to end
            conn.execute("COMMIT")
        thread.join(5)
        assert len(taken) == 1
        took = taken[0]
        assert took is not None and getattr(took, "epoch", None) == lease.epoch + 1
        assert owner.take_partition(0, "owner", ttl=0.5) is None  # and the old owner cannot renew any more


def test_leases_have_a_connection_of_their_own(postgres_url: str) -> None:  # noqa: F811
    # Every data connection busy (a backlog of claims and facts): the lease's renewal, heartbeat and read of who
    # holds what still go through at once, on the lease lane's own connection.
    init(postgres_url, partitions=2)
    with PostgresStore(postgres_url, pool_size=1) as store:
        assert store.take_partition(1, "owner", ttl=5) is not None
        with store._pool.connection() as busy:  # the only data connection, held
            busy.execute("SELECT 1")
            began = time.monotonic()
            assert store.take_partition(1, "owner", ttl=5) is not None
            assert store.heartbeat("owner", ttl=5, now=time.time()) == ["owner"]
            assert [lease.owner for lease in store.partition_leases()] == [None, "owner"]
            assert store.take_lease("pipeline-x", "owner", ttl=5, now=time.time()) == "taken"
            assert store.lease_holder("pipeline-x", now=time.time()) == "owner"
            assert time.monotonic() - began < 2.0  # the data lane would time out (connect_timeout, 10 s)
