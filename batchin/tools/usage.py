"""usage_summary, usage_logs, usage_by_model, topup_history: what the account has spent and paid
in, the same core calls (and the same `account:read` scope) as /v1/usage/* and /v1/topup/history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Self

from pydantic import BaseModel, Field

from batchin.core.billing.topups import TopupService
from batchin.core.billing.usage import MAX_PAGE, UsageService
from batchin.mcp_server.caller import current, uses
from batchin.protocol.currency import minor_unit
from batchin.protocol.topup import TopupRecord
from batchin.protocol.usage import ModelUsage, UsageLog, UsageSummary, UsageTotals
from batchin.services import Services
from batchin.tools.registry import ToolSpec


@dataclass(frozen=True, slots=True)
class UsageToolDeps:
    """What the usage and top-up tools use."""

    usage: UsageService
    topups: TopupService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(usage=services.usage, topups=services.topups)


class UsageLogPage(BaseModel):
    """A page of /v1/usage/logs: the rows, and where the next page starts (the HTTP `Link` header's
    offset), null on the last page."""

    data: list[UsageLog]
    next_offset: int | None = Field(description="pass as `offset` for the next page; null: no more")


async def usage_summary(deps: UsageToolDeps = uses(UsageToolDeps)) -> UsageSummary:
    """This API key's user: requests, tokens and cost so far (cost in cents, or fen for a CNY account)."""
    call = current()
    return await deps.usage.summary(call.ctx.principal.user_id)


async def usage_logs(
    limit: Annotated[int, Field(description=f"Rows, newest first (1-{MAX_PAGE}).", ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Field(description="Rows to skip (next_offset of the previous page).", ge=0)] = 0,
    deps: UsageToolDeps = uses(UsageToolDeps),
) -> UsageLogPage:
    """Your request-level usage logs, newest first: model, endpoint, tokens or units, cost in cents
    (fen for a CNY account), latency and the request id each call answered with, as GET
    /v1/usage/logs."""
    call = current()
    page = await deps.usage.logs_page(call.ctx.principal.user_id, limit=limit, offset=offset)
    following = int(page.next_query["offset"]) if page.next_query else None
    return UsageLogPage(data=page.items, next_offset=following)


async def usage_by_model(deps: UsageToolDeps = uses(UsageToolDeps)) -> list[ModelUsage]:
    """Your totals per model (requests, tokens, cost in cents, or fen for a CNY account), costliest first, as
    GET /v1/usage/by-model."""
    call = current()
    return await deps.usage.by_model(call.ctx.principal.user_id)


async def topup_history(deps: UsageToolDeps = uses(UsageToolDeps)) -> list[TopupRecord]:
    """Your top-ups (Stripe, USDC, operator credits), newest first, with amount in cents (fen for a
    CNY account) and status, as GET /v1/topup/history."""
    call = current()
    return await deps.topups.history(call.ctx.principal.user_id)


def _totals(totals: UsageTotals) -> str:
    return (
        f"{totals.total_requests} requests, {totals.total_input_tokens} input and "
        f"{totals.total_output_tokens} output tokens, {totals.total_cost_cents} {minor_unit(totals.currency)}"
    )


def summary_text(summary: UsageSummary) -> str:
    return f"So far: {_totals(summary)}."


def logs_text(page: UsageLogPage) -> str:
    lines = [
        f"- {log.created_at} {log.model} {log.endpoint}: {log.units:g} {log.unit}, "
        f"{log.cost_cents} {minor_unit(log.currency)}, {log.latency_ms} ms, {log.status} "
        f"(request {log.request_id})"
        for log in page.data
    ]
    if page.next_offset is not None:
        lines.append(f"More: call again with offset={page.next_offset}.")
    return "\n".join(lines) if lines else "No usage yet."


def by_model_text(models: list[ModelUsage]) -> str:
    return "\n".join(f"- {m.model}: {_totals(m)}" for m in models) if models else "No usage yet."


def topups_text(records: list[TopupRecord]) -> str:
    if not records:
        return "No top-ups."
    return "\n".join(
        f"- {r.created_at} {r.amount_cents} {minor_unit(r.currency)} via {r.source}: {r.status} ({r.id})"
        for r in records
    )


TOOLS = [
    ToolSpec(usage_summary, "Usage summary", read_only=True, scope="account:read", summary=summary_text),
    ToolSpec(usage_logs, "Usage logs", read_only=True, scope="account:read", summary=logs_text),
    ToolSpec(usage_by_model, "Usage by model", read_only=True, scope="account:read", summary=by_model_text),
    ToolSpec(topup_history, "Top-up history", read_only=True, scope="account:read", summary=topups_text),
]
