"""The ledger's records and contract: what a call reserves and consumes, the guard a settlement may
carry, and the refusals. `LedgerService` (ledger.py) and its writes (ledger_writes.py) import this
module; it imports neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from batchin.core.billing.money import cents_to_units
from batchin.errors import PaymentRequired
from batchin.store.statements import Statement


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
    """A write that must commit together with a settlement, or not at all: one statement run in the
    settlement's transaction, on either write path. It refuses unless it changes exactly one row
    (the settlement is then rolled back)."""

    @property
    def statement(self) -> Statement: ...

    @property
    def params(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class GuardedSettlement:
    """One settlement of a block (LedgerWrites.settle_block): `charged` already bounded by the
    reservation. Without a guard (a call's settlement) it is plain data, sent by name to another
    process's writer."""

    reservation: Reservation
    usage: UsageRecord
    charged: int
    guard: SettleGuard | None = None


@dataclass(frozen=True, slots=True)
class PendingReserve:
    """One reservation of a block (LedgerWrites.reserve_block), with its key's budget if it has one."""

    reservation: Reservation
    budget_units: int | None


class SettlementRefused(Exception):
    """The guard of a settlement refused: nothing was charged, the reservation is still held."""


def balance_refusal() -> PaymentRequired:
    return PaymentRequired("Insufficient credit balance for this request. Top up your balance and retry.")


def budget_refusal(month: str, budget_units: int) -> PaymentRequired:
    cents = budget_units // cents_to_units(1)
    return PaymentRequired(
        f"This API key's monthly budget of {cents} cents is exhausted for {month}. "
        "Raise the key's budget or use another key."
    )
