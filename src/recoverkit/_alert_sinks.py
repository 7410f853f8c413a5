"""Alerts and where they go: the :class:`Alert` record, the :class:`AlertSink` plug-in point, a webhook sink
(the JSON Slack, Mattermost and similar chat tools accept), an e-mail sink over SMTP, a test double, and the
thread that delivers them without holding up whoever observed the events.

A sink is any object with ``send(alert) -> None`` that returns when the alert was accepted and raises
otherwise. Sinks are called from :class:`AlertDelivery`'s own thread (one at a time, in the order alerts were
raised), never from the engine's event loop, so a slow webhook cannot stall tracking. A sink that raises is
retried twice (after 1 and 5 seconds) and then given up on; each failure is logged at warning level with the
sink's kind and the exception's type and message, never a URL or a credential (both sinks keep those out of
their error text).
"""

from __future__ import annotations

import os
import queue
import smtplib
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from email.utils import formatdate
from typing import Final, Literal, Protocol, runtime_checkable

import msgspec

from ._log import get_logger
from ._redact import redact
from .errors import ConfigError

__all__ = [
    "Alert",
    "AlertDelivery",
    "AlertSink",
    "EmailAlertSink",
    "MemoryAlertSink",
    "WebhookAlertSink",
]

_log = get_logger("recoverkit.alerts")

#: Alerts waiting for delivery; beyond this an alert storm drops the newest (counted, and still logged).
_QUEUE_BOUND: Final = 256
_RETRY_DELAYS: Final = (1.0, 5.0)
_encoder = msgspec.json.Encoder()


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """One alert about the purchase path, raised at event time ``at``.

    ``kind`` is ``"alert"`` when an incident opens, ``"reminder"`` when it is still open ``realert_after``
    later, ``"resolved"`` when its checks have passed for ``resolve_after``. ``incident`` names the incident
    (its area and the minute it opened), the same on all three. ``text`` is the plain explanation; the other
    fields are its figures (the rate or share observed in the window, the usual one, ``count`` of ``total``).
    No personal data: areas, checks and subjects name steps, page types, form fields, error codes and channels.
    """

    kind: Literal["alert", "reminder", "resolved"]
    incident: str
    area: str
    check: str
    subject: str
    at: float
    since: float
    text: str
    window: float = 0.0
    observed: float = 0.0
    usual: float = 0.0
    count: int = 0
    total: int = 0
    p_value: float = 1.0
    baseline: str = ""

    def title(self) -> str:
        """A one-line heading: what happened and when (UTC)."""
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.at))
        label = {"alert": "Purchase path alert", "reminder": "Still broken", "resolved": "Resolved"}[self.kind]
        return f"{label} ({self.area}, {when})"


@runtime_checkable
class AlertSink(Protocol):
    """Where alerts go besides the log: return once the alert was accepted, raise otherwise."""

    def send(self, alert: Alert) -> None:
        """Deliver ``alert`` (called from the delivery thread, one alert at a time)."""
        ...


