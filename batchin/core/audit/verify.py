"""Offline verification of an evidence pack: everything checked from the pack alone.

1. the record's signature over RFC 8785(payload) with the embedded public key, whose id matches;
2. the pack's envelope fields agree with the signed payload, and its hashes are SHA-256 values
   (and match the texts, when the caller has them);
3. the leaf hash is SHA-256(0x00 || RFC 8785(payload)) and its RFC 6962 inclusion proof leads to
   the checkpoint's root;
4. the checkpoint's own signature.
The verdict also says who stands behind the texts (`attestation`: `served`, `caller_asserted` with
`asserted_by`, or None for records older than the field), and checks that a stated one is well formed.
A verifier who pins the operator's public keys (`trusted_keys`) also learns *who* signed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from typing import Any

import rfc8785

from batchin.core.audit import transparency as mt
from batchin.core.audit.canonical import canonical
from batchin.core.audit.keys import key_id_of, verify_signature
from batchin.core.audit.records import CALLER_ASSERTED, SERVED

__all__ = ["ENVELOPE_FIELDS", "verify_evidence"]

ENVELOPE_FIELDS = (
    "record_id",
    "run_id",
    "trace_id",
    "route_id",
    "provider",
    "environment",
    "prompt_version_id",
)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")


def _key(value: Any) -> str:
    text = str(value)
    return text.removeprefix("ed25519:")


def _digest(text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _well_formed_attestation(payload: dict[str, Any]) -> bool:
    if payload["attestation"] == CALLER_ASSERTED:
        asserted_by = payload.get("asserted_by")
        return isinstance(asserted_by, str) and bool(asserted_by)
    return payload["attestation"] == SERVED and "asserted_by" not in payload


def verify_evidence(
    pack: dict[str, Any],
    *,
    input_text: str | bytes | None = None,
    output_text: str | bytes | None = None,
    trusted_keys: Collection[str] | None = None,
) -> dict[str, Any]:
    """A verdict: {"valid", "record_id", "attestation", "asserted_by", "checks": {name: bool},
    "errors": [...]}."""
    checks: dict[str, bool] = {}
    errors: list[str] = []

    def check(name: str, ok: bool, why: str) -> None:
        checks[name] = checks.get(name, True) and ok
        if not ok:
            errors.append(why)

    try:
        payload = pack["payload"]
        signed = canonical(payload)
        public = _key(pack["public_key"])
        signature = bytes.fromhex(_key(pack["signature"]))
        check("signature", verify_signature(public, signed, signature), "record signature does not verify")
        check(
            "key_id",
            key_id_of(bytes.fromhex(public)) == pack["key_id"] == payload.get("key_id"),
            "key id does not match the public key",
        )
        if trusted_keys is not None:
            check("trusted_key", public in trusted_keys, "the record's key is not one of the trusted keys")
        for name in ENVELOPE_FIELDS:
            check("envelope", pack.get(name) == payload.get(name), f"{name} differs from the signed payload")
        if "attestation" in payload:  # absent in records made before it existed: nothing to check
            check(
                "attestation",
                _well_formed_attestation(payload),
                "attestation is neither 'served' nor 'caller_asserted' with the asserting user",
            )
        check(
            "hashes",
            all(_SHA256.match(str(payload.get(n, ""))) for n in ("input_hash", "output_hash")),
            "input_hash/output_hash are not sha256:<hex>",
        )
        if input_text is not None:
            check(
                "hashes", payload.get("input_hash") == _digest(input_text), "input does not match input_hash"
            )
        if output_text is not None:
            check(
                "hashes",
                payload.get("output_hash") == _digest(output_text),
                "output does not match output_hash",
            )

        proof, cp = pack["inclusion_proof"], pack["checkpoint"]
        cp_payload = cp["payload"]
        leaf = mt.leaf_hash(signed)
        check("leaf_hash", leaf.hex() == proof["leaf_hash"], "leaf hash is not SHA-256(0x00 || payload)")
        path = [bytes.fromhex(h) for h in proof["audit_path"]]
        root = cp_payload["root_hash"]
        included = (
            bool(_HEX64.match(root))
            and proof["tree_size"] == cp_payload["tree_size"]
            and mt.verify_inclusion(
                leaf, int(proof["leaf_index"]), int(proof["tree_size"]), path, bytes.fromhex(root)
            )
        )
        check("inclusion", included, "inclusion proof does not lead to the checkpoint's root")
        cp_public = _key(cp["public_key"])
        cp_ok = key_id_of(bytes.fromhex(cp_public)) == cp_payload["key_id"] and verify_signature(
            cp_public, canonical(cp_payload), bytes.fromhex(_key(cp["signature"]))
        )
        check("checkpoint_signature", cp_ok, "checkpoint signature does not verify")
        if trusted_keys is not None:
            check(
                "trusted_key",
                cp_public in trusted_keys,
                "the checkpoint's key is not one of the trusted keys",
            )
    except (KeyError, TypeError, ValueError, AttributeError, rfc8785.CanonicalizationError) as exc:
        check("format", False, f"malformed evidence pack: {type(exc).__name__}: {exc}")
    payload = pack.get("payload") if isinstance(pack, dict) else None
    stated = payload if isinstance(payload, dict) else {}
    return {
        "valid": bool(checks) and all(checks.values()),
        "record_id": pack.get("record_id") if isinstance(pack, dict) else None,
        "attestation": stated.get("attestation"),
        "asserted_by": stated.get("asserted_by"),
        "checks": checks,
        "errors": errors,
    }
