"""The Playground: chat (streamed), embeddings, speech, transcription and image generation, called
from the browser through the same public API the SDK uses (/v1/*, `Authorization: Bearer`).

How the page gets a key. The API takes only Bearer keys, never the console's cookie: accepting the
cookie there would let any site that can make the browser send a request spend the account (CSRF on
the API). Asking the user to paste a key would make them copy a secret that is shown once into a
second place. So each signed-in console session gets its own *playground key*:

- on first use the page POSTs to /console/playground/key (a console form: session cookie, the
  session's CSRF token, same-origin check); the answer (no-store) carries a new key's secret once,
  and the page keeps it in sessionStorage (gone with the tab, never in a cookie);
- the key is a real API key of the user with the `inference` scope only, named after the session
  (`Playground (console session <tag>)`, the tag an HMAC of the session token, so the name reveals
  nothing), listed on the API keys page like any other, with its own RPM and no budget of its own
  (the balance bounds it);
- asking again (sessionStorage lost: a new tab, a reload after the browser dropped it) revokes the
  session's previous playground key and mints a new one, so no secret is ever shown twice;
- signing out revokes the session's playground key; one left by a session that expired without a
  sign-out is revoked at the next mint of the user, once it is older than any session can live."""

from __future__ import annotations

import hashlib
import hmac
from contextlib import suppress
from datetime import datetime, timedelta

from starlette.responses import JSONResponse, Response

from batchin.console.web import ConsoleDeps, Page, render
from batchin.core.clock import utcnow
from batchin.errors import NotFound
from batchin.protocol.accounts import KeyCreateRequest
from batchin.protocol.models import ModelCard
from batchin.services import Services

__all__ = ["KEY_NAME_PREFIX", "mint_key", "playground", "revoke_session_key"]

KEY_NAME_PREFIX = "Playground (console session "
_RPM = 60  # a person clicking in a page; at most the server's default
# The catalog kinds each panel of the page offers, in the page's order.
KINDS = ("chat", "embedding", "speech", "transcription", "image")


def _key_name(deps: ConsoleDeps, session_token: str) -> str:
    tag = hmac.new(deps.cookie_key, b"playground:" + session_token.encode(), hashlib.sha256).hexdigest()
    return f"{KEY_NAME_PREFIX}{tag[:12]})"


def _offered(models: list[ModelCard]) -> dict[str, list[ModelCard]]:
    """Per kind, the catalog's models of that kind the server can run now (not `unavailable`)."""
    return {kind: [m for m in models if kind in m.kind and m.status != "unavailable"] for kind in KINDS}


async def playground(page: Page) -> Response:
    currency = page.user.currency if page.user is not None else "USD"
    offered = _offered(page.services.catalog.list_models(currency).data)
    return render(page, "playground.html", offered=offered)


async def _revoke_playground_keys(
    services: Services, user_id: str, *, name: str, older_than: datetime | None = None
) -> None:
    """Revokes the user's active playground key called `name`, and with `older_than` every
    playground key created before it (left by sessions that have since expired)."""
    for key in await services.accounts.list_keys(user_id):
        if not key.is_active or not key.name.startswith(KEY_NAME_PREFIX):
            continue
        expired = older_than is not None and datetime.fromisoformat(key.created_at) < older_than
        if key.name == name or expired:
            with suppress(NotFound):  # a concurrent request (another tab) revoked it first
                await services.accounts.revoke_key(user_id, key.id)


async def mint_key(page: Page) -> Response:
    """POST /console/playground/key: a new playground key for this session (replacing the
    session's previous one); its secret appears in this answer only."""
    session, services = page.session, page.services
    if session is None:  # signed_in() always sets it
        return Response(status_code=403)
    name = _key_name(page.deps, session.token)
    lifetime = timedelta(hours=services.settings.console_session_hours)
    await _revoke_playground_keys(services, page.user_id, name=name, older_than=utcnow() - lifetime)
    request = KeyCreateRequest(
        name=name, scopes=["inference"], rate_limit_rpm=min(_RPM, services.settings.default_rate_limit_rpm)
    )
    created = await services.accounts.create_key(page.user_id, request)
    return JSONResponse(
        {"key": created.key, "key_id": created.id, "name": created.name},
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


async def revoke_session_key(page: Page) -> None:
    """At sign-out: the session's playground key stops working at once."""
    if page.session is not None:
        name = _key_name(page.deps, page.session.token)
        await _revoke_playground_keys(page.services, page.user_id, name=name)
