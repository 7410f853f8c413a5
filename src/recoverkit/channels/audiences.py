"""Ad audiences: what the Google Ads and Meta adapters share (membership file, batching, withdrawal).

An audience channel adds each abandoner its messages reach to a platform's custom audience (hashed email and
phone; see :mod:`recoverkit.channels._hashing`), so the shop's ads can follow them, and removes them again when
they buy, withdraw the consent the channel requires (``"ads"`` by default) or are forgotten
(:class:`~recoverkit.channels.Withdrawing`). First-party data only: the shop's own customers, with their consent.

Who was added
-------------
A removal must name the same hashes the addition uploaded, and the engine keeps no address after a message is
sent, so the adapter keeps its own record: an :class:`AudienceMembers` file holding, per audience and contact
key, the *hashes* it uploaded (never an address), written only after the platform accepted them. A removal is
marked pending in the file before it is sent and deleted once the platform accepted it, so a removal that
failed (the platform down, the engine stopped) is sent again with the next request the adapter makes, also
after a restart, and hashes stay only as long as a pending removal needs them. The file is created 0600.

How long
--------
A member stays at most ``max_age`` seconds (default 30 days; ``None``: until a withdrawal), counted on the
engine's clock from the message that added them: after that the adapter removes them with its next withdrawal
(dispatch makes one for every purchase) or :meth:`AudienceChannel.sweep`. A
cart abandoned a month ago is no longer worth an ad, the platform should not keep the shopper's hashes for
longer than the purpose needs, and it bounds the one gap in removals: a withdrawal dispatch handed over just
before a crash, and that the adapter had not yet marked pending, is not called again after the restart.

Batching
--------
Sends that arrive together go out as one request: the first waits up to ``linger`` seconds (default 0.5) for
others, up to ``batch_size`` members, then uploads them all; every send in the batch returns (or raises) with
that request's answer, so "send returned" still means "the platform accepted it". How many sends can be in
flight at once, and so how full a batch can get, is the channel policy's ``concurrency`` (500 for the built-in
``google_ads`` and ``meta_ads`` channels).
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import anyio
import msgspec

from .._files import open_private
from .._log import get_logger
from ..errors import ConfigError, DeliveryError, PermanentDeliveryError, TransientDeliveryError
from ._withdrawal import Withdrawal
from .base import Message, Recipient

__all__ = ["AudienceChannel", "AudienceMembers", "Identifiers", "MemoryAudience"]

log = get_logger("recoverkit.channels.audiences")

#: One member's hashed identifiers, by kind (``"email"``, ``"phone"``): what the platform matches on.
Identifiers = dict[str, str]
#: How long a member stays in an audience by default: 30 days (see "How long" above).
MAX_AGE = 30 * 86_400.0
Operation = Literal["add", "remove"]

_identifiers_encoder = msgspec.json.Encoder()
_identifiers_decoder = msgspec.json.Decoder(dict[str, str])

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audience_members (
    audience TEXT NOT NULL,
    contact_key TEXT NOT NULL,
    identifiers TEXT NOT NULL,      -- JSON {kind: sha256 hex}: hashes only, never an address
    removing INTEGER NOT NULL,      -- 1: a removal is pending (sent again with the next request)
    added_at REAL NOT NULL,         -- the engine's clock: the due time of the message that added them
    PRIMARY KEY (audience, contact_key)
)
"""


