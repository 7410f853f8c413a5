"""Alerts when the purchase path breaks: a watcher of the event stream that notices, in minutes, what a shop
owner would otherwise learn from a bad week's revenue.

With ``[alerts] enabled = true`` the engine runs it itself, in exactly one process of the shop (the holder of
the store's ``alerts`` lease), fed from every journal of the store and every process's send outcomes
(:mod:`recoverkit._alert_runner`; docs/alerts.md, "Turning it on"). By hand, for tests or custom setups::

    import recoverkit.alerts as alerts

    watcher = alerts.AlertWatcher(config.alerts, sinks=alerts.sinks_from_config(config.alerts))
    feed = alerts.JournalFeed(engine.store, watcher, clock=engine.plugins.clock)
    feed.start()                                   # reads every event the shop's workers journal
    channels = {"email": alerts.WatchedChannel(my_email, "email", watcher, engine_clock)}  # sends failing

What it watches, each minute of event time, over the last few minutes (``windows``) against what is usual for
that shop (its recent baseline, or the same hour of the week once it has a week of history):

- abandonment by checkout step (carts that do not go on to checkout, checkouts to shipping, shipping to
  payment, payment attempts to a purchase);
- the payment-failure rate, and which error codes rose;
- form errors by field;
- sends failing, per channel;
- a sudden drop in incoming events per page type (tracking broken after a deploy), and of all events once a
  week of history says how many to expect at that hour.

A check that fails opens an incident, one per area (``payment``, ``checkout``, ``tracking:<page>``,
``traffic``, ``channel:<name>``), raised once as an :class:`Alert` with a plain explanation::

    payment step: 100 % of attempts failed in the last 6 minutes, usually 6.9 %; provider_unavailable up

It is written as a warning record to the ``recoverkit.alerts`` logger (no personal data: steps, page types,
fields, error codes and channels only) and handed to each sink (:class:`WebhookAlertSink`,
:class:`EmailAlertSink`, your own :class:`AlertSink`). More failures in the same area while it is open are the
same incident; a reminder follows after ``realert_after``, and a ``resolved`` notice once the area has passed
its checks for ``resolve_after``. :func:`register_metrics` exports the watcher's figures to Prometheus; the alert
rules for them ship beside the Grafana dashboard (``examples/grafana/recoverkit-purchase-path-rules.yml``).
:func:`replay_file` replays a file of events in event time and returns the alerts the live run raised.
docs/alerts.md has the checks, the settings, and the measured detection times and false alarms.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from ._alert_feed import JournalFeed, WatchedChannel
from ._alert_metrics import register_metrics
from ._alert_settings import AlertsConfig
from ._alert_state import StateFormatError
from ._alert_sinks import Alert, AlertDelivery, AlertSink, EmailAlertSink, MemoryAlertSink, WebhookAlertSink
from ._alert_watcher import AlertWatcher, WatcherStatistics
from .errors import ConfigError

__all__ = [
    "Alert",
    "AlertDelivery",
    "AlertSink",
    "AlertWatcher",
    "AlertsConfig",
    "EmailAlertSink",
    "JournalFeed",
    "MemoryAlertSink",
    "StateFormatError",
    "WatchedChannel",
    "WatcherStatistics",
    "WebhookAlertSink",
    "register_metrics",
    "replay_file",
    "sinks_from_config",
]


def replay_file(
    path: str | os.PathLike[str], config: AlertsConfig | None = None, *, sinks: Sequence[AlertSink] = ()
) -> list[Alert]:
    """Replay a JSON-lines file of events (gzip when it ends in ``.gz``; every event with its ``ts``, as a
    journal or :func:`recoverkit.synthetic.write_events` writes them) through a new watcher in event time, and
    return the alerts it raised, oldest first (the last 1,000). The same events in the same order raise the
    alerts a live watcher raised (see docs/alerts.md, "Event time"). Sinks are called inline.

    Raises :class:`~recoverkit.datasets.DatasetError` naming the file and line of an invalid event, and
    :class:`ValueError` for an event without ``ts``.
    """
    from .datasets import read_jsonl  # file formats live there; imported only for a replay

    watcher = AlertWatcher(config, sinks=sinks, deliver_in_thread=False)
    for event in read_jsonl(path):
        watcher.observe(event)
    watcher.finish()
    return watcher.alerts


def sinks_from_config(config: AlertsConfig, environ: Mapping[str, str] | None = None) -> list[AlertSink]:
    """The sinks ``[alerts]`` names: a webhook when ``webhook_url_env`` is set, e-mail when ``email_to`` is.

    Secrets come from ``environ`` (default: the process's environment); a variable that is named and missing
    or empty is a :class:`~recoverkit.errors.ConfigError` naming the variable, never its value.
    """
    env = os.environ if environ is None else environ

    def secret(variable: str, key: str) -> str:
        value = env.get(variable, "")
        if not value:
            raise ConfigError(f"[alerts] {key} = {variable!r}: expected that environment variable to be set")
        return value

    sinks: list[AlertSink] = []
    if config.webhook_url_env is not None:
        sinks.append(WebhookAlertSink(secret(config.webhook_url_env, "webhook_url_env")))
    if config.email_to:
        username = password = None
        if config.smtp_user_env is not None and config.smtp_password_env is not None:
            username = secret(config.smtp_user_env, "smtp_user_env")
            password = secret(config.smtp_password_env, "smtp_password_env")
        sinks.append(EmailAlertSink(
            to=config.email_to, sender=config.email_from or "", host=config.smtp_host, port=config.smtp_port,
            starttls=config.smtp_starttls, username=username, password=password,
        ))
    return sinks
