"""Discount codes: issued to one contact, redeemed once, counted for the abuse limits (:class:`CodeStore`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final, Literal, Protocol, get_args, runtime_checkable

import msgspec

__all__ = [
    "CODE_KINDS",
    "LIMITS_BY",
    "LIMIT_ANSWERS",
    "CodeKind",
    "CodeLimit",
    "CodeRecord",
    "CodeStore",
    "IssueAnswer",
    "LimitBy",
    "RedeemOutcome",
    "RedeemResult",
    "check_attempt",
    "check_code",
    "check_count",
    "check_limits",
    "check_redeem",
    "judge_redemption",
    "limit_key",
]

#: What a code gives: money off the cart (``percent`` or ``amount``), or free shipping.
CodeKind = Literal["discount", "free_shipping"]
#: What :meth:`CodeStore.issue_code` answers; see there.
IssueAnswer = Literal["issued", "duplicate", "contact_limit", "domain_limit", "device_limit"]
#: What :meth:`CodeStore.redeem_code` answers; see there.
RedeemOutcome = Literal["valid", "expired", "already_used", "not_yours", "below_minimum", "wrong_currency", "unknown"]
#: Which field of a code a :class:`CodeLimit` counts by.
LimitBy = Literal["contact", "domain", "device"]

CODE_KINDS: Final[frozenset[str]] = frozenset(get_args(CodeKind))
LIMITS_BY: Final[frozenset[str]] = frozenset(get_args(LimitBy))
#: What issue_code() answers when a limit by each field is full.
LIMIT_ANSWERS: Final[dict[LimitBy, IssueAnswer]] = {
    "contact": "contact_limit", "domain": "domain_limit", "device": "device_limit"
}  # fmt: skip


class CodeRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One discount code as a store keeps it: never the code itself, only ``code_hash``.

    ``code_hash`` is a keyed hash of the code (:class:`~recoverkit.offers.CodeBook` makes it with a secret the
    store never sees); ``cart_key`` is the cart whose recovery issued it, ``contact_key`` the contact it is bound
    to (only they can redeem it). A ``"discount"`` takes ``percent`` (1..100) or ``amount`` (minor units of
    ``currency``) off, exactly one of them; a ``"free_shipping"`` code has neither. ``min_value`` is the least
    cart value, in minor units of ``currency``, it may be redeemed on; ``currency`` is ``None`` only for a code
    without an ``amount`` or a minimum, which any currency may redeem. The code is void from ``expires_at`` on.
    ``domain`` and ``device`` are opaque keys the abuse limits count by (``CodeBook`` stores keyed hashes of the
    e-mail domain and the device id), ``None`` when unknown. ``redeemed_at`` and ``redeemed_order`` are set by
    the one redemption a code allows.
    """

    code_hash: str
    cart_key: str
    contact_key: str
    kind: CodeKind
    issued_at: float
    expires_at: float
    percent: int | None = None
    amount: int | None = None
    currency: str | None = None
    min_value: int = 0
    domain: str | None = None
    device: str | None = None
    redeemed_at: float | None = None
    redeemed_order: str | None = None


class CodeLimit(msgspec.Struct, frozen=True, kw_only=True):
    """At most ``most`` codes issued at or after ``since`` with the same ``by`` (contact, domain, device) as the
    code being issued; see :meth:`CodeStore.issue_code`."""

    by: LimitBy
    most: int
    since: float


