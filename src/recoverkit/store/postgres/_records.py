"""Codes, facts for analytics, and data protection (suppression, erasure, access, retention) in PostgreSQL.

The same answers as :class:`~recoverkit.store.SQLiteStore` gives, through the same argument checks and judges in
:mod:`recoverkit.store.base`. Where SQLite's single writer makes a count-then-insert atomic for free
(``issue_code``'s limits, ``record_attempt``'s count), a transaction here first locks the table against other
writers (``LOCK TABLE ... IN EXCLUSIVE MODE``; readers go on): of any number of processes issuing at once, no
limit is exceeded. Codes are issued at the rate of abandoned carts, so the lock costs nothing that matters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from ...facts import Assignment, Conversion, Fact, LinkVisit, MessageOutcome
from .._codes import (
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
from .._facts import check_fact
from .._ledger import PURGEABLE
from .._privacy import (
    FORGOTTEN,
    ContactExport,
    ForgetReport,
    PurgeReport,
    check_contact,
    check_purge,
    check_reason,
    contact_hash,
    export_letter,
)
from .._sql_rows import (
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
from ._ledger import LEDGER_COLUMNS, Ledger, hold_contacts, ledger_entry
from ._plumbing import Conn

__all__ = ["Records"]

#: Facts inserted by one statement (under PostgreSQL's 65,535 parameters at any table's width).
_FACTS_PER_INSERT = 500

_FACT_COLUMNS: Final = {
    "assignments": ASSIGNMENT_COLUMNS, "conversions": CONVERSION_COLUMNS, "outcomes": OUTCOME_COLUMNS,
    "visits": "cart_key, at",
}  # fmt: skip


class Records(SQLFactReaders, Ledger):
    """Codes, facts and data protection: the rest of :class:`~recoverkit.store.postgres.PostgresStore`."""

    MARK = "%s"

    # -- codes ----------------------------------------------------------------------------------------------

    def issue_code(self, code: CodeRecord, *, limits: Sequence[CodeLimit] = ()) -> IssueAnswer:
        check_code(code)
        check_limits(limits)

        hashed = self._hash(code.contact_key)

        def run(conn: Conn) -> IssueAnswer:
            hold_contacts(conn, [hashed])
            conn.execute("LOCK TABLE codes IN EXCLUSIVE MODE")  # count and insert as one, across processes
            if conn.execute("SELECT 1 FROM codes WHERE hash = %s", (code.code_hash,)).fetchone() is not None:
                return "duplicate"
            for limit in limits:
                key = limit_key(code, limit.by)
                if key is None:
                    continue
                column = LIMIT_COLUMNS[limit.by]
                (issued,) = conn.execute(
                    f"SELECT count(*) FROM codes WHERE {column} = %s AND issued_at >= %s", (key, limit.since)
                ).fetchone() or (0,)
                if issued >= limit.most:
                    return LIMIT_ANSWERS[limit.by]
            conn.execute(
                f"INSERT INTO codes ({CODE_COLUMNS}) VALUES ({', '.join(['%s'] * 14)})",
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

        def run(conn: Conn) -> RedeemResult:
            # FOR UPDATE: of two orders racing for one code, the second reads it redeemed.
            row = conn.execute(f"SELECT {CODE_COLUMNS} FROM codes WHERE hash = %s FOR UPDATE", (code_hash,)).fetchone()
            code = None if row is None else code_record_of(row)
            outcome = judge_redemption(
                code, contact_key=contact_key, cart_value=cart_value, currency=currency, order_id=order_id, now=now
            )
            if code is not None and outcome == "valid" and code.redeemed_order is None:
                conn.execute(
                    "UPDATE codes SET redeemed_at = %s, redeemed_order = %s WHERE hash = %s", (now, order_id, code_hash)
                )
                code = msgspec.structs.replace(code, redeemed_at=now, redeemed_order=order_id)
            return RedeemResult(outcome=outcome, code=code)

        return self._write("redeem_code", run)

    def count_codes(
        self, *, since: float, contact_key: str | None = None, domain: str | None = None, device: str | None = None
    ) -> int:
        check_count(contact_key, domain, device, since)
        wanted = [(column, value) for column, value in (("contact_key", contact_key), ("domain", domain),
                                                         ("device", device)) if value is not None]  # fmt: skip
        where = " AND ".join(f"{column} = %s" for column, _ in wanted)
        return self._read(
            "count_codes",
            lambda conn: _count(
                conn, f"SELECT count(*) FROM codes WHERE {where} AND issued_at >= %s", (*(v for _, v in wanted), since)
            ),
        )

    def record_attempt(self, client_key: str, *, now: float, window: float) -> int:
        check_attempt("record_attempt", client_key, now, window)
        cutoff = now - window

        def run(conn: Conn) -> int:
            conn.execute("LOCK TABLE code_attempts IN EXCLUSIVE MODE")  # each caller counts the attempts before it
            conn.execute("DELETE FROM code_attempts WHERE at <= %s", (cutoff,))
            conn.execute("INSERT INTO code_attempts (client, at) VALUES (%s, %s)", (client_key, now))
            return _count(
                conn, "SELECT count(*) FROM code_attempts WHERE client = %s AND at > %s AND at <= %s",
                (client_key, cutoff, now),
            )  # fmt: skip

        return self._write("record_attempt", run)

    def count_attempts(self, client_key: str, *, now: float, window: float) -> int:
        check_attempt("count_attempts", client_key, now, window)
        return self._read(
            "count_attempts",
            lambda conn: _count(
                conn, "SELECT count(*) FROM code_attempts WHERE client = %s AND at > %s AND at <= %s",
                (client_key, now - window, now),
            ),
        )  # fmt: skip

    # -- facts for analytics --------------------------------------------------------------------------------

    def record_facts(self, facts: Sequence[Fact]) -> int:
        rows: dict[str, list[tuple[Any, ...]]] = {"assignments": [], "conversions": [], "outcomes": [], "visits": []}
        for fact in facts:
            check_fact(fact)
            table, row = _fact_row(fact)
            rows[table].append(row)

        hashes = [self._hash(f.contact_key) for f in facts if not isinstance(f, LinkVisit)]

        def run(conn: Conn) -> int:
            hold_contacts(conn, hashes)
            added = 0
            with conn.cursor() as cursor:
                for table, values in rows.items():
                    # Many rows to one statement (a round trip each was most of a replay's store time); its rowcount
                    # is how many were new, the others being already there (ON CONFLICT DO NOTHING).
                    for start in range(0, len(values), _FACTS_PER_INSERT):
                        chunk = values[start : start + _FACTS_PER_INSERT]
                        row = "(" + ", ".join(["%s"] * len(chunk[0])) + ")"
                        cursor.execute(
                            f"INSERT INTO {table} ({_FACT_COLUMNS[table]}) VALUES {', '.join([row] * len(chunk))} "
                            "ON CONFLICT DO NOTHING",
                            [field for value in chunk for field in value],
                        )
                        added += cursor.rowcount
            return added

        return self._write("record_facts", run) if facts else 0

    # -- data protection and retention ----------------------------------------------------------------------

    def hash_contact(self, contact_key: str) -> str:
        check_contact("hash_contact", contact_key)
        self._usable()
        return contact_hash(self._salt, contact_key)

    def suppress(self, contact_key: str, *, reason: str, at: float) -> None:
        check_contact("suppress", contact_key)
        check_reason(reason)
        hashed = self.hash_contact(contact_key)
        self._write(
            "suppress",
            lambda conn: conn.execute(
                "INSERT INTO suppression (hash, reason, at) VALUES (%s, %s, %s) ON CONFLICT (hash) DO NOTHING",
                (hashed, reason, at),
            ),
        )

    def is_suppressed(self, contact_key: str) -> bool:
        check_contact("is_suppressed", contact_key)
        hashed = self.hash_contact(contact_key)
        return self._read(
            "is_suppressed",
            lambda conn: conn.execute("SELECT 1 FROM suppression WHERE hash = %s", (hashed,)).fetchone() is not None,
        )

    def forget(self, contact_key: str, *, at: float) -> ForgetReport:
        """Erase ``contact_key`` as :meth:`~recoverkit.store.Store.forget` says, in one transaction.

        It waits for the writes for the contact already under way (claims, facts, codes, dead letters, purchases
        hold a shared lock on the contact while they write: ``_ledger.hold_contacts``) and erases what they wrote.
        PostgreSQL keeps old row versions until VACUUM reclaims them, and its WAL and backups keep them longer:
        erasure here removes the rows from every query at once; their bytes go when autovacuum runs (minutes) and
        the WAL is recycled. ``docs/scaling.md`` says what a shop's retention of backups must then cover.
        """
        check_contact("forget", contact_key)
        hashed = self.hash_contact(contact_key)

        def run(conn: Conn) -> ForgetReport:
            def changed(statement: str, *args: object) -> int:
                return conn.execute(statement, args).rowcount

            # Exclusive: waits for the writes of rows for this contact already under way (see hold_contacts),
            # so that the statements below, each with a new snapshot, see them.
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (hashed,))
            letters = changed("DELETE FROM dead_letters WHERE contact_key = %s", contact_key)
            purchases = changed("DELETE FROM purchases WHERE kind = 'contact' AND key = %s", contact_key)
            entries = changed("UPDATE ledger SET contact_key = %s WHERE contact_key = %s", hashed, contact_key)
            codes = changed("UPDATE codes SET contact_key = %s WHERE contact_key = %s", hashed, contact_key)
            facts = sum(
                changed(f"UPDATE {t} SET contact_key = %s WHERE contact_key = %s", hashed, contact_key)
                for t in ("assignments", "conversions", "outcomes")
            )
            suppressed = changed(
                "INSERT INTO suppression AS s (hash, reason, at) VALUES (%s, %s, %s) ON CONFLICT (hash) DO UPDATE "
                "SET reason = excluded.reason, at = excluded.at WHERE s.reason <> excluded.reason",
                hashed, FORGOTTEN, at,
            )  # fmt: skip
            return ForgetReport(
                ledger_entries=entries, dead_letters=letters, purchases=purchases, already_forgotten=suppressed == 0,
                codes=codes, facts=facts,
            )  # fmt: skip

        return self._write("forget", run)

    def export(self, contact_key: str) -> ContactExport:
        check_contact("export", contact_key)
        hashed = self.hash_contact(contact_key)
        both = (contact_key, hashed)

        def run(conn: Conn) -> ContactExport:
            # One snapshot for every query: a forget() committed between two of them must not show half.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

            def rows(statement: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
                return conn.execute(statement, args).fetchall()

            ledger = rows(f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE contact_key IN (%s, %s) ORDER BY id", both)
            letters = rows(
                "SELECT key, data, error, attempts, permanent, at, resent FROM dead_letters WHERE contact_key = %s "
                "ORDER BY id",
                (contact_key,),
            )
            bought = rows("SELECT at FROM purchases WHERE kind = 'contact' AND key = %s", (contact_key,))
            suppressed = rows("SELECT 1 FROM suppression WHERE hash = %s", (hashed,))
            codes = rows(
                f"SELECT {CODE_COLUMNS} FROM codes WHERE contact_key IN (%s, %s) ORDER BY issued_at, hash", both
            )
            assignments = rows(
                f"SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE contact_key IN (%s, %s) ORDER BY assigned_at",
                both,
            )
            conversions = rows(
                f"SELECT {CONVERSION_COLUMNS} FROM conversions WHERE contact_key IN (%s, %s) ORDER BY at", both
            )
            outcomes = rows(
                f"SELECT {OUTCOME_COLUMNS} FROM outcomes WHERE contact_key IN (%s, %s) ORDER BY at, key", both
            )
            return ContactExport(
                contact_key=contact_key,
                ledger=[ledger_entry(row) for row in ledger],
                dead_letters=[
                    export_letter(k, d, error=e, attempts=n, permanent=p, at=at, resent=r)
                    for k, d, e, n, p, at, r in letters
                ],
                purchased_at=bought[0][0] if bought else None,
                suppressed=bool(suppressed),
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

        def run(conn: Conn) -> PurgeReport:
            def deleted(statement: str, *args: object) -> int:
                return conn.execute(statement, args).rowcount

            entries = deleted(
                "DELETE FROM ledger WHERE state = ANY(%s) AND claimed_at < %s", list(PURGEABLE), ledger_before
            )
            purchases = deleted("DELETE FROM purchases WHERE at < %s", purchases_before)
            letters = deleted("DELETE FROM dead_letters WHERE at < %s", dead_letters_before)
            codes = 0 if codes_before is None else deleted("DELETE FROM codes WHERE expires_at < %s", codes_before)
            facts = 0
            if facts_before is not None:
                facts = deleted("DELETE FROM assignments WHERE assigned_at < %s", facts_before)
                for table in ("conversions", "outcomes", "visits"):
                    facts += deleted(f"DELETE FROM {table} WHERE at < %s", facts_before)
            return PurgeReport(
                ledger_entries=entries, purchases=purchases, dead_letters=letters, codes=codes, facts=facts
            )

        return self._write("purge", run)


def _count(conn: Conn, statement: str, args: tuple[Any, ...]) -> int:
    row = conn.execute(statement, args).fetchone()
    return int(row[0]) if row else 0


def _fact_row(fact: Fact) -> tuple[str, tuple[Any, ...]]:
    if isinstance(fact, Assignment):
        return "assignments", (
            fact.cart_key, fact.flow, fact.group, fact.scope, fact.contact_key, fact.assigned_at, fact.value,
            fact.currency, json_encoder.encode(fact.variants).decode(), fact.score, fact.reason, fact.trigger,
        )  # fmt: skip
    if isinstance(fact, Conversion):
        return "conversions", (
            fact.cart_key, fact.at, fact.contact_key, fact.own, fact.value, fact.currency, fact.transaction_id,
        )  # fmt: skip
    if isinstance(fact, MessageOutcome):
        return "outcomes", tuple(getattr(fact, name) for name in OUTCOME_FIELDS)
    return "visits", (fact.cart_key, fact.at)
