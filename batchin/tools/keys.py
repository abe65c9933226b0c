"""list_keys, create_key, revoke_key: the account's API keys through the same core calls as
GET/POST /v1/keys and DELETE /v1/keys/{id}, so the same rules hold: listing needs `account:read`,
creating and revoking `keys:write`, and a key never creates or revokes a key stronger than itself
(scopes, models, regions, RPM, budget: core/permissions.py), refused as a 403 `permission_denied`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, Field

from batchin.core.accounts.service import AccountService
from batchin.mcp_server.caller import current, uses
from batchin.protocol.accounts import KeyCreated, KeyCreateRequest, KeyResponse, Scope
from batchin.protocol.common import validate
from batchin.protocol.currency import Currency, minor_unit
from batchin.services import Services
from batchin.tools.registry import ToolSpec


@dataclass(frozen=True, slots=True)
class KeyToolDeps:
    """What the key tools use."""

    accounts: AccountService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(accounts=services.accounts)


class KeyRevoked(BaseModel):
    """DELETE /v1/keys/{id} answers 204; the tool says which key it revoked."""

    id: str
    object: Literal["key.revoked"] = "key.revoked"
    revoked: bool = True


async def list_keys(deps: KeyToolDeps = uses(KeyToolDeps)) -> list[KeyResponse]:
    """Your API keys, newest first (never their secrets): scopes, models, regions, RPM limit,
    monthly budget and what each has spent this month, as GET /v1/keys."""
    call = current()
    return await deps.accounts.list_keys(call.ctx.principal.user_id)


async def create_key(
    name: Annotated[str | None, Field(description="A name to recognise the key by.", max_length=200)] = None,
    scopes: Annotated[
        list[Scope] | None, Field(description="What the key may do; omitted: this key's scopes.")
    ] = None,
    models: Annotated[
        list[str] | None, Field(description="Model ids it may call (empty: all); omitted: this key's.")
    ] = None,
    regions: Annotated[
        list[str] | None,
        Field(description="Entry regions it may use (first preferred); omitted: this key's."),
    ] = None,
    rate_limit_rpm: Annotated[
        int | None, Field(description="Requests per minute; at most this key's.", ge=1)
    ] = None,
    monthly_budget_cents: Annotated[
        int | None, Field(description="Spending cap per calendar month (UTC); omitted: this key's.", ge=0)
    ] = None,
    deps: KeyToolDeps = uses(KeyToolDeps),
) -> KeyCreated:
    """Create an API key for your account, no stronger than the key making it (a wider scope, model,
    region, RPM or budget is refused with permission_denied). The secret (`key`) is shown once."""
    call = current()
    given: dict[str, Any] = {
        "name": name,
        "scopes": scopes,
        "models": models,
        "regions": regions,
        "rate_limit_rpm": rate_limit_rpm,
        "monthly_budget_cents": monthly_budget_cents,
    }
    body = validate(KeyCreateRequest, {k: v for k, v in given.items() if v is not None})
    return await deps.accounts.create_key(call.ctx.principal.user_id, body, creator=call.ctx.principal)


async def revoke_key(
    key_id: Annotated[str, Field(description="The key's id (from list_keys), not its secret.")],
    deps: KeyToolDeps = uses(KeyToolDeps),
) -> KeyRevoked:
    """Revoke one of your API keys: refused from its next request on. A key may revoke itself or a
    key no stronger than itself."""
    call = current()
    await deps.accounts.revoke_key(call.ctx.principal.user_id, key_id, revoker=call.ctx.principal)
    return KeyRevoked(id=key_id)


def _powers(scopes: list[Scope], models: list[str], rpm: int, budget: int | None, currency: Currency) -> str:
    allowed = ", ".join(models) if models else "all models"
    cap = "no monthly budget" if budget is None else f"budget {budget} {minor_unit(currency)}/month"
    return f"scopes {', '.join(scopes) or 'none'}; {allowed}; {rpm} RPM; {cap}"


def keys_text(keys: list[KeyResponse]) -> str:
    return "\n".join(
        f"- {k.id} {k.key_prefix}… '{k.name}' ({'active' if k.is_active else 'revoked'}): "
        f"{_powers(k.scopes, k.models, k.rate_limit_rpm, k.monthly_budget_cents, k.currency)}; "
        f"spent {k.spent_this_month_cents} {minor_unit(k.currency)} this month"
        for k in keys
    )


def created_text(key: KeyCreated) -> str:
    return (
        f"Created key {key.id} '{key.name}': "
        f"{_powers(key.scopes, key.models, key.rate_limit_rpm, key.monthly_budget_cents, key.currency)}.\n"
        f"Secret (shown once, store it now): {key.key}"
    )


def revoked_text(revoked: KeyRevoked) -> str:
    return f"Revoked key {revoked.id}."


TOOLS = [
    ToolSpec(list_keys, "List API keys", read_only=True, scope="account:read", summary=keys_text),
    ToolSpec(create_key, "Create an API key", scope="keys:write", summary=created_text),
    ToolSpec(revoke_key, "Revoke an API key", destructive=True, scope="keys:write", summary=revoked_text),
]
