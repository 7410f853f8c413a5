"""The optional second method of a channel adapter: take back what earlier sends put somewhere lasting.

Most channels deliver something that cannot be taken back (an email is read or not). An ad audience is
different: adding a shopper to it keeps them there, seeing ads, until they are removed. An adapter that keeps
such state implements :class:`Withdrawing` besides :class:`~recoverkit.channels.Channel`, and dispatch calls its
``withdraw`` when the reason for the state ends:

- ``"purchase"``: the contact bought (any cart of theirs): they are no longer an abandoner.
- ``"consent_withdrawn"``: the contact withdrew the consent this channel requires (the channel policy's
  ``consent``, by default the channel's own name).
- ``"forget"``: the customer asked to be erased: remove them, then drop whatever the adapter kept about them.

Guarantees and limits: dispatch calls ``withdraw`` for every purchase and every erasure of a contact, whether or
not the adapter ever sent to them (an adapter keeps its own record of whom it added, and returns at once for
anyone else), and for every withdrawal of the consent the channel requires. The call is contained like a send
(the channel's timeout; a raise or a hang fails only that call, counted as ``withdraw_failed``). It is not
retried by dispatch: an adapter whose removal failed must keep it pending itself and try again later (the
shipped audience adapters keep it in their membership file and retry it with their next request). ``flush()``
and ``Engine.forget`` return only after the calls they caused have ended.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import msgspec

__all__ = ["Withdrawal", "Withdrawing"]

WithdrawalReason = Literal["purchase", "consent_withdrawn", "forget"]


class Withdrawal(msgspec.Struct, frozen=True, kw_only=True):
    """Take back what was sent on this channel to ``contact_key``, because of ``why``, at ``at`` (engine clock)."""

    why: WithdrawalReason
    contact_key: str
    at: float


@runtime_checkable
class Withdrawing(Protocol):
    """A channel adapter whose sends leave lasting state (an audience membership) that dispatch must take back."""

    async def withdraw(self, withdrawal: Withdrawal) -> None:
        """Undo, for ``withdrawal.contact_key``, what earlier sends left; return when done, raise when not.

        A contact the adapter never sent to is not an error: return. With ``why == "forget"``, also drop every
        record kept about the contact once the removal is done (or keep only what a pending removal needs).
        """
        ...
