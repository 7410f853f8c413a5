"""A channel that POSTs each message as JSON to an HTTP endpoint (the shop's own service or a provider's).

The request
-----------
``POST <url>`` with the body a :class:`~recoverkit.channels.Message` encoded by msgspec (every field, the
same JSON as a :class:`~recoverkit.channels.JsonLinesChannel` line) and these headers:

- ``Content-Type: application/json``
- ``Idempotency-Key: <message.key>``: the same on every retry of a message, so the receiver can drop
  duplicates (a retry after a timeout may repeat a request the receiver did process).
- ``User-Agent: recoverkit/<version>``
- ``Recoverkit-Signature: t=<unix seconds>,v1=<hex>`` when the channel has a ``secret``: ``v1`` is the
  HMAC-SHA256, keyed with the secret, of ``f"{t}.".encode() + body``.

How the answer is read
----------------------
- 2xx: delivered.
- 408, 425, 429 and 5xx, a timeout, or a failure before any answer (connection refused, reset, DNS):
  :class:`~recoverkit.errors.TransientDeliveryError`; the engine retries with backoff, and no sooner than a
  ``Retry-After`` header asks (seconds or an HTTP date).
- Anything else (other 4xx, and 3xx: redirects are not followed, since re-sending a POST elsewhere is
  the receiver's decision to document, not ours to guess): :class:`~recoverkit.errors.PermanentDeliveryError`.

Error messages name the host, the status and the message key, never the full URL: webhook URLs often carry
a token in the query string or the path.

Verifying the signature
-----------------------
On the receiving side, check the signature over the raw body bytes before parsing them, compare in constant
time, and reject old timestamps so a captured request cannot be replayed later::

    import hashlib, hmac, time

    def verify(secret: bytes, header: str, body: bytes, tolerance: float = 300) -> bool:
        fields = dict(part.partition("=")[::2] for part in header.split(","))
        timestamp = fields.get("t", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
            return False
        expected = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, fields.get("v1", ""))

then deduplicate on ``Idempotency-Key``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import msgspec

from .._optional import deferred, require
from ..errors import ConfigError, PermanentDeliveryError, TransientDeliveryError
from ._retry import retry_after
from .base import Message

if TYPE_CHECKING:
    import httpx
else:  # the 'http' extra: imported when a channel is built, not with recoverkit (see recoverkit._optional)
    httpx = deferred("httpx", extra="http", feature="WebhookChannel")

__all__ = ["WebhookChannel"]


@functools.cache
def _user_agent() -> str:
    # Read when the first channel is built, not at import: importlib.metadata pulls in email, zipfile and csv,
    # which would add tens of milliseconds to `import recoverkit` for the sake of a header.
    from importlib import metadata

    try:
        version = metadata.version("recoverkit")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        version = "0"
    return f"recoverkit/{version}"

_encoder = msgspec.json.Encoder()
# Statuses that say "not now" rather than "not this": request timeout, too early, rate limited. 5xx are
# checked by range.
_TRANSIENT_STATUSES = frozenset({408, 425, 429})
# Set by the channel from the message and the secret; letting `headers=` override them would break
# deduplication or signatures without anyone noticing.
_RESERVED_HEADERS = frozenset({"content-type", "content-length", "idempotency-key", "recoverkit-signature"})


class WebhookChannel:
    """POST each message to ``url`` as JSON; see the module docstring for the request and its outcomes.

    - ``headers`` are added to every request (an ``Authorization`` header, say); they may replace
      ``User-Agent`` but not the headers the channel sets itself.
    - ``timeout`` (seconds) bounds each request, connect to last byte, whether the client is the channel's
      or yours.
    - ``client``: an ``httpx.AsyncClient`` to share connection pools, proxies and TLS settings with the
      host. The channel never closes a client it was given. Without one, the channel creates its own on the
      first send (inside the running event loop) and closes it in :meth:`aclose`.
    - ``secret`` turns on the ``Recoverkit-Signature`` header.

    The URL, headers, timeout and secret are checked here and raise :class:`~recoverkit.errors.ConfigError`
    naming the bad value (with the URL's path, query and credentials elided). After :meth:`aclose`,
    :meth:`send` raises :class:`~recoverkit.errors.PermanentDeliveryError`.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
        secret: str | bytes | None = None,
    ) -> None:
        require("httpx", extra="http", feature="WebhookChannel")  # at start-up, not at the first send
        self._url = _check_url(url)
        self._where = _authority(url)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
            raise ConfigError(f"WebhookChannel timeout must be a positive number of seconds, got {timeout!r}")
        self._timeout = float(timeout)
        self._headers = _check_headers(headers)
        self._secret = _check_secret(secret)
        self._client = client
        self._owns_client = client is None
        self._closed = False

    def __repr__(self) -> str:
        return f"WebhookChannel(host={self._where!r})"

    async def send(self, message: Message) -> None:
        """POST ``message``; return on 2xx, raise a :class:`~recoverkit.errors.DeliveryError` otherwise."""
        key = message.key
        if self._closed:
            raise PermanentDeliveryError(
                f"WebhookChannel for {self._where} is closed; message {key!r} not sent"
            )
        body = _encoder.encode(message)
        headers = {**self._headers, "Content-Type": "application/json", "Idempotency-Key": key}
        if self._secret is not None:
            headers["Recoverkit-Signature"] = _sign(self._secret, int(time.time()), body)
        if self._client is None:
            # Created here rather than in __init__ so it binds to the loop that runs the engine, and so a
            # channel built before a fork does not carry a pool of the parent's sockets into the child.
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        try:
            response = await self._client.post(
                self._url, content=body, headers=headers, timeout=self._timeout
            )
        except httpx.TimeoutException as exc:
            raise TransientDeliveryError(
                f"webhook POST to {self._where} for message {key!r} timed out after {self._timeout:g}s "
                f"({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise TransientDeliveryError(
                f"webhook POST to {self._where} for message {key!r} failed before an answer: "
                f"{type(exc).__name__}: {self._scrub(str(exc)) or 'no detail'}"
            ) from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in _TRANSIENT_STATUSES or 500 <= status < 600:
            after = retry_after(response.headers.get("Retry-After"))
            wait = f"retry after {after:g} s (Retry-After)" if after is not None else "a later retry may succeed"
            raise TransientDeliveryError(
                f"webhook at {self._where} answered HTTP {status} for message {key!r}; {wait}", retry_after=after
            )
        raise PermanentDeliveryError(
            f"webhook at {self._where} answered HTTP {status} for message {key!r}; expected 2xx, "
            f"and a {status} is not retried"
        )

    async def aclose(self) -> None:
        """Close the client if the channel created it. Idempotent; later sends raise."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()

    def _scrub(self, text: str) -> str:
        # httpx's messages do not normally quote the URL, but a transport's might; drop anything secret.
        url = httpx.URL(self._url)
        for secret in (
            self._url,
            url.query.decode("ascii", "replace"),
            url.userinfo.decode("ascii", "replace"),
        ):
            if secret:
                text = text.replace(secret, "<redacted>")
        return text


def _sign(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _split(url: str) -> tuple[str, str, bool]:
    """``url`` as (scheme prefix, host and port without credentials, whether anything follows them)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        rest = url
    authority = rest
    for stop in "/?#":
        authority = authority.partition(stop)[0]
    return (f"{scheme}://" if sep else ""), authority.rpartition("@")[2], len(rest) > len(authority)


