"""The `promoted` label of a prompt registry, and its signed history.

Moving the label rewrites the two versions' statuses and the registry's pointer, and appends a move
record (who, when, why, from → to) in the same transaction. The record is signed with the audit
signing key over its RFC 8785 form, exactly like an audit record, so anyone holding the public key
(GET /v1/vaas/pubkey/current, or the key registered under the record's key id) can check it.

Status rules: the version that gets the label is `promoted`; the one that loses it becomes
`observed` after a promotion (still a good version, just not the current one) and `retired` after
a rollback (it was judged bad).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from batchin.core.audit.canonical import canonical
from batchin.core.audit.keys import verify_signature
from batchin.core.clock import isoformat
from batchin.errors import InvalidRequest, NotFound
from batchin.protocol.prompts import PromptLabelMove
from batchin.store.tables import prompt_label_moves, prompt_registries, prompt_versions

__all__ = ["DocumentSigner", "label_history", "move_label", "move_view", "previous_holder", "verify_move"]

Action = Literal["promote", "rollback"]


class DocumentSigner(Protocol):
    """The audit service's signing: (signature hex, key id) over the document's RFC 8785 form."""

    def sign_document(self, document: dict[str, Any]) -> tuple[str, str]: ...


async def move_label(
    conn: AsyncConnection,
    signer: DocumentSigner,
    *,
    user_id: str,
    registry_id: str,
    to_version_id: str,
    action: Action,
    actor: str,
    reason: str,
    now: datetime,
) -> dict[str, Any]:
    """Move the label inside the caller's transaction; returns the stored move row's values."""
    registry = (
        await conn.execute(
            select(prompt_registries.c.promoted_version_id)
            .where(prompt_registries.c.user_id == user_id, prompt_registries.c.registry_id == registry_id)
            .with_for_update()
        )
    ).first()
    if registry is None:
        raise NotFound(f"Prompt registry '{registry_id}' not found.")
    from_version = registry.promoted_version_id
    if from_version == to_version_id:
        raise InvalidRequest(f"'{to_version_id}' already holds the promoted label.", param="version_id")
    if from_version is not None:
        await _set_status(conn, user_id, from_version, "retired" if action == "rollback" else "observed")
    await _set_status(conn, user_id, to_version_id, "promoted")
    await conn.execute(
        update(prompt_registries)
        .where(prompt_registries.c.user_id == user_id, prompt_registries.c.registry_id == registry_id)
        .values(promoted_version_id=to_version_id)
    )
    move_id = str(uuid.uuid4())
    payload = {
        "move_id": move_id,
        "user_id": user_id,
        "registry_id": registry_id,
        "label": "promoted",
        "action": action,
        "from_version_id": from_version,
        "to_version_id": to_version_id,
        "actor": actor,
        "reason": reason,
        "created_at": isoformat(now) or "",
    }
    signature, key_id = signer.sign_document(payload)
    row = {
        "id": move_id,
        "user_id": user_id,
        "registry_id": registry_id,
        "payload": canonical(payload).decode("utf-8"),
        "signature": signature,
        "key_id": key_id,
        "created_at": now,
    }
    await conn.execute(insert(prompt_label_moves).values(**row))
    return row


async def _set_status(conn: AsyncConnection, user_id: str, version_id: str, status: str) -> None:
    await conn.execute(
        update(prompt_versions)
        .where(prompt_versions.c.user_id == user_id, prompt_versions.c.version_id == version_id)
        .values(status=status)
    )


async def label_history(conn: AsyncConnection, user_id: str, registry_id: str) -> list[Any]:
    """The registry's label moves, newest first."""
    rows = await conn.execute(
        select(prompt_label_moves)
        .where(prompt_label_moves.c.user_id == user_id, prompt_label_moves.c.registry_id == registry_id)
        .order_by(prompt_label_moves.c.created_at.desc(), prompt_label_moves.c.id.desc())
    )
    return list(rows)


def previous_holder(history: list[Any], current: str | None) -> str | None:
    """The version that held the label before `current` got it (the target of a rollback)."""
    for row in history:
        payload = json.loads(row.payload)
        if payload["to_version_id"] == current:
            found = payload["from_version_id"]
            return str(found) if found is not None else None
    return None


def move_view(row: Mapping[str, Any], public_key_hex: str) -> PromptLabelMove:
    """A stored move (its row's values) as the API shows it."""
    payload = json.loads(row["payload"])
    return PromptLabelMove(
        move_id=payload["move_id"],
        registry_id=payload["registry_id"],
        action=payload["action"],
        from_version_id=payload["from_version_id"],
        to_version_id=payload["to_version_id"],
        actor=payload["actor"],
        reason=payload["reason"],
        created_at=payload["created_at"],
        key_id=row["key_id"],
        public_key=f"ed25519:{public_key_hex}",
        signature=f"ed25519:{row['signature']}",
        payload=payload,
    )


def verify_move(move: PromptLabelMove) -> bool:
    """True when the move's signature holds over the RFC 8785 form of its payload."""
    public = move.public_key.removeprefix("ed25519:")
    try:
        signature = bytes.fromhex(move.signature.removeprefix("ed25519:"))
    except ValueError:
        return False
    return verify_signature(public, canonical(move.payload), signature)
