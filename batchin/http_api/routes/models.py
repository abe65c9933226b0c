"""/v1/models (public)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from starlette.requests import Request
from starlette.responses import Response

from batchin.core.serving.catalog import CatalogService
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.rendering import render
from batchin.protocol.models import ModelCard, ModelList
from batchin.services import Services


@dataclass(frozen=True, slots=True)
class ModelDeps:
    """What /v1/models uses."""

    catalog: CatalogService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(catalog=services.catalog)


async def list_models(request: Request, deps: ModelDeps) -> Response:
    return render(deps.catalog.list_models())


async def retrieve_model(request: Request, deps: ModelDeps) -> Response:
    return render(deps.catalog.get_model(request.path_params["id"]))


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/models",
        list_models,
        "Models with live status, pricing, context length and licence.",
        public=True,
        response_model=ModelList,
        deps=ModelDeps,
        tag="models",
    ),
    Endpoint(
        "GET",
        "/v1/models/{id:path}",
        retrieve_model,
        "One model.",
        public=True,
        response_model=ModelCard,
        deps=ModelDeps,
        tag="models",
        errors=(404,),
    ),
]
