"""A channel for SMS and push providers with an HTTP API: render the message from a template, then post it.

The request
-----------
The message is rendered by :class:`~recoverkit.templates.Templates` from ``message.template`` as kind
``"sms"`` (``<name>.sms.txt``) or ``"push"`` (``<name>.push.txt``). By default the channel then sends
``POST <url>`` with the JSON body ``{"to": ..., "body": <rendered text>, "key": <message.key>}``, where
``to`` is the recipient's phone number (sms) or customer id (push, the id the provider knows the device
by). Providers that want something else get it from a ``build`` function: it takes the message and the
rendered text and returns a :class:`RequestSpec` (JSON, form fields or raw bytes, extra headers, query
parameters, method); ``examples/twilio_like_sms.py`` builds a form-encoded SMS request.

Every request carries ``Idempotency-Key: <message.key>`` (the header name is configurable, or ``None`` for
providers that reject unknown headers): the same on every retry, so a provider that deduplicates drops a
repeat after a timeout.

How the answer is read
----------------------
- 2xx: delivered.
- A status in ``retry_statuses`` (default 408, 425, 429 and every 5xx), a timeout, or a failure before any
  answer: :class:`~recoverkit.errors.TransientDeliveryError`. A ``Retry-After`` header is quoted in the
  error (``retry after 30 s``); the engine's own backoff decides when the retry happens.
- Any other status (other 4xx: a bad number, bad credentials; 3xx, since redirects are not followed):
  :class:`~recoverkit.errors.PermanentDeliveryError`.
- A missing address, a template that is missing or fails to render, and a ``build`` function that raises
  or returns something else than a :class:`RequestSpec`: :class:`~recoverkit.errors.PermanentDeliveryError`
  (a retry would do the same). A ``build`` that raises a :class:`~recoverkit.errors.DeliveryError` itself
  decides.

Error messages name the host, the status and the message key, and quote the start of the provider's answer
with phone numbers and email addresses masked; never the full URL (which may hold an account id or token)
nor the recipient's number.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from .._optional import deferred, require
from ..errors import ConfigError, DeliveryError, PermanentDeliveryError, TransientDeliveryError
from ..templates import Rendered, TemplateError, Templates
from ._retry import retry_after
from .base import Message

# The webhook adapter's URL helpers: what part of a URL is safe to print is the same question here.
from .webhook import _authority, _redact, _user_agent

if TYPE_CHECKING:
    import httpx
else:  # the 'http' extra: imported when a channel is built, not with recoverkit (see recoverkit._optional)
    httpx = deferred("httpx", extra="http", feature="HttpChannel")

__all__ = ["HttpChannel", "RequestSpec"]

_encoder = msgspec.json.Encoder()
#: Not now rather than not this: request timeout, too early, rate limited, and the server's own failures.
_RETRY_STATUSES = frozenset({408, 425, 429, *range(500, 600)})
#: Set by the channel or by httpx from the body; a header of the shop's must not contradict them.
_RESERVED_HEADERS = frozenset({"content-length", "transfer-encoding", "host"})
#: What a provider's answer may quote that must not reach a log: an address, a phone number.
_PERSONAL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+|\+?\d[\d ()./-]{5,}\d")
#: How much of a provider's answer an error message quotes.
_ANSWER_WIDTH = 200


class RequestSpec(msgspec.Struct, frozen=True, kw_only=True):
    """The request an :class:`HttpChannel` sends for one message, as its ``build`` function describes it.

    The body is ``json`` (any value msgspec encodes) when given, else ``form`` (sent
    ``application/x-www-form-urlencoded``), else ``content`` (raw bytes, with ``content_type``), else empty.
    ``headers`` are added to the channel's own (they may replace ``User-Agent``, ``Authorization`` and
    ``Content-Type``, not the idempotency header); ``params`` become the query string.
    """

    json: Any = None
    form: Mapping[str, str] | None = None
    content: bytes | None = None
    content_type: str | None = None
    headers: Mapping[str, str] = msgspec.field(default_factory=dict)
    params: Mapping[str, str] | None = None
    method: Literal["POST", "PUT", "PATCH"] = "POST"


#: A provider's request format: the message and its rendered text in, the request out.
Build = Callable[[Message, Rendered], RequestSpec]


class HttpChannel:
    """Send each message to ``url`` as an SMS or push request; see the module docstring.

    - ``kind``: ``"sms"`` (default) or ``"push"``: which template file and which address to use.
    - ``build``: the provider's request format (default: JSON ``to``, ``body``, ``key``).
    - ``templates``: where texts come from (default: recoverkit's built-in templates).
    - ``headers`` are added to every request; ``auth`` is an ``httpx.Auth`` or a ``(user, password)`` pair for
      HTTP basic authentication.
    - ``timeout`` (seconds) bounds each request, connect to last byte.
    - ``client``: an ``httpx.AsyncClient`` to share pools and TLS settings; never closed by the channel. Without
      one, the channel creates its own on the first send (inside the running event loop) and closes it in
      :meth:`aclose`.
    - ``retry_statuses``: statuses that are transient (default 408, 425, 429 and 5xx); other non-2xx are
      permanent.
    - ``idempotency_header``: the header carrying ``message.key`` (``None``: none).

    Bad options raise :class:`~recoverkit.errors.ConfigError` naming the value (with the URL's path, query
    and credentials elided). After :meth:`aclose`, :meth:`send` raises
    :class:`~recoverkit.errors.PermanentDeliveryError`.
    """

    def __init__(
        self,
        url: str,
        *,
        kind: Literal["sms", "push"] = "sms",
        build: Build | None = None,
        templates: Templates | None = None,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
        retry_statuses: Collection[int] | None = None,
        idempotency_header: str | None = "Idempotency-Key",
    ) -> None:
        require("httpx", extra="http", feature="HttpChannel")  # at start-up, not at the first send
        self._url = _check_url(url)
        self._where = _authority(url)
        if kind not in ("sms", "push"):
            raise ConfigError(f"HttpChannel kind must be 'sms' or 'push', got {kind!r}")
        self._kind: Literal["sms", "push"] = kind
        if build is not None and not callable(build):
            raise ConfigError(f"HttpChannel build must be a function (message, rendered) -> RequestSpec, got "
                              f"{type(build).__name__}")
        self._build = build if build is not None else self._default_build
        self._templates = templates if templates is not None else Templates()
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
            raise ConfigError(f"HttpChannel timeout must be a positive number of seconds, got {timeout!r}")
        self._timeout = float(timeout)
        if idempotency_header is not None and not _is_token(idempotency_header):
            raise ConfigError(f"HttpChannel idempotency_header must be a header name or None, got "
                              f"{idempotency_header!r}")
        self._idempotency_header = idempotency_header
        self._headers = _check_headers("HttpChannel headers", headers, idempotency_header)
        self._headers.setdefault("User-Agent", _user_agent())
        self._retry_statuses = _check_statuses(retry_statuses)
        self._auth = auth
        self._client = client
        self._owns_client = client is None
        self._closed = False

    def check_templates(self, names: Iterable[str]) -> None:
        """Raise :class:`~recoverkit.errors.ConfigError` unless every template in ``names`` renders (the engine
        calls this at start-up with the templates its flows use on this channel)."""
        self._templates.check(names, kind=self._kind)

    def __repr__(self) -> str:
        return f"HttpChannel(host={self._where!r}, kind={self._kind!r})"

    async def send(self, message: Message) -> None:
        """Render ``message``, build its request and send it; return on 2xx, raise otherwise."""
        key = message.key
        if self._closed:
            raise PermanentDeliveryError(f"HttpChannel for {self._where} is closed; message {key!r} not sent")
        try:
            rendered = self._templates.render(message.template, message, kind=self._kind)
        except TemplateError as exc:
            raise PermanentDeliveryError(f"message {key!r} not sent by HttpChannel for {self._where}: {exc}") from exc
        spec = self._spec(message, rendered)
        headers = {**self._headers}
        try:
            headers.update(_check_headers("RequestSpec headers", spec.headers, self._idempotency_header))
        except ConfigError as exc:
            raise PermanentDeliveryError(f"build for HttpChannel for {self._where}, message {key!r}: {exc}") from exc
        if self._idempotency_header is not None:
            headers[self._idempotency_header] = key
        options = _body(spec, headers)
        if self._auth is not None:  # else the client's own auth, if it has one
            options["auth"] = self._auth
        if self._client is None:
            # Created here rather than in __init__ so it binds to the loop that runs the engine, and so a
            # channel built before a fork does not carry a pool of the parent's sockets into the child.
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        try:
            response = await self._client.request(
                spec.method,
                self._url,
                params=spec.params,
                headers=headers,
                timeout=self._timeout,
                **options,
            )
        except httpx.TimeoutException as exc:
            raise TransientDeliveryError(
                f"{self._kind} request to {self._where} for message {key!r} timed out after {self._timeout:g}s "
                f"({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise TransientDeliveryError(
                f"{self._kind} request to {self._where} for message {key!r} failed before an answer: "
                f"{type(exc).__name__}: {self._scrub(str(exc), message) or 'no detail'}"
            ) from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        answer = self._scrub(response.text[:_ANSWER_WIDTH * 2], message)[:_ANSWER_WIDTH].strip()
        said = f" ({' '.join(answer.split())})" if answer else ""
        if status in self._retry_statuses:
            after = retry_after(response.headers.get("Retry-After"))
            wait = f"; retry after {after:g} s (Retry-After)" if after is not None else "; a later retry may succeed"
            raise TransientDeliveryError(
                f"{self._kind} provider at {self._where} answered HTTP {status} for message {key!r}{said}{wait}",
                retry_after=after,
            )
        raise PermanentDeliveryError(
            f"{self._kind} provider at {self._where} answered HTTP {status} for message {key!r}{said}; "
            f"expected 2xx, and a {status} is not retried"
        )

    async def aclose(self) -> None:
        """Close the client if the channel created it. Idempotent; later sends raise."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()

    def _default_build(self, message: Message, rendered: Rendered) -> RequestSpec:
        recipient = message.recipient
        to = recipient.phone if self._kind == "sms" else recipient.customer_id
        if not to:
            field = "phone" if self._kind == "sms" else "customer_id"
            raise PermanentDeliveryError(
                f"message {message.key!r} has no recipient {field}; the {self._kind} channel needs "
                f"Recipient.{field}"
            )
        return RequestSpec(json={"to": to, "body": rendered.text, "key": message.key})

    def _spec(self, message: Message, rendered: Rendered) -> RequestSpec:
        key = message.key
        try:
            spec = self._build(message, rendered)
        except DeliveryError:
            raise
        except Exception as exc:  # the shop's function: a bug there fails this message, named, not the engine
            raise PermanentDeliveryError(
                f"build function of HttpChannel for {self._where} failed for message {key!r}: "
                f"{type(exc).__name__}: {self._scrub(str(exc), message)}"
            ) from exc
        if not isinstance(spec, RequestSpec):
            raise PermanentDeliveryError(
                f"build function of HttpChannel for {self._where} returned {type(spec).__name__} for message "
                f"{key!r}; expected a RequestSpec"
            )
        return spec

    def _scrub(self, text: str, message: Message) -> str:
        for secret in (message.recipient.phone, message.recipient.email, self._url):
            if secret:
                text = text.replace(secret, "***")
        return _PERSONAL.sub("***", text)


def _body(spec: RequestSpec, headers: dict[str, str]) -> dict[str, Any]:
    """The ``httpx`` keyword for ``spec``'s body; sets Content-Type unless the spec's headers did."""
    has_type = any(name.lower() == "content-type" for name in headers)
    if spec.json is not None:
        if not has_type:
            headers["Content-Type"] = "application/json"
        return {"content": _encoder.encode(spec.json)}
    if spec.form is not None:
        return {"data": dict(spec.form)}
    if spec.content is not None:
        if spec.content_type is not None and not has_type:
            headers["Content-Type"] = spec.content_type
        return {"content": spec.content}
    return {}


def _is_token(name: object) -> bool:
    return isinstance(name, str) and re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name) is not None


