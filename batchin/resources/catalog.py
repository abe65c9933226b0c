"""batchin://models and batchin://models/{model_id}: the catalog as /v1/models shows it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from batchin.core.serving.catalog import CatalogService
from batchin.mcp_server.caller import McpCall, current, uses
from batchin.services import Services


@dataclass(frozen=True, slots=True)
class CatalogResourceDeps:
    """What the model resources use."""

    catalog: CatalogService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(catalog=services.catalog)


async def models(deps: CatalogResourceDeps = uses(CatalogResourceDeps)) -> str:
    """Every served model (id, kind, pricing, live status), as /v1/models returns it to the caller."""
    return deps.catalog.list_models(current().ctx.principal.currency).model_dump_json()


async def model(model_id: str, deps: CatalogResourceDeps = uses(CatalogResourceDeps)) -> str:
    """One model's card, as /v1/models/{id} returns it to the caller."""
    return deps.catalog.get_model(model_id, current().ctx.principal.currency).model_dump_json()


async def model_ids(call: McpCall) -> list[str]:
    """Completion candidates for {model_id}: the models this key may call."""
    return call.views.get(CatalogResourceDeps).catalog.model_ids_for(call.ctx.principal)
