"""The ledger's backend contract (like encode/databases' interfaces.py): what a backend is given
and must do, and the records it passes. `LedgerService` (ledger.py) picks a backend; the backends
import only this module, never the service.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from batchin.core.billing.money import cents_to_units
from batchin.errors import PaymentRequired


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    user_id: str
    key_id: str | None
    month: str
    amount_units: int


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """What one call consumed. `cost_units` is its price; the ledger caps it at the reservation."""

    request_id: str
    model: str
    endpoint: str
    cost_units: int
    latency_ms: int
    status: str = "succeeded"
    input_tokens: int = 0
    output_tokens: int = 0
    units: float = 0.0
    unit: str = "tokens"


class SettleGuard(Protocol):
    """A write that must commit together with a settlement, or not at all. Each form returns
    False to refuse (the settlement is then rolled back)."""

    def apply_sqlite(self, cur: sqlite3.Cursor) -> bool:
        """On the SQLite group-commit writer's cursor."""

    async def apply(self, conn: AsyncConnection) -> bool:
        """In the portable backend's transaction."""


class SettlementRefused(Exception):
    """The guard of a settlement refused: nothing was charged, the reservation is still held."""


class LedgerBackend(Protocol):
    async def reserve(self, reservation: Reservation, budget_units: int | None, now: datetime) -> None:
        """Hold the amount or raise PaymentRequired (see the refusal helpers below)."""

    async def settle(
        self,
        reservation: Reservation,
        usage: UsageRecord,
        charged: int,
        now: datetime,
        guard: SettleGuard | None = None,
    ) -> bool:
        """Close a held reservation charging `charged`; False if it was already closed. With a
        guard, its write joins the transaction (SettlementRefused if it refuses)."""

    async def release(self, reservation: Reservation, now: datetime) -> bool:
        """Close a held reservation charging nothing; False if it was already closed."""

    async def close(self) -> None: ...


def balance_refusal() -> PaymentRequired:
    return PaymentRequired("Insufficient credit balance for this request. Top up your balance and retry.")


def budget_refusal(reservation: Reservation, budget_units: int) -> PaymentRequired:
    cents = budget_units // cents_to_units(1)
    return PaymentRequired(
        f"This API key's monthly budget of {cents} cents is exhausted for {reservation.month}. "
        "Raise the key's budget or use another key."
    )
