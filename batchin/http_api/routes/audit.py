"""/v1/vaas*: verifiable audit records, the transparency log, and the browser verification page."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Self

from starlette.requests import Request
from starlette.responses import Response

from batchin.core.audit.service import AuditService
from batchin.core.context import CallContext
from batchin.errors import NotFound
from batchin.http_api.endpoint import Endpoint, QueryParam
from batchin.http_api.rendering import parse_json, query_int, render
from batchin.protocol.audit import (
    ConsistencyProof,
    EvidencePack,
    PublicKeyInfo,
    SignedCheckpoint,
    VaasCreateRequest,
    VaasRecord,
    VaasVerification,
)
from batchin.services import Services

# The page's own scripts only: no inline code, nothing from another origin.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
_ASSET_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain",
}


@dataclass(frozen=True, slots=True)
class AuditDeps:
    """What /v1/vaas* use."""

    audit: AuditService
    max_body_bytes: int

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(audit=services.audit, max_body_bytes=services.settings.max_body_bytes)


async def create_vaas_record(request: Request, ctx: CallContext, deps: AuditDeps) -> Response:
    body = await parse_json(request, VaasCreateRequest, deps.max_body_bytes)
    return render(await deps.audit.create(ctx, body))


async def get_vaas_record(request: Request, deps: AuditDeps) -> Response:
    return render(await deps.audit.get(request.path_params["id"]))


async def verify_vaas_record(request: Request, deps: AuditDeps) -> Response:
    return render(await deps.audit.verify(request.path_params["id"]))


async def get_vaas_evidence(request: Request, deps: AuditDeps) -> Response:
    return render(await deps.audit.evidence(request.path_params["id"]))


async def get_vaas_public_key(request: Request, deps: AuditDeps) -> Response:
    return render(deps.audit.current_key())


async def get_vaas_log_checkpoint(request: Request, deps: AuditDeps) -> Response:
    return render(await deps.audit.signed_checkpoint())


async def get_vaas_log_consistency(request: Request, deps: AuditDeps) -> Response:
    first = query_int(request, "first", 0)
    second = query_int(request, "second", 0)
    return render(await deps.audit.consistency(first, second))


@cache
def _static(name: str) -> bytes | None:
    folder = resources.files("batchin.http_api").joinpath("static", "verify")
    if "/" in name or name.startswith(".") or not folder.joinpath(name).is_file():
        return None
    return folder.joinpath(name).read_bytes()


async def get_verify_page(request: Request) -> Response:
    page = _static("index.html")
    if page is None:  # pragma: no cover - a broken install
        raise NotFound("The verification page is not installed.")
    return Response(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


async def get_verify_asset(request: Request) -> Response:
    name = request.path_params["name"]
    suffix = name[name.rfind(".") :] if "." in name else ""
    body = _static(name) if suffix in _ASSET_TYPES else None
    if body is None:
        raise NotFound(f"No asset named '{name}'.")
    return Response(body, media_type=_ASSET_TYPES[suffix], headers=_PAGE_HEADERS)


ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/vaas",
        create_vaas_record,
        "Create a verifiable audit record and return its signature.",
        request_model=VaasCreateRequest,
        response_model=VaasRecord,
        deps=AuditDeps,
        tag="audit",
        errors=(400, 413),
        scope="audit:write",
    ),
    # Fixed paths before /v1/vaas/{id}.
    Endpoint(
        "GET",
        "/v1/vaas/pubkey/current",
        get_vaas_public_key,
        "The current audit signing key (Ed25519), hex.",
        response_model=PublicKeyInfo,
        public=True,
        deps=AuditDeps,
        tag="audit",
    ),
    Endpoint(
        "GET",
        "/v1/vaas/log/checkpoint",
        get_vaas_log_checkpoint,
        "The transparency log's newest signed checkpoint (tree size, root hash).",
        response_model=SignedCheckpoint,
        public=True,
        deps=AuditDeps,
        tag="audit",
    ),
    Endpoint(
        "GET",
        "/v1/vaas/log/consistency",
        get_vaas_log_consistency,
        "RFC 6962 consistency proof between two tree sizes of the log.",
        response_model=ConsistencyProof,
        errors=(400,),
        query=(
            QueryParam("first", {"type": "integer", "minimum": 1}, "the older tree size"),
            QueryParam("second", {"type": "integer", "minimum": 1}, "the newer tree size"),
        ),
        public=True,
        deps=AuditDeps,
        tag="audit",
    ),
    Endpoint(
        "GET",
        "/v1/vaas/{id}",
        get_vaas_record,
        "An audit record by audit_id.",
        response_model=VaasRecord,
        errors=(404,),
        public=True,
        deps=AuditDeps,
        tag="audit",
    ),
    Endpoint(
        "GET",
        "/v1/vaas/{id}/verify",
        verify_vaas_record,
        "Whether an audit record's signature and log inclusion verify.",
        response_model=VaasVerification,
        errors=(404,),
        public=True,
        deps=AuditDeps,
        tag="audit",
    ),
    Endpoint(
        "GET",
        "/v1/vaas/{id}/evidence",
        get_vaas_evidence,
        "The evidence pack: signed payload, public key, inclusion proof and signed checkpoint.",
        response_model=EvidencePack,
        errors=(404,),
        public=True,
        deps=AuditDeps,
        tag="audit",
    ),
    Endpoint(
        "GET",
        "/verify/{id}",
        get_verify_page,
        "A page that verifies an audit record's evidence pack in the browser.",
        content_type="text/html",
        public=True,
        tag="audit",
    ),
    Endpoint(
        "GET",
        "/verify/assets/{name}",
        get_verify_asset,
        "The verification page's scripts and styles.",
        content_type="text/javascript",
        errors=(404,),
        public=True,
        tag="audit",
    ),
]
