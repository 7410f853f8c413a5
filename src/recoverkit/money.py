"""Money without binary floats.

Amounts arrive as JSON numbers or strings and are decoded straight into :class:`decimal.Decimal` (msgspec
reads the digits exactly), then held as integers in the currency's minor unit (cents, yen, fils). Sums are
integer sums; nothing is ever added as a float.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

__all__ = ["format_minor", "minor_unit_exponent", "to_minor"]

# ISO 4217 currencies whose minor unit is not 1/100. Everything else (including unknown but well-formed
# codes) uses two decimals, which is what a shop sending an unlisted code almost always means.
_EXPONENTS: dict[str, int] = {
    # zero decimals
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    # three decimals
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # four decimals
    "CLF": 4, "UYW": 4,
}  # fmt: skip

# Decimal quantizers per exponent, built once: quantize() is the hot part of to_minor().
_QUANTUM = {e: Decimal(1).scaleb(-e) for e in range(5)}
_SCALE = {e: Decimal(10) ** e for e in range(5)}
# Prices repeat (a catalogue's products, in cart after cart), and converting one costs about a microsecond of
# Decimal arithmetic: the results are remembered, up to this many, by (amount, exponent). Decimal("35.79") and
# Decimal("35.790") are equal and hash alike, and convert alike.
_CACHE_SIZE = 4096
_converted: dict[tuple[Decimal, int], int] = {}


def minor_unit_exponent(currency: str | None) -> int:
    """Number of decimals in ``currency``'s minor unit (2 when unknown or absent)."""
    if currency is None:
        return 2
    return _EXPONENTS.get(currency, 2)


def to_minor(amount: Decimal, currency: str | None) -> int:
    """Convert ``amount`` in major units to an integer of minor units, rounding half to even.

    Sub-minor digits (``35.7900000001`` from a JavaScript float) are rounded rather than rejected because
    shops send them in practice; the rounding is exact decimal rounding, never float rounding.

    >>> to_minor(Decimal("35.79"), "EUR")
    3579
    >>> to_minor(Decimal("1200"), "JPY")
    1200
    """
    exp = _EXPONENTS.get(currency, 2) if currency is not None else 2
    key = (amount, exp)
    try:
        return _converted[key]
    except (KeyError, TypeError):  # not seen yet, or a signalling NaN, which cannot be hashed
        pass
    try:
        minor = int(amount.quantize(_QUANTUM[exp], rounding=ROUND_HALF_EVEN) * _SCALE[exp])
    except InvalidOperation as exc:  # NaN, Infinity or an amount beyond the context's precision
        raise ValueError(f"amount {amount!s} cannot be converted to minor units of {currency}") from exc
    if len(_converted) >= _CACHE_SIZE:
        _converted.clear()  # a new catalogue's worth: start again rather than track what is least used
    _converted[key] = minor
    return minor


def format_minor(amount: int, currency: str | None) -> str:
    """Render minor units as a plain decimal string with the currency code, for summaries and logs.

    >>> format_minor(3579, "EUR")
    '35.79 EUR'
    """
    exp = minor_unit_exponent(currency)
    text = str(Decimal(amount).scaleb(-exp).quantize(_QUANTUM[exp]))
    return f"{text} {currency or ''}".rstrip()
