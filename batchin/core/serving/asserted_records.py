"""POST /v1/vaas (and the MCP tool create_audit_record): a receipt for texts the caller supplies.

Such a record is signed with the same key as the receipts of calls we served, so it says what it is
(`attestation: caller_asserted`, `asserted_by`: the user) and it is a paid call like any other: one
record costs `Settings.vaas_record_price_usd` (`vaas_record_price_cny` for CNY accounts), reserved
before signing and settled after, so a caller without credit or budget gets 402 and no record, and
the charge shows up as one usage log
(model `vaas`, endpoint `vaas.records`, 1 `records` unit). The request itself counts against the
key's RPM limit at admission, as every authenticated request does.

It lives in serving because it is the one place allowed both the audit signer and the meter.
"""

from __future__ import annotations

from decimal import Decimal

from batchin.core.audit.service import AuditService
from batchin.core.billing.metering import MeteringService
from batchin.core.billing.money import cost_per_unit
from batchin.core.context import CallContext
from batchin.protocol.audit import VaasCreateRequest, VaasRecord
from batchin.protocol.currency import Currency

__all__ = ["ASSERTED_ENDPOINT", "ASSERTED_MODEL", "AssertedRecordService"]

ASSERTED_MODEL = "vaas"
ASSERTED_ENDPOINT = "vaas.records"


class AssertedRecordService:
    def __init__(
        self, audit: AuditService, metering: MeteringService, prices: dict[Currency, Decimal]
    ) -> None:
        self._audit = audit
        self._metering = metering
        # One record's cost in each currency's ledger units.
        self.price_units = {currency: cost_per_unit(1, price) for currency, price in prices.items()}

    async def create(self, ctx: CallContext, request: VaasCreateRequest) -> VaasRecord:
        price_units = self.price_units[ctx.principal.currency]
        async with self._metering.call(
            ctx, model=ASSERTED_MODEL, endpoint=ASSERTED_ENDPOINT, max_cost_units=price_units
        ) as call:
            call.begin()
            record = await self._audit.create(ctx, request)
            call.record(cost_units=price_units, units=1, unit="records")
        return record
