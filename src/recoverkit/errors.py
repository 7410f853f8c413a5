"""Every error recoverkit raises, in one hierarchy.

::

    RecoverkitError
    ├── ConfigError            bad configuration, raised when the engine is built or started
    ├── InvalidEvent           an event that cannot be accepted (bad JSON, unknown kind, wrong type, too big)
    ├── EngineStateError       the engine was used in a state that does not allow it (not started, closed)
    ├── StoreError             durable state cannot be read or written as asked (bad file, wrong state, fork)
    ├── LinkError              a cart-restore link that cannot be trusted (expired, tampered, malformed)
    ├── MissingExtraError      a part of recoverkit was used whose optional dependency is not installed
    └── DeliveryError          raised by channel adapters to tell dispatch how a send failed
        ├── TransientDeliveryError   worth retrying (timeouts, 5xx, connection refused)
        └── PermanentDeliveryError   retrying cannot help (4xx, invalid address); goes to the dead letters

Messages name the place, the value and what was expected, so that the person reading a log at 3 a.m. can fix
the cause without opening the source.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "ConfigError",
    "DeliveryError",
    "EngineStateError",
    "InvalidEvent",
    "LinkError",
    "MissingExtraError",
    "PermanentDeliveryError",
    "RecoverkitError",
    "StoreError",
    "TransientDeliveryError",
]


class RecoverkitError(Exception):
    """Base class of every error raised by recoverkit."""


class ConfigError(RecoverkitError, ValueError):
    """Raised by :class:`recoverkit.Config` loading and by :class:`recoverkit.Engine` at construction.

    The message names the key path (``flows[0].steps[1].delay``), the bad value and what was expected.
    Configuration is checked at start-up so that a mistake never surfaces at 3 a.m. in the middle of a flow.
    """


class InvalidEvent(RecoverkitError, ValueError):
    """Raised by :func:`recoverkit.events.decode_event` (and counted, not raised, by ``Engine.track``).

    ``field`` is the JSON path of the offending field (``$.items[2].price``) or ``None`` when the whole
    payload is at fault; ``reason`` is a short machine-readable category used as a statistics key
    (``malformed_json``, ``unknown_event``, ``wrong_type``, ``missing_field``, ``too_large``, ``bad_value``).
    The message never contains the payload itself, which may hold personal data.
    """

    def __init__(self, message: str, *, reason: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field


class EngineStateError(RecoverkitError, RuntimeError):
    """Raised when the engine is used before it started or after it closed."""


class StoreError(RecoverkitError):
    """Raised by the stores in :mod:`recoverkit.store` when durable state cannot be used as asked.

    That is: a file that is not a recoverkit store or was written by a newer recoverkit, a store used after
    ``close()`` or in a process it was not opened in (open it after forking), a ledger entry or dead letter
    that does not exist or is not in a state that allows the operation, and SQLite failures such as a write
    lock held by another process for longer than the busy timeout. The message names the file or key, the
    state or value found and what was expected. Bad argument values (a negative limit, an unknown outcome)
    raise :class:`ValueError` instead, and bad constructor options :class:`ConfigError`.
    """


class LinkError(RecoverkitError, ValueError):
    """Raised by :meth:`recoverkit.links.RestoreLinks.verify` (and ``restore_cart``) for a link not to be trusted.

    ``reason`` says why, as a statistics key: ``"malformed"`` (not a token this recoverkit makes: truncated,
    mangled by a mail client, or too long), ``"tampered"`` (its signature does not match: edited, forged, or
    signed with a secret no longer configured) or ``"expired"`` (genuine, but past its expiry). The message names
    the reason and what was expected and never contains the token, which is a bearer credential for the cart.
    """

    def __init__(self, message: str, *, reason: Literal["expired", "tampered", "malformed"]) -> None:
        super().__init__(message)
        self.reason = reason


class MissingExtraError(RecoverkitError, ImportError):
    """Raised where an optional part of recoverkit is first used without its dependency installed.

    That is when :class:`~recoverkit.SmtpChannel`, :class:`~recoverkit.WebhookChannel`,
    :class:`~recoverkit.HttpChannel` or :class:`~recoverkit.Templates` is built, when ``recoverkit report
    --format html`` renders, and the like; never at ``import recoverkit``. The message names the feature, the missing
    package and the extra that installs it (``pip install 'recoverkit[smtp]'``); ``name`` is the missing module
    (as for any :class:`ImportError`), ``extra`` the extra and ``feature`` what needed it. The import's own
    error is chained as the cause.
    """

    def __init__(self, message: str, *, name: str, extra: str, feature: str) -> None:
        super().__init__(message, name=name)
        self.extra = extra
        self.feature = feature


class DeliveryError(RecoverkitError):
    """Base for errors a channel adapter raises from ``send`` to classify a failure.

    Any other exception escaping an adapter is treated as transient (it is retried and, when retries run
    out, dead-lettered), and is logged with its type so a buggy adapter is visible.
    """


class TransientDeliveryError(DeliveryError):
    """Raised by a channel adapter when a retry later may succeed (timeouts, HTTP 5xx/429, refused).

    ``retry_after`` is how many seconds the provider asked to wait (an HTTP ``Retry-After``), if it said: the
    engine retries no sooner than that (up to a day), instead of after its own backoff alone.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Raised by a channel adapter when retrying cannot succeed (HTTP 4xx, invalid address).

    The message goes straight to the dead-letter list.
    """
