"""The public model list: catalog facts plus live status."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from batchin.core.context import Principal
from batchin.core.permissions import may_use_model
from batchin.models.catalog import CatalogEntry, Pricing
from batchin.models.registry import ModelRegistry
from batchin.protocol.currency import CURRENCIES, Currency
from batchin.protocol.models import ModelCard, ModelList, ModelPricing


def _major(value: Decimal | None) -> float | None:
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

    def list_models(self, currency: Currency = "USD", *, every_currency: bool = False) -> ModelList:
        """One card per public id: each alias is its own entry, as OpenAI clients list and pick them.
        Prices in `currency` (a caller's account currency, or an anonymous caller's entry's);
        `every_currency` (anonymous callers) lists each model's price in all currencies too. Otherwise
        a model without a price in `currency` is left out: its caller could not call it."""
        return ModelList(
            data=[
                self._card(entry, name, currency, every_currency)
                for entry in self._registry.entries()
                if every_currency or entry.prices(currency) is not None
                for name in entry.names
            ]
        )

    def model_ids_for(self, principal: Principal) -> list[str]:
        """Every public id (aliases included) of the models this key may call, in catalog order."""
        entries = self._registry.entries()
        return [name for e in entries if may_use_model(principal, *e.names) for name in e.names]

    def get_model(
        self, model_id: str, currency: Currency = "USD", *, every_currency: bool = False
    ) -> ModelCard:
        entry = self._registry.entry(model_id)
        return self._card(entry, model_id, currency, every_currency)

    def _card(self, entry: CatalogEntry, name: str, currency: Currency, every_currency: bool) -> ModelCard:
        health = self._registry.status(entry.id)
        ratio = price_ratio(entry, self._batch_price_ratio)  # the same figure the batch worker bills
        shown = CURRENCIES if every_currency else (currency,)
        prices = [_pricing(p, c, ratio) for c in shown if (p := entry.prices(c)) is not None]
        own = entry.prices(currency)
        return ModelCard(
            id=name,
            alias_of=None if name == entry.id else entry.id,
            owned_by=entry.owned_by,
            kind=list(entry.kind),
            status=health.status,
            status_reason=health.reason,
            context_length=entry.context_length,
            capabilities=list(entry.served_capabilities),
            # A model named directly but unpriced in `currency` shows its USD price, labelled so.
            pricing=_pricing(own, currency, ratio)
            if own is not None
            else _pricing(entry.pricing, "USD", ratio),
            prices=prices,
            licence=entry.licence,
            description=entry.description,
            regions=list(entry.regions),
        )


def _pricing(p: Pricing, currency: Currency, ratio: Fraction) -> ModelPricing:
    return ModelPricing(
        std_input=_major(p.input_per_1m),
        std_output=_major(p.output_per_1m),
        batch_input=_discounted(p.input_per_1m, ratio),
        batch_output=_discounted(p.output_per_1m, ratio),
        per_image=_major(p.per_image),
        per_audio_second=_major(p.per_audio_second),
        per_video_second=_major(p.per_video_second),
        batch_discount=float(1 - ratio),
        currency=currency,
    )
