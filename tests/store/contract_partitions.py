"""The contract of :class:`~recoverkit.store.PartitionedStore`: the journal by partition (positions without gaps
under concurrent writers, threads and processes), partition leases with their epoch, expiry on the store's clock,
fenced checkpoints, claims and marking a dead owner's sends, the members, bad arguments, and a store of one
partition being today's one-sequence store.

A backend joins by subclassing :class:`PartitionContract` once per number of partitions (``partitions``, a class
attribute) and implementing :meth:`~PartitionContract.make_store` (a new, empty store of that many partitions);
:meth:`~PartitionContract.pass_time` (sleep, unless the store's clock is the test's) and
:meth:`~PartitionContract.opener` (Python that opens the same store in another process, for the writers of
:meth:`~PartitionContract.test_writer_processes_leave_no_gap_and_a_reader_following_them_skips_nothing`) have
defaults. ``tests/store/test_partitions_contract.py`` runs it on the memory, SQLite and PostgreSQL stores, each with
1 and 8 partitions.

Times: the journal's ``now`` and a claim's ``now`` are the caller's and only recorded; leases are judged by the
store's clock, so a lease taken here expires in real seconds (or the test's clock's).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytest

from recoverkit.errors import StoreError
from recoverkit.store import PIPELINE_LEASE, ClaimRequest, PartitionedStore, Store, partition_of

from .contract_base import T0, StoreFixture

__all__ = ["PartitionContract", "PartitionedTestStore"]

SRC = str(Path(__file__).resolve().parents[2] / "src")
#: A lease that outlives any test, and one that lapses at once.
LONG = 600.0
SHORT = 0.2


class PartitionedTestStore(Store, PartitionedStore, Protocol):
    """What the suite drives: a whole store that is also partitioned."""


def request(key: str, owner: str = "a", **overrides: Any) -> ClaimRequest:
    """A claim of ``key`` for cart ``cart-<key>`` of contact ``p-<key>`` started at T0, at T0 + 60."""
    fields: dict[str, Any] = {
        "cart_key": f"cart-{key}", "contact_key": f"p-{key}", "channel": "email", "started_at": T0, "owner": owner,
        "now": T0 + 60,
    }  # fmt: skip
    fields.update(overrides)
    return ClaimRequest(key=key, **fields)


def sessions_of(store: PartitionedTestStore) -> dict[int, str]:
    """A session id in each partition (the first found among ``s0``, ``s1``, ...)."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < store.partitions:
        found.setdefault(store.partition_of(f"s{n}"), f"s{n}")
        n += 1
    return found


#: One writer of the process test: appends its batches and prints where each event went, as JSON.
_WRITER = """
import json, sys
{opener}
name, batches = sys.argv[1], int(sys.argv[2])
placed = []
for b in range(batches):
    events = [(f"{{name}}-s{{(b + i) % 13}}", f"{{name}}:{{b}}:{{i}}".encode()) for i in range(1 + b % 3)]
    placed.append(store.append_keyed(events, now=float(b)))
store.close()
print(json.dumps(placed))
"""


def _writer_events(name: str, batches: int) -> list[list[tuple[str, bytes]]]:
    return [[(f"{name}-s{(b + i) % 13}", f"{name}:{b}:{i}".encode()) for i in range(1 + b % 3)] for b in range(batches)]


