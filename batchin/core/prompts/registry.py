"""Registry rows: what happens when a registry or a version first appears, whether seen in traffic
(the run recorder) or registered through the API. Every function runs inside the caller's write
transaction, so "a new version appeared" and its consequences commit together, exactly once even
with several server processes (the version insert is the one that decides).

A new version:
- in a registry with no promoted version: gets the label (signed move by `system`): every
  registry has a baseline from its first version on;
- in a registry with a promoted baseline: becomes a `candidate` and an experiment is queued
  against the baseline, when the registry's owner opted in (`experiments_enabled`) and the operator
  left `prompt_auto_experiments` on; otherwise it stays `observed`.

Experiments are opt-in per registry because they spend the owner's money and keep conversation
text: a registry starts with them off, and turning them off deletes its sampled runs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from batchin.config import Settings
from batchin.core.prompts.labels import DocumentSigner, move_label
from batchin.protocol.prompts import VersionStatus
from batchin.store.tables import prompt_experiments, prompt_registries, prompt_samples, prompt_versions
from batchin.store.upsert import upsert_insert

__all__ = [
    "NewVersion",
    "add_version",
    "ensure_registry",
    "experiments_enabled",
    "queue_experiment",
    "set_experiments_enabled",
]


@dataclass(frozen=True, slots=True)
class NewVersion:
    version_id: str
    status: VersionStatus
    experiment_id: str | None


def _insert(conn: AsyncConnection) -> Any:
    return upsert_insert(conn.dialect.name)


def _registry(user_id: str, registry_id: str) -> Any:
    return (prompt_registries.c.user_id == user_id) & (prompt_registries.c.registry_id == registry_id)


async def ensure_registry(
    conn: AsyncConnection, *, user_id: str, registry_id: str, display_name: str, source: str, now: datetime
) -> None:
    """Create the registry (experiments off) unless it exists."""
    await conn.execute(
        _insert(conn)(prompt_registries)
        .values(
            user_id=user_id,
            registry_id=registry_id,
            display_name=display_name[:200],
            source=source,
            total_runs=0,
            created_at=now,
        )
        .on_conflict_do_nothing()
    )


async def add_version(
    conn: AsyncConnection,
    signer: DocumentSigner,
    settings: Settings,
    *,
    user_id: str,
    key_id: str | None,
    registry_id: str,
    version_id: str,
    source: str,
    template: str | None,
    variables: list[str],
    now: datetime,
) -> NewVersion | None:
    """Create the version (its registry must exist); None when it already existed."""
    created = (
        await conn.execute(
            _insert(conn)(prompt_versions)
            .values(
                user_id=user_id,
                version_id=version_id,
                registry_id=registry_id,
                source=source,
                status="observed",
                template=template,
                variables=orjson.dumps(variables).decode(),
                total_runs=0,
                key_id=key_id,
                created_at=now,
            )
            .on_conflict_do_nothing()
            .returning(prompt_versions.c.version_id)
        )
    ).first()
    if created is None:
        return None
    registry = (
        await conn.execute(
            select(prompt_registries.c.promoted_version_id, prompt_registries.c.experiments_enabled)
            .where(_registry(user_id, registry_id))
            .with_for_update()
        )
    ).one()
    promoted = registry.promoted_version_id
    await conn.execute(
        update(prompt_registries).where(_registry(user_id, registry_id)).values(latest_version_id=version_id)
    )
    if promoted is None:
        await move_label(
            conn,
            signer,
            user_id=user_id,
            registry_id=registry_id,
            to_version_id=version_id,
            action="promote",
            actor="system",
            reason="first version of the registry: the baseline later versions are compared with",
            now=now,
        )
        return NewVersion(version_id, "promoted", None)
    if not (registry.experiments_enabled and settings.prompt_auto_experiments):
        return NewVersion(version_id, "observed", None)
    experiment_id = await queue_experiment(
        conn,
        user_id=user_id,
        key_id=key_id,
        registry_id=registry_id,
        baseline_version_id=str(promoted),
        candidate_version_id=version_id,
        judge=settings.prompt_experiment_judge,
        sample_size=settings.prompt_experiment_samples,
        trigger="auto",
        now=now,
    )
    return NewVersion(version_id, "candidate", experiment_id)


async def experiments_enabled(conn: AsyncConnection, user_id: str, registry_id: str) -> bool:
    """The owner's opt-in (False for a registry that does not exist)."""
    found = await conn.scalar(
        select(prompt_registries.c.experiments_enabled).where(_registry(user_id, registry_id))
    )
    return bool(found)


async def set_experiments_enabled(
    conn: AsyncConnection, user_id: str, registry_id: str, enabled: bool
) -> None:
    """Opt the registry in or out; opting out deletes its sampled runs in the same transaction, so
    no conversation text of a registry without experiments stays behind."""
    await conn.execute(
        update(prompt_registries).where(_registry(user_id, registry_id)).values(experiments_enabled=enabled)
    )
    if enabled:
        return
    of_registry = select(prompt_versions.c.version_id).where(
        prompt_versions.c.user_id == user_id, prompt_versions.c.registry_id == registry_id
    )
    await conn.execute(
        delete(prompt_samples).where(
            prompt_samples.c.user_id == user_id, prompt_samples.c.version_id.in_(of_registry)
        )
    )


async def queue_experiment(
    conn: AsyncConnection,
    *,
    user_id: str,
    key_id: str | None,
    registry_id: str,
    baseline_version_id: str,
    candidate_version_id: str,
    judge: str,
    sample_size: int,
    trigger: str,
    now: datetime,
) -> str:
    """A queued experiment row (a worker claims it) and the candidate's status `candidate`."""
    experiment_id = f"pexp_{secrets.token_hex(12)}"
    await conn.execute(
        insert(prompt_experiments).values(
            id=experiment_id,
            user_id=user_id,
            key_id=key_id,
            registry_id=registry_id,
            baseline_version_id=baseline_version_id,
            candidate_version_id=candidate_version_id,
            judge=judge,
            sample_size=sample_size,
            trigger=trigger,
            status="queued",
            promotion_status="pending",
            sample_count=0,
            created_at=now,
        )
    )
    await conn.execute(
        update(prompt_versions)
        .where(prompt_versions.c.user_id == user_id, prompt_versions.c.version_id == candidate_version_id)
        .values(status="candidate")
    )
    return experiment_id
