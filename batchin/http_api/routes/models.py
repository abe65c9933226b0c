"""/v1/models (public)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from batchin.http_api.endpoint import Endpoint
from batchin.http_api.rendering import render
from batchin.protocol.models import ModelCard, ModelList


async def list_models(request: Request) -> Response:
    return render(request.app.state.services.catalog.list_models())


async def retrieve_model(request: Request) -> Response:
    return render(request.app.state.services.catalog.get_model(request.path_params["id"]))


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/models",
        list_models,
        "Models with live status, pricing, context length and licence.",
        public=True,
        response_model=ModelList,
        tag="models",
    ),
    Endpoint(
        "GET",
        "/v1/models/{id:path}",
        retrieve_model,
        "One model.",
        public=True,
        response_model=ModelCard,
        tag="models",
        errors=(404,),
    ),
]
