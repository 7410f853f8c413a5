"""Withdrawals: telling the adapters that keep lasting state (ad audiences) to take it back.

Dispatch hands each purchase, consent withdrawal and erasure that reaches it to :class:`Withdrawals`, which
calls ``withdraw`` on every adapter that implements :class:`~recoverkit.channels.Withdrawing` and is concerned:
all of them for a purchase or an erasure, the one channel named for a consent withdrawal (route sends one
``Cancel`` per channel that requires the withdrawn consent). Each call is contained like a send (the channel's
timeout; counted ``withdrawn`` or ``withdraw_failed``) and is not retried here: see
:mod:`recoverkit.channels._withdrawal` for who keeps a failed removal pending.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import anyio.abc

from .._contain import Containment, Failed, Plugin
from ..channels._withdrawal import Withdrawal, WithdrawalReason
from ..config import ChannelPolicy
from ..errors import DeliveryError
from ..items import Cancel, Forget

__all__ = ["Withdrawals"]


class Withdrawals:
    """Calls ``withdraw`` on the concerned adapters, each call in a task of the stage's task group.

    ``started``/``ended`` let the stage count the calls as in flight, so that ``flush()`` waits for them.
    """

    def __init__(
        self,
        channels: Mapping[str, Any],
        policies: Mapping[str, ChannelPolicy],
        *,
        contain: Containment,
        outcomes: Counter[str],
        started: Callable[[], None],
        ended: Callable[[], None],
    ) -> None:
        self._adapters = {
            name: adapter for name, adapter in channels.items() if callable(getattr(adapter, "withdraw", None))
        }
        self._plugins = {
            name: Plugin("channel", f"{name!r} adapter ({type(adapter).__name__})")
            for name, adapter in self._adapters.items()
        }
        self._timeouts = {name: policies[name].timeout for name in self._adapters}
        self._contain = contain
        self._outcomes = outcomes
        self._started = started
        self._ended = ended

    def __bool__(self) -> bool:
        return bool(self._adapters)

    def cancel(self, cancel: Cancel, tg: anyio.abc.TaskGroup | None) -> None:
        """A purchase withdraws the contact from every audience; a consent withdrawal from the channel named."""
        if cancel.contact_key is None or cancel.why == "resumed":
            return  # a shopper back at their cart is still an abandoner until they buy
        names = list(self._adapters) if cancel.why == "purchase" else [cancel.channel or ""]
        self._start(names, cancel.why, [cancel.contact_key], cancel.at, tg)

    def forget(self, forget: Forget, tg: anyio.abc.TaskGroup | None) -> None:
        self._start(list(self._adapters), "forget", forget.contact_keys, forget.at, tg)

    def _start(
        self, names: list[str], why: WithdrawalReason, contacts: list[str], at: float, tg: anyio.abc.TaskGroup | None
    ) -> None:
        if tg is None:
            return  # not running (a dispatch driven by hand in tests): nothing was sent that needs taking back
        for name in names:
            if name not in self._adapters:
                continue
            for contact in contacts:
                self._started()
                tg.start_soon(self._call, name, Withdrawal(why=why, contact_key=contact, at=at),
                              name="recoverkit-withdraw")

    async def _call(self, name: str, withdrawal: Withdrawal) -> None:
        try:
            answer = await self._contain.call(
                self._plugins[name], self._adapters[name].withdraw, withdrawal,
                timeout=self._timeouts[name], ids={"channel": name, "why": withdrawal.why},
                expected=(DeliveryError,),
            )  # fmt: skip
            self._outcomes["withdraw_failed" if isinstance(answer, Failed) else "withdrawn"] += 1
        finally:
            self._ended()
