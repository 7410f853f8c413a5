"""Delivery: one attempt at a due message, from the ledger's claim to the recorded outcome.

Each attempt, in its own task and under its channel's concurrency limit: claim the key in the store's ledger
(claims of messages falling due together go in one round trip), ask the host's guard, prepare the offer and the
restore link, send through the channel's adapter (contained: timeout, own task or thread), then record the
outcome in the ledger. A failed send is retried with backoff or dead-lettered; a send given up on while still
running is ``unknown`` and never retried; a claim refused because this process lost the pipeline lease is held,
neither sent nor dropped, until the engine resumes it. The guarantees are stated in :mod:`recoverkit.dispatch`.
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeAlias, TypeVar

import anyio
import anyio.abc
import msgspec

from .._contain import Containment, Failed, Plugin, PluginError, describe
from .._log import Logger
from .._pipeline import LatencyHistogram
from .._redact import credentials_of, redact
from .._store_runner import StoreCall
from ..channels.base import Channel
from ..clock import Clock
from ..config import ChannelPolicy
from ..deadletters import DeadLetter, DeadLetters
from ..errors import DeliveryError, PermanentDeliveryError, StoreError, TransientDeliveryError
from ..items import Message
from ..store.base import Claim, ClaimRequest, FinishRequest, Outcome, Store
from ._facts import FactWriter, outcome_of
from ._schedule import Schedule

__all__ = ["Delivery", "Guard", "StoreCall"]

Req = TypeVar("Req")
Ans = TypeVar("Ans")

#: A host's last word before a send: ``False`` vetoes it. May be a plain or an async function.
Guard: TypeAlias = Callable[[Message], "bool | Awaitable[bool]"]

#: The longest wait a provider's Retry-After can impose on a retry (a day).
_MAX_RETRY_AFTER = 86_400.0
#: What each refused claim counts as.
_REFUSED = {
    "duplicate": "duplicate_key",
    "purchased": "cancelled_purchase",
    "suppressed": "suppressed",
    "capped": "capped",  # a cap the ledger enforces across partitions (ClaimRequest.caps): skipped for good
}


class Delivery:
    """Delivers due messages; see the module docstring. Built once by the stage, which hands it what falls due
    (:meth:`enqueue`) and its task group (:attr:`task_group`), and is told through callbacks:

    ``prepare(message, at)``: the message as it goes out (offer, link); ``sent()``: one more message sent;
    ``settled()``: an attempt is over (facts to write, slots free, flush() barriers to check);
    ``retry_due(due)``: a retry was scheduled for ``due``; ``claim_refused()``: a claim was refused as not owner.
    """

    def __init__(
        self,
        *,
        channels: Mapping[str, Channel],
        policies: Mapping[str, ChannelPolicy],
        clock: Clock,
        seed: int | str,
        max_in_flight: int,
        schedule: Schedule,
        facts: FactWriter,
        store: Store,
        call: StoreCall,
        owner: str,
        guard: Guard | None,
        contain: Containment,
        dead_letters: DeadLetters,
        outcomes: Counter[str],
        log: Logger,
        lateness: LatencyHistogram,
        prepare: Callable[[Message, float], Awaitable[Message]],
        sent: Callable[[], None],
        settled: Callable[[], None],
        retry_due: Callable[[float], None],
        claim_refused: Callable[[], None],
    ) -> None:
        self._channels = channels
        self._policies = policies
        self._clock = clock
        self._event_time = clock.event_time
        self._seed = seed
        self._max_in_flight = max_in_flight
        self._schedule = schedule
        self._facts = facts
        self._store = store
        self._call = call
        self._claims: _Batcher[ClaimRequest, Claim] = _Batcher(lambda r: call(store.claim_many, r))
        self._finishes: _Batcher[FinishRequest, StoreError | None] = _Batcher(lambda r: call(store.finish_many, r))
        self._owner = owner
        self._guard = guard
        self._guard_plugin = Plugin("guard", repr(describe(guard)))
        self._contain = contain
        self._adapter_plugins = {
            name: Plugin("channel", f"{name!r} adapter ({type(adapter).__name__})")
            for name, adapter in channels.items()
        }
        self._limiters = {name: anyio.CapacityLimiter(p.concurrency) for name, p in policies.items()}
        self.dead_letters = dead_letters
        self._outcomes = outcomes
        self._log = log
        self._lateness = lateness
        self._prepare = prepare
        self._sent = sent
        self._settled = settled
        self._retry_due = retry_due
        self._claim_refused = claim_refused
        #: Due messages waiting for a delivery slot: (message, failed attempts so far).
        self.ready: deque[tuple[Message, int]] = deque()
        # When each due attempt happens on the engine's clock (see Schedule.moment): in event time its due time.
        self._attempt_at: dict[str, float] = {}
        self._flight: dict[str, tuple[Message, int]] = {}  # key -> (message, attempt) handed to a delivery task
        # Claims refused as "not_owner": held, never dropped, until the engine has checked its lease (resume them)
        # or restored from the checkpoint (which replaces them). Keys whose ledger entry a retry already reopened.
        self.refused: list[tuple[Message, int]] = []
        self._reopened: set[str] = set()
        #: Tasks under way that flush() waits for: deliveries, and the stage's erasures.
        self.in_flight = 0
        #: False: hold due messages instead of delivering them (maintenance runs such as ``recoverkit forget``).
        self.delivering = True
        self.task_group: anyio.abc.TaskGroup | None = None

    # -- the queue --------------------------------------------------------------------------------------------------

    def enqueue(self, message: Message, attempt: int, at: float) -> None:
        """``message`` is due at ``at`` (on the engine's clock, see Schedule.moment): deliver it when a slot frees."""
        self._attempt_at[message.key] = at
        self.ready.append((message, attempt))

    def start_ready(self) -> None:
        """Start delivering waiting messages, as many as ``max_in_flight`` allows."""
        tg = self.task_group
        if not self.delivering:
            return
        while self.ready and self.in_flight < self._max_in_flight and tg is not None:
            message, attempt = self.ready.popleft()
            self.in_flight += 1
            self._flight[message.key] = (message, attempt)
            tg.start_soon(self._deliver, message, attempt, name=f"recoverkit-deliver-{message.key}")

    def held(self) -> list[tuple[Message, int]]:
        """Messages taken off the schedule and not settled yet: waiting for a slot, being delivered, or held after a
        refused claim. A checkpoint keeps them (one whose claim was not made yet would otherwise be lost in a crash,
        and one already claimed is refused by the ledger after a restart)."""
        return [*self.ready, *self._flight.values(), *self.refused]

    def reset(self) -> None:
        """Forget what waits (a restore schedules it again); deliveries under way finish on their own."""
        self.ready.clear()
        self._attempt_at = {}
        self.refused, self._reopened = [], set()

    def forget(self, contact_keys: set[str], cart_keys: set[str]) -> int:
        """Drop the waiting messages of these contacts and carts (they hold the address, and every checkpoint would
        keep it); return how many."""
        waiting = [
            (m, a)
            for m, a in self.ready
            if m.recipient.contact_key not in contact_keys and m.cart.cart_key not in cart_keys
        ]
        dropped = len(self.ready) - len(waiting)
        kept = {m.key for m, _ in waiting}
        for message, _ in self.ready:
            if message.key not in kept:
                self._attempt_at.pop(message.key, None)
                self._schedule.counts.end(message, "cancelled_forgotten")
        self.ready.clear()
        self.ready.extend(waiting)
        return dropped

    # -- one attempt ------------------------------------------------------------------------------------------------

    async def _deliver(self, message: Message, attempt: int) -> None:
        # When this attempt happens on the engine's clock: what the ledger, the outcome, the code and the link are
        # dated with (see Schedule.moment).
        at = self._attempt_at.pop(message.key, message.due_at)
        if not self._event_time:
            at = self._clock.now()
        try_ = _Attempt(message, attempt, at)
        await self._try(try_)
        try:
            await self._settle(try_)
        finally:
            # Only now: until the outcome is recorded, flush() must wait and a checkpoint must keep the message.
            self._flight.pop(message.key, None)
            self.in_flight -= 1
        # The outcome's fact goes to the store now, not with the next batch: flush() returns once it is written.
        self._settled()

    async def _try(self, a: _Attempt) -> None:
        """Claim, guard, prepare and send; what happened is left in ``a``. Never raises but to cancel."""
        try:
            async with self._limiters[a.message.channel]:
                # No early return from here: the bookkeeping after (start what is ready, release flush() barriers)
                # must run either way.
                if not self._event_time:
                    a.at = self._clock.now()  # live, the send starts once it has a slot
                if not self._event_time and self._schedule.bought(a.message):
                    a.skipped = "cancelled_purchase"  # a purchase arrived while the message waited for a slot
                else:
                    a.skipped = await self._claim(a.message, a.attempt, a.at)
                a.claimed = a.skipped is None
                if a.claimed and self._guard is not None:
                    a.skipped = await self._ask_guard(a.message)
                if a.skipped is None:
                    await self._send(a)
        except StoreError as exc:
            # The ledger could not be asked: nothing was handed to the adapter; try again later.
            a.error = f"StoreError: {exc}"
            self._log.error("ledger_unavailable", key=a.message.key, error=str(exc))
        except PluginError as exc:  # the guard, the coupons or the loyalty programme failed; already logged
            a.error = str(exc)
        except Exception as exc:  # a bug of ours while delivering: contained like a plug-in's, retried
            a.error = f"{type(exc).__name__}: {exc}"
            self._log.exception(
                "delivery_failed", channel=a.message.channel, key=a.message.key, error=type(exc).__name__
            )

    async def _send(self, a: _Attempt) -> None:
        """Prepare the message (from now on ``a.message`` is what went out) and hand it to its adapter."""
        message = a.message = await self._prepare(a.message, a.at)
        if not self._event_time:
            self._lateness.record(max(self._clock.now() - message.due_at, 0.0))
        sent = await self._contain.call(
            self._adapter_plugins[message.channel], self._channels[message.channel].send, message,
            timeout=self._policies[message.channel].timeout, ids={"key": message.key}, expected=(DeliveryError,),
        )  # fmt: skip
        if isinstance(sent, Failed):
            a.error, a.permanent, a.wait, a.unknown = _send_failed(sent)

    async def _settle(self, a: _Attempt) -> None:
        """Record how the attempt ended: held, skipped, unknown, sent, or failed (retried or dead-lettered)."""
        message, key, at = a.message, a.message.key, a.at
        if a.skipped == "not_owner":
            self._attempt_at[key] = at  # held: resumed later, as the attempt of this time
            self._hold_refused(message, a.attempt)
        elif a.skipped is not None:
            self._schedule.settle(key, a.skipped)
            if a.skipped == "duplicate_key":
                self._outcomes[a.skipped] += 1  # decided elsewhere: that decision is the one recorded
                self._schedule.counts.end(message, a.skipped)
            else:
                self._facts.ended(message, a.skipped, at)
            if a.claimed:  # vetoed after the claim: the key is settled, never to be sent
                await self._finish(key, "cancelled", a.skipped, at)
        elif a.unknown:
            # At most once: the send may still reach the provider, so it is neither retried nor dead-lettered.
            # The ledger says "unknown" until a person settles it (``recoverkit ledger --resolve``).
            self._schedule.settle(key, "unknown")
            self._outcomes["unknown"] += 1
            self._schedule.counts.end(message, "unknown")
            self._log.error("send_outcome_unknown", channel=message.channel, key=key)
            await self._finish(key, "unknown", (a.error or "")[:500], at)
        elif a.error is None:
            self._schedule.settle(key, "sent")
            self._facts.ended(message, "sent", at)
            self._sent()
            await self._finish(key, "sent", None, at)
        else:
            await self._failed(a)

    # -- the ledger -------------------------------------------------------------------------------------------------

    async def _claim(self, message: Message, attempt: int, at: float) -> str | None:
        """Claim ``message.key`` in the store's ledger; ``None`` when claimed, else the outcome to count."""
        if attempt > 0 and message.key not in self._reopened:
            # A retry: the failed attempt was recorded as "failed"; reopen the key, then claim it like the first
            # attempt, so a purchase recorded since still stops it.
            await self._call(self._store.resolve, message.key, "retry")
            self._reopened.add(message.key)  # until claimed: a refused claim is made again, without reopening
        answer = await self._claims(
            ClaimRequest(
                key=message.key,
                cart_key=message.cart.cart_key,
                contact_key=message.recipient.contact_key,
                channel=message.channel,
                started_at=message.cart.started_at,
                owner=self._owner,
                now=time.time(),  # the lease is on wall time, also in a replay
                at=at,  # what the ledger records: the engine's clock
            )
        )
        if answer != "not_owner":
            self._reopened.discard(message.key)
        if answer == "claimed":
            return None
        # "suppressed": forgotten, or unsubscribed: never written to again.
        return _REFUSED.get(answer, "not_owner")

    async def _ask_guard(self, message: Message) -> str | None:
        """``"vetoed"`` when the guard says no; raises :class:`PluginError` (naming the guard) when it fails.

        A plain guard runs in a worker thread: it is the shop's code, free to query its database synchronously
        (Django refuses synchronous queries on an event loop). An async guard is awaited as it is.
        """
        assert self._guard is not None
        verdict = await self._contain.call(
            self._guard_plugin, self._guard, message,
            timeout=self._policies[message.channel].timeout, ids={"key": message.key},
        )  # fmt: skip
        if isinstance(verdict, Failed):
            raise verdict.error()
        return None if verdict.value else "vetoed"

    async def _finish(self, key: str, outcome: Outcome, error: str | None, at: float) -> None:
        """Record the outcome of ``key``, dated the attempt's ``at`` in event time, now on the engine's clock live."""
        try:
            finished = FinishRequest(key=key, outcome=outcome, now=self._schedule.moment(at), error=error)
            refused = await self._finishes(finished)
            if refused is not None:
                raise refused
        except StoreError as exc:
            # The entry stays "sending": after a restart it becomes "unknown", and nothing is sent twice.
            self._log.error("ledger_finish_failed", key=key, outcome=outcome, error=str(exc))

    # -- failures ---------------------------------------------------------------------------------------------------

    async def _failed(self, a: _Attempt) -> None:
        """The attempt failed: retry it with backoff, or dead-letter it (permanent, or out of attempts)."""
        # A provider may quote the message back: its code and restore link must not reach the ledger or a letter.
        error = redact((a.error or "")[:2000], credentials_of(a.message))
        self._outcomes["failed_attempts"] += 1
        if not a.permanent and a.attempt + 1 < self._policies[a.message.channel].max_attempts:
            await self._retry(a, error)
        else:
            await self._dead_letter(a, error)

    async def _retry(self, a: _Attempt, error: str) -> None:
        message, key, attempt = a.message, a.message.key, a.attempt
        policy = self._policies[message.channel]
        # Exponential backoff with full jitter (AWS architecture blog): spreads retries of a burst.
        ceiling = min(policy.backoff_max, policy.backoff * 2**attempt)
        # Drawn for this key and attempt, not from one shared stream: concurrent sends fail in whatever order
        # their adapters answer, and a replay must retry at the same times however that order falls.
        delay = random.Random(f"{self._seed}/{key}/{attempt}").uniform(0, ceiling)
        if a.wait is not None and a.wait > delay:
            # The provider said when (Retry-After): sooner only earns another refusal and uses up an attempt.
            # Capped at a day, so that a wrong header cannot park a message beyond its recovery window.
            delay = min(a.wait, _MAX_RETRY_AFTER)
            self._outcomes["retry_after_honoured"] += 1
        if a.claimed:
            await self._finish(key, "failed", error[:500], a.at)
            self._schedule.attempts[key] = attempt + 1
        # else the claim itself failed (store unavailable): the next try is still a first claim
        self._schedule.ledger[key] = "retrying"
        # Backoff from the failure on the engine's clock (in event time, from the attempt's due time).
        due = self._schedule.moment(a.at) + delay
        self._schedule.add(message, due=due)
        self._retry_due(due)

    async def _dead_letter(self, a: _Attempt, error: str) -> None:
        message, key, attempts = a.message, a.message.key, a.attempt + 1
        self._schedule.attempts.pop(key, None)
        if a.claimed:
            await self._finish(key, "dead", error[:500], a.at)
        self._schedule.ledger[key] = "dead"
        self._outcomes["dead_lettered"] += 1
        self._schedule.counts.end(message, "dead")
        self._facts.add(outcome_of(message, "dead", a.at))
        self._log.warning("dead_lettered", channel=message.channel, key=key, attempts=attempts, permanent=a.permanent)
        message = _without_credentials(message)
        letter = DeadLetter(message=message, error=error[:500], attempts=attempts, at=a.at, permanent=a.permanent)
        self.dead_letters.add(letter)
        try:
            # Also in the store, filed under the contact, so that forget() can erase it with everything else.
            await self._call(
                self._store.add_dead_letter,
                key,
                msgspec.json.encode(message),
                error=letter.error,
                attempts=attempts,
                permanent=a.permanent,
                at=letter.at,
                contact_key=message.recipient.contact_key,
            )
        except StoreError as exc:
            self._log.error("dead_letter_not_stored", key=key, error=str(exc))

    # -- claims refused: the lease ----------------------------------------------------------------------------------

    def _hold_refused(self, message: Message, attempt: int) -> None:
        """The ledger refused the claim: this process does not hold the pipeline lease (it lapsed during a stall,
        or another process took it). The message is held, neither sent nor dropped: the engine checks the lease
        at once, then resumes held messages (:meth:`resume_refused`) or restores from the checkpoint, which
        holds them (they are in every snapshot) or re-derives them from the journal."""
        self.refused.append((message, attempt))
        self._outcomes["not_owner"] += 1
        self._log.warning("claim_refused_not_owner", channel=message.channel, key=message.key, held=len(self.refused))
        self._claim_refused()

    def resume_refused(self) -> int:
        """Deliver the messages held after a refused claim again; return how many."""
        held, self.refused = self.refused, []
        if held:
            self.ready.extendleft(reversed(held))
            self._log.info("refused_claims_resumed", count=len(held))
            self.start_ready()
        return len(held)


class _Attempt:
    """One attempt at a message, as it goes: when, and how it ended."""

    __slots__ = ("at", "attempt", "claimed", "error", "message", "permanent", "skipped", "unknown", "wait")

    def __init__(self, message: Message, attempt: int, at: float) -> None:
        #: The message; once prepared, as it went out (with its code and link).
        self.message = message
        self.attempt = attempt  # failed attempts before this one
        self.at = at  # when it happens on the engine's clock (see Schedule.moment)
        self.error: str | None = None
        self.permanent = False
        self.skipped: str | None = None  # why the message was not handed to the adapter
        self.claimed = False
        self.unknown = False  # the adapter was given up on while still running: the send may yet go out
        self.wait: float | None = None  # what the provider asked for (Retry-After)


def _send_failed(sent: Failed) -> tuple[str, bool, float | None, bool]:
    """What a failed send means: (error, permanent, provider's Retry-After, outcome unknown)."""
    cause = sent.cause
    if isinstance(cause, PermanentDeliveryError):
        return f"PermanentDeliveryError: {cause}", True, None, False
    if isinstance(cause, TransientDeliveryError):
        return f"TransientDeliveryError: {cause}", False, cause.retry_after, False
    if sent.kind == "timed_out":
        return f"TimeoutError: no answer within {sent.timeout}s", False, None, False
    if sent.kind == "abandoned":
        return sent.describe(), False, None, True
    if sent.kind == "raised" and cause is not None:
        return f"{type(cause).__name__}: {cause}", False, None, False
    return sent.describe(), False, None, False  # raised CancelledError of its own accord, or stuck


def _without_credentials(message: Message) -> Message:
    """The message as a dead letter keeps it: without its discount code or its cart-restore link.

    Both are bearer credentials (whoever reads them can redeem the code or open the cart), and a dead letter
    lives in a file and a table that are copied, backed up and read by people; the store keeps codes only as
    keyed hashes for the same reason. The offer's terms stay, so a re-sent letter still says what was offered.
    """
    offer = message.offer
    if offer is not None and offer.code is not None:
        message = msgspec.structs.replace(message, offer=msgspec.structs.replace(offer, code=None))
    if message.restore_url is not None:
        message = msgspec.structs.replace(message, restore_url=None)
    return message


class _Batcher(Generic[Req, Ans]):
    """Sends requests to a store method that takes many at once: one round trip for every request made while
    the previous round trip was under way, instead of one per request.

    Messages fall due together (a watermark moves past many), so claims and outcomes come in bursts; a store
    call costs a thread hop and a transaction whatever it carries. The first caller does the round trip and
    carries on while requests keep coming; each caller gets its own answer, or the exception of its batch.
    """

    def __init__(self, many: Callable[[list[Req]], Awaitable[list[Ans]]]) -> None:
        self._many = many
        self._queue: list[tuple[Req, _Slot[Ans]]] = []
        self._busy = False

    async def __call__(self, request: Req) -> Ans:
        slot: _Slot[Ans] = _Slot()
        self._queue.append((request, slot))
        if not self._busy:
            self._busy = True
            try:
                while self._queue:
                    batch, self._queue = self._queue, []
                    try:
                        answers = await self._many([r for r, _ in batch])
                    except BaseException as exc:
                        for _, waiting in batch:
                            waiting.fail(exc if isinstance(exc, Exception) else StoreError("the engine stopped"))
                        raise
                    for (_, waiting), answer in zip(batch, answers, strict=True):
                        waiting.set(answer)
            finally:
                self._busy = False
                for _, waiting in self._queue:  # only left when the round trip failed or was cancelled
                    waiting.fail(StoreError("the ledger could not be reached"))
                self._queue = []
        return await slot.get()


class _Slot(Generic[Ans]):
    __slots__ = ("_done", "_error", "_value")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self._value: Ans | None = None
        self._error: Exception | None = None

    def set(self, value: Ans) -> None:
        self._value = value
        self._done.set()

    def fail(self, error: Exception) -> None:
        self._error = error
        self._done.set()

    async def get(self) -> Ans:
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]
