"""/v1/models shows the batch price the worker bills: an entry's own batch_discount, else the
server's batch_price_ratio."""

from __future__ import annotations

from decimal import Decimal

from batchin.core.serving.catalog import CatalogService
from batchin.models.registry import ModelRegistry


def test_batch_prices_follow_the_billing_rule(model_registry: ModelRegistry) -> None:
    cards = {card.id: card for card in CatalogService(model_registry, Decimal("0.6")).list_models().data}
    for entry in model_registry.entries():
        pricing = cards[entry.id].pricing
        own = "batch_discount" in entry.pricing.model_fields_set
        expected = float(entry.pricing.batch_discount) if own else 0.4
        assert abs(pricing.batch_discount - expected) < 1e-9, entry.id
        if entry.pricing.input_per_1m is not None:
            assert pricing.batch_input is not None
            assert abs(pricing.batch_input - float(entry.pricing.input_per_1m) * (1 - expected)) < 1e-12
    assert any("batch_discount" not in e.pricing.model_fields_set for e in model_registry.entries())
