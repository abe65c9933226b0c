"""Usage (charts, filtered log, CSV), batches (live progress over SSE, cancel, downloads) and the
model catalog."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from starlette.responses import FileResponse, Response, StreamingResponse

from batchin.console.charts import Bar, stacked_bars
from batchin.console.web import CURRENCY_SYMBOLS, Page, redirect, render
from batchin.core.billing.usage import LogFilters
from batchin.core.clock import utcnow
from batchin.errors import InvalidRequest
from batchin.protocol.batches import TERMINAL_STATUSES
from batchin.protocol.usage import UsageLog

_CHART_DAYS = 30
_LOG_ROWS = 200
_CSV_ROWS = 500
_PROGRESS_SECONDS = 1.0


def _day(text: str, param: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=utcnow().tzinfo)
    except ValueError:
        raise InvalidRequest(f"{param} must be a date (YYYY-MM-DD).", param=param) from None


def _filters(page: Page) -> LogFilters:
    query = page.request.query_params
    until = _day(query.get("until", ""), "until")
    return LogFilters(
        model=query.get("model") or None,
        key_id=query.get("key") or None,
        since=_day(query.get("since", ""), "since"),
        until=until + timedelta(days=1) if until else None,  # the whole last day
    )


async def usage(page: Page) -> Response:
    services = page.services
    currency = page.user.currency if page.user is not None else "USD"
    since = (utcnow() - timedelta(days=_CHART_DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    daily = await services.usage.daily(page.user_id, since)
    days = [(since + timedelta(days=n)).strftime("%Y-%m-%d") for n in range(_CHART_DAYS)]
    models = sorted({d.model for d in daily})
    spend = {day: Bar(day, {}) for day in days}
    tokens = {day: Bar(day, {}) for day in days}
    for d in daily:
        if d.day in spend:
            spend[d.day].parts[d.model] = d.cost_micro_cents / 100_000_000  # dollars or yuan
            tokens[d.day].parts[d.model] = float(d.tokens)
    logs = await services.usage.list_logs(page.user_id, limit=_LOG_ROWS, filters=_filters(page))
    keys = await services.accounts.list_keys(page.user_id)
    return render(
        page,
        "usage.html",
        spend_chart=stacked_bars(
            list(spend.values()),
            models,
            page.t("usage.chart_spend", cur=page.t(f"currency.{currency}")),
            CURRENCY_SYMBOLS[currency] + "{:,.4f}",
        ),
        tokens_chart=stacked_bars(list(tokens.values()), models, page.t("usage.chart_tokens")),
        logs=logs,
        keys=keys,
        models=[m.id for m in services.catalog.list_models(currency).data],
        query=page.request.query_params,
        csv_query=page.request.url.query,
    )


async def usage_csv(page: Page) -> Response:
    logs = await page.services.usage.list_logs(page.user_id, limit=_CSV_ROWS, filters=_filters(page))
    out = io.StringIO()
    fields = list(UsageLog.model_fields)
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for log in logs:
        writer.writerow(log.model_dump())
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="batchin-usage.csv"',
            "Cache-Control": "no-store",
        },
    )


async def batches(page: Page) -> Response:
    found = await page.services.batches.list(page.user_id, limit=50)
    return render(page, "batches.html", batches=found, terminal=TERMINAL_STATUSES)


async def cancel_batch(page: Page) -> Response:
    await page.services.batches.cancel(page.user_id, page.request.path_params["batch_id"])
    return redirect(page, "/console/batches")


async def batch_events(page: Page) -> Response:
    """Server-sent events: the batch's counts each second until it ends (then one last event)."""
    batch_id = page.request.path_params["batch_id"]
    await page.services.batches.get(page.user_id, batch_id)  # 404 before the stream starts

    async def events() -> AsyncIterator[str]:
        while True:
            batch = await page.services.batches.progress(page.user_id, batch_id)
            counts = batch.request_counts
            body = {
                "status": batch.status,
                "total": counts.total,
                "completed": counts.completed,
                "failed": counts.failed,
            }
            yield f"event: progress\ndata: {json.dumps(body)}\n\n"
            if batch.status in TERMINAL_STATUSES or await page.request.is_disconnected():
                return
            await asyncio.sleep(_PROGRESS_SECONDS)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def download_file(page: Page) -> Response:
    content = await page.services.files.content(page.user_id, page.request.path_params["file_id"])
    return FileResponse(content.path, media_type=content.content_type, filename=content.filename)


async def models(page: Page) -> Response:
    user = page.user
    currency = user.currency if user is not None else "USD"
    return render(page, "models.html", models=page.services.catalog.list_models(currency).data)