def _check_url(url: object) -> str:
    expected = "expected an absolute http:// or https:// URL with a host, like 'https://api.sms.example/messages'"
    if not isinstance(url, str):
        raise ConfigError(f"HttpChannel url must be a str, got {type(url).__name__}; {expected}")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"HttpChannel url {_redact(url)!r} is not a valid URL ({exc}); {expected}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"HttpChannel url {_redact(url)!r} has scheme {parsed.scheme!r} and host {parsed.host!r}; {expected}"
        )
    return url


def _check_headers(what: str, headers: Mapping[str, str] | None, idempotency: str | None) -> dict[str, str]:
    reserved = _RESERVED_HEADERS | ({idempotency.lower()} if idempotency else set())
    checked: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not _is_token(name) or not isinstance(value, str) or "\r" in value or "\n" in value:
            raise ConfigError(f"{what} must map header names to one-line str values, got {name!r}: "
                              f"{type(value).__name__}")
        if name.lower() in reserved:
            raise ConfigError(f"{what} may not set {name!r}: the channel or httpx sets it on every request")
        checked[name] = value
    return checked


def _check_statuses(statuses: Collection[int] | None) -> frozenset[int]:
    if statuses is None:
        return _RETRY_STATUSES
    checked = frozenset(statuses)
    bad = sorted((s for s in checked if isinstance(s, bool) or not isinstance(s, int) or not 300 <= s < 600), key=str)
    if bad:
        raise ConfigError(f"HttpChannel retry_statuses must be HTTP statuses from 300 to 599, got {bad[0]!r}")
    return checked
