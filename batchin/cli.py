"""`batchin` command line: serve, mcp, db, users, keys, models, vaas, batch. Every command prints JSON
to stdout."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel

from batchin.app import build_services, create_app
from batchin.batch_cli import batch_app
from batchin.config import Settings
from batchin.errors import BatchInError
from batchin.protocol.accounts import KeyCreateRequest
from batchin.protocol.common import validate
from batchin.services import Services

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True, add_completion=False, help="BatchIn model-API platform.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
users_app = typer.Typer(no_args_is_help=True, help="Users and their credit.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys.")
invites_app = typer.Typer(
    no_args_is_help=True, help="Invite codes for self-service signup (BATCHIN_SIGNUP=invite)."
)
app.add_typer(invites_app, name="invites")
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
vaas_app = typer.Typer(no_args_is_help=True, help="Verifiable audit records and their signing key.")
app.add_typer(vaas_app, name="vaas")
app.add_typer(batch_app, name="batch")
models_app = typer.Typer(no_args_is_help=True, help="The model catalog's engines.")
app.add_typer(models_app, name="models")

DEMO_EMAIL = "demo@batchin.local"


def _emit(value: Any) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    sys.stdout.write(json.dumps(value, indent=None) + "\n")


def _run(work: Callable[[Services], Awaitable[T]]) -> T:
    async def main() -> T:
        # Administrative commands never touch the engines: don't load models to create a user.
        services = await build_services(Settings.load(), start_models=False)
        try:
            return await work(services)
        finally:
            await services.close()

    try:
        return asyncio.run(main())
    except BatchInError as exc:
        sys.stderr.write(json.dumps(exc.body()) + "\n")
        raise typer.Exit(code=1) from None


@models_app.command("check")
def models_check() -> None:
    """Decode one token with each natively built engine of the catalog, each in a child process:
    a crash is reported with its signal. Exits 1 when any cannot decode (`make install` runs it)."""
    from batchin.models.catalog import load_catalog
    from batchin.models.engine_check import check_catalog

    settings = Settings.load()
    results = check_catalog(load_catalog(settings.models, cny_per_usd=settings.cny_per_usd))
    _emit([{"model": r.model_id, "ok": r.ok, "detail": r.detail} for r in results])
    if not all(r.ok for r in results):
        raise typer.Exit(code=1)


@app.command()
def mcp() -> None:
    """MCP over stdio for desktop clients (Claude Desktop …); acts with the key in BATCHIN_API_KEY."""
    import os

    from batchin.mcp_server.stdio import serve_stdio

    asyncio.run(serve_stdio(Settings.load(), os.environ.get("BATCHIN_API_KEY")))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (BATCHIN_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (BATCHIN_PORT)")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="API processes on the port, sharing one set of engines (default: the CPUs)"),
    ] = None,
) -> None:
    """Serve the HTTP API (and MCP at /v1/mcp) on one port."""
    import os

    import uvicorn

    from batchin.workers import configure_logging, default_workers, serve_workers

    overrides: dict[str, Any] = {}
    if host:
        overrides["host"] = host
        os.environ["BATCHIN_HOST"] = host  # API processes of --workers read their settings again
    if port:
        overrides["port"] = port
        os.environ["BATCHIN_PORT"] = str(port)
    settings = Settings.load(**overrides)
    configure_logging()
    count = workers or default_workers()
    if count > 1:
        serve_workers(settings, count, log_level)
        return
    uvicorn.run(
        create_app(settings, freeze_heap=True),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations up to the newest revision."""
    from batchin.store.migrate import current_revision

    async def work(services: Services) -> str | None:
        return await current_revision(services.database)

    _emit({"revision": _run(work)})


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="unique email")],
    name: Annotated[str, typer.Option(help="display name")],
    credit_cents: Annotated[
        int, typer.Option(help="starting credit in minor units of the currency (cents or fen)")
    ] = 0,
    currency: Annotated[
        str,
        typer.Option(help="USD (global entry) or CNY (China entry); fixed for good", case_sensitive=False),
    ] = "USD",
    rate_limit_rpm: Annotated[
        int | None, typer.Option(help="the first key's requests per minute (default: the server's)")
    ] = None,
    monthly_budget_cents: Annotated[
        int | None,
        typer.Option(help="the first key's monthly budget in cents or fen (default: none)"),
    ] = None,
) -> None:
    """Create a user with a first API key (every scope, every model); prints the key once."""
    _emit(
        _run(
            lambda s: s.accounts.create_user(
                email,
                name,
                credit_cents,
                rate_limit_rpm=rate_limit_rpm,
                monthly_budget_cents=monthly_budget_cents,
                currency=currency.upper(),
            )
        )
    )


@invites_app.command("create")
def invites_create(
    count: Annotated[int, typer.Option(help="how many codes")] = 1,
    note: Annotated[str | None, typer.Option(help="a note kept with each code")] = None,
) -> None:
    """Make single-use invite codes for the console's signup; prints them once (only hashes are kept)."""

    async def work(services: Services) -> Any:
        return [await services.signup.create_invite(note) for _ in range(max(1, count))]

    _emit({"invites": _run(work)})


