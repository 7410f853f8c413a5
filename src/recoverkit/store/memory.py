"""``MemoryStore``: the store in a few dicts, for tests. It keeps nothing across a restart."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import msgspec

from ..errors import StoreError
from ..facts import fact_time
from .base import (
    FINISHABLE,
    FORGOTTEN,
    LIMIT_ANSWERS,
    PIPELINE_LEASE,
    PURGEABLE,
    RESOLVABLE,
    SALT_BYTES,
    Assignment,
    Checkpoint,
    Claim,
    ClaimRequest,
    CodeLimit,
    CodeRecord,
    ContactExport,
    Conversion,
    DeadLetterRecord,
    Fact,
    FinishRequest,
    ForgetReport,
    IssueAnswer,
    JournalEntry,
    LeaseTaken,
    LedgerEntry,
    LedgerState,
    LinkVisit,
    MessageOutcome,
    Outcome,
    PurgeReport,
    RedeemResult,
    Resolution,
    StoreStatistics,
    cannot_finish,
    cannot_resolve,
    check_attempt,
    check_claim,
    check_code,
    check_contact,
    check_count,
    check_fact,
    check_lease,
    check_limits,
    check_outcome,
    check_position,
    check_purchase,
    check_purge,
    check_read_limit,
    check_reason,
    check_redeem,
    check_resolution,
    check_states,
    contact_hash,
    export_letter,
    judge_redemption,
    limit_key,
    missing_dead_letter,
    missing_entry,
)

__all__ = ["MemoryStore"]

K = TypeVar("K", bound=Hashable)
F = TypeVar("F", Assignment, Conversion, MessageOutcome, LinkVisit)
P = TypeVar("P", Assignment, Conversion, MessageOutcome)  # the facts that name a contact
V = TypeVar("V")


class MemoryStore:
    """A :class:`~recoverkit.store.Store` held in memory: thread-safe, fast, and gone with the process.

    It answers exactly as :class:`~recoverkit.store.SQLiteStore` does (both pass the same contract tests), so a
    shop's tests and recoverkit's own can use it in place of a file. One lock serialises every method. Each
    instance draws its own salt, so :meth:`hash_contact` differs between instances.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._journal: dict[int, JournalEntry] = {}  # insertion order is seq order
        self._last_seq = 0
        self._first_seq = 1  # the lowest seq the journal may still hold
        self._checkpoint: Checkpoint | None = None
        self._cart_purchases: dict[str, float] = {}
        self._contact_purchases: dict[str, float] = {}
        self._ledger: dict[str, LedgerEntry] = {}
        self._leases: dict[str, tuple[str, float]] = {}  # name -> (owner, expires_at)
        self._letters: dict[str, tuple[DeadLetterRecord, bool]] = {}  # key -> (letter, resent)
        self._salt = os.urandom(SALT_BYTES)
        self._suppressed: dict[str, tuple[str, float]] = {}  # hash -> (reason, at)
        self._codes: dict[str, CodeRecord] = {}  # code_hash -> record
        # Facts for analytics, by natural key; the first fact of a key is kept.
        self._assignments: dict[tuple[str, str], Assignment] = {}  # (cart_key, flow)
        self._conversions: dict[tuple[str, float], Conversion] = {}  # (cart_key, at)
        self._outcomes: dict[tuple[str, str], MessageOutcome] = {}  # (message key, outcome)
        self._visits: dict[tuple[str, float], LinkVisit] = {}  # (cart_key, at)
        self._attempts: dict[str, list[float]] = {}  # client key -> times of failed redemptions
        self._operations = 0
        self._failed = 0

    # Every method runs under the lock and checks that the store is open. Writes also count themselves.

    def _enter(self, write: bool) -> None:
        if self._closed:
            raise StoreError("MemoryStore was used after close()")
        if write:
            self._operations += 1

    # -- journal --------------------------------------------------------------------------------------------

    def append_events(self, events: Sequence[bytes], *, now: float) -> int:
        with self._lock:
            self._enter(write=bool(events))  # appending nothing is a read, as in SQLiteStore
            for data in events:
                self._last_seq += 1
                self._journal[self._last_seq] = JournalEntry(seq=self._last_seq, data=bytes(data), accepted_at=now)
            return self._last_seq

    def read_events(self, after: int, limit: int) -> list[JournalEntry]:
        check_read_limit(after, limit)
        with self._lock:
            self._enter(write=False)
            if not self._journal:
                return []
            # Trims delete a prefix, so the seqs kept run without gaps from the first to the last.
            first = max(after + 1, self._first_seq)
            last = min(first + limit - 1, self._last_seq)
            return [self._journal[seq] for seq in range(first, last + 1)]

    def trim_events(self, through: int) -> int:
        with self._lock:
            self._enter(write=True)
            # Trims delete a prefix, and the seqs kept run without gaps: pop by seq. (Not by next(iter(...)):
            # a dict keeps deleted slots at its front, so that would make trimming quadratic.)
            journal = self._journal
            count = 0
            for seq in range(self._first_seq, min(through, self._last_seq) + 1):
                if journal.pop(seq, None) is not None:
                    count += 1
            self._first_seq = max(self._first_seq, through + 1)
            return count

    def last_seq(self) -> int:
        with self._lock:
            self._enter(write=False)
            return self._last_seq

    # -- checkpoint -----------------------------------------------------------------------------------------

    def save_checkpoint(self, position: int, state: bytes, *, now: float) -> bool:
        check_position(position)
        with self._lock:
            self._enter(write=True)
            if self._checkpoint is not None and self._checkpoint.position > position:
                return False
            self._checkpoint = Checkpoint(position=position, state=bytes(state), saved_at=now)
            return True

    def load_checkpoint(self) -> Checkpoint | None:
        with self._lock:
            self._enter(write=False)
            return self._checkpoint

    # -- purchases and the ledger ---------------------------------------------------------------------------

    def record_purchase(self, *, cart_key: str | None, contact_key: str | None, at: float) -> None:
        check_purchase(cart_key, contact_key)
        with self._lock:
            self._enter(write=True)
            for table, key in ((self._cart_purchases, cart_key), (self._contact_purchases, contact_key)):
                if key is not None:
                    table[key] = max(at, table.get(key, at))

    def claim(
        self,
        key: str,
        *,
        cart_key: str,
        contact_key: str,
        channel: str,
        started_at: float,
        owner: str,
        now: float,
        at: float | None = None,
    ) -> Claim:
        check_claim(key, owner)
        with self._lock:
            self._enter(write=True)
            lease = self._leases.get(PIPELINE_LEASE)
            if lease is None or lease[0] != owner or lease[1] <= now:
                return "not_owner"
            if key in self._ledger:
                return "duplicate"
            if contact_key and contact_hash(self._salt, contact_key) in self._suppressed:
                return "suppressed"
            bought_cart = self._cart_purchases.get(cart_key)
            bought_contact = self._contact_purchases.get(contact_key)
            if (bought_cart is not None and bought_cart >= started_at) or (
                bought_contact is not None and bought_contact >= started_at
            ):
                return "purchased"
            self._ledger[key] = LedgerEntry(
                key=key,
                cart_key=cart_key,
                contact_key=contact_key,
                channel=channel,
                state="sending",
                owner=owner,
                started_at=started_at,
                claimed_at=now if at is None else at,
            )
            return "claimed"

    def finish(self, key: str, outcome: Outcome, *, now: float, error: str | None = None) -> None:
        check_outcome(outcome)
        with self._lock:
            self._enter(write=True)
            entry = self._entry(key)
            if entry.state not in FINISHABLE:
                self._failed += 1
                raise cannot_finish(key, entry.state)
            self._ledger[key] = msgspec.structs.replace(entry, state=outcome, finished_at=now, error=error)

    def claim_many(self, requests: Sequence[ClaimRequest]) -> list[Claim]:
        # Each claim is atomic under the lock; nothing is gained by holding it across them in memory.
        return [
            self.claim(
                r.key, cart_key=r.cart_key, contact_key=r.contact_key, channel=r.channel, started_at=r.started_at,
                owner=r.owner, now=r.now, at=r.at,
            )
            for r in requests
        ]  # fmt: skip

    def finish_many(self, requests: Sequence[FinishRequest]) -> list[StoreError | None]:
        answers: list[StoreError | None] = []
        for r in requests:
            try:
                self.finish(r.key, r.outcome, now=r.now, error=r.error)
            except StoreError as exc:
                answers.append(exc)
            else:
                answers.append(None)
        return answers

    def ledger(self, states: Collection[LedgerState] | None = None) -> list[LedgerEntry]:
        check_states(states)
        with self._lock:
            self._enter(write=False)
            return [e for e in self._ledger.values() if states is None or e.state in states]

    def mark_unknown(self, owner: str | None = None) -> int:
        with self._lock:
            self._enter(write=True)
            count = 0
            for key, entry in self._ledger.items():
                if entry.state == "sending" and (owner is None or entry.owner == owner):
                    self._ledger[key] = msgspec.structs.replace(entry, state="unknown")
                    count += 1
            return count

    def resolve(self, key: str, outcome: Resolution) -> None:
        check_resolution(outcome)
        with self._lock:
            self._enter(write=True)
            entry = self._entry(key)
            if entry.state not in RESOLVABLE:
                self._failed += 1
                raise cannot_resolve(key, entry.state)
            if outcome == "retry":
                del self._ledger[key]
            else:
                self._ledger[key] = msgspec.structs.replace(entry, state="sent")

    def _entry(self, key: str) -> LedgerEntry:
        entry = self._ledger.get(key)
        if entry is None:
            self._failed += 1
            raise missing_entry(key)
        return entry

    # -- leases ---------------------------------------------------------------------------------------------

    def acquire_lease(self, name: str, owner: str, *, ttl: float, now: float) -> bool:
        return self.take_lease(name, owner, ttl=ttl, now=now) is not None

    def take_lease(self, name: str, owner: str, *, ttl: float, now: float) -> LeaseTaken | None:
        check_lease(name, owner, ttl)
        with self._lock:
            self._enter(write=True)
            held = self._leases.get(name)
            if held is not None and held[0] != owner and held[1] > now:
                return None
            self._leases[name] = (owner, now + ttl)
            return "renewed" if held is not None and held[0] == owner else "taken"

    def release_lease(self, name: str, owner: str) -> None:
        with self._lock:
            self._enter(write=True)
            held = self._leases.get(name)
            if held is not None and held[0] == owner:
                del self._leases[name]

    def lease_holder(self, name: str, *, now: float) -> str | None:
        with self._lock:
            self._enter(write=False)
            held = self._leases.get(name)
            return held[0] if held is not None and held[1] > now else None

    # -- dead letters ---------------------------------------------------------------------------------------

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

    # -- data protection and retention ----------------------------------------------------------------------

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
            for key, entry in self._ledger.items():
                if entry.contact_key == contact_key:
                    self._ledger[key] = msgspec.structs.replace(entry, contact_key=hashed)
                    entries += 1
            codes = 0
            for code_hash, code in self._codes.items():
                if code.contact_key == contact_key:
                    self._codes[code_hash] = msgspec.structs.replace(code, contact_key=hashed)
                    codes += 1
            facts = _pseudonymise(self._assignments, contact_key, hashed)
            facts += _pseudonymise(self._conversions, contact_key, hashed)
            facts += _pseudonymise(self._outcomes, contact_key, hashed)
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
            entries = _drop(self._ledger, lambda e: e.state in PURGEABLE and e.claimed_at < ledger_before)
            purchases = _drop(self._cart_purchases, lambda at: at < purchases_before)
            purchases += _drop(self._contact_purchases, lambda at: at < purchases_before)
            letters = _drop(self._letters, lambda kept: kept[0].at < dead_letters_before)
            codes = 0 if codes_before is None else _drop(self._codes, lambda c: c.expires_at < codes_before)
            facts = 0
            if facts_before is not None:
                old = facts_before
                facts = _drop(self._assignments, lambda a: a.assigned_at < old)
                facts += _drop(self._conversions, lambda c: c.at < old)
                facts += _drop(self._outcomes, lambda o: o.at < old)
                facts += _drop(self._visits, lambda v: v.at < old)
            return PurgeReport(
                ledger_entries=entries, purchases=purchases, dead_letters=letters, codes=codes, facts=facts
            )

    # -- facts for analytics --------------------------------------------------------------------------------

    def record_facts(self, facts: Sequence[Fact]) -> int:
        for fact in facts:
            check_fact(fact)
        with self._lock:
            self._enter(write=True)
            new = 0
            for fact in facts:
                if isinstance(fact, Assignment):
                    new += _keep(self._assignments, (fact.cart_key, fact.flow), fact)
                elif isinstance(fact, Conversion):
                    new += _keep(self._conversions, (fact.cart_key, fact.at), fact)
                elif isinstance(fact, MessageOutcome):
                    new += _keep(self._outcomes, (fact.key, fact.outcome), fact)
                else:
                    new += _keep(self._visits, (fact.cart_key, fact.at), fact)
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

    # -- codes ----------------------------------------------------------------------------------------------

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

    # -- housekeeping ---------------------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Check the invariants the dicts rely on; empty when they hold (they should, always)."""
        with self._lock:
            self._enter(write=False)
            problems: list[str] = []
            seqs = list(self._journal)
            if seqs and seqs != list(range(seqs[0], self._last_seq + 1)):
                problems.append(f"journal seqs are not the run {seqs[0]}..{self._last_seq} without gaps")
            problems += [
                f"ledger entry {key!r} is filed under key {entry.key!r}"
                for key, entry in self._ledger.items()
                if entry.key != key
            ]
            return problems

    def statistics(self) -> StoreStatistics:
        with self._lock:
            done = self._operations - self._failed
            return StoreStatistics(
                operations=self._operations, failed=self._failed, commits=done, largest_group=min(done, 1)
            )

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _keep(table: dict[K, V], key: K, value: V) -> int:
    """Insert ``value`` unless ``key`` is taken (the first fact of a key is kept); 1 when inserted."""
    if key in table:
        return 0
    table[key] = value
    return 1


def _pseudonymise(table: dict[K, P], contact_key: str, hashed: str) -> int:
    changed = [key for key, fact in table.items() if fact.contact_key == contact_key]
    for key in changed:
        table[key] = msgspec.structs.replace(table[key], contact_key=hashed)
    return len(changed)


def _drop(table: dict[K, V], old: Callable[[V], bool]) -> int:
    """Delete the entries of ``table`` whose value is ``old``; return how many. The rest keep their order."""
    keys = [key for key, value in table.items() if old(value)]
    for key in keys:
        del table[key]
    return len(keys)
