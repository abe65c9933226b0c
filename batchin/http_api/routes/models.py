"""/v1/models (public). Prices are shown in the caller's currency: the account's, when the request
carries a valid key; else the entry's (http_api/entries.py), with every currency listed in `prices`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from starlette.requests import Request
from starlette.responses import Response

from batchin.core.accounts.auth import AuthService
from batchin.core.serving.catalog import CatalogService
from batchin.errors import Unauthorized
from batchin.http_api.endpoint import Endpoint, bearer_secret
from batchin.http_api.entries import entry_of
from batchin.http_api.rendering import render
from batchin.protocol.currency import Currency
from batchin.protocol.models import ModelCard, ModelList
from batchin.services import Services


@dataclass(frozen=True, slots=True)
class ModelDeps:
    """What /v1/models uses."""

    catalog: CatalogService
    auth: AuthService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(catalog=services.catalog, auth=services.auth)


async def _currency_view(request: Request, deps: ModelDeps) -> tuple[Currency, bool]:
    """(the currency to price in, whether to list every currency): a valid key's account currency
    alone; for anyone else (no key, or one that is not valid: the list stays public) the entry's."""
    if request.headers.get("authorization"):
        try:
            principal = await deps.auth.authenticate(bearer_secret(request))
        except Unauthorized:
            pass
        else:
            return principal.currency, False
    return entry_of(request).currency, True


async def list_models(request: Request, deps: ModelDeps) -> Response:
    currency, every = await _currency_view(request, deps)
    return render(deps.catalog.list_models(currency, every_currency=every))


async def retrieve_model(request: Request, deps: ModelDeps) -> Response:
    currency, every = await _currency_view(request, deps)
    return render(deps.catalog.get_model(request.path_params["id"], currency, every_currency=every))


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
