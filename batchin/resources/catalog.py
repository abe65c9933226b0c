"""batchin://models and batchin://models/{model_id}: the catalog as /v1/models shows it."""

from __future__ import annotations

from batchin.mcp_server.caller import current


async def models() -> str:
    """Every served model (id, kind, pricing, live status), as /v1/models returns it."""
    return current().services.catalog.list_models().model_dump_json()


async def model(model_id: str) -> str:
    """One model's card, as /v1/models/{id} returns it."""
    return current().services.catalog.get_model(model_id).model_dump_json()
