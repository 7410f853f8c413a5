"""The HTTP plumbing the platform adapters share (ad audiences, WhatsApp, Messenger): one JSON request, read.

:class:`JsonApi` owns an ``httpx.AsyncClient`` (made on the first request, inside the running loop, so that a
channel built before a fork carries no sockets into the child), sends one request with the access token as a
``Bearer`` header (never in the URL, which proxies and access logs keep), and returns the status, the JSON
answer and the headers. A timeout or a failure before any answer is a
:class:`~recoverkit.errors.TransientDeliveryError`; reading the answer's meaning is each platform's business.
Every text it puts in an error has the token and anything that looks like an address or phone number masked.
"""

from __future__ import annotations

import math
import re
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from .._optional import deferred, require
from ..errors import ConfigError, PermanentDeliveryError, TransientDeliveryError
from .webhook import _authority, _redact, _user_agent

if TYPE_CHECKING:
    import httpx
else:  # the 'http' extra: imported when a channel is built, not with recoverkit (see recoverkit._optional)
    httpx = deferred("httpx", extra="http", feature="the ad audience and messenger channels")

__all__ = ["Answer", "JsonApi", "Token", "check_text", "check_token", "scrub"]

#: An access token, or a function (sync or async) that returns the current one: OAuth tokens that expire
#: (Google's last an hour) are refreshed by the shop's own code, called before every request.
Token = str | Callable[[], str | Awaitable[str]]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()
#: What a platform's answer may quote that must not reach a log: an address, a phone number, a 64-hex hash.
_PERSONAL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+|\+?\d[\d ()./-]{5,}\d|\b[0-9a-f]{64}\b")
#: How much of an answer an error message quotes.
ANSWER_WIDTH = 200


class Answer(NamedTuple):
    status: int
    body: Any  # the decoded JSON, or None when the answer was not JSON
    text: str  # the start of the answer, scrubbed, for error messages
    headers: Mapping[str, str]


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with each of ``secrets`` and anything that looks like personal data masked, on one line."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return " ".join(_PERSONAL.sub("***", text).split())


def check_text(owner: str, name: str, value: object, *, secret: bool = False) -> str:
    """``value`` if it is a non-empty one-line str, else a :class:`ConfigError` naming ``owner``'s ``name``."""
    if not isinstance(value, str) or not value.strip() or any(c in value for c in "\r\n"):
        shown = "a value" if secret and isinstance(value, str) else repr(value)
        raise ConfigError(f"{owner} {name} must be a non-empty one-line str, got {shown}")
    return value


def check_token(owner: str, token: object) -> Token:
    if callable(token):
        return token  # checked when called: it must return a str
    return check_text(owner, "access_token", token, secret=True)


def check_base_url(owner: str, url: object, example: str) -> str:
    expected = f"expected an absolute http:// or https:// URL with a host, like {example!r}"
    if not isinstance(url, str):
        raise ConfigError(f"{owner} base_url must be a str, got {type(url).__name__}; {expected}")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"{owner} base_url {_redact(url)!r} is not a valid URL ({exc}); {expected}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.query:
        raise ConfigError(f"{owner} base_url {_redact(url)!r} has scheme {parsed.scheme!r}, host {parsed.host!r} "
                          f"or a query; {expected}")
    return url.rstrip("/")


def check_timeout(owner: str, timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise ConfigError(f"{owner} timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


class JsonApi:
    """One platform's HTTP API at ``base_url``, authenticated with ``token``; see the module docstring."""

    def __init__(
        self,
        owner: str,
        base_url: str,
        token: Token,
        *,
        timeout: float,
        client: httpx.AsyncClient | None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        require("httpx", extra="http", feature=owner)
        self.owner = owner
        self.base_url = base_url
        self.where = _authority(base_url)
        self._token_source = token
        self._token = token if isinstance(token, str) else ""  # the last one used, masked in every text
        self._timeout = timeout
        self._headers = {"User-Agent": _user_agent(), **(headers or {})}
        self._client = client
        self._owns_client = client is None
        self.closed = False

    def scrub(self, text: str, *secrets: str | None) -> str:
        return scrub(text, self._token, *secrets)

    async def request(self, method: str, path: str, what: str, body: Any = None) -> Answer:
        """``method base_url/path`` with ``body`` as JSON; ``what`` names the request in errors."""
        if self.closed:
            raise PermanentDeliveryError(f"{self.owner} for {self.where} is closed; {what} not sent")
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        headers = dict(self._headers)
        headers["Authorization"] = f"Bearer {await self._current_token(what)}"
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = _encoder.encode(body)
        try:
            response = await self._client.request(
                method, f"{self.base_url}/{path}", content=content, headers=headers, timeout=self._timeout
            )
        except httpx.TimeoutException as exc:
            raise TransientDeliveryError(
                f"{self.owner}: {what} to {self.where} timed out after {self._timeout:g}s ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise TransientDeliveryError(
                f"{self.owner}: {what} to {self.where} failed before an answer: {type(exc).__name__}: "
                f"{self.scrub(str(exc)) or 'no detail'}"
            ) from exc
        raw = response.content
        try:
            decoded = _decoder.decode(raw) if raw else None
        except msgspec.DecodeError:
            decoded = None
        text = self.scrub(raw[: ANSWER_WIDTH * 2].decode("utf-8", "replace"))[:ANSWER_WIDTH]
        return Answer(response.status_code, decoded, text, response.headers)

    async def _current_token(self, what: str) -> str:
        source = self._token_source
        if isinstance(source, str):
            return source
        try:
            token = source()
            if inspect.isawaitable(token):
                token = await token
        except Exception as exc:  # the shop's refresh: its failure fails this request, a retry may do better
            raise TransientDeliveryError(
                f"{self.owner}: {what} not sent: the access_token function raised {type(exc).__name__}"
            ) from exc
        if not isinstance(token, str) or not token or any(c in token for c in "\r\n"):
            raise PermanentDeliveryError(
                f"{self.owner}: {what} not sent: the access_token function returned {type(token).__name__}; "
                "expected a non-empty one-line str"
            )
        self._token = token
        return token

    async def aclose(self) -> None:
        self.closed = True
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()
