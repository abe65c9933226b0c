"""A webhook receiver on a real local port (aiohttp, in the test's event loop) that checks each
request's signature with the reference Standard Webhooks library (`standardwebhooks`), as a user's
endpoint would, so our signing is judged by an independent implementation.

A request whose signature does not verify gets 400, as a careful receiver answers; one that
verifies gets the next status from `statuses` (then `default_status`), or what `respond(request)`
returns. Every request is recorded with its headers, raw body and the verification result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class ReceivedWebhook:
    path: str
    host: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    payload: dict[str, Any] | None

    @property
    def event_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class WebhookReceiver:
    secret: str | None = None
    statuses: list[int] = field(default_factory=list)
    default_status: int = 200
    respond: Callable[[ReceivedWebhook], int] | None = None
    hang: bool = False  # never answer (tests the client's timeout)
    received: list[ReceivedWebhook] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hooks/batchin"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()  # lets hanging handlers end, so shutdown does not wait for them
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def port(self) -> int:
        return int(self.url.split(":")[2].split("/")[0])

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[ReceivedWebhook]:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
        return list(self.received)

    def verify(self, request: ReceivedWebhook, secret: str) -> bool:
        try:
            Webhook(secret).verify(request.body, request.headers)
        except WebhookVerificationError:
            return False
        return True

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        payload: dict[str, Any] | None = None
        verified = False
        if self.secret is not None:
            try:
                payload = Webhook(self.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
        got = ReceivedWebhook(request.path, request.host, headers, body, verified, payload)
        async with self._arrived:
            self.received.append(got)
            self._arrived.notify_all()
        if self.hang:
            await self._closing.wait()
        if self.secret is not None and not verified:
            return web.Response(status=400, text="bad signature")
        if self.respond is not None:
            status = self.respond(got)
        elif self.statuses:
            status = self.statuses.pop(0)
        else:
            status = self.default_status
        headers_out = {"Location": "/elsewhere"} if 300 <= status < 400 else {}
        return web.Response(status=status, text="ok", headers=headers_out)
