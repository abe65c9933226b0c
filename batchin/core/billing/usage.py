"""Usage logs and totals. Totals come from the rollups written with each log, so they always equal
the sum of the logs and cost one small read however many logs a user has. The summary also says
how much the user's stored files hold against their storage quota (storage_quota.py). Every amount
is in the account's currency (its minor units), which each response names, read with the rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from batchin.core.billing.money import units_to_cents
from batchin.core.billing.storage_quota import StorageQuota
from batchin.core.clock import isoformat
from batchin.core.paging import Page, page_of
from batchin.errors import InvalidRequest
from batchin.protocol.currency import DEFAULT_CURRENCY, Currency, currency_of
from batchin.protocol.usage import ModelUsage, UsageLog, UsageSummary
from batchin.store.database import Database
from batchin.store.tables import usage_logs, usage_rollups, users

MAX_PAGE = 500
_DAILY_ROWS = 100_000


@dataclass(frozen=True, slots=True)
class LogFilters:
    """Narrowing of the usage log (the console's filters): each one given is ANDed."""

    model: str | None = None
    key_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        c = usage_logs.c
        found: list[ColumnElement[bool]] = []
        if self.model:
            found.append(c.model == self.model)
        if self.key_id:
            found.append(c.key_id == self.key_id)
        if self.since is not None:
            found.append(c.created_at >= self.since)
        if self.until is not None:
            found.append(c.created_at < self.until)
        return found


@dataclass(frozen=True, slots=True)
class DailyUsage:
    day: str  # YYYY-MM-DD, UTC
    model: str
    cost_micro_cents: int
    tokens: int


class UsageService:
    def __init__(self, database: Database, storage: StorageQuota) -> None:
        self._db = database
        self._storage = storage

    async def logs_page(self, user_id: str, *, limit: int = 50, offset: int = 0) -> Page[UsageLog]:
        """Newest first, with the query of the next page when there is one."""
        logs = await self.list_logs(user_id, limit=limit, offset=offset, probe=1)
        return page_of(logs, limit, lambda _: {"limit": str(limit), "offset": str(offset + limit)})

    async def list_logs(
        self,
        user_id: str,
        *,
        limit: int = 50,
        offset: int = 0,
        probe: int = 0,
        filters: LogFilters | None = None,
    ) -> list[UsageLog]:
        """Newest first. `probe` rows beyond `limit` tell a page whether more exist."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}.", param="limit")
        if offset < 0:
            raise InvalidRequest("offset must be zero or more.", param="offset")
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(usage_logs, users.c.currency)
                    .join(users, users.c.id == usage_logs.c.user_id)
                    .where(usage_logs.c.user_id == user_id, *(filters or LogFilters()).clauses())
                    .order_by(usage_logs.c.created_at.desc(), usage_logs.c.id.desc())
                    .limit(limit + probe)
                    .offset(offset)
                )
            ).all()
        return [_log(r) for r in rows]

    async def activity(self, user_id: str, since: datetime) -> tuple[int, int]:
        """(requests, failed requests) since `since`: one indexed range count."""
        c = usage_logs.c
        failed = func.coalesce(func.sum(case((c.status == "failed", 1), else_=0)), 0)
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    select(func.count(), failed).where(c.user_id == user_id, c.created_at >= since)
                )
            ).one()
        return int(row[0]), int(row[1])

    async def daily(self, user_id: str, since: datetime) -> list[DailyUsage]:
        """Spend and tokens per UTC day and model since `since` (at most _DAILY_ROWS logs read, the
        newest), oldest day first: what the console's charts draw."""
        c = usage_logs.c
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(c.created_at, c.model, c.cost_units, c.input_tokens, c.output_tokens)
                    .where(c.user_id == user_id, c.created_at >= since)
                    .order_by(c.created_at.desc())
                    .limit(_DAILY_ROWS)
                )
            ).all()
        totals: dict[tuple[str, str], list[int]] = {}
        for r in rows:
            day = r.created_at.strftime("%Y-%m-%d")
            bucket = totals.setdefault((day, r.model), [0, 0])
            bucket[0] += int(r.cost_units)
            bucket[1] += int(r.input_tokens) + int(r.output_tokens)
        return [
            DailyUsage(day=day, model=model, cost_micro_cents=cost, tokens=tokens)
            for (day, model), (cost, tokens) in sorted(totals.items())
        ]

    async def summary(self, user_id: str) -> UsageSummary:
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        func.coalesce(func.sum(usage_rollups.c.requests), 0),
                        func.coalesce(func.sum(usage_rollups.c.input_tokens), 0),
                        func.coalesce(func.sum(usage_rollups.c.output_tokens), 0),
                        func.coalesce(func.sum(usage_rollups.c.cost_units), 0),
                    ).where(usage_rollups.c.user_id == user_id)
                )
            ).one()
            currency = await _currency_of(conn, user_id)
        return UsageSummary(
            **_totals(*row),
            currency=currency,
            storage_bytes=await self._storage.used(user_id),
            storage_quota_bytes=self._storage.limit,
        )

    async def by_model(self, user_id: str) -> list[ModelUsage]:
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(usage_rollups)
                    .where(usage_rollups.c.user_id == user_id)
                    .order_by(usage_rollups.c.cost_units.desc(), usage_rollups.c.model)
                )
            ).all()
            currency = await _currency_of(conn, user_id)
        return [
            ModelUsage(
                model=r.model,
                currency=currency,
                **_totals(r.requests, r.input_tokens, r.output_tokens, r.cost_units),
            )
            for r in rows
        ]


async def _currency_of(conn: AsyncConnection, user_id: str) -> Currency:
    found = (await conn.execute(select(users.c.currency).where(users.c.id == user_id))).scalar()
    return DEFAULT_CURRENCY if found is None else currency_of(found)


def _totals(requests: Any, input_tokens: Any, output_tokens: Any, cost_units: Any) -> dict[str, Any]:
    cost = int(cost_units)
    return {
        "total_requests": int(requests),
        "total_input_tokens": int(input_tokens),
        "total_output_tokens": int(output_tokens),
        "total_cost_cents": units_to_cents(cost),
        "total_cost_micro_cents": cost,
    }


def _log(r: Any) -> UsageLog:
    return UsageLog(
        id=r.id,
        request_id=r.request_id,
        key_id=r.key_id,
        model=r.model,
        endpoint=r.endpoint,
        input_tokens=r.input_tokens,
        output_tokens=r.output_tokens,
        units=r.units,
        unit=r.unit,
        cost_cents=units_to_cents(r.cost_units),
        cost_micro_cents=r.cost_units,
        currency=currency_of(r.currency),
        latency_ms=r.latency_ms,
        status=r.status,
        created_at=isoformat(r.created_at) or "",
    )
