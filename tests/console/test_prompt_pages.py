"""The Prompts pages over the real ASGI app: registries with their versions and where the promoted
label points, moving the label from the console (signed, actor `console`, CSRF-guarded), the opt-in
state, experiments with their verdicts, and that another user's registry is a 404."""

from __future__ import annotations

import html
import re

import httpx2

from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, bearer
from tests.console.conftest import form_post
from tests.console.test_receipts_pages import sign_in


async def register(client: httpx2.AsyncClient, user: UserCreated, version: str, **extra: object) -> None:
    body = {"registry_id": "support", "version": version, "template": f"You help ({version}).", **extra}
    made = await client.post("/v1/prompts", json=body, headers=bearer(user.api_key))
    assert made.status_code == 200, made.text


def labelled(html: str) -> dict[str, list[str]]:
    """version id → the labels its row shows."""
    rows = re.findall(r'<tr data-version-id="([^"]+)">(.*?)</tr>', html, flags=re.S)
    return {version: re.findall(r'data-label="([a-z]+)"', row) for version, row in rows}


async def test_versions_labels_and_moving_the_label(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    await register(client, user, "v1")
    await register(client, user, "v2")
    await sign_in(client, user)
    listing = await client.get("/console/prompts")
    assert listing.status_code == 200
    assert 'href="/console/prompts/support"' in listing.text
    assert "<code>support@v1</code>" in listing.text  # the promoted version
    page = await client.get("/console/prompts/support")
    assert labelled(page.text) == {"support@v2": ["latest"], "support@v1": ["promoted"]}
    assert "off" in page.text.split('id="opt-in"')[1][:40]

    moved = await form_post(
        client,
        "/console/prompts/support",
        "/console/prompts/support/labels",
        {"action": "promote", "version_id": "support@v2", "reason": "reads better"},
    )
    assert (moved.status_code, moved.headers["location"]) == (303, "/console/prompts/support")
    after = await client.get("/console/prompts/support")
    assert labelled(after.text) == {"support@v2": ["promoted", "latest"], "support@v1": []}
    history = after.text.split('id="label-history"')[1]
    assert "<code>console</code>" in history
    assert "reads better" in history
    api = await client.get("/v1/prompts/support/labels", headers=bearer(user.api_key))
    newest = api.json()["items"][0]
    assert (newest["actor"], newest["to_version_id"], newest["payload"]["actor"]) == (
        "console",
        "support@v2",
        "console",
    )


async def test_a_bad_move_changes_nothing_and_a_forged_form_is_refused(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    await register(client, user, "v1")
    await sign_in(client, user)
    refused = await form_post(
        client,
        "/console/prompts/support",
        "/console/prompts/support/labels",
        {"action": "promote", "version_id": "support@nope", "reason": "x"},
    )
    assert refused.status_code == 404
    no_reason = await form_post(
        client, "/console/prompts/support", "/console/prompts/support/labels", {"action": "rollback"}
    )
    assert no_reason.status_code == 400
    forged = await client.post(
        "/console/prompts/support/labels",
        data={"action": "rollback", "reason": "x", "csrf_token": "forged"},
        headers={"Origin": "http://testserver"},
    )
    assert forged.status_code == 403
    page = await client.get("/console/prompts/support")
    assert labelled(page.text) == {"support@v1": ["promoted", "latest"]}
    assert "The label has not moved yet." not in page.text  # the first version's move by `system`
    assert page.text.count("<code>system</code>") == 1


async def test_experiments_show_their_verdict_and_the_opt_in(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    await register(client, user, "v1", experiments_enabled=True)
    await register(client, user, "v2")  # a candidate against the promoted v1: an experiment is queued
    await sign_in(client, user)
    queued = await client.get("/console/prompts/support")
    assert "opted in" in queued.text.split('id="opt-in"')[1][:40]
    row = re.search(r'<tr data-experiment-id="[^"]+">(.*?)</tr>', queued.text, flags=re.S)
    assert row is not None
    assert "<code>support@v1</code> → <code>support@v2</code>" in row.group(1)
    assert "queued" in row.group(1)
    await services.experiments.run_pending()  # no sampled runs to replay: it cannot run
    done = await client.get("/console/prompts")
    verdict = re.search(r'<td class="verdict">(.*?)</td>', done.text, flags=re.S)
    assert verdict is not None
    [experiment] = (await client.get("/v1/experiments", headers=bearer(user.api_key))).json()["items"]
    assert experiment["status"] != "queued"
    assert experiment["reason"]
    assert experiment["reason"] in html.unescape(verdict.group(1))
    assert verdict.group(1).startswith("not promoted")


async def test_another_users_registry_is_a_404(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    owner, other = await make_user(), await make_user()
    await register(client, owner, "v1")
    await register(client, owner, "v2")
    await sign_in(client, other)
    assert (await client.get("/console/prompts/support")).status_code == 404
    assert "support" not in (await client.get("/console/prompts")).text.split("<main")[1]
    moved = await form_post(
        client,
        "/console/prompts",
        "/console/prompts/support/labels",
        {"action": "promote", "version_id": "support@v2", "reason": "mine now"},
    )
    assert moved.status_code == 404
    await sign_in(client, owner)
    assert labelled((await client.get("/console/prompts/support")).text)["support@v1"] == ["promoted"]


async def test_prompt_pages_render_in_chinese(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    await register(client, user, "v1")
    await sign_in(client, user)
    assert "已提升版本" in (await client.get("/console/prompts?lang=zh")).text
    assert "移动 promoted 标签" in (await client.get("/console/prompts/support?lang=zh")).text
