"""A channel that sends each message as an email over SMTP (aiosmtplib), rendered from a template.

The email
---------
``multipart/alternative`` with a text and an HTML part (text only when the template has no ``.html`` file),
rendered by :class:`~recoverkit.templates.Templates` from ``message.template`` as kind ``email``, and these
headers:

- ``From`` (the channel's ``sender``), ``To`` (``message.recipient.email``), ``Subject``, ``Date``, and
  ``Reply-To`` when configured;
- ``Message-ID: <rk.<first 32 hex digits of the SHA-256 of message.key>@<sender's domain>>``
  (:meth:`SmtpChannel.message_id`): the same on every retry of a message, so a provider or mailbox that
  deduplicates on it drops a repeat (a retry after a lost answer may repeat a message the server did accept);
- ``List-Unsubscribe`` with the HTTPS unsubscribe link and/or the mailto address, and, with a link,
  ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058; Gmail and Yahoo require one-click
  unsubscribe of bulk senders). The templates get the link as ``unsubscribe_url`` for the footer. The link
  must be ``https``, except on a loopback host (``http://localhost:8000/...``, ``127.0.0.1``, ``[::1]``),
  which only a development machine can follow, so that a shop can try its unsubscribe view locally.

Bodies are 7-bit (quoted-printable where needed), so any server takes them. Recipient domains that are not
ASCII are sent in their IDNA form; mailboxes that are not ASCII (SMTPUTF8) are not supported and fail
permanently.

How failures are classified
---------------------------
SMTP says it in the reply code's first digit, and the channel follows:

- 4xx replies (``450 mailbox busy``, ``421 closing``, ``451 try later``), a timeout, or a failure before any
  reply (connection refused, reset, dropped): :class:`~recoverkit.errors.TransientDeliveryError`.
- 5xx replies (``550 no such user`` to the recipient, ``554`` to the data, ``535`` to the login), a missing
  or malformed recipient address, a template that is missing or fails to render, or an extension the
  message needs that the server lacks: :class:`~recoverkit.errors.PermanentDeliveryError`.

Error messages name the server (host and port), the message key, the SMTP stage and code, and the server's
text with email addresses and phone numbers masked; never the recipient's address.

The connection
--------------
One connection, opened on the first send (inside the running event loop, so a channel built before a fork
is usable in the child) and reused; sends take turns on it. A reused connection that the server has dropped
meanwhile (idle timeout) is reopened once, at once, for the same message. A send that fails or is cancelled
halfway closes the connection, so the next one starts clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import functools
import hashlib
import math
import os
import re
import ssl
from collections.abc import Callable, Iterable
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from .._optional import deferred, require
from ..errors import ConfigError, DeliveryError, PermanentDeliveryError, TransientDeliveryError
from ..templates import TemplateError, Templates
from .base import Message

if TYPE_CHECKING:
    import aiosmtplib
else:  # the 'smtp' extra: imported when a channel is built, not with recoverkit (see recoverkit._optional)
    aiosmtplib = deferred("aiosmtplib", extra="smtp", feature="SmtpChannel")

__all__ = ["SmtpChannel"]

#: 78-column folding for ordinary headers, never 8-bit bodies, and pre-folded List-Unsubscribe left alone:
#: the default "refold long headers" turns a long URL into RFC 2047 encoded words no mail client follows.
_POLICY = email.policy.SMTP.clone(cte_type="7bit", refold_source="none")
#: What a server's reply text may quote that must not reach a log: an address, a phone number.
_PERSONAL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+|\+?\d[\d ()./-]{5,}\d")
#: Server replies can be long; error messages keep the start.
_REPLY_WIDTH = 200
#: RFC 5322 caps a header line at 998 octets; a URL longer than this cannot go in List-Unsubscribe.
_MAX_URL = 900
_Unsubscribe = str | Callable[[Message], str]
_LOOPBACK_V4 = re.compile(r"127(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}")


class SmtpChannel:
    """Send each message as an email through the SMTP server at ``host``; see the module docstring.

    - ``port``: default 465 with ``use_tls``, 587 with ``start_tls=True``, else 25.
    - ``sender``: the ``From`` address, optionally with a display name (``"Acme <shop@acme.example>"``);
      its domain names the ``Message-ID``.
    - ``templates``: where message bodies come from (default: recoverkit's built-in templates).
    - ``username`` and ``password``: log in after connecting (both or neither).
    - ``use_tls``: TLS from the first byte (port 465). ``start_tls``: ``True`` requires STARTTLS,
      ``False`` never uses it, ``None`` (default) uses it when the server offers it. ``validate_certs`` and
      ``tls_context`` tune certificate checks.
    - ``timeout`` (seconds) bounds connecting and each SMTP command.
    - ``unsubscribe_url``: an ``https://`` link, either a string in which ``{key}`` and ``{contact_key}``
      are replaced by the message's (URL-encoded), or a function of the message returning the link (to sign
      it). ``http://`` is accepted for a loopback host only (``localhost``, ``127.0.0.1``, ``[::1]``), for
      development. ``unsubscribe_mailto``: an address for mailto unsubscribes. At least one is required.
    - ``reply_to``: the ``Reply-To`` address. ``local_hostname``: the name given in EHLO (default: this
      machine's fully qualified name).

    Bad options raise :class:`~recoverkit.errors.ConfigError` naming the value (never the password). After
    :meth:`aclose`, :meth:`send` raises :class:`~recoverkit.errors.PermanentDeliveryError`.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        sender: str,
        templates: Templates | None = None,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        start_tls: bool | None = None,
        validate_certs: bool = True,
        tls_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        unsubscribe_url: _Unsubscribe | None = None,
        unsubscribe_mailto: str | None = None,
        reply_to: str | None = None,
        local_hostname: str | None = None,
    ) -> None:
        require("aiosmtplib", extra="smtp", feature="SmtpChannel")  # at start-up, not at the first send
        # Checked in this order, so that of several bad options the same one is named first.
        port = _server_port(host, port, use_tls=use_tls, start_tls=start_tls)
        self._timeout = _check_timeout(timeout)
        if (username is None) != (password is None):
            raise ConfigError("SmtpChannel username and password go together; got only one of them")
        self._where = f"{host}:{port}"
        self._sender = sender
        self._envelope_from, self._domain = _check_sender(sender)
        self._reply_to = None if reply_to is None else _check_option_address("reply_to", reply_to)
        self._templates = templates if templates is not None else Templates()
        self._unsubscribe_mailto = _check_unsubscribe(unsubscribe_url, unsubscribe_mailto)
        self._unsubscribe_url = unsubscribe_url
        self._new_client = functools.partial(
            aiosmtplib.SMTP,
            hostname=host,
            port=port,
            username=username,
            password=password,
            use_tls=use_tls,
            start_tls=start_tls,
            validate_certs=validate_certs,
            tls_context=tls_context,
            local_hostname=local_hostname,
            timeout=self._timeout,
        )
        self._smtp: aiosmtplib.SMTP | None = None
        self._lock: asyncio.Lock | None = None
        self._pid = os.getpid()
        self._closed = False

    def check_templates(self, names: Iterable[str]) -> None:
        """Raise :class:`~recoverkit.errors.ConfigError` unless every template in ``names`` renders (the engine
        calls this at start-up with the templates its flows use on this channel)."""
        self._templates.check(names, kind="email")

    def __repr__(self) -> str:
        return f"SmtpChannel(server={self._where!r})"

    def message_id(self, key: str) -> str:
        """The ``Message-ID`` of the email for message ``key``: the same on every retry, one per key and domain.

        A hash rather than the key, which holds cart ids and characters a Message-ID may not; a shop matching
        bounces to keys computes it the same way.

        >>> SmtpChannel("localhost", sender="shop@acme.example", unsubscribe_mailto="u@acme.example").message_id(
        ...     "cart-1/default/0")
        '<rk.c362798363a2495482c96d0bdb055743@acme.example>'
        """
        return f"<rk.{hashlib.sha256(key.encode()).hexdigest()[:32]}@{self._domain}>"

    async def send(self, message: Message) -> None:
        """Render and send ``message``; return once the server accepted it, raise otherwise."""
        key = message.key
        if self._closed:
            raise PermanentDeliveryError(f"SmtpChannel for {self._where} is closed; message {key!r} not sent")
        address = self._recipient(message)
        data = self._build(message, address)
        async with self._own_lock():
            if self._closed:  # closed while this send waited for its turn
                raise PermanentDeliveryError(f"SmtpChannel for {self._where} is closed; message {key!r} not sent")
            for attempt in range(2):
                reused = self._smtp is not None and self._smtp.is_connected
                try:
                    smtp = await self._connect()
                    await smtp.sendmail(self._envelope_from, [address], data, timeout=self._timeout)
                    return
                except BaseException as exc:
                    error, stale = self._failed(key, address, exc)
                    if error is None:
                        raise  # cancelled (the engine's send timeout), or a bug: not ours to classify
                    if stale and reused and attempt == 0:
                        continue  # the server dropped an idle connection: once more, on a fresh one, at once
                    raise error from exc

    def _failed(self, key: str, address: str, exc: BaseException) -> tuple[DeliveryError | None, bool]:
        """Close the connection unless it can carry the next message; classify ``exc``.

        Returns the error to raise (``None`` for exceptions that are not SMTP's or the network's) and whether
        the failure is one a new connection may not have (the server had closed the old one).
        """
        where = self._where
        if isinstance(exc, (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPResponseException)):
            # aiosmtplib has reset the transaction, so the connection can carry the next message, unless the
            # server is closing it (421) or has closed it.
            code = _code(exc)
            if code == 421 or self._smtp is None or not self._smtp.is_connected:
                self._drop()
            return self._reply_error(key, exc, address), code == 421
        self._drop()
        if isinstance(exc, (aiosmtplib.SMTPTimeoutError, TimeoutError)):
            return TransientDeliveryError(
                f"SMTP server {where} did not answer within {self._timeout:g}s for message {key!r} "
                f"({type(exc).__name__})"
            ), False
        if isinstance(exc, aiosmtplib.SMTPConnectError):  # before ConnectionError, which it also is
            return TransientDeliveryError(
                f"cannot connect to SMTP server {where} for message {key!r}: {type(exc).__name__}: "
                f"{self._scrub(str(exc), address) or 'no detail'}"
            ), False
        if isinstance(exc, (aiosmtplib.SMTPServerDisconnected, ConnectionError)):
            return TransientDeliveryError(
                f"SMTP server {where} dropped the connection while sending message {key!r} "
                f"({type(exc).__name__}); a later retry may succeed"
            ), True
        if isinstance(exc, aiosmtplib.SMTPNotSupported):
            return PermanentDeliveryError(
                f"SMTP server {where} lacks what message {key!r} needs: {self._scrub(str(exc), address)}"
            ), False
        if isinstance(exc, (aiosmtplib.SMTPException, OSError)):  # unreachable network, TLS handshake failure
            return TransientDeliveryError(
                f"SMTP with {where} failed for message {key!r}: {type(exc).__name__}: "
                f"{self._scrub(str(exc), address) or 'no detail'}"
            ), False
        # Anything else (a cancellation above all) may have left the connection halfway through a command:
        # dropped above, so that it cannot garble the next message.
        return None, False

    async def aclose(self) -> None:
        """Say QUIT and close the connection, after a send in progress. Idempotent; later sends raise."""
        self._closed = True
        if os.getpid() != self._pid:
            self._smtp = None  # the parent's connection: the child must not speak on it
            return
        async with self._own_lock():
            smtp, self._smtp = self._smtp, None
            if smtp is None:
                return
            try:
                if smtp.is_connected:
                    await smtp.quit(timeout=self._timeout)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                pass  # the server hung up first; closing our side is all that is left
            finally:
                smtp.close()

    def _own_lock(self) -> asyncio.Lock:
        if os.getpid() != self._pid:
            # Forked after a send: the connection and the lock are the parent's. Forget them unused.
            self._pid, self._smtp, self._lock = os.getpid(), None, None
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _connect(self) -> aiosmtplib.SMTP:
        smtp = self._smtp
        if smtp is None or not smtp.is_connected:
            if smtp is not None:
                smtp.close()
            smtp = self._new_client()
            self._smtp = smtp  # before connecting, so that a cancelled connect is closed by _drop()
            await smtp.connect()
        return smtp

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def _recipient(self, message: Message) -> str:
        """The address of ``message``'s recipient, its domain in IDNA form; PermanentDeliveryError if none."""
        raw = message.recipient.email
        if not raw:
            raise PermanentDeliveryError(
                f"message {message.key!r} has no recipient email address; the email channel needs "
                "Recipient.email"
            )
        local, at, domain = raw.strip().rpartition("@")
        if not domain.isascii():
            # Internationalized domains travel as punycode; one the codec refuses stays as it is, and the
            # check below names it invalid.
            with contextlib.suppress(UnicodeError):
                domain = domain.encode("idna").decode("ascii")
        address = f"{local}{at}{domain}"
        if not local.isascii():
            raise PermanentDeliveryError(
                f"the recipient address of message {message.key!r} has a mailbox name that is not ASCII; "
                "SmtpChannel does not support SMTPUTF8 addresses"
            )
        if not _valid_address(address):
            raise PermanentDeliveryError(
                f"the recipient address of message {message.key!r} is not a valid email address; expected "
                "one mailbox like name@example.com"
            )
        return address

    def _build(self, message: Message, address: str) -> bytes:
        key = message.key
        unsubscribe_url = self._unsubscribe_link(message)
        try:
            rendered = self._templates.render(
                message.template, message, kind="email", unsubscribe_url=unsubscribe_url
            )
        except TemplateError as exc:
            raise PermanentDeliveryError(f"message {key!r} not sent by SmtpChannel for {self._where}: {exc}") from exc
        mail = EmailMessage(policy=_POLICY)
        mail["From"] = self._sender
        mail["To"] = address
        mail["Subject"] = rendered.subject or ""
        mail["Date"] = formatdate(usegmt=True)
        mail["Message-ID"] = self.message_id(key)
        if self._reply_to is not None:
            mail["Reply-To"] = self._reply_to
        targets = []
        if unsubscribe_url is not None:
            targets.append(f"<{unsubscribe_url}>")
        if self._unsubscribe_mailto is not None:
            targets.append(f"<mailto:{self._unsubscribe_mailto}?subject={quote('unsubscribe ' + key, safe='')}>")
        # One target per line: folded by hand at the comma, since the policy leaves this header as it is.
        mail.set_raw("List-Unsubscribe", ",\r\n ".join(targets))
        if unsubscribe_url is not None:
            mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        mail.set_content(rendered.text + "\n")
        if rendered.html is not None:
            mail.add_alternative(rendered.html + "\n", subtype="html")
        return mail.as_bytes(policy=_POLICY)

    def _unsubscribe_link(self, message: Message) -> str | None:
        link = self._unsubscribe_url
        if link is None:
            return None
        if isinstance(link, str):
            return link.replace("{key}", quote(message.key, safe="")).replace(
                "{contact_key}", quote(message.recipient.contact_key, safe="")
            )
        try:
            url = link(message)
            return _check_unsubscribe_url(url)
        except Exception as exc:  # the shop's function: a bug there fails this message, named, not the engine
            raise PermanentDeliveryError(
                f"unsubscribe_url function of SmtpChannel for {self._where} failed for message {message.key!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _reply_error(
        self, key: str, exc: aiosmtplib.SMTPRecipientsRefused | aiosmtplib.SMTPResponseException, address: str
    ) -> TransientDeliveryError | PermanentDeliveryError:
        code = _code(exc)
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            stage, text = "refused the recipient", exc.recipients[0].message if exc.recipients else ""
        else:
            stage, text = _stage(exc), exc.message
        reply = self._scrub(text, address)[:_REPLY_WIDTH]
        detail = f"SMTP server {self._where} {stage} of message {key!r} with {code} {reply}".rstrip()
        if 400 <= code < 500:
            return TransientDeliveryError(f"{detail}; a later retry may succeed")
        return PermanentDeliveryError(f"{detail}; expected 2xx, and a {code} is not retried")

    def _scrub(self, text: str, address: str) -> str:
        return _PERSONAL.sub("***", text.replace(address, "***"))


