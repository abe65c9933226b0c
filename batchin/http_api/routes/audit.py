"""/v1/vaas*: verifiable audit records and the transparency log (the browser page: verify_page.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from starlette.requests import Request
from starlette.responses import Response

from batchin.core.audit.service import AuditService
from batchin.core.context import CallContext
from batchin.core.serving.asserted_records import AssertedRecordService
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


@dataclass(frozen=True, slots=True)
class AuditDeps:
    """What /v1/vaas* use."""

    audit: AuditService
    asserted_records: AssertedRecordService
    max_body_bytes: int

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(
            audit=services.audit,
            asserted_records=services.asserted_records,
            max_body_bytes=services.settings.max_body_bytes,
        )


async def create_vaas_record(request: Request, ctx: CallContext, deps: AuditDeps) -> Response:
    body = await parse_json(request, VaasCreateRequest, deps.max_body_bytes)
    return render(await deps.asserted_records.create(ctx, body))


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


ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/vaas",
        create_vaas_record,
        "Sign caller-supplied input/output as a caller_asserted audit record (billed per record).",
        request_model=VaasCreateRequest,
        response_model=VaasRecord,
        deps=AuditDeps,
        tag="audit",
        errors=(400, 402, 413, 429),
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
]
