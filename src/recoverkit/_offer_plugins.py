"""Start-up checks of the plug-ins offers need: a catalogue for substitute offers, a loyalty programme for loyalty
bonuses, a base currency for exchange rates. Raised as :class:`~recoverkit.errors.ConfigError` when the engine
is built, naming the flow, step and offer, rather than when the first such message falls due at 3 a.m.
"""

from __future__ import annotations

from collections.abc import Iterator

from .catalogue import Catalogue
from .config import Config
from .currency import Rates
from .errors import ConfigError
from .loyalty import Loyalty

__all__ = ["check_offer_plugins"]


def _complementing(config: Config) -> Iterator[str]:
    """Where the flows make an offer with ``complements`` (whatever its kind)."""
    for kind in ("discount", "free_shipping", "payment_help", "substitute", "loyalty_bonus"):
        for where in _uses(config, kind):
            name = where.rsplit("(offer ", 1)[1][1:-2]
            if config.offers[name].complements:
                yield where


def _uses(config: Config, kind: str) -> Iterator[str]:
    """Where the flows can make an offer of ``kind``: ``flow 'f' step 0 (offer 'swap')``, once each."""
    seen: set[str] = set()
    for flow in config.flows:
        for index, step in enumerate(flow.steps):
            named = [step.offer, *step.offer_by_reason.values(), *(v.offer for v in step.variants)]
            for name in dict.fromkeys(n for n in named if n is not None):
                where = f"flow {flow.name!r} step {index} (offer {name!r})"
                if config.offers[name].kind == kind and where not in seen:
                    seen.add(where)
                    yield where


def check_offer_plugins(
    config: Config, *, catalogue: Catalogue | None, loyalty: Loyalty | None, rates: Rates | None
) -> None:
    """Raise :class:`ConfigError` when a plug-in the flows need is missing or is not one."""
    if catalogue is not None and not callable(getattr(catalogue, "suggest", None)):
        raise ConfigError(
            f"catalogue {type(catalogue).__name__} has no `suggest(cart, *, kind, limit)` method; expected an object "
            "implementing recoverkit.catalogue.Catalogue"
        )
    if loyalty is not None and not callable(getattr(loyalty, "grant", None)):
        raise ConfigError(
            f"loyalty {type(loyalty).__name__} has no `grant(*, customer_id, points, multiplier, expires_at, key)` "
            "method; expected an object implementing recoverkit.loyalty.Loyalty"
        )
    if rates is not None and not callable(getattr(rates, "rate", None)):
        raise ConfigError(
            f"rates {type(rates).__name__} has no `rate(currency)` method; expected an object implementing "
            "recoverkit.currency.Rates"
        )
    if catalogue is None:
        uses = list(dict.fromkeys([*_uses(config, "substitute"), *_complementing(config)]))
        if uses:
            raise ConfigError(
                f"{', '.join(uses)} suggests products, but no catalogue was given; pass catalogue=<your Catalogue> "
                "to Engine (recoverkit.catalogue.StaticCatalogue serves a fixed list), or remove the offer"
            )
    if loyalty is None:
        uses = list(_uses(config, "loyalty_bonus"))
        if uses:
            raise ConfigError(
                f"{', '.join(uses)} grants loyalty points, but no loyalty programme was given; pass "
                "loyalty=<your Loyalty> to Engine, or remove the offer"
            )
    if rates is not None and config.currency.base is None:
        raise ConfigError(
            "rates were given to Engine but `currency.base` is not set; expected the base currency the rates "
            'convert from ([currency] base = "EUR")'
        )