class PartitionContract(StoreFixture):
    """What every store promises as a :class:`~recoverkit.store.PartitionedStore`."""

    #: How many partitions the stores this suite makes have.
    partitions: ClassVar[int] = 1

    def pass_time(self, seconds: float) -> None:
        """Let ``seconds`` pass on the store's clock (real time, unless the subclass gives the store its clock)."""
        time.sleep(seconds)

    def store_now(self) -> float:
        """The store's clock, about (a server's may be a little off this host's)."""
        return time.time()

    def opener(self) -> str | None:
        """Python that opens, as ``store``, the store :meth:`make_store` made last, in another process; ``None``
        when a store cannot be shared between processes (the writers are then threads)."""
        return None

    # -- the partitions ---------------------------------------------------------------------------------------

    def test_satisfies_the_partitioned_store_protocol(self, store: PartitionedTestStore) -> None:
        assert isinstance(store, PartitionedStore)
        assert store.partitions == self.partitions

    def test_a_sessions_partition_is_the_hash_of_its_id_the_same_in_every_store(
        self, store: PartitionedTestStore
    ) -> None:
        for n in range(200):
            assert store.partition_of(f"session-{n}") == partition_of(f"session-{n}", self.partitions)
        assert {store.partition_of(f"session-{n}") for n in range(200)} == set(range(self.partitions))

    # -- the journal ------------------------------------------------------------------------------------------

    def test_events_go_to_their_sessions_partition_with_consecutive_positions(
        self, store: PartitionedTestStore
    ) -> None:
        events = [(f"s{n % 11}", f"e{n}".encode()) for n in range(40)]
        placed = store.append_keyed(events, now=T0 + 5)
        assert [part for part, _ in placed] == [store.partition_of(session) for session, _ in events]
        for part in range(self.partitions):
            mine = [(pos, data) for (p, pos), (_, data) in zip(placed, events, strict=True) if p == part]
            assert [pos for pos, _ in mine] == list(range(1, len(mine) + 1))  # in the order given
            entries = store.read_partition(part, 0, 100)
            assert [(e.seq, e.data, e.accepted_at) for e in entries] == [(pos, d, T0 + 5) for pos, d in mine]
            assert store.partition_head(part) == len(mine)
        assert store.partition_heads() == [store.partition_head(p) for p in range(self.partitions)]
        assert store.check() == []

    def test_later_appends_continue_above_every_position_handed_out(self, store: PartitionedTestStore) -> None:
        session = sessions_of(store)[self.partitions - 1]
        part = self.partitions - 1
        assert store.append_keyed([(session, b"a"), (session, b"b")], now=T0) == [(part, 1), (part, 2)]
        assert store.append_keyed([(session, b"c")], now=T0 + 1) == [(part, 3)]
        assert [e.data for e in store.read_partition(part, 0, 10)] == [b"a", b"b", b"c"]

    def test_event_bytes_are_kept_exactly(self, store: PartitionedTestStore) -> None:
        payload = bytes(range(256))
        [(part, position)] = store.append_keyed([("s", payload)], now=T0)
        store.append_keyed([("s", b"")], now=T0)
        assert [e.data for e in store.read_partition(part, position - 1, 10)] == [payload, b""]

    def test_append_to_puts_each_event_in_the_partition_given(self, store: PartitionedTestStore) -> None:
        everywhere = [(part, f"forget-{part}".encode()) for part in range(self.partitions)]
        assert store.append_to(everywhere, now=T0) == [(part, 1) for part in range(self.partitions)]
        assert store.append_to([(0, b"x"), (0, b"y")], now=T0) == [(0, 2), (0, 3)]
        assert [e.data for e in store.read_partition(0, 0, 10)] == [b"forget-0", b"x", b"y"]
        assert store.partition_heads() == [3] + [1] * (self.partitions - 1)

    def test_appending_nothing_writes_nothing(self, store: PartitionedTestStore) -> None:
        assert store.append_keyed([], now=T0) == []
        assert store.append_to([], now=T0) == []
        assert store.partition_heads() == [0] * self.partitions

    def test_read_partition_returns_the_events_after_a_position_up_to_limit(self, store: PartitionedTestStore) -> None:
        store.append_to([(0, str(n).encode()) for n in range(1, 11)], now=T0)
        assert [e.seq for e in store.read_partition(0, 3, 4)] == [4, 5, 6, 7]
        assert [e.data for e in store.read_partition(0, 8, 100)] == [b"9", b"10"]
        assert store.read_partition(0, 10, 100) == []
        if self.partitions > 1:
            assert store.read_partition(self.partitions - 1, 0, 100) == []

    def test_trim_deletes_a_partitions_events_through_a_position_and_never_reuses_positions(
        self, store: PartitionedTestStore
    ) -> None:
        last = self.partitions - 1
        store.append_to([(0, b"a"), (0, b"b"), (0, b"c")] + ([(last, b"z")] if last else []), now=T0)
        assert store.trim_partition(0, 2) == 2
        assert [e.seq for e in store.read_partition(0, 0, 10)] == [3]
        assert store.trim_partition(0, 2) == 0
        if self.partitions > 1:
            assert [e.data for e in store.read_partition(last, 0, 10)] == [b"z"]  # another partition is untouched
        assert store.trim_partition(0, 3) == 1
        assert store.partition_head(0) == 3  # trimmed, not forgotten
        assert store.append_to([(0, b"d")], now=T0) == [(0, 4)]
        assert store.check() == []

    def test_threads_appending_at_once_get_every_position_once_without_gaps(self, store: PartitionedTestStore) -> None:
        placed: list[tuple[int, int, bytes]] = []
        threads = [threading.Thread(target=self._write_in_thread, args=(store, f"t{n}", 25, placed)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        self._assert_journal_holds(store, placed, expected=8 * sum(1 + b % 3 for b in range(25)))

    @pytest.mark.slow
    @pytest.mark.timeout(300)  # 4 writers on a loaded 2-core machine: seconds, sometimes a minute
    def test_writer_processes_leave_no_gap_and_a_reader_following_them_skips_nothing(
        self, store: PartitionedTestStore
    ) -> None:
        """Four writers (processes where the store can be shared, else threads) append 200 batches each while this
        test follows every partition with ``position > last``: it reads each partition as 1, 2, 3 ... with no hole
        and no repeat, and every event is where its writer was told it went."""
        writers, batches = 4, 200
        opener = self.opener()
        placed: list[tuple[int, int, bytes]] = []
        seen: dict[int, list[int]] = {p: [] for p in range(self.partitions)}
        if opener is not None:
            script = textwrap.dedent(_WRITER).format(opener=opener)
            env = {**os.environ, "PYTHONPATH": SRC}
            children = [
                subprocess.Popen(
                    [sys.executable, "-c", script, f"w{n}", str(batches)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
                for n in range(writers)
            ]
            threads: list[threading.Thread] = []
        else:
            children = []
            threads = [
                threading.Thread(target=self._write_in_thread, args=(store, f"w{n}", batches, placed))
                for n in range(writers)
            ]
            for thread in threads:
                thread.start()

        def running() -> bool:
            return any(child.poll() is None for child in children) or any(t.is_alive() for t in threads)

        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            still = running()
            got = 0
            for part in range(self.partitions):
                after = seen[part][-1] if seen[part] else 0
                read = [e.seq for e in store.read_partition(part, after, 100)]
                seen[part] += read
                got += len(read)
            if not still and all(len(seen[p]) == store.partition_head(p) for p in range(self.partitions)):
                break
            if not got:
                time.sleep(0.01)  # leave the cores to the writers (two, on the machine these run on)
        for n, child in enumerate(children):
            out, err = child.communicate(timeout=60)
            assert child.returncode == 0, err
            for events, where in zip(_writer_events(f"w{n}", batches), json.loads(out), strict=True):
                placed.extend((p, pos, data) for (p, pos), (_, data) in zip(where, events, strict=True))
        for part in range(self.partitions):
            assert seen[part] == list(range(1, store.partition_head(part) + 1))
        self._assert_journal_holds(store, placed, expected=writers * sum(1 + b % 3 for b in range(batches)))

    @staticmethod
    def _write_in_thread(store: PartitionedTestStore, name: str, batches: int, placed: list[Any]) -> None:
        mine = []
        for events in _writer_events(name, batches):
            where = store.append_keyed(events, now=T0)
            mine += [(p, pos, data) for (p, pos), (_, data) in zip(where, events, strict=True)]
        placed.extend(mine)  # one call: atomic

    def _assert_journal_holds(
        self, store: PartitionedTestStore, placed: list[tuple[int, int, bytes]], *, expected: int
    ) -> None:
        """Every event once, at the place its append answered, and each partition's positions exactly 1..head."""
        assert len(placed) == len({(p, pos) for p, pos, _ in placed}) == expected
        stored = {
            (part, e.seq): e.data for part in range(self.partitions) for e in store.read_partition(part, 0, 100_000)
        }
        assert stored == {(p, pos): data for p, pos, data in placed}
        for part in range(self.partitions):
            assert sorted(pos for p, pos in stored if p == part) == list(range(1, store.partition_head(part) + 1))
        assert store.check() == []

    # -- leases -----------------------------------------------------------------------------------------------

    def test_every_partition_starts_free_at_epoch_0(self, store: PartitionedTestStore) -> None:
        leases = store.partition_leases()
        assert [(lease.partition, lease.owner, lease.epoch) for lease in leases] == [
            (part, None, 0) for part in range(self.partitions)
        ]

    def test_taking_a_free_partition_raises_its_epoch_and_renewing_keeps_it(self, store: PartitionedTestStore) -> None:
        last = self.partitions - 1
        first = store.take_partition(last, "a", ttl=LONG)
        assert first is not None and (first.partition, first.owner, first.epoch) == (last, "a", 1)
        assert self.store_now() + LONG - 60 < first.expires_at < self.store_now() + LONG + 60
        again = store.take_partition(last, "a", ttl=LONG)
        assert again is not None and again.epoch == 1 and again.expires_at >= first.expires_at
        assert store.take_partition(last, "b", ttl=LONG) is None
        owners = [lease.owner for lease in store.partition_leases()]
        assert owners == [None] * last + ["a"]

    def test_an_expired_lease_passes_to_another_owner_at_the_next_epoch(self, store: PartitionedTestStore) -> None:
        first = store.take_partition(0, "a", ttl=SHORT)
        assert first is not None
        self.pass_time(SHORT + 0.15)
        assert store.partition_leases()[0].owner is None  # expired: judged by the store's clock
        assert store.partition_status()[0].owner is None
        taken = store.take_partition(0, "b", ttl=LONG)
        assert taken is not None and (taken.owner, taken.epoch) == ("b", first.epoch + 1)

    def test_an_owner_renews_its_expired_lease_at_the_same_epoch_if_nobody_took_it(
        self, store: PartitionedTestStore
    ) -> None:
        first = store.take_partition(0, "a", ttl=SHORT)
        assert first is not None
        self.pass_time(SHORT + 0.15)
        again = store.take_partition(0, "a", ttl=LONG)
        assert again is not None and again.epoch == first.epoch

    def test_a_release_hands_the_partition_over_at_once_and_the_next_taker_raises_the_epoch(
        self, store: PartitionedTestStore
    ) -> None:
        first = store.take_partition(0, "a", ttl=LONG)
        assert first is not None
        assert store.release_partition(0, "b") is False  # not b's: nothing changes
        assert store.partition_leases()[0].owner == "a"
        assert store.release_partition(0, "a") is True
        assert store.release_partition(0, "a") is False
        assert store.partition_leases()[0].owner is None
        assert store.partition_leases()[0].epoch == first.epoch  # the epoch stays: the next taker raises it
        again = store.take_partition(0, "a", ttl=LONG)  # even its last owner, taking it again
        assert again is not None and again.epoch == first.epoch + 1
        assert store.release_partition(0, "a") is True
        other = store.take_partition(0, "b", ttl=LONG)
        assert other is not None and other.epoch == first.epoch + 2

    def test_the_leases_of_partitions_are_independent(self, store: PartitionedTestStore) -> None:
        if self.partitions == 1:
            pytest.skip("needs two partitions")
        assert store.take_partition(0, "a", ttl=LONG) is not None
        taken = store.take_partition(1, "b", ttl=LONG)
        assert taken is not None and taken.epoch == 1
        assert [lease.owner for lease in store.partition_leases()][:2] == ["a", "b"]

    def test_partition_status_shows_heads_checkpoints_lag_owners_and_epochs(self, store: PartitionedTestStore) -> None:
        part = store.partition_of("s")
        store.append_keyed([("s", b"a"), ("s", b"b"), ("s", b"c")], now=T0)
        lease = store.take_partition(part, "a", ttl=LONG)
        assert lease is not None
        store.save_partition_checkpoint(part, owner="a", epoch=lease.epoch, position=1, state=b"", now=T0)
        status = store.partition_status()
        assert [s.partition for s in status] == list(range(self.partitions))
        mine = status[part]
        assert (mine.head, mine.checkpoint, mine.lag, mine.owner, mine.epoch) == (3, 1, 2, "a", lease.epoch)
        others = [(s.head, s.checkpoint, s.lag, s.owner, s.epoch) for s in status if s.partition != part]
        assert others == [(0, 0, 0, None, 0)] * (self.partitions - 1)

    # -- members ----------------------------------------------------------------------------------------------

    def test_heartbeat_lists_the_live_members_sorted_on_the_callers_clock(self, store: PartitionedTestStore) -> None:
        assert store.heartbeat("host-b", ttl=10, now=T0) == ["host-b"]
        assert store.heartbeat("host-a", ttl=10, now=T0 + 5) == ["host-a", "host-b"]
        assert store.heartbeat("host-c", ttl=10, now=T0 + 12) == ["host-a", "host-c"]  # host-b's lapsed at T0 + 10
        assert store.heartbeat("host-b", ttl=10, now=T0 + 13) == ["host-a", "host-b", "host-c"]  # back again

    def test_a_member_that_leaves_is_gone_at_once(self, store: PartitionedTestStore) -> None:
        store.heartbeat("host-a", ttl=60, now=T0)
        store.heartbeat("host-b", ttl=60, now=T0)
        store.leave("host-a")
        store.leave("host-never")  # nothing to do
        assert store.heartbeat("host-b", ttl=60, now=T0 + 1) == ["host-b"]

    def test_members_are_not_partition_owners(self, store: PartitionedTestStore) -> None:
        store.heartbeat("host-a", ttl=60, now=time.time())
        assert [lease.owner for lease in store.partition_leases()] == [None] * self.partitions

    # -- writers' marks ---------------------------------------------------------------------------------------

    def test_writer_marks_register_move_forward_only_and_drop(self, store: PartitionedTestStore) -> None:
        assert store.writer_marks() == {}
        store.mark_writer("p0", float("-inf"))  # registered before writing anything
        store.mark_writer("p1", T0 + 5)
        assert store.writer_marks() == {"p0": float("-inf"), "p1": T0 + 5}
        store.mark_writer("p0", T0 + 9)
        store.mark_writer("p1", T0 + 2)  # behind its mark: ignored
        assert store.writer_marks() == {"p0": T0 + 9, "p1": T0 + 5}
        store.drop_writer("p1")
        store.drop_writer("never")  # nothing to do
        assert store.writer_marks() == {"p0": T0 + 9}

    def test_writer_marks_are_neither_members_nor_owners(self, store: PartitionedTestStore) -> None:
        store.mark_writer("p0", T0)
        assert store.heartbeat("host-a", ttl=60, now=T0) == ["host-a"]
        assert [lease.owner for lease in store.partition_leases()] == [None] * self.partitions

    def test_a_bad_writer_or_mark_is_refused_by_name_and_value(self, store: PartitionedTestStore) -> None:
        with pytest.raises(ValueError, match="mark_writer: expected a non-empty `writer`, got ''"):
            store.mark_writer("", T0)
        for mark in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match="mark_writer: expected `mark` to be an event time"):
                store.mark_writer("p0", mark)
        assert store.writer_marks() == {}

    # -- fenced checkpoints -----------------------------------------------------------------------------------

    def test_a_checkpoint_is_saved_by_the_owner_and_never_moves_back(self, store: PartitionedTestStore) -> None:
        lease = store.take_partition(0, "a", ttl=LONG)
        assert lease is not None
        save = store.save_partition_checkpoint
        assert save(0, owner="a", epoch=lease.epoch, position=5, state=b"s5", now=T0) == "saved"
        assert save(0, owner="a", epoch=lease.epoch, position=5, state=b"s5b", now=T0 + 1) == "saved"  # same place
        assert save(0, owner="a", epoch=lease.epoch, position=4, state=b"s4", now=T0 + 2) == "behind"
        checkpoint = store.load_partition_checkpoint(0)
        assert checkpoint is not None
        assert (checkpoint.position, checkpoint.state, checkpoint.saved_at) == (5, b"s5b", T0 + 1)
        if self.partitions > 1:
            assert store.load_partition_checkpoint(self.partitions - 1) is None

    def test_a_checkpoint_is_refused_to_any_but_the_owner_at_its_epoch(self, store: PartitionedTestStore) -> None:
        lease = store.take_partition(0, "a", ttl=LONG)
        assert lease is not None
        save = store.save_partition_checkpoint
        assert save(0, owner="a", epoch=lease.epoch + 1, position=1, state=b"x", now=T0) == "fenced"
        assert save(0, owner="a", epoch=lease.epoch - 1, position=1, state=b"x", now=T0) == "fenced"
        assert save(0, owner="b", epoch=lease.epoch, position=1, state=b"x", now=T0) == "fenced"
        if self.partitions > 1:
            assert save(1, owner="a", epoch=lease.epoch, position=1, state=b"x", now=T0) == "fenced"  # not held
        assert store.load_partition_checkpoint(0) is None

    def test_an_owner_whose_lease_expired_cannot_save(self, store: PartitionedTestStore) -> None:
        lease = store.take_partition(0, "a", ttl=SHORT)
        assert lease is not None
        self.pass_time(SHORT + 0.15)
        assert (
            store.save_partition_checkpoint(0, owner="a", epoch=lease.epoch, position=1, state=b"x", now=T0) == "fenced"
        )
        assert store.load_partition_checkpoint(0) is None

    def test_after_a_take_over_every_fenced_write_of_the_old_owner_is_refused(
        self, store: PartitionedTestStore
    ) -> None:
        old = store.take_partition(0, "a", ttl=SHORT)
        assert old is not None
        self.pass_time(SHORT + 0.15)
        new = store.take_partition(0, "b", ttl=LONG)
        assert new is not None and new.epoch == old.epoch + 1
        assert store.claim_fenced(0, new.epoch, [request("k-new", owner="b")]) == ["claimed"]
        # The old owner wakes up: it holds an epoch that is not the partition's any more.
        save = store.save_partition_checkpoint
        assert save(0, owner="a", epoch=old.epoch, position=9, state=b"old", now=T0) == "fenced"
        assert store.claim_fenced(0, old.epoch, [request("k-old", owner="a")]) == ["not_owner"]
        assert store.mark_unknown_in(0, owner="a", epoch=old.epoch) is None
        assert store.take_partition(0, "a", ttl=LONG) is None  # b holds it
        assert store.load_partition_checkpoint(0) is None
        assert [(e.key, e.state) for e in store.ledger()] == [("k-new", "sending")]  # b's send was not touched

    def test_an_owner_that_released_and_took_again_cannot_write_with_its_old_epoch(
        self, store: PartitionedTestStore
    ) -> None:
        old = store.take_partition(0, "a", ttl=LONG)
        assert old is not None
        store.release_partition(0, "a")
        new = store.take_partition(0, "a", ttl=LONG)
        assert new is not None and new.epoch == old.epoch + 1
        save = store.save_partition_checkpoint
        assert save(0, owner="a", epoch=old.epoch, position=1, state=b"x", now=T0) == "fenced"
        assert store.claim_fenced(0, old.epoch, [request("k1")]) == ["not_owner"]
        assert store.mark_unknown_in(0, owner="a", epoch=old.epoch) is None
        assert save(0, owner="a", epoch=new.epoch, position=1, state=b"x", now=T0) == "saved"

    # -- fenced claims ----------------------------------------------------------------------------------------

    def test_a_fenced_claim_records_a_sending_entry_like_any_claim(self, store: PartitionedTestStore) -> None:
        last = self.partitions - 1
        lease = store.take_partition(last, "a", ttl=LONG)
        assert lease is not None
        answers = store.claim_fenced(last, lease.epoch, [request("k1"), request("k2", at=T0 + 30)])
        assert answers == ["claimed", "claimed"]
        entries = store.ledger()
        assert [(e.key, e.cart_key, e.contact_key, e.channel, e.state, e.owner) for e in entries] == [
            ("k1", "cart-k1", "p-k1", "email", "sending", "a"), ("k2", "cart-k2", "p-k2", "email", "sending", "a"),
        ]  # fmt: skip
        assert [(e.started_at, e.claimed_at) for e in entries] == [(T0, T0 + 60), (T0, T0 + 30)]
        store.finish("k1", "sent", now=T0 + 61)
        assert [e.state for e in store.ledger()] == ["sent", "sending"]

    def test_a_fenced_claim_needs_the_owner_at_the_epoch(self, store: PartitionedTestStore) -> None:
        lease = store.take_partition(0, "a", ttl=LONG)
        assert lease is not None
        assert store.claim_fenced(0, lease.epoch + 1, [request("k1")]) == ["not_owner"]
        assert store.claim_fenced(0, lease.epoch, [request("k1", owner="b")]) == ["not_owner"]
        if self.partitions > 1:
            assert store.claim_fenced(1, lease.epoch, [request("k1")]) == ["not_owner"]  # a does not hold 1
        assert store.claim_fenced(0, lease.epoch, []) == []
        assert store.ledger() == []

    def test_a_fenced_claim_by_a_lapsed_owner_is_refused(self, store: PartitionedTestStore) -> None:
        lease = store.take_partition(0, "a", ttl=SHORT)
        assert lease is not None
        self.pass_time(SHORT + 0.15)
        assert store.claim_fenced(0, lease.epoch, [request("k1")]) == ["not_owner"]
        assert store.ledger() == []

    def test_a_fenced_claim_answers_as_claim_many_does_against_the_whole_store(
        self, store: PartitionedTestStore
    ) -> None:
        """The same situations asked of claim_many (under the pipeline lease) and of claim_fenced: the same
        answers, with purchases, suppressions, keys and caps recorded through any partition or none."""
        last = self.partitions - 1
        lease = store.take_partition(last, "a", ttl=LONG)
        assert lease is not None
        assert store.acquire_lease(PIPELINE_LEASE, "a", ttl=LONG, now=T0)
        cap = ((1, 3600.0, None),)
        for side in ("m", "f"):  # the situations, once for each way of claiming, with their own customers
            store.record_purchase(cart_key=f"{side}-bought-cart", contact_key=None, at=T0 + 1)
            store.record_purchase(cart_key=None, contact_key=f"{side}-buyer", at=T0 + 1)
            store.record_purchase(cart_key=None, contact_key=f"{side}-earlier-buyer", at=T0 - 1)  # before the cart
            store.suppress(f"{side}-unsubscribed", reason="unsubscribed", at=T0)
        store.claim_many([request("m-taken"), request("m-capped-1", contact_key="m-capped", caps=cap)])
        store.claim_fenced(
            last, lease.epoch, [request("f-taken"), request("f-capped-1", contact_key="f-capped", caps=cap)]
        )

        def situations(side: str) -> list[ClaimRequest]:
            return [
                request(f"{side}-new"),
                request(f"{side}-taken"),
                request("m-taken"),  # claimed the other way: one ledger for both
                request(f"{side}-k3", cart_key=f"{side}-bought-cart"),
                request(f"{side}-k4", contact_key=f"{side}-buyer"),
                request(f"{side}-k5", contact_key=f"{side}-earlier-buyer"),
                request(f"{side}-k6", contact_key=f"{side}-unsubscribed"),
                request(f"{side}-capped-2", contact_key=f"{side}-capped", caps=cap),
                request(f"{side}-k7", contact_key=f"{side}-capped"),  # no caps asked: none applied
            ]

        expected = ["claimed", "duplicate", "duplicate", "purchased", "purchased", "claimed", "suppressed", "capped",
                    "claimed"]  # fmt: skip
        assert store.claim_many(situations("m")) == expected
        assert store.claim_fenced(last, lease.epoch, situations("f")) == expected

    def test_fenced_claims_and_pipeline_claims_of_one_key_are_one_claim(self, store: PartitionedTestStore) -> None:
        lease = store.take_partition(0, "a", ttl=LONG)
        assert lease is not None
        assert store.acquire_lease(PIPELINE_LEASE, "a", ttl=LONG, now=T0)
        assert store.claim_fenced(0, lease.epoch, [request("k1"), request("k1")]) == ["claimed", "duplicate"]
        assert store.claim_many([request("k1")]) == ["duplicate"]
        assert len(store.ledger()) == 1

    # -- a dead owner's sends ---------------------------------------------------------------------------------

    def test_a_new_owner_marks_unknown_only_the_sends_earlier_owners_left_in_flight_in_its_partition(
        self, store: PartitionedTestStore
    ) -> None:
        old = store.take_partition(0, "a", ttl=LONG)
        assert old is not None
        assert store.claim_fenced(0, old.epoch, [request("a-1"), request("a-2"), request("a-3")]) == ["claimed"] * 3
        store.finish("a-2", "sent", now=T0 + 61)
        store.finish("a-3", "failed", now=T0 + 61, error="550")
        if self.partitions > 1:
            other = store.take_partition(1, "a", ttl=LONG)  # the same owner, in another partition
            assert other is not None
            assert store.claim_fenced(1, other.epoch, [request("elsewhere")]) == ["claimed"]
        assert store.acquire_lease(PIPELINE_LEASE, "a", ttl=LONG, now=T0)
        assert store.claim_many([request("pipeline")]) == ["claimed"]  # not claimed in a partition
        store.release_partition(0, "a")
        new = store.take_partition(0, "b", ttl=LONG)
        assert new is not None
        assert store.claim_fenced(0, new.epoch, [request("b-1", owner="b")]) == ["claimed"]
        assert store.mark_unknown_in(0, owner="a", epoch=old.epoch) is None  # the old owner changes nothing
        assert store.mark_unknown_in(0, owner="b", epoch=new.epoch + 1) is None
        assert {e.key: e.state for e in store.ledger()}["a-1"] == "sending"
        assert store.mark_unknown_in(0, owner="b", epoch=new.epoch) == 1
        states = {e.key: e.state for e in store.ledger()}
        assert states.pop("a-1") == "unknown"
        assert states == {
            "a-2": "sent", "a-3": "failed", "pipeline": "sending", "b-1": "sending",
            **({"elsewhere": "sending"} if self.partitions > 1 else {}),
        }  # fmt: skip
        assert store.mark_unknown_in(0, owner="b", epoch=new.epoch) == 0

    def test_a_send_marked_unknown_is_settled_as_after_a_crash(self, store: PartitionedTestStore) -> None:
        old = store.take_partition(0, "a", ttl=LONG)
        assert old is not None
        store.claim_fenced(0, old.epoch, [request("k1"), request("k2")])
        store.release_partition(0, "a")
        new = store.take_partition(0, "b", ttl=LONG)
        assert new is not None
        assert store.mark_unknown_in(0, owner="b", epoch=new.epoch) == 2
        store.resolve("k1", "sent")
        store.resolve("k2", "retry")  # deleted: the new owner may claim the key again
        assert store.claim_fenced(0, new.epoch, [request("k2", owner="b")]) == ["claimed"]
        assert {e.key: (e.state, e.owner) for e in store.ledger()} == {"k1": ("sent", "a"), "k2": ("sending", "b")}

    # -- bad arguments ----------------------------------------------------------------------------------------

    def _by_partition(self, store: PartitionedTestStore, method: str, partition: Any) -> Callable[[], object]:
        calls: dict[str, Callable[[], object]] = {
            "append_to": lambda: store.append_to([(partition, b"x")], now=T0),
            "read_partition": lambda: store.read_partition(partition, 0, 10),
            "partition_head": lambda: store.partition_head(partition),
            "trim_partition": lambda: store.trim_partition(partition, 1),
            "take_partition": lambda: store.take_partition(partition, "a", ttl=LONG),
            "release_partition": lambda: store.release_partition(partition, "a"),
            "save_partition_checkpoint": lambda: store.save_partition_checkpoint(
                partition, owner="a", epoch=1, position=1, state=b"", now=T0
            ),
            "load_partition_checkpoint": lambda: store.load_partition_checkpoint(partition),
            "claim_fenced": lambda: store.claim_fenced(partition, 1, [request("k")]),
            "mark_unknown_in": lambda: store.mark_unknown_in(partition, owner="a", epoch=1),
        }
        return calls[method]

    @pytest.mark.parametrize(
        "method",
        [
            "append_to", "read_partition", "partition_head", "trim_partition", "take_partition", "release_partition",
            "save_partition_checkpoint", "load_partition_checkpoint", "claim_fenced", "mark_unknown_in",
        ],
    )  # fmt: skip
    def test_a_partition_out_of_range_is_refused_naming_the_method_and_the_value(
        self, store: PartitionedTestStore, method: str
    ) -> None:
        for bad in (-1, self.partitions, True, "0", 1.0):
            expected = f"{method}: expected a partition from 0 to {self.partitions - 1}, got {bad!r}"
            with pytest.raises(ValueError, match=re.escape(expected)):
                self._by_partition(store, method, bad)()
        assert store.partition_heads() == [0] * self.partitions
        assert store.ledger() == []

    def test_append_to_with_one_bad_partition_appends_nothing(self, store: PartitionedTestStore) -> None:
        with pytest.raises(ValueError, match="append_to"):
            store.append_to([(0, b"a"), (self.partitions, b"b")], now=T0)
        assert store.partition_heads() == [0] * self.partitions

    @pytest.mark.parametrize("method", ["take_partition", "heartbeat"])
    def test_an_empty_owner_or_a_ttl_not_above_0_is_refused_by_name_and_value(
        self, store: PartitionedTestStore, method: str
    ) -> None:
        def call(owner: str, ttl: float) -> object:
            if method == "heartbeat":
                return store.heartbeat(owner, ttl=ttl, now=T0)
            return store.take_partition(0, owner, ttl=ttl)

        with pytest.raises(ValueError, match=rf"{method}: expected a non-empty `owner`, got ''"):
            call("", 10)
        for ttl in (0, -1.5, math.nan):
            with pytest.raises(ValueError, match=rf"{method}: expected `ttl` > 0 seconds, got {ttl!r}"):
                call("a", ttl)
        assert [lease.owner for lease in store.partition_leases()] == [None] * self.partitions

    def test_a_bad_read_window_or_checkpoint_position_is_refused_by_name_and_value(
        self, store: PartitionedTestStore
    ) -> None:
        with pytest.raises(ValueError, match=r"read_partition: expected `limit` >= 1, got 0"):
            store.read_partition(0, 0, 0)
        with pytest.raises(ValueError, match=r"read_partition: expected `after` >= 0, got -1"):
            store.read_partition(0, -1, 10)
        lease = store.take_partition(0, "a", ttl=LONG)
        assert lease is not None
        with pytest.raises(ValueError, match=r"expected `position` >= 0.*got -1"):
            store.save_partition_checkpoint(0, owner="a", epoch=lease.epoch, position=-1, state=b"", now=T0)
        assert store.load_partition_checkpoint(0) is None

    # -- one partition: today's one-sequence store --------------------------------------------------------------

    def test_with_one_partition_the_one_sequence_journal_is_partition_0(self, store: PartitionedTestStore) -> None:
        if self.partitions != 1:
            pytest.skip("a store of one partition")
        assert store.append_events([b"a", b"b"], now=T0) == 2
        assert [(e.seq, e.data) for e in store.read_partition(0, 0, 10)] == [(1, b"a"), (2, b"b")]
        assert store.append_keyed([("any-session", b"c")], now=T0 + 1) == [(0, 3)]
        assert store.append_to([(0, b"d")], now=T0 + 2) == [(0, 4)]
        assert [(e.seq, e.data, e.accepted_at) for e in store.read_events(2, 10)] == [
            (3, b"c", T0 + 1), (4, b"d", T0 + 2),
        ]  # fmt: skip
        assert store.last_seq() == store.partition_head(0) == 4 and store.partition_heads() == [4]
        assert store.trim_partition(0, 1) == 1
        assert store.trim_events(2) == 1
        assert [e.seq for e in store.read_partition(0, 0, 10)] == [3, 4]
        assert store.append_events([], now=T0) == 4

    def test_with_one_partition_the_checkpoint_is_todays_beside_the_partitions(
        self, store: PartitionedTestStore
    ) -> None:
        if self.partitions != 1:
            pytest.skip("a store of one partition")
        assert store.save_checkpoint(3, b"one", now=T0) is True
        assert store.save_checkpoint(2, b"back", now=T0) is False
        saved = store.load_checkpoint()
        assert saved is not None and (saved.position, saved.state) == (3, b"one")
        lease = store.take_partition(0, "a", ttl=LONG)
        assert lease is not None
        assert store.load_partition_checkpoint(0) is None  # a checkpoint beside it, not the partition's
        store.save_partition_checkpoint(0, owner="a", epoch=lease.epoch, position=1, state=b"p", now=T0)
        saved = store.load_checkpoint()
        assert saved is not None and saved.state == b"one"

    @pytest.mark.parametrize(
        ("method", "call"),
        [
            ("append_events", lambda s: s.append_events([b"a"], now=T0)),
            ("read_events", lambda s: s.read_events(0, 10)),
            ("trim_events", lambda s: s.trim_events(1)),
            ("last_seq", lambda s: s.last_seq()),
            ("save_checkpoint", lambda s: s.save_checkpoint(1, b"", now=T0)),
            ("load_checkpoint", lambda s: s.load_checkpoint()),
        ],
    )
    def test_with_several_partitions_the_one_sequence_methods_name_the_partitioned_ones(
        self, store: PartitionedTestStore, method: str, call: Callable[[PartitionedTestStore], object]
    ) -> None:
        if self.partitions == 1:
            pytest.skip("a store of several partitions")
        expected = rf"{method}: this store's journal has {self.partitions} partitions, so it has no single sequence"
        with pytest.raises(StoreError, match=expected) as raised:
            call(store)
        assert "append_keyed" in str(raised.value) and "read_partition" in str(raised.value)
        assert store.partition_heads() == [0] * self.partitions
