"""The contract of :class:`~recoverkit.store.AuditStore`: the audit log is numbered without gaps, chained by
hash, filtered as asked, trimmed from its start only, and verifies after every one of those.

See :mod:`tests.store.contract_base` for how a backend subclasses it (``tests/store/test_audit_stores.py``)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from recoverkit.store._audit import GENESIS, AuditAnchor, AuditEntry, AuditStore, record_hash

from .contract_base import T0, StoreFixture

__all__ = ["AuditContract", "entry"]


def entry(**overrides: Any) -> AuditEntry:
    """``cli:alice`` resolved message ``c1/recover/0`` as sent at T0, unless ``overrides`` say otherwise."""
    fields: dict[str, Any] = {
        "actor": "cli:alice", "action": "resolve", "subject_kind": "message", "subject": "c1/recover/0",
        "outcome": "ok", "at": T0, "detail": "as sent",
    }  # fmt: skip
    fields.update(overrides)
    return AuditEntry(**fields)


class AuditContract(StoreFixture):
    """What every store promises as an :class:`~recoverkit.store.AuditStore`."""

    def test_satisfies_the_audit_store_protocol(self, store: Any) -> None:
        assert isinstance(store, AuditStore)

    def test_an_empty_log_has_the_genesis_anchor_and_head_and_verifies(self, store: Any) -> None:
        assert store.audit_anchor() == AuditAnchor(seq=0, hash=GENESIS)
        assert store.audit_head() == AuditAnchor(seq=0, hash=GENESIS)
        assert store.audit_records() == []
        assert store.audit_problems() == []

    def test_records_are_numbered_from_one_and_each_is_chained_to_the_one_before(self, store: Any) -> None:
        first = store.append_audit(entry())
        second = store.append_audit(entry(action="export", subject_kind="cart", subject="c1", at=T0 + 1))
        assert (first.seq, second.seq) == (1, 2)
        assert first.prev_hash == GENESIS
        assert second.prev_hash == first.hash
        assert first.hash == record_hash(1, first, GENESIS)
        assert second.hash == record_hash(2, second, first.hash)
        assert store.audit_records() == [first, second]
        assert store.audit_head() == AuditAnchor(seq=2, hash=second.hash)
        assert store.audit_problems() == []

    def test_a_record_keeps_every_field_it_was_given(self, store: Any) -> None:
        record = store.append_audit(entry(outcome="failed", detail="StoreError: key not in the ledger"))
        assert (record.actor, record.action, record.subject_kind, record.subject, record.outcome, record.at,
                record.detail) == ("cli:alice", "resolve", "message", "c1/recover/0", "failed", T0,
                                   "StoreError: key not in the ledger")  # fmt: skip

    def test_a_customer_is_kept_as_the_stores_keyed_hash_never_as_the_id(self, store: Any) -> None:
        record = store.append_audit(entry(action="forget", subject_kind="customer", subject="carol@example.com"))
        assert record.subject == store.hash_contact("carol@example.com")
        assert "carol" not in repr(store.audit_records())
        assert store.audit_records(subject=store.hash_contact("carol@example.com")) == [record]

    def test_credentials_are_taken_out_of_the_detail(self, store: Any) -> None:
        record = store.append_audit(entry(detail="provider said: Bearer abcdefghijklmnop1234 refused"))
        assert "abcdefghijklmnop1234" not in record.detail
        assert store.audit_records()[0].detail == record.detail
        assert store.audit_problems() == []

    @pytest.mark.parametrize(
        ("field", "value"),
        [("actor", ""), ("actor", "x" * 201), ("action", "Forget!"), ("action", ""), ("subject", " "),
         ("subject_kind", "person"), ("outcome", "maybe"), ("at", float("nan")), ("detail", "x" * 501)],
    )  # fmt: skip
    def test_a_bad_field_is_refused_naming_it_and_nothing_is_appended(self, store: Any, field: str, value: Any) -> None:
        with pytest.raises(ValueError, match=f"`{field}`"):
            store.append_audit(entry(**{field: value}))
        assert store.audit_records() == []
        assert store.audit_head().seq == 0

    def test_records_are_filtered_by_time_action_subject_and_position(self, store: Any) -> None:
        records = [
            store.append_audit(entry(action=action, subject=f"m{i}", at=T0 + i))
            for i, action in enumerate(["resolve", "resend", "resolve", "export", "resend"])
        ]
        assert store.audit_records(since=T0 + 1, until=T0 + 4) == records[1:4]
        assert store.audit_records(actions=["resend"]) == [records[1], records[4]]
        assert store.audit_records(actions=[]) == []
        assert store.audit_records(subject="m3") == [records[3]]
        assert store.audit_records(after_seq=3) == records[3:]
        assert store.audit_records(limit=2) == records[:2]
        assert store.audit_records(actions=["resolve", "export"], since=T0 + 1, limit=1) == [records[2]]

    def test_records_keep_their_order_whatever_their_times(self, store: Any) -> None:
        # Two hosts' clocks differ: the log's order is the order of the appends, not of their times.
        late = store.append_audit(entry(at=T0 + 60))
        early = store.append_audit(entry(at=T0))
        assert store.audit_records() == [late, early]
        assert store.audit_problems() == []

    def test_bad_query_arguments_are_refused(self, store: Any) -> None:
        with pytest.raises(ValueError, match="`after_seq`"):
            store.audit_records(after_seq=-1)
        with pytest.raises(ValueError, match="`limit`"):
            store.audit_records(limit=-1)
        with pytest.raises(ValueError, match="`before`"):
            store.trim_audit(before=float("nan"))

    def test_trimming_deletes_the_oldest_records_moves_the_anchor_and_the_chain_still_verifies(
        self, store: Any
    ) -> None:
        records = [store.append_audit(entry(at=T0 + i)) for i in range(5)]
        assert store.trim_audit(before=T0 + 2) == 2
        assert store.audit_records() == records[2:]
        assert store.audit_anchor() == AuditAnchor(seq=2, hash=records[1].hash)
        assert store.audit_problems() == []
        after = store.append_audit(entry(at=T0 + 9))
        assert (after.seq, after.prev_hash) == (6, records[4].hash)
        assert store.audit_problems() == []

    def test_trimming_stops_at_the_first_record_not_old_enough_so_the_log_stays_one_run(self, store: Any) -> None:
        records = [store.append_audit(entry(at=at)) for at in (T0, T0 + 100, T0 + 1)]
        assert store.trim_audit(before=T0 + 50) == 1
        assert store.audit_records() == records[1:]
        assert store.audit_problems() == []

    def test_trimming_everything_leaves_an_empty_log_anchored_at_its_head(self, store: Any) -> None:
        records = [store.append_audit(entry(at=T0 + i)) for i in range(3)]
        assert store.trim_audit(before=T0 + 10) == 3
        assert store.audit_records() == []
        assert store.audit_anchor() == store.audit_head() == AuditAnchor(seq=3, hash=records[2].hash)
        assert store.audit_problems() == []
        assert store.trim_audit(before=T0 + 10) == 0
        assert store.append_audit(entry()).seq == 4

    def test_appends_from_many_threads_make_one_chain_without_gaps(self, store: Any) -> None:
        def append(worker: int) -> None:
            for i in range(10):
                store.append_audit(entry(actor=f"cli:w{worker}", subject=f"m{worker}-{i}"))

        threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        records = store.audit_records()
        assert [r.seq for r in records] == list(range(1, 41))
        assert len({r.subject for r in records}) == 40
        assert store.audit_problems() == []
