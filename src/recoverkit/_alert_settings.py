"""The ``[alerts]`` section of the configuration: how the purchase-path watcher judges and whom it tells.

Defined apart from :mod:`recoverkit.config` (which holds it as ``Config.alerts``) so the watcher can import it
without the whole configuration; docs/alerts.md documents every key and its default.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["AlertsConfig"]

_ENV = Annotated[str, msgspec.Meta(pattern="^[A-Z_][A-Z0-9_]*$")]
_Address = Annotated[str, msgspec.Meta(pattern=r"^[^@\s<>,;]+@[^@\s<>,;]+$", max_length=254)]


class AlertsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the purchase-path watcher (:mod:`recoverkit.alerts`) judges the stream and whom it tells.

    Judging (durations in seconds of event time):

    - ``windows``: the watcher compares the last ``windows`` seconds (each one, every minute) with the
      baseline; a short window sees a sudden break within minutes, a long one a milder change.
    - ``lateness``: a minute is judged once events are ``lateness`` past its end; later events are counted
      as late and left out (so a replay judges exactly what a live run judged).
    - ``significance``: how unlikely (a Poisson tail probability) a window must be under the baseline to
      count as broken. ``min_ratio``: and how far off it must be (a failure rate at least ``min_ratio`` times
      the usual one, a step's conversion or a page's share at most ``1 / min_ratio`` of it).
    - ``min_events``: fewer attempts (checkouts, payments, sends, events) than this in a window are not judged.
    - ``baseline_half_life``: the recent baseline forgets at this half-life; ``min_baseline``: the attempts a
      baseline needs (per hour of the week for that one, else the recent one is used) before it is trusted.
    - ``resolve_after``: an incident closes after this long without its check failing; ``realert_after``: an
      incident still open is reported again after this long (one incident, one alert, one reminder per period).

    Running (docs/alerts.md, "Turning it on"):

    - ``enabled``: the engine runs the watcher itself, in exactly one of the shop's processes at a time (the
      holder of the store's ``alerts`` lease), fed from every process's journal and send outcomes. Off by
      default: a library inside a shop's process starts no thread, takes no lease and sends no alert that was
      not asked for. ``replay``: run it in an event-time engine (a replay) too; off, replays never run it.
    - ``save_every``: the holder saves the watcher's state in the store (:class:`~recoverkit.store.StateStore`)
      this often, in wall-clock seconds, and when it closes; the next holder goes on from it (docs/alerts.md,
      "The saved state").

    Telling (besides the warning log record, which is always written):

    - ``webhook_url_env``: the environment variable holding a webhook URL (Slack's incoming webhooks and the
      like): the URL usually carries a token, so it is never written in this file.
    - ``email_to``, ``email_from``, ``smtp_host``, ``smtp_port``, ``smtp_starttls``, ``smtp_user_env`` and
      ``smtp_password_env``: e-mail to the shop's team over SMTP; the credentials are read from the environment.
    """

    enabled: bool = False
    replay: bool = False
    save_every: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 60.0
    windows: Annotated[list[Annotated[float, msgspec.Meta(ge=120, le=86_400)]], msgspec.Meta(min_length=1, max_length=4)] = (
        msgspec.field(default_factory=lambda: [420.0, 900.0])
    )
    lateness: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0
    significance: Annotated[float, msgspec.Meta(gt=0, le=0.01)] = 1e-5
    min_ratio: Annotated[float, msgspec.Meta(ge=1.2, le=100)] = 2.0
    min_events: Annotated[int, msgspec.Meta(ge=3, le=100_000)] = 8
    baseline_half_life: Annotated[float, msgspec.Meta(ge=3600, le=90 * 86_400)] = 86_400.0
    min_baseline: Annotated[float, msgspec.Meta(ge=10)] = 200.0
    resolve_after: Annotated[float, msgspec.Meta(ge=60, le=7 * 86_400)] = 1800.0
    realert_after: Annotated[float, msgspec.Meta(ge=600, le=30 * 86_400)] = 4 * 3600.0
    webhook_url_env: _ENV | None = None
    email_to: Annotated[list[_Address], msgspec.Meta(max_length=32)] = msgspec.field(default_factory=list)
    email_from: _Address | None = None
    smtp_host: Annotated[str, msgspec.Meta(min_length=1, max_length=253)] = "localhost"
    smtp_port: Annotated[int, msgspec.Meta(ge=1, le=65_535)] = 25
    smtp_starttls: bool = False
    smtp_user_env: _ENV | None = None
    smtp_password_env: _ENV | None = None

    def __post_init__(self) -> None:
        # Raised as ValueError: msgspec's convert reports it as a validation error naming the field.
        if sorted(set(self.windows)) != list(self.windows):
            raise ValueError(f"`windows` expected distinct durations in increasing order, got {list(self.windows)}")
        if self.email_to and self.email_from is None:
            raise ValueError("`email_to` expected an `email_from` address to send from; set [alerts] email_from")
        if (self.smtp_user_env is None) != (self.smtp_password_env is None):
            raise ValueError("`smtp_user_env` expected `smtp_password_env` with it (both or neither)")