@users_app.command("credit")
def users_credit(
    user: Annotated[str, typer.Option(help="user id or email")],
    cents: Annotated[int, typer.Option(help="amount to add, in the account's cents or fen")],
    note: Annotated[str | None, typer.Option(help="why")] = None,
) -> None:
    """Add credit to a user's balance (recorded as an admin top-up)."""

    async def work(services: Services) -> Any:
        target = await services.accounts.find_user(user)
        await services.topups.credit(target.id, cents, note=note)
        return await services.accounts.get_user(target.id)

    _emit(_run(work))


@users_app.command("list")
def users_list() -> None:
    """All users with their balances."""
    _emit(_run(lambda s: s.accounts.list_users()))


@users_app.command("demo")
def users_demo(credit_cents: Annotated[int, typer.Option(help="demo credit")] = 10_000) -> None:
    """Create a demo user if the store has none (prints its key once); otherwise say so."""

    async def work(services: Services) -> Any:
        if await services.accounts.count_users():
            return {"created": False, "message": "the store already has users; no demo user created"}
        created = await services.accounts.create_user(DEMO_EMAIL, "Demo", credit_cents)
        return {"created": True, **created.model_dump(mode="json")}

    _emit(_run(work))


@keys_app.command("create")
def keys_create(
    user: Annotated[str, typer.Option(help="user id or email")],
    name: Annotated[str | None, typer.Option(help="key name")] = None,
    rpm: Annotated[int | None, typer.Option(help="requests per minute")] = None,
    budget_cents: Annotated[
        int | None, typer.Option(help="monthly budget in the account's cents or fen")
    ] = None,
    scope: Annotated[
        list[str] | None, typer.Option(help="a scope the key gets (repeat; default: every scope)")
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option(help="a model the key may call (repeat; default: every model)")
    ] = None,
    region: Annotated[
        list[str] | None,
        typer.Option(help="an entry region the key may use (repeat, first preferred; default: every region)"),
    ] = None,
) -> None:
    """Create an API key for a user; prints the secret once."""

    async def work(services: Services) -> Any:
        target = await services.accounts.find_user(user)
        request = validate(
            KeyCreateRequest,
            {
                "name": name,
                "rate_limit_rpm": rpm,
                "monthly_budget_cents": budget_cents,
                "scopes": scope,
                "models": model,
                "regions": region,
            },
        )
        return await services.accounts.create_key(target.id, request)

    _emit(_run(work))


@keys_app.command("list")
def keys_list(user: Annotated[str, typer.Option(help="user id or email")]) -> None:
    """A user's keys (never the secrets)."""

    async def work(services: Services) -> Any:
        target = await services.accounts.find_user(user)
        return await services.accounts.list_keys(target.id)

    _emit(_run(work))


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="API key id")]) -> None:
    """Revoke a key at once."""

    async def work(services: Services) -> Any:
        await services.accounts.revoke_key_admin(key_id)
        return {"id": key_id, "revoked": True}

    _emit(_run(work))


@vaas_app.command("verify")
def vaas_verify(
    evidence: Annotated[Path, typer.Argument(help="an evidence pack (GET /v1/vaas/{id}/evidence), JSON")],
    input_file: Annotated[Path | None, typer.Option(help="the call's input, to check input_hash")] = None,
    output_file: Annotated[Path | None, typer.Option(help="the call's output, to check output_hash")] = None,
    trusted_key: Annotated[list[str] | None, typer.Option(help="pin the operator's public keys, hex")] = None,
) -> None:
    """Verify an evidence pack offline; prints a JSON verdict, exit code 0 when valid, 1 when not."""
    from batchin.core.audit.verify import verify_evidence

    try:
        pack = json.loads(evidence.read_text(encoding="utf-8"))
        if not isinstance(pack, dict):
            raise ValueError("an evidence pack is a JSON object")
    except (OSError, ValueError) as exc:
        _emit({"valid": False, "record_id": None, "checks": {"format": False}, "errors": [str(exc)]})
        raise typer.Exit(code=1) from None
    verdict = verify_evidence(
        pack,
        input_text=input_file.read_bytes() if input_file else None,
        output_text=output_file.read_bytes() if output_file else None,
        trusted_keys=[k.removeprefix("ed25519:") for k in trusted_key] if trusted_key else None,
    )
    _emit(verdict)
    if not verdict["valid"]:
        raise typer.Exit(code=1)


@vaas_app.command("rotate-key")
def vaas_rotate_key() -> None:
    """Make a new signing key (the old one's public key stays registered, so its records verify)."""
    from batchin.core.audit.key_registry import rotate_key
    from batchin.store.database import Database
    from batchin.store.migrate import upgrade

    async def work() -> Any:
        settings = Settings.load()
        database = Database(settings.resolved_database_url)
        try:
            await upgrade(database)
            return await rotate_key(settings, database)
        finally:
            await database.dispose()

    _emit(asyncio.run(work()))


def main() -> None:
    app()
