"""The public model list: catalog facts plus live status."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from batchin.core.context import Principal
from batchin.core.permissions import may_use_model
from batchin.models.catalog import CatalogEntry
from batchin.models.registry import ModelRegistry
from batchin.protocol.models import ModelCard, ModelList, ModelPricing


def _usd(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _discounted(value: Decimal | None, ratio: Fraction) -> float | None:
    return None if value is None else float(Fraction(value) * ratio)


def price_ratio(entry: CatalogEntry, default: Decimal) -> Fraction:
    """The batch price as a fraction of the standard price: the catalog entry's own batch_discount
    when it sets one, else the server's `batch_price_ratio`."""
    if "batch_discount" in entry.pricing.model_fields_set:
        return Fraction(1 - entry.pricing.batch_discount)
    return Fraction(default)


class CatalogService:
    def __init__(self, registry: ModelRegistry, batch_price_ratio: Decimal = Decimal(1)) -> None:
        self._registry = registry
        self._batch_price_ratio = batch_price_ratio  # what a model without its own batch_discount is billed

    def list_models(self) -> ModelList:
        """One card per public id: each alias is its own entry, as OpenAI clients list and pick them."""
        return ModelList(
            data=[self._card(entry, name) for entry in self._registry.entries() for name in entry.names]
        )

    def model_ids_for(self, principal: Principal) -> list[str]:
        """Every public id (aliases included) of the models this key may call, in catalog order."""
        entries = self._registry.entries()
        return [name for e in entries if may_use_model(principal, *e.names) for name in e.names]

    def get_model(self, model_id: str) -> ModelCard:
        entry = self._registry.entry(model_id)
        return self._card(entry, model_id)

    def _card(self, entry: CatalogEntry, name: str) -> ModelCard:
        health = self._registry.status(entry.id)
        p = entry.pricing
        ratio = price_ratio(entry, self._batch_price_ratio)  # the same figure the batch worker bills
        return ModelCard(
            id=name,
            alias_of=None if name == entry.id else entry.id,
            owned_by=entry.owned_by,
            kind=list(entry.kind),
            status=health.status,
            status_reason=health.reason,
            context_length=entry.context_length,
            capabilities=list(entry.served_capabilities),
            pricing=ModelPricing(
                std_input=_usd(p.input_per_1m),
                std_output=_usd(p.output_per_1m),
                batch_input=_discounted(p.input_per_1m, ratio),
                batch_output=_discounted(p.output_per_1m, ratio),
                per_image=_usd(p.per_image),
                per_audio_second=_usd(p.per_audio_second),
                per_video_second=_usd(p.per_video_second),
                batch_discount=float(1 - ratio),
            ),
            licence=entry.licence,
            description=entry.description,
            regions=list(entry.regions),
        )