class AudienceMembers:
    """Who each audience holds, as the hashes uploaded for them: a SQLite file (created 0600) or ``":memory:"``.

    One file may serve several adapters (each names its audience). ``":memory:"`` forgets everything when the
    process ends, after which a purchase can no longer remove those it added: use a file in production. Safe to
    share between threads; the writes are single small rows.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if not isinstance(path, (str, os.PathLike)) or str(path) == "":
            raise ConfigError(f"AudienceMembers path must be a file path or ':memory:', got {path!r}")
        self.path = str(path)
        if self.path != ":memory:":
            try:
                os.close(open_private(Path(self.path), os.O_RDWR))
            except OSError as exc:
                raise ConfigError(f"AudienceMembers cannot open {self.path!r}: {exc.strerror}; expected a writable "
                                  "file path (created 0600) or ':memory:'") from exc
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute(_SCHEMA)

    def __repr__(self) -> str:
        return f"AudienceMembers({self.path!r})"

    def get(self, audience: str, contact_key: str) -> Identifiers | None:
        """The hashes uploaded for ``contact_key`` (pending removal or not), or ``None``."""
        with self._lock:
            row = self._db.execute(
                "SELECT identifiers FROM audience_members WHERE audience = ? AND contact_key = ?",
                (audience, contact_key),
            ).fetchone()
        return None if row is None else _identifiers_decoder.decode(row[0])

    def added(self, audience: str, members: Sequence[tuple[str, Identifiers]], *, at: float) -> None:
        """Record that the platform accepted ``members`` (contact key, hashes) into ``audience`` at ``at``."""
        with self._lock:
            self._db.executemany(
                "INSERT INTO audience_members VALUES (?, ?, ?, 0, ?) ON CONFLICT (audience, contact_key) DO UPDATE "
                "SET identifiers = excluded.identifiers, removing = 0, added_at = excluded.added_at",
                [(audience, key, _identifiers_encoder.encode(ids).decode(), at) for key, ids in members],
            )

    def expire(self, audience: str, before: float) -> int:
        """Mark pending removal every member of ``audience`` added before ``before``; how many were marked."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE audience_members SET removing = 1 WHERE audience = ? AND removing = 0 AND added_at < ?",
                (audience, before),
            )
        return cursor.rowcount

    def mark_removing(self, audience: str, contact_key: str) -> bool:
        """Mark ``contact_key`` pending removal; whether it is a member (pending or not)."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE audience_members SET removing = 1 WHERE audience = ? AND contact_key = ?",
                (audience, contact_key),
            )
        return cursor.rowcount > 0

    def removing(self, audience: str, limit: int) -> list[tuple[str, Identifiers]]:
        """Up to ``limit`` members of ``audience`` pending removal, oldest mark first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT contact_key, identifiers FROM audience_members WHERE audience = ? AND removing = 1 "
                "ORDER BY rowid LIMIT ?",
                (audience, limit),
            ).fetchall()
        return [(key, _identifiers_decoder.decode(ids)) for key, ids in rows]

    def removed(self, audience: str, contact_keys: Sequence[str]) -> None:
        """Forget ``contact_keys`` in ``audience``: the platform accepted their removal."""
        with self._lock:
            self._db.executemany(
                "DELETE FROM audience_members WHERE audience = ? AND contact_key = ? AND removing = 1",
                [(audience, key) for key in contact_keys],
            )

    def count(self, audience: str) -> tuple[int, int]:
        """Members of ``audience``: (in it, pending removal)."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) - COALESCE(SUM(removing), 0), COALESCE(SUM(removing), 0) FROM audience_members "
                "WHERE audience = ?",
                (audience,),
            ).fetchone()
        return int(row[0]), int(row[1])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Batch:
    def __init__(self) -> None:
        self.members: list[tuple[str, Identifiers]] = []
        self.full = anyio.Event()
        self.done = anyio.Event()
        self.error: BaseException | None = None
        self.closed = False


class AudienceChannel(ABC):
    """The base of an ad audience adapter; a platform implements :meth:`_identifiers` and :meth:`_upload`.

    ``send`` adds the recipient, ``withdraw`` removes them; see the module docstring for the membership file and
    batching. ``members`` is an :class:`AudienceMembers` or a path to one (``":memory:"`` for tests).
    """

    #: The name errors and logs use (``"GoogleAdsAudience"``).
    owner = "AudienceChannel"

    def __init__(
        self,
        audience: str,
        *,
        members: AudienceMembers | str | os.PathLike[str],
        batch_size: int,
        linger: float,
        max_age: float | None = MAX_AGE,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"{self.owner} batch_size must be a positive int, got {batch_size!r}")
        if isinstance(linger, bool) or not isinstance(linger, (int, float)) or not 0 <= linger <= 60:
            raise ConfigError(f"{self.owner} linger must be a number of seconds from 0 to 60, got {linger!r}")
        if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, (int, float))
                                    or not 0 < max_age < math.inf):
            raise ConfigError(f"{self.owner} max_age must be a positive number of seconds or None, got {max_age!r}")
        self._max_age = None if max_age is None else float(max_age)
        #: The latest time on the engine's clock seen (messages' due times, withdrawals' times).
        self._now = -math.inf
        #: After a failed sweep of pending removals, the next is not tried before this time (engine clock).
        self._sweep_after = -math.inf
        self._sweeping = False
        self._audience = audience
        self._members = members if isinstance(members, AudienceMembers) else AudienceMembers(members)
        self._owns_members = not isinstance(members, AudienceMembers)
        self._batch_size = batch_size
        self._linger = float(linger)
        self._open: dict[Operation, _Batch | None] = {"add": None, "remove": None}
        #: Contacts whose addition is in flight, and those of them withdrawn meanwhile (removed once it lands).
        self._adding: dict[str, int] = {}
        self._withdrawn_while_adding: set[str] = set()
        self._closed = False

    @property
    def members(self) -> AudienceMembers:
        """The membership file this adapter keeps whom it added in."""
        return self._members

    @property
    def membership_key(self) -> str:
        """The name its members are kept under in the file (``"meta:<audience id>"``, ``"google:<id>:<list>"``)."""
        return self._audience

    @abstractmethod
    def _identifiers(self, recipient: Recipient) -> Identifiers:
        """The recipient's hashed identifiers as this platform wants them; ``ValueError`` when none is usable."""

    @abstractmethod
    async def _upload(self, operation: Operation, members: list[Identifiers], what: str) -> None:
        """Add or remove ``members`` in one request (or a platform's few); raise a ``DeliveryError`` when not."""

    async def send(self, message: Message) -> None:
        """Add the recipient to the audience; return once the platform accepted (the batch they went in)."""
        self._check_open(f"message {message.key!r}")
        try:
            identifiers = self._identifiers(message.recipient)
        except ValueError as exc:
            raise PermanentDeliveryError(f"{self.owner}: message {message.key!r} not sent: {exc}") from exc
        contact = message.recipient.contact_key
        self._adding[contact] = self._adding.get(contact, 0) + 1
        added = False
        try:
            await self._submit("add", contact, identifiers, f"message {message.key!r}")
            self._members.added(self._audience, [(contact, identifiers)], at=message.due_at)
            added = True
        finally:
            self._adding[contact] -= 1
            withdrawn = False
            if not self._adding[contact]:
                del self._adding[contact]
                withdrawn = contact in self._withdrawn_while_adding
                self._withdrawn_while_adding.discard(contact)
        if added and withdrawn:
            # A purchase or withdrawal came while this addition was on its way: take it back at once.
            await self._remove(contact, "a withdrawal that came during the addition")
        self._now = max(self._now, message.due_at)

    async def sweep(self, now: float | None = None) -> int:
        """Send the removals that are pending (failed before, or members past ``max_age``); how many were sent.

        Called after every withdrawal (dispatch makes one for every purchase, so a live shop calls it often);
        call it yourself (say daily) when purchases may stop for long. A failure is logged (never raised: the
        withdrawal that triggered it succeeded) and tried again a minute later at the earliest, on the engine's
        clock. ``now`` (seconds since the epoch, say ``engine.clock.now()``) moves that clock on when the
        channel has seen nothing recent.
        """
        if now is not None:
            self._now = max(self._now, now)
        if self._closed or self._sweeping or self._now < self._sweep_after:
            return 0
        self._sweeping = True
        try:
            if self._max_age is not None:
                self._members.expire(self._audience, self._now - self._max_age)
            pending = self._members.removing(self._audience, self._batch_size)
            if not pending:
                return 0
            await self._upload("remove", [ids for _, ids in pending], f"{len(pending)} pending removal(s)")
            self._members.removed(self._audience, [key for key, _ in pending])
            return len(pending)
        except DeliveryError as exc:
            self._sweep_after = self._now + 60.0
            log.warning("audience_removals_pending", audience_channel=self.owner, error=str(exc))
            return 0
        finally:
            self._sweeping = False

    async def withdraw(self, withdrawal: Withdrawal) -> None:
        """Remove ``withdrawal.contact_key`` from the audience if the adapter added them; see the module docs."""
        self._check_open(f"withdrawal ({withdrawal.why})")
        self._now = max(self._now, withdrawal.at)
        contact = withdrawal.contact_key
        if contact in self._adding:
            self._withdrawn_while_adding.add(contact)
        await self._remove(contact, f"withdrawal ({withdrawal.why})")
        await self.sweep()

    async def _remove(self, contact: str, what: str) -> None:
        if not self._members.mark_removing(self._audience, contact):
            return
        identifiers = self._members.get(self._audience, contact)
        if identifiers is not None:
            await self._submit("remove", contact, identifiers, what)

    async def _submit(self, operation: Operation, contact: str, identifiers: Identifiers, what: str) -> None:
        batch = self._open[operation]
        leader = batch is None or batch.closed
        if batch is None or batch.closed:
            batch = self._open[operation] = _Batch()
        batch.members.append((contact, identifiers))
        if len(batch.members) >= self._batch_size:
            batch.closed = True  # the next send starts a batch of its own
            self._open[operation] = None
            batch.full.set()
        if not leader:
            await batch.done.wait()
            if batch.error is not None:
                raise _again(batch.error, what)
            return
        await self._lead(operation, batch, what)

    async def _lead(self, operation: Operation, batch: _Batch, what: str) -> None:
        """Wait for the batch to fill (or ``linger`` to pass), send it, and tell the rest of it how it went."""
        try:
            with anyio.move_on_after(self._linger):
                await batch.full.wait()
        finally:
            batch.closed = True
            if self._open[operation] is batch:
                self._open[operation] = None
        members = batch.members
        if operation == "remove":
            # Removals that failed before (kept pending in the file) go again with this one.
            seen = {key for key, _ in members}
            members += [m for m in self._members.removing(self._audience, self._batch_size) if m[0] not in seen]
        try:
            await self._upload(operation, [ids for _, ids in members], what)
        except BaseException as exc:
            batch.error = exc
            raise
        finally:
            batch.done.set()
        if operation == "remove":
            self._members.removed(self._audience, [key for key, _ in members])
        log.debug("audience_batch", audience_channel=self.owner, operation=operation, members=len(members))

    def statistics(self) -> dict[str, int]:
        """Members this adapter keeps for its audience, and those whose removal is pending."""
        members, removing = self._members.count(self._audience)
        return {"members": members, "removing": removing}

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise PermanentDeliveryError(f"{self.owner} is closed; {what} not done")

    async def _close_members(self) -> None:
        if not self._closed and self._owns_members:
            self._members.close()
        self._closed = True


