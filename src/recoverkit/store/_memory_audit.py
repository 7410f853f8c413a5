"""The audit log of a :class:`~recoverkit.store.MemoryStore` (:class:`~recoverkit.store.AuditStore`): a list
under the store's one lock."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import msgspec

from ._audit import (
    GENESIS,
    AuditAnchor,
    AuditEntry,
    AuditRecord,
    chain_problems,
    check_audit_query,
    check_before,
    check_entry,
    sealed,
)
from ._memory_tables import MemoryTables
from ._privacy import contact_hash

__all__ = ["MemoryAudit"]


class MemoryAudit(MemoryTables):
    """:class:`~recoverkit.store.AuditStore` in a list: the records kept, in seq order; the anchor and the head.

    A mixin of :class:`MemoryTables` like the other parts; its ``__init__`` passes every argument on and adds
    the log's own fields, so it composes before any of them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._audit: list[AuditRecord] = []
        self._audit_anchor = AuditAnchor(seq=0, hash=GENESIS)
        self._audit_head = self._audit_anchor

    def append_audit(self, entry: AuditEntry) -> AuditRecord:
        entry = check_entry("append_audit", entry)
        with self._lock:
            self._enter(write=True)
            if entry.subject_kind == "customer":
                entry = msgspec.structs.replace(entry, subject=contact_hash(self._salt, entry.subject))
            record = sealed(self._audit_head.seq + 1, entry, self._audit_head.hash)
            self._audit.append(record)
            self._audit_head = AuditAnchor(seq=record.seq, hash=record.hash)
            return record

    def audit_records(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        actions: Collection[str] | None = None,
        subject: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        check_audit_query(after_seq, limit)
        wanted = None if actions is None else frozenset(actions)
        with self._lock:
            self._enter(write=False)
            found = [
                r
                for r in self._audit
                if r.seq > after_seq
                and (since is None or r.at >= since)
                and (until is None or r.at < until)
                and (wanted is None or r.action in wanted)
                and (subject is None or r.subject == subject)
            ]
        return found if limit is None else found[:limit]

    def audit_anchor(self) -> AuditAnchor:
        with self._lock:
            self._enter(write=False)
            return self._audit_anchor

    def audit_head(self) -> AuditAnchor:
        with self._lock:
            self._enter(write=False)
            return self._audit_head

    def audit_problems(self) -> list[str]:
        with self._lock:
            self._enter(write=False)
            return chain_problems(self._audit_anchor, list(self._audit), self._audit_head)

    def trim_audit(self, *, before: float) -> int:
        check_before(before)
        with self._lock:
            self._enter(write=True)
            count = 0
            while count < len(self._audit) and self._audit[count].at < before:
                count += 1
            if count:
                last = self._audit[count - 1]
                self._audit_anchor = AuditAnchor(seq=last.seq, hash=last.hash)
                del self._audit[:count]
            return count