class RedeemResult(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`CodeStore.redeem_code` found: the ``outcome`` and the code's record (``None`` for ``"unknown"``;
    for ``"valid"``, the record as redeemed)."""

    outcome: RedeemOutcome
    code: CodeRecord | None = None


@runtime_checkable
class CodeStore(Protocol):
    """The codes part of a store: issuing and redeeming single-use codes, and the counts the abuse limits and
    the rate limit on guessing read.

    Guarantees: each method is one transaction, atomic across every process sharing the store: of any number
    of callers issuing at once no limit is ever exceeded, and of two orders racing for one code one redeems
    it. Not fenced by the lease: codes are issued by dispatch and redeemed by the shop's checkout, in any
    process. Times (``issued_at``, ``expires_at``, ``now``, ``since``) are epoch seconds on the engine's clock,
    passed in by the caller.

    A store sees only keyed hashes of codes (and whatever keys the caller passes for domains, devices and
    clients); making them, and keeping their secret out of the store, is the caller's part
    (:class:`~recoverkit.offers.CodeBook`).
    """

    def issue_code(self, code: CodeRecord, *, limits: Sequence[CodeLimit] = ()) -> IssueAnswer:
        """Store the new, unredeemed ``code`` unless a check refuses it; only ``"issued"`` writes anything.

        The checks, in this order, in the transaction that inserts (so that of any number of threads and
        processes issuing at once, no limit is ever exceeded):

        - ``"duplicate"``: a code with the same ``code_hash`` is stored already (the caller draws a new code);
        - ``"contact_limit"``, ``"domain_limit"``, ``"device_limit"``: for the first of ``limits`` that is
          full, there are ``limit.most`` codes or more issued at or after ``limit.since`` with the same
          ``contact_key``, ``domain`` or ``device`` as ``code`` (a limit by a field that is ``None`` on
          ``code`` does not apply);
        - ``"issued"``: the code was stored.

        Raises :class:`ValueError` for a record that is not a valid new code (see :class:`CodeRecord`).
        """
        ...

    def redeem_code(
        self, code_hash: str, *, contact_key: str, cart_value: int, currency: str | None, order_id: str, now: float
    ) -> RedeemResult:
        """Redeem the code stored under ``code_hash`` for ``order_id``, if it may be; in one transaction.

        The outcomes, checked in this order (so that nothing about the state of a code is told to anyone but
        the contact it is bound to):

        - ``"unknown"``: no code is stored under ``code_hash``;
        - ``"not_yours"``: the code is bound to another ``contact_key``;
        - ``"already_used"``: the code was redeemed for another order. Redeeming again for the order it was
          redeemed for answers ``"valid"`` again, changing nothing: a retried checkout request is not refused;
        - ``"expired"``: ``now`` is at or after the code's ``expires_at``;
        - ``"wrong_currency"``: the code has a ``currency`` and ``currency`` is another;
        - ``"below_minimum"``: ``cart_value`` (minor units) is below the code's ``min_value``;
        - ``"valid"``: the code is now redeemed, at ``now``, for ``order_id``; no other order can redeem it.

        Only ``"valid"`` writes anything.
        """
        ...

    def count_codes(
        self,
        *,
        since: float,
        contact_key: str | None = None,
        domain: str | None = None,
        device: str | None = None,
    ) -> int:
        """How many codes were issued at or after ``since`` with the given ``contact_key``, ``domain`` and
        ``device`` (all of those given; at least one must be)."""
        ...

    def record_attempt(self, client_key: str, *, now: float, window: float) -> int:
        """Record a failed redemption by ``client_key`` at ``now``; return how many it made in the ``window``
        seconds up to ``now``, this one included.

        Attempts are counted when ``now - window < at <= now``. Attempts older than the window are deleted,
        of every client, so the window is how long the store keeps them: use one window per store.
        """
        ...

    def count_attempts(self, client_key: str, *, now: float, window: float) -> int:
        """How many failed redemptions ``client_key`` made in the ``window`` seconds up to ``now`` (as
        :meth:`record_attempt` counts them); writes nothing."""
        ...


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_code(code: CodeRecord) -> None:
    """Raise ValueError unless ``code`` is a consistent, unredeemed new code (see CodeRecord)."""
    if not code.code_hash:
        raise ValueError("issue_code: expected a non-empty `code_hash`, got ''")
    if not code.cart_key or not code.contact_key:
        raise ValueError(
            f"issue_code: expected a non-empty `cart_key` and `contact_key`, got {code.cart_key!r} and "
            f"{code.contact_key!r}"
        )
    where = f"issue_code: code for cart {code.cart_key!r}"
    _check_value(code, where)
    _check_terms(code, where)


def _check_value(code: CodeRecord, where: str) -> None:
    """What the code gives: its kind, and the one of ``percent`` and ``amount`` that kind takes."""
    if code.kind not in CODE_KINDS:
        raise ValueError(f"{where}: expected `kind` to be one of {sorted(CODE_KINDS)}, got {code.kind!r}")
    if code.percent is not None and not (_is_int(code.percent) and 1 <= code.percent <= 100):
        raise ValueError(f"{where}: expected `percent` to be an integer from 1 to 100, got {code.percent!r}")
    if code.amount is not None and not (_is_int(code.amount) and code.amount > 0):
        raise ValueError(f"{where}: expected `amount` to be minor units > 0, got {code.amount!r}")
    given = (code.percent is not None) + (code.amount is not None)
    if code.kind == "discount" and given != 1:
        raise ValueError(f"{where}: a discount takes exactly one of `percent` and `amount`, got {given}")
    if code.kind == "free_shipping" and given:
        raise ValueError(f"{where}: a free_shipping code takes neither `percent` nor `amount`")


def _check_terms(code: CodeRecord, where: str) -> None:
    """When and on what the code may be redeemed, and that it was not yet."""
    if not (_is_int(code.min_value) and code.min_value >= 0):
        raise ValueError(f"{where}: expected `min_value` to be minor units >= 0, got {code.min_value!r}")
    if code.currency is None and (code.amount is not None or code.min_value):
        raise ValueError(f"{where}: an `amount` or a `min_value` needs the `currency` it is in, got None")
    if not code.issued_at < code.expires_at:  # also refuses NaN
        raise ValueError(
            f"{where}: expected `expires_at` after `issued_at`, got {code.expires_at!r} and {code.issued_at!r}"
        )
    if code.redeemed_at is not None or code.redeemed_order is not None:
        raise ValueError(f"{where}: expected a new code, got one redeemed (`redeemed_at` {code.redeemed_at!r})")


def check_limits(limits: Sequence[CodeLimit]) -> None:
    for limit in limits:
        if limit.by not in LIMITS_BY:
            raise ValueError(f"issue_code: expected a limit `by` one of {sorted(LIMITS_BY)}, got {limit.by!r}")
        if not (_is_int(limit.most) and limit.most >= 1):
            raise ValueError(f"issue_code: expected a limit's `most` to be an integer >= 1, got {limit.most!r}")
        if math.isnan(limit.since):
            raise ValueError(
                f"issue_code: expected a limit's `since` to be a time in epoch seconds, got {limit.since!r}"
            )


def limit_key(code: CodeRecord, by: LimitBy) -> str | None:
    """The value of ``code`` a limit by ``by`` counts codes with (``None``: the limit does not apply)."""
    return code.contact_key if by == "contact" else code.domain if by == "domain" else code.device


def check_redeem(code_hash: str, contact_key: str, cart_value: int, order_id: str) -> None:
    if not code_hash:
        raise ValueError("redeem_code: expected a non-empty `code_hash`, got ''")
    if not contact_key:
        raise ValueError("redeem_code: expected a non-empty `contact_key`, got ''")
    if not order_id:
        raise ValueError("redeem_code: expected a non-empty `order_id`, got ''")
    if not (_is_int(cart_value) and cart_value >= 0):
        raise ValueError(f"redeem_code: expected `cart_value` to be minor units >= 0, got {cart_value!r}")


def judge_redemption(
    code: CodeRecord | None, *, contact_key: str, cart_value: int, currency: str | None, order_id: str, now: float
) -> RedeemOutcome:
    """The outcome of redeeming ``code`` as :meth:`CodeStore.redeem_code` orders the checks; both stores use it."""
    if code is None:
        return "unknown"
    if code.contact_key != contact_key:
        return "not_yours"
    if code.redeemed_order is not None:
        return "valid" if code.redeemed_order == order_id else "already_used"
    if not now < code.expires_at:  # void at expires_at exactly, as leases are; NaN is never in time either
        return "expired"
    if code.currency is not None and currency != code.currency:
        return "wrong_currency"
    if cart_value < code.min_value:
        return "below_minimum"
    return "valid"


def check_count(contact_key: str | None, domain: str | None, device: str | None, since: float) -> None:
    if contact_key is None and domain is None and device is None:
        raise ValueError("count_codes: expected at least one of `contact_key`, `domain` and `device`, got none")
    if math.isnan(since):
        raise ValueError(f"count_codes: expected `since` to be a time in epoch seconds, got {since!r}")


def check_attempt(method: str, client_key: str, now: float, window: float) -> None:
    if not client_key:
        raise ValueError(f"{method}: expected a non-empty `client_key`, got ''")
    if not window > 0 or math.isinf(window):  # also refuses NaN
        raise ValueError(f"{method}: expected `window` to be seconds > 0, got {window!r}")
    if math.isnan(now):
        raise ValueError(f"{method}: expected `now` to be a time in epoch seconds, got {now!r}")
