"""Which catalog entry serves a call: one rule for every modality, checked before anything is
reserved, so a wrong, unavailable or not-allowed model is refused without a charge."""

from __future__ import annotations

from batchin.core.context import Principal
from batchin.core.permissions import may_use_model, require_model
from batchin.errors import InvalidRequest, NotFound, ServiceUnavailable
from batchin.models.catalog import CatalogEntry, Kind
from batchin.models.registry import ModelRegistry

__all__ = ["usable_model"]


def usable_model(
    registry: ModelRegistry, model_id: str | None, kind: Kind, principal: Principal
) -> CatalogEntry:
    """The named model (by its id or an alias), which must serve `kind` (400 otherwise; 404 if
    unknown) and be among the key's models (403), or with no name the first model of that kind the
    key may call; an unavailable model is a 503."""
    if model_id is None:
        entry = next(
            (e for e in registry.entries() if kind in e.kind and may_use_model(principal, *e.names)), None
        )
        if entry is None:
            raise NotFound(f"This server has no {kind} model this API key may call.", param="model")
    else:
        entry = registry.entry(model_id)
        require_model(principal, model_id, *entry.names)
        if kind not in entry.kind:
            raise InvalidRequest(
                f"Model '{model_id}' does not serve {kind} requests (it serves {', '.join(entry.kind)}).",
                param="model",
            )
    health = registry.status(entry.id)
    if health.status == "unavailable":
        raise ServiceUnavailable(f"Model '{entry.id}' is unavailable: {health.reason}.")
    return entry
