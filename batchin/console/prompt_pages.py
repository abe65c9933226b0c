"""Prompts: the user's prompt registries, each version and which one the `promoted` label points at,
the label's signed history, experiments and their verdicts (prompt regressions), the opt-in state;
and moving the label (promote or roll back) with a reason, as POST /v1/prompts/{id}/labels does."""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import Response

from batchin.console.web import Page, redirect, render
from batchin.core.experiments.service import MAX_LIST
from batchin.errors import NotFound
from batchin.protocol.common import validate
from batchin.protocol.prompts import PromptLabelMoveRequest

__all__ = ["move_label", "prompts", "registry"]

# Who moved the label, in the signed move: a person signed in to the console (not a key).
CONSOLE_ACTOR = "console"


async def prompts(page: Page) -> Response:
    services = page.services
    listing = await services.prompts.list_prompts(page.user_id)
    experiments = await services.experiments.list_experiments(page.user_id, limit=MAX_LIST)
    return render(page, "prompts.html", registries=listing.items, experiments=experiments.items)


async def registry(page: Page) -> Response:
    services, registry_id = page.services, page.request.path_params["registry_id"]
    listing = await services.prompts.list_prompts(page.user_id)
    found = next((r for r in listing.items if r.registry_id == registry_id), None)
    if found is None:
        raise NotFound(f"Prompt registry '{registry_id[:100]}' not found.")
    history = await services.prompts.label_history(page.user_id, registry_id)
    experiments = await services.experiments.list_experiments(page.user_id, limit=MAX_LIST)
    regressions = await services.experiments.list_regressions(page.user_id, limit=MAX_LIST)
    return render(
        page,
        "prompt.html",
        registry=found,
        moves=history.items,
        experiments=[e for e in experiments.items if e.registry_id == registry_id],
        regressions=[r for r in regressions.items if r.registry_id == registry_id],
    )


async def move_label(page: Page) -> Response:
    registry_id = page.request.path_params["registry_id"]
    request = validate(
        PromptLabelMoveRequest,
        {
            "action": page.field("action"),
            "version_id": page.field("version_id") or None,
            "reason": page.field("reason"),
        },
    )
    await page.services.prompts.move_label_as(page.user_id, CONSOLE_ACTOR, registry_id, request)
    return redirect(page, f"/console/prompts/{quote(registry_id, safe='')}")
