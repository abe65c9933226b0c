"""The caller an API key stands for: one Principal built from the key's row, wherever it is read.

Each reader keeps its own query (authentication by the secret's hash, a batch's payer through the
batch's key, an experiment's payer among its owner's keys) and its own rule for a revoked key;
they share how the row becomes a Principal.
"""

from __future__ import annotations

from typing import Protocol

from batchin.core.accounts.key_rows import decode_models, decode_regions, decode_scopes
from batchin.core.context import Principal
from batchin.protocol.currency import currency_of

__all__ = ["KeyRow", "principal_of"]


class KeyRow(Protocol):
    """An `api_keys` row (or a join carrying its columns under their own names: `id` is the key's)."""

    @property
    def id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def key_prefix(self) -> str: ...
    @property
    def rate_limit_rpm(self) -> int: ...
    @property
    def monthly_budget_cents(self) -> int | None: ...
    @property
    def scopes(self) -> str: ...
    @property
    def models(self) -> str: ...
    @property
    def regions(self) -> str: ...
    @property
    def currency(self) -> str: ...  # the owner's users.currency, joined in


def principal_of(row: KeyRow) -> Principal:
    return Principal(
        user_id=row.user_id,
        key_id=row.id,
        key_prefix=row.key_prefix,
        rate_limit_rpm=row.rate_limit_rpm,
        monthly_budget_cents=row.monthly_budget_cents,
        scopes=decode_scopes(row.scopes),
        models=decode_models(row.models),
        regions=decode_regions(row.regions),
        currency=currency_of(row.currency),
    )
