"""The currencies an account may hold: fixed when the account is opened, the unit of everything it
pays and is shown (balance, prices, costs, budgets, top-ups).

Every `*_cents` amount is in the minor unit of the account's currency: US cents for `USD`, fen
(1/100 yuan) for `CNY`. The ledger keeps both with the same exactness (core/billing/money.py).
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["CURRENCIES", "DEFAULT_CURRENCY", "Currency", "currency_of", "minor_unit"]

Currency = Literal["USD", "CNY"]
CURRENCIES: tuple[Currency, ...] = get_args(Currency)
DEFAULT_CURRENCY: Currency = "USD"


def currency_of(value: str) -> Currency:
    """A stored currency code, checked (the column's constraint allows no other)."""
    for currency in CURRENCIES:
        if value == currency:
            return currency
    raise ValueError(f"unknown currency {value!r}")


def minor_unit(currency: Currency) -> str:
    """What a `*_cents` amount counts in this currency, for text meant for people: cents or fen."""
    return "fen" if currency == "CNY" else "cents"
