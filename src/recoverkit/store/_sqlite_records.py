"""The parts of a :class:`~recoverkit.store.SQLiteStore` that keep records about carts and contacts: facts for
analytics, discount codes, dead letters, and the data protection that reaches into every table."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from ..facts import Assignment, Conversion, Fact, MessageOutcome
from ._codes import (
    LIMIT_ANSWERS,
    CodeLimit,
    CodeRecord,
    IssueAnswer,
    RedeemResult,
    check_attempt,
    check_code,
    check_count,
    check_limits,
    check_redeem,
    judge_redemption,
    limit_key,
)
from ._dead_letters import DeadLetterRecord, missing_dead_letter
from ._facts import check_fact
from ._ledger import PURGEABLE
from ._privacy import (
    FORGOTTEN,
    ContactExport,
    ForgetReport,
    PurgeReport,
    check_contact,
    check_purge,
    check_reason,
    export_letter,
)
from ._sql_rows import (
    ASSIGNMENT_COLUMNS,
    CODE_COLUMNS,
    CONVERSION_COLUMNS,
    LIMIT_COLUMNS,
    OUTCOME_COLUMNS,
    OUTCOME_FIELDS,
    SQLFactReaders,
    assignment_of,
    code_record_of,
    conversion_of,
    json_encoder,
)
from ._sqlite_file import SQLiteFile
from ._sqlite_pipeline import LEDGER_COLUMNS, ledger_entry

__all__ = ["SQLiteCodes", "SQLiteDeadLetters", "SQLiteFacts", "SQLitePrivacy"]


class SQLiteFacts(SQLFactReaders, SQLiteFile):
    """:class:`~recoverkit.store.FactStore` in the ``assignments``, ``conversions``, ``outcomes`` and
    ``visits`` tables, each keyed by its fact's natural key (``INSERT OR IGNORE``: the first fact is kept)."""

    MARK = "?"

    def record_facts(self, facts: Sequence[Fact]) -> int:
        rows: dict[str, list[tuple[Any, ...]]] = {"assignments": [], "conversions": [], "outcomes": [], "visits": []}
        for fact in facts:
            check_fact(fact)
            if isinstance(fact, Assignment):
                rows["assignments"].append((
                    fact.cart_key, fact.flow, fact.group, fact.scope, fact.contact_key, fact.assigned_at, fact.value,
                    fact.currency, json_encoder.encode(fact.variants).decode(), fact.score, fact.reason, fact.trigger,
                ))  # fmt: skip
            elif isinstance(fact, Conversion):
                rows["conversions"].append((
                    fact.cart_key, fact.at, fact.contact_key, int(fact.own), fact.value, fact.currency,
                    fact.transaction_id,
                ))  # fmt: skip
            elif isinstance(fact, MessageOutcome):
                rows["outcomes"].append(tuple(getattr(fact, name) for name in OUTCOME_FIELDS))
            else:
                rows["visits"].append((fact.cart_key, fact.at))
        columns = {
            "assignments": ASSIGNMENT_COLUMNS, "conversions": CONVERSION_COLUMNS, "outcomes": OUTCOME_COLUMNS,
            "visits": "cart_key, at",
        }  # fmt: skip

        def run(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            for table, values in rows.items():
                if values:
                    marks = ", ".join("?" * len(values[0]))
                    conn.executemany(f"INSERT OR IGNORE INTO {table} ({columns[table]}) VALUES ({marks})", values)
            return conn.total_changes - before

        return self._write("record_facts", run) if facts else 0


class SQLiteCodes(SQLiteFile):
    """:class:`~recoverkit.store.CodeStore` in the ``codes`` and ``code_attempts`` tables."""

    def issue_code(self, code: CodeRecord, *, limits: Sequence[CodeLimit] = ()) -> IssueAnswer:
        check_code(code)
        check_limits(limits)

        def run(conn: sqlite3.Connection) -> IssueAnswer:
            # One transaction under the file's write lock: no other process can issue between count and insert.
            if conn.execute("SELECT 1 FROM codes WHERE hash = ?", (code.code_hash,)).fetchone() is not None:
                return "duplicate"
            for limit in limits:
                key = limit_key(code, limit.by)
                if key is None:
                    continue
                column = LIMIT_COLUMNS[limit.by]
                (issued,) = conn.execute(
                    f"SELECT count(*) FROM codes WHERE {column} = ? AND issued_at >= ?", (key, limit.since)
                ).fetchone()
                if issued >= limit.most:
                    return LIMIT_ANSWERS[limit.by]
            conn.execute(
                f"INSERT INTO codes ({CODE_COLUMNS}) VALUES ({', '.join('?' * 14)})",
                (
                    code.code_hash, code.cart_key, code.contact_key, code.kind, code.issued_at, code.expires_at,
                    code.percent, code.amount, code.currency, code.min_value, code.domain, code.device, None, None,
                ),
            )  # fmt: skip
            return "issued"

        return self._write("issue_code", run)

    def redeem_code(
        self, code_hash: str, *, contact_key: str, cart_value: int, currency: str | None, order_id: str, now: float
    ) -> RedeemResult:
        check_redeem(code_hash, contact_key, cart_value, order_id)

        def run(conn: sqlite3.Connection) -> RedeemResult:
            # Read and mark in one transaction under the write lock: of two orders racing for one code, the
            # second reads it redeemed.
            row = conn.execute(f"SELECT {CODE_COLUMNS} FROM codes WHERE hash = ?", (code_hash,)).fetchone()
            code = None if row is None else code_record_of(row)
            outcome = judge_redemption(
                code, contact_key=contact_key, cart_value=cart_value, currency=currency, order_id=order_id, now=now
            )
            if code is not None and outcome == "valid" and code.redeemed_order is None:
                conn.execute(
                    "UPDATE codes SET redeemed_at = ?, redeemed_order = ? WHERE hash = ?", (now, order_id, code_hash)
                )
                code = msgspec.structs.replace(code, redeemed_at=now, redeemed_order=order_id)
            return RedeemResult(outcome=outcome, code=code)

        return self._write("redeem_code", run)

    def count_codes(
        self,
        *,
        since: float,
        contact_key: str | None = None,
        domain: str | None = None,
        device: str | None = None,
    ) -> int:
        check_count(contact_key, domain, device, since)
        wanted = [(column, value) for column, value in (("contact_key", contact_key), ("domain", domain),
                                                         ("device", device)) if value is not None]  # fmt: skip
        where = " AND ".join(f"{column} = ?" for column, _ in wanted)

        def run(conn: sqlite3.Connection) -> int:
            (count,) = conn.execute(
                f"SELECT count(*) FROM codes WHERE {where} AND issued_at >= ?", (*(v for _, v in wanted), since)
            ).fetchone()
            return int(count)

        return self._read("count_codes", run)

    def record_attempt(self, client_key: str, *, now: float, window: float) -> int:
        check_attempt("record_attempt", client_key, now, window)
        cutoff = now - window

        def run(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM code_attempts WHERE at <= ?", (cutoff,))
            conn.execute("INSERT INTO code_attempts (client, at) VALUES (?, ?)", (client_key, now))
            (count,) = conn.execute(
                "SELECT count(*) FROM code_attempts WHERE client = ? AND at > ? AND at <= ?", (client_key, cutoff, now)
            ).fetchone()
            return int(count)

        return self._write("record_attempt", run)

    def count_attempts(self, client_key: str, *, now: float, window: float) -> int:
        check_attempt("count_attempts", client_key, now, window)

        def run(conn: sqlite3.Connection) -> int:
            (count,) = conn.execute(
                "SELECT count(*) FROM code_attempts WHERE client = ? AND at > ? AND at <= ?",
                (client_key, now - window, now),
            ).fetchone()
            return int(count)

        return self._read("count_attempts", run)


class SQLiteDeadLetters(SQLiteFile):
    """:class:`~recoverkit.store.DeadLetterStore` in the ``dead_letters`` table."""

    def add_dead_letter(
        self, key: str, data: bytes, *, error: str, attempts: int, permanent: bool, at: float, contact_key: str = ""
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            # Delete, then insert: a replaced letter moves to the end of the list, as the newest.
            conn.execute("DELETE FROM dead_letters WHERE key = ?", (key,))
            conn.execute(
                "INSERT INTO dead_letters (key, data, error, attempts, permanent, at, contact_key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, data, error, attempts, int(permanent), at, contact_key),
            )

        self._write("add_dead_letter", run)

    def dead_letters(self) -> list[DeadLetterRecord]:
        def run(conn: sqlite3.Connection) -> list[DeadLetterRecord]:
            rows = conn.execute(
                "SELECT key, data, error, attempts, permanent, at, contact_key FROM dead_letters WHERE resent = 0 "
                "ORDER BY rowid"
            ).fetchall()
            return [
                DeadLetterRecord(key=k, data=d, error=e, attempts=n, permanent=bool(p), at=at, contact_key=c)
                for k, d, e, n, p, at, c in rows
            ]

        return self._read("dead_letters", run)

    def mark_resent(self, key: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            if conn.execute("UPDATE dead_letters SET resent = 1 WHERE key = ?", (key,)).rowcount == 0:
                raise missing_dead_letter(key)

        self._write("mark_resent", run)


class SQLitePrivacy(SQLiteFile):
    """:class:`~recoverkit.store.PrivacyStore`: the ``suppression`` table, and erasure, export and
    retention across every table; a :meth:`forget` leaves the file due for a :meth:`~SQLiteFile.scrub`."""

    def hash_contact(self, contact_key: str) -> str:
        check_contact("hash_contact", contact_key)
        return self._hash(contact_key)

    def suppress(self, contact_key: str, *, reason: str, at: float) -> None:
        check_contact("suppress", contact_key)
        check_reason(reason)
        hashed = self.hash_contact(contact_key)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO suppression (hash, reason, at) VALUES (?, ?, ?) ON CONFLICT (hash) DO NOTHING",
                (hashed, reason, at),
            )

        self._write("suppress", run)

    def is_suppressed(self, contact_key: str) -> bool:
        check_contact("is_suppressed", contact_key)
        hashed = self.hash_contact(contact_key)
        return self._read(
            "is_suppressed",
            lambda conn: conn.execute("SELECT 1 FROM suppression WHERE hash = ?", (hashed,)).fetchone() is not None,
        )

    def forget(self, contact_key: str, *, at: float) -> ForgetReport:
        check_contact("forget", contact_key)
        hashed = self.hash_contact(contact_key)

        def run(conn: sqlite3.Connection) -> ForgetReport:
            # One operation, so one savepoint of one transaction: all of it is committed or none.
            letters = conn.execute("DELETE FROM dead_letters WHERE contact_key = ?", (contact_key,)).rowcount
            purchases = conn.execute(
                "DELETE FROM purchases WHERE kind = 'contact' AND key = ?", (contact_key,)
            ).rowcount
            entries = conn.execute(
                "UPDATE ledger SET contact_key = ? WHERE contact_key = ?", (hashed, contact_key)
            ).rowcount
            codes = conn.execute(
                "UPDATE codes SET contact_key = ? WHERE contact_key = ?", (hashed, contact_key)
            ).rowcount
            facts = sum(
                conn.execute(f"UPDATE {t} SET contact_key = ? WHERE contact_key = ?", (hashed, contact_key)).rowcount
                for t in ("assignments", "conversions", "outcomes")
            )
            changed = conn.execute(
                "INSERT INTO suppression (hash, reason, at) VALUES (?, ?, ?) "
                "ON CONFLICT (hash) DO UPDATE SET reason = excluded.reason, at = excluded.at "
                "WHERE reason <> excluded.reason",
                (hashed, FORGOTTEN, at),
            ).rowcount
            return ForgetReport(
                ledger_entries=entries, dead_letters=letters, purchases=purchases, already_forgotten=changed == 0,
                codes=codes, facts=facts,
            )  # fmt: skip

        report = self._write("forget", run)
        # Not scrubbed here: the engine trims the journal (the customer's events) right after, and one scrub
        # then covers both. A caller without an engine calls scrub() itself.
        self._scrub_due = True
        return report

    def export(self, contact_key: str) -> ContactExport:
        check_contact("export", contact_key)
        hashed = self.hash_contact(contact_key)

        def run(conn: sqlite3.Connection) -> ContactExport:
            conn.execute("BEGIN")  # one snapshot for every query: a forget() between them must not show half
            try:
                ledger = conn.execute(
                    f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE contact_key IN (?, ?) ORDER BY rowid",
                    (contact_key, hashed),
                ).fetchall()
                letters = conn.execute(
                    "SELECT key, data, error, attempts, permanent, at, resent FROM dead_letters "
                    "WHERE contact_key = ? ORDER BY rowid",
                    (contact_key,),
                ).fetchall()
                bought = conn.execute(
                    "SELECT at FROM purchases WHERE kind = 'contact' AND key = ?", (contact_key,)
                ).fetchone()
                suppressed = conn.execute("SELECT 1 FROM suppression WHERE hash = ?", (hashed,)).fetchone()
                codes = conn.execute(
                    f"SELECT {CODE_COLUMNS} FROM codes WHERE contact_key IN (?, ?) ORDER BY issued_at, hash",
                    (contact_key, hashed),
                ).fetchall()
                assignments = conn.execute(
                    f"SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE contact_key IN (?, ?) ORDER BY assigned_at",
                    (contact_key, hashed),
                ).fetchall()
                conversions = conn.execute(
                    f"SELECT {CONVERSION_COLUMNS} FROM conversions WHERE contact_key IN (?, ?) ORDER BY at",
                    (contact_key, hashed),
                ).fetchall()
                outcomes = conn.execute(
                    f"SELECT {OUTCOME_COLUMNS} FROM outcomes WHERE contact_key IN (?, ?) ORDER BY at, key",
                    (contact_key, hashed),
                ).fetchall()
            finally:
                conn.execute("COMMIT")  # a read transaction: ends the snapshot, writes nothing
            return ContactExport(
                contact_key=contact_key,
                ledger=[ledger_entry(row) for row in ledger],
                dead_letters=[
                    export_letter(k, d, error=e, attempts=n, permanent=bool(p), at=at, resent=bool(r))
                    for k, d, e, n, p, at, r in letters
                ],
                purchased_at=None if bought is None else bought[0],
                suppressed=suppressed is not None,
                codes=[code_record_of(row) for row in codes],
                assignments=[assignment_of(row) for row in assignments],
                conversions=[conversion_of(row) for row in conversions],
                outcomes=[MessageOutcome(**dict(zip(OUTCOME_FIELDS, row, strict=True))) for row in outcomes],
            )

        return self._read("export", run)

    def purge(
        self,
        *,
        ledger_before: float,
        purchases_before: float,
        dead_letters_before: float,
        codes_before: float | None = None,
        facts_before: float | None = None,
    ) -> PurgeReport:
        check_purge(ledger_before, purchases_before, dead_letters_before, codes_before, facts_before)
        marks = ", ".join("?" * len(PURGEABLE))

        def run(conn: sqlite3.Connection) -> PurgeReport:
            entries = conn.execute(
                f"DELETE FROM ledger WHERE state IN ({marks}) AND claimed_at < ?", (*PURGEABLE, ledger_before)
            ).rowcount
            purchases = conn.execute("DELETE FROM purchases WHERE at < ?", (purchases_before,)).rowcount
            letters = conn.execute("DELETE FROM dead_letters WHERE at < ?", (dead_letters_before,)).rowcount
            codes = (
                0
                if codes_before is None
                else conn.execute("DELETE FROM codes WHERE expires_at < ?", (codes_before,)).rowcount
            )
            facts = 0
            if facts_before is not None:
                facts = conn.execute("DELETE FROM assignments WHERE assigned_at < ?", (facts_before,)).rowcount
                for table in ("conversions", "outcomes", "visits"):
                    facts += conn.execute(f"DELETE FROM {table} WHERE at < ?", (facts_before,)).rowcount
            return PurgeReport(
                ledger_entries=entries, purchases=purchases, dead_letters=letters, codes=codes, facts=facts
            )

        return self._write("purge", run)
