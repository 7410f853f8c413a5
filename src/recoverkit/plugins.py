"""The shop's plug-ins, declared once: the bundle that :class:`~recoverkit.Engine`,
:class:`~recoverkit.BackgroundEngine` and the framework integrations all take.

A new plug-in is a field here (with its docstring and its check in :meth:`Plugins.validate`) and its use in the
stage that calls it; the engines and integrations pass the bundle through without naming its fields.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._offer_plugins import check_offer_plugins
from .catalogue import Catalogue
from .channels.base import Channel
from .channels.console import ConsoleChannel
from .clock import Clock
from .config import Config, channel_paths
from .currency import Rates
from .deadletters import DeadLetters
from .dispatch import Guard
from .errors import ConfigError
from .links import RestoreLinks
from .loyalty import Loyalty
from .offers import CouponProvider
from .score import Scorer
from .store.base import Store

__all__ = ["Plugins"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plugins:
    """What a shop plugs into the engine; every field is optional (``None``: the engine's default).

    Frozen: a bundle can be shared by several engines (a forked worker builds its own engine from the same
    bundle). :meth:`validate` checks it against a :class:`~recoverkit.Config` and is what the engine calls at
    construction, so a bad plug-in is a :class:`~recoverkit.errors.ConfigError` at start-up, not at 3 a.m.

    >>> from recoverkit import Config, MemoryChannel, Plugins
    >>> plugins = Plugins(channels={"email": MemoryChannel()}).validate(Config())
    >>> sorted(plugins.channels or {})
    ['email']
    """

    channels: Mapping[str, Channel] | None = None
    """Channel name used by the flows (``"email"``, ``"sms"``, ...) to its adapter, an object with
    ``async send(message)`` (:class:`~recoverkit.channels.Channel`). Default: a
    :class:`~recoverkit.channels.ConsoleChannel` for every channel the flows use, which only logs."""

    store: Store | str | os.PathLike[str] | None = None
    """Where state is kept: a :class:`~recoverkit.store.Store`, or the path of a SQLite file. Default:
    ``config.store.path``, else memory (lost with the process)."""

    clock: Clock | None = None
    """The engine's time (:class:`~recoverkit.clock.Clock`). Default: wall time; an
    :class:`~recoverkit.clock.EventClock` replays recorded events, a :class:`~recoverkit.clock.FakeClock` runs
    tests."""

    scorer: Scorer | None = None
    """The abandonment model, an object with ``score(cart, features)`` (:class:`~recoverkit.score.Scorer`).
    Default: ``config.model`` (a file from ``recoverkit train``) when set, else the built-in rules."""

    guard: Guard | None = None
    """Asked just before each send, ``guard(message) -> bool`` (sync or async); false vetoes the send."""

    coupons: CouponProvider | None = None
    """Issues the codes of discount and free-shipping offers, an object with
    ``async issue(offer, *, cart_key, contact_key, now)`` (:class:`~recoverkit.offers.CouponProvider`). Default: a
    :class:`~recoverkit.offers.CodeBook` on the store, keyed by the secret in ``config.code_secret_env``."""

    links: RestoreLinks | None = None
    """Builds the signed cart-restore link of each message (:class:`~recoverkit.links.RestoreLinks`). Default:
    from ``config.links`` when its ``base_url`` is set."""

    catalogue: Catalogue | None = None
    """Finds the products of substitute offers, an object with ``async suggest(cart, *, kind, limit)``
    (:class:`~recoverkit.catalogue.Catalogue`); required when a flow makes such an offer."""

    loyalty: Loyalty | None = None
    """Grants the points of loyalty-bonus offers, an object with
    ``async grant(*, customer_id, points, multiplier, expires_at, key)`` (:class:`~recoverkit.loyalty.Loyalty`);
    required when a flow makes such an offer."""

    rates: Rates | None = None
    """Converts amounts given in ``config.currency.base`` to a cart's currency, an object with
    ``rate(currency)`` (:class:`~recoverkit.currency.Rates`), ahead of the static ``config.currency.rates``."""

    dead_letters: str | Path | DeadLetters | None = None
    """Where messages that could not be delivered are kept: a path, or a
    :class:`~recoverkit.deadletters.DeadLetters`. Default: in memory."""

    def merged(self, **given: Any) -> Plugins:
        """This bundle with the plug-ins given as keyword arguments (``None``: not given) added.

        Raises :class:`TypeError` naming a plug-in given both here and in the bundle, rather than pick one.
        """
        added = {name: value for name, value in given.items() if value is not None}
        for name in added:
            if getattr(self, name) is not None:
                raise TypeError(f"{name} was given both as a keyword argument and in plugins=; give it once")
        return dataclasses.replace(self, **added) if added else self

    def as_kwargs(self) -> dict[str, Any]:
        """The fields as keyword arguments of :class:`~recoverkit.Engine` (``None`` for those not set)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    def validate(self, config: Config) -> Plugins:
        """Check every plug-in against ``config``; return the bundle with ``channels`` and ``scorer`` resolved.

        ``channels`` becomes a :class:`~recoverkit.channels.ConsoleChannel` per channel the flows use when not
        given, and ``scorer`` the model of ``config.model`` when not given. Raises
        :class:`~recoverkit.errors.ConfigError` naming the plug-in (or the flow step) and what was expected: a
        channel the flows use without an adapter, an adapter without ``send``, a template that does not
        render, an offer plug-in that is missing or is not one, a scorer without ``score``, a guard that is
        not callable, a store that is neither a Store nor a path. Opens nothing but ``config.model``.
        """
        if not isinstance(config, Config):
            raise ConfigError(f"config must be a recoverkit.Config, got {type(config).__name__}")
        check_offer_plugins(config, catalogue=self.catalogue, loyalty=self.loyalty, rates=self.rates)
        channels = self._checked_channels(config)
        scorer = self.scorer
        if scorer is None and config.model is not None:
            # Before the store is opened: a bad file is a ConfigError naming the file and field, and leaks nothing.
            from .model import load_model

            scorer = load_model(config.model, shipping_shock_ratio=config.shipping_shock_ratio)
        if scorer is not None and not callable(getattr(scorer, "score", None)):
            raise ConfigError(f"scorer {type(scorer).__name__} has no `score(cart, features)` method")
        if self.guard is not None and not callable(self.guard):
            raise ConfigError(f"guard must be callable as guard(message) -> bool, got {type(self.guard).__name__}")
        if self.store is not None and not isinstance(self.store, (str, os.PathLike, Store)):
            raise ConfigError(
                f"store must be a recoverkit.store.Store or the path of a SQLite file, got {type(self.store).__name__}"
            )
        return dataclasses.replace(self, channels=channels, scorer=scorer)

    def _checked_channels(self, config: Config) -> dict[str, Channel]:
        # Steps' channels and fallbacks and their A/B variants' channels: a variant's channel with no adapter
        # would otherwise fail only when that variant is first drawn, at 3 a.m.
        paths = channel_paths(config)
        used = sorted(paths)
        channels = self.channels
        if channels is None:
            console = ConsoleChannel()
            channels = {name: console for name in used}
        missing = [name for name in used if name not in channels]
        if missing:
            raise ConfigError(
                f"`{paths[missing[0]][0]}`: the flows use channel(s) {missing} but no adapter was given for them; "
                f"pass channels={{{', '.join(repr(m) + ': <adapter>' for m in missing)}}} to Engine, or change "
                "the flows"
            )
        for name, adapter in channels.items():
            if not callable(getattr(adapter, "send", None)):
                raise ConfigError(
                    f"channel {name!r}: {type(adapter).__name__} has no `send(message)` method; expected an object "
                    "implementing recoverkit.channels.Channel"
                )
        _check_templates(config, channels)
        return dict(channels)


def _check_templates(config: Config, channels: Mapping[str, Channel]) -> None:
    """Each adapter with ``check_templates`` checks the templates of the steps (fallbacks, variants) it sends."""
    # Templates are checked now, not when the first message of a flow falls due at 3 a.m.
    for name, adapter in channels.items():
        check = getattr(adapter, "check_templates", None)
        if callable(check):
            templates = [
                template
                for flow in config.flows
                for step in flow.steps
                for template, channel in (
                    (step.template, step.channel),
                    (step.template, step.fallback),
                    *((v.template or step.template, v.channel or step.channel) for v in step.variants),
                )
                if channel == name
            ]
            if templates:
                check(templates)
