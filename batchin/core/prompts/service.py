"""The prompt registry: which prompt version each text call ran, and the versions' registry.

The inference path calls `attribute_*` before a call runs (it sets `ctx.prompt_version`, so the
response header, the audit record and the trace all carry the resolved version; rules in
prompt_attribution.py) and `record` when it has succeeded (write-behind: recorder.py).
Versions seen in traffic are backfilled into the registry on their own (`source: auto_backfill`);
users also register versions (templates with `{{variables}}`) and move the `promoted` label, each
move signed (labels.py). A new version of a registry with a promoted baseline queues an
experiment (core/experiments) when the registry's owner opted in to experiments (registry.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from sqlalchemy import select, update

from batchin.config import Settings
from batchin.core.audit.service import AuditService
from batchin.core.clock import isoformat, utcnow
from batchin.core.context import CallContext
from batchin.core.prompts.attribution import Attribution, attribute, system_text_of
from batchin.core.prompts.labels import label_history, move_label, move_view, previous_holder
from batchin.core.prompts.recorder import PromptRecorder, PromptRun
from batchin.core.prompts.registry import add_version, ensure_registry, set_experiments_enabled
from batchin.core.prompts.templates import variables_of
from batchin.errors import InvalidRequest, NotFound
from batchin.models.base import ChatMessage, SamplingParams
from batchin.protocol.prompts import (
    REGISTRY_PATTERN,
    PromptLabelMove,
    PromptLabelMoveList,
    PromptLabelMoveRequest,
    PromptList,
    PromptRegistryItem,
    PromptRegistryUpdateRequest,
    PromptTemplate,
    PromptVersionCreateRequest,
    PromptVersionDetail,
    PromptVersionItem,
)
from batchin.store.database import Database
from batchin.store.tables import prompt_registries, prompt_versions

__all__ = ["PROMOTED_LABEL", "PromptRun", "PromptService"]

PROMOTED_LABEL: Literal["promoted"] = "promoted"


class PromptService:
    def __init__(self, settings: Settings, database: Database, audit: AuditService) -> None:
        self._settings = settings
        self._db = database
        self._audit = audit
        self.recorder = PromptRecorder(settings, database, audit)

    # -- the inference path (no I/O) -----------------------------------------------------------

    def attribute_chat(
        self,
        ctx: CallContext,
        messages: tuple[ChatMessage, ...],
        metadata: Mapping[str, str] | None,
        model_id: str,
        sampling: SamplingParams,
    ) -> PromptRun | None:
        """The version a chat call runs (also set as `ctx.prompt_version`), or None: unattributed."""
        found = attribute(ctx.prompt_version, metadata, system_text_of(messages))
        return None if found is None else _run(ctx, found, model_id, messages, sampling)

    def attribute_completion(
        self, ctx: CallContext, metadata: Mapping[str, str] | None, model_id: str, sampling: SamplingParams
    ) -> PromptRun | None:
        """Completions have no system prompt: attributed only when the caller names the version;
        their runs are counted but not sampled (experiments replay chat runs)."""
        found = attribute(ctx.prompt_version, metadata, None)
        return None if found is None else _run(ctx, found, model_id, None, sampling)

    def record(self, run: PromptRun, *, output_text: str, latency_ms: int, cost_units: int) -> None:
        self.recorder.record(run, output_text=output_text, latency_ms=latency_ms, cost_units=cost_units)

    async def close(self) -> None:
        await self.recorder.close()

    # -- the registry API ----------------------------------------------------------------------

    async def list_prompts(self, user_id: str) -> PromptList:
        await self.recorder.flush()
        async with self._db.read() as conn:
            registries = (
                await conn.execute(
                    select(prompt_registries)
                    .where(prompt_registries.c.user_id == user_id)
                    .order_by(prompt_registries.c.created_at.desc(), prompt_registries.c.registry_id)
                )
            ).all()
            versions = (
                await conn.execute(
                    select(prompt_versions)
                    .where(prompt_versions.c.user_id == user_id)
                    .order_by(prompt_versions.c.created_at, prompt_versions.c.version_id)
                )
            ).all()
        by_registry: dict[str, list[PromptVersionItem]] = {}
        for v in versions:
            by_registry.setdefault(v.registry_id, []).append(_version_item(v))
        return PromptList(items=[_registry_item(r, by_registry.get(r.registry_id, [])) for r in registries])

    async def update_registry(
        self, ctx: CallContext, registry_id: str, request: PromptRegistryUpdateRequest
    ) -> PromptRegistryItem:
        """Change a registry's settings, creating it (experiments off) if it does not exist yet, so
        a registry can be opted in to experiments before its first call."""
        _check_registry_id(registry_id)
        user_id, now = ctx.principal.user_id, utcnow()
        await self.recorder.flush()  # runs recorded before an opt-out are sampled, then deleted
        async with self._db.write() as conn:
            await ensure_registry(
                conn,
                user_id=user_id,
                registry_id=registry_id,
                display_name=request.display_name or registry_id,
                source="registered",
                now=now,
            )
            if request.display_name is not None:
                await conn.execute(
                    update(prompt_registries)
                    .where(
                        prompt_registries.c.user_id == user_id, prompt_registries.c.registry_id == registry_id
                    )
                    .values(display_name=request.display_name)
                )
            if request.experiments_enabled is not None:
                await set_experiments_enabled(conn, user_id, registry_id, request.experiments_enabled)
            registry = (
                await conn.execute(
                    select(prompt_registries).where(
                        prompt_registries.c.user_id == user_id, prompt_registries.c.registry_id == registry_id
                    )
                )
            ).one()
            versions = (
                await conn.execute(
                    select(prompt_versions)
                    .where(prompt_versions.c.user_id == user_id, prompt_versions.c.registry_id == registry_id)
                    .order_by(prompt_versions.c.created_at, prompt_versions.c.version_id)
                )
            ).all()
        return _registry_item(registry, [_version_item(v) for v in versions])

    async def register_version(
        self, ctx: CallContext, request: PromptVersionCreateRequest
    ) -> PromptVersionDetail:
        names = variables_of(request.template)
        if request.variables is not None and sorted(set(request.variables)) != sorted(names):
            raise InvalidRequest(
                f"'variables' must name exactly the template's placeholders: {names}.", param="variables"
            )
        user_id, registry_id, now = ctx.principal.user_id, request.registry_id, utcnow()
        await self.recorder.flush()  # versions seen in traffic so far exist before we name a new one
        async with self._db.write() as conn:
            await ensure_registry(
                conn,
                user_id=user_id,
                registry_id=registry_id,
                display_name=request.display_name or registry_id,
                source="registered",
                now=now,
            )
            if request.experiments_enabled is not None:  # before the version: it decides its experiment
                await set_experiments_enabled(conn, user_id, registry_id, request.experiments_enabled)
            version = request.version or await _next_version_name(conn, user_id, registry_id)
            version_id = f"{registry_id}@{version}"
            created = await add_version(
                conn,
                self._audit,
                self._settings,
                user_id=user_id,
                key_id=ctx.principal.key_id,
                registry_id=registry_id,
                version_id=version_id,
                source="registered",
                template=request.template,
                variables=names,
                now=now,
            )
            if created is None:
                raise InvalidRequest(f"Prompt version '{version_id}' already exists.", param="version")
        if created.experiment_id and self.recorder.on_new_experiments is not None:
            self.recorder.on_new_experiments()
        return PromptVersionDetail(
            version_id=version_id,
            registry_id=registry_id,
            status=created.status,
            source="registered",
            total_runs=0,
            template=request.template,
            variables=names,
            created_at=isoformat(now) or "",
            experiment_id=created.experiment_id,
        )

    async def templates(self, user_id: str) -> list[PromptTemplate]:
        """The caller's registered versions with their templates (by registry, oldest first), and for
        each registry whose promoted version has a template, that version again under
        `<registry>@promoted` (unless a version is literally named so: the version wins)."""
        served = (prompt_versions.c.source == "registered") | (
            prompt_versions.c.version_id == prompt_registries.c.promoted_version_id
        )
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(prompt_versions, prompt_registries.c.promoted_version_id)
                    .join(
                        prompt_registries,
                        (prompt_registries.c.user_id == prompt_versions.c.user_id)
                        & (prompt_registries.c.registry_id == prompt_versions.c.registry_id),
                    )
                    .where(prompt_versions.c.user_id == user_id, prompt_versions.c.template.is_not(None))
                    .where(served)
                    .order_by(prompt_versions.c.registry_id, prompt_versions.c.created_at)
                )
            ).all()
        templates = [_template(row, row.version_id, None) for row in rows if row.source == "registered"]
        names = {t.name for t in templates}
        for row in rows:
            label_name = f"{row.registry_id}@{PROMOTED_LABEL}"
            if row.version_id == row.promoted_version_id and label_name not in names:
                templates.append(_template(row, label_name, PROMOTED_LABEL))
        return templates

    async def template(self, user_id: str, name: str) -> PromptTemplate:
        """One of `templates` by name; NotFound for a name that is not the caller's."""
        found = next((t for t in await self.templates(user_id) if t.name == name), None)
        if found is None:
            raise NotFound(f"Prompt '{name}' not found.")
        return found

    async def move_label(
        self, ctx: CallContext, registry_id: str, request: PromptLabelMoveRequest
    ) -> PromptLabelMove:
        """Promote a version, or roll back to the one that held the label before (or a named one)."""
        actor = f"key:{ctx.principal.key_prefix}"
        return await self.move_label_as(ctx.principal.user_id, actor, registry_id, request)

    async def move_label_as(
        self, user_id: str, actor: str, registry_id: str, request: PromptLabelMoveRequest
    ) -> PromptLabelMove:
        """`move_label` for a person who is not calling with a key (the console: actor `console`)."""
        await self.recorder.flush()
        async with self._db.write() as conn:
            current = await conn.scalar(
                select(prompt_registries.c.promoted_version_id).where(
                    prompt_registries.c.user_id == user_id, prompt_registries.c.registry_id == registry_id
                )
            )
            target = request.version_id
            if target is None and request.action == "rollback":
                target = previous_holder(await label_history(conn, user_id, registry_id), current)
                if target is None:
                    raise InvalidRequest(
                        f"Registry '{registry_id}' has no earlier promoted version to roll back to.",
                        param="version_id",
                    )
            if target is None:
                raise InvalidRequest("'version_id' is required to promote.", param="version_id")
            await _require_version(conn, user_id, registry_id, target)
            row = await move_label(
                conn,
                self._audit,
                user_id=user_id,
                registry_id=registry_id,
                to_version_id=target,
                action=request.action,
                actor=actor,
                reason=request.reason,
                now=utcnow(),
            )
        return move_view(row, await self._public_key(row["key_id"]))

    async def label_history(self, user_id: str, registry_id: str) -> PromptLabelMoveList:
        async with self._db.read() as conn:
            await _require_registry(conn, user_id, registry_id)
            rows = await label_history(conn, user_id, registry_id)
        return PromptLabelMoveList(
            items=[move_view(row._mapping, await self._public_key(row.key_id)) for row in rows]
        )

    async def _public_key(self, key_id: str) -> str:
        return await self._audit.public_key(key_id) or ""


