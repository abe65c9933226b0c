"""Receipts (the user's signed audit records: list, look-up, in-browser verification, evidence
pack download) and traces (list with filters, a span waterfall): the evidence of each call.

Every read names the signed-in user, and another user's record or trace is a 404 exactly like an
unknown id (core's `audit.owned` and `traces.get_trace`)."""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import Response

from batchin.console.waterfall import SCALE, ticks, waterfall
from batchin.console.web import Page, redirect, render
from batchin.errors import InvalidRequest

__all__ = ["receipt", "receipt_evidence", "receipts", "trace", "traces"]

_RECEIPT_ROWS = 100
_TRACE_ROWS = 100
# The verifier's checks (verify.js), listed before it runs so each has its translated label.
VERIFY_CHECKS = (
    "signature",
    "key_id",
    "envelope",
    "attestation",
    "hashes",
    "leaf_hash",
    "inclusion",
    "checkpoint_signature",
)
_STATUS_FILTER = {"": None, "ok": False, "error": True}  # ?status= → failed


async def receipts(page: Page) -> Response:
    wanted = page.request.query_params.get("id", "").strip()
    if wanted:  # the look-up form: the receipt's own page (a 404 there if it is not the user's)
        return redirect(page, f"/console/receipts/{quote(wanted, safe='')}")
    services = page.services
    records = await services.audit.list_owned(page.user_id, limit=_RECEIPT_ROWS)
    outcomes = await services.traces.call_outcomes(page.user_id, [r.trace_id for r in records if r.trace_id])
    rows = [(record, outcomes.get(record.record_id)) for record in records]
    return render(page, "receipts.html", rows=rows)


async def receipt(page: Page) -> Response:
    services = page.services
    record = await services.audit.owned(page.user_id, page.request.path_params["record_id"])
    outcomes = await services.traces.call_outcomes(page.user_id, [record.trace_id] if record.trace_id else [])
    return render(
        page,
        "receipt.html",
        record=record,
        outcome=outcomes.get(record.record_id),
        checks=VERIFY_CHECKS,
    )


async def receipt_evidence(page: Page) -> Response:
    """The same pack as GET /v1/vaas/{id}/evidence, for the user's own record only, as a file."""
    record = await page.services.audit.owned(page.user_id, page.request.path_params["record_id"])
    pack = await page.services.audit.evidence(record.record_id)
    return Response(
        pack.model_dump_json(),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="batchin-evidence-{record.record_id}.json"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def traces(page: Page) -> Response:
    query = page.request.query_params
    status = query.get("status", "")
    if status not in _STATUS_FILTER:
        raise InvalidRequest("status must be 'ok' or 'error'.", param="status")
    model = query.get("model") or None
    services = page.services
    found = await services.traces.browse(
        page.user_id, limit=_TRACE_ROWS, model_id=model, failed=_STATUS_FILTER[status]
    )
    currency = page.user.currency if page.user is not None else "USD"
    models = [m.id for m in services.catalog.list_models(currency).data]
    if model and model not in models:  # an OTLP trace's model, not one of ours: still selectable
        models.append(model)
    return render(page, "traces.html", traces=found, models=models, query=query)


async def trace(page: Page) -> Response:
    detail = await page.services.traces.get_trace(page.user_id, page.request.path_params["trace_id"])
    rows, total_ms = waterfall(detail.spans)
    return render(
        page, "trace.html", trace=detail, rows=rows, total_ms=total_ms, ticks=ticks(total_ms), scale=SCALE
    )