def _authority(url: str) -> str:
    """``url``'s host and port: the part of a webhook URL that is safe to print."""
    return _split(url)[1]


def _redact(url: str) -> str:
    """``url`` with credentials, path, query and fragment elided, for error messages."""
    prefix, authority, has_tail = _split(url)
    return f"{prefix}{authority}{'/...' if has_tail else ''}"


def _check_url(url: object) -> str:
    expected = (
        "expected an absolute http:// or https:// URL with a host, like 'https://hooks.example.com/cart'"
    )
    if not isinstance(url, str):
        raise ConfigError(f"WebhookChannel url must be a str, got {type(url).__name__}; {expected}")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigError(
            f"WebhookChannel url {_redact(url)!r} is not a valid URL ({exc}); {expected}"
        ) from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"WebhookChannel url {_redact(url)!r} has scheme {parsed.scheme!r} and host {parsed.host!r}; "
            f"{expected}"
        )
    return url


def _check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    checked = {"User-Agent": _user_agent()}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ConfigError(
                f"WebhookChannel headers must map str to str, got {name!r}: {type(value).__name__}"
            )
        if name.lower() in _RESERVED_HEADERS:
            raise ConfigError(
                f"WebhookChannel headers may not set {name!r}: the channel sets it on every request"
            )
        if name.lower() == "user-agent":
            del checked["User-Agent"]
        checked[name] = value
    return checked


def _check_secret(secret: str | bytes | None) -> bytes | None:
    if secret is None:
        return None
    if isinstance(secret, str):
        secret = secret.encode()
    if not isinstance(secret, bytes) or not secret:
        raise ConfigError(
            "WebhookChannel secret must be a non-empty str or bytes; got an empty or other value"
        )
    return secret
