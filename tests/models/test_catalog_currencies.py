"""Catalog prices per currency (issue 15): an entry's own `pricing_cny`, else its USD prices at the
exchange rate given to the loader, converted once at load; else no CNY price at all."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from batchin.models.catalog import CatalogError, load_catalog, parse_catalog
from tests.models.test_catalog import MINIMAL

WITH_CNY = (
    MINIMAL
    + """
[models.tiny.pricing_cny]
input_per_1m = 0.75
output_per_1m = 1.5
"""
)


def test_an_entrys_own_cny_table_is_what_cny_accounts_pay() -> None:
    entry = parse_catalog(WITH_CNY, source="t").entries[0]
    cny = entry.prices("CNY")
    assert cny is not None
    assert (cny.input_per_1m, cny.output_per_1m) == (Decimal("0.75"), Decimal("1.5"))
    assert entry.prices("USD") == entry.pricing


def test_the_own_table_wins_over_the_exchange_rate() -> None:
    entry = parse_catalog(WITH_CNY, source="t", cny_per_usd=Decimal("100")).entries[0]
    cny = entry.prices("CNY")
    assert cny is not None
    assert cny.input_per_1m == Decimal("0.75")


def test_without_a_table_the_rate_converts_the_usd_prices_at_load_to_nine_places() -> None:
    text = MINIMAL.replace("input_per_1m = 0.1", "input_per_1m = 0.123456789")
    entry = parse_catalog(text, source="t", cny_per_usd=Decimal("7.1234")).entries[0]
    cny = entry.prices("CNY")
    assert cny is not None
    # 0.123456789 * 7.1234 = 0.8794320907626, rounded to 0.879432091; 0.2 * 7.1234 exactly.
    assert (cny.input_per_1m, cny.output_per_1m) == (Decimal("0.879432091"), Decimal("1.42468"))
    assert entry.pricing.input_per_1m == Decimal("0.123456789")  # the USD prices are untouched


def test_without_a_table_or_a_rate_there_is_no_cny_price() -> None:
    assert parse_catalog(MINIMAL, source="t").entries[0].prices("CNY") is None


def test_load_catalog_applies_the_rate_to_an_operators_file(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(MINIMAL)
    cny = load_catalog(path, cny_per_usd=Decimal("7")).entries[0].prices("CNY")
    assert cny is not None
    assert (cny.input_per_1m, cny.output_per_1m) == (Decimal("0.7"), Decimal("1.4"))


def test_every_model_of_the_default_catalog_has_its_own_cny_prices() -> None:
    for entry in load_catalog().entries:
        cny = entry.prices("CNY")
        assert cny is not None, entry.id
        assert cny.batch_discount == 0


def test_a_cny_table_needs_the_prices_of_its_kind() -> None:
    with pytest.raises(
        CatalogError, match=r"models\.tiny: Value error, kind 'chat' needs pricing_cny\.output_per_1m"
    ):
        parse_catalog(MINIMAL + "[models.tiny.pricing_cny]\ninput_per_1m = 1\n", source="t")


def test_an_entry_with_cny_prices_survives_a_dump_and_validation() -> None:
    """What the engine worker does with its entry (models/engine_host.py)."""
    entry = parse_catalog(
        WITH_CNY.replace("output_per_1m = 0.2", "output_per_1m = 0.2\nbatch_discount = 0.5"), source="t"
    )
    copy = type(entry.entries[0]).model_validate(entry.entries[0].model_dump())
    assert copy.prices("CNY") == entry.entries[0].prices("CNY")


def test_a_batch_discount_in_the_cny_table_is_refused() -> None:
    with pytest.raises(CatalogError, match="batch_discount belongs in \\[pricing\\]"):
        parse_catalog(WITH_CNY + "batch_discount = 0.5\n", source="t")