class MemoryAlertSink:
    """The test double: keeps every alert it is sent in :attr:`alerts`, in order."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


class WebhookAlertSink:
    """POST each alert as JSON to ``url``: ``{"text": "<title>\\n<explanation>", "recoverkit_alert": {...}}``.

    ``text`` is what Slack's incoming webhooks (and Mattermost's, Rocket.Chat's, Microsoft Teams' legacy
    connectors) show; ``recoverkit_alert`` carries the alert's fields for tools that read them
    (``fields=False`` leaves it out, for receivers that refuse unknown keys). Any 2xx answer is success;
    anything else raises :class:`RuntimeError` naming the host
    and status, never the URL (webhook URLs carry their token in the path).
    """

    def __init__(self, url: str, *, timeout: float = 10.0, fields: bool = True) -> None:
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("WebhookAlertSink url: expected an absolute http(s) URL (value not shown: it may hold a token)")
        if not 0 < timeout <= 300:
            raise ConfigError(f"WebhookAlertSink timeout: expected seconds in (0, 300], got {timeout!r}")
        self._url, self._host, self._timeout, self._fields = url, parts.hostname, float(timeout), fields

    def __repr__(self) -> str:
        return f"WebhookAlertSink(host={self._host!r})"

    def body(self, alert: Alert) -> bytes:
        """The JSON sent for ``alert``."""
        payload: dict[str, object] = {"text": f"{alert.title()}\n{alert.text}"}
        if self._fields:
            payload["recoverkit_alert"] = alert
        return _encoder.encode(payload)

    def send(self, alert: Alert) -> None:
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self._url, data=self.body(alert), method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "recoverkit-alerts"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                status = response.status
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the response's socket
            raise RuntimeError(f"webhook at {self._host} answered {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"webhook at {self._host} unreachable: {type(exc).__name__}") from None
        if not 200 <= status < 300:
            raise RuntimeError(f"webhook at {self._host} answered {status}")


class EmailAlertSink:
    """E-mail each alert to ``to`` from ``sender`` over SMTP at ``host:port`` (stdlib :mod:`smtplib`).

    ``starttls`` upgrades the connection before logging in; ``username``/``password`` log in (give both or
    neither; read them from the environment, not a file). The subject is the alert's title, the body its
    explanation and figures. Errors name the server and the SMTP code, never the credentials or addresses.
    """

    def __init__(
        self,
        *,
        to: Sequence[str],
        sender: str,
        host: str = "localhost",
        port: int = 25,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not to or any("@" not in address for address in to) or "@" not in sender:
            raise ConfigError("EmailAlertSink: expected `to` (one or more addresses) and a `sender` address")
        if (username is None) != (password is None):
            raise ConfigError("EmailAlertSink: expected `username` and `password` together (both or neither)")
        self._to, self._sender = list(to), sender
        self._host, self._port, self._starttls, self._timeout = host, int(port), starttls, float(timeout)
        self._login = (username, password) if username is not None and password is not None else None

    def __repr__(self) -> str:
        return f"EmailAlertSink(server={self._host}:{self._port})"

    def message(self, alert: Alert) -> EmailMessage:
        """The e-mail sent for ``alert``."""
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = self._sender, ", ".join(self._to), alert.title()
        mail["Date"] = formatdate(usegmt=True)
        figures = f"{alert.count} of {alert.total} in the last {alert.window / 60:g} minutes" if alert.total else ""
        mail.set_content(f"{alert.text}\n\n{figures}\nincident: {alert.incident}\ncheck: {alert.check}\n")
        return mail

    def send(self, alert: Alert) -> None:
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                if self._starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._login is not None:
                    smtp.login(*self._login)
                smtp.send_message(self.message(alert))
        except smtplib.SMTPResponseException as exc:
            raise RuntimeError(f"SMTP server {self._host}:{self._port} answered {exc.smtp_code}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise RuntimeError(f"SMTP server {self._host}:{self._port} failed: {type(exc).__name__}") from None


class AlertDelivery:
    """Hands alerts to the sinks from a thread of its own (``thread=False``: at once, in the caller's thread,
    for replays and tests). Fork-aware: a child process starts its own thread on its first alert.

    :attr:`statistics` counts ``delivered``, ``failed`` (given up after the retries) and ``dropped`` (the
    queue of :data:`_QUEUE_BOUND` alerts was full).
    """

    def __init__(
        self, sinks: Sequence[AlertSink], *, thread: bool = True, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        for sink in sinks:
            if not callable(getattr(sink, "send", None)):
                raise ConfigError(f"alert sink {type(sink).__name__}: expected an object with a send(alert) method")
        self._sinks, self._threaded, self._sleep = list(sinks), thread, sleep
        self._queue: queue.Queue[Alert | None] = queue.Queue(_QUEUE_BOUND)
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self.statistics = {"delivered": 0, "failed": 0, "dropped": 0}

    def put(self, alert: Alert) -> None:
        if not self._sinks:
            return
        if not self._threaded:
            self._deliver(alert)
            return
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid = os.getpid()  # a thread started before a fork is dead in the child: start one here
            self._queue = queue.Queue(_QUEUE_BOUND)
            self._thread = threading.Thread(target=self._run, name="recoverkit-alerts", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.statistics["dropped"] += 1
            _log.warning("alert_dropped", incident=alert.incident, reason="delivery queue full")

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (waiting at most ``timeout`` seconds) and stop the thread."""
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            self._queue.put(None)
            thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            self._deliver(alert)

    def _deliver(self, alert: Alert) -> None:
        for sink in self._sinks:
            for attempt, delay in enumerate((*_RETRY_DELAYS, None)):
                try:
                    sink.send(alert)
                except Exception as exc:  # noqa: BLE001 - a shop's sink is contained: logged, retried, given up
                    _log.warning("alert_sink_failed", sink=type(sink).__name__, incident=alert.incident,
                                 attempt=attempt + 1, error=redact(f"{type(exc).__name__}: {exc}")[:300])
                    if delay is None:
                        self.statistics["failed"] += 1
                    else:
                        self._sleep(delay)
                    continue
                self.statistics["delivered"] += 1
                break
