"""The parts of a :class:`~recoverkit.store.MemoryStore` that keep records about carts and contacts: facts for
analytics, discount codes, dead letters, and the data protection that reaches into every table."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from ..facts import Assignment, Conversion, Fact, LinkVisit, MessageOutcome, fact_time
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
from ._memory_tables import MemoryTables
from ._privacy import (
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

__all__ = ["MemoryCodes", "MemoryDeadLetters", "MemoryFacts", "MemoryPrivacy"]

K = TypeVar("K", bound=Hashable)
F = TypeVar("F", Assignment, Conversion, MessageOutcome, LinkVisit)
P = TypeVar("P", Assignment, Conversion, MessageOutcome)  # the facts that name a contact
V = TypeVar("V")


class MemoryFacts(MemoryTables):
    """:class:`~recoverkit.store.FactStore` in one dict per kind, by natural key."""

    def record_facts(self, facts: Sequence[Fact]) -> int:
        for fact in facts:
            check_fact(fact)
        with self._lock:
            self._enter(write=True)
            new = 0
            for fact in facts:
                if isinstance(fact, Assignment):
                    new += keep(self._assignments, (fact.cart_key, fact.flow), fact)
                elif isinstance(fact, Conversion):
                    new += keep(self._conversions, (fact.cart_key, fact.at), fact)
                elif isinstance(fact, MessageOutcome):
                    new += keep(self._outcomes, (fact.key, fact.outcome), fact)
                else:
                    new += keep(self._visits, (fact.cart_key, fact.at), fact)
            return new

    def assignments(self, *, since: float | None = None, until: float | None = None) -> list[Assignment]:
        return self._window(self._assignments, since, until)

    def conversions(self, *, since: float | None = None, until: float | None = None) -> list[Conversion]:
        return self._window(self._conversions, since, until)

    def outcomes(self, *, since: float | None = None, until: float | None = None) -> list[MessageOutcome]:
        return self._window(self._outcomes, since, until)

    def visits(self, *, since: float | None = None, until: float | None = None) -> list[LinkVisit]:
        return self._window(self._visits, since, until)

    def _window(self, table: Mapping[Any, F], since: float | None, until: float | None) -> list[F]:
        low = -math.inf if since is None else since
        high = math.inf if until is None else until
        with self._lock:
            self._enter(write=False)
            chosen = [(fact_time(f), str(key), f) for key, f in table.items() if low <= fact_time(f) < high]
        chosen.sort(key=lambda row: row[:2])
        return [f for _, _, f in chosen]


class MemoryCodes(MemoryTables):
    """:class:`~recoverkit.store.CodeStore` in dicts by code hash and by client."""

    def issue_code(self, code: CodeRecord, *, limits: Sequence[CodeLimit] = ()) -> IssueAnswer:
        check_code(code)
        check_limits(limits)
        with self._lock:
            self._enter(write=True)
            if code.code_hash in self._codes:
                return "duplicate"
            for limit in limits:
                key = limit_key(code, limit.by)
                if key is None:
                    continue
                issued = sum(
                    1 for c in self._codes.values() if limit_key(c, limit.by) == key and c.issued_at >= limit.since
                )
                if issued >= limit.most:
                    return LIMIT_ANSWERS[limit.by]
            self._codes[code.code_hash] = code
            return "issued"

    def redeem_code(
        self, code_hash: str, *, contact_key: str, cart_value: int, currency: str | None, order_id: str, now: float
    ) -> RedeemResult:
        check_redeem(code_hash, contact_key, cart_value, order_id)
        with self._lock:
            self._enter(write=True)
            code = self._codes.get(code_hash)
            outcome = judge_redemption(
                code, contact_key=contact_key, cart_value=cart_value, currency=currency, order_id=order_id, now=now
            )
            if code is not None and outcome == "valid" and code.redeemed_order is None:
                code = self._codes[code_hash] = msgspec.structs.replace(
                    code, redeemed_at=now, redeemed_order=order_id
                )
            return RedeemResult(outcome=outcome, code=code)

    def count_codes(
        self,
        *,
        since: float,
        contact_key: str | None = None,
        domain: str | None = None,
        device: str | None = None,
    ) -> int:
        check_count(contact_key, domain, device, since)
        with self._lock:
            self._enter(write=False)
            return sum(
                1
                for c in self._codes.values()
                if c.issued_at >= since
                and (contact_key is None or c.contact_key == contact_key)
                and (domain is None or c.domain == domain)
                and (device is None or c.device == device)
            )

    def record_attempt(self, client_key: str, *, now: float, window: float) -> int:
        check_attempt("record_attempt", client_key, now, window)
        with self._lock:
            self._enter(write=True)
            cutoff = now - window
            for key, times in list(self._attempts.items()):  # every client's old attempts, as SQLiteStore does
                kept = [at for at in times if at > cutoff]
                if kept:
                    self._attempts[key] = kept
                else:
                    del self._attempts[key]
            self._attempts.setdefault(client_key, []).append(now)
            return sum(1 for at in self._attempts[client_key] if at <= now)

    def count_attempts(self, client_key: str, *, now: float, window: float) -> int:
        check_attempt("count_attempts", client_key, now, window)
        with self._lock:
            self._enter(write=False)
            cutoff = now - window
            return sum(1 for at in self._attempts.get(client_key, ()) if cutoff < at <= now)


class MemoryDeadLetters(MemoryTables):
    """:class:`~recoverkit.store.DeadLetterStore` in a dict by key."""

    def add_dead_letter(
        self, key: str, data: bytes, *, error: str, attempts: int, permanent: bool, at: float, contact_key: str = ""
    ) -> None:
        letter = DeadLetterRecord(
            key=key, data=bytes(data), error=error, attempts=attempts, permanent=permanent, at=at,
            contact_key=contact_key,
        )  # fmt: skip
        with self._lock:
            self._enter(write=True)
            self._letters.pop(key, None)  # a replaced letter moves to the end, as in SQLiteStore
            self._letters[key] = (letter, False)

    def dead_letters(self) -> list[DeadLetterRecord]:
        with self._lock:
            self._enter(write=False)
            return [letter for letter, resent in self._letters.values() if not resent]

    def mark_resent(self, key: str) -> None:
        with self._lock:
            self._enter(write=True)
            kept = self._letters.get(key)
            if kept is None:
                self._failed += 1
                raise missing_dead_letter(key)
            self._letters[key] = (kept[0], True)


class MemoryPrivacy(MemoryTables):
    """:class:`~recoverkit.store.PrivacyStore`: the suppressions by hash, and erasure, export and
    retention across every table, under the one lock."""

    def hash_contact(self, contact_key: str) -> str:
        check_contact("hash_contact", contact_key)
        with self._lock:
            self._enter(write=False)
        return contact_hash(self._salt, contact_key)

    def suppress(self, contact_key: str, *, reason: str, at: float) -> None:
        check_contact("suppress", contact_key)
        check_reason(reason)
        hashed = self.hash_contact(contact_key)
        with self._lock:
            self._enter(write=True)
            self._suppressed.setdefault(hashed, (reason, at))

    def is_suppressed(self, contact_key: str) -> bool:
        check_contact("is_suppressed", contact_key)
        hashed = self.hash_contact(contact_key)
        with self._lock:
            self._enter(write=False)
            return hashed in self._suppressed

    def forget(self, contact_key: str, *, at: float) -> ForgetReport:
        check_contact("forget", contact_key)
        hashed = self.hash_contact(contact_key)
        with self._lock:
            # Under the one lock nobody sees a half-forgotten contact: as one transaction in SQLiteStore.
            self._enter(write=True)
            letters = [key for key, (letter, _) in self._letters.items() if letter.contact_key == contact_key]
            for key in letters:
                del self._letters[key]
            purchases = int(self._contact_purchases.pop(contact_key, None) is not None)
            entries = 0
            for key in self._ledger_of.pop(contact_key, ()):
                self._ledger[key] = msgspec.structs.replace(self._ledger[key], contact_key=hashed)
                self._ledger_of.setdefault(hashed, set()).add(key)
                entries += 1
            codes = 0
            for code_hash, code in self._codes.items():
                if code.contact_key == contact_key:
                    self._codes[code_hash] = msgspec.structs.replace(code, contact_key=hashed)
                    codes += 1
            facts = pseudonymise(self._assignments, contact_key, hashed)
            facts += pseudonymise(self._conversions, contact_key, hashed)
            facts += pseudonymise(self._outcomes, contact_key, hashed)
            before = self._suppressed.get(hashed)
            already = before is not None and before[0] == FORGOTTEN
            if not already:
                self._suppressed[hashed] = (FORGOTTEN, at)
            return ForgetReport(
                ledger_entries=entries, dead_letters=len(letters), purchases=purchases, already_forgotten=already,
                codes=codes, facts=facts,
            )  # fmt: skip

    def export(self, contact_key: str) -> ContactExport:
        check_contact("export", contact_key)
        hashed = self.hash_contact(contact_key)
        with self._lock:
            self._enter(write=False)
            return ContactExport(
                contact_key=contact_key,
                ledger=[e for e in self._ledger.values() if e.contact_key in (contact_key, hashed)],
                dead_letters=[
                    export_letter(
                        letter.key,
                        letter.data,
                        error=letter.error,
                        attempts=letter.attempts,
                        permanent=letter.permanent,
                        at=letter.at,
                        resent=resent,
                    )
                    for letter, resent in self._letters.values()
                    if letter.contact_key == contact_key
                ],
                purchased_at=self._contact_purchases.get(contact_key),
                suppressed=hashed in self._suppressed,
                codes=sorted(
                    (c for c in self._codes.values() if c.contact_key in (contact_key, hashed)),
                    key=lambda c: (c.issued_at, c.code_hash),
                ),
                assignments=[a for a in self._assignments.values() if a.contact_key in (contact_key, hashed)],
                conversions=[c for c in self._conversions.values() if c.contact_key in (contact_key, hashed)],
                outcomes=[o for o in self._outcomes.values() if o.contact_key in (contact_key, hashed)],
            )

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
        with self._lock:
            self._enter(write=True)
            entries = drop(self._ledger, lambda e: e.state in PURGEABLE and e.claimed_at < ledger_before)
            if entries:
                self._claimed_in = {key: part for key, part in self._claimed_in.items() if key in self._ledger}
            purchases = drop(self._cart_purchases, lambda at: at < purchases_before)
            purchases += drop(self._contact_purchases, lambda at: at < purchases_before)
            letters = drop(self._letters, lambda kept: kept[0].at < dead_letters_before)
            codes = 0 if codes_before is None else drop(self._codes, lambda c: c.expires_at < codes_before)
            facts = 0
            if facts_before is not None:
                old = facts_before
                facts = drop(self._assignments, lambda a: a.assigned_at < old)
                facts += drop(self._conversions, lambda c: c.at < old)
                facts += drop(self._outcomes, lambda o: o.at < old)
                facts += drop(self._visits, lambda v: v.at < old)
            return PurgeReport(
                ledger_entries=entries, purchases=purchases, dead_letters=letters, codes=codes, facts=facts
            )


def keep(table: dict[K, V], key: K, value: V) -> int:
    """Insert ``value`` unless ``key`` is taken (the first fact of a key is kept); 1 when inserted."""
    if key in table:
        return 0
    table[key] = value
    return 1


def pseudonymise(table: dict[K, P], contact_key: str, hashed: str) -> int:
    changed = [key for key, fact in table.items() if fact.contact_key == contact_key]
    for key in changed:
        table[key] = msgspec.structs.replace(table[key], contact_key=hashed)
    return len(changed)


def drop(table: dict[K, V], old: Callable[[V], bool]) -> int:
    """Delete the entries of ``table`` whose value is ``old``; return how many. The rest keep their order."""
    keys = [key for key, value in table.items() if old(value)]
    for key in keys:
        del table[key]
    return len(keys)
