"""Offers attached to recovery messages: what a message promises the shopper, and the codes that carry it.

An :class:`Offer` is plain data that travels on a :class:`~recoverkit.channels.Message` (templates show it,
the ledger and analytics record it). ``kind`` says what it is:

- ``"discount"``: ``code`` takes ``percent`` off, or ``amount`` (minor units of ``currency``) off, on carts of
  at least ``min_value``; the code is unique to this recovery, single-use and void after ``expires_at``;
- ``"free_shipping"``: the same kind of code, for shipping (the usual answer to a shipping-cost shock);
- ``"payment_help"``: no code; the message offers other ways to pay (after a failed payment);
- ``"substitute"``: ``suggestions`` (and their ids in ``items``) are cheaper or complementary products from the
  shop's catalogue (:mod:`recoverkit.catalogue`), asked for when the message is sent: ``suggest`` says which
  kind, ``suggest_limit`` how many at most;
- ``"loyalty_bonus"``: ``points`` extra loyalty points, or ``multiplier`` times the usual points, if the order is
  completed before ``expires_at``; granted through the shop's loyalty programme (:mod:`recoverkit.loyalty`)
  when the message is sent, under the reference ``grant_id``.

Amounts are integers in minor units, never floats.

Codes. A :class:`CodeBook` issues the codes of ``discount`` and ``free_shipping`` offers and redeems them, keeping
them in a :class:`~recoverkit.store.base.CodeStore` (the engine's store). A code is

- unguessable: ``length`` symbols drawn with :mod:`secrets` from :data:`ALPHABET` (32 symbols, so 5 bits each:
  60 bits for the shortest, 12-symbol code), which leaves out ``0``/``O`` and ``1``/``I``; grouped by four for
  reading, after an optional shop prefix: ``SHOP-7KQ2-MX9P-R4TW``;
- kept as a keyed hash only (HMAC-SHA256 with a key derived from the book's secret, which the store never
  sees), so a copy of the store file holds no code anyone could redeem;
- bound to the contact it was issued to (and records the cart whose recovery issued it), single-use, void from
  its expiry, and valid only in its currency and on carts of at least its minimum;
- limited against abuse: at most :attr:`CodePolicy.per_contact` codes per contact, per e-mail domain and per
  device within :attr:`CodePolicy.period`; ``issue`` answers :class:`Refused` with the reason when a limit is
  full, for the caller to count;
- rate-limited against guessing: a client (an IP address, say) that failed :attr:`CodePolicy.attempts` times
  (10 by default) within :attr:`CodePolicy.attempt_window` (15 minutes) is answered ``"rate_limited"``,
  without the code being looked at, until its oldest failure leaves the window. At 10 guesses per 15 minutes,
  hitting any of a million live codes in a 60-bit space takes about 10^12 guesses: 3 million years per client.
  A client is an IPv4 address, or an IPv6 address's /64 network, however the address is spelled
  (:func:`client_bucket`): whoever has one IPv6 address has its whole /64;
- silent to guessers: a code bound to another customer answers ``"unknown"``, as a code that does not exist
  does, so nobody but its owner learns that a code exists, let alone its state.

Shops with their own coupon system implement :class:`CouponProvider` instead; ``CodeBook`` is the default one.
Times are passed in (``now``): the book never reads a clock, so tests drive it with fake time. :func:`redeem` is
the one call a shop's checkout view needs.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import math
import threading
import time
from collections import Counter
from typing import Final, Literal, Protocol, runtime_checkable

import anyio.to_thread
import msgspec

from ._code_policy import SHARED_MAIL_DOMAINS, CodePolicy, duration_text, is_int
from ._code_text import ALPHABET, format_code, new_code, parse_code
from ._code_text import draw as _draw  # by this name, so a test can make the random source repeat itself
from ._log import get_logger
from .clock import Clock
from .errors import ConfigError, StoreError
from .events import contact_key
from .items import Offer, OfferKind
from .store.base import CodeKind, CodeLimit, CodeRecord, CodeStore, LimitBy

__all__ = [
    "ALPHABET",
    "SHARED_MAIL_DOMAINS",
    "CodeBook",
    "CodePolicy",
    "CouponProvider",
    "Offer",
    "OfferKind",
    "OfferStatistics",
    "Redemption",
    "RedemptionOutcome",
    "RefusalReason",
    "Refused",
    "client_bucket",
    "discount_for",
    "format_code",
    "new_code",
    "parse_code",
    "redeem",
]

_log = get_logger("recoverkit.offers")

# -- what a code takes off a cart (codes as text: _code_text; the policy: _code_policy) -------------------------


def discount_for(code: CodeRecord, cart_value: int) -> int:
    """Minor units a redeemed ``code`` takes off a cart of ``cart_value`` minor units; never more than the cart.

    A percentage is rounded down (the shop never gives more than it promised), in integers; a fixed amount is
    capped at the cart's value; free shipping is 0 here: the shop waives the shipping itself.

    >>> discount_for(CodeRecord(code_hash="h", cart_key="c", contact_key="p", kind="discount", percent=15,
    ...                         issued_at=0, expires_at=1), 3333)
    499
    """
    if code.kind != "discount":
        return 0
    if code.percent is not None:
        return cart_value * code.percent // 100
    return min(code.amount or 0, cart_value)


#: Why :meth:`CodeBook.issue` issued no code; see :class:`Refused`.
RefusalReason = Literal["contact_limit", "domain_limit", "device_limit", "expired"]

#: What a redemption answers; see :class:`Redemption`.
RedemptionOutcome = Literal[
    "valid", "expired", "already_used", "below_minimum", "wrong_currency", "unknown", "rate_limited"
]
#: Store answers that show the caller did not hold the code: they count against the client's guessing budget.
#: Mistakes of the code's owner (expired, too small a cart...) do not: a shopper retrying is no guesser.
_GUESSES: Final = frozenset({"unknown", "not_yours"})
_LIMITS: Final[dict[str, LimitBy]] = {"contact_limit": "contact", "domain_limit": "domain", "device_limit": "device"}


class Refused(msgspec.Struct, frozen=True, kw_only=True):
    """No code was issued: ``reason`` is a statistics key (``"contact_limit"``, ``"domain_limit"``,
    ``"device_limit"``: an abuse limit of :class:`CodePolicy` is full; ``"expired"``: the offer's ``expires_at``
    had passed), ``detail`` a sentence for logs, without personal data."""

    reason: RefusalReason
    detail: str


class Redemption(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What redeeming a code answered.

    ``outcome`` is one of:

    - ``"valid"``: the code is now redeemed for the order; ``discount`` is what it takes off the cart, in minor
      units of ``currency`` (0 for free shipping: the shop waives the shipping, ``kind`` says so); ``cart_key``
      is the cart whose recovery issued the code, for attributing the order. Redeeming again for the same order
      answers ``"valid"`` again: a retried checkout is not refused;
    - ``"expired"``, ``"already_used"`` (by another order), ``"wrong_currency"``, ``"below_minimum"`` (then
      ``min_value`` and ``currency`` say the least cart value): the code's owner cannot use it on this order;
    - ``"unknown"``: there is no such code, or it is bound to another customer: the two are answered alike, so
      that nobody but a code's owner learns that it exists (:meth:`CodeBook.statistics` tells them apart, for
      the shop's eyes: ``redeemed["not_yours"]``);
    - ``"rate_limited"``: the client failed too often lately; nothing was looked up.
    """

    outcome: RedemptionOutcome
    discount: int = 0
    kind: CodeKind | None = None
    currency: str | None = None
    min_value: int | None = None
    cart_key: str | None = None


class OfferStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Counters of a :class:`CodeBook` since it was built: codes ``issued``, issues ``refused`` by reason, and
    redemptions by outcome."""

    issued: int = 0
    refused: dict[str, int] = {}
    redeemed: dict[str, int] = {}


@runtime_checkable
class CouponProvider(Protocol):
    """Where the codes of offers come from: :class:`CodeBook` (codes kept in recoverkit's store), or a shop's own
    coupon system behind an object with these two methods.

    ``issue`` returns ``offer`` with a code in ``offer.code`` (and may adjust ``expires_at``), or
    :class:`Refused` when it will not issue one; an offer of a kind without a code, or that carries a code
    already, comes back as it is. ``redeem`` answers as :class:`Redemption` describes. Both are called from the
    engine's event loop: block it no longer than a network round trip would.
    """

    async def issue(
        self,
        offer: Offer,
        *,
        cart_key: str,
        contact_key: str,
        now: float,
        email: str | None = None,
        device: str | None = None,
    ) -> Offer | Refused:
        """Issue the code of ``offer`` for the recovery of ``cart_key``, bound to ``contact_key``."""
        ...

    async def redeem(
        self,
        code: str,
        *,
        customer: str,
        cart_value: int,
        currency: str | None,
        order_id: str,
        client_key: str,
        now: float,
    ) -> Redemption:
        """Redeem ``code`` typed by ``customer`` (from ``client_key``) for ``order_id``."""
        ...


# -- the book ------------------------------------------------------------------------------------------------

#: Bytes a secret must have at least: 256 bits, as strong as the HMAC-SHA256 it keys.
_SECRET_BYTES: Final = 32
#: How many freshly drawn codes may collide with stored ones before the random source is declared broken.
#: With 60 bits and a billion codes stored, a fresh code collides once in a billion draws; four in a row, never.
_DRAWS: Final = 4


def client_bucket(client_key: str) -> str:
    """The rate-limit bucket of ``client_key``: one per IPv4 address and one per IPv6 /64 network, however the
    address is spelled; any other key as it is.

    An IPv6 address has many spellings (``2001:db8::1``, ``2001:0DB8:0:0::1``, with a zone ``%eth0``, in
    brackets with a port) and whoever holds one usually holds its whole /64 (a home or a cloud host gets one),
    so a budget per address would be a budget per guess. IPv4-mapped IPv6 (``::ffff:203.0.113.9``) is the IPv4
    address; an IPv4 address with a port (``203.0.113.9:51234``) the address alone.

    >>> client_bucket("2001:DB8:0:0:8d3::1") == client_bucket("[2001:db8::ffff:1]:443")
    True
    """
    text = client_key.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port, as some proxies write it
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    text = text.partition("%")[0]  # the zone of a link-local address
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return client_key
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"ip4:{address.ipv4_mapped}"
        return f"ip6:{ipaddress.IPv6Network((address, 64), strict=False)}"
    return f"ip4:{address}"


def _secret_bytes(owner: str, secret: bytes | str) -> bytes:
    """``secret`` as bytes, or ConfigError if it is shorter than 32 bytes; the message never shows it."""
    raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(raw) < _SECRET_BYTES:
        raise ConfigError(
            f"{owner}: expected `secret` of at least {_SECRET_BYTES} bytes, got {len(raw)} bytes; make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` and keep it out of the store"
        )
    return raw


def _derive_key(secret: bytes, purpose: bytes) -> bytes:
    """A key for one ``purpose`` from a shared secret, so that one secret can key unrelated hashes and
    signatures without a value of one ever being valid as another."""
    return hmac.new(secret, b"recoverkit/" + purpose, hashlib.sha256).digest()


class CodeBook:
    """Issues and redeems single-use codes kept in ``store``; the default :class:`CouponProvider`.

    ``secret`` (at least 32 bytes; the same for every process sharing the store) keys the hashes of codes,
    domains, devices and clients; keep it out of the store and its backups, or a copy of the store can be
    checked against guessed codes. Changing it voids every code issued before (they answer ``"unknown"``) and
    restarts the abuse limits. ``policy`` sets the format and limits (see :class:`CodePolicy`). ``clock`` is the
    time :func:`redeem` checks expiry on when the checkout gives no ``now``: the engine's clock, for the book an
    engine builds (a code issued under a test's ``FakeClock``, or in event time, expires on that clock); the
    wall clock by default.

    ``issue_sync`` and ``redeem_sync`` do the work, blocking on the store (a shop's synchronous checkout view
    calls ``redeem_sync``); ``issue`` and ``redeem`` run them in a worker thread for async callers. Every method
    is thread-safe.

    >>> from recoverkit.store import MemoryStore
    >>> book = CodeBook(MemoryStore(), "a secret of at least thirty-two bytes!!")
    >>> offer = book.issue_sync(Offer(kind="discount", name="10% off", percent=10, expires_at=1_000_000.0),
    ...                         cart_key="cart-1", contact_key="alice", now=0.0)
    >>> book.redeem_sync(offer.code, customer="alice", cart_value=5000, currency="EUR", order_id="o-1",
    ...                  client_key="203.0.113.9", now=10.0)
    Redemption(outcome='valid', discount=500, kind='discount', currency='EUR', min_value=None, cart_key='cart-1')
    """

    def __init__(
        self, store: CodeStore, secret: bytes | str, *, policy: CodePolicy | None = None, clock: Clock | None = None
    ) -> None:
        raw = _secret_bytes("CodeBook", secret)
        if not isinstance(store, CodeStore):
            raise ConfigError(f"CodeBook: expected a store with the CodeStore methods, got {type(store).__name__}")
        self.store = store
        self.policy = policy if policy is not None else CodePolicy()
        self.clock = clock
        self._shared_domains = frozenset(domain.lower() for domain in self.policy.shared_domains)
        self._code_key = _derive_key(raw, b"offers/code")
        self._abuse_key = _derive_key(raw, b"offers/abuse")
        self._lock = threading.Lock()  # guards the counters
        self._issued = 0
        self._refused: Counter[str] = Counter()
        self._redeemed: Counter[str] = Counter()

    # -- hashes ---------------------------------------------------------------------------------------------

    def code_hash(self, body: str) -> str:
        """The keyed hash a code's body (as :func:`parse_code` returns it) is stored and looked up under.

        Looking a code up by this hash is safe from timing attacks although the store compares with ``=``: how
        long a lookup takes depends on the hash, which a guesser cannot steer without the key.
        """
        return hmac.new(self._code_key, body.encode("ascii"), hashlib.sha256).hexdigest()

    def _abuse_hash(self, kind: bytes, value: str) -> str:
        # Kinds are separated so that a device id can never count as a domain of the same spelling.
        message = kind + b"\0" + value.encode("utf-8", "surrogatepass")
        return hmac.new(self._abuse_key, message, hashlib.sha256).hexdigest()

    def _domain(self, email: str | None) -> str | None:
        if not email or "@" not in email:
            return None
        domain = email.rpartition("@")[2].strip().rstrip(".").lower()
        if not domain or domain in self._shared_domains:
            return None
        return self._abuse_hash(b"domain", domain)

    # -- issuing --------------------------------------------------------------------------------------------

    def issue_sync(
        self,
        offer: Offer,
        *,
        cart_key: str,
        contact_key: str,
        now: float,
        email: str | None = None,
        device: str | None = None,
    ) -> Offer | Refused:
        """``offer`` with a new code in ``code``, bound to ``contact_key`` and recorded for ``cart_key``; or
        :class:`Refused` when an abuse limit is full or the offer expired.

        Only ``"discount"`` and ``"free_shipping"`` offers get codes; other kinds, and an offer that carries a
        code already (a retried message), are returned unchanged, so calling this once per send is safe. The
        code expires at the offer's ``expires_at``, or ``policy.lifetime`` after ``now`` when it has none (the
        returned offer says which). ``email`` gives the domain the per-domain limit counts, ``device`` a device
        id for the per-device limit (not a device class such as ``"mobile"``); both are stored only as keyed
        hashes. Each call draws a new code: codes are unique per recovery, never shared.

        Raises :class:`ValueError` for an offer whose fields do not make a valid code (a discount with neither
        or both of ``percent`` and ``amount``, an ``amount`` without a ``currency``...).
        """
        if offer.kind not in ("discount", "free_shipping") or offer.code is not None:
            return offer
        expires_at = offer.expires_at if offer.expires_at is not None else now + self.policy.lifetime
        if not now < expires_at:
            return self._refuse(Refused(reason="expired", detail="the offer expired before its code was issued"))
        kind: CodeKind = "discount" if offer.kind == "discount" else "free_shipping"
        since = now - self.policy.period
        limits_by: dict[LimitBy, int | None] = {
            "contact": self.policy.per_contact, "domain": self.policy.per_domain, "device": self.policy.per_device
        }  # fmt: skip
        limits = [CodeLimit(by=by, most=most, since=since) for by, most in limits_by.items() if most is not None]
        for _ in range(_DRAWS):
            body = _draw(self.policy.length)
            record = CodeRecord(
                code_hash=self.code_hash(body),
                cart_key=cart_key,
                contact_key=contact_key,
                kind=kind,
                issued_at=now,
                expires_at=expires_at,
                percent=offer.percent,
                amount=offer.amount,
                currency=offer.currency,
                min_value=offer.min_value or 0,
                domain=self._domain(email),
                device=None if device is None else self._abuse_hash(b"device", device),
            )
            answer = self.store.issue_code(record, limits=limits)
            if answer == "issued":
                with self._lock:
                    self._issued += 1
                code = format_code(body, self.policy.prefix)
                return msgspec.structs.replace(offer, code=code, expires_at=expires_at)
            if answer != "duplicate":
                by = _LIMITS[answer]
                detail = (
                    f"{limits_by[by]} codes were issued to this {by} in the last {duration_text(self.policy.period)}, "
                    f"the most CodePolicy.per_{by} allows"
                )
                return self._refuse(Refused(reason=answer, detail=detail))
        raise StoreError(
            f"CodeBook: {_DRAWS} freshly drawn codes were all stored already; expected a new code to be unique "
            "(the random source is broken, or something else writes these hashes)"
        )

    def _refuse(self, refused: Refused) -> Refused:
        with self._lock:
            self._refused[refused.reason] += 1
        return refused

    async def issue(
        self,
        offer: Offer,
        *,
        cart_key: str,
        contact_key: str,
        now: float,
        email: str | None = None,
        device: str | None = None,
    ) -> Offer | Refused:
        """:meth:`issue_sync` in a worker thread."""
        call = functools.partial(
            self.issue_sync, offer, cart_key=cart_key, contact_key=contact_key, now=now, email=email, device=device
        )
        return await anyio.to_thread.run_sync(call)

    # -- redeeming ------------------------------------------------------------------------------------------

    def redeem_sync(
        self,
        code: str,
        *,
        customer: str,
        cart_value: int,
        currency: str | None,
        order_id: str,
        client_key: str,
        now: float,
    ) -> Redemption:
        """Redeem ``code``, as typed, for ``order_id``: see :class:`Redemption` for the answers.

        ``customer`` is the contact key the code was issued to (the customer id, or the ``session:<id>`` key of a
        shopper without an account); ``cart_value`` the order's value in minor units of ``currency``;
        ``client_key`` who is asking, for the rate limit (the client's IP address, say; counted per address, or
        per /64 for IPv6, see :func:`client_bucket`; stored only as a keyed hash). The redemption itself is one
        store transaction: of two orders racing for a code, one gets it. A code bound to another customer
        answers ``"unknown"``, as a code that does not exist does.

        The rate limit is checked before, and a failure recorded after, that transaction, so clients sending
        many guesses at once can each overshoot the budget by the requests in flight; against a 60-bit space,
        that changes nothing.
        """
        if not customer:
            raise ValueError("redeem: expected a non-empty `customer` (the contact key the code was issued to)")
        return self._redeem(
            code, [customer], cart_value=cart_value, currency=currency, order_id=order_id, client_key=client_key,
            now=now,
        )  # fmt: skip

    def _redeem(
        self,
        code: str,
        customers: list[str],
        *,
        cart_value: int,
        currency: str | None,
        order_id: str,
        client_key: str,
        now: float,
    ) -> Redemption:
        """Redeem ``code`` for whichever of ``customers`` (contact keys, tried in order) owns it: one guess."""
        if not order_id:
            raise ValueError("redeem: expected a non-empty `order_id`, got ''")
        if not client_key:
            raise ValueError("redeem: expected a non-empty `client_key` (such as the client's IP address), got ''")
        if not (is_int(cart_value) and cart_value >= 0):
            raise ValueError(f"redeem: expected `cart_value` in minor units >= 0, got {cart_value!r}")
        policy = self.policy
        client = self._abuse_hash(b"client", client_bucket(client_key))
        if self.store.count_attempts(client, now=now, window=policy.attempt_window) >= policy.attempts:
            _log.warning("code_guessing_limited", attempts=policy.attempts, window=policy.attempt_window)
            return self._count(Redemption(outcome="rate_limited"))
        body = parse_code(code, length=policy.length, prefix=policy.prefix)
        said = "unknown"  # what the store said, for the statistics: "not_yours" is answered as "unknown"
        if body is None:
            answer: Redemption = Redemption(outcome="unknown")
        else:
            code_hash = self.code_hash(body)
            for customer in customers:
                result = self.store.redeem_code(
                    code_hash, contact_key=customer, cart_value=cart_value, currency=currency, order_id=order_id,
                    now=now,
                )  # fmt: skip
                if result.outcome != "not_yours":
                    break
            said = result.outcome
            record = result.code
            if result.outcome == "valid" and record is not None:
                answer = Redemption(
                    outcome="valid",
                    discount=discount_for(record, cart_value),
                    kind=record.kind,
                    currency=currency,
                    cart_key=record.cart_key,
                )
            elif result.outcome == "below_minimum" and record is not None:
                answer = Redemption(outcome="below_minimum", min_value=record.min_value, currency=record.currency)
            elif result.outcome == "not_yours":
                answer = Redemption(outcome="unknown")  # the same words as for no code at all
            else:
                answer = Redemption(outcome=result.outcome)
        if said in _GUESSES:
            self.store.record_attempt(client, now=now, window=policy.attempt_window)
        return self._count(answer, said)

    def _count(self, redemption: Redemption, said: str | None = None) -> Redemption:
        with self._lock:
            # The shop's own counters may tell "not_yours" apart (codes passed around); the caller's answer not.
            self._redeemed["not_yours" if said == "not_yours" else redemption.outcome] += 1
        return redemption

    async def redeem(
        self,
        code: str,
        *,
        customer: str,
        cart_value: int,
        currency: str | None,
        order_id: str,
        client_key: str,
        now: float,
    ) -> Redemption:
        """:meth:`redeem_sync` in a worker thread."""
        call = functools.partial(
            self.redeem_sync, code, customer=customer, cart_value=cart_value, currency=currency, order_id=order_id,
            client_key=client_key, now=now,
        )  # fmt: skip
        return await anyio.to_thread.run_sync(call)

    def statistics(self) -> OfferStatistics:
        """Counters since the book was built; see :class:`OfferStatistics`."""
        with self._lock:
            return OfferStatistics(issued=self._issued, refused=dict(self._refused), redeemed=dict(self._redeemed))



# -- the checkout's one call ---------------------------------------------------------------------------------


def _now(clock: Clock | None) -> float:
    """``clock``'s time; the wall clock without one, or while an event-time clock has seen no event yet."""
    if clock is not None:
        moment = clock.now()
        if math.isfinite(moment):
            return moment
    return time.time()


def redeem(
    code: str,
    *,
    book: CodeBook,
    cart_value: int,
    currency: str | None,
    order_id: str,
    client: str,
    customer_id: str | None = None,
    session_id: str | None = None,
    now: float | None = None,
) -> Redemption:
    """Redeem ``code`` typed at checkout: ``valid``, ``expired``, ``already_used``, ``not_yours``... as
    :class:`Redemption` describes; rate-limited against guessing per ``client``.

    ``book`` is the :class:`CodeBook` that issued the code: ``engine.coupons``, or one the shop builds once per
    process on the engine's store with the same secret and policy (there is no global book: a process may serve
    several shops, and a book opened before a fork must not be shared by the children). ``cart_value`` is the
    order's value in integer minor units of ``currency``; ``order_id`` the order it is redeemed for (redeeming
    again for the same order answers ``valid`` again); ``client`` who is asking, for the rate limit (the
    client's IP address; stored only as a keyed hash); ``now`` defaults to the book's clock (the engine's, for
    ``engine.coupons``), else the wall clock.

    Whose code it is: a code is bound to the customer id of the shopper it was sent to, or, when that shopper
    had no account, to their session (``"session:<session_id>"``). Pass what the checkout knows: with both,
    the code is the shopper's if it is bound to either (a shopper who logged in after abandoning). A code bound
    to someone else answers ``"unknown"``, like no code at all; either counts as one guess against the client's
    budget, however many ids were tried.

    This blocks on the store: call it from synchronous code (a Django or Flask view); async code awaits
    ``book.redeem(...)`` instead. Raises :class:`ValueError` when neither ``customer_id`` nor ``session_id`` is
    given, or for an empty ``order_id``/``client`` or a ``cart_value`` that is not integer minor units >= 0.

    >>> from recoverkit.store import MemoryStore
    >>> book = CodeBook(MemoryStore(), "a secret of at least thirty-two bytes!!")
    >>> offer = book.issue_sync(Offer(kind="discount", name="10% off", percent=10, expires_at=1e12),
    ...                         cart_key="cart-1", contact_key="session:s1", now=0.0)
    >>> redeem(offer.code, book=book, customer_id="cust-7", session_id="s1", cart_value=5000, currency="EUR",
    ...        order_id="o-1", client="203.0.113.9").outcome
    'valid'
    """
    if not isinstance(book, CodeBook):
        raise TypeError(f"redeem: expected `book` to be the CodeBook that issued the code, got {type(book).__name__}")
    contacts = [key for key in (customer_id, None if not session_id else contact_key(session_id)) if key]
    if not contacts:
        raise ValueError("redeem: expected `customer_id` or `session_id` (whom the code was sent to), got neither")
    when = now if now is not None else _now(book.clock)
    return book._redeem(
        code, contacts, cart_value=cart_value, currency=currency, order_id=order_id, client_key=client, now=when
    )
