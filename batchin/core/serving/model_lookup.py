"""Which catalog entry serves a call: one rule for every modality, checked before anything is
reserved, so a wrong, unavailable or not-allowed model is refused without a charge."""

from __future__ import annotations

from batchin.core.context import Principal
from batchin.core.permissions import may_use_model, require_model
from batchin.errors import InvalidRequest, NotFound, ServiceUnavailable
from batchin.models.catalog import CatalogEntry, Kind, Pricing
from batchin.models.registry import ModelRegistry, ModelSlot

__all__ = ["no_fim_message", "no_vision_message", "prices_for", "usable_model", "usable_slot"]


def prices_for(entry: CatalogEntry, principal: Principal) -> Pricing:
    """What this caller pays for the model: its prices in the account's currency (the catalog fixed
    them at load, CNY ones converted or given). A model with no price in it is refused (400)."""
    prices = entry.prices(principal.currency)
    if prices is None:
        raise InvalidRequest(
            f"Model '{entry.id}' has no {principal.currency} price on this server, so "
            f"{principal.currency} accounts cannot call it; pick another model.",
            param="model",
        )
    return prices


def usable_model(
    registry: ModelRegistry, model_id: str | None, kind: Kind, principal: Principal
) -> CatalogEntry:
    """The named model (by its id or an alias), which must serve `kind` (400 otherwise; 404 if
    unknown), be among the key's models (403) and have a price in the account's currency (400), or
    with no name the first such model of that kind; an unavailable model is a 503."""
    return usable_slot(registry, model_id, kind, principal).entry


def usable_slot(registry: ModelRegistry, model_id: str | None, kind: Kind, principal: Principal) -> ModelSlot:
    """`usable_model`'s registry slot, for a call that then asks the registry for the runner by
    slot: one lookup of the model a call, where the text path made six."""
    if model_id is None:
        entry = next(
            (
                e
                for e in registry.entries()
                if kind in e.kind
                and may_use_model(principal, *e.names)
                and e.prices(principal.currency) is not None
            ),
            None,
        )
        if entry is None:
            raise NotFound(f"This server has no {kind} model this API key may call.", param="model")
        slot = registry.slot(entry.id)
    else:
        slot = registry.slot(model_id)
        entry = slot.entry
        require_model(principal, model_id, *entry.names)
        if kind not in entry.kind:
            raise InvalidRequest(
                f"Model '{model_id}' does not serve {kind} requests (it serves {', '.join(entry.kind)}).",
                param="model",
            )
    prices_for(entry, principal)
    health = registry.unavailable(slot)
    if health is not None:
        raise ServiceUnavailable(f"Model '{entry.id}' is unavailable: {health.reason}.")
    return slot


def no_vision_message(registry: ModelRegistry, entry: CatalogEntry, principal: Principal) -> str:
    """Why image parts are refused, naming the models that take them (those this key may call)."""
    vision = [
        e.id for e in registry.entries() if "vision" in e.capabilities and may_use_model(principal, *e.names)
    ]
    where = f"use a model with vision: {', '.join(vision)}" if vision else "no model here takes images"
    return f"Model '{entry.id}' does not take images (image_url content parts); send text or {where}."


def no_fim_message(registry: ModelRegistry, entry: CatalogEntry, principal: Principal) -> str:
    """Why `suffix` is refused, naming the models that would take it (those this key may call)."""
    fim = [
        e.id
        for e in registry.entries()
        if e.fim is not None and e.id != entry.id and may_use_model(principal, *e.names)
    ]
    where = f"use a model with it: {', '.join(fim)}" if fim else "no model here has it"
    return f"Model '{entry.id}' has no fill-in-the-middle support; omit suffix or {where}."