def _registry_item(r: Any, versions: list[PromptVersionItem]) -> PromptRegistryItem:
    return PromptRegistryItem(
        registry_id=r.registry_id,
        display_name=r.display_name,
        source=r.source,
        latest_version_id=r.latest_version_id,
        promoted_version_id=r.promoted_version_id,
        total_runs=r.total_runs,
        experiments_enabled=r.experiments_enabled,
        versions=versions,
        created_at=isoformat(r.created_at) or "",
    )


def _version_item(v: Any) -> PromptVersionItem:
    return PromptVersionItem(
        version_id=v.version_id,
        status=v.status,
        total_runs=v.total_runs,
        source=v.source,
        created_at=isoformat(v.created_at) or "",
    )


def _check_registry_id(registry_id: str) -> None:
    """A registry id from a URL path obeys the same alphabet as one in a body."""
    if re.fullmatch(REGISTRY_PATTERN, registry_id) is None:
        raise InvalidRequest(
            "'registry_id' must be 1-100 letters, digits or '_.:+-', starting with a letter or digit.",
            param="registry_id",
        )


def _run(
    ctx: CallContext,
    found: Attribution,
    model_id: str,
    messages: tuple[ChatMessage, ...] | None,
    sampling: SamplingParams,
) -> PromptRun:
    ctx.prompt_version = found.version_id
    principal = ctx.principal
    return PromptRun(
        found,
        principal.user_id,
        principal.key_id,
        model_id,
        messages,
        sampling.max_tokens,
        sampling.temperature,
    )


