"""Amounts across currencies: thresholds given per currency, or in a base currency converted with the shop's rates.

Carts keep their currency: nothing here converts a cart. What is converted is what the *configuration* says
in amounts: the ``min_value``/``max_value`` of a flow's condition, and the ``amount``/``min_value`` of an
offer. For a cart in currency ``C`` an amount is found so:

1. given for ``C`` (``min_value = { USD = "25.00" }``): used as it is;
2. else given in the base currency (``[currency] base = "EUR"``; a plain amount, ``min_value = "20.00"``, is in
   the base currency once a base is set): multiplied by the rate of ``C`` and rounded to ``C``'s minor unit;
3. else (no amount for ``C`` or the base, or no rate for ``C``): unknown. A condition then does not hold and an
   offer is left out, counted (``condition_currency`` and ``offer_currency`` in the route stage's
   ``skipped``): recoverkit never guesses an amount.

Without a base, a plain amount is in the cart's currency whatever it is (``"20.00"`` is 20 EUR for a EUR cart
and 20 JPY for a yen cart), as before currencies could be converted. A cart without a currency is taken to be
in the base currency when one is set.

Rates come from :class:`Rates`, an object the shop passes as ``Engine(rates=...)`` (refreshed as the shop
likes: recoverkit asks it on every conversion), and from the static ``[currency] rates`` (:class:`StaticRates`):
the object's answer wins, and the static table fills in where it answers ``None``. A rate is a
:class:`~decimal.Decimal`: units of the currency per one unit of the base (``USD = "1.08"`` with base EUR).

No float touches money: amounts and rates are Decimals, products are exact (computed with 100 significant
digits) and rounded once to integer minor units. A :class:`Rates` object answering a float, a non-positive or a
non-finite rate, or raising, is treated as having no rate for that currency (and logged), never trusted.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from decimal import Decimal
from typing import Final, Protocol, runtime_checkable

from ._log import get_logger
from .money import to_minor

__all__ = ["MAX_RATE", "Amounts", "Converter", "Rates", "StaticRates", "convert"]

_log = get_logger("recoverkit.currency")

#: Rates are below this (and above 0): enough for any currency against any other, small enough that a
#: converted threshold still fits the precision of a Decimal in minor units.
MAX_RATE: Final = Decimal(10) ** 12
#: Digits for the product of an amount (< 10^15, 4 decimals at most) and a rate: enough to make it exact.
_PRECISION: Final = 100


@runtime_checkable
class Rates(Protocol):
    """Exchange rates from the shop's base currency, passed as ``Engine(rates=...)``.

    ``rate(currency)`` is how many units of ``currency`` one unit of the base currency buys, as a
    :class:`~decimal.Decimal` (``Decimal("1.08")`` for USD against EUR), or ``None`` when the shop has no rate
    for it. It is called synchronously by the route stage, for every threshold it converts, so it must be cheap:
    answer from memory and refresh the table elsewhere (a daily job), never over the network here.
    """

    def rate(self, currency: str) -> Decimal | None:
        """Units of ``currency`` per unit of the base currency, or ``None``."""
        ...


def _valid_rate(rate: object) -> bool:
    # Exactly Decimal or int (not bool, not float): a float rate has already lost the digits the shop meant.
    if isinstance(rate, bool) or not isinstance(rate, Decimal | int):
        return False
    value = Decimal(rate)
    return value.is_finite() and 0 < value < MAX_RATE


class StaticRates:
    """A fixed table of rates (``{"USD": Decimal("1.08")}``): the reference :class:`Rates`, what
    ``[currency] rates`` becomes, and a test double (:meth:`set` changes a rate, ``None`` removes it).

    Raises :class:`ValueError` for a rate that is not a positive, finite Decimal (or int) below
    :data:`MAX_RATE`.

    >>> StaticRates({"USD": Decimal("1.08")}).rate("USD")
    Decimal('1.08')
    """

    def __init__(self, rates: Mapping[str, Decimal | int] | None = None) -> None:
        self._rates: dict[str, Decimal] = {}
        for currency, rate in (rates or {}).items():
            self.set(currency, rate)

    def set(self, currency: str, rate: Decimal | int | None) -> None:
        """Set (or, with ``None``, remove) the rate of ``currency``."""
        if rate is None:
            self._rates.pop(currency, None)
            return
        if not _valid_rate(rate):
            raise ValueError(f"StaticRates: rate of {currency}: expected a Decimal > 0 and < 10^12, got {rate!r}")
        self._rates[currency] = Decimal(rate)

    def rate(self, currency: str) -> Decimal | None:
        return self._rates.get(currency)

    def __repr__(self) -> str:
        return f"StaticRates({self._rates!r})"


def convert(amount: Decimal, rate: Decimal, currency: str | None) -> int:
    """``amount`` (major units of the base currency) times ``rate``, in integer minor units of ``currency``.

    The product is exact; it is rounded once, half to even, to the currency's minor unit. Half-even because it is
    how every other amount becomes minor units (:func:`~recoverkit.money.to_minor`), it is unbiased, and the
    rounded value is the one both shown to the shopper (``on orders of 21.60 USD or more``) and enforced
    (the code stores that same integer), so what the shopper reads is exactly what holds; a rate carries far
    more uncertainty than the half minor unit at stake. Raises :class:`ValueError` when the result does not fit.

    >>> convert(Decimal("20.00"), Decimal("1.08"), "USD")
    2160
    >>> convert(Decimal("20.00"), Decimal("162.4567"), "JPY")
    3249
    """
    with decimal.localcontext() as context:
        context.prec = _PRECISION
        context.traps[decimal.Inexact] = False
        return to_minor(amount * rate, currency)


#: A threshold as configured: one amount (in the base currency, or without a base in the cart's), or one per
#: currency.
Amounts = Decimal | Mapping[str, Decimal]


class Converter:
    """Finds a configured amount in a cart's currency, as the module docstring describes.

    ``base`` is the base currency (``None``: none, amounts are in the cart's currency); ``static`` the rates of
    ``[currency] rates``; ``rates`` the shop's :class:`Rates`, asked first. Never raises for a missing or bad
    rate: the amount is then unknown (``None``).
    """

    def __init__(
        self, base: str | None = None, static: Mapping[str, Decimal] | None = None, rates: Rates | None = None
    ) -> None:
        self.base = base
        self._static = StaticRates(static)
        self._rates = rates
        self._warned: set[str] = set()

    def rate(self, currency: str) -> Decimal | None:
        """The rate of ``currency`` against the base: 1 for the base itself, else the shop's, else the static one."""
        if currency == self.base:
            return Decimal(1)
        if self._rates is not None:
            try:
                answer: object = self._rates.rate(currency)
            except Exception as exc:  # a misbehaving plug-in: contained, logged once per currency, not trusted
                self._warn(currency, "rates_failed", error=type(exc).__name__)
            else:
                if answer is not None:
                    if _valid_rate(answer):
                        assert isinstance(answer, Decimal | int)
                        return Decimal(answer)
                    self._warn(currency, "rate_invalid", type=type(answer).__name__)
        return self._static.rate(currency)

    def _warn(self, currency: str, event: str, **fields: str) -> None:
        if currency not in self._warned:
            self._warned.add(currency)
            _log.warning(event, currency=currency, **fields)

    def minor(self, amounts: Amounts, currency: str | None) -> int | None:
        """``amounts`` in integer minor units of ``currency``, or ``None`` when that cannot be known."""
        if isinstance(amounts, Decimal):
            if self.base is None:
                return to_minor(amounts, currency)  # no base: a plain amount is in the cart's currency
            amounts = {self.base: amounts}
        if currency is None:
            if self.base is None:
                return None
            currency = self.base  # a cart without a currency is in the shop's base currency
        given = amounts.get(currency)
        if given is not None:
            return to_minor(given, currency)
        if self.base is None:
            return None
        in_base = amounts.get(self.base)
        if in_base is None:
            return None
        rate = self.rate(currency)
        if rate is None:
            return None
        try:
            return convert(in_base, rate, currency)
        except ValueError:  # beyond a Decimal's precision in minor units: no threshold anyone could meet
            return None
