"""The paid-call wrapper every inference path uses: reserve → work → settle, or release.

    async with metering.call(ctx, model=..., endpoint=..., max_cost_units=...) as call:
        ...admission (may refuse: nothing is billed, nothing is logged)...
        call.begin()                          # the engine starts working from here
        ...
        call.record(input_tokens=..., output_tokens=..., cost_units=...)

Leaving the block normally settles the recorded cost (`succeeded`). A cancellation (client gone)
(or ClientGone) after `begin()` settles what was recorded so far (`cancelled`: the unused part is
released). A
storage quota refusal of the outputs (StorageQuotaExceeded: they could not be stored) releases
everything and writes no log, as a refusal before the work would. Any other error after `begin()`
writes a `failed` log with no charge. Before `begin()` every exit is a
release: a refusal never bills and never writes a cost.

A batch task's context carries a `BatchBilling`: its cost is the standard cost times the batch
price ratio (rounded up to a whole unit), its reservation id is fixed by the caller (so a restart
can find it), and a successful call is not settled here: the batch worker settles it in the same
transaction that records the task's result, so a task is billed exactly when it is marked done. A
cancelled batch call is released, not charged: its task runs again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from fractions import Fraction

from batchin.core.billing.ledger import LedgerService
from batchin.core.billing.ledger_records import Reservation, UsageRecord
from batchin.core.context import BatchBilling, CallContext
from batchin.errors import Preempted, StorageQuotaExceeded, WorkLost


@dataclass(slots=True)
class MeteredCall:
    reservation: Reservation
    model: str
    endpoint: str
    request_id: str
    started: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    units: float = 0.0
    unit: str = "tokens"
    cost_units: int = 0
    charged_units: int | None = None
    began_at: float = field(default_factory=time.perf_counter)
    price_ratio: Fraction | None = None  # batch calls: a fraction of the standard price

    def begin(self) -> None:
        self.started = True

    def record(
        self,
        *,
        cost_units: int,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        units: float | None = None,
        unit: str | None = None,
    ) -> None:
        """Record usage so far (replaces earlier figures: call it as a stream progresses)."""
        self.cost_units = cost_units if self.price_ratio is None else scale_cost(cost_units, self.price_ratio)
        if input_tokens is not None:
            self.input_tokens = input_tokens
        if output_tokens is not None:
            self.output_tokens = output_tokens
        if units is not None:
            self.units = units
        if unit is not None:
            self.unit = unit

    def usage(self, status: str, *, charge: bool = True) -> UsageRecord:
        return UsageRecord(
            request_id=self.request_id,
            model=self.model,
            endpoint=self.endpoint,
            cost_units=self.cost_units if charge else 0,
            latency_ms=int((time.perf_counter() - self.began_at) * 1000),
            status=status,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            units=self.units if self.units else float(self.input_tokens + self.output_tokens),
            unit=self.unit,
        )


def scale_cost(units: int, ratio: Fraction) -> int:
    """`units` times `ratio`, rounded up to a whole unit (exact integer arithmetic)."""
    return -(-units * ratio.numerator // ratio.denominator)


def succeeded_call(billing: BatchBilling) -> MeteredCall | None:
    """The batch call metering left unsettled for the batch worker, if it succeeded."""
    return billing.call if isinstance(billing.call, MeteredCall) else None


class ClientGone(Exception):
    """The caller stopped reading (disconnect, stalled reader dropped): like a cancellation, the
    work done so far is charged and the rest of the reservation released."""


class MeteringService:
    def __init__(self, ledger: LedgerService) -> None:
        self._ledger = ledger

    async def check_funds(self, ctx: CallContext, min_cost_units: int) -> None:
        """402 now if the caller cannot pay even `min_cost_units`: for a call whose price is known
        only after costly work (decoding an upload), so that a caller who will be refused is
        refused first. The reservation of `call` still decides."""
        billing = ctx.billing
        units = min_cost_units if billing is None else scale_cost(min_cost_units, billing.price_ratio)
        await self._ledger.check_funds(ctx.principal, units)

    def call(self, ctx: CallContext, *, model: str, endpoint: str, max_cost_units: int) -> _Metered:
        """`async with`: reserves on entry, settles or releases on exit (the module docstring)."""
        return _Metered(self, ctx, model, endpoint, max_cost_units)

    async def _close(self, call: MeteredCall, status: str, *, charge: bool) -> None:
        if not call.started:
            await self._ledger.release(call.reservation)
            return
        call.charged_units = await self._ledger.settle(call.reservation, call.usage(status, charge=charge))


class _Metered:
    """`MeteringService.call`'s context: a class, not an `asynccontextmanager`, which costs an async
    generator (registered with the loop, unregistered when collected) and its frames per call. The
    exit is the generator's `except`/`else` as it was: an exception leaving the block is raised
    again after its closing (`__aexit__` returns None)."""

    __slots__ = ("_call", "_ctx", "_endpoint", "_max_cost_units", "_metering", "_model")

    def __init__(
        self, metering: MeteringService, ctx: CallContext, model: str, endpoint: str, max_cost_units: int
    ) -> None:
        self._metering, self._ctx = metering, ctx
        self._model, self._endpoint, self._max_cost_units = model, endpoint, max_cost_units
        self._call: MeteredCall | None = None

    async def __aenter__(self) -> MeteredCall:
        ctx, ledger = self._ctx, self._metering._ledger
        billing = ctx.billing
        if billing is None:
            reservation = await ledger.reserve(ctx.principal, self._max_cost_units)
            call = MeteredCall(reservation, self._model, self._endpoint, ctx.request_id)
        else:
            reservation = await ledger.reserve(
                ctx.principal,
                scale_cost(self._max_cost_units, billing.price_ratio),
                reservation_id=billing.reservation_id,
            )
            call = MeteredCall(
                reservation, self._model, self._endpoint, ctx.request_id, price_ratio=billing.price_ratio
            )
        self._call = call
        return call

    async def __aexit__(self, kind: type[BaseException] | None, error: object, tb: object) -> None:
        call, metering, billing = self._call, self._metering, self._ctx.billing
        if call is None:  # unreachable: an exit follows a successful entry
            return
        ledger, reservation = metering._ledger, call.reservation
        if kind is None:
            if billing is not None and call.started:
                call.charged_units = max(0, min(call.cost_units, reservation.amount_units))
                billing.call = call  # settled by the batch worker, with the task's result
                return
            await metering._close(call, "succeeded", charge=True)
        elif issubclass(kind, (asyncio.CancelledError, ClientGone, Preempted)):
            # Preempted: a fill call whose slot at the shared engine was taken (`serve --workers`),
            # as a cancelled one whose slot in this process was taken.
            if billing is not None:  # no result reaches the batch: nothing is charged, it runs again
                await asyncio.shield(ledger.release(reservation))
            else:
                await asyncio.shield(metering._close(call, "cancelled", charge=True))
        elif issubclass(
            kind, (WorkLost, StorageQuotaExceeded)
        ):  # its engine died, or no room to keep what it made
            await asyncio.shield(ledger.release(reservation))
        else:
            await asyncio.shield(metering._close(call, "failed", charge=False))
