"""Signed cart-restore links: a URL in a recovery message that brings the shopper back to their cart.

:class:`RestoreLinks` builds ``https://shop.example/cart/restore?t=<token>`` from the base URL it was configured
with (never from a request's ``Host`` header, which whoever sends the request chooses) and checks the tokens
that come back. A token carries the cart key, when it was issued and when it expires, a random nonce (so that no
two links are alike) and, optionally, a keyed hash of the contact it was sent to; it is signed with
HMAC-SHA256 under a key derived from the configured secret and compared with :func:`hmac.compare_digest`.

A token is signed, not encrypted: whoever holds the link can read the cart key in it (base64 is no secret), and
can open the cart until the link expires. Links are therefore short-lived (``max_age``, a week by default), and
a cart key must not be something a shopper should not see (the shop's own cart id, or recoverkit's session id,
are fine). A link stays usable until it expires, however often it is opened: shoppers open the same e-mail on
a phone and then a laptop. What is worth money, the discount code, is single-use on its own
(:mod:`recoverkit.offers`).

A shop's view calls :meth:`RestoreLinks.restore_cart` with the token and a function that loads a cart by its
key, and answers a :class:`~recoverkit.errors.LinkError` with a friendly page (``error.reason`` says which).

Key rotation: construct with the new ``secret`` and the old one in ``previous_secrets``; links signed with
either are accepted, new links are signed with the new one. Drop the old secret once ``max_age`` has passed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import msgspec

# PARAMETER is re-exported: the restore views of integration and contrib read it from here.
from ._restore_url import PARAMETER as PARAMETER
from ._restore_url import check_base_url
from .errors import ConfigError, LinkError

if TYPE_CHECKING:
    from .clock import Clock
    from .config import LinksConfig

__all__ = ["DEFAULT_MAX_AGE", "MAX_TOKEN_LENGTH", "RestoreLinks", "RestoreToken"]

T = TypeVar("T")

#: How long a link works by default: a week, the life of a typical recovery flow.
DEFAULT_MAX_AGE: Final = 7 * 86_400.0
#: Longer tokens are refused as malformed before any work (a link's token is about 150 characters).
MAX_TOKEN_LENGTH: Final = 1024
_SECRET_BYTES: Final = 32
_NONCE_BYTES: Final = 12
_CONTACT_BYTES: Final = 16  # 128 bits: no two contacts of one shop share a hash
_VERSION: Final = 1
_MAX_AGE_LIMIT: Final = 90 * 86_400.0
_B64: Final = re.compile(r"[A-Za-z0-9_-]+")


class RestoreToken(msgspec.Struct, frozen=True, kw_only=True):
    """What a verified token says: the cart to restore, when the link was issued and when it expires (epoch
    seconds), its ``nonce`` (URL-safe base64, unique per link) and ``contact_hash`` (hex, when the link was built
    for a contact; see :meth:`RestoreLinks.is_for`)."""

    cart_key: str
    issued_at: int
    expires_at: int
    nonce: str
    contact_hash: str | None = None


class _Payload(msgspec.Struct, frozen=True, array_like=True):
    """The signed part of a token, as a MessagePack array: compact, and decoded with its types checked."""

    version: int
    cart_key: str
    issued_at: int
    expires_at: int
    nonce: bytes
    contact: bytes | None


_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(_Payload)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _secret(name: str, secret: bytes | str) -> bytes:
    raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(raw) < _SECRET_BYTES:
        # The length only: a secret never appears in a message.
        raise ConfigError(
            f"RestoreLinks: expected `{name}` of at least {_SECRET_BYTES} bytes, got {len(raw)} bytes; make one "
            "with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return raw


def _key(secret: bytes, purpose: bytes) -> bytes:
    # One secret, separate keys: a link signature is never valid as anything else recoverkit signs or hashes.
    return hmac.new(secret, b"recoverkit/links/" + purpose, hashlib.sha256).digest()


class RestoreLinks:
    """Builds and verifies signed cart-restore links; see the module docstring.

    ``secret`` (at least 32 bytes, the same in every process that builds or verifies links) keys the
    signatures; ``previous_secrets`` are still accepted when verifying (key rotation). ``base_url`` is the
    absolute ``https://`` URL of the shop's restore view (``http://`` only for localhost); its query parameters
    are kept and ``t=<token>`` added. ``max_age`` is how long a link works, in seconds (a minute to 90 days);
    lowering it also shortens the links already sent. Bad values raise :class:`~recoverkit.errors.ConfigError`.

    >>> links = RestoreLinks("a secret of at least thirty-two bytes!!", "https://shop.example/cart/restore")
    >>> url = links.build("cart-42", now=1_767_225_600)
    >>> url.startswith("https://shop.example/cart/restore?t=")
    True
    >>> links.restore_cart(url.partition("?t=")[2], lambda cart_key: f"cart {cart_key}", now=1_767_225_660)
    'cart cart-42'
    """

    def __init__(
        self,
        secret: bytes | str,
        base_url: str,
        *,
        max_age: float = DEFAULT_MAX_AGE,
        previous_secrets: Sequence[bytes | str] = (),
        clock: Clock | None = None,
    ) -> None:
        raw = _secret("secret", secret)
        if isinstance(previous_secrets, (str, bytes)):  # one secret would read as a sequence of characters
            raise ConfigError("RestoreLinks: expected `previous_secrets` to be a list of secrets, got one secret")
        older = [_secret("previous_secrets", old) for old in previous_secrets]
        check_base_url(base_url)
        if isinstance(max_age, bool) or not isinstance(max_age, int | float) or not 60 <= max_age <= _MAX_AGE_LIMIT:
            raise ConfigError(f"RestoreLinks: expected `max_age` to be seconds from 60 to 90 days, got {max_age!r}")
        self.base_url = base_url
        self.max_age = float(max_age)
        #: Whose time ``now=None`` means: the engine's clock for the links an engine builds, else the wall clock.
        self.clock = clock
        self._sign_key = _key(raw, b"sign")
        self._verify_keys = [self._sign_key, *(_key(old, b"sign") for old in older)]
        self._contact_key = _key(raw, b"contact")
        self._contact_keys = [self._contact_key, *(_key(old, b"contact") for old in older)]

    @classmethod
    def from_config(cls, settings: LinksConfig, *, clock: Clock | None = None) -> RestoreLinks | None:
        """The links ``[links]`` of a configuration describes (``None`` without a ``base_url``), keyed by the
        secret in the environment variable ``settings.secret_env``; a missing or short secret is a
        :class:`~recoverkit.errors.ConfigError`, raised at start-up."""
        if settings.base_url is None:
            return None
        secret = os.environ.get(settings.secret_env, "")
        if len(secret.encode()) < 32:
            raise ConfigError(
                f"links.base_url is set but the environment variable {settings.secret_env} "
                f"{'is empty' if not secret else 'is shorter than 32 bytes'}; expected a random secret of at least "
                "32 bytes, the same in every process that builds or verifies links"
            )
        return cls(secret, settings.base_url, max_age=settings.max_age, clock=clock)

    def __repr__(self) -> str:
        return f"RestoreLinks(base_url={self.base_url!r}, max_age={self.max_age!r})"  # never the secret

    # -- building -------------------------------------------------------------------------------------------

    def token(self, cart_key: str, *, contact_key: str | None = None, now: float | None = None) -> str:
        """A signed token for ``cart_key`` (non-empty), issued at ``now`` (default: :meth:`now`) and valid
        ``max_age`` seconds; with ``contact_key``, a keyed hash of it goes along (see :meth:`is_for`)."""
        if not cart_key:
            raise ValueError("RestoreLinks.token: expected a non-empty `cart_key`, got ''")
        issued = math.floor(self.now() if now is None else now)
        payload = _Payload(
            version=_VERSION,
            cart_key=cart_key,
            issued_at=issued,
            expires_at=issued + math.ceil(self.max_age),
            nonce=secrets.token_bytes(_NONCE_BYTES),
            contact=None if contact_key is None else self._contact_hash(self._contact_key, contact_key),
        )
        try:
            body = _b64encode(_ENCODER.encode(payload))
        except UnicodeEncodeError as exc:  # a lone surrogate, from text decoded without checks
            raise ValueError(
                "RestoreLinks.token: expected `cart_key` and `contact_key` to be valid Unicode text, got text with a "
                "lone surrogate"
            ) from exc
        return f"{body}.{self._signature(self._sign_key, body)}"

    def build(self, cart_key: str, *, contact_key: str | None = None, now: float | None = None) -> str:
        """The restore URL for ``cart_key``: the configured ``base_url`` with ``t=<token>`` (see :meth:`token`).

        Only ``base_url`` is used to make it: there is deliberately no way to pass a host.
        """
        parts = urlsplit(self.base_url)
        # Appended to the query as configured, not re-encoded: the shop's own parameters stay byte for byte.
        # A token is URL-safe base64 and a dot, which need no escaping.
        added = f"{PARAMETER}={self.token(cart_key, contact_key=contact_key, now=now)}"
        return urlunsplit(parts._replace(query=f"{parts.query}&{added}" if parts.query else added))

    # -- verifying ------------------------------------------------------------------------------------------

    def verify(self, token: str, *, now: float | None = None) -> RestoreToken:
        """What ``token`` says, if it was signed with this secret (or a previous one) and has not expired at
        ``now`` (default: :meth:`now`).

        Raises :class:`~recoverkit.errors.LinkError` with ``reason`` ``"malformed"`` (not a token of this
        format), ``"tampered"`` (a signature that does not match) or ``"expired"`` (at or after its expiry, or
        older than ``max_age``). The signature is checked before anything in the token is believed, and the
        error never includes the token.
        """
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise LinkError(
                f"restore link token is malformed: expected a string of at most {MAX_TOKEN_LENGTH} characters",
                reason="malformed",
            )
        body, dot, signature = token.partition(".")
        if not dot or not _B64.fullmatch(body) or not _B64.fullmatch(signature):
            raise LinkError(
                "restore link token is malformed: expected two URL-safe base64 parts joined by '.'",
                reason="malformed",
            )
        # Compared as text: a non-canonical base64 spelling of the right bytes is refused too, so every
        # accepted token has exactly one spelling.
        if not any(hmac.compare_digest(self._signature(key, body), signature) for key in self._verify_keys):
            raise LinkError(
                "restore link token was tampered with: its signature does not match (edited, forged, or signed "
                "with a secret no longer configured)",
                reason="tampered",
            )
        try:
            payload = _DECODER.decode(_b64decode(body))
        except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
            raise LinkError(
                "restore link token is malformed: it is signed but its content cannot be read", reason="malformed"
            ) from exc
        if payload.version != _VERSION or not payload.cart_key:
            raise LinkError(
                f"restore link token is malformed: expected version {_VERSION} with a cart key, got version "
                f"{payload.version}",
                reason="malformed",
            )
        moment = self.now() if now is None else now
        until = min(payload.expires_at, payload.issued_at + self.max_age)
        if not moment < until:
            raise LinkError(
                f"restore link expired: it was valid until {until:.0f} (epoch seconds), it is now {moment:.0f}",
                reason="expired",
            )
        return RestoreToken(
            cart_key=payload.cart_key,
            issued_at=payload.issued_at,
            expires_at=payload.expires_at,
            nonce=_b64encode(payload.nonce),
            contact_hash=None if payload.contact is None else payload.contact.hex(),
        )

    def restore_cart(self, token: str, load_cart: Callable[[str], T], *, now: float | None = None) -> T:
        """Verify ``token`` (see :meth:`verify`) and return ``load_cart(cart_key)``: what a shop's view calls.

        ``load_cart`` is called only for a valid token; a :class:`~recoverkit.errors.LinkError` reaches the
        caller before it, for the view to answer with a page that says the link has expired or is broken.
        """
        return load_cart(self.verify(token, now=now).cart_key)

    def is_for(self, restored: RestoreToken, contact_key: str) -> bool:
        """Whether ``restored`` (from :meth:`verify`) was built for ``contact_key``; ``False`` when it was built
        for no contact. Lets a view check that a logged-in customer opens their own link."""
        if restored.contact_hash is None:
            return False
        return any(
            hmac.compare_digest(self._contact_hash(key, contact_key).hex(), restored.contact_hash)
            for key in self._contact_keys
        )

    def now(self) -> float:
        """The time links are built and checked at when no ``now`` is given: the ``clock`` passed in (the
        engine's, for ``engine.links``: a link built under a test's ``FakeClock`` is checked on it), else, or
        while an event-time clock has seen no event yet, the wall clock."""
        if self.clock is not None:
            moment = self.clock.now()
            if math.isfinite(moment):
                return moment
        return time.time()

    # -- helpers --------------------------------------------------------------------------------------------

    @staticmethod
    def _signature(key: bytes, body: str) -> str:
        return _b64encode(hmac.new(key, body.encode("ascii"), hashlib.sha256).digest())

    @staticmethod
    def _contact_hash(key: bytes, contact_key: str) -> bytes:
        return hmac.new(key, contact_key.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()[:_CONTACT_BYTES]
