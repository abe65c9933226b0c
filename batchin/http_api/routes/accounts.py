"""/v1/users/me and /v1/keys."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from batchin.core.context import CallContext
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.rendering import parse_json, render
from batchin.protocol.accounts import KeyCreated, KeyCreateRequest, KeyResponse, UserResponse


async def get_current_user(request: Request, ctx: CallContext) -> Response:
    return render(await request.app.state.services.accounts.get_user(ctx.principal.user_id))


async def create_key(request: Request, ctx: CallContext) -> Response:
    body = await parse_json(request, KeyCreateRequest)
    return render(await request.app.state.services.accounts.create_key(ctx.principal.user_id, body))


async def list_keys(request: Request, ctx: CallContext) -> Response:
    return render(await request.app.state.services.accounts.list_keys(ctx.principal.user_id))


async def delete_key(request: Request, ctx: CallContext) -> Response:
    await request.app.state.services.accounts.revoke_key(ctx.principal.user_id, request.path_params["id"])
    return Response(status_code=204)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/users/me",
        get_current_user,
        "The user the API key belongs to.",
        response_model=UserResponse,
        tag="account",
    ),
    Endpoint(
        "POST",
        "/v1/keys",
        create_key,
        "Create an API key with its own RPM limit and monthly budget.",
        request_model=KeyCreateRequest,
        response_model=KeyCreated,
        tag="account",
        errors=(400,),
    ),
    Endpoint(
        "GET",
        "/v1/keys",
        list_keys,
        "List the user's API keys (never their secrets).",
        response_model=list[KeyResponse],
        tag="account",
    ),
    Endpoint(
        "DELETE",
        "/v1/keys/{id}",
        delete_key,
        "Revoke an API key; it is refused from the next request on.",
        status_code=204,
        tag="account",
        errors=(404,),
    ),
]
