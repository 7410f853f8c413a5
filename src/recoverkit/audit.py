"""The audit trail: record who did what, to which customer, cart or message, when, and how it ended.

The front the CLI calls for every operator action and a console calls for its own (docs/audit.md)::

    from recoverkit.audit import record_action

    record_action(store, actor="console:42", action="resend", message="c1/recover/0", at=engine.clock.now())

The records go to the store's audit log (:class:`AuditStore`: :class:`~recoverkit.store.SQLiteStore`,
:class:`~recoverkit.store.postgres.PostgresStore`, and a ``MemoryStore`` composed with its audit part), which is
append-only and hash-chained: ``recoverkit db check`` shows a record changed, deleted or moved, and
``recoverkit audit`` lists and exports it. A customer is kept as the store's keyed hash of its id, never the id;
``detail`` must hold no personal data (credentials are taken out of it in any case).

Times come from the caller's clock: the engine's (``engine.clock.now()``) in a process that runs one, the wall
clock in the CLI. Nothing here reads a clock.
"""

from __future__ import annotations

import getpass
import hashlib
import os
from typing import TYPE_CHECKING, Final

import msgspec

from .store._audit import (
    GENESIS,
    AuditAnchor,
    AuditEntry,
    AuditOutcome,
    AuditRecord,
    AuditStore,
    SubjectKind,
    chain_problems,
)

if TYPE_CHECKING:
    from .config import Config

__all__ = [
    "CONFIG_CHANGED",
    "GENESIS",
    "AuditAnchor",
    "AuditEntry",
    "AuditOutcome",
    "AuditRecord",
    "AuditStore",
    "SubjectKind",
    "chain_problems",
    "cli_actor",
    "config_fingerprint",
    "note_config",
    "record_action",
]

#: The action :func:`note_config` records.
CONFIG_CHANGED: Final = "config.changed"
#: The environment variable that names the operator in the CLI's records (default: the system user).
ACTOR_ENV: Final = "RECOVERKIT_ACTOR"


def _audit_store(store: object) -> AuditStore:
    if not isinstance(store, AuditStore):
        raise TypeError(
            f"expected a store with an audit log (recoverkit.store.AuditStore: SQLiteStore, PostgresStore), got "
            f"{type(store).__name__}; an action that cannot be recorded is not carried out silently"
        )
    return store


def record_action(
    store: object,
    *,
    actor: str,
    action: str,
    at: float,
    outcome: AuditOutcome = "ok",
    customer: str | None = None,
    cart: str | None = None,
    message: str | None = None,
    detail: str = "",
) -> AuditRecord:
    """Append one operator action to ``store``'s audit log and return the record kept.

    ``actor``: who (``"console:<user id>"``, ``"cli:<user>"``); ``action``: what, lower case (``forget``,
    ``export``, ``resend``, ``resolve``...); exactly one of ``customer`` (its id; the log keeps the store's keyed
    hash), ``cart`` or ``message`` (a message key): on what; ``outcome``: ``ok``, ``failed`` or ``refused`` (an
    operator without the permission); ``detail``: a short note without personal data; ``at``: epoch seconds on
    the caller's clock. Raises :class:`ValueError` naming a bad field, :class:`TypeError` for a store without an
    audit log, :class:`~recoverkit.errors.StoreError` when the store cannot write.
    """
    given: tuple[tuple[SubjectKind, str | None], ...] = (("customer", customer), ("cart", cart), ("message", message))
    subjects = [(kind, value) for kind, value in given if value is not None]
    if len(subjects) != 1:
        raise ValueError(
            f"record_action: expected exactly one of `customer`, `cart` or `message`, got {len(subjects)} "
            f"({', '.join(kind for kind, _ in subjects) or 'none'})"
        )
    ((kind, subject),) = subjects
    return _audit_store(store).append_audit(
        AuditEntry(actor=actor, action=action, subject_kind=kind, subject=subject, outcome=outcome, at=at,
                   detail=detail)
    )  # fmt: skip


def config_fingerprint(config: Config) -> str:
    """The hex SHA-256 of ``config`` as canonical JSON (keys sorted): equal for equal settings, whatever the
    order of the TOML file. The configuration holds the names of the environment variables that hold secrets,
    never the secrets."""
    document = msgspec.json.encode(msgspec.to_builtins(config), order="sorted")
    return hashlib.sha256(document).hexdigest()


def note_config(store: object, config: Config, *, actor: str, at: float) -> AuditRecord | None:
    """Record :data:`CONFIG_CHANGED` when ``config``'s fingerprint differs from the last one recorded in
    ``store`` (or none was): call it at start-up. Returns the record appended, or ``None`` when unchanged.

    The record's ``detail`` is ``fingerprint <new>`` (and ``was <old>``); the settings themselves are not kept.
    Two processes starting at once with the same new configuration may both record it.
    """
    audit = _audit_store(store)
    fingerprint = config_fingerprint(config)
    seen = audit.audit_records(actions=[CONFIG_CHANGED])
    previous = seen[-1].detail.split()[1] if seen and seen[-1].detail.startswith("fingerprint ") else None
    if previous == fingerprint:
        return None
    detail = f"fingerprint {fingerprint}" + ("" if previous is None else f" was {previous}")
    return audit.append_audit(
        AuditEntry(actor=actor, action=CONFIG_CHANGED, subject_kind="config", subject="config", outcome="ok", at=at,
                   detail=detail)
    )  # fmt: skip


def cli_actor() -> str:
    """Who runs the CLI, as its records name them: ``cli:`` and ``$RECOVERKIT_ACTOR``, else the system user."""
    name = os.environ.get(ACTOR_ENV, "").strip()
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # no user name for this uid (a container): the uid is who it is
            name = f"uid-{os.getuid()}"
    return f"cli:{name}"
