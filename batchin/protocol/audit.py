"""Verifiable audit (VaaS): request and response shapes of /v1/vaas*."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class VaasCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_text: str = Field(max_length=1_000_000, description="the call's input")
    output_text: str = Field(max_length=1_000_000, description="the call's output")
    model_id: str = Field(min_length=1, max_length=200)
    gpu_id: str | None = Field(default=None, max_length=200, description="execution environment (redacted)")


class VaasRecord(BaseModel):
    """An audit record; the energy and carbon figures are estimates (docs/reference/audit.mdx)."""

    audit_id: str
    input_hash: str = Field(description="SHA-256 of the input, hex")
    output_hash: str = Field(description="SHA-256 of the output, hex")
    carbon_grams_co2e: float
    energy_wh: float
    energy_source: str
    carbon_offset_vs_us_cloud: float
    energy_method: str = Field(description="which documented coefficient produced the estimate")
    signature: str = Field(description="Ed25519 signature of the record's canonical payload, hex")
    key_id: str
    model_id: str
    created_at: str
    attestation: str | None = Field(
        default=None,
        description="who stands behind the texts: 'served' (a call this server ran) or 'caller_asserted' "
        "(POST /v1/vaas: the caller supplied them); null for records made before the field existed",
    )
    asserted_by: str | None = Field(
        default=None, description="the asserting user's id (caller_asserted only)"
    )


class VaasVerification(BaseModel):
    audit_id: str
    valid: bool
    attestation: str | None = Field(
        default=None, description="as in the record: served, caller_asserted or null"
    )
    asserted_by: str | None = None


class PublicKeyInfo(BaseModel):
    verify_key_hex: str
    key_id: str


class CheckpointPayload(BaseModel):
    origin: str
    tree_size: int
    root_hash: str
    timestamp: str
    key_id: str


class SignedCheckpoint(BaseModel):
    payload: CheckpointPayload
    signature: str = Field(description="ed25519:<hex> over the RFC 8785 encoding of payload")
    public_key: str = Field(description="ed25519:<hex>")


class InclusionProof(BaseModel):
    leaf_index: int
    tree_size: int
    leaf_hash: str = Field(description="SHA-256(0x00 || RFC 8785 payload), hex")
    audit_path: list[str]


class EvidencePack(BaseModel):
    record_id: str
    run_id: str
    trace_id: str
    route_id: str
    provider: str
    environment: str
    prompt_version_id: str
    verification_method: str = "Ed25519Signature2020"
    public_key: str = Field(description="ed25519:<hex>")
    key_id: str
    signature: str = Field(description="ed25519:<hex> over the RFC 8785 encoding of payload")
    payload: dict[str, Any]
    inclusion_proof: InclusionProof
    checkpoint: SignedCheckpoint


class ConsistencyProof(BaseModel):
    first: int
    second: int
    first_root_hash: str
    second_root_hash: str
    proof: list[str]
