"""The console's actions: resend a dead letter, resolve an unknown outcome, forget or export a customer.

Each one checks the permission it names (:class:`~recoverkit.console.PermissionDenied`, which the adapters answer
with 403) and is appended to the store's audit log (:mod:`recoverkit.audit`) with the operator as actor
(``console:<name>``), the customer (kept as the store's keyed hash) or message key as subject, and the outcome:
``ok``, ``failed`` (with the error's type or the store's reason, never an address, a code or a token) or
``refused`` (the operator lacks the permission). A store without an audit log refuses every action before it is
carried out: an action that cannot be recorded is not carried out.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from .._log import get_logger
from .._redact import redact
from ..audit import AuditStore, record_action
from ..errors import StoreError
from ._lists import dead_letter_messages
from ._masking import mask_fields, mask_text
from ._permissions import EXPORT, FORGET, RESEND, RESOLVE, VIEW_PERSONAL_DATA, Operator, PermissionDenied

if TYPE_CHECKING:
    from ..privacy import Erasure
    from ._access import EngineAccess

__all__ = ["RESEND_LEASE_TTL", "ActionResult", "export", "forget", "resend", "resolve"]

#: How long a resend holds its lease (seconds, wall clock): a second click, or another process, meanwhile is
#: told a resend is under way. Released as soon as the letter is marked re-sent; kept (until it expires) when a
#: send went out but could not be marked, so that nobody sends it again in the meantime.
RESEND_LEASE_TTL: Final = 3600.0

_log = get_logger("recoverkit.console")

Subject = Literal["customer", "message"]


class ActionResult(msgspec.Struct, frozen=True, kw_only=True):
    """How an action ended: ``ok``, a sentence for the operator, and detail lines (a forget's counts)."""

    ok: bool
    text: str
    lines: list[str] = []


class _Audit:
    """Records one action of one operator on one subject, in the engine's store, on the engine's clock."""

    def __init__(self, access: EngineAccess, operator: Operator, action: str, kind: Subject, subject: str) -> None:
        if not isinstance(access.store, AuditStore):
            raise TypeError(
                f"the console needs a store with an audit log (SQLiteStore, PostgresStore, MemoryStore), got "
                f"{type(access.store).__name__}; its actions are not carried out unrecorded"
            )
        self.access, self.operator, self.action, self.kind, self.subject = access, operator, action, kind, subject

    def __call__(self, outcome: Literal["ok", "failed", "refused"], detail: str = "") -> None:
        subject: dict[str, Any] = {self.kind: self.subject}
        record_action(
            self.access.store, actor=self.operator.actor, action=self.action, at=self.access.clock.now(),
            outcome=outcome, detail=redact(mask_text(detail))[:400], **subject,
        )  # fmt: skip

    def require(self, permission: str) -> None:
        """The permission, or a ``refused`` record and :class:`PermissionDenied`."""
        try:
            self.operator.require(permission)
        except PermissionDenied:
            self("refused", f"missing permission {permission}")
            raise


def _check_id(what: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        raise ValueError(f"{what}: expected a non-empty identifier of at most 500 characters, got {value[:40]!r}")
    return value.strip()


def resend(access: EngineAccess, operator: Operator, key: str) -> ActionResult:
    """Send the dead letter ``key`` again through the engine's channel of its name, exactly once.

    A lease on the key (``console.resend:<key>``, in the store every process shares) lets one resend run at a
    time, and the letter is sent only while the store still lists it; once sent it is marked re-sent (in the
    store, and in the engine's own list and file) and leaves the list, so a second click, from any process, sends
    nothing. A contact suppressed since (forgotten, unsubscribed) is not written to. The message goes out as it
    was dead-lettered: without its discount code and restore link, which letters never keep.
    """
    key = _check_id("resend", key)
    audit = _Audit(access, operator, "resend", "message", key)
    audit.require(RESEND)
    store = access.store
    lease, holder = f"console.resend:{key}", f"{operator.actor}:{secrets.token_hex(4)}"
    # Leases are on the wall clock, as every lease of the store is (LeaseStore), never the engine's event time.
    if not store.acquire_lease(lease, holder, ttl=RESEND_LEASE_TTL, now=time.time()):
        audit("failed", "a resend of this letter is under way")
        return ActionResult(ok=False, text=f"{key}: a resend of this letter is already under way; nothing was sent")
    release = True
    try:
        found = next((m for m, row in dead_letter_messages(access) if row.key == key), None)
        if found is None:
            audit("failed", "not a dead letter waiting for a resend")
            return ActionResult(
                ok=False, text=f"{key}: no dead letter waits for a resend (already re-sent?); nothing was sent"
            )
        refusal = _cannot_send(access, found)
        if refusal is not None:
            audit("failed", refusal)
            return ActionResult(ok=False, text=f"{key}: {refusal}; nothing was sent")
        try:
            access.send(access.channels[found.channel], found)
        except Exception as exc:
            audit("failed", type(exc).__name__)
            return ActionResult(ok=False, text=f"{key}: still failing ({type(exc).__name__}); it stays a dead letter")
        release = _mark_resent(access, key)
        audit("ok", "" if release else "sent; not yet marked re-sent (the store failed)")
        return ActionResult(ok=True, text=f"{key}: re-sent")
    finally:
        if release:
            store.release_lease(lease, holder)


def _cannot_send(access: EngineAccess, message: Any) -> str | None:
    if message.channel not in access.channels:
        return f"the engine has no channel {message.channel!r} configured"
    if access.store.is_suppressed(message.recipient.contact_key):
        return "the contact is suppressed (forgotten or unsubscribed)"
    return None


def _mark_resent(access: EngineAccess, key: str) -> bool:
    """Mark ``key`` re-sent in the store and the engine; ``False`` when the store could not (logged)."""
    try:
        access.store.mark_resent(key)
    except StoreError as exc:
        _log.error("console_resend_not_marked", key=key, error=type(exc).__name__)
        return False
    try:
        access.mark_resent_in_engine(key)
    except Exception as exc:  # the store, which every process reads, says it went: that is what counts
        _log.error("console_resend_not_marked_in_engine", key=key, error=type(exc).__name__)
    return True


def resolve(access: EngineAccess, operator: Operator, key: str, as_: str) -> ActionResult:
    """Settle the ``unknown`` or ``failed`` ledger entry ``key``: ``as_="sent"`` records it as sent, ``"retry"``
    deletes it so the key can be claimed again."""
    key = _check_id("resolve", key)
    if as_ not in ("sent", "retry"):
        raise ValueError(f"resolve: expected `as` to be 'sent' or 'retry', got {as_[:20]!r}")
    audit = _Audit(access, operator, "resolve", "message", key)
    audit.require(RESOLVE)
    try:
        access.store.resolve(key, "sent" if as_ == "sent" else "retry")
    except StoreError as exc:
        audit("failed", f"as {as_}: {exc}")
        return ActionResult(ok=False, text=f"{key}: not resolved: {mask_text(redact(str(exc)))}")
    audit("ok", f"as {as_}")
    done = "recorded as sent" if as_ == "sent" else "deleted; the key can be claimed again"
    return ActionResult(ok=True, text=f"{key}: {done}")


def forget(access: EngineAccess, operator: Operator, customer_id: str) -> ActionResult:
    """Erase everything held about ``customer_id`` (:func:`recoverkit.privacy.erase`) and say what went where.

    ``ok`` when the erasure was complete here, or journaled for the process running the pipeline (which carries
    it out within a tick or two); ``failed`` when something was left or an error stopped it.
    """
    customer_id = _check_id("forget", customer_id)
    audit = _Audit(access, operator, "forget", "customer", customer_id)
    audit.require(FORGET)
    try:
        erasure = access.erase(customer_id)
    except Exception as exc:
        audit("failed", type(exc).__name__)
        _log.error("console_forget_failed", error=type(exc).__name__)
        return ActionResult(ok=False, text=f"the customer was not forgotten ({type(exc).__name__}); see the log")
    lines = _erasure_lines(erasure)
    if not erasure.carried_out:
        audit("ok", "journaled: the process holding the pipeline lease erases")
        return ActionResult(ok=True, text="forget requested: the process running the pipeline erases the customer "
                            "within seconds", lines=lines)  # fmt: skip
    if erasure.left:
        audit("failed", "incomplete: something was left")
        return ActionResult(ok=False, text="the customer was forgotten, but something was left", lines=lines)
    audit("ok")
    return ActionResult(ok=True, text="the customer was forgotten", lines=lines)


def _erasure_lines(erasure: Erasure) -> list[str]:
    if not erasure.carried_out:
        return []
    return [
        f"carts (with their events in the journal): {erasure.carts}",
        f"contact details and consent: {erasure.contact_details}",
        f"pending messages: {erasure.pending_messages}",
        f"dead letters: {erasure.store_dead_letters}",
        f"purchase records: {erasure.purchases}",
        f"kept under a keyed hash, never the customer's keys: ledger entries {erasure.ledger_entries}, "
        f"codes {erasure.codes}, facts {erasure.facts}",
        *(f"LEFT: {what}" for what in erasure.left),
    ]


def export(access: EngineAccess, operator: Operator, customer_id: str) -> bytes:
    """Everything held about ``customer_id`` (:meth:`recoverkit.Engine.export`) as a JSON document, with personal
    data masked unless the operator also holds :data:`~recoverkit.console.VIEW_PERSONAL_DATA`."""
    customer_id = _check_id("export", customer_id)
    audit = _Audit(access, operator, "export", "customer", customer_id)
    audit.require(EXPORT)
    try:
        data = access.export(customer_id)
    except Exception as exc:
        audit("failed", type(exc).__name__)
        raise
    masked = not operator.can(VIEW_PERSONAL_DATA)
    audit("ok", "personal data masked" if masked else "")
    return msgspec.json.format(msgspec.json.encode(mask_fields(data) if masked else data))
