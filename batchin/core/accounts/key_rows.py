"""How a key's scopes, models and regions are stored: JSON arrays in `api_keys.scopes`, `.models`
and `.regions` (regions in the key's order of preference).

Reading is strict the safe way round: a scope name this version does not know grants nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from batchin.core.permissions import ordered_scopes
from batchin.protocol.accounts import ALL_SCOPES, Scope

__all__ = [
    "decode_models",
    "decode_regions",
    "decode_scopes",
    "encode_models",
    "encode_regions",
    "encode_scopes",
]


def encode_scopes(scopes: Iterable[Scope]) -> str:
    return orjson.dumps(ordered_scopes(scopes)).decode()


def decode_scopes(stored: str) -> frozenset[Scope]:
    names = orjson.loads(stored or "[]")
    return frozenset(s for s in ALL_SCOPES if s in names)


def encode_models(models: Iterable[str]) -> str:
    return orjson.dumps(sorted(set(models))).decode()


def decode_models(stored: str) -> frozenset[str]:
    return frozenset(str(m) for m in orjson.loads(stored or "[]"))


def encode_regions(regions: Iterable[str]) -> str:
    return orjson.dumps(list(dict.fromkeys(regions))).decode()


def decode_regions(stored: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(r) for r in orjson.loads(stored or "[]")))
