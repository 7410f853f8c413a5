"""Who may do what in the console: the permissions, each named, and the :class:`Operator` every page receives.

A framework adapter turns its own notion of a signed-in user into an :class:`Operator` (Django: a staff user and
its ``recoverkit.<codename>`` permissions; Flask and ASGI: the shop's ``authorize``/``auth`` callable) and the
console checks the one permission each page or action names before it reads or changes anything.
"""

from __future__ import annotations

from typing import Final

import msgspec

from .._log import get_logger

__all__ = [
    "EXPORT",
    "FORGET",
    "PERMISSIONS",
    "RESEND",
    "RESOLVE",
    "VIEW",
    "VIEW_PERSONAL_DATA",
    "Operator",
    "PermissionDenied",
    "checked_operator",
]

_log = get_logger("recoverkit.console")

#: See the console at all: the figures, the lists (personal data masked).
VIEW: Final = "recoverkit.view"
#: See e-mail addresses, phone numbers, names and addresses unmasked.
VIEW_PERSONAL_DATA: Final = "recoverkit.view_personal_data"
#: Send a dead letter again.
RESEND: Final = "recoverkit.resend"
#: Settle a ledger entry whose outcome is unknown (or failed): as sent, or for a retry.
RESOLVE: Final = "recoverkit.resolve"
#: Erase a customer (right to erasure).
FORGET: Final = "recoverkit.forget"
#: Download everything held about a customer (right of access).
EXPORT: Final = "recoverkit.export"

#: Every permission, with what it allows: the table docs/console.md shows, and what Django's permissions say.
PERMISSIONS: Final[dict[str, str]] = {
    VIEW: "See the recoverkit console (personal data masked)",
    VIEW_PERSONAL_DATA: "See customers' personal data unmasked in the recoverkit console",
    RESEND: "Resend dead letters from the recoverkit console",
    RESOLVE: "Resolve unknown send outcomes from the recoverkit console",
    FORGET: "Forget (erase) a customer from the recoverkit console",
    EXPORT: "Export a customer's data from the recoverkit console",
}


class PermissionDenied(Exception):
    """Raised by the console when the operator lacks ``permission`` (the adapters answer 403)."""

    def __init__(self, permission: str) -> None:
        super().__init__(f"this needs the permission {permission!r}, which the operator does not hold")
        self.permission = permission


class Operator(msgspec.Struct, frozen=True, kw_only=True):
    """A signed-in operator: ``name`` identifies them in the audit log (``console:<name>``; a user id, not an
    address) and ``permissions`` are the console permissions they hold (unknown names are ignored)."""

    name: str
    permissions: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"Operator: expected a non-empty `name` (a user id), got {self.name!r}")

    def can(self, permission: str) -> bool:
        """Whether the operator holds ``permission``."""
        return permission in self.permissions

    def require(self, permission: str) -> None:
        """Raise :class:`PermissionDenied` unless the operator holds ``permission``."""
        if permission not in self.permissions:
            raise PermissionDenied(permission)

    @property
    def actor(self) -> str:
        """How the audit log names this operator."""
        return f"console:{self.name}"


def checked_operator(who: object) -> Operator | None:
    """What a shop's ``authorize``/``auth`` hook answered, if it is an :class:`Operator` or ``None``; anything else
    is logged (``console_authorize_failed``) and lets nobody in."""
    if who is not None and not isinstance(who, Operator):
        _log.error("console_authorize_failed", error=f"returned {type(who).__name__}, expected Operator or None")
        return None
    return who
