"""What an API key may do, checked in one place for both surfaces: its scopes (which operations),
its models (which models it may call; none listed means all), and the rule that a key never makes
or revokes a key stronger than itself, so a leaked key cannot free itself of its limits. Its regions
(which entry regions it may use) are checked where a call's region is resolved: core/regions.py.

A key is at most as strong as another when every one of these holds: its scopes are among the
other's; its models are among the other's (or the other allows every model); so are its regions;
its RPM is no higher; its monthly budget is no larger (no budget counts as unlimited).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from batchin.core.context import Principal
from batchin.errors import PermissionDenied
from batchin.protocol.accounts import ALL_SCOPES, Scope

__all__ = [
    "PAID_SCOPES",
    "KeyPowers",
    "may_use_model",
    "ordered_scopes",
    "powers_of",
    "refuse_stronger",
    "require_model",
    "require_scope",
]


@dataclass(frozen=True, slots=True)
class KeyPowers:
    """The five things that make one key stronger than another."""

    scopes: frozenset[Scope]
    models: frozenset[str]  # empty: every model
    rate_limit_rpm: int
    monthly_budget_cents: int | None  # None: no budget
    regions: tuple[str, ...] = ()  # empty: every region; else in order of preference


def powers_of(principal: Principal) -> KeyPowers:
    return KeyPowers(
        principal.scopes,
        principal.models,
        principal.rate_limit_rpm,
        principal.monthly_budget_cents,
        principal.regions,
    )


# What costs money: refused to the keys of an account whose email is not verified yet.
PAID_SCOPES: frozenset[Scope] = frozenset({"inference", "batches", "audit:write"})


def require_scope(principal: Principal, scope: Scope) -> None:
    if not principal.verified and scope in PAID_SCOPES:
        raise PermissionDenied(
            "Verify your account's email address first (follow the link we emailed); "
            "until then paid operations are refused."
        )
    if scope not in principal.scopes:
        raise PermissionDenied(
            f"This API key lacks the '{scope}' scope this operation needs "
            f"(it has: {', '.join(ordered_scopes(principal.scopes)) or 'none'})."
        )


def may_use_model(principal: Principal, *names: str) -> bool:
    """Whether the key may call the model known by `names` (its id and aliases: a key listing any
    public id of a model may call it by each of them)."""
    return not principal.models or any(name in principal.models for name in names)


def require_model(principal: Principal, model_id: str, *aliases: str) -> None:
    if not may_use_model(principal, model_id, *aliases):
        raise PermissionDenied(
            f"This API key may not call model '{model_id}' "
            f"(it may call: {', '.join(sorted(principal.models))}).",
            param="model",
        )


def refuse_stronger(limit: KeyPowers, key: KeyPowers, *, action: str) -> None:
    """PermissionDenied naming the first field in which `key` exceeds `limit`."""
    extra_scopes = key.scopes - limit.scopes
    if extra_scopes:
        raise PermissionDenied(
            f"Cannot {action} a key with scopes this key lacks: {', '.join(ordered_scopes(extra_scopes))}.",
            param="scopes",
        )
    if limit.models and (not key.models or not key.models <= limit.models):
        wider = "every model" if not key.models else ", ".join(sorted(key.models - limit.models))
        raise PermissionDenied(
            f"Cannot {action} a key allowed models this key is not: {wider}.", param="models"
        )
    if limit.regions and (not key.regions or not set(key.regions) <= set(limit.regions)):
        wider = (
            "every region" if not key.regions else ", ".join(r for r in key.regions if r not in limit.regions)
        )
        raise PermissionDenied(
            f"Cannot {action} a key allowed regions this key is not: {wider}.", param="regions"
        )
    if key.rate_limit_rpm > limit.rate_limit_rpm:
        raise PermissionDenied(
            f"Cannot {action} a key with {key.rate_limit_rpm} requests per minute; this key has "
            f"{limit.rate_limit_rpm}.",
            param="rate_limit_rpm",
        )
    if limit.monthly_budget_cents is not None and (
        key.monthly_budget_cents is None or key.monthly_budget_cents > limit.monthly_budget_cents
    ):
        asked = (
            "no monthly budget"
            if key.monthly_budget_cents is None
            else f"a monthly budget of {key.monthly_budget_cents} cents"
        )
        raise PermissionDenied(
            f"Cannot {action} a key with {asked}; this key's is {limit.monthly_budget_cents} cents.",
            param="monthly_budget_cents",
        )


def ordered_scopes(scopes: Iterable[Scope]) -> list[Scope]:
    """The scopes in the documented order, each once."""
    given = set(scopes)
    return [s for s in ALL_SCOPES if s in given]
