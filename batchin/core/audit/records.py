"""What an audit record says: the signed payload, the pending record of a call in flight, the
sealed one whose log append is under way, the receipt.

The payload is flat and holds only strings, integers and null so that its canonical form is cheap
and unambiguous (energy in micro-watt-hours, carbon in micrograms: integers, never floats). Texts
never enter it, only their SHA-256. A stream's record id is fixed before the first byte; its
headers then carry a signature over the *opening* statement (the same record id, run, trace, model
and input hash), which anyone can rebuild from the final payload and check (docs/reference/audit.mdx).

Every payload says who stands behind it (`attestation`): `served` when we ran the call and hashed
what we produced, `caller_asserted` when a caller handed us the texts (POST /v1/vaas), with the
asserting user's id in `asserted_by`. Both are signed with the same key, so without the field a
receipt for text we never produced would read like one for a call we served. Records made before
the field existed have no `attestation`; they verify as before and say nothing either way.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CALLER_ASSERTED",
    "SERVED",
    "AuditReceipt",
    "AuditUsage",
    "PendingRecord",
    "SealedRecord",
    "opening_statement",
    "receipt_headers",
    "sha256_ref",
]

RECORD_TYPE = "batchin.vaas.record"
OPENING_TYPE = "batchin.vaas.opening"
VERSION = 1
SERVED = "served"
CALLER_ASSERTED = "caller_asserted"


def sha256_ref(data: str | bytes) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return "sha256:" + hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditUsage:
    """What the call consumed; `units`/`unit` for non-token kinds (images, audio seconds)."""

    input_tokens: int = 0
    output_tokens: int = 0
    units: float = 0.0
    unit: str = "tokens"


@dataclass(slots=True)
class PendingRecord:
    """A call's record between `begin_call` and `finish`: id reserved, headers ready."""

    record_id: str
    user_id: str | None
    run_id: str
    trace_id: str
    route_id: str
    provider: str
    environment: str
    prompt_version_id: str
    model_id: str
    gpu_id: str | None
    input_hash: str
    started_at: str
    key_id: str
    public_key_hex: str
    # Signs canonical bytes; the opening signature is made only when a stream asks for headers.
    signer: Callable[[dict[str, Any]], str] = field(repr=False)
    attestation: str = SERVED
    # The model's engine and kind, for the energy estimate at `seal`: looked up once, at the start.
    engine: str | None = field(default=None, repr=False)
    energy_kind: str = field(default="text", repr=False)
    finished: bool = field(default=False)
    _opening_signature: str | None = field(default=None, repr=False)

    @property
    def opening_signature_hex(self) -> str:
        if self._opening_signature is None:
            self._opening_signature = self.signer(self.opening())
        return self._opening_signature

    def opening(self) -> dict[str, Any]:
        return opening_statement(
            {
                "record_id": self.record_id,
                "run_id": self.run_id,
                "trace_id": self.trace_id,
                "model_id": self.model_id,
                "input_hash": self.input_hash,
                "key_id": self.key_id,
            }
        )

    def response_headers(self) -> dict[str, str]:
        """For a stream, sent before the output exists: the signature is the opening statement's."""
        return receipt_headers(self.record_id, self.opening_signature_hex, self.public_key_hex)

    def payload(
        self, *, output_hash: str, usage: AuditUsage, energy: dict[str, Any], finished_at: str
    ) -> dict[str, Any]:
        return {
            "type": RECORD_TYPE,
            "version": VERSION,
            "record_id": self.record_id,
            "run_id": self.run_id,
            "trace_id": self.trace_id,
            "route_id": self.route_id,
            "provider": self.provider,
            "environment": self.environment,
            "prompt_version_id": self.prompt_version_id,
            "model_id": self.model_id,
            "gpu_id": self.gpu_id,
            "input_hash": self.input_hash,
            "output_hash": output_hash,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            # Milli-units: an integer keeps the signed bytes free of float formatting.
            "units_milli": round(usage.units * 1000),
            "unit": usage.unit,
            **energy,
            "started_at": self.started_at,
            "finished_at": finished_at,
            "key_id": self.key_id,
            "attestation": self.attestation,
            **({"asserted_by": self.user_id} if self.attestation == CALLER_ASSERTED else {}),
        }


def opening_statement(fields: dict[str, Any]) -> dict[str, Any]:
    """The statement a stream's X-VaaS-Signature signs; rebuildable from the final payload."""
    keys = ("record_id", "run_id", "trace_id", "model_id", "input_hash", "key_id")
    return {"type": OPENING_TYPE, "version": VERSION, **{k: fields[k] for k in keys}}


@dataclass(frozen=True, slots=True)
class AuditReceipt:
    record_id: str
    signature_hex: str
    public_key_hex: str
    key_id: str
    leaf_index: int
    payload: dict[str, Any]

    def response_headers(self) -> dict[str, str]:
        return receipt_headers(self.record_id, self.signature_hex, self.public_key_hex)


@dataclass(slots=True)
class SealedRecord:
    """A call's record, signed, its log append queued (`AuditService.seal`)."""

    record_id: str
    signature_hex: str
    public_key_hex: str
    key_id: str
    payload: dict[str, Any]
    index: asyncio.Future[int]  # the leaf index, once the append commits

    async def receipt(self) -> AuditReceipt:
        """The receipt once the record is committed; a cancelled wait leaves the append running
        (and `index` to a later wait: shielded, as any number of waits may come)."""
        return self._receipt_at(await asyncio.shield(self.index))

    async def receipt_unshielded(self) -> AuditReceipt:
        """`receipt` for a record's only wait (the inference path's): a cancel of it cancels `index`,
        which drops only the index (AuditLog.submit), the append is written anyway. No shield: a
        future and two callbacks fewer per call, for a record nobody else waits for."""
        return self._receipt_at(await self.index)

    def _receipt_at(self, leaf_index: int) -> AuditReceipt:
        return AuditReceipt(
            self.record_id, self.signature_hex, self.public_key_hex, self.key_id, leaf_index, self.payload
        )


def receipt_headers(record_id: str, signature_hex: str, public_key_hex: str) -> dict[str, str]:
    """The X-VaaS-* headers a response covered by the record carries."""
    return {
        "X-VaaS-Record-Id": record_id,
        "X-VaaS-Signature": signature_hex,
        "X-VaaS-PublicKey": public_key_hex,
    }
