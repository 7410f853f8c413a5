"""Sessionize checkpoints in the layout written before a session's rarely set fields moved into its
:class:`~recoverkit.sessionize._cart.Detail` (recoverkit 0.2 until December 2026): read and converted on restore,
so that an upgrade in place keeps every open cart, timer and purchase mark.

A checkpoint's sessions are arrays of their fields by position. Those of this layout have 23 fields (24 once
checkout signals existed); a session of the current one has 17, so msgspec refuses an old checkpoint as the
current :class:`~recoverkit.sessionize._cart.State` and :func:`read` takes it instead.
"""

from __future__ import annotations

import math

import msgspec

from ..cart import CheckoutSignals
from ..items import Trigger
from ._cart import Detail, Line, Session, State

__all__ = ["read"]


class _Session(msgspec.Struct, array_like=True):
    session_id: str
    started_at: float
    last_at: float
    deadline: float
    timer_at: float = math.inf
    customer_id: str | None = None
    cart_id: str | None = None
    currency: str | None = None
    lines: bytes | list[Line] | None = None
    shipping: int | None = None
    declared_value: int | None = None
    step: int = 0
    checkout_at: float | None = None
    trigger: Trigger = "inactivity"
    abandoned: bool = False
    purchased_at: float | None = None
    views: int = 0
    item_views: int = 0
    payment_failures: int = 0
    form_errors: int = 0
    exit_intents: int = 0
    device: str | None = None
    source: str | None = None
    signals: CheckoutSignals | None = None


class _State(msgspec.Struct, array_like=True):
    watermark: float
    sessions: list[_Session]
    customers: dict[str, tuple[str, ...]]
    buyers: list[tuple[str, float]]
    counts: dict[str, int]


_EMPTY = Detail()


def read(state: bytes) -> State:
    """The checkpoint ``state`` of the old layout, as the current :class:`State` (raises msgspec's errors if it
    is not one)."""
    old = msgspec.msgpack.decode(state, type=_State)
    return State(old.watermark, [_session(s) for s in old.sessions], old.customers, old.buyers, old.counts)


def _session(old: _Session) -> Session:
    detail = Detail(
        shipping=old.shipping,
        declared_value=old.declared_value,
        checkout_at=old.checkout_at,
        purchased_at=old.purchased_at,
        payment_failures=old.payment_failures,
        form_errors=old.form_errors,
        exit_intents=old.exit_intents,
        signals=old.signals,
    )
    return Session(
        session_id=old.session_id,
        started_at=old.started_at,
        last_at=old.last_at,
        deadline=old.deadline,
        timer_at=old.timer_at,
        customer_id=old.customer_id,
        cart_id=old.cart_id,
        currency=old.currency,
        lines=old.lines,
        step=old.step,
        trigger=old.trigger,
        abandoned=old.abandoned,
        views=old.views,
        item_views=old.item_views,
        device=old.device,
        source=old.source,
        detail=None if detail == _EMPTY else detail,
    )