def _template(row: Any, name: str, label: Literal["promoted"] | None) -> PromptTemplate:
    return PromptTemplate(
        name=name,
        version_id=row.version_id,
        registry_id=row.registry_id,
        status=row.status,
        label=label,
        template=row.template,
        variables=variables_of(row.template),
    )


async def _require_registry(conn: Any, user_id: str, registry_id: str) -> None:
    found = await conn.scalar(
        select(prompt_registries.c.registry_id).where(
            prompt_registries.c.user_id == user_id, prompt_registries.c.registry_id == registry_id
        )
    )
    if found is None:
        raise NotFound(f"Prompt registry '{registry_id}' not found.")


async def _require_version(conn: Any, user_id: str, registry_id: str, version_id: str) -> None:
    await _require_registry(conn, user_id, registry_id)
    found = await conn.scalar(
        select(prompt_versions.c.registry_id).where(
            prompt_versions.c.user_id == user_id, prompt_versions.c.version_id == version_id
        )
    )
    if found != registry_id:
        raise NotFound(f"Prompt version '{version_id}' not found in registry '{registry_id}'.")


async def _next_version_name(conn: Any, user_id: str, registry_id: str) -> str:
    """v<n>, n one more than the registry's versions (skipping names already taken)."""
    taken = set(
        await conn.scalars(
            select(prompt_versions.c.version_id).where(
                prompt_versions.c.user_id == user_id, prompt_versions.c.registry_id == registry_id
            )
        )
    )
    n = len(taken) + 1
    while f"{registry_id}@v{n}" in taken:
        n += 1
    return f"v{n}"
