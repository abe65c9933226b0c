"""An app for benchmarks: the product's app plus one authenticated route that runs the full
control path (auth, RPM limit, reserve, settle, usage log) around a model that does nothing.

Run as: uvicorn --factory bench.noop_app:create
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from batchin.app import create_app
from batchin.config import Settings
from batchin.core.context import CallContext
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.rendering import render

NOOP_COST_UNITS = 1_000  # 0.001 cent per call


async def noop_inference(request: Request, ctx: CallContext) -> Response:
    services = request.app.state.services
    async with services.metering.call(
        ctx, model="noop", endpoint="bench.noop", max_cost_units=10 * NOOP_COST_UNITS
    ) as call:
        call.begin()
        call.record(cost_units=NOOP_COST_UNITS, input_tokens=1, output_tokens=1)
    return render({"ok": True})


def create() -> Starlette:
    app = create_app(Settings.load())
    for route in Endpoint("POST", "/bench/noop", noop_inference, "no-op model", scope="inference").routes():
        app.router.routes.insert(0, route)
    return app
