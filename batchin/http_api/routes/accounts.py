"""/v1/users/me and /v1/keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from starlette.requests import Request
from starlette.responses import Response

from batchin.core.accounts.service import AccountService
from batchin.core.context import CallContext
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.paging import PAGE_QUERY, render_page, slice_page
from batchin.http_api.rendering import parse_json, render
from batchin.protocol.accounts import KeyCreated, KeyCreateRequest, KeyResponse, UserResponse
from batchin.services import Services


@dataclass(frozen=True, slots=True)
class AccountDeps:
    """What /v1/users/me and /v1/keys use."""

    accounts: AccountService
    max_body_bytes: int

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(accounts=services.accounts, max_body_bytes=services.settings.max_body_bytes)


async def get_current_user(request: Request, ctx: CallContext, deps: AccountDeps) -> Response:
    return render(await deps.accounts.get_user(ctx.principal.user_id))


async def create_key(request: Request, ctx: CallContext, deps: AccountDeps) -> Response:
    body = await parse_json(request, KeyCreateRequest, deps.max_body_bytes)
    return render(await deps.accounts.create_key(ctx.principal.user_id, body, creator=ctx.principal))


async def list_keys(request: Request, ctx: CallContext, deps: AccountDeps) -> Response:
    keys = await deps.accounts.list_keys(ctx.principal.user_id)
    return render_page(request, slice_page(request, keys))


async def delete_key(request: Request, ctx: CallContext, deps: AccountDeps) -> Response:
    await deps.accounts.revoke_key(ctx.principal.user_id, request.path_params["id"], revoker=ctx.principal)
    return Response(status_code=204)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/users/me",
        get_current_user,
        "The user the API key belongs to.",
        response_model=UserResponse,
        deps=AccountDeps,
        tag="account",
        scope="account:read",
    ),
    Endpoint(
        "POST",
        "/v1/keys",
        create_key,
        "Create an API key with its own scopes, models, RPM limit and budget, none beyond the caller's.",
        request_model=KeyCreateRequest,
        response_model=KeyCreated,
        deps=AccountDeps,
        tag="account",
        errors=(400,),
        scope="keys:write",
    ),
    Endpoint(
        "GET",
        "/v1/keys",
        list_keys,
        "List the user's API keys (never their secrets) with their scopes, models and spend this month.",
        response_model=list[KeyResponse],
        query=PAGE_QUERY,
        errors=(400,),
        deps=AccountDeps,
        tag="account",
        scope="account:read",
    ),
    Endpoint(
        "DELETE",
        "/v1/keys/{id}",
        delete_key,
        "Revoke an API key no stronger than the calling key; it is refused from the next request on.",
        status_code=204,
        deps=AccountDeps,
        tag="account",
        errors=(404,),
        scope="keys:write",
    ),
]
