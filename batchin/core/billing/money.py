"""Money as integers.

The ledger counts in micro-cents (1 cent = 1,000,000 units), so that a price of $0.02 per million
tokens is an exact integer per token (2 units) and every balance change equals the sum of the usage
logs that caused it. Amounts leave the service as `*_cents` numbers: whole cents as integers,
fractions as exact decimals (at most six places).
"""

from __future__ import annotations

import functools
from decimal import ROUND_CEILING, Decimal

UNITS_PER_CENT = 1_000_000
_UNITS_PER_USD = Decimal(UNITS_PER_CENT * 100)
_PER_MILLION = Decimal(1_000_000)


def cents_to_units(cents: int) -> int:
    return cents * UNITS_PER_CENT


def units_to_cents(units: int) -> int | float:
    whole, rest = divmod(units, UNITS_PER_CENT)
    if rest == 0:
        return whole
    return float(Decimal(units) / UNITS_PER_CENT)


# A pure function the streaming path calls twice per token with counts that recur from call to
# call (1, 2, 3 … tokens at the same prices): cached, it is a dict lookup instead of Decimal work.
@functools.lru_cache(maxsize=16384, typed=True)
def cost_per_million(count: int | float, usd_per_million: Decimal | float | str) -> int:
    """Cost of `count` tokens at a price in USD per 1M tokens, rounded up to a whole unit."""
    units = Decimal(str(count)) * Decimal(str(usd_per_million)) * _UNITS_PER_USD / _PER_MILLION
    return int(units.to_integral_value(rounding=ROUND_CEILING))


def cost_per_unit(count: int | float, usd_per_unit: Decimal | float | str) -> int:
    """Cost of `count` items (images, audio seconds, video seconds) at a USD price per item."""
    units = Decimal(str(count)) * Decimal(str(usd_per_unit)) * _UNITS_PER_USD
    return int(units.to_integral_value(rounding=ROUND_CEILING))