class MemoryAudience(AudienceChannel):
    """The test double: an audience kept in memory, for a shop's own tests of flows with an audience channel.

    ``audience`` holds the members as their hashed identifiers (email trimmed and lower-cased, phone in E.164,
    SHA-256), ``requests`` counts the uploads. It batches, records whom it added and takes withdrawals exactly as
    the platform adapters do; ``fail_next(n, exc)`` makes the next ``n`` uploads raise ``exc`` (default a
    :class:`~recoverkit.errors.TransientDeliveryError`).
    """

    owner = "MemoryAudience"

    def __init__(
        self,
        *,
        members: AudienceMembers | str | os.PathLike[str] = ":memory:",
        batch_size: int = 1000,
        linger: float = 0.0,
        max_age: float | None = MAX_AGE,
    ) -> None:
        super().__init__("memory", members=members, batch_size=batch_size, linger=linger, max_age=max_age)
        self.audience: set[tuple[tuple[str, str], ...]] = set()
        self.requests = 0
        self._failures: list[BaseException] = []

    def fail_next(self, n: int = 1, exc: BaseException | None = None) -> None:
        """Make the next ``n`` uploads raise ``exc``."""
        self._failures += [exc or TransientDeliveryError("MemoryAudience: a failure the test asked for")] * n

    def _identifiers(self, recipient: Recipient) -> Identifiers:
        from ._hashing import e164, normalise_email, sha256_hex

        identifiers: Identifiers = {}
        if recipient.email:
            identifiers["email"] = sha256_hex(normalise_email(recipient.email))
        if recipient.phone:
            identifiers["phone"] = sha256_hex(e164(recipient.phone))
        if not identifiers:
            raise ValueError("the recipient has no email or phone to match on")
        return identifiers

    async def _upload(self, operation: Operation, members: list[Identifiers], what: str) -> None:
        self.requests += 1
        if self._failures:
            raise self._failures.pop(0)
        for member in members:
            entry = tuple(sorted(member.items()))
            (self.audience.add if operation == "add" else self.audience.discard)(entry)

    async def aclose(self) -> None:
        """Close the membership file if it was given as a path. Idempotent; later sends raise."""
        await self._close_members()


def _again(error: BaseException, what: str) -> DeliveryError:
    """The batch's failure as this send's own error (one exception object must not be raised in two tasks)."""
    if isinstance(error, PermanentDeliveryError):
        return PermanentDeliveryError(f"{error} (batch with {what})")
    retry_after = error.retry_after if isinstance(error, TransientDeliveryError) else None
    described = str(error) if isinstance(error, DeliveryError) else f"{type(error).__name__} in the batch's request"
    return TransientDeliveryError(f"{described} (batch with {what})", retry_after=retry_after)