def _code(exc: aiosmtplib.SMTPRecipientsRefused | aiosmtplib.SMTPResponseException) -> int:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return exc.recipients[0].code if exc.recipients else 550
    return exc.code


def _stage(exc: aiosmtplib.SMTPResponseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return "refused the sender"
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return "refused the content"
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return "refused the login"
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return "refused the connection"
    return "answered"


def _server_port(host: object, port: object, *, use_tls: bool, start_tls: bool | None) -> int:
    """The port to connect to (by default the one ``use_tls``/``start_tls`` imply), once host, TLS options and
    port are checked; ConfigError otherwise."""
    if not isinstance(host, str) or not host or any(c.isspace() for c in host):
        raise ConfigError(f"SmtpChannel host must be a host name or IP address, got {host!r}")
    if use_tls and start_tls:
        raise ConfigError("SmtpChannel use_tls=True and start_tls=True exclude each other; expected one")
    if port is None:
        port = 465 if use_tls else 587 if start_tls else 25
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"SmtpChannel port must be an int from 1 to 65535, got {port!r}")
    return port


def _check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise ConfigError(f"SmtpChannel timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def _check_unsubscribe(url: object, mailto: str | None) -> str | None:
    """Check the unsubscribe options (at least one; a URL template as its links will be); the mailto address."""
    if url is None and mailto is None:
        raise ConfigError(
            "SmtpChannel needs unsubscribe_url or unsubscribe_mailto (or both): recovery emails are bulk "
            "mail, and Gmail and Yahoo require a one-click unsubscribe from bulk senders"
        )
    if isinstance(url, str):
        _check_unsubscribe_url(url.replace("{key}", "k").replace("{contact_key}", "c"))
    elif url is not None and not callable(url):
        raise ConfigError(
            "SmtpChannel unsubscribe_url must be an https:// URL string or a function of the message, "
            f"got {type(url).__name__}"
        )
    return None if mailto is None else _check_option_address("unsubscribe_mailto", mailto)


def _valid_address(address: str) -> bool:
    try:
        parsed = Address(addr_spec=address)
    except Exception:  # the email package raises ValueError, HeaderParseError, defects, even IndexError
        return False
    return parsed.addr_spec == address and ("." in parsed.domain.strip(".") or parsed.domain == "localhost")


def _check_sender(sender: object) -> tuple[str, str]:
    """``sender``'s address and domain, or ConfigError."""
    expected = "expected an address like 'shop@acme.example' or 'Acme <shop@acme.example>'"
    if not isinstance(sender, str) or "\r" in sender or "\n" in sender:
        raise ConfigError(f"SmtpChannel sender must be a one-line str, got {sender!r}; {expected}")
    address = parseaddr(sender)[1]
    if not address.isascii() or not _valid_address(address):
        raise ConfigError(f"SmtpChannel sender {sender!r} holds no valid ASCII email address; {expected}")
    return address, address.rpartition("@")[2]


def _check_option_address(option: str, value: object) -> str:
    if not isinstance(value, str) or not value.isascii() or not _valid_address(value):
        raise ConfigError(f"SmtpChannel {option} must be an email address like 'unsubscribe@acme.example', "
                          f"got {value!r}")
    return value


def _check_unsubscribe_url(url: object) -> str:
    expected = (
        "expected an https:// URL of at most 900 characters with no spaces, '<' or '>' (RFC 8058); in "
        "development, http:// on a loopback host is accepted too (http://localhost:8000/unsubscribe?key={key}, "
        "http://127.0.0.1:8000/..., http://[::1]:8000/...)"
    )
    if not isinstance(url, str):
        raise ConfigError(f"SmtpChannel unsubscribe_url must be a str, got {type(url).__name__}; {expected}")
    parts = urlsplit(url)
    problem = None
    if not parts.netloc:
        problem = "has no host"
    elif parts.scheme == "http" and not _is_loopback(parts.hostname):
        # A shopper's mail client follows the link from the open internet: over plain http it can be read
        # and changed on the way, and Gmail and Yahoo refuse it for one-click unsubscribe.
        problem = "is http:// on a host that is not loopback"
    elif parts.scheme not in ("https", "http"):
        problem = f"has scheme {parts.scheme!r}" if parts.scheme else "has no scheme"
    elif len(url) > _MAX_URL:
        problem = f"is {len(url)} characters long"
    elif not url.isascii():
        problem = "holds characters that are not ASCII"
    elif any(c.isspace() or c in "<>" for c in url):
        problem = "holds a space, '<' or '>'"
    if problem is not None:
        # The scheme and host only: the rest of an unsubscribe link is usually a token.
        raise ConfigError(
            f"SmtpChannel unsubscribe_url {parts.scheme}://{parts.netloc}/... {problem}; {expected}"
        )
    return url


def _is_loopback(host: str | None) -> bool:
    """Whether ``host`` (as :func:`urllib.parse.urlsplit` gives it: lower case, no brackets) is this machine.

    >>> [_is_loopback(h) for h in ("localhost", "127.0.0.1", "::1", "shop.localhost", "acme.example", "10.0.0.1")]
    [True, True, True, True, False, False]
    """
    if host is None:
        return False
    # RFC 6761: "localhost" and names under it are always the loopback interface; so are 127.0.0.0/8 and ::1.
    return host in ("localhost", "::1") or host.endswith(".localhost") or _LOOPBACK_V4.fullmatch(host) is not None
