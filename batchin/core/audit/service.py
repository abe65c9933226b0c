"""Verifiable audit (VaaS): a signed, logged record for every call, and its public verification.

The inference path calls `begin_call` before the engine runs (id reserved, headers ready, no I/O)
and `finish` (or `seal`, its first half) when the output is complete, or `record_call` for both at
once. `finish` signs the
payload (Ed25519 over its RFC 8785 form) and appends it to the transparency log; it returns when
the record is committed, so `GET /v1/vaas/{id}` finds it as soon as the caller has the receipt.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import select

from batchin.config import Settings
from batchin.core.audit import keys as audit_keys
from batchin.core.audit import transparency as mt
from batchin.core.audit.canonical import canonical, canonical_of_our_keys
from batchin.core.audit.energy import approximate_tokens, estimate
from batchin.core.audit.key_registry import key_path, register_key
from batchin.core.audit.log import Checkpoint, LogRow, TransparencyLog
from batchin.core.audit.owned import OwnedRecord, newest_records, owned_record
from batchin.core.audit.records import (
    CALLER_ASSERTED,
    SERVED,
    AuditReceipt,
    AuditUsage,
    PendingRecord,
    SealedRecord,
    opening_statement,
    receipt_headers,
    sha256_ref,
)
from batchin.core.clock import utcnow_text
from batchin.core.context import CallContext
from batchin.core.random_ids import uuid7_text
from batchin.errors import InvalidRequest, NotFound
from batchin.models.catalog import CatalogEntry
from batchin.models.registry import ModelRegistry
from batchin.protocol.audit import (
    ConsistencyProof,
    EvidencePack,
    InclusionProof,
    PublicKeyInfo,
    SignedCheckpoint,
    VaasCreateRequest,
    VaasRecord,
    VaasVerification,
)
from batchin.store.database import Database
from batchin.store.group_commit import GroupCommitWriter
from batchin.store.tables import vaas_keys, vaas_records

__all__ = ["AuditReceipt", "AuditService", "AuditUsage", "PendingRecord"]

DEFAULT_ROUTE = "default-route"
_KIND_OF = {"chat": "text", "completion": "text"}


class AuditService:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        registry: ModelRegistry | None,
        key: audit_keys.AuditKey,
        writer: GroupCommitWriter | None = None,
    ) -> None:
        self._settings = settings
        self._db = database
        self._registry = registry
        self._key = key
        self._public_keys: dict[str, str] = {key.key_id: key.public_key_hex}
        self.log = TransparencyLog(database, key, writer)

    @classmethod
    async def open(
        cls,
        settings: Settings,
        database: Database,
        registry: ModelRegistry | None,
        writer: GroupCommitWriter | None = None,
    ) -> AuditService:
        """Load (or create) the signing key and register its public half by id. `writer`: the
        ledger's SQLite writer to append through (it stays the ledger's to close)."""
        key = audit_keys.load_or_create(key_path(settings))
        await register_key(database, key)
        return cls(settings, database, registry, key, writer)

    async def close(self) -> None:
        await self.log.close()

    # -- recording (called by the inference path) ------------------------------------------------

    def begin_call(
        self,
        ctx: CallContext,
        *,
        model_id: str,
        input_text: str | bytes,
        gpu_id: str | None = None,
        route_id: str = DEFAULT_ROUTE,
        provider: str | None = None,
        attestation: str = SERVED,
        entry: CatalogEntry | None = None,
    ) -> PendingRecord:
        """`entry`: the model's catalog entry when the caller has it (no lookup of `model_id`)."""
        engine, energy_kind = self._model_class(model_id) if entry is None else _class_of(entry)
        pending = PendingRecord(
            record_id=uuid7_text(),  # time-ordered: appended to the records' id index
            user_id=ctx.principal.user_id,
            run_id=ctx.run_id,
            trace_id=ctx.trace.trace_id,
            route_id=route_id,
            provider=provider or ("upstream" if engine == "remote" else "batchin-managed"),
            environment=self._settings.environment,
            prompt_version_id=ctx.prompt_version,
            model_id=model_id,
            gpu_id=gpu_id,
            input_hash=sha256_ref(input_text),
            started_at=utcnow_text(),
            key_id=self._key.key_id,
            public_key_hex=self._key.public_key_hex,
            signer=self._sign_document,
            attestation=attestation,
            engine=engine,
            energy_kind=energy_kind,
        )
        return pending

    def _sign_document(self, document: dict[str, Any]) -> str:
        return self._key.sign(canonical(document)).hex()

    def sign_document(self, document: dict[str, Any]) -> tuple[str, str]:
        """(signature hex, key id) for another kind of signed record (prompt label moves): one
        signing key, so those verify like audit records, by the key registered under that id."""
        return self._sign_document(document), self._key.key_id

    async def finish(
        self, pending: PendingRecord, *, output_text: str | bytes, usage: AuditUsage | None = None
    ) -> AuditReceipt:
        """Sign and log the record of a finished call (once; a second call is refused). Signed and
        queued before the first await; a cancelled caller stops waiting, the append runs on."""
        return await self.seal(pending, output_text=output_text, usage=usage).receipt()

    def seal(
        self, pending: PendingRecord, *, output_text: str | bytes, usage: AuditUsage | None = None
    ) -> SealedRecord:
        """`finish` without waiting: the record is signed and its log append queued now, and is
        written whatever becomes of the caller; `receipt()` waits for the commit. (The inference
        path seals every call this way: no task of its own for it.)"""
        if pending.finished:
            raise RuntimeError(f"audit record {pending.record_id} is already finished")
        pending.finished = True
        usage = usage or AuditUsage()
        payload = pending.payload(
            output_hash=sha256_ref(output_text),
            usage=usage,
            energy=self._energy(pending.engine, pending.energy_kind, usage),
            finished_at=utcnow_text(),
        )
        signed = canonical_of_our_keys(payload)  # PendingRecord.payload names every key
        signature = self._key.sign(signed).hex()
        row = LogRow(pending.record_id, pending.user_id, self._key.key_id, signed, signature)
        index = self.log.submit(row)
        return SealedRecord(
            pending.record_id, signature, self._key.public_key_hex, self._key.key_id, payload, index
        )

    async def record_call(
        self,
        ctx: CallContext,
        *,
        model_id: str,
        input_text: str | bytes,
        output_text: str | bytes,
        usage: AuditUsage | None = None,
        gpu_id: str | None = None,
        route_id: str = DEFAULT_ROUTE,
        provider: str | None = None,
        attestation: str = SERVED,
    ) -> AuditReceipt:
        pending = self.begin_call(
            ctx,
            model_id=model_id,
            input_text=input_text,
            gpu_id=gpu_id,
            route_id=route_id,
            provider=provider,
            attestation=attestation,
        )
        return await self.finish(pending, output_text=output_text, usage=usage)

    def _model_class(self, model_id: str) -> tuple[str | None, str]:
        if self._registry is None:
            return None, "text"
        try:
            entry = self._registry.entry(model_id)
        except NotFound:
            return None, "text"  # POST /v1/vaas may name a model served elsewhere
        return _class_of(entry)

    def _energy(self, engine: str | None, kind: str, usage: AuditUsage) -> dict[str, Any]:
        e = estimate(
            engine=engine,
            kind=kind,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            units=usage.units,
            grid_gco2_per_kwh=self._settings.grid_gco2_per_kwh,
            energy_source=self._settings.energy_source,
        )
        return {
            "energy_uwh": round(e.energy_wh * 1e6),
            "carbon_ug_co2e": round(e.carbon_grams_co2e * 1e6),
            "carbon_offset_ug_co2e": round(e.carbon_offset_vs_us_cloud * 1e6),
            "energy_source": e.energy_source,
            "energy_method": e.method,
        }

    # -- the public API --------------------------------------------------------------------------

    async def create(self, ctx: CallContext, request: VaasCreateRequest) -> VaasRecord:
        """Sign texts the caller hands us (POST /v1/vaas): a `caller_asserted` record naming them.
        Billed by the caller of this method (serving's AssertedRecordService), not here."""
        usage = AuditUsage(
            input_tokens=approximate_tokens(request.input_text),
            output_tokens=approximate_tokens(request.output_text),
        )
        receipt = await self.record_call(
            ctx,
            model_id=request.model_id,
            input_text=request.input_text,
            output_text=request.output_text,
            usage=usage,
            gpu_id=request.gpu_id,
            attestation=CALLER_ASSERTED,
        )
        return _record_view(receipt.payload, receipt.signature_hex)

    async def _row(self, record_id: str) -> Any:
        try:
            uuid.UUID(record_id)
        except ValueError:
            raise NotFound(f"Audit record '{record_id}' does not exist.") from None
        async with self._db.read() as conn:
            row = (await conn.execute(select(vaas_records).where(vaas_records.c.id == record_id))).first()
        if row is None:
            raise NotFound(f"Audit record '{record_id}' does not exist.")
        return row._mapping

    async def get(self, record_id: str) -> VaasRecord:
        row = await self._row(record_id)
        return _record_view(json.loads(row["payload"]), row["signature"])

    async def list_owned(self, user_id: str, *, limit: int) -> list[OwnedRecord]:
        """The user's own records, newest first (the console's receipts page)."""
        return await newest_records(self._db, user_id, limit)

    async def owned(self, user_id: str, record_id: str) -> OwnedRecord:
        """One of the user's own records; another user's is NotFound, as an unknown id is."""
        return await owned_record(self._db, user_id, record_id)

    async def public_key(self, key_id: str) -> str | None:
        if key_id not in self._public_keys:
            async with self._db.read() as conn:
                found = await conn.scalar(select(vaas_keys.c.public_key).where(vaas_keys.c.key_id == key_id))
            if found is None:
                return None
            self._public_keys[key_id] = str(found)
        return self._public_keys[key_id]

    async def receipt_headers(self, record_id: str) -> dict[str, str]:
        """The X-VaaS-* headers of a stored record, as its call's response carried them."""
        row = await self._row(record_id)
        return receipt_headers(record_id, row["signature"], await self.public_key(row["key_id"]) or "")

    def current_key(self) -> PublicKeyInfo:
        return PublicKeyInfo(verify_key_hex=self._key.public_key_hex, key_id=self._key.key_id)

    async def signed_checkpoint(self, checkpoint: Checkpoint | None = None) -> SignedCheckpoint:
        cp = checkpoint or await self.log.checkpoint()
        public = await self.public_key(cp.key_id) or ""
        return SignedCheckpoint.model_validate(
            {"payload": cp.payload, "signature": f"ed25519:{cp.signature}", "public_key": f"ed25519:{public}"}
        )

    async def evidence(self, record_id: str) -> EvidencePack:
        row = await self._row(record_id)
        payload = json.loads(row["payload"])
        index = int(row["leaf_index"])
        latest = await self.log.latest_checkpoint()
        cp = (
            latest
            if latest is not None and latest.tree_size > index
            else await self.log.checkpoint(index + 1)
        )
        leaf, path = await self.log.inclusion(index, cp.tree_size)
        public = await self.public_key(row["key_id"]) or ""
        return EvidencePack(
            **{name: str(payload.get(name, "")) for name in _ENVELOPE},
            public_key=f"ed25519:{public}",
            key_id=row["key_id"],
            signature=f"ed25519:{row['signature']}",
            payload=payload,
            inclusion_proof=InclusionProof(
                leaf_index=index,
                tree_size=cp.tree_size,
                leaf_hash=leaf.hex(),
                audit_path=[h.hex() for h in path],
            ),
            checkpoint=await self.signed_checkpoint(cp),
        )

    async def verify(self, record_id: str) -> VaasVerification:
        """Valid when the stored record's signature holds, its leaf is the one in the log, and the
        log's path from it reaches the root of a checkpoint whose signature holds."""
        from batchin.core.audit.verify import verify_evidence

        pack = await self.evidence(record_id)
        row = await self._row(record_id)
        stored = row["payload"].encode("utf-8")
        valid = (
            verify_evidence(pack.model_dump(mode="json"))["valid"]
            and canonical(pack.payload) == stored
            and pack.payload.get("record_id") == record_id
            and bytes.fromhex(pack.inclusion_proof.leaf_hash) == mt.leaf_hash(stored)
        )
        return VaasVerification(
            audit_id=record_id,
            valid=bool(valid),
            attestation=pack.payload.get("attestation"),
            asserted_by=pack.payload.get("asserted_by"),
        )

    async def consistency(self, first: int, second: int) -> ConsistencyProof:
        size = await self.log.size()
        if not 1 <= first <= size:
            raise InvalidRequest(f"'first' must be between 1 and the log size ({size}).", param="first")
        if not first <= second <= size:
            raise InvalidRequest(
                f"'second' must be between 'first' and the log size ({size}).", param="second"
            )
        proof = await self.log.consistency(first, second)
        return ConsistencyProof(
            first=first,
            second=second,
            first_root_hash=(await self.log.root(first)).hex(),
            second_root_hash=(await self.log.root(second)).hex(),
            proof=[h.hex() for h in proof],
        )

    async def check_log(self) -> dict[str, Any]:
        """Every leaf has its record and every record its leaf: finds dropped or altered rows."""
        size = await self.log.size()
        async with self._db.read() as conn:
            rows = {
                int(i): p
                for i, p in await conn.execute(select(vaas_records.c.leaf_index, vaas_records.c.payload))
            }
        leaves = await self.log.nodes([(0, i) for i in range(size)])
        missing = [i for i in range(size) if i not in rows]
        altered = [i for i, p in rows.items() if leaves.get((0, i)) != mt.leaf_hash(p.encode("utf-8"))]
        return {"tree_size": size, "records": len(rows), "missing": missing, "altered": sorted(altered)}

    def opening_statement(self, payload: dict[str, Any]) -> bytes:
        return canonical(opening_statement(payload))


def _class_of(entry: CatalogEntry) -> tuple[str | None, str]:
    """(engine, kind) of a model, as the energy estimate and the record's provider read them."""
    kind = entry.kind[0] if entry.kind else "chat"
    return entry.engine, _KIND_OF.get(kind, kind)


_ENVELOPE = ("record_id", "run_id", "trace_id", "route_id", "provider", "environment", "prompt_version_id")


def _record_view(payload: dict[str, Any], signature: str) -> VaasRecord:
    return VaasRecord(
        audit_id=payload["record_id"],
        input_hash=str(payload["input_hash"]).removeprefix("sha256:"),
        output_hash=str(payload["output_hash"]).removeprefix("sha256:"),
        carbon_grams_co2e=payload["carbon_ug_co2e"] / 1e6,
        energy_wh=payload["energy_uwh"] / 1e6,
        energy_source=payload["energy_source"],
        carbon_offset_vs_us_cloud=payload["carbon_offset_ug_co2e"] / 1e6,
        energy_method=payload["energy_method"],
        signature=signature,
        key_id=payload["key_id"],
        model_id=payload["model_id"],
        created_at=payload["finished_at"],
        attestation=payload.get("attestation"),
        asserted_by=payload.get("asserted_by"),
    )
